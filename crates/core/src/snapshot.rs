//! Format 2: every backup is a self-contained snapshot (design section 4.1, `docs/format.md`
//! §8).
//!
//! A backup is a tree of content-addressed objects:
//!
//! ```text
//! BackupSnapshot (snapshots/<id>)  small: id, database, kind, parent, times, stats, …
//!   ├── tree ──► Tree              shard key → shard blob, with a fingerprint per shard
//!   │             └──► Shard       table → definition (kind, tags, columns) and its blocks
//!   │                    └──► data blobs (block chunks, as in format 1)
//!   └── catalog ──► CatalogRoot    database DDL; super table name → SuperTableDef blob
//! ```
//!
//! An incremental writes new objects only for the shards and catalog parts that changed;
//! everything else is its parent's objects by id. Every snapshot describes the whole database,
//! so restoring one reads that snapshot's objects only, and any snapshot can be forgotten alone.
//!
//! Shards are cut deterministically from the table names alone ([`layout`]), so an unchanged
//! range of tables yields a byte-identical shard (the same blob id: stored once).

use std::collections::BTreeMap;
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
use crate::{BackupId, BlobId, Error};

/// The repository format version of snapshots and their tree objects.
pub const SNAPSHOT_VERSION: u32 = 2;

/// Tables per shard on average: a table ends a shard when the first four bytes of the
/// BLAKE3 hash of its name, read as a little-endian `u32`, are below `2^32 / SHARD_TARGET`.
pub const SHARD_TARGET: u32 = 64;
/// The most tables a shard holds (a shard is cut there even without a hash boundary).
pub const SHARD_MAX: usize = 256;

/// The largest decompressed snapshot object accepted.
pub const MAX_SNAPSHOT_SIZE: usize = 1024 * 1024;

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
    /// The root [`Tree`] blob.
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
    Tree(Tree),
    /// A group of tables with their blocks.
    Shard(Shard),
    /// The database definition and the super tables' parts.
    Catalog(CatalogRoot),
    /// One super table's definition.
    SuperTable(SuperTablePart),
}

/// The root tree: the snapshot's shards, in key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The shards, ascending by (`super_table`, `first`).
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

    /// Parses a blob's bytes; `what` names the blob in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<TreeObject, Error> {
        let obj: TreeObject =
            serde_json::from_slice(bytes).map_err(|e| Error::InvalidTreeObject {
                object: what.to_string(),
                reason: e.to_string(),
            })?;
        let version = match &obj {
            TreeObject::Tree(t) => t.version,
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

impl Tree {
    decode_as!(decode, Tree, Tree);

    /// Checks the order and consistency of the entries: ascending keys, `first <= last`,
    /// at least one table each.
    pub fn validate(&self, what: &str) -> Result<(), Error> {
        let fail = |reason: String| Error::InvalidTreeObject {
            object: what.to_string(),
            reason,
        };
        let mut prev: Option<(&Option<String>, &str)> = None;
        for e in &self.shards {
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
}

impl Shard {
    decode_as!(decode, Shard, Shard);

    /// Checks the shard against its tree entry: the same tables (count, first, last,
    /// fingerprint, super table), ascending names, `min_ts <= max_ts` in every block.
    pub fn check_against(&self, entry: &TreeEntry, what: &str) -> Result<(), Error> {
        let fail = |reason: String| Error::InvalidTreeObject {
            object: what.to_string(),
            reason,
        };
        if self.tables.len() as u64 != entry.tables {
            return Err(fail(format!(
                "holds {} tables, the tree says {}",
                self.tables.len(),
                entry.tables
            )));
        }
        let (Some(first), Some(last)) = (self.tables.first(), self.tables.last()) else {
            return Err(fail("holds no table".into()));
        };
        if first.def.name != entry.first || last.def.name != entry.last {
            return Err(fail(
                "its first or last table differs from the tree's".into(),
            ));
        }
        for pair in self.tables.windows(2) {
            if pair[0].def.name >= pair[1].def.name {
                return Err(fail(format!("table {} is out of order", pair[1].def.name)));
            }
        }
        for t in &self.tables {
            if t.def.super_table != entry.super_table {
                return Err(fail(format!(
                    "table {} has another super table",
                    t.def.name
                )));
            }
            for (bucket, b) in &t.blocks {
                if b.min_ts > b.max_ts {
                    return Err(fail(format!(
                        "table {} bucket {bucket}: min_ts > max_ts",
                        t.def.name
                    )));
                }
            }
        }
        let defs: Vec<&TableDef> = self.tables.iter().map(|t| &t.def).collect();
        if fingerprint(&defs) != entry.defs {
            return Err(fail(
                "its table definitions do not match the tree's fingerprint".into(),
            ));
        }
        let blocks: u64 = self.tables.iter().map(|t| t.blocks.len() as u64).sum();
        let rows: u64 = self
            .tables
            .iter()
            .flat_map(|t| t.blocks.values())
            .map(|b| b.rows)
            .sum();
        if blocks != entry.blocks || rows != entry.rows {
            return Err(fail(
                "its block or row totals differ from the tree's".into(),
            ));
        }
        Ok(())
    }

    /// The tree entry describing this shard stored as blob `id`; `None` for an empty shard.
    pub fn entry(&self, id: BlobId) -> Option<TreeEntry> {
        let first = self.tables.first()?;
        let last = self.tables.last()?;
        let defs: Vec<&TableDef> = self.tables.iter().map(|t| &t.def).collect();
        Some(TreeEntry {
            super_table: first.def.super_table.clone(),
            first: first.def.name.clone(),
            last: last.def.name.clone(),
            tables: self.tables.len() as u64,
            defs: fingerprint(&defs),
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
    let mut h = blake3::Hasher::new();
    for d in defs {
        h.update(&serde_json::to_vec(d).unwrap_or_default());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
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
        let entry = shard.entry(BlobId::from_bytes([2; 32])).unwrap();
        assert_eq!((entry.tables, entry.blocks, entry.rows), (2, 1, 10));
        shard.check_against(&entry, "s").unwrap();
        let mut other = shard.clone();
        other.tables[1].def.tags[0].value = Value::Int(2);
        assert!(other.check_against(&entry, "s").is_err(), "tag change");
        assert!(Tree::decode(&bytes, "s").is_err(), "a shard is not a tree");
        let tree = Tree {
            version: SNAPSHOT_VERSION,
            shards: vec![entry.clone(), entry],
        };
        assert!(tree.validate("t").is_err(), "duplicate key");
        let mut v3 = TreeObject::Tree(tree).encode();
        let text = String::from_utf8(v3.clone())
            .unwrap()
            .replace("\"version\":2", "\"version\":3");
        v3 = text.into_bytes();
        assert!(TreeObject::decode(&v3, "t").is_err());
        assert!(
            TreeObject::decode(b"{\"tree\":{\"version\":2,\"shards\":[],\"x\":1}}", "t").is_err()
        );
    }
}
