//! Measures how fast the emulator serves `SELECT *` of one large table to the real `taos`
//! connector, so benchmarks of taosbackup know the emulator is not their bottleneck.
//!
//! ```text
//! cargo xtask bench emu            # 10 M rows
//! cargo run --release -p taosbackup-testkit --example emu_bench -- 1000000
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use taos::{AsyncFetchable, AsyncQueryable};
use taosbackup_testkit::{Emulator, EmulatorConfig, Session};

#[path = "shared/connect.rs"]
mod shared;

#[tokio::main]
async fn main() -> Result<()> {
    let rows: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().context("usage: emu_bench [ROWS]")?,
        None => 10_000_000,
    };
    let emu = Emulator::start(EmulatorConfig::default())?;
    let store = emu.store();
    let mut session = Session::default();
    store.execute(
        &mut session,
        "CREATE DATABASE bench KEEP 36500 WAL_RETENTION_PERIOD 0",
    )?;
    store.execute(
        &mut session,
        "CREATE TABLE bench.t (ts TIMESTAMP, current FLOAT, voltage INT, phase FLOAT, note VARCHAR(16))",
    )?;
    // Load through the store directly: this measures serving, not parsing.
    let load = Instant::now();
    let base = 1_700_000_000_000i64;
    let chunk = 10_000;
    let mut sql = String::with_capacity(chunk * 48);
    for start in (0..rows).step_by(chunk) {
        sql.clear();
        sql.push_str("INSERT INTO bench.t VALUES ");
        for i in start..(start + chunk).min(rows) {
            let v = (i % 1000) as f32 / 100.0;
            sql.push_str(&format!(
                "({}, {v}, {}, {v}, 'n{}')",
                base + i as i64,
                200 + (i % 40),
                i % 97
            ));
        }
        store.execute(&mut session, &sql)?;
    }
    let load_s = load.elapsed().as_secs_f64();

    let taos = shared::connect(&emu.dsn()).await?;
    let start = Instant::now();
    let mut rs = taos.query("SELECT * FROM bench.t").await?;
    let first_reply = start.elapsed().as_secs_f64();
    let (mut n, mut bytes, mut blocks) = (0usize, 0usize, 0usize);
    while let Some(block) = rs.blocks().try_next().await? {
        n += block.nrows();
        bytes += block.as_raw_bytes().len();
        blocks += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(n == rows, "read {n} rows, expected {rows}");
    println!("emulator SELECT * benchmark");
    println!(
        "  rows loaded:        {rows} in {load_s:.2} s ({:.0} rows/s via SQL INSERT)",
        rows as f64 / load_s
    );
    println!(
        "  rows served:        {n} in {blocks} raw blocks, {:.1} MB",
        bytes as f64 / 1e6
    );
    println!("  SELECT * time:      {secs:.2} s ({first_reply:.2} s until the query reply)");
    println!("  rows/s:             {:.0}", n as f64 / secs);
    println!("  raw-block MB/s:     {:.1}", bytes as f64 / 1e6 / secs);
    Ok(())
}
