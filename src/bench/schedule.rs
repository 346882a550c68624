//! The open-loop schedule: when each client is *supposed* to send its k-th message.
//!
//! Every client sends at a fixed rate no matter how the server answers (open loop). Client `i`'s
//! k-th message is due at `start + phase(i) + k * interval`, where the phases spread the clients
//! evenly over one interval so the load is smooth rather than in bursts. Latency is measured from
//! this intended time, not from the moment the bytes left (coordinated-omission correction, as
//! wrk2 does): when the generator or the server stalls, the messages that should have gone out
//! during the stall are sent late, and their lateness counts as latency.
//!
//! All times are nanoseconds since the run's epoch (an `Instant` taken at start), rounded to
//! whole microseconds at the window boundaries so the µs timestamps carried in message ids compare
//! exactly with them.

/// One run's schedule. Pure arithmetic; the driver supplies the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// When sending starts (ns since epoch; a whole number of µs).
    pub start_ns: u64,
    /// Time between two messages of one client.
    pub interval_ns: u64,
    /// Number of clients (for the phase spread).
    pub clients: u64,
    /// Messages intended at or after this time are measured (start + warmup).
    pub measure_start_ns: u64,
    /// ...and before this time (start + warmup + duration). Sending stops here.
    pub end_ns: u64,
}

impl Schedule {
    /// A schedule starting at `start_ns` with `rate` messages/s per client.
    pub fn new(
        start_ns: u64,
        rate_per_client: f64,
        clients: usize,
        warmup_ns: u64,
        duration_ns: u64,
    ) -> Schedule {
        let start_ns = round_us(start_ns);
        let interval_ns = ((1e9 / rate_per_client).round() as u64).max(1);
        let measure_start_ns = start_ns + round_us(warmup_ns);
        Schedule {
            start_ns,
            interval_ns,
            clients: clients.max(1) as u64,
            measure_start_ns,
            end_ns: measure_start_ns + round_us(duration_ns),
        }
    }

    /// Client `i`'s offset within one interval.
    #[inline]
    pub fn phase_ns(&self, client: u32) -> u64 {
        ((u128::from(client) * u128::from(self.interval_ns)) / u128::from(self.clients)) as u64
    }

    /// When client `i`'s message `k` is due.
    #[inline]
    pub fn intended_ns(&self, client: u32, seq: u32) -> u64 {
        self.start_ns + self.phase_ns(client) + u64::from(seq) * self.interval_ns
    }

    /// Whether a message due at `t_ns` is sent at all (before the end).
    #[inline]
    pub fn is_sent(&self, t_ns: u64) -> bool {
        t_ns < self.end_ns
    }

    /// Whether a message due at `t_us` (µs, from an id) is measured.
    #[inline]
    pub fn is_measured_us(&self, t_us: u64) -> bool {
        t_us >= self.measure_start_ns / 1000 && t_us < self.end_ns / 1000
    }

    /// The first sequence number of client `i` due at or after `t_ns`.
    pub fn first_seq_at_or_after(&self, client: u32, t_ns: u64) -> u64 {
        let base = self.start_ns + self.phase_ns(client);
        if t_ns <= base {
            return 0;
        }
        (t_ns - base).div_ceil(self.interval_ns)
    }

    /// Client `i`'s sequence numbers `[lo, hi)` that are measured.
    pub fn measured_seqs(&self, client: u32) -> (u64, u64) {
        (
            self.first_seq_at_or_after(client, self.measure_start_ns),
            self.first_seq_at_or_after(client, self.end_ns),
        )
    }

    /// Client `i`'s sequence numbers due in `[from_ns, to_ns)`.
    pub fn seqs_between(&self, client: u32, from_ns: u64, to_ns: u64) -> (u64, u64) {
        let lo = self.first_seq_at_or_after(client, from_ns);
        let hi = self.first_seq_at_or_after(client, to_ns);
        (lo, hi.max(lo))
    }

    /// Messages per second offered by all clients together.
    pub fn offered_rate(&self) -> f64 {
        self.clients as f64 * 1e9 / self.interval_ns as f64
    }
}

fn round_us(ns: u64) -> u64 {
    ns.div_ceil(1000) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> Schedule {
        // 4 clients at 10/s, start at 1 s, 2 s warmup, 3 s measured.
        Schedule::new(1_000_000_000, 10.0, 4, 2_000_000_000, 3_000_000_000)
    }

    #[test]
    fn phases_spread_clients_over_one_interval() {
        let s = sched();
        assert_eq!(s.interval_ns, 100_000_000);
        let phases: Vec<u64> = (0..4).map(|i| s.phase_ns(i)).collect();
        assert_eq!(phases, vec![0, 25_000_000, 50_000_000, 75_000_000]);
        assert_eq!(
            s.intended_ns(1, 3),
            1_000_000_000 + 25_000_000 + 300_000_000
        );
    }

    #[test]
    fn measured_window_counts_rate_times_duration_per_client() {
        let s = sched();
        for c in 0..4 {
            let (lo, hi) = s.measured_seqs(c);
            assert_eq!(hi - lo, 30, "client {c}: 10/s for 3 s");
            assert!(s.intended_ns(c, lo as u32) >= s.measure_start_ns);
            assert!(s.intended_ns(c, lo as u32 - 1) < s.measure_start_ns);
            assert!(s.intended_ns(c, hi as u32) >= s.end_ns);
            assert!(s.intended_ns(c, hi as u32 - 1) < s.end_ns);
        }
    }

    #[test]
    fn measured_by_us_timestamp_agrees_with_measured_seqs() {
        let s = Schedule::new(1_234_567, 7.3, 13, 1_111_111_111, 2_222_222_222);
        for c in 0..13u32 {
            let (lo, hi) = s.measured_seqs(c);
            for k in 0..(hi as u32 + 5) {
                let t_us = s.intended_ns(c, k) / 1000;
                assert_eq!(
                    s.is_measured_us(t_us),
                    (lo..hi).contains(&u64::from(k)),
                    "client {c} seq {k}"
                );
            }
        }
    }

    #[test]
    fn offered_rate_is_clients_times_rate() {
        assert!((sched().offered_rate() - 40.0).abs() < 1e-9);
    }
}
