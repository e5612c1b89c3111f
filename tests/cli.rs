//! End-to-end tests of the `taosbackup` binary against the TDengine wire emulator (and moto
//! for S3): every command, the config file forms, JSON outputs, exit codes, bad inputs and
//! SIGTERM during a backup. One binary, a temp dir per test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use taosbackup_testkit::{EmulatorHandle, Outcome, Session};
use tempfile::TempDir;

use crate::common::*;

/// A meters-style database: a super table with tags, `children` child tables with rows over
/// three days, and a normal table.
fn seed(emu: &EmulatorHandle, db: &str, children: usize) {
    let mut s = vec![
        format!("CREATE DATABASE {db} PRECISION 'ms' VGROUPS 2 WAL_RETENTION_PERIOD 86400"),
        format!(
            "CREATE STABLE {db}.meters (ts TIMESTAMP, current FLOAT, voltage INT, note NCHAR(8)) \
             TAGS (location VARCHAR(24), group_id INT)"
        ),
        format!("CREATE TABLE {db}.notes (ts TIMESTAMP, v DOUBLE)"),
        format!(
            "INSERT INTO {db}.notes VALUES ({BASE}, 1.5) ({}, 2.5)",
            BASE + DAY
        ),
    ];
    for i in 0..children {
        s.push(format!(
            "CREATE TABLE {db}.d{i} USING {db}.meters TAGS ('site{}', {i})",
            i % 3
        ));
        let mut ins = format!("INSERT INTO {db}.d{i} VALUES");
        for k in 0..6 {
            ins.push_str(&format!(
                " ({}, {}.5, {}, 'n{k}')",
                BASE + k * DAY / 2,
                i + k as usize,
                200 + k
            ));
        }
        s.push(ins);
    }
    sql(emu, &s);
}

/// The binary with a clean environment for our variables.
fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn repo_path(dir: &TempDir) -> String {
    dir.path().join("repo").display().to_string()
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn help_version_and_usage_errors() {
    let dir = TempDir::new().unwrap();
    tb(dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("restore"));
    tb(dir.path())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains("taosbackup"));
    tb(dir.path()).args(["list", "--bogus"]).assert().code(2);
    // No command means backup; without a repository that is a usage error.
    tb(dir.path())
        .args(["--source", "ws://127.0.0.1:1", "--database", "db"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no repository given"))
        .stderr(predicate::str::contains("hint:"));
    tb(dir.path())
        .args(["daemon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--config"));
}

#[test]
fn init_list_show_and_verify_an_empty_repository() {
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tb(dir.path())
        .args([
            "init",
            "--repo",
            &repo,
            "--no-encryption",
            "--bucket-width",
            "1h",
        ])
        .args(["--compression-level", "5"])
        .assert()
        .success()
        .stdout(predicate::str::contains("created repository"));
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("repo/config")).unwrap()).unwrap();
    assert_eq!(config["bucket_width"], 3600);
    assert_eq!(config["compression_level"], 5);
    tb(dir.path())
        .args(["init", "--repo", &repo, "--no-encryption"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists"));
    let out = tb(dir.path())
        .args(["list", "--repo", &repo, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(json_out(&out), Value::Array(vec![]));
    tb(dir.path())
        .args(["list", "--repo", &repo])
        .assert()
        .success()
        .stdout(predicate::str::contains("no backups"));
    tb(dir.path())
        .args(["verify", "--repo", &repo, "--read-data"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no problems found"));
    tb(dir.path())
        .args(["show", "--repo", &repo, "latest"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no backup matches"));
    tb(dir.path())
        .args(["init", "--repo", &repo, "--bucket-width", "10s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bucket width"));
    tb(dir.path())
        .args(["verify", "--repo", &repo, "--read-data", "101"])
        .assert()
        .code(2);
}

/// The whole cycle with the bitmap engine and the original invocation: full, changes,
/// incremental, list/show/plan JSON, restores of both points, verify.
#[test]
fn bitmap_backup_incremental_restore_and_verify() {
    let emu = emu();
    seed(&emu, "power", 20);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let config = write(
        &dir,
        "backup_config.json",
        r#"{
          "bitmap_engine": {"memory_limit_mb": 64},
          "event_interceptor": {"buffer_size": 1000, "callback_threads": 2},
          "backup": {"batch_size": 4, "compression": true, "encryption": true,
                     "retry_count": 2, "retry_interval_ms": 50}
        }"#,
    );
    let password = write(&dir, "pw", "s3cret\n");
    let config_arg = config.display().to_string();
    let pw_arg = password.display().to_string();
    // Planning against a repository that does not exist yet: a full backup, and no topic
    // is created for it.
    let out = tb(dir.path())
        .args([
            "plan",
            "--source",
            &emu.dsn(),
            "--database",
            "power",
            "--repo",
            &repo,
        ])
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = json_out(&out);
    assert_eq!(plan["kind"], "full", "{plan}");
    assert_eq!(plan["whole_tables"], 21, "{plan}");
    assert!(!dir.path().join("repo").exists());
    match emu.store().execute(&mut Session::default(), "SHOW TOPICS") {
        Ok(Outcome::Rows(rs)) => assert_eq!(rs.rows(), 0),
        other => panic!("SHOW TOPICS: {other:?}"),
    }
    // The original invocation: no command, --output.
    let out = tb(dir.path())
        .args([
            "--engine",
            "bitmap",
            "--config",
            &config_arg,
            "--source",
            &emu.dsn(),
        ])
        .args([
            "--database",
            "power",
            "--output",
            &repo,
            "--password-file",
            &pw_arg,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("full (bitmap engine)"), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    // Changes: a late row, an overwrite, a delete, a new table and a dropped one.
    sql(
        &emu,
        &[
            format!(
                "INSERT INTO power.d1 VALUES ({}, 9.5, 1, 'late')",
                BASE - DAY
            ),
            format!("INSERT INTO power.d2 VALUES ({BASE}, 7.5, 7, 'over')"),
            format!("DELETE FROM power.d3 WHERE ts <= {}", BASE + DAY / 2),
            "CREATE TABLE power.dnew USING power.meters TAGS ('new', 99)".to_string(),
            format!("INSERT INTO power.dnew VALUES ({BASE}, 1.0, 1, 'x')"),
            "DROP TABLE power.d4".to_string(),
        ],
    );
    let out = tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args([
            "plan",
            "--source",
            &emu.dsn(),
            "--database",
            "power",
            "--repo",
            &repo,
        ])
        .args(["--config", &config_arg, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = json_out(&out);
    assert_eq!(plan["kind"], "incremental", "{plan}");
    assert_eq!(plan["dropped_tables"], 1, "{plan}");
    let planned: Vec<&str> = plan["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    for t in ["d1", "d2", "d3", "dnew"] {
        assert!(planned.contains(&t), "{t} missing from {plan}");
    }
    assert!(!planned.contains(&"d7"), "{plan}");
    let out = tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args([
            "backup",
            "--source",
            &emu.dsn(),
            "--database",
            "power",
            "--repo",
            &repo,
        ])
        .args(["--config", &config_arg, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inc = json_out(&out);
    assert_eq!(inc["kind"], "incremental", "{inc}");
    assert_eq!(inc["engine"], "bitmap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Issue 16 item 9: log fields without Rust Debug formatting.
    for debug in ["Some(", "None", "=Full", "=Incremental"] {
        assert!(!stderr.contains(debug), "{debug} in the log:\n{stderr}");
    }
    // list --json: every field of the contract.
    let out = tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args(["list", "--repo", &repo, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = json_out(&out);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (full, last) = (&list[0], &list[1]);
    for b in list {
        for key in [
            "id",
            "database",
            "kind",
            "engine",
            "parent",
            "chain",
            "started_at",
            "finished_at",
            "rows",
            "blocks",
            "bytes_stored",
        ] {
            assert!(b.get(key).is_some(), "{key} missing in {b}");
        }
        let t = b["finished_at"].as_str().unwrap();
        assert!(chrono_like(t), "{t}");
    }
    assert_eq!(full["kind"], "full");
    assert_eq!(full["parent"], Value::Null);
    assert_eq!(last["parent"], full["id"]);
    assert_eq!(last["chain"], full["id"]);
    assert_eq!(full["database"], "power");
    assert!(full["rows"].as_u64().unwrap() >= 20 * 6);
    // show --json adds the tables.
    let out = tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args([
            "show",
            "--repo",
            &repo,
            "--json",
            last["id"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = json_out(&out);
    let tables = show["table_records"].as_array().unwrap();
    // Issue 16 item 9: one bytes_stored in the backup's summary, list and show.
    assert_eq!(show["bytes_stored"], inc["bytes_stored"], "show vs backup");
    assert_eq!(last["bytes_stored"], inc["bytes_stored"], "list vs backup");
    // The text shows tombstones as the sum of the table rows, dropped tables apart.
    let out = tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args(["show", "--repo", &repo, last["id"].as_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row_sum: u64 = tables
        .iter()
        .map(|t| t["tombstones"].as_u64().unwrap())
        .sum();
    let noun = if row_sum == 1 {
        "tombstone,"
    } else {
        "tombstones,"
    };
    assert!(
        text.contains(&format!(" {row_sum} {noun}")),
        "{row_sum} {noun} not in\n{text}"
    );
    let dropped = tables.iter().filter(|t| t["dropped"] == true).count();
    let noun = if dropped == 1 { "table" } else { "tables" };
    assert!(
        text.contains(&format!(" {dropped} {noun} dropped")),
        "{dropped} dropped not in\n{text}"
    );
    let d4 = tables
        .iter()
        .find(|t| t["name"] == "d4")
        .expect("d4 recorded");
    assert_eq!(d4["dropped"], true);
    assert!(
        tables
            .iter()
            .any(|t| t["name"] == "dnew" && t["blocks"] == 1)
    );
    tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args(["show", "--repo", &repo, &full["id"].as_str().unwrap()[..10]])
        .assert()
        .success()
        .stdout(predicate::str::contains("TABLE"))
        .stdout(predicate::str::contains("meters"));
    // Restore the latest point and the full one (by id) into new databases.
    let out = tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args(["restore", "--repo", &repo, "--target", &emu.dsn()])
        .args([
            "--database",
            "power",
            "--target-database",
            "power_latest",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = json_out(&out);
    assert_eq!(rep["count_mismatches"], Value::Array(vec![]), "{rep}");
    for t in ["d0", "d1", "d2", "d3", "dnew", "notes"] {
        assert_eq!(
            count(&emu, &format!("power_latest.{t}")),
            count(&emu, &format!("power.{t}")),
            "{t}"
        );
    }
    assert!(
        count_fails(&emu, "power_latest.d4"),
        "the dropped table is not restored"
    );
    tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args(["restore", "--repo", &repo, "--target", &emu.dsn()])
        .args([
            "--backup",
            full["id"].as_str().unwrap(),
            "--target-database",
            "power_full",
        ])
        .args(["--tables", "d3,d4"])
        .assert()
        .success()
        .stdout(predicate::str::contains("restored backup"));
    assert_eq!(count(&emu, "power_full.d3"), 6);
    assert_eq!(count(&emu, "power_full.d4"), 6);
    // Into an existing database: refused, with the way out.
    tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args(["restore", "--repo", &repo, "--target", &emu.dsn()])
        .args(["--target-database", "power_latest"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--into-existing"));
    // A dry run reads only the repository: it succeeds with a target nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args(["restore", "--repo", &repo, "--target", &nobody, "--dry-run"])
        .args(["--target-database", "power_latest", "--stables", "meters"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would restore"));
    // Verify: data and one backup's chain.
    let out = tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "s3cret")
        .args([
            "verify",
            "--repo",
            &repo,
            "--read-data",
            "--backup",
            "latest",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_out(&out);
    assert_eq!(v["ok"], true);
    assert!(v["backup_blocks_read"].as_u64().unwrap() > 0);
    // Wrong password.
    tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "wrong")
        .args(["list", "--repo", &repo])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong password"));
    // A backup with the wrong password fails with the password's error and adds nothing;
    // the source's connections it opened while deriving the key end without a panic.
    let listed = |pw: &str| {
        let out = tb(dir.path())
            .env("TAOSBACKUP_PASSWORD", pw)
            .args(["list", "--repo", &repo, "--json"])
            .output()
            .unwrap();
        json_out(&out).as_array().map_or(0, Vec::len)
    };
    // Run with the wrong password: exit code 1, the password's error, no panic.
    let refused = |args: &[&str]| {
        let out = tb(dir.path())
            .env("TAOSBACKUP_PASSWORD", "wrong")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("wrong password"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let before = listed("s3cret");
    let dsn = emu.dsn();
    refused(&[
        "backup",
        "--config",
        &config_arg,
        "--source",
        &dsn,
        "--database",
        "power",
        "--repo",
        &repo,
    ]);
    assert!(before > 0);
    assert_eq!(listed("s3cret"), before);
    // So does a restore, whose target's connections open while the key is derived; it
    // creates nothing.
    refused(&[
        "restore",
        "--repo",
        &repo,
        "--target",
        &dsn,
        "--database",
        "power",
        "--target-database",
        "power_wrong",
    ]);
    assert!(
        count_fails(&emu, "power_wrong.d0"),
        "nothing is restored with the wrong password"
    );
}

fn chrono_like(t: &str) -> bool {
    t.len() >= 20 && t.as_bytes()[4] == b'-' && t.contains('T') && t.ends_with('Z')
}

/// Full and time engines, a TOML config (flags override it), prune and a corrupted pack.
#[test]
fn toml_config_engines_prune_and_damage() {
    let emu = emu();
    seed(&emu, "meters", 5);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let config = write(
        &dir,
        "taosbackup.toml",
        &format!(
            r#"
[source]
dsn = "{}"
request_timeout = "20s"

[repository]
url = "{repo}"
bucket_width = "1d"

[backup]
database = "meters"
engine = "time"
encryption = false
parallel = 2

[retention]
keep_chains = 1

[log]
format = "json"
"#,
            emu.dsn()
        ),
    );
    let cfg = config.display().to_string();
    // --engine full overrides the file's engine.
    let out = tb(dir.path())
        .args(["backup", "--config", &cfg, "--engine", "full", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = json_out(&out);
    assert_eq!(first["engine"], "full");
    assert_eq!(first["kind"], "full");
    // Logs are JSON lines on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("backup committed"))
        .unwrap_or_else(|| panic!("{stderr}"));
    serde_json::from_str::<Value>(line).unwrap();
    sql(
        &emu,
        &[format!(
            "INSERT INTO meters.d0 VALUES ({}, 1.0, 1, 'new')",
            BASE + 5 * DAY
        )],
    );
    let out = tb(dir.path())
        .args(["backup", "--config", &cfg, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = json_out(&out);
    assert_eq!(second["engine"], "time");
    assert_eq!(second["kind"], "incremental");
    // --full starts a new chain; prune by the file's keep_chains = 1 keeps only it.
    let out = tb(dir.path())
        .args(["backup", "--config", &cfg, "--full", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let third = json_out(&out);
    assert_eq!(third["kind"], "full");
    let out = tb(dir.path())
        .args(["prune", "--config", &cfg, "--dry-run", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry = json_out(&out);
    assert_eq!(dry["forgotten"].as_array().unwrap().len(), 2, "{dry}");
    tb(dir.path())
        .args(["prune", "--config", &cfg, "--keep-within", "1h"])
        .assert()
        .success();
    // keep-within 1h keeps all three (flags and file rules combine).
    let out = tb(dir.path())
        .args(["list", "--config", &cfg, "--json"])
        .output()
        .unwrap();
    assert_eq!(json_out(&out).as_array().unwrap().len(), 3);
    tb(dir.path())
        .args(["prune", "--repo", &repo, "--keep-chains", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("forget 2 backups"));
    let out = tb(dir.path())
        .args(["list", "--repo", &repo, "--json"])
        .output()
        .unwrap();
    let list = json_out(&out);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], third["id"]);
    // Restore flags: KEEP override into a new database, then merging into it.
    let third_id = third["id"].as_str().unwrap();
    let out = tb(dir.path())
        .args(["restore", "--repo", &repo, "--target", &emu.dsn(), "--json"])
        .args(["--backup", &third_id[..8], "--target-database", "m2"])
        .args(["--keep-override", "3650", "--parallel", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = json_out(&out);
    assert_eq!(rep["rows_written"], rep["rows_expected"], "{rep}");
    // The repository's reads are counted: at least the snapshot and one pack.
    assert!(rep["storage_operations"].as_u64().unwrap() >= 2, "{rep}");
    assert_eq!(count(&emu, "m2.d0"), count(&emu, "meters.d0"));
    tb(dir.path())
        .args([
            "restore",
            "--config",
            &cfg,
            "--target",
            &emu.dsn(),
            "--target-database",
            "m2",
        ])
        .args(["--into-existing", "--tables", "d0"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 tables"));
    assert_eq!(count(&emu, "m2.d0"), count(&emu, "meters.d0"));
    // Backup points given as times.
    tb(dir.path())
        .args([
            "restore",
            "--config",
            &cfg,
            "--target",
            &emu.dsn(),
            "--dry-run",
        ])
        .args(["--backup", "2099-01-01 00:00", "--target-database", "m3"])
        .assert()
        .success()
        .stdout(predicate::str::contains(third_id));
    tb(dir.path())
        .args([
            "restore",
            "--config",
            &cfg,
            "--target",
            &emu.dsn(),
            "--dry-run",
        ])
        .args([
            "--backup",
            "2000-01-01T00:00:00Z",
            "--target-database",
            "m3",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no backup matches"));
    tb(dir.path())
        .args(["verify", "--repo", &repo, "--backup", &third_id[..12]])
        .assert()
        .success();
    tb(dir.path())
        .args(["list", "--repo", &repo, "--database", "other"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no backups"));
    tb(dir.path())
        .args(["show", "--repo", &repo, "--database", "meters", "latest"])
        .assert()
        .success()
        .stdout(predicate::str::contains(third_id));
    tb(dir.path())
        .args(["plan", "--config", &cfg])
        .assert()
        .success()
        .stdout(predicate::str::contains("incremental (engine time)"));
    // A flipped byte in a pack: verify --read-data exits 3 and names it.
    let packs = find_files(&dir.path().join("repo/data"));
    assert!(!packs.is_empty());
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&packs[0], bytes).unwrap();
    tb(dir.path())
        .args(["verify", "--repo", &repo, "--read-data"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("problems found"));
}

fn find_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(find_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn log_file_format_and_debug() {
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let log = dir.path().join("tb.log");
    let log_arg = log.display().to_string();
    tb(dir.path())
        .env("TAOS_BITMAP_DEBUG", "1")
        .args([
            "init",
            "--repo",
            &repo,
            "--no-encryption",
            "--log-file",
            &log_arg,
        ])
        .assert()
        .success();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("DEBUG") && text.contains("taosbackup starting"),
        "{text}"
    );
    tb(dir.path())
        .args([
            "list",
            "--repo",
            &repo,
            "--debug",
            "--log-format",
            "json",
            "--log-file",
            &log_arg,
        ])
        .assert()
        .success();
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(v["level"], "DEBUG", "{v}");
    // Without debug, no debug lines.
    let quiet = dir.path().join("quiet.log");
    tb(dir.path())
        .args([
            "list",
            "--repo",
            &repo,
            "--log-file",
            &quiet.display().to_string(),
        ])
        .assert()
        .success();
    assert!(!std::fs::read_to_string(&quiet).unwrap().contains("DEBUG"));
    tb(dir.path())
        .args([
            "list",
            "--repo",
            &repo,
            "--log-file",
            "/nonexistent/dir/x.log",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot open the log file"));
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = TempDir::new().unwrap();
    let toml = write(&dir, "bad.toml", "[backup]\nenigne = \"full\"\n");
    tb(dir.path())
        .args(["list", "--config", &toml.display().to_string()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown key `backup.enigne`"))
        .stderr(predicate::str::contains("bad.toml"));
    let json = write(
        &dir,
        "bad.json",
        r#"{"bitmap_engine": {"memory_limit": 5}}"#,
    );
    tb(dir.path())
        .args(["list", "--config", &json.display().to_string()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown key `bitmap_engine.memory_limit`",
        ))
        .stderr(predicate::str::contains("bad.json"));
    let bad_value = write(&dir, "v.toml", "[backup]\nengine = \"fast\"\n");
    tb(dir.path())
        .args(["list", "--config", &bad_value.display().to_string()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("backup.engine"));
    tb(dir.path())
        .args(["list", "--config", "/nonexistent/taosbackup.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read the config file"));
}

#[test]
fn bad_inputs_fail_with_advice() {
    let emu = emu();
    seed(&emu, "power", 1);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    // Bad DSN.
    tb(dir.path())
        .args([
            "backup",
            "--source",
            "ws://host:port",
            "--database",
            "power",
            "--repo",
            &repo,
        ])
        .arg("--no-encryption")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("hint:"));
    // Unreachable host.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let encrypted = dir.path().join("encrypted").display().to_string();
    tb(dir.path())
        .env("TAOSBACKUP_PASSWORD", "x")
        .args([
            "backup",
            "--engine",
            "full",
            "--database",
            "power",
            "--repo",
            &encrypted,
        ])
        .args(["--source", &format!("ws://{closed}")])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("reachable"));
    // Missing database.
    tb(dir.path())
        .args([
            "backup",
            "--engine",
            "full",
            "--source",
            &emu.dsn(),
            "--database",
            "nope",
        ])
        .args(["--repo", &repo, "--no-encryption"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nope"));
    // No password and no --no-encryption.
    let fresh = dir.path().join("fresh").display().to_string();
    tb(dir.path())
        .args([
            "backup",
            "--engine",
            "full",
            "--source",
            &emu.dsn(),
            "--database",
            "power",
        ])
        .args(["--repo", &fresh])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-encryption"));
    // Not a repository.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    tb(dir.path())
        .args([
            "list",
            "--repo",
            &dir.path().join("empty").display().to_string(),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a taosbackup repository"))
        .stderr(predicate::str::contains("taosbackup init"));
    tb(dir.path())
        .args(["list", "--repo", "ftp://host/x"])
        .assert()
        .code(2);
    // A native DSN: without libtaos the message names both fixes; with it, nothing listens.
    let native = dir.path().join("native").display().to_string();
    tb(dir.path())
        .args([
            "backup",
            "--engine",
            "full",
            "--source",
            "127.0.0.1:1",
            "--database",
            "power",
        ])
        .args(["--repo", &native, "--no-encryption"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("taos://127.0.0.1:1"));
    // A short WAL retention is worth a warning (the bitmap engine's feed needs the WAL).
    sql(
        &emu,
        &[
            "CREATE DATABASE brief WAL_RETENTION_PERIOD 600".to_string(),
            "CREATE TABLE brief.t (ts TIMESTAMP, v INT)".to_string(),
            format!("INSERT INTO brief.t VALUES ({BASE}, 1)"),
        ],
    );
    let brief = dir.path().join("brief").display().to_string();
    tb(dir.path())
        .args([
            "backup",
            "--source",
            &emu.dsn(),
            "--database",
            "brief",
            "--repo",
            &brief,
        ])
        .arg("--no-encryption")
        .assert()
        .success()
        .stderr(predicate::str::contains("keeps its WAL for only 600 s"));
    // Bad backup point.
    tb(dir.path())
        .args([
            "restore",
            "--repo",
            &repo,
            "--target",
            &emu.dsn(),
            "--backup",
            "yesterday",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("latest"));
}

#[test]
fn keys_add_list_passwd_remove() {
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let pw1 = write(&dir, "pw1", "first\n").display().to_string();
    let pw2 = write(&dir, "pw2", "second\n").display().to_string();
    let pw3 = write(&dir, "pw3", "third\n").display().to_string();
    tb(dir.path())
        .args(["init", "--repo", &repo, "--password-file", &pw1])
        .assert()
        .success();
    tb(dir.path())
        .args(["key", "add", "--repo", &repo, "--password-file", &pw1])
        .args(["--new-password-file", &pw2])
        .assert()
        .success()
        .stdout(predicate::str::contains("added key"));
    let out = tb(dir.path())
        .args([
            "key",
            "list",
            "--repo",
            &repo,
            "--password-file",
            &pw2,
            "--json",
        ])
        .output()
        .unwrap();
    let keys = json_out(&out);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let first_key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    tb(dir.path())
        .env("TAOSBACKUP_NEW_PASSWORD", "third")
        .args(["key", "passwd", "--repo", &repo, "--password-file", &pw2])
        .assert()
        .success();
    tb(dir.path())
        .args(["list", "--repo", &repo, "--password-file", &pw2])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong password"));
    tb(dir.path())
        .args([
            "key",
            "remove",
            "--repo",
            &repo,
            "--password-file",
            &pw3,
            // Issue 16 item 9: a unique prefix names a key, as it names a backup.
            &first_key[..8],
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(&first_key));
    tb(dir.path())
        .args(["list", "--repo", &repo, "--password-file", &pw1])
        .assert()
        .code(1);
    tb(dir.path())
        .args(["key", "add", "--repo", &repo, "--password-file", &pw3])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("TAOSBACKUP_NEW_PASSWORD"));
}

/// A TCP proxy that delays every chunk, to make a backup slow enough to interrupt.
/// A slow full backup through `proxy` (log lines go to stderr: not a terminal).
fn spawn_slow_backup(dir: &TempDir, repo: &str, proxy: std::net::SocketAddr) -> Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("taosbackup"))
        .args([
            "backup",
            "--engine",
            "full",
            "--parallel",
            "1",
            "--database",
            "power",
        ])
        .args([
            "--source",
            &format!("ws://{proxy}"),
            "--repo",
            repo,
            "--no-encryption",
        ])
        .env_remove("TAOSBACKUP_PASSWORD")
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `child`'s export is under way; returns its stderr lines so far and a receiver
/// for the rest.
fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) },
        0,
        "kill failed"
    );
}

#[test]
fn sigterm_during_backup_commits_nothing_and_releases_the_lock() {
    let emu = emu();
    seed(&emu, "power", 60);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let proxy = slow_proxy(emu.addr(), Duration::from_millis(15));
    let mut child = spawn_slow_backup(&dir, &repo, proxy);
    let (rx, seen) = wait_for_export(&mut child);
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&child);
    let status = child.wait().unwrap();
    // The child has exited: read its standard error to the end (try_iter could miss the
    // last lines still in the reader thread).
    let rest: Vec<String> = rx.iter().collect();
    let all = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(all.contains("nothing was committed"), "{all}");
    assert!(all.contains("lock was released"), "{all}");
    assert!(
        find_files(&dir.path().join("repo/locks")).is_empty(),
        "lock left behind"
    );
    let out = tb(dir.path())
        .args(["list", "--repo", &repo, "--json"])
        .output()
        .unwrap();
    assert_eq!(json_out(&out), Value::Array(vec![]));
    tb(dir.path())
        .args(["verify", "--repo", &repo, "--read-data"])
        .assert()
        .success();

    // A second signal exits at once; the dead process's lock does not block anyone and the
    // repository still verifies.
    let mut child = spawn_slow_backup(&dir, &repo, proxy);
    let (rx, seen) = wait_for_export(&mut child);
    // SIGTERM and SIGINT back to back: two signals that cannot coalesce into one.
    sigterm(&child);
    // SAFETY: as in `sigterm`.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    // The child has exited: read its standard error to the end (try_iter could miss the
    // last lines still in the reader thread).
    let rest: Vec<String> = rx.iter().collect();
    let all = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(all.contains("exiting at once"), "{all}");
    let out = tb(dir.path())
        .args(["list", "--repo", &repo, "--json"])
        .output()
        .unwrap();
    assert_eq!(json_out(&out), Value::Array(vec![]));
    tb(dir.path())
        .args(["verify", "--repo", &repo, "--read-data"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no problems found"));
    // prune takes the exclusive lock: a stale lock of a dead process does not block it.
    tb(dir.path())
        .args(["prune", "--repo", &repo])
        .assert()
        .success();
}

/// moto's S3 server: `TAOSBACKUP_MOTO_SERVER`, `.venv/bin/moto_server`, or `moto_server` on
/// the PATH. Required when `CI` is set; the test is skipped (with a message) otherwise.
#[test]
fn s3_repository_with_moto() {
    let Some(bin) = moto_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but moto_server was not found (set TAOSBACKUP_MOTO_SERVER)"
        );
        eprintln!("skipping the S3 test: moto_server not found (set TAOSBACKUP_MOTO_SERVER)");
        return;
    };
    let moto = start_moto(&bin, "tb-cli");
    let emu = emu();
    seed(&emu, "power", 3);
    let dir = TempDir::new().unwrap();
    let s3 = |c: &mut Command| {
        c.envs(s3_env(&moto.endpoint));
    };
    let url = "s3://tb-cli/backups/power";
    let mut c = tb(dir.path());
    s3(&mut c);
    c.args([
        "backup",
        "--engine",
        "full",
        "--source",
        &emu.dsn(),
        "--database",
        "power",
    ])
    .args(["--repo", url, "--no-encryption"])
    .assert()
    .success();
    let mut c = tb(dir.path());
    s3(&mut c);
    let out = c.args(["list", "--repo", url, "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_out(&out).as_array().unwrap().len(), 1);
    let mut c = tb(dir.path());
    s3(&mut c);
    c.args([
        "restore",
        "--repo",
        url,
        "--target",
        &emu.dsn(),
        "--target-database",
        "p2",
    ])
    .assert()
    .success();
    assert_eq!(count(&emu, "p2.d0"), 6);
    let mut c = tb(dir.path());
    s3(&mut c);
    c.args(["verify", "--repo", url, "--read-data"])
        .assert()
        .success();
}

/// Runs the binary on a read-only view of `repo`. As root (where permissions do not stop
/// writes) the repository is bind-mounted read-only onto itself in a private mount namespace
/// (`unshare -m`, then `mount --bind -o ro`); otherwise its files and directories lose their
/// write permission (`make_read_only`).
fn run_read_only(dir: &TempDir, repo: &str, args: &[&str]) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("taosbackup");
    // SAFETY: geteuid(2) has no preconditions.
    let mut c = if unsafe { libc::geteuid() } == 0 {
        let mut c = StdCommand::new("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            r#"mount --bind -o ro "$0" "$0" && exec "$@""#,
            repo,
        ]);
        c.arg(bin);
        c
    } else {
        StdCommand::new(bin)
    };
    c.args(args)
        .env_remove("TAOSBACKUP_PASSWORD")
        .env_remove("RUST_LOG")
        .env_remove("TAOS_BITMAP_DEBUG")
        .env("XDG_STATE_HOME", dir.path().join("state"));
    c.output().unwrap()
}

/// Without root: takes the write permission from every file and directory under `root`.
fn make_read_only(root: &Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return;
    }
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        all.push(p);
    }
    for p in all {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        let mode = if read_only {
            mode & !0o222
        } else {
            mode | 0o200
        };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Issue 16 item 2: list, show, verify and restore read a repository they cannot write (the
/// lock cannot be taken: said once, then read without it); `--no-lock` reads without trying;
/// a backup there fails with a message, never a panic.
#[test]
fn read_only_repository_is_read_without_a_lock() {
    let emu = emu();
    seed(&emu, "power", 3);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tb(dir.path())
        .args(["backup", "--engine", "full", "--source", &emu.dsn()])
        .args(["--database", "power", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    make_read_only(Path::new(&repo), true);
    let target = emu.dsn();
    let cases: [&[&str]; 4] = [
        &["list", "--repo", &repo, "--json"],
        &["show", "--repo", &repo, "latest"],
        &["verify", "--repo", &repo, "--read-data"],
        &[
            "restore",
            "--repo",
            &repo,
            "--target",
            &target,
            "--target-database",
            "p_ro",
        ],
    ];
    for args in cases {
        let out = run_read_only(&dir, &repo, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert_eq!(err.matches("not writable").count(), 1, "{args:?}: {err}");
        let mut no_lock = args.to_vec();
        no_lock.push("--no-lock");
        if args[0] == "restore" {
            no_lock[6] = "p_ro2";
        }
        let out = run_read_only(&dir, &repo, &no_lock);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{no_lock:?}: {err}");
        assert!(!err.contains("not writable"), "{no_lock:?}: {err}");
    }
    assert_eq!(count(&emu, "p_ro.d1"), 6);
    assert_eq!(count(&emu, "p_ro2.d1"), 6);
    let out = run_read_only(
        &dir,
        &repo,
        &[
            "backup",
            "--engine",
            "full",
            "--source",
            &target,
            "--database",
            "power",
            "--repo",
            &repo,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error:") && !err.contains("panicked"), "{err}");
    make_read_only(Path::new(&repo), false);
    assert!(find_files(&dir.path().join("repo/locks")).is_empty());
}

/// Issue 16 item 2 on S3: with credentials that can only read (a proxy answering every
/// write with 403 AccessDenied; see `read_only_s3_proxy` for why not moto's IAM mode), list,
/// show, verify and restore read the repository; a backup fails with a message.
#[test]
fn read_only_s3_credentials_read_the_repository() {
    let Some(bin) = moto_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but moto_server was not found (set TAOSBACKUP_MOTO_SERVER)"
        );
        eprintln!("skipping the S3 test: moto_server not found (set TAOSBACKUP_MOTO_SERVER)");
        return;
    };
    let moto = start_moto(&bin, "tb-ro");
    let proxy = read_only_s3_proxy(moto.port);
    let emu = emu();
    seed(&emu, "power", 2);
    let dir = TempDir::new().unwrap();
    let url = "s3://tb-ro/power";
    let with = |endpoint: String| {
        let mut c = tb(dir.path());
        c.envs(s3_env(&endpoint));
        c
    };
    let reader = || with(format!("http://{proxy}"));
    with(moto.endpoint.clone())
        .args(["backup", "--engine", "full", "--source", &emu.dsn()])
        .args(["--database", "power", "--repo", url, "--no-encryption"])
        .assert()
        .success();
    reader()
        .args(["backup", "--engine", "full", "--source", &emu.dsn()])
        .args(["--database", "power", "--repo", url])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error:"));
    let target = emu.dsn();
    let cases: [&[&str]; 4] = [
        &["list", "--repo", url, "--json"],
        &["show", "--repo", url, "latest"],
        &["verify", "--repo", url, "--read-data"],
        &[
            "restore",
            "--repo",
            url,
            "--target",
            &target,
            "--target-database",
            "p_s3ro",
        ],
    ];
    for args in cases {
        let out = reader().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert_eq!(err.matches("not writable").count(), 1, "{args:?}: {err}");
    }
    assert_eq!(count(&emu, "p_s3ro.d1"), 6);
}

/// Issue 16, items 3, 4, 7 and 8 through the binary: global options before the command, the
/// help layout, memory:// refused, nothing created before the source answered, non-empty
/// directories refused (`--force`), the original plugin's JSON config verbatim, config
/// syntax errors with line and column, a `hint:` on every error, verify of a repository it
/// cannot open, the daemon's exit code for a bad config, and missing S3 credentials named.
#[test]
fn first_hour_of_a_new_user() {
    let emu = emu();
    seed(&emu, "power", 2);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let pw = write(&dir, "pw", "first hour\n");
    let pw = pw.display().to_string();

    // Item 3: a wrong database, a wrong password or an unreachable source creates nothing.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (source, database) in [
        (emu.dsn(), "no_such_db".to_string()),
        (
            format!("ws://root:wrong@{}", emu.addr()),
            "power".to_string(),
        ),
        (format!("ws://{closed}"), "power".to_string()),
    ] {
        let out = tb(dir.path())
            .args(["backup", "--engine", "bitmap", "--source", &source])
            .args([
                "--database",
                &database,
                "--repo",
                &repo,
                "--password-file",
                &pw,
            ])
            .write_stdin("")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !Path::new(&repo).exists(),
            "{source} {database}: repository created"
        );
    }
    // No topic at all: this emulator had none before the failed runs.
    match emu.store().execute(&mut Session::default(), "SHOW TOPICS") {
        Ok(Outcome::Rows(rs)) => assert_eq!(rs.rows(), 0, "a topic was created: {rs:?}"),
        other => panic!("SHOW TOPICS: {other:?}"),
    }

    // Item 3: a directory with other files is not made a repository without --force.
    let used = dir.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("notes.txt"), "mine").unwrap();
    let used = used.display().to_string();
    tb(dir.path())
        .args(["init", "--repo", &used, "--no-encryption"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not empty"))
        .stderr(predicate::str::contains("--force"));
    tb(dir.path())
        .args(["backup", "--engine", "full", "--source", &emu.dsn()])
        .args(["--database", "power", "--repo", &used, "--no-encryption"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not empty"));
    tb(dir.path())
        .args(["init", "--repo", &used, "--no-encryption", "--force"])
        .assert()
        .success();

    // Item 4: the original plugin's backup_config.json as written (plugin.*, type, enable).
    let state = dir.path().join("bitmaps").display().to_string();
    let original = include_str!("../examples/backup_config.json")
        .replace("/var/lib/taosbackup/bitmap", &state);
    let json = write(&dir, "backup_config.json", &original);
    // Item 7: global options before the command.
    let out = tb(dir.path())
        .args([
            "--config",
            &json.display().to_string(),
            "--password-file",
            &pw,
        ])
        .args(["backup", "--engine", "bitmap", "--source", &emu.dsn()])
        .args(["--database", "power", "--repo", &repo])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("plugin.*"), "no word on plugin.*: {err}");
    tb(dir.path())
        .args(["--password-file", &pw, "--repo", &repo, "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("power"));
    let off = write(
        &dir,
        "off.json",
        r#"{"event_interceptor": {"enable": false}}"#,
    );
    tb(dir.path())
        .args([
            "backup",
            "--config",
            &off.display().to_string(),
            "--source",
            &emu.dsn(),
        ])
        .args([
            "--database",
            "power",
            "--repo",
            &repo,
            "--password-file",
            &pw,
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("event_interceptor.enable"));

    // Item 7: help lists the command's options first, global ones under their heading,
    // defaults shown, and no memory://; memory:// is refused.
    let out = tb(dir.path()).args(["backup", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let (own, global) = (
        help.find("--parallel").unwrap(),
        help.find("Global options").unwrap(),
    );
    assert!(
        own < global && help[global..].contains("--password-file"),
        "{help}"
    );
    assert!(help.contains("[default: one per core, 4 to 8"), "{help}");
    assert!(help.contains("[default: text]"), "{help}");
    assert!(!help.contains("memory://"), "{help}");
    tb(dir.path())
        .args(["list", "--repo", "memory://"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("lost when taosbackup exits"));

    // Item 8: config syntax errors name line and column; every error has a hint.
    let bad = write(
        &dir,
        "bad.toml",
        "[backup]\nengine = \"full\"\nparallel = = 3\n",
    );
    tb(dir.path())
        .args(["list", "--config", &bad.display().to_string()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 3, column"))
        .stderr(predicate::str::contains("hint:"));
    for args in [
        &["list", "--bogus"][..],
        &[
            "show",
            "--repo",
            &repo,
            "--password-file",
            &pw,
            "0123456789abcdef",
        ][..],
        &[
            "restore",
            "--repo",
            &repo,
            "--password-file",
            &pw,
            "--target",
            "ws://[::1",
        ][..],
    ] {
        let out = tb(dir.path()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("hint:"), "{args:?}: no hint\n{err}");
    }

    // Item 8: verify of a repository it cannot open does not suggest verify.
    let broken = dir.path().join("broken");
    copy_dir(Path::new(&repo), &broken);
    std::fs::write(broken.join("config"), b"{\"damaged\": true}").unwrap();
    let out = tb(dir.path())
        .args([
            "verify",
            "--repo",
            &broken.display().to_string(),
            "--password-file",
            &pw,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("hint:") && !err.contains("taosbackup verify"),
        "{err}"
    );

    // Item 8: the daemon's exit code for a config it cannot run is 2 (docs' table).
    let daemon = write(
        &dir,
        "daemon.toml",
        &format!("[backup]\ndatabase = \"power\"\n[repository]\nurl = \"{repo}\"\n"),
    );
    tb(dir.path())
        .args(["daemon", "--config", &daemon.display().to_string()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing to schedule"))
        .stderr(predicate::str::contains("hint: set schedule.full"));

    // Item 8: an S3 repository without credentials says so (the metadata service is a
    // closed port here, so the store's last resort fails at once).
    let mut c = tb(dir.path());
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        c.env_remove(v);
    }
    c.env("AWS_ENDPOINT", format!("http://{closed}"))
        .env("AWS_METADATA_ENDPOINT", format!("http://{closed}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .args(["list", "--repo", "s3://bucket/repo"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no credentials found (looked in AWS_ACCESS_KEY_ID",
        ));
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Issue 16 item 5: a full backup's progress gets a total, estimated from the catalog (the
/// buckets between each table's first and last row, and COUNT(*)), while the export runs.
#[test]
fn full_backup_progress_has_an_estimated_total() {
    let emu = emu();
    seed(&emu, "power", 30);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    // Slow enough that the estimate (three queries) lands before the export (31 tables,
    // one at a time: `tables_per_query = 1`; 30 children in one query would end first)
    // ends.
    let proxy = slow_proxy(emu.addr(), Duration::from_millis(5));
    let config = dir.path().join("one-per-query.toml");
    std::fs::write(&config, "[backup]\ntables_per_query = 1\n").unwrap();
    let out = tb(dir.path())
        .args(["--config", config.to_str().unwrap()])
        .args([
            "backup",
            "--engine",
            "full",
            "--parallel",
            "1",
            "--database",
            "power",
        ])
        .args([
            "--source",
            &format!("ws://{proxy}"),
            "--repo",
            &repo,
            "--no-encryption",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // 30 children × 3 day buckets (six rows over 2.5 days) + the normal table's 2 buckets;
    // 30 × 6 + 2 rows.
    assert!(
        err.contains("export of power: about 92 blocks, 182 rows (estimated from the catalog)"),
        "{err}"
    );
}

/// Issue 16 item 6: `feed list` shows the topics taosbackup owns, their group, WAL lag and
/// repository; a first backup cancelled before its commit drops the topic it created;
/// `feed drop` removes a topic so its database can be dropped.
#[test]
fn feed_list_and_drop() {
    let emu = emu();
    seed(&emu, "power", 40);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tb(dir.path())
        .args(["backup", "--engine", "bitmap", "--source", &emu.dsn()])
        .args(["--database", "power", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    // A first bitmap backup of another repository, cancelled during its export.
    let other = dir.path().join("other").display().to_string();
    let proxy = slow_proxy(emu.addr(), Duration::from_millis(15));
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("taosbackup"))
        .args([
            "backup",
            "--engine",
            "bitmap",
            "--parallel",
            "1",
            "--database",
            "power",
        ])
        .args([
            "--source",
            &format!("ws://{proxy}"),
            "--repo",
            &other,
            "--no-encryption",
        ])
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, seen) = wait_for_export(&mut child);
    sigterm(&child);
    let status = child.wait().unwrap();
    let all = format!(
        "{}\n{}",
        seen.join("\n"),
        rx.iter().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(all.contains("dropped the change-feed topic"), "{all}");

    // Changes since the backup: the group is behind the WAL.
    sql(
        &emu,
        &[format!(
            "INSERT INTO power.d1 VALUES ({}, 9.5, 9, 'late')",
            BASE + 7
        )],
    );
    let out = tb(dir.path())
        .args([
            "feed",
            "list",
            "--source",
            &emu.dsn(),
            "--repo",
            &repo,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let topics = json_out(&out);
    let topics = topics.as_array().unwrap();
    assert_eq!(topics.len(), 1, "{topics:?}");
    let t = &topics[0];
    assert_eq!(t["database"], "power");
    assert_eq!(t["repository"], repo.as_str());
    let group = &t["groups"][0];
    assert!(group["group"].as_str().unwrap().ends_with("_g"), "{t}");
    assert!(group["lag"].as_i64().is_some_and(|l| l >= 1), "{t}");
    let topic = t["topic"].as_str().unwrap().to_string();
    // Without --repo the state directory names the repository.
    tb(dir.path())
        .args(["feed", "list", "--source", &emu.dsn()])
        .assert()
        .success()
        .stdout(predicate::str::contains(&topic))
        .stdout(predicate::str::contains("tracker state in"));
    // Reading the lag left the group as it was: the next backup is an incremental with the
    // late row.
    let out = tb(dir.path())
        .args([
            "backup",
            "--engine",
            "bitmap",
            "--source",
            &emu.dsn(),
            "--json",
        ])
        .args(["--database", "power", "--repo", &repo])
        .output()
        .unwrap();
    let inc = json_out(&out);
    assert_eq!(inc["kind"], "incremental", "{inc}");
    // One block: the late row and the two rows already in its day.
    assert_eq!(
        (inc["blocks"].as_u64(), inc["rows"].as_u64()),
        (Some(1), Some(3)),
        "{inc}"
    );
    // The topic blocks DROP DATABASE until `feed drop`.
    let mut s = Session::default();
    let blocked = emu.store().execute(&mut s, "DROP DATABASE power");
    assert!(blocked.is_err(), "DROP DATABASE with a topic succeeded");
    tb(dir.path())
        .args(["feed", "drop", "--source", &emu.dsn(), "taosbackup_nope"])
        .assert()
        .code(2);
    tb(dir.path())
        .args(["feed", "drop", "--source", &emu.dsn(), &topic])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("dropped {topic}")));
    let out = tb(dir.path())
        .args(["feed", "list", "--source", &emu.dsn(), "--json"])
        .output()
        .unwrap();
    assert_eq!(json_out(&out), Value::Array(vec![]));
    emu.store()
        .execute(&mut s, "DROP DATABASE power")
        .expect("DROP DATABASE after feed drop");
}

/// Virtual tables (TDengine 3.3.6+) hold no rows of their own and are not restored: the
/// backup says so, in its summary and in its JSON, rather than leaving them out silently.
#[test]
fn backup_lists_virtual_tables_as_not_backed_up() {
    let emu = emu();
    sql(
        &emu,
        &[
            "CREATE DATABASE vt".into(),
            "CREATE TABLE vt.src (ts TIMESTAMP, a INT)".into(),
            format!("INSERT INTO vt.src VALUES ({BASE}, 1)"),
            "CREATE VTABLE vt.vn (ts TIMESTAMP, a INT FROM vt.src.a)".into(),
        ],
    );
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let backup = |json: bool| {
        let mut c = tb(dir.path());
        c.args([
            "backup",
            "--engine",
            "full",
            "--source",
            &emu.dsn(),
            "--database",
            "vt",
            "--repo",
            &repo,
            "--no-encryption",
        ]);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let out = backup(false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("not backed up: vn (VIRTUAL_NORMAL_TABLE): virtual"),
        "{stdout}"
    );
    let out = backup(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_out(&out);
    assert_eq!(v["skipped"][0]["name"], "vn", "{v}");
    assert_eq!(v["skipped"][0]["kind"], "VIRTUAL_NORMAL_TABLE", "{v}");
}

/// Runs `backup --engine bitmap` (the default `tmq` change feed unless `config` says
/// otherwise) and returns its stdout.
fn bitmap_backup(dir: &TempDir, dsn: &str, repo: &str, config: Option<&Path>) -> String {
    let mut c = tb(dir.path());
    c.args(["backup", "--engine", "bitmap", "--source", dsn])
        .args(["--database", "idle", "--repo", repo, "--no-encryption"]);
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Audit A3 through the binary: the feed's own subscribe, its offset commits and its
/// consumer leaving are WAL entries that yield no TMQ message, so an idle database never
/// "reaches the end" by messages. Three bitmap backups in a row must all succeed; the later
/// two are incrementals that export nothing.
#[test]
fn idle_database_three_bitmap_backups_in_a_row_over_tmq() {
    let emu = emu();
    seed(&emu, "idle", 3);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    let first = bitmap_backup(&dir, &emu.dsn(), &repo, None);
    assert!(first.contains("full (bitmap engine)"), "{first}");
    for run in 2..=3 {
        let out = bitmap_backup(&dir, &emu.dsn(), &repo, None);
        assert!(out.contains("incremental"), "run {run}: {out}");
        assert!(out.contains("0 failed"), "run {run}: {out}");
    }
}

/// The path of the `taos-emu` binary, built (or brought up to date) with the cargo that
/// builds these tests: it belongs to another package, so cargo does not build it for us.
fn taos_emu_bin() -> PathBuf {
    let status = StdCommand::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "taosbackup-testkit",
            "--bin",
            "taos-emu",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building taos-emu failed");
    // target/<profile>/deps/<this test> → target/<profile>/taos-emu
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .map(|p| p.join("taos-emu"))
        .expect("target directory")
}

/// The `wal` change feed through the binaries: `taos-emu --wal-dir` writes TDengine-format
/// vnode WAL files, and `taosbackup backup --engine bitmap` with `change_feed = "wal"` reads
/// them: a full backup, then an incremental of exactly the changed table.
#[test]
fn wal_feed_through_taos_emu_wal_dir() {
    use std::io::BufRead;
    use taos::sync::{Queryable, TBuilder};

    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let mut emu = StdCommand::new(taos_emu_bin())
        .args(["--listen", "127.0.0.1:0", "--wal-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("taos-emu starts");
    let mut line = String::new();
    std::io::BufReader::new(emu.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let dsn = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let run = || {
        let taos = TBuilder::build(&taos::TaosBuilder::from_dsn(&dsn).unwrap()).unwrap();
        taos.exec("CREATE DATABASE idle VGROUPS 2").unwrap();
        taos.exec("CREATE STABLE idle.st (ts TIMESTAMP, v INT) TAGS (g INT)")
            .unwrap();
        for i in 0..4 {
            taos.exec(format!(
                "INSERT INTO idle.c{i} USING idle.st TAGS ({i}) VALUES ({BASE}, {i})"
            ))
            .unwrap();
        }
        let repo = repo_path(&dir);
        let cfg = write(
            &dir,
            "wal.json",
            &format!(
                r#"{{"bitmap_engine": {{"change_feed": "wal", "wal_path": {:?}}}}}"#,
                data.display().to_string()
            ),
        );
        let first = bitmap_backup(&dir, &dsn, &repo, Some(&cfg));
        assert!(first.contains("full (bitmap engine)"), "{first}");
        assert!(data.join("vnode").read_dir().unwrap().count() >= 2);
        taos.exec(format!("INSERT INTO idle.c2 VALUES ({}, 7)", BASE + DAY))
            .unwrap();
        let second = bitmap_backup(&dir, &dsn, &repo, Some(&cfg));
        assert!(second.contains("incremental"), "{second}");
        let out = tb(dir.path())
            .args(["list", "--repo", &repo, "--json"])
            .output()
            .unwrap();
        let list = json_out(&out);
        assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    unsafe { libc::kill(emu.id() as i32, libc::SIGTERM) };
    let _ = emu.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Runs a command that must succeed and returns its JSON output.
fn succeeded_json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_out(&out)
}

/// Audit A9: a backup of a 3.3.6 server restored into a 3.4 server: the database options are
/// re-emitted under 3.4's names, and the restore says so (text and `--json`).
#[test]
fn cross_version_restore_renames_database_options() {
    use taosbackup_testkit::{Emulator, EmulatorConfig};
    let start = |v: &str| {
        Emulator::start(EmulatorConfig {
            server_version: v.into(),
            ..EmulatorConfig::default()
        })
        .expect("emulator starts")
    };
    let old = start("3.3.6.0");
    let new = start("3.4.0.0");
    seed(&old, "power", 2);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tb(dir.path())
        .args(["backup", "--engine", "full", "--source", &old.dsn()])
        .args(["--database", "power", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    let report = succeeded_json(
        tb(dir.path())
            .args(["restore", "--repo", &repo, "--database", "power"])
            .args(["--target", &new.dsn(), "--json"]),
    );
    let changes = report["database_option_changes"].as_array().unwrap();
    let renamed: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["source"].as_str().unwrap(),
                c["target"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert!(
        renamed.contains(&("S3_CHUNKPAGES 131072", "SS_CHUNKPAGES 131072")),
        "{report}"
    );
    assert_eq!(count(&new, "power.d1"), 6);
    // The other way: 3.4 options into 3.3.6, in the text output.
    let back = start("3.3.6.0");
    let repo2 = dir.path().join("repo2").display().to_string();
    tb(dir.path())
        .args(["backup", "--engine", "full", "--source", &new.dsn()])
        .args(["--database", "power", "--repo", &repo2, "--no-encryption"])
        .assert()
        .success();
    tb(dir.path())
        .args(["restore", "--repo", &repo2, "--database", "power"])
        .args(["--target", &back.dsn()])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "database option SS_CHUNKPAGES 131072 was sent as S3_CHUNKPAGES 131072",
        ));
    assert_eq!(count(&back, "power.d0"), 6);
}

/// A server that rejects a statement: the error names what the statement was for, the
/// server's version and TDengine's code and message; the repository gets no backup.
#[test]
fn a_rejected_statement_names_purpose_version_and_error() {
    use taosbackup_testkit::{Fault, FaultPoint, Trigger};
    let emu = emu();
    seed(&emu, "power", 1);
    let version = emu.store().server_version().to_string();
    emu.inject(
        Fault::error(FaultPoint::Query, 0x2600, "syntax error near \"ttl\"")
            .matching("ins_tables")
            .trigger(Trigger::From(1)),
    );
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tb(dir.path())
        .args(["init", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    tb(dir.path())
        .args(["backup", "--engine", "full", "--source", &emu.dsn()])
        .args(["--database", "power", "--repo", &repo, "--no-encryption"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("reading the catalog (ins_tables)"))
        .stderr(predicate::str::contains(format!("TDengine {version}")))
        .stderr(predicate::str::contains("[0x2600]"))
        .stderr(predicate::str::contains("syntax error near"));
    let listed = succeeded_json(tb(dir.path()).args(["list", "--repo", &repo, "--json"]));
    assert_eq!(listed.as_array().map_or(0, Vec::len), 0, "{listed}");
}

/// Every row of `sql` through the store, as the emulator's typed columns (bytes exact).
fn select_all(emu: &EmulatorHandle, sql: &str) -> Vec<taosbackup_testkit::ColumnData> {
    let mut s = Session::default();
    match emu.store().execute(&mut s, sql) {
        Ok(Outcome::Rows(rs)) => rs.columns,
        other => panic!("{sql}: {other:?}"),
    }
}

/// Audit A10: DECIMAL (128-bit), DECIMAL64 and BLOB columns back up through the binary and
/// restore byte-exactly (NULLs, negative values, precision 38, scale 0 and maximum scale),
/// in a super table's children and in a normal table.
#[test]
fn decimal_and_blob_round_trip_exactly() {
    let emu = taosbackup_testkit::Emulator::start(taosbackup_testkit::EmulatorConfig {
        server_version: "3.4.0.0".into(),
        ..taosbackup_testkit::EmulatorConfig::default()
    })
    .expect("emulator starts");
    let mut stmts = vec![
        "CREATE DATABASE dec".to_string(),
        "CREATE STABLE dec.m (ts TIMESTAMP, a DECIMAL(38,0), b DECIMAL(38,38), \
         c DECIMAL(18,18), d DECIMAL(18,0), e DECIMAL(10,2), f BLOB) TAGS (g INT)"
            .to_string(),
        "CREATE TABLE dec.n (ts TIMESTAMP, v DECIMAL(20,5), w BLOB, x INT)".to_string(),
    ];
    let big = "9".repeat(38);
    let frac = format!("0.{}", "9".repeat(38));
    let frac18 = format!("-0.{}", "1".repeat(18));
    for child in 0..2 {
        stmts.push(format!(
            "CREATE TABLE dec.c{child} USING dec.m TAGS ({child})"
        ));
        for i in 0..40i64 {
            let ts = BASE + i * 1000;
            let row = match i % 4 {
                0 => format!(
                    "({ts}, -{big}, '{frac}', {frac18}, -999999999999999999, -{i}.5{child}, \
                     '\\x00ff{i:02x}')"
                ),
                1 => format!("({ts}, NULL, NULL, NULL, NULL, NULL, NULL)"),
                2 => format!("({ts}, {big}, '-{frac}', 0, 0, 0.01, '')"),
                _ => format!("({ts}, {i}, 0.{i}, 0.{i}, {i}, 12345678.{i:02}, 'text {i}')"),
            };
            stmts.push(format!("INSERT INTO dec.c{child} VALUES {row}"));
        }
    }
    stmts.push(format!(
        "INSERT INTO dec.n VALUES ({BASE}, -123456789012345.12345, '\\x01', 1), ({}, NULL, \
         NULL, NULL), ({}, 0.00001, 'x', 3)",
        BASE + 1,
        BASE + 2
    ));
    sql(&emu, &stmts);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tb(dir.path())
        .args(["backup", "--engine", "full", "--source", &emu.dsn()])
        .args(["--database", "dec", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    tb(dir.path())
        .args(["restore", "--repo", &repo, "--database", "dec"])
        .args(["--target", &emu.dsn(), "--target-database", "dec2"])
        .assert()
        .success();
    for t in ["c0", "c1", "n"] {
        let a = select_all(&emu, &format!("SELECT * FROM dec.{t}"));
        let b = select_all(&emu, &format!("SELECT * FROM dec2.{t}"));
        assert_eq!(a[0].len(), if t == "n" { 3 } else { 40 });
        assert_eq!(a, b, "table {t}");
    }
    // The restored schema keeps precision and scale.
    let mut s = Session::default();
    let Ok(Outcome::Rows(r)) = emu.store().execute(&mut s, "SHOW CREATE TABLE dec2.n") else {
        panic!("show create")
    };
    let taosbackup_testkit::Value::VarChar(ddl) = r.columns[1].get(0) else {
        panic!("ddl")
    };
    let ddl = String::from_utf8(ddl).unwrap();
    assert!(
        ddl.contains("DECIMAL(20,5)") && ddl.contains("BLOB"),
        "{ddl}"
    );
}

/// Issue 16 item 10: the completion scripts `cargo xtask dist` ships come from the binary.
#[test]
fn completion_scripts_name_every_command() {
    let dir = TempDir::new().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = tb(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in [
            "backup",
            "restore",
            "verify",
            "feed",
            "password-file",
            "no-lock",
        ] {
            assert!(script.contains(command), "{shell}: {command} missing");
        }
    }
    tb(dir.path())
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}

/// Format 2: any backup can be forgotten alone (an incremental restores exactly after its
/// parent is gone), pins, restic retention with an exact dry run, the refusal to forget a
/// database's every backup, and the snapshot cache that never decides what exists.
#[test]
fn forget_pin_retention_and_the_snapshot_cache() {
    let emu = emu();
    seed(&emu, "power", 6);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tb(dir.path())
        .args(["init", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    let backup = |engine: &str| -> String {
        let out = tb(dir.path())
            .args(["backup", "--source", &emu.dsn(), "--database", "power"])
            .args(["--repo", &repo, "--engine", engine, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_out(&out)["id"].as_str().unwrap().to_string()
    };
    let mut ids = vec![backup("full")];
    for k in 0..3 {
        sql(
            &emu,
            &[format!(
                "INSERT INTO power.d{k} VALUES ({}, 1.0, 1, 'more')",
                BASE + (5 + k) * DAY
            )],
        );
        ids.push(backup("time"));
    }
    let list = |extra: &[&str]| -> Vec<String> {
        let out = tb(dir.path())
            .args(["list", "--repo", &repo, "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_out(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list(&[]), ids);
    // The listing left every decrypted snapshot in one cache file under the repository's
    // id, and folded in the single files the backups had stored.
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("repo/config")).unwrap()).unwrap();
    let cached = dir
        .path()
        .join("cache/taosbackup")
        .join(config["id"].as_str().unwrap());
    let file: Value =
        serde_json::from_slice(&std::fs::read(cached.join("snapshots.json")).unwrap()).unwrap();
    let mut in_file: Vec<&str> = file["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    in_file.sort_unstable();
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    assert_eq!(in_file, sorted);
    assert_eq!(
        std::fs::read_dir(cached.join("snapshots")).unwrap().count(),
        0
    );
    // A snapshot deleted behind the cache's back is not listed, cached or not.
    let third = dir.path().join("repo/snapshots").join(&ids[2]);
    let saved = std::fs::read(&third).unwrap();
    std::fs::remove_file(&third).unwrap();
    assert_eq!(list(&[]), [&ids[..2], &ids[3..]].concat());
    assert_eq!(list(&["--no-cache"]), [&ids[..2], &ids[3..]].concat());
    std::fs::write(&third, saved).unwrap();
    assert_eq!(list(&["--no-cache"]), ids);

    // Pin the second; forget the third (the newest's parent): the newest still restores.
    tb(dir.path())
        .args(["pin", "--repo", &repo, &ids[1][..12]])
        .assert()
        .success()
        .stdout(predicate::str::contains("pinned"));
    tb(dir.path())
        .args(["forget", "--repo", &repo, &ids[2]])
        .assert()
        .success()
        .stdout(predicate::str::contains("forget 1 backups"));
    tb(dir.path())
        .args(["forget", "--repo", &repo, &ids[1]])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unpin"));
    let out = tb(dir.path())
        .args(["restore", "--repo", &repo, "--target", &emu.dsn(), "--json"])
        .args(["--backup", &ids[3], "--target-database", "p_newest"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = json_out(&out);
    assert_eq!(rep["count_mismatches"], Value::Array(vec![]), "{rep}");
    assert!(
        rep["objects_read"]["shards"].as_u64().unwrap() >= 1,
        "{rep}"
    );
    for t in ["d0", "d1", "d2", "d5", "notes"] {
        assert_eq!(
            count(&emu, &format!("p_newest.{t}")),
            count(&emu, &format!("power.{t}")),
            "{t}"
        );
    }
    tb(dir.path())
        .args(["verify", "--repo", &repo, "--read-data"])
        .assert()
        .success();

    // Retention: keep the newest one; the pinned one stays. The dry run predicts the run.
    let prune = |extra: &[&str]| {
        tb(dir.path())
            .args(["prune", "--repo", &repo, "--keep-last", "1", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let dry = prune(&["--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry = json_out(&dry);
    assert_eq!(dry["forgotten"], serde_json::json!([ids[0]]), "{dry}");
    assert_eq!(
        dry["kept_reasons"][&ids[1]],
        serde_json::json!(["pinned"]),
        "{dry}"
    );
    let real = json_out(&prune(&[]));
    assert_eq!(real["forgotten"], dry["forgotten"]);
    let (d, r) = (
        dry["bytes_freed"].as_i64().unwrap(),
        real["bytes_freed"].as_i64().unwrap(),
    );
    assert!(r > 0 && (d - r).abs() * 100 <= r, "dry run {d} vs real {r}");
    assert_eq!(list(&[]), vec![ids[1].clone(), ids[3].clone()]);
    // A policy that would forget every backup of the database is refused.
    tb(dir.path())
        .args(["unpin", "--repo", &repo, &ids[1]])
        .assert()
        .success();
    tb(dir.path())
        .args([
            "prune",
            "--repo",
            &repo,
            "--keep-within",
            "0s",
            "--keep-daily",
            "0",
        ])
        .assert()
        .success();
    tb(dir.path())
        .args(["prune", "--repo", &repo, "--keep-daily", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--allow-empty"));
    assert_eq!(list(&[]), vec![ids[3].clone()]);
    tb(dir.path())
        .args([
            "verify",
            "--repo",
            &repo,
            "--read-data",
            "--backup",
            "latest",
        ])
        .assert()
        .success();
}

/// Whether each backup's first shard is binary (else JSON), oldest first, read through the
/// sink API from the repository at `path` (unencrypted).
fn shards_binary(path: &str) -> Vec<bool> {
    use taosbackup_sink::{Backend, Repo};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let repo = Repo::open(Backend::local(path).unwrap(), None)
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut snapshots = repo.snapshots().await.unwrap();
        snapshots.sort_by_key(|s| s.started_at);
        for s in &snapshots {
            out.push(first_shard_is_binary(&repo, s).await);
        }
        out
    })
}

/// The `version` of the repository's config.
fn config_version(path: &str) -> u64 {
    let text = std::fs::read(Path::new(path).join("config")).unwrap();
    serde_json::from_slice::<Value>(&text).unwrap()["version"]
        .as_u64()
        .unwrap()
}

/// A format-2 repository (created as builds before format 3 did) stays format 2 with JSON
/// shards, so those builds keep reading it, until `migrate` switches it to format 3; then new
/// shards are binary, and every backup, JSON or binary, verifies and restores.
#[test]
fn a_format2_repository_keeps_json_shards_until_migrate_switches_it() {
    let emu = emu();
    seed(&emu, "power", 5);
    let dir = TempDir::new().unwrap();
    let repo = repo_path(&dir);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use taosbackup_sink::{Backend, FORMAT2_VERSION, InitOptions, KdfParams, Repo};
        let options = InitOptions {
            encryption: false,
            kdf: KdfParams::insecure_for_tests(),
            format_version: FORMAT2_VERSION,
            ..InitOptions::default()
        };
        Repo::init(Backend::local(&repo).unwrap(), options, None)
            .await
            .unwrap();
    });
    let backup = || {
        tb(dir.path())
            .args(["backup", "--engine", "full", "--source", &emu.dsn()])
            .args(["--database", "power", "--repo", &repo])
            .assert()
            .success();
    };
    backup();
    assert_eq!(config_version(&repo), 2);
    assert_eq!(shards_binary(&repo), [false]);

    sql(
        &emu,
        &[format!(
            "INSERT INTO power.d1 VALUES ({}, 9.5, 9, 'late')",
            BASE + 1
        )],
    );
    let out = tb(dir.path())
        .args(["migrate", "--repo", &repo, "--dry-run"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains("would switch") && text.contains("format 3"),
        "{text}"
    );
    assert_eq!(config_version(&repo), 2);
    let out = tb(dir.path())
        .args(["migrate", "--repo", &repo])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("from format 2 to format 3"), "{text}");
    assert_eq!(config_version(&repo), 3);
    backup();
    assert_eq!(shards_binary(&repo), [false, true]);

    tb(dir.path())
        .args(["verify", "--repo", &repo, "--read-data"])
        .assert()
        .success();
    let first = json_out(
        &tb(dir.path())
            .args(["list", "--repo", &repo, "--json"])
            .output()
            .unwrap(),
    );
    let first_id = first[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    for (backup, db, rows) in [(first_id.as_str(), "p_json", 6), ("latest", "p_binary", 7)] {
        tb(dir.path())
            .args(["restore", "--repo", &repo, "--target", &emu.dsn()])
            .args(["--backup", backup, "--target-database", db])
            .assert()
            .success();
        assert_eq!(count(&emu, &format!("{db}.d1")), rows, "{db}");
        assert_eq!(count(&emu, &format!("{db}.d2")), 6, "{db}");
    }
}
