//! Tracker micro-benchmarks (design targets: ≥ 50 M block marks/s per core for batched
//! events; 10 M dirty blocks in ≤ 20 MiB; snapshot of 10 M dirty blocks ≤ 100 ms).
//!
//! `cargo bench -p taosbackup-engine --bench tracker` (plan: snapshot of 10 M dirty blocks
//! turned into a backup plan).

use std::collections::BTreeMap;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use taosbackup_core::{
    BackupId, BackupKind, BackupSnapshot, BackupStats, BlobId, BlockRef, BucketWidth,
    CatalogSnapshot, DatabaseDef, DatabaseState, Precision, SNAPSHOT_VERSION, SourceInfo, TableDef,
    TableKind,
};
use taosbackup_engine::{BackupRequest, EngineKind, OnGap, Tracker, plan_from};

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

/// A parent backup of the 10,000 tables of [`ten_million`], each with one stored block.
fn parent_of_ten_million() -> (CatalogSnapshot, BackupSnapshot, DatabaseState) {
    let catalog = CatalogSnapshot {
        database: DatabaseDef {
            name: "db".into(),
            precision: Precision::Ms,
            ddl: "CREATE DATABASE db".into(),
        },
        super_tables: vec![],
        skipped: Vec::new(),
        tables: (0..10_000)
            .map(|i| TableDef {
                name: format!("t{i}"),
                kind: TableKind::Normal,
                super_table: None,
                tags: vec![],
                comment: None,
                ttl: None,
                columns: vec![],
            })
            .collect(),
    };
    let id = BackupId::from_bytes([7; 16]);
    let now = chrono::Utc::now();
    let manifest = BackupSnapshot {
        version: SNAPSHOT_VERSION,
        id,
        parent: None,
        chain: id,
        database: "db".into(),
        kind: BackupKind::Full,
        engine: "bitmap".into(),
        started_at: now,
        finished_at: now,
        source: SourceInfo::default(),
        bucket_width: BucketWidth::from_seconds(60).unwrap(),
        precision: Precision::Ms,
        tree: BlobId::from_bytes([2; 32]),
        catalog: BlobId::from_bytes([3; 32]),
        feed_positions: None,
        stats: BackupStats::default(),
    };
    let block = BlockRef {
        blob: BlobId::from_bytes([1; 32]),
        rows: 1,
        min_ts: 1_700_000_000_000,
        max_ts: 1_700_000_000_000,
    };
    let folded = DatabaseState {
        catalog: catalog.clone(),
        tables: catalog
            .tables
            .iter()
            .map(|t| (t.name.clone(), BTreeMap::from([(28_333_333, block)])))
            .collect(),
    };
    (catalog, manifest, folded)
}

fn plan(c: &mut Criterion) {
    let (catalog, manifest, folded) = parent_of_ten_million();
    let mut t = ten_million();
    t.set_last_backup(manifest.id.to_hex());
    t.mark_inconsistent("placeholder");
    t.commit_full(std::iter::empty());
    t.set_last_backup(manifest.id.to_hex());
    let req = BackupRequest {
        database: "db".into(),
        engine: EngineKind::Bitmap,
        force_full: false,
        on_gap: OnGap::Fail,
        parallel: 1,
        tables_per_query: taosbackup_engine::DEFAULT_TABLES_PER_QUERY,
        bucket_width: BucketWidth::from_seconds(60).unwrap(),
        dictionaries: true,
        source_info: SourceInfo::default(),
    };
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.bench_function("snapshot_and_plan_10M_dirty", |b| {
        b.iter_batched(
            || (t.clone(), catalog.clone(), manifest.clone(), folded.clone()),
            |(mut t, catalog, manifest, folded)| {
                let snap = t.snapshot_and_reset();
                let p =
                    plan_from(&req, catalog, Some(&snap), Some((manifest, &folded))).expect("plan");
                assert_eq!(p.blocks, 10_000_000);
                p
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, marks, snapshot, plan);
criterion_main!(benches);
