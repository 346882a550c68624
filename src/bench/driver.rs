//! The load generator: worker threads, each with a single-threaded tokio runtime driving its share
//! of the clients; every client connects (ramped, with bounded concurrency), joins its room, then
//! sends on the open-loop schedule and accounts for what it receives.
//!
//! Once joined, a WebSocket connection over plain TCP is driven by the worker's shared loop
//! ([`super::fast`]) rather than by its own task, unless `--task-per-connection` or `--churn` is
//! given; the bookkeeping below (sends, the receive callback) serves both.
//!
//! Hot path: one read syscall brings a batch of frames; the client driver splits them into
//! Socket.IO packets and hands over each event's raw JSON arguments, which are scanned for a bench
//! id ([`super::payload::Scanner`]) — no JSON tree is built — and the result goes into thread-local
//! histograms and the client's own bitsets ([`super::recv`]). Nothing is shared
//! between threads while the run is going except the phase (a watch channel, read on change) and
//! the live counters each worker publishes four times a second.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};
use tokio::time::sleep_until;

use super::config::{Config, Mode};
use super::conn::{Arrival, BenchConn, Incoming, Target, reason};
use super::fast::FastLoop;
use super::pacer::{Pacer, Slot};
use super::payload::{MessageId, Scanner, Template};
use super::progress::Live;
use super::recv::{self, Got, Receiver};
use super::schedule::Schedule;
use super::stats::{ClientLog, WorkerStats, new_coarse_hist, record};
use super::sys::{CpuTime, thread_cpu};
use crate::client::ClientError;

/// Where the run is; set by the main thread, watched by every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connect and join, then wait.
    Connecting,
    /// Send on this schedule (its `end_ns` may be moved earlier by Ctrl-C).
    Run(Schedule),
    /// Stop sending; keep receiving until `Stop` (the grace period).
    Drain(Schedule),
    /// Close the connection and hand in the log.
    Stop,
}

/// Everything the workers share (read-only, plus the phase channel and live counters).
pub struct Shared {
    pub cfg: Config,
    /// Time zero of the run; connects start here, ramped over `cfg.ramp`.
    pub epoch: Instant,
    /// Unique per run, so concurrent benches against one server do not share rooms.
    pub run_id: String,
    pub target: Target,
    /// Source addresses to spread connections over (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    pub phase: watch::Sender<Phase>,
    pub permits: Arc<Semaphore>,
    pub live: Vec<Live>,
    /// Wall-clock "HH:MM" for the `time` field of chat messages, as the original app sends.
    pub clock: String,
}

impl Shared {
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn at(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(ns))
    }

    pub fn room_name(&self, room: u32) -> String {
        format!("wsb-{}-{room}", self.run_id)
    }
}

/// What a worker hands back.
pub struct WorkerResult {
    pub stats: WorkerStats,
    pub logs: Vec<ClientLog>,
    pub cpu: CpuTime,
    /// The worker thread's CPU and the wall time while the schedule was sending (warmup and
    /// measured window); `None` when nothing was sent.
    pub sending: Option<(CpuTime, Duration)>,
}

/// The per-second latency snapshot a worker sends for the live p99.
pub type IntervalSnapshot = (usize, Histogram<u64>);

/// Thread-local state of one worker: the measurements plus the counters it publishes.
pub(super) struct Local {
    stats: WorkerStats,
    interval: Histogram<u64>,
    open: u64,
    connect_done: u64,
    connect_failed: u64,
    /// Connections whose `join_room` the server acknowledged.
    join_acked: u64,
}

pub(super) type LocalRef = Rc<RefCell<Local>>;

/// Run worker `w` on the current thread until all its clients are done.
pub fn run_worker(
    w: usize,
    shared: Arc<Shared>,
    snapshots: mpsc::Sender<IntervalSnapshot>,
) -> std::io::Result<WorkerResult> {
    let cpu0 = thread_cpu();
    let sending = Rc::new(Cell::new(None));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let st: LocalRef = Rc::new(RefCell::new(Local {
        stats: WorkerStats::default(),
        interval: new_coarse_hist(),
        open: 0,
        connect_done: 0,
        connect_failed: 0,
        join_acked: 0,
    }));
    let threads = shared.cfg.threads;
    let clients = shared.cfg.clients;
    let logs = local.block_on(&rt, async {
        let ticker = tokio::task::spawn_local(publish(w, shared.clone(), st.clone(), snapshots));
        let sending_task = tokio::task::spawn_local(sending_cpu(shared.clone(), sending.clone()));
        let scanner = Rc::new(Scanner::new());
        // Sends are paced by a timerfd (µs precision) where there is one, else by tokio's timer.
        let pacer = Pacer::new(shared.epoch);
        let pacer_task = pacer.clone().map(|p| tokio::task::spawn_local(p.run()));
        // Joined WebSocket connections are driven by one task of the worker's where they can be.
        let fast =
            (shared.cfg.shared_loop && shared.cfg.churn.is_none() && shared.cfg.mode != Mode::Raw)
                .then(|| FastLoop::new(&shared))
                .flatten();
        let fast_task = fast
            .clone()
            .map(|f| tokio::task::spawn_local(f.run(shared.clone(), st.clone())));
        let mut handles = Vec::with_capacity(clients / threads + 1);
        for i in (w..clients).step_by(threads) {
            let i = i as u32;
            handles.push((
                i,
                tokio::task::spawn_local(client(
                    i,
                    shared.clone(),
                    st.clone(),
                    scanner.clone(),
                    pacer.as_ref().map(|p| (p.clone(), p.slot())),
                    fast.clone(),
                )),
            ));
        }
        let mut logs = Vec::with_capacity(handles.len());
        for (i, h) in handles {
            match h.await {
                Ok(log) => logs.push(log),
                Err(e) => {
                    // Keep one log per client so accounting stays indexed by client.
                    st.borrow_mut()
                        .stats
                        .error(format!("internal: client task failed: {e}"));
                    logs.push(ClientLog::new(i, i % shared.cfg.rooms as u32));
                }
            }
        }
        ticker.abort();
        sending_task.abort();
        for t in [pacer_task, fast_task].into_iter().flatten() {
            t.abort();
        }
        logs
    });
    publish_now(&shared.live[w], &st.borrow());
    let cpu = thread_cpu().saturating_sub(cpu0);
    let stats = std::mem::take(&mut st.borrow_mut().stats);
    Ok(WorkerResult {
        stats,
        logs,
        cpu,
        sending: sending.get(),
    })
}

/// Measure this thread's CPU from the schedule's first send to its end (moved earlier by Ctrl-C),
/// so the generator's busy share covers the load itself, not the connects and the grace period.
async fn sending_cpu(shared: Arc<Shared>, out: Rc<Cell<Option<(CpuTime, Duration)>>>) {
    let mut rx = shared.phase.subscribe();
    let s = loop {
        match *rx.borrow_and_update() {
            Phase::Run(s) => break s,
            Phase::Connecting => {}
            Phase::Drain(_) | Phase::Stop => return,
        }
        if rx.changed().await.is_err() {
            return;
        }
    };
    sleep_until(shared.at(s.start_ns)).await;
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    let mut end = s.end_ns;
    loop {
        tokio::select! {
            _ = sleep_until(shared.at(end)) => break,
            r = rx.changed() => match (r, *rx.borrow_and_update()) {
                (Ok(()), Phase::Run(s)) => end = s.end_ns,
                _ => break,
            },
        }
    }
    out.set(Some((thread_cpu().saturating_sub(cpu0), t0.elapsed())));
}

fn publish_now(live: &Live, l: &Local) {
    live.sent
        .store(l.stats.sent + l.stats.sent_warmup, Ordering::Relaxed);
    live.received.store(
        l.stats.received + l.stats.received_warmup,
        Ordering::Relaxed,
    );
    live.errors
        .store(l.stats.errors.values().sum(), Ordering::Relaxed);
    live.open.store(l.open, Ordering::Relaxed);
    live.connect_done.store(l.connect_done, Ordering::Relaxed);
    live.connect_failed
        .store(l.connect_failed, Ordering::Relaxed);
    live.join_acked.store(l.join_acked, Ordering::Relaxed);
}

/// Publish the live counters 4 times a second and the interval histogram once a second.
async fn publish(
    w: usize,
    shared: Arc<Shared>,
    st: LocalRef,
    snapshots: mpsc::Sender<IntervalSnapshot>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let mut l = st.borrow_mut();
        publish_now(&shared.live[w], &l);
        if n % 4 == 0 {
            let h = std::mem::replace(&mut l.interval, new_coarse_hist());
            let _ = snapshots.send((w, h));
        }
    }
}

/// Why a connection ended.
pub(super) enum End {
    /// The run is over (phase Stop).
    Stopped,
    /// Churn: close and reconnect.
    Churn,
    /// The connection failed or the server closed it.
    Lost(String),
}

/// One client's state across its connections (churn reconnects keep it).
pub(super) struct Client {
    pub(super) index: u32,
    pub(super) receiver: Receiver,
    pub(super) log: ClientLog,
    template: Template,
    /// Shared by the worker's clients (the precompiled finder is not tiny).
    pub(super) scanner: Rc<Scanner>,
    /// The next slot of the schedule to send.
    pub(super) next_seq: u32,
    phase_rx: watch::Receiver<Phase>,
    /// The worker's send pacer and this client's place in it (`None`: tokio's timer paces).
    pacer: Option<(Rc<Pacer>, Slot)>,
}

/// Per-connection state.
pub(super) struct Session {
    /// The ack id of `join_room`, until it arrives.
    pub(super) join_ack: Option<u64>,
    /// When `join_room` was sent (ns since epoch).
    pub(super) join_sent: u64,
    /// Acks awaited: (ack id, intended send time µs, measured).
    acks: std::collections::VecDeque<(u64, u64, bool)>,
}

/// One client: connect (ramped), join, run the schedule, churn, hand in the log.
async fn client(
    i: u32,
    sh: Arc<Shared>,
    st: LocalRef,
    scanner: Rc<Scanner>,
    pacer: Option<(Rc<Pacer>, Slot)>,
    fast: Option<Rc<FastLoop>>,
) -> ClientLog {
    let cfg = &sh.cfg;
    let rooms = cfg.rooms as u32;
    let room = i % rooms;
    let mut c = Client {
        index: i,
        receiver: Receiver {
            index: i,
            room,
            rooms,
            clients: cfg.clients as u32,
            echo: cfg.mode == Mode::Raw,
        },
        log: ClientLog::new(i, room),
        template: match cfg.mode {
            Mode::Raw => Template::raw(cfg.size),
            _ => Template::chat(
                &sh.room_name(room),
                &format!("bench-{i}"),
                cfg.size,
                &sh.clock,
            ),
        },
        scanner,
        next_seq: 0,
        phase_rx: sh.phase.subscribe(),
        pacer,
    };
    let ramp_ns =
        (cfg.ramp.as_nanos() as u64).saturating_mul(u64::from(i)) / cfg.clients.max(1) as u64;
    tokio::select! {
        _ = sleep_until(sh.at(ramp_ns)) => {}
        _ = wait_stop(&mut c.phase_rx) => return c.log,
    }
    let room_json = json_str(&sh.room_name(room));
    let mut reconnect = false;
    loop {
        // Connect, bounded by the shared permits.
        let r = {
            let _permit = tokio::select! {
                p = sh.permits.acquire() => p,
                _ = wait_stop(&mut c.phase_rx) => return c.log,
            };
            let t0 = sh.now_ns();
            let source =
                (!sh.sources.is_empty()).then(|| sh.sources[i as usize % sh.sources.len()]);
            let r = tokio::select! {
                // Boxed: the handshake's state is large and only needed while connecting.
                r = Box::pin(BenchConn::connect(&sh.target, source)) => r,
                _ = wait_stop(&mut c.phase_rx) => return c.log,
            };
            let t1 = sh.now_ns();
            let mut l = st.borrow_mut();
            match &r {
                Ok(_) => {
                    record(&mut l.stats.connect, (t1 - t0) / 1000);
                    l.stats.connects += 1;
                    l.open += 1;
                    if !reconnect {
                        l.connect_done += 1;
                        l.stats.connect_first_ns = l.stats.connect_first_ns.min(t0);
                        l.stats.connect_last_ns = l.stats.connect_last_ns.max(t1);
                    }
                }
                Err(e) => {
                    l.stats.error(reason(e));
                    if !reconnect {
                        l.connect_failed += 1;
                    }
                }
            }
            r
        };
        let Ok(mut conn) = r else { return c.log };
        let mut sess = Session {
            join_ack: None,
            join_sent: sh.now_ns(),
            acks: Default::default(),
        };
        let queued = match cfg.mode {
            Mode::Raw => {
                c.log.joined(sess.join_sent);
                Ok(())
            }
            // Ask for an ack: servers that answer it tell us exactly when we are in the room.
            _ => conn.join(&room_json).map(|id| sess.join_ack = id),
        };
        let end = match queued {
            Ok(()) => match conn.flush().await {
                Ok(()) => match &fast {
                    Some(f) if conn.fast_fd().is_some() => {
                        let Some(back) = f.drive(&sh, conn, sess, c).await else {
                            // Only when the worker is torn down under a running client.
                            return ClientLog::new(i, room);
                        };
                        conn = back.conn;
                        c = back.c;
                        back.end
                    }
                    _ => run_connection(&sh, &st, &mut conn, &mut sess, &mut c).await,
                },
                Err(e) => End::Lost(reason(&e)),
            },
            Err(e) => End::Lost(reason(&e)),
        };
        // Leaving on purpose (churn) ends the membership: what is due afterwards is not expected
        // here. A connection the server dropped stays a member, so everything it missed counts
        // as lost (and the drop is reported under disconnects).
        if matches!(end, End::Churn) {
            c.log.left(sh.now_ns(), cfg.grace.as_nanos() as u64);
        }
        {
            let mut l = st.borrow_mut();
            l.open -= 1;
            match &end {
                End::Stopped => {}
                End::Churn => l.stats.disconnect("churn (by the bench)"),
                End::Lost(reason) => l.stats.disconnect(reason.clone()),
            }
        }
        match end {
            End::Stopped => {
                Box::pin(conn.close()).await;
                return c.log;
            }
            End::Churn => {
                Box::pin(conn.close()).await;
                reconnect = true;
            }
            End::Lost(_) => return c.log,
        }
    }
}

/// Drive one open connection until the run stops, a churn is due, or the connection is lost.
async fn run_connection(
    sh: &Shared,
    st: &LocalRef,
    conn: &mut BenchConn,
    sess: &mut Session,
    c: &mut Client,
) -> End {
    let cfg = &sh.cfg;
    let grace_ns = cfg.grace.as_nanos() as u64;
    // A (re)connect during the run: the slots that passed while away are skipped (not sent, so
    // not expected anywhere).
    if let Phase::Run(s) = *c.phase_rx.borrow() {
        c.next_seq = c
            .next_seq
            .max(s.first_seq_at_or_after(c.index, sh.now_ns()) as u32);
    }
    let conn_start = sh.now_ns();
    // One timer per connection, re-armed only when the earliest deadline changes: sends, the
    // join fallback, churn and the client's dead-server check share it.
    let timer = tokio::time::sleep_until(sh.at(u64::MAX / 4));
    tokio::pin!(timer);
    let mut armed: Option<u64> = None;
    // The phase-change wait lives across wake-ups: a `changed()` made afresh on every pass would
    // join and leave the channel's waiter list each time (a lock and two list edits per read).
    let mut changed = Box::pin(phase_changed(c.phase_rx.clone()));
    loop {
        let phase = *c.phase_rx.borrow_and_update();
        // In the grace period, messages that were due before the end but could not be written
        // yet (a full send buffer) still go out late: open loop, their lateness is latency.
        let schedule = match phase {
            Phase::Stop => return End::Stopped,
            Phase::Run(s) | Phase::Drain(s) => Some(s),
            Phase::Connecting => None,
        };
        let due = schedule.and_then(|s| {
            let t = s.intended_ns(c.index, c.next_seq);
            (cfg.mode != Mode::Idle && s.is_sent(t)).then_some(t)
        });
        // A server that never acknowledges join_room (the original app's) is assumed to have
        // processed it one grace period after it was sent.
        let join_deadline = sess.join_ack.map(|_| sess.join_sent + grace_ns);
        let churn = match (phase, cfg.churn) {
            (Phase::Run(s), Some(rate)) => {
                churn_time(rate, cfg.clients as u64, &s, c.index, conn_start)
            }
            _ => None,
        };
        let check = conn
            .poll_timeout()
            .map(|t| t.saturating_duration_since(sh.epoch).as_nanos() as u64);
        // With a pacer, sends wait on it rather than on the (1-ms) timer.
        let (timer_due, paced_due) = match c.pacer {
            Some(_) => (None, due),
            None => (due, None),
        };
        let next = [timer_due, join_deadline, churn, check]
            .into_iter()
            .flatten()
            .min();
        if next != armed {
            if let Some(t) = next {
                timer.as_mut().reset(sh.at(t));
            }
            armed = next;
        }
        tokio::select! {
            biased;
            (rx, r) = &mut changed => {
                if r.is_err() {
                    return End::Stopped;
                }
                changed.set(phase_changed(rx));
            }
            _ = &mut timer, if next.is_some() => {
                armed = None;
                let now = sh.now_ns();
                if check.is_some_and(|t| t <= now)
                    && let Err(e) = conn.handle_timeout(Instant::now())
                {
                    return End::Lost(reason(&e));
                }
                if churn.is_some_and(|t| t <= now) {
                    return End::Churn;
                }
                if join_deadline.is_some_and(|t| t <= now) {
                    sess.join_ack = None;
                    c.log.joined(sess.join_sent + grace_ns);
                }
                if let Some(s) = schedule.filter(|_| due.is_some_and(|t| t <= now))
                    && let Err(e) = send_and_flush(sh, st, conn, sess, c, &s).await
                {
                    return End::Lost(reason(&e));
                }
            }
            _ = paced(&c.pacer, paced_due), if paced_due.is_some() => {
                if let Some(s) = schedule
                    && let Err(e) = send_and_flush(sh, st, conn, sess, c, &s).await
                {
                    return End::Lost(reason(&e));
                }
            }
            r = conn.recv(|inc, now| on_incoming(sh, st, sess, &c.receiver, &c.scanner, &mut c.log, phase, inc, now)) => {
                if let Err(e) = r {
                    return End::Lost(reason(&e));
                }
            }
        }
    }
}

/// Completes when the phase changes after what `rx` has seen; hands the receiver back.
async fn phase_changed(
    mut rx: watch::Receiver<Phase>,
) -> (watch::Receiver<Phase>, Result<(), watch::error::RecvError>) {
    let r = rx.changed().await;
    (rx, r)
}

/// Completes when the pacer says `due` has passed (never without a pacer or a deadline).
async fn paced(pacer: &Option<(Rc<Pacer>, Slot)>, due: Option<u64>) {
    match (pacer, due) {
        (Some((p, slot)), Some(t)) => p.wait_until(*slot, t).await,
        _ => std::future::pending().await,
    }
}

/// Send every message of this client that is due by now (several when it fell behind: each
/// keeps its own intended time, so the delay counts as latency), then flush.
async fn send_and_flush(
    sh: &Shared,
    st: &LocalRef,
    conn: &mut BenchConn,
    sess: &mut Session,
    c: &mut Client,
    s: &Schedule,
) -> Result<(), ClientError> {
    queue_due(sh, st, conn, sess, c, s)?;
    conn.flush().await
}

/// Queue every message of this client that is due by now (see [`send_and_flush`]).
pub(super) fn queue_due(
    sh: &Shared,
    st: &LocalRef,
    conn: &mut BenchConn,
    sess: &mut Session,
    c: &mut Client,
    s: &Schedule,
) -> Result<(), ClientError> {
    let now = sh.now_ns();
    let mut l = st.borrow_mut();
    let mut lag_noted = false;
    loop {
        let t = s.intended_ns(c.index, c.next_seq);
        if t > now || !s.is_sent(t) {
            break;
        }
        if !lag_noted {
            lag_noted = true;
            l.stats.send_lag_max_us = l.stats.send_lag_max_us.max((now - t) / 1000);
        }
        let id = MessageId {
            sender: c.index,
            seq: c.next_seq,
            t_us: t / 1000,
        };
        let measured = t >= s.measure_start_ns;
        if let Some(ack) = conn.send(c.template.fill(id), sh.cfg.ack)? {
            sess.acks.push_back((ack, id.t_us, measured));
            if measured {
                l.stats.acks_expected += 1;
            }
        }
        c.log.sent(c.next_seq);
        if measured {
            record(&mut l.stats.send_lag, (now - t) / 1000);
            l.stats.sent += 1;
            let sec = ((t - s.measure_start_ns) / 1_000_000_000) as usize;
            l.stats.second(sec).sent += 1;
        } else {
            l.stats.sent_warmup += 1;
        }
        c.next_seq += 1;
    }
    Ok(())
}

/// The next churn time of client `i` at or after `from_ns`, before the end of sending: clients
/// are cycled round-robin at `rate` per second, so client `i` is due at
/// `start + (i + 1 + m * clients) / rate` for m = 0, 1, ...
fn churn_time(rate: f64, clients: u64, s: &Schedule, i: u32, from_ns: u64) -> Option<u64> {
    let period_ns = ((1e9 / rate) as u64).max(1);
    let first = s.start_ns + (u64::from(i) + 1) * period_ns;
    let cycle = (clients * period_ns).max(1);
    let t = if from_ns <= first {
        first
    } else {
        first + (from_ns - first).div_ceil(cycle) * cycle
    };
    (t < s.end_ns).then_some(t)
}

/// What to do with one received packet.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn on_incoming(
    sh: &Shared,
    st: &LocalRef,
    sess: &mut Session,
    receiver: &Receiver,
    scanner: &Scanner,
    log: &mut ClientLog,
    phase: Phase,
    inc: Incoming<'_>,
    arrived: Arrival,
) {
    let now_ns = arrived.at.saturating_duration_since(sh.epoch).as_nanos() as u64;
    match inc {
        Incoming::Message(text) => {
            let schedule = match phase {
                Phase::Run(s) | Phase::Drain(s) => Some(s),
                _ => None,
            };
            let got = match scanner.find(text) {
                Some(id) => receiver.message(id, schedule.as_ref(), now_ns / 1000, log),
                None => Got::Foreign,
            };
            let mut l = st.borrow_mut();
            let Local {
                stats, interval, ..
            } = &mut *l;
            recv::apply(stats, interval, got, arrived.wait_us);
        }
        Incoming::Ack(n) if sess.join_ack == Some(n) => {
            sess.join_ack = None;
            log.joined(now_ns);
            st.borrow_mut().join_acked += 1;
        }
        Incoming::Ack(n) => {
            // Acks come back in order on one connection; anything skipped stays missing.
            while let Some(&(id, t_us, measured)) = sess.acks.front() {
                if id > n {
                    break;
                }
                sess.acks.pop_front();
                if id == n && measured {
                    let mut l = st.borrow_mut();
                    l.stats.acks += 1;
                    record(&mut l.stats.ack, (now_ns / 1000).saturating_sub(t_us));
                }
            }
        }
        Incoming::Other => st.borrow_mut().stats.foreign += 1,
    }
}

async fn wait_stop(rx: &mut watch::Receiver<Phase>) {
    loop {
        if *rx.borrow_and_update() == Phase::Stop {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_cycles_clients_round_robin_at_the_rate() {
        // 4 clients, 2 churns per second: client i at 0.5 s * (i + 1 + 4m).
        let s = Schedule::new(0, 10.0, 4, 0, 10_000_000_000);
        let t = |i, from| churn_time(2.0, 4, &s, i, from);
        assert_eq!(t(0, 0), Some(500_000_000));
        assert_eq!(t(3, 0), Some(2_000_000_000));
        // After its first churn, client 0 is next due one full cycle (4 clients / 2 per s) later.
        assert_eq!(t(0, 500_000_001), Some(2_500_000_000));
        assert_eq!(t(0, 2_500_000_000), Some(2_500_000_000));
        // Nothing at or after the end of sending.
        assert_eq!(t(3, 9_000_000_000), None);
        // Over the whole run every client churns rate * duration / clients = 5 times.
        let per_client: Vec<usize> = (0..4)
            .map(|i| {
                let (mut n, mut from) = (0, 0);
                while let Some(at) = t(i, from) {
                    n += 1;
                    from = at + 1;
                }
                n
            })
            .collect();
        assert_eq!(per_client.iter().sum::<usize>(), 20 - 1, "{per_client:?}");
    }
}
