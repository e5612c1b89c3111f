//! What a backup would do now (the original plugin's `detect_incremental_blocks`).

use taosbackup_core::{
    BackupId, BackupKind, BackupSnapshot, Bucket, CatalogSnapshot, DatabaseState, Repository,
    Source,
};

use super::{BackupRequest, Decision, decide, incremental, matching, mismatch};
use crate::EngineError;
use crate::parent::{Layout, ParentView};
use crate::strategy::EngineKind;
use crate::tracker::{BucketRun, Snapshot};
use crate::tracking::{ChangeTracking, lock};

/// One table in a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanTable {
    /// Table name.
    pub table: String,
    /// Buckets to export, as ascending runs (empty when `whole_table`).
    pub buckets: Vec<BucketRun>,
    /// Number of buckets in `buckets`.
    pub blocks: u64,
    /// The whole table is exported.
    pub whole_table: bool,
    /// Stored buckets that become tombstones if no rows are found in them.
    pub tombstones: Vec<Bucket>,
    /// The table was dropped: left out of the new snapshot.
    pub dropped: bool,
}

/// What a backup would do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Source database.
    pub database: String,
    /// Engine.
    pub engine: EngineKind,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Why it is full when the engine would take an incremental.
    pub full_reason: Option<String>,
    /// The backup an incremental would be computed against.
    pub parent: Option<BackupId>,
    /// Tables with work, by name.
    pub tables: Vec<PlanTable>,
    /// Buckets to export (not counting whole tables).
    pub blocks: u64,
    /// Whole tables to export.
    pub whole_tables: u64,
    /// Possible tombstones.
    pub tombstones: u64,
    /// Dropped tables.
    pub dropped_tables: u64,
    /// Rows the exported blocks held at the parent (a lower bound for new data).
    pub estimated_rows: u64,
    /// Bytes of those rows at the parent, from the stored sizes (0 when unknown).
    pub estimated_bytes: u64,
    /// Shards of the parent read to plan (its tree counts as one more object).
    pub parent_objects_read: u64,
}

/// What a backup would do now. Nothing is written; the tracker is brought up to date but not
/// reset.
pub async fn plan(
    source: &dyn Source,
    repo: &dyn Repository,
    tracking: Option<&mut ChangeTracking>,
    req: &BackupRequest,
) -> Result<Plan, EngineError> {
    let catalog = source
        .catalog(&req.database)
        .await
        .map_err(|e| EngineError::source(format!("reading the catalog of {}", req.database), e))?;
    let snapshot = match tracking {
        Some(t) => {
            lock(t.tracker()).set_precision(catalog.database.precision);
            t.catch_up().await?;
            let mut tr = lock(t.tracker());
            let s = tr.snapshot_and_reset();
            tr.restore(s.clone());
            Some(s)
        }
        None => None,
    };
    let mut d = decide(
        req.engine.strategy(),
        repo,
        req,
        catalog,
        snapshot.as_ref(),
        None,
    )
    .await?;
    // What a backup reads while it exports: the parent's shards of the tables with work,
    // for their tombstones and the rows estimate.
    if let Some(p) = &mut d.parent {
        let entries: Vec<usize> = d
            .layout
            .matched_entries(d.tasks.iter().map(|t| t.table.as_str()))
            .collect();
        p.load(repo, entries).await?;
    }
    Ok(describe(req, d))
}

/// The pure part of [`plan`]: what a backup of `catalog` would do given the tracker's
/// `snapshot` and a parent held in memory (its snapshot and the state it describes).
pub fn plan_from(
    req: &BackupRequest,
    mut catalog: CatalogSnapshot,
    snapshot: Option<&Snapshot>,
    parent: Option<(BackupSnapshot, &DatabaseState)>,
) -> Result<Plan, EngineError> {
    let strategy = req.engine.strategy();
    strategy.prepare_catalog(&mut catalog, snapshot);
    let full =
        |reason: Option<String>, catalog| Ok(describe(req, Decision::full(reason, catalog, None)));
    if req.engine == EngineKind::Full {
        return full(None, catalog);
    }
    if req.force_full {
        return full(Some("a full backup was asked for (--full)".into()), catalog);
    }
    let Some((snap, state)) = parent else {
        return full(
            Some(format!(
                "no previous backup of {} in the repository",
                req.database
            )),
            catalog,
        );
    };
    if let Some(reason) = mismatch(req, &catalog, &snap).or_else(|| strategy.vouch(&snap, snapshot))
    {
        return full(Some(reason), catalog);
    }
    let mut parent = ParentView::from_state(snap, state);
    let layout = Layout::new(&catalog, Some(&parent.tree));
    parent.note_unmatched(&layout);
    let d = incremental(strategy, req, catalog, snapshot, parent, layout)?;
    Ok(describe(req, d))
}

/// The plan of a decision.
fn describe(req: &BackupRequest, d: Decision) -> Plan {
    let mut p = Plan {
        database: req.database.clone(),
        engine: req.engine,
        kind: d.kind,
        full_reason: d.full_reason,
        parent: d.parent.as_ref().map(|p| p.snapshot.id),
        tables: Vec::new(),
        blocks: 0,
        whole_tables: 0,
        tombstones: 0,
        dropped_tables: d.dropped.len() as u64,
        estimated_rows: 0,
        estimated_bytes: 0,
        parent_objects_read: d.parent.as_ref().map_or(0, |p| p.objects_read),
    };
    for t in d.tasks {
        let blocks = t.blocks();
        let stored = d.parent.as_ref().and_then(|x| x.blocks(&t.table));
        let tombstones = t.tombstones_in(stored);
        p.blocks += blocks;
        p.whole_tables += t.whole as u64;
        p.tombstones += tombstones.len() as u64;
        if let Some(stored) = stored {
            let rows: u64 = if t.whole {
                stored.values().map(|b| b.rows).sum()
            } else {
                matching(&t.buckets, stored).map(|(_, b)| b.rows).sum()
            };
            p.estimated_rows += rows;
        }
        p.tables.push(PlanTable {
            table: t.table,
            buckets: t.buckets,
            blocks,
            whole_table: t.whole,
            tombstones,
            dropped: false,
        });
    }
    for name in d.dropped {
        p.tables.push(PlanTable {
            table: name,
            buckets: Vec::new(),
            blocks: 0,
            whole_table: false,
            tombstones: Vec::new(),
            dropped: true,
        });
    }
    p.tables.sort_by(|a, b| a.table.cmp(&b.table));
    p
}
