//! The connection pool: at most `pool_size` connections, a timeout on every reply, and
//! retries of transient failures on fresh connections.
//!
//! A connection that failed or timed out is never reused: taos-ws 0.12 may not notice that
//! the server dropped its socket and would wait forever for an answer.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use taos::{
    AsyncFetchable, AsyncQueryable, AsyncTBuilder, BorrowedValue, RawBlock, Taos, TaosBuilder,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::dsn::{ConnectOptions, Credentials, Endpoint};
use crate::value::to_core_value;
use crate::wsquery::WsQuery;
use taosbackup_core::Value;

/// Where an operation happens, for error messages.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ctx<'a> {
    pub(crate) database: Option<&'a str>,
    pub(crate) table: Option<&'a str>,
    /// Why the statement is sent, for the error message ("reading the catalog (ins_tables)").
    pub(crate) purpose: Option<&'static str>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn db(database: &'a str) -> Self {
        Ctx {
            database: Some(database),
            table: None,
            purpose: None,
        }
    }
    pub(crate) fn table(database: &'a str, table: &'a str) -> Self {
        Ctx {
            database: Some(database),
            table: Some(table),
            purpose: None,
        }
    }
    /// The same context, naming why the statement is sent.
    pub(crate) fn doing(mut self, purpose: &'static str) -> Self {
        self.purpose = Some(purpose);
        self
    }

    /// Names this context's database, table and purpose in a server or timeout error that
    /// did not know them (errors of the own client, which knows no context).
    pub(crate) fn fill(&self, mut e: Error) -> Error {
        if let Error::Server {
            database: d,
            table: t,
            ..
        }
        | Error::Timeout {
            database: d,
            table: t,
            ..
        } = &mut e
        {
            if d.is_none() {
                *d = self.database.map(str::to_string);
            }
            if t.is_none() {
                *t = self.table.map(str::to_string);
            }
        }
        if let Error::Server { statement, .. } = &mut e {
            statement.purpose = statement.purpose.or(self.purpose);
        }
        e
    }
}

/// A pool of connections to one endpoint (optionally with a current database).
pub(crate) struct Pool {
    endpoint: Endpoint,
    builder: TaosBuilder,
    /// Idle connections, each with whether it has reached the server yet (taos-ws opens its
    /// socket at the first request, and only then can Nagle's algorithm be turned off).
    idle: Mutex<Vec<(Taos, bool)>>,
    permits: Arc<Semaphore>,
    size: usize,
    pub(crate) retry_count: u32,
    pub(crate) retry_interval: Duration,
    pub(crate) timeout: Duration,
    server_version: std::sync::OnceLock<String>,
    /// Background work on this pool's connections (exports, abandoned fetches), so that
    /// [`Pool::close`] can wait for it.
    tasks: TaskTracker,
    /// Login of the tool's own query client ([`WsQuery`]).
    creds: Credentials,
    /// Idle connections of the tool's own query client (exports, raw-block writes).
    own_idle: Mutex<Vec<WsQuery>>,
    /// Whether the server serves the own client's binary query (learnt at its first login).
    own_usable: std::sync::OnceLock<bool>,
    /// The current database of the own client's connections (the connector's is in its DSN).
    database: Option<String>,
}

/// How long an abandoned fetch may take to be answered before its connection is closed
/// under it (see [`Pool::abandon`]).
const ABANDON_WAIT: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("endpoint", &self.endpoint)
            .field("size", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Prepares a pool; does no I/O. A native endpoint without the client library fails
    /// here with [`Error::NativeClientMissing`].
    pub(crate) fn new(
        options: &ConnectOptions,
        endpoint: Endpoint,
        creds: &Credentials,
        database: Option<&str>,
    ) -> Result<Pool, Error> {
        let dsn = endpoint.connector_dsn(creds, database);
        let builder = <TaosBuilder as AsyncTBuilder>::from_dsn(dsn.as_str()).map_err(|e| {
            let text = e.to_string();
            let lower = text.to_ascii_lowercase();
            let loader = ["library", "libtaos", "shared object", "dlopen", "taos.dll"]
                .iter()
                .any(|k| lower.contains(k));
            if endpoint.is_native() && loader {
                Error::NativeClientMissing {
                    endpoint: endpoint.to_string(),
                    host: endpoint.host.clone(),
                    detail: text,
                }
            } else {
                Error::InvalidDsn {
                    endpoint: endpoint.to_string(),
                    reason: text,
                }
            }
        })?;
        Ok(Pool {
            endpoint,
            builder,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.pool_size)),
            size: options.pool_size,
            retry_count: options.retry_count,
            retry_interval: Duration::from_millis(options.retry_interval_ms),
            timeout: options.request_timeout,
            server_version: std::sync::OnceLock::new(),
            tasks: TaskTracker::new(),
            creds: creds.clone(),
            own_idle: Mutex::new(Vec::new()),
            own_usable: std::sync::OnceLock::new(),
            database: database.map(str::to_string),
        })
    }

    /// A connection of the tool's own WebSocket query client for an export or a raw-block
    /// write, idle or new; `None` when the connector must serve instead. The caller holds a
    /// [`Pool::permit`].
    ///
    /// The own client costs less CPU per request than the connector: taos-ws 0.12.3
    /// writes every request as two `sendto` calls, hands each result set's clean-up to
    /// `spawn_blocking` and runs a reader task per connection, which the own client does
    /// not (docs/performance-history.md, "The export's own client"). It serves a plain `ws://`
    /// endpoint whose taosAdapter answers the binary query (version ≥ 3.3.0.8, as taos-ws
    /// decides); `wss://` and native endpoints, and older servers, keep the connector.
    /// With `required` (tables with DECIMAL or BLOB columns, which the connector cannot
    /// parse) it is used whatever the endpoint, and fails where it cannot serve.
    pub(crate) async fn own_client(&self, required: bool) -> Result<Option<WsQuery>, Error> {
        let suited = self.endpoint.protocol == crate::dsn::Protocol::Ws;
        if !required && (!suited || self.own_usable.get() == Some(&false)) {
            return Ok(None);
        }
        let idle = self.own_idle.lock().ok().and_then(|mut v| v.pop());
        let c = match idle {
            Some(c) => c,
            None => {
                // An idle connection of the connector makes room (see `Pool::get`).
                drop(self.idle.lock().ok().and_then(|mut v| v.pop()));
                let db = self.database.as_deref();
                WsQuery::connect(&self.endpoint, &self.creds, db, self.timeout).await?
            }
        };
        let usable = *self.own_usable.get_or_init(|| c.binary_query());
        Ok((required || usable).then_some(c))
    }

    /// Writes a raw block into `table` of the pool's database through the own client
    /// ([`WsQuery::write_raw_block`]), retrying transient failures on fresh connections as
    /// [`Pool::retry`] does. `Ok(false)`: the own client does not serve this endpoint, and
    /// nothing was written (the caller writes through the connector).
    pub(crate) async fn write_raw_block_own(
        self: &Arc<Self>,
        ctx: Ctx<'_>,
        table: &str,
        rows: u32,
        raw: &[u8],
        fields: &[(&str, u8, u32)],
    ) -> Result<bool, Error> {
        let mut attempt = 0u32;
        loop {
            let permit = self.permit().await;
            let result = match self.own_client(false).await {
                Ok(None) => return Ok(false),
                Ok(Some(mut c)) => {
                    let r = c.write_raw_block(table, rows, raw, fields).await;
                    match &r {
                        Err(e) if e.is_retryable() => self.own_client_broken(),
                        // A refusal is a reply: the connection stays good.
                        Ok(()) | Err(Error::Server { .. }) => self.own_client_idle(c),
                        Err(_) => {}
                    }
                    r
                }
                Err(e) => Err(e),
            };
            drop(permit);
            match result {
                Ok(()) => return Ok(true),
                Err(e) => self.retry_or_fail(ctx.fill(e), &mut attempt).await?,
            }
        }
    }

    /// A connection of the own client failed in a way a retry may mend (closed, timed out):
    /// the idle ones are closed too, since what broke one (a restarted server, a dropped
    /// network) has most likely broken them all, and a retry should not spend its attempts
    /// on them.
    pub(crate) fn own_client_broken(&self) {
        if let Ok(mut idle) = self.own_idle.lock() {
            idle.clear();
        }
    }

    /// Keeps a connection of the own client for the next export (one whose last result was
    /// read to its end or freed).
    pub(crate) fn own_client_idle(&self, c: WsQuery) {
        if let Ok(mut idle) = self.own_idle.lock() {
            if idle.len() < self.size {
                idle.push(c);
            }
        }
    }

    /// Spawns background work that [`Pool::close`] waits for.
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(fut)
    }

    /// Opens the pool's connections in the background, up to its size, each with one
    /// `SELECT SERVER_VERSION()` (taos-ws opens a connection's socket at its first request;
    /// the answer is kept for error messages, as [`Pool::learn_server_version`] keeps it).
    ///
    /// For a caller about to do something slow that needs no server before its first
    /// statements run at once: a backup derives the repository key (Argon2id, ~0.2 s of one
    /// core) and then reads the catalog with four statements at once, which otherwise each
    /// wait for a connection to be set up. Best effort: a failure is only logged, and the
    /// statements that follow open connections as before and report their own errors.
    /// [`Pool::close`] waits for it.
    pub(crate) fn warm_up(self: &Arc<Self>) {
        let pool = self.clone();
        self.tasks.spawn(async move {
            // All at once, each holding its connection until its answer came: a connection
            // handed back early would be taken again instead of a new one being opened.
            let opened = futures::future::join_all((0..pool.size).map(|_| async {
                let mut conn = pool.get(Ctx::default()).await?;
                conn.query_values(Ctx::default(), &crate::sql::server_version())
                    .await
            }))
            .await;
            for r in opened {
                match r {
                    Ok(rows) => {
                        if let Some(v) = rows.first_text() {
                            let _ = pool.server_version.set(v);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "opening a connection ahead of use failed");
                    }
                }
            }
        });
    }

    /// Gives up on a result set whose fetch may still be in flight (its reply timed out).
    ///
    /// taos-ws 0.12.3 keeps the reply channel of a fetch in a map until the answer arrives
    /// and then `unwrap()`s the send into it (`src/query/asyn.rs`, the `BlockNew` and
    /// `Block` arms of `read_queries`): dropping a `ResultSet` whose fetch is in flight
    /// drops the receiver, and a late answer panics the connection's reader task, printing
    /// the whole raw block. The fetch future lives inside the result set, so polling the
    /// result set again resumes it: a background task waits for the answer (up to
    /// [`ABANDON_WAIT`]), then drops the result set and the connection. When no answer
    /// comes, the connection is dropped first: that stops its reader task (the close
    /// signal of `WsTaos::drop`) before the receiver goes.
    pub(crate) fn abandon(&self, taos: Option<Taos>, mut rs: taos::ResultSet) {
        self.tasks.spawn(async move {
            let answered = tokio::time::timeout(ABANDON_WAIT, rs.blocks().next())
                .await
                .is_ok();
            if answered {
                drop(rs);
                drop(taos);
            } else {
                drop(taos);
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(rs);
            }
        });
    }

    /// Ends the pool's background work and closes its idle connections: no new export
    /// starts, running ones (which stop by themselves once their reader is gone) and
    /// abandoned fetches are waited for up to `wait`. Returns whether everything ended.
    /// Call before the runtime shuts down, so no fetch is cut off mid-flight.
    pub(crate) async fn close(&self, wait: Duration) -> bool {
        self.tasks.close();
        let drained = tokio::time::timeout(wait, self.tasks.wait()).await.is_ok();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        if let Ok(mut idle) = self.own_idle.lock() {
            idle.clear();
        }
        drained
    }

    /// The configured number of connections.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Takes an idle connection or opens one, waiting for a free slot.
    pub(crate) async fn get(self: &Arc<Self>, ctx: Ctx<'_>) -> Result<Conn, Error> {
        let permit =
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::UnexpectedReply {
                    what: "connection pool".into(),
                    database: None,
                    table: None,
                    reason: "pool closed".into(),
                })?;
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let (taos, connected) = match idle {
            Some(t) => t,
            None => {
                // An idle connection of the own client makes room: the pool size bounds
                // the connections of both kinds together.
                drop(self.own_idle.lock().ok().and_then(|mut v| v.pop()));
                let fut = self.builder.build();
                match tokio::time::timeout(self.timeout, fut).await {
                    Ok(Ok(t)) => (t, false),
                    Ok(Err(e)) => return Err(self.error("connect", ctx, e)),
                    Err(_) => return Err(self.timeout_error("connect", ctx)),
                }
            }
        };
        Ok(Conn {
            taos: Some(taos),
            pool: self.clone(),
            _permit: permit,
            healthy: true,
            connected,
        })
    }

    /// A slot of the pool, for work on a connection of the tool's own WebSocket query client
    /// ([`Pool::own_client`]), so the pool size bounds those connections too.
    pub(crate) async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    pub(crate) fn error(&self, op: &'static str, ctx: Ctx<'_>, e: taos::Error) -> Error {
        let mut err = Error::server(op, &self.endpoint.to_string(), ctx.database, ctx.table, e);
        if let Error::Server { statement, .. } = &mut err {
            statement.purpose = ctx.purpose;
        }
        err.with_server_version(self.server_version.get().cloned())
    }

    /// The server's version, read once per pool (best effort: `None` when the server does
    /// not answer). Named in the message of every statement the server refuses.
    async fn learn_server_version(self: &Arc<Self>) -> Option<String> {
        if let Some(v) = self.server_version.get() {
            return Some(v.clone());
        }
        let mut conn = self.get(Ctx::default()).await.ok()?;
        let rows = conn
            .query_values(Ctx::default(), &crate::sql::server_version())
            .await
            .ok()?;
        let v = rows.first_text()?;
        Some(self.server_version.get_or_init(|| v).clone())
    }

    pub(crate) fn timeout_error(&self, op: &'static str, ctx: Ctx<'_>) -> Error {
        Error::Timeout {
            operation: op,
            endpoint: self.endpoint.to_string(),
            database: ctx.database.map(str::to_string),
            table: ctx.table.map(str::to_string),
            timeout: self.timeout,
        }
    }

    /// Runs `f` on a pooled connection, retrying transient failures on fresh connections
    /// up to `retry_count` times with `retry_interval` between attempts.
    pub(crate) async fn retry<T, F, Fut>(
        self: &Arc<Self>,
        ctx: Ctx<'_>,
        mut f: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0u32;
        loop {
            let result = match self.get(ctx).await {
                Ok(conn) => f(conn).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => self.retry_or_fail(e, &mut attempt).await?,
            }
        }
    }

    /// What a retry loop does after attempt `attempt` failed with `e`: `Ok` (after
    /// `retry_interval`, `attempt` counted) when `e` is transient and attempts are left;
    /// else `e` as the final error, naming the server's version when the server refused.
    async fn retry_or_fail(self: &Arc<Self>, e: Error, attempt: &mut u32) -> Result<(), Error> {
        match e {
            e if e.is_retryable() && *attempt < self.retry_count => {
                *attempt += 1;
                tracing::warn!(attempt = *attempt, error = %e, "transient failure, retrying");
                tokio::time::sleep(self.retry_interval).await;
                Ok(())
            }
            e @ Error::Server { .. } if !e.is_retryable() => {
                let version = self.learn_server_version().await;
                Err(e.with_server_version(version))
            }
            e => Err(e),
        }
    }

    /// One statement, all result rows as typed values (for small catalog results).
    pub(crate) async fn query_values(
        self: &Arc<Self>,
        ctx: Ctx<'_>,
        sql: &str,
    ) -> Result<Rows, Error> {
        self.retry(
            ctx,
            |mut conn| async move { conn.query_values(ctx, sql).await },
        )
        .await
    }

    /// One statement, each row decoded by `row` in place from the answer's blocks, the
    /// cells read by their position in `columns` ([`RowRef::get`]). For the catalog's
    /// answers of a row per table: [`Pool::query_values`] makes a typed copy of every cell
    /// (a `Vec` per row, a `String` per text), most of them dropped again, and that copy was
    /// most of the tool's CPU in the catalog read of an incremental backup.
    pub(crate) async fn query_rows<T>(
        self: &Arc<Self>,
        ctx: Ctx<'_>,
        sql: &str,
        columns: &[&str],
        row: impl Fn(RowRef<'_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let row = &row;
        self.retry(ctx, |mut conn| async move {
            conn.query_rows(ctx, sql, columns, row).await
        })
        .await
    }

    /// One statement without a result; returns affected rows.
    pub(crate) async fn exec(self: &Arc<Self>, ctx: Ctx<'_>, sql: &str) -> Result<usize, Error> {
        self.retry(ctx, |mut conn| async move { conn.exec(ctx, sql).await })
            .await
    }
}

/// A query result: column names and typed rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rows {
    pub(crate) names: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The text of the first row's first cell (a one-value answer such as
    /// `SELECT SERVER_VERSION()`), if there is one.
    pub(crate) fn first_text(&self) -> Option<String> {
        self.rows
            .first()
            .and_then(|r| r.first())
            .and_then(crate::catalog::text)
    }

    /// Index of column `name`.
    pub(crate) fn col(&self, name: &str, what: &str) -> Result<usize, Error> {
        column_index(&self.names, name).map_err(|reason| Error::UnexpectedReply {
            what: what.to_string(),
            database: None,
            table: None,
            reason,
        })
    }
}

/// One row of an answer read by [`Pool::query_rows`]: its cells borrowed from the block.
pub(crate) struct RowRef<'a> {
    block: &'a RawBlock,
    row: usize,
    cols: &'a [usize],
}

impl RowRef<'_> {
    /// The cell of the `i`-th column asked for (`None` past the end; NULL is a value).
    pub(crate) fn get(&self, i: usize) -> Option<BorrowedValue<'_>> {
        self.at(*self.cols.get(i)?)
    }

    /// The cell in column `col` of the answer, by position (`None` past the end).
    pub(crate) fn at(&self, col: usize) -> Option<BorrowedValue<'_>> {
        self.block.get_ref(self.row, col)
    }

    /// The number of columns of the answer.
    pub(crate) fn width(&self) -> usize {
        self.block.ncols()
    }
}

/// Where column `name` is among an answer's `names` (in any case), or why it is not.
fn column_index(names: &[String], name: &str) -> Result<usize, String> {
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("no column {name} in {names:?}"))
}

/// Where each of `columns` is among `names`, or the error naming the one missing.
fn column_positions(
    ctx: Ctx<'_>,
    sql: &str,
    names: &[String],
    columns: &[&str],
) -> Result<Vec<usize>, Error> {
    columns
        .iter()
        .map(|c| {
            column_index(names, c).map_err(|reason| Error::UnexpectedReply {
                what: sql.to_string(),
                database: ctx.database.map(str::to_string),
                table: ctx.table.map(str::to_string),
                reason,
            })
        })
        .collect()
}

/// A pooled connection. Returned to the pool on drop unless it failed.
pub(crate) struct Conn {
    taos: Option<Taos>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
    healthy: bool,
    /// Whether the connection has made a request, so its socket exists and has had Nagle's
    /// algorithm turned off ([`disable_nagle`]).
    connected: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.healthy {
            if let (Some(t), Ok(mut idle)) = (self.taos.take(), self.pool.idle.lock()) {
                idle.push((t, self.connected));
            }
        }
    }
}

impl Conn {
    fn taos(&self) -> Result<&Taos, Error> {
        self.taos.as_ref().ok_or_else(|| Error::UnexpectedReply {
            what: "connection".into(),
            database: None,
            table: None,
            reason: "connection already closed".into(),
        })
    }

    /// After a request: the first one of a connection opened its socket (taos-ws connects
    /// lazily) and turned its Nagle's algorithm off ([`nagle_off_if`]).
    fn requested(&mut self) {
        self.connected = true;
    }

    /// Marks the connection broken if `e` concerns the connection (or always, for
    /// timeouts), so it is not reused.
    pub(crate) fn note<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &r {
            if e.is_retryable() {
                self.healthy = false;
            }
        }
        r
    }

    /// Marks the connection broken: it is closed instead of returned to the pool.
    pub(crate) fn mark_broken(&mut self) {
        self.healthy = false;
    }

    /// Gives up on `rs`, whose fetch timed out, with this (broken) connection: see
    /// [`Pool::abandon`].
    pub(crate) fn abandon(&mut self, rs: taos::ResultSet) {
        self.healthy = false;
        self.pool.abandon(self.taos.take(), rs);
    }

    /// Starts a query: the result set and its column names.
    pub(crate) async fn start_query(
        &mut self,
        ctx: Ctx<'_>,
        sql: &str,
    ) -> Result<(taos::ResultSet, Vec<String>), Error> {
        let timeout = self.pool.timeout;
        let first = !self.connected;
        let taos = self.taos()?;
        let r = match tokio::time::timeout(timeout, nagle_off_if(first, taos.query(sql))).await {
            Ok(Ok(rs)) => {
                let names = rs.fields().iter().map(|f| f.name().to_string()).collect();
                Ok((rs, names))
            }
            Ok(Err(e)) => Err(self.pool.error("query", ctx, e)),
            Err(_) => Err(self.pool.timeout_error("query", ctx)),
        };
        self.requested();
        self.note(r)
    }

    /// Executes one statement.
    pub(crate) async fn exec(&mut self, ctx: Ctx<'_>, sql: &str) -> Result<usize, Error> {
        let first = !self.connected;
        let taos = self.taos()?;
        let fut = nagle_off_if(first, taos.exec(sql));
        // `fut` borrows the connection only; the timeout wrapper needs `&mut self` for
        // bookkeeping, so evaluate it first.
        let r = tokio::time::timeout(self.pool.timeout, fut).await;
        let r = match r {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(self.pool.error("execute", ctx, e)),
            Err(_) => Err(self.pool.timeout_error("execute", ctx)),
        };
        self.requested();
        self.note(r)
    }

    /// Runs a query and passes each raw block (with field names set) to `each`, in order.
    /// Every fetch has the pool's timeout; a fetch that times out is abandoned
    /// ([`Pool::abandon`]) with its connection.
    pub(crate) async fn query_blocks(
        &mut self,
        ctx: Ctx<'_>,
        sql: &str,
        mut each: impl FnMut(RawBlock) -> Result<(), Error>,
    ) -> Result<Vec<String>, Error> {
        let timeout = self.pool.timeout;
        let pool = self.pool.clone();
        let (mut rs, names) = self.start_query(ctx, sql).await?;
        loop {
            let next = match tokio::time::timeout(timeout, rs.blocks().next()).await {
                Ok(n) => n,
                Err(_) => {
                    self.abandon(rs);
                    return Err(pool.timeout_error("fetch", ctx));
                }
            };
            let r = match next {
                None => return Ok(names),
                Some(Err(e)) => Err(pool.error("fetch", ctx, e)),
                Some(Ok(mut block)) => {
                    block.with_field_names(&names);
                    each(block)
                }
            };
            if let Err(e) = r {
                return self.note(Err(e));
            }
        }
    }

    /// Runs a query and collects every row as typed values.
    pub(crate) async fn query_values(&mut self, ctx: Ctx<'_>, sql: &str) -> Result<Rows, Error> {
        let mut out = Rows::default();
        let names = self
            .query_blocks(ctx, sql, |block| {
                for row in 0..block.nrows() {
                    let mut vals = Vec::with_capacity(block.ncols());
                    for col in 0..block.ncols() {
                        let v = block
                            .get_ref(row, col)
                            .ok_or_else(|| Error::UnexpectedReply {
                                what: sql.to_string(),
                                database: ctx.database.map(str::to_string),
                                table: ctx.table.map(str::to_string),
                                reason: format!("no value at row {row} column {col}"),
                            })?;
                        vals.push(to_core_value(v));
                    }
                    out.rows.push(vals);
                }
                Ok(())
            })
            .await?;
        out.names = names;
        Ok(out)
    }

    /// Runs a query and decodes each row with `row` (see [`Pool::query_rows`]).
    pub(crate) async fn query_rows<T>(
        &mut self,
        ctx: Ctx<'_>,
        sql: &str,
        columns: &[&str],
        row: &impl Fn(RowRef<'_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        let names = self
            .query_blocks(ctx, sql, |block| {
                let cols = column_positions(ctx, sql, block.field_names(), columns)?;
                out.reserve(block.nrows());
                for r in 0..block.nrows() {
                    out.push(row(RowRef {
                        block: &block,
                        row: r,
                        cols: &cols,
                    })?);
                }
                Ok(())
            })
            .await?;
        // An answer without rows has no block: its columns are checked all the same.
        column_positions(ctx, sql, &names, columns)?;
        Ok(out)
    }

    /// Writes a raw block (table name and field names set) with the pool's timeout.
    pub(crate) async fn write_raw_block(
        &mut self,
        ctx: Ctx<'_>,
        block: &RawBlock,
    ) -> Result<(), Error> {
        let first = !self.connected;
        let taos = self.taos()?;
        let fut = nagle_off_if(first, taos.write_raw_block(block));
        let r = tokio::time::timeout(self.pool.timeout, fut).await;
        let r = match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.pool.error("write raw block", ctx, e)),
            Err(_) => Err(self.pool.timeout_error("write raw block", ctx)),
        };
        self.requested();
        self.note(r)
    }
}

/// Runs `fut`, with `first` the first request of a taos-ws connection, turning Nagle's
/// algorithm off on the socket it opens while it runs.
///
/// taos-ws opens a query connection's socket at its first request and sends its `version`
/// and `conn` requests before that request's own: each would wait for a delayed ACK with
/// Nagle on (~40 ms apiece, measured as ~130 ms per new connection). The socket cannot be
/// reached before it exists, so the process's sockets are scanned while the request runs,
/// 1, 2, 4, … ms apart (at most 32 ms), and once it is done. Setting
/// `TCP_NODELAY` sends at once what Nagle holds back, so a scan ends a wait in progress.
pub(crate) async fn nagle_off_if<F: Future>(first: bool, fut: F) -> F::Output {
    if !first {
        return fut.await;
    }
    let mut fut = std::pin::pin!(fut);
    let mut pause = Duration::from_millis(1);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => {
                disable_nagle();
                return out;
            }
            () = tokio::time::sleep(pause) => {
                disable_nagle();
                pause = (pause * 2).min(Duration::from_millis(32));
            }
        }
    }
}

/// Turns Nagle's algorithm off on the connections the `taos` connector has opened, which
/// taos-ws 0.12.3 leaves on: against taosAdapter every request would otherwise wait up to
/// 40 ms for a delayed ACK (`taosbackup_core::net` says why and how). Warns once when the
/// platform does not allow it.
pub(crate) fn disable_nagle() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    match taosbackup_core::net::disable_nagle() {
        Ok(0) => {}
        Ok(n) => tracing::debug!(sockets = n, "TCP_NODELAY set"),
        Err(e) => {
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    error = %e,
                    "cannot set TCP_NODELAY on the connector's sockets: each request to the server \
                     may wait up to 40 ms for a delayed ACK"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taosbackup_testkit::{Emulator, EmulatorConfig};

    fn pool(dsn: &str) -> Pool {
        pool_with(dsn, |_| {})
    }

    /// A pool for `dsn` with the options `set` changes.
    fn pool_with(dsn: &str, set: impl FnOnce(&mut ConnectOptions)) -> Pool {
        let mut o = ConnectOptions::new(dsn).with_credentials("root", "taosdata");
        set(&mut o);
        let (endpoint, creds) = o.resolve().unwrap();
        Pool::new(&o, endpoint, &creds, None).unwrap()
    }

    /// Exports read through the own client where the server answers its binary query
    /// (taosAdapter ≥ 3.3.0.8 on plain WebSocket), through the connector elsewhere; tables
    /// the connector cannot parse get the own client whatever the version.
    #[tokio::test]
    async fn the_own_client_serves_exports_where_the_server_suits_it() {
        for (version, suits) in [("3.3.6.0", true), ("3.3.0.8", true), ("3.3.0.7", false)] {
            let emu = Emulator::start(EmulatorConfig {
                server_version: version.into(),
                ..EmulatorConfig::default()
            })
            .unwrap();
            let p = pool(&emu.dsn());
            let first = p.own_client(false).await.unwrap();
            assert_eq!(first.is_some(), suits, "{version}");
            if let Some(c) = first {
                p.own_client_idle(c);
            }
            // Decided once; an idle connection is taken again rather than a new one.
            let again = p.own_client(false).await.unwrap();
            assert_eq!(again.is_some(), suits, "{version}");
            drop(again);
            assert!(p.own_client(true).await.unwrap().is_some(), "{version}");
        }
        // No TLS in the own client: a wss:// endpoint keeps the connector, without a try.
        let p = pool("wss://127.0.0.1:1");
        assert!(p.own_client(false).await.unwrap().is_none());
    }

    /// Restore writes go through the own client where it serves (the block's bytes as they
    /// are, fields from its schema), and leave the connector to write elsewhere.
    #[tokio::test]
    async fn raw_block_writes_go_through_the_own_client_where_it_serves() {
        for (version, suits) in [("3.3.6.0", true), ("3.3.0.7", false)] {
            let emu = Emulator::start(EmulatorConfig {
                server_version: version.into(),
                ..EmulatorConfig::default()
            })
            .unwrap();
            let admin = Arc::new(pool(&emu.dsn()));
            for q in [
                "CREATE DATABASE d",
                "CREATE TABLE d.src (ts TIMESTAMP, v INT, s VARCHAR(8))",
                "CREATE TABLE d.dst (ts TIMESTAMP, v INT, s VARCHAR(8))",
                "INSERT INTO d.src VALUES (1700000000000, 1, 'a') (1700000000001, NULL, 'bc')",
            ] {
                admin.exec(Ctx::default(), q).await.unwrap();
            }
            let o = ConnectOptions::new(emu.dsn()).with_credentials("root", "taosdata");
            let (endpoint, creds) = o.resolve().unwrap();
            let mut reader = WsQuery::connect(&endpoint, &creds, None, o.request_timeout)
                .await
                .unwrap();
            let cols = reader.query("SELECT * FROM d.src").await.unwrap();
            let raw = reader.fetch(cols.id).await.unwrap().unwrap();
            let view = crate::raw::RawView::parse(&raw).unwrap();
            let fields: Vec<(&str, u8, u32)> = cols
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let (ty, bytes) = view.col_type(i).unwrap();
                    (n.as_str(), ty, bytes)
                })
                .collect();
            let target = Arc::new(Pool::new(&o, endpoint, &creds, Some("d")).unwrap());
            let wrote = target
                .write_raw_block_own(Ctx::default(), "dst", 2, &raw, &fields)
                .await
                .unwrap();
            assert_eq!(wrote, suits, "{version}");
            let rows = admin
                .query_values(Ctx::default(), "SELECT * FROM d.dst")
                .await
                .unwrap();
            assert_eq!(rows.rows.len(), if suits { 2 } else { 0 }, "{version}");
            if suits {
                let src = admin
                    .query_values(Ctx::default(), "SELECT * FROM d.src")
                    .await
                    .unwrap();
                assert_eq!(rows.rows, src.rows);
                // A refusal names the table and keeps its code (a missing table here).
                let e = target
                    .write_raw_block_own(Ctx::table("d", "nope"), "nope", 2, &raw, &fields)
                    .await
                    .unwrap_err();
                assert!(e.code().is_some() && !e.is_retryable(), "{e:?}");
                assert!(e.to_string().contains("nope"), "{e}");
            }
        }
    }

    /// `query_rows` reads the columns asked for by name, in place, as `query_values` reads
    /// them; a column the answer lacks is an error naming it, rows or none.
    #[tokio::test]
    async fn rows_read_in_place_are_the_typed_rows() {
        let emu = Emulator::start(EmulatorConfig::default()).unwrap();
        let p = Arc::new(pool(&emu.dsn()));
        for q in [
            "CREATE DATABASE d",
            "CREATE TABLE d.t (ts TIMESTAMP, v INT, s VARCHAR(8), n NCHAR(4))",
            "INSERT INTO d.t VALUES (1700000000000, 1, 'a', '名') (1700000000001, NULL, NULL, 'x')",
        ] {
            p.exec(Ctx::default(), q).await.unwrap();
        }
        let sql = "SELECT ts, v, s, n FROM d.t";
        let typed = p.query_values(Ctx::default(), sql).await.unwrap();
        // Asked for out of the answer's order, and in another case.
        let rows = p
            .query_rows(Ctx::default(), sql, &["N", "s", "v"], |r| {
                Ok((0..3)
                    .map(|i| r.get(i).map(to_core_value))
                    .collect::<Option<Vec<Value>>>())
            })
            .await
            .unwrap();
        let want: Vec<Option<Vec<Value>>> = typed
            .rows
            .iter()
            .map(|r| Some(vec![r[3].clone(), r[2].clone(), r[1].clone()]))
            .collect();
        assert_eq!(rows, want);
        assert_eq!(rows.len(), 2);
        let width = p
            .query_rows(Ctx::default(), sql, &[], |r| Ok(r.width()))
            .await
            .unwrap();
        assert_eq!(width, vec![4, 4]);
        for sql in [sql, "SELECT ts, v, s, n FROM d.t WHERE ts < 0"] {
            let e = p
                .query_rows(Ctx::db("d"), sql, &["v", "missing"], |_| Ok(()))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("no column missing"), "{sql}: {e}");
        }
    }

    /// `warm_up` opens as many connections as the pool holds, each past its first request,
    /// and records the server's version; the statements after it take them.
    #[tokio::test]
    async fn warm_up_opens_the_pool_and_learns_the_server_version() {
        let emu = Emulator::start(EmulatorConfig::default()).unwrap();
        let p = Arc::new(pool_with(&emu.dsn(), |o| o.pool_size = 3));
        p.warm_up();
        p.tasks.close();
        p.tasks.wait().await;
        p.tasks.reopen();
        {
            let idle = p.idle.lock().unwrap();
            assert_eq!(idle.len(), 3, "one per slot");
            assert!(idle.iter().all(|(_, connected)| *connected));
        }
        assert_eq!(emu.open_connections(), 3);
        assert!(p.server_version.get().is_some_and(|v| v.starts_with('3')));
        // Three statements at once run on those three: no connection is added.
        let (a, b, c) = tokio::join!(
            p.query_values(Ctx::default(), "SELECT SERVER_VERSION()"),
            p.query_values(Ctx::default(), "SELECT SERVER_VERSION()"),
            p.query_values(Ctx::default(), "SELECT SERVER_VERSION()"),
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(emu.open_connections(), 3);
    }

    /// Against a server that is not there, `warm_up` ends quietly and leaves nothing
    /// behind: the statements after it report the failure.
    #[tokio::test]
    async fn warm_up_without_a_server_leaves_the_failure_to_the_statements() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let p = Arc::new(pool_with(&format!("ws://127.0.0.1:{port}"), |o| {
            o.retry_count = 0
        }));
        p.warm_up();
        p.tasks.close();
        p.tasks.wait().await;
        assert!(p.idle.lock().unwrap().is_empty());
        assert!(p.server_version.get().is_none());
        let e = p
            .query_values(Ctx::default(), "SELECT SERVER_VERSION()")
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&port.to_string()), "{e}");
    }

    /// The pool size bounds the connections of both kinds together: opening one of one kind
    /// closes an idle one of the other.
    #[tokio::test]
    async fn idle_connections_of_both_kinds_stay_within_the_pool_size() {
        let emu = Emulator::start(EmulatorConfig::default()).unwrap();
        let p = Arc::new(pool(&emu.dsn()));
        let conn = p.get(Ctx::default()).await.unwrap();
        let mut c = conn;
        c.query_values(Ctx::default(), "SELECT SERVER_VERSION()")
            .await
            .unwrap();
        drop(c);
        assert_eq!(p.idle.lock().unwrap().len(), 1);
        let own = p.own_client(false).await.unwrap().unwrap();
        assert_eq!(
            p.idle.lock().unwrap().len(),
            0,
            "the connector's idle one closed"
        );
        p.own_client_idle(own);
        let _conn = p.get(Ctx::default()).await.unwrap();
        assert_eq!(
            p.own_idle.lock().unwrap().len(),
            0,
            "the own client's idle one closed"
        );
    }
}
