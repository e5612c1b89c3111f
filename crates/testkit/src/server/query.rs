//! The query protocol (`/ws`, `/rest/ws`) as taos-ws 0.12.3 speaks it.
//!
//! Text frames carry JSON requests `{"action": …, "args": {…}}`: `version`, `conn`, `query`,
//! `fetch`, `fetch_block`, `free_result`. Binary frames start with
//! `u64 req_id | u64 id | u64 action`: 6 query and 7 fetch (servers ≥ 3.3.0.8), 5 raw-block
//! write with fields, 4 raw-block write without (3.0.1.x clients), 3 raw meta write.
//! Replies are matched by `req_id` on the client, so every reply echoes it exactly, and
//! `free_result` is never answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::Server;
use super::wire::{Cursor, elapsed_ns, error_reply, ok_reply};
use crate::error::{EmuError, code};
use crate::raw_block;
use crate::store::{Outcome, ResultSet, Session, Store};
use crate::types::{Field, Ty};

/// Binary action numbers (taosAdapter `controller/ws/ws/const.go`).
const ACTION_WRITE_RAW: u64 = 3;
const ACTION_WRITE_RAW_BLOCK: u64 = 4;
const ACTION_WRITE_RAW_BLOCK_WITH_FIELDS: u64 = 5;
const ACTION_BINARY_QUERY: u64 = 6;
const ACTION_FETCH_RAW_BLOCK: u64 = 7;
/// Size of a `TAOS_FIELD` in raw-block writes: `char name[65]; u8 type; 2 pad; i32 bytes`.
const C_FIELD_LEN: usize = 72;

/// An open result set and how far the client has read it.
struct OpenResult {
    rs: ResultSet,
    pos: usize,
    /// For the JSON protocol: the block announced by `fetch`, sent by `fetch_block`.
    pending: Option<std::ops::Range<usize>>,
}

impl OpenResult {
    fn rows(&self) -> usize {
        self.rs.columns.first().map_or(0, |c| c.len())
    }

    fn next_range(&mut self, block_rows: usize) -> Option<std::ops::Range<usize>> {
        let total = self.rows();
        if self.pos >= total {
            return None;
        }
        let end = total.min(self.pos + block_rows.max(1));
        let r = self.pos..end;
        self.pos = end;
        Some(r)
    }

    fn encode(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let cols: Vec<_> = self.rs.columns.iter().collect();
        raw_block::encode(&self.rs.fields, &cols, range)
    }
}

/// Per-connection protocol state.
struct Conn {
    server: Server,
    session: Session,
    authenticated: bool,
    results: HashMap<u64, OpenResult>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A client that disconnects mid-fetch frees its results.
        self.server
            .shared
            .open_results
            .fetch_sub(self.results.len(), Ordering::SeqCst);
    }
}

/// Runs one query-protocol connection until the client leaves, the server stops, or the
/// emulator is told to drop every connection.
pub(crate) async fn run(server: Server, ws: super::Ws, stop: watch::Receiver<bool>) {
    let conn = Conn {
        server: server.clone(),
        session: Session::default(),
        authenticated: false,
        results: HashMap::new(),
    };
    super::serve(&server, ws, stop, conn).await;
}

impl super::Protocol for Conn {
    const TMQ: bool = false;

    fn fault_reply(req: &super::fault::Request, err: &EmuError) -> Message {
        match req.binary_fetch {
            Some(id) => Message::Binary(fetch_reply(req.req_id, id, 0, Err(err)).into()),
            None => Message::Text(error_reply(&req.action, req.req_id, 0, err).into()),
        }
    }

    async fn on_frame(&mut self, frame: Message) -> Option<Message> {
        match frame {
            Message::Text(text) => self.on_text(&text).await,
            Message::Binary(bytes) => self.on_binary(&bytes).await,
            _ => None,
        }
    }
}

impl Conn {
    fn store(&self) -> Arc<Store> {
        self.server.store.clone()
    }

    async fn on_text(&mut self, text: &str) -> Option<Message> {
        let t = Instant::now();
        let v: Json = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let err = EmuError::new(code::INVALID_MSG, format!("invalid JSON request: {e}"));
                return Some(Message::Text(error_reply("", 0, 0, &err).into()));
            }
        };
        let action = v
            .get("action")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned();
        let args = v.get("args").cloned().unwrap_or(Json::Null);
        let req_id = args.get("req_id").and_then(Json::as_u64).unwrap_or(0);
        let result = match action.as_str() {
            "version" => Ok(Some(ok_reply(
                "version",
                req_id,
                elapsed_ns(t),
                json!({ "version": self.server.config.server_version }),
            ))),
            "conn" => self.conn(&args, req_id, t).await,
            "query" => match self.require_auth() {
                Ok(()) => {
                    let sql = args.get("sql").and_then(Json::as_str).unwrap_or("");
                    self.query(req_id, sql, "query", t).await.map(Some)
                }
                Err(e) => Err(e),
            },
            "fetch" => match self.require_auth() {
                Ok(()) => self.fetch_json(&args, req_id, t).map(Some),
                Err(e) => Err(e),
            },
            "fetch_block" => {
                if let Err(e) = self.require_auth() {
                    Err(e)
                } else {
                    return Some(self.fetch_block_json(&args, req_id, t));
                }
            }
            "free_result" => {
                if let Some(id) = args.get("id").and_then(Json::as_u64) {
                    self.free(id);
                }
                return None;
            }
            other => Err(EmuError::new(0xffff, format!("unknown action {other:?}"))),
        };
        match result {
            Ok(Some(reply)) => Some(Message::Text(reply.into())),
            Ok(None) => None,
            Err(err) => Some(Message::Text(
                error_reply(&action, req_id, elapsed_ns(t), &err).into(),
            )),
        }
    }

    fn require_auth(&self) -> Result<(), EmuError> {
        if self.authenticated {
            Ok(())
        } else {
            Err(EmuError::new(0xffff, "server not connected"))
        }
    }

    async fn conn(
        &mut self,
        args: &Json,
        req_id: u64,
        t: Instant,
    ) -> Result<Option<String>, EmuError> {
        let user = args.get("user").and_then(Json::as_str).unwrap_or("");
        let password = args.get("password").and_then(Json::as_str).unwrap_or("");
        self.store().authenticate(user, password)?;
        let db = args.get("db").and_then(Json::as_str).unwrap_or("");
        if !db.is_empty() {
            let sql = format!("USE `{}`", db.replace('`', "``"));
            self.execute(sql).await?;
        }
        self.authenticated = true;
        Ok(Some(ok_reply("conn", req_id, elapsed_ns(t), json!({}))))
    }

    /// Runs a statement off the async workers (a big SELECT copies many rows).
    async fn execute(&mut self, sql: String) -> Result<Outcome, EmuError> {
        let store = self.store();
        let mut session = self.session.clone();
        let (session, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = store.execute(&mut session, &sql);
            (session, outcome)
        })
        .await
        .map_err(|e| EmuError::new(0xffff, format!("statement task failed: {e}")))?;
        self.session = session;
        outcome
    }

    async fn query(
        &mut self,
        req_id: u64,
        sql: &str,
        action: &str,
        t: Instant,
    ) -> Result<String, EmuError> {
        let outcome = self.execute(sql.to_owned()).await?;
        let id = self
            .server
            .shared
            .next_result_id
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        Ok(match outcome {
            Outcome::Affected(n) => ok_reply(
                action,
                req_id,
                elapsed_ns(t),
                json!({
                    "id": id,
                    "is_update": true,
                    "affected_rows": n,
                    "fields_count": 0,
                    "fields_names": null,
                    "fields_types": null,
                    "fields_lengths": null,
                    "precision": 0,
                }),
            ),
            Outcome::Rows(rs) => {
                let names: Vec<&str> = rs.fields.iter().map(|f| f.name.as_str()).collect();
                let types: Vec<u8> = rs.fields.iter().map(|f| f.ty.code()).collect();
                let lengths: Vec<u32> = rs.fields.iter().map(|f| f.bytes).collect();
                let mut body = json!({
                    "id": id,
                    "is_update": false,
                    "affected_rows": 0,
                    "fields_count": rs.fields.len(),
                    "fields_names": names,
                    "fields_types": types,
                    "fields_lengths": lengths,
                    "precision": rs.precision.code(),
                });
                // taosAdapter 3.3.6.0 added `fields_precisions` and `fields_scales` (the
                // TAOS_FIELD_E precision and scale: non-zero for DECIMAL only;
                // controller/ws/ws/query.go and driver/wrapper/field.go).
                if crate::Profile::of(&self.server.config.server_version) >= crate::Profile::V3_3_6
                {
                    let p: Vec<u8> = rs.fields.iter().map(|f| f.precision).collect();
                    let sc: Vec<u8> = rs.fields.iter().map(|f| f.scale).collect();
                    body["fields_precisions"] = json!(p);
                    body["fields_scales"] = json!(sc);
                }
                let reply = ok_reply(action, req_id, elapsed_ns(t), body);
                self.results.insert(
                    id,
                    OpenResult {
                        rs,
                        pos: 0,
                        pending: None,
                    },
                );
                self.server
                    .shared
                    .open_results
                    .fetch_add(1, Ordering::SeqCst);
                reply
            }
        })
    }

    fn free(&mut self, id: u64) {
        if self.results.remove(&id).is_some() {
            self.server
                .shared
                .open_results
                .fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn no_result(id: u64) -> EmuError {
        EmuError::new(code::INVALID_RESULT_ID, format!("result {id} not found"))
    }

    /// JSON `fetch`: announces the next block (or completion).
    fn fetch_json(&mut self, args: &Json, req_id: u64, t: Instant) -> Result<String, EmuError> {
        let id = args.get("id").and_then(Json::as_u64).unwrap_or(0);
        let block_rows = self.server.config.block_rows;
        let cursor = self
            .results
            .get_mut(&id)
            .ok_or_else(|| Self::no_result(id))?;
        match cursor.next_range(block_rows) {
            Some(range) => {
                let rows = range.len();
                let lengths: Vec<u32> = cursor.rs.fields.iter().map(|f| f.bytes).collect();
                cursor.pending = Some(range);
                Ok(ok_reply(
                    "fetch",
                    req_id,
                    elapsed_ns(t),
                    json!({"id": id, "completed": false, "lengths": lengths, "rows": rows}),
                ))
            }
            None => {
                self.free(id);
                Ok(ok_reply(
                    "fetch",
                    req_id,
                    elapsed_ns(t),
                    json!({"id": id, "completed": true, "lengths": null, "rows": 0}),
                ))
            }
        }
    }

    /// JSON `fetch_block`: binary `u64 timing | u64 result_id | raw block`; errors as text.
    fn fetch_block_json(&mut self, args: &Json, req_id: u64, t: Instant) -> Message {
        let id = args.get("id").and_then(Json::as_u64).unwrap_or(0);
        let block = match self.results.get_mut(&id) {
            Some(cursor) => match cursor.pending.take() {
                Some(range) => Ok(cursor.encode(range)),
                None => Err(EmuError::new(
                    0xffff,
                    format!("no block fetched for result {id}"),
                )),
            },
            None => Err(Self::no_result(id)),
        };
        match block {
            Ok(block) => {
                let mut out = Vec::with_capacity(16 + block.len());
                out.extend_from_slice(&elapsed_ns(t).to_le_bytes());
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&block);
                Message::Binary(out.into())
            }
            Err(err) => {
                Message::Text(error_reply("fetch_block", req_id, elapsed_ns(t), &err).into())
            }
        }
    }

    async fn on_binary(&mut self, bytes: &[u8]) -> Option<Message> {
        let t = Instant::now();
        let mut c = Cursor::new(bytes);
        let head = (|| Ok::<_, EmuError>((c.u64()?, c.u64()?, c.u64()?)))();
        let (req_id, id, action) = match head {
            Ok(h) => h,
            Err(err) => return Some(Message::Text(error_reply("", 0, 0, &err).into())),
        };
        if let Err(err) = self.require_auth() {
            return Some(match action {
                ACTION_FETCH_RAW_BLOCK => {
                    Message::Binary(fetch_reply(req_id, id, elapsed_ns(t), Err(&err)).into())
                }
                _ => Message::Text(error_reply(binary_action_name(action), req_id, 0, &err).into()),
            });
        }
        match action {
            ACTION_BINARY_QUERY => {
                let sql = (|| {
                    let _version = c.u16()?;
                    let len = c.u32()? as usize;
                    let sql = c.take(len)?;
                    String::from_utf8(sql.to_vec())
                        .map_err(|_| EmuError::new(code::INVALID_MSG, "SQL is not UTF-8"))
                })();
                let reply = match sql {
                    Ok(sql) => self.query(req_id, &sql, "binary_query", t).await,
                    Err(e) => Err(e),
                };
                Some(Message::Text(
                    reply
                        .unwrap_or_else(|err| {
                            error_reply("binary_query", req_id, elapsed_ns(t), &err)
                        })
                        .into(),
                ))
            }
            ACTION_FETCH_RAW_BLOCK => {
                let block_rows = self.server.config.block_rows;
                let step = match self.results.get_mut(&id) {
                    None => Err(Self::no_result(id)),
                    Some(cursor) => Ok(cursor.next_range(block_rows).map(|r| cursor.encode(r))),
                };
                let reply = match step {
                    Ok(Some(block)) => fetch_reply(req_id, id, elapsed_ns(t), Ok(Some(&block))),
                    Ok(None) => {
                        // The server frees the result once it is finished.
                        self.free(id);
                        fetch_reply(req_id, id, elapsed_ns(t), Ok(None))
                    }
                    Err(err) => fetch_reply(req_id, id, elapsed_ns(t), Err(&err)),
                };
                Some(Message::Binary(reply.into()))
            }
            ACTION_WRITE_RAW_BLOCK | ACTION_WRITE_RAW_BLOCK_WITH_FIELDS => {
                let name = binary_action_name(action);
                let reply = match self
                    .write_raw_block(&mut c, action == ACTION_WRITE_RAW_BLOCK_WITH_FIELDS)
                    .await
                {
                    Ok(_) => ok_reply(name, req_id, elapsed_ns(t), json!({})),
                    Err(err) => error_reply(name, req_id, elapsed_ns(t), &err),
                };
                Some(Message::Text(reply.into()))
            }
            ACTION_WRITE_RAW => {
                let err = EmuError::new(
                    code::OPS_NOT_SUPPORT,
                    "write_raw_meta is not supported by the emulator",
                );
                Some(Message::Text(
                    error_reply("write_raw", req_id, elapsed_ns(t), &err).into(),
                ))
            }
            other => {
                let err = EmuError::new(0xffff, format!("unknown binary action {other}"));
                Some(Message::Text(
                    error_reply("", req_id, elapsed_ns(t), &err).into(),
                ))
            }
        }
    }

    async fn write_raw_block(
        &mut self,
        c: &mut Cursor<'_>,
        with_fields: bool,
    ) -> Result<usize, EmuError> {
        let nrows = c.u32()? as usize;
        let name_len = c.u16()? as usize;
        let table = String::from_utf8(c.take(name_len)?.to_vec())
            .map_err(|_| EmuError::new(code::INVALID_MSG, "table name is not UTF-8"))?;
        let rest = c.rest();
        if rest.len() < raw_block::HEADER_LEN {
            return Err(EmuError::new(code::INVALID_MSG, "raw block missing"));
        }
        let block_len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        if block_len > rest.len() {
            return Err(EmuError::new(
                code::INVALID_MSG,
                format!("raw block length {block_len} exceeds the message"),
            ));
        }
        let block = raw_block::parse(&rest[..block_len])?;
        if block.rows != nrows {
            return Err(EmuError::new(
                code::INVALID_MSG,
                format!(
                    "row count {nrows} does not match the block's {}",
                    block.rows
                ),
            ));
        }
        let fields = if with_fields {
            let raw = &rest[block_len..];
            if raw.len() != block.schema.len() * C_FIELD_LEN {
                return Err(EmuError::new(
                    code::INVALID_MSG,
                    format!(
                        "expected {} field descriptions, got {} bytes",
                        block.schema.len(),
                        raw.len()
                    ),
                ));
            }
            raw.chunks_exact(C_FIELD_LEN)
                .map(parse_c_field)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        self.store()
            .queue_raw_block(&self.session, table, fields, block)
            .await
    }
}

fn parse_c_field(raw: &[u8]) -> Result<Field, EmuError> {
    let name_end = raw[..65].iter().position(|&b| b == 0).unwrap_or(65);
    let name = String::from_utf8(raw[..name_end].to_vec())
        .map_err(|_| EmuError::new(code::INVALID_MSG, "field name is not UTF-8"))?;
    let ty = Ty::from_code(raw[65]).ok_or_else(|| {
        EmuError::new(code::INVALID_MSG, format!("unknown field type {}", raw[65]))
    })?;
    let bytes = i32::from_le_bytes([raw[68], raw[69], raw[70], raw[71]]);
    Ok(Field::new(name, ty, bytes.max(0) as u32))
}

fn binary_action_name(action: u64) -> &'static str {
    match action {
        ACTION_BINARY_QUERY => "binary_query",
        ACTION_WRITE_RAW_BLOCK => "write_raw_block",
        ACTION_WRITE_RAW_BLOCK_WITH_FIELDS => "write_raw_block_with_fields",
        ACTION_WRITE_RAW => "write_raw",
        _ => "",
    }
}

/// The binary fetch reply (action 7):
/// `u64 MAX | u64 7 | u16 1 | u64 timing | u64 req_id | u32 code | u32 msg_len | msg |
/// u64 result_id | u8 finished | [u32 block_len | block]`.
fn fetch_reply(
    req_id: u64,
    id: u64,
    timing: u64,
    step: Result<Option<&[u8]>, &EmuError>,
) -> Vec<u8> {
    let (code, msg, block) = match step {
        Ok(block) => (0u32, "", block),
        Err(err) => (err.code & 0xffff, err.message.as_str(), None),
    };
    let mut out = Vec::with_capacity(64 + block.map_or(0, <[u8]>::len));
    out.extend_from_slice(&u64::MAX.to_le_bytes());
    out.extend_from_slice(&ACTION_FETCH_RAW_BLOCK.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&timing.to_le_bytes());
    out.extend_from_slice(&req_id.to_le_bytes());
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    match block {
        Some(block) => {
            out.push(0);
            out.extend_from_slice(&(block.len() as u32).to_le_bytes());
            out.extend_from_slice(block);
        }
        None => out.push(1),
    }
    out
}
