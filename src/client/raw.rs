//! A plain WebSocket client (no Engine.IO / Socket.IO): what `send --raw` and `bench --raw` speak to
//! any `ws://` or `wss://` URL, such as the relay's `/ws/ROOM` and `/echo`.

use std::time::Duration;

use bytes::Bytes;

use super::ClientError;
use super::net::NetOptions;
use super::url::Endpoint;
use super::wsio::WsIo;
use crate::wire::ws::Message;

/// How to connect.
#[derive(Debug, Clone)]
pub struct RawOptions {
    /// The WebSocket URL (path and query are the request target).
    pub endpoint: Endpoint,
    pub net: NetOptions,
    /// Largest message accepted from the server.
    pub max_message: usize,
}

impl Default for RawOptions {
    fn default() -> Self {
        RawOptions {
            endpoint: Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 3001,
                authority: "127.0.0.1:3001".into(),
                path: "/".into(),
                query: None,
            },
            net: NetOptions::default(),
            max_message: 16 << 20,
        }
    }
}

/// A message from the server. Pings are answered inside the client and not shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMessage {
    Text(String),
    Binary(Bytes),
    /// The server's close frame (code, reason); the client has answered it.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// One plain WebSocket connection.
#[derive(Debug)]
pub struct RawClient {
    io: WsIo,
}

impl RawClient {
    /// Connect and run the Upgrade handshake.
    pub async fn connect(opts: RawOptions) -> Result<RawClient, ClientError> {
        let target = opts.endpoint.target();
        let io = WsIo::connect(&opts.endpoint, &target, &opts.net, opts.max_message).await?;
        Ok(RawClient { io })
    }

    /// Send a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.io.queue_text(text.as_bytes());
        self.io.flush().await
    }

    /// Send a binary message.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.io.queue_binary(data);
        self.io.flush().await
    }

    /// The next message from the server; `Ok(None)` when the connection ended without a close frame.
    /// Pings are answered with pongs (RFC 6455 §5.5.2); a close frame is answered (§5.5.1).
    pub async fn next_message(&mut self) -> Result<Option<RawMessage>, ClientError> {
        loop {
            let Some(m) = self.io.next_message().await? else {
                return Ok(None);
            };
            match m {
                Message::Text(t) => return Ok(Some(RawMessage::Text(t.as_str().to_string()))),
                Message::Binary(b) => return Ok(Some(RawMessage::Binary(b))),
                Message::Ping(p) => {
                    self.io.queue_pong(&p);
                    self.io.flush().await?;
                }
                Message::Pong(_) => {}
                Message::Close(c) => {
                    let (code, reason) = match c {
                        Some((code, reason)) => (Some(code), reason),
                        None => (None, String::new()),
                    };
                    // Echo the status code back (RFC 6455 §5.5.1).
                    self.io.queue_close(code, "");
                    let _ = self.io.flush().await;
                    return Ok(Some(RawMessage::Close { code, reason }));
                }
            }
        }
    }

    /// Close with `code` and wait (bounded) for the server's close.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), ClientError> {
        match tokio::time::timeout(Duration::from_secs(2), self.io.close(Some(code), reason)).await
        {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }
}
