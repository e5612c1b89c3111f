//! The `tmq` change feed against the emulator's TMQ over a real WebSocket.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, TaosBuilder};
use taosbackup_core::{ChangeEvent, ChangeFeed, FeedStart, Positions, SourceErrorKind, TableEvent};
use taosbackup_source::{ConnectOptions, TmqFeed, TmqFeedOptions};
use taosbackup_testkit::{
    Emulator, EmulatorConfig, EmulatorHandle, Fault, FaultAction, FaultPoint, Trigger, Ty, tmq_meta,
};

const T0: i64 = 1_760_000_000_000;
const DEADLINE: Duration = Duration::from_secs(30);

fn emu() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::default()).expect("emulator starts")
}

fn connect_options(emu: &EmulatorHandle) -> ConnectOptions {
    let mut o = ConnectOptions::new(emu.dsn());
    o.retry_count = 2;
    o.retry_interval_ms = 10;
    o.request_timeout = Duration::from_secs(5);
    o
}

fn feed(emu: &EmulatorHandle, db: &str) -> TmqFeed {
    TmqFeed::new(connect_options(emu), TmqFeedOptions::new("repo-1", db)).expect("feed")
}

async fn sql(emu: &EmulatorHandle, statements: &[String]) {
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .unwrap();
    crate::nodelay(&taos).await;
    for s in statements {
        taos.exec(s.as_str())
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

/// One catch-up: batches until `None`, checking each batch's positions move forward.
async fn catch_up(feed: &mut TmqFeed) -> Vec<ChangeEvent> {
    let start = Instant::now();
    let mut events = Vec::new();
    let mut last = feed.positions();
    while let Some(batch) = feed.next_batch().await.expect("next batch") {
        assert!(start.elapsed() < DEADLINE, "catch-up does not end");
        for (k, v) in &batch.positions {
            assert!(last.get(k).is_some_and(|old| v > old), "{k} {v} {last:?}");
        }
        last.extend(batch.positions.clone());
        assert_eq!(feed.positions(), last);
        events.extend(batch.events);
    }
    events
}

/// The WAL end of every vgroup, as positions.
fn ends(emu: &EmulatorHandle, db: &str) -> Positions {
    emu.store()
        .vgroups(db)
        .unwrap()
        .into_iter()
        .map(|vg| (format!("vg:{vg}"), emu.store().wal_range(db, vg).unwrap().1))
        .collect()
}

/// Events per table, consecutive duplicates collapsed (super-table DDL is logged in every
/// vgroup, so children see it once per vgroup).
fn per_table(events: &[ChangeEvent]) -> BTreeMap<String, Vec<ChangeEvent>> {
    let mut out: BTreeMap<String, Vec<ChangeEvent>> = BTreeMap::new();
    for e in events {
        let t = match e {
            ChangeEvent::Rows { table, .. }
            | ChangeEvent::Delete { table, .. }
            | ChangeEvent::Table { table, .. } => table.clone(),
            ChangeEvent::Reread { table, .. } => table.clone().unwrap_or_default(),
        };
        let v = out.entry(t).or_default();
        if v.last() != Some(e) {
            v.push(e.clone());
        }
    }
    out
}

fn rows(table: &str, ts: &[i64]) -> ChangeEvent {
    ChangeEvent::Rows {
        table: table.into(),
        timestamps: ts.to_vec(),
    }
}

fn tev(table: &str, event: TableEvent) -> ChangeEvent {
    ChangeEvent::Table {
        table: table.into(),
        event,
    }
}

/// Statements creating child tables `d.c0`… `d.c{n-1}` of `d.st` with two rows each, every
/// insert a TMQ message of its own: a meta entry after each insert ends TDengine's gathering
/// of consecutive submits into one message (table options yield no event).
fn one_message_per_table(n: i64) -> Vec<String> {
    let mut stmts = Vec::new();
    for i in 0..n {
        stmts.push(format!(
            "INSERT INTO d.c{i} USING d.st TAGS ({i}) VALUES ({}, {i}) ({}, {i})",
            T0 + i,
            T0 + 1000 + i
        ));
        stmts.push(format!("ALTER TABLE d.c{i} TTL 1"));
    }
    stmts
}

/// `events` hold exactly the changes of [`one_message_per_table`]`(n)`, each once.
fn assert_each_table_once(events: &[ChangeEvent], n: i64) {
    let t = per_table(events);
    assert_eq!(t.len(), n as usize);
    for i in 0..n {
        let c = format!("c{i}");
        assert_eq!(
            t[&c],
            vec![
                tev(&c, TableEvent::Created),
                rows(&c, &[T0 + i, T0 + 1000 + i])
            ]
        );
    }
    assert_eq!(events.len(), 2 * n as usize);
}

async fn setup(emu: &EmulatorHandle, db: &str, options: &str) {
    sql(
        emu,
        &[
            format!("CREATE DATABASE {db} VGROUPS 2 {options}"),
            format!("CREATE STABLE {db}.st (ts TIMESTAMP, v INT) TAGS (g INT)"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_deletes_and_table_changes_become_exact_events() {
    let emu = emu();
    setup(&emu, "d", "").await;
    let mut f = feed(&emu, "d");
    let start = f.start(&Positions::new()).await.unwrap();
    assert!(matches!(start, FeedStart::Fresh { .. }), "{start:?}");
    assert_eq!(
        f.positions(),
        ends(&emu, "d"),
        "a fresh feed stands at the end"
    );
    assert_eq!(f.positions().len(), 2);
    assert!(f.wal_retention_period().is_some_and(|p| p > 0));
    assert!(catch_up(&mut f).await.is_empty());

    let mut stmts = vec![
        format!(
            "INSERT INTO d.a USING d.st TAGS (1) VALUES ({T0}, 1) ({}, 2)",
            T0 + 1
        ),
        format!("INSERT INTO d.b USING d.st TAGS (2) VALUES ({}, 3)", T0 + 5),
    ];
    for i in 0..6 {
        stmts.push(format!(
            "INSERT INTO d.c{i} USING d.st TAGS ({i}) VALUES ({}, {i})",
            T0 + i
        ));
    }
    stmts.extend([
        // A late row into an old bucket, then an overwrite.
        format!("INSERT INTO d.a VALUES ({}, 9)", T0 - 86_400_000),
        format!("INSERT INTO d.a VALUES ({T0}, 10)"),
        format!("DELETE FROM d.a WHERE ts >= {T0} AND ts <= {}", T0 + 1),
        s("CREATE TABLE d.n (ts TIMESTAMP, v INT)"),
        s("ALTER TABLE d.n ADD COLUMN w INT"),
        s("ALTER TABLE d.b SET TAG g = 5"),
        s("ALTER STABLE d.st ADD COLUMN x DOUBLE"),
        s("DROP TABLE d.b"),
    ]);
    sql(&emu, &stmts).await;
    // Tables in both vgroups.
    let used: Vec<_> = emu
        .store()
        .vgroups("d")
        .unwrap()
        .into_iter()
        .map(|vg| emu.store().wal_range("d", vg).unwrap().1)
        .collect();
    assert!(used.iter().all(|&e| e > 4), "{used:?}");

    let events = catch_up(&mut f).await;
    assert_eq!(
        f.positions(),
        ends(&emu, "d"),
        "caught up with every vgroup"
    );
    let t = per_table(&events);
    use TableEvent::*;
    assert_eq!(
        t["a"],
        vec![
            tev("a", Created),
            rows("a", &[T0, T0 + 1]),
            rows("a", &[T0 - 86_400_000]),
            rows("a", &[T0]),
            ChangeEvent::Delete {
                table: "a".into(),
                start: T0,
                end: T0 + 1
            },
            tev("a", SchemaChanged),
        ]
    );
    assert_eq!(
        t["b"],
        vec![
            tev("b", Created),
            rows("b", &[T0 + 5]),
            tev("b", TagsChanged),
            // No SchemaChanged from the super-table alter: it is expanded to the children
            // that exist when it is read, and b is gone by then (the engine diffs catalogs).
            tev("b", Dropped),
        ]
    );
    assert_eq!(t["n"], vec![tev("n", Created), tev("n", SchemaChanged)]);
    for i in 0..6 {
        let c = format!("c{i}");
        assert_eq!(
            t[&c],
            vec![
                tev(&c, Created),
                rows(&c, &[T0 + i]),
                tev(&c, SchemaChanged)
            ]
        );
    }
    assert_eq!(t.len(), 9, "{:?}", t.keys());

    // A second catch-up returns only what arrived since.
    assert!(catch_up(&mut f).await.is_empty());
    sql(
        &emu,
        &[format!("INSERT INTO d.c1 (ts, v) VALUES ({}, 7)", T0 + 100)],
    )
    .await;
    assert_eq!(catch_up(&mut f).await, vec![rows("c1", &[T0 + 100])]);

    // DROP TABLE of several tables: one drop message per vgroup listing its tables
    // (processDropTable); every table is reported dropped.
    sql(&emu, &[s("DROP TABLE d.c0, d.c1, d.c2, d.c3")]).await;
    let mut dropped = catch_up(&mut f).await;
    dropped.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        dropped,
        (0..4)
            .map(|i| tev(&format!("c{i}"), Dropped))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_and_super_table_deletes_reach_children() {
    let emu = emu();
    // One vgroup: the five inserts' submits follow each other in one log.
    sql(
        &emu,
        &[
            "CREATE DATABASE d VGROUPS 1".to_string(),
            "CREATE STABLE d.st (ts TIMESTAMP, v INT) TAGS (g INT)".to_string(),
        ],
    )
    .await;
    let mut o = TmqFeedOptions::new("repo-1", "d");
    o.max_batch_events = 3;
    let mut f = TmqFeed::new(connect_options(&emu), o).unwrap();
    f.start(&Positions::new()).await.unwrap();
    let mut stmts = Vec::new();
    for i in 0..5 {
        stmts.push(format!(
            "INSERT INTO d.c{i} USING d.st TAGS ({i}) VALUES ({}, {i})",
            T0 + i
        ));
    }
    stmts.push(format!(
        "DELETE FROM d.st WHERE ts >= {T0} AND ts <= {}",
        T0 + 2
    ));
    sql(&emu, &stmts).await;
    let mut batches = Vec::new();
    let mut events = Vec::new();
    while let Some(b) = f.next_batch().await.unwrap() {
        batches.push(b.events.len());
        events.extend(b.events);
    }
    // TDengine gathers consecutive submits into one message (tqUtil.c): the five inserts
    // are one meta+data message, a create and the rows per table, and a message is never
    // split across batches. The limit is checked between messages: the three deletes (one
    // meta message each) fill the next batch.
    assert_eq!(batches, vec![10, 3], "{events:?}");
    let t = per_table(&events);
    for i in 0..5 {
        let c = format!("c{i}");
        assert_eq!(
            t[&c][..2],
            [tev(&c, TableEvent::Created), rows(&c, &[T0 + i])]
        );
    }
    let mut deletes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ChangeEvent::Delete { table, start, end } => Some((table.clone(), *start, *end)),
            _ => None,
        })
        .collect();
    deletes.sort();
    assert_eq!(
        deletes,
        (0..3)
            .map(|i| (format!("c{i}"), T0 + i, T0 + i))
            .collect::<Vec<_>>(),
        "the emulator logs a super-table delete per child, per run of deleted rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_positions_continue_without_replay_and_purge_is_a_gap() {
    let emu = emu();
    setup(&emu, "d", "").await;
    let mut f = feed(&emu, "d");
    f.start(&Positions::new()).await.unwrap();
    let mut stmts = Vec::new();
    for i in 0..4 {
        stmts.push(format!(
            "INSERT INTO d.c{i} USING d.st TAGS ({i}) VALUES ({}, {i})",
            T0 + i
        ));
    }
    sql(&emu, &stmts).await;
    assert_eq!(catch_up(&mut f).await.len(), 8);
    let committed = f.positions();
    f.commit(&committed).await.unwrap();
    let group = f.options().group.clone();
    drop(f);
    // The group's offsets on the server are the committed positions.
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .unwrap();
    crate::nodelay(&taos).await;
    let subs: Vec<(String, i32, Option<String>)> = taos
        .query(
            "SELECT consumer_group, vgroup_id, `offset` FROM information_schema.ins_subscriptions",
        )
        .await
        .unwrap()
        .deserialize()
        .try_collect()
        .await
        .unwrap();
    for (k, v) in &committed {
        let vg: i32 = k.trim_start_matches("vg:").parse().unwrap();
        assert!(
            subs.contains(&(group.clone(), vg, Some(format!("wal:{v}")))),
            "{subs:?} {committed:?}"
        );
    }

    // A new instance continues from the committed positions: nothing is replayed.
    let mut f2 = feed(&emu, "d");
    assert_eq!(f2.start(&committed).await.unwrap(), FeedStart::Continued);
    assert_eq!(f2.positions(), committed);
    assert!(catch_up(&mut f2).await.is_empty());
    sql(&emu, &[format!("INSERT INTO d.c0 VALUES ({}, 1)", T0 + 50)]).await;
    assert_eq!(catch_up(&mut f2).await, vec![rows("c0", &[T0 + 50])]);
    drop(f2);

    // The WAL is purged past the committed offsets: the next start reports a gap and
    // stands at the current end.
    sql(&emu, &[format!("INSERT INTO d.c1 VALUES ({}, 1)", T0 + 60)]).await;
    for vg in emu.store().vgroups("d").unwrap() {
        emu.store().purge_wal("d", vg, i64::MAX).unwrap();
    }
    let mut f3 = feed(&emu, "d");
    match f3.start(&committed).await.unwrap() {
        FeedStart::Gap { reason } => {
            assert!(reason.contains("before the WAL's begin"), "{reason}")
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    assert_eq!(f3.positions(), ends(&emu, "d"));
    assert!(catch_up(&mut f3).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_during_reading_is_an_error_not_a_skip() {
    let emu = emu();
    setup(&emu, "d", "").await;
    let mut f = feed(&emu, "d");
    f.start(&Positions::new()).await.unwrap();
    sql(
        &emu,
        &[format!(
            "INSERT INTO d.c0 USING d.st TAGS (0) VALUES ({T0}, 1)"
        )],
    )
    .await;
    for vg in emu.store().vgroups("d").unwrap() {
        emu.store().purge_wal("d", vg, i64::MAX).unwrap();
    }
    let err = f.next_batch().await.unwrap_err();
    assert!(
        err.to_string().contains("gap in the tmq change feed"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_topic_with_positions_is_a_gap() {
    let emu = emu();
    setup(&emu, "d", "").await;
    let mut f = feed(&emu, "d");
    let positions: Positions = ends(&emu, "d");
    match f.start(&positions).await.unwrap() {
        FeedStart::Gap { reason } => assert!(reason.contains("created now"), "{reason}"),
        other => panic!("expected a gap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_are_clear() {
    let emu = emu();
    setup(&emu, "z", "WAL_RETENTION_PERIOD 0").await;
    let err = feed(&emu, "z").start(&Positions::new()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("ALTER DATABASE z WAL_RETENTION_PERIOD 86400"),
        "{text}"
    );
    assert!(!err.is_retryable());

    // A topic of the feed's name that was created without META is refused.
    setup(&emu, "w", "").await;
    let topic = TmqFeedOptions::new("repo-1", "w").topic;
    sql(&emu, &[format!("CREATE TOPIC {topic} AS DATABASE w")]).await;
    let err = feed(&emu, "w").start(&Positions::new()).await.unwrap_err();
    assert!(err.to_string().contains("without WITH META"), "{err}");

    let err = feed(&emu, "missing")
        .start(&Positions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SourceErrorKind::NotFound, "{err}");

    let o = connect_options(&emu).with_credentials("root", "wrong");
    let err = TmqFeed::new(o, TmqFeedOptions::new("r", "z"))
        .unwrap()
        .start(&Positions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SourceErrorKind::Authentication, "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_resume_where_the_last_batch_ended() {
    let emu = emu();
    setup(&emu, "d", "").await;
    let mut o = TmqFeedOptions::new("repo-1", "d");
    o.max_batch_events = 2;
    let mut f = TmqFeed::new(connect_options(&emu), o).unwrap();
    f.start(&Positions::new()).await.unwrap();
    sql(&emu, &one_message_per_table(6)).await;
    let mut events = f.next_batch().await.unwrap().unwrap().events;
    let start = Instant::now();
    let mut errors = 0;
    loop {
        assert!(start.elapsed() < DEADLINE);
        if events.len() == 4 {
            // Mid catch-up, the server drops every connection.
            emu.disconnect_all();
        }
        match f.next_batch().await {
            Ok(Some(b)) => events.extend(b.events),
            Ok(None) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                errors += 1;
            }
        }
    }
    assert!((1..=3).contains(&errors), "{errors} errors");
    // The reconnection's rebalance entries (the old consumer leaving, the new one
    // subscribing) lie after the catch-up's target; the next catch-up passes them with no
    // event.
    assert!(catch_up(&mut f).await.is_empty());
    assert_eq!(f.positions(), ends(&emu, "d"));
    // Every change exactly once: nothing skipped, nothing repeated.
    assert_each_table_once(&events, 6);
}

/// A data message read in one `fetch_raw_data` reply: a connection lost during that request,
/// or the server's error reply to it, fails the batch retryably, and the next batch reads
/// the message again; every change arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_raw_data_fetch_is_retried_without_loss() {
    let emu = emu();
    setup(&emu, "d", "").await;
    let mut f = feed(&emu, "d");
    f.start(&Positions::new()).await.unwrap();
    sql(&emu, &one_message_per_table(4)).await;
    let raw = |action| {
        Fault::new(FaultPoint::TmqFetch, action)
            .matching("fetch_raw_data")
            .trigger(Trigger::Nth(2))
    };
    let drop = emu.inject(raw(FaultAction::Drop));
    let refuse = emu.inject(
        raw(FaultAction::Error {
            code: 0x0100,
            message: "refused".into(),
        })
        .trigger(Trigger::Nth(4)),
    );
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE);
        match f.next_batch().await {
            Ok(Some(b)) => events.extend(b.events),
            Ok(None) => break,
            Err(e) => errors.push(e),
        }
    }
    let stats = emu.fault_stats();
    assert_eq!((stats[drop].fired, stats[refuse].fired), (1, 1));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].is_retryable(), "{}", errors[0]);
    assert!(errors[1].to_string().contains("refused"), "{}", errors[1]);
    assert_each_table_once(&events, 4);
}

/// A meta message (here a DELETE) does not say where it ended, a raw data message does: the
/// feed asks the server's position once for what the meta messages leave unknown, not once
/// per meta message. Inserts and deletes alternating in one table of one vgroup: every
/// event arrives, in order, the positions end where the log does, and the catch-up takes
/// two round trips per message (poll, fetch) plus a few per batch. With a position request
/// after each delete it took 3 per delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_between_inserts_cost_no_position_request_each() {
    let emu = emu();
    sql(
        &emu,
        &[
            s("CREATE DATABASE d VGROUPS 1"),
            s("CREATE STABLE d.st (ts TIMESTAMP, v INT) TAGS (g INT)"),
            format!("INSERT INTO d.a USING d.st TAGS (1) VALUES ({T0}, 0)"),
        ],
    )
    .await;
    let mut f = feed(&emu, "d");
    f.start(&Positions::new()).await.unwrap();
    assert!(catch_up(&mut f).await.is_empty());
    const N: i64 = 20;
    let mut stmts = Vec::new();
    let mut want = Vec::new();
    for i in 1..=N {
        let ts = T0 + i * 10;
        stmts.push(format!("INSERT INTO d.a VALUES ({ts}, {i})"));
        stmts.push(format!("DELETE FROM d.a WHERE ts >= {ts} AND ts <= {ts}"));
        want.push(rows("a", &[ts]));
        want.push(ChangeEvent::Delete {
            table: s("a"),
            start: ts,
            end: ts,
        });
    }
    sql(&emu, &stmts).await;
    let before = emu.requests();
    let events = catch_up(&mut f).await;
    let used = emu.requests() - before;
    assert_eq!(events, want);
    assert_eq!(f.positions(), ends(&emu, "d"), "caught up to the end");
    // 2N messages of two round trips each; the rest is per batch (assignment, positions).
    let messages = 2 * N as u64;
    assert!(
        used <= 2 * messages + 8,
        "{used} requests for {messages} messages"
    );
}

/// Audit A3: subscribes, offset commits and consumer departures are WAL entries that yield
/// no message. An idle database's vgroups only ever "reach the end" through them, so the
/// catch-up must adopt the consumer's position after empty polls. Three backups in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_database_catches_up_three_runs_in_a_row() {
    let emu = emu();
    setup(&emu, "d", "").await;
    let mut committed = Positions::new();
    for run in 0..3 {
        let before = ends(&emu, "d");
        let mut f = feed(&emu, "d");
        let start = f.start(&committed).await.unwrap();
        if run == 0 {
            assert!(matches!(start, FeedStart::Fresh { .. }), "{start:?}");
        } else {
            assert_eq!(start, FeedStart::Continued, "run {run}");
        }
        let t = Instant::now();
        assert!(catch_up(&mut f).await.is_empty(), "run {run}");
        assert!(t.elapsed() < DEADLINE);
        let now = ends(&emu, "d");
        assert_eq!(f.positions(), now, "run {run}: caught up");
        // This run's own subscribe (and, after the first, the last run's commit and
        // departure) moved every vgroup's end although nothing was written.
        for (k, v) in &before {
            assert!(now[k] > *v, "run {run} {k}: {now:?} {before:?}");
        }
        committed = f.positions();
        f.commit(&committed).await.unwrap();
    }
}

/// Audit A4: meta messages the typed parser of taos-query 0.12.4 rejects (alterType 9
/// without colName, 13, 14, 15, `createList`) become the right events; ones nobody
/// understands become a re-read of the table, never a failure or a dropped change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_meta_kind_is_read_and_unknown_ones_are_reread() {
    let emu = emu();
    setup(&emu, "d", "").await;
    sql(
        &emu,
        &[
            s("CREATE STABLE d.st2 (ts TIMESTAMP, v INT) TAGS (g INT, h INT)"),
            s("CREATE TABLE d.n (ts TIMESTAMP, v INT)"),
        ],
    )
    .await;
    let mut f = feed(&emu, "d");
    f.start(&Positions::new()).await.unwrap();
    // Six children in one statement: one create per vgroup, listed in `createList`.
    let mut create = s("CREATE TABLE");
    for i in 0..6 {
        create.push_str(&format!(" d.k{i} USING d.st2 TAGS ({i}, 0)"));
    }
    sql(
        &emu,
        &[
            create,
            s("ALTER TABLE d.k0 SET TAG g = 7, h = 8"),
            s("ALTER TABLE d.n TTL 5"),
            s("ALTER TABLE d.n COMMENT 'x'"),
        ],
    )
    .await;
    let store = emu.store();
    store
        .inject_meta(
            "d",
            "n",
            tmq_meta::alter_column_compress("n", "v", "level", "high"),
        )
        .unwrap();
    let f64 = taosbackup_testkit::Field::new("w", Ty::Double, 8);
    store
        .inject_meta(
            "d",
            "n",
            tmq_meta::add_column_with_compress("n", &f64, "compress", "zstd"),
        )
        .unwrap();
    store
        .inject_meta("d", "k1", tmq_meta::alter_bare("k1", 99))
        .unwrap();
    store
        .inject_meta("d", "k2", serde_json::json!({"type": "mystery"}))
        .unwrap();
    let events = catch_up(&mut f).await;
    assert_eq!(f.positions(), ends(&emu, "d"));
    let t = per_table(&events);
    use TableEvent::*;
    for i in 0..6 {
        let k = format!("k{i}");
        assert_eq!(t[&k][0], tev(&k, Created), "{:?}", t[&k]);
    }
    assert_eq!(t["k0"], vec![tev("k0", Created), tev("k0", TagsChanged)]);
    // TTL and COMMENT: no event; 13 and 14: the schema.
    assert_eq!(t["n"], vec![tev("n", SchemaChanged)]);
    match &t["k1"][1] {
        ChangeEvent::Reread { table, reason } => {
            assert_eq!(table.as_deref(), Some("k1"));
            assert!(reason.contains("alterType"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ChangeEvent::Reread { table: None, .. })),
        "{events:?}"
    );
}

/// taos-ws 0.12.3 and tungstenite leave Nagle's algorithm on, and taosAdapter (like the
/// emulator) delays its ACKs, so a request would wait up to 40 ms: the feed's own TMQ client
/// and the connector's connections it opens have it off (`taosbackup_core::net`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feeds_connections_have_nagle_off() {
    let emu = emu();
    setup(&emu, "nd", "").await;
    // No test turns Nagle off for the feed from here on (crate::NAGLE).
    let _only_the_feed = crate::NAGLE.lock().await;
    let mut f = feed(&emu, "nd");
    f.start(&Positions::new()).await.unwrap();
    assert!(catch_up(&mut f).await.is_empty());
    let left = crate::nagle_on_to(emu.addr());
    assert!(
        left.is_empty(),
        "connections to the emulator with Nagle on: {left:?}"
    );
}
