//! RFC 6455 frame header view, opcodes, lengths, masking and encoding.
