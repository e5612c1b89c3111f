//! Write pipeline (hash + compress + encrypt + pack + local write) against zstd alone at
//! the same level on the same data, in the same run; read-back (verify --read-data); and the
//! upload stage: one backup to local disk against the same to S3 (moto on loopback) at
//! several upload concurrencies, interleaved in one run.
//!
//! `cargo bench -p taosbackup-sink --bench pipeline` (`cargo xtask bench sink`; the S3 part
//! needs moto, installed by `cargo xtask ci`).

#[path = "../../../tests/common/storage.rs"]
mod storage;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use taosbackup_core::{
    BackupId, BackupKind, BackupSnapshot, BackupStats, BlobId, BlockRef, BucketWidth, CatalogRoot,
    CatalogSnapshot, DatabaseDef, DatabaseState, Precision, SNAPSHOT_VERSION, SourceInfo, TableDef,
    TableKind, Tree, TreeObject,
};
use taosbackup_sink::{Backend, InitOptions, KdfParams, Password, Repo, VerifyOptions};

const BLOCKS: usize = 256; // 64 MiB a backup: several packs, so uploads overlap compression
const ROWS: usize = 16 * 1024; // 16 bytes a row → 256 KiB a block
const LEVEL: i32 = 3;

/// Column-major blocks shaped like TDengine data: timestamps, a float random walk, an int.
fn blocks() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x1234_5678;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..BLOCKS)
        .map(|b| {
            let mut out = Vec::with_capacity(ROWS * 16);
            let mut ts = 1_700_000_000_000i64 + (b * ROWS * 1000) as i64;
            for _ in 0..ROWS {
                ts += 1000 + (next() % 3) as i64;
                out.extend_from_slice(&ts.to_le_bytes());
            }
            let mut v = 220.0f32;
            for _ in 0..ROWS {
                v += ((next() % 200) as f32 - 100.0) / 1000.0;
                out.extend_from_slice(&v.to_le_bytes());
            }
            for _ in 0..ROWS {
                out.extend_from_slice(&((next() % 16) as i32).to_le_bytes());
            }
            out
        })
        .collect()
}

/// Makes every block unique for this iteration, so dedup does not skip work.
fn stamp(blocks: &mut [Vec<u8>], n: u64) {
    for b in blocks.iter_mut() {
        b[..8].copy_from_slice(&n.to_le_bytes());
    }
}

/// Stores the tree of a full backup of table `t` with `ids` as its blocks and returns the
/// snapshot to commit.
async fn snapshot(session: &taosbackup_sink::Session, ids: &[BlobId]) -> BackupSnapshot {
    let id = BackupId::from_bytes(rand::random());
    let blocks = ids
        .iter()
        .enumerate()
        .map(|(i, blob)| {
            let r = BlockRef {
                blob: *blob,
                rows: ROWS as u64,
                min_ts: 0,
                max_ts: 1,
            };
            (i as i64, r)
        })
        .collect();
    let def = TableDef {
        name: "t".into(),
        kind: TableKind::Normal,
        super_table: None,
        tags: vec![],
        comment: None,
        ttl: None,
        columns: vec![],
    };
    let database = DatabaseDef {
        name: "bench".into(),
        precision: Precision::Ms,
        ddl: String::new(),
    };
    let state = DatabaseState {
        catalog: CatalogSnapshot {
            database: database.clone(),
            super_tables: vec![],
            skipped: vec![],
            tables: vec![def],
        },
        tables: [("t".to_owned(), blocks)].into_iter().collect(),
    };
    let mut entries = Vec::new();
    for shard in state.shards() {
        let entry = shard.entry(BlobId::from_bytes([0; 32]));
        let sid = session
            .put_blob(&TreeObject::Shard(shard).encode())
            .await
            .expect("shard");
        if let Some(mut e) = entry {
            e.shard = sid;
            entries.push(e);
        }
    }
    let (tree, _) = Tree::store(entries, None, async |obj| {
        session.put_blob(&obj.encode()).await
    })
    .await
    .expect("tree");
    let catalog = TreeObject::Catalog(CatalogRoot {
        version: SNAPSHOT_VERSION,
        database,
        super_tables: vec![],
        skipped: vec![],
        dictionaries: vec![],
    });
    let catalog = session.put_blob(&catalog.encode()).await.expect("catalog");
    let now = chrono::Utc::now();
    BackupSnapshot {
        version: SNAPSHOT_VERSION,
        id,
        database: "bench".into(),
        kind: BackupKind::Full,
        engine: "full".into(),
        parent: None,
        chain: id,
        started_at: now,
        finished_at: now,
        source: SourceInfo::default(),
        bucket_width: BucketWidth::DAY,
        precision: Precision::Ms,
        tree,
        catalog,
        feed_positions: None,
        stats: BackupStats::default(),
    }
}

async fn write_backup(repo: &Repo, blocks: &[Vec<u8>]) {
    let session = repo.session("bench").await.expect("session");
    let mut ids = Vec::with_capacity(blocks.len());
    for b in blocks {
        ids.push(session.put_blob(b).await.expect("put"));
    }
    let snap = snapshot(&session, &ids).await;
    session.commit(&snap).await.expect("commit");
    session.finish().await.expect("finish");
}

async fn write_backup_parallel(repo: &Repo, blocks: &[Vec<u8>]) {
    let session = std::sync::Arc::new(repo.session("bench").await.expect("session"));
    let mut tasks = Vec::new();
    for half in blocks.chunks(BLOCKS / 2) {
        let session = session.clone();
        let half: Vec<Vec<u8>> = half.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(half.len());
            for b in &half {
                ids.push(session.put_blob(b).await.expect("put"));
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("join"));
    }
    let snap = snapshot(&session, &ids).await;
    session.commit(&snap).await.expect("commit");
    let session = std::sync::Arc::into_inner(session).expect("sole owner");
    session.finish().await.expect("finish");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut data = blocks();
    let total: u64 = data.iter().map(|b| b.len() as u64).sum();
    let compressed: usize = data
        .iter()
        .map(|b| zstd::bulk::compress(b, LEVEL).expect("zstd").len())
        .sum();
    eprintln!(
        "data: {total} bytes in {BLOCKS} blocks, zstd-{LEVEL} ratio {:.3}",
        compressed as f64 / total as f64
    );

    let pw = Password::new("bench").expect("password");
    let fresh_repo = |rt: &tokio::runtime::Runtime| {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            compression_level: LEVEL,
            ..InitOptions::default()
        };
        let backend = Backend::local(dir.path()).expect("backend");
        let repo = rt
            .block_on(Repo::init(backend, options, Some(&pw)))
            .expect("init");
        (dir, repo)
    };

    let mut group = c.benchmark_group("sink");
    group.throughput(Throughput::Bytes(total));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let counter = AtomicU64::new(0);
    group.bench_function("zstd_only", |b| {
        let mut z = zstd::bulk::Compressor::new(LEVEL).expect("zstd");
        b.iter(|| {
            stamp(&mut data, counter.fetch_add(1, Ordering::Relaxed));
            for block in &data {
                black_box(z.compress(block).expect("compress"));
            }
        })
    });
    // One backup into a fresh local repository per iteration: lock, store all blocks
    // (hash, compress, encrypt, pack), write the pack, the index and the manifest with
    // fsyncs, release the lock. Repository creation is outside the timing.
    group.bench_function("pipeline_write_local", |b| {
        b.iter_batched(
            || fresh_repo(&rt),
            |(dir, repo)| {
                rt.block_on(write_backup(&repo, &data));
                dir
            },
            BatchSize::PerIteration,
        )
    });
    // The same into the in-memory backend: the CPU cost of the pipeline without disk I/O.
    group.bench_function("pipeline_write_memory", |b| {
        b.iter_batched(
            || {
                let options = InitOptions {
                    kdf: KdfParams::insecure_for_tests(),
                    compression_level: LEVEL,
                    ..InitOptions::default()
                };
                rt.block_on(Repo::init(Backend::memory(), options, Some(&pw)))
                    .expect("init")
            },
            |repo| {
                rt.block_on(write_backup(&repo, &data));
                repo
            },
            BatchSize::PerIteration,
        )
    });
    // The same with the blocks split over two concurrent writer tasks on a 2-worker
    // runtime, against zstd on two threads.
    let rt2 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    group.bench_function("zstd_only_2_threads", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for half in data.chunks(BLOCKS / 2) {
                    s.spawn(move || {
                        let mut z = zstd::bulk::Compressor::new(LEVEL).expect("zstd");
                        for block in half {
                            black_box(z.compress(block).expect("compress"));
                        }
                    });
                }
            })
        })
    });
    group.bench_function("pipeline_write_local_2_tasks", |b| {
        b.iter_batched(
            || fresh_repo(&rt2),
            |(dir, repo)| {
                rt2.block_on(write_backup_parallel(&repo, &data));
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("read_back_verify_read_data", |b| {
        // A repository holding exactly one backup of `data`.
        let (_dir, repo) = fresh_repo(&rt);
        rt.block_on(write_backup(&repo, &data));
        b.iter(|| {
            let report = rt
                .block_on(repo.verify(VerifyOptions {
                    read_data_percent: Some(100),
                }))
                .expect("verify");
            assert!(report.is_ok() && report.blobs_read == BLOCKS);
        })
    });
    group.finish();
}

/// Alternates zstd-only and pipeline passes over the same data and prints the median of
/// the per-round throughput ratios: robust against load that drifts between criterion's
/// separate benchmark functions on a shared machine.
fn interleaved_ratio(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = blocks();
    let pw = Password::new("bench").expect("password");
    let mut z = zstd::bulk::Compressor::new(LEVEL).expect("zstd");
    let mut local = Vec::new();
    let mut memory = Vec::new();
    for _ in 0..9 {
        let t = std::time::Instant::now();
        for block in &data {
            black_box(z.compress(block).expect("compress"));
        }
        let zstd = t.elapsed().as_secs_f64();
        let options = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            compression_level: LEVEL,
            ..InitOptions::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = Backend::local(dir.path()).expect("backend");
        let repo = rt
            .block_on(Repo::init(backend, options.clone(), Some(&pw)))
            .expect("init");
        let t = std::time::Instant::now();
        rt.block_on(write_backup(&repo, &data));
        local.push(zstd / t.elapsed().as_secs_f64());
        let repo = rt
            .block_on(Repo::init(Backend::memory(), options, Some(&pw)))
            .expect("init");
        let t = std::time::Instant::now();
        rt.block_on(write_backup(&repo, &data));
        memory.push(zstd / t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "interleaved throughput ratio pipeline/zstd-{LEVEL} over 9 rounds (median): local {:.2}, memory {:.2}",
        median(&mut local),
        median(&mut memory)
    );
}

/// One backup of the bench data (64 MiB, ~24 MiB stored, unencrypted so the comparison is
/// about storage, not AES) to local disk and to moto over loopback, at upload concurrencies
/// 1, 2, 4 and the default, interleaved over 3 rounds; prints the median wall time of each
/// and the moto/local ratio. Packs of 4 MiB (six of them, single `PUT`s) so that several
/// are in flight; the default 16 MiB would make two.
fn upload_concurrency(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = blocks();
    let server = storage::StorageServer::start(storage::Service::S3, "bench");
    let default = taosbackup_sink::default_upload_concurrency();
    let mut levels = vec![1, 2, 4];
    if !levels.contains(&default) {
        levels.push(default);
    }
    let options = InitOptions {
        encryption: false,
        kdf: KdfParams::insecure_for_tests(),
        compression_level: LEVEL,
        pack_size: 4 * 1024 * 1024,
        ..InitOptions::default()
    };
    let mut local: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    let mut s3: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    for round in 0..3 {
        for (k, n) in levels.iter().enumerate() {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = Backend::local(dir.path())
                .expect("backend")
                .with_upload_concurrency(*n);
            let repo = rt
                .block_on(Repo::init(backend, options.clone(), None))
                .expect("init");
            let t = std::time::Instant::now();
            rt.block_on(write_backup(&repo, &data));
            local[k].push(t.elapsed().as_secs_f64());
            let url = server.url(&format!("r{round}-{n}"));
            let backend = Backend::from_url_with_options(&url, server.options(&server.endpoint()))
                .expect("s3 backend")
                .with_upload_concurrency(*n);
            let repo = rt
                .block_on(Repo::init(backend, options.clone(), None))
                .expect("init");
            let t = std::time::Instant::now();
            rt.block_on(write_backup(&repo, &data));
            s3[k].push(t.elapsed().as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mb = data.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    for (k, n) in levels.iter().enumerate() {
        let (l, s) = (median(&mut local[k]), median(&mut s3[k]));
        eprintln!(
            "upload concurrency {n}{}: local {l:.2} s ({:.0} MB/s), moto {s:.2} s ({:.0} MB/s), moto/local {:.2}",
            if *n == default { " (default)" } else { "" },
            mb / l,
            mb / s,
            s / l
        );
    }
}

criterion_group!(benches, interleaved_ratio, upload_concurrency, bench);
criterion_main!(benches);
