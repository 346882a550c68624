//! The sans-IO protocol core: Engine.IO v4, Socket.IO v5 and the chat events.
//!
//! No sockets, no tokio, no clock: time and randomness are passed in by the caller, so the server,
//! the client and the load tester all drive the same code, and tests run with a fake clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod chat;
pub mod engineio;
pub mod json;
pub mod socketio;
