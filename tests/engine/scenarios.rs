//! Correctness of backup and restore against the emulator: randomised scenarios of many steps
//! (inserts, late rows, overwrites, deletes, new, dropped and re-created tables, added
//! columns, changed tags) with a backup after each step, random backups forgotten (any but the
//! one the tracker covers) and pruned along the way, and a retention policy with a pin at the
//! end; restoring every kept backup point must equal the source database as it was at that
//! point, table by table and value by value, a forgotten one must be gone, and a prune after
//! the last must find nothing left to delete. Once per scenario the repository goes through
//! format 1 and `migrate` (common::through_format1), or, when it started as format 2 (every
//! odd seed), `migrate` switches it to format 3 (common::through_format2_switch); the scenario
//! goes on on the result.
//!
//! The bitmap engine is fed either by an oracle feed that reports exactly the changes the test
//! makes (judging the engine alone) or by the real TMQ feed of `taosbackup-source` against the
//! emulator's TMQ (judging the product), restarted every few steps.

use super::common::*;
use taosbackup_core::BackupKind;
use taosbackup_engine::{BackupPoint, EngineKind};

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
        r.snapshot.kind,
        BackupKind::Incremental,
        "{:?}",
        r.full_reason
    );
    assert_eq!(
        (r.snapshot.stats.blocks, r.snapshot.stats.tombstones),
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
    assert_eq!(r.snapshot.kind, BackupKind::Full);
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "g").await;
    assert_eq!(h.contents("g").await, expected);
    // After the full backup the chain continues incrementally.
    h.exec(&format!("INSERT INTO {DB}.d3 VALUES ({BASE}, 4.5, 4, 'd')"))
        .await;
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(
        r.snapshot.kind,
        BackupKind::Incremental,
        "{:?}",
        r.full_reason
    );
    assert_eq!(r.snapshot.stats.blocks, 1);
}
