//! The end-to-end demo behind `cargo xtask demo`: the `taosbackup` binary against the
//! emulator, printing every command it runs and its result.
//!
//! 1. starts the emulator on a free loopback port and loads a meters-style database (a super
//!    table with tags and every column type, 300 child tables, a normal table);
//! 2. `taosbackup init`, then a full backup with `--engine bitmap`;
//! 3. changes data: late rows, overwrites, a delete, a new table, a dropped table;
//! 4. an incremental backup (`--engine bitmap`), `list`, `plan`;
//! 5. restores both backup points into new databases and compares them, value by value,
//!    with the source as it was at each point; `verify --read-data`.
//!
//! Usage: `cargo run --release -p taosbackup-testkit --example demo -- PATH/TO/taosbackup`
//! (xtask builds both and passes the path). Exits non-zero if anything differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use taos::{AsyncFetchable, AsyncQueryable, Taos};
use taosbackup_testkit::{Emulator, EmulatorConfig};

#[path = "shared/connect.rs"]
mod shared;

const DB: &str = "power";
const TABLES: usize = 300;
/// Three days of rows, one every 15 minutes, starting 2026-11-01 (inside the default KEEP).
const T0: i64 = 1_761_955_200_000;
const STEP: i64 = 15 * 60 * 1000;
const ROWS: i64 = 3 * 96;

fn main() -> Result<()> {
    let bin = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: demo PATH/TO/taosbackup")?;
    // The binary runs in a scratch directory: resolve a relative path first.
    let bin =
        std::fs::canonicalize(&bin).with_context(|| format!("no binary at {}", bin.display()))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(&bin))
}

async fn run(bin: &Path) -> Result<()> {
    let started = Instant::now();
    // TAOS_EMU_SERVER_VERSION=3.4.0.0 runs the demo against the 3.4 behaviour set.
    let emu = Emulator::start(EmulatorConfig::from_env())?;
    let dsn = emu.dsn();
    println!("== emulator listening at {dsn}");
    let taos = shared::connect(&dsn).await?;
    load(&taos).await?;
    println!(
        "== loaded {DB}: {TABLES} child tables of `meters` ({} rows), normal table `logs`",
        TABLES as i64 * ROWS
    );

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
            work.path().join("power.bitmap").display()
        ),
    )?;
    println!(
        "== config {}:\n{}",
        config.display(),
        std::fs::read_to_string(&config)?
    );
    let cfg = config.display().to_string();
    let tb = |args: &[&str]| taosbackup(bin, work.path(), args);

    tb(&["init", "--config", &cfg])?;
    tb(&["backup", "--config", &cfg])?;
    let point1 = contents(&taos, DB).await?;

    // Changes a time-window tool would miss: late rows into the first day, overwrites of
    // existing rows, a delete, a new table, a dropped table.
    let changes = [
        format!(
            "INSERT INTO {DB}.d10 VALUES ({}, true, -1, -1, -1, -1, 1, 1, 1, 1, 0.5, 0.25, 'late', '迟到', '\\x0a', 'POINT(9 9)')",
            T0 + 7 * 60 * 1000
        ),
        format!(
            "INSERT INTO {DB}.d11 VALUES ({T0}, false, 7, 7, 7, 7, 7, 7, 7, 7, 7.5, 7.25, 'overwrite', '覆盖', '\\x07', 'POINT(7 7)')"
        ),
        format!(
            "DELETE FROM {DB}.d12 WHERE ts >= {} AND ts < {}",
            T0 + 96 * STEP,
            T0 + 120 * STEP
        ),
        format!("CREATE TABLE {DB}.d_new USING {DB}.meters TAGS ('new site', 999)"),
        format!(
            "INSERT INTO {DB}.d_new VALUES ({}, true, 1, 2, 3, 4, 5, 6, 7, 8, 1.5, 2.5, 'fresh', '新', '\\x01', 'POINT(1 1)')",
            T0 + ROWS * STEP
        ),
        format!("DROP TABLE {DB}.d13"),
        format!(
            "INSERT INTO {DB}.`logs` VALUES ({}, 2, 'after the full backup')",
            T0 + 5
        ),
    ];
    for sql in &changes {
        println!("== source: {sql}");
        taos.exec(sql.as_str()).await?;
    }
    tb(&["plan", "--config", &cfg])?;
    tb(&["backup", "--config", &cfg])?;
    let point2 = contents(&taos, DB).await?;
    let list = tb(&["list", "--config", &cfg, "--json"])?;
    tb(&["list", "--config", &cfg])?;
    let backups: Vec<serde_json::Value> = serde_json::from_str(&list)?;
    if backups.len() != 2 {
        bail!("expected 2 backups, `list --json` shows {}", backups.len());
    }
    let (full, incr) = (&backups[0], &backups[1]);
    if full["kind"] != "full" || incr["kind"] != "incremental" {
        bail!("expected a full then an incremental backup: {list}");
    }
    let ids = [
        full["id"].as_str().context("id")?.to_string(),
        incr["id"].as_str().context("id")?.to_string(),
    ];
    tb(&["show", "--config", &cfg, &ids[1]])?;

    for (i, (id, expected)) in ids.iter().zip([&point1, &point2]).enumerate() {
        let target = format!("{DB}_point{}", i + 1);
        tb(&[
            "restore",
            "--config",
            &cfg,
            "--target",
            &dsn,
            "--backup",
            id,
            "--target-database",
            &target,
        ])?;
        let got = contents(&taos, &target).await?;
        compare(expected, &got, &target)?;
        let rows: usize = got.values().map(|r| r.len()).sum();
        println!(
            "== {target}: {} tables, {rows} rows, identical to {DB} at backup {}",
            got.len(),
            &id[..8]
        );
    }
    tb(&["verify", "--config", &cfg, "--read-data"])?;
    println!(
        "== demo finished in {:.1} s: both backup points restored exactly",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the binary, prints the command line and its output, fails on a non-zero exit.
fn taosbackup(bin: &Path, dir: &Path, args: &[&str]) -> Result<String> {
    println!("\n$ taosbackup {}", args.join(" "));
    let t = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("TAOSBACKUP_PASSWORD", "demo password")
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "[exit {} in {:.2} s]",
        out.status.code().unwrap_or(-1),
        t.elapsed().as_secs_f64()
    );
    if !out.status.success() {
        bail!("taosbackup {} failed", args.join(" "));
    }
    Ok(stdout)
}

async fn load(taos: &Taos) -> Result<()> {
    taos.exec(format!("CREATE DATABASE {DB} PRECISION 'ms' VGROUPS 4"))
        .await?;
    taos.exec(format!(
        "CREATE STABLE {DB}.meters (ts TIMESTAMP, ok BOOL, i8 TINYINT, i16 SMALLINT, i32 INT, \
         i64 BIGINT, u8 TINYINT UNSIGNED, u16 SMALLINT UNSIGNED, u32 INT UNSIGNED, \
         u64 BIGINT UNSIGNED, current FLOAT, voltage DOUBLE, note VARCHAR(24), label NCHAR(8), \
         raw VARBINARY(8), pos GEOMETRY(64)) TAGS (location VARCHAR(24), groupid INT)"
    ))
    .await?;
    taos.exec(format!(
        "CREATE TABLE {DB}.`logs` (ts TIMESTAMP, level INT, msg NCHAR(32))"
    ))
    .await?;
    for t in 0..TABLES {
        taos.exec(format!(
            "CREATE TABLE {DB}.d{t} USING {DB}.meters TAGS ('site {}', {})",
            t % 17,
            t % 10
        ))
        .await?;
    }
    // 24 rows per statement per table keeps statements small and the load fast.
    for t in 0..TABLES {
        for chunk in 0..(ROWS / 24) {
            let mut sql = format!("INSERT INTO {DB}.d{t} VALUES");
            for k in chunk * 24..(chunk + 1) * 24 {
                let ts = T0 + k * STEP;
                let v = (t as i64 * 31 + k * 7) % 1000;
                let null_note = if v % 13 == 0 {
                    "NULL".to_string()
                } else {
                    format!("'n{v}'")
                };
                sql.push_str(&format!(
                    " ({ts}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}.25, {}.125, {null_note}, '电{}', '\\x{:02x}', 'POINT({} {})')",
                    v % 2 == 0,
                    v % 127,
                    v,
                    v * 1000,
                    v * 1_000_000,
                    v % 255,
                    v,
                    v * 10,
                    v * 1000,
                    v,
                    220 + v % 20,
                    v % 10,
                    v % 256,
                    v % 90,
                    t % 90
                ));
            }
            taos.exec(sql).await?;
        }
    }
    taos.exec(format!(
        "INSERT INTO {DB}.`logs` VALUES ({T0}, 1, 'start') ({}, 3, NULL)",
        T0 + STEP
    ))
    .await?;
    Ok(())
}

/// Every table of `db` → its rows in timestamp order (values rendered exactly), plus its tags.
async fn contents(taos: &Taos, db: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let mut tables = Vec::new();
    let mut rs = taos
        .query(format!(
            "SELECT table_name FROM information_schema.ins_tables WHERE db_name = '{db}'"
        ))
        .await?;
    for row in rs.to_records().await? {
        if let Some(taos::Value::VarChar(name)) = row.first() {
            tables.push(name.clone());
        }
    }
    let mut out = BTreeMap::new();
    for t in tables {
        let mut rs = taos
            .query(format!("SELECT * FROM `{db}`.`{t}` ORDER BY ts"))
            .await?;
        let mut rows: Vec<String> = rs
            .to_records()
            .await?
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect();
        if t != "logs" {
            let mut rs = taos
                .query(format!(
                    "SELECT location, groupid FROM {db}.meters WHERE tbname = '{t}' LIMIT 1"
                ))
                .await?;
            rows.extend(
                rs.to_records()
                    .await?
                    .into_iter()
                    .map(|r| format!("tags {r:?}")),
            );
        }
        out.insert(t, rows);
    }
    Ok(out)
}

fn compare(
    expected: &BTreeMap<String, Vec<String>>,
    got: &BTreeMap<String, Vec<String>>,
    target: &str,
) -> Result<()> {
    for (t, rows) in expected {
        match got.get(t) {
            None => bail!("{target}: table {t} is missing"),
            Some(g) if g != rows => bail!(
                "{target}.{t} differs: expected {} rows, got {}; first difference: {:?} vs {:?}",
                rows.len(),
                g.len(),
                rows.iter().zip(g).find(|(a, b)| a != b),
                g.len().cmp(&rows.len())
            ),
            Some(_) => {}
        }
    }
    if let Some(extra) = got.keys().find(|k| !expected.contains_key(*k)) {
        bail!("{target}: unexpected table {extra}");
    }
    Ok(())
}
