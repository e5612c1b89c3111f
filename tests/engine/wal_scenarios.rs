//! The bitmap engine fed by the `wal` change feed (`taosbackup_source::WalFeed`) reading the
//! emulator's TDengine-format WAL files (`Store::enable_wal_files`): the same randomised
//! scenarios as the TMQ feed in `scenarios.rs` (inserts, late rows, overwrites, deletes, new,
//! dropped and re-created tables, added columns, changed tags, restarts every few steps), and
//! a purged WAL forcing a full backup.

use super::common::*;
use taosbackup_core::BackupKind;
use taosbackup_engine::{BackupPoint, CancellationToken, EngineKind, OnGap};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitmap_engine_fed_by_wal_restores_every_point_exactly() {
    for seed in 101..=106 {
        let dir = tempfile::tempdir().unwrap();
        scenario(seed, 15, EngineKind::Bitmap, Feed::Wal, dir.path()).await;
        // The scenario really ran over WAL files, rotated into several segments.
        let segments = std::fs::read_dir(dir.path().join("tdengine/vnode"))
            .unwrap()
            .flat_map(|v| std::fs::read_dir(v.unwrap().path().join("wal")).unwrap())
            .filter(|f| f.as_ref().unwrap().path().extension() == Some("log".as_ref()))
            .count();
        assert!(segments > 4, "seed {seed}: {segments} segments");
    }
}

/// Every `.log` segment of `DB`'s vnodes: (vnode dir name, first version).
fn segments(h: &Harness) -> Vec<(String, i64)> {
    let root = h.emu.store().wal_files_dir().unwrap().join("vnode");
    let mut out = Vec::new();
    for vg in h.emu.store().vgroups(DB).unwrap() {
        let wal = root.join(format!("vnode{vg}/wal"));
        for f in std::fs::read_dir(&wal).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if let Some(v) = name.strip_suffix(".log") {
                out.push((format!("vnode{vg}"), v.parse().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_purge_forces_a_full_backup_and_a_killed_reader_loses_nothing() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let oracle = OracleFeed::default();
    setup(&h, &oracle).await;
    let mut t = open_tracking(&h, &oracle, Feed::Wal, dir.path()).await;
    h.exec(&format!("INSERT INTO {DB}.d0 VALUES ({BASE}, 1.5, 1, 'a')"))
        .await;
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Full, "no positions yet");

    // A reader killed after reading changes but before persisting them: the changes are
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
    let mut t = open_tracking(&h, &oracle, Feed::Wal, dir.path()).await;
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

    // PURGE WAL past the committed positions while no reader runs: the segments holding the
    // unread records are deleted, the first version on disk moves past them, and that is a
    // gap.
    h.exec(&format!("INSERT INTO {DB}.d2 VALUES ({BASE}, 3.5, 3, 'c')"))
        .await;
    let before = segments(&h);
    h.exec(&format!("PURGE WAL {DB} TO 1000000000")).await;
    for vg in h.emu.store().vgroups(DB).unwrap() {
        let (begin, end) = h.emu.store().wal_range(DB, vg).unwrap();
        assert_eq!(begin, end, "vgroup {vg} purged to its end");
    }
    let after = segments(&h);
    assert!(
        after.iter().all(|s| !before.contains(s)),
        "every old segment deleted: {before:?} → {after:?}"
    );
    let mut t = open_tracking(&h, &oracle, Feed::Wal, dir.path()).await;
    let mut req = h.request(EngineKind::Bitmap);
    req.on_gap = OnGap::Fail;
    let err = h
        .backup_with(&req, Some(&mut t), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("gap"), "{err}");
    assert!(err.to_string().contains("purged"), "{err}");
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Full);
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "g").await;
    assert_eq!(h.contents("g").await, expected);
    // After the full backup the chain continues incrementally from the purged WAL's end.
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
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "h").await;
    assert_eq!(h.contents("h").await, expected);
}
