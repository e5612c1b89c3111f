//! A connection to the emulator as taosbackup makes its own, shared by the testkit's examples
//! (through `#[path]`: a file under `examples/shared/` is not an example of its own).

use anyhow::{Context, Result};
use taos::{AsyncQueryable, AsyncTBuilder, Taos, TaosBuilder};

/// Connects to `dsn` and turns Nagle's algorithm off on the connector's sockets, as
/// taosbackup does (`taosbackup_core::net`): the emulator, like taosAdapter, delays its ACKs,
/// and taos-ws 0.12.3 leaves Nagle on, so every request would wait up to 40 ms. taos-ws opens
/// the socket at the first request, so one is made first.
pub async fn connect(dsn: &str) -> Result<Taos> {
    let taos = TaosBuilder::from_dsn(dsn)?
        .build()
        .await
        .with_context(|| format!("connecting to {dsn}"))?;
    taos.exec("SELECT SERVER_VERSION()").await?;
    taosbackup_core::net::disable_nagle()?;
    Ok(taos)
}
