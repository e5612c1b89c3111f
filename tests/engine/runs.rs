//! Backup and restore runs against the emulator: gaps force a full backup (or fail), the
//! tracker survives a restart, plans, the time engine, cancellation, and restore options.

use super::common::*;
use chrono::Utc;
use taosbackup_core::{BackupKind, Bucket, CatalogRoot, ChangeEvent, Precision};
use taosbackup_engine::{
    BackupPoint, CancellationToken, ChangeTracking, EngineError, EngineKind, OnGap, TrackingConfig,
    list_backups,
};

async fn open(h: &Harness, feed: &OracleFeed, path: &std::path::Path) -> ChangeTracking {
    ChangeTracking::open(Box::new(feed.clone()), TrackingConfig::new(path), h.width)
        .await
        .unwrap()
}

async fn insert(h: &Harness, feed: &OracleFeed, table: &str, slots: &[i64]) {
    let values: String = slots
        .iter()
        .map(|k| format!(" ({}, {k}.5, {k}, 'r')", BASE + k * 1000))
        .collect();
    h.exec(&format!("INSERT INTO {DB}.{table} VALUES{values}"))
        .await;
    feed.push(ChangeEvent::Rows {
        table: table.into(),
        timestamps: slots.iter().map(|k| BASE + k * 1000).collect(),
    });
}

async fn backups(h: &Harness) -> usize {
    list_backups(&h.session().await).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_state_survives_a_restart_and_its_loss_forces_a_full_backup() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.state");
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    let mut t = open(&h, &feed, &path).await;
    let first = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(first.snapshot.kind, BackupKind::Full);
    assert!(first.full_reason.unwrap().contains("no previous backup"));
    drop(t);

    // A restart: the persisted state and the feed's committed positions agree.
    insert(&h, &feed, "d1", &[1, 2, 300]).await;
    let mut t = open(&h, &feed, &path).await;
    let second = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(second.snapshot.kind, BackupKind::Incremental);
    assert_eq!(second.snapshot.stats.blocks, 2, "two buckets of d1 changed");
    assert_eq!(second.snapshot.parent, Some(first.snapshot.id));
    drop(t);

    // Nothing changed: an empty incremental.
    let mut t = open(&h, &feed, &path).await;
    let third = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(third.snapshot.kind, BackupKind::Incremental);
    assert_eq!(third.snapshot.stats.blocks, 0);
    drop(t);

    // The state file is lost: the next backup must be a full one, and on_gap = fail refuses.
    std::fs::remove_file(&path).unwrap();
    insert(&h, &feed, "d2", &[5]).await;
    let mut t = open(&h, &feed, &path).await;
    let mut req = h.request(EngineKind::Bitmap);
    req.on_gap = OnGap::Fail;
    let before = backups(&h).await;
    let err = h
        .backup_with(&req, Some(&mut t), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Gap { .. }), "{err}");
    assert_eq!(
        backups(&h).await,
        before,
        "a refused backup commits nothing"
    );
    let full = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(full.snapshot.kind, BackupKind::Full);
    assert!(full.full_reason.unwrap().contains("no tracker state"));

    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "back").await;
    assert_eq!(h.contents("back").await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_gap_or_a_forgotten_tracked_backup_forces_a_full_one_a_foreign_one_does_not() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.state");
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    let mut t = open(&h, &feed, &path).await;
    h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    drop(t);
    // Events the tracker never saw: the feed moved on without it.
    insert(&h, &feed, "d0", &[7]).await;
    let mut other = feed.clone();
    use taosbackup_core::ChangeFeed;
    other.next_batch().await.unwrap();
    let mut t = open(&h, &feed, &path).await;
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Full);
    assert!(r.full_reason.unwrap().contains("gap"));

    // A backup taken without the tracker (another engine) becomes the newest. Every
    // snapshot is self-contained, so the tracker's changes since its own backup, laid over
    // that backup's tree, are still the database now: an incremental on the tracker's backup.
    let tracked = r.snapshot.id;
    let foreign = h.backup(EngineKind::Full, None).await.unwrap().snapshot;
    insert(&h, &feed, "d0", &[8]).await;
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Incremental);
    assert_eq!(
        r.snapshot.parent,
        Some(tracked),
        "not the newest ({})",
        foreign.id
    );
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Id(r.snapshot.id.to_hex()), "on_tracked")
        .await;
    assert_eq!(h.contents("on_tracked").await, expected);

    // The tracker's backup forgotten: it can no longer vouch (its blobs may be pruned).
    let tracked = r.snapshot.id;
    h.repo
        .forget(&taosbackup_sink::Forget::Ids(vec![tracked]), false)
        .await
        .unwrap();
    insert(&h, &feed, "d0", &[9]).await;
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Full);
    assert!(r.full_reason.unwrap().contains("forgotten"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_what_the_backup_then_does_and_writes_nothing() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    let mut t = open(&h, &feed, &dir.path().join("s")).await;
    h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    insert(&h, &feed, "d3", &[0, 61, 62, 599]).await;
    h.exec(&format!(
        "DELETE FROM {DB}.d3 WHERE ts = {}",
        BASE + 599_000
    ))
    .await;
    feed.push(ChangeEvent::Delete {
        table: "d3".into(),
        start: BASE + 599_000,
        end: BASE + 599_000,
    });
    let before = backups(&h).await;
    let session = h.session().await;
    let plan = taosbackup_engine::plan(
        &*h.source,
        &session,
        Some(&mut t),
        &h.request(EngineKind::Bitmap),
    )
    .await
    .unwrap();
    session.finish().await.unwrap();
    assert_eq!(plan.kind, BackupKind::Incremental);
    assert_eq!(plan.tables.len(), 1);
    assert_eq!(plan.tables[0].table, "d3");
    let w = 60_000;
    let b = |k: i64| Bucket((BASE + k * 1000).div_euclid(w));
    // b(0) and b(61) are neighbours: one run (one export query) of two buckets.
    assert_eq!(b(0).index() + 1, b(61).index());
    let run = |first, last| taosbackup_engine::BucketRun { first, last };
    assert_eq!(
        plan.tables[0].buckets,
        vec![run(b(0), b(61)), run(b(599), b(599))]
    );
    assert_eq!(plan.tables[0].blocks, 3);
    assert_eq!(backups(&h).await, before);
    // The plan did not consume the changes.
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    // The last bucket's only row was deleted again and it was never stored: no block, no
    // tombstone.
    assert_eq!(r.snapshot.stats.blocks, 2);
    assert_eq!(r.snapshot.stats.tombstones, 0);
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "p").await;
    assert_eq!(h.contents("p").await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_engine_follows_appends_and_misses_late_rows_as_documented() {
    let h = harness().await;
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    insert(&h, &feed, "d0", &[10, 20]).await;
    h.backup(EngineKind::Time, None).await.unwrap();
    insert(&h, &feed, "d0", &[30, 400]).await;
    let r = h.backup(EngineKind::Time, None).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Incremental);
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "t1").await;
    assert_eq!(h.contents("t1").await, expected);
    // A late row into an old bucket: the time engine's blind spot.
    insert(&h, &feed, "d0", &[5, 401]).await;
    h.backup(EngineKind::Time, None).await.unwrap();
    h.restore(BackupPoint::Latest, "t2").await;
    let got = h.contents("t2").await;
    let now = h.contents(DB).await;
    assert_eq!(
        got["d0"].len(),
        now["d0"].len() - 1,
        "the late row is missed"
    );
    let late = &now["d0"][0];
    assert!(late.contains("Int(5)") && !got["d0"].contains(late));
    assert!(got["d0"].iter().any(|r| r.contains("Int(401)")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_backup_commits_nothing() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    insert(&h, &feed, "d0", &[1, 2, 3]).await;
    let mut t = open(&h, &feed, &dir.path().join("s")).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = h
        .backup_with(&h.request(EngineKind::Bitmap), Some(&mut t), &cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    assert_eq!(backups(&h).await, 0);
    // The changes were given back to the tracker: the next backup still has them.
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Full);
    assert_eq!(r.snapshot.stats.rows, 3);
}

/// The standard tables with three rows in each child (d0..d2) and one in n1.
async fn three_rows_in_each_child_and_one_normal_row(h: &Harness, feed: &OracleFeed) {
    setup(h, feed).await;
    for t in ["d0", "d1", "d2"] {
        insert(h, feed, t, &[1, 100, 200]).await;
    }
    h.exec(&format!("INSERT INTO {DB}.n1 VALUES ({BASE}, 1, 'x')"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_options_select_rename_refuse_and_dry_run() {
    let h = harness().await;
    let feed = OracleFeed::default();
    three_rows_in_each_child_and_one_normal_row(&h, &feed).await;
    let first = h.backup(EngineKind::Full, None).await.unwrap();
    let expected = h.contents(DB).await;

    // Only some tables.
    let mut req = h.restore_request(BackupPoint::Latest, "part");
    req.tables = vec!["d1".into()];
    let r = h.restore_with(&req).await.unwrap();
    assert_eq!(r.tables, 1);
    assert_eq!(r.rows_written, 3);
    let got = h.contents("part").await;
    assert_eq!(got["d1"], expected["d1"]);
    assert!(!got.contains_key("d0") && !got.contains_key("n1"));
    // A whole super table.
    let mut req = h.restore_request(BackupPoint::Latest, "st");
    req.stables = vec!["meters".into()];
    h.restore_with(&req).await.unwrap();
    let got = h.contents("st").await;
    assert!(got.contains_key("d0") && !got.contains_key("n1"));
    // Unknown names are errors.
    let mut req = h.restore_request(BackupPoint::Latest, "x");
    req.tables = vec!["nope".into()];
    assert!(h.restore_with(&req).await.is_err());

    // Into an existing database: refused unless asked.
    let err = h
        .restore_with(&h.restore_request(BackupPoint::Latest, "part"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exist"), "{err}");
    let mut req = h.restore_request(BackupPoint::Latest, "part");
    req.into_existing = true;
    let r = h.restore_with(&req).await.unwrap();
    assert!(r.count_mismatches.is_empty());
    assert_eq!(h.contents("part").await, expected);

    // Dry run writes nothing.
    let mut req = h.restore_request(BackupPoint::Latest, "dry");
    req.dry_run = true;
    let r = h.restore_with(&req).await.unwrap();
    assert_eq!(r.rows_expected, 10);
    assert_eq!(r.rows_written, 0);
    assert!(h.source.read_catalog("dry").await.is_err());

    // Points by time and id prefix.
    insert(&h, &feed, "d0", &[300]).await;
    let second = h.backup(EngineKind::Full, None).await.unwrap();
    let t = BackupPoint::Time(first.snapshot.finished_at);
    let r = h
        .restore_with(&h.restore_request(t, "by_time"))
        .await
        .unwrap();
    assert_eq!(r.backup, first.snapshot.id);
    let r = h
        .restore_with(&h.restore_request(BackupPoint::Time(Utc::now()), "now"))
        .await
        .unwrap();
    assert_eq!(r.backup, second.snapshot.id);
    let long_ago = "2000-01-01".parse().unwrap();
    let err = h
        .restore_with(&h.restore_request(long_ago, "never"))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NoBackup { .. }), "{err}");
    let prefix = second.snapshot.id.to_hex()[..8].to_string();
    let r = h
        .restore_with(&h.restore_request(BackupPoint::Id(prefix), "by_id"))
        .await
        .unwrap();
    assert_eq!(r.backup, second.snapshot.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_backup_between_bitmap_backups_loses_no_change() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    insert(&h, &feed, "d0", &[300]).await;
    let mut t = open(&h, &feed, &dir.path().join("s")).await;
    h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    // A late row the time engine cannot see, backed up by the time engine with tracking on.
    insert(&h, &feed, "d0", &[1]).await;
    let r = h.backup(EngineKind::Time, Some(&mut t)).await.unwrap();
    assert_eq!(r.snapshot.kind, BackupKind::Incremental);
    assert_eq!(
        r.snapshot.stats.rows, 1,
        "only the bucket of the previous max"
    );
    let r = h.backup(EngineKind::Bitmap, Some(&mut t)).await.unwrap();
    assert_eq!(
        r.snapshot.kind,
        BackupKind::Incremental,
        "{:?}",
        r.full_reason
    );
    let expected = h.contents(DB).await;
    h.restore(BackupPoint::Latest, "mixed").await;
    assert_eq!(h.contents("mixed").await, expected);
}

/// A source that claims to write the chunks of `lost` tables without writing them: what a
/// target silently dropping rows looks like to the engine.
struct LosingSource<'a> {
    inner: &'a taosbackup_source::TaosSource,
    lost: &'a [&'a str],
}

#[async_trait::async_trait]
impl taosbackup_core::Source for LosingSource<'_> {
    async fn catalog(
        &self,
        database: &str,
    ) -> Result<taosbackup_core::CatalogSnapshot, taosbackup_core::SourceError> {
        taosbackup_core::Source::catalog(self.inner, database).await
    }

    async fn export(
        &self,
        database: &str,
        precision: Precision,
        request: taosbackup_core::ExportRequest,
    ) -> Result<Box<dyn taosbackup_core::ChunkStream>, taosbackup_core::SourceError> {
        taosbackup_core::Source::export(self.inner, database, precision, request).await
    }

    async fn create_schema(
        &self,
        catalog: &taosbackup_core::CatalogSnapshot,
        options: &taosbackup_core::RestoreOptions,
    ) -> Result<String, taosbackup_core::SourceError> {
        taosbackup_core::Source::create_schema(self.inner, catalog, options).await
    }

    async fn write_chunk(
        &self,
        target_database: &str,
        table: &str,
        chunk: &taosbackup_core::BlockChunk,
    ) -> Result<taosbackup_core::WriteReport, taosbackup_core::SourceError> {
        if self.lost.contains(&table) {
            return Ok(taosbackup_core::WriteReport {
                rows_written: u64::from(chunk.rows),
                ..Default::default()
            });
        }
        taosbackup_core::Source::write_chunk(self.inner, target_database, table, chunk).await
    }

    async fn count_rows(
        &self,
        database: &str,
        table: &str,
    ) -> Result<u64, taosbackup_core::SourceError> {
        taosbackup_core::Source::count_rows(self.inner, database, table).await
    }

    async fn count_rows_by_child(
        &self,
        database: &str,
        super_table: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, taosbackup_core::SourceError> {
        taosbackup_core::Source::count_rows_by_child(self.inner, database, super_table).await
    }
}

/// The post-restore check counts child tables per super table and normal tables one by
/// one; rows that never arrived are reported per table, whichever way they were counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_check_names_every_table_whose_rows_did_not_arrive() {
    let h = harness().await;
    let feed = OracleFeed::default();
    three_rows_in_each_child_and_one_normal_row(&h, &feed).await;
    h.backup(EngineKind::Full, None).await.unwrap();
    let lying = LosingSource {
        inner: &h.source,
        lost: &["d1", "n1"],
    };
    let session = h.session().await;
    let report = taosbackup_engine::restore(
        &lying,
        &session,
        &h.restore_request(BackupPoint::Latest, "lost"),
        &taosbackup_core::NoProgress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    session.finish().await.unwrap();
    let got: Vec<(&str, u64, u64)> = report
        .count_mismatches
        .iter()
        .map(|m| (m.table.as_str(), m.expected, m.actual))
        .collect();
    assert_eq!(got, vec![("d1", 3, 0), ("n1", 1, 0)]);
    // The tables that did arrive are complete.
    let rows = h
        .source
        .count_rows_by_child("lost", "meters")
        .await
        .unwrap();
    assert_eq!(rows.get("d0"), Some(&3));
    assert_eq!(rows.get("d2"), Some(&3));
    assert_eq!(rows.get("d1"), None, "a child without rows is absent");
}

/// A harness whose `meters` holds 60 blocks of 10 rows per child table (1-minute buckets):
/// 180 blocks, more than a dictionary's training sample needs.
async fn meters_with_180_blocks() -> (Harness, OracleFeed) {
    let h = harness().await;
    let feed = OracleFeed::default();
    setup(&h, &feed).await;
    let slots: Vec<i64> = (0..600).map(|i| (i / 10) * 60 + i % 10).collect();
    for t in ["d0", "d1", "d2"] {
        insert(&h, &feed, t, &slots).await;
    }
    (h, feed)
}

/// The dictionary the catalog of `s` names for `meters`, and every dictionary it lists.
async fn meters_dictionaries(
    h: &Harness,
    s: &taosbackup_core::BackupSnapshot,
) -> (
    Option<taosbackup_core::BlobId>,
    Vec<taosbackup_core::BlobId>,
) {
    let bytes = h.repo.read_blob(&s.catalog).await.unwrap();
    let root = CatalogRoot::decode(&bytes, "catalog").unwrap();
    let m = root.super_tables.iter().find(|s| s.name == "meters");
    (m.and_then(|m| m.dictionary), root.dictionaries)
}

/// The latest backup restores to exactly the source, and a full `verify` finds nothing.
async fn restores_and_verifies(h: &Harness) {
    let expected = h.contents(DB).await;
    h.restore_with(&h.restore_request(BackupPoint::Latest, "copy"))
        .await
        .unwrap();
    assert_eq!(h.contents("copy").await, expected);
    let report = h
        .repo
        .verify(taosbackup_sink::VerifyOptions {
            read_data_percent: Some(100),
        })
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// Issue 18 (docs/format.md §5.3): a super table with more blocks than the training sample
/// gets a dictionary, listed by the catalog; the next backup reuses it; restore and verify
/// read the blocks compressed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_tables_blocks_share_a_dictionary_that_the_next_backup_reuses() {
    let (h, feed) = meters_with_180_blocks().await;
    let first = h.backup(EngineKind::Full, None).await.unwrap();
    let (dict, listed) = meters_dictionaries(&h, &first.snapshot).await;
    let dict = dict.expect("180 blocks train a dictionary");
    assert_eq!(listed, vec![dict]);
    insert(&h, &feed, "d0", &[6000]).await;
    let second = h.backup(EngineKind::Full, None).await.unwrap();
    assert_eq!(
        meters_dictionaries(&h, &second.snapshot).await,
        (Some(dict), vec![dict]),
        "reused, not trained again"
    );
    restores_and_verifies(&h).await;
}

/// Issue 18: `backup.dictionaries = false` trains and uses none for new blocks; an
/// incremental taken so still lists the dictionary its parent's kept blocks need, and the
/// chain of mixed blocks restores and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dictionaries_new_blocks_are_plain_and_kept_blocks_keep_theirs() {
    let (h, feed) = meters_with_180_blocks().await;
    let mut off = h.request(EngineKind::Full);
    off.dictionaries = false;
    let cancel = CancellationToken::new();
    // Off from the start: nothing trained, nothing listed.
    let plain = h.backup_with(&off, None, &cancel).await.unwrap();
    assert_eq!(
        meters_dictionaries(&h, &plain.snapshot).await,
        (None, vec![])
    );
    // On: trained (a full backup reads the newest snapshot's dictionaries; it has none).
    let trained = h.backup(EngineKind::Full, None).await.unwrap();
    let (dict, _) = meters_dictionaries(&h, &trained.snapshot).await;
    let dict = dict.expect("180 blocks train a dictionary");
    assert!(
        trained.snapshot.stats.bytes_stored < plain.snapshot.stats.bytes_stored,
        "with a dictionary {} B, without {} B",
        trained.snapshot.stats.bytes_stored,
        plain.snapshot.stats.bytes_stored
    );
    // Off again, incremental: the changed block is plain, the kept ones still need `dict`.
    insert(&h, &feed, "d0", &[6000]).await;
    let mut incr = h.request(EngineKind::Time);
    incr.dictionaries = false;
    let third = h.backup_with(&incr, None, &cancel).await.unwrap();
    assert_eq!(third.snapshot.kind, BackupKind::Incremental);
    assert_eq!(
        meters_dictionaries(&h, &third.snapshot).await,
        (None, vec![dict])
    );
    restores_and_verifies(&h).await;
}
