//! The seam between the backup engine and the database: the [`Source`] trait, the requests
//! it serves and the block chunks it produces (`taosbackup-source` implements it for
//! TDengine).
//!
//! # Exported block chunks
//!
//! An export delivers [`BlockChunk`]s: one TDengine raw block (the connector's own bytes,
//! never re-encoded rows) with the column names it carries, all of whose rows fall into one
//! requested [`TimeRange`]. Many chunks may make up one bucket. [`BlockChunk::encode`] writes
//! a chunk as one self-delimiting frame, so a blob holding a whole bucket is the
//! concatenation of its chunks' frames and [`BlockChunk::decode_all`] reads it back:
//!
//! ```text
//! frame   = magic || u32 frame_len || u8 precision (0 ms, 1 us, 2 ns) || u32 rows
//!           || i64 min_ts || i64 max_ts || u16 ncols || ncols × (u16 len || utf-8 name)
//!           || block            (integers little-endian; frame_len counts the bytes after it)
//! magic   = "TBC1" (block = the raw block)
//!         | "TBC2" (block = crate::transform::encode_into of it with Floats::Xor)
//!         | "TBC3" (block = crate::transform::encode_into of it with Floats::AsIs)
//! ```
//!
//! Writers emit `TBC3` whenever the raw block's layout is understood (the column transforms
//! make it compress several times better), else `TBC1`; readers accept all three (`TBC2`
//! was written before issue 18).

use std::fmt;

use async_trait::async_trait;

use crate::cursor::Cursor;
use crate::transform::Floats;
use crate::{CatalogSnapshot, Precision, TimeRange};

/// What to export of one table: the requested time ranges (usually buckets), in any order.
/// Implementations read adjacent ranges in one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// Table name within the database.
    pub table: String,
    /// The ranges to read, each half-open `[start, end)`. Ranges must not overlap.
    pub ranges: Vec<TimeRange>,
    /// When set, chunks are also cut at every multiple of this many timestamp units (the
    /// bucket width in the database precision), and each chunk's `range` is the
    /// intersection of its requested range with its bucket: one request can then read a
    /// whole table and deliver it bucket by bucket.
    pub split_every: Option<i64>,
}

/// One exported piece of a table: a raw block whose rows all lie in `range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockChunk {
    /// Table name within the source database.
    pub table: String,
    /// The requested range these rows belong to.
    pub range: TimeRange,
    /// Timestamp precision of the raw block.
    pub precision: Precision,
    /// Column names of the raw block, in block order (restore maps columns by name).
    pub columns: Vec<String>,
    /// Number of rows (at least one).
    pub rows: u32,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// The raw block bytes, exactly as a restore writes them back.
    pub raw: Vec<u8>,
}

/// A frame holding the raw block as it is.
const MAGIC: &[u8; 4] = b"TBC1";
/// A frame holding the raw block transformed with floats XORed (written before issue 18).
const MAGIC_TRANSFORMED: &[u8; 4] = b"TBC2";
/// A frame holding the raw block transformed with floats as they are.
const MAGIC_TRANSFORMED_3: &[u8; 4] = b"TBC3";

impl BlockChunk {
    /// Appends this chunk as one frame to `out` (format in the module docs). The table name
    /// and range are not written: the blob's key (table, bucket) holds them.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ChunkFormatError> {
        let ncols = u16::try_from(self.columns.len())
            .map_err(|_| ChunkFormatError("more than 65535 columns".into()))?;
        let names: usize = self.columns.iter().map(|c| 2 + c.len()).sum();
        out.reserve(8 + 1 + 4 + 8 + 8 + 2 + names + self.raw.len());
        // Written in place: magic and length are patched once the block is in.
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; 4]);
        out.push(match self.precision {
            Precision::Ms => 0,
            Precision::Us => 1,
            Precision::Ns => 2,
        });
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&self.min_ts.to_le_bytes());
        out.extend_from_slice(&self.max_ts.to_le_bytes());
        out.extend_from_slice(&ncols.to_le_bytes());
        for c in &self.columns {
            let Ok(len) = u16::try_from(c.len()) else {
                out.truncate(start);
                return Err(ChunkFormatError(
                    "column name longer than 65535 bytes".into(),
                ));
            };
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(c.as_bytes());
        }
        if crate::transform::encode_into(&self.raw, out, Floats::AsIs) {
            out[start..start + 4].copy_from_slice(MAGIC_TRANSFORMED_3);
        } else {
            out.extend_from_slice(&self.raw);
        }
        let Ok(len) = u32::try_from(out.len() - start - 8) else {
            out.truncate(start);
            return Err(ChunkFormatError("chunk larger than 4 GiB".into()));
        };
        out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// The chunks of one table, in order, as one chunk whose raw block holds all their rows
    /// ([`crate::transform::concat`]): one write instead of several on restore. `None` when
    /// they cannot be joined: no chunks, different tables, precisions or column names, a
    /// chunk starting before the previous one ends, or raw blocks that
    /// [`crate::transform::concat`] refuses.
    pub fn concat(chunks: &[BlockChunk]) -> Option<BlockChunk> {
        let (first, rest) = chunks.split_first()?;
        let mut prev_max = first.max_ts;
        for c in rest {
            if c.table != first.table
                || c.precision != first.precision
                || c.columns != first.columns
                || c.min_ts < prev_max
            {
                return None;
            }
            prev_max = c.max_ts;
        }
        let raws: Vec<&[u8]> = chunks.iter().map(|c| c.raw.as_slice()).collect();
        let raw = crate::transform::concat(&raws)?;
        let rows = chunks.iter().try_fold(0u32, |n, c| n.checked_add(c.rows))?;
        Some(BlockChunk {
            table: first.table.clone(),
            range: TimeRange {
                start: chunks.iter().map(|c| c.range.start).min()?,
                end: chunks.iter().map(|c| c.range.end).max()?,
            },
            precision: first.precision,
            columns: first.columns.clone(),
            rows,
            min_ts: first.min_ts,
            max_ts: prev_max,
            raw,
        })
    }

    /// Reads every frame of `data` (a blob written by [`BlockChunk::encode`]); `table` and
    /// `range` are filled in from the caller's block key.
    pub fn decode_all(
        data: &[u8],
        table: &str,
        range: TimeRange,
    ) -> Result<Vec<BlockChunk>, ChunkFormatError> {
        let mut out = Vec::new();
        let mut r = Cursor::new(data, |_| ChunkFormatError("truncated frame".into()));
        while r.pos < data.len() {
            let transformed = match r.take(4)? {
                m if m == MAGIC => None,
                m if m == MAGIC_TRANSFORMED => Some(Floats::Xor),
                m if m == MAGIC_TRANSFORMED_3 => Some(Floats::AsIs),
                _ => return Err(ChunkFormatError("bad frame magic".into())),
            };
            let len = u32::from_le_bytes(r.array()?) as usize;
            let end = r
                .pos
                .checked_add(len)
                .filter(|e| *e <= data.len())
                .ok_or_else(|| ChunkFormatError("frame runs past the end".into()))?;
            let precision = match r.take(1)?[0] {
                0 => Precision::Ms,
                1 => Precision::Us,
                2 => Precision::Ns,
                p => return Err(ChunkFormatError(format!("unknown precision {p}"))),
            };
            let rows = u32::from_le_bytes(r.array()?);
            let min_ts = i64::from_le_bytes(r.array()?);
            let max_ts = i64::from_le_bytes(r.array()?);
            let ncols = u16::from_le_bytes(r.array()?) as usize;
            let mut columns = Vec::with_capacity(ncols);
            for _ in 0..ncols {
                let l = u16::from_le_bytes(r.array()?) as usize;
                let name = std::str::from_utf8(r.take(l)?)
                    .map_err(|_| ChunkFormatError("column name is not UTF-8".into()))?;
                columns.push(name.to_string());
            }
            if r.pos > end {
                return Err(ChunkFormatError(
                    "frame header longer than the frame".into(),
                ));
            }
            let block = &data[r.pos..end];
            let raw = match transformed {
                Some(floats) => crate::transform::decode_with(block, floats)
                    .map_err(|e| ChunkFormatError(e.to_string()))?,
                None => block.to_vec(),
            };
            r.pos = end;
            out.push(BlockChunk {
                table: table.to_string(),
                range,
                precision,
                columns,
                rows,
                min_ts,
                max_ts,
                raw,
            });
        }
        Ok(out)
    }
}

/// A chunk frame that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid block chunk: {0}")]
pub struct ChunkFormatError(pub String);

/// How to recreate a database on restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Name of the database to create (the source's name when `None`).
    pub target_database: Option<String>,
    /// A `KEEP` value replacing the source's (`"36500d"`, `"3650d,3650d,3650d"`), so old data
    /// is accepted.
    pub keep: Option<String>,
    /// Write into a database that already exists (creating only missing tables) instead of
    /// refusing.
    pub allow_existing: bool,
}

/// What writing one chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Rows written.
    pub rows_written: u64,
    /// Rows the target refused because they are older than its KEEP (never silently lost:
    /// the caller reports them).
    pub rows_rejected_by_keep: u64,
    /// Smallest and largest timestamp of the rejected rows.
    pub rejected_range: Option<(i64, i64)>,
    /// Whether the SQL fallback wrote the rows (raw-block write refused).
    pub used_sql_fallback: bool,
}

/// A pull stream of exported chunks, in timestamp order within each table.
#[async_trait]
pub trait ChunkStream: Send {
    /// The next chunk, or `None` at the end. After an error the stream is finished.
    async fn next_chunk(&mut self) -> Result<Option<BlockChunk>, SourceError>;
}

/// Streams drained one after another (held in reverse: the next one is last).
struct Chained(Vec<Box<dyn ChunkStream>>);

#[async_trait]
impl ChunkStream for Chained {
    async fn next_chunk(&mut self) -> Result<Option<BlockChunk>, SourceError> {
        while let Some(s) = self.0.last_mut() {
            match s.next_chunk().await {
                Ok(Some(c)) => return Ok(Some(c)),
                Ok(None) => {
                    self.0.pop();
                }
                Err(e) => {
                    // After an error the stream is finished.
                    self.0.clear();
                    return Err(e);
                }
            }
        }
        Ok(None)
    }
}

/// Where backups read from and restores write to (a TDengine server for
/// `taosbackup-source`). Shared between tasks: `&self` everywhere; implementations bound
/// their own concurrency (a connection pool). Object safe: `Arc<dyn Source>` works.
#[async_trait]
pub trait Source: Send + Sync {
    /// Reads the catalog of `database`: the exact database DDL, super tables (columns,
    /// tags, DDL), tables (child tags typed, comments, TTLs). Guarantee: a bounded number of
    /// round trips (not one per table).
    async fn catalog(&self, database: &str) -> Result<CatalogSnapshot, SourceError>;

    /// Streams the rows of `request.table` in `request.ranges`, as raw-block chunks whose
    /// rows each lie in one requested range. Guarantees: memory is bounded whatever the
    /// table size (the stream is pulled); adjacent ranges are read in one query; transient
    /// failures are retried and resumed after the last delivered timestamp, so the stream
    /// either delivers every row or ends in an error — never silently short.
    async fn export(
        &self,
        database: &str,
        precision: Precision,
        request: ExportRequest,
    ) -> Result<Box<dyn ChunkStream>, SourceError>;

    /// Streams the rows of several tables, each as [`Source::export`] would: the same
    /// chunks' rows, the same guarantees. Each table's chunks arrive together and in
    /// timestamp order, never with another table's between them; tables come in any
    /// order, and a table without rows in its ranges yields no chunk. A server source may
    /// read the tables with one query (child tables of one super table over the same
    /// ranges: one request instead of one per table). The default opens every table's
    /// export at once and drains them one after another, which suits in-memory sources.
    async fn export_tables(
        &self,
        database: &str,
        precision: Precision,
        requests: Vec<ExportRequest>,
    ) -> Result<Box<dyn ChunkStream>, SourceError> {
        let mut streams = Vec::with_capacity(requests.len());
        for r in requests {
            streams.push(self.export(database, precision, r).await?);
        }
        streams.reverse();
        Ok(Box::new(Chained(streams)))
    }

    /// Creates the target database, super tables and tables of `catalog` (renamed by
    /// `options.target_database`). Refuses an existing database unless
    /// `options.allow_existing`. Returns the target database name.
    async fn create_schema(
        &self,
        catalog: &CatalogSnapshot,
        options: &RestoreOptions,
    ) -> Result<String, SourceError>;

    /// Writes one chunk into `table` of `target_database`, mapping columns by name (columns
    /// the target lacks are dropped, columns the chunk lacks become NULL). Rows older than the
    /// target's KEEP are counted in the report, not dropped silently. Idempotent: writing a
    /// chunk twice leaves the same rows.
    async fn write_chunk(
        &self,
        target_database: &str,
        table: &str,
        chunk: &BlockChunk,
    ) -> Result<WriteReport, SourceError>;

    /// Counts the rows of `table` in `database` (the post-restore check).
    async fn count_rows(&self, database: &str, table: &str) -> Result<u64, SourceError>;

    /// Counts the rows of every child table of `super_table` in `database` in one query
    /// (the post-restore check of many small tables). Children without rows may be absent
    /// from the map.
    async fn count_rows_by_child(
        &self,
        database: &str,
        super_table: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, SourceError>;
}

/// The broad class of a [`SourceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// The connection failed or timed out.
    Connection,
    /// Login refused.
    Authentication,
    /// The database or table does not exist.
    NotFound,
    /// The target database exists and merging was not allowed.
    AlreadyExists,
    /// The server refused a statement or data.
    Rejected,
    /// Bad options or data from the caller.
    InvalidInput,
    /// The connection options as the operator gave them (a DSN) cannot be used: fixing the
    /// flags or the config file helps, retrying does not.
    Config,
    /// Anything else.
    Other,
}

impl fmt::Display for SourceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceErrorKind::Connection => "connection",
            SourceErrorKind::Authentication => "authentication",
            SourceErrorKind::NotFound => "not found",
            SourceErrorKind::AlreadyExists => "already exists",
            SourceErrorKind::Rejected => "rejected",
            SourceErrorKind::InvalidInput => "invalid input",
            SourceErrorKind::Config => "invalid configuration",
            SourceErrorKind::Other => "other",
        })
    }
}

/// The error of the [`Source`] trait: a kind, whether a retry can help, and the
/// implementation's own error as the source.
#[derive(Debug, thiserror::Error)]
#[error("source error ({kind}): {source}")]
pub struct SourceError {
    kind: SourceErrorKind,
    retryable: bool,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl SourceError {
    /// Wraps an implementation error.
    pub fn new(
        kind: SourceErrorKind,
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        SourceError {
            kind,
            retryable,
            source: source.into(),
        }
    }

    /// The broad class of the failure.
    pub fn kind(&self) -> SourceErrorKind {
        self.kind
    }

    /// Whether retrying could succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The implementation's error, for downcasting.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.source.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_concatenate_and_decode() {
        let range = TimeRange { start: 0, end: 10 };
        let a = BlockChunk {
            table: "t".into(),
            range,
            precision: Precision::Us,
            columns: vec!["ts".into(), "v".into()],
            rows: 2,
            min_ts: 1,
            max_ts: 2,
            raw: vec![9, 8, 7],
        };
        let mut b = a.clone();
        b.raw = vec![];
        b.precision = Precision::Ns;
        let mut blob = Vec::new();
        a.encode(&mut blob).unwrap();
        b.encode(&mut blob).unwrap();
        assert_eq!(
            BlockChunk::decode_all(&blob, "t", range).unwrap(),
            vec![a, b]
        );
        assert!(BlockChunk::decode_all(&blob[..blob.len() - 1], "t", range).is_err());
        assert!(BlockChunk::decode_all(b"XXXX\0\0\0\0", "t", range).is_err());
        // Blocks whose layout is not understood are stored as they are.
        assert_eq!(&blob[..4], b"TBC1");
    }

    /// A raw block of one BIGINT column (the timestamps 1 000 and 2 000).
    fn raw_block() -> Vec<u8> {
        raw_block_of(&[1000, 2000])
    }

    /// A raw block of one TIMESTAMP column holding `ts`.
    fn raw_block_of(ts: &[i64]) -> Vec<u8> {
        let mut raw = Vec::new();
        for v in [1u32, 0, ts.len() as u32, 1, 0] {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.push(9);
        raw.extend_from_slice(&8u32.to_le_bytes());
        raw.extend_from_slice(&(8 * ts.len() as u32).to_le_bytes());
        raw.resize(raw.len() + ts.len().div_ceil(8), 0); // null bitmap
        for t in ts {
            raw.extend_from_slice(&t.to_le_bytes());
        }
        let total = raw.len() as u32;
        raw[4..8].copy_from_slice(&total.to_le_bytes());
        raw
    }

    fn chunk_of(ts: &[i64], range: (i64, i64)) -> BlockChunk {
        BlockChunk {
            table: "t".into(),
            range: TimeRange {
                start: range.0,
                end: range.1,
            },
            precision: Precision::Ms,
            columns: vec!["ts".into()],
            rows: ts.len() as u32,
            min_ts: ts[0],
            max_ts: ts[ts.len() - 1],
            raw: raw_block_of(ts),
        }
    }

    #[test]
    fn chunks_of_one_table_in_order_join_into_one() {
        let a = chunk_of(&[1000, 2000], (0, 3000));
        let b = chunk_of(&[3000, 4000, 5000], (3000, 6000));
        let c = chunk_of(&[6000], (6000, 9000));
        let joined = BlockChunk::concat(&[a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(
            joined,
            BlockChunk {
                range: TimeRange {
                    start: 0,
                    end: 9000
                },
                ..chunk_of(&[1000, 2000, 3000, 4000, 5000, 6000], (0, 9000))
            }
        );
        assert_eq!(
            BlockChunk::concat(std::slice::from_ref(&a)),
            Some(a.clone())
        );
        assert_eq!(BlockChunk::concat(&[]), None);
        // Out of time order, another table, other columns, another precision: not joined.
        assert_eq!(BlockChunk::concat(&[b.clone(), a.clone()]), None);
        let other = |f: &dyn Fn(&mut BlockChunk)| {
            let mut x = b.clone();
            f(&mut x);
            BlockChunk::concat(&[a.clone(), x])
        };
        assert_eq!(other(&|x| x.table = "u".into()), None);
        assert_eq!(other(&|x| x.columns = vec!["t2".into()]), None);
        assert_eq!(other(&|x| x.precision = Precision::Us), None);
    }

    #[test]
    fn understood_blocks_are_written_transformed_and_read_back_exactly() {
        let range = TimeRange {
            start: 0,
            end: 3000,
        };
        let chunk = BlockChunk {
            table: "t".into(),
            range,
            precision: Precision::Ms,
            columns: vec!["ts".into()],
            rows: 2,
            min_ts: 1000,
            max_ts: 2000,
            raw: raw_block(),
        };
        let mut blob = Vec::new();
        chunk.encode(&mut blob).unwrap();
        assert_eq!(&blob[..4], b"TBC3");
        assert_ne!(blob[blob.len() - chunk.raw.len()..], chunk.raw[..]);
        assert_eq!(
            BlockChunk::decode_all(&blob, "t", range).unwrap(),
            vec![chunk.clone()]
        );
        // A TBC2 frame (floats XORed, written before issue 18) of the same block still reads.
        let mut tbc2 = blob.clone();
        tbc2[..4].copy_from_slice(b"TBC2");
        let n = tbc2.len();
        let t2 = crate::transform::encode(&chunk.raw).unwrap();
        tbc2[n - chunk.raw.len()..].copy_from_slice(&t2);
        assert_eq!(
            BlockChunk::decode_all(&tbc2, "t", range).unwrap(),
            vec![chunk.clone()]
        );
        // An old TBC1 frame of the same block still reads.
        let mut old = blob.clone();
        old[..4].copy_from_slice(b"TBC1");
        let n = old.len();
        old[n - chunk.raw.len()..].copy_from_slice(&chunk.raw);
        assert_eq!(
            BlockChunk::decode_all(&old, "t", range).unwrap(),
            vec![chunk]
        );
        // A TBC3 frame whose block does not describe itself is an error, not a guess.
        let mut bad = blob.clone();
        bad[4 + 4 + 1 + 4 + 16 + 2 + 2 + 2 + 8] = 0xff;
        assert!(BlockChunk::decode_all(&bad, "t", range).is_err());
    }
}
