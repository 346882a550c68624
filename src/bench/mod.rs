//! The `wschat bench` command: N concurrent clients, open-loop load, HDR latency, report.

use std::process::ExitCode;

/// Run the command. (Placeholder until the bench issue lands; replaced by the real implementation.)
pub fn run(
    _args: &crate::cli::BenchArgs,
    _global: &crate::cli::Global,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wschat bench` is not built yet")
}
