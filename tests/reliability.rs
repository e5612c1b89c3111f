//! Reliability of the `taosbackup` binary against the TDengine wire emulator (and moto for
//! S3): kill -9 of backups, restores, prunes (local and S3) and migrate at random points leaves a
//! repository that verifies, lists no partial backup and takes the next run (a killed
//! restore reruns exactly); two backups of one database are kept apart by the lock; and a catalogue
//! of bad inputs (DSNs, configs, backup ids, time specs, URLs, numbers) each ends with exit
//! code 1 or 2 and a clear message, never a panic.
//!
//! Figures (kills, inputs) are printed with `--nocapture` (see docs/reliability.md).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use taosbackup_testkit::EmulatorHandle;
use tempfile::TempDir;

use crate::common::*;

/// `children` child tables of a super table, 6 rows each over three days.
fn seed(emu: &EmulatorHandle, db: &str, children: usize) {
    let mut s = vec![
        format!("CREATE DATABASE {db} PRECISION 'ms' VGROUPS 2"),
        format!(
            "CREATE STABLE {db}.meters (ts TIMESTAMP, current FLOAT, voltage INT) \
             TAGS (location VARCHAR(24), group_id INT)"
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
                " ({}, {}.5, {})",
                BASE + k * DAY / 2,
                i as i64 + k,
                200 + k
            ));
        }
        s.push(ins);
    }
    sql(emu, &s);
}

/// The binary with a clean environment for our variables.
/// Starts the binary; its standard error is piped (read it, or it may block) when `pipe`.
fn spawn(dir: &Path, args: &[&str], pipe: bool) -> Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("taosbackup"))
        .args(args)
        .env_remove("TAOSBACKUP_PASSWORD")
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(if pipe { Stdio::piped() } else { Stdio::null() })
        .spawn()
        .unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn list_json(dir: &Path, repo: &str) -> Vec<Value> {
    let out = tb(dir)
        .args(["list", "--repo", repo, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "list failed: {}", stderr_of(&out));
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(a) => a,
        other => panic!("list --json is not an array: {other}"),
    }
}

fn verify_clean(dir: &Path, repo: &str, label: &str) {
    let out = tb(dir)
        .args(["verify", "--repo", repo, "--read-data"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{label}: verify --read-data failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
}

/// Kills to run (`TAOSBACKUP_SOAK_KILLS` raises it for `cargo xtask soak`).
fn kills() -> usize {
    std::env::var("TAOSBACKUP_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

#[test]
fn kill_9_during_backups_leaves_a_repository_that_verifies_and_continues() {
    let emu = emu();
    seed(&emu, "power", 40);
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let proxy = slow_proxy(emu.addr(), Duration::from_millis(4));
    let dsn = format!("ws://{proxy}");
    // How long one uninterrupted backup takes through the proxy: kills land in (0, that).
    let started = Instant::now();
    let out = tb(dir.path())
        .args(["backup", "--engine", "full", "--database", "power"])
        .args(["--source", &dsn, "--repo", &repo, "--no-encryption"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let span = started.elapsed();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill -9: one backup takes {span:?}; delay seed {seed}");
    let mut x = seed;
    let mut landed = 0;
    let mut committed_anyway = 0;
    for i in 0..kills() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = span.mul_f64((x % 1000) as f64 / 1000.0);
        let engine = if i % 3 == 2 { "time" } else { "full" };
        let before = list_json(dir.path(), &repo).len();
        let mut child = spawn(
            dir.path(),
            &[
                "backup",
                "--engine",
                engine,
                "--database",
                "power",
                "--source",
                &dsn,
                "--repo",
                &repo,
            ],
            false,
        );
        std::thread::sleep(delay);
        // try_wait reaps a child that has exited: kill only one still running.
        let running = child.try_wait().unwrap().is_none();
        if running {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        }
        let status = child.wait().unwrap();
        let label = format!("kill {i} after {delay:?} ({engine})");
        if running {
            landed += 1;
        }
        let after = list_json(dir.path(), &repo);
        // Every listed backup is complete (a manifest is written last); at most the one
        // killed run may have committed before the signal.
        assert!(
            after.len() == before || after.len() == before + 1,
            "{label}: {before} backups before, {} after",
            after.len()
        );
        if after.len() > before {
            committed_anyway += 1;
        }
        verify_clean(dir.path(), &repo, &label);
        println!("{label}: running when killed: {running}, status {status:?}");
    }
    // The next backup succeeds; prune (an exclusive lock) is not blocked by the killed
    // runs' locks: their processes are gone.
    let out = tb(dir.path())
        .args(["backup", "--engine", "full", "--database", "power"])
        .args(["--source", &emu.dsn(), "--repo", &repo])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup after kills: {}",
        stderr_of(&out)
    );
    let out = tb(dir.path())
        .args(["prune", "--repo", &repo, "--keep-chains", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prune after kills: {}",
        stderr_of(&out)
    );
    verify_clean(dir.path(), &repo, "after prune");
    let out = tb(dir.path())
        .args(["restore", "--repo", &repo, "--target", &emu.dsn()])
        .args(["--target-database", "power_back"])
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", stderr_of(&out));
    for i in 0..40 {
        assert_eq!(
            count(&emu, &format!("power_back.d{i}")),
            count(&emu, &format!("power.d{i}")),
            "table d{i}"
        );
    }
    println!(
        "kill -9: {} kills, {landed} while the backup ran, {committed_anyway} had committed; \
         all verified clean",
        kills()
    );
    assert!(landed >= 1, "no kill landed during a backup");
}

/// Backups take shared locks scoped to their database (backups of different databases may
/// write one repository at once: packs need no global lock); prune takes an exclusive one.
/// A prune during a backup fails naming the backup's lock; a second backup of the same
/// database fails naming the first; a backup of another database commits alongside; the
/// repository verifies.
#[test]
fn locks_name_the_holder_and_concurrent_backups_stay_consistent() {
    let emu = emu();
    seed(&emu, "power", 30);
    seed(&emu, "water", 5);
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    tb(dir.path())
        .args(["init", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    let proxy = slow_proxy(emu.addr(), Duration::from_millis(10));
    let dsn = format!("ws://{proxy}");
    let mut first = spawn(
        dir.path(),
        &[
            "backup",
            "--engine",
            "full",
            "--database",
            "power",
            "--source",
            &dsn,
            "--repo",
            &repo,
        ],
        true,
    );
    let _lines = wait_for_export(&mut first).0;
    let out = tb(dir.path())
        .args(["prune", "--repo", &repo, "--keep-chains", "1"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "prune during a backup: {err}");
    assert!(err.contains("locked by"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(err.contains("`backup`"), "{err}");
    // A second backup of the same database is refused, naming the running one.
    let out = tb(dir.path())
        .args(["backup", "--engine", "full", "--database", "power"])
        .args(["--source", &emu.dsn(), "--repo", &repo])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "second backup of power: {err}");
    assert!(err.contains("`backup` for database power"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    // A backup of another database runs alongside.
    let out = tb(dir.path())
        .args(["backup", "--engine", "full", "--database", "water"])
        .args(["--source", &emu.dsn(), "--repo", &repo])
        .output()
        .unwrap();
    assert!(out.status.success(), "backup of water: {}", stderr_of(&out));
    assert!(first.wait().unwrap().success(), "the first backup failed");
    let listed = list_json(dir.path(), &repo);
    let mut dbs: Vec<&str> = listed
        .iter()
        .filter_map(|b| b["database"].as_str())
        .collect();
    dbs.sort_unstable();
    assert_eq!(dbs, ["power", "water"], "{listed:?}");
    verify_clean(dir.path(), &repo, "after concurrent backups");
    // Once the first has finished, the same database can be backed up again.
    let out = tb(dir.path())
        .args(["backup", "--engine", "full", "--database", "power"])
        .args(["--source", &emu.dsn(), "--repo", &repo])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup after the first: {}",
        stderr_of(&out)
    );
}

/// The next pseudo-random number of an xorshift sequence (delays of the kill tests).
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The seed of a test's random choices: `TAOSBACKUP_TEST_SEED` (to replay the seed a failed
/// run printed), else the clock.
fn time_seed() -> u64 {
    if let Some(seed) = std::env::var("TAOSBACKUP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        return seed;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

/// Copies every file under `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// kill -9 of a restore at random points: the repository is untouched (verify clean), and
/// running the same restore again with `--into-existing` completes with exactly the
/// backup's rows (rows are keyed by timestamp, so rows written twice are not duplicated).
#[test]
fn kill_9_during_restore_then_a_rerun_completes_exactly() {
    let emu = emu();
    seed(&emu, "power", 30);
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let out = tb(dir.path())
        .args(["backup", "--engine", "full", "--database", "power"])
        .args(["--source", &emu.dsn(), "--repo", &repo, "--no-encryption"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let proxy = slow_proxy(emu.addr(), Duration::from_millis(4));
    let dsn = format!("ws://{proxy}");
    let restore = |target: &str, extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--repo",
            &repo,
            "--target",
            &dsn,
            "--target-database",
            target,
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let started = Instant::now();
    let args = restore("timing", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tb(dir.path()).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let span = started.elapsed();
    let mut x = time_seed();
    println!("kill -9 of restore: one restore takes {span:?}; delay seed {x}");
    let mut landed = 0;
    let runs = kills();
    for i in 0..runs {
        let delay = span.mul_f64((xorshift(&mut x) % 1000) as f64 / 1000.0);
        let target = format!("r{i}");
        let args = restore(&target, &[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(dir.path(), &args, false);
        std::thread::sleep(delay);
        // try_wait reaps a child that has exited: kill only one still running.
        let running = child.try_wait().unwrap().is_none();
        if running {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        }
        child.wait().unwrap();
        landed += usize::from(running);
        let label = format!("restore kill {i} after {delay:?}");
        verify_clean(dir.path(), &repo, &label);
        // Rerun: into the partly written database when the kill left one.
        let args = restore(&target, &["--into-existing"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tb(dir.path()).args(&args).output().unwrap();
        assert!(out.status.success(), "{label}: rerun: {}", stderr_of(&out));
        for t in 0..30 {
            assert_eq!(
                count(&emu, &format!("{target}.d{t}")),
                count(&emu, &format!("power.d{t}")),
                "{label}: table d{t}"
            );
        }
        println!("{label}: running when killed: {running}; rerun exact");
    }
    println!("kill -9 of restore: {runs} kills, {landed} while it ran; every rerun exact");
    assert!(landed >= 1, "no kill landed during a restore");
}

/// One damaged snapshot object hides no other backup: `list` shows the readable backups
/// and names the damaged one (exit 1), a restore by the other's id is exact, `latest` and
/// a restore of the damaged backup are refused naming it, and `forget`/`prune`, which must
/// know every backup before deleting anything, refuse.
#[test]
fn a_damaged_snapshot_object_blocks_only_what_depends_on_it() {
    let emu = emu();
    seed(&emu, "power", 4);
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let backup = |engine: &str| {
        let out = tb(dir.path())
            .args(["backup", "--engine", engine, "--database", "power"])
            .args(["--source", &emu.dsn(), "--repo", &repo, "--no-encryption"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    };
    backup("full");
    backup("full");
    let listed = list_json(dir.path(), &repo);
    let id = |i: usize| listed[i]["id"].as_str().unwrap().to_string();
    let (good, bad) = (id(0), id(1));
    let path = dir.path().join("repo").join("snapshots").join(&bad);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let out = tb(dir.path())
        .args(["list", "--repo", &repo, "--json", "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let shown: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["id"].as_str(), Some(good.as_str()));
    let err = stderr_of(&out);
    assert!(err.contains(&bad) && err.contains("damaged"), "{err}");

    let restore = |point: &str, target: &str| {
        tb(dir.path())
            .args(["restore", "--repo", &repo, "--backup", point])
            .args(["--target", &emu.dsn(), "--target-database", target])
            .output()
            .unwrap()
    };
    let out = restore(&good, "fromgood");
    assert!(out.status.success(), "{}", stderr_of(&out));
    for t in 0..4 {
        assert_eq!(
            count(&emu, &format!("fromgood.d{t}")),
            count(&emu, &format!("power.d{t}")),
            "table d{t}"
        );
    }
    for (point, target) in [("latest", "fromlatest"), (bad.as_str(), "frombad")] {
        let out = restore(point, target);
        assert_eq!(out.status.code(), Some(1), "{point}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        // The fix is named, in one readable line (no run of spaces from a broken string).
        assert!(
            err.contains(&bad) && err.contains("taosbackup verify") && !err.contains("    "),
            "{point}: {err}"
        );
    }
    // Without the local cache, `latest` is resolved from the repository's own listing,
    // which names the damaged backup as the reason no point can be chosen.
    let out = tb(dir.path())
        .args([
            "restore",
            "--no-cache",
            "--backup",
            "latest",
            "--repo",
            &repo,
        ])
        .args(["--target", &emu.dsn(), "--target-database", "fromlisting"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "the snapshot object of backup {bad} is damaged, so which backup latest means \
             cannot be known; restore a backup by its id"
        )),
        "{err}"
    );
    for args in [
        vec!["forget", "--repo", repo.as_str(), good.as_str()],
        vec!["prune", "--repo", repo.as_str(), "--keep-last", "1"],
    ] {
        let out = tb(dir.path()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} went ahead");
        assert!(
            stderr_of(&out).contains(&bad),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    assert!(
        dir.path()
            .join("repo")
            .join("snapshots")
            .join(&good)
            .exists(),
        "the readable backup was forgotten"
    );
}

/// kill -9 of a prune at random points, each on a fresh copy of one repository: the
/// repository verifies clean, every backup still listed restores, and a rerun of the prune
/// completes and leaves exactly the kept chains.
#[test]
fn kill_9_during_prune_keeps_every_listed_backup_whole() {
    let emu = emu();
    seed(&emu, "power", 12);
    let dir = TempDir::new().unwrap();
    let pristine = dir.path().join("pristine");
    let pristine_url = pristine.display().to_string();
    // Four chains (full backups) over changing data; prune --keep-chains 1 deletes three
    // and repacks.
    for round in 0..4 {
        sql(
            &emu,
            &[format!(
                "INSERT INTO power.d{round} VALUES ({}, 1.5, 1)",
                BASE + 10 * DAY + round as i64
            )],
        );
        let out = tb(dir.path())
            .args(["backup", "--engine", "full", "--database", "power"])
            .args(["--source", &emu.dsn(), "--repo", &pristine_url])
            .arg("--no-encryption")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let timing = dir.path().join("timing");
    copy_tree(&pristine, &timing);
    let started = Instant::now();
    let out = tb(dir.path())
        .args([
            "prune",
            "--repo",
            &timing.display().to_string(),
            "--keep-chains",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let span = started.elapsed();
    let mut x = time_seed();
    println!("kill -9 of prune: one prune takes {span:?}; delay seed {x}");
    let mut landed = 0;
    let mut partial = 0;
    let runs = kills().max(3);
    for i in 0..runs {
        let work = dir.path().join(format!("case{i}"));
        copy_tree(&pristine, &work);
        let url = work.display().to_string();
        let delay = span.mul_f64((xorshift(&mut x) % 1000) as f64 / 1000.0);
        let mut child = spawn(
            dir.path(),
            &["prune", "--repo", &url, "--keep-chains", "1"],
            false,
        );
        std::thread::sleep(delay);
        // try_wait reaps a child that has exited: kill only one still running.
        let running = child.try_wait().unwrap().is_none();
        if running {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        }
        child.wait().unwrap();
        landed += usize::from(running);
        let label = format!("prune kill {i} after {delay:?}");
        verify_clean(dir.path(), &url, &label);
        let listed = list_json(dir.path(), &url);
        assert!(
            (1..=4).contains(&listed.len()),
            "{label}: {} backups listed",
            listed.len()
        );
        if listed.len() > 1 && listed.len() < 4 {
            partial += 1;
        }
        // Every listed backup is whole: restore each and compare with its row count.
        for (k, b) in listed.iter().enumerate() {
            let id = b["id"].as_str().unwrap();
            let target = format!("p{i}_{k}");
            let out = tb(dir.path())
                .args(["restore", "--repo", &url, "--target", &emu.dsn()])
                .args(["--target-database", &target, "--backup", id])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{label}: restore {id}: {}",
                stderr_of(&out)
            );
            let rows: i64 = (0..12)
                .map(|t| count(&emu, &format!("{target}.d{t}")))
                .sum();
            assert_eq!(Some(rows), b["rows"].as_i64(), "{label}: backup {id}");
        }
        let out = tb(dir.path())
            .args(["prune", "--repo", &url, "--keep-chains", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{label}: rerun: {}", stderr_of(&out));
        assert_eq!(list_json(dir.path(), &url).len(), 1, "{label}");
        verify_clean(dir.path(), &url, &format!("{label}, after the rerun"));
        println!(
            "{label}: running when killed: {running}; {} backups listed after",
            listed.len()
        );
    }
    println!(
        "kill -9 of prune: {runs} kills, {landed} while it ran, {partial} left some chains \
         deleted and others not; every listed backup restored whole"
    );
}

/// kill -9 of backups and prunes of an S3 repository (moto behind a slow proxy, so each
/// request takes a while and kills land between requests): afterwards `verify --read-data`
/// is clean, no partial backup is listed, every listed backup restores with its row count,
/// and the next backup and prune succeed.
#[test]
fn kill_9_on_s3_leaves_a_repository_that_verifies() {
    let Some(bin) = moto_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but moto_server was not found (set TAOSBACKUP_MOTO_SERVER)"
        );
        eprintln!("skipping the S3 kill test: moto_server not found");
        return;
    };
    let moto = start_moto(&bin, "tb-kill");
    let proxy = slow_proxy(
        format!("127.0.0.1:{}", moto.port).parse().unwrap(),
        Duration::from_millis(15),
    );
    let emu = emu();
    seed(&emu, "power", 8);
    let dir = TempDir::new().unwrap();
    let url = "s3://tb-kill/repo";
    // Direct to moto for checks, through the proxy for the runs that get killed.
    let run = |endpoint: &str, args: &[&str]| {
        let mut c = tb(dir.path());
        c.envs(s3_env(endpoint)).args(args);
        c
    };
    let slow = format!("http://{proxy}");
    let spawn_slow = |args: &[&str]| {
        StdCommand::new(assert_cmd::cargo::cargo_bin("taosbackup"))
            .args(args)
            .env_remove("TAOSBACKUP_PASSWORD")
            .env_remove("RUST_LOG")
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .envs(s3_env(&slow))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let backup = [
        "backup",
        "--engine",
        "full",
        "--database",
        "power",
        "--source",
        &emu.dsn(),
        "--repo",
        url,
    ];
    let ok = |mut c: assert_cmd::Command, what: &str| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{what}: {}", stderr_of(&out));
        out
    };
    let listed = || -> Vec<Value> {
        let out = ok(
            run(&moto.endpoint, &["list", "--repo", url, "--json"]),
            "list",
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap()
    };
    let check = |label: &str| {
        ok(
            run(&moto.endpoint, &["verify", "--repo", url, "--read-data"]),
            &format!("{label}: verify"),
        );
        for (k, b) in listed().iter().enumerate() {
            let id = b["id"].as_str().unwrap();
            let target = format!("s{}_{k}", label.replace(' ', "_"));
            ok(
                run(
                    &moto.endpoint,
                    &[
                        "restore",
                        "--repo",
                        url,
                        "--target",
                        &emu.dsn(),
                        "--target-database",
                        &target,
                        "--backup",
                        id,
                    ],
                ),
                &format!("{label}: restore {id}"),
            );
            let rows: i64 = (0..8).map(|t| count(&emu, &format!("{target}.d{t}"))).sum();
            assert_eq!(Some(rows), b["rows"].as_i64(), "{label}: backup {id}");
        }
    };
    let mut first = run(&moto.endpoint, &backup);
    first.arg("--no-encryption");
    ok(first, "first backup");
    // Timings through the proxy.
    let started = Instant::now();
    let mut c = spawn_slow(&backup);
    assert!(c.wait().unwrap().success(), "slow backup");
    let backup_span = started.elapsed();
    let mut x = time_seed();
    println!("kill -9 on S3: one backup through the proxy takes {backup_span:?}; seed {x}");
    let mut landed = 0;
    let kills_each = 3;
    // A run through the proxy can be faster than the timed one: a kill that comes after its
    // backup finished shows the run took less than that delay, so later delays are drawn
    // from that shorter span, and attempts go on (up to 10) until one kill has landed.
    let mut span = backup_span;
    let mut i = 0;
    while i < kills_each || (landed == 0 && i < 10) {
        let before = listed().len();
        let delay = span.mul_f64((xorshift(&mut x) % 1000) as f64 / 1000.0);
        let mut child = spawn_slow(&backup);
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        if running {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
            landed += 1;
        } else {
            span = span.min(delay);
        }
        child.wait().unwrap();
        let after = listed().len();
        assert!(after == before || after == before + 1, "backup kill {i}");
        check(&format!("backup kill {i}"));
        println!("S3 backup kill {i} after {delay:?}: running {running}, {after} listed");
        i += 1;
    }
    let mut prune_landed = 0;
    for i in 0..kills_each {
        // Two more chains for the prune to delete.
        ok(run(&moto.endpoint, &backup), "backup before prune");
        ok(run(&moto.endpoint, &backup), "backup before prune");
        let before = listed().len();
        let started = Instant::now();
        let mut child = spawn_slow(&["prune", "--repo", url, "--keep-chains", "1"]);
        // Kill within the first ~2 s of the prune (it issues many slow requests).
        let delay = Duration::from_millis(xorshift(&mut x) % 2000);
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        if running {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
            prune_landed += 1;
        }
        child.wait().unwrap();
        let after = listed().len();
        assert!(
            (1..=before).contains(&after),
            "prune kill {i}: {before} → {after}"
        );
        check(&format!("prune kill {i}"));
        ok(
            run(
                &moto.endpoint,
                &["prune", "--repo", url, "--keep-chains", "1"],
            ),
            "prune rerun",
        );
        assert_eq!(listed().len(), 1, "prune kill {i}: rerun");
        println!(
            "S3 prune kill {i} after {delay:?} ({:?} in): running {running}, {before} → {after} listed",
            started.elapsed()
        );
    }
    ok(run(&moto.endpoint, &backup), "backup after the kills");
    check("after the kills");
    println!(
        "kill -9 on S3: {i} backup kills ({landed} while running), {kills_each} prune \
         kills ({prune_landed} while running); verify clean, every listed backup restored"
    );
    assert!(landed >= 1, "no backup kill landed while it ran");
}

/// Secrets stay out of everything taosbackup prints or logs: the TDengine password given
/// in the DSN and the repository password, through a backup, a restore, `list`, `show`,
/// `verify` and failing runs (wrong TDengine password, wrong repository password), all with
/// `--debug` and JSON logs to a file.
#[test]
fn passwords_never_appear_in_output_or_logs() {
    const DSN_PW: &str = "Dsn-Secret-7f3a9";
    const REPO_PW: &str = "Repo-Secret-c41e2";
    let emu = taosbackup_testkit::Emulator::start(taosbackup_testkit::EmulatorConfig {
        password: DSN_PW.into(),
        ..Default::default()
    })
    .unwrap();
    seed(&emu, "power", 3);
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let logs = dir.path().join("logs");
    let runs = std::cell::Cell::new(0);
    std::fs::create_dir_all(&logs).unwrap();
    let dsn = format!("ws://root:{DSN_PW}@{}", emu.addr());
    let wrong_dsn = format!("ws://root:{DSN_PW}-wrong@{}", emu.addr());
    let run = |args: &[&str], password: &str| {
        let mut c = tb(dir.path());
        // One log file per run: whether the binary appends or truncates does not matter.
        runs.set(runs.get() + 1);
        c.env("TAOSBACKUP_PASSWORD", password)
            .args(args)
            .args(["--debug", "--log-format", "json", "--log-file"])
            .arg(logs.join(format!("run{}.log", runs.get())));
        c.output().unwrap()
    };
    let mut outputs = Vec::new();
    let backup = run(
        &[
            "backup",
            "--database",
            "power",
            "--source",
            &dsn,
            "--repo",
            &repo,
        ],
        REPO_PW,
    );
    assert!(backup.status.success(), "{}", stderr_of(&backup));
    outputs.push(("backup", backup));
    let id = list_json_with(dir.path(), &repo, REPO_PW)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (what, args, password, ok) in [
        ("list", vec!["list", "--repo", &repo], REPO_PW, true),
        ("show", vec!["show", "--repo", &repo, &id], REPO_PW, true),
        (
            "verify",
            vec!["verify", "--repo", &repo, "--read-data"],
            REPO_PW,
            true,
        ),
        (
            "restore",
            vec![
                "restore",
                "--repo",
                &repo,
                "--target",
                &dsn,
                "--target-database",
                "p2",
            ],
            REPO_PW,
            true,
        ),
        (
            "backup, wrong TDengine password",
            vec![
                "backup",
                "--database",
                "power",
                "--source",
                &wrong_dsn,
                "--repo",
                &repo,
            ],
            REPO_PW,
            false,
        ),
        (
            "list, wrong repository password",
            vec!["list", "--repo", &repo],
            "Repo-Secret-c41e2-wrong",
            false,
        ),
    ] {
        let out = run(&args, password);
        assert_eq!(out.status.success(), ok, "{what}: {}", stderr_of(&out));
        outputs.push((what, out));
    }
    let mut log_text = String::new();
    for entry in std::fs::read_dir(&logs).unwrap() {
        log_text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(
        log_text.lines().count() > 10,
        "the debug log is nearly empty"
    );
    for (what, out) in &outputs {
        for text in [
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ] {
            for secret in [DSN_PW, REPO_PW] {
                assert!(!text.contains(secret), "{what} printed a password: {text}");
            }
        }
    }
    for secret in [DSN_PW, REPO_PW] {
        assert!(!log_text.contains(secret), "the debug log holds a password");
    }
    println!(
        "secrets: {} runs, {} log lines, no password in any output",
        outputs.len(),
        log_text.lines().count()
    );
}

fn list_json_with(dir: &Path, repo: &str, password: &str) -> Vec<Value> {
    let out = tb(dir)
        .env("TAOSBACKUP_PASSWORD", password)
        .args(["list", "--repo", repo, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "list failed: {}", stderr_of(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

/// One bad input: the arguments, and a config file's text when the input is a config.
struct Bad {
    what: &'static str,
    args: Vec<String>,
    config: Option<Vec<u8>>,
}

fn bad(what: &'static str, args: &[&str]) -> Bad {
    Bad {
        what,
        args: args.iter().map(|s| s.to_string()).collect(),
        config: None,
    }
}

fn bad_config(what: &'static str, name: &'static str, text: Vec<u8>) -> Bad {
    Bad {
        what,
        args: vec!["list".into(), "--config".into(), name.into()],
        config: Some(text),
    }
}

#[test]
fn bad_input_catalogue_exits_1_or_2_with_a_message_and_never_panics() {
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    tb(dir.path())
        .args(["init", "--repo", &repo, "--no-encryption"])
        .assert()
        .success();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let long = "x".repeat(20_000);
    let closed_dsn = format!("ws://{closed}");
    let closed_dsn = closed_dsn.as_str();
    let nonexistent = dir.path().join("nonexistent").display().to_string();
    // No retries of the (refused) connections: each case fails at once.
    let no_retry = dir.path().join("no-retry.json");
    std::fs::write(
        &no_retry,
        r#"{"backup": {"retry_count": 0, "retry_interval_ms": 1}}"#,
    )
    .unwrap();
    let no_retry = no_retry.display().to_string();
    let no_retry = no_retry.as_str();
    let mut cases: Vec<Bad> = Vec::new();
    for dsn in [
        "ws://",
        "ws://:0",
        "taos://",
        "wss://",
        "http://127.0.0.1:1",
        "ws://127.0.0.1:99999",
        "ws://[::1",
        "ws://user:pa@ss@127.0.0.1:1",
        "ws://127.0.0.1:1/db?x=%zz",
        "",
        " ",
        "\u{7f}\u{1}",
        long.as_str(),
        closed_dsn,
    ] {
        cases.push(bad(
            "dsn",
            &[
                "backup",
                "--config",
                no_retry,
                "--engine",
                "full",
                "--database",
                "power",
                "--repo",
                &repo,
                "--source",
                dsn,
            ],
        ));
    }
    for db in ["", "a b", "db;DROP DATABASE x", "`x`", long.as_str()] {
        cases.push(bad(
            "database name",
            &[
                "backup",
                "--config",
                no_retry,
                "--source",
                closed_dsn,
                "--repo",
                &repo,
                "--database",
                db,
            ],
        ));
    }
    for id in [
        "",
        "latest2",
        "1234567",
        "zzzzzzzz",
        "0123456789abcdef0123456789abcdef00",
        "../../etc/passwd",
        "-1",
        "\u{feff}latest",
        long.as_str(),
    ] {
        cases.push(bad("backup id", &["show", "--repo", &repo, id]));
        cases.push(bad(
            "backup point",
            &[
                "restore", "--repo", &repo, "--target", closed_dsn, "--backup", id,
            ],
        ));
    }
    for t in [
        "2026-13-45",
        "2026-02-30T25:61",
        "9999999-01-01",
        "2026-01-01T00:00:00+99:00",
        "1970-01-01T00:00:00Z",
        "yesterday",
    ] {
        cases.push(bad(
            "time spec",
            &[
                "restore", "--repo", &repo, "--target", closed_dsn, "--backup", t,
            ],
        ));
    }
    for w in [
        "",
        "30",
        "abc",
        "-5d",
        "99999999999999999999d",
        "1h-",
        "1e9y",
    ] {
        cases.push(bad(
            "keep-within",
            &["prune", "--repo", &repo, "--keep-within", w],
        ));
    }
    for url in [
        "ftp://host/x",
        "s3://",
        "gs://",
        "az://",
        "://",
        "file://",
        "s3://bucket?x=1",
        "http://127.0.0.1:1/x",
        "unknown+scheme://x",
        nonexistent.as_str(),
    ] {
        cases.push(bad("repository url", &["list", "--repo", url]));
    }
    for (flag, v) in [
        ("--read-data", "abc"),
        ("--read-data", "0"),
        ("--read-data", "101"),
        ("--read-data", "-1"),
    ] {
        cases.push(bad("verify percent", &["verify", "--repo", &repo, flag, v]));
    }
    for p in ["0", "-1", "99999999999999999999", "x"] {
        cases.push(bad(
            "parallel",
            &[
                "backup",
                "--config",
                no_retry,
                "--source",
                closed_dsn,
                "--database",
                "power",
                "--repo",
                &repo,
                "--parallel",
                p,
            ],
        ));
    }
    for keep in ["0", "-2", "many"] {
        cases.push(bad(
            "keep-chains",
            &["prune", "--repo", &repo, "--keep-chains", keep],
        ));
    }
    cases.push(bad(
        "bucket width",
        &[
            "init",
            "--repo",
            &dir.path().join("r2").display().to_string(),
            "--bucket-width",
            "0s",
        ],
    ));
    cases.push(bad(
        "bucket width",
        &[
            "init",
            "--repo",
            &dir.path().join("r3").display().to_string(),
            "--bucket-width",
            "-1h",
        ],
    ));
    cases.push(bad(
        "compression level",
        &[
            "init",
            "--repo",
            &dir.path().join("r4").display().to_string(),
            "--compression-level",
            "99",
        ],
    ));
    cases.push(bad("unknown command", &["frobnicate"]));
    cases.push(bad("unknown flag", &["list", "--repo", &repo, "--bogus"]));
    cases.push(bad("missing repo", &["list"]));
    cases.push(bad(
        "password file",
        &[
            "list",
            "--repo",
            &repo,
            "--password-file",
            "/nonexistent/pw",
        ],
    ));
    cases.push(bad(
        "key id",
        &["key", "remove", "--repo", &repo, "../../config"],
    ));
    let nested_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested_toml = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (name, text) in [
        ("c1.toml", b"this is not toml = = =".to_vec()),
        ("c2.toml", b"[backup]\nunknown_key = 1\n".to_vec()),
        ("c3.toml", b"[backup]\nretry_count = \"many\"\n".to_vec()),
        (
            "c4.toml",
            b"[backup]\nretry_count = 99999999999999999999999\n".to_vec(),
        ),
        ("c5.toml", vec![0xff, 0xfe, 0x00, 0x01]),
        ("c6.toml", nested_toml.into_bytes()),
        ("c7.json", b"{\"backup\": ".to_vec()),
        ("c8.json", b"{\"nope\": {}}".to_vec()),
        ("c9.json", nested_json.into_bytes()),
        ("c10.json", b"[]".to_vec()),
        ("c11.yaml", b"backup: {}".to_vec()),
        ("c12.toml", b"[source]\ndsn = \"ws://\"\n[[[x]]]".to_vec()),
    ] {
        cases.push(bad_config("config", name, text));
    }

    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for case in &cases {
        let mut cmd = tb(dir.path());
        cmd.current_dir(dir.path());
        if let (Some(text), Some(name)) = (&case.config, case.args.get(2)) {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let out = cmd.args(&case.args).output().unwrap();
        let err = stderr_of(&out);
        let shown: Vec<String> = case
            .args
            .iter()
            .map(|a| a.chars().take(60).collect())
            .collect();
        let label = format!("{}: {shown:?}", case.what);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{label}: exit {:?}\n{err}",
            out.status
        );
        assert!(!err.contains("panicked"), "{label}: panicked\n{err}");
        assert!(!err.trim().is_empty(), "{label}: no message");
        assert!(
            err.lines().any(|l| l.starts_with("error:")),
            "{label}: no `error:` line\n{err}"
        );
        // Issue 16 item 8: every error has a hint.
        assert!(
            err.lines().any(|l| l.trim_start().starts_with("hint:")),
            "{label}: no `hint:` line\n{err}"
        );
        *by_kind.entry(case.what).or_default() += 1;
    }
    println!("bad inputs: {} tried: {by_kind:?}", cases.len());
}

/// A format-1 repository of `chains` chains of `per_chain` backups of 300 tables each (a
/// full backup, then incrementals changing a few tables), written through the sink API (no
/// format-1 build exists any more to write one).
fn format1_repository(path: &Path, chains: u8, per_chain: u8) {
    use taosbackup_core::{
        BackupId, BackupKind, BackupStats, BlockRecord, BlockRef, BucketWidth, CatalogSnapshot,
        DatabaseDef, MANIFEST_VERSION, Manifest, Precision, SourceInfo, TableDef, TableKind,
        TableRecord,
    };
    use taosbackup_sink::{Backend, FORMAT1_VERSION, InitOptions, KdfParams, Repo};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let options = InitOptions {
            encryption: false,
            kdf: KdfParams::insecure_for_tests(),
            format_version: FORMAT1_VERSION,
            ..InitOptions::default()
        };
        let repo = Repo::init(Backend::local(path).unwrap(), options, None)
            .await
            .unwrap();
        let session = repo.session("backup").await.unwrap();
        let mut blobs = Vec::new();
        for i in 0..600u32 {
            let data: Vec<u8> = (0..2000u32).map(|k| (k * 7 + i * 13) as u8).collect();
            blobs.push(session.put_blob(&data).await.unwrap());
        }
        session.flush_index().await.unwrap();
        session.finish().await.unwrap();
        let tables: Vec<TableDef> = (0..300)
            .map(|t| TableDef {
                name: format!("t{t:03}"),
                kind: TableKind::Normal,
                super_table: None,
                tags: vec![],
                comment: None,
                ttl: None,
                columns: vec![],
            })
            .collect();
        let catalog = CatalogSnapshot {
            database: DatabaseDef {
                name: "power".into(),
                precision: Precision::Ms,
                ddl: "CREATE DATABASE `power`".into(),
            },
            super_tables: vec![],
            skipped: vec![],
            tables,
        };
        let block = |t: usize, b: i64, v: usize| {
            BlockRecord::Data(BlockRef {
                blob: blobs[(t * 2 + v) % blobs.len()],
                rows: 1,
                min_ts: b * 86_400_000,
                max_ts: b * 86_400_000,
            })
        };
        let mut at = 1_800_000_000;
        for c in 0..chains {
            let full = BackupId::from_bytes([c * 16 + 1; 16]);
            let mut parent: Option<BackupId> = None;
            for k in 0..per_chain {
                let id = BackupId::from_bytes([c * 16 + 1 + k; 16]);
                let records: Vec<(String, TableRecord)> = if k == 0 {
                    (0..300)
                        .map(|t| {
                            let blocks = [(0, block(t, 0, c as usize))].into();
                            (format!("t{t:03}"), TableRecord::Present { blocks })
                        })
                        .collect()
                } else {
                    (0..5)
                        .map(|j| {
                            let t = (k as usize * 37 + j * 61) % 300;
                            let blocks = [(i64::from(k), block(t, k.into(), j))].into();
                            (format!("t{t:03}"), TableRecord::Present { blocks })
                        })
                        .collect()
                };
                at += 60;
                let t = chrono::DateTime::from_timestamp(at, 0).unwrap();
                let m = Manifest {
                    version: MANIFEST_VERSION,
                    id,
                    parent,
                    chain: full,
                    database: "power".into(),
                    kind: if k == 0 {
                        BackupKind::Full
                    } else {
                        BackupKind::Incremental
                    },
                    engine: "bitmap".into(),
                    started_at: t,
                    finished_at: t,
                    source: SourceInfo::default(),
                    bucket_width: BucketWidth::DAY,
                    catalog: catalog.clone(),
                    tables: records.into_iter().collect(),
                    feed_positions: None,
                    stats: BackupStats::default(),
                };
                repo.put_manifest(&m).await.unwrap();
                parent = Some(id);
            }
        }
    });
}

/// kill -9 of `migrate` at random points, each on a fresh copy of one format-1 repository:
/// the repository is either still format 1 (other commands say so) or format 2; a rerun of
/// migrate completes; then it verifies clean and lists every backup.
#[test]
fn kill_9_during_migrate_then_a_rerun_completes() {
    let dir = TempDir::new().unwrap();
    let pristine = dir.path().join("pristine");
    format1_repository(&pristine, 3, 8);
    let url = pristine.display().to_string();
    tb(dir.path())
        .args(["list", "--repo", &url])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("taosbackup migrate --repo"));
    let timing = dir.path().join("timing");
    copy_tree(&pristine, &timing);
    let started = Instant::now();
    let out = tb(dir.path())
        .args(["migrate", "--repo", &timing.display().to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let span = started.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["snapshots_written"], 24, "{report}");
    let mut x = time_seed();
    println!("kill -9 of migrate: one migrate takes {span:?}; delay seed {x}");
    let (mut landed, mut still_format1) = (0, 0);
    let runs = kills().max(3);
    for i in 0..runs {
        let work = dir.path().join(format!("case{i}"));
        copy_tree(&pristine, &work);
        let url = work.display().to_string();
        let delay = span.mul_f64((xorshift(&mut x) % 1000) as f64 / 1000.0);
        let mut child = spawn(dir.path(), &["migrate", "--repo", &url], false);
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        if running {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        }
        child.wait().unwrap();
        landed += usize::from(running);
        let label = format!("migrate kill {i} after {delay:?}");
        let list = tb(dir.path())
            .args(["list", "--repo", &url])
            .output()
            .unwrap();
        if !list.status.success() {
            let err = stderr_of(&list);
            assert!(err.contains("taosbackup migrate"), "{label}: {err}");
            still_format1 += 1;
        }
        let out = tb(dir.path())
            .args(["migrate", "--repo", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{label}: rerun: {}", stderr_of(&out));
        verify_clean(dir.path(), &url, &label);
        assert_eq!(list_json(dir.path(), &url).len(), 24, "{label}");
        assert!(
            !work.join("manifests").exists()
                || std::fs::read_dir(work.join("manifests"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{label}: manifests left"
        );
        println!("{label}: running when killed: {running}");
    }
    println!(
        "kill -9 of migrate: {runs} kills, {landed} while it ran, {still_format1} left the \
         repository in format 1 (or mid-switch); every rerun completed and verified clean"
    );
}

/// Issue 17: the binary's full and incremental backups, restore, verify and prune on S3,
/// Azure and GCS behind a proxy that faults 10% of the storage requests (500, 503 SlowDown
/// and 429 with Retry-After, stalls past the 2 s client timeout, resets before and after
/// the request reached the store): every command succeeds, the restore has every table's
/// exact row count, and the `storage_retries` the commands report add up to at least the
/// faults injected (each costs one retry; a slow answer under load may cost another).
fn storage_faults_at_ten_percent(service: storage::Service) {
    use storage::{FaultPolicy, FaultProxy, StorageServer};
    let server = StorageServer::start(service, "tb-faults");
    let proxy = FaultProxy::start(
        &server.address(),
        FaultPolicy::new(Duration::from_millis(2500)),
    );
    let emu = emu();
    seed(&emu, "power", 6);
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("taosbackup.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n[repository.options]\ntimeout = \"2s\"\n\
             retry_initial_backoff = \"20ms\"\nretry_max_backoff = \"200ms\"\n",
            server.url("repo")
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let run = |args: &[&str]| -> Value {
        let mut c = tb(dir.path());
        c.envs(server.env(&proxy.endpoint))
            .args(args)
            .args(["--config", &config, "--json"]);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{service:?} {args:?}: {}",
            stderr_of(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    proxy.policy.set(100, "");
    let backup = |engine: &str| {
        run(&[
            "backup",
            "--source",
            &emu.dsn(),
            "--database",
            "power",
            "--engine",
            engine,
            "--no-encryption",
        ])
    };
    let mut retries = Vec::new();
    let full = backup("full");
    assert_eq!(full["kind"], "full");
    retries.push(full["storage_retries"].as_u64().unwrap());
    sql(
        &emu,
        &(0..6)
            .map(|i| format!("INSERT INTO power.d{i} VALUES ({}, 1.5, 7)", BASE + 4 * DAY))
            .collect::<Vec<_>>(),
    );
    let inc = backup("time");
    assert_eq!(inc["kind"], "incremental", "{inc}");
    retries.push(inc["storage_retries"].as_u64().unwrap());
    let restored = run(&[
        "restore",
        "--target",
        &emu.dsn(),
        "--database",
        "power",
        "--target-database",
        "r",
    ]);
    retries.push(restored["storage_retries"].as_u64().unwrap());
    for i in 0..6 {
        assert_eq!(
            count(&emu, &format!("r.d{i}")),
            count(&emu, &format!("power.d{i}"))
        );
        assert_eq!(count(&emu, &format!("r.d{i}")), 7);
    }
    let verified = run(&["verify", "--read-data"]);
    assert_eq!(verified["ok"], true, "{verified}");
    retries.push(verified["storage_retries"].as_u64().unwrap());
    let pruned = run(&["prune", "--keep-chains", "1"]);
    retries.push(pruned["storage_retries"].as_u64().unwrap());
    let total: u64 = retries.iter().sum();
    println!(
        "{service:?} through the binary at 10%: {}; storage_retries per command \
         (backup, backup, restore, verify, prune) {retries:?} = {total}",
        proxy.policy.summary()
    );
    assert!(
        proxy.policy.total_injected() >= 5,
        "{}",
        proxy.policy.summary()
    );
    assert!(
        total >= proxy.policy.total_injected(),
        "{retries:?}: {}",
        proxy.policy.summary()
    );
    // Straight from the store: both backups listed, and they verify.
    proxy.policy.set(0, "");
    let mut c = tb(dir.path());
    let out = c
        .envs(server.env(&server.endpoint()))
        .args(["list", "--json", "--config", &config])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

#[test]
fn storage_faults_at_ten_percent_s3() {
    storage_faults_at_ten_percent(storage::Service::S3);
}

#[test]
fn storage_faults_at_ten_percent_azure() {
    storage_faults_at_ten_percent(storage::Service::Azure);
}

#[test]
fn storage_faults_at_ten_percent_gcs() {
    storage_faults_at_ten_percent(storage::Service::Gcs);
}

/// Issue 16 item 1: SIGINT at random points of 10 full backups (engines full and bitmap)
/// cancels cleanly: exit code 1 (or 0 when the backup had already committed), a short
/// standard error without any panic of the connector's background tasks, and a repository
/// that verifies. The tables are large enough (30,000 rows: several 4,096-row fetches each)
/// that fetches are in flight when the signal lands; that is what made taos-ws 0.12.3's
/// reader task panic when the export tasks were aborted.
#[test]
fn sigint_at_random_points_cancels_cleanly() {
    let emu = emu();
    seed(&emu, "power", 12);
    sql(
        &emu,
        &["ALTER DATABASE power WAL_RETENTION_PERIOD 86400".to_string()],
    );
    for t in 0..12 {
        for part in 0..15 {
            let mut ins = format!("INSERT INTO power.d{t} VALUES");
            for j in part * 2000..(part + 1) * 2000 {
                ins.push_str(&format!(" ({}, 1.5, {j})", BASE + 1 + j * 10));
            }
            sql(&emu, &[ins]);
        }
    }
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let dsn = emu.dsn();
    let started = Instant::now();
    let out = tb(dir.path())
        .args(["backup", "--engine", "full", "--database", "power"])
        .args(["--source", &dsn, "--repo", &repo, "--no-encryption"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let span = started.elapsed();
    let seed = time_seed();
    println!("SIGINT: one backup takes {span:?}; delay seed {seed}");
    let mut x = seed;
    let (mut landed, mut largest) = (0, 0);
    for i in 0..10 {
        let delay = span.mul_f64((xorshift(&mut x) % 1000) as f64 / 1000.0);
        let engine = ["full", "bitmap"][i % 2];
        let mut child = spawn(
            dir.path(),
            &[
                "backup",
                "--engine",
                engine,
                "--full",
                "--database",
                "power",
                "--source",
                &dsn,
                "--repo",
                &repo,
            ],
            true,
        );
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut s);
            s
        });
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        if running {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
            landed += 1;
        }
        let status = child.wait().unwrap();
        let err = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
        let label = format!("SIGINT {i} after {delay:?} ({engine})");
        largest = largest.max(err.len());
        // A signal in the first milliseconds, before `backup` installs its handlers (the
        // first thing it does, before touching the source or the repository), ends the
        // process by the default action, silently and with nothing written.
        use std::os::unix::process::ExitStatusExt;
        let before_handlers = status.signal() == Some(libc::SIGINT) && err.is_empty();
        assert!(
            matches!(status.code(), Some(0 | 1)) || before_handlers,
            "{label}: {status:?}\n{err}"
        );
        assert!(!err.contains("panicked"), "{label}: a panic\n{err}");
        assert!(
            err.len() < 2048,
            "{label}: {} bytes of stderr\n{err}",
            err.len()
        );
        if status.code() == Some(1) {
            assert!(err.contains("nothing was committed"), "{label}\n{err}");
        }
        verify_clean(dir.path(), &repo, &label);
    }
    println!("SIGINT: {landed} of 10 landed while the backup ran; largest stderr {largest} bytes");
    assert!(landed >= 1, "no SIGINT landed during a backup");
}
