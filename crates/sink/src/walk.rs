//! Reachability: snapshot → tree root → tree nodes → shards → data blobs, and snapshot →
//! catalog → super table parts. What `verify` checks and what `prune` keeps.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;
use taosbackup_core::{
    BackupId, BackupSnapshot, BlobId, CatalogRoot, NodeEntry, Shard, SuperTablePart, TreeEntry,
    TreeNode, TreeRoot,
};

use crate::error::Result;
use crate::repo::{Repo, snapshot_path};

/// Tree objects read at once.
const READ_CONCURRENCY: usize = 16;

/// A tree node read: its id, its description, its bytes, its root entry and the backup
/// that names it.
type NodeRead = (BlobId, String, Result<Vec<u8>>, NodeEntry, BackupId);

/// What a set of snapshots reaches.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// Tree root, tree node, shard, catalog and super table blobs.
    pub(crate) tree_blobs: HashSet<BlobId>,
    /// Data blobs (block chunks).
    pub(crate) data_blobs: HashSet<BlobId>,
    /// Damaged or missing objects: (object, what is wrong).
    pub(crate) problems: Vec<(String, String)>,
}

impl Reach {
    /// Every reachable blob.
    pub(crate) fn all(&self) -> HashSet<BlobId> {
        self.tree_blobs
            .iter()
            .chain(&self.data_blobs)
            .copied()
            .collect()
    }
}

fn role(id: &BlobId, what: &str, snapshot: &BackupId) -> String {
    format!("blob {id} ({what} of backup {snapshot})")
}

impl Repo {
    /// Walks the trees of `snapshots`, reading each distinct tree object once (from the
    /// index: committed blobs only). Each object that fails to read, parse or match its
    /// parent's description is a problem; the walk goes on past it.
    pub(crate) async fn reach(&self, snapshots: &[BackupSnapshot]) -> Result<Reach> {
        let mut reach = Reach::default();
        // Tree and catalog roots first (one per snapshot, often shared).
        let mut nodes: BTreeMap<BlobId, (NodeEntry, BackupId)> = BTreeMap::new();
        let mut shards: BTreeMap<BlobId, (TreeEntry, BackupId)> = BTreeMap::new();
        let mut parts: BTreeMap<BlobId, BackupId> = BTreeMap::new();
        let mut seen_roots: HashMap<BlobId, ()> = HashMap::new();
        for s in snapshots {
            if seen_roots.insert(s.tree, ()).is_none() {
                reach.tree_blobs.insert(s.tree);
                match self.read_blob(&s.tree).await {
                    Err(e) => reach
                        .problems
                        .push((role(&s.tree, "tree", &s.id), e.to_string())),
                    Ok(bytes) => {
                        let what = role(&s.tree, "tree", &s.id);
                        match TreeRoot::decode(&bytes, &what).and_then(|t| {
                            t.validate(&what)?;
                            Ok(t)
                        }) {
                            Err(e) => reach.problems.push((what, e.to_string())),
                            Ok(root) => {
                                for n in root.nodes {
                                    nodes.entry(n.node).or_insert((n, s.id));
                                }
                            }
                        }
                    }
                }
            }
            if seen_roots.insert(s.catalog, ()).is_none() {
                reach.tree_blobs.insert(s.catalog);
                let what = role(&s.catalog, "catalog", &s.id);
                match self.read_blob(&s.catalog).await {
                    Err(e) => reach.problems.push((what, e.to_string())),
                    Ok(bytes) => match CatalogRoot::decode(&bytes, &what) {
                        Err(e) => reach.problems.push((what, e.to_string())),
                        Ok(c) => {
                            for st in c.super_tables {
                                parts.entry(st.def).or_insert(s.id);
                                // A super table's current dictionary is in `dictionaries`
                                // too; listed here as well in case a writer left it out.
                                reach.data_blobs.extend(st.dictionary);
                            }
                            // Dictionaries the snapshot's data blobs are compressed with.
                            reach.data_blobs.extend(c.dictionaries);
                        }
                    },
                }
            }
        }
        for (id, backup) in &parts {
            reach.tree_blobs.insert(*id);
            let what = role(id, "super table", backup);
            match self.read_blob(id).await {
                Err(e) => reach.problems.push((what, e.to_string())),
                Ok(bytes) => {
                    if let Err(e) = SuperTablePart::decode(&bytes, &what) {
                        reach.problems.push((what, e.to_string()));
                    }
                }
            }
        }
        let results: Vec<NodeRead> =
            futures::stream::iter(nodes.into_iter().map(|(id, (entry, backup))| async move {
                let what = role(&id, "tree node", &backup);
                (id, what, self.read_blob(&id).await, entry, backup)
            }))
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        for (id, what, bytes, entry, backup) in results {
            reach.tree_blobs.insert(id);
            let node = bytes.and_then(|b| {
                let node = TreeNode::decode(&b, &what)?;
                node.check_against(&entry, &what)?;
                Ok(node)
            });
            match node {
                Err(e) => reach.problems.push((what, e.to_string())),
                Ok(node) => {
                    for e in node.shards {
                        shards.entry(e.shard).or_insert((e, backup));
                    }
                }
            }
        }
        let results: Vec<(BlobId, String, Result<Vec<u8>>, TreeEntry)> =
            futures::stream::iter(shards.into_iter().map(|(id, (entry, backup))| async move {
                let what = role(&id, "shard", &backup);
                (id, what, self.read_blob(&id).await, entry)
            }))
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        for (id, what, bytes, entry) in results {
            reach.tree_blobs.insert(id);
            let shard = bytes.and_then(|b| {
                let shard = Shard::decode(&b, &what)?;
                shard.check_against(&entry, &what)?;
                Ok(shard)
            });
            match shard {
                Err(e) => reach.problems.push((what, e.to_string())),
                Ok(shard) => {
                    for t in shard.tables {
                        reach.data_blobs.extend(t.blocks.values().map(|b| b.blob));
                    }
                }
            }
        }
        Ok(reach)
    }

    /// Loads every snapshot from the repository itself (not the cache); a snapshot that does
    /// not load is returned as a problem (`snapshots/<id>`, why).
    pub(crate) async fn load_all_snapshots(
        &self,
    ) -> Result<(Vec<BackupSnapshot>, Vec<(String, String)>)> {
        let ids = self.list_backups().await?;
        let loaded: Vec<(BackupId, Result<BackupSnapshot>)> = futures::stream::iter(
            ids.into_iter()
                .map(|id| async move { (id, self.load_snapshot(&id).await) }),
        )
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (id, r) in loaded {
            match r {
                Ok(s) => ok.push(s),
                Err(e) => bad.push((snapshot_path(&id), e.to_string())),
            }
        }
        ok.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok((ok, bad))
    }
}
