//! The `wschat bench` command: N concurrent clients, open-loop load, HDR latency, report.
//!
//! Layout: [`config`] (flags, validation), [`schedule`] (open-loop intended send times),
//! [`payload`] (message ids and the receive-side scan), [`conn`] (one bench connection over the
//! shared client driver), [`driver`] (worker threads and per-client tasks), [`stats`] (histograms,
//! exact delivery accounting), [`recv`] (what a received id means), [`progress`] (live counters, progress bar), [`report`] (the one
//! place that renders results), [`sys`] (fd limit, CPU time, memory, loopback process lookup),
//! [`inproc`] (the relay started in this process when no `--url` is given).

pub mod config;
pub mod conn;
pub mod driver;
mod fast;
pub mod inproc;
pub mod pacer;
pub mod payload;
pub mod progress;
pub mod recv;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod sys;

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};

use crate::cli::{BenchArgs, Global, TransportChoice};
use config::{Config, Mode};
use conn::Target;
use driver::{IntervalSnapshot, Phase, Shared, WorkerResult};
use progress::{Live, Progress, Totals, interval_p99};
use report::{Check, Report};
use schedule::Schedule;
use stats::{ClientLog, WorkerStats};
use sys::CpuTime;

/// Run the command.
pub fn run(args: &BenchArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let cfg = Config::from_args(args)?;
    let in_process = cfg.url.is_none();
    // Each client is one socket; an in-process relay holds the other end too.
    let needed = (cfg.clients as u64) * if in_process { 2 } else { 1 } + 512;
    let limit = sys::raise_fd_limit(needed).context("while raising the open-file limit")?;
    if limit < needed {
        anyhow::bail!(
            "--clients {} needs about {needed} file descriptors but this process may open only {limit} (raise `ulimit -n`)",
            cfg.clients
        );
    }

    let server = if in_process {
        Some(inproc::InProcess::start(&cfg, global.verbose == 0)?)
    } else {
        None
    };
    let url = match (&cfg.url, &server) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.url(cfg.mode),
        (None, None) => unreachable!("a server is started when no --url is given"),
    };
    let target =
        Target::new(&url, &cfg).with_context(|| format!("while preparing to connect to {url}"))?;
    let control_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    // One connection first: an unreachable URL or a refused namespace is a usage error (exit 2),
    // not a report full of identical failures.
    control_rt
        .block_on(conn::probe(&target))
        .with_context(|| format!("cannot bench {url}"))?;

    let sources = if cfg.sources.is_empty() {
        target
            .ip()
            .map(|ip| sys::auto_source_addrs(ip, cfg.clients as u64))
            .unwrap_or_default()
    } else {
        cfg.sources.clone()
    };
    let (server_desc, server_pids) = match &server {
        Some(_) => (
            "in-process wschat relay".to_string(),
            vec![std::process::id()],
        ),
        None => {
            let pids = target
                .loopback_addr()
                .map(sys::listening_pids)
                .unwrap_or_default();
            ("external server".to_string(), pids)
        }
    };

    let epoch = Instant::now();
    let (phase_tx, _) = watch::channel(Phase::Connecting);
    let shared = Arc::new(Shared {
        epoch,
        run_id: run_id(),
        target,
        sources,
        phase: phase_tx,
        permits: Arc::new(Semaphore::new(cfg.connect_concurrency)),
        live: (0..cfg.threads).map(|_| Live::default()).collect(),
        clock: chrono::Local::now().format("%-H:%M").to_string(),
        cfg: cfg.clone(),
    });

    let rss_before = memory_probe(&server, &server_pids);
    let cpu_before = Cpus::now(server.is_some(), &server_pids);
    let (snap_tx, snap_rx) = mpsc::channel::<IntervalSnapshot>();
    let mut workers = Vec::with_capacity(cfg.threads);
    for w in 0..cfg.threads {
        let sh = shared.clone();
        let tx = snap_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("bench-{w}"))
            .spawn(move || driver::run_worker(w, sh, tx))
            .context("while starting a worker thread")?;
        workers.push(h);
    }
    drop(snap_tx);

    let show_progress = !global.quiet && !cfg.json && std::io::stderr().is_terminal();
    let outcome = control_rt.block_on(control(
        &shared,
        snap_rx,
        Progress::new(show_progress),
        &server,
        &server_pids,
    ));

    let mut results = Vec::with_capacity(workers.len());
    for h in workers {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => return Err(e).context("while running a worker thread"),
            Err(_) => anyhow::bail!("a worker thread panicked"),
        }
    }
    let cpu_after = Cpus::now(server.is_some(), &server_pids);
    let wall = epoch.elapsed();
    if let Some(s) = server {
        s.stop();
    }

    let report = build_report(
        &shared,
        &url,
        server_desc,
        &server_pids,
        results,
        &outcome,
        (rss_before, cpu_before, cpu_after, wall),
    );
    emit(&report, &cfg, global)?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A short random id for room names.
fn run_id() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// What the control loop saw.
struct Outcome {
    interrupted: bool,
    /// The schedule as it ended (`None` in idle mode or when stopped while connecting).
    schedule: Option<Schedule>,
    /// Wall time of the initial connect phase.
    connect_phase: Duration,
    /// Memory once every client had connected, and at the end of the load.
    rss_connected: Option<u64>,
    rss_loaded: Option<u64>,
    /// Held time in idle mode.
    held: Duration,
    /// CPU of the control thread.
    control_cpu: CpuTime,
    /// Connections open when the run was told to stop.
    open_at_stop: u64,
}

/// The main thread: drive the phases, show progress, handle Ctrl-C.
async fn control(
    sh: &Arc<Shared>,
    snaps: mpsc::Receiver<IntervalSnapshot>,
    mut progress: Progress,
    server: &Option<inproc::InProcess>,
    server_pids: &[u32],
) -> Outcome {
    let cpu0 = sys::thread_cpu();
    let cfg = &sh.cfg;
    let mut out = Outcome {
        interrupted: false,
        schedule: None,
        connect_phase: Duration::ZERO,
        rss_connected: None,
        rss_loaded: None,
        held: Duration::ZERO,
        control_cpu: CpuTime::default(),
        open_at_stop: 0,
    };
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last: Vec<Histogram<u64>> =
        (0..cfg.threads).map(|_| stats::new_coarse_hist()).collect();
    let drain_snaps = |last: &mut Vec<Histogram<u64>>| {
        while let Ok((w, h)) = snaps.try_recv() {
            if let Some(slot) = last.get_mut(w) {
                *slot = h;
            }
        }
    };

    // 1. Connect (ramped), until every client connected or failed.
    let total = cfg.clients as u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => {
                out.interrupted = true;
                break;
            }
        }
        let t = Totals::of(&sh.live);
        progress.connecting(&t, total);
        if t.connect_done + t.connect_failed >= total {
            break;
        }
    }
    out.connect_phase = sh.epoch.elapsed();
    if out.interrupted {
        out.open_at_stop = Totals::of(&sh.live).open;
        let _ = sh.phase.send(Phase::Stop);
        out.control_cpu = sys::thread_cpu().saturating_sub(cpu0);
        return out;
    }
    // Let the last joins settle before measuring memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    out.rss_connected = memory_probe(server, server_pids);

    if cfg.mode == Mode::Idle {
        // 2a. Hold.
        let held_from = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut ctrl_c => {
                    out.interrupted = true;
                    break;
                }
            }
            let el = held_from.elapsed();
            progress.running("holding", &Totals::of(&sh.live), el, cfg.duration, None);
            if el >= cfg.duration {
                break;
            }
        }
        out.held = held_from.elapsed();
        out.rss_loaded = memory_probe(server, server_pids);
        out.open_at_stop = Totals::of(&sh.live).open;
        let _ = sh.phase.send(Phase::Stop);
        progress.finish();
        out.control_cpu = sys::thread_cpu().saturating_sub(cpu0);
        return out;
    }

    // 2b. Send on the open-loop schedule: warmup, then the measured window.
    let start_ns = sh.now_ns() + 50_000_000;
    let mut schedule = Schedule::new(
        start_ns,
        cfg.rate,
        cfg.clients,
        cfg.warmup.as_nanos() as u64,
        cfg.duration.as_nanos() as u64,
    );
    let _ = sh.phase.send(Phase::Run(schedule));
    let total_run = cfg.warmup + cfg.duration;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => {
                // Stop sending now; what was due so far is measured, then the grace period.
                out.interrupted = true;
                let now = sh.now_ns().div_ceil(1000) * 1000;
                schedule.end_ns = now.max(schedule.start_ns).min(schedule.end_ns);
                schedule.measure_start_ns = schedule.measure_start_ns.min(schedule.end_ns);
                let _ = sh.phase.send(Phase::Run(schedule));
                break;
            }
        }
        drain_snaps(&mut last);
        let now = sh.now_ns();
        let el = Duration::from_nanos(now.saturating_sub(schedule.start_ns));
        let label = if now < schedule.measure_start_ns {
            "warmup"
        } else {
            "measuring"
        };
        progress.running(
            label,
            &Totals::of(&sh.live),
            el,
            total_run,
            interval_p99(&last),
        );
        if now >= schedule.end_ns {
            break;
        }
    }
    out.rss_loaded = memory_probe(server, server_pids);
    // 3. Grace: no more sends; in-flight messages may still arrive.
    let _ = sh.phase.send(Phase::Drain(schedule));
    let grace_end = Instant::now() + cfg.grace;
    let mut ctrl_c2 = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c2 => break,
        }
        drain_snaps(&mut last);
        progress.running(
            "grace",
            &Totals::of(&sh.live),
            total_run,
            total_run,
            interval_p99(&last),
        );
        if Instant::now() >= grace_end {
            break;
        }
    }
    out.open_at_stop = Totals::of(&sh.live).open;
    let _ = sh.phase.send(Phase::Stop);
    progress.finish();
    out.schedule = Some(schedule);
    out.control_cpu = sys::thread_cpu().saturating_sub(cpu0);
    out
}

/// Server memory now: the server processes' when known (summed: several share a port with
/// SO_REUSEPORT), this process's for the in-process relay.
fn memory_probe(server: &Option<inproc::InProcess>, pids: &[u32]) -> Option<u64> {
    match server {
        Some(_) => sys::self_rss_bytes(),
        None if pids.is_empty() => None,
        None => pids.iter().map(|&p| sys::rss_bytes(p)).sum(),
    }
}

/// CPU counters at one moment.
#[derive(Clone, Copy)]
struct Cpus {
    process: CpuTime,
    server_pid: Option<CpuTime>,
}

impl Cpus {
    fn now(in_process: bool, pids: &[u32]) -> Cpus {
        Cpus {
            process: sys::process_cpu(),
            server_pid: if in_process || pids.is_empty() {
                None
            } else {
                pids.iter().try_fold(CpuTime::default(), |sum, &p| {
                    sys::pid_cpu(p).map(|c| sum.add(c))
                })
            },
        }
    }
}

fn build_report(
    sh: &Shared,
    url: &str,
    server_desc: String,
    server_pids: &[u32],
    results: Vec<WorkerResult>,
    out: &Outcome,
    (rss_before, cpu_before, cpu_after, wall): (Option<u64>, Cpus, Cpus, Duration),
) -> Report {
    let cfg = &sh.cfg;
    let mut stats = WorkerStats::default();
    let mut generator = CpuTime::default();
    let mut logs: Vec<ClientLog> = Vec::with_capacity(cfg.clients);
    // Every worker's CPU and wall time while sending, when every worker measured them.
    let mut sending = Some((Duration::ZERO, Duration::ZERO));
    for r in results {
        stats.merge(&r.stats);
        generator = generator.add(r.cpu);
        sending = sending
            .zip(r.sending)
            .map(|((c, w), (rc, rw))| (c + rc.total(), w + rw));
        logs.extend(r.logs);
    }
    logs.sort_by_key(|l| l.index);
    let totals = Totals::of(&sh.live);
    let connected = totals.connect_done;
    let failed = totals.connect_failed;

    let measured_s = match (cfg.mode, &out.schedule) {
        (Mode::Idle, _) => out.held.as_secs_f64(),
        (_, Some(s)) => (s.end_ns.saturating_sub(s.measure_start_ns)) as f64 / 1e9,
        (_, None) => 0.0,
    };
    let per_s = |n: u64| {
        if measured_s > 0.0 {
            n as f64 / measured_s
        } else {
            0.0
        }
    };

    let delivery = match &out.schedule {
        Some(s) => stats::account(&logs, cfg.rooms as u32, s, cfg.mode == Mode::Raw),
        None => stats::Delivery::default(),
    };
    let messages = (cfg.mode != Mode::Idle).then(|| report::Messages {
        sent: stats.sent,
        delivery,
        foreign: stats.foreign,
        misrouted: stats.misrouted,
        self_echo: stats.self_echo,
        sent_per_s: per_s(stats.sent),
        delivered_per_s: per_s(delivery.delivered),
        warmup_sent: stats.sent_warmup,
    });
    let latency = (cfg.mode != Mode::Idle).then(|| report::Percentiles::of(&stats.latency));
    let acks = cfg.ack.then(|| report::Acks {
        expected: stats.acks_expected,
        received: stats.acks,
        ack_ms: report::Percentiles::of(&stats.ack),
    });

    // CPU: the generator's threads exactly; the server's from its process, or for the in-process
    // relay, what the process used beyond the generator and the control thread.
    let generator = generator.add(out.control_cpu);
    let proc_delta = cpu_after.process.saturating_sub(cpu_before.process);
    let server_cpu = match (cpu_before.server_pid, cpu_after.server_pid) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ if sh.cfg.url.is_none() => Some(proc_delta.saturating_sub(generator)),
        _ => None,
    };
    let wall_s = wall.as_secs_f64();
    let generator_s = generator.total().as_secs_f64();
    let (generator_busy, generator_busy_over) =
        busy_share(sending, generator_s, wall_s, cfg.threads);
    let received_total = stats.received + stats.received_warmup;
    let cpu = report::Cpu {
        generator_s,
        generator_user_s: generator.user.as_secs_f64(),
        generator_system_s: generator.system.as_secs_f64(),
        generator_busy,
        generator_busy_over,
        received_per_cpu_s: (generator_s > 0.0 && received_total > 0)
            .then(|| received_total as f64 / generator_s),
        server_s: server_cpu.map(|c| c.total().as_secs_f64()),
        server_us_per_delivery: server_cpu
            .filter(|_| received_total > 0)
            .map(|c| c.total().as_secs_f64() * 1e6 / received_total as f64),
        wall_s,
    };

    let memory = rss_before.and_then(|before| {
        let after = if cfg.mode == Mode::Idle {
            out.rss_connected
        } else {
            out.rss_loaded.or(out.rss_connected)
        }?;
        let open = connected.max(1) as f64;
        Some(report::Memory {
            source: match (sh.cfg.url.is_none(), server_pids) {
                (true, _) => {
                    "in-process: RSS of this process, relay plus the bench's own clients".into()
                }
                (false, [pid]) => format!("VmRSS of pid {pid}"),
                (false, []) => "unknown".into(),
                (false, pids) => format!(
                    "VmRSS of pids {} (summed: they share the port)",
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            rss_before_bytes: before,
            rss_after_bytes: after,
            // Below ~100 connections the allocator's noise outweighs them.
            per_connection_bytes: (connected >= 100).then(|| (after as f64 - before as f64) / open),
        })
    });

    let timeline = match &out.schedule {
        Some(_) => {
            let secs = measured_s.ceil() as usize;
            (0..secs)
                .map(|t| {
                    let s = stats.seconds.get(t);
                    let q = |f: f64| {
                        s.filter(|s| !s.latency.is_empty())
                            .map(|s| s.latency.value_at_quantile(f) as f64 / 1000.0)
                    };
                    report::SecondRow {
                        t_s: t as u64,
                        sent: s.map_or(0, |s| s.sent),
                        delivered: s.map_or(0, |s| s.delivered),
                        p50_ms: q(0.5),
                        p99_ms: q(0.99),
                        max_ms: s
                            .filter(|s| !s.latency.is_empty())
                            .map(|s| s.latency.max() as f64 / 1000.0),
                    }
                })
                .collect()
        }
        None => Vec::new(),
    };

    let mut checks = Vec::new();
    if let Some(limit) = cfg.max_p99 {
        let p99 = latency.filter(|l| l.count > 0).map(|l| l.p99);
        checks.push(Check {
            name: "p99 latency".into(),
            limit: report::ms(limit.as_secs_f64() * 1000.0),
            value: p99.map_or_else(|| "no messages measured".into(), report::ms),
            ok: p99.is_some_and(|p| p <= limit.as_secs_f64() * 1000.0),
        });
    }
    if let Some(limit) = cfg.max_loss {
        checks.push(Check {
            name: "lost messages".into(),
            limit: report::thousands(limit),
            value: report::thousands(delivery.lost),
            ok: delivery.lost <= limit,
        });
    }
    if cfg.strict {
        let errors: u64 = stats.errors.values().sum();
        let dropped: u64 = stats
            .disconnects
            .iter()
            .filter(|(k, _)| !k.starts_with("churn"))
            .map(|(_, v)| v)
            .sum();
        checks.push(Check {
            name: "connection errors and drops".into(),
            limit: "0".into(),
            value: report::thousands(errors + dropped + failed),
            ok: errors + dropped + failed == 0,
        });
    }

    let mut notes = Vec::new();
    notes.extend(busy_note(cpu.generator_busy, cfg.threads, &stats.send_lag));
    if stats.send_lag_max_us > 100_000 {
        notes.push(format!(
            "senders fell up to {} behind schedule; that delay counts as latency (coordinated-omission correction)",
            report::ms(stats.send_lag_max_us as f64 / 1000.0)
        ));
    }
    if cfg.mode == Mode::Chat && stats.connects > 0 && totals.join_acked < stats.connects {
        notes.push(format!(
            "{} of {} joins were not acknowledged by the server; those clients count as members {} after joining (--grace)",
            report::thousands(stats.connects - totals.join_acked),
            report::thousands(stats.connects),
            humantime::format_duration(cfg.grace)
        ));
    }
    if cfg.mode == Mode::Chat && (0..cfg.rooms).any(|r| cfg.room_size(r) < 2) {
        notes.push("some rooms have a single client: their messages have no one to reach".into());
    }
    if sh.cfg.url.is_none() {
        notes.push(
            "the relay ran inside this process and shared its cores with the load generator".into(),
        );
    }

    // From the first connect attempt to the last successful initial connect.
    let connect_phase_s = if stats.connect_last_ns > stats.connect_first_ns {
        (stats.connect_last_ns - stats.connect_first_ns) as f64 / 1e9
    } else {
        out.connect_phase.as_secs_f64()
    };
    Report {
        wschat: env!("CARGO_PKG_VERSION"),
        target: report::Target {
            url: url.to_string(),
            server: server_desc,
            pid: server_pids.first().copied(),
            pids: server_pids.to_vec(),
        },
        settings: report::Settings {
            mode: cfg.mode.name(),
            transport: match cfg.transport {
                TransportChoice::Websocket => "websocket",
                TransportChoice::Polling => "polling",
                TransportChoice::Upgrade => "polling+upgrade",
            },
            clients: cfg.clients,
            rooms: cfg.rooms,
            rate_per_client: cfg.rate,
            offered_per_s: cfg.rate * cfg.clients as f64,
            size: cfg.size,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            ramp_s: cfg.ramp.as_secs_f64(),
            grace_s: cfg.grace.as_secs_f64(),
            threads: cfg.threads,
            ack: cfg.ack,
            churn_per_s: cfg.churn,
            namespace: cfg.namespace.clone(),
        },
        interrupted: out.interrupted,
        measured_s,
        connections: report::Connections {
            attempted: cfg.clients as u64,
            connected,
            failed,
            reconnects: stats.connects.saturating_sub(connected),
            connect_ms: report::Percentiles::of(&stats.connect),
            connect_phase_s,
            connect_rate_per_s: if connect_phase_s > 0.0 {
                connected as f64 / connect_phase_s
            } else {
                0.0
            },
            open_at_end: out.open_at_stop,
        },
        messages,
        latency_ms: latency,
        latency_clock: match (stats.rx_wait.len(), stats.latency.len()) {
            (0, _) => "read",
            (w, l) if w == l => "kernel receive timestamp",
            _ => "mixed",
        },
        latency_at_read_ms: (cfg.mode != Mode::Idle)
            .then(|| report::Percentiles::of(&stats.latency_read)),
        rx_wait_ms: (!stats.rx_wait.is_empty()).then(|| report::Percentiles::of(&stats.rx_wait)),
        send_lag_ms: (!stats.send_lag.is_empty()).then(|| report::Percentiles::of(&stats.send_lag)),
        acks,
        errors: stats.errors.clone(),
        disconnects: stats.disconnects.clone(),
        cpu,
        memory,
        histogram: report::buckets(&stats.latency),
        distribution: report::distribution(&stats.latency),
        timeline,
        checks,
        notes,
    }
}

/// Print the report (text or JSON on stdout) and write the HTML file if asked.
fn emit(report: &Report, cfg: &Config, global: &Global) -> anyhow::Result<()> {
    if let Some(path) = &cfg.html {
        std::fs::write(path, report::render_html(report))
            .with_context(|| format!("while writing the HTML report to {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    if cfg.json {
        writeln!(stdout, "{}", report::render_json(report))?;
    } else {
        let color = global.use_color(std::io::stdout().is_terminal());
        write!(stdout, "{}", report::render_text(report, color))?;
    }
    stdout.flush()?;
    Ok(())
}

/// The generator's busy share and what it covers: its threads' CPU over their wall time while the
/// schedule was sending (`sending`, summed over threads), else over the whole run (`run`).
fn busy_share(
    sending: Option<(Duration, Duration)>,
    generator_s: f64,
    wall_s: f64,
    threads: usize,
) -> (f64, &'static str) {
    match sending {
        Some((cpu, wall)) if !wall.is_zero() => (cpu.as_secs_f64() / wall.as_secs_f64(), "sending"),
        _ if wall_s > 0.0 && threads > 0 => (generator_s / (wall_s * threads as f64), "run"),
        _ => (0.0, "run"),
    }
}

/// A note when the generator had little idle time while sending: how late its own sends were,
/// since that lateness is counted as latency.
fn busy_note(busy: f64, threads: usize, send_lag_us: &Histogram<u64>) -> Option<String> {
    if busy <= 0.85 {
        return None;
    }
    let lag = if send_lag_us.is_empty() {
        String::new()
    } else {
        let p = report::Percentiles::of(send_lag_us);
        format!(
            "; its own send lag (p50 {}, p99 {}) counts as latency",
            report::ms(p.p50),
            report::ms(p.p99)
        )
    };
    Some(format!(
        "the load generator kept its {threads} thread(s) {:.0}% busy while sending{lag}: add --threads or cores to take it out",
        busy * 100.0
    ))
}

#[cfg(test)]
mod busy_tests {
    use super::*;

    #[test]
    fn busy_share_covers_the_sending_window_when_measured() {
        let s = Duration::from_secs_f64;
        // 2 threads, each 90% busy over a 4-s sending window; 9 s of CPU over a 14-s run.
        let (busy, over) = busy_share(Some((s(7.2), s(8.0))), 9.0, 14.0, 2);
        assert!((busy - 0.9).abs() < 1e-9 && over == "sending");
        // Nothing sent (idle mode): the whole run.
        let (busy, over) = busy_share(None, 7.0, 14.0, 2);
        assert!((busy - 0.25).abs() < 1e-9 && over == "run");
        assert_eq!(
            busy_share(Some((s(1.0), s(0.0))), 0.0, 0.0, 1),
            (0.0, "run")
        );
    }

    #[test]
    fn a_busy_generator_reports_its_own_send_lag() {
        let mut lag = stats::new_coarse_hist();
        assert_eq!(busy_note(0.85, 1, &lag), None);
        assert_eq!(
            busy_note(0.99, 1, &lag).as_deref(),
            Some(
                "the load generator kept its 1 thread(s) 99% busy while sending: add --threads or cores to take it out"
            )
        );
        for us in [500, 2_000, 3_000] {
            stats::record(&mut lag, us);
        }
        let note = busy_note(0.99, 2, &lag).unwrap();
        assert!(
            note.contains("2 thread(s) 99% busy while sending; its own send lag (p50 2.0")
                && note.contains(", p99 3.0")
                && note.ends_with("counts as latency: add --threads or cores to take it out"),
            "{note}"
        );
    }
}
