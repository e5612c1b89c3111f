//! End to end: the real `taosbackup daemon` against the TDengine emulator, with an incremental
//! schedule firing every 2 s: the first run becomes a full, a later one backs up new rows
//! through the change feed, the HTTP endpoints report both, and SIGTERM stops it cleanly.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle, Session};

use crate::common::storage::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_taosbackup");

/// The daemon process; killed if the test ends without stopping it.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test with `what` and the daemon's log.
    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- daemon log ---\n{}", self.log());
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => self.fail(&format!("cannot wait for the daemon: {e}")),
            }
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path`: (status code, body); None while nothing listens.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

fn get_json(addr: SocketAddr, path: &str) -> Option<(u16, Value)> {
    let (code, body) = get(addr, path)?;
    Some((code, serde_json::from_str(&body).ok()?))
}

/// The value of the sample `series` (`name{labels}` as rendered) in `metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

fn exec(emu: &EmulatorHandle, statements: &[String]) {
    let mut session = Session::default();
    for sql in statements {
        emu.store()
            .execute(&mut session, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// `rows` rows into `power.d1` from `start_ms` on, a second apart.
fn insert(start_ms: i64, rows: i64) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| format!("({}, {}.5)", start_ms + i * 1000, i))
        .collect();
    format!("INSERT INTO power.d1 VALUES {}", values.join(" "))
}

fn taosbackup(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("taosbackup runs")
}

fn write_config(dir: &Path, emu: &EmulatorHandle, repo: &Path, listen: SocketAddr) -> PathBuf {
    let config = format!(
        r#"
[source]
dsn = "{dsn}"

[repository]
url = "{repo}"

[backup]
database = "power"
engine = "bitmap"

[bitmap_engine]
persistence_path = "{state}"

[daemon]
listen = "{listen}"
feed_refresh_interval = "1s"
shutdown_timeout = "20s"

[schedule]
full = "0 0 2 * * Sun"
incremental = "*/2 * * * * *"
retry_count = 1
retry_interval = "1s"
"#,
        dsn = emu.dsn(),
        repo = repo.display(),
        state = dir.join("state").display(),
    );
    let path = dir.join("taosbackup.toml");
    std::fs::write(&path, config).expect("write the config");
    path
}

#[test]
fn daemon_backs_up_on_schedule_reports_over_http_and_stops_on_sigterm() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let day_ms = 86_400_000;
    exec(
        &emu,
        &[
            "CREATE DATABASE power".to_owned(),
            "CREATE STABLE power.meters (ts TIMESTAMP, v DOUBLE) TAGS (loc INT)".to_owned(),
            "CREATE TABLE power.d1 USING power.meters TAGS (1)".to_owned(),
            insert(now_ms - 3 * day_ms, 50),
        ],
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    let init = taosbackup(&["init", "--repo", &repo.to_string_lossy(), "--no-encryption"]);
    assert!(init.status.success(), "init: {init:?}");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = write_config(dir.path(), &emu, &repo, addr);
    let log = dir.path().join("daemon.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(BIN)
        .args(["daemon", "--config", &config.to_string_lossy()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("the daemon starts");
    let mut daemon = Running { child, log };

    let poll =
        |daemon: &mut Running, limit: Duration, what: &str, check: &mut dyn FnMut() -> bool| {
            let start = Instant::now();
            while !check() {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    daemon.fail(&format!(
                        "the daemon exited ({status}) while waiting for {what}"
                    ));
                }
                if start.elapsed() > limit {
                    daemon.fail(&format!("timed out waiting for {what}"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };

    poll(&mut daemon, Duration::from_secs(20), "/health", &mut || {
        get_json(addr, "/health").is_some_and(|(code, _)| code == 200)
    });

    // The first scheduled incremental has no parent: the engine makes it a full.
    let mut first = Value::Null;
    poll(
        &mut daemon,
        Duration::from_secs(30),
        "the first backup",
        &mut || {
            let Some((_, status)) = get_json(addr, "/backup/status") else {
                return false;
            };
            first = status["databases"]["power"]["last_success"].clone();
            !first.is_null()
        },
    );
    assert_eq!(first["kind"], "incremental", "{first:#}");
    assert_eq!(first["backup_kind"], "full", "{first:#}");
    assert_eq!(first["stats"]["rows"], 50, "{first:#}");
    let first_id = first["backup_id"].as_str().expect("a backup id").to_owned();

    // New rows reach the next incremental through the change feed.
    exec(&emu, &[insert(now_ms - day_ms, 10)]);
    let mut later = Value::Null;
    poll(
        &mut daemon,
        Duration::from_secs(30),
        "an incremental with the new rows",
        &mut || {
            let Some((_, status)) = get_json(addr, "/backup/status") else {
                return false;
            };
            later = status["databases"]["power"]["last_success"].clone();
            later["backup_kind"] == "incremental"
                && later["backup_id"].as_str() != Some(&first_id)
                && later["stats"]["rows"].as_u64().is_some_and(|r| r >= 10)
        },
    );

    let (code, status) = get_json(addr, "/backup/status").expect("status");
    assert_eq!(code, 200);
    let power = &status["databases"]["power"];
    assert!(power["next_runs"]["incremental"].is_string(), "{status:#}");
    assert!(power["next_runs"]["full"].is_string(), "{status:#}");
    assert_eq!(power["feed"]["status"], "ok", "{status:#}");
    let (code, health) = get_json(addr, "/health").expect("health");
    assert_eq!(code, 200, "{health:#}");
    assert_eq!(health["components"]["repository"]["status"], "ok");
    assert_eq!(health["components"]["feeds"]["power"]["status"], "ok");
    let (code, metrics) = get(addr, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(
        sample(
            &metrics,
            r#"taosbackup_backups_total{database="power",kind="incremental",result="ok"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"taosbackup_tracker_dirty_blocks{database="power"}"#
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        sample(&metrics, r#"taosbackup_feed_lag_seconds{database="power"}"#).is_some(),
        "{metrics}"
    );
    for body in [status.to_string(), health.to_string(), metrics] {
        assert!(!body.contains("taosdata"), "a password leaked: {body}");
    }

    // SIGTERM: the daemon lets a running backup finish, then exits 0.
    let pid = i32::try_from(daemon.child.id()).expect("a pid");
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    match daemon.wait_exit(Duration::from_secs(30)) {
        Some(status) if status.success() => {}
        Some(status) => daemon.fail(&format!("the daemon exited with {status} after SIGTERM")),
        None => daemon.fail("the daemon did not exit within 30 s of SIGTERM"),
    }
    assert!(
        get(addr, "/health").is_none(),
        "the HTTP server stopped with the daemon"
    );

    // The repository lists what the daemon committed.
    let list = taosbackup(&["list", "--repo", &repo.to_string_lossy(), "--json"]);
    assert!(list.status.success(), "list: {list:?}");
    let backups: Vec<Value> = serde_json::from_slice(&list.stdout).expect("list --json");
    let ids: Vec<&str> = backups.iter().filter_map(|b| b["id"].as_str()).collect();
    assert!(ids.contains(&first_id.as_str()), "{backups:#?}");
    assert!(ids.contains(&later["backup_id"].as_str().unwrap_or_default()));
    assert!(backups.iter().all(|b| b["database"] == "power"));
}
