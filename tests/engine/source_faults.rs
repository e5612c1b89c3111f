//! Source faults at the engine level: the emulator injects dropped connections, error
//! replies and stalls mid-fetch during a full backup (real `TaosSource`, in-memory
//! repository). Transient faults are retried and the backup restores to exactly the
//! source's rows; persistent faults fail the backup with an error naming the cause, and
//! the next backup is fine. A one-line summary per test is printed with `--nocapture`.

use std::sync::Arc;
use std::time::Duration;

use super::common::*;
use taosbackup_engine::{BackupPoint, EngineKind};
use taosbackup_sink::{Backend, InitOptions, KdfParams, Repo};
use taosbackup_source::{ConnectOptions, TaosSource};
use taosbackup_testkit::{Emulator, EmulatorConfig, Fault, FaultAction, FaultPoint, Trigger};

const ROWS: i64 = 300;

/// A harness whose emulator replies in blocks of 20 rows (many fetches per table) and whose
/// source retries quickly and times requests out after `timeout`.
async fn faulty_harness(timeout: Duration) -> Harness {
    let emu = Emulator::start(EmulatorConfig {
        block_rows: 20,
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    let taos = connect(&emu).await;
    let mut o = ConnectOptions::new(emu.dsn()).with_credentials("root", "taosdata");
    o.pool_size = 4;
    o.request_timeout = timeout;
    o.retry_count = 5;
    o.retry_interval_ms = 10;
    let source = TaosSource::connect(o).expect("source");
    let width = taosbackup_core::BucketWidth::from_seconds(60).unwrap();
    let repo = Repo::init(
        Backend::from_url("memory://").unwrap(),
        InitOptions {
            encryption: false,
            kdf: KdfParams::insecure_for_tests(),
            bucket_width: width,
            pack_size: 256 * 1024,
            ..InitOptions::default()
        },
        None,
    )
    .await
    .unwrap();
    Harness {
        emu,
        taos,
        source: Arc::new(source),
        repo,
        width,
    }
}

/// The standard tables, each with `ROWS` rows.
async fn seed(h: &Harness) -> Vec<String> {
    let tables = setup(h, &OracleFeed::default()).await;
    for t in &tables {
        let mut sql = format!("INSERT INTO {DB}.{t} VALUES ");
        for i in 0..ROWS {
            let ts = 1_700_000_000_000i64 + i * 1000;
            if t == "n1" {
                sql.push_str(&format!("({ts}, {i}, 'n{}') ", i % 7));
            } else {
                sql.push_str(&format!("({ts}, {}.5, {i}, 'x{}') ", i % 13, i % 5));
            }
        }
        h.exec(&sql).await;
    }
    tables
}

/// Restores the latest backup into `target` and asserts it equals the source, table by table.
async fn assert_restores_exactly(h: &Harness, target: &str) {
    h.restore(BackupPoint::Latest, target).await;
    let want = h.contents(DB).await;
    let got = h.contents(target).await;
    assert_eq!(want.len(), got.len());
    for (table, rows) in &want {
        assert_eq!(
            got.get(table),
            Some(rows),
            "table {table} differs after restore"
        );
    }
}

#[tokio::test]
async fn transient_faults_mid_fetch_are_retried_and_nothing_is_lost() {
    let h = faulty_harness(Duration::from_secs(2)).await;
    seed(&h).await;
    let err = h.emu.inject(
        Fault::error(FaultPoint::Fetch, 0xE002, "injected: connection closed")
            .matching(format!("from `{DB}`."))
            .trigger(Trigger::Rate {
                per_mille: 100,
                seed: 7,
            })
            .limit(6),
    );
    let drop = h.emu.inject(
        Fault::new(FaultPoint::Fetch, FaultAction::Drop)
            .matching(format!("from `{DB}`."))
            .trigger(Trigger::Rate {
                per_mille: 100,
                seed: 11,
            })
            .limit(3),
    );
    let report = h
        .backup(EngineKind::Bitmap, None)
        .await
        .expect("backup completes through retries");
    let stats = h.emu.fault_stats();
    let injected = stats[err].fired + stats[drop].fired;
    assert!(injected > 0, "the plan fired: {stats:?}");
    h.emu.clear_faults();
    assert_restores_exactly(&h, "sc_r").await;
    println!(
        "source-faults transient mid-fetch: {injected} injected ({} errors, {} drops), \
         {injected} retried, 0 lost; backup took {:?}",
        stats[err].fired, stats[drop].fired, report.duration
    );
}

#[tokio::test]
async fn a_persistent_fault_fails_the_backup_clearly_and_the_next_one_is_fine() {
    let h = faulty_harness(Duration::from_secs(10)).await;
    seed(&h).await;
    let i = h.emu.inject(
        Fault::error(FaultPoint::Fetch, 0x0216, "injected: persistent failure")
            .matching(format!("from `{DB}`.`d2`"))
            .trigger(Trigger::From(2)),
    );
    let before = h.repo.list_backups().await.unwrap().len();
    let err = h
        .backup(EngineKind::Bitmap, None)
        .await
        .expect_err("a persistent fault fails the backup");
    let text = format!("{err:#}");
    assert!(text.contains("injected: persistent failure"), "{text}");
    assert!(text.contains("d2"), "the error names the table: {text}");
    assert_eq!(
        h.repo.list_backups().await.unwrap().len(),
        before,
        "nothing listed"
    );
    let fired = h.emu.fault_stats()[i].fired;
    h.emu.clear_faults();
    h.backup(EngineKind::Bitmap, None)
        .await
        .expect("the next backup is fine");
    assert_restores_exactly(&h, "sc_r").await;
    println!(
        "source-faults persistent mid-fetch: {fired} injected, 0 retried past the budget, backup failed naming d2, next backup complete"
    );
}

#[tokio::test]
async fn a_stall_longer_than_the_request_timeout_is_retried_not_waited_for() {
    let h = faulty_harness(Duration::from_millis(500)).await;
    seed(&h).await;
    let i = h.emu.inject(
        Fault::new(
            FaultPoint::Fetch,
            FaultAction::Stall(Duration::from_secs(30)),
        )
        .matching(format!("from `{DB}`.`d1`"))
        .trigger(Trigger::Nth(3)),
    );
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(25), h.backup(EngineKind::Bitmap, None))
        .await
        .expect("the backup does not wait for the stalled fetch");
    r.expect("the stalled fetch is retried after the request timeout");
    let fired = h.emu.fault_stats()[i].fired;
    assert_eq!(fired, 1);
    h.emu.clear_faults();
    assert_restores_exactly(&h, "sc_r").await;
    println!(
        "source-faults stall mid-fetch: {fired} injected (30 s stall), 1 retried after the 500 ms request timeout, 0 lost, backup took {:?}",
        t.elapsed()
    );
}

/// Faults during the TMQ catch-up of a bitmap incremental (a dropped poll connection, an
/// error reply to a poll) fail the run cleanly, and the next run (faults cleared) delivers
/// every change; an error reply to the offset commit, which comes after the backup is
/// durable, leaves a committed incremental (a warning) whose events are replayed next time.
/// Either way no incremental lacks a change: every restore equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_mid_tmq_never_give_an_incomplete_incremental() {
    let h = faulty_harness(Duration::from_secs(2)).await;
    let oracle = OracleFeed::default();
    let tables = seed(&h).await;
    let dir = tempfile::tempdir().unwrap();
    let mut tracking = open_tracking(&h, &oracle, Feed::Tmq, dir.path()).await;
    let full = h
        .backup(EngineKind::Bitmap, Some(&mut tracking))
        .await
        .unwrap();
    assert_eq!(full.snapshot.kind, taosbackup_core::BackupKind::Full);
    let mut outcomes = Vec::new();
    let faults = [
        (
            "drop on poll",
            Fault::new(FaultPoint::TmqPoll, FaultAction::Drop),
        ),
        (
            "error on poll",
            Fault::error(FaultPoint::TmqPoll, 0x000B, "injected: poll failed"),
        ),
        (
            "error on commit",
            Fault::error(FaultPoint::TmqCommit, 0x000B, "injected: commit failed"),
        ),
    ];
    for (round, (what, fault)) in faults.into_iter().enumerate() {
        // Late rows into an old bucket and new rows: changes only the feed can report.
        for t in &tables {
            let ts = 1_700_000_000_000i64 + 500 + round as i64;
            let sql = if t == "n1" {
                format!("INSERT INTO {DB}.{t} VALUES ({ts}, 1, 'late')")
            } else {
                format!("INSERT INTO {DB}.{t} VALUES ({ts}, 1.5, 1, 'late')")
            };
            h.exec(&sql).await;
        }
        let i = h.emu.inject(fault);
        let first = h.backup(EngineKind::Bitmap, Some(&mut tracking)).await;
        let fired = h.emu.fault_stats()[i].fired;
        h.emu.clear_faults();
        let outcome = match &first {
            Ok(r) => format!("{:?} backup", r.snapshot.kind),
            Err(e) => format!("failed ({e})"),
        };
        match (what, &first) {
            ("error on commit", Ok(r)) => {
                assert_eq!(r.snapshot.kind, taosbackup_core::BackupKind::Incremental)
            }
            ("error on commit", Err(e)) => panic!("a failed feed commit failed the backup: {e}"),
            (_, Ok(_)) => panic!("{what}: the run succeeded although the feed failed"),
            (_, Err(_)) => {}
        }
        if first.is_err() {
            // A failed run commits nothing; the next one must carry every change.
            drop(tracking);
            tracking = open_tracking(&h, &oracle, Feed::Tmq, dir.path()).await;
            h.backup(EngineKind::Bitmap, Some(&mut tracking))
                .await
                .expect("the run after the fault");
        }
        assert_restores_exactly(&h, &format!("tmq_r{round}")).await;
        println!("source-faults TMQ {what}: {fired} fired; first run: {outcome}; restore exact");
        outcomes.push(fired);
    }
    assert!(
        outcomes.iter().sum::<u64>() >= 1,
        "no TMQ fault fired: {outcomes:?}"
    );
}
