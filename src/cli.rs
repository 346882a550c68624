//! The command line: one clap struct per subcommand, help text with examples, value parsers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build, test, load and debug real-time chat over WebSockets and Socket.IO.
#[derive(Debug, Parser)]
#[command(
    name = "wschat",
    version,
    about,
    after_help = "\
Examples:
  wschat serve                                   relay and web chat on http://127.0.0.1:3001/
  wschat send --room 1 --name Celular 'Olá mundo!'
  wschat send --room 1 --listen                  print the room's messages as they arrive
  wschat bench --clients 500 --rooms 50 --rate 10/s --duration 30s
  wschat decode capture.pcap --ws-port 3001 -V   detail tree of every WebSocket frame

Exit codes: 0 ok, 1 the run completed but a check failed, 2 usage or runtime error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options that every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to use colour (NO_COLOR in the environment means never, unless `always`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Log lines on stderr as text or as JSON objects, one per line (`serve --json` implies json).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-11-24T13:00:00Z  INFO wschat::serve: connect sid=... transport=websocket`
    Text,
    /// `{"timestamp":"...","level":"INFO","fields":{"message":"connect","sid":"..."},"target":"..."}`
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl Global {
    /// Whether to colour output written to a stream that is (or is not) a terminal.
    pub fn use_color(&self, is_terminal: bool) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the chat relay: Socket.IO v5 (WebSocket + long-polling), rooms, web chat page, plain WebSocket.
    #[command(after_help = "\
Examples:
  wschat serve                          127.0.0.1:3001, as the original app
  wschat serve --listen 0.0.0.0:3001    reachable from phones on the LAN (prints the URLs)
  wschat serve --static ./build         serve a React build at / on the same port
  wschat serve --listen 127.0.0.1:3002 --redis redis://127.0.0.1:6379
                                        one of several servers sharing rooms over Redis
Routes: /socket.io/ (Engine.IO v4), /ws/ROOM?name=NAME (plain WebSocket), /echo, /healthz, /metrics, /")]
    Serve(ServeArgs),
    /// Join a room and send messages (or any event); print what arrives.
    #[command(after_help = "\
Examples:
  wschat send --room 1 --name Celular 'Olá mundo!'
  printf 'one\\ntwo\\n' | wschat send --room 1 -
  wschat send --room 1 --count 10 --interval 500ms hello
  wschat send --room 1 --wait 3 --timeout 10s
  wschat send --event ping --data '{\"x\":1}' --ack
  wschat send --raw ws://127.0.0.1:3001/echo hi")]
    Send(SendArgs),
    /// Load-test N concurrent Socket.IO clients: latency percentiles, throughput, delivery.
    #[command(after_help = "\
Examples:
  wschat bench --clients 500                          bench an in-process relay
  wschat bench --clients 500 --url http://127.0.0.1:3001 --rate 20/s --duration 30s
  wschat bench --clients 10000 --idle                 connect and hold
  wschat bench --clients 200 --max-p99 20ms --max-loss 0 --json")]
    Bench(BenchArgs),
    /// Decode captures into TCP streams, HTTP handshakes, WebSocket frames and Socket.IO packets.
    #[command(after_help = "\
Examples:
  wschat decode capture.pcap
  wschat decode seed-frame-4295.pcap --ws-port 3001 -V -x
  wschat decode capture.pcapng --json | jq .
  wschat decode capture.pcap --follow
  wschat decode -i lo --filter 'tcp port 3001'        (live, needs the `live` feature)")]
    Decode(DecodeArgs),
}

/// `wschat serve`
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on (0.0.0.0:3001 for the LAN).
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,
    /// Engine.IO ping interval.
    #[arg(long, value_parser = parse_duration, default_value = "25s")]
    pub ping_interval: Duration,
    /// Engine.IO ping timeout.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub ping_timeout: Duration,
    /// Largest accepted message / polling body, in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_payload: usize,
    /// Time a client has to send its Socket.IO CONNECT.
    #[arg(long, value_parser = parse_duration, default_value = "45s")]
    pub connect_timeout: Duration,
    /// Outbound queue per client, in packets; a client that falls further behind is disconnected.
    #[arg(long, default_value_t = 4096)]
    pub queue: usize,
    /// Outbound queue per client, in bytes (at least twice --max-payload).
    #[arg(long, default_value_t = 16 << 20)]
    pub queue_bytes: usize,
    /// Maximum concurrent connections.
    #[arg(long, default_value_t = 200_000)]
    pub max_connections: usize,
    /// Let several relay processes listen on the same address (SO_REUSEPORT; the kernel spreads
    /// new connections over them). Each holds its own clients: pair with --redis to share rooms.
    #[arg(long)]
    pub reuse_port: bool,
    /// Serve this folder at / instead of the built-in chat page.
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// While a worker thread is saturated (busy 97% of a 100-ms period or more; off again once the
    /// share it would be busy without the window, estimated from the frames per write, falls below
    /// 90%), write to each WebSocket client at most once per this window, so that the messages
    /// queued meanwhile share one write (one system call and one TCP segment). Fewer writes when
    /// the CPU is the limit; no effect below that load. At most 100ms; 0 turns it off.
    #[arg(long, value_parser = parse_duration, default_value = "6ms", value_name = "DURATION")]
    pub write_window: Duration,
    /// Startup and shutdown lines on stdout as JSON (the bound port and URLs, for scripts), and log
    /// lines on stderr as JSON (as `--log-format json`).
    #[arg(long)]
    pub json: bool,
    /// Share rooms with other servers through Redis pub/sub (wschat or node socket.io with
    /// @socket.io/redis-adapter), e.g. redis://127.0.0.1:6379 or redis://:PASSWORD@HOST:PORT/DB.
    #[arg(long, env = "WSCHAT_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// Redis channel prefix (the `key` option of @socket.io/redis-adapter).
    #[arg(
        long,
        default_value = "socket.io",
        value_name = "KEY",
        requires = "redis"
    )]
    pub redis_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportChoice {
    /// WebSocket only (as the original React app: transports: ["websocket"]).
    Websocket,
    /// HTTP long-polling only.
    Polling,
    /// Polling first, then upgrade to WebSocket (socket.io-client's default).
    Upgrade,
}

/// `wschat send`
#[derive(Debug, Args, Clone)]
pub struct SendArgs {
    /// Server URL (http, https, ws, wss); with --raw, the WebSocket URL to talk to.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    pub url: String,
    /// Room to join (join_room) and send to.
    #[arg(long)]
    pub room: Option<String>,
    /// Author name carried in each message.
    #[arg(long, default_value = "wschat")]
    pub name: String,
    /// Messages to send; `-` reads stdin line by line (also the default when stdin is a pipe).
    pub messages: Vec<String>,
    /// Transport.
    #[arg(long, value_enum, default_value_t = TransportChoice::Websocket)]
    pub transport: TransportChoice,
    /// Send the message(s) N times.
    #[arg(long)]
    pub count: Option<u64>,
    /// Pause between messages.
    #[arg(long, value_parser = parse_duration, conflicts_with = "rate")]
    pub interval: Option<Duration>,
    /// Messages per second, e.g. 20/s.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Wait for N received messages before exiting.
    #[arg(long)]
    pub wait: Option<u64>,
    /// Give up after this long (exit 1 when --wait was not met).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print what arrives until Ctrl-C (or --timeout).
    #[arg(long)]
    pub listen: bool,
    /// One JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
    /// Emit this event instead of send_message.
    #[arg(long)]
    pub event: Option<String>,
    /// JSON argument(s) of --event (an array is spread into several arguments).
    #[arg(long)]
    pub data: Option<String>,
    /// Socket.IO namespace.
    #[arg(long, default_value = "/")]
    pub namespace: String,
    /// JSON object sent as the CONNECT auth payload.
    #[arg(long)]
    pub auth: Option<String>,
    /// Ask for an ack and print it.
    #[arg(long)]
    pub ack: bool,
    /// Speak plain WebSocket (RFC 6455) to --url or the first argument, like wscat.
    #[arg(long)]
    pub raw: bool,
    /// Accept any TLS certificate (self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
    /// Reconnect with backoff and rejoin the room when the connection drops.
    #[arg(long)]
    pub reconnect: bool,
    /// How long to wait for each ack with --ack.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub ack_timeout: Duration,
    /// The server's Engine.IO path.
    #[arg(long, default_value = "/socket.io/")]
    pub path: String,
    /// Write `time` as the original app did (`16:5`) instead of zero-padded `16:05`.
    #[arg(long)]
    pub app_time: bool,
}

/// `wschat bench`
#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 500)]
    pub clients: usize,
    /// Server URL; without it a relay is started in-process on an ephemeral loopback port.
    #[arg(long)]
    pub url: Option<String>,
    /// Rooms; clients join them round-robin (default: 50, or clients/2 when fewer than 100 clients).
    #[arg(long)]
    pub rooms: Option<usize>,
    /// Messages per second per client.
    #[arg(long, value_parser = parse_rate, default_value = "10/s")]
    pub rate: f64,
    /// Measured duration.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,
    /// Sending before measurement starts.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub warmup: Duration,
    /// Spread connection set-up over this long.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub ramp: Duration,
    /// Chat message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Transport.
    #[arg(long, value_enum, default_value_t = TransportChoice::Websocket)]
    pub transport: TransportChoice,
    /// Connect and hold: connect rate and (local server) memory per connection.
    #[arg(long)]
    pub idle: bool,
    /// Ask for acks on send_message and time them.
    #[arg(long)]
    pub ack: bool,
    /// Disconnect and reconnect this many clients per second while messaging.
    #[arg(long, value_parser = parse_rate)]
    pub churn: Option<f64>,
    /// Plain WebSocket echo server at --url.
    #[arg(long)]
    pub raw: bool,
    /// Connections opened at once.
    #[arg(long, default_value_t = 250)]
    pub connect_concurrency: usize,
    /// Worker threads for the load generator (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Exit 1 when p99 latency exceeds this.
    #[arg(long, value_parser = parse_duration)]
    pub max_p99: Option<Duration>,
    /// Where latency ends: `kernel` = when the message reached the client's socket (the kernel's
    /// receive timestamp, plain TCP on Linux; the generator's own read delay is reported apart),
    /// `read` = when the generator read it.
    #[arg(long, value_enum, default_value_t = RxClock::Kernel)]
    pub rx_clock: RxClock,
    /// Drive every connection from a task of its own. By default each worker thread drives its
    /// joined WebSocket connections from one loop over an epoll set (Linux, plain TCP, without
    /// --churn), which costs the generator less CPU per message; this keeps the older way, to
    /// compare the two.
    #[arg(long)]
    pub task_per_connection: bool,
    /// Exit 1 when more than this many messages were lost.
    #[arg(long)]
    pub max_loss: Option<u64>,
    /// After the last send, wait this long for messages in flight before counting losses.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub grace: Duration,
    /// Give up on a connection (TCP + handshakes + Socket.IO CONNECT) after this long.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Socket.IO namespace to connect to.
    #[arg(long, default_value = "/")]
    pub namespace: String,
    /// Local source address for connections (repeatable; connections are spread over them).
    /// Default: the kernel's choice, or 127.0.0.1, 127.0.0.2, ... when a loopback target needs
    /// more connections than one address has ephemeral ports.
    #[arg(long = "source", value_name = "IP")]
    pub sources: Vec<std::net::IpAddr>,
    /// Exit 1 when any connection failed or was dropped.
    #[arg(long)]
    pub strict: bool,
}

/// Where `wschat bench` ends a message's latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RxClock {
    /// The kernel's receive timestamp of the data (`SO_TIMESTAMPNS`).
    Kernel,
    /// The moment the load generator read the data.
    Read,
}

/// `wschat decode`
#[derive(Debug, Args, Clone)]
pub struct DecodeArgs {
    /// pcap or pcapng file(s); `-` reads stdin.
    #[arg(required_unless_present = "interface")]
    pub files: Vec<PathBuf>,
    /// Live capture on this interface (needs the `live` feature).
    #[arg(short = 'i', long = "interface")]
    pub interface: Option<String>,
    /// BPF capture filter for live capture.
    #[arg(long)]
    pub filter: Option<String>,
    /// Decode this TCP port as WebSocket even without a handshake (repeatable).
    #[arg(long = "ws-port", value_name = "PORT")]
    pub ws_ports: Vec<u16>,
    /// Detail tree per frame.
    #[arg(short = 'V', long = "verbose-tree")]
    pub tree: bool,
    /// Hex dump of each frame and its unmasked payload.
    #[arg(short = 'x', long = "hex")]
    pub hex: bool,
    /// JSON Lines, one object per event.
    #[arg(long)]
    pub json: bool,
    /// The conversation as a chat transcript per stream.
    #[arg(long)]
    pub follow: bool,
    /// Only this TCP stream (index, as tshark's tcp.stream).
    #[arg(long)]
    pub stream: Option<u64>,
    /// Only connections with this port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Only Socket.IO events with this name.
    #[arg(long)]
    pub event: Option<String>,
    /// Summary: streams, frames by opcode, bytes, events by name, anomalies.
    #[arg(long)]
    pub stats: bool,
    /// Exit 1 when any anomaly was found.
    #[arg(long)]
    pub strict: bool,
    /// Stop after N packets.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Also list packets with nothing decoded in them (pure ACKs, non-TCP), as tshark does.
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// Parse a duration such as `500ms`, `10s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!(
            "invalid duration `{s}`: must be a non-negative number of seconds"
        ));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration `{s}` ({e}); try 500ms, 10s or 2m"))
}

/// Parse a rate such as `20/s`, `1200/m`, `0.5/s` or a bare number per second; must be > 0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, per) = match t.split_once('/') {
        Some((n, unit)) => {
            let per = match unit.trim() {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                "h" | "hour" => 3600.0,
                other => {
                    return Err(format!(
                        "invalid rate `{s}`: unknown unit `{other}` (use /s, /m or /h)"
                    ));
                }
            };
            (n.trim(), per)
        }
        None => (t, 1.0),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid rate `{s}`: expected a number such as 20/s"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("invalid rate `{s}`: must be greater than zero"));
    }
    Ok(n / per)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rates_parse_with_units_and_reject_zero() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("120/m"), Ok(2.0));
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("x/s").is_err());
        assert!(parse_rate("3/d").is_err());
    }

    #[test]
    fn durations_parse_humantime_and_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
