//! Precise send pacing for one worker thread.
//!
//! Latency is measured from each message's intended send time, so the generator's own lateness in
//! sending counts against the server. Tokio's timer wheel has 1-ms ticks and rounds deadlines up:
//! a message due at 5.3 ms went out at 6 ms or later. At low load that spread each measured
//! latency uniformly over about a millisecond, more than a loopback round trip takes.
//!
//! The pacer replaces that timer for sends. There is one `timerfd` per worker, armed with the
//! earliest deadline that any of the worker's connections waits for. When the timer fires, the
//! pacer wakes every connection whose deadline has passed. Each connection has one slot holding
//! its deadline and waker. A heap orders the deadlines; entries whose slot has since moved on
//! are skipped. Where no `timerfd` can be had, [`Pacer::new`] returns `None` and the caller keeps
//! tokio's timer.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A connection's place in the pacer: [`Pacer::slot`] hands them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

#[derive(Default)]
struct SlotState {
    /// The deadline this slot waits for (ns since the epoch), if any.
    due: Option<u64>,
    waker: Option<Waker>,
}

struct State {
    slots: Vec<SlotState>,
    /// (deadline, slot); stale entries (the slot's deadline changed) are skipped when popped.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The deadline the timerfd is armed for.
    armed: Option<u64>,
    /// When the timer last fired (ns since the epoch).
    last_fire: u64,
}

/// The shortest time between two wake-ups of the worker by the pacer. Each wake-up of an idle
/// thread costs about 10 µs of CPU here, so one per send would make a lightly loaded generator
/// several times busier. Deadlines closer together than this share a wake-up instead: a send is
/// at most this late because of the pacer (tokio's timer: up to 1 ms and more).
pub const MIN_GAP_NS: u64 = 100_000;

/// The worker's pacer (single-threaded: share it with `Rc`).
pub struct Pacer {
    fd: AsyncFd<OwnedFd>,
    epoch: Instant,
    /// CLOCK_MONOTONIC at `epoch`, in ns (std's `Instant` is CLOCK_MONOTONIC on Linux).
    epoch_mono_ns: u128,
    state: RefCell<State>,
}

impl Pacer {
    /// A pacer measuring deadlines in ns since `epoch`. Must be called inside a tokio runtime with
    /// I/O enabled. `None` where no `timerfd` is available (not Linux, or the call failed).
    pub fn new(epoch: Instant) -> Option<Rc<Pacer>> {
        let fd = timerfd()?;
        // SAFETY: an `OwnedFd` stays open and is the same descriptor until the `AsyncFd` drops it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()?;
        // Tie `epoch` to CLOCK_MONOTONIC: read both clocks back to back.
        let mono_now = monotonic_ns()?;
        let since_epoch = epoch.elapsed().as_nanos();
        Some(Rc::new(Pacer {
            fd,
            epoch,
            epoch_mono_ns: mono_now.checked_sub(since_epoch)?,
            state: RefCell::new(State {
                slots: Vec::new(),
                heap: BinaryHeap::new(),
                armed: None,
                last_fire: 0,
            }),
        }))
    }

    /// A new slot for one connection.
    pub fn slot(&self) -> Slot {
        let mut st = self.state.borrow_mut();
        st.slots.push(SlotState::default());
        Slot(st.slots.len() - 1)
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Completes once `due_ns` (ns since the epoch) has passed. Dropping the future early is fine:
    /// the slot may then be woken once, spuriously.
    pub async fn wait_until(&self, slot: Slot, due_ns: u64) {
        poll_fn(|cx| self.poll_until(cx, slot, due_ns)).await
    }

    fn poll_until(&self, cx: &mut Context<'_>, slot: Slot, due_ns: u64) -> Poll<()> {
        if self.now_ns() >= due_ns {
            let mut st = self.state.borrow_mut();
            if st.slots[slot.0].due == Some(due_ns) {
                st.slots[slot.0].due = None;
            }
            return Poll::Ready(());
        }
        let mut st = self.state.borrow_mut();
        let s = &mut st.slots[slot.0];
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        if s.due != Some(due_ns) {
            s.due = Some(due_ns);
            st.heap.push(Reverse((due_ns, slot.0)));
            let at = due_ns.max(st.last_fire + MIN_GAP_NS);
            if st.armed.is_none_or(|a| at < a) {
                st.armed = Some(at);
                self.arm(at);
            }
        }
        Poll::Pending
    }

    /// Set the timerfd to fire at `due_ns` (ns since the epoch).
    fn arm(&self, due_ns: u64) {
        arm(
            self.fd.get_ref().as_raw_fd(),
            self.epoch_mono_ns + u128::from(due_ns),
        );
    }

    /// Wake every slot whose deadline has passed and re-arm the timer for the next one.
    fn fire(&self) {
        let now = self.now_ns();
        let mut woken = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            while let Some(&Reverse((due, i))) = st.heap.peek() {
                if due > now {
                    break;
                }
                st.heap.pop();
                let s = &mut st.slots[i];
                if s.due == Some(due) {
                    s.due = None;
                    if let Some(w) = s.waker.take() {
                        woken.push(w);
                    }
                }
            }
            st.last_fire = now;
            st.armed = st
                .heap
                .peek()
                .map(|&Reverse((due, _))| due.max(now + MIN_GAP_NS));
            if let Some(next) = st.armed {
                self.arm(next);
            }
        }
        // Wake outside the borrow: a waker that polled its task at once would find it borrowed.
        for w in woken {
            w.wake();
        }
    }

    /// The pacer's task: run it with `spawn_local` for as long as the worker sends.
    pub async fn run(self: Rc<Self>) {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return;
            };
            // Drain the expiration count (`WouldBlock`: a stale readiness).
            if let Err(e) = drain(self.fd.get_ref().as_raw_fd())
                && e.kind() != io::ErrorKind::WouldBlock
            {
                return;
            }
            // Read (count now 0) or nothing to read: wait for the next expiration's edge.
            guard.clear_ready();
            self.fire();
        }
    }
}

/// Read `timer`'s expiration count (a timerfd), which resets it.
pub(super) fn drain(timer: RawFd) -> io::Result<()> {
    let mut buf = [0u8; 8];
    // SAFETY: reading 8 bytes into a valid buffer from a descriptor the caller owns.
    if unsafe { libc::read(timer, buf.as_mut_ptr().cast(), buf.len()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set `timer` (a timerfd) to fire once at `at_ns` (absolute CLOCK_MONOTONIC time).
pub(super) fn arm(timer: RawFd, at_ns: u128) {
    set(timer, at_ns, 0);
}

/// Set `timer` to fire at `at_ns` (absolute CLOCK_MONOTONIC time) and then every `every_ns`
/// until it is set again. For an edge-triggered `epoll`, an expiry raises a new edge only once
/// the count has been read ([`drain`]), as with a one-shot timer.
pub(super) fn arm_periodic(timer: RawFd, at_ns: u128, every_ns: u64) {
    set(timer, at_ns, every_ns);
}

/// Stop `timer`.
pub(super) fn disarm(timer: RawFd) {
    set(timer, 0, 0);
}

fn set(timer: RawFd, at_ns: u128, every_ns: u64) {
    let ts = |ns: u128| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts(u128::from(every_ns)),
        it_value: ts(at_ns),
    };
    // SAFETY: a valid timerfd and valid pointers; the old value is not asked for.
    unsafe {
        libc::timerfd_settime(timer, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut());
    }
}

/// A non-blocking CLOCK_MONOTONIC timerfd, with this thread's timer slack cut to 1 ns.
#[cfg(target_os = "linux")]
pub(super) fn timerfd() -> Option<OwnedFd> {
    // Let timers on this thread fire without the default 50 µs of slack.
    // SAFETY: plain syscalls with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        let fd = libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        );
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn timerfd() -> Option<OwnedFd> {
    None
}

pub(super) fn monotonic_ns() -> Option<u128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    (unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0)
        .then(|| ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A bound on lateness that only a broken pacer misses (not a timing target).
    const LATE_BOUND: Duration = Duration::from_millis(50);

    fn local_rt() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (rt, tokio::task::LocalSet::new())
    }

    #[test]
    fn wakes_each_waiter_at_or_after_its_deadline_in_order() {
        let (rt, local) = local_rt();
        local.block_on(&rt, async {
            let epoch = Instant::now();
            let pacer = Pacer::new(epoch).expect("timerfd");
            tokio::task::spawn_local(pacer.clone().run());
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            // Deadlines registered out of order, one registered again (moved later).
            for (n, ms) in [(0u64, 30u64), (1, 10), (2, 20), (3, 5)] {
                let (p, o) = (pacer.clone(), order.clone());
                let slot = pacer.slot();
                tasks.push(tokio::task::spawn_local(async move {
                    let due = epoch.elapsed().as_nanos() as u64 + ms * 1_000_000;
                    if n == 3 {
                        // A wait dropped early leaves its slot registered; the next one moves it.
                        let _ =
                            tokio::time::timeout(Duration::from_millis(1), p.wait_until(slot, due))
                                .await;
                        p.wait_until(slot, due + 30_000_000).await;
                    } else {
                        p.wait_until(slot, due).await;
                    }
                    let now = epoch.elapsed().as_nanos() as u64;
                    let due = if n == 3 { due + 30_000_000 } else { due };
                    assert!(now >= due, "woken {} ns early", due - now);
                    assert!(
                        now - due < LATE_BOUND.as_nanos() as u64,
                        "woken {} ms late",
                        (now - due) / 1_000_000
                    );
                    o.borrow_mut().push(n);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(*order.borrow(), vec![1, 2, 0, 3]);
        });
    }

    #[test]
    fn a_periodic_timer_raises_an_edge_per_expiry_once_its_count_is_read() {
        // The fast loop keeps a periodic timer while sends are due closer together than its
        // period: after each read of the count, the next expiry must wake it again.
        let timer = timerfd().expect("timerfd");
        // SAFETY: plain syscalls; the epoll descriptor is owned once.
        let ep = unsafe { OwnedFd::from_raw_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 7,
        };
        // SAFETY: valid descriptors and event pointer.
        let r = unsafe {
            libc::epoll_ctl(
                ep.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                timer.as_raw_fd(),
                &mut ev,
            )
        };
        assert_eq!(r, 0);
        let now = monotonic_ns().unwrap();
        arm_periodic(timer.as_raw_fd(), now + 1_000_000, 1_000_000);
        let wait = |ms| {
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
            // SAFETY: `evs` is valid for its length.
            unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), 4, ms) }
        };
        for n in 0..3 {
            assert_eq!(wait(1000), 1, "expiry {n} raised no edge");
            drain(timer.as_raw_fd()).expect("a count to read");
        }
        // Stopped, it raises none.
        disarm(timer.as_raw_fd());
        let _ = drain(timer.as_raw_fd());
        assert_eq!(wait(20), 0);
    }

    #[test]
    fn a_deadline_already_past_is_ready_at_once() {
        let (rt, local) = local_rt();
        local.block_on(&rt, async {
            let epoch = Instant::now() - Duration::from_secs(1);
            let pacer = Pacer::new(epoch).expect("timerfd");
            let slot = pacer.slot();
            // No pacer task runs: only an immediate Ready can finish this.
            tokio::time::timeout(Duration::from_secs(5), pacer.wait_until(slot, 1_000))
                .await
                .expect("ready at once");
        });
    }
}
