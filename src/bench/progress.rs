//! Live view while the bench runs: per-worker counters published without locks, and an indicatif
//! progress bar on stderr (only when stderr is a terminal) with the current rate, p99 and errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::{ms, rate, thousands};

/// Counters one worker publishes a few times per second (plain stores by the owner, loads by the
/// main thread; the hot path updates thread-local counters and never touches these).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Live {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub open: AtomicU64,
    pub connect_done: AtomicU64,
    pub connect_failed: AtomicU64,
    /// Clients whose `join_room` the server acknowledged.
    pub join_acked: AtomicU64,
}

/// A snapshot of all workers' live counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    pub errors: u64,
    pub open: u64,
    pub connect_done: u64,
    pub connect_failed: u64,
    pub join_acked: u64,
}

impl Totals {
    pub fn of(live: &[Live]) -> Totals {
        let mut t = Totals::default();
        for l in live {
            t.sent += l.sent.load(Ordering::Relaxed);
            t.received += l.received.load(Ordering::Relaxed);
            t.errors += l.errors.load(Ordering::Relaxed);
            t.open += l.open.load(Ordering::Relaxed);
            t.connect_done += l.connect_done.load(Ordering::Relaxed);
            t.connect_failed += l.connect_failed.load(Ordering::Relaxed);
            t.join_acked += l.join_acked.load(Ordering::Relaxed);
        }
        t
    }
}

/// The progress bar, or nothing when stderr is not a terminal (or `--quiet`, `--json`).
pub struct Progress {
    bar: Option<ProgressBar>,
    last: Totals,
    last_at: std::time::Instant,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>9} {bar:16} {pos}/{len}{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            last: Totals::default(),
            last_at: std::time::Instant::now(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.bar.is_some()
    }

    /// The connect phase: position = connections done (connected or failed) of `total`.
    pub fn connecting(&mut self, t: &Totals, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_prefix("connecting");
            bar.set_length(total);
            bar.set_position(t.connect_done + t.connect_failed);
            let mut msg = format!(" {} open", thousands(t.open));
            if t.connect_failed > 0 {
                msg.push_str(&format!(", {} failed", thousands(t.connect_failed)));
            }
            bar.set_message(msg);
        }
    }

    /// The sending phase: position = elapsed seconds of `total_s`; message = current rates, p99 of
    /// the last interval and errors.
    pub fn running(
        &mut self,
        label: &str,
        t: &Totals,
        elapsed: Duration,
        total: Duration,
        p99_ms: Option<f64>,
    ) {
        let now = std::time::Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64();
        if let Some(bar) = &self.bar {
            bar.set_prefix(label.to_string());
            bar.set_length(total.as_secs().max(1));
            bar.set_position(elapsed.as_secs().min(total.as_secs()));
            if dt >= 0.5 {
                let sent = (t.sent.saturating_sub(self.last.sent)) as f64 / dt;
                let recv = (t.received.saturating_sub(self.last.received)) as f64 / dt;
                let p99 = p99_ms.map_or_else(|| "-".to_string(), ms);
                // Short enough for an 80-column terminal.
                bar.set_message(format!(
                    "s tx {}/s rx {}/s p99 {p99} err {}",
                    rate(sent),
                    rate(recv),
                    thousands(t.errors)
                ));
            }
        }
        if dt >= 0.5 {
            self.last = *t;
            self.last_at = now;
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// p99 in ms of the merged last-interval histograms, if anything was recorded.
pub fn interval_p99(hists: &[Histogram<u64>]) -> Option<f64> {
    let mut merged: Option<Histogram<u64>> = None;
    for h in hists.iter().filter(|h| !h.is_empty()) {
        match &mut merged {
            Some(m) => {
                let _ = m.add(h);
            }
            None => merged = Some(h.clone()),
        }
    }
    merged.map(|m| m.value_at_quantile(0.99) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::{new_coarse_hist, record};

    #[test]
    fn totals_sum_workers() {
        let live = [Live::default(), Live::default()];
        live[0].sent.store(3, Ordering::Relaxed);
        live[1].sent.store(4, Ordering::Relaxed);
        live[1].errors.store(1, Ordering::Relaxed);
        let t = Totals::of(&live);
        assert_eq!((t.sent, t.errors), (7, 1));
    }

    #[test]
    fn interval_p99_merges_workers() {
        let mut a = new_coarse_hist();
        let mut b = new_coarse_hist();
        for _ in 0..99 {
            record(&mut a, 1000);
        }
        record(&mut b, 50_000);
        record(&mut b, 50_000);
        let p = interval_p99(&[a, b, new_coarse_hist()]).unwrap();
        assert!(p >= 49.0, "{p}");
        assert_eq!(interval_p99(&[new_coarse_hist()]), None);
    }

    #[test]
    fn disabled_progress_draws_nothing() {
        let mut p = Progress::new(false);
        assert!(!p.is_enabled());
        p.connecting(&Totals::default(), 10);
        p.running(
            "sending",
            &Totals::default(),
            Duration::from_secs(1),
            Duration::from_secs(2),
            None,
        );
        p.finish();
    }
}
