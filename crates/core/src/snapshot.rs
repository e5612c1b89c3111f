//! Format 2: every backup is a self-contained snapshot (design section 4.1, `docs/format.md`
//! §8).
//!
//! A backup is a tree of content-addressed objects:
//!
//! ```text
//! BackupSnapshot (snapshots/<id>)  small: id, database, kind, parent, times, stats, …
//!   ├── tree ──► TreeRoot          node key range → tree node blob, with totals per node
//!   │             └──► TreeNode    shard key → shard blob, with a fingerprint per shard
//!   │                   └──► Shard table → definition (kind, tags, columns) and its blocks
//!   │                          └──► data blobs (block chunks, as in format 1)
//!   └── catalog ──► CatalogRoot    database DDL; super table name → SuperTableDef blob
//! ```
//!
//! An incremental writes new objects only for the shards and catalog parts that changed;
//! everything else is its parent's objects by id. Every snapshot describes the whole database,
//! so restoring one reads that snapshot's objects only, and any snapshot can be forgotten alone.
//!
//! Shards are cut deterministically from the table names alone ([`layout`]), so an unchanged
//! range of tables yields a byte-identical shard (the same blob id: stored once). Tree nodes
//! are cut the same way from the shards' last table names ([`node_layout`]), so an unchanged
//! range of shards yields a byte-identical node: a one-table change writes one shard, one
//! node and the root, whose sizes grow with the square root of the table count, not with it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::block::BucketWidth;
use crate::catalog::{
    CatalogSnapshot, DatabaseDef, Precision, SkippedObject, SuperTableDef, TableDef,
};
use crate::manifest::{
    BackupKind, BackupStats, BlockRef, FeedPositions, SourceInfo, check_lineage,
};
use crate::{BackupId, BlobId, Error, shard_codec};

/// The repository format version of snapshots and their tree objects.
pub const SNAPSHOT_VERSION: u32 = 2;

/// Tables per shard on average: a table ends a shard when the first four bytes of the
/// BLAKE3 hash of its name, read as a little-endian `u32`, are below `2^32 / SHARD_TARGET`.
pub const SHARD_TARGET: u32 = 64;
/// The most tables a shard holds (a shard is cut there even without a hash boundary).
pub const SHARD_MAX: usize = 256;

/// Shards per tree node on average: a shard ends a node when bytes 4..8 of the BLAKE3 hash
/// of its last table's name, read as a little-endian `u32`, are below `2^32 / NODE_TARGET`.
pub const NODE_TARGET: u32 = 32;
/// The most shards a tree node holds (a node is cut there even without a hash boundary).
pub const NODE_MAX: usize = 256;

/// The largest decompressed snapshot object accepted.
pub const MAX_SNAPSHOT_SIZE: usize = 1024 * 1024;

/// How shard objects are written (docs/format.md §8.3): JSON, as every repository of format
/// 2 holds them, or binary (§8.3.1), which repositories of format 3 are written with.
/// Readers take both; the other tree objects are always JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardEncoding {
    /// `{"shard": {…}}`, compact.
    #[default]
    Json,
    /// The binary encoding (`TBSH`), about half the bytes, read and written in about a third
    /// of JSON's time.
    Binary,
}

/// One backup: the root object of its tree (`snapshots/<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSnapshot {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// This backup's id.
    pub id: BackupId,
    /// Database name at the source.
    pub database: String,
    /// `full`: every block was exported; `incremental`: only changed blocks were exported and
    /// the rest is the parent's (the snapshot still describes the whole database).
    pub kind: BackupKind,
    /// The engine that chose the blocks (`full`, `time`, `bitmap`).
    pub engine: String,
    /// The backup an incremental was computed against (`None` for a full backup). It may have
    /// been forgotten since: nothing depends on it.
    pub parent: Option<BackupId>,
    /// The full backup this backup's line of incrementals started from (its own id for a
    /// full backup). Informational, and what `--keep-chains` groups by.
    pub chain: BackupId,
    /// When the backup started.
    pub started_at: DateTime<Utc>,
    /// When the backup finished (just before the snapshot was committed).
    pub finished_at: DateTime<Utc>,
    /// Where the data came from.
    pub source: SourceInfo,
    /// The bucket width blocks were cut with.
    pub bucket_width: BucketWidth,
    /// The database's timestamp precision.
    pub precision: Precision,
    /// The root [`TreeRoot`] blob.
    pub tree: BlobId,
    /// The [`CatalogRoot`] blob.
    pub catalog: BlobId,
    /// Change-feed positions covered by this backup, if a feed was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_positions: Option<FeedPositions>,
    /// Counters (`tables` counts every table of the snapshot).
    pub stats: BackupStats,
}

impl BackupSnapshot {
    /// Checks the snapshot invariants: known version; a full backup has no parent and is
    /// its own chain; an incremental has a parent other than itself; time order.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |reason: String| Error::InvalidManifest {
            backup_id: self.id.to_hex(),
            reason,
        };
        if self.version != SNAPSHOT_VERSION {
            return Err(fail(format!(
                "unsupported snapshot version {} (this build reads {SNAPSHOT_VERSION})",
                self.version
            )));
        }
        check_lineage(self.id, self.kind, self.parent, self.chain).map_err(|r| fail(r.into()))?;
        if self.finished_at < self.started_at {
            return Err(fail("finished before it started".into()));
        }
        Ok(())
    }

    /// The objects this snapshot names directly: its tree and its catalog.
    pub fn roots(&self) -> [BlobId; 2] {
        [self.tree, self.catalog]
    }
}

/// A tree object, a shard or a catalog part: what a blob of the snapshot tree holds. In
/// JSON externally tagged (`{"shard": {…}}`): bucket keys are integers, which serde's
/// buffering of internally tagged enums cannot read back from JSON object keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeObject {
    /// The root tree of a snapshot.
    Tree(TreeRoot),
    /// A node of the tree: a range of shards.
    Node(TreeNode),
    /// A group of tables with their blocks.
    Shard(Shard),
    /// The database definition and the super tables' parts.
    Catalog(CatalogRoot),
    /// One super table's definition.
    SuperTable(SuperTablePart),
}

/// The root tree: the snapshot's tree nodes, in key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeRoot {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The nodes, ascending by key; their shards concatenated are the snapshot's shards.
    pub nodes: Vec<NodeEntry>,
}

/// One tree node named by the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// The super table of the node's first shard (`None`: normal tables).
    pub first_super_table: Option<String>,
    /// The first table name of the node's first shard.
    pub first: String,
    /// The super table of the node's last shard.
    pub last_super_table: Option<String>,
    /// The last table name of the node's last shard.
    pub last: String,
    /// How many shards the node lists.
    pub shards: u64,
    /// Tables in those shards.
    pub tables: u64,
    /// Blocks in those shards.
    pub blocks: u64,
    /// Rows in those shards' blocks.
    pub rows: u64,
    /// The [`TreeNode`] blob.
    pub node: BlobId,
}

/// A tree node: consecutive shards of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeNode {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The shards, ascending by (`super_table`, `first`).
    pub shards: Vec<TreeEntry>,
}

/// A snapshot's tree as read: the root's node entries and every shard entry of its nodes,
/// in order (not an object of its own: see [`TreeRoot`] and [`TreeNode`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tree {
    /// The root's entries.
    pub nodes: Vec<NodeEntry>,
    /// The shards of all nodes, in tree order.
    pub shards: Vec<TreeEntry>,
}

/// One shard of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEntry {
    /// The super table of the shard's tables (`None`: normal tables).
    pub super_table: Option<String>,
    /// The first table name of the shard.
    pub first: String,
    /// The last table name of the shard.
    pub last: String,
    /// How many tables the shard holds.
    pub tables: u64,
    /// [`fingerprint`] of the shard's table definitions (hex BLAKE3).
    pub defs: String,
    /// Blocks in the shard.
    pub blocks: u64,
    /// Rows in the shard's blocks.
    pub rows: u64,
    /// The [`Shard`] blob.
    pub shard: BlobId,
}

/// A shard: consecutive tables (by name) of one super table, or normal tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The tables, ascending by name.
    pub tables: Vec<ShardTable>,
}

/// One table of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardTable {
    /// The table's definition (kind, super table, tags, comment, TTL, columns).
    pub def: TableDef,
    /// Bucket index → the block holding the bucket's rows. Buckets without rows are absent.
    pub blocks: BTreeMap<i64, BlockRef>,
}

/// A shard read for its tables' names and blocks only, which is all an incremental backup
/// needs of its parent's shards: the definitions are not parsed (most of a shard's text and
/// of the cost of reading it). It is checked against its tree entry as
/// [`Shard::check_against`] checks a whole shard, the fingerprint taken over the
/// definitions as stored, which is their compact JSON as writers write it
/// (docs/format.md §8.2). A shard stored otherwise (other whitespace, which readers must
/// accept), or one that fails a check, is parsed whole and checked as such, so it is refused
/// with the whole parse's error. The definitions' content is checked only through their
/// fingerprint (an unknown field is not refused here), as for a parent's unchanged shards,
/// which an incremental reuses by id without reading them.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardBlocks {
    /// The tables, ascending by name.
    pub tables: Vec<TableBlocks>,
}

/// One table of a [`ShardBlocks`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableBlocks {
    /// The table's name.
    pub name: String,
    /// Bucket index → the block holding the bucket's rows.
    pub blocks: BTreeMap<i64, BlockRef>,
}

impl From<Shard> for ShardBlocks {
    fn from(s: Shard) -> ShardBlocks {
        ShardBlocks {
            tables: s
                .tables
                .into_iter()
                .map(|t| TableBlocks {
                    name: t.def.name,
                    blocks: t.blocks,
                })
                .collect(),
        }
    }
}

/// The JSON of a stored shard with each definition kept as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LazyObject<'a> {
    #[serde(borrow)]
    shard: LazyShard<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LazyShard<'a> {
    version: u32,
    #[serde(borrow)]
    tables: Vec<LazyTable<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LazyTable<'a> {
    #[serde(borrow)]
    def: &'a serde_json::value::RawValue,
    blocks: BTreeMap<i64, BlockRef>,
}

/// The fields of a definition the checks need. Borrowed: a name with an escape fails here
/// and takes the whole parse.
#[derive(Deserialize)]
struct DefHead<'a> {
    name: &'a str,
    #[serde(default)]
    super_table: Option<&'a str>,
}

impl ShardBlocks {
    /// Parses and checks a shard blob against its tree `entry`; `what` names it in errors.
    pub fn decode_checked(bytes: &[u8], entry: &TreeEntry, what: &str) -> Result<Self, Error> {
        if let Some(s) = Self::decode_lazily(bytes, entry) {
            return Ok(s);
        }
        let shard = Shard::decode(bytes, what)?;
        shard.check_against(entry, what)?;
        Ok(shard.into())
    }

    /// The shard if it parses with its definitions as text and passes every check of
    /// [`Shard::check_against`]; `None` otherwise (the caller parses it whole).
    fn decode_lazily(bytes: &[u8], entry: &TreeEntry) -> Option<Self> {
        if shard_codec::is_binary(bytes) {
            // Its definitions are stored as the fingerprinted JSON, as a JSON shard's are.
            let tables = shard_codec::decode(bytes).ok()?;
            return Self::checked(tables.into_iter().map(|t| (t.def, t.blocks)), entry);
        }
        let shard = serde_json::from_slice::<LazyObject<'_>>(bytes).ok()?.shard;
        if shard.version != SNAPSHOT_VERSION {
            return None;
        }
        let tables = shard.tables.into_iter();
        Self::checked(tables.map(|t| (t.def.get().as_bytes(), t.blocks)), entry)
    }

    /// A lazily read shard from each table's definition as stored and its blocks, if it
    /// passes every check of [`Shard::check_against`] (the fingerprint taken over the
    /// definitions as stored).
    fn checked<'a>(
        tables: impl Iterator<Item = (&'a [u8], BTreeMap<i64, BlockRef>)>,
        entry: &TreeEntry,
    ) -> Option<Self> {
        let tables: Vec<_> = tables.collect();
        let heads = tables
            .iter()
            .map(|(def, _)| serde_json::from_slice::<DefHead<'_>>(def))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let views: Vec<TableView<'_>> = heads
            .iter()
            .zip(&tables)
            .map(|(h, (_, blocks))| (h.name, h.super_table, blocks))
            .collect();
        check_tables(&views, entry).ok()?;
        let mut text = Vec::with_capacity(tables.iter().map(|(def, _)| def.len() + 1).sum());
        for (def, _) in &tables {
            text.extend_from_slice(def);
            text.push(b'\n');
        }
        if blake3::hash(&text).to_hex().as_str() != entry.defs {
            return None;
        }
        check_totals(&views, entry).ok()?;
        let tables = heads
            .iter()
            .zip(tables)
            .map(|(h, (_, blocks))| TableBlocks {
                name: h.name.to_string(),
                blocks,
            })
            .collect();
        Some(ShardBlocks { tables })
    }
}

/// What the checks of a shard against its tree entry read of one table: its name, its super
/// table and its blocks.
type TableView<'a> = (&'a str, Option<&'a str>, &'a BTreeMap<i64, BlockRef>);

/// The checks of a shard's tables against its tree entry made before the fingerprint: the
/// table count, the first and last name, ascending names, the super table, and
/// `min_ts <= max_ts` in every block. The reason on failure.
fn check_tables(tables: &[TableView<'_>], entry: &TreeEntry) -> Result<(), String> {
    if tables.len() as u64 != entry.tables {
        return Err(format!(
            "holds {} tables, the tree says {}",
            tables.len(),
            entry.tables
        ));
    }
    let (Some(first), Some(last)) = (tables.first(), tables.last()) else {
        return Err("holds no table".into());
    };
    if first.0 != entry.first || last.0 != entry.last {
        return Err("its first or last table differs from the tree's".into());
    }
    for pair in tables.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(format!("table {} is out of order", pair[1].0));
        }
    }
    for (name, super_table, blocks) in tables {
        if *super_table != entry.super_table.as_deref() {
            return Err(format!("table {name} has another super table"));
        }
        for (bucket, b) in *blocks {
            if b.min_ts > b.max_ts {
                return Err(format!("table {name} bucket {bucket}: min_ts > max_ts"));
            }
        }
    }
    Ok(())
}

/// The block and row totals of a shard's tables against its tree entry.
fn check_totals(tables: &[TableView<'_>], entry: &TreeEntry) -> Result<(), String> {
    let blocks: u64 = tables.iter().map(|t| t.2.len() as u64).sum();
    let rows: u64 = tables
        .iter()
        .flat_map(|t| t.2.values())
        .map(|b| b.rows)
        .sum();
    if blocks != entry.blocks || rows != entry.rows {
        return Err("its block or row totals differ from the tree's".into());
    }
    Ok(())
}

/// The catalog root: the database's DDL and one part per super table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRoot {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The database.
    pub database: DatabaseDef,
    /// Super table name → its [`SuperTablePart`] blob, ascending by name.
    pub super_tables: Vec<SuperTableRef>,
    /// Objects of the database the backup does not contain, with the reason (virtual
    /// tables); absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedObject>,
    /// Every zstd dictionary blob a data blob of this snapshot may need (docs/format.md
    /// §5.3): the super tables' current ones and those inherited from the parent, whose
    /// blocks an incremental keeps. What keeps them reachable for prune; absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dictionaries: Vec<BlobId>,
}

/// A super table named by the catalog root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperTableRef {
    /// Super table name.
    pub name: String,
    /// The [`SuperTablePart`] blob.
    pub def: BlobId,
    /// The zstd dictionary blob this super table's new blocks are compressed with (trained
    /// from a sample of its blocks, docs/format.md §5.3); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dictionary: Option<BlobId>,
}

/// One super table's part of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperTablePart {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The definition.
    pub def: SuperTableDef,
}

impl TreeObject {
    /// The object's bytes as stored in a blob: compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these types cannot fail: string keys, no maps with non-string keys
        // other than i64 (written as strings).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The object's bytes as stored in a blob, a shard written as `shards` says (every other
    /// object as [`TreeObject::encode`] writes it).
    pub fn encode_as(&self, shards: ShardEncoding) -> Vec<u8> {
        match (self, shards) {
            (TreeObject::Shard(s), ShardEncoding::Binary) => s.encode_binary(),
            _ => self.encode(),
        }
    }

    /// Parses a blob's bytes (JSON, or a binary shard); `what` names the blob in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<TreeObject, Error> {
        if shard_codec::is_binary(bytes) {
            return Shard::decode_binary(bytes, what).map(TreeObject::Shard);
        }
        let obj: TreeObject =
            serde_json::from_slice(bytes).map_err(|e| Error::InvalidTreeObject {
                object: what.to_string(),
                reason: e.to_string(),
            })?;
        let version = match &obj {
            TreeObject::Tree(t) => t.version,
            TreeObject::Node(n) => n.version,
            TreeObject::Shard(s) => s.version,
            TreeObject::Catalog(c) => c.version,
            TreeObject::SuperTable(s) => s.version,
        };
        if version != SNAPSHOT_VERSION {
            return Err(Error::InvalidTreeObject {
                object: what.to_string(),
                reason: format!("version {version}, this build reads {SNAPSHOT_VERSION}"),
            });
        }
        Ok(obj)
    }

    fn type_name(&self) -> &'static str {
        match self {
            TreeObject::Tree(_) => "tree",
            TreeObject::Node(_) => "tree node",
            TreeObject::Shard(_) => "shard",
            TreeObject::Catalog(_) => "catalog",
            TreeObject::SuperTable(_) => "super table",
        }
    }
}

macro_rules! decode_as {
    ($fn:ident, $variant:ident, $ty:ty) => {
        /// Parses a blob that must hold this kind of object; `what` names it in errors.
        pub fn $fn(bytes: &[u8], what: &str) -> Result<$ty, Error> {
            match TreeObject::decode(bytes, what)? {
                TreeObject::$variant(x) => Ok(x),
                other => Err(Error::InvalidTreeObject {
                    object: what.to_string(),
                    reason: format!(
                        "holds a {} where a {} was expected",
                        other.type_name(),
                        stringify!($variant)
                    ),
                }),
            }
        }
    };
}

/// Checks that shard entries are ordered and consistent: ascending keys, `first <= last`,
/// at least one table each.
fn check_entries(entries: &[TreeEntry], what: &str) -> Result<(), Error> {
    let fail = |reason: String| Error::InvalidTreeObject {
        object: what.to_string(),
        reason,
    };
    let mut prev: Option<(&Option<String>, &str)> = None;
    for e in entries {
        if e.tables == 0 || e.first > e.last {
            return Err(fail(format!("shard {} has an empty range", e.first)));
        }
        if let Some((st, last)) = prev {
            if (st, last) >= (&e.super_table, e.first.as_str()) {
                return Err(fail(format!("shard {} is out of order", e.first)));
            }
        }
        prev = Some((&e.super_table, e.last.as_str()));
    }
    Ok(())
}

impl TreeRoot {
    decode_as!(decode, Tree, TreeRoot);

    /// Checks the order of the node entries: ascending, non-overlapping key ranges, at least
    /// one shard each.
    pub fn validate(&self, what: &str) -> Result<(), Error> {
        let fail = |reason: String| Error::InvalidTreeObject {
            object: what.to_string(),
            reason,
        };
        let mut prev: Option<(&Option<String>, &str)> = None;
        for n in &self.nodes {
            let first = (&n.first_super_table, n.first.as_str());
            let last = (&n.last_super_table, n.last.as_str());
            if n.shards == 0 || n.tables < n.shards || first > last {
                return Err(fail(format!("node {} has an empty range", n.first)));
            }
            if prev.is_some_and(|p| p >= first) {
                return Err(fail(format!("node {} is out of order", n.first)));
            }
            prev = Some(last);
        }
        Ok(())
    }
}

impl TreeNode {
    decode_as!(decode, Node, TreeNode);

    /// Checks the node against its root entry: ordered shard entries, the same first and
    /// last keys, shard count and totals.
    pub fn check_against(&self, entry: &NodeEntry, what: &str) -> Result<(), Error> {
        check_entries(&self.shards, what)?;
        let mine = self.entry(entry.node);
        if mine.as_ref() != Some(entry) {
            return Err(Error::InvalidTreeObject {
                object: what.to_string(),
                reason: "its shards differ from the root's description of the node".into(),
            });
        }
        Ok(())
    }

    /// The root entry describing this node stored as blob `id`; `None` for an empty node.
    pub fn entry(&self, id: BlobId) -> Option<NodeEntry> {
        let first = self.shards.first()?;
        let last = self.shards.last()?;
        Some(NodeEntry {
            first_super_table: first.super_table.clone(),
            first: first.first.clone(),
            last_super_table: last.super_table.clone(),
            last: last.last.clone(),
            shards: self.shards.len() as u64,
            tables: self.shards.iter().map(|e| e.tables).sum(),
            blocks: self.shards.iter().map(|e| e.blocks).sum(),
            rows: self.shards.iter().map(|e| e.rows).sum(),
            node: id,
        })
    }
}

impl Tree {
    /// Checks the whole shard sequence (across node boundaries too).
    pub fn validate(&self, what: &str) -> Result<(), Error> {
        check_entries(&self.shards, what)
    }

    /// The shard entries of node `k` (by position in [`Tree::nodes`]).
    pub fn node_span(&self, k: usize) -> Range<usize> {
        let start: u64 = self.nodes[..k].iter().map(|n| n.shards).sum();
        let start = start as usize;
        start..start + self.nodes[k].shards as usize
    }

    /// Puts a tree together from its root and its nodes (in the root's order, as decoded):
    /// each node is checked against the root's entry for it, and the whole shard sequence
    /// for order. `of` names the snapshot in messages (`"of backup …"`).
    pub fn assemble(root: TreeRoot, nodes: Vec<TreeNode>, of: &str) -> Result<Tree, Error> {
        let what = format!("tree {of}");
        root.validate(&what)?;
        if nodes.len() != root.nodes.len() {
            return Err(Error::InvalidTreeObject {
                object: what,
                reason: format!("{} nodes read for {} named", nodes.len(), root.nodes.len()),
            });
        }
        let mut tree = Tree::default();
        for (n, node) in root.nodes.iter().zip(nodes) {
            node.check_against(n, &format!("tree node {} {of}", n.node))?;
            tree.shards.extend(node.shards);
        }
        tree.nodes = root.nodes;
        tree.validate(&what)?;
        Ok(tree)
    }

    /// Reads the tree whose root is blob `root`: the root, then each node ([`Tree::assemble`]).
    /// `get` reads a blob (given its id and a description for messages); `bad` turns a
    /// damaged object into the caller's error; `of` names the snapshot in messages
    /// (`"of backup …"`). Returns the tree and the number of objects read.
    pub async fn read<E>(
        root: BlobId,
        of: &str,
        mut get: impl AsyncFnMut(BlobId, String) -> Result<Vec<u8>, E>,
        bad: impl Fn(Error) -> E,
    ) -> Result<(Tree, u64), E> {
        let what = format!("tree {root} {of}");
        let bytes = get(root, what.clone()).await?;
        let root = TreeRoot::decode(&bytes, &what).map_err(&bad)?;
        let mut nodes = Vec::with_capacity(root.nodes.len());
        for n in &root.nodes {
            let what = format!("tree node {} {of}", n.node);
            let bytes = get(n.node, what.clone()).await?;
            nodes.push(TreeNode::decode(&bytes, &what).map_err(&bad)?);
        }
        let reads = 1 + nodes.len() as u64;
        Ok((Tree::assemble(root, nodes, of).map_err(&bad)?, reads))
    }

    /// The nodes of a new tree of `entries` (in tree order), cut by [`node_layout`]: a node
    /// whose shards are exactly those of a node of `parent` is that node, by id (neither
    /// encoded nor stored again); every other node is new and must be stored.
    pub fn plan(entries: Vec<TreeEntry>, parent: Option<&Tree>) -> Vec<PlannedNode> {
        // The parent's nodes by first key, with their spans.
        let mut by_first: HashMap<ShardKey<'_>, (usize, Range<usize>)> = HashMap::new();
        if let Some(p) = parent {
            let mut start = 0usize;
            for (k, n) in p.nodes.iter().enumerate() {
                let end = start + n.shards as usize;
                if end <= p.shards.len() {
                    by_first.insert((&n.first_super_table, n.first.as_str()), (k, start..end));
                }
                start = end;
            }
        }
        let mut out = Vec::new();
        for range in node_layout(&entries) {
            let slice = &entries[range];
            let reused = parent.and_then(|p| {
                let (k, span) = by_first.get(&(&slice[0].super_table, slice[0].first.as_str()))?;
                (p.shards[span.clone()] == *slice).then(|| p.nodes[*k].clone())
            });
            out.push(match reused {
                Some(e) => PlannedNode::Reused(e),
                None => PlannedNode::New(TreeNode {
                    version: SNAPSHOT_VERSION,
                    shards: slice.to_vec(),
                }),
            });
        }
        out
    }

    /// Stores the tree of `entries` ([`Tree::plan`]): the new nodes, then the root; returns
    /// the root's blob id and the number of nodes stored. `put` stores an object and returns
    /// its blob id.
    pub async fn store<E>(
        entries: Vec<TreeEntry>,
        parent: Option<&Tree>,
        mut put: impl AsyncFnMut(TreeObject) -> Result<BlobId, E>,
    ) -> Result<(BlobId, u64), E> {
        let mut nodes = Vec::new();
        let mut written = 0u64;
        for planned in Tree::plan(entries, parent) {
            match planned {
                PlannedNode::Reused(e) => nodes.push(e),
                PlannedNode::New(node) => {
                    let Some(mut e) = node.entry(BlobId::from_bytes([0; 32])) else {
                        continue;
                    };
                    e.node = put(TreeObject::Node(node)).await?;
                    written += 1;
                    nodes.push(e);
                }
            }
        }
        let root = put(TreeObject::Tree(TreeRoot {
            version: SNAPSHOT_VERSION,
            nodes,
        }))
        .await?;
        Ok((root, written))
    }
}

/// A shard's key: (super table, first table name).
type ShardKey<'a> = (&'a Option<String>, &'a str);

/// A node of a tree being built ([`Tree::plan`]).
#[derive(Debug, Clone, PartialEq)]
pub enum PlannedNode {
    /// The parent's node, by id.
    Reused(NodeEntry),
    /// A new node, to be stored.
    New(TreeNode),
}

impl Shard {
    decode_as!(decode, Shard, Shard);

    /// The binary encoding of this shard (docs/format.md §8.3.1).
    fn encode_binary(&self) -> Vec<u8> {
        let defs: Vec<&TableDef> = self.tables.iter().map(|t| &t.def).collect();
        self.binary(&DefsJson::of(&defs))
    }

    /// The binary encoding with `json` as its tables' definitions (one span per table).
    fn binary(&self, json: &DefsJson) -> Vec<u8> {
        shard_codec::encode(self.tables.iter().zip(&json.spans).map(|(t, span)| {
            shard_codec::TableIn {
                def: &json.buf[span.clone()],
                blocks: &t.blocks,
            }
        }))
    }

    /// The binary encoding of this shard (docs/format.md §8.3.1) with its tables'
    /// definitions as [`DefsJson::of`] wrote them, in order, for their [`fingerprint`]: a
    /// binary shard stores that JSON, so it is not written twice. JSON for another number of
    /// tables is not used.
    pub fn encode_binary_with(&self, json: &DefsJson) -> Vec<u8> {
        if json.spans.len() != self.tables.len() {
            return self.encode_binary();
        }
        debug_assert!(
            self.tables.iter().zip(&json.spans).all(|(t, span)| {
                serde_json::to_vec(&t.def).ok().as_deref() == json.buf.get(span.clone())
            }),
            "the definitions' JSON is not this shard's"
        );
        self.binary(json)
    }

    /// Parses a binary shard whole, every definition as [`TableDef`] (unknown fields
    /// refused, as in JSON shards).
    fn decode_binary(bytes: &[u8], what: &str) -> Result<Shard, Error> {
        let fail = |reason: String| Error::InvalidTreeObject {
            object: what.to_string(),
            reason,
        };
        let tables = shard_codec::decode(bytes).map_err(fail)?;
        let tables = tables
            .into_iter()
            .map(|t| {
                let def = serde_json::from_slice::<TableDef>(t.def)
                    .map_err(|e| fail(format!("a table definition: {e}")))?;
                Ok(ShardTable {
                    def,
                    blocks: t.blocks,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Shard {
            version: SNAPSHOT_VERSION,
            tables,
        })
    }

    /// Checks the shard against its tree entry: the same tables (count, first, last,
    /// fingerprint, super table), ascending names, `min_ts <= max_ts` in every block.
    pub fn check_against(&self, entry: &TreeEntry, what: &str) -> Result<(), Error> {
        let fail = |reason: String| Error::InvalidTreeObject {
            object: what.to_string(),
            reason,
        };
        let views: Vec<TableView<'_>> = self
            .tables
            .iter()
            .map(|t| (t.def.name.as_str(), t.def.super_table.as_deref(), &t.blocks))
            .collect();
        check_tables(&views, entry).map_err(fail)?;
        let defs: Vec<&TableDef> = self.tables.iter().map(|t| &t.def).collect();
        if fingerprint(&defs) != entry.defs {
            return Err(fail(
                "its table definitions do not match the tree's fingerprint".into(),
            ));
        }
        check_totals(&views, entry).map_err(fail)
    }

    /// The tree entry describing this shard stored as blob `id`; `None` for an empty shard.
    pub fn entry(&self, id: BlobId) -> Option<TreeEntry> {
        let defs: Vec<&TableDef> = self.tables.iter().map(|t| &t.def).collect();
        self.entry_with_fingerprint(id, fingerprint(&defs))
    }

    /// [`Shard::entry`] with the [`fingerprint`] of the shard's definitions already known
    /// (a writer that laid the catalog out has it): `defs` MUST be that fingerprint.
    pub fn entry_with_fingerprint(&self, id: BlobId, defs: String) -> Option<TreeEntry> {
        let first = self.tables.first()?;
        let last = self.tables.last()?;
        Some(TreeEntry {
            super_table: first.def.super_table.clone(),
            first: first.def.name.clone(),
            last: last.def.name.clone(),
            tables: self.tables.len() as u64,
            defs,
            blocks: self.tables.iter().map(|t| t.blocks.len() as u64).sum(),
            rows: self
                .tables
                .iter()
                .flat_map(|t| t.blocks.values())
                .map(|b| b.rows)
                .sum(),
            shard: id,
        })
    }
}

impl CatalogRoot {
    decode_as!(decode, Catalog, CatalogRoot);
}

impl SuperTablePart {
    decode_as!(decode, SuperTable, SuperTablePart);
}

/// The order tables are sharded in: by super table (normal tables first), then by name.
pub fn shard_order(a: &TableDef, b: &TableDef) -> std::cmp::Ordering {
    (&a.super_table, &a.name).cmp(&(&b.super_table, &b.name))
}

/// Whether a shard ends after the table `name` (a content-defined boundary: it depends on
/// the name alone, so adding or dropping a table moves at most the boundaries around it).
pub fn is_boundary(name: &str) -> bool {
    let h = blake3::hash(name.as_bytes());
    let b = h.as_bytes();
    let x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    u64::from(x) < (1u64 << 32) / u64::from(SHARD_TARGET)
}

/// Whether a tree node ends after the shard whose last table is `name` (content-defined,
/// like [`is_boundary`], from other bits of the same hash so node cuts do not depend on
/// where shards were cut).
pub fn is_node_boundary(name: &str) -> bool {
    let h = blake3::hash(name.as_bytes());
    let b = h.as_bytes();
    let x = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    u64::from(x) < (1u64 << 32) / u64::from(NODE_TARGET)
}

/// Cuts shard `entries` (in tree order) into tree nodes: a node ends after an entry whose
/// last table satisfies [`is_node_boundary`], or at [`NODE_MAX`] entries.
pub fn node_layout(entries: &[TreeEntry]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, e) in entries.iter().enumerate() {
        if i + 1 == entries.len() || is_node_boundary(&e.last) || i + 1 - start >= NODE_MAX {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out
}

/// Cuts `tables` (sorted by [`shard_order`]) into shards: a shard ends at a super table
/// change, after a table for which [`is_boundary`] holds, or at [`SHARD_MAX`] tables.
pub fn layout(tables: &[&TableDef]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..tables.len() {
        let last = i + 1 == tables.len();
        let end = last
            || tables[i + 1].super_table != tables[i].super_table
            || is_boundary(&tables[i].name)
            || i + 1 - start >= SHARD_MAX;
        if end {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out
}

/// The fingerprint of table definitions (in shard order): hex BLAKE3 over each definition's
/// compact JSON followed by a newline. Equal fingerprints mean the same tables with the same
/// tags, columns, comments and TTLs.
pub fn fingerprint(defs: &[&TableDef]) -> String {
    DefsJson::of(defs).fingerprint()
}

/// Table definitions' compact JSON, each followed by a newline: what [`fingerprint`]
/// hashes, and what a binary shard of those definitions stores (without the newlines).
/// Kept from the fingerprint, it spares a rebuilt shard writing its definitions again: a 1%
/// incremental at 50 M rows rebuilds ~120 shards of ~80 tables, whose ~1.75 MB of JSON
/// took ~2.9 ms of CPU on the commit's way.
#[derive(Debug, Clone, Default)]
pub struct DefsJson {
    buf: Vec<u8>,
    /// Each definition's JSON in `buf`, without its newline.
    spans: Vec<std::ops::Range<usize>>,
}

impl DefsJson {
    /// The compact JSON of each of `defs`, in order.
    pub fn of(defs: &[&TableDef]) -> DefsJson {
        // Every definition into one buffer: no allocation per definition, and BLAKE3 hashes
        // a long input several chunks at a time. Every backup fingerprints the whole catalog
        // (10,000 tables at medium scale), so this is on its fixed cost.
        let mut buf = Vec::with_capacity(256 * defs.len());
        let mut spans = Vec::with_capacity(defs.len());
        for d in defs {
            let start = buf.len();
            // Writing a TableDef into a Vec cannot fail: string keys, no non-string map keys.
            let _ = serde_json::to_writer(&mut buf, d);
            spans.push(start..buf.len());
            buf.push(b'\n');
        }
        DefsJson { buf, spans }
    }

    /// The [`fingerprint`] of these definitions.
    pub fn fingerprint(&self) -> String {
        blake3::hash(&self.buf).to_hex().to_string()
    }
}

/// A database as one snapshot describes it: the catalog and every table's blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseState {
    /// The catalog (every table, with its definition).
    pub catalog: CatalogSnapshot,
    /// Table → bucket → the block holding its rows; every catalog table is present.
    pub tables: BTreeMap<String, BTreeMap<i64, BlockRef>>,
}

impl DatabaseState {
    /// Rows recorded for `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .get(table)
            .map(|b| b.values().map(|r| r.rows).sum())
            .unwrap_or(0)
    }

    /// The shards of this state, in tree order (the same cut [`layout`] gives).
    pub fn shards(&self) -> Vec<Shard> {
        let mut defs: Vec<&TableDef> = self.catalog.tables.iter().collect();
        defs.sort_by(|a, b| shard_order(a, b));
        layout(&defs)
            .into_iter()
            .map(|r| Shard {
                version: SNAPSHOT_VERSION,
                tables: defs[r]
                    .iter()
                    .map(|d| ShardTable {
                        def: (*d).clone(),
                        blocks: self.tables.get(&d.name).cloned().unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The catalog root (given the blob ids of the super table parts, in catalog order) and
    /// the super table parts.
    pub fn catalog_parts(catalog: &CatalogSnapshot) -> Vec<SuperTablePart> {
        catalog
            .super_tables
            .iter()
            .map(|s| SuperTablePart {
                version: SNAPSHOT_VERSION,
                def: s.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_blocks_read_a_shard_as_its_whole_parse_does() {
        let def = |name: &str| TableDef {
            name: name.into(),
            kind: crate::catalog::TableKind::Child,
            super_table: Some("st".into()),
            tags: vec![crate::catalog::TagValue {
                name: "loc".into(),
                value: crate::catalog::Value::NChar(format!("電{name}")),
            }],
            comment: None,
            ttl: None,
            columns: Vec::new(),
        };
        let block = |k: i64| BlockRef {
            blob: BlobId::from_bytes([k as u8; 32]),
            rows: 10 + k as u64,
            min_ts: k * 10,
            max_ts: k * 10 + 5,
        };
        let shard = |names: &[&str]| Shard {
            version: SNAPSHOT_VERSION,
            tables: names
                .iter()
                .enumerate()
                .map(|(i, n)| ShardTable {
                    def: def(n),
                    blocks: (0..i as i64).map(|k| (k - 1, block(k))).collect(),
                })
                .collect(),
        };
        // A name with an escape is read by the whole parse; the others lazily. Both
        // encodings of a shard.
        for (names, lazily, encoding) in [
            (vec!["a"], true, ShardEncoding::Json),
            (vec!["t1", "t2", "電"], true, ShardEncoding::Json),
            (vec!["a", "b\"q", "c"], false, ShardEncoding::Json),
            (vec!["a"], true, ShardEncoding::Binary),
            (vec!["t1", "t2", "電"], true, ShardEncoding::Binary),
            (vec!["a", "b\"q", "c"], false, ShardEncoding::Binary),
        ] {
            let s = shard(&names);
            let entry = s.entry(BlobId::from_bytes([7; 32])).unwrap();
            let compact = TreeObject::Shard(s.clone()).encode_as(encoding);
            assert_eq!(
                compact.starts_with(b"TBSH"),
                encoding == ShardEncoding::Binary
            );
            assert_eq!(Shard::decode(&compact, "x").unwrap(), s);
            let want = ShardBlocks::from(s.clone());
            assert_eq!(
                ShardBlocks::decode_lazily(&compact, &entry).is_some(),
                lazily,
                "{names:?}"
            );
            assert_eq!(
                ShardBlocks::decode_checked(&compact, &entry, "x").unwrap(),
                want
            );
            // Other whitespace: not the fingerprinted text, so parsed whole, and accepted.
            let pretty = serde_json::to_vec_pretty(&TreeObject::Shard(s.clone())).unwrap();
            assert!(ShardBlocks::decode_lazily(&pretty, &entry).is_none());
            assert_eq!(
                ShardBlocks::decode_checked(&pretty, &entry, "x").unwrap(),
                want
            );
            // Whatever differs from the entry is refused with the whole parse's error.
            for bad in [
                TreeEntry {
                    rows: entry.rows + 1,
                    ..entry.clone()
                },
                TreeEntry {
                    blocks: entry.blocks + 1,
                    ..entry.clone()
                },
                TreeEntry {
                    defs: "00".repeat(32),
                    ..entry.clone()
                },
                TreeEntry {
                    tables: entry.tables + 1,
                    ..entry.clone()
                },
                TreeEntry {
                    super_table: None,
                    ..entry.clone()
                },
                TreeEntry {
                    first: "0".into(),
                    ..entry.clone()
                },
                TreeEntry {
                    last: "zz".into(),
                    ..entry.clone()
                },
            ] {
                let whole = Shard::decode(&compact, "x").and_then(|s| s.check_against(&bad, "x"));
                let lazy = ShardBlocks::decode_checked(&compact, &bad, "x");
                assert_eq!(
                    lazy.unwrap_err().to_string(),
                    whole.unwrap_err().to_string()
                );
            }
        }
        // Out of order, and another kind of object.
        let mut s = shard(&["a", "b"]);
        let entry = s.entry(BlobId::from_bytes([7; 32])).unwrap();
        s.tables.swap(0, 1);
        let swapped = TreeObject::Shard(s).encode();
        assert!(ShardBlocks::decode_checked(&swapped, &entry, "x").is_err());
        let tree = br#"{"tree":{"version":2,"nodes":[]}}"#;
        let e = ShardBlocks::decode_checked(tree, &entry, "x").unwrap_err();
        assert!(e.to_string().contains("tree"), "{e}");
    }

    #[test]
    fn fingerprint_is_blake3_of_each_definitions_json_and_a_newline() {
        // The format (docs/format.md §8.2), spelled out independently of the implementation.
        let defs: Vec<TableDef> = (0..5)
            .map(|i| TableDef {
                name: format!("t\"{i}"),
                kind: crate::catalog::TableKind::Child,
                super_table: Some("st".into()),
                tags: vec![crate::catalog::TagValue {
                    name: "loc".into(),
                    value: crate::catalog::Value::NChar(format!("電{i}")),
                }],
                comment: (i % 2 == 0).then(|| "c".into()),
                ttl: None,
                columns: Vec::new(),
            })
            .collect();
        let refs: Vec<&TableDef> = defs.iter().collect();
        let mut h = blake3::Hasher::new();
        for d in &defs {
            h.update(&serde_json::to_vec(d).unwrap());
            h.update(b"\n");
        }
        assert_eq!(fingerprint(&refs), h.finalize().to_hex().to_string());
        assert_eq!(fingerprint(&[]), blake3::hash(b"").to_hex().to_string());
        let shard = Shard {
            version: SNAPSHOT_VERSION,
            tables: defs
                .iter()
                .map(|d| ShardTable {
                    def: d.clone(),
                    blocks: BTreeMap::new(),
                })
                .collect(),
        };
        let id = BlobId::from_bytes([3; 32]);
        assert_eq!(
            shard.entry(id),
            shard.entry_with_fingerprint(id, fingerprint(&refs))
        );
        // The JSON kept from the fingerprint makes the same binary shard; JSON of another
        // number of tables is not used.
        let json = DefsJson::of(&refs);
        assert_eq!(json.fingerprint(), fingerprint(&refs));
        let binary = TreeObject::Shard(shard.clone()).encode_as(ShardEncoding::Binary);
        assert_eq!(shard.encode_binary_with(&json), binary);
        assert_eq!(shard.encode_binary_with(&DefsJson::of(&refs[..2])), binary);
        assert_eq!(shard.encode_binary_with(&DefsJson::default()), binary);
        let back = TreeObject::decode(&binary, "shard").unwrap();
        assert_eq!(back, TreeObject::Shard(shard));
    }
    use crate::catalog::{TableKind, TagValue, Value};

    fn def(name: &str, st: Option<&str>) -> TableDef {
        TableDef {
            name: name.into(),
            kind: if st.is_some() {
                TableKind::Child
            } else {
                TableKind::Normal
            },
            super_table: st.map(str::to_string),
            tags: st
                .map(|_| {
                    vec![TagValue {
                        name: "g".into(),
                        value: Value::Int(1),
                    }]
                })
                .unwrap_or_default(),
            comment: None,
            ttl: None,
            columns: vec![],
        }
    }

    #[test]
    fn layout_is_content_defined_and_bounded() {
        let names: Vec<String> = (0..5000).map(|i| format!("d{i:05}")).collect();
        let defs: Vec<TableDef> = names.iter().map(|n| def(n, Some("m"))).collect();
        let refs: Vec<&TableDef> = defs.iter().collect();
        let cut = layout(&refs);
        assert_eq!(cut.iter().map(|r| r.len()).sum::<usize>(), 5000);
        assert!(cut.iter().all(|r| r.len() <= SHARD_MAX));
        let avg = 5000 / cut.len();
        assert!((20..200).contains(&avg), "average shard of {avg} tables");
        // Dropping one table changes at most the shards around it.
        let mut fewer = refs.clone();
        fewer.remove(2500);
        let cut2 = layout(&fewer);
        let keys = |c: &[Range<usize>], r: &[&TableDef]| -> Vec<(String, String)> {
            c.iter()
                .map(|x| (r[x.start].name.clone(), r[x.end - 1].name.clone()))
                .collect()
        };
        let (a, b) = (keys(&cut, &refs), keys(&cut2, &fewer));
        let same = a.iter().filter(|k| b.contains(k)).count();
        assert!(same + 2 >= a.len(), "{same} of {}", a.len());
        // A super table change always cuts.
        let mixed = [def("a", None), def("b", Some("m")), def("c", Some("n"))];
        let refs: Vec<&TableDef> = mixed.iter().collect();
        assert_eq!(layout(&refs).len(), 3);
    }

    #[test]
    fn objects_round_trip_and_check() {
        let mut blocks = BTreeMap::new();
        blocks.insert(
            -3,
            BlockRef {
                blob: BlobId::from_bytes([1; 32]),
                rows: 10,
                min_ts: -5,
                max_ts: -1,
            },
        );
        let shard = Shard {
            version: SNAPSHOT_VERSION,
            tables: vec![
                ShardTable {
                    def: def("a", Some("m")),
                    blocks,
                },
                ShardTable {
                    def: def("b", Some("m")),
                    blocks: BTreeMap::new(),
                },
            ],
        };
        let bytes = TreeObject::Shard(shard.clone()).encode();
        let back = Shard::decode(&bytes, "s").unwrap();
        assert_eq!(back, shard);
        let binary = TreeObject::Shard(shard.clone()).encode_as(ShardEncoding::Binary);
        assert_eq!(Shard::decode(&binary, "s").unwrap(), shard);
        assert!(
            binary.len() < bytes.len(),
            "{} {}",
            binary.len(),
            bytes.len()
        );
        for other in [
            TreeObject::Tree(TreeRoot {
                version: SNAPSHOT_VERSION,
                nodes: Vec::new(),
            }),
            TreeObject::SuperTable(SuperTablePart {
                version: SNAPSHOT_VERSION,
                def: SuperTableDef {
                    name: "m".into(),
                    columns: Vec::new(),
                    tags: Vec::new(),
                    ddl: String::new(),
                },
            }),
        ] {
            assert_eq!(other.encode_as(ShardEncoding::Binary), other.encode());
        }
        assert!(
            TreeRoot::decode(&binary, "s")
                .unwrap_err()
                .to_string()
                .contains("shard"),
            "a binary shard is not a tree"
        );
        // A definition with an unknown field is refused in a binary shard as in JSON.
        let mut odd = serde_json::to_vec(&shard.tables[0].def).unwrap();
        odd.pop();
        odd.extend_from_slice(br#","colour":"red"}"#);
        let empty = BTreeMap::new();
        let bad = shard_codec::encode(
            [shard_codec::TableIn {
                def: &odd,
                blocks: &empty,
            }]
            .into_iter(),
        );
        assert!(
            Shard::decode(&bad, "s")
                .unwrap_err()
                .to_string()
                .contains("colour")
        );
        let entry = shard.entry(BlobId::from_bytes([2; 32])).unwrap();
        assert_eq!((entry.tables, entry.blocks, entry.rows), (2, 1, 10));
        shard.check_against(&entry, "s").unwrap();
        let mut other = shard.clone();
        other.tables[1].def.tags[0].value = Value::Int(2);
        assert!(other.check_against(&entry, "s").is_err(), "tag change");
        assert!(
            TreeRoot::decode(&bytes, "s").is_err(),
            "a shard is not a tree"
        );
        let node = TreeNode {
            version: SNAPSHOT_VERSION,
            shards: vec![entry.clone(), entry],
        };
        let node_entry = TreeNode {
            version: SNAPSHOT_VERSION,
            shards: vec![node.shards[0].clone()],
        }
        .entry(BlobId::from_bytes([3; 32]))
        .unwrap();
        assert!(
            node.check_against(&node_entry, "n").is_err(),
            "duplicate key"
        );
        let mut v3 = TreeObject::Node(node).encode();
        let text = String::from_utf8(v3.clone())
            .unwrap()
            .replace("\"version\":2", "\"version\":3");
        v3 = text.into_bytes();
        assert!(TreeObject::decode(&v3, "t").is_err());
        assert!(
            TreeObject::decode(b"{\"tree\":{\"version\":2,\"nodes\":[],\"x\":1}}", "t").is_err()
        );
        assert!(TreeObject::decode(b"{\"tree\":{\"version\":2,\"nodes\":[]}}", "t").is_ok());
    }

    fn entries(n: usize) -> Vec<TreeEntry> {
        (0..n)
            .map(|i| TreeEntry {
                super_table: Some("m".into()),
                first: format!("d{:06}", 2 * i),
                last: format!("d{:06}", 2 * i + 1),
                tables: 2,
                defs: "f".into(),
                blocks: 1,
                rows: i as u64,
                shard: BlobId::from_bytes([i as u8; 32]),
            })
            .collect()
    }

    /// Stores into a map, keyed by a hash of the bytes (content addressing).
    fn store_all(
        entries: Vec<TreeEntry>,
        parent: Option<&Tree>,
        objects: &mut HashMap<BlobId, Vec<u8>>,
    ) -> (BlobId, u64, u64) {
        let mut stored = 0u64;
        let fut = Tree::store(entries, parent, async |obj| {
            let bytes = obj.encode();
            let id = BlobId::from_bytes(*blake3::hash(&bytes).as_bytes());
            stored += bytes.len() as u64;
            objects.insert(id, bytes);
            Ok::<_, Error>(id)
        });
        let (root, nodes) = block_on(fut).unwrap();
        (root, nodes, stored)
    }

    fn read_all(root: BlobId, objects: &HashMap<BlobId, Vec<u8>>) -> Result<(Tree, u64), Error> {
        block_on(Tree::read(
            root,
            "of test",
            async |id, what| {
                objects.get(&id).cloned().ok_or(Error::InvalidTreeObject {
                    object: what,
                    reason: "missing".into(),
                })
            },
            |e| e,
        ))
    }

    /// Polls a future that never waits (the closures above are ready at once).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(x) => x,
            Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn tree_nodes_are_content_defined_and_reused() {
        let all = entries(1600);
        let mut objects = HashMap::new();
        let (root, nodes, full_bytes) = store_all(all.clone(), None, &mut objects);
        let (tree, reads) = read_all(root, &objects).unwrap();
        assert_eq!(tree.shards, all);
        assert_eq!(reads, 1 + nodes);
        let avg = 1600 / nodes as usize;
        assert!((10..100).contains(&avg), "average node of {avg} shards");
        for k in 0..tree.nodes.len() {
            assert_eq!(tree.node_span(k).len() as u64, tree.nodes[k].shards);
        }
        // One shard changes: one node and the root are written, a small part of the whole.
        let mut changed = all.clone();
        changed[800].rows += 1;
        changed[800].shard = BlobId::from_bytes([9; 32]);
        let (root2, nodes2, bytes2) = store_all(changed.clone(), Some(&tree), &mut objects);
        assert_eq!(nodes2, 1);
        assert!(bytes2 * 10 < full_bytes, "{bytes2} of {full_bytes}");
        assert_eq!(read_all(root2, &objects).unwrap().0.shards, changed);
        // Without the parent the same bytes come out (the same ids).
        let mut fresh = HashMap::new();
        assert_eq!(store_all(changed, None, &mut fresh).0, root2);
        // Dropping a shard rewrites at most the nodes around it.
        let mut fewer = all.clone();
        fewer.remove(400);
        let (_, nodes3, _) = store_all(fewer, Some(&tree), &mut objects);
        assert!(nodes3 <= 2, "{nodes3} nodes rewritten");
        // A node that disagrees with the root is refused.
        let mut bad = objects.clone();
        let first = tree.nodes[0].node;
        let mut node = TreeNode::decode(&bad[&first], "n").unwrap();
        node.shards[0].rows += 1;
        bad.insert(first, TreeObject::Node(node).encode());
        assert!(read_all(root, &bad).is_err());
    }
}
