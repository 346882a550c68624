//! Relay counters and gauges (lock-free atomics), rendered as Prometheus text for `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// The transport a connection speaks; one gauge per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Engine.IO over HTTP long-polling.
    Polling,
    /// Engine.IO over WebSocket (opened directly or upgraded from polling).
    Websocket,
    /// Plain RFC 6455 clients at `/ws/ROOM`.
    PlainWs,
    /// The `/echo` endpoint.
    Echo,
}

impl Transport {
    /// The label value used in `/metrics` and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::Websocket => "websocket",
            Transport::PlainWs => "plain_ws",
            Transport::Echo => "echo",
        }
    }
    const ALL: [Transport; 4] = [
        Transport::Polling,
        Transport::Websocket,
        Transport::PlainWs,
        Transport::Echo,
    ];
}

/// One counter per transport.
#[derive(Debug, Default)]
struct PerTransport<T> {
    polling: T,
    websocket: T,
    plain_ws: T,
    echo: T,
}

impl<T> PerTransport<T> {
    fn get(&self, t: Transport) -> &T {
        match t {
            Transport::Polling => &self.polling,
            Transport::Websocket => &self.websocket,
            Transport::PlainWs => &self.plain_ws,
            Transport::Echo => &self.echo,
        }
    }
}

/// Every number `/metrics` shows. Shared by all connections (`Arc<Metrics>`); relaxed atomics.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    connections: PerTransport<AtomicI64>,
    connections_total: PerTransport<AtomicU64>,
    /// Socket.IO namespace connections currently open.
    pub sockets: AtomicI64,
    /// Rooms with at least one member (all namespaces).
    pub rooms: AtomicI64,
    /// Application messages received (Engine.IO message packets, plain WebSocket data frames).
    pub messages_in: AtomicU64,
    /// Application messages queued for delivery (one per recipient).
    pub messages_out: AtomicU64,
    /// Payload bytes received from clients (WebSocket payloads, polling bodies).
    pub bytes_in: AtomicU64,
    /// Bytes written to clients (WebSocket frames, polling bodies).
    pub bytes_out: AtomicU64,
    /// Messages that could not be queued for a recipient (queue full or recipient closing).
    pub dropped: AtomicU64,
    /// Clients disconnected because their outbound queue was full.
    pub slow_consumers: AtomicU64,
    /// Sessions closed for a protocol violation (bad frame, bad packet, oversized message).
    pub protocol_errors: AtomicU64,
    /// Socket.IO CONNECT requests refused (unknown namespace, application refusal).
    pub connect_errors: AtomicU64,
    /// Chat sends refused because the sender is not a member of the room.
    pub refused_sends: AtomicU64,
    /// HTTP requests answered by the router (all paths).
    pub http_requests: AtomicU64,
    /// The cluster link (`--redis`); rendered only when enabled.
    pub redis: RedisMetrics,
}

/// Counters of the Redis cluster link (`wschat serve --redis`).
#[derive(Debug, Default)]
pub struct RedisMetrics {
    /// Set once when the server runs with `--redis`.
    pub enabled: AtomicBool,
    /// 1 while the publish and subscribe connections are up.
    pub connected: AtomicI64,
    /// Messages published (broadcasts and request answers).
    pub published: AtomicU64,
    /// Broadcasts received from other servers (own echoes are not counted).
    pub received: AtomicU64,
    /// Connection losses, failed publishes, undecodable messages.
    pub errors: AtomicU64,
    /// Broadcasts not published to the other servers (Redis down, or the publish queue full);
    /// they were still delivered locally.
    pub dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            started: Instant::now(),
            connections: Default::default(),
            connections_total: Default::default(),
            sockets: AtomicI64::new(0),
            rooms: AtomicI64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            refused_sends: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            redis: RedisMetrics::default(),
        }
    }

    /// A connection of this transport opened.
    pub fn open(&self, t: Transport) {
        self.connections.get(t).fetch_add(1, Ordering::Relaxed);
        self.connections_total
            .get(t)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A connection of this transport closed.
    pub fn close(&self, t: Transport) {
        self.connections.get(t).fetch_sub(1, Ordering::Relaxed);
    }

    /// A session moved from one transport to another (polling -> websocket upgrade).
    pub fn moved(&self, from: Transport, to: Transport) {
        self.connections.get(from).fetch_sub(1, Ordering::Relaxed);
        self.connections.get(to).fetch_add(1, Ordering::Relaxed);
    }

    /// Open connections of one transport.
    pub fn connections(&self, t: Transport) -> i64 {
        self.connections.get(t).load(Ordering::Relaxed)
    }

    /// Open connections of all transports.
    pub fn connections_all(&self) -> i64 {
        Transport::ALL.iter().map(|t| self.connections(*t)).sum()
    }

    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Add to a counter (helper for call sites that hold a `&AtomicU64`).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048);
        let g = |x: &AtomicI64| x.load(Ordering::Relaxed);
        let c = |x: &AtomicU64| x.load(Ordering::Relaxed);
        header(
            &mut s,
            "wschat_connections",
            "gauge",
            "Open connections by transport.",
        );
        for t in Transport::ALL {
            let _ = writeln!(
                s,
                "wschat_connections{{transport=\"{}\"}} {}",
                t.as_str(),
                self.connections(t)
            );
        }
        header(
            &mut s,
            "wschat_connections_total",
            "counter",
            "Connections accepted by transport (an upgrade counts once, as polling).",
        );
        for t in Transport::ALL {
            let _ = writeln!(
                s,
                "wschat_connections_total{{transport=\"{}\"}} {}",
                t.as_str(),
                c(self.connections_total.get(t))
            );
        }
        let gauges: [(&str, &str, i64); 2] = [
            (
                "wschat_sockets",
                "Socket.IO namespace connections.",
                g(&self.sockets),
            ),
            (
                "wschat_rooms",
                "Rooms with at least one member.",
                g(&self.rooms),
            ),
        ];
        for (name, help, v) in gauges {
            header(&mut s, name, "gauge", help);
            let _ = writeln!(s, "{name} {v}");
        }
        let counters: [(&str, &str, u64); 10] = [
            (
                "wschat_messages_in_total",
                "Application messages received.",
                c(&self.messages_in),
            ),
            (
                "wschat_messages_out_total",
                "Application messages queued to recipients.",
                c(&self.messages_out),
            ),
            (
                "wschat_bytes_in_total",
                "Bytes received from clients.",
                c(&self.bytes_in),
            ),
            (
                "wschat_bytes_out_total",
                "Bytes written to clients.",
                c(&self.bytes_out),
            ),
            (
                "wschat_dropped_messages_total",
                "Messages not delivered because the recipient's queue was full or closing.",
                c(&self.dropped),
            ),
            (
                "wschat_slow_consumers_total",
                "Clients disconnected because their outbound queue was full.",
                c(&self.slow_consumers),
            ),
            (
                "wschat_protocol_errors_total",
                "Sessions closed for a protocol violation.",
                c(&self.protocol_errors),
            ),
            (
                "wschat_connect_errors_total",
                "Socket.IO CONNECT requests refused.",
                c(&self.connect_errors),
            ),
            (
                "wschat_refused_sends_total",
                "Chat messages refused because the sender was not in the room.",
                c(&self.refused_sends),
            ),
            (
                "wschat_http_requests_total",
                "HTTP requests handled.",
                c(&self.http_requests),
            ),
        ];
        for (name, help, v) in counters {
            header(&mut s, name, "counter", help);
            let _ = writeln!(s, "{name} {v}");
        }
        if self.redis.enabled.load(Ordering::Relaxed) {
            self.render_redis(&mut s);
        }
        header(
            &mut s,
            "wschat_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
        );
        let _ = writeln!(s, "wschat_uptime_seconds {:.3}", self.uptime_secs());
        s
    }
}

impl Metrics {
    fn render_redis(&self, s: &mut String) {
        let r = &self.redis;
        header(
            s,
            "wschat_redis_connected",
            "gauge",
            "1 while the Redis publish and subscribe connections are up.",
        );
        let _ = writeln!(
            s,
            "wschat_redis_connected {}",
            r.connected.load(Ordering::Relaxed)
        );
        let counters: [(&str, &str, &AtomicU64); 4] = [
            (
                "wschat_redis_published_total",
                "Messages published to Redis (broadcasts and request answers).",
                &r.published,
            ),
            (
                "wschat_redis_received_total",
                "Broadcasts received from other servers through Redis.",
                &r.received,
            ),
            (
                "wschat_redis_errors_total",
                "Redis connection losses, failed publishes and undecodable messages.",
                &r.errors,
            ),
            (
                "wschat_redis_dropped_total",
                "Broadcasts delivered locally but not published (Redis down or publish queue full).",
                &r.dropped,
            ),
        ];
        for (name, help, v) in counters {
            header(s, name, "counter", help);
            let _ = writeln!(s, "{name} {}", v.load(Ordering::Relaxed));
        }
    }
}

fn header(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text_with_every_family_typed_once() {
        let m = Metrics::new();
        m.open(Transport::Polling);
        m.moved(Transport::Polling, Transport::Websocket);
        m.open(Transport::PlainWs);
        Metrics::add(&m.dropped, 3);
        let text = m.render();
        assert!(text.contains("wschat_connections{transport=\"websocket\"} 1\n"));
        assert!(text.contains("wschat_connections{transport=\"polling\"} 0\n"));
        assert!(text.contains("wschat_connections_total{transport=\"polling\"} 1\n"));
        assert!(text.contains("wschat_dropped_messages_total 3\n"));
        // Every sample line belongs to a family declared by a preceding TYPE line.
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(typed.insert(name.to_string()), "family {name} typed twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert!(typed.contains(name), "sample {line} before its TYPE");
            }
        }
        assert_eq!(m.connections_all(), 2);
        assert!(
            !text.contains("wschat_redis"),
            "no Redis families without --redis"
        );
        m.redis.enabled.store(true, Ordering::Relaxed);
        m.redis.connected.store(1, Ordering::Relaxed);
        Metrics::add(&m.redis.dropped, 2);
        let text = m.render();
        assert!(text.contains("wschat_redis_connected 1\n"));
        assert!(text.contains("wschat_redis_dropped_total 2\n"));
        assert!(text.contains("# TYPE wschat_redis_published_total counter\n"));
    }
}
