//! The change-feed conformance suite: what every [`ChangeFeed`] must do, as checks that run
//! against any implementation through a [`FeedHarness`] (the `tmq` and `wal` feeds of
//! `taosbackup-source` against the emulator, in that crate's tests; the [`crate::fake`] feed
//! here, [`FakeHarness`]).
//!
//! The checks state the trait's documented contract (`crates/core/src/feed.rs`), nothing
//! implementation-specific: events for every change, per table in the order applied
//! (duplicates are allowed where TDengine logs one change more than once: super-table DDL is
//! in every vgroup's log, so a child's schema change can come again from another stream);
//! catch-up ends; positions move forward and name every stream; a restart from committed
//! positions continues without missing or replaying committed changes; uncommitted changes
//! are read again; a history purged past the committed positions is a gap.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use taosbackup_core::{
    ChangeEvent, ChangeFeed, ColumnDef, DataType, FeedStart, Positions, Precision, TableEvent,
    Value,
};

use crate::fake::{FakeDb, FakeFeed, Op};

/// The first timestamp the checks write (ms precision).
pub const T0: i64 = 1_760_000_000_000;

/// What the suite needs from the implementation under test. The harness has created an
/// empty millisecond-precision database with at least two vgroups before the suite runs.
#[async_trait]
pub trait FeedHarness: Send {
    /// Applies a workload op to the database (SQL on a server, [`FakeDb::apply`] on the fake).
    async fn apply(&mut self, op: &Op);

    /// A new feed instance over the database, for the same consumer (group, state file): a
    /// restart of the process.
    async fn feed(&mut self) -> Box<dyn ChangeFeed>;

    /// Purges the database's change history up to its current end (`PURGE WAL`, the WAL
    /// retention running out), while no feed runs.
    async fn purge(&mut self);
}

/// The [`FeedHarness`] of the in-memory [`FakeFeed`].
#[derive(Debug, Clone)]
pub struct FakeHarness {
    /// The database behind the feed.
    pub db: FakeDb,
}

impl FakeHarness {
    /// A fake database `power` with two streams.
    pub fn new() -> FakeHarness {
        let db = FakeDb::new();
        // An empty name set cannot hold it already: this cannot fail.
        let _ = db.create_database(DATABASE, Precision::Ms, 2);
        FakeHarness { db }
    }
}

impl Default for FakeHarness {
    fn default() -> Self {
        FakeHarness::new()
    }
}

/// The database name [`FakeHarness`] uses (other harnesses choose their own).
pub const DATABASE: &str = "power";

#[async_trait]
impl FeedHarness for FakeHarness {
    async fn apply(&mut self, op: &Op) {
        if let Err(e) = self.db.apply(DATABASE, op) {
            panic!("{op:?}: {e}");
        }
    }

    async fn feed(&mut self) -> Box<dyn ChangeFeed> {
        let mut f = FakeFeed::new(self.db.clone(), DATABASE, "suite");
        // Small batches: a catch-up is several batches.
        f.batch_size = 3;
        Box::new(f)
    }

    async fn purge(&mut self) {
        self.db.purge_log(DATABASE);
    }
}

/// Every check, by name.
pub const CHECKS: [&str; 4] = [
    "feed.fresh_start_then_every_change",
    "feed.restart_continues_after_commit",
    "feed.uncommitted_changes_are_read_again",
    "feed.purge_past_commit_is_a_gap",
];

/// Runs every check in order on one harness (they build on each other's database); panics
/// naming the check and what was seen.
pub async fn run(h: &mut dyn FeedHarness) {
    let (mut feed, committed) = fresh_start_then_every_change(h).await;
    feed.commit(&committed).await.expect("commit");
    drop(feed);
    let committed = restart_continues_after_commit(h, committed).await;
    let committed = uncommitted_changes_are_read_again(h, committed).await;
    purge_past_commit_is_a_gap(h, committed).await;
}

fn ts_col() -> ColumnDef {
    ColumnDef::new("ts", DataType::Timestamp, None)
}

fn insert(table: &str, ts: &[i64]) -> Op {
    Op::Insert {
        table: table.into(),
        columns: vec!["v".into()],
        rows: ts.iter().map(|t| (*t, vec![Value::Int(7)])).collect(),
    }
}

/// Reads batches until `None`, checking positions: each batch's positions are where the feed
/// then stands, and no stream moves back. Returns the events and the positions reached.
async fn catch_up(check: &str, feed: &mut dyn ChangeFeed) -> (Vec<ChangeEvent>, Positions) {
    let mut events = Vec::new();
    let mut last = feed.positions();
    for _ in 0..100_000 {
        let Some(batch) = feed
            .next_batch()
            .await
            .unwrap_or_else(|e| panic!("{check}: next_batch: {e}"))
        else {
            let again = feed.next_batch().await;
            assert!(
                matches!(again, Ok(None)),
                "{check}: nothing new after a caught-up feed, yet {again:?}"
            );
            return (events, feed.positions());
        };
        let now = feed.positions();
        for (k, v) in &batch.positions {
            assert_eq!(
                now.get(k),
                Some(v),
                "{check}: positions() after a batch ({k})"
            );
            if let Some(old) = last.get(k) {
                assert!(v >= old, "{check}: stream {k} moved back from {old} to {v}");
            }
        }
        last = now;
        events.extend(batch.events);
    }
    panic!("{check}: the catch-up does not end")
}

fn table_of(e: &ChangeEvent) -> String {
    match e {
        ChangeEvent::Rows { table, .. }
        | ChangeEvent::Delete { table, .. }
        | ChangeEvent::Table { table, .. } => table.clone(),
        ChangeEvent::Reread { table, .. } => table.clone().unwrap_or_default(),
    }
}

/// A table's events in a comparable shape: table events by kind, rows as their timestamps,
/// deletes as their range; consecutive duplicates collapsed, consecutive row events merged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Rows(BTreeSet<i64>),
    Delete(i64, i64),
    Table(TableEvent),
    Reread,
}

fn per_table(events: &[ChangeEvent]) -> BTreeMap<String, Vec<Seen>> {
    let mut out: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for e in events {
        let v = out.entry(table_of(e)).or_default();
        let s = match e {
            ChangeEvent::Rows { timestamps, .. } => {
                if let Some(Seen::Rows(prev)) = v.last_mut() {
                    prev.extend(timestamps.iter().copied());
                    continue;
                }
                Seen::Rows(timestamps.iter().copied().collect())
            }
            ChangeEvent::Delete { start, end, .. } => Seen::Delete(*start, *end),
            ChangeEvent::Table { event, .. } => Seen::Table(*event),
            ChangeEvent::Reread { .. } => Seen::Reread,
        };
        // Super-table DDL is in every vgroup's log (TDengine's mnode sends one alter request
        // per vgroup of the database: mndSetAlterStbRedoActions in
        // source/dnode/mnode/impl/src/mndStb.c), so a child can see its schema change once
        // more from another stream, later: a repeat.
        let repeat = s == Seen::Table(TableEvent::SchemaChanged) && v.contains(&s);
        if v.last() != Some(&s) && !repeat {
            v.push(s);
        }
    }
    out
}

fn rows(ts: &[i64]) -> Seen {
    Seen::Rows(ts.iter().copied().collect())
}

/// Fresh start: `start` with no positions reports `Fresh` and positions for every stream;
/// then every kind of change becomes its event, per table in order.
pub async fn fresh_start_then_every_change(
    h: &mut dyn FeedHarness,
) -> (Box<dyn ChangeFeed>, Positions) {
    let check = CHECKS[0];
    let mut feed = h.feed().await;
    let start = feed.start(&Positions::new()).await;
    assert!(
        matches!(start, Ok(FeedStart::Fresh { .. })),
        "{check}: start without positions: {start:?}"
    );
    let at_start = feed.positions();
    assert!(
        at_start.len() >= 2,
        "{check}: a fresh feed names every stream (two vgroups): {at_start:?}"
    );
    let int = |n: &str| ColumnDef::new(n, DataType::Int, None);
    let ops = [
        Op::CreateStable {
            name: "st".into(),
            columns: vec![ts_col(), int("v")],
            tags: vec![int("g")],
        },
        Op::CreateChild {
            name: "c1".into(),
            stable: "st".into(),
            tags: vec![Value::Int(1)],
        },
        Op::CreateChild {
            name: "c2".into(),
            stable: "st".into(),
            tags: vec![Value::Int(2)],
        },
        Op::CreateTable {
            name: "n1".into(),
            columns: vec![ts_col(), int("v")],
        },
        insert("c1", &[T0, T0 + 1000, T0 + 2000]),
        insert("n1", &[T0 + 5]),
        Op::Delete {
            table: "c1".into(),
            start: T0,
            end: T0 + 1000,
        },
        Op::AddStableColumn {
            stable: "st".into(),
            column: int("x"),
        },
        Op::SetTag {
            table: "c2".into(),
            tag: "g".into(),
            value: Value::Int(20),
        },
        insert("c2", &[T0 + 3]),
        Op::DropTable { table: "n1".into() },
    ];
    for op in &ops {
        h.apply(op).await;
    }
    let (events, positions) = catch_up(check, feed.as_mut()).await;
    let got = per_table(&events);
    let expected = [
        (
            "c1",
            vec![
                Seen::Table(TableEvent::Created),
                rows(&[T0, T0 + 1000, T0 + 2000]),
                Seen::Delete(T0, T0 + 1000),
                Seen::Table(TableEvent::SchemaChanged),
            ],
        ),
        (
            "c2",
            vec![
                Seen::Table(TableEvent::Created),
                Seen::Table(TableEvent::SchemaChanged),
                Seen::Table(TableEvent::TagsChanged),
                rows(&[T0 + 3]),
            ],
        ),
        (
            "n1",
            vec![
                Seen::Table(TableEvent::Created),
                rows(&[T0 + 5]),
                Seen::Table(TableEvent::Dropped),
            ],
        ),
    ];
    for (table, want) in expected {
        assert_eq!(
            got.get(table),
            Some(&want),
            "{check}: events of {table} (all: {events:?})"
        );
    }
    assert!(
        got.keys()
            .all(|t| ["c1", "c2", "n1", "st"].contains(&t.as_str())),
        "{check}: events of tables never touched: {got:?}"
    );
    (feed, positions)
}

/// A restart from committed positions is `Continued`, replays nothing committed, and reads
/// what changed since. Returns the positions committed at its end.
pub async fn restart_continues_after_commit(
    h: &mut dyn FeedHarness,
    committed: Positions,
) -> Positions {
    let check = CHECKS[1];
    let mut feed = h.feed().await;
    let start = feed.start(&committed).await;
    assert!(
        matches!(start, Ok(FeedStart::Continued)),
        "{check}: start after {committed:?}: {start:?}"
    );
    let (events, _) = catch_up(check, feed.as_mut()).await;
    assert!(
        events.is_empty(),
        "{check}: committed events replayed: {events:?}"
    );
    h.apply(&insert("c1", &[T0 + 9000])).await;
    let (events, positions) = catch_up(check, feed.as_mut()).await;
    assert_eq!(
        per_table(&events),
        BTreeMap::from([("c1".to_string(), vec![rows(&[T0 + 9000])])]),
        "{check}: after the restart"
    );
    feed.commit(&positions).await.expect("commit");
    positions
}

/// Changes read but not committed before a restart are read again after it. Returns the
/// positions committed at its end.
pub async fn uncommitted_changes_are_read_again(
    h: &mut dyn FeedHarness,
    committed: Positions,
) -> Positions {
    let check = CHECKS[2];
    let mut feed = h.feed().await;
    let start = feed.start(&committed).await;
    assert!(
        matches!(start, Ok(FeedStart::Continued)),
        "{check}: start: {start:?}"
    );
    h.apply(&insert("c2", &[T0 + 7000])).await;
    h.apply(&Op::Delete {
        table: "c1".into(),
        start: T0 + 9000,
        end: T0 + 9000,
    })
    .await;
    let (first, _) = catch_up(check, feed.as_mut()).await;
    drop(feed);
    let mut feed = h.feed().await;
    let start = feed.start(&committed).await;
    assert!(
        matches!(start, Ok(FeedStart::Continued)),
        "{check}: restart: {start:?}"
    );
    let (again, positions) = catch_up(check, feed.as_mut()).await;
    let want = BTreeMap::from([
        ("c1".to_string(), vec![Seen::Delete(T0 + 9000, T0 + 9000)]),
        ("c2".to_string(), vec![rows(&[T0 + 7000])]),
    ]);
    assert_eq!(per_table(&first), want, "{check}: first read");
    assert_eq!(per_table(&again), want, "{check}: read again");
    feed.commit(&positions).await.expect("commit");
    positions
}

/// History purged past the committed positions while no feed ran is a `Gap`, and the feed
/// goes on reading what comes after.
pub async fn purge_past_commit_is_a_gap(h: &mut dyn FeedHarness, committed: Positions) {
    let check = CHECKS[3];
    h.apply(&insert("c1", &[T0 + 11_000])).await;
    h.purge().await;
    let mut feed = h.feed().await;
    let start = feed.start(&committed).await;
    assert!(
        matches!(start, Ok(FeedStart::Gap { .. })),
        "{check}: start after a purge: {start:?}"
    );
    let _ = catch_up(check, feed.as_mut()).await;
    h.apply(&insert("c2", &[T0 + 12_000])).await;
    let (events, _) = catch_up(check, feed.as_mut()).await;
    assert_eq!(
        per_table(&events),
        BTreeMap::from([("c2".to_string(), vec![rows(&[T0 + 12_000])])]),
        "{check}: after the gap"
    );
}
