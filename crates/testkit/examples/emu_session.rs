//! A short scripted session against a running `taos-emu` with the real `taos` connector:
//! what a newcomer can do with the emulator, printed step by step.
//!
//! ```text
//! cargo run -p taosbackup-testkit --bin taos-emu -- --listen 127.0.0.1:6041 &
//! cargo run -p taosbackup-testkit --example emu_session -- ws://127.0.0.1:6041
//! ```

use anyhow::{Context, Result, ensure};
use futures::TryStreamExt;
use taos::{AsyncFetchable, AsyncQueryable};

#[path = "shared/connect.rs"]
mod shared;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let dsn = std::env::args()
        .nth(1)
        .context("usage: emu_session ws://HOST:PORT")?;
    let taos = shared::connect(&dsn).await?;
    println!("connected to {dsn}");

    let version: Option<(String,)> = taos.query_one("SELECT SERVER_VERSION()").await?;
    println!(
        "server version: {}",
        version.map(|v| v.0).unwrap_or_default()
    );

    for sql in [
        "DROP DATABASE IF EXISTS demo",
        "CREATE DATABASE demo PRECISION 'ms' VGROUPS 2 KEEP 3650",
        "USE demo",
        "CREATE STABLE meters (ts TIMESTAMP, current FLOAT, voltage INT, phase FLOAT, note NCHAR(16)) \
         TAGS (location VARCHAR(64), groupid INT)",
        "INSERT INTO d1001 USING meters TAGS ('California.SanFrancisco', 2) \
         VALUES (1700000000000, 10.3, 219, 0.31, 'ok') (1700000001000, 12.6, 218, 0.33, NULL) \
         (1700000002000, 12.3, 221, 0.31, '東京') \
         d1002 USING meters TAGS ('California.LosAngeles', 3) \
         VALUES (1700000000000, 11.8, 221, 0.28, NULL) (1700000001000, 13.4, 223, 0.29, 'x')",
        "CREATE TABLE d1003 USING meters TAGS ('California.SanDiego', NULL)",
    ] {
        let n = taos
            .exec(sql)
            .await
            .with_context(|| format!("executing {sql}"))?;
        println!("ok ({n} rows affected): {sql}");
    }

    let rows: Vec<(String, i64)> = taos
        .query("SELECT tbname, count(*) FROM meters PARTITION BY tbname ORDER BY tbname")
        .await?
        .deserialize()
        .try_collect()
        .await?;
    println!("rows per table: {rows:?}");

    // Late row and overwrite of an existing timestamp.
    taos.exec("INSERT INTO d1001 VALUES (1699999999000, 9.9, 210, 0.30, 'late') (1700000001000, 99.9, 230, 0.5, 'new')")
        .await?;
    let rows: Vec<(i64, f32, i32)> = taos
        .query("SELECT ts, current, voltage FROM d1001 ORDER BY ts")
        .await?
        .deserialize::<(i64, f32, i32)>()
        .try_collect()
        .await?;
    println!("d1001 after a late row and an overwrite: {rows:?}");
    ensure!(
        rows.len() == 4 && rows[2].2 == 230,
        "overwrite semantics broken: {rows:?}"
    );

    // Raw-block round trip: read d1001's rows as raw blocks, write them into d1003.
    let mut rs = taos
        .query("SELECT ts, current, voltage, phase, note FROM d1001")
        .await?;
    let mut written = 0;
    while let Some(mut block) = rs.blocks().try_next().await? {
        block.with_table_name("d1003");
        written += block.nrows();
        taos.write_raw_block(&block).await?;
    }
    let (copied,): (i64,) = taos
        .query_one("SELECT count(*) FROM d1003")
        .await?
        .context("count returned no row")?;
    println!("raw-block write: {written} rows read from d1001, {copied} rows now in d1003");
    ensure!(copied as usize == written, "raw-block round trip lost rows");

    let n = taos
        .exec("DELETE FROM d1001 WHERE ts >= 1700000000000 AND ts <= 1700000001000")
        .await?;
    println!("deleted {n} rows from d1001");

    let ddl: Vec<(String, String)> = taos
        .query("SHOW CREATE DATABASE demo")
        .await?
        .deserialize()
        .try_collect()
        .await?;
    if let Some((_, ddl)) = ddl.first() {
        println!("SHOW CREATE DATABASE demo:\n  {ddl}");
    }

    match taos.exec("SELECT * FROM no_such_table").await {
        Err(e) => println!("a missing table is an error, as in TDengine: {e}"),
        Ok(_) => anyhow::bail!("selecting a missing table succeeded"),
    }
    println!("session finished");
    Ok(())
}
