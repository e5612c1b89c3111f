//! [`Source`] over a [`FakeDb`]: catalog, raw-block export, schema creation, raw-block
//! writes, counts.

use std::collections::BTreeMap;

use async_trait::async_trait;
use taosbackup_core::{
    BlockChunk, Bucket, CatalogSnapshot, ChunkStream, ColumnDef, DataType, ExportRequest,
    Precision, RestoreOptions, Source, SourceError, SourceErrorKind, TimeRange, Value, WriteReport,
};

use super::{FakeDb, FaultPoint, Op, lock};
use crate::raw_block;
use crate::types::{ColumnData, Field, Ty, Value as EmuValue};

/// A [`Source`] backed by a [`FakeDb`]. Exports cut chunks of at most
/// [`FakeSource::chunk_rows`] rows, so buckets span several chunks as they do with a server.
#[derive(Debug, Clone)]
pub struct FakeSource {
    db: FakeDb,
    /// The most rows in one exported chunk (at least 1).
    pub chunk_rows: usize,
    /// Chunks written so far (shared by clones).
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Statements run right after the next catalog read (shared by clones).
    after_catalog: std::sync::Arc<std::sync::Mutex<Vec<(String, Op)>>>,
}

impl FakeSource {
    /// A source over `db`, cutting chunks of at most 64 rows.
    pub fn new(db: FakeDb) -> FakeSource {
        FakeSource {
            db,
            chunk_rows: 64,
            writes: Default::default(),
            after_catalog: Default::default(),
        }
    }

    /// Runs `op` on `database` right after the next catalog read returns: a change made
    /// between a backup's catalog read and its change feed's catch-up.
    pub fn after_next_catalog(&self, database: &str, op: Op) {
        lock(&self.after_catalog).push((database.to_string(), op));
    }

    /// How many chunks [`Source::write_chunk`] has been given (each a write on a server).
    pub fn chunk_writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The database behind the source.
    pub fn db(&self) -> &FakeDb {
        &self.db
    }
}

fn err(kind: SourceErrorKind, msg: String) -> SourceError {
    SourceError::new(kind, false, msg)
}

/// The error for a database, table or super table the fake does not hold (`what` names it).
fn not_found(what: String) -> SourceError {
    err(SourceErrorKind::NotFound, format!("{what} does not exist"))
}

/// The raw-block column type and width of a catalog column; `None` for what the fake does
/// not carry (DECIMAL, JSON columns).
fn field(c: &ColumnDef) -> Option<Field> {
    let (ty, bytes) = match c.data_type {
        DataType::Timestamp => (Ty::Timestamp, 8),
        DataType::Bool => (Ty::Bool, 1),
        DataType::TinyInt => (Ty::TinyInt, 1),
        DataType::SmallInt => (Ty::SmallInt, 2),
        DataType::Int => (Ty::Int, 4),
        DataType::BigInt => (Ty::BigInt, 8),
        DataType::UTinyInt => (Ty::UTinyInt, 1),
        DataType::USmallInt => (Ty::USmallInt, 2),
        DataType::UInt => (Ty::UInt, 4),
        DataType::UBigInt => (Ty::UBigInt, 8),
        DataType::Float => (Ty::Float, 4),
        DataType::Double => (Ty::Double, 8),
        DataType::VarChar => (Ty::VarChar, c.length.unwrap_or(16)),
        DataType::NChar => (Ty::NChar, c.length.unwrap_or(16)),
        DataType::VarBinary => (Ty::VarBinary, c.length.unwrap_or(16)),
        DataType::Geometry => (Ty::Geometry, c.length.unwrap_or(64)),
        DataType::Blob => (Ty::Blob, c.length.unwrap_or(65_535)),
        _ => return None,
    };
    Some(Field::new(c.name.clone(), ty, bytes))
}

fn to_emu(v: &Value) -> Option<EmuValue> {
    Some(match v {
        Value::Null => EmuValue::Null,
        Value::Bool(x) => EmuValue::Bool(*x),
        Value::TinyInt(x) => EmuValue::TinyInt(*x),
        Value::SmallInt(x) => EmuValue::SmallInt(*x),
        Value::Int(x) => EmuValue::Int(*x),
        Value::BigInt(x) => EmuValue::BigInt(*x),
        Value::UTinyInt(x) => EmuValue::UTinyInt(*x),
        Value::USmallInt(x) => EmuValue::USmallInt(*x),
        Value::UInt(x) => EmuValue::UInt(*x),
        Value::UBigInt(x) => EmuValue::UBigInt(*x),
        Value::Float(x) => EmuValue::Float(*x),
        Value::Double(x) => EmuValue::Double(*x),
        Value::Timestamp(x) => EmuValue::Timestamp(*x),
        Value::VarChar(x) => EmuValue::VarChar(x.clone()),
        Value::NChar(x) => EmuValue::NChar(x.clone()),
        Value::VarBinary(x) => EmuValue::VarBinary(x.clone()),
        Value::Geometry(x) => EmuValue::Geometry(x.clone()),
        Value::Blob(x) => EmuValue::Blob(x.clone()),
        _ => return None,
    })
}

fn from_emu(v: EmuValue) -> Option<Value> {
    Some(match v {
        EmuValue::Null => Value::Null,
        EmuValue::Bool(x) => Value::Bool(x),
        EmuValue::TinyInt(x) => Value::TinyInt(x),
        EmuValue::SmallInt(x) => Value::SmallInt(x),
        EmuValue::Int(x) => Value::Int(x),
        EmuValue::BigInt(x) => Value::BigInt(x),
        EmuValue::UTinyInt(x) => Value::UTinyInt(x),
        EmuValue::USmallInt(x) => Value::USmallInt(x),
        EmuValue::UInt(x) => Value::UInt(x),
        EmuValue::UBigInt(x) => Value::UBigInt(x),
        EmuValue::Float(x) => Value::Float(x),
        EmuValue::Double(x) => Value::Double(x),
        EmuValue::Timestamp(x) => Value::Timestamp(x),
        EmuValue::VarChar(x) => Value::VarChar(x),
        EmuValue::NChar(x) => Value::NChar(x),
        EmuValue::VarBinary(x) => Value::VarBinary(x),
        EmuValue::Geometry(x) => Value::Geometry(x),
        EmuValue::Blob(x) => Value::Blob(x),
        _ => return None,
    })
}

/// Encodes rows (timestamp, values) of a table with `columns` as one raw block.
fn encode_block(columns: &[ColumnDef], rows: &[(i64, Vec<Value>)]) -> Result<Vec<u8>, SourceError> {
    let unsupported = |c: &ColumnDef| {
        err(
            SourceErrorKind::InvalidInput,
            format!(
                "the fake source does not carry {:?} columns ({})",
                c.data_type, c.name
            ),
        )
    };
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| field(c).ok_or_else(|| unsupported(c)))
        .collect::<Result<_, _>>()?;
    let mut data: Vec<ColumnData> = fields
        .iter()
        .map(|f| ColumnData::with_capacity(f.ty, rows.len()))
        .collect();
    for (ts, values) in rows {
        data[0].push(EmuValue::Timestamp(*ts));
        for (i, c) in columns[1..].iter().enumerate() {
            let v = values
                .get(i)
                .and_then(to_emu)
                .ok_or_else(|| unsupported(c))?;
            if !data[i + 1].push(v) {
                return Err(err(
                    SourceErrorKind::Other,
                    format!("a value of column {} does not match its type", c.name),
                ));
            }
        }
    }
    let refs: Vec<&ColumnData> = data.iter().collect();
    Ok(raw_block::encode(&fields, &refs, 0..rows.len()))
}

#[async_trait]
impl Source for FakeSource {
    async fn catalog(&self, database: &str) -> Result<CatalogSnapshot, SourceError> {
        self.db.faults.source(FaultPoint::Catalog)?;
        let catalog = self
            .db
            .catalog(database)
            .ok_or_else(|| not_found(format!("database {database}")))?;
        for (db, op) in std::mem::take(&mut *lock(&self.after_catalog)) {
            self.db
                .apply(&db, &op)
                .map_err(|e| err(SourceErrorKind::Other, format!("{op:?}: {e}")))?;
        }
        Ok(catalog)
    }

    async fn export(
        &self,
        database: &str,
        precision: Precision,
        request: ExportRequest,
    ) -> Result<Box<dyn ChunkStream>, SourceError> {
        self.db.faults.source(FaultPoint::Export)?;
        let inner = lock(&self.db.inner);
        let db = inner
            .databases
            .get(database)
            .ok_or_else(|| not_found(format!("database {database}")))?;
        let table = db
            .tables
            .get(&request.table)
            .ok_or_else(|| not_found(format!("table {database}.{}", request.table)))?;
        let columns = db.columns_of(&request.table).unwrap_or(&[]).to_vec();
        // Rows of every requested range, cut at the split points (only where rows lie: a
        // whole-table request spans the whole i64 range), then into chunks of bounded rows.
        let mut ranges = request.ranges.clone();
        ranges.sort_by_key(|r| r.start);
        let width = request.split_every.filter(|w| *w > 0);
        let columns_names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let mut chunks = Vec::new();
        for r in ranges {
            let mut groups: Vec<(TimeRange, Vec<(i64, Vec<Value>)>)> = Vec::new();
            for (k, v) in table.rows.range(r.start..r.end.max(r.start)) {
                let piece = match width {
                    Some(w) => {
                        let b = Bucket::containing(*k, w).range_saturating(w);
                        TimeRange {
                            start: b.start.max(r.start),
                            end: b.end.min(r.end),
                        }
                    }
                    None => r,
                };
                match groups.last_mut() {
                    Some((p, rows)) if *p == piece => rows.push((*k, v.clone())),
                    _ => groups.push((piece, vec![(*k, v.clone())])),
                }
            }
            for (range, rows) in groups {
                for part in rows.chunks(self.chunk_rows.max(1)) {
                    chunks.push(BlockChunk {
                        table: request.table.clone(),
                        range,
                        precision,
                        columns: columns_names.clone(),
                        rows: part.len() as u32,
                        min_ts: part[0].0,
                        max_ts: part[part.len() - 1].0,
                        raw: encode_block(&columns, part)?,
                    });
                }
            }
        }
        chunks.reverse();
        Ok(Box::new(Chunks {
            chunks,
            db: self.db.clone(),
            failed: false,
        }))
    }

    async fn create_schema(
        &self,
        catalog: &CatalogSnapshot,
        options: &RestoreOptions,
    ) -> Result<String, SourceError> {
        self.db.faults.source(FaultPoint::CreateSchema)?;
        let target = options
            .target_database
            .clone()
            .unwrap_or_else(|| catalog.database.name.clone());
        let mut inner = lock(&self.db.inner);
        if inner.databases.contains_key(&target) && !options.allow_existing {
            return Err(err(
                SourceErrorKind::AlreadyExists,
                format!("database {target} already exists"),
            ));
        }
        let db = inner
            .databases
            .entry(target.clone())
            .or_insert_with(|| super::db::Database::new(catalog.database.precision, 2));
        db.create_missing(catalog);
        Ok(target)
    }

    async fn write_chunk(
        &self,
        target_database: &str,
        table: &str,
        chunk: &BlockChunk,
    ) -> Result<WriteReport, SourceError> {
        self.db.faults.source(FaultPoint::WriteChunk)?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let block = raw_block::decode(&chunk.raw)
            .map_err(|e| err(SourceErrorKind::Rejected, e.to_string()))?;
        if block.columns.len() != chunk.columns.len() {
            return Err(err(
                SourceErrorKind::Rejected,
                format!(
                    "{table}: the block has {} columns, the chunk names {}",
                    block.columns.len(),
                    chunk.columns.len()
                ),
            ));
        }
        let mut inner = lock(&self.db.inner);
        let db = inner
            .databases
            .get_mut(target_database)
            .ok_or_else(|| not_found(format!("database {target_database}")))?;
        if db.columns_of(table).is_none() {
            return Err(not_found(format!("table {target_database}.{table}")));
        }
        // The block's first column is the timestamp, whatever it is named.
        let names: Vec<String> = chunk.columns[1..].to_vec();
        let mut rows = Vec::with_capacity(block.rows);
        for r in 0..block.rows {
            let ts = match block.columns[0].get(r) {
                EmuValue::Timestamp(t) => t,
                other => {
                    return Err(err(
                        SourceErrorKind::Rejected,
                        format!("{table}: first column is not a timestamp: {other:?}"),
                    ));
                }
            };
            let values = block.columns[1..]
                .iter()
                .map(|c| from_emu(c.get(r)).unwrap_or(Value::Null))
                .collect();
            rows.push((ts, values));
        }
        // write_rows maps by name: columns the target lacks are dropped, columns the chunk
        // lacks become NULL.
        let written = db
            .write_rows(table, &names, &rows)
            .map_err(|e| err(SourceErrorKind::Rejected, e.to_string()))?;
        Ok(WriteReport {
            rows_written: written,
            ..WriteReport::default()
        })
    }

    async fn count_rows(&self, database: &str, table: &str) -> Result<u64, SourceError> {
        let inner = lock(&self.db.inner);
        inner
            .databases
            .get(database)
            .and_then(|d| d.tables.get(table))
            .map(|t| t.rows.len() as u64)
            .ok_or_else(|| not_found(format!("table {database}.{table}")))
    }

    async fn count_rows_by_child(
        &self,
        database: &str,
        super_table: &str,
    ) -> Result<BTreeMap<String, u64>, SourceError> {
        let inner = lock(&self.db.inner);
        let db = inner
            .databases
            .get(database)
            .ok_or_else(|| not_found(format!("database {database}")))?;
        if !db.stables.contains_key(super_table) {
            return Err(not_found(format!("super table {database}.{super_table}")));
        }
        Ok(db
            .tables
            .iter()
            .filter(|(_, t)| t.super_table.as_deref() == Some(super_table) && !t.rows.is_empty())
            .map(|(n, t)| (n.clone(), t.rows.len() as u64))
            .collect())
    }
}

/// The chunks of one export, delivered last to first from the back of the vector.
struct Chunks {
    chunks: Vec<BlockChunk>,
    db: FakeDb,
    failed: bool,
}

#[async_trait]
impl ChunkStream for Chunks {
    async fn next_chunk(&mut self) -> Result<Option<BlockChunk>, SourceError> {
        if self.failed {
            return Ok(None);
        }
        if let Err(e) = self.db.faults.source(FaultPoint::ExportChunk) {
            self.failed = true;
            return Err(e);
        }
        Ok(self.chunks.pop())
    }
}
