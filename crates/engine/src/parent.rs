//! The parent snapshot a backup is computed against, read lazily: its tree (root and nodes)
//! always, its shards only where the backup needs them.
//!
//! The current catalog is cut into shards the same way the parent's tables were
//! ([`taosbackup_core::layout`]: by super table and content-defined name ranges). A current
//! shard whose key, size and definition [`fingerprint`](taosbackup_core::fingerprint) equal
//! a parent tree entry holds exactly the parent's tables with the same definitions
//! ("matched"); its parent shard is read only if one of its tables has work. Every parent
//! shard no current shard matches is read: it holds every dropped table and every table
//! whose definition changed.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use taosbackup_core::{
    BackupSnapshot, BlobId, BlockRef, CatalogSnapshot, DatabaseState, DefsJson, Repository, Shard,
    ShardBlocks, ShardEncoding, TableDef, Tree, TreeEntry, TreeNode, TreeObject, TreeRoot, layout,
    shard_order,
};

use crate::EngineError;

/// Shards read at once.
const READ_CONCURRENCY: usize = 16;

/// The current catalog cut into shards.
#[derive(Debug)]
pub(crate) struct Layout {
    /// Catalog table indices in shard order.
    pub(crate) order: Vec<usize>,
    /// The shards, as ranges of `order`, with their fingerprints.
    pub(crate) chunks: Vec<Chunk>,
    /// Table name → chunk index.
    pub(crate) chunk_of: HashMap<String, usize>,
}

/// One shard of the current catalog.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) range: Range<usize>,
    /// The [`fingerprint`](taosbackup_core::fingerprint) of its tables' definitions (a
    /// rebuilt shard's tree entry needs it).
    pub(crate) defs: String,
    /// The definitions' JSON the fingerprint was taken over, which a rebuilt binary shard
    /// stores ([`Shard::encode_binary_with`]); taken by the commit.
    pub(crate) json: Option<DefsJson>,
    /// The parent tree entry holding exactly these tables with these definitions.
    pub(crate) matched: Option<usize>,
}

impl Layout {
    /// Cuts `catalog` and matches its shards against `parent` (if any).
    pub(crate) fn new(catalog: &CatalogSnapshot, parent: Option<&Tree>) -> Layout {
        let mut layout = Layout::cut(catalog);
        if let Some(tree) = parent {
            layout.match_parent(catalog, tree);
        }
        layout
    }

    /// Cuts `catalog` into shards, none matched yet: the part that needs only the catalog
    /// (the sort, the cuts and the fingerprints), which an incremental makes while its
    /// change feed catches up.
    pub(crate) fn cut(catalog: &CatalogSnapshot) -> Layout {
        let mut order: Vec<usize> = (0..catalog.tables.len()).collect();
        order.sort_by(|&a, &b| shard_order(&catalog.tables[a], &catalog.tables[b]));
        let defs: Vec<&TableDef> = order.iter().map(|&i| &catalog.tables[i]).collect();
        let mut chunks = Vec::new();
        let mut chunk_of = HashMap::with_capacity(defs.len());
        for range in layout(&defs) {
            let slice = &defs[range.clone()];
            for d in slice {
                chunk_of.insert(d.name.clone(), chunks.len());
            }
            let json = DefsJson::of(slice);
            chunks.push(Chunk {
                defs: json.fingerprint(),
                json: Some(json),
                range,
                matched: None,
            });
        }
        Layout {
            order,
            chunks,
            chunk_of,
        }
    }

    /// The parent tree entries that hold exactly the current shards of `tables` (the
    /// matched ones; a table in an unmatched shard, or unknown, gives none).
    pub(crate) fn matched_entries<'a>(
        &'a self,
        tables: impl IntoIterator<Item = &'a str> + 'a,
    ) -> impl Iterator<Item = usize> + 'a {
        tables
            .into_iter()
            .filter_map(|t| self.chunk_of.get(t))
            .filter_map(|&c| self.chunks[c].matched)
    }

    /// Matches each shard of this cut of `catalog` against the entries of `parent`.
    pub(crate) fn match_parent(&mut self, catalog: &CatalogSnapshot, parent: &Tree) {
        let by_key: HashMap<(&Option<String>, &str), usize> = parent
            .shards
            .iter()
            .enumerate()
            .map(|(i, e)| ((&e.super_table, e.first.as_str()), i))
            .collect();
        for chunk in &mut self.chunks {
            let slice = &self.order[chunk.range.clone()];
            let (Some(&first), Some(&last)) = (slice.first(), slice.last()) else {
                continue;
            };
            let (first, last) = (&catalog.tables[first], &catalog.tables[last]);
            chunk.matched = by_key
                .get(&(&first.super_table, first.name.as_str()))
                .copied()
                .filter(|&i| {
                    let e = &parent.shards[i];
                    e.last == last.name && e.tables == slice.len() as u64 && e.defs == chunk.defs
                });
        }
    }
}

/// The parent snapshot with the shards read so far.
#[derive(Debug)]
pub(crate) struct ParentView {
    pub(crate) snapshot: BackupSnapshot,
    pub(crate) tree: Tree,
    /// Tree entry index → its shard's tables and blocks, once read.
    loaded: HashMap<usize, ShardBlocks>,
    /// Table name → (entry index, position in the shard) for the loaded shards.
    tables: HashMap<String, (usize, usize)>,
    /// Entries no current shard matches (read before deciding).
    pub(crate) unmatched: Vec<usize>,
    /// Blobs read (for tests and the restore count).
    pub(crate) objects_read: u64,
}

impl ParentView {
    /// Reads the tree (root and nodes) of `snapshot`.
    pub(crate) async fn open(
        repo: &dyn Repository,
        snapshot: BackupSnapshot,
    ) -> Result<ParentView, EngineError> {
        let (tree, objects_read) = read_tree(repo, &snapshot).await?;
        Ok(ParentView {
            snapshot,
            tree,
            loaded: HashMap::new(),
            tables: HashMap::new(),
            unmatched: Vec::new(),
            objects_read,
        })
    }

    /// An in-memory parent for `state` (planning benchmarks and tests): every shard is
    /// loaded; the blob ids are not real.
    pub fn from_state(snapshot: BackupSnapshot, state: &DatabaseState) -> ParentView {
        let shards = state.shards();
        let mut entries = Vec::new();
        let mut loaded = HashMap::new();
        let mut tables = HashMap::new();
        for (i, s) in shards.into_iter().enumerate() {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            if let Some(e) = s.entry(BlobId::from_bytes(id)) {
                entries.push(e);
            }
            for (pos, t) in s.tables.iter().enumerate() {
                tables.insert(t.def.name.clone(), (i, pos));
            }
            loaded.insert(i, s.into());
        }
        ParentView {
            snapshot,
            // No nodes: the ids are not real, so nothing can be reused by id.
            tree: Tree {
                nodes: Vec::new(),
                shards: entries,
            },
            loaded,
            tables,
            unmatched: Vec::new(),
            objects_read: 0,
        }
    }

    /// Notes which entries `layout` does not match; they are read by [`ParentView::load`].
    pub(crate) fn note_unmatched(&mut self, layout: &Layout) {
        let mut matched = vec![false; self.tree.shards.len()];
        for c in &layout.chunks {
            if let Some(i) = c.matched {
                matched[i] = true;
            }
        }
        self.unmatched = (0..matched.len()).filter(|&i| !matched[i]).collect();
    }

    /// Reads the shards of `entries` not read yet, concurrently.
    pub(crate) async fn load(
        &mut self,
        repo: &dyn Repository,
        entries: impl IntoIterator<Item = usize>,
    ) -> Result<(), EngineError> {
        let want = self.not_loaded(entries);
        let read = read_parent_shards(repo, &self.snapshot, want).await?;
        self.add_loaded(read);
        Ok(())
    }

    /// Reads the shards of `entries` not read yet, concurrently: a future that owns what it
    /// needs, to run as a task of its own, whose output [`ParentView::add_loaded`] takes.
    /// `None` when every one is read already.
    pub(crate) fn prefetch(
        &self,
        repo: &Arc<dyn Repository>,
        entries: impl IntoIterator<Item = usize>,
    ) -> Option<impl Future<Output = Result<Vec<(usize, ShardBlocks)>, EngineError>> + Send + 'static>
    {
        let want = self.not_loaded(entries);
        if want.is_empty() {
            return None;
        }
        let (repo, snapshot) = (repo.clone(), self.snapshot.clone());
        Some(async move { read_parent_shards(repo.as_ref(), &snapshot, want).await })
    }

    /// Takes in shards read by [`ParentView::prefetch`].
    pub(crate) fn add_loaded(&mut self, read: Vec<(usize, ShardBlocks)>) {
        for (i, shard) in read {
            if self.loaded.contains_key(&i) {
                continue;
            }
            self.objects_read += 1;
            for (pos, t) in shard.tables.iter().enumerate() {
                self.tables.insert(t.name.clone(), (i, pos));
            }
            self.loaded.insert(i, shard);
        }
    }

    /// The entries of `entries` that exist and are not read yet, ascending, once each, with
    /// their indices.
    fn not_loaded(&self, entries: impl IntoIterator<Item = usize>) -> Vec<(usize, TreeEntry)> {
        let mut want: Vec<usize> = entries
            .into_iter()
            .filter(|i| !self.loaded.contains_key(i) && *i < self.tree.shards.len())
            .collect();
        want.sort_unstable();
        want.dedup();
        want.into_iter()
            .map(|i| (i, self.tree.shards[i].clone()))
            .collect()
    }

    /// The parent's blocks of `name`, if a loaded shard holds the table.
    pub(crate) fn blocks(&self, name: &str) -> Option<&BTreeMap<i64, BlockRef>> {
        let (i, pos) = self.tables.get(name)?;
        self.loaded.get(i).map(|s| &s.tables[*pos].blocks)
    }

    /// Moves the blocks of `name` out of its loaded shard (leaving none): for the commit,
    /// which rebuilds each table's entry once and reads the parent's blocks no more.
    pub(crate) fn take_blocks(&mut self, name: &str) -> Option<BTreeMap<i64, BlockRef>> {
        let (i, pos) = self.tables.get(name)?;
        self.loaded
            .get_mut(i)
            .map(|s| std::mem::take(&mut s.tables[*pos].blocks))
    }

    /// Tables of the loaded shards that `catalog` no longer lists (dropped since the parent).
    pub(crate) fn dropped(&self, layout: &Layout) -> Vec<String> {
        let mut out: Vec<String> = self
            .unmatched
            .iter()
            .filter_map(|i| self.loaded.get(i))
            .flat_map(|s| s.tables.iter())
            .filter(|t| !layout.chunk_of.contains_key(&t.name))
            .map(|t| t.name.clone())
            .collect();
        out.sort();
        out
    }
}

/// Reads and checks the shards of `snapshot` that `entries` describe, [`READ_CONCURRENCY`] at
/// once; each comes with its entry's index.
async fn read_parent_shards(
    repo: &dyn Repository,
    snapshot: &BackupSnapshot,
    entries: Vec<(usize, TreeEntry)>,
) -> Result<Vec<(usize, ShardBlocks)>, EngineError> {
    futures::stream::iter(
        entries.into_iter().map(|(i, e)| async move {
            read_parent_shard(repo, snapshot, &e).await.map(|s| (i, s))
        }),
    )
    .buffer_unordered(READ_CONCURRENCY)
    .try_collect()
    .await
}

/// Reads and checks the tree of `snapshot` (its root and every node); returns it with the
/// number of objects read.
pub(crate) async fn read_tree(
    repo: &dyn Repository,
    snapshot: &BackupSnapshot,
) -> Result<(Tree, u64), EngineError> {
    let root = read_object(repo, snapshot, &snapshot.tree, "tree", TreeRoot::decode).await?;
    let ids: Vec<BlobId> = root.nodes.iter().map(|n| n.node).collect();
    let nodes: Vec<Result<TreeNode, EngineError>> =
        futures::stream::iter(ids.into_iter().map(|id| async move {
            read_object(repo, snapshot, &id, "tree node", TreeNode::decode).await
        }))
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let nodes = nodes.into_iter().collect::<Result<Vec<_>, _>>()?;
    let reads = 1 + nodes.len() as u64;
    let tree = Tree::assemble(root, nodes, &format!("of backup {}", snapshot.id))
        .map_err(|e| damaged(snapshot, e))?;
    Ok((tree, reads))
}

/// Reads and checks the shards of `snapshot` that `entries` describe, [`READ_CONCURRENCY`]
/// at once, in the order of `entries` (a restore waits for every shard before it creates a
/// table: one by one, a 50,000-table backup's 760 shards took ~150 ms; docs/performance-history.md,
/// "Shards read at once by restore, verify and `show`").
pub(crate) fn read_shards<'a>(
    repo: &'a dyn Repository,
    snapshot: &'a BackupSnapshot,
    entries: impl Iterator<Item = &'a TreeEntry> + 'a,
) -> impl futures::Stream<Item = Result<Shard, EngineError>> + 'a {
    futures::stream::iter(entries.map(move |e| read_shard(repo, snapshot, e)))
        .buffered(READ_CONCURRENCY)
}

/// Reads and checks one shard of `snapshot` (parsed by [`parse_shard`]).
async fn read_shard(
    repo: &dyn Repository,
    snapshot: &BackupSnapshot,
    entry: &TreeEntry,
) -> Result<Shard, EngineError> {
    let what = format!("shard {} of backup {}", entry.shard, snapshot.id);
    let bytes = repo
        .read_blob(&entry.shard)
        .await
        .map_err(|e| EngineError::repo(format!("reading the {what}"), e))?;
    let entry = entry.clone();
    parse_shard(snapshot, move || {
        let shard = Shard::decode(&bytes, &what)?;
        shard.check_against(&entry, &what)?;
        Ok(shard)
    })
    .await
}

/// Reads and checks one shard of a backup's parent for its tables' names and blocks
/// ([`ShardBlocks`]: the definitions are not parsed). Through the repository's read-ahead:
/// the shards one commit wrote lie one after another in its packs, so a backup reading its
/// parent's shards gets many from one ranged read (one GET on object storage). Never for
/// `verify`, which checks what storage holds now.
async fn read_parent_shard(
    repo: &dyn Repository,
    snapshot: &BackupSnapshot,
    entry: &TreeEntry,
) -> Result<ShardBlocks, EngineError> {
    let what = format!("shard {} of backup {}", entry.shard, snapshot.id);
    let bytes = repo
        .read_blob_ahead(&entry.shard)
        .await
        .map_err(|e| EngineError::repo(format!("reading the {what}"), e))?;
    let entry = entry.clone();
    parse_shard(snapshot, move || {
        ShardBlocks::decode_checked(&bytes, &entry, &what)
    })
    .await
}

/// Runs `parse`, which decodes and checks a shard of `snapshot`, on tokio's blocking pool:
/// a restore or an incremental reads many shards at once and parsing is most of their
/// cost; on the async task they were parsed one by one.
async fn parse_shard<T: Send + 'static>(
    snapshot: &BackupSnapshot,
    parse: impl FnOnce() -> Result<T, taosbackup_core::Error> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(parse)
        .await
        .map_err(|e| EngineError::internal(format!("parsing a shard failed: {e}")))?
        .map_err(|e| damaged(snapshot, e))
}

/// Reads a tree object that must parse as `T`.
pub(crate) async fn read_object<T>(
    repo: &dyn Repository,
    snapshot: &BackupSnapshot,
    id: &BlobId,
    role: &str,
    decode: fn(&[u8], &str) -> Result<T, taosbackup_core::Error>,
) -> Result<T, EngineError> {
    let what = format!("{role} {id} of backup {}", snapshot.id);
    let bytes = repo
        .read_blob(id)
        .await
        .map_err(|e| EngineError::repo(format!("reading the {what}"), e))?;
    decode(&bytes, &what).map_err(|e| damaged(snapshot, e))
}

fn damaged(snapshot: &BackupSnapshot, e: taosbackup_core::Error) -> EngineError {
    EngineError::DamagedSnapshot {
        backup: snapshot.id.to_hex(),
        reason: e.to_string(),
    }
}

/// Stores a rebuilt shard. `json`, its definitions' JSON from the layout
/// ([`Chunk::json`]), is stored as it is in a binary shard rather than written again.
pub(crate) async fn store_shard(
    repo: &dyn Repository,
    shard: Shard,
    json: Option<DefsJson>,
) -> Result<BlobId, EngineError> {
    let bytes = match (repo.shard_encoding(), json) {
        (ShardEncoding::Binary, Some(json)) => shard.encode_binary_with(&json),
        (encoding, _) => TreeObject::Shard(shard).encode_as(encoding),
    };
    store_encoded(repo, &bytes, "shard").await
}

/// Stores a tree object, returning its blob id.
pub(crate) async fn store_object(
    repo: &dyn Repository,
    obj: TreeObject,
    what: &str,
) -> Result<BlobId, EngineError> {
    store_encoded(repo, &obj.encode_as(repo.shard_encoding()), what).await
}

/// Stores a tree object's encoded bytes; `what` names it in the error.
async fn store_encoded(
    repo: &dyn Repository,
    bytes: &[u8],
    what: &str,
) -> Result<BlobId, EngineError> {
    repo.store_tree_object(bytes)
        .await
        .map_err(|e| EngineError::repo(format!("storing the {what}"), e))
}
