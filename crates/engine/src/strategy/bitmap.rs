//! `--engine bitmap`: exactly the dirty and deleted buckets the change tracker recorded;
//! new and re-created tables whole (a re-created table's old buckets become tombstones);
//! a changed bucket the parent held that has no rows now is removed (a tombstone).
//!
//! The parent is the backup the tracker's books describe (`last_backup`), whichever backups
//! came after it: every snapshot is self-contained, so the changes since that backup on top
//! of its tree are the database now. When the tracker cannot vouch for every change (no
//! state, a damaged one, a feed gap, a fresh feed, its backup forgotten), the backup is a
//! full one — or fails, with `on_gap = "fail"`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use taosbackup_core::{BackupSnapshot, CatalogSnapshot, Repository, RepositoryErrorKind};

use super::{EngineKind, ParentChoice, Strategy, TableTask, Tombstones, prev};
use crate::EngineError;
use crate::backup::BackupRequest;
use crate::parent::{Layout, ParentView};
use crate::points::list_backups;
use crate::strategy::OnGap;
use crate::tracker::{BlockKey, Snapshot, Tracker};

/// The bitmap engine.
pub(crate) struct Bitmap;

fn needs_tracking() -> EngineError {
    EngineError::InvalidRequest(
        "the bitmap engine needs change tracking (a change feed and a tracker state)".into(),
    )
}

/// Tables the feed saw dropped and not re-created.
fn gone(snap: &Snapshot) -> BTreeSet<String> {
    snap.tables()
        .filter(|n| {
            let c = snap.changes(n);
            c.dropped && !c.created
        })
        .map(str::to_string)
        .collect()
}

#[async_trait]
impl Strategy for Bitmap {
    fn kind(&self) -> EngineKind {
        EngineKind::Bitmap
    }

    async fn choose_parent(
        &self,
        repo: &dyn Repository,
        req: &BackupRequest,
        snapshot: Option<&Snapshot>,
    ) -> Result<ParentChoice, EngineError> {
        let any_backup = async || -> Result<bool, EngineError> {
            Ok(list_backups(repo)
                .await?
                .iter()
                .any(|s| s.database == req.database))
        };
        let no_backup = || {
            ParentChoice::Full(Some(format!(
                "no previous backup of {} in the repository",
                req.database
            )))
        };
        let Some(snap) = snapshot else {
            // The first backup of a database is a full one, tracked or not.
            if !any_backup().await? {
                return Ok(no_backup());
            }
            return Err(needs_tracking());
        };
        let parent = match (snap.inconsistency(), snap.last_backup()) {
            (None, Some(id)) => match id.parse() {
                Ok(id) => match repo.load_snapshot(&id).await {
                    Ok(s) if s.database == req.database => Ok(s),
                    Ok(s) => Err(format!(
                        "the tracker state covers backup {id}, a backup of database {}",
                        s.database
                    )),
                    Err(e) if e.kind() == RepositoryErrorKind::NotFound => Err(format!(
                        "the backup the tracker state covers ({id}) is no longer in the \
                         repository (forgotten)"
                    )),
                    Err(e) => {
                        return Err(EngineError::repo(format!("loading backup {id}"), e));
                    }
                },
                Err(_) => Err(format!("the tracker state names backup {id:?}, not an id")),
            },
            (Some(reason), _) => Err(reason.to_string()),
            (None, None) => Err("the tracker state covers no backup yet".into()),
        };
        match parent {
            Ok(s) => Ok(ParentChoice::Parent(Box::new(s))),
            Err(reason) => {
                // The first backup of a database is a full one whatever `on_gap` says.
                if !any_backup().await? {
                    return Ok(no_backup());
                }
                if req.on_gap == OnGap::Fail {
                    return Err(EngineError::Gap { reason });
                }
                tracing::warn!(%reason, "taking a full backup");
                Ok(ParentChoice::Full(Some(reason)))
            }
        }
    }

    fn vouch(&self, parent: &BackupSnapshot, snapshot: Option<&Snapshot>) -> Option<String> {
        let Some(snap) = snapshot else {
            return Some(needs_tracking().to_string());
        };
        snap.inconsistency()
            .map(str::to_string)
            .or_else(|| match snap.last_backup() {
                Some(b) if b == parent.id.to_hex() => None,
                Some(b) => Some(format!(
                    "the tracker state covers backup {b}, not {}",
                    parent.id
                )),
                None => Some("the tracker state covers no backup yet".into()),
            })
    }

    fn prepare_catalog(&self, catalog: &mut CatalogSnapshot, snapshot: Option<&Snapshot>) {
        // Tables the feed saw dropped after the catalog was read, which it still listed.
        if let Some(snap) = snapshot {
            let gone = gone(snap);
            if !gone.is_empty() {
                catalog.tables.retain(|t| !gone.contains(&t.name));
            }
        }
    }

    fn tables_needed(
        &self,
        _catalog: &CatalogSnapshot,
        _snapshot: Option<&Snapshot>,
    ) -> Option<Vec<String>> {
        // The tasks need to know only which tables the parent holds, which the layout's
        // match tells; their tombstones are named by rule and resolved at the commit, so
        // the changed tables' shards are read while the exports run.
        Some(Vec::new())
    }

    fn incremental(
        &self,
        _req: &BackupRequest,
        catalog: &CatalogSnapshot,
        layout: &Layout,
        parent: &ParentView,
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<TableTask>, EngineError> {
        let snap = snapshot.ok_or_else(needs_tracking)?;
        let mut tasks = Vec::new();
        for t in &catalog.tables {
            let changes = snap.changes(&t.name);
            if prev(layout, parent, &t.name).is_none() {
                tasks.push(TableTask::whole(&t.name, Tombstones::None));
            } else if changes.dropped {
                // Re-created: the old incarnation's buckets go.
                tasks.push(TableTask::whole(&t.name, Tombstones::All));
            } else {
                // Dirty ∪ deleted (deleted buckets are normally dirty too).
                let buckets = snap.changed_runs(&t.name);
                if buckets.is_empty() {
                    continue;
                }
                tasks.push(TableTask {
                    table: t.name.clone(),
                    whole: false,
                    buckets,
                    tombstones: Tombstones::Changed,
                });
            }
        }
        Ok(tasks)
    }

    fn after_incremental(
        &self,
        tracker: &mut Tracker,
        snapshot: Snapshot,
        tombstoned: &[BlockKey],
    ) {
        tracker.commit(&snapshot, tombstoned);
    }
}
