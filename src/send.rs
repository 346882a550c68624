//! The `wschat send` command: a scripted Socket.IO (or raw WebSocket) client for rooms.

use std::process::ExitCode;

/// Run the command. (Placeholder until the send issue lands; replaced by the real implementation.)
pub fn run(_args: &crate::cli::SendArgs, _global: &crate::cli::Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wschat send` is not built yet")
}
