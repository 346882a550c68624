//! The relay started inside the bench process when no `--url` is given: `wschat serve` with its
//! defaults on an ephemeral loopback port, on its own runtime and threads, stopped after the run.

use std::net::{Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;

use super::config::{Config, Mode};
use crate::serve::server::{ServerBuilder, ServerConfig};

/// A relay running on its own threads in this process.
pub struct InProcess {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl InProcess {
    /// Bind 127.0.0.1:0 and start relaying. The relay gets as many threads as the generator (it
    /// shares the machine with it). With `quiet`, the relay's threads log warnings and errors
    /// only (its per-connection info lines would drown the bench's output).
    pub fn start(cfg: &Config, quiet: bool) -> anyhow::Result<InProcess> {
        let threads = cfg.threads.max(1);
        let quiet_thread = move || {
            if quiet {
                let sub = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::WARN)
                    .with_writer(std::io::stderr)
                    .finish();
                // The guard would restore the global subscriber when dropped; these threads keep
                // the quiet one for their whole life.
                std::mem::forget(tracing::subscriber::set_default(sub));
            }
        };
        let runtime = if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("relay")
                .on_thread_start(quiet_thread)
                .enable_all()
                .build()
        }
        .context("while starting the in-process relay's runtime")?;
        let config = ServerConfig {
            // As many connections as the bench will open, and then some.
            max_connections: (cfg.clients * 2).max(ServerConfig::default().max_connections),
            ..ServerConfig::default()
        };
        let server = {
            let _guard = runtime.enter();
            crate::serve::chat_server(ServerBuilder::new(config))
                .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .context("while starting the in-process relay on 127.0.0.1")?
        };
        let addr = server
            .local_addr()
            .context("while reading the relay's address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                quiet_thread();
                runtime.block_on(async move {
                    server
                        .run(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("while starting the in-process relay's thread")?;
        Ok(InProcess {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The URL to bench: Socket.IO at `/`, or the relay's `/echo` for `--raw`.
    pub fn url(&self, mode: Mode) -> String {
        match mode {
            Mode::Raw => format!("ws://{}/echo", self.addr),
            _ => format!("http://{}", self.addr),
        }
    }

    /// Shut the relay down and wait for it (bounded by its own shutdown grace).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}
