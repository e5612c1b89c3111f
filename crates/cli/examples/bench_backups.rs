//! `cargo xtask bench backups`: what the number of backups in a repository costs (issue 15).
//!
//! Against the emulator, with the release `taosbackup` binary: a database of `--tables`
//! child tables (3 rows each, one per day), a full backup, the bitmap engine's first run,
//! nothing-changed incrementals up to 10 backups; then the measurements (one-block
//! incremental, nothing-changed incremental, `list` with a warm and a cold cache, the objects
//! a restore of the newest backup reads). Then the repository is brought to `--backups`
//! backups and everything is measured again.
//!
//! The extra backups are written through the sink API, not by running the binary ~1,000
//! times: each is a snapshot object naming the newest backup's tree and catalog (older than
//! it, so `latest` stays the real one). They cost what grows with the number of backups —
//! listing, the cache, the parent lookup — but no shards of their own.
//!
//! Each measurement is repeated `--repeat` times (default 3); the tables print the median
//! and the range. `--hold` keeps the emulator and the repository after the measurements
//! and prints how to run the binary against them (to profile by hand), until Enter.
//!
//! Usage: `bench_backups <taosbackup binary> [--tables N] [--backups M] [--repeat R] [--hold]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use taosbackup_core::{BackupId, BackupKind};
use taosbackup_sink::{Backend, Password, Repo};
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle, Session};

const DB: &str = "bench";
const T0: i64 = 1_761_955_200_000;
const DAY: i64 = 86_400_000;
const PASSWORD: &str = "bench password";

struct Run {
    wall: f64,
    json: serde_json::Value,
    hwm_kib: i64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = PathBuf::from(
        args.first()
            .context("usage: bench_backups BINARY [--tables N] [--backups M]")?,
    );
    let flag = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args.get(i + 1).context("missing value")?.parse()?),
            None => Ok(default),
        }
    };
    let tables = flag("--tables", 10_000)?;
    let backups = flag("--backups", 1_000)?;
    let repeat = flag("--repeat", 3)?.max(1);
    let hold = args.iter().any(|a| a == "--hold");
    let rt = tokio::runtime::Runtime::new()?;
    let emu = Emulator::start(EmulatorConfig::default())?;
    eprintln!("== loading {tables} tables; load average {}", load_avg());
    let t = Instant::now();
    load(&emu, tables)?;
    eprintln!("== loaded in {:.1} s", t.elapsed().as_secs_f64());
    let work = tempfile::tempdir()?;
    let repo = work.path().join("repo");
    let config = work.path().join("taosbackup.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ndsn = \"{}\"\n\n[repository]\nurl = \"{}\"\n\n[backup]\ndatabase = \
             \"{DB}\"\nengine = \"bitmap\"\nparallel = 4\n\n[bitmap_engine]\npersistence_path = \
             \"{}\"\n",
            emu.dsn(),
            repo.display(),
            work.path().join("state").display()
        ),
    )?;
    let cfg = config.display().to_string();
    let tb = |args: &[&str]| run(&bin, work.path(), args);
    tb(&["init", "--config", &cfg])?;
    let full = tb(&["backup", "--config", &cfg, "--engine", "full", "--json"])?;
    eprintln!("== full backup {:.1} s", full.wall);
    tb(&["backup", "--config", &cfg, "--json"])?;
    for _ in 2..10 {
        tb(&["backup", "--config", &cfg, "--json"])?;
    }
    let mut rows = Vec::new();
    let few = measure(&emu, &tb, &cfg, work.path(), 0, repeat)?;
    let count = list_len(&few.list_json)?;
    rows.push((count.to_string(), few));
    // Up to `backups`, through the sink API (see the module docs).
    let t = Instant::now();
    let added = rt.block_on(add_backups(&repo, backups.saturating_sub(10 + 2 * repeat)))?;
    eprintln!(
        "== {added} backups added in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let many = measure(&emu, &tb, &cfg, work.path(), repeat, repeat)?;
    let count = list_len(&many.list_json)?;
    rows.push((count.to_string(), many));
    println!(
        "\nbackups scenario: {tables} tables; load average {}; each figure the median (range) \
         of {repeat} runs\n",
        load_avg()
    );
    println!(
        "| backups in the repository | {} | {} |",
        rows[0].0, rows[1].0
    );
    println!("|---|---|---|");
    let line = |name: &str, f: &dyn Fn(&Figures) -> String| {
        println!("| {name} | {} | {} |", f(&rows[0].1), f(&rows[1].1));
    };
    line("one-block incremental: tool s", &|f| {
        spread(f.one.iter().map(|b| b.tool))
    });
    line("one-block incremental: wall s", &|f| {
        spread(f.one.iter().map(|b| b.wall))
    });
    line("one-block incremental: peak RSS MiB", &|f| {
        let max = f.one.iter().map(|b| b.hwm_kib).max().unwrap_or(0);
        format!("{:.1}", max as f64 / 1024.0)
    });
    line(
        "one-block incremental: shards/nodes/root written, non-data bytes",
        &|f| {
            let b = &f.one[0];
            format!("{} objects, {} B", b.shards, b.tree_bytes)
        },
    );
    line("one-block incremental: parent objects read", &|f| {
        f.one[0].parent_read.to_string()
    });
    line("nothing changed: tool s", &|f| {
        spread(f.nothing.iter().map(|b| b.tool))
    });
    line("nothing changed: wall s", &|f| {
        spread(f.nothing.iter().map(|b| b.wall))
    });
    line("nothing changed: tree bytes written", &|f| {
        format!(
            "{} B",
            f.nothing.iter().map(|b| b.tree_bytes).max().unwrap_or(0)
        )
    });
    line("list, warm cache: wall s", &|f| {
        spread(f.list_warm.iter().copied())
    });
    line("list, cold cache: wall s", &|f| {
        spread(f.list_cold.iter().copied())
    });
    line("list: peak RSS MiB", &|f| {
        format!("{:.1}", f.list_hwm_kib as f64 / 1024.0)
    });
    line("restore --dry-run of the newest: objects read", &|f| {
        f.restore_objects.clone()
    });
    if hold {
        println!(
            "\n--hold: the emulator ({}) and the repository stay up; run e.g.\n  \
             XDG_CACHE_HOME={} TAOSBACKUP_PASSWORD='{PASSWORD}' {} list --config {cfg}\n\
             Press Enter to stop.",
            emu.dsn(),
            work.path().join("cache").display(),
            bin.display()
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    Ok(())
}

/// `median (min–max)` of `values`, in seconds.
fn spread(values: impl Iterator<Item = f64>) -> String {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => "-".into(),
        1 => format!("{:.3}", v[0]),
        n => format!("{:.3} ({:.3}–{:.3})", v[n / 2], v[0], v[n - 1]),
    }
}

struct Backup {
    wall: f64,
    tool: f64,
    hwm_kib: i64,
    shards: u64,
    tree_bytes: u64,
    parent_read: u64,
}

struct Figures {
    one: Vec<Backup>,
    nothing: Vec<Backup>,
    list_warm: Vec<f64>,
    list_cold: Vec<f64>,
    list_hwm_kib: i64,
    list_json: serde_json::Value,
    restore_objects: String,
}

fn measure(
    emu: &EmulatorHandle,
    tb: &dyn Fn(&[&str]) -> Result<Run>,
    cfg: &str,
    dir: &Path,
    round: usize,
    repeat: usize,
) -> Result<Figures> {
    let backup = |label: &str| -> Result<Backup> {
        let r = tb(&["backup", "--config", cfg, "--json"])?;
        let kind = r.json["kind"].as_str().unwrap_or("");
        if kind != "incremental" {
            bail!("{label}: a {kind} backup ({})", r.json["full_reason"]);
        }
        Ok(Backup {
            wall: r.wall,
            tool: r.json["duration_secs"].as_f64().unwrap_or(f64::NAN),
            hwm_kib: r.hwm_kib,
            shards: r.json["tree_objects_written"].as_u64().unwrap_or(0),
            tree_bytes: r.json["tree_bytes_written"].as_u64().unwrap_or(0),
            parent_read: r.json["parent_objects_read"].as_u64().unwrap_or(0),
        })
    };
    let (mut one, mut nothing) = (Vec::new(), Vec::new());
    let (mut list_warm, mut list_cold, mut list_hwm_kib) = (Vec::new(), Vec::new(), 0);
    let mut list_json = serde_json::Value::Null;
    for r in round..round + repeat {
        // One new row in one table: one block (a bucket of one table) changed.
        sql(
            emu,
            &[format!(
                "INSERT INTO {DB}.d{} VALUES ({}, {r})",
                7 + r,
                T0 + DAY / 2
            )],
        )?;
        one.push(backup("one block")?);
        nothing.push(backup("nothing changed")?);
    }
    // Backups the binary committed are cached already, the ones the bench added are not:
    // one listing first, so "warm" means every snapshot cached.
    tb(&["list", "--config", cfg, "--json"])?;
    for _ in 0..repeat {
        let warm = tb(&["list", "--config", cfg, "--json"])?;
        list_warm.push(warm.wall);
        list_hwm_kib = list_hwm_kib.max(warm.hwm_kib);
        list_json = warm.json;
        let cache = dir.join("cache");
        if cache.exists() {
            std::fs::remove_dir_all(&cache)?;
        }
        let cold = tb(&["list", "--config", cfg, "--json"])?;
        list_cold.push(cold.wall);
        list_hwm_kib = list_hwm_kib.max(cold.hwm_kib);
    }
    let restore = tb(&[
        "restore",
        "--config",
        cfg,
        "--target",
        &emu.dsn(),
        "--dry-run",
        "--json",
    ])?;
    let o = &restore.json["objects_read"];
    Ok(Figures {
        one,
        nothing,
        list_warm,
        list_cold,
        list_hwm_kib,
        list_json,
        restore_objects: {
            let n = |k: &str| o[k].as_u64().unwrap_or(0);
            format!(
                "{} (snapshot, catalog {}, tree root + {} nodes, {} shards) of {} blocks",
                n("metadata") + n("shards"),
                n("metadata").saturating_sub(2 + n("tree_nodes")),
                n("tree_nodes"),
                n("shards"),
                restore.json["blocks"]
            )
        },
    })
}

fn list_len(v: &serde_json::Value) -> Result<usize> {
    Ok(v.as_array().context("list --json is not an array")?.len())
}

/// Adds `n` snapshots naming the newest backup's tree, older than it.
async fn add_backups(repo: &Path, n: usize) -> Result<usize> {
    let pw = Password::new(PASSWORD)?;
    let repo = Repo::open(Backend::local(repo)?, Some(&pw)).await?;
    let all = repo.snapshots().await?;
    let newest = all
        .iter()
        .max_by_key(|s| s.finished_at)
        .context("no backup")?
        .clone();
    let oldest = all
        .iter()
        .map(|s| s.started_at)
        .min()
        .context("no backup")?;
    let session = repo.session("bench").await?;
    for i in 0..n {
        let mut s = newest.clone();
        s.id = BackupId::from_bytes(rand_bytes(i as u64));
        s.kind = BackupKind::Incremental;
        s.parent = Some(newest.id);
        let at = oldest - chrono::Duration::seconds(i as i64 + 1);
        s.started_at = at;
        s.finished_at = at;
        session.commit(&s).await?;
    }
    session.finish().await?;
    Ok(n)
}

fn rand_bytes(seed: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let a = mix(seed ^ 0xbac4);
    let b = mix(a);
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sql(emu: &EmulatorHandle, statements: &[String]) -> Result<()> {
    let mut s = Session::default();
    for q in statements {
        emu.store()
            .execute(&mut s, q)
            .map_err(|e| anyhow::anyhow!("{q}: {e:?}"))?;
    }
    Ok(())
}

fn load(emu: &EmulatorHandle, tables: usize) -> Result<()> {
    let mut s = vec![
        format!("CREATE DATABASE {DB} PRECISION 'ms' VGROUPS 2 WAL_RETENTION_PERIOD 86400"),
        format!("CREATE STABLE {DB}.meters (ts TIMESTAMP, v INT) TAGS (g INT)"),
    ];
    for t in 0..tables {
        s.push(format!(
            "CREATE TABLE {DB}.d{t} USING {DB}.meters TAGS ({})",
            t % 10
        ));
    }
    let mut ins = String::new();
    for t in 0..tables {
        if ins.is_empty() {
            ins.push_str("INSERT INTO");
        }
        ins.push_str(&format!(
            " {DB}.d{t} VALUES ({T0}, {t}) ({}, {t}) ({}, {t})",
            T0 + DAY,
            T0 + 2 * DAY
        ));
        if t % 200 == 199 {
            s.push(std::mem::take(&mut ins));
        }
    }
    if !ins.is_empty() {
        s.push(ins);
    }
    sql(emu, &s)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn vm_hwm_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the binary (its cache under `dir/cache`), fails on a non-zero exit; wall time, the
/// `--json` output, peak RSS sampled from /proc.
fn run(bin: &Path, dir: &Path, args: &[&str]) -> Result<Run> {
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let t = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("TAOSBACKUP_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let mut hwm_kib = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(child.id()) {
            hwm_kib = hwm_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let wall = t.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out_path)?;
    if !status.success() {
        let stderr = std::fs::read_to_string(&err_path)?;
        bail!(
            "taosbackup {} failed ({status}):\n{stdout}\n{stderr}",
            args.join(" ")
        );
    }
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    eprintln!(
        "[{wall:.2} s, peak RSS {hwm_kib} KiB] taosbackup {}",
        args.join(" ")
    );
    Ok(Run {
        wall,
        json,
        hwm_kib,
    })
}
