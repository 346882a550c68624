//! The official Engine.IO v4 and Socket.IO v5 test-suites' fixture server, built on the library's
//! relay: port 3000, pingInterval 300 ms, pingTimeout 200 ms, connectTimeout 1000 ms, maxPayload
//! 1 MB; an Engine.IO echo server at `/engine.io/` and Socket.IO at `/socket.io/` with the
//! namespaces `/` and `/custom` (emit `auth` with the CONNECT payload on connect, re-emit `message`
//! as `message-back`, ack `message-with-ack` with its own arguments).
//!
//! Run: `cargo run --example conformance [-- --port 3000]`, then `npx mocha test-suite.js` in each
//! suite's folder (docs/socketio-protocol.md section 4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use wschat::serve::engine::{EchoApp, EngineEndpoint};
use wschat::serve::outbox::CloseReason;
use wschat::serve::server::{ServerBuilder, ServerConfig};
use wschat::serve::socketio::{Event, SioApp, Socket, SocketIoServer};

/// The Socket.IO suite's application.
struct Fixture;

impl SioApp for Fixture {
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/custom"
    }

    /// `socket.emit("auth", socket.handshake.auth)`.
    fn on_connect(&self, socket: &Arc<Socket>, auth: &str) {
        socket.emit_raw("auth", auth);
    }

    fn on_event(&self, socket: &Arc<Socket>, ev: Event<'_>) -> Result<(), CloseReason> {
        match ev.name {
            // `socket.emit("message-back", ...args)`, buffers included.
            "message" => socket.send_raw_with_attachments(
                None,
                Some("message-back"),
                &ev.args,
                &ev.attachments,
            ),
            // `callback(...args)`.
            "message-with-ack" => {
                if let Some(id) = ev.ack {
                    socket.send_raw_with_attachments(Some(id), None, &ev.args, &ev.attachments);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let config = ServerConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(1000),
        max_payload: 1_000_000,
        web_page: false,
        ..ServerConfig::default()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conformance: error: while starting the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let connect_timeout = config.connect_timeout;
        let builder = ServerBuilder::new(config);
        let sio = SocketIoServer::new(Arc::new(Fixture), builder.metrics(), connect_timeout);
        let builder = builder
            .mount("/engine.io/", EngineEndpoint::new(Arc::new(EchoApp)))
            .mount("/socket.io/", EngineEndpoint::new(Arc::new(sio)));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = match builder.bind(addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("conformance: error: while listening on {addr}: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        println!(
            "conformance fixture listening on http://{}/",
            server.local_addr().map_or(addr, |a| a)
        );
        server.run(wschat::serve::shutdown_signal()).await;
        std::process::ExitCode::SUCCESS
    })
}
