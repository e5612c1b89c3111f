//! `--engine full`: every block of every table, every time.

use async_trait::async_trait;
use taosbackup_core::{BackupSnapshot, CatalogSnapshot, Repository};

use super::{EngineKind, ParentChoice, Strategy, TableTask, Tombstones};
use crate::EngineError;
use crate::backup::BackupRequest;
use crate::parent::{Layout, ParentView};
use crate::tracker::{BlockKey, Snapshot, Tracker};

/// The full engine: no parent, every table exported whole.
pub(crate) struct Full;

#[async_trait]
impl Strategy for Full {
    fn kind(&self) -> EngineKind {
        EngineKind::Full
    }

    async fn choose_parent(
        &self,
        _repo: &dyn Repository,
        _req: &BackupRequest,
        _snapshot: Option<&Snapshot>,
    ) -> Result<ParentChoice, EngineError> {
        Ok(ParentChoice::Full(None))
    }

    fn vouch(&self, _parent: &BackupSnapshot, _snapshot: Option<&Snapshot>) -> Option<String> {
        Some("the full engine exports every block".into())
    }

    fn tables_needed(
        &self,
        _catalog: &CatalogSnapshot,
        _snapshot: Option<&Snapshot>,
    ) -> Option<Vec<String>> {
        Some(Vec::new())
    }

    fn incremental(
        &self,
        _req: &BackupRequest,
        catalog: &CatalogSnapshot,
        _layout: &Layout,
        _parent: &ParentView,
        _snapshot: Option<&Snapshot>,
    ) -> Result<Vec<TableTask>, EngineError> {
        Ok(catalog
            .tables
            .iter()
            .map(|t| TableTask::whole(&t.name, Tombstones::None))
            .collect())
    }

    fn after_incremental(&self, tracker: &mut Tracker, snapshot: Snapshot, _: &[BlockKey]) {
        // Never reached (the full engine takes no incremental); keep every change.
        tracker.restore(snapshot);
    }
}
