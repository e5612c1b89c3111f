//! The shared vocabulary of taosbackup.
//!
//! Every other crate speaks these types; the engine, the source (TDengine) and the sink
//! (the repository) depend on this crate and never on each other.
//!
//! # Brief overview
//!
//! * [`CatalogSnapshot`] with [`DatabaseDef`], [`SuperTableDef`], [`TableDef`] and typed
//!   [`Value`]s: the schema a restore recreates.
//! * [`Bucket`], [`BucketWidth`], [`TimeRange`]: a block is a table's rows in one time
//!   bucket `[k*W, (k+1)*W)`.
//! * [`BackupSnapshot`]: one backup (formats 2 and 3), the root of a tree of content-addressed
//!   objects: a [`Tree`] of [`Shard`]s (table definitions and [`BlockRef`]s; JSON or, from
//!   format 3, binary: [`ShardEncoding`]) and a
//!   [`CatalogRoot`] with [`SuperTablePart`]s; [`DatabaseState`] is what a snapshot describes.
//! * [`Manifest`]: a format-1 backup, read only to migrate ([`chain_of`], [`fold`]).
//! * [`Repository`]: the trait backups are written through and restored from
//!   (`taosbackup-sink` implements it); [`RepositoryError`] is its error.
//! * [`Source`]: the trait the engine reads catalogs and [`BlockChunk`]s through and restores
//!   through (`taosbackup-source` implements it); [`SourceError`] is its error.
//! * [`ChangeFeed`]: the trait change feeds (TMQ, WAL files) deliver [`ChangeEvent`]s
//!   through; [`Progress`]: how long operations report progress.
//! * [`net::disable_nagle`]: `TCP_NODELAY` on the connector's sockets, which taos-ws 0.12.3
//!   leaves off.
//!
//! # Example
//!
//! ```
//! use taosbackup_core::{BucketWidth, Precision};
//!
//! let width = BucketWidth::from_seconds(3600)?;
//! let bucket = width.bucket_of(1_700_000_123_456, Precision::Ms);
//! assert!(width.range_of(bucket, Precision::Ms)?.contains(1_700_000_123_456));
//! # Ok::<(), taosbackup_core::Error>(())
//! ```
#![deny(missing_docs)]
// One `unsafe`: `net` borrows a socket by its descriptor number where the kernel refuses
// `pidfd_getfd` (docs/architecture.md).
#![deny(unsafe_code)]

mod block;
mod catalog;
mod cursor;
mod error;
mod feed;
mod id;
mod manifest;
pub mod net;
mod progress;
mod repository;
mod shard_codec;
mod snapshot;
mod source;
pub mod transform;

pub use crate::{
    block::{Bucket, BucketWidth, TimeRange},
    catalog::{
        CatalogSnapshot, ColumnDef, DataType, DatabaseDef, Precision, SkippedObject, SuperTableDef,
        TableDef, TableKind, TagValue, Value,
    },
    error::{Error, ErrorKind, RepositoryError, RepositoryErrorKind},
    feed::{ChangeBatch, ChangeEvent, ChangeFeed, FeedStart, Positions, TableEvent},
    id::{BackupId, BlobId, from_hex, from_hex_array, to_hex},
    manifest::{
        BackupKind, BackupStats, BlockRecord, BlockRef, FeedPositions, MANIFEST_VERSION, Manifest,
        SourceInfo, TableRecord, chain_of, fold,
    },
    progress::{NoProgress, Progress},
    repository::{DamagedSnapshot, Repository, SnapshotListing},
    snapshot::{
        BackupSnapshot, CatalogRoot, DatabaseState, DefsJson, MAX_SNAPSHOT_SIZE, NODE_MAX,
        NODE_TARGET, NodeEntry, PlannedNode, SHARD_MAX, SHARD_TARGET, SNAPSHOT_VERSION, Shard,
        ShardBlocks, ShardEncoding, ShardTable, SuperTablePart, SuperTableRef, TableBlocks, Tree,
        TreeEntry, TreeNode, TreeObject, TreeRoot, fingerprint, is_boundary, is_node_boundary,
        layout, node_layout, shard_order,
    },
    source::{
        BlockChunk, ChunkFormatError, ChunkStream, ExportRequest, RestoreOptions, Source,
        SourceError, SourceErrorKind, WriteReport,
    },
};
