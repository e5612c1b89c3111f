//! The daemon against a fake [`JobRunner`]: config parsing, schedules firing, retries, the
//! overlap policy, the HTTP endpoints, and shutdown (graceful, timed out, and by signals).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// What the fake runner was asked to do.
#[derive(Debug, Clone)]
struct Call {
    database: String,
    full: bool,
    ok: bool,
}

/// A runner whose backups take `run_time`, fail on demand, report progress, and record
/// every call; it notices overlapping runs of one database.
struct Fake {
    run_time: Duration,
    /// Attempts that fail before runs succeed (`u32::MAX`: always).
    fail_first: AtomicU32,
    /// Whether a run stops when cancelled (a well-behaved engine does).
    honour_cancel: bool,
    calls: Mutex<Vec<Call>>,
    running: Mutex<BTreeMap<String, u32>>,
    overlaps: AtomicU32,
    started: AtomicU64,
    retention: AtomicU32,
    feed: Mutex<Result<Option<FeedHealth>, String>>,
    repository: Mutex<Result<(), String>>,
}

impl Fake {
    fn new(run_time: Duration) -> Fake {
        Fake {
            run_time,
            fail_first: AtomicU32::new(0),
            honour_cancel: true,
            calls: Mutex::new(Vec::new()),
            running: Mutex::new(BTreeMap::new()),
            overlaps: AtomicU32::new(0),
            started: AtomicU64::new(0),
            retention: AtomicU32::new(0),
            feed: Mutex::new(Ok(Some(FeedHealth {
                dirty_blocks: 7,
                deleted_blocks: 1,
                events_processed: 42,
                lag_events: Some(3),
                inconsistency: None,
            }))),
            repository: Mutex::new(Ok(())),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }
}

#[async_trait]
impl JobRunner for Fake {
    async fn run_backup(
        &self,
        database: &str,
        full: bool,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> anyhow::Result<RunSummary> {
        {
            let mut running = self.running.lock().expect("running");
            let n = running.entry(database.to_owned()).or_default();
            *n += 1;
            if *n > 1 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        let n = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        progress.begin("export", 10, 100);
        progress.advance(3, 30, 300);
        let cancelled = if self.honour_cancel {
            tokio::select! {
                () = cancel.cancelled() => true,
                () = tokio::time::sleep(self.run_time) => false,
            }
        } else {
            tokio::time::sleep(self.run_time).await;
            false
        };
        progress.end();
        *self
            .running
            .lock()
            .expect("running")
            .entry(database.to_owned())
            .or_default() -= 1;
        let fail = self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                u32::MAX => Some(u32::MAX),
                left => Some(left - 1),
            })
            .is_ok();
        let ok = !cancelled && !fail;
        self.calls.lock().expect("calls").push(Call {
            database: database.to_owned(),
            full,
            ok,
        });
        if cancelled {
            anyhow::bail!("backup of {database} cancelled; nothing committed");
        }
        if fail {
            anyhow::bail!("cannot connect to ws://root:taosdata@db:6041: connection refused");
        }
        Ok(RunSummary {
            backup_id: format!("backup{n:04}"),
            kind: if full {
                BackupKind::Full
            } else {
                BackupKind::Incremental
            },
            full_reason: None,
            stats: BackupStats {
                tables: 2,
                blocks: 10,
                rows: 100,
                bytes_read: 4000,
                bytes_stored: 1000,
                ..BackupStats::default()
            },
        })
    }

    async fn refresh_feed(&self, _database: &str) -> anyhow::Result<Option<FeedHealth>> {
        self.feed
            .lock()
            .expect("feed")
            .clone()
            .map_err(anyhow::Error::msg)
    }

    async fn apply_retention(&self, _database: &str) -> anyhow::Result<()> {
        self.retention.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn check_repository(&self) -> anyhow::Result<()> {
        self.repository
            .lock()
            .expect("repository")
            .clone()
            .map_err(anyhow::Error::msg)
    }

    fn storage_retries(&self) -> u64 {
        // What a real runner's backend would have counted.
        11
    }
}

fn options(full: Option<&str>, incremental: Option<&str>) -> DaemonOptions {
    DaemonOptions {
        daemon: DaemonSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            feed_refresh_interval: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(10),
        },
        schedule: ScheduleSection {
            full: full.map(|e| CronSchedule::parse(e).expect("valid cron")),
            incremental: incremental.map(|e| CronSchedule::parse(e).expect("valid cron")),
            retry_count: 0,
            retry_interval: Duration::from_millis(50),
        },
        databases: vec!["power".to_owned()],
    }
}

/// `GET path` over a plain socket: (status code, content type, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the daemon");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a header/body split");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (code, content_type, body.to_owned())
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (code, content_type, body) = get(addr, path).await;
    assert_eq!(content_type, "application/json", "{path}");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (code, value)
}

/// The value of the sample `series` (`name{labels}` exactly as rendered) in `metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    daemon: DaemonSection,
    #[serde(default)]
    schedule: ScheduleSection,
}

#[test]
fn sections_parse_from_toml_with_defaults() {
    let parsed: Sections = toml::from_str(
        r#"
        [daemon]
        listen = "0.0.0.0:9090"
        feed_refresh_interval = "5m"
        [schedule]
        full = "0 0 2 * * Sun"
        incremental = "0 0 * * * *"
        retry_count = 5
        retry_interval = "90s"
        "#,
    )
    .expect("valid config");
    assert_eq!(parsed.daemon.listen, SocketAddr::from(([0, 0, 0, 0], 9090)));
    assert_eq!(
        parsed.daemon.feed_refresh_interval,
        Duration::from_secs(300)
    );
    assert_eq!(parsed.daemon.shutdown_timeout, Duration::from_secs(60));
    assert_eq!(
        parsed.schedule.full.as_ref().map(ToString::to_string),
        Some("0 0 2 * * Sun".to_owned())
    );
    assert_eq!(
        parsed
            .schedule
            .incremental
            .as_ref()
            .map(ToString::to_string),
        Some("0 0 * * * *".to_owned())
    );
    assert_eq!(parsed.schedule.retry_count, 5);
    assert_eq!(parsed.schedule.retry_interval, Duration::from_secs(90));

    let empty: Sections = toml::from_str("").expect("empty config");
    assert_eq!(empty.daemon, DaemonSection::default());
    assert_eq!(
        empty.daemon.listen,
        SocketAddr::from(([127, 0, 0, 1], 8080))
    );
    assert_eq!(empty.schedule, ScheduleSection::default());
    assert_eq!(empty.schedule.retry_count, 3);
    assert_eq!(empty.schedule.retry_interval, Duration::from_secs(60));
}

#[test]
fn bad_sections_name_the_problem() {
    let cases = [
        ("[daemon]\nlisten_on = \"x\"", "listen_on"),
        ("[schedule]\nretries = 3", "retries"),
        (
            "[schedule]\nfull = \"0 0 2 * * Funday\"",
            "0 0 2 * * Funday",
        ),
        ("[schedule]\nretry_interval = \"soon\"", "\"soon\""),
        ("[daemon]\nlisten = \"localhost\"", "listen"),
    ];
    for (text, needle) in cases {
        let err = toml::from_str::<Sections>(text).expect_err(text);
        let message = err.to_string();
        assert!(message.contains(needle), "{text}: {message}");
    }
}

#[test]
fn passwords_in_urls_are_masked() {
    assert_eq!(
        redact("cannot connect to ws://root:taosdata@db:6041/x: refused"),
        "cannot connect to ws://root:***@db:6041/x: refused"
    );
    assert_eq!(
        redact("a taos://u:p@h:6030 and s3://bucket/prefix and ws://user@h"),
        "a taos://u:***@h:6030 and s3://bucket/prefix and ws://user@h"
    );
    assert_eq!(redact("no url here"), "no url here");
    assert_eq!(redact("dsn \"ws://a:b@c\""), "dsn \"ws://a:***@c\"");
}

#[tokio::test]
async fn useless_options_are_refused_before_starting() {
    let runner: Arc<dyn JobRunner> = Arc::new(Fake::new(Duration::ZERO));
    let mut no_database = options(Some("0 0 2 * * Sun"), None);
    no_database.databases.clear();
    let mut twice = options(Some("0 0 2 * * Sun"), None);
    twice.databases.push("power".to_owned());
    let mut zero = options(Some("0 0 2 * * Sun"), None);
    zero.daemon.feed_refresh_interval = Duration::ZERO;
    let cases = [
        (no_database, "no database"),
        (options(None, None), "nothing to schedule"),
        (twice, "listed twice"),
        (zero, "feed_refresh_interval"),
    ];
    for (options, needle) in cases {
        let err = Daemon::start(options, runner.clone(), Shutdown::new())
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains(needle), "{err:#}");
    }

    // An address in use is an error that names it.
    let first = Daemon::start(
        options(Some("0 0 2 * * Sun"), None),
        runner.clone(),
        Shutdown::new(),
    )
    .await
    .expect("first daemon starts");
    let mut clash = options(Some("0 0 2 * * Sun"), None);
    clash.daemon.listen = first.local_addr();
    let err = Daemon::start(clash, runner, Shutdown::new())
        .await
        .err()
        .expect("address in use");
    assert!(
        err.to_string()
            .contains(&format!("cannot listen on {}", first.local_addr())),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_schedule_fires_and_the_endpoints_report_it() {
    let fake = Arc::new(Fake::new(Duration::from_millis(50)));
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(
        options(None, Some("* * * * * *")),
        fake.clone(),
        shutdown.clone(),
    )
    .await
    .expect("daemon starts");
    let addr = daemon.local_addr();
    wait_for(Duration::from_secs(5), "two backups", || {
        fake.calls().iter().filter(|c| c.ok).count() >= 2
    })
    .await;
    // Retention follows each backup; give the second one a moment.
    wait_for(Duration::from_secs(2), "retention", || {
        fake.retention.load(Ordering::SeqCst) >= 2
    })
    .await;
    let calls = fake.calls();
    assert!(calls.iter().all(|c| c.database == "power" && !c.full));

    let (code, status) = get_json(addr, "/backup/status").await;
    assert_eq!(code, 200);
    let power = &status["databases"]["power"];
    assert_eq!(power["last_success"]["result"], "ok", "{status:#}");
    assert_eq!(power["last_success"]["kind"], "incremental");
    assert_eq!(power["last_success"]["backup_kind"], "incremental");
    assert!(
        power["last_success"]["backup_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("backup")),
        "{status:#}"
    );
    assert_eq!(power["last_success"]["stats"]["rows"], 100);
    assert_eq!(power["last_success"]["stats"]["bytes_stored"], 1000);
    assert!(power["last_success"]["finished_at"].is_string());
    assert!(power["next_runs"]["incremental"].is_string(), "{status:#}");
    assert!(power["next_runs"]["full"].is_null());
    assert_eq!(power["feed"]["status"], "ok");
    assert_eq!(power["feed"]["tracker"]["dirty_blocks"], 7);

    let (code, health) = get_json(addr, "/health").await;
    assert_eq!(code, 200);
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(health["components"]["repository"]["status"], "ok");
    assert_eq!(health["components"]["feeds"]["power"]["status"], "ok");

    let (code, content_type, metrics) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let ok = sample(
        &metrics,
        r#"taosbackup_backups_total{database="power",kind="incremental",result="ok"}"#,
    )
    .expect("ok counter");
    assert!(ok >= 2.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            r#"taosbackup_backups_total{database="power",kind="incremental",result="failed"}"#
        ),
        Some(0.0)
    );
    assert!(!metrics.contains(r#"kind="full""#), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            r#"taosbackup_backup_last_rows{database="power",kind="incremental"}"#
        ),
        Some(100.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"taosbackup_backup_last_bytes_stored{database="power",kind="incremental"}"#
        ),
        Some(1000.0)
    );
    assert!(
        sample(
            &metrics,
            r#"taosbackup_backup_last_duration_seconds{database="power",kind="incremental"}"#
        )
        .is_some_and(|d| d >= 0.05),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"taosbackup_backup_rows_total{database="power"}"#
        )
        .is_some_and(|r| r >= 200.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"taosbackup_tracker_dirty_blocks{database="power"}"#
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(&metrics, r#"taosbackup_feed_lag_events{database="power"}"#),
        Some(3.0)
    );
    assert!(sample(&metrics, r#"taosbackup_feed_lag_seconds{database="power"}"#).is_some());
    assert_eq!(sample(&metrics, "taosbackup_repository_healthy"), Some(1.0));
    assert_eq!(
        sample(&metrics, "taosbackup_storage_retries_total"),
        Some(11.0),
        "the runner's count, taken after the run"
    );
    assert!(
        sample(
            &metrics,
            r#"taosbackup_retention_runs_total{database="power",result="ok"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );
    // Every sample belongs to a family with HELP and TYPE.
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE"
        );
    }
    let (code, _, _) = get(addr, "/nothing").await;
    assert_eq!(code, 404);

    shutdown.stop();
    tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("stops promptly")
        .expect("stops cleanly");
    assert_eq!(fake.overlaps.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_retried_until_it_succeeds() {
    let fake = Arc::new(Fake::new(Duration::from_millis(20)));
    fake.fail_first.store(2, Ordering::SeqCst);
    let mut options = options(Some("* * * * * *"), None);
    options.schedule.retry_count = 3;
    options.schedule.retry_interval = Duration::from_millis(100);
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(options, fake.clone(), shutdown.clone())
        .await
        .expect("daemon starts");
    wait_for(Duration::from_secs(5), "a successful backup", || {
        fake.calls().iter().any(|c| c.ok)
    })
    .await;
    let calls = fake.calls();
    let outcomes: Vec<(bool, bool)> = calls.iter().take(3).map(|c| (c.full, c.ok)).collect();
    assert_eq!(outcomes, [(true, false), (true, false), (true, true)]);

    let (_, status) = get_json(daemon.local_addr(), "/backup/status").await;
    let last = &status["databases"]["power"]["last_success"];
    assert_eq!(last["attempt"], 3, "{status:#}");
    assert_eq!(last["kind"], "full");
    let (_, _, metrics) = get(daemon.local_addr(), "/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            r#"taosbackup_backups_total{database="power",kind="full",result="failed"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"taosbackup_backups_total{database="power",kind="full",result="ok"}"#
        )
        .is_some_and(|n| n >= 1.0)
    );
    shutdown.stop();
    daemon.wait().await.expect("stops cleanly");
    // Retention ran after successes only.
    let successes = fake.calls().iter().filter(|c| c.ok).count();
    assert_eq!(fake.retention.load(Ordering::SeqCst) as usize, successes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_reported_and_the_daemon_keeps_scheduling() {
    let fake = Arc::new(Fake::new(Duration::from_millis(10)));
    fake.fail_first.store(u32::MAX, Ordering::SeqCst);
    let mut options = options(None, Some("* * * * * *"));
    options.schedule.retry_count = 1;
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(options, fake.clone(), shutdown.clone())
        .await
        .expect("daemon starts");
    // Two scheduled runs of two attempts each: the daemon went on after the first gave up.
    wait_for(Duration::from_secs(6), "four failed attempts", || {
        fake.calls().len() >= 4
    })
    .await;
    let (code, status) = get_json(daemon.local_addr(), "/backup/status").await;
    assert_eq!(code, 200);
    let power = &status["databases"]["power"];
    assert_eq!(power["last"]["result"], "failed", "{status:#}");
    assert!(power["last_success"].is_null());
    let error = power["last"]["error"].as_str().expect("an error text");
    assert!(error.contains("ws://root:***@db:6041"), "{error}");
    let (_, _, metrics) = get(daemon.local_addr(), "/metrics").await;
    for body in [status.to_string(), metrics.clone()] {
        assert!(!body.contains("taosdata"), "a password leaked: {body}");
    }
    assert!(
        sample(
            &metrics,
            r#"taosbackup_backups_total{database="power",kind="incremental",result="failed"}"#
        )
        .is_some_and(|n| n >= 4.0),
        "{metrics}"
    );
    shutdown.stop();
    daemon.wait().await.expect("stops cleanly");
    assert_eq!(fake.retention.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_feed_or_the_repository_fails() {
    let fake = Arc::new(Fake::new(Duration::ZERO));
    *fake.feed.lock().expect("feed") = Err("TMQ subscription lost: topic dropped".to_owned());
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(
        options(Some("0 0 2 * * Sun"), None),
        fake.clone(),
        shutdown.clone(),
    )
    .await
    .expect("daemon starts");
    let addr = daemon.local_addr();

    async fn health_until(addr: SocketAddr, code: u16) -> Value {
        let start = Instant::now();
        loop {
            let (got, body) = get_json(addr, "/health").await;
            if got == code {
                return body;
            }
            assert!(start.elapsed() < Duration::from_secs(3), "{got}: {body:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let body = health_until(addr, 503).await;
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["components"]["feeds"]["power"]["status"], "failed");
    assert_eq!(
        body["components"]["feeds"]["power"]["error"],
        "TMQ subscription lost: topic dropped"
    );
    let (_, _, metrics) = get(addr, "/metrics").await;
    assert_eq!(
        sample(&metrics, r#"taosbackup_feed_healthy{database="power"}"#),
        Some(0.0)
    );

    *fake.feed.lock().expect("feed") = Ok(None);
    let body = health_until(addr, 200).await;
    assert_eq!(body["components"]["feeds"]["power"]["status"], "none");
    *fake.repository.lock().expect("repository") =
        Err("cannot read s3://bkt/td/config: access denied".to_owned());
    let body = health_until(addr, 503).await;
    assert_eq!(
        body["components"]["repository"]["error"],
        "cannot read s3://bkt/td/config: access denied"
    );
    assert_eq!(body["components"]["repository"]["status"], "failed");
    assert_eq!(body["components"]["feeds"]["power"]["status"], "none");

    *fake.repository.lock().expect("repository") = Ok(());
    let body = health_until(addr, 200).await;
    assert_eq!(body["status"], "ok");
    shutdown.stop();
    daemon.wait().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_due_during_a_run_is_skipped_and_runs_never_overlap() {
    // Each run takes 1.5 s while an incremental falls due every second.
    let fake = Arc::new(Fake::new(Duration::from_millis(1500)));
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(
        options(None, Some("* * * * * *")),
        fake.clone(),
        shutdown.clone(),
    )
    .await
    .expect("daemon starts");
    wait_for(Duration::from_secs(8), "two backups", || {
        fake.calls().len() >= 2
    })
    .await;
    let (_, _, metrics) = get(daemon.local_addr(), "/metrics").await;
    assert!(
        sample(
            &metrics,
            r#"taosbackup_backups_total{database="power",kind="incremental",result="skipped"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    shutdown.stop();
    daemon.wait().await.expect("stops cleanly");
    assert_eq!(fake.overlaps.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_the_current_run_finish() {
    let fake = Arc::new(Fake::new(Duration::from_secs(2)));
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(
        options(None, Some("* * * * * *")),
        fake.clone(),
        shutdown.clone(),
    )
    .await
    .expect("daemon starts");
    wait_for(Duration::from_secs(5), "a run to start", || {
        fake.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let (_, status) = get_json(daemon.local_addr(), "/backup/status").await;
    let current = &status["databases"]["power"]["current"];
    assert_eq!(current["kind"], "incremental", "{status:#}");
    assert_eq!(current["phase"], "export");
    assert_eq!(current["total_blocks"], 10);
    assert_eq!(current["blocks"], 3);
    assert_eq!(current["rows"], 30);
    assert_eq!(current["bytes"], 300);
    assert_eq!(current["attempt"], 1);
    let (_, _, metrics) = get(daemon.local_addr(), "/metrics").await;
    assert_eq!(
        sample(&metrics, r#"taosbackup_backup_running{database="power"}"#),
        Some(1.0)
    );

    shutdown.stop();
    tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("stops once the run ends")
        .expect("stops cleanly");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "no run starts after the stop");
    assert!(calls[0].ok, "the run finished: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_still_going_after_the_shutdown_timeout_are_cancelled() {
    let fake = Arc::new(Fake::new(Duration::from_secs(60)));
    let mut options = options(Some("* * * * * *"), None);
    options.daemon.shutdown_timeout = Duration::from_millis(300);
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(options, fake.clone(), shutdown.clone())
        .await
        .expect("daemon starts");
    let addr = daemon.local_addr();
    wait_for(Duration::from_secs(5), "a run to start", || {
        fake.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let stopped = Instant::now();
    shutdown.stop();
    let state = daemon.state.clone();
    tokio::time::timeout(Duration::from_secs(5), daemon.wait())
        .await
        .expect("stops after the timeout")
        .expect("stops cleanly");
    assert!(stopped.elapsed() >= Duration::from_millis(300));
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].ok);
    let snapshot = state.snapshot();
    let last = snapshot.databases["power"]
        .last
        .clone()
        .expect("a last run");
    assert_eq!(last.result, state::Outcome::Cancelled);
    let metrics = http::render_metrics(&snapshot);
    assert_eq!(
        sample(
            &metrics,
            r#"taosbackup_backups_total{database="power",kind="full",result="cancelled"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    // The server stopped with the daemon.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A real SIGTERM to this process (the handler is installed first, so it does not kill the
/// test binary): the first stops gracefully, the second cancels the run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_a_second_one_cancels() {
    let fake = Arc::new(Fake::new(Duration::from_secs(60)));
    let shutdown = Shutdown::on_signals().expect("signal handlers");
    let daemon = Daemon::start(
        options(None, Some("* * * * * *")),
        fake.clone(),
        shutdown.clone(),
    )
    .await
    .expect("daemon starts");
    wait_for(Duration::from_secs(5), "a run to start", || {
        fake.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let waiting = tokio::spawn(daemon.wait());
    // SAFETY: kill(2) with this process's own pid and a signal it handles.
    let term = || unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    assert_eq!(term(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the first SIGTERM lets the run go on"
    );
    assert!(fake.calls().is_empty());
    assert_eq!(term(), 0);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the second SIGTERM stops at once")
        .expect("joins")
        .expect("stops cleanly");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].ok, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_http_client_does_not_keep_the_daemon_running() {
    let fake = Arc::new(Fake::new(Duration::ZERO));
    let shutdown = Shutdown::new();
    let daemon = Daemon::start(options(Some("0 0 2 * * Sun"), None), fake, shutdown.clone())
        .await
        .expect("daemon starts");
    // Half a request, never finished; and an idle keep-alive connection.
    let mut stuck = tokio::net::TcpStream::connect(daemon.local_addr())
        .await
        .expect("connect");
    stuck
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("send");
    let mut idle = tokio::net::TcpStream::connect(daemon.local_addr())
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.expect("a response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let start = Instant::now();
    shutdown.stop();
    tokio::time::timeout(Duration::from_secs(10), daemon.wait())
        .await
        .expect("stops despite the clients")
        .expect("stops cleanly");
    assert!(start.elapsed() < SERVER_DRAIN + Duration::from_secs(2));
    drop(stuck);
}
