//! Measurements: HDR histograms per worker, exact per-receiver delivery accounting, and the merge.
//!
//! Each worker thread owns one [`WorkerStats`] and each client one [`ClientLog`]; the hot path
//! writes to them without locks or atomics. At the end the main thread merges the workers'
//! histograms and computes delivery from the clients' logs ([`account`]).
//!
//! Delivery is exact: every message carries (sender, seq), every receiver keeps a bitset per
//! sender of its room, so each (message, receiver) pair is counted once as delivered or lost, and
//! every extra copy as a duplicate. A message is *expected* at a receiver when the receiver was in
//! the room when the message was due (see [`ClientLog::windows`]) and the message was measured.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::schedule::Schedule;

/// Highest latency the histograms hold (1 hour in µs); larger values are clamped.
pub const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in µs with 3 significant figures.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// A coarser histogram (2 significant figures) for the per-second timeline.
pub fn new_coarse_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 2).unwrap_or_else(|_| new_hist())
}

/// Record `us` (clamped into range, at least 1).
#[inline]
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// One second of the measured window.
#[derive(Debug, Clone)]
pub struct Second {
    /// Messages due in this second (intended send time) that were sent.
    pub sent: u64,
    /// Messages received in this second (receive time).
    pub delivered: u64,
    /// Latency of the messages due in this second.
    pub latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            sent: 0,
            delivered: 0,
            latency: new_coarse_hist(),
        }
    }
}

/// Everything one worker thread measures. Owned by that thread; merged at the end.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    /// Time from starting the TCP connect to the Socket.IO CONNECT reply (or the WebSocket
    /// handshake for `--raw`), µs.
    pub connect: Histogram<u64>,
    /// Delivery latency of measured messages, µs from the intended send time to when the message
    /// reached the receiving socket (the kernel's receive stamp; the read's time without one).
    pub latency: Histogram<u64>,
    /// The same, to when this generator read the message (`latency` + `rx_wait`).
    pub latency_read: Histogram<u64>,
    /// How long measured messages waited in the receiving socket before this generator read
    /// them, µs: its own delay, left out of `latency` (empty without kernel receive stamps).
    /// Measured from the newest data of each read (the read's stamp), so it can fall short.
    pub rx_wait: Histogram<u64>,
    /// How late this generator wrote each measured message after its intended send time, µs:
    /// its own lateness, part of `latency` (open loop: it counts against the server).
    pub send_lag: Histogram<u64>,
    /// Ack latency (`--ack`), µs from the intended send time.
    pub ack: Histogram<u64>,
    /// Per-second timeline of the measured window.
    pub seconds: Vec<Second>,
    /// Messages sent in the measured window.
    pub sent: u64,
    /// Messages sent during warmup (not measured).
    pub sent_warmup: u64,
    /// Received copies of measured messages (including duplicates and misrouted ones).
    pub received: u64,
    /// Received copies of warmup messages.
    pub received_warmup: u64,
    /// Acks received / expected (measured messages only).
    pub acks: u64,
    pub acks_expected: u64,
    /// Events without a bench id (another user in the room, or a server that rewrites messages).
    pub foreign: u64,
    /// Messages received from a sender in another room.
    pub misrouted: u64,
    /// A client's own message came back to it.
    pub self_echo: u64,
    /// Connection errors by reason ("connect: connection refused", ...).
    pub errors: BTreeMap<String, u64>,
    /// Disconnects during the run by reason ("server closed", "churn", ...).
    pub disconnects: BTreeMap<String, u64>,
    /// Successful connects (including reconnects under `--churn`).
    pub connects: u64,
    /// How far the worker's senders fell behind schedule at worst, µs (for diagnostics).
    pub send_lag_max_us: u64,
    /// First start and last end of an initial connect (ns since epoch): the connect phase.
    pub connect_first_ns: u64,
    pub connect_last_ns: u64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            connect: new_hist(),
            latency: new_hist(),
            latency_read: new_hist(),
            rx_wait: new_hist(),
            send_lag: new_hist(),
            ack: new_hist(),
            seconds: Vec::new(),
            sent: 0,
            sent_warmup: 0,
            received: 0,
            received_warmup: 0,
            acks: 0,
            acks_expected: 0,
            foreign: 0,
            misrouted: 0,
            self_echo: 0,
            errors: BTreeMap::new(),
            disconnects: BTreeMap::new(),
            connects: 0,
            send_lag_max_us: 0,
            connect_first_ns: u64::MAX,
            connect_last_ns: 0,
        }
    }
}

impl WorkerStats {
    /// The timeline entry for second `s` of the measured window.
    #[inline]
    pub fn second(&mut self, s: usize) -> &mut Second {
        if self.seconds.len() <= s {
            self.seconds.resize_with(s + 1, Second::default);
        }
        // Just resized to hold `s`.
        &mut self.seconds[s]
    }

    pub fn error(&mut self, reason: impl Into<String>) {
        *self.errors.entry(reason.into()).or_default() += 1;
    }

    pub fn disconnect(&mut self, reason: impl Into<String>) {
        *self.disconnects.entry(reason.into()).or_default() += 1;
    }

    /// Add another worker's measurements into this one.
    pub fn merge(&mut self, other: &WorkerStats) {
        let _ = self.connect.add(&other.connect);
        let _ = self.latency.add(&other.latency);
        let _ = self.latency_read.add(&other.latency_read);
        let _ = self.rx_wait.add(&other.rx_wait);
        let _ = self.send_lag.add(&other.send_lag);
        let _ = self.ack.add(&other.ack);
        for (i, s) in other.seconds.iter().enumerate() {
            let mine = self.second(i);
            mine.sent += s.sent;
            mine.delivered += s.delivered;
            let _ = mine.latency.add(&s.latency);
        }
        self.sent += other.sent;
        self.sent_warmup += other.sent_warmup;
        self.received += other.received;
        self.received_warmup += other.received_warmup;
        self.acks += other.acks;
        self.acks_expected += other.acks_expected;
        self.foreign += other.foreign;
        self.misrouted += other.misrouted;
        self.self_echo += other.self_echo;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.disconnects {
            *self.disconnects.entry(k.clone()).or_default() += v;
        }
        self.connects += other.connects;
        self.send_lag_max_us = self.send_lag_max_us.max(other.send_lag_max_us);
        self.connect_first_ns = self.connect_first_ns.min(other.connect_first_ns);
        self.connect_last_ns = self.connect_last_ns.max(other.connect_last_ns);
    }
}

/// A growable set of sequence numbers.
///
/// A sender's messages reach a receiver in order, so inserts walk up through the words. The word
/// being filled is kept inline (`cur` for word `cur_w`) and written back only when an insert moves
/// to another word: the receive path then touches the set itself, not its heap words, for 63 of
/// every 64 messages (a cache miss saved per message at a million messages a second).
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    /// Index of the word held in `cur`; `words[cur_w]`, if present, is stale.
    cur_w: u32,
    cur: u64,
    words: Vec<u64>,
}

impl SeqSet {
    /// Insert; `false` when it was already there (a duplicate).
    #[inline]
    pub fn insert(&mut self, seq: u32) -> bool {
        let w = seq / 64;
        if w != self.cur_w {
            self.switch_to(w);
        }
        let bit = 1u64 << (seq % 64);
        let fresh = self.cur & bit == 0;
        self.cur |= bit;
        fresh
    }

    /// Write the inline word back and load word `w` in its place.
    #[cold]
    fn switch_to(&mut self, w: u32) {
        let (old, new) = (self.cur_w as usize, w as usize);
        let need = old.max(new) + 1;
        if self.words.len() < need {
            self.words.resize(need, 0);
        }
        self.words[old] = self.cur;
        self.cur = self.words[new];
        self.cur_w = w;
    }

    /// Word `w` of the set, current whether or not it is the inline one.
    fn word(&self, w: u64) -> Option<u64> {
        if w == u64::from(self.cur_w) {
            Some(self.cur)
        } else {
            self.words.get(w as usize).copied()
        }
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.word(seq / 64)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// How many members fall in `[lo, hi)`.
    pub fn count_range(&self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return 0;
        }
        let mut n = 0u64;
        let (wlo, whi) = (lo / 64, (hi - 1) / 64);
        // Past both the stored words and the inline one, every word is empty.
        let end = whi.min((self.words.len() as u64).max(u64::from(self.cur_w) + 1) - 1);
        for w in wlo..=end {
            let Some(word) = self.word(w) else {
                continue;
            };
            let mut mask = u64::MAX;
            if w == wlo {
                mask &= u64::MAX << (lo % 64);
            }
            if w == whi {
                let top = hi - w * 64; // 1..=64 bits
                if top < 64 {
                    mask &= (1u64 << top) - 1;
                }
            }
            n += u64::from((word & mask).count_ones());
        }
        n
    }
}

/// One client's record: what it sent, when it was in its room, what it received.
#[derive(Debug, Clone)]
pub struct ClientLog {
    /// Client index (0-based).
    pub index: u32,
    /// Room index (`index % rooms`).
    pub room: u32,
    /// Sequence numbers actually sent, as `[lo, hi)` runs (a run breaks when a churned client is
    /// disconnected and its due messages are skipped).
    pub sent_runs: Vec<(u32, u32)>,
    /// Periods when this client was a member of its room, `[from_ns, to_ns)` since the epoch;
    /// messages due in them are expected here. `to_ns = u64::MAX` while still a member.
    pub windows: Vec<(u64, u64)>,
    /// Received seqs per sender slot of the room (slot = sender index / rooms).
    pub received: Vec<SeqSet>,
    /// Copies received of a seq already received.
    pub duplicates: u64,
}

impl ClientLog {
    pub fn new(index: u32, room: u32) -> ClientLog {
        ClientLog {
            index,
            room,
            sent_runs: Vec::new(),
            windows: Vec::new(),
            received: Vec::new(),
            duplicates: 0,
        }
    }

    /// Record that seq `seq` went out (extends the current run or starts a new one).
    #[inline]
    pub fn sent(&mut self, seq: u32) {
        match self.sent_runs.last_mut() {
            Some((_, hi)) if *hi == seq => *hi = seq + 1,
            _ => self.sent_runs.push((seq, seq + 1)),
        }
    }

    /// Record a received message from `slot`; `false` for a duplicate.
    #[inline]
    pub fn receive(&mut self, slot: u32, seq: u32) -> bool {
        let slot = slot as usize;
        if slot >= self.received.len() {
            self.received.resize_with(slot + 1, SeqSet::default);
        }
        // Just resized to hold `slot`.
        let fresh = self.received[slot].insert(seq);
        if !fresh {
            self.duplicates += 1;
        }
        fresh
    }

    /// Joined the room at `t_ns` (the join was acknowledged, or assumed settled).
    pub fn joined(&mut self, t_ns: u64) {
        self.windows.push((t_ns, u64::MAX));
    }

    /// Left the room on purpose (churn) at `t_ns`; messages due within `margin_ns` before
    /// this may or may not have been routed here, so they are not expected.
    pub fn left(&mut self, t_ns: u64, margin_ns: u64) {
        if let Some(w) = self.windows.last_mut()
            && w.1 == u64::MAX
        {
            w.1 = t_ns.saturating_sub(margin_ns).max(w.0);
        }
    }
}

/// Delivery totals over all receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// (message, receiver) pairs that should have arrived.
    pub expected: u64,
    /// ...and did (each counted once).
    pub delivered: u64,
    /// ...and did not.
    pub lost: u64,
    /// Extra copies of messages already received.
    pub duplicated: u64,
    /// Received measured messages that were not expected at that receiver (it joined or left
    /// around the time they were due); neither delivered nor lost.
    pub unexpected: u64,
}

/// Compute exact delivery from all clients' logs. `logs` is indexed by client index. Each
/// receiver expects every measured message its room-mates sent while it was in the room; with
/// `echo` (plain WebSocket echo servers) each client expects its own messages back instead.
pub fn account(logs: &[ClientLog], rooms: u32, schedule: &Schedule, echo: bool) -> Delivery {
    let mut d = Delivery::default();
    let rooms = rooms.max(1);
    let expects_from = |r: &ClientLog, s: &ClientLog| {
        if echo {
            s.index == r.index
        } else {
            s.index != r.index
        }
    };
    for r in logs {
        let mut expected_here = 0u64;
        let mut delivered_here = 0u64;
        let mut member = r.room;
        while let Some(s) = logs.get(member as usize) {
            member += rooms;
            if !expects_from(r, s) {
                continue;
            }
            let slot = s.index / rooms;
            let (mlo, mhi) = schedule.measured_seqs(s.index);
            let set = r.received.get(slot as usize);
            for &(run_lo, run_hi) in &s.sent_runs {
                for &(w0, w1) in &r.windows {
                    let (wlo, whi) = schedule.seqs_between(s.index, w0, w1);
                    let lo = mlo.max(u64::from(run_lo)).max(wlo);
                    let hi = mhi.min(u64::from(run_hi)).min(whi);
                    if hi > lo {
                        expected_here += hi - lo;
                        delivered_here += set.map_or(0, |set| set.count_range(lo, hi));
                    }
                }
            }
        }
        // Received measured messages from room-mates that were outside every window.
        let mut received_measured = 0u64;
        let mut member = r.room;
        while let Some(s) = logs.get(member as usize) {
            member += rooms;
            if !expects_from(r, s) {
                continue;
            }
            let (mlo, mhi) = schedule.measured_seqs(s.index);
            if let Some(set) = r.received.get((s.index / rooms) as usize) {
                received_measured += set.count_range(mlo, mhi);
            }
        }
        d.expected += expected_here;
        d.delivered += delivered_here;
        d.lost += expected_here - delivered_here;
        d.unexpected += received_measured.saturating_sub(delivered_here);
        d.duplicated += r.duplicates;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqset_counts_ranges_across_words() {
        let mut s = SeqSet::default();
        for k in [0u32, 1, 63, 64, 65, 127, 128, 300] {
            assert!(s.insert(k));
        }
        assert!(!s.insert(64), "second insert is a duplicate");
        assert_eq!(s.count_range(0, 1000), 8);
        assert_eq!(s.count_range(1, 64), 2);
        assert_eq!(s.count_range(63, 65), 2);
        assert_eq!(s.count_range(64, 128), 3);
        assert_eq!(s.count_range(128, 129), 1);
        assert_eq!(s.count_range(129, 300), 0);
        assert_eq!(s.count_range(5, 5), 0);
        assert!(s.contains(300) && !s.contains(299) && !s.contains(100_000));
    }

    /// A plain reference for `count_range`.
    #[test]
    fn seqset_count_range_matches_a_naive_count() {
        let mut s = SeqSet::default();
        let members: Vec<u64> = (0..500u64).filter(|k| (k * 7919) % 13 < 5).collect();
        for &k in &members {
            s.insert(k as u32);
        }
        for lo in (0..520).step_by(7) {
            for hi in (lo..530).step_by(11) {
                let naive = members.iter().filter(|&&k| k >= lo && k < hi).count() as u64;
                assert_eq!(s.count_range(lo, hi), naive, "[{lo},{hi})");
            }
        }
    }

    /// Inserts jumping between words (out of order, backwards, far ahead) keep every member,
    /// and duplicates are found in whichever word they fall, inline or stored.
    #[test]
    fn seqset_matches_a_btreeset_in_any_order() {
        let mut s = SeqSet::default();
        let mut reference = std::collections::BTreeSet::new();
        let seqs = (0..3000u32).map(|k| (k * 7919 + (k % 5) * 611) % 1400);
        for k in seqs.chain([5000, 3, 4999, 64, 63, 0]) {
            assert_eq!(s.insert(k), reference.insert(k), "insert {k}");
        }
        for k in 0..5100u64 {
            assert_eq!(
                s.contains(k),
                reference.contains(&(k as u32)),
                "contains {k}"
            );
        }
        for (lo, hi) in [
            (0, 5100),
            (0, 64),
            (60, 70),
            (1300, 1500),
            (4990, 5001),
            (5001, 9000),
        ] {
            let naive = reference.range(lo as u32..hi as u32).count() as u64;
            assert_eq!(s.count_range(lo, hi), naive, "[{lo},{hi})");
        }
    }

    fn schedule() -> Schedule {
        // 4 clients, 10/s, start 0, warmup 1 s, measured 2 s => seqs 10..30 measured per client.
        Schedule::new(0, 10.0, 4, 1_000_000_000, 2_000_000_000)
    }

    /// 4 clients in 2 rooms: {0, 2} and {1, 3}. Everyone sends seqs 0..30.
    fn logs() -> Vec<ClientLog> {
        (0..4u32)
            .map(|i| {
                let mut l = ClientLog::new(i, i % 2);
                for k in 0..30 {
                    l.sent(k);
                }
                l.joined(0);
                l
            })
            .collect()
    }

    fn deliver_all(logs: &mut [ClientLog], from: u32, to: u32, seqs: std::ops::Range<u32>) {
        let slot = from / 2;
        for k in seqs {
            logs[to as usize].receive(slot, k);
        }
    }

    #[test]
    fn perfect_delivery_counts_every_pair_once() {
        let s = schedule();
        let mut l = logs();
        for (a, b) in [(0, 2), (2, 0), (1, 3), (3, 1)] {
            deliver_all(&mut l, a, b, 0..30);
        }
        let d = account(&l, 2, &s, false);
        // 4 senders x 20 measured messages x 1 receiver each.
        assert_eq!(
            d,
            Delivery {
                expected: 80,
                delivered: 80,
                lost: 0,
                duplicated: 0,
                unexpected: 0
            }
        );
    }

    #[test]
    fn losses_and_duplicates_are_per_receiver() {
        let s = schedule();
        let mut l = logs();
        deliver_all(&mut l, 0, 2, 0..30);
        deliver_all(&mut l, 2, 0, 0..25); // 5 measured lost at 0
        deliver_all(&mut l, 1, 3, 0..30);
        deliver_all(&mut l, 1, 3, 12..15); // 3 duplicates at 3
        deliver_all(&mut l, 3, 1, 10..30); // warmup messages missing: not counted
        let d = account(&l, 2, &s, false);
        assert_eq!(d.expected, 80);
        assert_eq!(d.lost, 5);
        assert_eq!(d.delivered, 75);
        assert_eq!(d.duplicated, 3);
    }

    #[test]
    fn messages_due_outside_membership_are_not_expected() {
        let s = schedule();
        let mut l = logs();
        // Client 2 left at 2.0 s (margin 0) and rejoined at 2.5 s: client 0's seqs due in
        // [2.0, 2.5) are 20..25 (phase 0), which are not expected at 2.
        l[2].left(2_000_000_000, 0);
        l[2].joined(2_500_000_000);
        // Client 0's unsent seqs while it was away would be skipped on its side; here client 2 is
        // the one away, so only its receiving side changes.
        deliver_all(&mut l, 0, 2, 0..20);
        deliver_all(&mut l, 0, 2, 25..30);
        deliver_all(&mut l, 2, 0, 0..30);
        deliver_all(&mut l, 1, 3, 0..30);
        deliver_all(&mut l, 3, 1, 0..30);
        let d = account(&l, 2, &s, false);
        assert_eq!(d.expected, 75);
        assert_eq!(d.delivered, 75);
        assert_eq!(d.lost, 0);
        // One that arrived anyway while away is "unexpected", not delivered.
        l[2].receive(0, 22);
        let d = account(&l, 2, &s, false);
        assert_eq!((d.delivered, d.unexpected), (75, 1));
    }

    #[test]
    fn skipped_sends_are_not_expected_anywhere() {
        let s = schedule();
        let mut l = logs();
        l[0].sent_runs = vec![(0, 15), (20, 30)];
        deliver_all(&mut l, 0, 2, 0..15);
        deliver_all(&mut l, 0, 2, 20..30);
        let d = account(&l, 2, &s, false);
        // Receiver 2 expects 15 of client 0's measured messages (10..15 and 20..30).
        assert_eq!(d.expected, 75);
        assert_eq!(d.delivered, 15);
    }

    #[test]
    fn echo_mode_expects_each_clients_own_messages() {
        let s = schedule();
        // Raw echo: every client is alone in its "room" (rooms = clients).
        let mut l: Vec<ClientLog> = (0..3u32)
            .map(|i| {
                let mut c = ClientLog::new(i, i);
                for k in 0..30 {
                    c.sent(k);
                }
                c.joined(0);
                c
            })
            .collect();
        for (i, c) in l.iter_mut().enumerate() {
            for k in 0..30 {
                if !(i == 1 && k == 15) {
                    c.receive(0, k);
                }
            }
        }
        let d = account(&l, 3, &s, true);
        assert_eq!((d.expected, d.delivered, d.lost), (60, 59, 1));
    }

    #[test]
    fn merge_adds_counts_histograms_and_timeline() {
        let mut a = WorkerStats::default();
        let mut b = WorkerStats::default();
        record(&mut a.latency, 1000);
        record(&mut b.latency, 3000);
        a.second(0).sent = 2;
        b.second(2).delivered = 5;
        a.error("connect: refused");
        b.error("connect: refused");
        a.merge(&b);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.seconds.len(), 3);
        assert_eq!(a.seconds[2].delivered, 5);
        assert_eq!(a.errors["connect: refused"], 2);
    }

    #[test]
    fn client_log_runs_break_on_gaps() {
        let mut l = ClientLog::new(0, 0);
        for k in [0, 1, 2, 5, 6, 9] {
            l.sent(k);
        }
        assert_eq!(l.sent_runs, vec![(0, 3), (5, 7), (9, 10)]);
    }
}
