//! Tables exported in groups (`Source::export_tables`): the engine sends children of one
//! super table with the same ranges together, at most `tables_per_query` and an equal share
//! of the parallel exports a group, other tables alone; and it refuses a source that breaks
//! the promise that each table's chunks come together. Each export runs as a task of its
//! own: on the runtime's workers, stopped and waited for when one fails.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use async_trait::async_trait;
use taosbackup_core::{
    BlockChunk, CatalogSnapshot, ChunkStream, ColumnDef, DataType, ExportRequest, Precision,
    Repository, RestoreOptions, Source, SourceError, SourceErrorKind, Value, WriteReport,
};
use taosbackup_engine::EngineError;
use taosbackup_testkit::fake::{FakeDb, FakeSource, MemoryRepository, Op};

/// `impl Source for $t`: the catalog and the restore side from its `inner` [`FakeSource`],
/// the exports as given.
macro_rules! source_over_inner {
    ($t:ty, { $($exports:tt)* }) => {
        #[async_trait]
        impl Source for $t {
            async fn catalog(&self, database: &str) -> Result<CatalogSnapshot, SourceError> {
                self.inner.catalog(database).await
            }

            $($exports)*

            async fn create_schema(
                &self,
                catalog: &CatalogSnapshot,
                options: &RestoreOptions,
            ) -> Result<String, SourceError> {
                self.inner.create_schema(catalog, options).await
            }

            async fn write_chunk(
                &self,
                target_database: &str,
                table: &str,
                chunk: &BlockChunk,
            ) -> Result<WriteReport, SourceError> {
                self.inner.write_chunk(target_database, table, chunk).await
            }

            async fn count_rows(&self, database: &str, table: &str) -> Result<u64, SourceError> {
                self.inner.count_rows(database, table).await
            }

            async fn count_rows_by_child(
                &self,
                database: &str,
                super_table: &str,
            ) -> Result<std::collections::BTreeMap<String, u64>, SourceError> {
                self.inner.count_rows_by_child(database, super_table).await
            }
        }
    };
}

/// A [`FakeSource`] that records the tables of each export call and, with `interleave`,
/// hands a group's chunks out round-robin between its tables.
struct Recording {
    inner: FakeSource,
    interleave: bool,
    /// Each call's tables, `export` calls as groups of one.
    calls: Mutex<Vec<Vec<String>>>,
}

/// Chunks handed out from a list.
struct Listed(std::vec::IntoIter<BlockChunk>);

#[async_trait]
impl ChunkStream for Listed {
    async fn next_chunk(&mut self) -> Result<Option<BlockChunk>, SourceError> {
        Ok(self.0.next())
    }
}

source_over_inner!(Recording, {
    async fn export(
        &self,
        database: &str,
        precision: Precision,
        request: ExportRequest,
    ) -> Result<Box<dyn ChunkStream>, SourceError> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(vec![request.table.clone()]);
        }
        self.inner.export(database, precision, request).await
    }

    async fn export_tables(
        &self,
        database: &str,
        precision: Precision,
        requests: Vec<ExportRequest>,
    ) -> Result<Box<dyn ChunkStream>, SourceError> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(requests.iter().map(|r| r.table.clone()).collect());
        }
        let mut per_table = Vec::new();
        for r in requests {
            let mut s = self.inner.export(database, precision, r).await?;
            let mut chunks = Vec::new();
            while let Some(c) = s.next_chunk().await? {
                chunks.push(c);
            }
            per_table.push(chunks.into_iter());
        }
        let mut out = Vec::new();
        if self.interleave {
            while per_table.iter().any(|t| t.len() > 0) {
                for t in &mut per_table {
                    out.extend(t.next());
                }
            }
        } else {
            out.extend(per_table.into_iter().flatten());
        }
        Ok(Box::new(Listed(out.into_iter())))
    }
});

/// 10 children of `meters` and 2 of `other`, three one-minute buckets each, and a normal
/// table.
fn database() -> FakeDb {
    let db = FakeDb::new();
    db.create_database("d", Precision::Ms, 2).unwrap();
    let apply = |op: Op| db.apply("d", &op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    let cols = || {
        vec![
            ColumnDef::new("ts", DataType::Timestamp, None),
            ColumnDef::new("v", DataType::Int, None),
        ]
    };
    for st in ["meters", "other"] {
        apply(Op::CreateStable {
            name: st.into(),
            columns: cols(),
            tags: vec![ColumnDef::new("g", DataType::Int, None)],
        });
    }
    apply(Op::CreateTable {
        name: "plain".into(),
        columns: cols(),
    });
    let base = 1_760_000_040_000i64;
    let mut tables = vec!["plain".to_string()];
    for c in 0..12 {
        let name = format!("c{c:02}");
        apply(Op::CreateChild {
            name: name.clone(),
            stable: if c < 10 { "meters" } else { "other" }.into(),
            tags: vec![Value::Int(c)],
        });
        tables.push(name);
    }
    for t in tables {
        let rows = (0..180)
            .step_by(20)
            .map(|k| (base + k * 1000, vec![Value::Int(k as i32)]))
            .collect();
        apply(Op::Insert {
            table: t,
            columns: vec!["v".into()],
            rows,
        });
    }
    db
}

/// A full backup of `d` with three exports at once and at most three tables a group.
async fn backup(
    source: &Arc<Recording>,
    repo: &Arc<MemoryRepository>,
) -> Result<taosbackup_engine::BackupReport, EngineError> {
    crate::model::try_full_backup(source.clone(), repo.clone(), 3, false).await
}

#[tokio::test]
async fn children_with_the_same_ranges_are_exported_in_groups() {
    let db = database();
    let source = Arc::new(Recording {
        inner: FakeSource::new(db.clone()),
        interleave: false,
        calls: Mutex::new(Vec::new()),
    });
    let repo = Arc::new(MemoryRepository::default());
    let report = backup(&source, &repo).await.unwrap();
    assert_eq!(report.snapshot.stats.blocks, 13 * 3);
    let mut calls = source.calls.lock().unwrap().clone();
    calls.sort();
    // meters' 10 children: an equal share of 3 exports is 4, at most 3 a group; other's 2
    // children each alone (an equal share of 3 exports is 1); the normal table alone.
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 3, 1, 1, 1, 1], "{calls:?}");
    assert_eq!(calls[3..], [["c09"], ["c10"], ["c11"], ["plain"]]);
    crate::model::restore_exactly(&db, &source.inner, &*repo, &report.snapshot.id).await;
}

#[tokio::test]
async fn a_source_that_interleaves_tables_fails_the_backup() {
    let db = database();
    let source = Arc::new(Recording {
        inner: FakeSource::new(db),
        interleave: true,
        calls: Mutex::new(Vec::new()),
    });
    let repo = Arc::new(MemoryRepository::default());
    let err = backup(&source, &repo).await.unwrap_err();
    assert!(matches!(err, EngineError::Internal(_)), "{err:?}");
    assert!(
        err.to_string().contains("after those of another table"),
        "{err}"
    );
    assert!(repo.list_snapshots().await.unwrap().is_empty());
}

/// A [`FakeSource`] whose streams record the thread that reads each chunk and count
/// themselves while open; each read holds its thread a moment, so that one worker cannot
/// run every export. The export of table `fails` fails at its first read; that of `panics`
/// panics. Reads of other tables wait `slow` (asynchronously) first.
struct Watched {
    inner: FakeSource,
    threads: Arc<Mutex<HashSet<ThreadId>>>,
    open: Arc<AtomicUsize>,
    fails: Option<&'static str>,
    panics: Option<&'static str>,
    slow: Duration,
}

impl Watched {
    fn new(db: FakeDb) -> Watched {
        Watched {
            inner: FakeSource::new(db),
            threads: Arc::default(),
            open: Arc::default(),
            fails: None,
            panics: None,
            slow: Duration::ZERO,
        }
    }
}

struct WatchedStream {
    inner: Box<dyn ChunkStream>,
    threads: Arc<Mutex<HashSet<ThreadId>>>,
    open: Arc<AtomicUsize>,
    fails: bool,
    slow: Duration,
}

impl Drop for WatchedStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ChunkStream for WatchedStream {
    async fn next_chunk(&mut self) -> Result<Option<BlockChunk>, SourceError> {
        if self.fails {
            return Err(SourceError::new(
                SourceErrorKind::Connection,
                false,
                "injected: the connection dropped",
            ));
        }
        tokio::time::sleep(self.slow).await;
        self.threads
            .lock()
            .unwrap()
            .insert(std::thread::current().id());
        // Blocks its worker, as compressing a block does.
        std::thread::sleep(Duration::from_millis(2));
        self.inner.next_chunk().await
    }
}

source_over_inner!(Watched, {
    async fn export(
        &self,
        database: &str,
        precision: Precision,
        request: ExportRequest,
    ) -> Result<Box<dyn ChunkStream>, SourceError> {
        assert_ne!(
            Some(request.table.as_str()),
            self.panics,
            "injected export bug"
        );
        let fails = Some(request.table.as_str()) == self.fails;
        let inner = self.inner.export(database, precision, request).await?;
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(WatchedStream {
            inner,
            threads: self.threads.clone(),
            open: self.open.clone(),
            fails,
            slow: if fails { Duration::ZERO } else { self.slow },
        }))
    }
});

/// The exports' reads, and so the storing of their blocks, run on the runtime's workers,
/// more than one of them: not all on the thread that polls the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_run_on_the_runtimes_workers() {
    let db = database();
    let source = Arc::new(Watched::new(db.clone()));
    let repo = Arc::new(MemoryRepository::default());
    let polling = std::thread::current().id();
    let report = crate::model::try_full_backup(source.clone(), repo.clone(), 3, false)
        .await
        .unwrap();
    let threads = source.threads.lock().unwrap().clone();
    assert!(!threads.contains(&polling), "{threads:?}");
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert_eq!(source.open.load(Ordering::SeqCst), 0);
    crate::model::restore_exactly(&db, &source.inner, &*repo, &report.snapshot.id).await;
}

/// A full backup of `source` that must fail with nothing committed and no export's stream
/// still open when it returns; its error.
async fn failed_backup(source: Watched) -> EngineError {
    let source = Arc::new(source);
    let repo = Arc::new(MemoryRepository::default());
    let open = || source.open.load(Ordering::SeqCst);
    crate::model::failed_full_backup(source.clone(), repo, 3, open, "exports").await
}

/// One export fails: the backup fails with its error, and only once every other export has
/// stopped (none of their streams is still open when it returns). Nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_stops_the_others_before_the_backup_returns() {
    let err = failed_backup(Watched {
        fails: Some("c04"),
        slow: Duration::from_millis(50),
        ..Watched::new(database())
    })
    .await;
    assert!(
        matches!(&err, EngineError::Source { .. }) && err.to_string().contains("injected"),
        "{err:?}"
    );
}

/// An export task that panics (a bug) fails the backup with an internal error instead of
/// taking the process down; nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_export_is_an_internal_error() {
    let err = failed_backup(Watched {
        panics: Some("plain"),
        ..Watched::new(database())
    })
    .await;
    assert!(
        matches!(&err, EngineError::Internal(m) if m.contains("panicked")),
        "{err:?}"
    );
}
