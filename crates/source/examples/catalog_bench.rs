//! How long reading the catalog of a database with many child tables takes, against the
//! emulator over a real WebSocket.
//!
//! `cargo run --release -p taosbackup-source --example catalog_bench -- [tables [reads]]`
//! (default 10,000 child tables over two super tables with 3 typed tags each, read 5 times;
//! more reads give a profiler more samples of the reads alone).

use std::time::Instant;

use taosbackup_source::{ConnectOptions, TaosSource};
use taosbackup_testkit::{Emulator, EmulatorConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tables: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    let reads: usize = match std::env::args().nth(2) {
        Some(n) => n.parse::<usize>()?.max(1),
        None => 5,
    };
    let emu = Emulator::start(EmulatorConfig::default())?;
    let src = TaosSource::connect(ConnectOptions::new(emu.dsn()))?;
    src.execute("CREATE DATABASE bench").await?;
    for s in ["s0", "s1"] {
        src.execute(&format!(
            "CREATE STABLE bench.{s} (ts TIMESTAMP, v DOUBLE) TAGS (id INT, name NCHAR(16), loc VARCHAR(32))"
        ))
        .await?;
    }
    let started = Instant::now();
    for batch in (0..tables).collect::<Vec<_>>().chunks(1000) {
        let mut sql = String::from("CREATE TABLE");
        for i in batch {
            sql.push_str(&format!(
                " bench.t{i} USING bench.s{} TAGS ({i}, '名{i}', 'site-{}')",
                i % 2,
                i % 97
            ));
        }
        src.execute(&sql).await?;
    }
    println!("created {tables} child tables in {:?}", started.elapsed());
    let mut times = Vec::new();
    for _ in 0..reads {
        let before = emu.requests();
        let t = Instant::now();
        let cat = src.read_catalog("bench").await?;
        let took = t.elapsed();
        anyhow::ensure!(
            cat.tables.len() == tables,
            "got {} tables",
            cat.tables.len()
        );
        println!(
            "catalog: {} tables, {} requests, {:.1} ms",
            cat.tables.len(),
            emu.requests() - before,
            took.as_secs_f64() * 1e3
        );
        times.push(took);
    }
    times.sort();
    println!(
        "median {:.1} ms, best {:.1} ms for {tables} tables",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
    Ok(())
}
