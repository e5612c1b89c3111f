//! Shared dictionaries through the engine, against the in-memory fakes and a repository
//! that trains: a super table's first blocks, held back as training samples, are stored with
//! the dictionary trained from them like every later block, and restore exactly; so are the
//! blocks that arrive while it is trained.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use taosbackup_core::{BlobId, ColumnDef, DataType, Precision, RepositoryError, Value};
use taosbackup_testkit::fake::{FakeDb, FakeSource, MemoryRepository, Op};

/// A [`MemoryRepository`] whose `train_dictionary` stores a stand-in dictionary blob, and
/// which counts the blocks stored with a dictionary and without.
#[derive(Debug, Default)]
struct TrainingRepo {
    inner: MemoryRepository,
    with_dictionary: AtomicUsize,
    trained: AtomicUsize,
    /// How long training takes (the other exports go on meanwhile).
    train_for: Option<Duration>,
}

repository_over_inner!(TrainingRepo, {
    async fn store_blob(&self, data: &[u8]) -> Result<BlobId, RepositoryError> {
        self.inner.store_blob(data).await
    }

    async fn store_blob_with_dictionary(
        &self,
        data: &[u8],
        _dictionary: &BlobId,
    ) -> Result<BlobId, RepositoryError> {
        self.with_dictionary.fetch_add(1, Ordering::Relaxed);
        self.inner.store_blob(data).await
    }

    async fn train_dictionary(&self, samples: &[&[u8]]) -> Result<Option<BlobId>, RepositoryError> {
        self.trained.fetch_add(samples.len(), Ordering::Relaxed);
        if let Some(d) = self.train_for {
            tokio::time::sleep(d).await;
        }
        let id = self.inner.store_blob(b"a stand-in dictionary").await?;
        Ok(Some(id))
    }

    async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        self.inner.read_blob(id).await
    }
});

fn col(name: &str, ty: DataType) -> ColumnDef {
    ColumnDef::new(name, ty, None)
}

/// 20 children × 10 one-minute buckets = 200 blocks: 128 samples, then 72 more; backed up
/// in full with dictionaries into `repo`, then restored and compared.
async fn back_up_and_restore(repo: &Arc<TrainingRepo>) {
    let db = FakeDb::new();
    db.create_database("d", Precision::Ms, 2).unwrap();
    let apply = |op: Op| db.apply("d", &op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    apply(Op::CreateStable {
        name: "meters".into(),
        columns: vec![col("ts", DataType::Timestamp), col("v", DataType::Int)],
        tags: vec![col("g", DataType::Int)],
    });
    let base = 1_760_000_040_000i64;
    for c in 0..20 {
        let name = format!("c{c}");
        apply(Op::CreateChild {
            name: name.clone(),
            stable: "meters".into(),
            tags: vec![Value::Int(c)],
        });
        let rows = (0..600)
            .step_by(13)
            .map(|k| (base + k * 1000, vec![Value::Int((k * i64::from(c)) as i32)]))
            .collect();
        apply(Op::Insert {
            table: name,
            columns: vec!["v".into()],
            rows,
        });
    }
    let source = Arc::new(FakeSource::new(db.clone()));
    let report = crate::model::full_backup(source.clone(), repo.clone(), true).await;
    assert_eq!(repo.trained.load(Ordering::Relaxed), 128);
    let r = crate::model::restore_exactly(&db, &source, &**repo, &report.snapshot.id).await;
    assert_eq!(r.blocks, 200);
}

#[tokio::test]
async fn sample_blocks_are_stored_with_the_dictionary_trained_from_them() {
    let repo = Arc::new(TrainingRepo::default());
    back_up_and_restore(&repo).await;
    // Every block, the samples included, is compressed with the dictionary.
    assert_eq!(repo.with_dictionary.load(Ordering::Relaxed), 200);
}

/// Training takes a while (tens of milliseconds for zstd's trainer): the blocks the other
/// exports bring meanwhile wait for the dictionary too, instead of going without one.
#[tokio::test]
async fn blocks_arriving_while_the_dictionary_is_trained_wait_for_it() {
    let repo = Arc::new(TrainingRepo {
        train_for: Some(Duration::from_millis(200)),
        ..TrainingRepo::default()
    });
    back_up_and_restore(&repo).await;
    assert_eq!(repo.with_dictionary.load(Ordering::Relaxed), 200);
}

/// Large blocks: training starts once 2 MiB of samples are held (64× the dictionary's
/// size), before the 128-block count, and every block is still stored with the dictionary.
#[tokio::test]
async fn training_starts_at_two_mebibytes_of_samples() {
    let db = FakeDb::new();
    db.create_database("d", Precision::Ms, 2).unwrap();
    let apply = |op: Op| db.apply("d", &op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    apply(Op::CreateStable {
        name: "meters".into(),
        columns: vec![
            col("ts", DataType::Timestamp),
            ColumnDef::new("s", DataType::VarChar, Some(256)),
        ],
        tags: vec![col("g", DataType::Int)],
    });
    // 40 children, one block each of 400 rows × ~200 B: ~86 KB a block, 3.4 MB in all (under
    // the 4 MiB at which training started before, so that this backup trained nothing).
    let base = 1_760_000_040_000i64;
    for c in 0..40 {
        let name = format!("c{c}");
        apply(Op::CreateChild {
            name: name.clone(),
            stable: "meters".into(),
            tags: vec![Value::Int(c)],
        });
        let rows = (0..400i64)
            .map(|k| {
                let text = format!("{c:03}-{k:05}-").repeat(20);
                (base + k, vec![Value::VarChar(text.into_bytes())])
            })
            .collect();
        apply(Op::Insert {
            table: name,
            columns: vec!["s".into()],
            rows,
        });
    }
    let repo = Arc::new(TrainingRepo::default());
    let source = Arc::new(FakeSource::new(db.clone()));
    let report = crate::model::full_backup(source.clone(), repo.clone(), true).await;
    let trained = repo.trained.load(Ordering::Relaxed);
    // 2 MiB is reached at the 25th block.
    assert!(
        (20..=30).contains(&trained),
        "trained from {trained} samples"
    );
    assert_eq!(repo.with_dictionary.load(Ordering::Relaxed), 40);
    let r = crate::model::restore_exactly(&db, &source, &*repo, &report.snapshot.id).await;
    assert_eq!(r.blocks, 40);
}
