//! [`TaosSource`]: the TDengine implementation of [`taosbackup_core::Source`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::Stream;
use taosbackup_core::{
    BlockChunk, CatalogSnapshot, ChunkStream, ColumnDef, DataType, ExportRequest, Precision,
    RestoreOptions, Source, SourceError, TableKind, WriteReport,
};

use crate::Error;
use crate::conn::{Ctx, Pool};
use crate::dbopts::OptionChange;
use crate::dsn::{ConnectOptions, Credentials, Endpoint};
use crate::export::ExportStream;
use crate::restore::{self, TargetTable, WriteMode, Writer};
use crate::sql;

type TableKey = (String, String);

/// What an export needs to know of a table's columns.
#[derive(Debug, Clone)]
pub(crate) struct TableKeys {
    /// The timestamp column.
    pub(crate) ts: String,
    /// The composite key column, if any.
    pub(crate) key: Option<String>,
    /// A DECIMAL or BLOB column: the connector (taos-query 0.12.4) panics on such blocks,
    /// so the table is read with the tool's own WebSocket client.
    pub(crate) connector_cannot_read: bool,
    /// For child tables known from a catalog read: their super table and its column names,
    /// so that several children can be read with one query (`export_tables`).
    pub(crate) stable: Option<(String, Vec<String>)>,
}

impl TableKeys {
    fn of(cols: &[ColumnDef]) -> Option<TableKeys> {
        Some(TableKeys {
            stable: None,
            ts: cols.first()?.name.clone(),
            key: cols
                .get(1)
                .filter(|c| c.primary_key)
                .map(|c| c.name.clone()),
            connector_cannot_read: cols
                .iter()
                .any(|c| matches!(c.data_type, DataType::Decimal | DataType::Blob)),
        })
    }
}

/// A TDengine server reached through one endpoint, with a pool of connections.
///
/// Cheap to share (`Arc<TaosSource>`); every method takes `&self` and the pool bounds the
/// concurrency.
pub struct TaosSource {
    options: ConnectOptions,
    endpoint: Endpoint,
    creds: Credentials,
    pool: Arc<Pool>,
    write_pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// Per database, per table: the timestamp column and the composite key column. A
    /// catalog read fills it for every table; child tables share their super table's
    /// entry (one name per table is what a catalog read of 10,000 tables allocates here).
    ts_columns: Mutex<HashMap<String, HashMap<String, Arc<TableKeys>>>>,
    targets: Mutex<HashMap<TableKey, TargetTable>>,
    option_changes: Mutex<Vec<OptionChange>>,
    /// Per super table, whether its children are small enough to share export queries
    /// (`export_tables.rs`).
    child_sizes: crate::export_tables::Sizes,
    mode: WriteMode,
}

impl std::fmt::Debug for TaosSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaosSource")
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl TaosSource {
    /// Prepares a source; does no network I/O (the first statement connects). Fails for a
    /// malformed DSN, and for a native DSN when the TDengine client library is missing
    /// ([`Error::NativeClientMissing`], naming both fixes).
    pub fn connect(options: ConnectOptions) -> Result<TaosSource, Error> {
        let (endpoint, creds) = options.resolve()?;
        let pool = Arc::new(Pool::new(&options, endpoint.clone(), &creds, None)?);
        Ok(TaosSource {
            options,
            endpoint,
            creds,
            pool,
            write_pools: Mutex::new(HashMap::new()),
            ts_columns: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
            option_changes: Mutex::new(Vec::new()),
            child_sizes: Default::default(),
            mode: WriteMode::default(),
        })
    }

    /// Chooses how chunks are written on restore.
    pub fn with_write_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// Ends the background work and closes the connections, for a clean stop: exports
    /// whose reader is gone finish the fetch in flight and free their result, abandoned
    /// fetches get their answer (all waited for up to `wait`), then idle connections close.
    /// Call it before the tokio runtime shuts down: a runtime shutdown drops tasks with
    /// fetches in flight, whose late answers panic the connector's reader task (see
    /// `conn.rs`). Returns whether everything ended within `wait`. The source stays usable
    /// (connections reopen on demand).
    pub async fn close(&self, wait: std::time::Duration) -> bool {
        let pools: Vec<Arc<Pool>> = match self.write_pools.lock() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let mut all = self.pool.close(wait).await;
        for p in pools {
            all &= p.close(wait).await;
        }
        all
    }

    /// Opens the source's connections in the background, up to its pool size, so that the
    /// statements a backup starts with find them open: for a caller about to do something
    /// slow that needs no server first (opening an encrypted repository). Best effort:
    /// errors are left to the statements that follow. [`TaosSource::close`] waits for it.
    pub fn warm_up(&self) {
        self.pool.warm_up();
    }

    /// The credentials the source connects with.
    pub(crate) fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The pool of the source's own connections.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The endpoint, without credentials.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Runs one statement (DDL, INSERT) and returns the affected rows, with retries of
    /// transient failures. For tools and tests; backup and restore use the typed methods.
    pub async fn execute(&self, sql: &str) -> Result<usize, Error> {
        self.pool.exec(Ctx::default(), sql).await
    }

    /// Reads the catalog of `database` in a bounded number of round trips.
    pub async fn read_catalog(&self, database: &str) -> Result<CatalogSnapshot, Error> {
        let catalog = crate::catalog::read_catalog(&self.pool, database).await?;
        let stable_keys: HashMap<&str, Arc<TableKeys>> = catalog
            .super_tables
            .iter()
            .filter_map(|s| {
                let keys = TableKeys {
                    stable: Some((
                        s.name.clone(),
                        s.columns.iter().map(|c| c.name.clone()).collect(),
                    )),
                    ..TableKeys::of(&s.columns)?
                };
                Some((s.name.as_str(), Arc::new(keys)))
            })
            .collect();
        // Built afresh, at its size, and swapped in: tables dropped since the last read
        // leave it, and its 10,000 and more entries are not re-hashed as it grows.
        let mut tables = HashMap::with_capacity(catalog.tables.len());
        for t in &catalog.tables {
            let keys = match t.kind {
                TableKind::Normal => TableKeys::of(&t.columns).map(Arc::new),
                TableKind::Child => t
                    .super_table
                    .as_deref()
                    .and_then(|s| stable_keys.get(s).cloned()),
            };
            if let Some(keys) = keys {
                tables.insert(t.name.clone(), keys);
            }
        }
        if let Ok(mut cache) = self.ts_columns.lock() {
            cache.insert(database.to_string(), tables);
        }
        Ok(catalog)
    }

    /// The timestamp precision of `database`, without reading its tables (two one-row
    /// queries; a missing database fails as [`TaosSource::read_catalog`] does).
    pub async fn database_precision(&self, database: &str) -> Result<Precision, Error> {
        Ok(crate::catalog::database_header(&self.pool, database)
            .await?
            .1)
    }

    /// The names of a table's timestamp column and composite key column, if any (from the
    /// last catalog read, else `DESCRIBE`).
    async fn key_columns(&self, database: &str, table: &str) -> Result<Arc<TableKeys>, Error> {
        if let Some(c) = self
            .ts_columns
            .lock()
            .ok()
            .and_then(|m| m.get(database)?.get(table).cloned())
        {
            return Ok(c);
        }
        let cols = restore::describe_target(&self.pool, database, table).await?;
        let found = Arc::new(TableKeys::of(&cols).ok_or_else(|| Error::UnexpectedReply {
            what: "DESCRIBE".into(),
            database: Some(database.to_string()),
            table: Some(table.to_string()),
            reason: "no columns".into(),
        })?);
        if let Ok(mut m) = self.ts_columns.lock() {
            m.entry(database.to_string())
                .or_default()
                .insert(table.to_string(), found.clone());
        }
        Ok(found)
    }

    /// Streams the rows of `request.table` in `request.ranges` as chunks (see
    /// [`taosbackup_core::Source::export`] for the guarantees).
    pub async fn export(
        &self,
        database: &str,
        precision: Precision,
        request: ExportRequest,
    ) -> Result<Box<dyn ChunkStream>, Error> {
        Ok(Box::new(
            self.start_export(database, precision, request).await?,
        ))
    }

    async fn start_export(
        &self,
        database: &str,
        precision: Precision,
        request: ExportRequest,
    ) -> Result<ExportStream, Error> {
        let keys = self.key_columns(database, &request.table).await?;
        ExportStream::start(
            (self.pool.clone(), keys.connector_cannot_read),
            database,
            &request.table,
            (keys.ts.clone(), keys.key.clone()),
            precision,
            request.ranges,
            request.split_every,
        )
    }

    /// Streams the rows of several tables (see [`taosbackup_core::Source::export_tables`]):
    /// children of one super table over the same ranges with one query, others one after
    /// another (`export_tables.rs`).
    pub async fn export_tables(
        &self,
        database: &str,
        precision: Precision,
        mut requests: Vec<ExportRequest>,
    ) -> Result<Box<dyn ChunkStream>, Error> {
        if requests.len() == 1 {
            return self.export(database, precision, requests.remove(0)).await;
        }
        let mut tables = Vec::with_capacity(requests.len());
        for r in requests {
            let keys = self.key_columns(database, &r.table).await?;
            tables.push((r, keys));
        }
        Ok(Box::new(crate::export_tables::start(
            self.pool.clone(),
            self.child_sizes.clone(),
            database,
            precision,
            tables,
        )))
    }

    /// Exports several tables, up to the pool size at once; chunks of different tables
    /// interleave, chunks of one table stay in timestamp order. Memory stays bounded: each
    /// running table buffers at most a few blocks.
    pub fn export_parallel<'a>(
        &'a self,
        database: &'a str,
        precision: Precision,
        requests: Vec<ExportRequest>,
    ) -> impl Stream<Item = Result<BlockChunk, Error>> + Send + 'a {
        use futures::StreamExt;
        enum St<'a> {
            Start(&'a TaosSource, &'a str, Precision, ExportRequest),
            Running(ExportStream),
            Done,
        }
        let width = self.options.pool_size.max(1);
        futures::stream::iter(requests)
            .map(move |req| {
                Box::pin(futures::stream::unfold(
                    St::Start(self, database, precision, req),
                    |st| async {
                        let mut stream = match st {
                            St::Start(src, db, p, req) => {
                                match src.start_export(db, p, req).await {
                                    Ok(s) => s,
                                    Err(e) => return Some((Err(e), St::Done)),
                                }
                            }
                            St::Running(s) => s,
                            St::Done => return None,
                        };
                        match stream.next().await {
                            Ok(Some(c)) => Some((Ok(c), St::Running(stream))),
                            Ok(None) => None,
                            Err(e) => Some((Err(e), St::Done)),
                        }
                    },
                ))
            })
            .flatten_unordered(width)
    }

    /// Creates the target database and tables of `catalog` (see
    /// [`taosbackup_core::Source::create_schema`]).
    pub async fn create_schema(
        &self,
        catalog: &CatalogSnapshot,
        options: &RestoreOptions,
    ) -> Result<String, Error> {
        let outcome = restore::create_schema(&self.pool, catalog, options).await?;
        if let Ok(mut m) = self.option_changes.lock() {
            m.clone_from(&outcome.option_changes);
        }
        let (target, existing) = (outcome.target, outcome.existing);
        if let Ok(mut m) = self.targets.lock() {
            // One shared list per super table: 100,000 children are 100,000 entries, not
            // 200,000 copies of the columns.
            let stable_cols: HashMap<&str, Arc<[ColumnDef]>> = catalog
                .super_tables
                .iter()
                .map(|s| (s.name.as_str(), Arc::from(s.columns.as_slice())))
                .collect();
            for t in &catalog.tables {
                let (cols, stable) = match t.kind {
                    TableKind::Normal => (Some(Arc::from(t.columns.as_slice())), None),
                    TableKind::Child => {
                        let st = t.super_table.as_deref();
                        (st.and_then(|s| stable_cols.get(s).cloned()), st)
                    }
                };
                let Some(cols) = cols else { continue };
                // A table (or the super table of a child) that was there before the restore
                // has whatever columns it has: described before the first write.
                let preexisting =
                    existing.contains(&t.name) || stable.is_some_and(|s| existing.contains(s));
                m.insert(
                    (target.clone(), t.name.clone()),
                    TargetTable {
                        actual: (!preexisting).then(|| cols.clone()),
                        expected: Some(cols),
                    },
                );
            }
        }
        Ok(target)
    }

    /// The database options the last [`TaosSource::create_schema`] could not replay as the
    /// backup had them (dropped, or renamed for the target server's version).
    pub fn database_option_changes(&self) -> Vec<OptionChange> {
        self.option_changes
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The server's version (`SELECT SERVER_VERSION()`).
    pub async fn server_version(&self) -> Result<String, Error> {
        restore::server_version(&self.pool).await
    }

    fn write_pool(&self, database: &str) -> Result<Arc<Pool>, Error> {
        let mut pools = self
            .write_pools
            .lock()
            .map_err(|_| Error::UnexpectedReply {
                what: "write pool".into(),
                database: Some(database.to_string()),
                table: None,
                reason: "lock poisoned".into(),
            })?;
        if let Some(p) = pools.get(database) {
            return Ok(p.clone());
        }
        let p = Arc::new(Pool::new(
            &self.options,
            self.endpoint.clone(),
            &self.creds,
            Some(database),
        )?);
        pools.insert(database.to_string(), p.clone());
        Ok(p)
    }

    /// Counts the rows of `database.table` (`SELECT COUNT(*)`).
    pub async fn count_rows(&self, database: &str, table: &str) -> Result<u64, Error> {
        let rows = self
            .pool
            .query_values(
                Ctx::table(database, table).doing("counting rows"),
                &sql::count_rows(database, table),
            )
            .await?;
        let n = rows
            .rows
            .first()
            .and_then(|r| r.first())
            .map(|v| crate::catalog::int(v).ok_or(v));
        match n {
            // COUNT(*) of an empty table may come back as no row at all.
            None => Ok(0),
            Some(Ok(n)) => Ok(u64::try_from(n).unwrap_or(0)),
            Some(Err(v)) => Err(Error::UnexpectedReply {
                what: "COUNT(*)".into(),
                database: Some(database.to_string()),
                table: Some(table.to_string()),
                reason: format!("not an integer: {v:?}"),
            }),
        }
    }

    /// Counts the rows of every child table of `super_table` in `database` with one
    /// `PARTITION BY TBNAME` query; children without rows do not appear.
    pub async fn count_rows_by_child(
        &self,
        database: &str,
        super_table: &str,
    ) -> Result<BTreeMap<String, u64>, Error> {
        let rows = self
            .pool
            .query_values(
                Ctx::table(database, super_table).doing("counting rows per child table"),
                &sql::count_rows_by_child(database, super_table),
            )
            .await?;
        let bad = |reason: String| Error::UnexpectedReply {
            what: "COUNT(*) PARTITION BY TBNAME".into(),
            database: Some(database.to_string()),
            table: Some(super_table.to_string()),
            reason,
        };
        let mut out = BTreeMap::new();
        for row in &rows.rows {
            let (Some(name), Some(n)) = (row.first(), row.get(1)) else {
                return Err(bad(format!("a row with {} values, not 2", row.len())));
            };
            let name = crate::catalog::text(name)
                .ok_or_else(|| bad(format!("table name is not text: {name:?}")))?;
            let n = crate::catalog::int(n)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad(format!("count is not a count: {n:?}")))?;
            out.insert(name, n);
        }
        Ok(out)
    }

    /// Writes one chunk into `table` of `target_database` (see
    /// [`taosbackup_core::Source::write_chunk`]).
    pub async fn write_chunk(
        &self,
        target_database: &str,
        table: &str,
        chunk: &BlockChunk,
    ) -> Result<WriteReport, Error> {
        let pool = self.write_pool(target_database)?;
        let key = (target_database.to_string(), table.to_string());
        let known = self
            .targets
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
            .unwrap_or_default();
        let described = known.actual.is_some();
        let mut writer = Writer {
            pool: &pool,
            db: target_database,
            mode: self.mode,
            target: known,
        };
        let report = writer.write_chunk(table, chunk).await?;
        if !described {
            if let Ok(mut m) = self.targets.lock() {
                m.insert(key, writer.target);
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl Source for TaosSource {
    async fn catalog(&self, database: &str) -> Result<CatalogSnapshot, SourceError> {
        Ok(self.read_catalog(database).await?)
    }

    async fn export(
        &self,
        database: &str,
        precision: Precision,
        request: ExportRequest,
    ) -> Result<Box<dyn ChunkStream>, SourceError> {
        Ok(TaosSource::export(self, database, precision, request).await?)
    }

    async fn export_tables(
        &self,
        database: &str,
        precision: Precision,
        requests: Vec<ExportRequest>,
    ) -> Result<Box<dyn ChunkStream>, SourceError> {
        Ok(TaosSource::export_tables(self, database, precision, requests).await?)
    }

    async fn create_schema(
        &self,
        catalog: &CatalogSnapshot,
        options: &RestoreOptions,
    ) -> Result<String, SourceError> {
        Ok(TaosSource::create_schema(self, catalog, options).await?)
    }

    async fn write_chunk(
        &self,
        target_database: &str,
        table: &str,
        chunk: &BlockChunk,
    ) -> Result<WriteReport, SourceError> {
        Ok(TaosSource::write_chunk(self, target_database, table, chunk).await?)
    }

    async fn count_rows(&self, database: &str, table: &str) -> Result<u64, SourceError> {
        Ok(TaosSource::count_rows(self, database, table).await?)
    }

    async fn count_rows_by_child(
        &self,
        database: &str,
        super_table: &str,
    ) -> Result<BTreeMap<String, u64>, SourceError> {
        Ok(TaosSource::count_rows_by_child(self, database, super_table).await?)
    }
}
