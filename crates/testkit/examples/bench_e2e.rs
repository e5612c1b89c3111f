//! The end-to-end benchmark behind `cargo xtask bench e2e` (issue 8, scale "small"): the real
//! `taosbackup` binary against the in-process emulator, measured side by side in one run. It
//! reports figures; it never fails because a machine is slow.
//!
//! 1. loads deterministic meters-style data (default 1,000 child tables × 1,000 rows, one row
//!    a minute from 2026-11-01: slowly varying floats, small-range ints, a few strings);
//! 2. read ceiling: `SELECT * FROM db.t` for every table through the `taos` connector with
//!    `--parallel` connections, vs `taosbackup backup --engine full` to a local repository;
//! 3. incremental (`--engine bitmap`) with nothing changed, and after ~1% of blocks changed
//!    (late rows, overwrites, a delete);
//! 4. `restore` of the full backup into a new database;
//! 5. repository bytes vs zstd level 3 of the raw block stream, bytes per row;
//! 6. peak RSS of each child (`VmHWM` from /proc, sampled every 2 ms until it exits).
//!
//! Usage: `bench_e2e PATH/TO/taosbackup [--tables N] [--rows-per-table M] [--parallel P]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, Taos, TaosBuilder};
use taosbackup_testkit::{Emulator, EmulatorConfig};

const DB: &str = "bench";
/// 2026-11-01 00:00 UTC (inside the default KEEP), one row a minute.
const T0: i64 = 1_761_955_200_000;
const STEP: i64 = 60_000;
/// Rows per INSERT statement while loading.
const BATCH: usize = 1_000;
/// Width of a repository block's time bucket (the config's `bucket_width`).
const BUCKET_MS: i64 = 86_400_000;

struct Opts {
    bin: PathBuf,
    tables: usize,
    rows: usize,
    parallel: usize,
}

fn parse() -> Result<Opts> {
    let usage =
        "usage: bench_e2e PATH/TO/taosbackup [--tables N] [--rows-per-table M] [--parallel P]";
    let mut args = std::env::args().skip(1);
    let bin = PathBuf::from(args.next().context(usage)?);
    let bin =
        std::fs::canonicalize(&bin).with_context(|| format!("no binary at {}", bin.display()))?;
    let mut o = Opts {
        bin,
        tables: 1_000,
        rows: 1_000,
        // taosbackup's default `--parallel` for backup and restore.
        parallel: 4,
    };
    while let Some(a) = args.next() {
        let v: usize = args
            .next()
            .with_context(|| format!("{a} needs a value; {usage}"))?
            .parse()
            .with_context(|| format!("{a} needs a positive integer"))?;
        match a.as_str() {
            "--tables" => o.tables = v,
            "--rows-per-table" => o.rows = v,
            "--parallel" => o.parallel = v,
            _ => bail!("unknown argument {a}; {usage}"),
        }
    }
    if o.tables == 0 || o.rows == 0 || o.parallel == 0 {
        bail!("--tables, --rows-per-table and --parallel must be at least 1");
    }
    Ok(o)
}

fn main() -> Result<()> {
    let o = parse()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(&o))
}

/// One child run: wall time, peak RSS (KiB), stdout.
struct Run {
    secs: f64,
    maxrss_kib: i64,
    stdout: String,
}

async fn run(o: &Opts) -> Result<()> {
    let emu = Emulator::start(EmulatorConfig::default())?;
    let dsn = emu.dsn();
    let taos = TaosBuilder::from_dsn(&dsn)?.build().await?;
    let total_rows = o.tables * o.rows;
    let t = Instant::now();
    load(&taos, o).await?;
    let load_secs = t.elapsed().as_secs_f64();
    let blocks = o.tables * (((o.rows as i64 - 1) * STEP / BUCKET_MS) as usize + 1);
    eprintln!(
        "== loaded {} tables × {} rows = {total_rows} rows ({blocks} blocks) in {load_secs:.2} s",
        o.tables, o.rows
    );

    // 1. Read ceiling, then the raw block stream for the size baseline.
    let ceiling = read_ceiling(&dsn, o).await?;
    eprintln!(
        "== read ceiling: {:.2} s ({} raw bytes)",
        ceiling.0, ceiling.1
    );
    let (raw_bytes, zstd_bytes, zstd_secs, zstd_table_bytes) = raw_zstd(&taos, o).await?;
    eprintln!("== raw stream {raw_bytes} B, zstd-3 {zstd_bytes} B in {zstd_secs:.2} s");

    let work = tempfile::tempdir()?;
    let repo = work.path().join("repo");
    let config = work.path().join("taosbackup.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ndsn = \"{dsn}\"\n\n[repository]\nurl = \"{}\"\nbucket_width = \"1d\"\n\n\
             [backup]\ndatabase = \"{DB}\"\nengine = \"bitmap\"\n\n\
             [bitmap_engine]\npersistence_path = \"{}\"\n",
            repo.display(),
            work.path().join("bench.bitmap").display()
        ),
    )?;
    let cfg = config.display().to_string();
    let par = o.parallel.to_string();
    let tb = |args: &[&str]| taosbackup(&o.bin, work.path(), args);

    tb(&["init", "--config", &cfg])?;
    let full = tb(&[
        "backup",
        "--config",
        &cfg,
        "--engine",
        "full",
        "--parallel",
        &par,
    ])?;
    let repo_bytes = dir_bytes(&repo)?;
    // The bitmap engine's first run establishes its tracker (a full backup of its own).
    let bitmap_first = tb(&[
        "backup",
        "--config",
        &cfg,
        "--engine",
        "bitmap",
        "--parallel",
        &par,
    ])?;
    let nothing = tb(&[
        "backup",
        "--config",
        &cfg,
        "--engine",
        "bitmap",
        "--parallel",
        &par,
    ])?;
    let changed = change(&taos, o).await?;
    let incr = tb(&[
        "backup",
        "--config",
        &cfg,
        "--engine",
        "bitmap",
        "--parallel",
        &par,
    ])?;

    let list = tb(&["list", "--config", &cfg, "--json"])?;
    let list_secs = list.secs;
    let list = list.stdout;
    let backups: Vec<serde_json::Value> =
        serde_json::from_str(&list).with_context(|| format!("`list --json` printed {list}"))?;
    let full_id = backups
        .first()
        .and_then(|b| b["id"].as_str())
        .with_context(|| format!("no backup id in `list --json`: {list}"))?
        .to_string();
    let restore = tb(&[
        "restore",
        "--config",
        &cfg,
        "--target",
        &dsn,
        "--backup",
        &full_id,
        "--target-database",
        "bench_restored",
        "--parallel",
        &par,
    ])?;
    let restored = count(&taos, "bench_restored").await?;
    if restored != total_rows as u64 {
        bail!("restored {restored} rows, expected {total_rows}");
    }

    let mib = |kib: i64| kib as f64 / 1024.0;
    let pct = |a: f64, b: f64| 100.0 * a / b;
    println!(
        "\n| measure | figure | design target |\n| --- | --- | --- |\n\
         | data | {} tables × {} rows = {total_rows} rows, {blocks} blocks (1 d buckets), `--parallel {}` | |\n\
         | load (multi-row INSERT, {BATCH} rows/statement) | {load_secs:.2} s | |\n\
         | read ceiling (`SELECT *` per table, {} connections) | {:.2} s | |\n\
         | `backup --engine full` | {:.2} s | |\n\
         | full / read ceiling | **{:.2}×** | ≤ 1.25× |\n\
         | `backup --engine bitmap`, first run (tracker start) | {:.2} s | |\n\
         | incremental, nothing changed | {:.2} s | < 1 s on 10,000 tables |\n\
         | incremental, {changed} blocks changed ({:.1}%) | {:.2} s = **{:.1}%** of full | ≤ 3% |\n\
         | `restore` of the full backup | {:.2} s = **{:.2}×** backup | ≤ 1× |\n\
         | raw block stream | {raw_bytes} B ({:.1} B/row) | |\n\
         | zstd-3 of the raw stream (one frame) | {zstd_bytes} B ({:.1} B/row) | |\n\
         | zstd-3 of each table's raw blocks, summed | {zstd_table_bytes} B ({:.1} B/row) | |\n\
         | repository after the full backup | {repo_bytes} B ({:.1} B/row) = **{:.2}×** zstd-3 stream, **{:.2}×** per-table zstd-3 | ≤ 0.6× |\n\
         | process start + repository open (`taosbackup list` wall time) | {:.2} s | |\n\
         | peak RSS: full backup / incremental / restore | {:.1} / {:.1} / {:.1} MiB | bounded |",
        o.tables,
        o.rows,
        o.parallel,
        o.parallel,
        ceiling.0,
        full.secs,
        full.secs / ceiling.0,
        bitmap_first.secs,
        nothing.secs,
        pct(changed as f64, blocks as f64),
        incr.secs,
        pct(incr.secs, full.secs),
        restore.secs,
        restore.secs / full.secs,
        raw_bytes as f64 / total_rows as f64,
        zstd_bytes as f64 / total_rows as f64,
        zstd_table_bytes as f64 / total_rows as f64,
        repo_bytes as f64 / total_rows as f64,
        repo_bytes as f64 / zstd_bytes as f64,
        repo_bytes as f64 / zstd_table_bytes as f64,
        list_secs,
        mib(full.maxrss_kib),
        mib(incr.maxrss_kib),
        mib(restore.maxrss_kib),
    );
    Ok(())
}

/// Deterministic meters-style rows: a per-table phase so tables differ, values that drift
/// slowly like real sensors, a mostly-constant status string.
fn row(t: usize, k: usize) -> String {
    let ts = T0 + k as i64 * STEP;
    let h = mix((t as u64) << 32 | k as u64);
    let noise = |shift: u32, n: u64| ((h >> shift) % n) as f64;
    let x = k as f64 / 60.0 + t as f64 * 0.7;
    // A daily-ish swing plus ±0.1 A of sensor noise at 0.01 resolution.
    let current = 10.0 + 2.0 * x.sin() + (noise(0, 21) - 10.0) * 0.01;
    let voltage = 218 + (h >> 8) % 5;
    let phase = 0.3 + ((k / 20) % 10) as f64 * 0.01 + noise(16, 3) * 0.001;
    let h = (h >> 24) % 100;
    let status = match h {
        0..=93 => "ok",
        94..=98 => "warn",
        _ => "fault",
    };
    format!("({ts}, {current:.2}, {voltage}, {phase:.2}, '{status}')")
}

/// splitmix64: a cheap deterministic hash for the noise.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn load(taos: &Taos, o: &Opts) -> Result<()> {
    taos.exec(format!("CREATE DATABASE {DB} PRECISION 'ms' VGROUPS 4"))
        .await?;
    taos.exec(format!(
        "CREATE STABLE {DB}.meters (ts TIMESTAMP, current FLOAT, voltage INT, phase FLOAT, \
         status VARCHAR(8)) TAGS (location VARCHAR(24), groupid INT)"
    ))
    .await?;
    for t in 0..o.tables {
        taos.exec(format!(
            "CREATE TABLE {DB}.d{t} USING {DB}.meters TAGS ('site {}', {})",
            t % 17,
            t % 10
        ))
        .await?;
    }
    // Small tables share a statement (multi-table INSERT), large ones are split.
    let mut sql = String::new();
    let mut in_sql = 0;
    for t in 0..o.tables {
        let mut k = 0;
        while k < o.rows {
            let n = (o.rows - k).min(BATCH - in_sql);
            if in_sql == 0 {
                sql.push_str("INSERT INTO");
            }
            sql.push_str(&format!(" {DB}.d{t} VALUES"));
            for j in k..k + n {
                sql.push(' ');
                sql.push_str(&row(t, j));
            }
            k += n;
            in_sql += n;
            if in_sql == BATCH {
                taos.exec(std::mem::take(&mut sql)).await?;
                in_sql = 0;
            }
        }
    }
    if in_sql > 0 {
        taos.exec(sql).await?;
    }
    Ok(())
}

/// Changes ~1% of the blocks (at least one): late rows, overwrites, one delete, each in its
/// own table's first bucket. Returns the number of blocks changed.
async fn change(taos: &Taos, o: &Opts) -> Result<usize> {
    let blocks = o.tables * (((o.rows as i64 - 1) * STEP / BUCKET_MS) as usize + 1);
    let n = (blocks / 100).max(1).min(o.tables);
    for i in 0..n {
        let t = i * o.tables / n;
        let sql = match i % 3 {
            // A late row between two existing ones.
            0 => format!(
                "INSERT INTO {DB}.d{t} VALUES ({}, 9.99, 220, 0.35, 'late')",
                T0 + STEP / 2
            ),
            // Overwrites of existing rows.
            1 => format!(
                "INSERT INTO {DB}.d{t} VALUES ({T0}, 1.11, 219, 0.31, 'fix') ({}, 1.12, 219, 0.31, 'fix')",
                T0 + STEP
            ),
            _ => format!(
                "DELETE FROM {DB}.d{t} WHERE ts >= {T0} AND ts < {}",
                T0 + 3 * STEP
            ),
        };
        taos.exec(sql).await?;
    }
    Ok(n)
}

/// Reads every table with `SELECT *` over `parallel` connections; (seconds, raw bytes).
async fn read_ceiling(dsn: &str, o: &Opts) -> Result<(f64, u64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::new();
    for _ in 0..o.parallel {
        conns.push(TaosBuilder::from_dsn(dsn)?.build().await?);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for conn in conns {
        let next = next.clone();
        let tables = o.tables;
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tables {
                    return anyhow::Ok(bytes);
                }
                let mut rs = conn.query(format!("SELECT * FROM {DB}.d{i}")).await?;
                let mut blocks = rs.blocks();
                while let Some(b) = futures::StreamExt::next(&mut blocks).await {
                    bytes += b?.as_raw_bytes().len() as u64;
                }
            }
        }));
    }
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await??;
    }
    Ok((t.elapsed().as_secs_f64(), bytes))
}

/// The concatenated raw blocks of every table, and their zstd level 3 size:
/// (raw bytes, compressed bytes, compression seconds).
/// Also the sum of zstd-3 of each table's raw blocks compressed on their own (no help from
/// other tables' data, as a repository that stores blocks separately sees them).
async fn raw_zstd(taos: &Taos, o: &Opts) -> Result<(u64, u64, f64, u64)> {
    let mut raw = Vec::new();
    let mut per_table = 0u64;
    for i in 0..o.tables {
        let start = raw.len();
        let mut rs = taos.query(format!("SELECT * FROM {DB}.d{i}")).await?;
        let mut blocks = rs.blocks();
        while let Some(b) = futures::StreamExt::next(&mut blocks).await {
            raw.extend_from_slice(b?.as_raw_bytes());
        }
        per_table += zstd::bulk::compress(&raw[start..], 3)
            .context("zstd level 3 of a table's raw blocks")?
            .len() as u64;
    }
    let t = Instant::now();
    let z = zstd::bulk::compress(&raw, 3).context("zstd level 3 of the raw stream")?;
    Ok((
        raw.len() as u64,
        z.len() as u64,
        t.elapsed().as_secs_f64(),
        per_table,
    ))
}

async fn count(taos: &Taos, db: &str) -> Result<u64> {
    let mut rs = taos
        .query(format!("SELECT COUNT(*) FROM {db}.meters"))
        .await?;
    match rs.to_records().await?.first().and_then(|r| r.first()) {
        Some(taos::Value::BigInt(n)) => Ok(*n as u64),
        other => bail!("SELECT COUNT(*) FROM {db}.meters returned {other:?}"),
    }
}

/// Sum of file sizes under `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// `VmHWM` of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the binary with output to files (so it can be polled without a pipe deadlock),
/// fails on a non-zero exit; reports wall time and the child's peak RSS.
fn taosbackup(bin: &Path, dir: &Path, args: &[&str]) -> Result<Run> {
    eprintln!("$ taosbackup {}", args.join(" "));
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let t = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("TAOSBACKUP_PASSWORD", "bench password")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    // Peak RSS is sampled from /proc (VmHWM, a high-water mark) until the child exits:
    // wait4's ru_maxrss would include this process's RSS, inherited across the spawn.
    let mut child = child;
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
    let secs = t.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out_path)?;
    let stderr = std::fs::read_to_string(&err_path)?;
    let ok = status.success();
    eprintln!(
        "[{} in {secs:.2} s, peak RSS {} KiB] {}",
        if ok { "ok" } else { "FAILED" },
        hwm_kib,
        stdout.lines().last().unwrap_or("")
    );
    if !ok {
        bail!(
            "taosbackup {} failed ({status}):\n{stdout}\n{stderr}",
            args.join(" ")
        );
    }
    Ok(Run {
        secs,
        maxrss_kib: hwm_kib,
        stdout,
    })
}
