//! The `--engine` strategies behind one trait: each decides which blocks a backup exports
//! (and against which parent) and keeps the tracker's books after the commit. One file each:
//! [`full`], [`time`], [`bitmap`].

mod bitmap;
mod full;
mod time;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use taosbackup_core::{BackupSnapshot, BlockRef, Bucket, CatalogSnapshot, Repository};

use crate::EngineError;
use crate::backup::{BackupRequest, matching};
use crate::parent::{Layout, ParentView};
use crate::tracker::{BlockKey, BucketRun, Snapshot, Tracker};

/// The block-selection strategy (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Every block.
    Full,
    /// Whole buckets from each table's previous maximum timestamp on (misses late rows,
    /// updates of older rows and deletes).
    Time,
    /// Exactly the changed blocks the change tracker recorded, plus tombstones.
    Bitmap,
}

impl EngineKind {
    /// The name used on the command line and in snapshots.
    pub fn as_str(&self) -> &'static str {
        match self {
            EngineKind::Full => "full",
            EngineKind::Time => "time",
            EngineKind::Bitmap => "bitmap",
        }
    }

    /// The strategy implementing this engine.
    pub(crate) fn strategy(&self) -> &'static dyn Strategy {
        match self {
            EngineKind::Full => &full::Full,
            EngineKind::Time => &time::Time,
            EngineKind::Bitmap => &bitmap::Bitmap,
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(EngineKind::Full),
            "time" => Ok(EngineKind::Time),
            "bitmap" => Ok(EngineKind::Bitmap),
            _ => Err(EngineError::InvalidRequest(format!(
                "unknown engine {s:?}: use full, time or bitmap"
            ))),
        }
    }
}

/// What the bitmap engine does when the tracker cannot prove it saw every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnGap {
    /// Take a full backup instead, logging why.
    #[default]
    Full,
    /// Fail the backup.
    Fail,
}

impl FromStr for OnGap {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(OnGap::Full),
            "fail" => Ok(OnGap::Fail),
            _ => Err(EngineError::InvalidRequest(format!(
                "unknown on_gap value {s:?}: use full or fail"
            ))),
        }
    }
}

/// The work for one table.
#[derive(Debug, Clone)]
pub(crate) struct TableTask {
    pub(crate) table: String,
    /// Export everything (else `buckets`); the table's blocks are then replaced.
    pub(crate) whole: bool,
    /// Ascending, disjoint, not adjacent.
    pub(crate) buckets: Vec<BucketRun>,
    /// Which of the parent's buckets become tombstones (are removed) if nothing is found.
    pub(crate) tombstones: Tombstones,
}

/// The buckets of the parent a task's table loses where the export finds no rows. Named by
/// rule, not listed: the parent's blocks of the table need not be read when the task is
/// decided, so that the exports can start while they are (`backup::backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tombstones {
    /// None.
    None,
    /// The buckets of the task's runs that the parent holds (rows deleted since).
    Changed,
    /// Every bucket the parent holds (a table dropped and created again since).
    All,
}

impl TableTask {
    /// Buckets to export (0 for a whole table: its count is not known in advance).
    pub(crate) fn blocks(&self) -> u64 {
        self.buckets.iter().map(BucketRun::count).sum()
    }

    pub(crate) fn whole(table: &str, tombstones: Tombstones) -> TableTask {
        TableTask {
            table: table.to_string(),
            whole: true,
            buckets: Vec::new(),
            tombstones,
        }
    }

    /// The buckets that become tombstones if nothing is found in them, ascending, given the
    /// parent's blocks of the table (`None`: the parent does not hold it).
    pub(crate) fn tombstones_in(&self, parent: Option<&BTreeMap<i64, BlockRef>>) -> Vec<Bucket> {
        let Some(blocks) = parent else {
            return Vec::new();
        };
        match self.tombstones {
            Tombstones::None => Vec::new(),
            Tombstones::Changed => matching(&self.buckets, blocks).map(|(k, _)| k).collect(),
            Tombstones::All => blocks.keys().map(|&k| Bucket(k)).collect(),
        }
    }
}

/// Which backup an incremental is computed against.
pub(crate) enum ParentChoice {
    /// None: the backup is a full one (with the reason, when one was not asked for).
    Full(Option<String>),
    /// This snapshot.
    Parent(Box<BackupSnapshot>),
}

/// A block-selection strategy.
#[async_trait]
pub(crate) trait Strategy: Send + Sync {
    /// The engine this strategy implements.
    fn kind(&self) -> EngineKind;

    /// The parent an incremental is computed against, or why the backup is a full one.
    async fn choose_parent(
        &self,
        repo: &dyn Repository,
        req: &BackupRequest,
        snapshot: Option<&Snapshot>,
    ) -> Result<ParentChoice, EngineError>;

    /// Why this strategy cannot build an incremental on `parent` given the tracker's
    /// `snapshot` (`None`: it can). [`Strategy::choose_parent`] applies it; planning against
    /// an in-memory parent calls it directly.
    fn vouch(&self, parent: &BackupSnapshot, snapshot: Option<&Snapshot>) -> Option<String>;

    /// Adjusts the catalog read before the tracker's snapshot (the bitmap engine drops the
    /// tables the feed saw dropped since).
    fn prepare_catalog(&self, _catalog: &mut CatalogSnapshot, _snapshot: Option<&Snapshot>) {}

    /// Catalog tables whose parent blocks [`Strategy::incremental`] reads, besides the
    /// shards that changed (`None`: every table's).
    fn tables_needed(
        &self,
        catalog: &CatalogSnapshot,
        snapshot: Option<&Snapshot>,
    ) -> Option<Vec<String>>;

    /// The tables to export in an incremental on `parent` (whose needed shards are read).
    fn incremental(
        &self,
        req: &BackupRequest,
        catalog: &CatalogSnapshot,
        layout: &Layout,
        parent: &ParentView,
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<TableTask>, EngineError>;

    /// The tracker's books after an incremental this strategy decided is durable:
    /// `tombstoned` are the buckets it removed.
    fn after_incremental(&self, tracker: &mut Tracker, snapshot: Snapshot, tombstoned: &[BlockKey]);
}

/// Whether the parent holds table `name`, and its blocks when its shard is read.
pub(crate) fn prev<'a>(
    layout: &Layout,
    parent: &'a ParentView,
    name: &str,
) -> Option<Option<&'a std::collections::BTreeMap<i64, BlockRef>>> {
    if let Some(b) = parent.blocks(name) {
        return Some(Some(b));
    }
    let c = layout.chunk_of.get(name)?;
    layout.chunks[*c].matched.map(|_| None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip() {
        for e in [EngineKind::Full, EngineKind::Time, EngineKind::Bitmap] {
            assert_eq!(e.as_str().parse::<EngineKind>().unwrap(), e);
            assert_eq!(e.strategy().kind(), e);
        }
        assert!("fast".parse::<EngineKind>().is_err());
        assert_eq!("FAIL".parse::<OnGap>().unwrap(), OnGap::Fail);
        assert!("maybe".parse::<OnGap>().is_err());
    }
}
