//! One Socket.IO client driver over the protocol core, used by `send` and `bench`.
