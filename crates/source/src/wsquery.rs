//! A minimal client of taosAdapter's WebSocket query protocol (`/ws`), which exports read
//! through (`Pool::own_client`). Two reasons. It reads tables the connector cannot:
//! taos-query 0.12.4 `RawBlock::parse_from_raw_block` panics on a block with a DECIMAL (17)
//! or BLOB (18) column (`unreachable!`), and `Ty::from_u8` panics on DECIMAL64 (21); this
//! client never parses a block but hands the raw bytes to [`crate::raw::RawView`], which
//! knows those types. And it costs less CPU per request: it writes each request as one
//! frame in one call on the caller's task, where taos-ws 0.12.3 writes two (ws-tool, no
//! write buffer), runs a reader task per connection and hands every result set's clean-up
//! to `spawn_blocking` (docs/performance-history.md, "The export's own client").
//!
//! The protocol (taosAdapter `controller/ws/ws/` of ver-3.3.6.0; taos-ws 0.12.3
//! `src/query/asyn.rs` for what a client sends; `tdengine-notes.md` §1):
//!
//! - text `{"action":"version"}` → `{"code":0,…,"version":"3.3.6.0"}`;
//! - text `{"action":"conn","args":{"req_id","user","password","db"}}` → `{"code":0,…}`;
//! - binary query `u64 req_id | u64 0 | u64 6 | u16 1 | u32 sql_len | sql` → text reply with
//!   `id`, `fields_names`, `fields_types`, `precision` (servers from 3.3.0.8; DECIMAL needs
//!   3.3.6, so the older JSON query is never needed here);
//! - binary fetch `u64 req_id | u64 result_id | u64 7 | u16 1` → binary
//!   `u64 0xFFFF_FFFF_FFFF_FFFF | u64 7 | u16 1 | u64 timing | u64 req_id | u32 code |
//!   u32 msg_len | msg | u64 result_id | u8 finished | [u32 block_len | block]`; the server
//!   frees the result when `finished`;
//! - text `{"action":"free_result","args":{"req_id","id"}}` (no reply) for a result left
//!   before its end.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Error;
use crate::dsn::{Credentials, Endpoint, Protocol};

/// The connector's "connection closed" code (taos-ws `WS_ERROR_NO::CONN_CLOSED`): retryable.
const CODE_CONN_CLOSED: i32 = 0xE002;
const ACTION_QUERY: u64 = 6;
const ACTION_FETCH: u64 = 7;
const ACTION_WRITE_RAW_BLOCK_WITH_FIELDS: u64 = 5;
/// The most one socket read takes in. tungstenite 0.30 zero-fills its buffer up to this
/// window before every read (`FrameCodec::read_in`, src/protocol/frame/mod.rs), and a read on
/// loopback returns far less than its 128 KiB default: at 50 M rows the backup's tool CPU
/// fell 4% with 32 KiB (docs/performance-history.md, "The export's own client"); 8 and 16 KiB did
/// no better.
const READ_WINDOW: usize = 32 * 1024;
/// Size of a C `TAOS_FIELD`: `char name[65]; u8 type; 2 pad; i32 bytes`.
const C_FIELD_LEN: usize = 72;

/// The column names and types of a query result.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    /// The result id for fetches.
    pub id: u64,
    /// Column names.
    pub names: Vec<String>,
}

/// One connection.
pub(crate) struct WsQuery {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_req: u64,
    timeout: Duration,
    endpoint: String,
    /// The server version the `version` action reported (`3.3.6.0`).
    version: String,
}

/// A server version's four numbers (`3.3.6.0`); `None` for any other form.
pub(crate) fn parse_version(text: &str) -> Option<[u32; 4]> {
    let mut out = [0u32; 4];
    let mut parts = text.trim().split('.');
    for slot in &mut out {
        *slot = parts.next()?.trim().parse().ok()?;
    }
    Some(out)
}

/// The first version whose taosAdapter serves the binary query and fetch actions (6, 7):
/// taos-ws 0.12.3 `is_support_binary_sql` (src/query/asyn.rs) compares with "3.3.0.8".
const BINARY_QUERY_SINCE: [u32; 4] = [3, 3, 0, 8];

impl std::fmt::Debug for WsQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsQuery")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn closed(op: &'static str, endpoint: &str, message: String) -> Error {
    Error::server(
        op,
        endpoint,
        None,
        None,
        taos::Error::new(CODE_CONN_CLOSED, message),
    )
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `ws[s]://host:port/<path>[?token=…]`.
fn url(endpoint: &Endpoint, path: &str) -> String {
    let scheme = if endpoint.protocol == Protocol::Wss {
        "wss"
    } else {
        "ws"
    };
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let mut u = format!("{scheme}://{host}:{}/{path}", endpoint.port);
    if let Some(t) = endpoint.token() {
        u.push_str("?token=");
        u.push_str(t);
    }
    u
}

impl WsQuery {
    /// Connects and logs in. `/ws` first, then `/rest/ws` (taos-ws 0.12.3 does the same on a
    /// 404/400 from older adapters).
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        creds: &Credentials,
        database: Option<&str>,
        timeout: Duration,
    ) -> Result<WsQuery, Error> {
        let name = endpoint.to_string();
        if endpoint.is_native() {
            return Err(Error::InvalidDsn {
                endpoint: name,
                reason: "tables with DECIMAL or BLOB columns are read over taosAdapter's \
                         WebSocket API (the native client library's connector cannot parse \
                         them); use a ws:// or wss:// DSN"
                    .into(),
            });
        }
        let mut last = None;
        for path in ["ws", "rest/ws"] {
            // Nagle off: tungstenite writes each frame at once, but a frame sent before the
            // server has acknowledged the one before it would wait for a delayed ACK, up to
            // 40 ms (taosbackup_core::net).
            let config = WebSocketConfig::default().read_buffer_size(READ_WINDOW);
            let connect = tokio_tungstenite::connect_async_with_config(
                url(endpoint, path),
                Some(config),
                true,
            );
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok((ws, _))) => {
                    let mut c = WsQuery {
                        ws,
                        next_req: 1,
                        timeout,
                        endpoint: name.clone(),
                        version: String::new(),
                    };
                    c.login(creds, database.unwrap_or_default()).await?;
                    return Ok(c);
                }
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => {
                    return Err(Error::Timeout {
                        operation: "connect",
                        endpoint: name,
                        database: None,
                        table: None,
                        timeout,
                    });
                }
            }
        }
        Err(closed(
            "connect",
            &name,
            format!("WebSocket connection failed: {}", last.unwrap_or_default()),
        ))
    }

    fn req_id(&mut self) -> u64 {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    async fn send(&mut self, op: &'static str, m: Message) -> Result<(), Error> {
        match tokio::time::timeout(self.timeout, self.ws.send(m)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(closed(op, &self.endpoint, e.to_string())),
            Err(_) => Err(self.timed_out(op)),
        }
    }

    fn timed_out(&self, op: &'static str) -> Error {
        Error::Timeout {
            operation: op,
            endpoint: self.endpoint.clone(),
            database: None,
            table: None,
            timeout: self.timeout,
        }
    }

    fn unexpected(&self, op: &str, reason: String) -> Error {
        Error::UnexpectedReply {
            what: format!("{op} on {}", self.endpoint),
            database: None,
            table: None,
            reason,
        }
    }

    /// The next text or binary frame.
    async fn frame(&mut self, op: &'static str) -> Result<Message, Error> {
        loop {
            let m = match tokio::time::timeout(self.timeout, self.ws.next()).await {
                Err(_) => return Err(self.timed_out(op)),
                Ok(None) => return Err(closed(op, &self.endpoint, "connection closed".into())),
                Ok(Some(Err(e))) => return Err(closed(op, &self.endpoint, e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            match m {
                Message::Text(_) | Message::Binary(_) => return Ok(m),
                Message::Close(c) => {
                    return Err(closed(op, &self.endpoint, format!("closed: {c:?}")));
                }
                _ => {}
            }
        }
    }

    /// The JSON reply to a request; a non-zero `code` is the server's error.
    async fn text_reply(&mut self, op: &'static str) -> Result<Json, Error> {
        let Message::Text(t) = self.frame(op).await? else {
            return Err(self.unexpected(op, "a binary frame instead of a JSON reply".into()));
        };
        let v: Json = serde_json::from_str(&t)
            .map_err(|e| self.unexpected(op, format!("reply is not JSON ({e})")))?;
        let code = v.get("code").and_then(Json::as_i64).unwrap_or(0);
        if code != 0 {
            let msg = v.get("message").and_then(Json::as_str).unwrap_or_default();
            return Err(Error::server(
                op,
                &self.endpoint,
                None,
                None,
                taos::Error::new(((code as u32) & 0xFFFF) as i32, msg.to_string()),
            ));
        }
        Ok(v)
    }

    /// Logs in with `database` as the connection's current database (`""` for none), which
    /// names the table of a raw-block write.
    async fn login(&mut self, creds: &Credentials, database: &str) -> Result<(), Error> {
        self.send(
            "connect",
            Message::Text(json!({"action": "version"}).to_string().into()),
        )
        .await?;
        let v = self.text_reply("connect").await?;
        self.version = v
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let req_id = self.req_id();
        let conn = json!({"action": "conn", "args": {
            "req_id": req_id, "user": creds.user, "password": creds.password(), "db": database}});
        self.send("connect", Message::Text(conn.to_string().into()))
            .await?;
        self.text_reply("connect").await.map(|_| ())
    }

    /// Whether the server answers the binary query this client sends (an unknown version
    /// counts as too old: the connector's JSON query then serves).
    pub(crate) fn binary_query(&self) -> bool {
        parse_version(&self.version).is_some_and(|v| v >= BINARY_QUERY_SINCE)
    }

    /// Runs a query; the result's id and column names.
    pub(crate) async fn query(&mut self, sql: &str) -> Result<Columns, Error> {
        let req_id = self.req_id();
        let len = u32::try_from(sql.len())
            .map_err(|_| self.unexpected("query", "SQL too long".into()))?;
        let mut b = Vec::with_capacity(30 + sql.len());
        b.extend_from_slice(&req_id.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&ACTION_QUERY.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(sql.as_bytes());
        self.send("query", Message::Binary(b.into())).await?;
        let v = self.text_reply("query").await?;
        if v.get("req_id").and_then(Json::as_u64) != Some(req_id) {
            return Err(self.unexpected("query", format!("reply to another request: {v}")));
        }
        let id = v
            .get("id")
            .and_then(Json::as_u64)
            .ok_or_else(|| self.unexpected("query", "no result id".into()))?;
        let names = v
            .get("fields_names")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(|n| n.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Columns { id, names })
    }

    /// The next raw block of result `id`, `None` once the result is finished (the server
    /// has then freed it).
    pub(crate) async fn fetch(&mut self, id: u64) -> Result<Option<Vec<u8>>, Error> {
        let req_id = self.req_id();
        let mut b = Vec::with_capacity(26);
        b.extend_from_slice(&req_id.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&ACTION_FETCH.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        self.send("fetch", Message::Binary(b.into())).await?;
        let m = self.frame("fetch").await?;
        let b = match m {
            Message::Binary(b) => b,
            // Errors before the result is found come as JSON.
            Message::Text(_) => {
                return Err(self.unexpected("fetch", format!("JSON reply to a fetch: {m}")));
            }
            _ => unreachable!("frame() returns text or binary only"),
        };
        let short = || self.unexpected("fetch", "truncated fetch reply".into());
        // u64 flag | u64 action | u16 version | u64 timing | u64 req_id | u32 code | u32 len
        let got_req = le_u64(&b, 26).ok_or_else(short)?;
        let code = le_u32(&b, 34).ok_or_else(short)?;
        let msg_len = le_u32(&b, 38).ok_or_else(short)? as usize;
        let msg = b.get(42..42 + msg_len).ok_or_else(short)?;
        if code != 0 {
            return Err(Error::server(
                "fetch",
                &self.endpoint,
                None,
                None,
                taos::Error::new(
                    (code & 0xFFFF) as i32,
                    String::from_utf8_lossy(msg).into_owned(),
                ),
            ));
        }
        if got_req != req_id {
            return Err(
                self.unexpected("fetch", format!("reply to request {got_req}, not {req_id}"))
            );
        }
        let at = 42 + msg_len + 8;
        let finished = *b.get(at).ok_or_else(short)? != 0;
        if finished {
            return Ok(None);
        }
        let n = le_u32(&b, at + 1).ok_or_else(short)? as usize;
        let block = b.get(at + 5..at + 5 + n).ok_or_else(short)?;
        Ok(Some(block.to_vec()))
    }

    /// Writes the raw block `raw` of `rows` rows into `table` of the connection's database
    /// (binary action 5, "write raw block with fields": taos-ws 0.12.3
    /// `s_write_raw_block_with_req_id`, src/query/asyn.rs; docs/emulator.md): `u64 req_id |
    /// u64 req_id | u64 5 | u32 rows | u16 name_len | name | raw block | fields`, each field a
    /// C `TAOS_FIELD` of 72 bytes (`char name[65]; u8 type; 2 pad; i32 bytes`) naming a
    /// block column, with the type and width of the block's schema entry. The reply is JSON.
    pub(crate) async fn write_raw_block(
        &mut self,
        table: &str,
        rows: u32,
        raw: &[u8],
        fields: &[(&str, u8, u32)],
    ) -> Result<(), Error> {
        const OP: &str = "write raw block";
        let req_id = self.req_id();
        let name_len = u16::try_from(table.len())
            .map_err(|_| self.unexpected(OP, "table name too long".into()))?;
        let mut b = Vec::with_capacity(30 + table.len() + raw.len() + fields.len() * C_FIELD_LEN);
        b.extend_from_slice(&req_id.to_le_bytes());
        b.extend_from_slice(&req_id.to_le_bytes());
        b.extend_from_slice(&ACTION_WRITE_RAW_BLOCK_WITH_FIELDS.to_le_bytes());
        b.extend_from_slice(&rows.to_le_bytes());
        b.extend_from_slice(&name_len.to_le_bytes());
        b.extend_from_slice(table.as_bytes());
        b.extend_from_slice(raw);
        for (name, ty, bytes) in fields {
            // A column name is at most 64 bytes (TSDB_COL_NAME_LEN 65 with its NUL).
            let n = name.as_bytes();
            if n.len() >= 65 {
                return Err(self.unexpected(OP, format!("column name {name:?} too long")));
            }
            let mut f = [0u8; C_FIELD_LEN];
            f[..n.len()].copy_from_slice(n);
            f[65] = *ty;
            f[68..72].copy_from_slice(&(*bytes as i32).to_le_bytes());
            b.extend_from_slice(&f);
        }
        self.send(OP, Message::Binary(b.into())).await?;
        let v = self.text_reply(OP).await?;
        if v.get("req_id").and_then(Json::as_u64) != Some(req_id) {
            return Err(self.unexpected(OP, format!("reply to another request: {v}")));
        }
        Ok(())
    }

    /// Frees a result not read to its end (`free_result` has no reply).
    pub(crate) async fn free(&mut self, id: u64) -> Result<(), Error> {
        let req_id = self.req_id();
        let m = json!({"action": "free_result", "args": {"req_id": req_id, "id": id}});
        self.send("free result", Message::Text(m.to_string().into()))
            .await
    }
}
