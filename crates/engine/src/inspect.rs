//! Reading one snapshot: its state (for restore and verify) and what it changed relative to
//! its parent (for `show`). Only that snapshot's objects are read (and, for `show`, the
//! parent's shards that differ).

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;

use taosbackup_core::{
    BackupKind, BackupSnapshot, BlobId, BlockRef, CatalogRoot, CatalogSnapshot, DatabaseState,
    Repository, RepositoryErrorKind, SuperTablePart, TableDef, TableKind,
};

use crate::EngineError;
use crate::parent::{read_object, read_shards, read_tree};

/// Tree objects read by a [`load_state`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ObjectsRead {
    /// The snapshot object, the tree root and nodes, catalog root and parts.
    pub metadata: u64,
    /// Shards.
    pub shards: u64,
    /// Of `metadata`, the tree's nodes (the root not counted).
    pub tree_nodes: u64,
}

/// The state `snapshot` describes. With `tables` or `stables` given, only the shards that
/// can hold those tables are read (the catalog then lists only their tables).
pub async fn load_state(
    repo: &dyn Repository,
    snapshot: &BackupSnapshot,
    tables: &[String],
    stables: &[String],
) -> Result<(DatabaseState, ObjectsRead), EngineError> {
    let mut read = ObjectsRead {
        metadata: 1,
        shards: 0,
        tree_nodes: 0,
    };
    let root = read_object(
        repo,
        snapshot,
        &snapshot.catalog,
        "catalog",
        CatalogRoot::decode,
    )
    .await?;
    read.metadata += 1;
    let mut super_tables = Vec::with_capacity(root.super_tables.len());
    for st in &root.super_tables {
        let part = read_object(
            repo,
            snapshot,
            &st.def,
            "super table",
            SuperTablePart::decode,
        )
        .await?;
        read.metadata += 1;
        super_tables.push(part.def);
    }
    let (tree, tree_reads) = read_tree(repo, snapshot).await?;
    read.metadata += tree_reads;
    read.tree_nodes = tree_reads - 1;
    let all = tables.is_empty() && stables.is_empty();
    let wanted = tree.shards.iter().filter(|entry| {
        all || entry
            .super_table
            .as_ref()
            .is_some_and(|s| stables.contains(s))
            || tables
                .iter()
                .any(|t| entry.first.as_str() <= t.as_str() && t.as_str() <= entry.last.as_str())
    });
    let mut shards = std::pin::pin!(read_shards(repo, snapshot, wanted));
    let mut defs: Vec<TableDef> = Vec::new();
    let mut blocks: BTreeMap<String, BTreeMap<i64, BlockRef>> = BTreeMap::new();
    while let Some(shard) = shards.next().await {
        let shard = shard?;
        read.shards += 1;
        for t in shard.tables {
            blocks.insert(t.def.name.clone(), t.blocks);
            defs.push(t.def);
        }
    }
    Ok((
        DatabaseState {
            catalog: CatalogSnapshot {
                database: root.database,
                super_tables,
                skipped: root.skipped,
                tables: defs,
            },
            tables: blocks,
        },
        read,
    ))
}

/// One table a backup changed, as `show` presents it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableChanges {
    /// Table name.
    pub name: String,
    /// `normal`, `child`, or `dropped`.
    pub kind: String,
    /// The super table of a child table.
    pub super_table: Option<String>,
    /// Blocks this backup stored for it (new or changed since the parent).
    pub blocks: u64,
    /// Buckets the parent held that this backup has no rows for.
    pub tombstones: u64,
    /// Rows in those blocks.
    pub rows: u64,
    /// The table was dropped since the parent.
    pub dropped: bool,
}

/// The tables `snapshot` changed relative to its parent (every table, with every block, for
/// a full backup or when the parent was forgotten), by name; and whether they are relative
/// to the parent.
pub async fn changes(
    repo: &dyn Repository,
    snapshot: &BackupSnapshot,
) -> Result<(Vec<TableChanges>, bool), EngineError> {
    let parent = match (snapshot.kind, snapshot.parent) {
        (BackupKind::Incremental, Some(p)) => match repo.load_snapshot(&p).await {
            Ok(s) => Some(s),
            Err(e) if e.kind() == RepositoryErrorKind::NotFound => None,
            Err(e) => return Err(EngineError::repo(format!("loading backup {p}"), e)),
        },
        _ => None,
    };
    let (tree, _) = read_tree(repo, snapshot).await?;
    let mut before: BTreeMap<String, BTreeMap<i64, BlockRef>> = BTreeMap::new();
    let mut unchanged: HashSet<BlobId> = HashSet::new();
    if let Some(p) = &parent {
        let (ptree, _) = read_tree(repo, p).await?;
        let mine: HashSet<BlobId> = tree.shards.iter().map(|e| e.shard).collect();
        unchanged.extend(
            ptree
                .shards
                .iter()
                .map(|e| e.shard)
                .filter(|s| mine.contains(s)),
        );
        let differ = ptree
            .shards
            .iter()
            .filter(|e| !unchanged.contains(&e.shard));
        let mut shards = std::pin::pin!(read_shards(repo, p, differ));
        while let Some(shard) = shards.next().await {
            for t in shard?.tables {
                before.insert(t.def.name, t.blocks);
            }
        }
    }
    let mut out = Vec::new();
    let changed = tree.shards.iter().filter(|e| !unchanged.contains(&e.shard));
    let mut shards = std::pin::pin!(read_shards(repo, snapshot, changed));
    while let Some(shard) = shards.next().await {
        for t in shard?.tables {
            let prev = before.remove(&t.def.name);
            let mut c = TableChanges {
                name: t.def.name.clone(),
                kind: match t.def.kind {
                    TableKind::Normal => "normal".into(),
                    TableKind::Child => "child".into(),
                },
                super_table: t.def.super_table.clone(),
                blocks: 0,
                tombstones: 0,
                rows: 0,
                dropped: false,
            };
            for (bucket, b) in &t.blocks {
                if prev.as_ref().and_then(|p| p.get(bucket)) != Some(b) {
                    c.blocks += 1;
                    c.rows += b.rows;
                }
            }
            if let Some(p) = &prev {
                c.tombstones = p.keys().filter(|k| !t.blocks.contains_key(k)).count() as u64;
                if c.blocks == 0 && c.tombstones == 0 {
                    continue;
                }
            }
            out.push(c);
        }
    }
    for name in before.into_keys() {
        out.push(TableChanges {
            name,
            kind: "dropped".into(),
            super_table: None,
            blocks: 0,
            tombstones: 0,
            rows: 0,
            dropped: true,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, parent.is_some()))
}
