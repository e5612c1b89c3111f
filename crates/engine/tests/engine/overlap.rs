//! The work of a bitmap incremental that overlaps: it reads its parent's shards of the
//! changed tables while it exports (the exports do not wait for them, and the commit still
//! removes the buckets whose rows were deleted: tombstones, which need those shards), and it
//! cuts the catalog into shards while its change feed catches up (a cut the feed makes
//! stale, a table dropped in between, is not used).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use taosbackup_core::{
    BackupKind, BlobId, BucketWidth, NoProgress, RepositoryError, RepositoryErrorKind, SourceInfo,
    Value,
};
use taosbackup_engine::{
    BackupRequest, CancellationToken, ChangeTracking, EngineKind, OnGap, TrackingConfig,
};
use taosbackup_testkit::fake::{FakeFeed, FakeSource, MemoryRepository, Op};

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

/// A bitmap backup of database `d` through `source` into `repo`.
async fn backup(
    source: &Arc<FakeSource>,
    repo: &Arc<Gate>,
    tracking: &mut ChangeTracking,
) -> Result<taosbackup_engine::BackupReport, taosbackup_engine::EngineError> {
    taosbackup_engine::backup(
        source.clone(),
        repo.clone(),
        Some(tracking),
        &request(),
        Arc::new(NoProgress),
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exports_do_not_wait_for_the_parents_shards() {
    let db = crate::model::many_shards();
    let source = Arc::new(FakeSource::new(db.clone()));
    let repo = Arc::new(Gate::default());
    let dir = tempfile::tempdir().unwrap();
    let mut tracking = ChangeTracking::open(
        Box::new(FakeFeed::new(db.clone(), "d", "prefetch")),
        TrackingConfig::new(dir.path().join("tracker.state")),
        request().bucket_width,
    )
    .await
    .unwrap();
    let full = backup(&source, &repo, &mut tracking).await.unwrap();
    assert_eq!(full.snapshot.kind, BackupKind::Full);

    // Changes in tables of several shards, and one table whose only row is deleted: its
    // bucket becomes a tombstone, which only the parent's shard can tell.
    let apply = |op: Op| db.apply("d", &op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    for t in ["c0", "c300", "c599", "n5"] {
        apply(Op::Insert {
            table: t.into(),
            columns: vec!["v".into()],
            rows: vec![(1_760_000_100_000, vec![Value::Int(-1)])],
        });
    }
    apply(Op::Delete {
        table: "c100".into(),
        start: 1_760_000_000_000,
        end: 1_760_000_100_000,
    });
    repo.arm();
    let incr = backup(&source, &repo, &mut tracking).await.unwrap();

    assert_eq!(incr.snapshot.kind, BackupKind::Incremental);
    assert_eq!(
        incr.snapshot.stats.tombstones, 1,
        "{:?}",
        incr.snapshot.stats
    );
    let waited = repo.waited.load(Ordering::SeqCst) as u64;
    assert!(waited >= 3, "{waited} parent shards read");
    // The tree's root and its one node, and the shards.
    assert_eq!(incr.parent_objects_read, 2 + waited);
    crate::model::restore_exactly(&db, &source, &*repo, &incr.snapshot.id).await;
}

/// A table dropped after the catalog read and before the feed's catch-up: the catalog lists
/// it, the feed saw it dropped. It is left out of the backup (a dropped table), and the
/// catalog cut while the feed caught up, which still holds it, is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_between_the_catalog_and_the_feed_is_left_out() {
    let db = crate::model::many_shards();
    let source = Arc::new(FakeSource::new(db.clone()));
    let repo = Arc::new(Gate::default());
    let dir = tempfile::tempdir().unwrap();
    let mut tracking = ChangeTracking::open(
        Box::new(FakeFeed::new(db.clone(), "d", "overlap")),
        TrackingConfig::new(dir.path().join("tracker.state")),
        request().bucket_width,
    )
    .await
    .unwrap();
    backup(&source, &repo, &mut tracking).await.unwrap();

    db.apply(
        "d",
        &Op::Insert {
            table: "c450".into(),
            columns: vec!["v".into()],
            rows: vec![(1_760_000_100_000, vec![Value::Int(-1)])],
        },
    )
    .unwrap();
    source.after_next_catalog("d", Op::DropTable { table: "c7".into() });
    let incr = backup(&source, &repo, &mut tracking).await.unwrap();

    assert_eq!(incr.snapshot.kind, BackupKind::Incremental);
    assert_eq!(incr.dropped_tables, 1);
    assert_eq!(incr.snapshot.stats.tables, 639);
    crate::model::restore_exactly(&db, &source, &*repo, &incr.snapshot.id).await;
}
