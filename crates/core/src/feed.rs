//! The seam between change feeds (TDengine's TMQ, its WAL files) and the change tracker.
//!
//! A [`ChangeFeed`] delivers [`ChangeBatch`]es of [`ChangeEvent`]s in the order the
//! database applied them, each batch with the feed positions reached after it. The engine
//! applies every event to its tracker (never dropping one), persists the tracker with the
//! positions it covers, and only then calls [`ChangeFeed::commit`]: a position is committed
//! only once the backup or persisted bitmap that covers it is durable.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::SourceError;

/// Feed positions: a key per stream (for TMQ `"vg:<vgroup id>"`) → the position reached
/// (for TMQ, the next WAL version to read).
pub type Positions = BTreeMap<String, i64>;

/// A table-level change reported by a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableEvent {
    /// CREATE TABLE, or a child table auto-created by an insert.
    Created,
    /// DROP TABLE (also each child table of a dropped super table, when the feed knows them).
    Dropped,
    /// Columns added, dropped, modified or renamed.
    SchemaChanged,
    /// Tag values changed.
    TagsChanged,
}

/// One change, in database terms. Tables are child or normal tables of the feed's database,
/// by name; feeds expand events on a super table to its child tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// Rows were written (inserted or overwritten) at these timestamps.
    Rows {
        /// Table name.
        table: String,
        /// Timestamps of the written rows, in the database precision, any order.
        timestamps: Vec<i64>,
    },
    /// Rows in `[start, end]` (both inclusive, as TDengine's DELETE logs them) were deleted.
    Delete {
        /// Table name.
        table: String,
        /// First deleted timestamp (inclusive).
        start: i64,
        /// Last deleted timestamp (inclusive).
        end: i64,
    },
    /// A table-level change.
    Table {
        /// Table name.
        table: String,
        /// What happened.
        event: TableEvent,
    },
    /// The feed read a change it could not understand (an unknown or malformed TMQ meta
    /// message): what it names must be read again whole by the next backup — `table`, or
    /// with `None` the whole database (the next backup is then a full one). Never a dropped
    /// change.
    Reread {
        /// The table (child or normal) to export whole, or `None` for every table.
        table: Option<String>,
        /// What was not understood, for the operator (logged and, for the whole database,
        /// the reason the next backup gives for being a full one).
        reason: String,
    },
}

/// Events read from a feed and the positions reached after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Events in database order.
    pub events: Vec<ChangeEvent>,
    /// Positions after the last event of this batch (only the streams that moved need be
    /// present; absent keys keep their earlier position).
    pub positions: Positions,
}

/// How a feed could (re)start from the positions the caller last committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedStart {
    /// The feed continues exactly after the committed positions: no change was missed.
    Continued,
    /// The feed starts now, with no history (first use, no committed positions): changes
    /// before this moment are not reported, so the next backup must be a full one.
    Fresh {
        /// Why (for logs), e.g. "topic created".
        reason: String,
    },
    /// The feed cannot prove it continues after the committed positions (the WAL was purged
    /// past them, the topic or consumer group was recreated, …): changes may have been
    /// missed, so the next backup must be a full one.
    Gap {
        /// What was detected, naming the stream and the positions.
        reason: String,
    },
}

/// A source of change events for one database.
///
/// Usage: [`start`](ChangeFeed::start) once with the positions last committed; then
/// [`next_batch`](ChangeFeed::next_batch) until it returns `None`, meaning the feed has
/// caught up with the end of every stream as it was when that catch-up began; again later to
/// read what arrived since. [`commit`](ChangeFeed::commit) positions once what covers them is
/// durable.
#[async_trait]
pub trait ChangeFeed: Send {
    /// The feed's name as configured (`tmq`, `wal`).
    fn name(&self) -> &'static str;

    /// Opens the feed (creating a topic or consumer group where needed) and positions it
    /// after `committed` (empty: the caller has no positions). Reports whether it can prove
    /// continuity.
    async fn start(&mut self, committed: &Positions) -> Result<FeedStart, SourceError>;

    /// The next batch of events, or `None` once caught up with the end of every stream as it
    /// was when this catch-up began (the first call after `start` or after a `None`).
    /// Guarantee: events are never skipped; an error leaves the feed where the last returned
    /// batch ended.
    async fn next_batch(&mut self) -> Result<Option<ChangeBatch>, SourceError>;

    /// The positions reached so far: after `start`, where the feed stands (also when it has
    /// delivered nothing yet — a fresh feed reports the current end of every stream); after
    /// each batch, the positions after it. Every stream the feed reads has a key.
    fn positions(&self) -> Positions;

    /// Records `positions` as durable: after a restart, [`start`](ChangeFeed::start)
    /// continues from them.
    async fn commit(&mut self, positions: &Positions) -> Result<(), SourceError>;
}
