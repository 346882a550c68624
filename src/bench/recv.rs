//! The receive hot path after the scan: decide what a received bench id means for this client
//! (fresh delivery, duplicate, warmup, misrouted, ...) and record it. Pure and allocation-free in
//! the steady state, so it is unit-tested and benchmarked without sockets.

use hdrhistogram::Histogram;

use super::payload::MessageId;
use super::schedule::Schedule;
use super::stats::{ClientLog, WorkerStats, record};

/// Who is receiving, for routing checks.
#[derive(Debug, Clone, Copy)]
pub struct Receiver {
    pub index: u32,
    pub room: u32,
    pub rooms: u32,
    pub clients: u32,
    /// Plain WebSocket echo: a client expects its own messages back.
    pub echo: bool,
}

/// What one received id was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// Not from a client of this run.
    Foreign,
    /// A client's own chat message came back to it.
    SelfEcho,
    /// From a sender in another room.
    Misrouted,
    /// Due outside the measured window (warmup), or before sending started.
    Unmeasured,
    /// A copy of a message this client already received.
    Duplicate,
    /// A first delivery: latency from the intended send time, the second (of the measured window)
    /// it was due in and the second it arrived in.
    Fresh {
        latency_us: u64,
        due_sec: usize,
        arrival_sec: Option<usize>,
    },
}

impl Receiver {
    /// Classify a received id and mark it in the client's log.
    #[inline]
    pub fn message(
        &self,
        id: MessageId,
        schedule: Option<&Schedule>,
        now_us: u64,
        log: &mut ClientLog,
    ) -> Got {
        if id.sender >= self.clients {
            return Got::Foreign;
        }
        if self.echo {
            if id.sender != self.index {
                return Got::Misrouted;
            }
        } else if id.sender == self.index {
            return Got::SelfEcho;
        } else if id.sender % self.rooms != self.room {
            return Got::Misrouted;
        }
        let Some(s) = schedule else {
            return Got::Unmeasured;
        };
        if !s.is_measured_us(id.t_us) {
            return Got::Unmeasured;
        }
        if !log.receive(id.sender / self.rooms, id.seq) {
            return Got::Duplicate;
        }
        let start_us = s.measure_start_ns / 1000;
        Got::Fresh {
            latency_us: now_us.saturating_sub(id.t_us),
            due_sec: ((id.t_us - start_us) / 1_000_000) as usize,
            arrival_sec: now_us
                .checked_sub(start_us)
                .map(|d| (d / 1_000_000) as usize),
        }
    }
}

/// Record what was received into the worker's statistics and the live-interval histogram.
/// `wait_us` is how long the read's newest data waited in the socket before it was read (kernel
/// stamps): older messages in the same read waited longer.
#[inline]
pub fn apply(
    stats: &mut WorkerStats,
    interval: &mut Histogram<u64>,
    got: Got,
    wait_us: Option<u64>,
) {
    match got {
        Got::Foreign => stats.foreign += 1,
        Got::SelfEcho => stats.self_echo += 1,
        Got::Misrouted => stats.misrouted += 1,
        Got::Unmeasured => stats.received_warmup += 1,
        Got::Duplicate => stats.received += 1,
        Got::Fresh {
            latency_us,
            due_sec,
            arrival_sec,
        } => {
            stats.received += 1;
            record(&mut stats.latency, latency_us);
            record(&mut stats.latency_read, latency_us + wait_us.unwrap_or(0));
            if let Some(w) = wait_us {
                record(&mut stats.rx_wait, w);
            }
            record(interval, latency_us);
            record(&mut stats.second(due_sec).latency, latency_us);
            if let Some(a) = arrival_sec {
                stats.second(a).delivered += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::new_coarse_hist;

    fn sched() -> Schedule {
        // 4 clients, 10/s, start 0, warmup 1 s, measured 2 s.
        Schedule::new(0, 10.0, 4, 1_000_000_000, 2_000_000_000)
    }

    const ME: Receiver = Receiver {
        index: 2,
        room: 0,
        rooms: 2,
        clients: 4,
        echo: false,
    };

    #[test]
    fn fresh_then_duplicate() {
        let s = sched();
        let mut log = ClientLog::new(2, 0);
        let id = MessageId {
            sender: 0,
            seq: 15,
            t_us: s.intended_ns(0, 15) / 1000,
        };
        let got = ME.message(id, Some(&s), id.t_us + 750, &mut log);
        assert_eq!(
            got,
            Got::Fresh {
                latency_us: 750,
                due_sec: 0,
                arrival_sec: Some(0)
            }
        );
        assert_eq!(
            ME.message(id, Some(&s), id.t_us + 900, &mut log),
            Got::Duplicate
        );
        assert_eq!(log.duplicates, 1);
    }

    #[test]
    fn routing_checks() {
        let s = sched();
        let mut log = ClientLog::new(2, 0);
        let t_us = 1_500_000;
        let at = |sender| MessageId {
            sender,
            seq: 15,
            t_us,
        };
        assert_eq!(ME.message(at(2), Some(&s), t_us, &mut log), Got::SelfEcho);
        assert_eq!(ME.message(at(1), Some(&s), t_us, &mut log), Got::Misrouted);
        assert_eq!(ME.message(at(9), Some(&s), t_us, &mut log), Got::Foreign);
        let warm = MessageId {
            sender: 0,
            seq: 3,
            t_us: 300_000,
        };
        assert_eq!(ME.message(warm, Some(&s), t_us, &mut log), Got::Unmeasured);
        assert_eq!(ME.message(at(0), None, t_us, &mut log), Got::Unmeasured);
        let echo = Receiver { echo: true, ..ME };
        assert!(matches!(
            echo.message(at(2), Some(&s), t_us, &mut log),
            Got::Fresh { .. }
        ));
        assert_eq!(
            echo.message(at(0), Some(&s), t_us, &mut log),
            Got::Misrouted
        );
    }

    #[test]
    fn apply_counts_and_records() {
        let mut st = WorkerStats::default();
        let mut iv = new_coarse_hist();
        apply(
            &mut st,
            &mut iv,
            Got::Fresh {
                latency_us: 1000,
                due_sec: 1,
                arrival_sec: Some(2),
            },
            Some(300),
        );
        apply(&mut st, &mut iv, Got::Duplicate, Some(5));
        apply(&mut st, &mut iv, Got::Misrouted, None);
        assert_eq!(
            (st.received, st.misrouted, st.latency.len(), iv.len()),
            (2, 1, 1, 1)
        );
        // Latency to the socket, to the read (300 µs later), and the wait itself: fresh only.
        assert_eq!(st.latency.max(), 1000);
        assert_eq!((st.latency_read.len(), st.latency_read.max()), (1, 1300));
        assert_eq!((st.rx_wait.len(), st.rx_wait.max()), (1, 300));
        apply(
            &mut st,
            &mut iv,
            Got::Fresh {
                latency_us: 2000,
                due_sec: 1,
                arrival_sec: None,
            },
            None,
        );
        // Without a stamp the two latencies are the same and no wait is known.
        assert_eq!((st.latency_read.len(), st.latency_read.max()), (2, 2000));
        assert_eq!(st.rx_wait.len(), 1);
        assert_eq!(st.seconds[1].latency.len(), 2);
        assert_eq!(st.seconds[2].delivered, 1);
    }
}
