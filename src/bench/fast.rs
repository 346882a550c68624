//! One worker's connections driven by a single task over an `epoll` set of its own.
//!
//! With a task per connection, every read and every send goes through a wake-up, a `select!` over
//! the connection's four waits and a fresh receive future; at a few hundred thousand reads and
//! sends a second that machinery costs the generator's core more than the parsing does. Here the
//! worker's WebSocket connections, once joined, are handed to one task. It waits on one `epoll`
//! descriptor that holds every connection's socket (edge-triggered) and a `timerfd` for the sends,
//! and runs the reads and sends it reports synchronously, with the same non-blocking calls the
//! connection's own task would make ([`BenchConn::try_recv`], [`BenchConn::try_flush`]). The
//! bookkeeping is the per-connection task's ([`super::driver`]): the same receive callback, the
//! same send loop, the same join fallback and dead-server check. A connection that ends, or every
//! connection when the run stops, is handed back to its client task, which closes it as before.
//!
//! Only Socket.IO over WebSocket on plain TCP, without churn, is driven this way; everything else
//! keeps its task.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::config::Mode;
use super::conn::{BenchConn, reason};
use super::driver::{Client, End, LocalRef, Phase, Session, Shared, on_incoming, queue_due};
use super::pacer::{self, MIN_GAP_NS};

/// The `epoll` key of the timer (connections are keyed by their index).
const TIMER_KEY: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const BATCH: usize = 256;
/// How often the coarse deadlines are checked: the join fallback (a grace period, seconds) and
/// the dead-server check (the ping interval plus timeout, tens of seconds).
const HOUSEKEEPING: Duration = Duration::from_millis(10);

/// A connection handed back to its client task, and why.
pub(super) struct Handback {
    pub end: End,
    pub conn: BenchConn,
    pub c: Client,
}

struct Entry {
    conn: BenchConn,
    sess: Session,
    c: Client,
    done: oneshot::Sender<Handback>,
    fd: RawFd,
    /// The send deadline this entry is in the heap for.
    due: Option<u64>,
    /// Waiting for the socket to take the rest of a write.
    writing: bool,
}

#[derive(Default)]
struct State {
    entries: Vec<Option<Entry>>,
    /// (send deadline, entry); an entry whose deadline has since changed is skipped when popped.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The deadline the timer is armed for (when periodic: a bound on its next expiry).
    armed: Option<u64>,
    /// The timer expires every [`MIN_GAP_NS`] (sends are due closer together than that).
    periodic: bool,
    last_fire: u64,
    /// Entries whose last read filled its buffer: read again before waiting.
    again: Vec<usize>,
}

/// The worker's fast loop (single-threaded: share it with `Rc`).
pub(super) struct FastLoop {
    ep: AsyncFd<OwnedFd>,
    timer: OwnedFd,
    /// CLOCK_MONOTONIC at the run's epoch, in ns.
    epoch_mono_ns: u128,
    phase: Cell<Phase>,
    state: RefCell<State>,
}

impl FastLoop {
    /// A loop for one worker, or `None` where `epoll` or `timerfd` cannot be had. Must be called
    /// inside a tokio runtime with I/O enabled.
    pub fn new(sh: &Shared) -> Option<Rc<FastLoop>> {
        let (ep, timer) = sys::create()?;
        let mono_now = pacer::monotonic_ns()?;
        let since_epoch = sh.epoch.elapsed().as_nanos();
        sys::ctl(
            ep.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            timer.as_raw_fd(),
            libc::EPOLLIN | libc::EPOLLET,
            TIMER_KEY,
        )
        .ok()?;
        // SAFETY: an `OwnedFd` stays open and is the same descriptor until the `AsyncFd` drops it.
        let ep = unsafe { AsyncFd::register_with_interest(ep, Interest::READABLE) }.ok()?;
        Some(Rc::new(FastLoop {
            ep,
            timer,
            epoch_mono_ns: mono_now.checked_sub(since_epoch)?,
            phase: Cell::new(*sh.phase.borrow()),
            state: RefCell::new(State::default()),
        }))
    }

    /// Drive this joined connection until it ends or the run stops; `None` only if the loop
    /// itself went away first (the worker is being torn down).
    pub async fn drive(
        &self,
        sh: &Shared,
        conn: BenchConn,
        sess: Session,
        mut c: Client,
    ) -> Option<Handback> {
        let phase = *sh.phase.borrow();
        let Some(fd) = conn.fast_fd().filter(|_| phase != Phase::Stop) else {
            return Some(Handback {
                end: End::Stopped,
                conn,
                c,
            });
        };
        // A (re)connect during the run: the slots that passed while away are skipped.
        if let Phase::Run(s) = phase {
            c.next_seq = c
                .next_seq
                .max(s.first_seq_at_or_after(c.index, sh.now_ns()) as u32);
        }
        let (done, rx) = oneshot::channel();
        let i = {
            let mut st = self.state.borrow_mut();
            st.entries.push(Some(Entry {
                conn,
                sess,
                c,
                done,
                fd,
                due: None,
                writing: false,
            }));
            st.entries.len() - 1
        };
        if self.watch(i, libc::EPOLL_CTL_ADD, fd, READ_EVENTS) {
            self.schedule(sh, i);
            // Bytes that came with the last read of the connection's own task.
            self.state.borrow_mut().again.push(i);
        }
        rx.await.ok()
    }

    /// The loop's task: run it with `spawn_local` for as long as the worker runs.
    pub async fn run(self: Rc<Self>, sh: Arc<Shared>, st: LocalRef) {
        let mut rx = sh.phase.subscribe();
        // A change between `new` and now would not show as `changed()`: take the phase afresh.
        self.phase.set(*rx.borrow_and_update());
        self.on_phase(&sh);
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                r = rx.changed() => {
                    let phase = if r.is_err() { Phase::Stop } else { *rx.borrow_and_update() };
                    self.phase.set(phase);
                    self.on_phase(&sh);
                    if r.is_err() {
                        return;
                    }
                }
                g = self.ep.readable() => match g {
                    Ok(mut g) => {
                        // Cleared first: events that come in while the round runs raise it again.
                        g.clear_ready();
                        self.round(&sh, &st);
                    }
                    Err(e) => {
                        self.finish_all(|| End::Lost(format!("epoll: {e}")));
                        return;
                    }
                },
                _ = tick.tick() => self.housekeeping(&sh),
            }
        }
    }

    /// Everything `epoll` has ready, in its order; then the reads that filled their buffer.
    fn round(&self, sh: &Shared, st: &LocalRef) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        loop {
            let n = sys::wait(self.ep.get_ref().as_raw_fd(), &mut events);
            for ev in &events[..n] {
                let (key, flags) = (ev.u64, ev.events);
                if key == TIMER_KEY {
                    self.fire(sh, st);
                    continue;
                }
                let i = key as usize;
                if flags & (libc::EPOLLOUT as u32) != 0 {
                    self.writable(i);
                }
                if flags & !(libc::EPOLLOUT as u32) != 0 {
                    self.read(sh, st, i);
                }
            }
            let again = std::mem::take(&mut self.state.borrow_mut().again);
            for &i in &again {
                self.read(sh, st, i);
            }
            if n < BATCH && self.state.borrow().again.is_empty() {
                break;
            }
        }
    }

    /// One read of entry `i` and every packet in it.
    fn read(&self, sh: &Shared, st: &LocalRef, i: usize) {
        let phase = self.phase.get();
        let mut state = self.state.borrow_mut();
        let Some(Some(e)) = state.entries.get_mut(i) else {
            return;
        };
        let Entry { conn, sess, c, .. } = e;
        let r = conn.try_recv(|inc, arrived| {
            on_incoming(
                sh,
                st,
                sess,
                &c.receiver,
                &c.scanner,
                &mut c.log,
                phase,
                inc,
                arrived,
            )
        });
        let r = r.and_then(|full| {
            // Answers the read queued (pongs) go out now.
            let flushed = conn.try_flush()?;
            Ok((full, flushed))
        });
        match r {
            Ok((full, flushed)) => {
                if full == Some(true) {
                    state.again.push(i);
                }
                drop(state);
                if !flushed {
                    self.want_write(i);
                }
            }
            Err(err) => {
                drop(state);
                self.finish(i, End::Lost(reason(&err)));
            }
        }
    }

    /// The timer fired: send for every entry whose deadline has passed, then re-arm.
    fn fire(&self, sh: &Shared, st: &LocalRef) {
        // Nothing to read (a stale edge) is fine.
        let _ = pacer::drain(self.timer.as_raw_fd());
        let now = sh.now_ns();
        loop {
            let i = {
                let mut state = self.state.borrow_mut();
                let Some(&Reverse((due, i))) = state.heap.peek() else {
                    break;
                };
                if due > now {
                    break;
                }
                state.heap.pop();
                match state.entries.get_mut(i) {
                    Some(Some(e)) if e.due == Some(due) => {
                        e.due = None;
                        i
                    }
                    _ => continue,
                }
            };
            self.send(sh, st, i);
        }
        let mut state = self.state.borrow_mut();
        state.last_fire = now;
        let next = state.heap.peek().map(|&Reverse((due, _))| due);
        self.rearm(&mut state, now, next);
    }

    /// After a firing at `now`: set the timer for the next deadline. While sends are due within
    /// [`MIN_GAP_NS`] of each firing (any load of more than one send per gap), the timer stays
    /// periodic with that gap: it fires no later than re-arming each time would, as often on
    /// average, and saves a `timerfd_settime` per firing. Otherwise it fires once, at the
    /// deadline.
    fn rearm(&self, state: &mut State, now: u64, next: Option<u64>) {
        let fd = self.timer.as_raw_fd();
        match next {
            Some(due) if due <= now + MIN_GAP_NS => {
                // Periodic, the next expiry is at most a gap away: a deadline armed from here on
                // is at least a gap after this firing, so `arm` leaves it alone.
                state.armed = Some(now + MIN_GAP_NS);
                if !state.periodic {
                    state.periodic = true;
                    pacer::arm_periodic(
                        fd,
                        self.epoch_mono_ns + u128::from(now + MIN_GAP_NS),
                        MIN_GAP_NS,
                    );
                }
            }
            Some(due) => {
                // One-shot: this replaces a periodic setting.
                state.armed = None;
                state.periodic = false;
                self.arm(state, due);
            }
            None => {
                state.armed = None;
                if state.periodic {
                    state.periodic = false;
                    pacer::disarm(fd);
                }
            }
        }
    }

    /// Send what entry `i` has due, and schedule its next send.
    fn send(&self, sh: &Shared, st: &LocalRef, i: usize) {
        let (Phase::Run(s) | Phase::Drain(s)) = self.phase.get() else {
            return;
        };
        let r = {
            let mut state = self.state.borrow_mut();
            let Some(Some(e)) = state.entries.get_mut(i) else {
                return;
            };
            queue_due(sh, st, &mut e.conn, &mut e.sess, &mut e.c, &s)
                .and_then(|()| e.conn.try_flush())
        };
        match r {
            Ok(flushed) => {
                if !flushed {
                    self.want_write(i);
                }
                self.schedule(sh, i);
            }
            Err(err) => self.finish(i, End::Lost(reason(&err))),
        }
    }

    /// Put entry `i`'s next send deadline (if any) in the heap and arm the timer for it.
    fn schedule(&self, sh: &Shared, i: usize) {
        let mut state = self.state.borrow_mut();
        let Some(Some(e)) = state.entries.get_mut(i) else {
            return;
        };
        let due = match self.phase.get() {
            Phase::Run(s) | Phase::Drain(s) => {
                let t = s.intended_ns(e.c.index, e.c.next_seq);
                (sh.cfg.mode != Mode::Idle && s.is_sent(t)).then_some(t)
            }
            Phase::Connecting | Phase::Stop => None,
        };
        if due == e.due {
            return;
        }
        e.due = due;
        if let Some(t) = due {
            state.heap.push(Reverse((t, i)));
            self.arm(&mut state, t);
        }
    }

    /// Arm the timer for `due_ns` unless it already fires sooner. Deadlines closer than
    /// [`MIN_GAP_NS`] to the last firing share the next one (as the pacer's do).
    fn arm(&self, state: &mut State, due_ns: u64) {
        let at = due_ns.max(state.last_fire + MIN_GAP_NS);
        if state.armed.is_some_and(|a| a <= at) {
            return;
        }
        state.armed = Some(at);
        pacer::arm(self.timer.as_raw_fd(), self.epoch_mono_ns + u128::from(at));
    }

    /// A write did not go out whole: wait for the socket to take the rest.
    fn want_write(&self, i: usize) {
        let mut state = self.state.borrow_mut();
        let Some(Some(e)) = state.entries.get_mut(i) else {
            return;
        };
        if e.writing {
            return;
        }
        e.writing = true;
        let fd = e.fd;
        drop(state);
        self.watch(i, libc::EPOLL_CTL_MOD, fd, READ_EVENTS | libc::EPOLLOUT);
    }

    /// Watch entry `i`'s socket for `events` from now on (`op`: add it, or change what it is
    /// watched for). Whether `epoll` took it: if not, the entry ends.
    fn watch(&self, i: usize, op: i32, fd: RawFd, events: i32) -> bool {
        match sys::ctl(self.ep.get_ref().as_raw_fd(), op, fd, events, i as u64) {
            Ok(()) => true,
            Err(e) => {
                self.finish(i, End::Lost(format!("epoll: {e}")));
                false
            }
        }
    }

    /// The socket of entry `i` takes writes again.
    fn writable(&self, i: usize) {
        let mut state = self.state.borrow_mut();
        let Some(Some(e)) = state.entries.get_mut(i) else {
            return;
        };
        if !e.writing {
            return;
        }
        match e.conn.try_flush() {
            Ok(false) => {}
            Ok(true) => {
                e.writing = false;
                let fd = e.fd;
                drop(state);
                self.watch(i, libc::EPOLL_CTL_MOD, fd, READ_EVENTS);
            }
            Err(err) => {
                drop(state);
                self.finish(i, End::Lost(reason(&err)));
            }
        }
    }

    /// The phase changed: stop everything, or move every entry's next send.
    fn on_phase(&self, sh: &Shared) {
        if self.phase.get() == Phase::Stop {
            self.finish_all(|| End::Stopped);
            return;
        }
        let n = self.state.borrow().entries.len();
        for i in 0..n {
            self.schedule(sh, i);
        }
    }

    /// The coarse deadlines: the join fallback and the connection's dead-server check.
    fn housekeeping(&self, sh: &Shared) {
        let grace_ns = sh.cfg.grace.as_nanos() as u64;
        let now_ns = sh.now_ns();
        let now = Instant::now();
        let n = self.state.borrow().entries.len();
        for i in 0..n {
            let r = {
                let mut state = self.state.borrow_mut();
                let Some(Some(e)) = state.entries.get_mut(i) else {
                    continue;
                };
                // A server that never acknowledges join_room (the original app's) is assumed to
                // have processed it one grace period after it was sent.
                if e.sess.join_ack.is_some() && e.sess.join_sent + grace_ns <= now_ns {
                    e.sess.join_ack = None;
                    e.c.log.joined(e.sess.join_sent + grace_ns);
                }
                if e.conn.poll_timeout().is_some_and(|t| t <= now) {
                    e.conn
                        .handle_timeout(now)
                        .and_then(|()| e.conn.try_flush())
                        .map(|_| ())
                } else {
                    Ok(())
                }
            };
            if let Err(err) = r {
                self.finish(i, End::Lost(reason(&err)));
            }
        }
    }

    /// Hand entry `i` back to its client task.
    fn finish(&self, i: usize, end: End) {
        let Some(e) = self
            .state
            .borrow_mut()
            .entries
            .get_mut(i)
            .and_then(Option::take)
        else {
            return;
        };
        let _ = sys::ctl(
            self.ep.get_ref().as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            e.fd,
            0,
            0,
        );
        let _ = e.done.send(Handback {
            end,
            conn: e.conn,
            c: e.c,
        });
    }

    fn finish_all(&self, end: impl Fn() -> End) {
        let n = self.state.borrow().entries.len();
        for i in 0..n {
            self.finish(i, end());
        }
    }
}

/// What a connection's socket is watched for (edge-triggered: a read that does not fill its
/// buffer has drained the socket).
const READ_EVENTS: i32 = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET;

/// The system calls, each in one place.
mod sys {
    use super::*;

    /// An `epoll` descriptor and the send timer.
    pub fn create() -> Option<(OwnedFd, OwnedFd)> {
        // SAFETY: a plain syscall; the descriptor is owned once.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor, owned here only.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        Some((ep, pacer::timerfd()?))
    }

    pub fn ctl(ep: RawFd, op: i32, fd: RawFd, events: i32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: key,
        };
        // SAFETY: valid descriptors (or an error return) and a valid event pointer.
        if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The events ready now (no waiting); 0 on an error (retried on the next readiness).
    pub fn wait(ep: RawFd, events: &mut [libc::epoll_event]) -> usize {
        loop {
            // SAFETY: `events` is valid for its length.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 0) };
            if n >= 0 {
                return n as usize;
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return 0;
            }
        }
    }
}
