//! The relay started inside the bench process when no `--url` is given.

use super::config::{Config, Mode};

/// A relay running on its own threads in this process.
pub struct InProcess {
    port: u16,
}

impl InProcess {
    pub fn start(cfg: &Config) -> anyhow::Result<InProcess> {
        let _ = cfg;
        anyhow::bail!("the in-process relay is not wired in yet; pass --url")
    }

    /// The URL to bench: Socket.IO at `/`, or the relay's `/echo` for `--raw`.
    pub fn url(&self, mode: Mode) -> String {
        match mode {
            Mode::Raw => format!("ws://127.0.0.1:{}/echo", self.port),
            _ => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn stop(self) {}
}
