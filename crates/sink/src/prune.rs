//! Retention (`forget`) and garbage collection (`prune`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use taosbackup_core::{BackupId, BlobId, Manifest};

use crate::error::{Error, Result};
use crate::index::{self, INDEX_VERSION, Index, IndexFile, IndexPack};
use crate::lock::LockMode;
use crate::pack::{PackBuilder, PackEntry, PackId, pack_path};
use crate::repo::{Repo, decode_blob, load_index, manifest_path};

/// Which backups to keep. Backups are kept and forgotten by whole chain: a chain is kept
/// if any rule keeps it, and then all of its backups are kept (an incremental never
/// outlives its full backup, a full never goes while its incrementals stay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest N chains of each database (by their newest backup).
    pub keep_last_chains: Option<usize>,
    /// Keep chains with a backup finished within this duration before now.
    pub keep_within: Option<Duration>,
    /// Never forget chains containing these backups.
    pub pinned: BTreeSet<BackupId>,
}

/// What [`Repo::forget`] did (or would do, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Backups kept.
    pub kept: Vec<BackupId>,
    /// Backups forgotten (manifests deleted, or to delete in a dry run).
    pub forgotten: Vec<BackupId>,
}

/// The facts about a backup that retention needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// Backup id.
    pub id: BackupId,
    /// Its chain.
    pub chain: BackupId,
    /// Its database.
    pub database: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

impl From<&Manifest> for BackupSummary {
    fn from(m: &Manifest) -> Self {
        BackupSummary {
            id: m.id,
            chain: m.chain,
            database: m.database.clone(),
            finished_at: m.finished_at,
        }
    }
}

impl RetentionPolicy {
    /// Splits `backups` into (kept, forgotten) as of `now`. Fails if no rule is set.
    pub fn plan(
        &self,
        backups: &[BackupSummary],
        now: DateTime<Utc>,
    ) -> Result<(Vec<BackupId>, Vec<BackupId>)> {
        if self.keep_last_chains.is_none() && self.keep_within.is_none() {
            return Err(Error::InvalidPolicy {
                reason: "set keep-last-chains or keep-within (a policy must keep something)",
            });
        }
        // (database, chain) → newest finish time
        let mut chains: BTreeMap<(&str, BackupId), DateTime<Utc>> = BTreeMap::new();
        for b in backups {
            let t = chains
                .entry((b.database.as_str(), b.chain))
                .or_insert(b.finished_at);
            *t = (*t).max(b.finished_at);
        }
        let mut keep: HashSet<(&str, BackupId)> = HashSet::new();
        if let Some(n) = self.keep_last_chains {
            let mut per_db: BTreeMap<&str, Vec<(DateTime<Utc>, BackupId)>> = BTreeMap::new();
            for ((db, chain), t) in &chains {
                per_db.entry(db).or_default().push((*t, *chain));
            }
            for (db, mut list) in per_db {
                list.sort_by(|a, b| b.cmp(a));
                for (_, chain) in list.into_iter().take(n) {
                    keep.insert((db, chain));
                }
            }
        }
        if let Some(within) = self.keep_within {
            let within = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
            for (key, t) in &chains {
                if now.signed_duration_since(*t) <= within {
                    keep.insert(*key);
                }
            }
        }
        for b in backups {
            if self.pinned.contains(&b.id) {
                keep.insert((b.database.as_str(), b.chain));
            }
        }
        let (mut kept, mut gone) = (Vec::new(), Vec::new());
        for b in backups {
            if keep.contains(&(b.database.as_str(), b.chain)) {
                kept.push(b.id);
            } else {
                gone.push(b.id);
            }
        }
        kept.sort();
        gone.sort();
        Ok((kept, gone))
    }
}

/// What [`Repo::prune`] did (or would do, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Blobs referenced by the remaining backups.
    pub blobs_used: usize,
    /// Indexed blobs no backup references (removed).
    pub blobs_removed: usize,
    /// Packs deleted whole (no used blob).
    pub packs_deleted: Vec<String>,
    /// Packs rewritten because only some of their blobs are used.
    pub packs_rewritten: Vec<String>,
    /// Packs no index lists (from interrupted backups), deleted.
    pub unindexed_packs_deleted: Vec<String>,
    /// Packs written to hold the used blobs of rewritten packs.
    pub packs_written: Vec<String>,
    /// Bytes freed (deleted minus written).
    pub bytes_freed: i64,
}

impl Repo {
    /// Forgets backups by `policy` under an exclusive lock: deletes the manifests of
    /// chains no rule keeps. Their data stays until [`Repo::prune`]. With `dry_run`, only
    /// reports.
    pub async fn forget(&self, policy: &RetentionPolicy, dry_run: bool) -> Result<ForgetReport> {
        let lock = self.lock(LockMode::Exclusive, "forget").await?;
        let result = self.forget_locked(policy, dry_run).await;
        let released = lock.release().await;
        let report = result?;
        released?;
        Ok(report)
    }

    async fn forget_locked(&self, policy: &RetentionPolicy, dry_run: bool) -> Result<ForgetReport> {
        let mut summaries = Vec::new();
        for id in self.list_backups().await? {
            let m = self.load_manifest(&id).await?;
            summaries.push(BackupSummary::from(&m));
        }
        let (kept, forgotten) = policy.plan(&summaries, Utc::now())?;
        if !dry_run && !forgotten.is_empty() && !self.inner.backend.may_delete().await? {
            let ids: Vec<String> = forgotten.iter().map(|id| id.to_string()).collect();
            return Err(Error::DeleteDenied {
                location: self.inner.backend.location().into(),
                would_delete: format!(
                    "the manifests of {} backups ({}); their data stays until a prune \
                     with delete permission",
                    ids.len(),
                    ids.join(", ")
                ),
            });
        }
        if !dry_run {
            for id in &forgotten {
                self.inner.backend.delete(&manifest_path(id)).await?;
            }
        }
        Ok(ForgetReport {
            dry_run,
            kept,
            forgotten,
        })
    }

    /// Garbage-collects under an exclusive lock: deletes packs whose blobs no backup
    /// uses, rewrites packs that are partly used, deletes unindexed packs, and replaces
    /// all index files by one. Order: new packs, new index, delete old index files,
    /// delete old packs — a crash at any point leaves every kept backup readable.
    /// Refuses to run if any manifest or index file fails to load.
    pub async fn prune(&self, dry_run: bool) -> Result<PruneReport> {
        let lock = self.lock(LockMode::Exclusive, "prune").await?;
        let result = self.prune_locked(dry_run).await;
        let released = lock.release().await;
        let report = result?;
        released?;
        Ok(report)
    }

    async fn prune_locked(&self, dry_run: bool) -> Result<PruneReport> {
        let inner = &self.inner;
        let (index, problems) = load_index(&inner.backend, &inner.crypto).await?;
        if let Some((path, reason)) = problems.first() {
            return Err(Error::PruneRefused {
                reason: format!("index file {path} is damaged: {reason}"),
            });
        }
        let mut used: HashSet<BlobId> = HashSet::new();
        for id in self.list_backups().await? {
            let m = self
                .load_manifest(&id)
                .await
                .map_err(|e| Error::PruneRefused {
                    reason: format!("manifest of backup {id} did not load: {e}"),
                })?;
            for blob in m.blob_ids() {
                if !index.blobs.contains_key(&blob) {
                    return Err(Error::PruneRefused {
                        reason: format!("backup {id} references blob {blob}, which no index lists"),
                    });
                }
                used.insert(blob);
            }
        }
        let mut report = PruneReport {
            dry_run,
            blobs_used: used.len(),
            ..PruneReport::default()
        };
        // Which entries of each pack are the live copy of a used blob.
        let mut keep_whole: Vec<PackId> = Vec::new();
        let mut rewrite: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
        let mut delete: Vec<PackId> = Vec::new();
        for (id, info) in &index.packs {
            let live: Vec<PackEntry> = info
                .blobs
                .iter()
                .filter(|e| {
                    used.contains(&e.id) && index.blobs.get(&e.id).is_some_and(|l| l.pack == *id)
                })
                .copied()
                .collect();
            report.blobs_removed += info.blobs.len() - live.len();
            if live.is_empty() {
                delete.push(*id);
            } else if live.len() == info.blobs.len() {
                keep_whole.push(*id);
            } else {
                rewrite.push((*id, live));
            }
        }
        let listed = inner.backend.list("data").await?;
        let indexed: HashSet<String> = index.packs.keys().map(pack_path).collect();
        let sizes: HashMap<String, u64> = listed.iter().cloned().collect();
        report.unindexed_packs_deleted = listed
            .iter()
            .filter(|(p, _)| !indexed.contains(p))
            .map(|(p, _)| p.clone())
            .collect();
        report.packs_deleted = delete.iter().map(pack_path).collect();
        report.packs_rewritten = rewrite.iter().map(|(id, _)| pack_path(id)).collect();
        report.packs_deleted.sort();
        report.packs_rewritten.sort();
        report.unindexed_packs_deleted.sort();
        let freed: u64 = report
            .packs_deleted
            .iter()
            .chain(&report.packs_rewritten)
            .chain(&report.unindexed_packs_deleted)
            .filter_map(|p| sizes.get(p))
            .sum();
        report.bytes_freed = freed as i64;
        let nothing_to_do =
            delete.is_empty() && rewrite.is_empty() && report.unindexed_packs_deleted.is_empty();
        if dry_run || nothing_to_do {
            return Ok(report);
        }
        // Before writing anything: a store that refuses deletes would leave the new packs
        // and index next to everything they replace.
        if !inner.backend.may_delete().await? {
            let list = |paths: &[String]| {
                let shown: Vec<&str> = paths.iter().take(5).map(String::as_str).collect();
                let more = paths.len().saturating_sub(5);
                match (shown.is_empty(), more) {
                    (true, _) => String::new(),
                    (false, 0) => format!(" ({})", shown.join(", ")),
                    (false, n) => format!(" ({} and {n} more)", shown.join(", ")),
                }
            };
            return Err(Error::DeleteDenied {
                location: inner.backend.location().into(),
                would_delete: format!(
                    "{} unused packs{}, {} unindexed packs{}, rewritten {} partly used \
                     packs{} and {} index files, freeing about {} bytes (`prune --dry-run` \
                     lists them)",
                    report.packs_deleted.len(),
                    list(&report.packs_deleted),
                    report.unindexed_packs_deleted.len(),
                    list(&report.unindexed_packs_deleted),
                    report.packs_rewritten.len(),
                    list(&report.packs_rewritten),
                    index.files.len(),
                    report.bytes_freed
                ),
            });
        }
        // 1. New packs with the live blobs of partly used packs.
        let mut new_index = Index::default();
        for id in &keep_whole {
            if let Some(info) = index.packs.get(id) {
                new_index.add_pack(*id, info.size, info.blobs.clone());
            }
        }
        let mut builder = PackBuilder::default();
        for (id, live) in &rewrite {
            let path = pack_path(id);
            let bytes = inner.backend.get(&path).await?;
            for e in live {
                let range = e.offset as usize..(e.offset as usize + e.length as usize);
                let stored = bytes.get(range).ok_or_else(|| Error::PruneRefused {
                    reason: format!("{path} is shorter than its index says"),
                })?;
                decode_blob(&inner.crypto, &path, &e.id, stored, e.raw_length).map_err(|err| {
                    Error::PruneRefused {
                        reason: format!("a used blob is damaged, run verify: {err}"),
                    }
                })?;
                builder.add(e.id, stored, e.raw_length);
                if builder.len() >= inner.config.pack_size as usize {
                    let pack = std::mem::take(&mut builder).finish(&inner.crypto);
                    self.write_pack(pack, &mut new_index, &mut report).await?;
                }
            }
        }
        if !builder.is_empty() {
            let pack = builder.finish(&inner.crypto);
            self.write_pack(pack, &mut new_index, &mut report).await?;
        }
        // 2. One index file for everything kept.
        let file = IndexFile {
            version: INDEX_VERSION,
            packs: new_index
                .packs
                .iter()
                .map(|(id, info)| IndexPack::new(id, info.size, &info.blobs))
                .collect(),
        };
        let (name, bytes) = index::encode(&file, &inner.crypto, inner.config.compression_level)?;
        inner.backend.put(&name, bytes.into()).await?;
        new_index.files.push(name.clone());
        // 3. Old index files, then 4. old packs.
        for old in &index.files {
            if *old != name {
                inner.backend.delete(old).await?;
            }
        }
        for path in report
            .packs_deleted
            .iter()
            .chain(&report.packs_rewritten)
            .chain(&report.unindexed_packs_deleted)
        {
            inner.backend.delete(path).await?;
        }
        if let Ok(mut idx) = inner.index.write() {
            *idx = new_index;
        }
        Ok(report)
    }

    async fn write_pack(
        &self,
        pack: crate::pack::FinishedPack,
        new_index: &mut Index,
        report: &mut PruneReport,
    ) -> Result<()> {
        let path = pack_path(&pack.id);
        let size = pack.bytes.len() as u64;
        self.inner.backend.put(&path, pack.bytes).await?;
        new_index.add_pack(pack.id, size, pack.entries);
        report.packs_written.push(path);
        report.bytes_freed -= size as i64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: u8, chain: u8, db: &str, t: i64) -> BackupSummary {
        BackupSummary {
            id: BackupId::from_bytes([id; 16]),
            chain: BackupId::from_bytes([chain; 16]),
            database: db.into(),
            finished_at: DateTime::from_timestamp(t, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn chains_are_kept_or_forgotten_whole() {
        let backups = vec![
            b(1, 1, "a", 10),
            b(2, 1, "a", 20),
            b(3, 3, "a", 30),
            b(4, 4, "x", 5),
        ];
        let now = DateTime::from_timestamp(100, 0).unwrap_or_default();
        let p = RetentionPolicy {
            keep_last_chains: Some(1),
            ..Default::default()
        };
        let (kept, gone) = p.plan(&backups, now).unwrap();
        assert_eq!(
            kept,
            vec![BackupId::from_bytes([3; 16]), BackupId::from_bytes([4; 16])]
        );
        assert_eq!(
            gone,
            vec![BackupId::from_bytes([1; 16]), BackupId::from_bytes([2; 16])]
        );
        let mut p2 = p.clone();
        p2.pinned.insert(BackupId::from_bytes([2; 16]));
        let (kept, gone) = p2.plan(&backups, now).unwrap();
        assert_eq!(kept.len(), 4);
        assert!(gone.is_empty());
        let p3 = RetentionPolicy {
            keep_within: Some(Duration::from_secs(75)),
            ..Default::default()
        };
        let (kept, _) = p3.plan(&backups, now).unwrap();
        assert_eq!(kept, vec![BackupId::from_bytes([3; 16])]);
        assert!(RetentionPolicy::default().plan(&backups, now).is_err());
    }
}
