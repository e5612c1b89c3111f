//! Fault injection, driven by the real `taos` connector: each fault fires where and when its
//! trigger says, and only there.

use std::time::Duration;

use futures::TryStreamExt;
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, TaosBuilder};
use taosbackup_testkit::{
    Emulator, EmulatorConfig, EmulatorHandle, Fault, FaultAction, FaultPoint, Trigger,
};

fn emu(block_rows: usize) -> EmulatorHandle {
    Emulator::start(EmulatorConfig {
        block_rows,
        ..EmulatorConfig::default()
    })
    .expect("emulator starts")
}

async fn connect(dsn: &str) -> taos::Taos {
    let taos = TaosBuilder::from_dsn(dsn)
        .unwrap()
        .build()
        .await
        .expect("connects");
    crate::nodelay(&taos).await;
    taos
}

async fn seed(taos: &taos::Taos, rows: usize) {
    taos.exec("CREATE DATABASE IF NOT EXISTS p").await.unwrap();
    taos.exec("CREATE TABLE IF NOT EXISTS p.t (ts TIMESTAMP, v INT)")
        .await
        .unwrap();
    let mut sql = String::from("INSERT INTO p.t VALUES ");
    for i in 0..rows {
        sql.push_str(&format!("({}, {i}) ", 1_700_000_000_000i64 + i as i64));
    }
    assert_eq!(taos.exec(&sql).await.unwrap(), rows);
}

/// Reads `SELECT * FROM p.t` to the end; the number of rows or the error's text.
async fn read_all(taos: &taos::Taos) -> Result<usize, String> {
    let mut rs = taos
        .query("SELECT * FROM p.t")
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    let mut blocks = rs.blocks();
    while let Some(b) = blocks.try_next().await.map_err(|e| e.to_string())? {
        n += b.nrows();
    }
    Ok(n)
}

#[tokio::test]
async fn an_error_on_the_nth_fetch_reaches_the_client_once() {
    let emu = emu(10);
    let taos = connect(&emu.dsn()).await;
    seed(&taos, 50).await;
    let i = emu.inject(
        Fault::error(FaultPoint::Fetch, 0x0216, "injected fetch error")
            .matching("from p.t")
            .trigger(Trigger::Nth(3)),
    );
    let err = read_all(&taos).await.expect_err("the third fetch fails");
    assert!(err.contains("injected fetch error"), "{err}");
    // Fired once: the next read is whole.
    assert_eq!(read_all(&taos).await, Ok(50));
    let s = emu.fault_stats()[i];
    assert_eq!(s.fired, 1);
    assert_eq!(
        s.matched,
        3 + 6,
        "3 fetches of the failed read, 6 of the whole one"
    );
}

#[tokio::test]
async fn a_query_error_matches_only_its_substring() {
    let emu = emu(4096);
    let taos = connect(&emu.dsn()).await;
    seed(&taos, 5).await;
    emu.inject(
        Fault::error(FaultPoint::Query, 0x2662, "injected query error")
            .matching("select count(*)")
            .trigger(Trigger::From(1)),
    );
    assert_eq!(read_all(&taos).await, Ok(5));
    let Err(err) = taos.query("SELECT COUNT(*) FROM p.t").await else {
        panic!("every count fails");
    };
    assert!(err.to_string().contains("injected query error"), "{err}");
    assert!(taos.query("select count(*) from p.t").await.is_err());
    assert_eq!(emu.faults_fired(), 2);
    emu.clear_faults();
    assert!(taos.query("SELECT COUNT(*) FROM p.t").await.is_ok());
}

#[tokio::test]
async fn a_drop_mid_fetch_fails_the_read_and_new_connections_work() {
    let emu = emu(10);
    let taos = connect(&emu.dsn()).await;
    seed(&taos, 50).await;
    emu.inject(Fault::new(FaultPoint::Fetch, FaultAction::Drop).trigger(Trigger::Nth(2)));
    assert!(
        read_all(&taos).await.is_err(),
        "a dropped fetch is an error, not a short read"
    );
    assert_eq!(emu.faults_fired(), 1);
    let again = connect(&emu.dsn()).await;
    assert_eq!(read_all(&again).await, Ok(50));
}

#[tokio::test]
async fn a_stall_delays_but_does_not_change_the_reply() {
    let emu = emu(10);
    let taos = connect(&emu.dsn()).await;
    seed(&taos, 30).await;
    emu.inject(
        Fault::new(
            FaultPoint::Fetch,
            FaultAction::Stall(Duration::from_millis(300)),
        )
        .trigger(Trigger::Nth(2)),
    );
    let t = std::time::Instant::now();
    assert_eq!(read_all(&taos).await, Ok(30));
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(emu.faults_fired(), 1);
}

#[tokio::test]
async fn a_rate_with_a_seed_is_deterministic_and_capped() {
    async fn run() -> (Vec<bool>, u64) {
        let emu = emu(1);
        let taos = connect(&emu.dsn()).await;
        seed(&taos, 1).await;
        emu.inject(
            Fault::error(FaultPoint::Query, 0x0216, "injected")
                .matching("select 1")
                .trigger(Trigger::Rate {
                    per_mille: 500,
                    seed: 42,
                })
                .limit(5),
        );
        let mut outcomes = Vec::new();
        for _ in 0..40 {
            outcomes.push(taos.query("SELECT 1 FROM p.t").await.is_err());
        }
        (outcomes, emu.faults_fired())
    }
    let (a, fired) = run().await;
    let (b, _) = run().await;
    assert_eq!(a, b, "same seed, same faults");
    assert_eq!(fired, 5, "the cap holds");
    assert_eq!(a.iter().filter(|e| **e).count(), 5);
}

#[tokio::test]
async fn tmq_poll_and_commit_faults_reach_the_consumer() {
    use taos::{AsAsyncConsumer, Timeout, TmqBuilder};
    let emu = emu(4096);
    let taos = connect(&emu.dsn()).await;
    seed(&taos, 3).await;
    taos.exec("CREATE TOPIC tp AS DATABASE p").await.unwrap();
    let poll = emu.inject(Fault::error(
        FaultPoint::TmqPoll,
        0x4000,
        "injected poll error",
    ));
    let commit = emu.inject(Fault::error(
        FaultPoint::TmqCommit,
        0x4000,
        "injected commit error",
    ));
    let mut consumer = TmqBuilder::from_dsn(format!(
        "{}?group.id=g&auto.offset.reset=earliest",
        emu.dsn()
    ))
    .unwrap()
    .build()
    .await
    .unwrap();
    crate::nagle_off();
    consumer.subscribe(["tp"]).await.unwrap();
    let first = consumer
        .recv_timeout(Timeout::Duration(Duration::from_millis(200)))
        .await;
    let err = first.expect_err("the first poll fails").to_string();
    assert!(err.contains("injected poll error"), "{err}");
    let mut got = None;
    for _ in 0..50 {
        if let Some(m) = consumer
            .recv_timeout(Timeout::Duration(Duration::from_millis(200)))
            .await
            .expect("later polls succeed")
        {
            got = Some(m);
            break;
        }
    }
    let (offset, _msg) = got.expect("a message after the failed poll");
    let err = consumer
        .commit(offset)
        .await
        .expect_err("the commit fails")
        .to_string();
    assert!(err.contains("injected commit error"), "{err}");
    assert_eq!(emu.fault_stats()[poll].fired, 1);
    assert_eq!(emu.fault_stats()[commit].fired, 1);
}
