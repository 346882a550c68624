//! One bench connection over the shared client driver ([`crate::client`]): Socket.IO over
//! WebSocket (or a plain WebSocket for `--raw`), with batched reads handed to a per-packet callback.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::config::{Config, Mode};

/// Why a connection failed or ended; [`ConnError::reason`] groups them in the report.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

impl ConnError {
    /// A short reason without addresses or ports, so equal failures group together.
    pub fn reason(&self) -> String {
        match self {
            ConnError::Timeout(_) => "connect timed out".into(),
            ConnError::Other(s) => s.clone(),
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub mode: Mode,
    pub namespace: String,
}

impl Target {
    pub fn new(url: &str, cfg: &Config) -> Result<Target, ConnError> {
        Ok(Target {
            url: url.to_string(),
            mode: cfg.mode,
            namespace: cfg.namespace.clone(),
        })
    }

    pub fn ip(&self) -> Option<IpAddr> {
        None
    }

    pub fn loopback_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// Connect once and close, so an unreachable server is reported before the run.
pub async fn probe(target: &Target, timeout: Duration) -> Result<(), ConnError> {
    let _ = (target, timeout);
    Err(ConnError::Other(
        "the client driver is not wired in yet".into(),
    ))
}

/// One connection.
pub struct BenchConn {}

impl BenchConn {
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<BenchConn, ConnError> {
        let _ = (target, source);
        Err(ConnError::Other(
            "the client driver is not wired in yet".into(),
        ))
    }

    pub fn queue(&mut self, packet: &[u8]) {
        let _ = packet;
    }

    pub async fn flush(&mut self) -> Result<(), ConnError> {
        Ok(())
    }

    pub async fn read(
        &mut self,
        mut on_packet: impl FnMut(&[u8], Instant),
    ) -> Result<(), ConnError> {
        let _ = &mut on_packet;
        std::future::pending().await
    }

    pub async fn close(&mut self) {}
}
