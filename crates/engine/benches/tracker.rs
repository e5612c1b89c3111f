//! Tracker micro-benchmarks (design targets: ≥ 50 M block marks/s per core for batched
//! events; 10 M dirty blocks in ≤ 20 MiB; snapshot of 10 M dirty blocks ≤ 100 ms).
//!
//! `cargo bench -p taosbackup-engine --bench tracker`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use taosbackup_core::{BucketWidth, Precision};
use taosbackup_engine::Tracker;

const MIN: i64 = 60_000;

/// A TMQ-like data message: one table, rows one second apart.
fn rows(n: usize, start: i64) -> Vec<i64> {
    (0..n as i64).map(|i| start + i * 1000).collect()
}

fn marks(c: &mut Criterion) {
    let width = BucketWidth::from_seconds(60).unwrap();
    let mut g = c.benchmark_group("mark");
    let batch = rows(4096, 1_700_000_000_000);
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("rows_one_table_4096", |b| {
        let mut t = Tracker::new(width, Precision::Ms);
        let o = t.ordinal("d1001");
        b.iter(|| t.mark_ordinal_rows(o, std::hint::black_box(&batch)));
    });
    // Interleaved tables: every mark changes table, the worst case for the dedup.
    let mut t0 = Tracker::new(width, Precision::Ms);
    let ords: Vec<u32> = (0..1000).map(|i| t0.ordinal(&format!("t{i}"))).collect();
    let mixed: Vec<(u32, i64)> = (0..4096)
        .map(|i| {
            (
                ords[i % ords.len()],
                1_700_000_000_000 + (i as i64 / 7) * MIN,
            )
        })
        .collect();
    g.throughput(Throughput::Elements(mixed.len() as u64));
    g.bench_function("batch_interleaved_1000_tables_4096", |b| {
        let mut t = t0.clone();
        b.iter(|| t.mark_batch(std::hint::black_box(&mixed)));
    });
    g.finish();
}

/// 10 M dirty blocks: 10,000 tables × 1,000 one-minute buckets each.
fn ten_million() -> Tracker {
    let mut t = Tracker::new(BucketWidth::from_seconds(60).unwrap(), Precision::Ms);
    for i in 0..10_000 {
        let o = t.ordinal(&format!("t{i}"));
        let ts: Vec<i64> = (0..1000).map(|k| 1_700_000_000_000 + k * MIN).collect();
        t.mark_ordinal_rows(o, &ts);
    }
    t
}

fn snapshot(c: &mut Criterion) {
    let mut t = ten_million();
    let before = t.stats();
    t.optimize();
    let after = t.stats();
    eprintln!(
        "10 M dirty blocks: {} dirty, bitmaps {:.2} MiB before optimize, {:.2} MiB after",
        after.dirty_blocks,
        before.bitmap_bytes as f64 / (1 << 20) as f64,
        after.bitmap_bytes as f64 / (1 << 20) as f64
    );
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.bench_function("snapshot_and_reset_10M_dirty", |b| {
        b.iter_batched(
            || t.clone(),
            |mut t| t.snapshot_and_reset(),
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, marks, snapshot);
criterion_main!(benches);
