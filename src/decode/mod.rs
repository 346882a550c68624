//! The `wschat decode` command: captures into TCP streams, handshakes, frames and Socket.IO packets.

use std::process::ExitCode;

/// Run the command. (Placeholder until the decode issue lands; replaced by the real implementation.)
pub fn run(
    _args: &crate::cli::DecodeArgs,
    _global: &crate::cli::Global,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wschat decode` is not built yet")
}
