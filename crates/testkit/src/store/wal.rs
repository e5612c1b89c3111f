//! Per-vgroup write-ahead logs, topics and consumer-group offsets: what TMQ reads.
//!
//! Every change gets the next version of its table's vgroup (super-table DDL goes to every
//! vgroup of the database, as TDengine sends it to every vnode). A vgroup's log holds the
//! entries `begin .. end`; `end` is the last version + 1. Retention (WAL_RETENTION_PERIOD in
//! seconds, −1 keeps forever, 0 keeps nothing; WAL_RETENTION_SIZE in KB, ≤ 0 unlimited) and
//! [`crate::Store::purge_wal`] move `begin` forward; consumers are not consulted, as in
//! TDengine.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::{Value as Json, json};

use super::bind;
use super::catalog::DbOptions;
use crate::error::{EmuError, code};
use crate::raw_block::{self, RawBlock};
use crate::types::{ColumnData, Field, Precision, Value};

/// The append-only file a store's WAL keeps its batches in, as TDengine keeps its vnode WAL
/// on disk (`source/libs/wal/src/walWrite.c` writes entries to `.log` files, indexed by
/// `.idx` files), not in RAM: the table store already holds every row, and an in-memory WAL
/// copy of each batch, even compressed, was about a quarter of the emulator's memory. One per
/// store, as many emulators run in one test process.
///
/// The file is an anonymous temporary file ([`tempfile::tempfile`]), created at the first
/// append: it has no name and vanishes when the process exits, even on a crash. Appends
/// reserve their range with one atomic add and write it with a positional write, so writers
/// on several threads never overlap and readers (positional reads) take no lock.
///
/// Nothing is ever reclaimed: entries purged from a log (retention, `purge_wal`, dropped
/// databases) leave dead bytes behind, as do failed writes. That is acceptable for a test
/// server; TDengine deletes whole WAL files by retention, the emulator does not compact.
#[derive(Debug, Default)]
pub struct Spill {
    /// The file, once created (a failed creation is tried again at the next append).
    file: OnceLock<File>,
    /// End of the reserved bytes: the next append's offset.
    end: AtomicU64,
    /// A failure was logged (once per store, not once per batch).
    warned: AtomicBool,
}

impl Spill {
    /// A spill writing to `file` (tests: a file opened read-only or write-only fails).
    #[cfg(test)]
    fn with_file(file: File) -> Spill {
        Spill {
            file: OnceLock::from(file),
            ..Spill::default()
        }
    }

    /// The file, created at the first call.
    fn file(&self) -> std::io::Result<&File> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        let f = tempfile::tempfile()?;
        // Another thread may have set it meanwhile; then `f` is dropped and theirs is used.
        let _ = self.file.set(f);
        Ok(self.file.get().expect("set above"))
    }

    /// Appends `bytes`; returns their offset.
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<u64> {
        let file = self.file()?;
        let offset = self.end.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        file.write_all_at(bytes, offset)?;
        Ok(offset)
    }

    /// The `len` bytes at `offset`.
    pub fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let file = self
            .file
            .get()
            .ok_or_else(|| std::io::Error::other("the WAL spill file was never written"))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Logs the first failure to write (later ones are as likely and would flood the log).
    fn warn_once(&self, e: &std::io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cannot write the WAL spill file ({e}); keeping WAL batches in memory instead"
            );
        }
    }
}

/// Where a block's rows are.
#[derive(Debug, Clone)]
enum Stored {
    /// Not retained (WAL_RETENTION_PERIOD 0).
    Dropped,
    /// In memory: the spill file could not be written (a full disk should not lose a
    /// batch, nor stop a test server).
    InMemory(Vec<u8>),
    /// `len` bytes at `offset` of the store's spill file.
    Spilled {
        spill: Arc<Spill>,
        offset: u64,
        len: usize,
    },
}

/// What a block's kept bytes are.
#[derive(Debug, Clone)]
enum Form {
    /// The raw block TMQ serves.
    Served,
    /// A raw block as a raw-block write sent it, with the field names it sent (empty:
    /// positional); bound to the block's fields and encoded when read.
    Written(Vec<Field>),
}

/// One table's rows in a submit entry.
#[derive(Debug, Clone)]
pub struct DataBlock {
    /// Table name.
    pub table: String,
    /// The table's data columns at write time.
    pub fields: Vec<Field>,
    /// Database precision.
    pub precision: Precision,
    /// The rows as written (before overwrite resolution): `rows` and, in the spill file,
    /// the raw block TMQ serves or the block as a raw-block write sent it (see `form`,
    /// [`DataBlock::new`] and [`DataBlock::written`]).
    rows: usize,
    raw: Stored,
    /// What the kept bytes are.
    form: Form,
    /// The auto-create request the submit carried for the table (`INSERT … USING`, or an
    /// insert into a super table naming `tbname`), when TMQ passes it on:
    /// `tqProcessSubData` (`dnode/vnode/src/tq/tqScan.c`) sends a submit's create request
    /// only if the table was created at most 1000 ms before the submit
    /// (`ctimeMs - createTime <= 1000`, "judge if table is already created").
    pub create: Option<AutoCreate>,
}

/// A create request a submit carries, as TMQ hands it out.
#[derive(Debug, Clone)]
pub struct AutoCreate {
    /// The `create` JSON of the child table (`buildCreateCTableJson`).
    pub json: Json,
    /// The encoded `SVCreateTbReq` (`tEncodeSVCreateTbReq`) for raw meta+data responses.
    pub req: Vec<u8>,
}

impl DataBlock {
    /// A block of `columns` (one per field). With `retain` false (WAL_RETENTION_PERIOD 0:
    /// the entry is purged at once) the rows are not kept.
    ///
    /// The rows are kept as the raw block TMQ hands out (`blockEncode`) in the store's
    /// `spill` file, with only their place in memory: the table holds the same rows, and
    /// TDengine keeps its WAL on disk (see [`Spill`]). When the file cannot be written the
    /// block stays in memory, compressed with zstd level 1.
    pub fn new(
        table: String,
        fields: Vec<Field>,
        precision: Precision,
        columns: &[ColumnData],
        retain: bool,
        create: Option<AutoCreate>,
        spill: &Arc<Spill>,
    ) -> DataBlock {
        let rows = columns.first().map_or(0, ColumnData::len);
        let raw = if retain {
            let cols: Vec<&ColumnData> = columns.iter().collect();
            keep(raw_block::encode(&fields, &cols, 0..rows), spill)
        } else {
            Stored::Dropped
        };
        DataBlock {
            table,
            fields,
            precision,
            rows: if retain { rows } else { 0 },
            raw,
            form: Form::Served,
            create,
        }
    }

    /// The block of a raw-block write: `block` as the writer sent it, with the field names
    /// it sent (`names`, empty when positional), already bound to `fields` (the table's
    /// columns) once by the write. It is kept as received and bound and encoded again when
    /// a consumer reads it, as TDengine's WAL holds the submit as the client built it
    /// (`walWrite.c`) and TMQ turns it into the block it serves at poll time
    /// (`tqTaosxScanLog` in `source/dnode/vnode/src/tq/tqScan.c` reads the submit through
    /// `tq/tqRead.c`, and its `tqAddBlockDataToRsp` calls `blockEncode`). Encoding each
    /// write as it arrived was ~31% of the emulator's samples while a restore wrote 50 M
    /// rows into it, for blocks read only if a topic covers the database
    /// (docs/performance-history.md, "The WAL copy of a raw-block write").
    pub fn written(
        table: String,
        fields: Vec<Field>,
        precision: Precision,
        block: RawBlock,
        names: &[Field],
        retain: bool,
        spill: &Arc<Spill>,
    ) -> DataBlock {
        // Not retained, it is the same empty block whatever was written.
        let mut b = DataBlock::new(table, fields, precision, &[], false, None, spill);
        if retain {
            b.rows = block.rows;
            b.raw = keep(block.bytes, spill);
            b.form = Form::Written(names.to_vec());
        }
        b
    }

    /// Rows in the block (0 when they were not retained).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the rows were kept.
    pub fn retained(&self) -> bool {
        !matches!(self.raw, Stored::Dropped)
    }

    /// The raw block of `blockEncode` with the column lengths in little-endian, as the C
    /// client leaves them (`changeByteEndian` / `setResultDataPtr`, `client/src/clientTmq.c`);
    /// a block without columns when the rows were not retained. Reading the spill file back
    /// or decompressing can fail: 0x1001 (TDengine's WAL_FILE_CORRUPTED), not an empty block.
    pub fn block_bytes(&self) -> Result<Vec<u8>, EmuError> {
        let kept = self.kept_bytes()?;
        let Form::Written(names) = &self.form else {
            return Ok(kept);
        };
        // The write bound these bytes to these fields already: failing now means the kept
        // bytes are not what was written.
        let unreadable = |e: EmuError| {
            wal_read_error(format!(
                "a WAL batch of {} no longer binds to its table: {e}",
                self.table
            ))
        };
        let block = raw_block::parse_owned(kept).map_err(unreadable)?;
        let slots = bind::bind(&block, names, &self.fields).map_err(unreadable)?;
        let columns = bind::fill(slots, &self.fields, block.rows);
        let refs: Vec<&ColumnData> = columns.iter().collect();
        Ok(raw_block::encode(&self.fields, &refs, 0..block.rows))
    }

    /// The kept bytes, read back and decompressed.
    fn kept_bytes(&self) -> Result<Vec<u8>, EmuError> {
        let spilled;
        let stored = match &self.raw {
            // `encode` wants one column per field: no fields, no columns.
            Stored::Dropped => return Ok(raw_block::encode(&[], &[], 0..0)),
            Stored::InMemory(b) => b.as_slice(),
            Stored::Spilled { spill, offset, len } => {
                spilled = spill.read(*offset, *len).map_err(|e| {
                    wal_read_error(format!(
                        "cannot read {len} bytes at {offset} of the WAL spill file: {e}"
                    ))
                })?;
                spilled.as_slice()
            }
        };
        if stored.starts_with(&ZSTD_MAGIC) {
            zstd::stream::decode_all(stored).map_err(|e| {
                wal_read_error(format!(
                    "cannot decompress a WAL batch of {}: {e}",
                    self.table
                ))
            })
        } else {
            Ok(stored.to_vec())
        }
    }
}

/// `bytes` in the spill file, or (when it cannot be written) in memory.
fn keep(bytes: Vec<u8>, spill: &Arc<Spill>) -> Stored {
    // Plain on disk, as TDengine writes its WAL entries (`walWrite.c` appends the submit
    // body as is): compressing every batch at zstd level 1 was a fifth of the emulator's
    // CPU while a restore wrote into it, for disk space nobody is short of.
    match spill.append(&bytes) {
        Ok(offset) => Stored::Spilled {
            spill: Arc::clone(spill),
            offset,
            len: bytes.len(),
        },
        Err(e) => {
            spill.warn_once(&e);
            // In memory, where bytes count, compressed. Compressing cannot fail but for
            // allocation; keep the plain block then (the reader tells the two apart by
            // zstd's magic number).
            let mut packed = zstd::bulk::compress(&bytes, 1).unwrap_or(bytes);
            // zstd's bulk API hands back its worst-case buffer (larger than the input):
            // unshrunk, the batch would hold as much as its plain block.
            packed.shrink_to_fit();
            Stored::InMemory(packed)
        }
    }
}

/// 0x1001: the WAL could not be read back.
fn wal_read_error(what: String) -> EmuError {
    EmuError::new(code::WAL_FILE_CORRUPTED, what)
}

/// The zstd frame magic number (RFC 8878 §3.1.1), little-endian; a raw block starts with
/// its version (1), never with this.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// What a log entry carries.
#[derive(Debug, Clone)]
pub enum WalBody {
    /// A submit (`TDMT_VND_SUBMIT`): one statement's rows for the tables of one vgroup, one
    /// block per table in statement order (the client sends one `SSubmitReq2` per vgroup).
    Data(Vec<DataBlock>),
    /// A schema change or delete, as TDengine's TMQ meta JSON.
    Meta(Json),
    /// A WAL entry that yields no TMQ message: TDengine writes consumer-group rebalances
    /// (`TDMT_VND_TMQ_SUBSCRIBE`), offset commits (`TDMT_VND_TMQ_COMMIT_OFFSET`), vnode
    /// config changes, TTL drops and commits to the vnode WAL too (`vnodeSvr.c`
    /// `vnodeProcessWriteMsg`), and `tqFetchLog` (`tq/tqRead.c`) skips every entry that is
    /// neither `TDMT_VND_SUBMIT` nor `IS_META_MSG` (`include/common/tcommon.h`). The text
    /// names the TDengine message type.
    Internal(&'static str),
}

/// One log entry.
#[derive(Debug)]
pub struct WalEntry {
    /// WAL version within its vgroup.
    pub version: i64,
    /// When it was written (ns since the epoch), for WAL_RETENTION_PERIOD.
    pub ingest_ns: i64,
    /// Approximate size in bytes, for WAL_RETENTION_SIZE.
    pub size: u64,
    /// Content.
    pub body: WalBody,
}

/// One vgroup's log.
#[derive(Debug, Clone, Default)]
pub struct VgWal {
    /// First retained version.
    pub begin: i64,
    /// Last version + 1.
    pub end: i64,
    /// Retained entries, `begin .. end` in order.
    pub entries: VecDeque<Arc<WalEntry>>,
    /// Sum of the retained entries' sizes.
    pub bytes: u64,
}

impl VgWal {
    /// Appends an entry with the next version.
    pub fn append(&mut self, ingest_ns: i64, body: WalBody) -> i64 {
        let version = self.end;
        let size = body_size(&body);
        self.entries.push_back(Arc::new(WalEntry {
            version,
            ingest_ns,
            size,
            body,
        }));
        self.bytes += size;
        self.end += 1;
        version
    }

    /// Drops entries below `version`; `begin` becomes `min(version, end)` if that is later.
    pub fn purge_to(&mut self, version: i64) {
        let target = version.min(self.end);
        while let Some(e) = self.entries.front() {
            if e.version >= target {
                break;
            }
            self.bytes = self.bytes.saturating_sub(e.size);
            self.entries.pop_front();
        }
        self.begin = self.begin.max(target);
    }

    /// The version WAL_RETENTION_PERIOD keeps the log from at `now_ns` (the first entry
    /// written within the period, else the end), when the period is positive.
    fn kept_from_by_period(&self, opts: &DbOptions, now_ns: i64) -> Option<i64> {
        let period = opts.wal_retention_period;
        if period <= 0 {
            return None;
        }
        let floor = now_ns.saturating_sub(period.saturating_mul(1_000_000_000));
        Some(
            self.entries
                .iter()
                .find(|e| e.ingest_ns >= floor)
                .map_or(self.end, |e| e.version),
        )
    }

    /// WAL_RETENTION_SIZE in bytes, when set.
    fn size_limit(opts: &DbOptions) -> Option<u64> {
        (opts.wal_retention_size > 0).then(|| (opts.wal_retention_size as u64).saturating_mul(1024))
    }

    /// Whether [`VgWal::apply_retention`] at `now_ns` would purge anything: a reader that
    /// finds nothing due reads under the store's read lock.
    pub fn retention_due(&self, opts: &DbOptions, now_ns: i64) -> bool {
        if opts.wal_retention_period == 0 {
            return self.begin < self.end;
        }
        if let Some(first_kept) = self.kept_from_by_period(opts, now_ns) {
            if self.begin < first_kept.min(self.end) {
                return true;
            }
        }
        Self::size_limit(opts).is_some_and(|limit| !self.entries.is_empty() && self.bytes > limit)
    }

    /// Applies WAL_RETENTION_PERIOD / WAL_RETENTION_SIZE at `now_ns`.
    pub fn apply_retention(&mut self, opts: &DbOptions, now_ns: i64) {
        if opts.wal_retention_period == 0 {
            self.purge_to(self.end);
            return;
        }
        if let Some(first_kept) = self.kept_from_by_period(opts, now_ns) {
            self.purge_to(first_kept);
        }
        if let Some(limit) = Self::size_limit(opts) {
            while self.bytes > limit {
                let Some(e) = self.entries.front() else {
                    break;
                };
                let next = e.version + 1;
                self.purge_to(next);
            }
        }
    }

    /// The first retained entry at or after `from`.
    pub fn first_from(&self, from: i64) -> Option<&Arc<WalEntry>> {
        let from = from.max(self.begin);
        let skip = self.entries.partition_point(|e| e.version < from);
        self.entries.get(skip)
    }
}

fn body_size(body: &WalBody) -> u64 {
    match body {
        WalBody::Data(blocks) => {
            let rows_bytes: u64 = blocks
                .iter()
                .map(|b| {
                    let width: u64 = b
                        .fields
                        .iter()
                        .map(|f| {
                            u64::from(match f.ty.fixed_width() {
                                Some(w) => w as u32,
                                None => f.bytes.saturating_add(2),
                            })
                        })
                        .sum();
                    b.rows() as u64 * width
                })
                .sum();
            64 + rows_bytes
        }
        WalBody::Meta(j) => 64 + j.to_string().len() as u64,
        WalBody::Internal(_) => 64,
    }
}

/// A topic.
#[derive(Debug, Clone)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Database it reads.
    pub db: String,
    /// `WITH META`: meta messages are delivered.
    pub with_meta: bool,
    /// Creation time (ms).
    pub create_time: i64,
    /// The statement that created it.
    pub sql: String,
}

/// A consumer group's state on one vgroup of a topic.
#[derive(Debug, Clone, Default)]
pub struct SubState {
    /// Committed offset, if any.
    pub committed: Option<i64>,
    /// Consumers currently holding the vgroup.
    pub consumers: Vec<u64>,
}

/// Topics and consumer-group offsets.
#[derive(Debug, Default)]
pub struct TmqState {
    /// Topics by name.
    pub topics: BTreeMap<String, Topic>,
    /// (topic, group, vgroup) → state.
    pub subs: BTreeMap<(String, String, u32), SubState>,
    /// Last consumer id handed out.
    pub last_consumer: u64,
}

/// The length TDengine puts in meta JSON: the declared length of var types.
fn json_field(f: &Field, with_pk: bool) -> Json {
    let mut o = json!({ "name": f.name, "type": f.ty.code() });
    if f.ty.is_var() {
        o["length"] = json!(f.bytes);
    }
    if with_pk {
        o["isPrimarykey"] = json!(f.primary_key);
    }
    o
}

/// `{"type":"create","tableType":"super",…}`.
pub fn create_super(name: &str, columns: &[Field], tags: &[Field]) -> Json {
    json!({
        "type": "create",
        "tableType": "super",
        "tableName": name,
        "columns": columns.iter().map(|f| json_field(f, true)).collect::<Vec<_>>(),
        "tags": tags.iter().map(|f| json_field(f, false)).collect::<Vec<_>>(),
    })
}

/// `{"type":"create","tableType":"normal",…}`.
pub fn create_normal(name: &str, columns: &[Field]) -> Json {
    json!({
        "type": "create",
        "tableType": "normal",
        "tableName": name,
        "columns": columns.iter().map(|f| json_field(f, true)).collect::<Vec<_>>(),
        "tags": [],
    })
}

/// A tag value as TDengine's meta JSON carries it: var types quoted inside the string, JSON
/// as its text, numbers as numbers.
fn tag_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(u8::from(*b)),
        Value::TinyInt(x) => json!(x),
        Value::SmallInt(x) => json!(x),
        Value::Int(x) => json!(x),
        Value::BigInt(x) => json!(x),
        Value::Float(x) => json!(x),
        Value::Double(x) => json!(x),
        Value::Timestamp(x) => json!(x),
        Value::UTinyInt(x) => json!(x),
        Value::USmallInt(x) => json!(x),
        Value::UInt(x) => json!(x),
        Value::UBigInt(x) => json!(x),
        Value::Json(s) => json!(s),
        other => json!(format!(
            "\"{}\"",
            super::convert::value_text(other).unwrap_or_default()
        )),
    }
}

/// One `create` of child tables for a batch of one vgroup (`buildCreateCTableJson` in
/// `clientRawBlockWrite.c`): the first table's fields at the top level and, when the batch
/// holds more than one table, every table (the first included) in `createList`.
pub fn create_children(children: &[Json]) -> Option<Json> {
    let mut first = children.first()?.clone();
    if children.len() > 1 {
        let list: Vec<Json> = children
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(o) = c.as_object_mut() {
                    o.remove("type");
                    o.remove("tableType");
                    o.remove("createList");
                }
                c
            })
            .collect();
        first["createList"] = Json::Array(list);
    }
    Some(first)
}

/// `{"type":"create","tableType":"child",…}`; NULL tags are left out, as TDengine does.
pub fn create_child(name: &str, stable: &str, tags: &[Field], values: &[Value]) -> Json {
    let list: Vec<Json> = tags
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.is_null())
        .map(|(f, v)| json!({ "name": f.name, "type": f.ty.code(), "value": tag_json(v) }))
        .collect();
    json!({
        "type": "create",
        "tableType": "child",
        "tableName": name,
        "using": stable,
        "tagNum": tags.len(),
        "tags": list,
        "createList": [],
    })
}

/// `{"type":"drop","tableType":"super","tableName":…}`.
pub fn drop_super(name: &str) -> Json {
    json!({ "type": "drop", "tableType": "super", "tableName": name })
}

/// `{"type":"drop","tableNameList":[…]}`: the child and normal tables one
/// `TDMT_VND_DROP_TABLE` request drops in a vgroup (`processDropTable`,
/// `client/src/clientRawBlockWrite.c`, lists every `SVDropTbReq` of the batch).
pub fn drop_tables(names: &[String]) -> Json {
    json!({ "type": "drop", "tableNameList": names })
}

/// TDengine's alter types (`TSDB_ALTER_TABLE_*`).
pub mod alter_type {
    /// ADD TAG.
    pub const ADD_TAG: u8 = 1;
    /// DROP TAG.
    pub const DROP_TAG: u8 = 2;
    /// RENAME TAG.
    pub const RENAME_TAG: u8 = 3;
    /// SET TAG.
    pub const SET_TAG: u8 = 4;
    /// ADD COLUMN.
    pub const ADD_COLUMN: u8 = 5;
    /// DROP COLUMN.
    pub const DROP_COLUMN: u8 = 6;
    /// MODIFY COLUMN (length).
    pub const MODIFY_COLUMN: u8 = 7;
    /// MODIFY TAG (length).
    pub const MODIFY_TAG: u8 = 8;
    /// Table options: COMMENT, TTL (`TSDB_ALTER_TABLE_UPDATE_OPTIONS`).
    pub const UPDATE_OPTIONS: u8 = 9;
    /// RENAME COLUMN.
    pub const RENAME_COLUMN: u8 = 10;
    /// Column ENCODE/COMPRESS/LEVEL (`TSDB_ALTER_TABLE_UPDATE_COLUMN_COMPRESS`).
    pub const UPDATE_COLUMN_COMPRESS: u8 = 13;
    /// ADD COLUMN with compression options
    /// (`TSDB_ALTER_TABLE_ADD_COLUMN_WITH_COMPRESS_OPTION`).
    pub const ADD_COLUMN_WITH_COMPRESS_OPTION: u8 = 14;
    /// SET TAG of several tags in one statement (`TSDB_ALTER_TABLE_UPDATE_MULTI_TAG_VAL`).
    pub const UPDATE_MULTI_TAG_VAL: u8 = 15;
}

/// `{"type":"alter",…}` with nothing but the table and the alter type: what
/// `processAlterTable` (`client/src/clientRawBlockWrite.c`) prints for the actions its
/// `switch` has no case for — table options (9, no `colName`) and multi-tag SET TAG (15).
/// Its `tableType` is `"child"` only for action 4, `"normal"` for every other action, child
/// tables included.
pub fn alter_bare(table: &str, alter: u8) -> Json {
    json!({
        "type": "alter",
        "tableType": "normal",
        "tableName": table,
        "alterType": alter,
    })
}

/// `{"type":"alter",…}` carrying a column or tag (`colName`, `colType`, `colLength`).
pub fn alter_field(table_type: &str, table: &str, alter: u8, f: &Field) -> Json {
    let mut o = json!({
        "type": "alter",
        "tableType": table_type,
        "tableName": table,
        "alterType": alter,
        "colName": f.name,
        "colType": f.ty.code(),
    });
    if f.ty.is_var() {
        o["colLength"] = json!(f.bytes);
    }
    o
}

/// `{"type":"alter",…,"alterType":13}`: a column's ENCODE/COMPRESS/LEVEL changed; the one
/// option set is printed under its own key (`setCompressOption`).
pub fn alter_column_compress(table: &str, column: &str, option: &str, value: &str) -> Json {
    let mut o = alter_bare(table, alter_type::UPDATE_COLUMN_COMPRESS);
    o["colName"] = json!(column);
    o[option] = json!(value);
    o
}

/// `{"type":"alter",…,"alterType":14}`: ADD COLUMN with a compression option.
pub fn add_column_with_compress(table: &str, f: &Field, option: &str, value: &str) -> Json {
    let mut o = alter_field(
        "normal",
        table,
        alter_type::ADD_COLUMN_WITH_COMPRESS_OPTION,
        f,
    );
    o[option] = json!(value);
    o
}

/// `{"type":"alter",…}` naming a column or tag only (drops).
pub fn alter_name(table_type: &str, table: &str, alter: u8, name: &str) -> Json {
    json!({
        "type": "alter",
        "tableType": table_type,
        "tableName": table,
        "alterType": alter,
        "colName": name,
    })
}

/// `{"type":"alter",…,"colNewName":…}` (renames).
pub fn alter_rename(table_type: &str, table: &str, alter: u8, from: &str, to: &str) -> Json {
    let mut o = alter_name(table_type, table, alter, from);
    o["colNewName"] = json!(to);
    o
}

/// `{"type":"alter","tableType":"child",…,"alterType":4,…}` (SET TAG). The value is text as
/// TDengine's `dataConverToStr` writes it: strings unquoted, FLOAT `%.5f`, DOUBLE `%.9f`;
/// a NULL value leaves `colValue` out.
pub fn set_tag(table: &str, tag: &Field, v: &Value) -> Json {
    let mut o = alter_name("child", table, alter_type::SET_TAG, &tag.name);
    let text = match v {
        Value::Null => None,
        Value::Float(x) => Some(format!("{x:.5}")),
        Value::Double(x) => Some(format!("{x:.9}")),
        other => super::convert::value_text(other),
    };
    if let Some(t) = text {
        o["colValue"] = json!(t);
    }
    o["colValueNull"] = json!(v.is_null());
    o
}

/// `{"type":"delete","sql":"delete from `t` where `ts` >= a and `ts` <= b"}`.
pub fn delete(table: &str, ts_col: &str, from: i64, to: i64) -> Json {
    json!({
        "type": "delete",
        "sql": format!(
            "delete from `{table}` where `{ts_col}` >= {from} and `{ts_col}` <= {to}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: i64) -> WalBody {
        WalBody::Meta(json!({ "n": n }))
    }

    /// `retention_due` says whether `apply_retention` would change the log, for every kind
    /// of retention, log and clock (a poll reads under the read lock only when it says no).
    #[test]
    fn retention_due_is_whether_retention_would_purge() {
        let mut logs = vec![VgWal::default()];
        let mut w = VgWal::default();
        // ~400 B an entry, so that 1 KiB of retention purges some.
        let big = |i: i64| WalBody::Meta(json!({ "n": i, "pad": "x".repeat(400) }));
        for i in 0..6 {
            w.append(i * 1_000_000_000, big(i));
            logs.push(w.clone());
        }
        let mut purged = w.clone();
        purged.purge_to(3);
        logs.push(purged);
        let mut emptied = w.clone();
        emptied.purge_to(6);
        logs.push(emptied);
        let size = body_size(&big(0));
        let mut checked = 0;
        for log in &logs {
            for period in [-1, 0, 1, 2, 10] {
                for kib in [0, 1, 1024] {
                    for now in [0, 3, 5, 7, 100] {
                        let opts = DbOptions {
                            wal_retention_period: period,
                            wal_retention_size: kib,
                            ..DbOptions::default()
                        };
                        let now = now * 1_000_000_000;
                        let mut after = log.clone();
                        after.apply_retention(&opts, now);
                        let changed =
                            after.begin != log.begin || after.entries.len() != log.entries.len();
                        assert_eq!(
                            log.retention_due(&opts, now),
                            changed,
                            "{period} s, {kib} KiB, now {now}, log {}..{} ({} B an entry)",
                            log.begin,
                            log.end,
                            size
                        );
                        checked += usize::from(changed && period < 0 && kib > 0);
                    }
                }
            }
        }
        assert!(checked > 0, "retention by size alone purges in some case");
    }

    #[test]
    fn versions_purge_and_retention() {
        let mut w = VgWal::default();
        for i in 0..5 {
            assert_eq!(w.append(i * 1_000_000_000, meta(i)), i);
        }
        assert_eq!((w.begin, w.end), (0, 5));
        w.purge_to(2);
        assert_eq!((w.begin, w.end, w.entries.len()), (2, 5, 3));
        assert_eq!(w.first_from(0).map(|e| e.version), Some(2));
        assert_eq!(w.first_from(4).map(|e| e.version), Some(4));
        assert!(w.first_from(5).is_none());
        // Purging backwards does nothing; past the end clamps to end.
        w.purge_to(1);
        assert_eq!(w.begin, 2);
        let mut opts = DbOptions {
            wal_retention_period: 2,
            ..DbOptions::default()
        };
        // now = 5 s: entries written before 3 s are out of the period.
        w.apply_retention(&opts, 5_000_000_000);
        assert_eq!((w.begin, w.end), (3, 5));
        opts.wal_retention_period = -1;
        opts.wal_retention_size = 0;
        w.apply_retention(&opts, i64::MAX);
        assert_eq!(w.begin, 3);
        opts.wal_retention_period = 0;
        w.apply_retention(&opts, 0);
        assert_eq!((w.begin, w.end, w.entries.len(), w.bytes), (5, 5, 0, 0));
        w.purge_to(100);
        assert_eq!(w.begin, 5);
    }

    #[test]
    fn meta_json_shapes() {
        use crate::types::Ty;
        let tags = [
            Field::new("g", Ty::Int, 4),
            Field::new("name", Ty::VarChar, 8),
            Field::new("n", Ty::NChar, 4),
        ];
        let child = create_child(
            "c",
            "st",
            &tags,
            &[Value::Int(3), Value::VarChar(b"ab".to_vec()), Value::Null],
        );
        assert_eq!(
            child,
            json!({"type":"create","tableType":"child","tableName":"c","using":"st","tagNum":3,
                "tags":[{"name":"g","type":4,"value":3},{"name":"name","type":8,"value":"\"ab\""}],
                "createList":[]})
        );
        let cols = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("s", Ty::NChar, 5),
        ];
        assert_eq!(
            create_super("st", &cols, &tags[..1]),
            json!({"type":"create","tableType":"super","tableName":"st",
                "columns":[{"name":"ts","type":9,"isPrimarykey":false},
                           {"name":"s","type":10,"length":5,"isPrimarykey":false}],
                "tags":[{"name":"g","type":4}]})
        );
        assert_eq!(
            set_tag("c", &tags[1], &Value::VarChar(b"x y".to_vec())),
            json!({"type":"alter","tableType":"child","tableName":"c","alterType":4,
                "colName":"name","colValue":"x y","colValueNull":false})
        );
        assert_eq!(
            set_tag("c", &tags[0], &Value::Null),
            json!({"type":"alter","tableType":"child","tableName":"c","alterType":4,
                "colName":"g","colValueNull":true})
        );
        assert_eq!(
            set_tag("c", &Field::new("f", Ty::Double, 8), &Value::Double(1.5))["colValue"],
            "1.500000000"
        );
        assert_eq!(
            drop_tables(&["t".into(), "u".into()]),
            json!({"type":"drop","tableNameList":["t","u"]})
        );
        assert_eq!(
            alter_field(
                "normal",
                "n",
                alter_type::ADD_COLUMN,
                &Field::new("v", Ty::VarChar, 9)
            ),
            json!({"type":"alter","tableType":"normal","tableName":"n","alterType":5,
                "colName":"v","colType":8,"colLength":9})
        );
        assert_eq!(
            delete("t", "ts", 1, 2)["sql"],
            "delete from `t` where `ts` >= 1 and `ts` <= 2"
        );
    }

    fn block(spill: &Arc<Spill>, n: i32) -> (DataBlock, Vec<u8>) {
        use crate::types::Ty;
        let fields = vec![
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("v", Ty::Int, 4),
            Field::new("s", Ty::VarChar, 16),
        ];
        let mut cols: Vec<ColumnData> = fields.iter().map(|f| ColumnData::new(f.ty)).collect();
        for i in 0..n {
            let row = [
                Value::Timestamp(1_700_000_000_000 + i64::from(i)),
                Value::Int(i * n),
                Value::VarChar(format!("r{i}-{n}").into_bytes()),
            ];
            for (c, v) in cols.iter_mut().zip(row) {
                assert!(c.push(v));
            }
        }
        let refs: Vec<&ColumnData> = cols.iter().collect();
        let plain = raw_block::encode(&fields, &refs, 0..n as usize);
        let b = DataBlock::new(
            format!("t{n}"),
            fields,
            Precision::Millisecond,
            &cols,
            true,
            None,
            spill,
        );
        (b, plain)
    }

    #[test]
    fn blocks_spill_to_the_file_and_read_back() {
        let spill = Arc::new(Spill::default());
        let (b, plain) = block(&spill, 1000);
        // On disk as TDengine writes its WAL: the plain block, not compressed.
        assert!(
            matches!(b.raw, Stored::Spilled { len, .. } if len == plain.len()),
            "{:?}",
            b.raw
        );
        assert!(b.retained());
        assert_eq!(b.rows(), 1000);
        assert_eq!(b.block_bytes().unwrap(), plain);
        // A clone reads the same bytes from the same file.
        assert_eq!(b.clone().block_bytes().unwrap(), plain);

        // Several writers at once: every block lands in its own range.
        let blocks: Vec<(DataBlock, Vec<u8>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=8)
                .map(|t| {
                    let spill = &spill;
                    s.spawn(move || {
                        (0..20)
                            .map(|i| block(spill, t * 37 + i))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(blocks.len(), 160);
        for (b, plain) in &blocks {
            assert!(matches!(b.raw, Stored::Spilled { .. }));
            assert_eq!(&b.block_bytes().unwrap(), plain, "{}", b.table);
        }
        assert_eq!(b.block_bytes().unwrap(), plain);

        // Rows not retained are neither written nor read.
        let (fields, cols) = (b.fields.clone(), Vec::<ColumnData>::new());
        let end = spill.end.load(Ordering::Relaxed);
        let none = DataBlock::new(
            "n".into(),
            fields,
            Precision::Millisecond,
            &cols,
            false,
            None,
            &spill,
        );
        assert_nothing_kept(&none, &spill, end);
    }

    /// `b` kept nothing: no rows, nothing appended to `spill` since `end`, an empty block
    /// served.
    fn assert_nothing_kept(b: &DataBlock, spill: &Spill, end: u64) {
        assert!(!b.retained());
        assert_eq!(b.rows(), 0);
        assert_eq!(spill.end.load(Ordering::Relaxed), end);
        assert_eq!(b.block_bytes().unwrap(), raw_block::encode(&[], &[], 0..0));
    }

    /// The rows of [`block`] as `(fields, columns)`.
    fn rows(n: i32) -> (Vec<Field>, Vec<ColumnData>) {
        let (b, _) = block(&Arc::new(Spill::default()), n);
        let plain = b.block_bytes().unwrap();
        let decoded = raw_block::decode(&plain).unwrap();
        (b.fields, decoded.columns)
    }

    #[test]
    fn written_blocks_serve_the_block_encoded_from_their_bound_rows() {
        use crate::types::Ty;
        let spill = Arc::new(Spill::default());
        let (fields, cols) = rows(700);
        let refs: Vec<&ColumnData> = cols.iter().collect();
        let plain = raw_block::encode(&fields, &refs, 0..700);

        // Positional: every column, in the table's order.
        let b = DataBlock::written(
            "p".into(),
            fields.clone(),
            Precision::Millisecond,
            raw_block::parse(&plain).unwrap(),
            &[],
            true,
            &spill,
        );
        assert!(b.retained());
        assert_eq!(b.rows(), 700);
        assert_eq!(b.block_bytes().unwrap(), plain);

        // Named: two columns in another order, `v` left out (NULL).
        let names = vec![fields[2].clone(), fields[0].clone()];
        let sent = raw_block::encode(&names, &[&cols[2], &cols[0]], 0..700);
        let b = DataBlock::written(
            "n".into(),
            fields.clone(),
            Precision::Millisecond,
            raw_block::parse(&sent).unwrap(),
            &names,
            true,
            &spill,
        );
        let nulls = ColumnData::nulls(Ty::Int, 700);
        let served = raw_block::encode(&fields, &[&cols[0], &nulls, &cols[2]], 0..700);
        assert_eq!(b.block_bytes().unwrap(), served);
        // Kept as sent, not as served.
        assert!(matches!(b.raw, Stored::Spilled { len, .. } if len == sent.len()));

        // Not retained: nothing kept, an empty block served.
        let end = spill.end.load(Ordering::Relaxed);
        let none = DataBlock::written(
            "x".into(),
            fields.clone(),
            Precision::Millisecond,
            raw_block::parse(&sent).unwrap(),
            &names,
            false,
            &spill,
        );
        assert_nothing_kept(&none, &spill, end);

        // Kept bytes that no longer bind (here: the table's fields swapped for others) are
        // an error, not a block.
        let mut other = b.clone();
        other.fields = vec![
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("s", Ty::Int, 4),
        ];
        let e = other.block_bytes().unwrap_err();
        assert_eq!(e.code, code::WAL_FILE_CORRUPTED, "{e}");
    }

    #[test]
    fn written_blocks_kept_in_memory_read_back() {
        let path = tempfile::NamedTempFile::new().unwrap();
        let spill = Arc::new(Spill::with_file(File::open(path.path()).unwrap()));
        let (fields, cols) = rows(300);
        let refs: Vec<&ColumnData> = cols.iter().collect();
        let plain = raw_block::encode(&fields, &refs, 0..300);
        let b = DataBlock::written(
            "m".into(),
            fields,
            Precision::Millisecond,
            raw_block::parse(&plain).unwrap(),
            &[],
            true,
            &spill,
        );
        assert!(matches!(&b.raw, Stored::InMemory(m) if m.starts_with(&ZSTD_MAGIC)));
        assert_eq!(b.block_bytes().unwrap(), plain);
    }

    #[test]
    fn unwritable_spill_keeps_the_batch_in_memory() {
        // A read-only file: every write fails.
        let path = tempfile::NamedTempFile::new().unwrap();
        let spill = Arc::new(Spill::with_file(File::open(path.path()).unwrap()));
        let (b, plain) = block(&spill, 500);
        // In memory, where bytes count: compressed.
        assert!(
            matches!(&b.raw, Stored::InMemory(m) if m.starts_with(&ZSTD_MAGIC) && m.len() < plain.len()),
            "{:?}",
            b.raw
        );
        assert_eq!(b.block_bytes().unwrap(), plain);
    }

    #[test]
    fn unreadable_spill_is_an_error_not_an_empty_block() {
        // A write-only file: writes succeed, reads fail.
        let path = tempfile::NamedTempFile::new().unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path.path())
            .unwrap();
        let spill = Arc::new(Spill::with_file(file));
        let (b, _) = block(&spill, 10);
        assert!(matches!(b.raw, Stored::Spilled { .. }));
        let e = b.block_bytes().unwrap_err();
        assert_eq!(e.code, code::WAL_FILE_CORRUPTED, "{e}");
    }

    #[test]
    fn retention_size_drops_oldest() {
        let mut w = VgWal::default();
        for i in 0..100 {
            w.append(0, meta(i));
        }
        let opts = DbOptions {
            wal_retention_period: -1,
            wal_retention_size: 1,
            ..DbOptions::default()
        };
        w.apply_retention(&opts, 0);
        assert!(w.bytes <= 1024, "{}", w.bytes);
        assert!(w.begin > 0 && w.end == 100);
        assert_eq!(w.entries.front().map(|e| e.version), Some(w.begin));
    }
}
