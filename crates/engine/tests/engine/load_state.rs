//! Reading one snapshot's state (what restore, verify and `show` start from): its shards are
//! read several at once, and their tables come back in the tree's order whatever order the
//! reads finish in.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use taosbackup_core::{BlobId, RepositoryError, shard_order};
use taosbackup_testkit::fake::{FakeSource, MemoryRepository};

/// A [`MemoryRepository`] whose reads take longer the earlier they start (so that later
/// reads finish first when several are in flight), counting the most in flight at once.
#[derive(Debug, Default)]
struct SlowReads {
    inner: MemoryRepository,
    started: AtomicUsize,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

repository_over_inner!(SlowReads, {
    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        self.inner.store_blob(data).await
    }

    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        let k = self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(40u64.saturating_sub(k as u64 % 40))).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.inner.read_blob(id).await
    }
});

#[tokio::test]
async fn shards_are_read_at_once_and_their_tables_come_back_in_tree_order() {
    // Shards of both kinds, ~10 of them.
    let db = crate::model::many_shards();
    let repo = Arc::new(SlowReads::default());
    let source = Arc::new(FakeSource::new(db.clone()));
    let report = crate::model::full_backup(source, repo.clone(), false).await;

    let (state, read) = taosbackup_engine::load_state(&*repo, &report.snapshot, &[], &[])
        .await
        .unwrap();
    assert!(read.shards >= 5, "{read:?}");
    assert!(
        repo.most.load(Ordering::SeqCst) > 1,
        "the shards were read one at a time"
    );
    let names: Vec<&str> = state
        .catalog
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let mut sorted = state.catalog.tables.clone();
    sorted.sort_by(shard_order);
    let expected: Vec<&str> = sorted.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 640);
    assert_eq!(names, expected, "tables out of the tree's order");
    assert_eq!(state.tables.len(), 640);
    assert_eq!(state.rows("n7"), 1);

    // `show` of the same backup reads its shards the same way: every table, in name order.
    let (changes, relative) = taosbackup_engine::changes(&*repo, &report.snapshot)
        .await
        .unwrap();
    assert!(!relative);
    assert_eq!(changes.len(), 640);
    assert!(changes.windows(2).all(|w| w[0].name < w[1].name));
}
