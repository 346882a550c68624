//! HTTP/1.1 Upgrade request/response heads, Sec-WebSocket-Accept, subprotocols and extensions.
