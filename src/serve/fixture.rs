//! The fixture server the official Engine.IO v4 and Socket.IO v5 test-suites expect
//! (docs/socketio-protocol.md section 4), as a library application: an Engine.IO echo server at
//! `/engine.io/` and Socket.IO at `/socket.io/` with the namespaces `/` and `/custom` (emit `auth`
//! with the CONNECT payload, re-emit `message` as `message-back` with its attachments, ack
//! `message-with-ack` with its own arguments). `examples/conformance.rs` runs it on port 3000.

use std::sync::Arc;
use std::time::Duration;

use super::engine::{EchoApp, EngineEndpoint};
use super::outbox::CloseReason;
use super::server::{ServerBuilder, ServerConfig};
use super::socketio::{Event, SioApp, Socket, SocketIoServer};

/// The Socket.IO suite's application.
pub struct SuiteApp;

impl SioApp for SuiteApp {
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

/// The suites' settings: pingInterval 300 ms, pingTimeout 200 ms, connectTimeout 1000 ms,
/// maxPayload 1 MB, no web page.
pub fn suite_config() -> ServerConfig {
    ServerConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(1000),
        max_payload: 1_000_000,
        web_page: false,
        ..ServerConfig::default()
    }
}

/// Mount the Engine.IO echo endpoint and the Socket.IO fixture.
pub fn suite_server(builder: ServerBuilder) -> ServerBuilder {
    let connect_timeout = builder.config().connect_timeout;
    let sio = SocketIoServer::new(Arc::new(SuiteApp), builder.metrics(), connect_timeout);
    builder
        .mount("/engine.io/", EngineEndpoint::new(Arc::new(EchoApp)))
        .mount("/socket.io/", EngineEndpoint::new(Arc::new(sio)))
}
