//! How busy each runtime thread is, and the write window that follows from it.
//!
//! On loopback and on fast networks the relay's cost is mostly one `sendto` per write: every write
//! is a TCP segment, and on loopback the sender's core also runs the receiver's TCP input. While a
//! thread has spare time, every message is written as soon as it is queued, which gives the lowest
//! latency. Once the thread is saturated, writing sooner gains nothing: messages already wait for
//! the CPU. Then each connection writes at most once per *window*, so that the messages of that
//! window share one segment. This cuts the system calls per delivery where the CPU is the limit
//! (BENCHMARKS.md: 5-7 deliveries per write at 80-112/s per client instead of about one, and the
//! relay's knee at 104-256/s per client where it was 46-64/s without the window).
//!
//! The gauge runs on the runtime's park/unpark hooks ([`install`]): the share of each period spent
//! unparked is the thread's load. The window turns on at [`ON`]. While it is on, the busy share
//! alone cannot say when to turn it off: the window lowers the load it is measured by, so a gate on
//! that share flaps (off, the core fills, on again). The gauge therefore also counts the frames
//! and the writes of the period ([`wrote`]) and estimates the share the thread would have without
//! the window ([`unwindowed_share`]); the window turns off when that estimate falls below [`OFF`].
//! A thread without the hooks (a runtime built elsewhere, tests) never turns it on.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Length of one measuring period.
const PERIOD: Duration = Duration::from_millis(100);
/// Busy share at which the window turns on.
pub const ON: f64 = 0.97;
/// Estimated busy share without the window below which it turns off again.
pub const OFF: f64 = 0.9;
/// The share of a delivery's cost, written alone, that is its write (the system call and the
/// segment) rather than the frame's own work. On loopback the writes are about seven eighths of
/// it (BENCHMARKS.md: 8 µs per delivery at one write each, 2.4 µs at five per write). Less is
/// assumed here, so that the estimate errs low: where writes are cheaper (a real network card),
/// the window turns off a little early rather than staying on at a load that does not need it.
const WRITE_COST_SHARE: f64 = 0.75;

#[derive(Debug)]
struct Gauge {
    /// The window that applies while saturated (zero: never coalesce). Set by the hooks.
    window: Cell<Duration>,
    /// Start of the current period (`None` until the first hook runs).
    period_start: Cell<Option<Instant>>,
    /// Busy time accumulated in this period, up to the last park.
    busy: Cell<Duration>,
    /// When the thread last woke up, while it runs.
    running_since: Cell<Option<Instant>>,
    /// Whether the window is on.
    saturated: Cell<bool>,
    /// Frames written in this period, and the writes that carried them.
    frames: Cell<u64>,
    writes: Cell<u64>,
}

thread_local! {
    static GAUGE: Gauge = const { Gauge::new(Duration::ZERO) };
}

impl Gauge {
    /// A gauge with `window`, before its first measurement (unsaturated).
    const fn new(window: Duration) -> Gauge {
        Gauge {
            window: Cell::new(window),
            period_start: Cell::new(None),
            busy: Cell::new(Duration::ZERO),
            running_since: Cell::new(None),
            saturated: Cell::new(false),
            frames: Cell::new(0),
            writes: Cell::new(0),
        }
    }

    /// Close the period if it is over: the busy share decides the window's state.
    fn roll(&self, now: Instant) {
        let Some(start) = self.period_start.get() else {
            self.period_start.set(Some(now));
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < PERIOD {
            return;
        }
        let mut busy = self.busy.get();
        if let Some(since) = self.running_since.get() {
            // Still running: the time so far counts, and the next period starts from now.
            busy += now.saturating_duration_since(since.max(start));
            self.running_since.set(Some(now));
        }
        let share = busy.as_secs_f64() / elapsed.as_secs_f64();
        let per_write = match self.writes.get() {
            0 => 1.0,
            w => self.frames.get() as f64 / w as f64,
        };
        self.saturated
            .set(saturation(self.saturated.get(), share, per_write));
        self.busy.set(Duration::ZERO);
        self.frames.set(0);
        self.writes.set(0);
        self.period_start.set(Some(now));
    }

    fn unpark(&self, now: Instant) {
        self.roll(now);
        self.running_since.set(Some(now));
    }

    /// Count one write of `frames` frames in this period.
    fn wrote(&self, frames: usize) {
        self.frames.set(self.frames.get() + frames as u64);
        self.writes.set(self.writes.get() + 1);
    }

    fn park(&self, now: Instant) {
        if let Some(since) = self.running_since.take() {
            let from = self.period_start.get().map_or(since, |s| since.max(s));
            self.busy
                .set(self.busy.get() + now.saturating_duration_since(from));
        }
        self.roll(now);
    }
}

/// The next state of the window, from its state, the busy share of the period just ended and the
/// frames per write in it.
fn saturation(on: bool, share: f64, per_write: f64) -> bool {
    if on {
        unwindowed_share(share, per_write) >= OFF
    } else {
        share >= ON
    }
}

/// The busy share a thread would have written one frame per write, from its `share` at
/// `per_write` frames per write: each frame's own work stays, and its write is shared.
fn unwindowed_share(share: f64, per_write: f64) -> f64 {
    let per_frame = 1.0 - WRITE_COST_SHARE + WRITE_COST_SHARE / per_write.max(1.0);
    share / per_frame
}

/// Measure every worker thread of the runtime that `builder` builds, and coalesce each
/// connection's writes over `window` while its thread is saturated (zero: never).
pub fn install(
    builder: &mut tokio::runtime::Builder,
    window: Duration,
) -> &mut tokio::runtime::Builder {
    builder
        .on_thread_park(|| GAUGE.with(|g| g.park(Instant::now())))
        .on_thread_unpark(move || {
            GAUGE.with(|g| {
                g.window.set(window);
                g.unpark(Instant::now());
            })
        })
}

/// Count one write of `frames` frames on this thread (writers call it while [`enabled`]).
pub fn wrote(frames: usize) {
    GAUGE.with(|g| g.wrote(frames))
}

/// Whether this thread has a window configured (so that writers keep the time of their writes).
pub fn enabled() -> bool {
    GAUGE.with(|g| !g.window.get().is_zero())
}

/// The least time between two writes to one connection, as of `now`, on this thread: the window
/// while the thread is saturated, else `None` (write at once).
pub fn write_window(now: Instant) -> Option<Duration> {
    GAUGE.with(|g| {
        let w = g.window.get();
        if w.is_zero() {
            return None;
        }
        g.roll(now);
        g.saturated.get().then_some(w)
    })
}

/// Tests: give this thread `window` as if its runtime had the hooks, still unsaturated.
#[cfg(test)]
pub(crate) fn configure_this_thread(window: Duration) {
    GAUGE.with(|g| g.window.set(window));
}

/// Tests: make this thread saturated with `window`. Without the park hook (a test runtime has
/// none) it never parks, so it stays saturated.
#[cfg(test)]
pub(crate) fn saturate_this_thread(window: Duration) {
    GAUGE.with(|g| {
        g.window.set(window);
        g.unpark(Instant::now());
        g.saturated.set(true);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn gauge(window_ms: u64) -> Gauge {
        Gauge::new(Duration::from_millis(window_ms))
    }

    /// Run `busy_ms` then park for `idle_ms`, `n` times, from `t` (ms after `base`).
    fn cycle(g: &Gauge, base: Instant, t: &mut u64, busy_ms: u64, idle_ms: u64, n: usize) {
        for _ in 0..n {
            g.unpark(at(base, *t));
            *t += busy_ms;
            g.park(at(base, *t));
            *t += idle_ms;
        }
    }

    #[test]
    fn hysteresis_between_on_and_off() {
        assert!(!saturation(false, 0.96, 1.0));
        assert!(saturation(false, 0.97, 1.0));
        // Off, the frames per write do not matter: only a saturated period turns it on.
        assert!(!saturation(false, 0.9, 5.0));
        // On at one frame per write (the window saves nothing): the share itself decides.
        assert!(saturation(true, 0.92, 1.0));
        assert!(!saturation(true, 0.89, 1.0));
    }

    #[test]
    fn while_the_window_batches_it_stays_on_at_the_lower_load_it_makes() {
        // 4.8 frames per write and 87% busy (the relay at 80/s per client with the window): the
        // same load written one frame per write would take about two cores.
        let est = unwindowed_share(0.87, 4.8);
        assert!((est - 2.14).abs() < 0.01, "{est}");
        assert!(saturation(true, 0.87, 4.8));
        // The load falls: 40% busy at 2 frames per write would be 64% unwindowed, so off.
        assert!(!saturation(true, 0.4, 2.0));
        // Fewer frames per write than one (control frames only) counts as one.
        assert_eq!(unwindowed_share(0.5, 0.0), 0.5);
    }

    #[test]
    fn the_frames_per_write_of_a_period_keep_a_batching_window_on() {
        let base = Instant::now();
        let g = gauge(6);
        let mut t = 0;
        // Saturated: on.
        cycle(&g, base, &mut t, 39, 1, 10);
        assert!(g.saturated.get());
        // 80% busy while each write carries five frames: still needed, so it stays on.
        for _ in 0..5 {
            (0..20).for_each(|_| g.wrote(5));
            cycle(&g, base, &mut t, 4, 1, 20);
        }
        assert!(g.saturated.get());
        // 80% busy at one frame per write: not saturated, so off.
        for _ in 0..5 {
            (0..20).for_each(|_| g.wrote(1));
            cycle(&g, base, &mut t, 4, 1, 20);
        }
        assert!(!g.saturated.get());
    }

    #[test]
    fn a_thread_busy_most_of_the_time_turns_the_window_on_and_an_idle_one_off() {
        let base = Instant::now();
        let g = gauge(6);
        let mut t = 0;
        // 50% busy: stays off.
        cycle(&g, base, &mut t, 1, 1, 300);
        assert!(!g.saturated.get());
        // 94% busy (a loaded thread, not a saturated one): stays off.
        cycle(&g, base, &mut t, 47, 3, 10);
        assert!(!g.saturated.get());
        // 97.5% busy over several periods: on.
        cycle(&g, base, &mut t, 39, 1, 10);
        assert!(g.saturated.get());
        // 93% busy: stays on (above OFF).
        cycle(&g, base, &mut t, 93, 7, 5);
        assert!(g.saturated.get());
        // 80% busy: off again.
        cycle(&g, base, &mut t, 4, 1, 100);
        assert!(!g.saturated.get());
    }

    #[test]
    fn a_thread_that_never_parks_counts_as_saturated() {
        let base = Instant::now();
        let g = gauge(6);
        g.unpark(base);
        // No park for 300 ms: each query closes a period that was all busy.
        for ms in (10..=300).step_by(10) {
            g.roll(at(base, ms));
        }
        assert!(g.saturated.get());
    }

    #[test]
    fn without_the_hooks_there_is_no_window() {
        // A fresh thread whose runtime has no hooks: the window is zero, so never on.
        let w = std::thread::spawn(|| write_window(Instant::now()))
            .join()
            .unwrap();
        assert_eq!(w, None);
    }

    #[test]
    fn the_window_applies_only_while_saturated() {
        let r = std::thread::spawn(|| {
            GAUGE.with(|g| g.window.set(Duration::from_millis(6)));
            let base = Instant::now();
            let idle = write_window(base);
            GAUGE.with(|g| g.unpark(base));
            let busy = write_window(at(base, 150));
            (idle, write_window(at(base, 300)).or(busy))
        })
        .join()
        .unwrap();
        assert_eq!(r.0, None);
        assert_eq!(r.1, Some(Duration::from_millis(6)));
    }
}
