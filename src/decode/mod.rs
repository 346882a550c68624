//! The `wschat decode` command: captures into TCP streams, handshakes, frames and Socket.IO packets.
//!
//! Data flows one way: [`capture`] (pcap/pcapng/live, streaming) -> [`net`] (link, IP, TCP
//! headers) -> [`tcp`] (conversations, sequence analysis, reassembly) -> [`stream`] (HTTP,
//! [`websocket`] frames, [`sio`] Engine.IO/Socket.IO) -> [`event`]s -> [`render`] (every view) and
//! [`stats`]. [`decoder`] drives it for one run.

pub mod body;
pub mod capture;
pub mod decoder;
pub mod event;
pub mod ipfrag;
pub mod net;
pub mod pipe;
pub mod render;
pub mod sio;
pub mod stats;
pub mod stream;
pub mod tcp;
pub mod websocket;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::{DecodeArgs, Global};
use capture::{FileReader, Flow};
use decoder::{Decoder, Options};
use render::{Renderer, View};

/// The view the flags ask for.
pub fn view_for(args: &DecodeArgs) -> View {
    if args.stats && !args.tree && !args.follow && !args.hex {
        View::Stats
    } else if args.json {
        View::Json
    } else if args.follow {
        View::Follow
    } else if args.tree {
        View::Tree
    } else {
        View::List
    }
}

/// Run the command.
pub fn run(args: &DecodeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let color = global.use_color(stdout.is_terminal());
    let view = view_for(args);
    let mut renderer = if view == View::Json && args.interface.is_none() && worth_a_thread(args) {
        Renderer::json_on_thread(Box::new(stdout), args.stats, args.json)
            .context("while starting the output thread")?
    } else {
        Renderer::new(
            Box::new(stdout),
            view,
            args.hex,
            color,
            args.stats,
            args.json,
        )
    };
    let opts = Options {
        ws_ports: args.ws_ports.clone(),
        stream: args.stream,
        port: args.port,
        event: args.event.clone(),
        all: args.all,
        count: args.count,
        stats: args.stats,
        defer_sio: renderer.on_thread(),
    };
    let mut stats = {
        let mut decoder = Decoder::new(opts, &mut renderer);
        if let Some(iface) = &args.interface {
            live(iface, args.filter.as_deref(), &mut decoder)?;
        } else {
            if args.filter.is_some() {
                anyhow::bail!(
                    "--filter applies to live capture (-i) only; filter files with --stream/--port/--event"
                );
            }
            let mut next_number = 1;
            for path in &args.files {
                let mut reader = FileReader::open(path)?;
                let total = std::fs::metadata(path)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len());
                let mut progress = Progress::new(total, global.quiet);
                let mut stopped = false;
                let n = reader.for_each(next_number, |pkt| {
                    let flow = decoder.packet(pkt)?;
                    progress.tick(pkt.file_offset);
                    if flow == Flow::Stop {
                        stopped = true;
                    }
                    Ok(flow)
                })?;
                progress.done();
                next_number += n;
                if stopped {
                    break;
                }
            }
        }
        decoder.finish()?;
        std::mem::take(&mut decoder.stats)
    };
    renderer
        .finish(&stats)
        .context("while writing the output")?;
    stats.anomalies += renderer.late_anomalies();
    if args.strict && stats.anomalies > 0 {
        eprintln!(
            "wschat: {} anomal{} found (--strict)",
            stats.anomalies,
            if stats.anomalies == 1 { "y" } else { "ies" }
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Inputs from this size up are decoded and rendered on two threads (`--json`); below it, a
/// thread costs more than it saves.
const THREAD_MIN_BYTES: u64 = 1 << 20;

/// Whether `--json` should render on a second thread: files (not stdin, not live) of at least
/// [`THREAD_MIN_BYTES`] in all, on a machine with more than one CPU. `WSCHAT_DECODE_THREADS=1`
/// keeps one thread, `=2` uses two whatever the input (tests, benchmarks).
fn worth_a_thread(args: &DecodeArgs) -> bool {
    match std::env::var("WSCHAT_DECODE_THREADS").as_deref() {
        Ok("1") => return false,
        Ok("2") => return true,
        _ => {}
    }
    let total: u64 = args
        .files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok().filter(|m| m.is_file()))
        .map(|m| m.len())
        .sum();
    total >= THREAD_MIN_BYTES && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// A progress bar on stderr for inputs that take more than a second (only on a terminal).
/// `WSCHAT_PROGRESS_AFTER_MS` changes that second (the tests set 0).
struct Progress {
    total: Option<u64>,
    started: Instant,
    after: Duration,
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    ticks: u64,
}

impl Progress {
    fn new(total: Option<u64>, quiet: bool) -> Self {
        Progress {
            total,
            started: Instant::now(),
            after: std::env::var("WSCHAT_PROGRESS_AFTER_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::from_secs(1), Duration::from_millis),
            bar: None,
            enabled: !quiet && total.is_some() && std::io::stderr().is_terminal(),
            ticks: 0,
        }
    }

    fn tick(&mut self, position: u64) {
        self.ticks += 1;
        if !self.enabled || self.ticks % 2048 != 0 {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() >= self.after {
            let bar = indicatif::ProgressBar::with_draw_target(
                self.total,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} decoding [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            self.bar = Some(bar);
        }
        if let Some(b) = &self.bar {
            b.set_position(position);
        }
    }

    fn done(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(feature = "live")]
fn live(iface: &str, filter: Option<&str>, decoder: &mut Decoder<'_>) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    {
        // Ctrl-C ends the capture cleanly, so the summary and the transcripts still print.
        let stop = stop.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    stop.store(true, Ordering::Relaxed);
                }
            })
        });
    }
    capture::live::run(iface, filter, stop, |pkt| {
        let flow = decoder.packet(pkt)?;
        decoder.flush_output()?;
        Ok(flow)
    })?;
    Ok(())
}

#[cfg(not(feature = "live"))]
fn live(iface: &str, _filter: Option<&str>, _decoder: &mut Decoder<'_>) -> anyhow::Result<()> {
    anyhow::bail!(
        "live capture on {iface} needs the `live` feature (libpcap): rebuild with `cargo build --release --features live`"
    )
}
