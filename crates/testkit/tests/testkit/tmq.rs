//! TMQ data subscription (`/rest/tmq`), driven by the real `taos` crate's consumer over a real
//! socket, plus hostile frames from a raw WebSocket client.
//!
//! No sleeps as synchronisation: every wait polls the consumer until a condition holds or a
//! deadline passes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, TryStreamExt};
use serde_json::Value as Json;
use taos::{
    AsAsyncConsumer, AsyncFetchable, AsyncQueryable, AsyncTBuilder, IsAsyncData, IsAsyncMeta,
    IsOffset, MessageSet, TaosBuilder, Timeout, TmqBuilder,
};
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle};
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(20);
const T0: i64 = 1_700_000_000_000;

fn emu() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::default()).expect("emulator starts")
}

async fn connect(emu: &EmulatorHandle) -> taos::Taos {
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .expect("connects");
    crate::nodelay(&taos).await;
    taos
}

async fn consumer(emu: &EmulatorHandle, params: &str, topic: &str) -> taos::Consumer {
    let dsn = format!("{}?{params}", emu.dsn());
    let mut c = TmqBuilder::from_dsn(dsn)
        .unwrap()
        .build()
        .await
        .expect("consumer builds");
    crate::nagle_off();
    c.subscribe([topic]).await.expect("subscribes");
    c
}

/// What a consumer saw.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// Rows of one table: (ts, first value column as text).
    Data {
        vgroup: i32,
        table: String,
        rows: Vec<(i64, String)>,
    },
    /// A meta message, as the client parsed it (re-serialised).
    Meta { vgroup: i32, json: Json },
}

fn cell(v: &taos::Value) -> String {
    match v {
        taos::Value::Null(_) => "NULL".into(),
        taos::Value::Int(i) => i.to_string(),
        taos::Value::BigInt(i) => i.to_string(),
        taos::Value::VarChar(s) | taos::Value::NChar(s) => s.clone(),
        taos::Value::Timestamp(t) => t.as_raw_i64().to_string(),
        other => format!("{other:?}"),
    }
}

/// Receives one message (waiting up to `wait`), fully fetched: a meta event for its meta
/// part (meta and meta+data messages), a data event per block.
async fn next_event(c: &taos::Consumer, wait: Duration) -> Option<(taos::Offset, Vec<Event>)> {
    let (offset, msg) = c
        .recv_timeout(Timeout::Duration(wait))
        .await
        .expect("poll succeeds")?;
    let vgroup = offset.vgroup_id();
    let mut out = Vec::new();
    let (meta, data) = match msg {
        MessageSet::Meta(m) => (Some(m), None),
        MessageSet::Data(d) => (None, Some(d)),
        MessageSet::MetaData(m, d) => (Some(m), Some(d)),
    };
    if let Some(m) = meta {
        let meta = m.as_json_meta().await.expect("json meta parses");
        out.push(Event::Meta {
            vgroup,
            json: serde_json::to_value(&meta).unwrap(),
        });
    }
    if let Some(d) = data {
        while let Some(block) = d.fetch_raw_block().await.expect("block fetches") {
            let table = block.table_name().unwrap_or_default().to_string();
            let mut rows = Vec::new();
            for r in block.to_values() {
                let ts = match &r[0] {
                    taos::Value::Timestamp(t) => t.as_raw_i64(),
                    other => panic!("first column is not a timestamp: {other:?}"),
                };
                rows.push((ts, r.get(1).map(cell).unwrap_or_default()));
            }
            out.push(Event::Data {
                vgroup,
                table,
                rows,
            });
        }
    }
    Some((offset, out))
}

/// Collects events until `done` holds for the collected list, or the deadline passes.
async fn collect_until(
    c: &taos::Consumer,
    mut done: impl FnMut(&[Event]) -> bool,
) -> (Vec<Event>, Option<taos::Offset>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut last = None;
    while !done(&out) {
        assert!(
            start.elapsed() < DEADLINE,
            "deadline passed; collected so far: {out:#?}"
        );
        if let Some((o, ev)) = next_event(c, Duration::from_millis(300)).await {
            out.extend(ev);
            last = Some(o);
        }
    }
    (out, last)
}

/// Every (table, ts, value) in the data events.
fn rows_of(events: &[Event]) -> Vec<(String, i64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Data { table, rows, .. } => Some(
                rows.iter()
                    .map(|(ts, v)| (table.clone(), *ts, v.clone()))
                    .collect::<Vec<_>>(),
            ),
            Event::Meta { .. } => None,
        })
        .flatten()
        .collect()
}

fn metas(events: &[Event]) -> Vec<Json> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Meta { json, .. } => Some(json.clone()),
            Event::Data { .. } => None,
        })
        .collect()
}

async fn setup_db(taos: &taos::Taos, db: &str) {
    taos.exec(format!("CREATE DATABASE {db} VGROUPS 2"))
        .await
        .unwrap();
    taos.exec(format!(
        "CREATE STABLE {db}.st (ts TIMESTAMP, v INT) TAGS (g INT)"
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_from_earliest_and_latest_with_late_rows_overwrites_and_new_tables() {
    let emu = emu();
    let taos = connect(&emu).await;
    setup_db(&taos, "d").await;
    taos.exec("INSERT INTO d.a USING d.st TAGS (1) VALUES (1700000000000, 1) (1700000000001, 2)")
        .await
        .unwrap();
    taos.exec("CREATE TOPIC t1 AS DATABASE d").await.unwrap();

    let early = consumer(&emu, "group.id=g1&auto.offset.reset=earliest", "t1").await;
    let (ev, _) = collect_until(&early, |e| rows_of(e).len() >= 2).await;
    assert_eq!(
        rows_of(&ev),
        vec![
            ("a".to_string(), T0, "1".to_string()),
            ("a".to_string(), T0 + 1, "2".to_string())
        ]
    );
    assert!(metas(&ev).is_empty(), "a topic without META sends no meta");

    let late = consumer(&emu, "group.id=g2&auto.offset.reset=latest", "t1").await;
    // Nothing before the subscription reaches a `latest` consumer.
    assert!(
        next_event(&late, Duration::from_millis(700))
            .await
            .is_none()
    );

    // A late row, an overwrite of an existing timestamp, and a new table's rows.
    taos.exec("INSERT INTO d.a VALUES (1699999999000, 10)")
        .await
        .unwrap();
    taos.exec("INSERT INTO d.a VALUES (1700000000000, 11)")
        .await
        .unwrap();
    taos.exec("INSERT INTO d.b USING d.st TAGS (2) VALUES (1700000000005, 12)")
        .await
        .unwrap();
    let want = vec![
        ("a".to_string(), T0 - 1000, "10".to_string()),
        ("a".to_string(), T0, "11".to_string()),
        ("b".to_string(), T0 + 5, "12".to_string()),
    ];
    for c in [&early, &late] {
        let (ev, _) = collect_until(c, |e| rows_of(e).len() >= 3).await;
        let mut got = rows_of(&ev);
        got.sort();
        let mut w = want.clone();
        w.sort();
        assert_eq!(got, w);
    }
    // The store still holds the overwritten value once: TMQ shows writes, not state.
    let n: Vec<(i64,)> = taos
        .query("SELECT count(*) FROM d.a")
        .await
        .unwrap()
        .deserialize::<(i64,)>()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(n, vec![(3,)]);
}

/// Database `m` (one vgroup) and its `WITH META` topic `tm`.
async fn meta_topic(emu: &EmulatorHandle) -> taos::Taos {
    let taos = connect(emu).await;
    taos.exec("CREATE DATABASE m VGROUPS 1").await.unwrap();
    taos.exec("CREATE TOPIC tm WITH META AS DATABASE m")
        .await
        .unwrap();
    taos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_meta_kind_with_meta_topic() {
    let emu = emu();
    let taos = meta_topic(&emu).await;
    let c = consumer(&emu, "group.id=g&auto.offset.reset=earliest", "tm").await;
    for sql in [
        "CREATE STABLE m.st (ts TIMESTAMP, v INT, s VARCHAR(16)) TAGS (g INT, name NCHAR(8))",
        "CREATE TABLE m.c1 USING m.st TAGS (7, 'x')",
        "CREATE TABLE m.n1 (ts TIMESTAMP, v INT)",
        "ALTER STABLE m.st ADD COLUMN extra DOUBLE",
        "ALTER STABLE m.st DROP COLUMN s",
        "ALTER TABLE m.n1 ADD COLUMN w BIGINT",
        "ALTER TABLE m.n1 DROP COLUMN w",
        "ALTER TABLE m.c1 SET TAG g = 8",
        "INSERT INTO m.c1 (ts, v) VALUES (1700000000000, 1) (1700000000001, 2) (1700000000002, 3)",
        "DELETE FROM m.c1 WHERE ts >= 1700000000000 AND ts <= 1700000000001",
        "DROP TABLE m.n1",
        "DROP STABLE m.st",
    ] {
        taos.exec(sql).await.unwrap();
    }
    let (ev, _) = collect_until(&c, |e| metas(e).len() >= 11).await;
    let m = metas(&ev);
    let find = |pred: &dyn Fn(&Json) -> bool| -> Json {
        m.iter()
            .find(|j| pred(j))
            .cloned()
            .unwrap_or_else(|| panic!("missing meta in {m:#?}"))
    };
    let create_super = find(&|j| j["type"] == "create" && j["tableType"] == "super");
    assert_eq!(create_super["tableName"], "st");
    assert_eq!(create_super["columns"].as_array().unwrap().len(), 3);
    assert_eq!(create_super["columns"][2]["type"], 8);
    assert_eq!(create_super["columns"][2]["length"], 16);
    assert_eq!(create_super["tags"][1]["name"], "name");
    let child = find(&|j| j["type"] == "create" && j["tableType"] == "child");
    assert_eq!(child["tableName"], "c1");
    assert_eq!(child["using"], "st");
    assert_eq!(child["tags"][0]["value"], 7);
    assert_eq!(child["tags"][1]["value"], "\"x\"");
    let normal = find(&|j| j["type"] == "create" && j["tableType"] == "normal");
    assert_eq!(normal["tableName"], "n1");
    let add = find(&|j| j["type"] == "alter" && j["alterType"] == 5 && j["tableName"] == "st");
    assert_eq!(add["colName"], "extra");
    assert_eq!(add["colType"], 7);
    find(&|j| j["type"] == "alter" && j["alterType"] == 6 && j["colName"] == "s");
    find(&|j| j["type"] == "alter" && j["alterType"] == 5 && j["colName"] == "w");
    find(&|j| j["type"] == "alter" && j["alterType"] == 6 && j["colName"] == "w");
    let set = find(&|j| j["type"] == "alter" && j["alterType"] == 4);
    assert_eq!(set["tableName"], "c1");
    assert_eq!(set["colName"], "g");
    assert_eq!(set["colValue"], "8");
    let del = find(&|j| j["type"] == "delete");
    assert_eq!(
        del["sql"],
        "delete from `c1` where `ts` >= 1700000000000 and `ts` <= 1700000000001"
    );
    let drop_n = find(&|j| j["type"] == "drop" && j.get("tableNameList").is_some());
    assert_eq!(drop_n["tableNameList"][0], "n1");
    let drop_s = find(&|j| j["type"] == "drop" && j.get("tableName").is_some());
    assert_eq!(drop_s["tableName"], "st");
    // The data message in between carries the rows as written, with the altered schema.
    assert_eq!(rows_of(&ev).len(), 3);
    // Order follows the log: create super comes first, drop super last.
    assert_eq!(m.first(), Some(&create_super));
    assert_eq!(m.last(), Some(&drop_s));
}

async fn fill(taos: &taos::Taos, table: &str, from: i64, n: i64) {
    for i in from..from + n {
        taos.exec(format!(
            "INSERT INTO {table} USING d.st TAGS (1) VALUES ({}, {i})",
            T0 + i
        ))
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_resume_in_a_new_consumer_of_the_same_group() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE d VGROUPS 1").await.unwrap();
    taos.exec("CREATE STABLE d.st (ts TIMESTAMP, v INT) TAGS (g INT)")
        .await
        .unwrap();
    fill(&taos, "d.a", 0, 6).await;
    taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap();
    let vg = emu.store().vgroups("d").unwrap()[0] as i32;

    let c1 = consumer(&emu, "group.id=grp&auto.offset.reset=earliest", "t").await;
    assert_eq!(
        c1.committed("t", vg).await.unwrap(),
        -2_147_467_247,
        "no committed offset yet"
    );
    let (ev, last) = collect_until(&c1, |e| rows_of(e).len() >= 6).await;
    assert_eq!(rows_of(&ev).len(), 6);
    c1.commit(last.unwrap()).await.unwrap();
    let committed = c1.committed("t", vg).await.unwrap();
    let position = c1.position("t", vg).await.unwrap();
    assert_eq!(committed, position);
    drop(c1);
    fill(&taos, "d.a", 6, 2).await;

    // A new consumer of the group resumes after the committed offset, even across a
    // server-side drop of every connection.
    emu.disconnect_all();
    let c2 = consumer(&emu, "group.id=grp&auto.offset.reset=earliest", "t").await;
    assert_eq!(c2.committed("t", vg).await.unwrap(), committed);
    let (ev, _) = collect_until(&c2, |e| rows_of(e).len() >= 2).await;
    let got: Vec<i64> = rows_of(&ev).iter().map(|r| r.1).collect();
    assert_eq!(got, vec![T0 + 6, T0 + 7]);
    assert!(next_event(&c2, Duration::from_millis(700)).await.is_none());

    // commit_offset sets the group's offset explicitly.
    c2.commit_offset("t", vg, 2).await.unwrap();
    assert_eq!(c2.committed("t", vg).await.unwrap(), 2);

    // ins_subscriptions shows the group's offset (a new connection: the old one was dropped).
    let taos = connect(&emu).await;
    let subs: Vec<(String, String, i32, Option<String>)> = taos
        .query("SELECT topic_name, consumer_group, vgroup_id, `offset` FROM information_schema.ins_subscriptions")
        .await
        .unwrap()
        .deserialize()
        .try_collect()
        .await
        .unwrap();
    assert!(
        subs.contains(&("t".into(), "grp".into(), vg, Some("wal:2".into()))),
        "{subs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_figures_and_seek() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE d VGROUPS 1").await.unwrap();
    taos.exec("CREATE STABLE d.st (ts TIMESTAMP, v INT) TAGS (g INT)")
        .await
        .unwrap();
    fill(&taos, "d.a", 0, 3).await;
    taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap();
    let vg = emu.store().vgroups("d").unwrap()[0];
    let (begin, end) = emu.store().wal_range("d", vg).unwrap();
    // create stable, three inserts (the first creates the child inside its submit).
    assert_eq!((begin, end), (0, 4));

    let mut c = consumer(&emu, "group.id=g&auto.offset.reset=earliest", "t").await;
    let a = c.assignments().await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].0, "t");
    let asg = &a[0].1;
    assert_eq!(asg.len(), 1);
    // The subscription's rebalance is WAL entry 4 (TDMT_VND_TMQ_SUBSCRIBE).
    assert_eq!(
        (
            asg[0].vgroup_id(),
            asg[0].current_offset(),
            asg[0].begin(),
            asg[0].end()
        ),
        (vg as i32, 0, 0, 5)
    );
    // One poll gathers the three submits into one message (tqUtil.c: until 4096 rows, a
    // meta entry or the end of the log), passing the subscribe entry on the way.
    let (ev, _) = collect_until(&c, |e| rows_of(e).len() >= 3).await;
    assert_eq!(ev.len(), 3, "one block per submit: {ev:?}");
    // Audit A5: assignment's offset is where the data message started (the poll's request
    // offset, 0), the position is after it — at the end.
    let a = c.assignments().await.unwrap();
    assert_eq!(a[0].1[0].current_offset(), 0);
    assert_eq!(c.position("t", vg as i32).await.unwrap(), 5);
    assert!(next_event(&c, Duration::from_millis(700)).await.is_none());
    assert_eq!(c.position("t", vg as i32).await.unwrap(), 5);
    assert_eq!(c.assignments().await.unwrap()[0].1[0].current_offset(), 0);

    // Seek back to the second insert and read again.
    c.offset_seek("t", vg as i32, 2).await.unwrap();
    assert_eq!(c.position("t", vg as i32).await.unwrap(), 2);
    let (ev, _) = collect_until(&c, |e| rows_of(e).len() >= 2).await;
    let got: Vec<i64> = rows_of(&ev).iter().map(|r| r.1).collect();
    assert_eq!(got, vec![T0 + 1, T0 + 2]);
    // Out of range seeks are refused.
    let err = c.offset_seek("t", vg as i32, 99).await.unwrap_err();
    // TSDB_CODE_TMQ_VERSION_OUT_OF_RANGE (taoserror.h).
    assert_eq!(err.code(), taos::Code::from(0x4007));
    // Unknown vgroups too.
    assert!(c.offset_seek("t", 999, 0).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_gap_is_visible_as_committed_below_begin() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE d VGROUPS 1").await.unwrap();
    taos.exec("CREATE STABLE d.st (ts TIMESTAMP, v INT) TAGS (g INT)")
        .await
        .unwrap();
    taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap();
    fill(&taos, "d.a", 0, 2).await;
    let vg = emu.store().vgroups("d").unwrap()[0];

    let c1 = consumer(&emu, "group.id=lag&auto.offset.reset=earliest", "t").await;
    let (_, last) = collect_until(&c1, |e| rows_of(e).len() >= 2).await;
    c1.commit(last.unwrap()).await.unwrap();
    let committed = c1.committed("t", vg as i32).await.unwrap();
    drop(c1);

    // More writes, then the WAL is cleaned past the committed offset (emulator SQL).
    fill(&taos, "d.a", 2, 4).await;
    let (_, end) = emu.store().wal_range("d", vg).unwrap();
    taos.exec(format!("PURGE WAL d VGROUP {vg} TO {}", end - 1))
        .await
        .unwrap();
    let (begin, _) = emu.store().wal_range("d", vg).unwrap();
    assert_eq!(begin, end - 1);
    assert!(committed < begin);

    let c2 = consumer(&emu, "group.id=lag&auto.offset.reset=earliest", "t").await;
    // The gap is visible to a careful client: committed < assignment.begin …
    assert_eq!(c2.committed("t", vg as i32).await.unwrap(), committed);
    let a = c2.assignments().await.unwrap();
    let asg = &a[0].1[0];
    assert_eq!(asg.begin(), begin);
    assert!(c2.committed("t", vg as i32).await.unwrap() < asg.begin());
    // … while the consumer itself was moved to begin silently.
    assert_eq!(asg.current_offset(), begin);
    let (ev, _) = collect_until(&c2, |e| !rows_of(e).is_empty()).await;
    let got: Vec<i64> = rows_of(&ev).iter().map(|r| r.1).collect();
    assert_eq!(got, vec![T0 + 5], "only the last retained write");

    // The library call purges too; purging everything leaves begin == end.
    emu.store().purge_wal("d", vg, i64::MAX).unwrap();
    let (b, e) = emu.store().wal_range("d", vg).unwrap();
    assert_eq!(b, e);
    assert!(emu.store().purge_wal("d", 999, 0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_period_and_size_are_honoured() {
    let emu = emu();
    let store = emu.store();
    let now = 1_800_000_000_000_000_000i64;
    store.set_now_override(Some(now));
    let mut s = taosbackup_testkit::Session::default();
    store
        .execute(
            &mut s,
            "CREATE DATABASE r VGROUPS 1 WAL_RETENTION_PERIOD 60",
        )
        .unwrap();
    store
        .execute(&mut s, "CREATE TABLE r.t (ts TIMESTAMP, v INT)")
        .unwrap();
    store
        .execute(&mut s, "INSERT INTO r.t VALUES (1700000000000, 1)")
        .unwrap();
    let vg = store.vgroups("r").unwrap()[0];
    assert_eq!(store.wal_range("r", vg).unwrap(), (0, 2));
    store.set_now_override(Some(now + 59_000_000_000));
    assert_eq!(store.wal_range("r", vg).unwrap(), (0, 2));
    store.set_now_override(Some(now + 61_000_000_000));
    assert_eq!(store.wal_range("r", vg).unwrap(), (2, 2));

    // Size: 1 KB keeps only the newest entries.
    store
        .execute(
            &mut s,
            "CREATE DATABASE z VGROUPS 1 WAL_RETENTION_PERIOD -1 WAL_RETENTION_SIZE 1",
        )
        .unwrap();
    store
        .execute(&mut s, "CREATE TABLE z.t (ts TIMESTAMP, s VARCHAR(200))")
        .unwrap();
    for i in 0..20 {
        store
            .execute(
                &mut s,
                &format!("INSERT INTO z.t VALUES ({}, 'x')", 1_700_000_000_000i64 + i),
            )
            .unwrap();
    }
    let vg = store.vgroups("z").unwrap()[0];
    let (b, e) = store.wal_range("z", vg).unwrap();
    assert_eq!(e, 21);
    assert!(b > 10 && b < e, "begin {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_while_consuming() {
    let emu = emu();
    let taos = connect(&emu).await;
    setup_db(&taos, "d").await;
    taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap();
    let c = consumer(&emu, "group.id=g&auto.offset.reset=earliest", "t").await;
    const N: i64 = 40;
    let mut producers = Vec::new();
    for p in 0..3 {
        let dsn = emu.dsn();
        producers.push(tokio::spawn(async move {
            let taos = TaosBuilder::from_dsn(dsn).unwrap().build().await.unwrap();
            crate::nodelay(&taos).await;
            for i in 0..N {
                taos.exec(format!(
                    "INSERT INTO d.p{p} USING d.st TAGS ({p}) VALUES ({}, {i})",
                    T0 + i
                ))
                .await
                .unwrap();
            }
        }));
    }
    let (ev, _) = collect_until(&c, |e| rows_of(e).len() as i64 >= 3 * N).await;
    for p in producers {
        p.await.unwrap();
    }
    let got: BTreeSet<(String, i64)> = rows_of(&ev).into_iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(got.len() as i64, 3 * N);
    // Per table, rows arrive in write order.
    for p in 0..3 {
        let name = format!("p{p}");
        let ts: Vec<i64> = rows_of(&ev)
            .into_iter()
            .filter(|r| r.0 == name)
            .map(|r| r.1)
            .collect();
        assert_eq!(ts, (0..N).map(|i| T0 + i).collect::<Vec<_>>());
    }
    assert!(next_event(&c, Duration::from_millis(700)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_sql_and_refusals() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE z WAL_RETENTION_PERIOD 0")
        .await
        .unwrap();
    let err = taos
        .exec("CREATE TOPIC tz AS DATABASE z")
        .await
        .unwrap_err();
    assert_eq!(err.code(), taos::Code::from(0x038C));

    setup_db(&taos, "d").await;
    taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap();
    taos.exec("CREATE TOPIC IF NOT EXISTS t AS DATABASE d")
        .await
        .unwrap();
    let err = taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap_err();
    assert_eq!(err.code(), taos::Code::from(0x03E0));
    let err = taos
        .exec("CREATE TOPIC u AS DATABASE nope")
        .await
        .unwrap_err();
    assert_eq!(err.code(), taos::Code::from(0x0388));
    let topics: Vec<(String, String, String)> = taos
        .query("SELECT topic_name, db_name, `meta` FROM information_schema.ins_topics")
        .await
        .unwrap()
        .deserialize()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(topics, vec![("t".into(), "d".into(), "no".into())]);
    let shown: Vec<(String,)> = taos
        .query("SHOW TOPICS")
        .await
        .unwrap()
        .deserialize::<(String, String, i64, String, Option<String>, String, String)>()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.0,))
        .collect();
    assert_eq!(shown, vec![("t".to_string(),)]);

    // A subscribed topic cannot be dropped; its database neither.
    let c = consumer(&emu, "group.id=g", "t").await;
    let err = taos.exec("DROP TOPIC t").await.unwrap_err();
    assert_eq!(err.code(), taos::Code::from(0x03EB));
    let err = taos.exec("DROP DATABASE d").await.unwrap_err();
    assert_eq!(err.code(), taos::Code::from(0x03ED));
    c.unsubscribe().await;
    // Unsubscribing releases the topic (the server handles it before answering).
    taos.exec("DROP TOPIC t").await.unwrap();
    taos.exec("DROP TOPIC IF EXISTS t").await.unwrap();
    let err = taos.exec("DROP TOPIC t").await.unwrap_err();
    assert_eq!(err.code(), taos::Code::from(0x03E1));
    taos.exec("DROP DATABASE d").await.unwrap();

    // Subscribing to a missing topic fails cleanly.
    let dsn = format!("{}?group.id=g", emu.dsn());
    let mut c = TmqBuilder::from_dsn(dsn).unwrap().build().await.unwrap();
    let err = c.subscribe(["missing"]).await.unwrap_err();
    assert_eq!(err.code(), taos::Code::from(0x03E1));
}

async fn raw_tmq(
    emu: &EmulatorHandle,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/rest/tmq", emu.addr()))
        .await
        .expect("tmq endpoint upgrades");
    ws
}

async fn roundtrip(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    msg: Message,
) -> Message {
    ws.send(msg).await.unwrap();
    tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("a reply")
        .expect("open")
        .expect("frame")
}

fn reply_json(m: Message) -> Json {
    match m {
        Message::Text(t) => serde_json::from_str(&t).expect("JSON reply"),
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_error_replies() {
    let emu = emu();
    let mut ws = raw_tmq(&emu).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("not json".into()), ""),
        (Message::Binary(vec![1, 2, 3].into()), ""),
        (Message::Text(r#"{"action":"nope","args":{"req_id":1}}"#.into()), "nope"),
        (Message::Text(r#"{"action":"poll","args":{"req_id":2}}"#.into()), "poll"),
        (
            Message::Text(r#"{"action":"fetch_block","args":{"req_id":3,"message_id":9}}"#.into()),
            "fetch_block",
        ),
        (
            Message::Text(r#"{"action":"committed","args":{"req_id":4,"topic_vgroup_ids":7}}"#.into()),
            "committed",
        ),
        (
            Message::Text(r#"{"action":"subscribe","args":{"req_id":5,"user":"root","password":"taosdata","group_id":"","topics":["x"]}}"#.into()),
            "subscribe",
        ),
        (
            Message::Text(r#"{"action":"subscribe","args":{"req_id":6,"user":"root","password":"bad","group_id":"g","topics":["x"]}}"#.into()),
            "subscribe",
        ),
        (
            Message::Text(r#"{"action":"seek","args":{"req_id":7,"topic":"x","vgroup_id":-1,"offset":"a"}}"#.into()),
            "seek",
        ),
    ];
    for (msg, action) in cases {
        let r = reply_json(roundtrip(&mut ws, msg).await);
        assert_ne!(r["code"], 0, "{r}");
        assert_eq!(r["action"], action, "{r}");
        assert!(r["message"].is_string(), "{r}");
        if action == "committed" {
            assert!(r["committed"].is_array(), "required even on errors: {r}");
        }
    }
    // The connection is still served.
    let r = reply_json(
        roundtrip(
            &mut ws,
            Message::Text(r#"{"action":"unsubscribe","args":{"req_id":10}}"#.into()),
        )
        .await,
    );
    assert_eq!(r["code"], 0);
    assert_eq!(r["req_id"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_counted_per_vgroup() {
    let emu = emu();
    let taos = connect(&emu).await;
    setup_db(&taos, "d").await;
    let vgs = emu.store().vgroups("d").unwrap();
    assert_eq!(vgs.len(), 2);
    // Super-table DDL reaches every vgroup.
    for vg in &vgs {
        assert_eq!(emu.store().wal_range("d", *vg).unwrap(), (0, 1));
    }
    // Find two tables in different vgroups through ins_tables.
    for i in 0..16 {
        taos.exec(format!("CREATE TABLE d.c{i} USING d.st TAGS ({i})"))
            .await
            .unwrap();
    }
    let placed: Vec<(String, i32)> = taos
        .query(
            "SELECT table_name, vgroup_id FROM information_schema.ins_tables WHERE db_name = 'd'",
        )
        .await
        .unwrap()
        .deserialize::<(String, i32)>()
        .try_collect()
        .await
        .unwrap();
    let per_vg = |vg: u32| placed.iter().filter(|p| p.1 == vg as i32).count() as i64;
    for vg in &vgs {
        assert!(per_vg(*vg) > 0, "both vgroups used: {placed:?}");
        assert_eq!(
            emu.store().wal_range("d", *vg).unwrap(),
            (0, 1 + per_vg(*vg))
        );
    }
    // One insert statement into tables of both vgroups adds one version per table.
    let a = placed
        .iter()
        .find(|p| p.1 == vgs[0] as i32)
        .unwrap()
        .0
        .clone();
    let b = placed
        .iter()
        .find(|p| p.1 == vgs[1] as i32)
        .unwrap()
        .0
        .clone();
    taos.exec(format!(
        "INSERT INTO d.{a} VALUES (1700000000000, 1) (1700000000001, 2) d.{b} VALUES (1700000000000, 3)"
    ))
    .await
    .unwrap();
    for vg in &vgs {
        assert_eq!(emu.store().wal_range("d", *vg).unwrap().1, 2 + per_vg(*vg));
    }
    // Reads do not log.
    taos.query("SELECT * FROM d.st").await.unwrap();
    for vg in &vgs {
        assert_eq!(emu.store().wal_range("d", *vg).unwrap().1, 2 + per_vg(*vg));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_dsn_seek_raw_block_writes_and_table_names() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE d VGROUPS 1").await.unwrap();
    taos.exec("CREATE STABLE d.st (ts TIMESTAMP, v INT) TAGS (g INT)")
        .await
        .unwrap();
    fill(&taos, "d.a", 0, 3).await;
    taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap();
    let vg = emu.store().vgroups("d").unwrap()[0] as i32;

    // enable.auto.commit: what was delivered is committed at the next poll.
    let c = consumer(
        &emu,
        "group.id=auto&auto.offset.reset=earliest&enable.auto.commit=true",
        "t",
    )
    .await;
    collect_until(&c, |e| rows_of(e).len() >= 3).await;
    assert!(next_event(&c, Duration::from_millis(700)).await.is_none());
    // Every changed commit is itself a WAL entry the next poll passes, so an auto-committing
    // consumer keeps committing a little further.
    let committed = c.committed("t", vg).await.unwrap();
    let end = emu.store().wal_range("d", vg as u32).unwrap().1;
    assert!((5..end).contains(&committed), "{committed} {end}");
    drop(c);

    // `offset=vg:off` in the DSN seeks after subscribing.
    let c = consumer(
        &emu,
        &format!("group.id=seek&auto.offset.reset=earliest&offset={vg}:3"),
        "t",
    )
    .await;
    assert_eq!(c.position("t", vg).await.unwrap(), 3);
    let (ev, _) = collect_until(&c, |e| !rows_of(e).is_empty()).await;
    assert_eq!(rows_of(&ev)[0].1, T0 + 2);

    // Raw-block writes are data messages too; with.table.name=false leaves names out.
    let c2 = consumer(
        &emu,
        "group.id=raw&auto.offset.reset=latest&with.table.name=false",
        "t",
    )
    .await;
    taos.exec("CREATE TABLE d.dst USING d.st TAGS (2)")
        .await
        .unwrap();
    let mut rs = taos.query("SELECT ts, v FROM d.a").await.unwrap();
    let mut block = rs.blocks().try_next().await.unwrap().unwrap();
    block.with_table_name("d.dst");
    taos.write_raw_block(&block).await.unwrap();
    let (ev, _) = collect_until(&c, |e| rows_of(e).len() >= 3).await;
    let raw: Vec<_> = rows_of(&ev).into_iter().filter(|r| r.0 == "dst").collect();
    assert_eq!(raw.len(), 3, "{ev:?}");
    let (ev2, _) = collect_until(&c2, |e| rows_of(e).len() >= 3).await;
    assert!(rows_of(&ev2).iter().all(|r| r.0.is_empty()), "{ev2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_always_get_a_reply_and_never_kill_the_server() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE d VGROUPS 2").await.unwrap();
    taos.exec("CREATE TABLE d.n (ts TIMESTAMP, v INT)")
        .await
        .unwrap();
    taos.exec("INSERT INTO d.n VALUES (1700000000000, 1)")
        .await
        .unwrap();
    taos.exec("CREATE TOPIC t WITH META AS DATABASE d")
        .await
        .unwrap();
    let mut ws = raw_tmq(&emu).await;
    let actions = [
        "subscribe",
        "unsubscribe",
        "poll",
        "fetch",
        "fetch_block",
        "fetch_json_meta",
        "fetch_raw",
        "commit",
        "commit_offset",
        "seek",
        "committed",
        "position",
        "assignment",
    ];
    let values = [
        "null",
        "-1",
        "0",
        "1",
        "2",
        "18446744073709551615",
        "\"t\"",
        "\"\"",
        "[]",
        "[\"t\",\"t\"]",
        "[{\"topic\":\"t\",\"vgroup_id\":2}]",
        "{}",
        "1.5",
        "true",
    ];
    let keys = [
        "message_id",
        "topic",
        "vgroup_id",
        "offset",
        "topics",
        "group_id",
        "topic_vgroup_ids",
        "offset_rest",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for i in 0..400u64 {
        let action = actions[next(actions.len())];
        let mut args = format!(r#""req_id":{i},"user":"root","password":"taosdata""#);
        for _ in 0..next(5) {
            args.push_str(&format!(
                r#","{}":{}"#,
                keys[next(keys.len())],
                values[next(values.len())]
            ));
        }
        let frame = format!(r#"{{"action":"{action}","args":{{{args}}}}}"#);
        let reply = roundtrip(&mut ws, Message::Text(frame.clone().into())).await;
        match reply {
            Message::Text(t) => {
                let r: Json = serde_json::from_str(&t).unwrap();
                assert_eq!(r["req_id"], i, "{frame} -> {t}");
                assert_eq!(r["action"], action, "{frame} -> {t}");
                assert!(r["code"].is_u64() && r["message"].is_string(), "{t}");
            }
            Message::Binary(b) => {
                assert_eq!(action, "fetch_block", "{frame}");
                assert!(b.len() > 24);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The server still serves queries and the topic.
    let c = consumer(&emu, "group.id=after&auto.offset.reset=earliest", "t").await;
    collect_until(&c, |e| !rows_of(e).is_empty()).await;
}

/// Sends a JSON action on a raw connection and returns the reply.
async fn act(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    action: &str,
    args: Json,
) -> Json {
    let text = serde_json::json!({ "action": action, "args": args }).to_string();
    reply_json(roundtrip(ws, Message::Text(text.into())).await)
}

/// The meta kinds taos-query 0.12.4's typed parser rejects or drops (audit A4/B4), read as
/// raw JSON the way taosAdapter serves them, and the `version` action (B8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_meta_kinds_batch_create_options_and_version() {
    let emu = emu();
    let taos = meta_topic(&emu).await;
    let mut ws = raw_tmq(&emu).await;
    // taosAdapter answers `version` on /rest/tmq with the client library's version.
    let v = act(&mut ws, "version", serde_json::json!({"req_id": 1})).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["action"], "version");
    assert_eq!(v["req_id"], 1);
    assert_eq!(v["version"], "3.3.6.0");
    let r = act(
        &mut ws,
        "subscribe",
        serde_json::json!({"req_id": 2, "user": "root", "password": "taosdata",
            "group_id": "g", "offset_rest": "earliest", "topics": ["tm"]}),
    )
    .await;
    assert_eq!(r["code"], 0, "{r}");
    for sql in [
        "CREATE STABLE m.st (ts TIMESTAMP, v INT) TAGS (g INT, h INT)",
        "CREATE TABLE m.a USING m.st TAGS (1, 1) m.b USING m.st TAGS (2, 2)",
        "CREATE TABLE m.n (ts TIMESTAMP, v INT)",
        "ALTER TABLE m.n TTL 7",
        "ALTER TABLE m.a SET TAG g = 5, h = 6",
        "ALTER TABLE m.b SET TAG g = 9",
    ] {
        taos.exec(sql).await.unwrap();
    }
    let mut metas = Vec::new();
    let mut empty = 0;
    let mut req = 10;
    while metas.len() < 6 {
        req += 1;
        let p = act(
            &mut ws,
            "poll",
            serde_json::json!({"req_id": req, "blocking_time": 0}),
        )
        .await;
        assert_eq!(p["code"], 0, "{p}");
        if p["have_message"] != true {
            empty += 1;
            assert!(empty < 20, "{metas:?}");
            continue;
        }
        assert_eq!(p["message_type"], 2, "{p}");
        assert!(
            p["offset"].is_i64(),
            "taosAdapter's poll reply carries offset: {p}"
        );
        req += 1;
        let j = act(
            &mut ws,
            "fetch_json_meta",
            serde_json::json!({"req_id": req, "message_id": p["message_id"]}),
        )
        .await;
        metas.push(j["data"].clone());
    }
    // One create per vgroup batch: the first table at the top, every table in createList.
    let batch = &metas[1];
    assert_eq!(batch["tableType"], "child");
    assert_eq!(batch["tableName"], "a");
    let list: Vec<&str> = batch["createList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tableName"].as_str().unwrap())
        .collect();
    assert_eq!(list, ["a", "b"]);
    // Table options: alterType 9 with no colName; processAlterTable says "normal".
    assert_eq!(
        metas[3],
        serde_json::json!({"type":"alter","tableType":"normal","tableName":"n","alterType":9})
    );
    // Several tags at once: alterType 15, printed without values.
    assert_eq!(
        metas[4],
        serde_json::json!({"type":"alter","tableType":"normal","tableName":"a","alterType":15})
    );
    assert_eq!(metas[5]["alterType"], 4);
    assert_eq!(metas[5]["tableType"], "child");
}

fn emu_at(version: &str) -> EmulatorHandle {
    Emulator::start(EmulatorConfig {
        server_version: version.into(),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends a JSON action and returns the binary reply.
async fn act_binary(ws: &mut Ws, action: &str, args: Json) -> Vec<u8> {
    let text = serde_json::json!({ "action": action, "args": args }).to_string();
    match roundtrip(ws, Message::Text(text.into())).await {
        Message::Binary(b) => b.to_vec(),
        other => panic!("{action}: expected a binary reply, got {other:?}"),
    }
}

/// Polls until a message arrives; returns the poll reply.
async fn poll_message(ws: &mut Ws, req: &mut u64) -> Json {
    for _ in 0..20 {
        *req += 1;
        let p = act(
            ws,
            "poll",
            serde_json::json!({"req_id": *req, "blocking_time": 0}),
        )
        .await;
        assert_eq!(p["code"], 0, "{p}");
        if p["have_message"] == true {
            return p;
        }
    }
    panic!("no message in 20 polls");
}

async fn subscribe_raw(ws: &mut Ws, topic: &str, group: &str) {
    let r = act(
        ws,
        "subscribe",
        serde_json::json!({"req_id": 1, "user": "root", "password": "taosdata",
            "group_id": group, "offset_rest": "earliest", "topics": [topic]}),
    )
    .await;
    assert_eq!(r["code"], 0, "{r}");
}

/// A little-endian reader over a reply.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    /// `parse_variable_byte_integer` of taos-query's `MultiBlockCursor`.
    fn varint(&mut self) -> u64 {
        let (mut v, mut m) = (0u64, 1u64);
        loop {
            let b = self.u8();
            v += u64::from(b & 127) * m;
            if b & 128 == 0 {
                return v;
            }
            m *= 128;
        }
    }
    fn zigzag(&mut self) -> i64 {
        let u = self.varint();
        ((u >> 1) as i64) ^ -((u & 1) as i64)
    }
    /// `parse_name`: a length counting the NUL, the bytes, the NUL.
    fn name(&mut self) -> String {
        let n = self.varint() as usize;
        let s = self.take(n);
        assert_eq!(s[n - 1], 0);
        String::from_utf8(s[..n - 1].to_vec()).unwrap()
    }
}

/// One block of `fetch_raw_data`'s reply as taos-ws (git HEAD, `RawBlock::
/// parse_from_multi_raw_block`) and taosAdapter (`parser.TMQRawDataParser`) read it.
#[derive(Debug)]
struct RawDataBlock {
    table: Option<String>,
    precision: u8,
    /// Column names from the schema, with their colId.
    columns: Vec<(String, i64)>,
    /// (ts, v) of each row, as the connector's raw block parser reads them.
    rows: Vec<(i64, String)>,
}

/// Decodes a `fetch_raw_data` reply the way taos-ws (git HEAD `consumer/conn.rs`
/// `parse_binary_message` + `parse_from_multi_raw_block`) does; returns the request id, the
/// message id, the raw type, the blocks and the bytes after the last block.
fn decode_raw_data(b: &[u8]) -> (u64, u64, u16, Vec<RawDataBlock>, Vec<u8>) {
    let mut r = Rd(b);
    assert_eq!(r.u64(), u64::MAX, "fetch_raw_data flag");
    assert_eq!(r.u64(), 8, "TMQFetchRawNewMessage");
    assert_eq!(r.u16(), 1, "version");
    r.u64(); // timing
    let req_id = r.u64();
    assert_eq!(r.u32(), 0, "code");
    let msg_len = r.u32() as usize;
    r.take(msg_len);
    let message_id = r.u64();
    let raw_type = r.u16();
    let len = r.u32() as usize;
    assert_eq!(len, r.0.len(), "raw length");
    // skip_head: version >= 100 then the offsets' length.
    assert!(r.u8() >= 100, "MQ_DATA_RSP_VERSION");
    let skip = r.u32() as usize;
    r.take(skip);
    let blocks = r.u32();
    let with_table_name = r.u8() != 0;
    assert_eq!(r.u8(), 1, "withSchema");
    let mut out = Vec::new();
    for _ in 0..blocks {
        let total = r.varint() as usize;
        let body = r.take(total);
        let precision = body[17];
        let raw = &body[18..];
        let p = match precision {
            0 => taos::Precision::Millisecond,
            1 => taos::Precision::Microsecond,
            _ => taos::Precision::Nanosecond,
        };
        let ncols = r.zigzag();
        r.zigzag(); // schema version
        let columns: Vec<(String, i64)> = (0..ncols)
            .map(|_| {
                r.u8(); // type
                r.u8(); // flags
                r.zigzag(); // bytes
                let id = r.zigzag();
                (r.name(), id)
            })
            .collect();
        let mut block = taos::taos_query::RawBlock::parse_from_raw_block(raw.to_vec(), p);
        block.with_field_names(columns.iter().map(|c| c.0.as_str()));
        let rows = block
            .to_values()
            .into_iter()
            .map(|row| match &row[0] {
                taos::Value::Timestamp(t) => (t.as_raw_i64(), cell(&row[1])),
                other => panic!("first column {other:?}"),
            })
            .collect();
        let table = with_table_name.then(|| r.name());
        out.push(RawDataBlock {
            table,
            precision,
            columns,
            rows,
        });
    }
    (req_id, message_id, raw_type, out, r.0.to_vec())
}

/// Audit B9 and issue 14 (meta+data, multi-submit messages): a WITH META topic reading
/// inserts that create child tables gets one meta+data message (`TMQ_RES_METADATA`) whose
/// JSON lists the creates and whose blocks carry the rows, served by `fetch`/`fetch_block`
/// (the block reply carries the `fetch`'s request id, as taosAdapter's buffer does) and by
/// `fetch_raw_data` in the layout the connectors decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_data_messages_and_fetch_raw_data_as_taosadapter_serves_them() {
    let emu = emu_at("3.3.6.0");
    let taos = meta_topic(&emu).await;
    for sql in [
        "CREATE STABLE m.st (ts TIMESTAMP, v INT) TAGS (g INT)",
        "INSERT INTO m.a USING m.st TAGS (1) VALUES (1700000000000, 1) m.b USING m.st TAGS (2) \
         VALUES (1700000000001, 2) (1700000000002, 3)",
        "INSERT INTO m.a VALUES (1700000000003, 4)",
        "DROP TABLE m.a, m.b",
    ] {
        taos.exec(sql).await.unwrap();
    }
    let mut ws = raw_tmq(&emu).await;
    subscribe_raw(&mut ws, "tm", "g").await;
    let mut req = 10;
    let p = poll_message(&mut ws, &mut req).await;
    assert_eq!(p["message_type"], 2, "create stable first: {p}");
    let stable_msg = p["message_id"].clone();
    // A meta message has no data, and the emulator keeps no raw form of it.
    let r = act(
        &mut ws,
        "fetch",
        serde_json::json!({"req_id": 90, "message_id": stable_msg}),
    )
    .await;
    assert_eq!(r["message"], "message type is not data", "{r}");
    let b = act_binary(
        &mut ws,
        "fetch_raw_data",
        serde_json::json!({"req_id": 91, "message_id": stable_msg}),
    )
    .await;
    let mut rd = Rd(&b);
    assert_eq!((rd.u64(), rd.u64(), rd.u16()), (u64::MAX, 8, 1));
    rd.u64();
    assert_eq!(rd.u64(), 91);
    assert_eq!(rd.u32(), 0x0100, "error code in the binary error reply");

    // Both inserts follow each other in the log: one message, meta+data.
    let p = poll_message(&mut ws, &mut req).await;
    assert_eq!(p["message_type"], 3, "{p}");
    let mid = p["message_id"].clone();
    // A new poll freed the previous message (taosAdapter holds one).
    let r = act(
        &mut ws,
        "fetch_json_meta",
        serde_json::json!({"req_id": 92, "message_id": stable_msg}),
    )
    .await;
    assert_eq!(r["message"], "message ID are not equal", "{r}");
    // The poll's message_id names another message: taosAdapter 3.3.6+ sends the held one.
    let again = act(
        &mut ws,
        "poll",
        serde_json::json!({"req_id": 93, "blocking_time": 0, "message_id": stable_msg}),
    )
    .await;
    assert_eq!(again["message_id"], mid, "{again}");
    assert_eq!(again["req_id"], 93);
    // The JSON of a meta+data message: the creates as one `create` (buildCreateCTableJson).
    let j = act(
        &mut ws,
        "fetch_json_meta",
        serde_json::json!({"req_id": 94, "message_id": mid}),
    )
    .await;
    let meta = &j["data"];
    assert_eq!(meta["type"], "create", "{j}");
    assert_eq!(meta["tableType"], "child");
    assert_eq!(meta["tableName"], "a");
    let list: Vec<&str> = meta["createList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tableName"].as_str().unwrap())
        .collect();
    assert_eq!(list, ["a", "b"]);
    // fetch + fetch_block: one block per table per submit; the block carries the fetch's id.
    let mut blocks = Vec::new();
    for fetch_req in 100u64.. {
        let f = act(
            &mut ws,
            "fetch",
            serde_json::json!({"req_id": fetch_req, "message_id": mid}),
        )
        .await;
        assert_eq!(f["code"], 0, "{f}");
        if f["completed"] == true {
            break;
        }
        let b = act_binary(
            &mut ws,
            "fetch_block",
            serde_json::json!({"req_id": fetch_req + 1000, "message_id": mid}),
        )
        .await;
        let mut rd = Rd(&b);
        rd.u64();
        assert_eq!(
            rd.u64(),
            fetch_req,
            "taosAdapter's buffer holds the fetch's req_id"
        );
        assert_eq!(rd.u64(), mid.as_u64().unwrap());
        blocks.push((f["table_name"].clone(), f["rows"].clone()));
    }
    assert_eq!(
        blocks,
        vec![
            (serde_json::json!("a"), serde_json::json!(1)),
            (serde_json::json!("b"), serde_json::json!(2)),
            (serde_json::json!("a"), serde_json::json!(1)),
        ]
    );
    // fetch_raw_data: the same message in encodeMqDataRsp's layout.
    let b = act_binary(
        &mut ws,
        "fetch_raw_data",
        serde_json::json!({"req_id": 95, "message_id": mid}),
    )
    .await;
    let (req_id, message_id, raw_type, raw_blocks, rest) = decode_raw_data(&b);
    assert_eq!((req_id, message_id), (95, mid.as_u64().unwrap()));
    assert_eq!(raw_type, 4, "RES_TYPE__TMQ_METADATA");
    type TableRows = (Option<String>, Vec<(i64, String)>);
    let got: Vec<TableRows> = raw_blocks
        .iter()
        .map(|b| (b.table.clone(), b.rows.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("a".into()), vec![(T0, "1".into())]),
            (
                Some("b".into()),
                vec![(T0 + 1, "2".into()), (T0 + 2, "3".into())]
            ),
            (Some("a".into()), vec![(T0 + 3, "4".into())]),
        ]
    );
    assert!(raw_blocks.iter().all(|b| b.precision == 0));
    assert_eq!(
        raw_blocks[0].columns,
        vec![("ts".to_string(), 1), ("v".to_string(), 2)],
        "colId i + 1"
    );
    // tEncodeSTaosxRsp: the two create requests follow the blocks.
    let mut rd = Rd(&rest);
    assert_eq!(rd.u32(), 2, "createTableNum");
    // fetch_raw: the same bytes behind the older binary header.
    let b = act_binary(
        &mut ws,
        "fetch_raw",
        serde_json::json!({"req_id": 96, "message_id": mid}),
    )
    .await;
    let mut rd = Rd(&b);
    rd.u64();
    assert_eq!(
        (rd.u64(), rd.u64(), rd.u64()),
        (96, mid.as_u64().unwrap(), 3)
    );
    let len = rd.u32() as usize;
    assert_eq!(rd.u16(), 4);
    assert_eq!(len, rd.0.len());

    // DROP TABLE a, b: one message per vgroup listing both (processDropTable).
    let p = poll_message(&mut ws, &mut req).await;
    assert_eq!(p["message_type"], 2, "{p}");
    let j = act(
        &mut ws,
        "fetch_json_meta",
        serde_json::json!({"req_id": 97, "message_id": p["message_id"]}),
    )
    .await;
    assert_eq!(
        j["data"],
        serde_json::json!({"type": "drop", "tableNameList": ["a", "b"]})
    );
}

/// A topic without META gets plain data messages (type 1) even for inserts that create
/// tables: `fetch_json_meta` refuses them and `fetch_raw_data` encodes `RES_TYPE__TMQ`
/// (tEncodeMqDataRsp, ending with `sleepTime`). taosAdapter before 3.3.2.0 has no
/// `fetch_raw_data` (taos-ws uses it only from that version on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_messages_raw_and_fetch_raw_data_by_version() {
    for version in ["3.3.0.0", "3.3.2.0", "3.4.0.0"] {
        let emu = emu_at(version);
        let taos = connect(&emu).await;
        setup_db(&taos, "d").await;
        taos.exec("CREATE TOPIC t AS DATABASE d").await.unwrap();
        taos.exec("INSERT INTO d.a USING d.st TAGS (1) VALUES (1700000000000, 7)")
            .await
            .unwrap();
        let mut ws = raw_tmq(&emu).await;
        subscribe_raw(&mut ws, "t", "g").await;
        let mut req = 10;
        let p = poll_message(&mut ws, &mut req).await;
        assert_eq!(p["message_type"], 1, "{version}: {p}");
        let mid = p["message_id"].clone();
        let r = act(
            &mut ws,
            "fetch_json_meta",
            serde_json::json!({"req_id": 50, "message_id": mid}),
        )
        .await;
        assert_eq!(
            r["message"], "message type can not get meta, type: 1",
            "{r}"
        );
        let args = serde_json::json!({"req_id": 51, "message_id": mid});
        if version == "3.3.0.0" {
            let r = act(&mut ws, "fetch_raw_data", args).await;
            assert_ne!(r["code"], 0, "{r}");
            assert!(
                r["message"].as_str().unwrap().contains("unknown action"),
                "{r}"
            );
            continue;
        }
        let b = act_binary(&mut ws, "fetch_raw_data", args).await;
        let (_, _, raw_type, blocks, rest) = decode_raw_data(&b);
        assert_eq!(raw_type, 2, "{version}: RES_TYPE__TMQ");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].table.as_deref(), Some("a"));
        assert_eq!(blocks[0].rows, vec![(T0, "7".to_string())]);
        assert_eq!(rest, 0i64.to_le_bytes(), "sleepTime");
    }
}
