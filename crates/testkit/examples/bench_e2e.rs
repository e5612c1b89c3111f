//! The end-to-end benchmark behind `cargo xtask bench e2e` (issue 8): the real `taosbackup`
//! binary against the in-process emulator, measured side by side in one run, at one or more
//! scales. It reports figures; it never fails because a machine is slow.
//!
//! For each scale, with a fresh emulator:
//!
//! 1. loads deterministic meters-style data (one row a minute from 2026-11-01: slowly varying
//!    floats, small-range ints, a few strings);
//! 2. read ceiling: `SELECT * FROM db.t` for every table through the `taos` connector with
//!    `--parallel` connections (and, for comparison, the same rows read 100 child tables per
//!    query: `SELECT …, TBNAME FROM db.meters WHERE TBNAME IN (…)`), vs `taosbackup backup
//!    --engine full` to a local repository,
//!    and the same full backup into a second repository with `backup.dictionaries = false`
//!    (what the shared dictionaries cost in CPU and save in bytes);
//! 3. incremental (`--engine bitmap`) with nothing changed, after a fixed number of changed
//!    blocks (`--fixed-blocks`, default 100) and after ~1% of the blocks changed (late rows,
//!    overwrites, deletes in rotation);
//! 4. `restore` of the full backup into a fresh emulator, started after the source one is
//!    stopped (the emulator holds its tables in RAM, 26–36 B a row; stopping the source
//!    keeps the benchmark's peak at one copy of the data, 100 M rows included); its row count
//!    is checked;
//! 5. repository bytes vs zstd level 3 of the raw block stream, bytes per row, and the bytes
//!    of its index files and snapshot objects;
//! 6. peak RSS of each child (`VmHWM` from /proc, sampled every 2 ms until it exits), CPU
//!    seconds of the child and of this process (the emulator and the reader) per step.
//!
//! Every time is given twice: the wall time of the child process (start-up, the Argon2id
//! unwrap of the encrypted repository's key, the work) and the duration the tool reports in
//! its `--json` output (the work only: the engine's run after the repository is open).
//!
//! Usage: `bench_e2e PATH/TO/taosbackup [--scale small|medium|large|xlarge|all|LIST]
//! [--tables N] [--rows-per-table M] [--parallel P] [--fixed-blocks K] [--incr-rounds K]
//! [--perf DIR]`; `--incr-rounds K` runs the 1% incremental K times (each after its own
//! changes) and reports the one of median tool time. Scales:
//! small = 1,000 tables × 1,000 rows (1 M rows), medium = 10,000 × 1,000 (10 M), large =
//! 10,000 × 5,000 (50 M), xlarge = 10,000 × 10,000 (100 M, TDengine's published taosBackup
//! scale; not part of `all`); `--tables`/`--rows-per-table` override the preset's figure at every scale
//! (without `--scale` they describe one custom scale). `--perf DIR` runs every `taosbackup`
//! child under `perf record --call-graph dwarf` into `DIR/<scale>-<step>.data` (its times are then perf's,
//! not figures to quote); `--perf-steps LIST` limits that to some steps (`full`, `pct`, `restore`, …:
//! the file names' step part) and `--perf-hz N` sets the sampling frequency (default 499; a
//! step of 0.1 s needs ~20000 to say where its time goes). With `RUST_LOG` set (e.g. `taosbackup_engine=debug` for a backup's
//! phase timings), each child's log is printed after its run. `TAOS_EMU_SERVER_VERSION`
//! picks the emulated server version (e.g. `3.3.0.0`: TMQ data read with `fetch` +
//! `fetch_block`, as before taosAdapter 3.3.2.0).
//!
//! `--compare PATH/TO/other-taosbackup [--rounds K]` measures two builds instead: it loads
//! each scale once and runs `K` (default 3) rounds of one full backup by each binary in turn
//! (A first in even rounds, B first in odd ones), each into a fresh repository, printing every
//! run and the medians (A = the first binary). `--compare-step dictionaries` does the same
//! with B's repositories set to `backup.dictionaries = false`: given the same binary twice,
//! it measures what the shared dictionaries cost in interleaved pairs.
//! `--compare-step pct` compares 1% incrementals instead: each binary keeps its own
//! repository and tracker, and each round's one change is backed up by both, in alternating
//! order. `--compare-step restore` compares restores: one full backup (by the first binary),
//! restored by each binary in turn (alternating order) into a database of its own in the
//! same emulator, which is dropped after its rows are counted.
//!
//! `--daemon-fulls K [--daemon-every SECS]` measures what a full backup costs in
//! `taosbackup daemon`, which derives the repository key once: it loads each scale, runs one
//! `taosbackup backup --engine full` and one `list` for comparison, then K daemons one after
//! another, each with a fresh repository and one full backup scheduled SECS seconds (default
//! 10) after its start; the backup is charged the daemon process's CPU from just before it
//! falls due until `/backup/status` reports it done.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use taos::{AsyncFetchable, AsyncQueryable, Taos};
use taosbackup_testkit::{Emulator, EmulatorConfig};

#[path = "shared/connect.rs"]
mod shared;
use shared::connect;

const DB: &str = "bench";
/// 2026-11-01 00:00 UTC (inside the default KEEP), one row a minute.
const T0: i64 = 1_761_955_200_000;
const STEP: i64 = 60_000;
/// Rows per INSERT statement while loading.
const BATCH: usize = 1_000;
/// Width of a repository block's time bucket (the config's `bucket_width`).
const BUCKET_MS: i64 = 86_400_000;
/// The named scales: (name, child tables, rows per table).
/// `all` runs the first three; `xlarge` is TDengine's published taosBackup scale (100 M rows)
/// and runs only when named.
const PRESETS: [(&str, usize, usize); 4] = [
    ("small", 1_000, 1_000),
    ("medium", 10_000, 1_000),
    ("large", 10_000, 5_000),
    ("xlarge", 10_000, 10_000),
];
/// Cores of the machine the published figures were measured on, for rows/s per core.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// One scale to run.
#[derive(Clone, Debug)]
struct Scale {
    name: String,
    tables: usize,
    rows: usize,
}

impl Scale {
    fn total_rows(&self) -> usize {
        self.tables * self.rows
    }

    /// Blocks per table: one per started day bucket.
    fn blocks_per_table(&self) -> usize {
        ((self.rows as i64 - 1) * STEP / BUCKET_MS) as usize + 1
    }

    fn blocks(&self) -> usize {
        self.tables * self.blocks_per_table()
    }
}

struct Opts {
    bin: PathBuf,
    scales: Vec<Scale>,
    parallel: usize,
    fixed_blocks: usize,
    perf: Option<PathBuf>,
    /// `--incr-rounds`: 1% incrementals run (the median is reported).
    incr_rounds: usize,
    /// `--perf-steps`: the steps recorded (all when empty).
    perf_steps: Vec<String>,
    /// `--perf-hz`: perf's sampling frequency.
    perf_hz: usize,
    /// `--compare BIN2`: instead of the steps below, full backups by both binaries in turn.
    compare: Option<PathBuf>,
    /// `--rounds K`: the rounds of a comparison.
    rounds: usize,
    /// `--compare-step full|pct|restore|dictionaries`: what a comparison measures.
    compare_step: Step,
    /// `--daemon-fulls K`: instead of the steps below, K daemons one after another, each
    /// with a fresh repository and one scheduled full backup whose CPU is measured.
    daemon_fulls: Option<usize>,
    /// `--daemon-every SECS`: the seconds between the daemon's scheduled fulls.
    daemon_every: usize,
}

/// What `--compare` measures (`--compare-step`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Full backups, each binary into fresh repositories.
    Full,
    /// 1% incrementals, each binary with its own repository and tracker.
    Pct,
    /// Restores of one full backup.
    Restore,
    /// Full backups, B's repositories without shared dictionaries.
    Dictionaries,
}

impl Step {
    fn parse(v: &str) -> Result<Step> {
        Ok(match v {
            "full" => Step::Full,
            "pct" => Step::Pct,
            "restore" => Step::Restore,
            "dictionaries" => Step::Dictionaries,
            _ => bail!("--compare-step takes full, pct, restore or dictionaries, not {v:?}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Step::Full => "full",
            Step::Pct => "pct",
            Step::Restore => "restore",
            Step::Dictionaries => "dictionaries",
        }
    }
}

const USAGE: &str = "usage: bench_e2e PATH/TO/taosbackup [--scale small|medium|large|xlarge|all|LIST] \
                     [--tables N] [--rows-per-table M] [--parallel P] [--fixed-blocks K] \
                     [--incr-rounds K] [--perf DIR [--perf-steps LIST] [--perf-hz N]] [--compare PATH/TO/other-taosbackup [--rounds K] [--compare-step full|pct|restore|dictionaries]] \
                     [--daemon-fulls K [--daemon-every SECS]]";

fn parse() -> Result<Opts> {
    let mut args = std::env::args().skip(1);
    let bin = PathBuf::from(args.next().context(USAGE)?);
    let bin =
        std::fs::canonicalize(&bin).with_context(|| format!("no binary at {}", bin.display()))?;
    let mut names: Option<Vec<String>> = None;
    let mut tables = None;
    let mut rows = None;
    // taosbackup's default `--parallel` for backup and restore.
    let mut parallel = 4;
    let mut fixed_blocks = 100;
    let mut perf = None;
    let mut perf_steps = Vec::new();
    let mut incr_rounds = 1;
    let mut perf_hz = 499;
    let mut compare = None;
    let mut rounds = 3;
    let mut compare_step = Step::Full;
    let mut daemon_fulls = None;
    let mut daemon_every = 10;
    while let Some(a) = args.next() {
        let v = args
            .next()
            .with_context(|| format!("{a} needs a value; {USAGE}"))?;
        let num = || -> Result<usize> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{a} needs a positive integer, not {v:?}"),
            }
        };
        match a.as_str() {
            "--scale" => {
                names = Some(if v == "all" {
                    PRESETS[..3].iter().map(|p| p.0.to_string()).collect()
                } else {
                    v.split(',').map(|s| s.trim().to_string()).collect()
                })
            }
            "--tables" => tables = Some(num()?),
            "--rows-per-table" => rows = Some(num()?),
            "--parallel" => parallel = num()?,
            "--fixed-blocks" => fixed_blocks = num()?,
            "--perf" => perf = Some(PathBuf::from(&v)),
            "--incr-rounds" => incr_rounds = num()?,
            "--perf-steps" => perf_steps = v.split(',').map(|s| s.trim().to_string()).collect(),
            "--perf-hz" => perf_hz = num()?,
            "--compare" => {
                compare =
                    Some(std::fs::canonicalize(&v).with_context(|| format!("no binary at {v}"))?)
            }
            "--rounds" => rounds = num()?,
            "--compare-step" => compare_step = Step::parse(&v)?,
            "--daemon-fulls" => daemon_fulls = Some(num()?),
            "--daemon-every" => daemon_every = num()?,
            _ => bail!("unknown argument {a}; {USAGE}"),
        }
    }
    let scales = match names {
        None => vec![Scale {
            name: if tables.is_none() && rows.is_none() {
                "small".into()
            } else {
                "custom".into()
            },
            tables: tables.unwrap_or(PRESETS[0].1),
            rows: rows.unwrap_or(PRESETS[0].2),
        }],
        Some(names) => names
            .iter()
            .map(|n| {
                let p = PRESETS.iter().find(|p| p.0 == n).with_context(|| {
                    format!("unknown scale {n:?} (small, medium, large, xlarge, all)")
                })?;
                Ok(Scale {
                    name: n.clone(),
                    tables: tables.unwrap_or(p.1),
                    rows: rows.unwrap_or(p.2),
                })
            })
            .collect::<Result<_>>()?,
    };
    // Absolute: each `taosbackup` runs (under perf) in its own temporary directory, where a
    // relative `-o` would put the recording, to be deleted with it.
    let perf = match perf {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Some(
                dir.canonicalize()
                    .with_context(|| format!("resolving {}", dir.display()))?,
            )
        }
        None => None,
    };
    Ok(Opts {
        bin,
        scales,
        parallel,
        fixed_blocks,
        perf,
        perf_steps,
        perf_hz,
        incr_rounds,
        compare,
        rounds,
        compare_step,
        daemon_fulls,
        daemon_every,
    })
}

fn main() -> Result<()> {
    let o = parse()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut all = Vec::new();
    if let Some(other) = &o.compare {
        for s in &o.scales {
            rt.block_on(compare(&o, s, other))?;
        }
        return Ok(());
    }
    if let Some(k) = o.daemon_fulls {
        for s in &o.scales {
            rt.block_on(daemon_fulls(&o, s, k))?;
        }
        return Ok(());
    }
    for s in &o.scales {
        let f = rt.block_on(run_scale(&o, s))?;
        // Print each scale as it finishes, so a later failure keeps the earlier figures.
        println!("\n{}", table(&o, std::slice::from_ref(&f)));
        all.push(f);
    }
    if all.len() > 1 {
        println!("\nAll scales side by side:\n\n{}", table(&o, &all));
    }
    Ok(())
}

/// One child run.
struct Run {
    /// Wall time of the child process.
    secs: f64,
    /// The duration the tool reports in its `--json` output, when it has one.
    tool_secs: Option<f64>,
    /// User + system CPU seconds of the child.
    cpu_secs: f64,
    /// User + system CPU seconds of this process (emulator, driver) while the child ran.
    emu_cpu_secs: f64,
    maxrss_kib: i64,
    stdout: String,
}

impl Run {
    /// The tool's own duration, or the wall time where it reported none.
    fn tool_or_wall(&self) -> f64 {
        self.tool_secs.unwrap_or(self.secs)
    }
}

/// The figures of one scale.
struct Figures {
    scale: Scale,
    load_secs: f64,
    /// CPU seconds of this process (driver building the SQL, emulator parsing and storing).
    load_cpu_secs: f64,
    /// This process's resident set before loading (runtime, connector, empty emulator).
    rss_before_load_kib: i64,
    /// This process's resident set after loading (mostly the emulator's store).
    rss_after_load_kib: i64,
    /// This process's peak resident set at the end of the scale.
    hwm_end_kib: i64,
    ceiling_secs: f64,
    ceiling_cpu_secs: f64,
    /// The same rows read 100 child tables per query (`… WHERE TBNAME IN (…)`): what
    /// reading several tables per query would save (the tool reads one table per query).
    stb_read_secs: f64,
    stb_read_cpu_secs: f64,
    raw_bytes: u64,
    zstd_bytes: u64,
    zstd_table_bytes: u64,
    full: Run,
    repo_bytes: u64,
    /// The repository's bytes in its index files and its snapshot objects: what a block
    /// costs besides its pack bytes is in these and in the pack headers.
    repo_index_bytes: u64,
    repo_snapshot_bytes: u64,
    /// The same full backup without shared dictionaries, and its repository.
    full_plain: Run,
    repo_plain_bytes: u64,
    bitmap_first: Run,
    nothing: Run,
    fixed_changed: usize,
    fixed: Run,
    pct_changed: usize,
    pct: Run,
    list: Run,
    restore: Run,
    load_avg: String,
}

/// `--compare`: loads the scale once, then runs `--rounds` rounds of one step by each binary
/// in turn and prints every run and the median per binary. Two builds measured against the
/// same data, interleaved, so that the machine's drift over minutes falls on both alike.
///
/// `--compare-step full` (the default): one full backup per binary and round (A, B; then B,
/// A; …), each into a fresh repository; `--compare-step dictionaries` the same with B's
/// repositories set to `backup.dictionaries = false`. `--compare-step pct`: each binary
/// keeps its own repository and bitmap tracker (its own topic and consumer group),
/// established by a first bitmap run; each round changes ~1% of the blocks once, then both
/// binaries back up that change, in alternating order (A, B; then B, A; …).
/// `--compare-step restore`: one full backup by A, then each round restores it with both
/// binaries (A, B; then B, A; …), each into a fresh database that is dropped after its rows
/// are counted.
async fn compare(o: &Opts, s: &Scale, other: &Path) -> Result<()> {
    let emu = Emulator::start(EmulatorConfig::from_env())?;
    let dsn = emu.dsn();
    let taos = connect(&dsn).await?;
    eprintln!(
        "== compare ({}) at scale {}: {} tables × {} rows; load average {}",
        o.compare_step.name(),
        s.name,
        s.tables,
        s.rows,
        load_avg()
    );
    load(&taos, s).await?;
    let work = tempfile::tempdir()?;
    let bins = [("A", o.bin.as_path()), ("B", other)];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    let par = o.parallel.to_string();
    let backup = |cfg: &str, engine: &str| -> Vec<String> {
        [
            "backup",
            "--config",
            cfg,
            "--engine",
            engine,
            "--parallel",
            &par,
            "--json",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |bin: &Path, dir: &Path, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        taosbackup(bin, dir, &args, None)
    };
    // `dir` made, with a config (`extra` added to its `[backup]`) and an initialised
    // repository of its own; returns the config's path.
    let setup = |bin: &Path, dir: &Path, extra: &str| -> Result<String> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("taosbackup.toml");
        std::fs::write(&config, config_text(&dsn, &dir.join("repo"), extra))?;
        let cfg = config.display().to_string();
        run(bin, dir, &["init".into(), "--config".into(), cfg.clone()])?;
        Ok(cfg)
    };
    let what = if o.compare_step == Step::Restore {
        // One full backup (by A), restored by each binary in turn into a database of its
        // own in the same emulator, which is dropped after its row count is checked.
        let dir = work.path().join("repo");
        let cfg = setup(bins[0].1, &dir, "")?;
        run(bins[0].1, &dir, &backup(&cfg, "full"))?;
        for round in 0..o.rounds {
            for i in turn_order(round) {
                let target = format!("bench_r{round}{}", bins[i].0.to_lowercase());
                let args = restore_args(&cfg, &dsn, "latest", &target, &par);
                runs[i].push(run(bins[i].1, &dir, &args)?);
                let restored = count(&taos, &target).await?;
                if restored != s.total_rows() as u64 {
                    bail!(
                        "{target}: restored {restored} rows, expected {}",
                        s.total_rows()
                    );
                }
                taos.exec(format!("DROP DATABASE {target}")).await?;
            }
        }
        "restore"
    } else if o.compare_step == Step::Pct {
        // Per binary: a directory with its repository, its config and its tracker.
        let mut cfgs = Vec::new();
        for (label, bin) in &bins {
            let dir = work.path().join(label);
            let cfg = setup(bin, &dir, &bitmap_keys(&dir.join("tracker"), ""))?;
            run(bin, &dir, &backup(&cfg, "bitmap"))?;
            cfgs.push((dir, cfg));
        }
        for round in 0..o.rounds {
            change(&taos, s, (s.blocks() / 100).max(1), 1 + round).await?;
            for i in turn_order(round) {
                let (dir, cfg) = &cfgs[i];
                runs[i].push(run(bins[i].1, dir, &backup(cfg, "bitmap"))?);
            }
        }
        "1% incremental"
    } else {
        // With `dictionaries`, B's repositories back up without shared dictionaries.
        let plain = o.compare_step == Step::Dictionaries;
        for round in 0..o.rounds {
            for i in turn_order(round) {
                let (label, bin) = bins[i];
                let dir = work.path().join(format!("{label}{round}"));
                let extra = if plain && i == 1 {
                    "dictionaries = false\n"
                } else {
                    ""
                };
                let cfg = setup(bin, &dir, extra)?;
                runs[i].push(run(bin, &dir, &backup(&cfg, "full"))?);
                std::fs::remove_dir_all(&dir)?;
            }
        }
        if plain {
            "full backup (B: dictionaries = false)"
        } else {
            "full backup"
        }
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\n| {what}, {} rows | tool s (each round) | CPU tool s | CPU emulator s | median tool s; CPU tool; CPU emulator |",
        s.total_rows()
    );
    println!("| --- | --- | --- | --- | --- |");
    for (i, (label, bin)) in bins.iter().enumerate() {
        let list = |f: &dyn Fn(&Run) -> f64| {
            runs[i]
                .iter()
                .map(|r| format!("{:.3}", f(r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let tool = Run::tool_or_wall;
        println!(
            "| {label}: {} | {} | {} | {} | {:.3} s; {:.3} s; {:.3} s |",
            bin.display(),
            list(&tool),
            list(&|r| r.cpu_secs),
            list(&|r| r.emu_cpu_secs),
            median(runs[i].iter().map(tool).collect()),
            median(runs[i].iter().map(|r| r.cpu_secs).collect()),
            median(runs[i].iter().map(|r| r.emu_cpu_secs).collect()),
        );
    }
    Ok(())
}

/// The order in which the two binaries of a comparison run in round `round`: A first in
/// even rounds, B first in odd ones, so that what the first run of a round pays (or leaves
/// behind) falls on both alike.
fn turn_order(round: usize) -> [usize; 2] {
    if round % 2 == 0 { [0, 1] } else { [1, 0] }
}

/// A benchmark repository's config: the emulator, a local repository with day buckets, the
/// benchmark database, then `backup_extra` (more lines of `[backup]`, and further sections).
fn config_text(dsn: &str, repo: &Path, backup_extra: &str) -> String {
    format!(
        "[source]\ndsn = \"{dsn}\"\n\n[repository]\nurl = \"{}\"\nbucket_width = \"1d\"\n\n\
         [backup]\ndatabase = \"{DB}\"\n{backup_extra}",
        repo.display()
    )
}

/// `taosbackup restore` of `backup` (with the repository of config `cfg`) into database
/// `database` of the server at `target`, `par` tables at once, reporting in JSON.
fn restore_args(cfg: &str, target: &str, backup: &str, database: &str, par: &str) -> Vec<String> {
    [
        "restore",
        "--config",
        cfg,
        "--target",
        target,
        "--backup",
        backup,
        "--target-database",
        database,
        "--parallel",
        par,
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

/// The `[backup]` keys (`more` added to them) and the `[bitmap_engine]` table of a config
/// whose bitmap engine keeps its tracker at `state`: what follows [`config_text`]'s
/// `[backup]` header.
fn bitmap_keys(state: &Path, more: &str) -> String {
    format!(
        "engine = \"bitmap\"\n{more}\n[bitmap_engine]\npersistence_path = \"{}\"\n",
        state.display()
    )
}

async fn run_scale(o: &Opts, s: &Scale) -> Result<Figures> {
    let emu = Emulator::start(EmulatorConfig::from_env())?;
    let dsn = emu.dsn();
    let taos = connect(&dsn).await?;
    let total_rows = s.total_rows();
    let blocks = s.blocks();
    eprintln!(
        "== scale {}: {} tables × {} rows = {total_rows} rows ({blocks} blocks); load average {}",
        s.name,
        s.tables,
        s.rows,
        load_avg()
    );
    let rss_before_load_kib = self_status_kib("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let cpu_load0 = cpu_self();
    load(&taos, s).await?;
    let load_secs = t.elapsed().as_secs_f64();
    let load_cpu_secs = cpu_self() - cpu_load0;
    let rss_after_load_kib = self_status_kib("VmRSS:").unwrap_or(0);
    eprintln!(
        "== loaded in {load_secs:.2} s; this process (emulator) RSS {rss_after_load_kib} KiB"
    );

    // 1. Read ceiling, then the raw block stream for the size baseline.
    let ceiling = read_ceiling(&dsn, s, o.parallel).await?;
    eprintln!(
        "== read ceiling: {:.2} s ({} raw bytes, {:.2} CPU s)",
        ceiling.secs, ceiling.bytes, ceiling.cpu_secs
    );
    let stb_read = read_by_super_table(&dsn, s, o.parallel).await?;
    eprintln!(
        "== read {STB_READ_TABLES} tables per query: {:.2} s ({} rows, {:.2} CPU s)",
        stb_read.secs, stb_read.rows, stb_read.cpu_secs
    );
    let (raw_bytes, zstd_bytes, zstd_table_bytes) = raw_zstd(&taos, s).await?;
    eprintln!("== raw stream {raw_bytes} B, zstd-3 {zstd_bytes} B, per table {zstd_table_bytes} B");

    let work = tempfile::tempdir()?;
    let repo = work.path().join("repo");
    let config = work.path().join("taosbackup.toml");
    // A second repository whose backups use no shared dictionaries: what they cost.
    let repo_plain = work.path().join("repo-plain");
    let config_plain = work.path().join("taosbackup-plain.toml");
    for (path, repo, dictionaries, state) in [
        (&config, &repo, true, "bench.bitmap"),
        (&config_plain, &repo_plain, false, "plain.bitmap"),
    ] {
        let extra = bitmap_keys(
            &work.path().join(state),
            &format!("dictionaries = {dictionaries}\n"),
        );
        std::fs::write(path, config_text(&dsn, repo, &extra))?;
    }
    let cfg = config.display().to_string();
    let cfg_plain = config_plain.display().to_string();
    let par = o.parallel.to_string();
    let tb = |step: &str, args: &[&str]| {
        let perf = o
            .perf
            .as_ref()
            .filter(|_| o.perf_steps.is_empty() || o.perf_steps.iter().any(|p| p == step))
            .map(|d| (d.join(format!("{}-{step}.data", s.name)), o.perf_hz));
        taosbackup(&o.bin, work.path(), args, perf.as_ref())
    };
    let backup = |engine: &'static str| {
        [
            "backup",
            "--config",
            &cfg,
            "--engine",
            engine,
            "--parallel",
            &par,
            "--json",
        ]
    };

    tb("init", &["init", "--config", &cfg])?;
    let full = tb("full", &backup("full"))?;
    let repo_bytes = dir_bytes(&repo)?;
    let repo_index_bytes = dir_bytes(&repo.join("index"))?;
    let repo_snapshot_bytes = dir_bytes(&repo.join("snapshots"))?;
    tb("init-plain", &["init", "--config", &cfg_plain])?;
    let mut args = backup("full");
    args[2] = &cfg_plain;
    let full_plain = tb("full-plain", &args)?;
    let repo_plain_bytes = dir_bytes(&repo_plain)?;
    // The bitmap engine's first run establishes its tracker (a full backup of its own).
    let bitmap_first = tb("bitmap-first", &backup("bitmap"))?;
    let nothing = tb("nothing", &backup("bitmap"))?;
    let fixed_changed = change(&taos, s, o.fixed_blocks, 0).await?;
    let fixed = tb("fixed", &backup("bitmap"))?;
    // `--incr-rounds K`: K such incrementals, each after its own ~1% of changes; the one of
    // median tool time is reported (one run of ~0.1 s varies by a few ms between runs).
    let mut pcts = Vec::with_capacity(o.incr_rounds);
    let mut pct_changed = 0;
    for r in 0..o.incr_rounds {
        pct_changed = change(&taos, s, (blocks / 100).max(1), 1 + r).await?;
        let step = if r == 0 {
            "pct".into()
        } else {
            format!("pct-{}", r + 1)
        };
        pcts.push(tb(&step, &backup("bitmap"))?);
    }
    pcts.sort_by(|a, b| a.tool_or_wall().total_cmp(&b.tool_or_wall()));
    if pcts.len() > 1 {
        let tools: Vec<String> = pcts
            .iter()
            .map(|r| format!("{:.1}", r.tool_or_wall() * 1e3))
            .collect();
        eprintln!("== 1% incrementals, tool ms, sorted: {}", tools.join(" "));
    }
    let pct = pcts.swap_remove(pcts.len() / 2);

    let list = tb("list", &["list", "--config", &cfg, "--json"])?;
    let backups: Vec<serde_json::Value> = serde_json::from_str(&list.stdout)
        .with_context(|| format!("`list --json` printed {}", list.stdout))?;
    let full_id = backups
        .first()
        .and_then(|b| b["id"].as_str())
        .with_context(|| format!("no backup id in `list --json`: {}", list.stdout))?
        .to_string();
    // Free the source's memory before the restore target fills up.
    drop(taos);
    drop(emu);
    let target = Emulator::start(EmulatorConfig::from_env())?;
    let target_dsn = target.dsn();
    let args = restore_args(&cfg, &target_dsn, &full_id, "bench_restored", &par);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restore = tb("restore", &args)?;
    let taos = connect(&target_dsn).await?;
    let restored = count(&taos, "bench_restored").await?;
    if restored != total_rows as u64 {
        bail!("restored {restored} rows, expected {total_rows}");
    }
    let hwm_end_kib = self_status_kib("VmHWM:").unwrap_or(0);
    drop(taos);
    drop(target);
    Ok(Figures {
        scale: s.clone(),
        load_secs,
        load_cpu_secs,
        rss_before_load_kib,
        rss_after_load_kib,
        hwm_end_kib,
        ceiling_secs: ceiling.secs,
        ceiling_cpu_secs: ceiling.cpu_secs,
        stb_read_secs: stb_read.secs,
        stb_read_cpu_secs: stb_read.cpu_secs,
        raw_bytes,
        zstd_bytes,
        zstd_table_bytes,
        full,
        repo_bytes,
        repo_index_bytes,
        repo_snapshot_bytes,
        full_plain,
        repo_plain_bytes,
        bitmap_first,
        nothing,
        fixed_changed,
        fixed,
        pct_changed,
        pct,
        list,
        restore,
        load_avg: load_avg(),
    })
}

/// `--daemon-fulls K`: what a full backup costs in `taosbackup daemon`, which derives the
/// repository key once when it starts, against the same backup run by `taosbackup backup`
/// (which derives it every run). Each of the K daemons gets a fresh repository (a full into a
/// repository that holds the same blocks stores nothing new) and one full backup
/// (`engine = "full"`, no change feed), scheduled `--daemon-every` seconds after its start,
/// when the start-up and the key's derivation are over: the backup is charged the daemon
/// process's CPU (/proc) from just before it falls due to its success (`/backup/status`).
async fn daemon_fulls(o: &Opts, s: &Scale, k: usize) -> Result<()> {
    let emu = Emulator::start(EmulatorConfig::from_env())?;
    let dsn = emu.dsn();
    let taos = connect(&dsn).await?;
    eprintln!(
        "== scale {}: {} tables × {} rows = {} rows; load average {}",
        s.name,
        s.tables,
        s.rows,
        s.total_rows(),
        load_avg()
    );
    load(&taos, s).await?;
    let work = tempfile::tempdir()?;
    let par = o.parallel.to_string();
    let m = s.total_rows() as f64 / 1e6;
    // The one-shot commands, into a repository of their own.
    let cfg = work.path().join("cli.toml");
    std::fs::write(
        &cfg,
        config_text(&dsn, &work.path().join("cli-repo"), "engine = \"full\"\n"),
    )?;
    let cfg = cfg.display().to_string();
    taosbackup(&o.bin, work.path(), &["init", "--config", &cfg], None)?;
    let backup = [
        "backup",
        "--config",
        &cfg,
        "--engine",
        "full",
        "--parallel",
        &par,
        "--json",
    ];
    let cli = taosbackup(&o.bin, work.path(), &backup, None)?;
    let list = taosbackup(
        &o.bin,
        work.path(),
        &["list", "--config", &cfg, "--json"],
        None,
    )?;
    println!(
        "\n| full backup of {} ({m} M rows), `--parallel {par}` | wall s | CPU-s | CPU-s per million rows |",
        s.name
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| `taosbackup backup --engine full` (start-up, key, backup) | {:.2} (tool {:.2}) | {:.2} | {:.3} |",
        cli.secs,
        cli.tool_secs.unwrap_or(f64::NAN),
        cli.cpu_secs,
        cli.cpu_secs / m
    );
    println!(
        "| `taosbackup list` (start-up and key only) | {:.2} | {:.2} | – |",
        list.secs, list.cpu_secs
    );
    let mut per = Vec::with_capacity(k);
    for i in 1..=k {
        let (wall, cpu) = daemon_full(o, s, &dsn, work.path(), i)?;
        per.push(cpu / m);
        println!(
            "| `taosbackup daemon`, full {i} (fresh repository; the daemon started before) | {wall:.2} | {cpu:.2} | {:.3} |",
            cpu / m
        );
    }
    per.sort_by(f64::total_cmp);
    println!(
        "\nDaemon CPU-s per million rows, median of {k}: {:.3} (one-shot `backup`: {:.3}); load average {}",
        per[per.len() / 2],
        cli.cpu_secs / m,
        load_avg()
    );
    drop(taos);
    drop(emu);
    Ok(())
}

/// One daemon of [`daemon_fulls`] (the `i`-th, in `dir`): its full backup's wall time (as
/// `/backup/status` gives it) and the daemon process's CPU-s over it.
fn daemon_full(o: &Opts, s: &Scale, dsn: &str, dir: &Path, i: usize) -> Result<(f64, f64)> {
    let repo = dir.join(format!("daemon-repo-{i}"));
    let config = dir.join(format!("daemon-{i}.toml"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // The schedule is read in UTC (TZ below): one full, `every` seconds from now.
    let every = o.daemon_every as u64;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let due = now.as_secs() + every;
    let (h, mi, se) = ((due / 3600) % 24, (due / 60) % 60, due % 60);
    let extra = format!(
        "engine = \"full\"\nparallel = {}\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\n\
         feed_refresh_interval = \"1h\"\n\n[schedule]\nfull = \"{se} {mi} {h} * * *\"\n\
         retry_count = 0\n",
        o.parallel
    );
    std::fs::write(&config, config_text(dsn, &repo, &extra))?;
    let cfg = config.display().to_string();
    taosbackup(&o.bin, dir, &["init", "--config", &cfg], None)?;
    eprintln!("$ taosbackup daemon --config {cfg} (a full at {h:02}:{mi:02}:{se:02} UTC)");
    let err_path = dir.join(format!("daemon-{i}-stderr.txt"));
    let mut child = Command::new(&o.bin)
        .args(["daemon", "--config", &cfg])
        .current_dir(dir)
        .env("TAOSBACKUP_PASSWORD", "bench password")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("running {}", o.bin.display()))?;
    let pid = child.id();
    let due_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(due);
    let deadline = due_at + std::time::Duration::from_secs(300);
    let mut before = None;
    let result = loop {
        let now = std::time::SystemTime::now();
        if now > deadline {
            break Err(anyhow::anyhow!(
                "the daemon's full backup did not succeed in time"
            ));
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!("the daemon exited early: {status}"));
        }
        // Just before the backup falls due: the daemon's start-up is over (a start-up still
        // running then makes the figure too high, not too low).
        if before.is_none() && now + std::time::Duration::from_millis(300) >= due_at {
            before = Some(proc_cpu_secs(pid).context("reading the daemon's CPU")?);
        }
        let last = http_get(port, "/backup/status")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .map(|v| v["databases"][DB]["last_success"].clone())
            .filter(|l| !l.is_null());
        if let (Some(l), Some(cpu0)) = (last, before) {
            let cpu = proc_cpu_secs(pid).context("reading the daemon's CPU")? - cpu0;
            let wall = l["duration_seconds"].as_f64().unwrap_or(f64::NAN);
            let rows = l["stats"]["rows"].as_u64().unwrap_or(0);
            if rows != s.total_rows() as u64 {
                break Err(anyhow::anyhow!(
                    "the daemon backed up {rows} rows, not {}",
                    s.total_rows()
                ));
            }
            eprintln!("[daemon full {i}: {wall:.2} s, CPU {cpu:.2} s]");
            break Ok((wall, cpu));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // SIGTERM: the daemon's clean stop.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    result.map_err(|e| {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        anyhow::anyhow!("{e}:\n{stderr}")
    })
}

/// The body of `GET path` on 127.0.0.1:`port`, if it answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// User plus system CPU seconds of process `pid` so far (/proc/PID/stat, fields 14 and 15).
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from the parenthesis that ends it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// The markdown table of one or more scales, one column each.
fn table(o: &Opts, fs: &[Figures]) -> String {
    fn mib(kib: i64) -> f64 {
        kib as f64 / 1024.0
    }
    fn pct(a: f64, b: f64) -> f64 {
        100.0 * a / b
    }
    fn tool(r: &Run) -> String {
        r.tool_secs
            .map_or_else(|| "n/a".to_string(), |t| format!("{t:.2}"))
    }
    fn tool_ratio(a: &Run, b: &Run, as_pct: bool) -> String {
        match (a.tool_secs, b.tool_secs) {
            (Some(x), Some(y)) if as_pct => format!("{:.1}%", pct(x, y)),
            (Some(x), Some(y)) => format!("{:.2}×", x / y),
            _ => "n/a".into(),
        }
    }
    fn time(r: &Run) -> String {
        format!(
            "{:.2} s (tool {} s; CPU {:.2} s tool, {:.2} s emulator)",
            r.secs,
            tool(r),
            r.cpu_secs,
            r.emu_cpu_secs
        )
    }
    /// `; N storage operations` from a run's `--json` output, when it reports them.
    fn storage_ops(r: &Run) -> String {
        serde_json::from_str::<serde_json::Value>(&r.stdout)
            .ok()
            .and_then(|v| v.get("storage_operations").and_then(|o| o.as_u64()))
            .map_or_else(String::new, |n| format!("; {n} storage operations"))
    }
    fn incr(r: &Run, n: usize, f: &Figures) -> String {
        format!(
            "{} blocks ({:.2}%): {:.2} s = **{:.1}%** of full wall; tool {} s = **{}** of full tool{}",
            n,
            pct(n as f64, f.scale.blocks() as f64),
            r.secs,
            pct(r.secs, f.full.secs),
            tool(r),
            tool_ratio(r, &f.full, true),
            storage_ops(r)
        )
    }
    type Row<'a> = (&'a str, &'a dyn Fn(&Figures) -> String, &'a str);
    let rows: Vec<Row> = vec![
        (
            "data",
            &|f| {
                format!(
                    "{} tables × {} rows = {} rows, {} blocks (1 d buckets)",
                    f.scale.tables,
                    f.scale.rows,
                    f.scale.total_rows(),
                    f.scale.blocks()
                )
            },
            "",
        ),
        ("load average at the end", &|f| f.load_avg.clone(), ""),
        (
            "load (multi-row INSERT)",
            &|f| {
                format!(
                    "{:.2} s (CPU {:.2} s, driver + emulator: {:.0} k rows per CPU-s)",
                    f.load_secs,
                    f.load_cpu_secs,
                    f.scale.total_rows() as f64 / f.load_cpu_secs / 1e3
                )
            },
            "",
        ),
        (
            "emulator memory per row ((RSS after − before load) / rows)",
            &|f| {
                format!(
                    "**{:.1} B**",
                    (f.rss_after_load_kib - f.rss_before_load_kib) as f64 * 1024.0
                        / f.scale.total_rows() as f64
                )
            },
            "≤ 40 B",
        ),
        (
            "emulator RSS after load / bench process peak so far",
            &|f| {
                format!(
                    "{:.0} / {:.0} MiB",
                    mib(f.rss_after_load_kib),
                    mib(f.hwm_end_kib)
                )
            },
            "",
        ),
        (
            "read ceiling (`SELECT *` per table)",
            &|f| {
                format!(
                    "{:.2} s (CPU {:.2} s, reader + emulator)",
                    f.ceiling_secs, f.ceiling_cpu_secs
                )
            },
            "",
        ),
        (
            "read 100 tables per query (`… FROM meters WHERE TBNAME IN (…)`)",
            &|f| {
                format!(
                    "{:.2} s = {:.2}× the read ceiling (CPU {:.2} s, reader + emulator)",
                    f.stb_read_secs,
                    f.stb_read_secs / f.ceiling_secs,
                    f.stb_read_cpu_secs
                )
            },
            "",
        ),
        ("`backup --engine full`", &|f| time(&f.full), ""),
        (
            "full / read ceiling: wall; tool",
            &|f| {
                format!(
                    "**{:.2}×**; **{}**",
                    f.full.secs / f.ceiling_secs,
                    f.full
                        .tool_secs
                        .map_or_else(|| "n/a".into(), |t| format!("{:.2}×", t / f.ceiling_secs))
                )
            },
            "≤ 1.25×",
        ),
        (
            "full backup per million rows: wall; tool",
            &|f| {
                let m = f.scale.total_rows() as f64 / 1e6;
                format!(
                    "{:.2} s; {} s",
                    f.full.secs / m,
                    f.full
                        .tool_secs
                        .map_or_else(|| "n/a".into(), |t| format!("{:.2}", t / m))
                )
            },
            "",
        ),
        (
            "full backup tool CPU-s per million rows",
            &|f| {
                format!(
                    "{:.3}",
                    f.full.cpu_secs / (f.scale.total_rows() as f64 / 1e6)
                )
            },
            "≤ 0.12",
        ),
        (
            // What a backup costs without the process's start-up: mostly the Argon2id
            // derivation of the repository key, which `taosbackup daemon` pays once when it
            // opens the repository, not once per scheduled backup. `list` is the cheapest
            // command that starts, derives the key and reads the repository.
            "full backup tool CPU-s per million rows less one `list` run (start-up, key derivation)",
            &|f| {
                format!(
                    "{:.3} ({:.2} − {:.2} CPU-s)",
                    (f.full.cpu_secs - f.list.cpu_secs) / (f.scale.total_rows() as f64 / 1e6),
                    f.full.cpu_secs,
                    f.list.cpu_secs
                )
            },
            "",
        ),
        (
            "`backup --engine full` without shared dictionaries",
            &|f| time(&f.full_plain),
            "",
        ),
        (
            "shared dictionaries: tool CPU; repository (with / without)",
            &|f| {
                format!(
                    "**{:+.0}%** ({:.2} / {:.2} CPU-s); {:.2}× ({} / {} B)",
                    (f.full.cpu_secs / f.full_plain.cpu_secs - 1.0) * 100.0,
                    f.full.cpu_secs,
                    f.full_plain.cpu_secs,
                    f.repo_bytes as f64 / f.repo_plain_bytes as f64,
                    f.repo_bytes,
                    f.repo_plain_bytes
                )
            },
            "no more CPU",
        ),
        (
            "`backup --engine bitmap`, first run (tracker start)",
            &|f| time(&f.bitmap_first),
            "",
        ),
        (
            "incremental, nothing changed",
            &|f| time(&f.nothing),
            "< 1 s on 10,000 tables",
        ),
        (
            "incremental, fixed number of changed blocks",
            &|f| incr(&f.fixed, f.fixed_changed, f),
            "",
        ),
        (
            "incremental, 1% of blocks changed",
            &|f| incr(&f.pct, f.pct_changed, f),
            "≤ 3%",
        ),
        (
            "`restore` of the full backup",
            &|f| {
                let ops = storage_ops(&f.restore);
                // Issue 18 asks for the tool's and the emulator's CPU apart.
                format!(
                    "{:.2} s = **{:.2}×** backup wall; tool {} s = **{}** backup tool; \
                     CPU {:.2} s tool, {:.2} s emulator{ops}",
                    f.restore.secs,
                    f.restore.secs / f.full.secs,
                    tool(&f.restore),
                    tool_ratio(&f.restore, &f.full, false),
                    f.restore.cpu_secs,
                    f.restore.emu_cpu_secs
                )
            },
            "≤ 1×",
        ),
        (
            "rows/s per core: backup; restore (rows / wall s / cores)",
            &|f| {
                let r = f.scale.total_rows() as f64;
                format!(
                    "{:.0} k; {:.0} k ({} cores)",
                    r / f.full.secs / cores() / 1e3,
                    r / f.restore.secs / cores() / 1e3,
                    cores()
                )
            },
            "",
        ),
        (
            "raw block stream",
            &|f| {
                format!(
                    "{} B ({:.1} B/row)",
                    f.raw_bytes,
                    f.raw_bytes as f64 / f.scale.total_rows() as f64
                )
            },
            "",
        ),
        (
            "zstd-3 of the raw stream (one frame)",
            &|f| {
                format!(
                    "{} B ({:.1} B/row)",
                    f.zstd_bytes,
                    f.zstd_bytes as f64 / f.scale.total_rows() as f64
                )
            },
            "",
        ),
        (
            "zstd-3 of each table's raw blocks, summed",
            &|f| {
                format!(
                    "{} B ({:.1} B/row)",
                    f.zstd_table_bytes,
                    f.zstd_table_bytes as f64 / f.scale.total_rows() as f64
                )
            },
            "",
        ),
        (
            "repository after the full backup",
            &|f| {
                format!(
                    "{} B ({:.1} B/row) = **{:.2}×** zstd-3 stream, **{:.2}×** per-table zstd-3; \
                     index {} B ({:.1}%), snapshots {} B",
                    f.repo_bytes,
                    f.repo_bytes as f64 / f.scale.total_rows() as f64,
                    f.repo_bytes as f64 / f.zstd_bytes as f64,
                    f.repo_bytes as f64 / f.zstd_table_bytes as f64,
                    f.repo_index_bytes,
                    100.0 * f.repo_index_bytes as f64 / f.repo_bytes as f64,
                    f.repo_snapshot_bytes
                )
            },
            "≤ 0.6×",
        ),
        (
            "process start + repository open (`taosbackup list` wall)",
            &|f| format!("{:.2} s", f.list.secs),
            "",
        ),
        (
            "peak RSS: full / nothing changed / fixed / 1% / restore",
            &|f| {
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} / {:.1} MiB",
                    mib(f.full.maxrss_kib),
                    mib(f.nothing.maxrss_kib),
                    mib(f.fixed.maxrss_kib),
                    mib(f.pct.maxrss_kib),
                    mib(f.restore.maxrss_kib)
                )
            },
            "bounded",
        ),
    ];
    let mut out = String::from("| measure |");
    for f in fs {
        out.push_str(&format!(" {} |", f.scale.name));
    }
    out.push_str(" design target |\n| --- |");
    for _ in fs {
        out.push_str(" --- |");
    }
    out.push_str(" --- |\n");
    for (label, cell, target) in &rows {
        out.push_str(&format!("| {label} |"));
        for f in fs {
            out.push_str(&format!(" {} |", cell(f)));
        }
        out.push_str(&format!(" {target} |\n"));
    }
    out.push_str(&format!(
        "\n`--parallel {}`, `--fixed-blocks {}`; times are wall (child process) with the tool's \
         own `--json` duration beside them.",
        o.parallel, o.fixed_blocks
    ));
    out
}

/// `/proc/loadavg`'s first three fields.
fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// A `kB` field of /proc/self/status, in KiB.
fn self_status_kib(field: &str) -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of `who` (`RUSAGE_SELF` or `RUSAGE_CHILDREN`).
fn cpu(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed value it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn cpu_self() -> f64 {
    cpu(libc::RUSAGE_SELF)
}

fn cpu_children() -> f64 {
    cpu(libc::RUSAGE_CHILDREN)
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

async fn load(taos: &Taos, o: &Scale) -> Result<()> {
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

/// Changes `n` blocks (at most all of them), spread evenly over the tables and buckets:
/// late rows, two-row overwrites and 3-row deletes in rotation, each at the start of its block's
/// bucket. `round` shifts the choice so that successive rounds change other blocks. Returns the
/// number of blocks changed.
async fn change(taos: &Taos, s: &Scale, n: usize, round: usize) -> Result<usize> {
    let blocks = s.blocks();
    let per_table = s.blocks_per_table();
    let n = n.min(blocks);
    for i in 0..n {
        let b = (i * blocks / n + round) % blocks;
        let t = b / per_table;
        let start = T0 + (b % per_table) as i64 * BUCKET_MS;
        let sql = match i % 3 {
            // A late row between two existing ones.
            0 => format!(
                "INSERT INTO {DB}.d{t} VALUES ({}, 9.99, 220, 0.35, 'late')",
                start + STEP / 2
            ),
            // Overwrites of existing rows.
            1 => format!(
                "INSERT INTO {DB}.d{t} VALUES ({start}, 1.11, 219, 0.31, 'fix') ({}, 1.12, 219, 0.31, 'fix')",
                start + STEP
            ),
            _ => format!(
                "DELETE FROM {DB}.d{t} WHERE ts >= {start} AND ts < {}",
                start + 3 * STEP
            ),
        };
        taos.exec(sql).await?;
    }
    Ok(n)
}

/// Reads every table with `SELECT *` over `parallel` connections.
async fn read_ceiling(dsn: &str, o: &Scale, parallel: usize) -> Result<Read> {
    read_tables(dsn, o.tables, parallel, 1, |tables| {
        format!("SELECT * FROM {DB}.d{}", tables.start)
    })
    .await
}

/// Child tables per query in [`read_by_super_table`].
const STB_READ_TABLES: usize = 100;

/// Reads every table's rows [`STB_READ_TABLES`] child tables per query (`SELECT <columns>,
/// TBNAME FROM meters WHERE TBNAME IN (…)`) over `parallel` connections. Checks that every
/// row came back, so a short read cannot pass for a fast one.
async fn read_by_super_table(dsn: &str, o: &Scale, parallel: usize) -> Result<Read> {
    let read = read_tables(dsn, o.tables, parallel, STB_READ_TABLES, |tables| {
        let names: Vec<String> = tables.map(|i| format!("'d{i}'")).collect();
        format!(
            "SELECT ts, current, voltage, phase, status, TBNAME FROM {DB}.meters \
             WHERE TBNAME IN ({})",
            names.join(", ")
        )
    })
    .await?;
    let expected = o.total_rows() as u64;
    anyhow::ensure!(
        read.rows == expected,
        "reading by super table gave {} rows, not {expected}",
        read.rows
    );
    Ok(read)
}

/// What one of the reads took and got.
struct Read {
    secs: f64,
    /// CPU seconds of this process (the reader and the emulator), connecting included.
    cpu_secs: f64,
    /// Raw block bytes.
    bytes: u64,
    rows: u64,
}

/// Reads tables `d0..d{tables}`, `per_query` at a time with the statement `sql` gives for
/// each run of table numbers, over `parallel` connections.
async fn read_tables(
    dsn: &str,
    tables: usize,
    parallel: usize,
    per_query: usize,
    sql: impl Fn(std::ops::Range<usize>) -> String + Clone + Send + 'static,
) -> Result<Read> {
    let cpu0 = cpu_self();
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::new();
    for _ in 0..parallel {
        conns.push(connect(dsn).await?);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for conn in conns {
        let (next, sql) = (next.clone(), sql.clone());
        tasks.push(tokio::spawn(async move {
            let (mut bytes, mut rows) = (0u64, 0u64);
            loop {
                let first = next.fetch_add(per_query, Ordering::Relaxed);
                if first >= tables {
                    return anyhow::Ok((bytes, rows));
                }
                let mut rs = conn
                    .query(sql(first..tables.min(first + per_query)))
                    .await?;
                let mut blocks = rs.blocks();
                while let Some(b) = futures::StreamExt::next(&mut blocks).await {
                    let b = b?;
                    bytes += b.as_raw_bytes().len() as u64;
                    rows += b.nrows() as u64;
                }
            }
        }));
    }
    let (mut bytes, mut rows) = (0, 0);
    for task in tasks {
        let (b, r) = task.await??;
        bytes += b;
        rows += r;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(Read {
        secs,
        cpu_secs: cpu_self() - cpu0,
        bytes,
        rows,
    })
}

/// zstd level 3 of the concatenated raw blocks of every table, as one streamed frame (not
/// held in memory: at 50 M rows the stream is ~1.4 GB), and the sum of zstd-3 of each table's
/// raw blocks compressed on their own (no help from other tables' data, as a repository that
/// stores blocks separately sees them): (raw bytes, one-frame bytes, per-table bytes).
async fn raw_zstd(taos: &Taos, o: &Scale) -> Result<(u64, u64, u64)> {
    let mut frame = zstd::stream::write::Encoder::new(Counter(0), 3)
        .context("zstd level 3 encoder for the raw stream")?;
    let mut raw = 0u64;
    let mut per_table = 0u64;
    let mut table = Vec::new();
    for i in 0..o.tables {
        table.clear();
        let mut rs = taos.query(format!("SELECT * FROM {DB}.d{i}")).await?;
        let mut blocks = rs.blocks();
        while let Some(b) = futures::StreamExt::next(&mut blocks).await {
            table.extend_from_slice(b?.as_raw_bytes());
        }
        std::io::Write::write_all(&mut frame, &table).context("zstd of the raw stream")?;
        raw += table.len() as u64;
        per_table += zstd::bulk::compress(&table, 3)
            .context("zstd level 3 of a table's raw blocks")?
            .len() as u64;
    }
    let frame = frame.finish().context("finishing the zstd frame")?.0;
    Ok((raw, frame, per_table))
}

/// A writer that only counts bytes.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
/// fails on a non-zero exit; reports wall time, the tool's own duration (from its `--json`
/// output: `duration_secs` of backup, `duration` of restore), CPU seconds and peak RSS. With
/// `perf` (a file, a frequency), the child runs under `perf record --call-graph dwarf` writing
/// that file.
fn taosbackup(
    bin: &Path,
    dir: &Path,
    args: &[&str],
    perf: Option<&(PathBuf, usize)>,
) -> Result<Run> {
    eprintln!("$ taosbackup {}", args.join(" "));
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let mut cmd = match perf {
        Some((data, hz)) => {
            let mut c = Command::new("perf");
            c.args([
                "record",
                "--call-graph",
                "dwarf,16384",
                "-F",
                &hz.to_string(),
                "-o",
            ])
            .arg(data)
            .arg("--")
            .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let self0 = cpu_self();
    let children0 = cpu_children();
    let t = Instant::now();
    let mut child = cmd
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
    let cpu_secs = cpu_children() - children0;
    let emu_cpu_secs = cpu_self() - self0;
    let stdout = std::fs::read_to_string(&out_path)?;
    let stderr = std::fs::read_to_string(&err_path)?;
    let ok = status.success();
    if std::env::var_os("RUST_LOG").is_some() {
        // The tool's log (its phase timings at `taosbackup_engine=debug`), run by run.
        eprint!("{stderr}");
    }
    eprintln!(
        "[{} in {secs:.2} s, CPU {cpu_secs:.2} s (emulator {emu_cpu_secs:.2} s), peak RSS {} KiB, load {}] {}",
        if ok { "ok" } else { "FAILED" },
        hwm_kib,
        load_avg(),
        stdout.lines().last().unwrap_or("")
    );
    if !ok {
        bail!(
            "taosbackup {} failed ({status}):\n{stdout}\n{stderr}",
            args.join(" ")
        );
    }
    let tool_secs = serde_json::from_str::<serde_json::Value>(&stdout)
        .ok()
        .and_then(|v| {
            v.get("duration_secs")
                .or_else(|| v.get("duration"))
                .and_then(serde_json::Value::as_f64)
        });
    Ok(Run {
        secs,
        tool_secs,
        cpu_secs,
        emu_cpu_secs,
        maxrss_kib: hwm_kib,
        stdout,
    })
}
