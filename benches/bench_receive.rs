//! The bench's receive hot path without sockets: scan the arguments of a relayed
//! `receive_message` for the bench id, account for it and record its latency. `wschat bench` must do this at well
//! over a million messages per second per core.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wschat::bench::payload::{MessageId, Scanner, Template};
use wschat::bench::recv::{Receiver, apply};
use wschat::bench::schedule::Schedule;
use wschat::bench::stats::{ClientLog, WorkerStats, new_coarse_hist};

fn receive_path(c: &mut Criterion) {
    // 500 clients in 50 rooms; client 10 receives from the 9 others of room 0.
    let schedule = Schedule::new(0, 10.0, 500, 0, 3_600_000_000_000);
    let me = Receiver {
        index: 10,
        room: 0,
        rooms: 50,
        clients: 500,
        echo: false,
    };
    let mut template = Template::chat("wsb-abc123-0", "bench-0", 64, "12:00");
    // What the client hands over per received event: the raw JSON arguments.
    let packets: Vec<Vec<u8>> = (0..1000u32)
        .map(|k| {
            let sender = 50 * (1 + k % 9);
            let seq = k / 9;
            let id = MessageId {
                sender,
                seq,
                t_us: schedule.intended_ns(sender, seq) / 1000,
            };
            template.fill(id).as_bytes().to_vec()
        })
        .collect();
    let scanner = Scanner::new();
    let mut g = c.benchmark_group("receive");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("scan", |b| {
        b.iter(|| {
            for p in &packets {
                black_box(scanner.find(black_box(p)));
            }
        })
    });
    g.bench_function("scan_account_record", |b| {
        let mut stats = WorkerStats::default();
        let mut interval = new_coarse_hist();
        let now_us = 5_000_000u64;
        // A fresh log per batch, so every message is a first delivery (the common case).
        b.iter_batched_ref(
            || ClientLog::new(10, 0),
            |log| {
                for p in &packets {
                    if let Some(id) = scanner.find(p) {
                        let got = me.message(id, Some(&schedule), now_us, log);
                        apply(&mut stats, &mut interval, got, Some(100));
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, receive_path);
criterion_main!(benches);
