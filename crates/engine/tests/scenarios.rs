//! Correctness of backup and restore against the emulator: randomised scenarios of many steps
//! (inserts, late rows, overwrites, deletes, new, dropped and re-created tables, added
//! columns, changed tags) with a backup after each step; restoring every backup point must
//! equal the source database as it was at that point, table by table and value by value.
//!
//! The bitmap engine is fed either by an oracle feed that reports exactly the changes the test
//! makes (judging the engine alone) or by the real TMQ feed of `taosbackup-source` against the
//! emulator's TMQ (judging the product), restarted every few steps.

mod common;

use std::path::Path;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use taosbackup_core::{BackupKind, ChangeEvent, TableEvent};
use taosbackup_engine::{BackupPoint, ChangeTracking, EngineKind, TrackingConfig};
use taosbackup_source::{ConnectOptions, TmqFeed, TmqFeedOptions};

/// Which change feed drives the bitmap engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Oracle,
    Tmq,
}

async fn open_tracking(h: &Harness, oracle: &OracleFeed, kind: Feed, dir: &Path) -> ChangeTracking {
    let feed: Box<dyn taosbackup_core::ChangeFeed> = match kind {
        Feed::Oracle => Box::new(oracle.clone()),
        Feed::Tmq => {
            let o = ConnectOptions::new(h.emu.dsn()).with_credentials("root", "taosdata");
            Box::new(TmqFeed::new(o, TmqFeedOptions::new("scenario-repo", DB)).unwrap())
        }
    };
    ChangeTracking::open(
        feed,
        TrackingConfig::new(dir.join("tracker.state")),
        h.width,
        taosbackup_core::Precision::Ms,
    )
    .await
    .unwrap()
}

fn is_normal(t: &str) -> bool {
    t.starts_with('n')
}

/// One random step; reports its changes to `feed`.
async fn step(
    h: &Harness,
    rng: &mut StdRng,
    tables: &mut Vec<String>,
    next: &mut u32,
    extra: &mut u32,
    feed: &OracleFeed,
) -> String {
    let pick =
        |rng: &mut StdRng, tables: &Vec<String>| tables[rng.random_range(0..tables.len())].clone();
    let op = rng.random_range(0..100);
    if tables.is_empty() || op < 45 {
        if tables.is_empty() {
            return create_child(h, tables, next, feed).await;
        }
        // Inserts: new rows, late rows and overwrites all come from the shared grid.
        let t = pick(rng, tables);
        let n = rng.random_range(1..20);
        let mut ts = Vec::new();
        let mut values = String::new();
        for _ in 0..n {
            let k = rng.random_range(0..SLOTS);
            let x = BASE + k * 1000;
            ts.push(x);
            let v = rng.random_range(-1000..1000);
            if is_normal(&t) {
                values.push_str(&format!(" ({x}, {v}, 'n{v}')"));
            } else {
                values.push_str(&format!(" ({x}, {v}.5, {v}, 'v{v}')"));
            }
        }
        let cols = if is_normal(&t) {
            "(ts, v, s)"
        } else {
            "(ts, current, voltage, note)"
        };
        h.exec(&format!("INSERT INTO {DB}.{t} {cols} VALUES{values}"))
            .await;
        feed.push(ChangeEvent::Rows {
            table: t.clone(),
            timestamps: ts,
        });
        return format!("insert {n} into {t}");
    }
    if op < 60 {
        let t = pick(rng, tables);
        let a = BASE + rng.random_range(0..SLOTS) * 1000;
        let b = a + rng.random_range(0..120) * 1000;
        h.exec(&format!(
            "DELETE FROM {DB}.{t} WHERE ts >= {a} AND ts <= {b}"
        ))
        .await;
        feed.push(ChangeEvent::Delete {
            table: t.clone(),
            start: a,
            end: b,
        });
        return format!("delete {t} [{a}, {b}]");
    }
    if op < 70 {
        return create_child(h, tables, next, feed).await;
    }
    if op < 78 {
        let t = pick(rng, tables);
        h.exec(&format!("DROP TABLE {DB}.{t}")).await;
        feed.push(ChangeEvent::Table {
            table: t.clone(),
            event: TableEvent::Dropped,
        });
        tables.retain(|x| x != &t);
        if rng.random_bool(0.5) && !is_normal(&t) {
            // Re-create under the same name.
            let g = rng.random_range(100..200);
            h.exec(&format!(
                "CREATE TABLE {DB}.{t} USING {DB}.meters TAGS ('again', {g})"
            ))
            .await;
            feed.push(ChangeEvent::Table {
                table: t.clone(),
                event: TableEvent::Created,
            });
            tables.push(t.clone());
            return format!("drop and re-create {t}");
        }
        return format!("drop {t}");
    }
    if op < 84 {
        *extra += 1;
        let c = format!("x{extra}");
        if rng.random_bool(0.5) {
            h.exec(&format!("ALTER STABLE {DB}.meters ADD COLUMN {c} INT"))
                .await;
            for t in tables.iter().filter(|t| !is_normal(t)) {
                feed.push(ChangeEvent::Table {
                    table: t.clone(),
                    event: TableEvent::SchemaChanged,
                });
            }
            return format!("add column {c} to meters");
        }
        if tables.iter().any(|t| t == "n1") {
            h.exec(&format!("ALTER TABLE {DB}.n1 ADD COLUMN {c} DOUBLE"))
                .await;
            feed.push(ChangeEvent::Table {
                table: "n1".into(),
                event: TableEvent::SchemaChanged,
            });
            return format!("add column {c} to n1");
        }
        return "nothing".into();
    }
    let children: Vec<&String> = tables.iter().filter(|t| !is_normal(t)).collect();
    if children.is_empty() {
        return "nothing".into();
    }
    let t = children[rng.random_range(0..children.len())].clone();
    let g = rng.random_range(0..1000);
    h.exec(&format!("ALTER TABLE {DB}.{t} SET TAG groupid = {g}"))
        .await;
    feed.push(ChangeEvent::Table {
        table: t.clone(),
        event: TableEvent::TagsChanged,
    });
    format!("set tag of {t}")
}

async fn create_child(
    h: &Harness,
    tables: &mut Vec<String>,
    next: &mut u32,
    feed: &OracleFeed,
) -> String {
    *next += 1;
    let t = format!("e{next}");
    h.exec(&format!(
        "CREATE TABLE {DB}.{t} USING {DB}.meters TAGS ('new', {next})"
    ))
    .await;
    feed.push(ChangeEvent::Table {
        table: t.clone(),
        event: TableEvent::Created,
    });
    tables.push(t.clone());
    format!("create {t}")
}

/// Runs `steps` random steps with a backup after each, then restores every point and
/// compares it with the database as it was.
async fn scenario(seed: u64, steps: usize, engine: EngineKind, kind: Feed, dir: &Path) {
    let h = harness().await;
    let feed = OracleFeed::default();
    let mut tables = setup(&h, &feed).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tracking = if engine == EngineKind::Bitmap {
        Some(open_tracking(&h, &feed, kind, dir).await)
    } else {
        None
    };
    let (mut next, mut extra) = (0u32, 0u32);
    let mut points = Vec::new();
    let mut log = Vec::new();
    for i in 0..steps {
        if i > 0 && i % 4 == 0 && tracking.is_some() {
            // A restart: the persisted tracker and the committed feed positions carry on.
            drop(tracking.take());
            tracking = Some(open_tracking(&h, &feed, kind, dir).await);
            log.push("restart".into());
        }
        if i > 0 {
            let n = rng.random_range(1..4);
            for _ in 0..n {
                log.push(step(&h, &mut rng, &mut tables, &mut next, &mut extra, &feed).await);
            }
        }
        let report = h.backup(engine, tracking.as_mut()).await.unwrap();
        let expected_kind = if i == 0 || engine == EngineKind::Full {
            BackupKind::Full
        } else {
            BackupKind::Incremental
        };
        assert_eq!(
            report.manifest.kind, expected_kind,
            "seed {seed} step {i}: {:?}",
            report.full_reason
        );
        log.push(format!(
            "backup {i}: {:?} {} blocks {} tombstones",
            report.manifest.kind, report.manifest.stats.blocks, report.manifest.stats.tombstones
        ));
        points.push((report.manifest.id, h.contents(DB).await));
    }
    for (i, (id, expected)) in points.iter().enumerate() {
        let target = format!("r{i}");
        let report = h.restore(BackupPoint::Id(id.to_hex()), &target).await;
        assert!(
            report.count_mismatches.is_empty(),
            "seed {seed} point {i}: {:?}\n{}",
            report.count_mismatches,
            log.join("\n")
        );
        let got = h.contents(&target).await;
        if &got != expected {
            let mut diff = String::new();
            for (k, v) in expected {
                if got.get(k) != Some(v) {
                    diff.push_str(&format!("{k}: expected {v:?}\n   got {:?}\n", got.get(k)));
                }
            }
            for k in got.keys().filter(|k| !expected.contains_key(*k)) {
                diff.push_str(&format!("{k}: unexpected\n"));
            }
            panic!(
                "seed {seed} ({engine}) point {i} differs:\n{diff}\nsteps:\n{}",
                log.join("\n")
            );
        }
    }
    let _ = h.emu;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitmap_engine_restores_every_point_exactly() {
    for seed in 1..=8 {
        let dir = tempfile::tempdir().unwrap();
        scenario(seed, 15, EngineKind::Bitmap, Feed::Oracle, dir.path()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitmap_engine_fed_by_tmq_restores_every_point_exactly() {
    for seed in 101..=106 {
        let dir = tempfile::tempdir().unwrap();
        scenario(seed, 15, EngineKind::Bitmap, Feed::Tmq, dir.path()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_engine_restores_every_point_exactly() {
    let dir = tempfile::tempdir().unwrap();
    scenario(11, 6, EngineKind::Full, Feed::Oracle, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmq_gaps_force_a_full_backup_and_a_killed_consumer_loses_nothing() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let oracle = OracleFeed::default();
    setup(&h, &oracle).await;
    let mut t = open_tracking(&h, &oracle, Feed::Tmq, dir.path()).await;
    h.exec(&format!("INSERT INTO {DB}.d0 VALUES ({BASE}, 1.5, 1, 'a')"))
        .await;
    h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();

    // A consumer killed after reading changes but before persisting them: the changes are
    // read again after the restart.
    h.exec(&format!(
        "INSERT INTO {DB}.d1 VALUES ({}, 2.5, 2, 'b')",
        BASE + 120_000
    ))
    .await;
    h.exec(&format!("DELETE FROM {DB}.d0 WHERE ts = {BASE}"))
        .await;
    t.catch_up().await.unwrap();
    drop(t);
    let mut t = open_tracking(&h, &oracle, Feed::Tmq, dir.path()).await;
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(
        r.manifest.kind,
        BackupKind::Incremental,
        "{:?}",
        r.full_reason
    );
    assert_eq!(
        (r.manifest.stats.blocks, r.manifest.stats.tombstones),
        (1, 1)
    );
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "k").await;
    assert_eq!(h.contents("k").await, expected);
    drop(t);

    // The WAL is purged past the committed offsets while no consumer runs: a gap.
    h.exec(&format!("INSERT INTO {DB}.d2 VALUES ({BASE}, 3.5, 3, 'c')"))
        .await;
    for vg in h.emu.store().vgroups(DB).unwrap() {
        let (_, end) = h.emu.store().wal_range(DB, vg).unwrap();
        h.emu.store().purge_wal(DB, vg, end).unwrap();
    }
    let mut t = open_tracking(&h, &oracle, Feed::Tmq, dir.path()).await;
    let mut req = h.request(EngineKind::Bitmap);
    req.on_gap = taosbackup_engine::OnGap::Fail;
    let err = h
        .backup_with(
            &req,
            Some(&mut t),
            &taosbackup_engine::CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("gap"), "{err}");
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(r.manifest.kind, BackupKind::Full);
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "g").await;
    assert_eq!(h.contents("g").await, expected);
    // After the full backup the chain continues incrementally.
    h.exec(&format!("INSERT INTO {DB}.d3 VALUES ({BASE}, 4.5, 4, 'd')"))
        .await;
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(
        r.manifest.kind,
        BackupKind::Incremental,
        "{:?}",
        r.full_reason
    );
    assert_eq!(r.manifest.stats.blocks, 1);
}
