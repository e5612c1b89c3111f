//! Change tracking for one database: the persisted [`Tracker`], a [`ChangeFeed`] and the event
//! pipeline between them.
//!
//! The feed's batches are split by table over `callback_threads` workers (so the events of
//! one table stay in order) through a queue bounded to `buffer_size` events: when the
//! workers fall behind, reading the feed waits (back-pressure); no event is ever dropped.
//! Workers turn timestamps into bucket indices outside the tracker's lock and apply a whole
//! shard under one lock acquisition.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use taosbackup_core::{
    Bucket, BucketWidth, ChangeEvent, ChangeFeed, FeedStart, Positions, TableEvent,
};
use tokio::sync::{Semaphore, mpsc};

use crate::tracker::write_state;
use crate::{EngineError, TableChange, Tracker, TrackerStats};

/// Settings of change tracking (the original plugin's `bitmap_engine` and
/// `event_interceptor` sections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingConfig {
    /// Where the tracker state of this repository and database is persisted.
    pub persistence_path: PathBuf,
    /// Memory budget of the bitmaps, in MiB (0: none). Over it the bitmaps are run-length
    /// optimised, and if they stay over it coarsened (each table's changed buckets widened
    /// to one range): precision is traded for memory, changes are never dropped.
    pub memory_limit_mb: u64,
    /// Events queued between the feed and the workers at most (back-pressure beyond).
    pub buffer_size: usize,
    /// Workers applying events to the tracker.
    pub callback_threads: usize,
}

impl TrackingConfig {
    /// Defaults for everything but the path: 256 MiB, 10,000 events, 4 workers.
    pub fn new(persistence_path: impl Into<PathBuf>) -> TrackingConfig {
        TrackingConfig {
            persistence_path: persistence_path.into(),
            memory_limit_mb: 256,
            buffer_size: 10_000,
            callback_threads: 4,
        }
    }
}

/// What one catch-up read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FeedStats {
    /// Batches read from the feed.
    pub batches: u64,
    /// Events applied to the tracker.
    pub events: u64,
    /// The deepest the event queue got (events).
    pub max_queue_depth: u64,
}

/// Counters of change tracking, for status output and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackingStats {
    /// The feed's name.
    pub feed: String,
    /// Events applied since this process opened the tracking.
    pub events_processed: u64,
    /// Events queued right now.
    pub queue_depth: u64,
    /// The deepest the queue got.
    pub max_queue_depth: u64,
    /// Tracked tables.
    pub tables: usize,
    /// Dirty or new blocks awaiting the next backup.
    pub dirty_blocks: u64,
    /// Blocks with deletes awaiting the next backup.
    pub deleted_blocks: u64,
    /// Blocks the repository holds, as far as the tracker knows.
    pub stored_blocks: u64,
    /// Bitmap bytes.
    pub bitmap_bytes: u64,
    /// Why the next backup must be a full one, if it must.
    pub inconsistency: Option<String>,
    /// Feed positions covered.
    pub positions: Positions,
}

/// The tracker of one database kept current by a change feed.
pub struct ChangeTracking {
    tracker: Arc<Mutex<Tracker>>,
    feed: Box<dyn ChangeFeed>,
    config: TrackingConfig,
    events_processed: Arc<AtomicU64>,
    queue_depth: Arc<AtomicU64>,
    max_queue_depth: u64,
}

impl std::fmt::Debug for ChangeTracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeTracking")
            .field("feed", &self.feed.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    // A worker that panicked mid-update leaves bits that are a superset of the truth at
    // worst (marks only add); the state stays usable.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChangeTracking {
    /// Loads the persisted tracker (a missing or damaged state makes it inconsistent, so
    /// the next backup is a full one) and starts `feed` after the positions it covers. The
    /// precision is the state file's; each backup checks it against the database's catalog
    /// ([`Tracker::set_precision`]).
    pub async fn open(
        mut feed: Box<dyn ChangeFeed>,
        config: TrackingConfig,
        width: BucketWidth,
    ) -> Result<ChangeTracking, EngineError> {
        let mut tracker = Tracker::load_or_inconsistent(&config.persistence_path, width)?;
        let start = feed.start(tracker.positions()).await.map_err(|e| {
            EngineError::source(format!("starting the {} change feed", feed.name()), e)
        })?;
        match start {
            FeedStart::Continued => {}
            FeedStart::Fresh { reason } => {
                tracing::info!(feed = feed.name(), %reason, "change feed starts fresh");
                tracker.mark_inconsistent(format!(
                    "the {} change feed starts fresh: {reason}",
                    feed.name()
                ));
            }
            FeedStart::Gap { reason } => {
                tracing::warn!(feed = feed.name(), %reason, "change feed gap: the next backup will be a full one");
                tracker.mark_inconsistent(format!("{} change feed gap: {reason}", feed.name()));
            }
        }
        for (k, v) in feed.positions() {
            tracker.set_position(&k, v);
        }
        Ok(ChangeTracking {
            tracker: Arc::new(Mutex::new(tracker)),
            feed,
            config,
            events_processed: Arc::new(AtomicU64::new(0)),
            queue_depth: Arc::new(AtomicU64::new(0)),
            max_queue_depth: 0,
        })
    }

    /// The change feed's name (`tmq`, `wal`).
    pub fn feed_name(&self) -> &'static str {
        self.feed.name()
    }

    /// The configuration.
    pub fn config(&self) -> &TrackingConfig {
        &self.config
    }

    /// Reads the feed up to its current end into the tracker. Returns once every event read
    /// is applied; the tracker's positions then cover them.
    pub async fn catch_up(&mut self) -> Result<FeedStats, EngineError> {
        let workers = self.config.callback_threads.max(1);
        let capacity = self.config.buffer_size.clamp(1, Semaphore::MAX_PERMITS);
        let permits = Arc::new(Semaphore::new(capacity));
        let (width_units, _) = {
            let t = lock(&self.tracker);
            (t.width().in_units(t.precision()), ())
        };
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) =
                mpsc::unbounded_channel::<(Vec<ChangeEvent>, tokio::sync::OwnedSemaphorePermit)>();
            senders.push(tx);
            handles.push(tokio::spawn(worker(
                rx,
                self.tracker.clone(),
                width_units,
                self.events_processed.clone(),
                self.queue_depth.clone(),
            )));
        }
        let mut stats = FeedStats::default();
        let read = async {
            loop {
                let batch = self.feed.next_batch().await.map_err(|e| {
                    EngineError::source(format!("reading the {} change feed", self.feed.name()), e)
                })?;
                let Some(batch) = batch else { break };
                stats.batches += 1;
                let mut shards: Vec<Vec<ChangeEvent>> = vec![Vec::new(); workers];
                for ev in batch.events {
                    shards[shard_of(table_of(&ev), workers)].push(ev);
                }
                for (i, shard) in shards.into_iter().enumerate() {
                    if shard.is_empty() {
                        continue;
                    }
                    let n = shard.len();
                    stats.events += n as u64;
                    // A shard larger than the whole queue takes the whole queue.
                    let want = u32::try_from(n.min(capacity)).unwrap_or(u32::MAX);
                    let permit = permits
                        .clone()
                        .acquire_many_owned(want)
                        .await
                        .map_err(|_| EngineError::internal("the change-event queue closed"))?;
                    let depth = self.queue_depth.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                    stats.max_queue_depth = stats.max_queue_depth.max(depth);
                    if senders[i].send((shard, permit)).is_err() {
                        return Err(EngineError::internal("a change-tracking worker stopped"));
                    }
                }
            }
            Ok(())
        };
        let result: Result<(), EngineError> = read.await;
        drop(senders);
        // A worker that panicked explains why the reader saw its queue close: its error
        // comes first.
        join_workers(handles).await?;
        self.max_queue_depth = self.max_queue_depth.max(stats.max_queue_depth);
        result?;
        // Every event up to here is applied: the positions may move.
        let positions = self.feed.positions();
        let mut t = lock(&self.tracker);
        for (k, v) in positions {
            t.set_position(&k, v);
        }
        enforce_memory_limit(&mut t, self.config.memory_limit_mb);
        Ok(stats)
    }

    /// Saves the tracker atomically, then commits the feed positions it covers (in that
    /// order: a crash in between replays events, which only re-marks blocks).
    pub async fn persist(&mut self) -> Result<(), EngineError> {
        // Encoded under the lock rather than cloned first: a copy of every table's bitmaps
        // costs more than the encoding itself.
        let (bytes, positions) = {
            let t = lock(&self.tracker);
            (t.encode(), t.positions().clone())
        };
        let path = self.config.persistence_path.clone();
        tokio::task::spawn_blocking(move || write_state(&path, &bytes))
            .await
            .map_err(|e| EngineError::internal(format!("saving the tracker state: {e}")))??;
        self.feed.commit(&positions).await.map_err(|e| {
            EngineError::source(
                format!("committing {} change-feed positions", self.feed.name()),
                e,
            )
        })
    }

    /// Counters for status and metrics.
    pub fn stats(&self) -> TrackingStats {
        let t = lock(&self.tracker);
        let s: TrackerStats = t.stats();
        TrackingStats {
            feed: self.feed.name().to_string(),
            events_processed: self.events_processed.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            max_queue_depth: self.max_queue_depth,
            tables: s.tables,
            dirty_blocks: s.dirty_blocks,
            deleted_blocks: s.deleted_blocks,
            stored_blocks: s.stored_blocks,
            bitmap_bytes: s.bitmap_bytes,
            inconsistency: t.inconsistency().map(str::to_string),
            positions: t.positions().clone(),
        }
    }

    /// The tracker, for the engines (locked briefly).
    pub(crate) fn tracker(&self) -> &Mutex<Tracker> {
        &self.tracker
    }
}

/// Keeps the bitmaps within `limit_mb`: first lossless optimisation, then coarsening (see
/// [`Tracker::coarsen`]); a change is never dropped.
fn enforce_memory_limit(t: &mut Tracker, limit_mb: u64) {
    let limit = limit_mb.saturating_mul(1 << 20);
    if limit == 0 || t.stats().bitmap_bytes <= limit {
        return;
    }
    t.optimize();
    let optimised = t.stats().bitmap_bytes;
    if optimised <= limit {
        return;
    }
    let coarse = t.coarsen();
    tracing::warn!(
        optimised,
        coarse,
        limit,
        "tracker bitmaps exceeded memory_limit_mb: changed buckets were widened to one range \
         per table (more blocks will be exported; no change is dropped)"
    );
}

fn table_of(ev: &ChangeEvent) -> &str {
    match ev {
        ChangeEvent::Rows { table, .. }
        | ChangeEvent::Delete { table, .. }
        | ChangeEvent::Table { table, .. }
        | ChangeEvent::Reread {
            table: Some(table), ..
        } => table,
        // The whole database: order does not matter (it only marks the tracker).
        ChangeEvent::Reread { table: None, .. } => "",
    }
}

fn shard_of(table: &str, n: usize) -> usize {
    let mut h = DefaultHasher::new();
    table.hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// An event with its buckets computed (outside the lock).
enum Prepared {
    Buckets(String, Vec<Bucket>),
    Delete(String, i64, i64),
    Table(String, TableChange),
    /// Export the table whole next time (`None`: every table — a full backup).
    Reread(Option<String>, String),
}

/// Waits for every change-tracking worker; one that panicked (or was cancelled) is a bug,
/// reported as [`EngineError::Internal`].
async fn join_workers(handles: Vec<tokio::task::JoinHandle<()>>) -> Result<(), EngineError> {
    let mut failed = None;
    for h in handles {
        if let Err(e) = h.await {
            failed.get_or_insert(e);
        }
    }
    match failed {
        None => Ok(()),
        Some(e) => Err(EngineError::internal(format!(
            "a change-tracking worker failed: {e}"
        ))),
    }
}

async fn worker(
    mut rx: mpsc::UnboundedReceiver<(Vec<ChangeEvent>, tokio::sync::OwnedSemaphorePermit)>,
    tracker: Arc<Mutex<Tracker>>,
    width_units: i64,
    processed: Arc<AtomicU64>,
    depth: Arc<AtomicU64>,
) {
    while let Some((events, permit)) = rx.recv().await {
        let n = events.len() as u64;
        let prepared: Vec<Prepared> = events
            .into_iter()
            .map(|ev| match ev {
                ChangeEvent::Rows { table, timestamps } => {
                    let mut b: Vec<Bucket> = timestamps
                        .iter()
                        .map(|&t| Bucket::containing(t, width_units))
                        .collect();
                    b.sort_unstable();
                    b.dedup();
                    Prepared::Buckets(table, b)
                }
                ChangeEvent::Delete { table, start, end } => Prepared::Delete(table, start, end),
                ChangeEvent::Table { table, event } => Prepared::Table(
                    table,
                    match event {
                        TableEvent::Created => TableChange::Created,
                        TableEvent::Dropped => TableChange::Dropped,
                        TableEvent::SchemaChanged => TableChange::SchemaChanged,
                        TableEvent::TagsChanged => TableChange::TagsChanged,
                    },
                ),
                ChangeEvent::Reread { table, reason } => Prepared::Reread(table, reason),
            })
            .collect();
        {
            let mut t = lock(&tracker);
            for p in &prepared {
                match p {
                    Prepared::Buckets(table, buckets) => t.mark_buckets(table, buckets),
                    Prepared::Delete(table, start, end) => t.mark_deleted(table, *start, *end),
                    Prepared::Table(table, change) => t.table_changed(table, *change),
                    Prepared::Reread(table, reason) => reread(&mut t, table.as_deref(), reason),
                }
            }
        }
        processed.fetch_add(n, Ordering::Relaxed);
        depth.fetch_sub(n, Ordering::Relaxed);
        drop(permit);
    }
}

/// A change the feed could not understand: the table is treated as dropped and created
/// again, which the bitmap engine exports whole (tombstoning buckets that are gone); for the
/// whole database the tracker becomes inconsistent, so the next backup is a full one and
/// gives `reason`.
fn reread(t: &mut Tracker, table: Option<&str>, reason: &str) {
    match table {
        Some(table) => {
            tracing::warn!(
                table,
                %reason,
                "the change feed could not read a change of this table: the next backup \
                 exports it whole"
            );
            t.table_changed(table, TableChange::Dropped);
            t.table_changed(table, TableChange::Created);
        }
        None => {
            tracing::warn!(
                %reason,
                "the change feed could not read a change: the next backup is a full one"
            );
            t.mark_inconsistent(format!("change feed: {reason}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use async_trait::async_trait;
    use taosbackup_core::{ChangeBatch, Precision, SourceError};

    use super::*;
    use crate::BlockState;

    /// A feed replaying scripted batches.
    struct Scripted {
        batches: VecDeque<ChangeBatch>,
        at: i64,
    }

    #[async_trait]
    impl ChangeFeed for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn start(&mut self, _: &Positions) -> Result<FeedStart, SourceError> {
            Ok(FeedStart::Continued)
        }
        async fn next_batch(&mut self) -> Result<Option<ChangeBatch>, SourceError> {
            let b = self.batches.pop_front();
            if b.is_some() {
                self.at += 1;
            }
            Ok(b)
        }
        fn positions(&self) -> Positions {
            [("s".to_string(), self.at)].into()
        }
        async fn commit(&mut self, _: &Positions) -> Result<(), SourceError> {
            Ok(())
        }
    }

    fn events(seed: u64, n: usize) -> Vec<ChangeEvent> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let table = format!("t{}", next() % 7);
                match next() % 10 {
                    0 => ChangeEvent::Table {
                        table,
                        event: TableEvent::Dropped,
                    },
                    1 => ChangeEvent::Table {
                        table,
                        event: TableEvent::Created,
                    },
                    2 => {
                        let s = (next() % 1000) as i64 * 1000;
                        ChangeEvent::Delete {
                            table,
                            start: s,
                            end: s + 90_000,
                        }
                    }
                    _ => ChangeEvent::Rows {
                        table,
                        timestamps: (0..(next() % 5 + 1))
                            .map(|_| (next() % 1_000_000) as i64)
                            .collect(),
                    },
                }
            })
            .collect()
    }

    fn apply_in_order(t: &mut Tracker, evs: &[ChangeEvent]) {
        for e in evs {
            match e {
                ChangeEvent::Rows { table, timestamps } => t.mark_rows(table, timestamps),
                ChangeEvent::Delete { table, start, end } => t.mark_deleted(table, *start, *end),
                ChangeEvent::Table { table, event } => t.table_changed(
                    table,
                    match event {
                        TableEvent::Created => TableChange::Created,
                        TableEvent::Dropped => TableChange::Dropped,
                        TableEvent::SchemaChanged => TableChange::SchemaChanged,
                        TableEvent::TagsChanged => TableChange::TagsChanged,
                    },
                ),
                ChangeEvent::Reread { table, reason } => reread(t, table.as_deref(), reason),
            }
        }
    }

    async fn run_pipeline(
        evs: &[ChangeEvent],
        batch: usize,
        config: TrackingConfig,
    ) -> (ChangeTracking, FeedStats) {
        let width = BucketWidth::from_seconds(60).unwrap();
        let feed = Scripted {
            batches: evs
                .chunks(batch)
                .map(|c| ChangeBatch {
                    events: c.to_vec(),
                    positions: Positions::new(),
                })
                .collect(),
            at: 0,
        };
        let mut tracking = ChangeTracking::open(Box::new(feed), config, width)
            .await
            .unwrap();
        let stats = tracking.catch_up().await.unwrap();
        (tracking, stats)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_and_a_tiny_queue_apply_every_event_in_table_order() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(7, 5_000);
        let mut config = TrackingConfig::new(dir.path().join("s"));
        config.buffer_size = 3;
        config.callback_threads = 3;
        let (tracking, stats) = run_pipeline(&evs, 64, config).await;
        assert_eq!(stats.events, 5_000);
        assert_eq!(tracking.stats().events_processed, 5_000);
        assert_eq!(tracking.stats().queue_depth, 0);
        assert_eq!(tracking.stats().positions.get("s"), Some(&79));
        // The same events applied one by one give the same tracker (ordinals aside).
        let mut model = Tracker::new(BucketWidth::from_seconds(60).unwrap(), Precision::Ms);
        model.mark_inconsistent("x");
        apply_in_order(&mut model, &evs);
        let got = lock(tracking.tracker()).snapshot_and_reset();
        let want = model.snapshot_and_reset();
        let mut tables: Vec<&str> = want.tables().collect();
        tables.sort_unstable();
        let mut got_tables: Vec<&str> = got.tables().collect();
        got_tables.sort_unstable();
        assert_eq!(got_tables, tables);
        for t in tables {
            assert_eq!(got.dirty_buckets(t), want.dirty_buckets(t), "{t}");
            assert_eq!(got.deleted_buckets(t), want.deleted_buckets(t), "{t}");
            assert_eq!(got.changes(t), want.changes(t), "{t}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_the_memory_limit_marks_are_coarsened_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        // Sparse buckets (40 over two years of minutes) in many tables: over 1 MiB as
        // marked.
        let evs: Vec<ChangeEvent> = (0..20_000)
            .map(|t| ChangeEvent::Rows {
                table: format!("t{t}"),
                timestamps: (0..40).map(|i| i * 60_000 * 1_000).collect(),
            })
            .collect();
        let mut config = TrackingConfig::new(dir.path().join("s"));
        config.memory_limit_mb = 1;
        let (tracking, _) = run_pipeline(&evs, 100, config).await;
        let stats = tracking.stats();
        assert!(stats.bitmap_bytes < 1 << 20, "{stats:?}");
        assert!(stats.dirty_blocks > 20_000 * 40, "coarsened: {stats:?}");
        let t = lock(tracking.tracker());
        for e in evs.iter().step_by(37) {
            let ChangeEvent::Rows { table, timestamps } = e else {
                unreachable!()
            };
            for x in timestamps {
                assert_eq!(
                    t.state(table, Bucket::containing(*x, 60_000)),
                    BlockState::New
                );
            }
        }
    }

    /// A change the feed could not read: the table becomes "dropped and created again"
    /// (the bitmap engine exports it whole), or, with no table, the tracker inconsistent
    /// with the reason (the next backup is full). Never nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reread_events_force_whole_tables_or_a_full_backup() {
        let evs = vec![
            ChangeEvent::Rows {
                table: "a".into(),
                timestamps: vec![60_000],
            },
            ChangeEvent::Reread {
                table: Some("a".into()),
                reason: "alterType 99".into(),
            },
        ];
        // Through the pipeline (sharded workers) …
        let dir = tempfile::tempdir().unwrap();
        let (tracking, _) = run_pipeline(&evs, 10, TrackingConfig::new(dir.path().join("s"))).await;
        let c = lock(tracking.tracker()).snapshot_and_reset().changes("a");
        assert!(c.dropped && c.created, "{c:?}");
        // … and on a consistent tracker.
        let mut t = Tracker::new(BucketWidth::from_seconds(60).unwrap(), Precision::Ms);
        apply_in_order(&mut t, &evs);
        assert!(t.inconsistency().is_none());
        apply_in_order(
            &mut t,
            &[ChangeEvent::Reread {
                table: None,
                reason: "meta message without a type".into(),
            }],
        );
        assert!(
            t.inconsistency()
                .is_some_and(|r| r.contains("meta message without a type")),
            "{:?}",
            t.inconsistency()
        );
    }

    #[tokio::test]
    async fn a_worker_that_panics_is_an_internal_error_not_a_bad_request() {
        let ok = tokio::spawn(async {});
        let panics = tokio::spawn(async { panic!("injected worker bug") });
        let err = join_workers(vec![ok, panics]).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal, "{err}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.starts_with("internal error: a change-tracking worker failed")
                && text.contains("panicked"),
            "{text}"
        );
        join_workers(vec![tokio::spawn(async {})]).await.unwrap();
    }
}
