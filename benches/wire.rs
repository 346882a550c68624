//! Criterion benchmarks of the wire core: masking, frame parsing + unmasking, the message Reader.
//!
//! Run: `cargo bench --bench wire -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wschat::wire::ws::{
    Frame, Message, Opcode, Reader, Role, apply_mask, apply_mask_bytewise, encode_frame,
};

const KEY: [u8; 4] = [0xa0, 0x94, 0x33, 0xcb];
const SIZES: [(&str, usize); 2] = [("64B", 64), ("64KiB", 64 * 1024)];

/// Masking alone: the word-at-a-time version against the byte-at-a-time reference.
fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for (name, size) in SIZES {
        let mut data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("word", name), |b| {
            b.iter(|| apply_mask(black_box(&mut data), KEY, 0));
        });
        group.bench_function(BenchmarkId::new("bytewise", name), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut data), KEY, 0));
        });
    }
    group.finish();
}

/// Parse one masked frame and unmask its payload in place (what a server does per frame).
fn parse_and_unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_parse_unmask");
    for (name, size) in SIZES {
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, Some(KEY), &payload);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        for (variant, unmask) in [
            ("word", apply_mask as fn(&mut [u8], [u8; 4], usize)),
            ("bytewise", apply_mask_bytewise),
        ] {
            let mut buf = wire.clone();
            group.bench_function(BenchmarkId::new(variant, name), |b| {
                b.iter(|| {
                    let (frame, used) = Frame::parse(black_box(&buf))
                        .expect("valid frame")
                        .expect("complete frame");
                    let (start, key) = (frame.header.header_len, frame.header.mask);
                    if let Some(key) = key {
                        // Masking twice restores the buffer, so every iteration does equal work.
                        unmask(&mut buf[start..used], key, 0);
                    }
                    used
                });
            });
        }
    }
    group.finish();
}

/// The strict Reader over a buffer of 1,000 masked 64-byte text frames (server role): header
/// checks, unmasking, UTF-8 validation and zero-copy splitting per message.
fn reader(c: &mut Criterion) {
    let mut group = c.benchmark_group("reader");
    let text = r#"42["send_message",{"room":"1","author":"a","message":"hello"}]"#;
    let mut wire = Vec::new();
    for _ in 0..1000 {
        encode_frame(&mut wire, true, Opcode::Text, Some(KEY), text.as_bytes());
    }
    group.throughput(Throughput::Elements(1000));
    group.bench_function("server_1000_text_frames", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut reader = Reader::new(Role::Server, 1 << 20);
                let mut n = 0;
                while let Some(m) = reader.decode(&mut buf).expect("valid frames") {
                    if let Message::Text(t) = m {
                        n += t.len();
                    }
                }
                n
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, mask, parse_and_unmask, reader);
criterion_main!(benches);
