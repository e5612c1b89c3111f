//! `--engine time`: per table, whole buckets from the one holding its previous maximum
//! timestamp on; new tables whole. Fast and needs no change feed, but blind to late rows
//! into older buckets, updates of older rows and deletes (documented, tested as such).

use async_trait::async_trait;
use taosbackup_core::{BackupSnapshot, Bucket, CatalogSnapshot, Repository};

use super::{EngineKind, ParentChoice, Strategy, TableTask, Tombstones, prev};
use crate::EngineError;
use crate::backup::BackupRequest;
use crate::parent::{Layout, ParentView};
use crate::points::list_backups;
use crate::tracker::{BlockKey, BucketRun, Snapshot, Tracker};

/// The time engine.
pub(crate) struct Time;

#[async_trait]
impl Strategy for Time {
    fn kind(&self) -> EngineKind {
        EngineKind::Time
    }

    async fn choose_parent(
        &self,
        repo: &dyn Repository,
        req: &BackupRequest,
        _snapshot: Option<&Snapshot>,
    ) -> Result<ParentChoice, EngineError> {
        // The newest backup of the database: its per-table maxima are where this one starts.
        let newest = list_backups(repo)
            .await?
            .into_iter()
            .filter(|s| s.database == req.database)
            .max_by(|a, b| a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id)));
        Ok(match newest {
            Some(s) => ParentChoice::Parent(Box::new(s)),
            None => ParentChoice::Full(Some(format!(
                "no previous backup of {} in the repository",
                req.database
            ))),
        })
    }

    fn vouch(&self, _parent: &BackupSnapshot, _snapshot: Option<&Snapshot>) -> Option<String> {
        None
    }

    fn tables_needed(
        &self,
        _catalog: &CatalogSnapshot,
        _snapshot: Option<&Snapshot>,
    ) -> Option<Vec<String>> {
        None
    }

    fn incremental(
        &self,
        req: &BackupRequest,
        catalog: &CatalogSnapshot,
        layout: &Layout,
        parent: &ParentView,
        _snapshot: Option<&Snapshot>,
    ) -> Result<Vec<TableTask>, EngineError> {
        let w = req.bucket_width.in_units(catalog.database.precision);
        let mut tasks = Vec::new();
        for t in &catalog.tables {
            let max = match prev(layout, parent, &t.name) {
                Some(Some(blocks)) => blocks.values().map(|b| b.max_ts).max(),
                _ => None,
            };
            match max {
                // New, or known but empty at the parent: everything may be new.
                None => tasks.push(TableTask::whole(&t.name, Tombstones::None)),
                Some(max) => tasks.push(TableTask {
                    table: t.name.clone(),
                    whole: false,
                    // Marker: from this bucket on (resolved when exporting). From the bucket
                    // holding the previous maximum, not `max + 1`'s: with a composite key,
                    // rows can arrive later at that very timestamp.
                    buckets: vec![BucketRun::single(Bucket::containing(max, w))],
                    tombstones: Tombstones::None,
                }),
            }
        }
        Ok(tasks)
    }

    fn after_incremental(&self, tracker: &mut Tracker, snapshot: Snapshot, _: &[BlockKey]) {
        // The time engine may have skipped some of these changes (late rows, deletes): keep
        // them all for the next bitmap backup, a superset of what changed since this one.
        tracker.restore(snapshot);
    }
}
