//! wschat: build, test, load and debug real-time chat over WebSockets and Socket.IO.
//!
//! Data flows one way: bytes -> [`wire`] views -> [`proto`] state machines -> the command that uses
//! them -> rendering. Every command reuses the same core.
//!
//! - [`wire`]: pure, zero-copy parsing and encoding of RFC 6455 frames, the HTTP Upgrade handshake
//!   and permessage-deflate. Never panics on input.
//! - [`proto`]: the sans-IO protocol core (Engine.IO v4, Socket.IO v5, the chat events). No sockets,
//!   no tokio, no clock: time is passed in.
//! - [`serve`]: the relay (`wschat serve`).
//! - [`client`]: one Socket.IO client driver shared by [`send`] and [`bench`].
//! - [`decode`]: capture input, TCP reassembly, per-stream decoding and rendering (`wschat decode`).

pub mod bench;
pub mod cli;
pub mod client;
pub mod decode;
pub mod proto;
pub mod send;
pub mod serve;
pub mod wire;
