//! Retention (`forget`) and garbage collection (`prune`).
//!
//! Format 2 makes every backup self-contained, so any backup can be forgotten alone:
//! forgetting deletes its snapshot object; prune then deletes every blob no remaining
//! snapshot reaches (snapshot → tree → shards → data blobs; snapshot → catalog → parts).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use taosbackup_core::{BackupId, BackupSnapshot};

use crate::error::{Error, Result};
use crate::index::{self, INDEX_VERSION, Index, IndexFile, IndexPack};
use crate::lock::LockMode;
use crate::pack::{ENTRY_LEN, PackBuilder, PackEntry, PackId, pack_path};
use crate::repo::{Repo, load_index, pin_path, snapshot_path};

/// Which backups to keep, per database, in restic's vocabulary. A backup is kept when any
/// rule keeps it or it is pinned; every other backup is forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest N backups.
    pub keep_last: Option<usize>,
    /// Keep the newest backup of each of the last N hours (UTC) that have backups.
    pub keep_hourly: Option<usize>,
    /// … of each of the last N days (UTC).
    pub keep_daily: Option<usize>,
    /// … of each of the last N ISO weeks.
    pub keep_weekly: Option<usize>,
    /// … of each of the last N months.
    pub keep_monthly: Option<usize>,
    /// … of each of the last N years.
    pub keep_yearly: Option<usize>,
    /// Keep every backup finished within this duration before the database's newest one.
    pub keep_within: Option<Duration>,
    /// Keep every backup of the newest N chains (a full backup and the incrementals that
    /// name it as their `chain`), by the chain's newest backup.
    pub keep_chains: Option<usize>,
    /// Allow a policy that forgets every backup of a database.
    pub allow_empty: bool,
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

impl From<&BackupSnapshot> for BackupSummary {
    fn from(s: &BackupSnapshot) -> Self {
        BackupSummary {
            id: s.id,
            chain: s.chain,
            database: s.database.clone(),
            finished_at: s.finished_at,
        }
    }
}

/// The outcome of applying a [`RetentionPolicy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Backups kept, with the rules that keep each (`last`, `daily`, `pinned`, …).
    pub kept: BTreeMap<BackupId, Vec<String>>,
    /// Backups to forget.
    pub forgotten: Vec<BackupId>,
}

impl RetentionPolicy {
    /// Whether no keep rule is set.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
            && self.keep_chains.is_none()
    }

    /// Splits `backups` into kept and forgotten. Fails if no rule is set, and — unless
    /// `allow_empty` — if the policy would forget every backup of a database.
    pub fn plan(
        &self,
        backups: &[BackupSummary],
        pinned: &HashSet<BackupId>,
    ) -> Result<RetentionPlan> {
        if self.is_empty() {
            return Err(Error::InvalidPolicy {
                reason: "set at least one keep rule (--keep-last, --keep-hourly, --keep-daily, \
                         --keep-weekly, --keep-monthly, --keep-yearly, --keep-within, \
                         --keep-chains)"
                    .into(),
            });
        }
        let mut by_db: BTreeMap<&str, Vec<&BackupSummary>> = BTreeMap::new();
        for b in backups {
            by_db.entry(b.database.as_str()).or_default().push(b);
        }
        let mut plan = RetentionPlan::default();
        for (db, mut list) in by_db {
            // Newest first.
            list.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(b.id.cmp(&a.id)));
            let mut reasons: BTreeMap<BackupId, Vec<String>> = BTreeMap::new();
            let mut keep = |id: BackupId, why: &str| {
                reasons.entry(id).or_default().push(why.to_string());
            };
            if let Some(n) = self.keep_last {
                for b in list.iter().take(n) {
                    keep(b.id, "last");
                }
            }
            type Bucket = fn(&DateTime<Utc>) -> (i32, u32, u32, u32);
            let periods: [(&str, Option<usize>, Bucket); 5] = [
                ("hourly", self.keep_hourly, |t| {
                    (t.year(), t.month(), t.day(), t.hour())
                }),
                ("daily", self.keep_daily, |t| {
                    (t.year(), t.month(), t.day(), 0)
                }),
                ("weekly", self.keep_weekly, |t| {
                    let w = t.iso_week();
                    (w.year(), w.week(), 0, 0)
                }),
                ("monthly", self.keep_monthly, |t| {
                    (t.year(), t.month(), 0, 0)
                }),
                ("yearly", self.keep_yearly, |t| (t.year(), 0, 0, 0)),
            ];
            for (name, n, bucket) in periods {
                let Some(n) = n else { continue };
                let mut last: Option<(i32, u32, u32, u32)> = None;
                let mut taken = 0;
                for b in &list {
                    if taken >= n {
                        break;
                    }
                    let k = bucket(&b.finished_at);
                    if last != Some(k) {
                        // The newest backup of a new period.
                        keep(b.id, name);
                        last = Some(k);
                        taken += 1;
                    }
                }
            }
            if let (Some(within), Some(newest)) = (self.keep_within, list.first()) {
                let within = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
                for b in &list {
                    if newest.finished_at.signed_duration_since(b.finished_at) <= within {
                        keep(b.id, "within");
                    }
                }
            }
            if let Some(n) = self.keep_chains {
                let mut chains: Vec<BackupId> = Vec::new();
                for b in &list {
                    if !chains.contains(&b.chain) {
                        chains.push(b.chain);
                    }
                }
                chains.truncate(n);
                for b in &list {
                    if chains.contains(&b.chain) {
                        keep(b.id, "chain");
                    }
                }
            }
            for b in &list {
                if pinned.contains(&b.id) {
                    keep(b.id, "pinned");
                }
            }
            if reasons.is_empty() && !list.is_empty() && !self.allow_empty {
                return Err(Error::InvalidPolicy {
                    reason: format!(
                        "it would forget every backup of database {db} ({} backups); keep at \
                         least one, or pass --allow-empty to really forget them all",
                        list.len()
                    ),
                });
            }
            for b in &list {
                if !reasons.contains_key(&b.id) {
                    plan.forgotten.push(b.id);
                }
            }
            plan.kept.extend(reasons);
        }
        plan.forgotten.sort();
        Ok(plan)
    }
}

/// What to forget in a [`Repo::prune`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    /// Backups chosen by a retention policy.
    Policy(RetentionPolicy),
    /// These backups (`taosbackup forget ID…`); pinned ones are refused.
    Ids(Vec<BackupId>),
}

/// What [`Repo::forget`] did (or would do, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Backups kept, with the rules that keep each (empty lists for `forget ID…`).
    pub kept: BTreeMap<BackupId, Vec<String>>,
    /// Backups forgotten (snapshot objects deleted, or to delete in a dry run).
    pub forgotten: Vec<BackupId>,
    /// Bytes of the forgotten snapshot objects.
    pub snapshot_bytes: u64,
}

/// What [`Repo::prune`] did (or would do, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// The forget step, when one was asked for.
    pub forget: Option<ForgetReport>,
    /// Blobs reachable from the remaining snapshots.
    pub blobs_used: usize,
    /// Indexed blobs no remaining snapshot reaches (removed).
    pub blobs_removed: usize,
    /// Packs deleted whole (no used blob).
    pub packs_deleted: Vec<String>,
    /// Packs rewritten because only some of their blobs are used.
    pub packs_rewritten: Vec<String>,
    /// Packs no index lists (from interrupted backups), deleted.
    pub unindexed_packs_deleted: Vec<String>,
    /// Packs written to hold the used blobs of rewritten packs (in a dry run: how many).
    pub packs_written: Vec<String>,
    /// Bytes freed: forgotten snapshot objects and deleted packs, minus packs written (in a
    /// dry run computed exactly as the real run would write them).
    pub bytes_freed: i64,
}

impl Repo {
    /// Forgets backups under an exclusive lock (deletes their snapshot objects); their data
    /// stays until a prune. With `dry_run`, only reports.
    pub async fn forget(&self, what: &Forget, dry_run: bool) -> Result<ForgetReport> {
        let lock = self.lock(LockMode::Exclusive, "forget").await?;
        let result = self.forget_locked(what, dry_run).await;
        let released = lock.release().await;
        let report = result?;
        released?;
        Ok(report)
    }

    /// Decides what `what` forgets, then (unless `dry_run`) deletes those snapshot objects.
    async fn forget_locked(&self, what: &Forget, dry_run: bool) -> Result<ForgetReport> {
        let listed: HashMap<BackupId, u64> = self
            .inner
            .backend
            .list("snapshots")
            .await?
            .into_iter()
            .filter_map(|(p, size)| {
                let name = p.rsplit('/').next()?;
                Some((name.parse().ok()?, size))
            })
            .collect();
        let pins = self.pins().await?;
        let (kept, forgotten) = match what {
            Forget::Policy(policy) => {
                let (snapshots, bad) = self.load_all_snapshots().await?;
                if let Some((path, reason)) = bad.first() {
                    return Err(Error::PruneRefused {
                        reason: format!(
                            "{path} did not load ({reason}); retention needs every backup's \
                             time and database (run verify)"
                        ),
                    });
                }
                let summaries: Vec<BackupSummary> =
                    snapshots.iter().map(BackupSummary::from).collect();
                let plan = policy.plan(&summaries, &pins)?;
                (plan.kept, plan.forgotten)
            }
            Forget::Ids(ids) => {
                let mut out = Vec::new();
                for id in ids {
                    if !listed.contains_key(id) {
                        return Err(Error::NoSuchBackup { backup_id: *id });
                    }
                    if pins.contains(id) {
                        return Err(Error::Pinned { backup_id: *id });
                    }
                    if !out.contains(id) {
                        out.push(*id);
                    }
                }
                out.sort();
                let kept = listed
                    .keys()
                    .filter(|k| !out.contains(k))
                    .map(|k| (*k, Vec::new()))
                    .collect();
                (kept, out)
            }
        };
        let snapshot_bytes = forgotten.iter().filter_map(|id| listed.get(id)).sum();
        if !dry_run && !forgotten.is_empty() && !self.inner.backend.may_delete().await? {
            let ids: Vec<String> = forgotten.iter().map(|id| id.to_string()).collect();
            return Err(Error::DeleteDenied {
                location: self.inner.backend.location().into(),
                would_delete: format!(
                    "the snapshots of {} backups ({}); their data stays until a prune with \
                     delete permission",
                    ids.len(),
                    ids.join(", ")
                ),
            });
        }
        if !dry_run {
            for id in &forgotten {
                self.inner.backend.delete(&snapshot_path(id)).await?;
            }
        }
        Ok(ForgetReport {
            dry_run,
            kept,
            forgotten,
            snapshot_bytes,
        })
    }

    /// Forgets (`forget`, if given) and garbage-collects under one exclusive lock: deletes
    /// the forgotten snapshot objects, then packs whose blobs no remaining snapshot reaches,
    /// rewrites packs that are partly used, deletes unindexed packs and pins of backups that
    /// no longer exist, and replaces all index files by one. Order: snapshots, new packs,
    /// new index, old index files, old packs — a crash at any point leaves every remaining
    /// backup readable. Refuses to run if any snapshot, tree object or index file fails to
    /// load. A dry run computes the same plan and writes nothing.
    pub async fn prune(&self, forget: Option<&Forget>, dry_run: bool) -> Result<PruneReport> {
        let lock = self.lock(LockMode::Exclusive, "prune").await?;
        let result = self.prune_locked(forget, dry_run).await;
        let released = lock.release().await;
        let report = result?;
        released?;
        Ok(report)
    }

    async fn prune_locked(&self, forget: Option<&Forget>, dry_run: bool) -> Result<PruneReport> {
        let inner = &self.inner;
        let (index, problems) = load_index(&inner.backend, &inner.crypto).await?;
        if let Some((path, reason)) = problems.first() {
            return Err(Error::PruneRefused {
                reason: format!("index file {path} is damaged: {reason}"),
            });
        }
        if let Ok(mut idx) = inner.index.write() {
            *idx = index.clone();
        }
        let forgotten = match forget {
            Some(f) => Some(self.forget_locked(f, true).await?),
            None => None,
        };
        let gone: HashSet<BackupId> = forgotten
            .iter()
            .flat_map(|f| f.forgotten.iter().copied())
            .collect();
        let (snapshots, bad) = self.load_all_snapshots().await?;
        if let Some((path, reason)) = bad.first() {
            return Err(Error::PruneRefused {
                reason: format!("{path} did not load: {reason}"),
            });
        }
        let remaining: Vec<BackupSnapshot> = snapshots
            .into_iter()
            .filter(|s| !gone.contains(&s.id))
            .collect();
        let reach = self.reach(&remaining).await?;
        if let Some((object, reason)) = reach.problems.first() {
            return Err(Error::PruneRefused {
                reason: format!("{object}: {reason} (run verify)"),
            });
        }
        let used = reach.all();
        for blob in &used {
            if !index.blobs.contains_key(blob) {
                return Err(Error::PruneRefused {
                    reason: format!("a snapshot reaches blob {blob}, which no index lists"),
                });
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
        // A fixed order, so a dry run computes the packs the real run writes.
        rewrite.sort_by_key(|r| r.0);
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
        let snapshot_bytes = forgotten.as_ref().map_or(0, |f| f.snapshot_bytes);
        report.bytes_freed = (freed + snapshot_bytes) as i64;
        let live_ids: HashSet<BackupId> = remaining.iter().map(|s| s.id).collect();
        let stale_pins: Vec<BackupId> = self
            .pins()
            .await?
            .into_iter()
            .filter(|p| !live_ids.contains(p))
            .collect();
        report.forget = forgotten;
        let nothing_to_do = delete.is_empty()
            && rewrite.is_empty()
            && report.unindexed_packs_deleted.is_empty()
            && gone.is_empty()
            && stale_pins.is_empty();
        if dry_run {
            // The packs the real run would write: the same builder over the same entries.
            let sizes = planned_packs(&rewrite, inner.config.pack_size as usize, &inner.crypto);
            report.packs_written = sizes.iter().map(|_| String::new()).collect();
            report.bytes_freed -= sizes.iter().sum::<u64>() as i64;
            return Ok(report);
        }
        if nothing_to_do {
            return Ok(report);
        }
        // Before changing anything: a store that refuses deletes would leave the new packs
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
                    "{} forgotten snapshots, {} unused packs{}, {} unindexed packs{}, rewritten \
                     {} partly used packs{} and {} index files, freeing about {} bytes \
                     (`prune --dry-run` lists them)",
                    gone.len(),
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
        // 0. The forgotten snapshots: from here on they are not listed.
        for id in &gone {
            inner.backend.delete(&snapshot_path(id)).await?;
        }
        for id in &stale_pins {
            inner.backend.delete(&pin_path(id)).await?;
        }
        if delete.is_empty() && rewrite.is_empty() && report.unindexed_packs_deleted.is_empty() {
            return Ok(report);
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
                self.decode_stored(&path, &e.id, stored, e.raw_length)
                    .await
                    .map_err(|err| Error::PruneRefused {
                        reason: format!("a used blob is damaged, run verify: {err}"),
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
        // A rewritten pack can be byte-identical to a pack this run was going to delete
        // (unencrypted packs are deterministic: a rerun after a killed prune rebuilds the
        // same pack). It was just written and is indexed: it must not be deleted. Its size
        // was counted as freed and is counted as written: the net stays right.
        for list in [
            &mut report.packs_deleted,
            &mut report.packs_rewritten,
            &mut report.unindexed_packs_deleted,
        ] {
            list.retain(|p| *p != path);
        }
        report.packs_written.push(path);
        report.bytes_freed -= size as i64;
        Ok(())
    }
}

/// The sizes of the packs a prune writes for `rewrite`: the real run's builder closes a
/// pack at the first blob that takes it to `pack_size` or past; each pack is its blobs, a
/// sealed header of 40 bytes per blob, and a 4-byte length.
fn planned_packs(
    rewrite: &[(PackId, Vec<PackEntry>)],
    pack_size: usize,
    crypto: &crate::crypto::Crypto,
) -> Vec<u64> {
    let finish = |len: usize, n: usize| (len + n * ENTRY_LEN + crypto.overhead() + 4) as u64;
    let mut out = Vec::new();
    let (mut len, mut n) = (0usize, 0usize);
    for (_, live) in rewrite {
        for e in live {
            len += e.length as usize;
            n += 1;
            if len >= pack_size {
                out.push(finish(len, n));
                (len, n) = (0, 0);
            }
        }
    }
    if n > 0 {
        out.push(finish(len, n));
    }
    out
}

/// The ids of `backups` pinned in `pins` (helper for callers that show pins).
pub fn pinned_of(backups: &[BackupSnapshot], pins: &HashSet<BackupId>) -> BTreeSet<BackupId> {
    backups
        .iter()
        .map(|b| b.id)
        .filter(|id| pins.contains(id))
        .collect()
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

    fn ids(v: &[u8]) -> Vec<BackupId> {
        v.iter().map(|i| BackupId::from_bytes([*i; 16])).collect()
    }

    #[test]
    fn restic_rules_per_database() {
        const H: i64 = 3600;
        const D: i64 = 86_400;
        // Database a: backups every 6 hours over 3 days; x: one old backup.
        let mut backups: Vec<BackupSummary> = (0..12u8)
            .map(|i| b(i + 1, 1, "a", 10 * D + i64::from(i) * 6 * H))
            .collect();
        backups.push(b(100, 100, "x", 5));
        let none = HashSet::new();
        let plan = |p: RetentionPolicy| p.plan(&backups, &none).unwrap();
        let last2 = plan(RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        });
        let kept: Vec<BackupId> = last2.kept.keys().copied().collect();
        assert_eq!(kept, ids(&[11, 12, 100]));
        assert_eq!(last2.forgotten.len(), 10);
        // Daily 2: the newest of each of the two newest days.
        let daily = plan(RetentionPolicy {
            keep_daily: Some(2),
            ..Default::default()
        });
        let kept: Vec<BackupId> = daily.kept.keys().copied().collect();
        assert_eq!(kept, ids(&[8, 12, 100]));
        // Within 12 h of the newest backup.
        let within = plan(RetentionPolicy {
            keep_within: Some(Duration::from_secs(12 * 3600)),
            ..Default::default()
        });
        let kept: Vec<BackupId> = within.kept.keys().copied().collect();
        assert_eq!(kept, ids(&[10, 11, 12, 100]));
        // A pin keeps a backup no rule keeps.
        let pins: HashSet<BackupId> = ids(&[3]).into_iter().collect();
        let p = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        }
        .plan(&backups, &pins)
        .unwrap();
        assert_eq!(p.kept.get(&ids(&[3])[0]), Some(&vec!["pinned".to_string()]));
        assert!(RetentionPolicy::default().plan(&backups, &none).is_err());
    }

    #[test]
    fn chains_and_the_empty_policy() {
        let backups = vec![b(1, 1, "a", 10), b(2, 1, "a", 20), b(3, 3, "a", 30)];
        let none = HashSet::new();
        let p = RetentionPolicy {
            keep_chains: Some(1),
            ..Default::default()
        }
        .plan(&backups, &none)
        .unwrap();
        assert_eq!(p.forgotten, ids(&[1, 2]));
        let zero = RetentionPolicy {
            keep_last: Some(0),
            ..Default::default()
        };
        let e = zero.plan(&backups, &none).unwrap_err();
        assert!(e.to_string().contains("--allow-empty"), "{e}");
        let all = RetentionPolicy {
            allow_empty: true,
            ..zero
        }
        .plan(&backups, &none)
        .unwrap();
        assert_eq!(all.forgotten.len(), 3);
    }
}
