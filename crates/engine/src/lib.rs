//! The engine of taosbackup: change tracking of TDengine blocks, the backup engines, chains,
//! and backup/restore orchestration — written against the traits of `taosbackup-core` only.
//!
//! * [`backup`] / [`plan`]: catalog → the parent snapshot's tree → blocks to export (by
//!   [`EngineKind`], one strategy each) → repository → new shards, tree, catalog parts and
//!   the snapshot → tracker and feed commit.
//! * [`restore`]: resolve a [`BackupPoint`] to one snapshot, read its objects, write every
//!   block, check counts. [`load_state`] and [`changes`] read one snapshot for `verify` and
//!   `show`.
//! * [`ChangeTracking`]: a persisted [`Tracker`] fed by a [`taosbackup_core::ChangeFeed`]
//!   through a bounded event pipeline.
//! * [`Scheduler`]: the daemon's decisions for one database (which backup runs when, retries,
//!   retention, feed refreshes) as a state machine that is given the time, never reads it.
//!
//! A block is one table's rows in one time bucket `[k*W, (k+1)*W)`. The [`Tracker`] keeps,
//! per table, roaring bitmaps of the buckets that changed since the last backup (DIRTY, or NEW
//! when the repository holds no version of the block yet), the buckets touched by `DELETE`s,
//! and table-level events (created, dropped, schema or tags changed). A backup takes an
//! atomic [`Snapshot`] of those changes and resets them, so changes that arrive during the
//! backup are kept for the next one; a failed backup gives its snapshot back.
//!
//! The tracker persists itself (checksummed, written atomically and fsynced) together with
//! the change-feed positions it covers. Whenever it cannot prove that it saw every change —
//! no persisted state, a damaged one, a feed gap — it is *inconsistent*, and the next backup
//! must be a full one.
//!
//! # Example
//!
//! ```
//! use taosbackup_core::{BucketWidth, Precision};
//! use taosbackup_engine::{BlockState, Tracker};
//!
//! let mut t = Tracker::new(BucketWidth::DAY, Precision::Ms);
//! t.mark_rows("d1001", &[1_700_000_000_000, 1_700_000_000_500]);
//! let bucket = BucketWidth::DAY.bucket_of(1_700_000_000_000, Precision::Ms);
//! assert_eq!(t.state("d1001", bucket), BlockState::New);
//! let snap = t.snapshot_and_reset();
//! assert_eq!(snap.dirty_blocks(), 1);
//! t.commit(&snap, &[]); // the backup holding it is durable, no tombstones
//! assert_eq!(t.state("d1001", bucket), BlockState::Clean);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backup;
mod error;
mod inspect;
mod parent;
mod points;
mod restore;
mod schedule;
mod strategy;
mod tracker;
mod tracking;

pub use backup::{
    BackupReport, BackupRequest, DEFAULT_TABLES_PER_QUERY, Plan, PlanTable, backup, plan, plan_from,
};
pub use error::{EngineError, ErrorKind, TrackerError};
pub use inspect::{ObjectsRead, TableChanges as ChangedTable, changes, load_state};
pub use points::{
    BackupPoint, find_point, lineage, list_backups, list_backups_lenient, resolve_point,
};
pub use restore::{CountMismatch, RestoreReport, RestoreRequest, restore};
pub use schedule::{
    AfterBackup, CronSchedule, Missed, RunKind, RunOutcome, SchedulePolicy, Scheduler, Step,
};
pub use strategy::{EngineKind, OnGap};
pub use tokio_util::sync::CancellationToken;
pub use tracker::{
    BlockKey, BlockState, BucketRun, Snapshot, TableChange, TableChanges, Tracker, TrackerStats,
};
pub use tracking::{ChangeTracking, FeedStats, TrackingConfig, TrackingStats};

/// Logs (at debug level) that a phase of a `command` (`backup`, `restore`) ended, with the
/// time since it started and a count of what the phase handled: what
/// `RUST_LOG=taosbackup_engine=debug` shows to find where a run's time goes.
pub(crate) fn phase(command: &str, what: &str, started: std::time::Instant, count: usize) {
    tracing::debug!(
        elapsed_ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
        count,
        "{command} phase: {what}"
    );
}
