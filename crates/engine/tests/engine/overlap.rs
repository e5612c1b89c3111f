//! The work of a bitmap incremental that overlaps: it reads its parent's shards of the
//! changed tables while it exports (the exports do not wait for them, and the commit still
//! removes the buckets whose rows were deleted: tombstones, which need those shards), and it
//! cuts the catalog into shards while its change feed catches up (a cut the feed makes
//! stale, a table dropped in between, is not used).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use taosbackup_core::{
    BackupKind, BlobId, BucketWidth, NoProgress, Repository, RepositoryError, RepositoryErrorKind,
    SourceInfo, Value,
};
use taosbackup_engine::{
    BackupRequest, CancellationToken, ChangeTracking, EngineKind, OnGap, TrackingConfig,
};
use taosbackup_testkit::fake::{FakeFeed, FakeSource, FaultPoint, MemoryRepository, Op};

/// A [`MemoryRepository`] whose read-ahead reads (a backup's reads of its parent's shards)
/// wait, once armed, until a block has been stored since, and fail after a while otherwise.
#[derive(Debug, Default)]
struct Gate {
    inner: MemoryRepository,
    armed: AtomicBool,
    stored_since: AtomicBool,
    /// Shard reads that waited for an export's block and got it.
    waited: AtomicUsize,
}

impl Gate {
    fn arm(&self) {
        self.stored_since.store(false, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }
}

repository_over_inner!(Gate, {
    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        let id = self.inner.store_blob(data).await;
        self.stored_since.store(true, Ordering::SeqCst);
        id
    }

    async fn store_tree_object(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        self.inner.store_tree_object(data).await
    }

    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        self.inner.read_blob(id).await
    }

    async fn read_blob_ahead(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        if self.armed.load(Ordering::SeqCst) {
            // A read dropped while it waits (its task aborted) takes a while to go, so that
            // a backup that does not wait for its aborted reads returns before they are gone.
            struct SlowWhenAborted(bool);
            impl Drop for SlowWhenAborted {
                fn drop(&mut self) {
                    if !self.0 {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            let mut waiting = SlowWhenAborted(false);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.stored_since.load(Ordering::SeqCst) {
                if Instant::now() > deadline {
                    return Err(RepositoryError::new(
                        RepositoryErrorKind::Backend,
                        false,
                        "a parent shard was read before any block was exported",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            waiting.0 = true;
            self.waited.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.read_blob(id).await
    }
});

fn request() -> BackupRequest {
    BackupRequest {
        database: "d".into(),
        engine: EngineKind::Bitmap,
        force_full: false,
        on_gap: OnGap::Fail,
        parallel: 3,
        tables_per_query: 4,
        bucket_width: BucketWidth::from_seconds(60).unwrap(),
        dictionaries: false,
        source_info: SourceInfo::default(),
    }
}

/// [`crate::model::many_shards`] behind a fake source and a [`Gate`] repository, with change
/// tracking and a first (full) bitmap backup taken.
struct World {
    db: taosbackup_testkit::fake::FakeDb,
    source: Arc<FakeSource>,
    repo: Arc<Gate>,
    tracking: ChangeTracking,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let db = crate::model::many_shards();
        let dir = tempfile::tempdir().unwrap();
        let mut w = World {
            source: Arc::new(FakeSource::new(db.clone())),
            repo: Arc::new(Gate::default()),
            tracking: ChangeTracking::open(
                Box::new(FakeFeed::new(db.clone(), "d", "overlap")),
                TrackingConfig::new(dir.path().join("tracker.state")),
                request().bucket_width,
            )
            .await
            .unwrap(),
            db,
            _dir: dir,
        };
        let full = w.backup().await.unwrap();
        assert_eq!(full.snapshot.kind, BackupKind::Full);
        w
    }

    /// A bitmap backup of database `d`.
    async fn backup(
        &mut self,
    ) -> Result<taosbackup_engine::BackupReport, taosbackup_engine::EngineError> {
        taosbackup_engine::backup(
            self.source.clone(),
            self.repo.clone(),
            Some(&mut self.tracking),
            &request(),
            Arc::new(NoProgress),
            &CancellationToken::new(),
        )
        .await
    }

    /// A row more in each of `tables`.
    fn insert(&self, tables: &[&str]) {
        for t in tables {
            self.apply(Op::Insert {
                table: t.to_string(),
                columns: vec!["v".into()],
                rows: vec![(1_760_000_100_000, vec![Value::Int(-1)])],
            });
        }
    }

    fn apply(&self, op: Op) {
        self.db
            .apply("d", &op)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exports_do_not_wait_for_the_parents_shards() {
    let mut w = World::new().await;
    // Changes in tables of several shards, and one table whose only row is deleted: its
    // bucket becomes a tombstone, which only the parent's shard can tell.
    w.insert(&["c0", "c300", "c599", "n5"]);
    w.apply(Op::Delete {
        table: "c100".into(),
        start: 1_760_000_000_000,
        end: 1_760_000_100_000,
    });
    // `plan` reads the shards of the tables with work before it describes their
    // tombstones (before the gate is armed: it exports nothing).
    let plan = taosbackup_engine::plan(
        w.source.as_ref(),
        w.repo.as_ref(),
        Some(&mut w.tracking),
        &request(),
    )
    .await
    .unwrap();
    assert_eq!(plan.tombstones, 1, "{plan:?}");
    w.repo.arm();
    let incr = w.backup().await.unwrap();

    assert_eq!(incr.snapshot.kind, BackupKind::Incremental);
    assert_eq!(
        incr.snapshot.stats.tombstones, 1,
        "{:?}",
        incr.snapshot.stats
    );
    let waited = w.repo.waited.load(Ordering::SeqCst) as u64;
    assert!(waited >= 3, "{waited} parent shards read");
    // The tree's root and its one node, and the shards.
    assert_eq!(incr.parent_objects_read, 2 + waited);
    crate::model::restore_exactly(&w.db, &w.source, &*w.repo, &incr.snapshot.id).await;
}

/// A table dropped after the catalog read and before the feed's catch-up: the catalog lists
/// it, the feed saw it dropped. It is left out of the backup (a dropped table), and the
/// catalog cut while the feed caught up, which still holds it, is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_between_the_catalog_and_the_feed_is_left_out() {
    let mut w = World::new().await;
    w.insert(&["c450"]);
    w.source
        .after_next_catalog("d", Op::DropTable { table: "c7".into() });
    let incr = w.backup().await.unwrap();

    assert_eq!(incr.snapshot.kind, BackupKind::Incremental);
    assert_eq!(incr.dropped_tables, 1);
    assert_eq!(incr.snapshot.stats.tables, 639);
    crate::model::restore_exactly(&w.db, &w.source, &*w.repo, &incr.snapshot.id).await;
}

/// An export that fails while the parent's shards are being read: the backup fails with the
/// export's error, and once it returns nothing of it holds the repository any more (the
/// CLI releases its lock then), nor is anything committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_no_read_of_the_parents_shards_running() {
    let mut w = World::new().await;
    let committed = w.repo.list_snapshots().await.unwrap().len();
    w.insert(&["c0", "c300", "n5"]);
    // Every export fails, so no block is stored and the shard reads wait at the gate.
    w.repo.arm();
    w.db.faults.fail(FaultPoint::Export, 100, false);
    let err = w.backup().await.unwrap_err();
    w.db.faults.clear();

    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(
        Arc::strong_count(&w.repo),
        1,
        "a task still holds the repository"
    );
    assert_eq!(w.repo.list_snapshots().await.unwrap().len(), committed);
}
