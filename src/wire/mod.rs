//! Pure, zero-copy parsing and encoding of captured or live bytes; nothing here panics on input.
//!
//! Parsers return `Ok(None)` when they need more bytes and `Err` with a kind and a byte offset when
//! the bytes are wrong (DESIGN.md, convention 2).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod deflate;
pub mod http;
pub mod ws;
