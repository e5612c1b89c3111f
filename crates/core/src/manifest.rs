//! The format-1 backup manifest (`docs/format.md` §13), read only to migrate repositories
//! to format 2 (`taosbackup migrate`); and the types format 2 shares with it.
//!
//! In format 1 a backup existed exactly when its manifest was stored. A full backup started
//! a chain (its `chain` is its own id); each incremental named its `parent` (the previous
//! backup of the chain) and the same `chain`, and recorded only what changed. The state at a
//! backup is its chain folded from the full backup forward ([`chain_of`], [`fold`]): for
//! every table and bucket the newest record wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::block::BucketWidth;
use crate::catalog::CatalogSnapshot;
use crate::snapshot::DatabaseState;
use crate::{BackupId, BlobId, Error};

/// The format-1 manifest version this crate reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Whether a backup is self-contained or applies on top of its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Every block of every table; starts a chain.
    Full,
    /// Only changed blocks and tombstones since `parent`.
    Incremental,
}

/// Where the data came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceInfo {
    /// The TDengine cluster id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The server version string, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The endpoint used (`host:port`, `ws://…`), without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// One stored block: the blob holding the block's rows and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRef {
    /// The blob with the exported block.
    pub blob: BlobId,
    /// Number of rows.
    pub rows: u64,
    /// Smallest timestamp in the block.
    pub min_ts: i64,
    /// Largest timestamp in the block.
    pub max_ts: i64,
}

/// What a backup says about one bucket of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BlockRecord {
    /// The bucket's rows as of this backup.
    Data(BlockRef),
    /// The bucket has no rows any more (rows deleted since an earlier backup).
    Deleted,
}

/// What a backup says about one table. In JSON: `{"present":{"blocks":{…}}}` or
/// `"dropped"` (externally tagged, because bucket keys are integers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableRecord {
    /// The table exists; `blocks` lists the buckets this backup stores or tombstones.
    /// In an incremental backup, buckets not listed are unchanged since the parent.
    Present {
        /// Bucket index → record.
        blocks: BTreeMap<i64, BlockRecord>,
    },
    /// The table was dropped since the parent backup (a tombstone for all its buckets).
    Dropped,
}

/// Change-feed positions reached by a backup, opaque to everything but the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedPositions {
    /// The change feed's name (`tmq`, `wal`).
    pub feed: String,
    /// Stream key → position (for TMQ `"vg:<vgroup id>"` → the next WAL version to read).
    pub positions: BTreeMap<String, i64>,
}

/// Counters of one backup run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupStats {
    /// Tables in the catalog.
    pub tables: u64,
    /// Blocks recorded with data.
    pub blocks: u64,
    /// Tombstones recorded (deleted buckets and dropped tables).
    pub tombstones: u64,
    /// Rows in the recorded blocks.
    pub rows: u64,
    /// Bytes of exported block data before compression.
    pub bytes_read: u64,
    /// Bytes newly written to the repository (after dedup, compression, encryption).
    pub bytes_stored: u64,
    /// Blocks that failed and were not backed up (a non-zero value means the backup is
    /// incomplete and must say so).
    pub failed_blocks: u64,
}

/// The manifest of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u32,
    /// This backup's id.
    pub id: BackupId,
    /// The previous backup in the chain (`None` for a full backup).
    pub parent: Option<BackupId>,
    /// The chain: the id of the full backup the chain starts with.
    pub chain: BackupId,
    /// Database name at the source.
    pub database: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// The engine that chose the blocks (`full`, `time`, `bitmap`).
    pub engine: String,
    /// When the backup started.
    pub started_at: DateTime<Utc>,
    /// When the backup finished (just before the manifest was committed).
    pub finished_at: DateTime<Utc>,
    /// Where the data came from.
    pub source: SourceInfo,
    /// The bucket width blocks were cut with.
    pub bucket_width: BucketWidth,
    /// The catalog at backup time (complete, also for incrementals).
    pub catalog: CatalogSnapshot,
    /// Table name → record.
    pub tables: BTreeMap<String, TableRecord>,
    /// Change-feed positions covered by this backup, if a feed was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_positions: Option<FeedPositions>,
    /// Counters.
    pub stats: BackupStats,
}

impl Manifest {
    /// Every blob this backup references (what garbage collection must keep).
    pub fn blob_ids(&self) -> BTreeSet<BlobId> {
        self.tables
            .values()
            .filter_map(|t| match t {
                TableRecord::Present { blocks } => Some(blocks.values()),
                TableRecord::Dropped => None,
            })
            .flatten()
            .filter_map(|b| match b {
                BlockRecord::Data(r) => Some(r.blob),
                BlockRecord::Deleted => None,
            })
            .collect()
    }

    /// Checks the manifest invariants: known version; a full backup has no parent and is
    /// its own chain; an incremental has a parent different from itself; time order;
    /// `min_ts <= max_ts` in every block.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |reason: String| Error::InvalidManifest {
            backup_id: self.id.to_hex(),
            reason,
        };
        if self.version != MANIFEST_VERSION {
            return Err(fail(format!(
                "unsupported manifest version {} (this build reads {MANIFEST_VERSION})",
                self.version
            )));
        }
        check_lineage(self.id, self.kind, self.parent, self.chain).map_err(|r| fail(r.into()))?;
        if self.finished_at < self.started_at {
            return Err(fail("finished before it started".into()));
        }
        for (table, record) in &self.tables {
            if let TableRecord::Present { blocks } = record {
                for (bucket, block) in blocks {
                    if let BlockRecord::Data(r) = block {
                        if r.min_ts > r.max_ts {
                            return Err(fail(format!(
                                "table {table} bucket {bucket}: min_ts > max_ts"
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The lineage rules shared by manifests and snapshots: a full backup has no parent and is
/// its own chain; an incremental has a parent other than itself.
pub(crate) fn check_lineage(
    id: BackupId,
    kind: BackupKind,
    parent: Option<BackupId>,
    chain: BackupId,
) -> Result<(), &'static str> {
    match (kind, parent) {
        (BackupKind::Full, Some(_)) => Err("a full backup has a parent"),
        (BackupKind::Full, None) if chain != id => Err("a full backup must start its own chain"),
        (BackupKind::Incremental, None) => Err("an incremental backup has no parent"),
        (BackupKind::Incremental, Some(p)) if p == id => {
            Err("an incremental backup is its own parent")
        }
        _ => Ok(()),
    }
}

/// The format-1 chain ending at `target`, oldest first.
pub fn chain_of<'a>(
    manifests: &'a [Manifest],
    target: &'a Manifest,
) -> Result<Vec<&'a Manifest>, Error> {
    let by_id: HashMap<BackupId, &Manifest> = manifests.iter().map(|m| (m.id, m)).collect();
    let broken = |reason: String| Error::BrokenChain {
        backup_id: target.id.to_hex(),
        reason,
    };
    let mut chain = vec![target];
    let mut cur = target;
    while cur.kind == BackupKind::Incremental {
        let Some(parent_id) = cur.parent else {
            return Err(broken(format!("incremental {} has no parent", cur.id)));
        };
        let Some(parent) = by_id.get(&parent_id) else {
            return Err(broken(format!(
                "parent {parent_id} of {} is missing from the repository",
                cur.id
            )));
        };
        if parent.chain != cur.chain || parent.database != cur.database {
            return Err(broken(format!(
                "parent {parent_id} of {} belongs to another chain or database",
                cur.id
            )));
        }
        if chain.len() > manifests.len() {
            return Err(broken("the parent links form a cycle".into()));
        }
        chain.push(parent);
        cur = parent;
    }
    if cur.id != target.chain {
        return Err(broken(format!(
            "the chain starts at {} but the backups name {} as its full backup",
            cur.id, target.chain
        )));
    }
    chain.reverse();
    Ok(chain)
}

/// Folds a format-1 chain (oldest first, as [`chain_of`] returns it) into the state of the
/// database at its last backup. The last backup's catalog decides which tables exist: a
/// table it does not list does not exist; a table it lists without folded blocks is empty.
pub fn fold(chain: &[&Manifest]) -> Result<DatabaseState, Error> {
    let Some(last) = chain.last() else {
        return Err(Error::BrokenChain {
            backup_id: String::new(),
            reason: "empty chain".into(),
        });
    };
    let mut tables: BTreeMap<String, BTreeMap<i64, BlockRef>> = BTreeMap::new();
    for m in chain {
        if m.kind == BackupKind::Full {
            tables.clear();
        }
        for (name, rec) in &m.tables {
            match rec {
                TableRecord::Dropped => {
                    tables.remove(name);
                }
                TableRecord::Present { blocks } => {
                    let t = tables.entry(name.clone()).or_default();
                    for (bucket, b) in blocks {
                        match b {
                            BlockRecord::Data(r) => {
                                t.insert(*bucket, *r);
                            }
                            BlockRecord::Deleted => {
                                t.remove(bucket);
                            }
                        }
                    }
                }
            }
        }
    }
    let catalog = last.catalog.clone();
    let mut out = BTreeMap::new();
    for t in &catalog.tables {
        out.insert(t.name.clone(), tables.remove(&t.name).unwrap_or_default());
    }
    Ok(DatabaseState {
        catalog,
        tables: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DatabaseDef, Precision};

    pub(crate) fn sample() -> Manifest {
        let id = BackupId::from_bytes([7; 16]);
        let mut blocks = BTreeMap::new();
        blocks.insert(
            3,
            BlockRecord::Data(BlockRef {
                blob: BlobId::from_bytes([1; 32]),
                rows: 10,
                min_ts: 5,
                max_ts: 9,
            }),
        );
        blocks.insert(4, BlockRecord::Deleted);
        let mut tables = BTreeMap::new();
        tables.insert("d0".to_owned(), TableRecord::Present { blocks });
        tables.insert("gone".to_owned(), TableRecord::Dropped);
        Manifest {
            version: MANIFEST_VERSION,
            id,
            parent: None,
            chain: id,
            database: "power".into(),
            kind: BackupKind::Full,
            engine: "full".into(),
            started_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            finished_at: DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
            source: SourceInfo::default(),
            bucket_width: BucketWidth::DAY,
            catalog: CatalogSnapshot {
                database: DatabaseDef {
                    name: "power".into(),
                    precision: Precision::Ms,
                    ddl: "CREATE DATABASE `power`".into(),
                },
                super_tables: vec![],
                skipped: Vec::new(),
                tables: vec![],
            },
            tables,
            feed_positions: None,
            stats: BackupStats::default(),
        }
    }

    #[test]
    fn manifest_round_trips_and_validates() {
        let m = sample();
        m.validate().unwrap();
        let text = serde_json::to_string(&m).unwrap();
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.blob_ids().len(), 1);
        let mut bad = m.clone();
        bad.kind = BackupKind::Incremental;
        assert!(bad.validate().is_err());
        let mut bad = m;
        bad.version = 99;
        assert!(bad.validate().is_err());
    }
}
