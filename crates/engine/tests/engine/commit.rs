//! The commit's new shards: each is stored by a task of its own, at most `parallel` at once,
//! and the tree names each under its own id; a store that fails (or panics) fails the backup
//! with nothing committed and no store still running.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use taosbackup_core::{BlobId, RepositoryError, RepositoryErrorKind};
use taosbackup_engine::EngineError;
use taosbackup_testkit::fake::{FakeSource, MemoryRepository};

/// What [`Stores`] does to the shard store with a given number (from 1).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Fail(usize),
    Panic(usize),
}

/// A [`MemoryRepository`] whose shard stores take a while, recording the most in flight at
/// once and the threads they ran on; one of them may fail or panic.
#[derive(Debug, Default)]
struct Stores {
    inner: MemoryRepository,
    fault: Option<Fault>,
    started: AtomicUsize,
    in_flight: AtomicUsize,
    most: AtomicUsize,
    threads: Mutex<HashSet<ThreadId>>,
}

repository_over_inner!(Stores, {
    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        self.inner.store_blob(data).await
    }

    async fn store_tree_object(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        // Shards, in either encoding (the in-memory repository writes them binary).
        if taosbackup_core::Shard::decode(data, "probe").is_err() {
            return self.inner.store_tree_object(data).await;
        }
        let n = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut t) = self.threads.lock() {
            t.insert(std::thread::current().id());
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // Counted down when the store ends, also when its task is aborted mid-sleep.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.in_flight);
        match self.fault {
            Some(Fault::Fail(k)) if k == n => {
                return Err(RepositoryError::new(
                    RepositoryErrorKind::Backend,
                    false,
                    "injected shard store failure",
                ));
            }
            Some(Fault::Panic(k)) if k == n => panic!("injected shard store panic"),
            // The others take long enough to be in flight when the fault comes.
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        self.inner.store_tree_object(data).await
    }

    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        self.inner.read_blob(id).await
    }
});

/// The shards are stored by tasks on the runtime's workers (not on the thread polling the
/// backup), several at once but at most `parallel` (3 here), and the tree names each shard
/// under its own id: every shard reads back against its tree entry, with every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_stored_by_tasks_of_their_own() {
    let polling = std::thread::current().id();
    let repo = Arc::new(Stores::default());
    let source = Arc::new(FakeSource::new(crate::model::many_shards()));
    let report = crate::model::full_backup(source, repo.clone(), false).await;

    let stored = repo.started.load(Ordering::SeqCst);
    assert!(stored >= 5, "{stored} shards");
    let most = repo.most.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} shard stores at once");
    let threads = repo.threads.lock().unwrap().clone();
    assert!(
        !threads.contains(&polling),
        "a shard was stored on the thread polling the backup"
    );

    let (state, read) = taosbackup_engine::load_state(&*repo, &report.snapshot, &[], &[])
        .await
        .unwrap();
    assert_eq!(read.shards as usize, stored);
    assert_eq!(state.tables.len(), 640);
    assert_eq!(state.rows("c599"), 1);
    assert_eq!(state.rows("n39"), 1);
}

/// A full backup of [`crate::model::many_shards`] with `fault` in its shard stores, which
/// must fail with nothing committed and no store still running; its error.
async fn failed_backup(fault: Fault) -> EngineError {
    let repo = Arc::new(Stores {
        fault: Some(fault),
        ..Stores::default()
    });
    let source = Arc::new(FakeSource::new(crate::model::many_shards()));
    let in_flight = || repo.in_flight.load(Ordering::SeqCst);
    crate::model::failed_full_backup(source, repo.clone(), 1, in_flight, "stores").await
}

/// A shard store that fails fails the backup with that error, once no other store runs;
/// nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_shard_store_stops_the_others_before_the_backup_returns() {
    let err = failed_backup(Fault::Fail(3)).await;
    assert!(
        matches!(&err, EngineError::Repository { .. }) && err.to_string().contains("injected"),
        "{err:?}"
    );
}

/// A shard store that panics (a bug) is an internal error, not the process's end; nothing
/// is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_shard_store_is_an_internal_error() {
    let err = failed_backup(Fault::Panic(2)).await;
    assert!(
        matches!(&err, EngineError::Internal(m) if m.contains("panicked")),
        "{err:?}"
    );
}
