//! Step 3 of a backup: the new snapshot tree, then the snapshot object last.
//!
//! A shard of the current catalog whose tables are exactly the parent's (same names and
//! definitions) and had nothing exported is the parent's shard, by id: nothing is written for
//! it. Every other shard is rebuilt from the parent's blocks of its tables with this run's
//! blocks laid over them (a whole-table export replaces a table's blocks; a changed bucket
//! that had rows in the parent and has none now is removed: a tombstone). Equal shards have
//! equal ids, so even a rebuilt shard is stored only if it differs from every stored one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use taosbackup_core::{
    BackupId, BackupKind, BackupSnapshot, BackupStats, BlobId, CatalogRoot, FeedPositions,
    PlannedNode, Repository, SNAPSHOT_VERSION, Shard, ShardBlocks, ShardTable, SuperTablePart,
    SuperTableRef, TableDef, Tree, TreeObject, TreeRoot,
};
use tokio_util::sync::CancellationToken;

use super::export::{Dictionaries, Exported};
use super::tasks::Tasks;
use super::{BackupReport, BackupRequest, Decision, phase};
use crate::EngineError;
use crate::parent::{store_object, store_shard};
use crate::tracker::{BlockKey, Snapshot};

/// A committed backup and what the tracker needs to know about it.
pub(crate) struct Committed {
    pub(crate) snapshot: BackupSnapshot,
    pub(crate) full_reason: Option<String>,
    /// Every block this run stored.
    pub(crate) stored: Vec<BlockKey>,
    /// The blocks this run removed because their buckets have no rows any more.
    pub(crate) tombstoned: Vec<BlockKey>,
    /// Tree objects stored: shards, tree nodes, the root.
    pub(crate) objects_written: u64,
    pub(crate) tree_bytes_written: u64,
    pub(crate) parent_objects_read: u64,
    pub(crate) skipped: Vec<taosbackup_core::SkippedObject>,
    /// Tables recorded as dropped (counted in `stats.tombstones` too).
    pub(crate) dropped_tables: u64,
}

impl Committed {
    pub(crate) fn report(self, duration: Duration) -> BackupReport {
        BackupReport {
            snapshot: self.snapshot,
            full_reason: self.full_reason,
            duration,
            tree_objects_written: self.objects_written,
            tree_bytes_written: self.tree_bytes_written,
            parent_objects_read: self.parent_objects_read,
            skipped: self.skipped,
            dropped_tables: self.dropped_tables,
        }
    }
}

/// Builds and stores the snapshot tree of `d` with `exported`, then commits the snapshot.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit(
    shared: &Arc<dyn Repository>,
    req: &BackupRequest,
    mut d: Decision,
    (exported, dictionaries): (Vec<Exported>, Dictionaries),
    feed: Option<(&Snapshot, &str)>,
    prefetched: Option<Tasks<Vec<(usize, ShardBlocks)>>>,
    cancel: &CancellationToken,
    started_at: DateTime<Utc>,
    bytes_before: u64,
) -> Result<Committed, EngineError> {
    let repo = shared.as_ref();
    let t0 = std::time::Instant::now();
    let mut stats = BackupStats {
        tables: d.catalog.tables.len() as u64,
        ..BackupStats::default()
    };
    let mut stored = Vec::new();
    let mut tombstoned = Vec::new();
    let mut updates: HashMap<String, Exported> = HashMap::with_capacity(exported.len());
    for e in exported {
        for (bucket, (r, raw)) in &e.blocks {
            stats.rows += r.rows;
            stats.blocks += 1;
            stats.bytes_read += raw;
            stored.push(BlockKey::new(e.task.table.as_str(), *bucket));
        }
        updates.insert(e.task.table.clone(), e);
    }
    stats.tombstones += d.dropped.len() as u64;
    let data_bytes = repo.bytes_stored();
    // The parent shards of changed tables in matched shards: those read while the exports
    // ran, then any still missing.
    if let Some(p) = &mut d.parent {
        if let Some(read) = prefetched {
            p.add_loaded(read.finish().await?.into_iter().flatten().collect());
        }
        let need: Vec<usize> = d
            .layout
            .matched_entries(updates.keys().map(String::as_str))
            .collect();
        p.load(repo, need).await?;
    }
    let parent_objects_read = d.parent.as_ref().map_or(0, |p| p.objects_read);
    phase("commit: parent shards read", t0, 0);
    let mut entries = Vec::with_capacity(d.layout.chunks.len());
    let mut objects_written = 0u64;
    // The definitions move into the rebuilt shards (each table is in exactly one chunk):
    // no copy of the tables' tags and columns, and none left to free at the end.
    let mut defs: Vec<Option<TableDef>> = std::mem::take(&mut d.catalog.tables)
        .into_iter()
        .map(Some)
        .collect();
    // Each new shard is encoded, compressed, sealed and stored by a task of its own: a 1%
    // incremental at 50 M rows stores ~120 of them, which one after another on the commit's
    // task took ~20 ms while the other core waited. A slot comes back with each shard's id.
    let mut shards = Tasks::new(req.parallel, "a shard's store task");
    for chunk in &mut d.layout.chunks {
        let order = &d.layout.order[chunk.range.clone()];
        let changed = order
            .iter()
            .filter_map(|&i| defs[i].as_ref())
            .any(|t| updates.contains_key(&t.name));
        if let (Some(p), Some(i), false) = (&d.parent, chunk.matched, changed) {
            entries.push(p.tree.shards[i].clone());
            continue;
        }
        let mut tables = Vec::with_capacity(order.len());
        for def in order.iter().filter_map(|&i| defs[i].take()) {
            let update = updates.get(&def.name);
            // Each table's parent blocks are taken here once (a table is in one chunk), so
            // they move into the new entry rather than being copied.
            let held = d.parent.as_mut().and_then(|p| p.take_blocks(&def.name));
            let blocks = match update {
                None => held.unwrap_or_default(),
                Some(_) if held.is_none() && chunk.matched.is_some() => {
                    // A matched shard holds the table: its tombstones would go unresolved.
                    return Err(EngineError::internal(format!(
                        "table {} has changes but its parent shard was not read",
                        def.name
                    )));
                }
                Some(u) => {
                    let tombstones = u.task.tombstones_in(held.as_ref());
                    let mut blocks = if u.task.whole {
                        BTreeMap::new()
                    } else {
                        held.unwrap_or_default()
                    };
                    // Shards key blocks by the bare bucket index (the snapshot format).
                    for b in &tombstones {
                        blocks.remove(&b.index());
                        if !u.blocks.contains_key(b) {
                            stats.tombstones += 1;
                            tombstoned.push(BlockKey::new(def.name.as_str(), *b));
                        }
                    }
                    for (bucket, (r, _)) in &u.blocks {
                        blocks.insert(bucket.index(), *r);
                    }
                    blocks
                }
            };
            tables.push(ShardTable { def, blocks });
        }
        if tables.len() != order.len() {
            // A table in two chunks: the layout is a partition of the catalog, so this is a
            // bug, and going on would leave the table out of one of its shards.
            return Err(EngineError::Internal(format!(
                "a shard of {} tables got {} definitions",
                order.len(),
                tables.len()
            )));
        }
        let shard = Shard {
            version: SNAPSHOT_VERSION,
            tables,
        };
        // The layout fingerprinted exactly these definitions already.
        // Its id is filled in once it is stored.
        let slot = shard
            .entry_with_fingerprint(BlobId::from_bytes([0; 32]), chunk.defs.clone())
            .map(|e| {
                entries.push(e);
                entries.len() - 1
            });
        let repo = shared.clone();
        let json = chunk.json.take();
        shards
            .spawn(async move {
                let id = store_shard(repo.as_ref(), shard, json).await?;
                Ok((slot, id))
            })
            .await?;
        objects_written += 1;
    }
    for (slot, id) in shards.finish().await? {
        if let Some(e) = slot.and_then(|i| entries.get_mut(i)) {
            e.shard = id;
        }
    }
    phase("commit: shards stored", t0, objects_written as usize);
    // The nodes: a parent node whose shards are all unchanged is reused by id.
    let mut nodes = Vec::new();
    for planned in Tree::plan(entries, d.parent.as_ref().map(|p| &p.tree)) {
        match planned {
            PlannedNode::Reused(e) => nodes.push(e),
            PlannedNode::New(node) => {
                let entry = node.entry(BlobId::from_bytes([0; 32]));
                let id = store_object(repo, TreeObject::Node(node), "tree node").await?;
                objects_written += 1;
                if let Some(mut e) = entry {
                    e.node = id;
                    nodes.push(e);
                }
            }
        }
    }
    let tree = store_object(
        repo,
        TreeObject::Tree(TreeRoot {
            version: SNAPSHOT_VERSION,
            nodes,
        }),
        "tree",
    )
    .await?;
    objects_written += 1;
    phase("commit: tree stored", t0, objects_written as usize);
    let mut parts = Vec::with_capacity(d.catalog.super_tables.len());
    for st in &d.catalog.super_tables {
        let id = store_object(
            repo,
            TreeObject::SuperTable(SuperTablePart {
                version: SNAPSHOT_VERSION,
                def: st.clone(),
            }),
            "super table part",
        )
        .await?;
        parts.push(SuperTableRef {
            name: st.name.clone(),
            def: id,
            dictionary: dictionaries.current.get(&st.name).copied(),
        });
    }
    let catalog = store_object(
        repo,
        TreeObject::Catalog(CatalogRoot {
            version: SNAPSHOT_VERSION,
            database: d.catalog.database.clone(),
            super_tables: parts,
            skipped: d.catalog.skipped.clone(),
            dictionaries: dictionaries.all.into_iter().collect(),
        }),
        "catalog",
    )
    .await?;
    phase("commit: catalog stored", t0, 0);
    let tree_bytes_written = repo.bytes_stored().saturating_sub(data_bytes);
    let id = BackupId::from_bytes(rand::random());
    let (parent, chain) = match (&d.kind, &d.parent) {
        (BackupKind::Incremental, Some(p)) => (Some(p.snapshot.id), p.snapshot.chain),
        _ => (None, id),
    };
    // Blobs are written; what the snapshot adds is small. Count before committing.
    stats.bytes_stored = repo.bytes_stored().saturating_sub(bytes_before);
    let snapshot = BackupSnapshot {
        version: SNAPSHOT_VERSION,
        id,
        database: req.database.clone(),
        kind: d.kind,
        engine: req.engine.as_str().to_string(),
        parent,
        chain,
        started_at,
        finished_at: Utc::now(),
        source: req.source_info.clone(),
        bucket_width: req.bucket_width,
        precision: d.catalog.database.precision,
        tree,
        catalog,
        feed_positions: feed.map(|(s, name)| FeedPositions {
            feed: name.to_string(),
            positions: s.positions().clone(),
        }),
        stats,
    };
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    repo.commit_snapshot(&snapshot)
        .await
        .map_err(|e| EngineError::repo(format!("committing backup {id}"), e))?;
    phase("commit: snapshot committed", t0, 0);
    tracing::info!(
        backup = %id,
        kind = if snapshot.kind == BackupKind::Full { "full" } else { "incremental" },
        rows = snapshot.stats.rows,
        blocks = snapshot.stats.blocks,
        objects_written,
        "backup committed"
    );
    Ok(Committed {
        snapshot,
        skipped: d.catalog.skipped.clone(),
        dropped_tables: d.dropped.len() as u64,
        full_reason: d.full_reason,
        stored,
        tombstoned,
        objects_written,
        tree_bytes_written,
        parent_objects_read,
    })
}
