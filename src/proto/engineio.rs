//! Engine.IO v4 packets, polling payloads and the sans-IO session state machine.
