//! The relay (`wschat serve`): HTTP routes, transports, rooms and the broadcast adapter.

use std::process::ExitCode;

/// Run the command. (Placeholder until the serve issue lands; replaced by the real implementation.)
pub fn run(
    _args: &crate::cli::ServeArgs,
    _global: &crate::cli::Global,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wschat serve` is not built yet")
}
