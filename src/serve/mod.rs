//! The relay (`wschat serve`): HTTP routes, transports, rooms and the broadcast adapter.
//!
//! The server is a library with pluggable applications: [`server::ServerBuilder`] mounts Engine.IO
//! endpoints ([`engine::EngineEndpoint`]) at paths; an endpoint runs either a raw Engine.IO
//! application ([`engine::EngineApp`], e.g. the echo server the Engine.IO test-suite expects) or the
//! Socket.IO layer ([`socketio::SocketIoServer`]) with a [`socketio::SioApp`] on top (the chat of the
//! original app, [`chat::ChatApp`], or the Socket.IO test-suite fixture in `examples/`). Rooms live
//! behind the [`adapter::Adapter`] trait. Every byte on the wire goes through the shared core:
//! `crate::wire` for frames and handshakes, `crate::proto` for Engine.IO / Socket.IO packets.
//!
//! Layout: [`server`] (listener, dispatch, shutdown), [`http`] (routing, CORS, page, health,
//! metrics), [`wsconn`] (the WebSocket connection driver), [`engine`] (Engine.IO sessions over
//! polling and WebSocket), [`socketio`] (namespaces, sockets, acks, attachments), [`chat`] (the chat
//! application), [`plainws`] (`/ws/ROOM` and `/echo`), [`outbox`] (bounded per-client queues),
//! [`adapter`] (rooms), [`redis`] (rooms shared by a cluster over Redis), [`metrics`],
//! [`static_files`], [`assets`].

// Live-path code must not panic on anything a client sends (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod adapter;
pub mod assets;
pub mod chat;
pub mod engine;
pub mod fixture;
pub mod http;
pub mod load;
pub mod metrics;
pub mod outbox;
pub mod plainws;
pub mod redis;
pub mod server;
pub mod socketio;
pub mod static_files;
pub mod wsconn;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::{Global, ServeArgs};

/// One line on stdout; a closed stdout (its reader went away) must not stop the relay.
macro_rules! sayln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($t)*);
        let _ = out.flush();
    }};
}
use server::{ServerBuilder, ServerConfig};

/// Longest `--write-window`: a bare `6` is six seconds, not the six milliseconds meant.
const MAX_WRITE_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

/// The server configuration a `wschat serve` command line asks for.
pub fn config_from_args(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    if args.max_payload == 0 {
        anyhow::bail!("--max-payload must be at least 1 byte");
    }
    if args.queue == 0 {
        anyhow::bail!("--queue must be at least 1 packet");
    }
    if args.ping_interval.is_zero() || args.ping_timeout.is_zero() {
        anyhow::bail!("--ping-interval and --ping-timeout must be greater than zero");
    }
    if args.connect_timeout.is_zero() {
        anyhow::bail!(
            "--connect-timeout must be greater than zero (every session would close before its CONNECT)"
        );
    }
    if args.write_window > MAX_WRITE_WINDOW {
        anyhow::bail!(
            "--write-window {}: at most {}ms (while the server is saturated, every message may wait that long)",
            humantime::format_duration(args.write_window),
            MAX_WRITE_WINDOW.as_millis()
        );
    }
    if let Some(dir) = &args.static_dir {
        static_files::StaticDir::open(dir)
            .with_context(|| format!("--static {}: cannot serve this folder", dir.display()))?;
    }
    Ok(ServerConfig {
        ping_interval: args.ping_interval,
        ping_timeout: args.ping_timeout,
        max_payload: args.max_payload,
        connect_timeout: args.connect_timeout,
        queue_packets: args.queue,
        queue_bytes: args.queue_bytes.max(args.max_payload.saturating_mul(2)),
        max_connections: args.max_connections,
        static_dir: args.static_dir.clone(),
        reuse_port: args.reuse_port,
        ..ServerConfig::default()
    })
}

/// Run the command: bind, print where to connect, relay until SIGINT/SIGTERM, shut down gracefully.
pub fn run(args: &ServeArgs, _global: &Global) -> anyhow::Result<ExitCode> {
    let config = config_from_args(args)?;
    let mut builder = match args.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        // One core: a current-thread runtime, no cross-thread wake-ups.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = load::install(&mut builder, args.write_window)
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    raise_fd_limit(args.max_connections);
    let json = args.json;
    let listen = args.listen;
    let reuse_port = args.reuse_port;
    let cluster = args.redis.as_ref().map(|url| redis::RedisOptions {
        url: url.clone(),
        prefix: args.redis_prefix.clone(),
    });
    runtime.block_on(async move {
        let builder = ServerBuilder::new(config);
        let bus = match cluster {
            // The error is the whole line: `cannot connect to Redis at HOST:PORT: <cause>`.
            Some(opts) => Some(redis::RedisBus::connect(opts, builder.metrics()).await?),
            None => None,
        };
        let builder = chat_server_on(builder, bus);
        let server = builder.bind(listen).map_err(|e| {
            let hint = if reuse_port && e.kind() == std::io::ErrorKind::AddrInUse {
                " (--reuse-port shares an address only with processes that also use it)"
            } else {
                ""
            };
            anyhow::Error::new(e).context(format!("while listening on {listen}{hint}"))
        })?;
        let addr = server
            .local_addr()
            .context("while reading the bound address")?;
        announce(addr, json);
        let left = server.run(shutdown_signal()).await;
        if json {
            sayln!(
                "{}",
                serde_json::json!({"event": "stopped", "dropped_connections": left})
            );
        } else {
            sayln!("wschat: stopped");
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Raise the soft open-files limit to the hard limit (each connection is a descriptor) and say so
/// when it still cannot hold `--max-connections`.
fn raise_fd_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            if (limit as usize) < max_connections.saturating_add(64) {
                tracing::info!(
                    limit,
                    max_connections,
                    "the open files limit caps concurrent clients below --max-connections (raise it with ulimit -n)"
                );
            } else {
                tracing::debug!(limit, "open files limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

/// Mount the chat relay: Socket.IO at `/socket.io/` running [`chat::ChatApp`], and its `/`
/// namespace rooms shared with plain WebSocket clients at `/ws/ROOM`.
pub fn chat_server(builder: ServerBuilder) -> ServerBuilder {
    chat_server_on(builder, None)
}

/// [`chat_server`], with the rooms of every namespace shared over Redis when `cluster` is given.
pub fn chat_server_on(
    builder: ServerBuilder,
    cluster: Option<Arc<redis::RedisBus>>,
) -> ServerBuilder {
    let metrics = builder.metrics();
    let app = Arc::new(chat::ChatApp::new(metrics.clone()));
    let timeout = builder.config().connect_timeout;
    let sio = match cluster {
        Some(bus) => socketio::SocketIoServer::with_adapters(
            app,
            metrics,
            timeout,
            Box::new(move |nsp| bus.adapter(nsp)),
        ),
        None => socketio::SocketIoServer::new(app, metrics, timeout),
    };
    let rooms = sio.namespace("/").map(|ns| ns.adapter.clone());
    let builder = builder.mount("/socket.io/", engine::EngineEndpoint::new(Arc::new(sio)));
    match rooms {
        Some(rooms) => builder.plain_rooms(rooms),
        None => builder,
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// The URLs people can open: the bound address, or every interface address for a wildcard bind.
pub fn urls(addr: SocketAddr) -> Vec<(String, String)> {
    let port = addr.port();
    let fmt = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
    };
    if !addr.ip().is_unspecified() {
        return vec![(fmt(addr.ip()), String::new())];
    }
    let mut out = Vec::new();
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        let mut ifaces: Vec<_> = ifaces
            .into_iter()
            .filter(|i| addr.is_ipv6() || i.ip().is_ipv4())
            // Link-local v6 addresses need a zone id in URLs; browsers rarely accept them.
            .filter(|i| !matches!(i.ip(), IpAddr::V6(v6) if v6.is_unicast_link_local()))
            .collect();
        ifaces.sort_by_key(|i| (!i.is_loopback(), i.ip().is_ipv6(), i.name.clone()));
        for i in ifaces {
            out.push((fmt(i.ip()), i.name.clone()));
        }
    }
    if out.is_empty() {
        out.push((fmt(addr.ip()), String::new()));
    }
    out
}

fn announce(addr: SocketAddr, json: bool) {
    let urls = urls(addr);
    if json {
        let list: Vec<_> = urls
            .iter()
            .map(|(u, i)| serde_json::json!({"url": u, "interface": i}))
            .collect();
        sayln!(
            "{}",
            serde_json::json!({"event": "listening", "addr": addr.to_string(), "port": addr.port(), "urls": list})
        );
        return;
    }
    sayln!(
        "wschat relay listening on http://{addr}/ (Socket.IO at /socket.io/, plain WebSocket at /ws/ROOM)"
    );
    if addr.ip().is_unspecified() {
        sayln!("open the chat from this machine or the LAN:");
        for (url, iface) in &urls {
            sayln!("  {url:<32} {iface}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_address_is_its_own_url() {
        let u = urls("127.0.0.1:3001".parse().unwrap());
        assert_eq!(
            u,
            vec![("http://127.0.0.1:3001/".to_string(), String::new())]
        );
        let u = urls("[::1]:3001".parse().unwrap());
        assert_eq!(u[0].0, "http://[::1]:3001/");
    }

    #[test]
    fn a_wildcard_bind_lists_the_interfaces_loopback_first() {
        let u = urls("0.0.0.0:3001".parse().unwrap());
        assert!(!u.is_empty());
        assert!(
            u.iter()
                .all(|(url, _)| url.starts_with("http://") && url.ends_with(":3001/"))
        );
        assert!(
            u.iter().all(|(url, _)| !url.contains('[')),
            "IPv4 wildcard lists IPv4 only"
        );
        if u.len() > 1 {
            assert_eq!(u[0].0, "http://127.0.0.1:3001/", "{u:?}");
        }
    }

    #[test]
    fn command_line_limits_are_checked() {
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["wschat", "serve"];
            argv.extend_from_slice(extra);
            match crate::cli::Cli::parse_from(argv).command {
                crate::cli::Command::Serve(a) => config_from_args(&a),
                _ => unreachable!("serve"),
            }
        };
        let c = parse(&[]).unwrap();
        assert_eq!(c.ping_interval, std::time::Duration::from_secs(25));
        assert_eq!(c.ping_timeout, std::time::Duration::from_secs(20));
        assert_eq!(c.max_payload, 1_000_000);
        assert_eq!(c.connect_timeout, std::time::Duration::from_secs(45));
        assert!(parse(&["--max-payload", "0"]).is_err());
        assert!(parse(&["--queue", "0"]).is_err());
        assert!(parse(&["--ping-interval", "0"]).is_err());
        let e = parse(&["--connect-timeout", "0"]).unwrap_err().to_string();
        assert!(e.contains("--connect-timeout"), "{e}");
        assert!(parse(&["--connect-timeout", "1ms"]).is_ok());
        let c = parse(&["--max-payload", "5000000", "--queue-bytes", "1"]).unwrap();
        assert_eq!(
            c.queue_bytes, 10_000_000,
            "the queue holds at least two maximal messages"
        );
    }
}
