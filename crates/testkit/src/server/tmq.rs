//! The TMQ protocol (`/rest/tmq`) as taos-ws 0.12.3's consumer speaks it.
//!
//! Text frames carry `{"action": …, "args": {…}}`: `subscribe`, `poll`, `fetch`,
//! `fetch_block`, `fetch_json_meta`, `fetch_raw`, `commit`, `commit_offset`, `seek`,
//! `committed`, `position`, `assignment`, `unsubscribe`. Every text reply carries `code`,
//! `message`, `action`, `req_id` and `timing`, plus the fields the client's reply type
//! requires even on errors (`data`, `committed`, `position`), because a reply it cannot
//! deserialize panics its reader task. `fetch_block` is answered with a binary frame
//! `u64 timing | u64 req_id | u64 message_id | raw block`.
//!
//! One connection holds at most one subscription (one consumer). Offsets are WAL versions;
//! the consumer group's committed offsets live in the store, so they survive reconnects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::Server;
use super::wire::{elapsed_ns, ok_reply};
use crate::error::{EmuError, code};
use crate::raw_block;
use crate::store::tmq_api::{Assignment, OffsetReset, WalBody, WalEntry};

/// Messages kept per connection for fetches; older ones are forgotten.
const KEEP_MESSAGES: usize = 256;
/// TDengine's "no committed offset" as the `committed` value (`TSDB_CODE_TMQ_NO_COMMITTED`).
const NO_COMMITTED: i64 = -2_147_467_247;

/// A polled message.
struct Msg {
    entry: Arc<WalEntry>,
    /// `fetch` announced the block.
    announced: bool,
    /// `fetch_block` sent it.
    sent: bool,
}

/// The connection's consumer.
struct Sub {
    group: String,
    consumer: u64,
    auto_commit: bool,
    with_table_name: bool,
    topics: Vec<String>,
    assign: Vec<Assignment>,
    /// Round-robin start for the next poll.
    next: usize,
}

struct Conn {
    server: Server,
    sub: Option<Sub>,
    messages: BTreeMap<u64, Msg>,
    last_message: u64,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(s) = self.sub.take() {
            self.server.store.tmq_release(s.consumer);
        }
    }
}

/// Runs one TMQ connection until the client leaves, the server stops, or the emulator is told
/// to drop every connection.
pub(crate) async fn run(server: Server, ws: super::Ws, stop: watch::Receiver<bool>) {
    let conn = Conn {
        server: server.clone(),
        sub: None,
        messages: BTreeMap::new(),
        last_message: 0,
    };
    super::serve(&server, ws, stop, conn).await;
}

impl super::Protocol for Conn {
    const TMQ: bool = true;

    fn fault_reply(req: &super::fault::Request, err: &EmuError) -> Message {
        Message::Text(error_json(&req.action, req.req_id, 0, err))
    }

    async fn on_frame(&mut self, frame: Message) -> Option<Message> {
        match frame {
            Message::Text(text) => Some(self.on_text(&text)),
            _ => Some(Message::Text(error_json(
                "",
                0,
                0,
                &EmuError::new(
                    code::INVALID_MSG,
                    "binary frames are not part of the TMQ protocol",
                ),
            ))),
        }
    }
}

/// An error reply with the fields the client's reply type for `action` requires.
fn error_json(action: &str, req_id: u64, timing: u64, err: &EmuError) -> String {
    let mut v = json!({
        "code": err.code & 0xffff,
        "message": err.message,
        "action": action,
        "req_id": req_id,
        "timing": timing,
    });
    match action {
        "fetch_json_meta" => v["data"] = Json::Null,
        "committed" => v["committed"] = json!([]),
        "position" => v["position"] = json!([]),
        _ => {}
    }
    v.to_string()
}

fn bad(msg: impl Into<String>) -> EmuError {
    EmuError::new(code::INVALID_PARA, msg)
}

fn arg_str<'a>(args: &'a Json, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Json::as_str)
}

fn arg_u64(args: &Json, key: &str) -> Result<u64, EmuError> {
    args.get(key)
        .and_then(Json::as_u64)
        .ok_or_else(|| bad(format!("missing or invalid {key}")))
}

fn arg_i64(args: &Json, key: &str) -> Result<i64, EmuError> {
    args.get(key)
        .and_then(Json::as_i64)
        .ok_or_else(|| bad(format!("missing or invalid {key}")))
}

fn arg_vgroup(args: &Json) -> Result<u32, EmuError> {
    args.get("vgroup_id")
        .and_then(Json::as_i64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad("missing or invalid vgroup_id"))
}

fn flag(args: &Json, key: &str, default: bool) -> bool {
    match args.get(key) {
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Json::String(s)) if s.eq_ignore_ascii_case("false") => false,
        _ => default,
    }
}

fn not_subscribed() -> EmuError {
    EmuError::new(0xffff, "tmq not init")
}

impl Conn {
    fn on_text(&mut self, text: &str) -> Message {
        let t = Instant::now();
        let v: Json = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let err = EmuError::new(code::INVALID_MSG, format!("invalid JSON request: {e}"));
                return Message::Text(error_json("", 0, 0, &err));
            }
        };
        let action = arg_str(&v, "action").unwrap_or("").to_owned();
        let args = v.get("args").cloned().unwrap_or(Json::Null);
        let req_id = args.get("req_id").and_then(Json::as_u64).unwrap_or(0);
        let result: Result<Json, EmuError> = match action.as_str() {
            // taosAdapter `controller/ws/tmq/tmq.go` (`version`): the client library's
            // version, `req_id` from the arguments when given.
            "version" => Ok(json!({ "version": self.server.config.server_version })),
            "subscribe" => self.subscribe(&args),
            "unsubscribe" => {
                self.unsubscribe();
                Ok(json!({}))
            }
            "poll" => self.poll(),
            "fetch" => self.fetch(&args),
            "fetch_block" => match self.fetch_block(&args) {
                Ok(block) => {
                    let mid = args.get("message_id").and_then(Json::as_u64).unwrap_or(0);
                    let mut out = Vec::with_capacity(24 + block.len());
                    out.extend_from_slice(&elapsed_ns(t).to_le_bytes());
                    out.extend_from_slice(&req_id.to_le_bytes());
                    out.extend_from_slice(&mid.to_le_bytes());
                    out.extend_from_slice(&block);
                    return Message::Binary(out);
                }
                Err(e) => Err(e),
            },
            "fetch_json_meta" => self.fetch_json_meta(&args),
            "fetch_raw" | "fetch_raw_data" => Err(EmuError::new(
                code::OPS_NOT_SUPPORT,
                "raw TMQ messages are not supported by the emulator; use fetch_json_meta and fetch",
            )),
            "commit" => self.commit(&args),
            "commit_offset" => self.commit_offset(&args),
            "seek" => self.seek(&args),
            "committed" => self.committed(&args),
            "position" => self.position(&args),
            "assignment" => self.assignment(&args),
            other => Err(EmuError::new(0xffff, format!("unknown action {other:?}"))),
        };
        Message::Text(match result {
            Ok(extra) => ok_reply(&action, req_id, elapsed_ns(t), extra),
            Err(err) => error_json(&action, req_id, elapsed_ns(t), &err),
        })
    }

    fn sub(&self) -> Result<&Sub, EmuError> {
        self.sub.as_ref().ok_or_else(not_subscribed)
    }

    fn sub_mut(&mut self) -> Result<&mut Sub, EmuError> {
        self.sub.as_mut().ok_or_else(not_subscribed)
    }

    fn subscribe(&mut self, args: &Json) -> Result<Json, EmuError> {
        let store = self.server.store.clone();
        store.authenticate(
            arg_str(args, "user").unwrap_or(""),
            arg_str(args, "password").unwrap_or(""),
        )?;
        let group = arg_str(args, "group_id").unwrap_or("");
        if group.is_empty() {
            return Err(bad("group.id is required"));
        }
        let reset = arg_str(args, "offset_rest")
            .or_else(|| arg_str(args, "offset_reset"))
            .unwrap_or("");
        let reset = match reset.to_ascii_lowercase().as_str() {
            "earliest" => OffsetReset::Earliest,
            "latest" | "" => OffsetReset::Latest,
            "none" => OffsetReset::None,
            other => return Err(bad(format!("invalid auto.offset.reset {other:?}"))),
        };
        let topics: Vec<String> = match args.get("topics") {
            Some(Json::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("topic names must be strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad("topics must be a list")),
        };
        if topics.is_empty() {
            return Err(bad("no topics to subscribe to"));
        }
        let mut topics = topics;
        let mut seen = std::collections::HashSet::new();
        topics.retain(|t| seen.insert(t.clone()));
        // A resubscription replaces the previous consumer.
        self.unsubscribe();
        let consumer = store.tmq_consumer_id();
        let assign = store.tmq_subscribe(group, consumer, &topics, reset)?;
        self.sub = Some(Sub {
            group: group.to_owned(),
            consumer,
            auto_commit: flag(args, "auto_commit", false),
            with_table_name: flag(args, "with_table_name", true),
            topics,
            assign,
            next: 0,
        });
        Ok(json!({}))
    }

    fn unsubscribe(&mut self) {
        if let Some(s) = self.sub.take() {
            self.server.store.tmq_release(s.consumer);
        }
        self.messages.clear();
    }

    fn commit_all(&self, s: &Sub) {
        for a in &s.assign {
            self.server
                .store
                .tmq_commit(&a.topic, &s.group, a.vgroup, a.pos);
        }
    }

    fn poll(&mut self) -> Result<Json, EmuError> {
        let store = self.server.store.clone();
        if let Some(s) = self.sub.as_ref()
            && s.auto_commit
        {
            self.commit_all(s);
        }
        let s = self.sub_mut()?;
        let n = s.assign.len();
        let mut found = None;
        for k in 0..n {
            let i = (s.next + k) % n;
            if let Some(e) = store.tmq_poll(&mut s.assign[i])? {
                s.next = (i + 1) % n;
                found = Some((i, e));
                break;
            }
        }
        let Some((i, entry)) = found else {
            return Ok(json!({
                "have_message": false,
                "topic": "",
                "database": "",
                "vgroup_id": 0,
                "message_type": 0,
                "message_id": 0,
                "offset": 0,
            }));
        };
        let a = &s.assign[i];
        let message_type = match entry.body {
            WalBody::Meta(_) => 2,
            // `tmq_poll` returns only data and meta entries.
            WalBody::Data { .. } | WalBody::Internal(_) => 1,
        };
        // taosAdapter's `offset` is `tmq_get_vgroup_offset`: the request offset of a data
        // message, the offset after a meta message (clientTmq.c) — both `begin_offset`.
        let reply = json!({
            "have_message": true,
            "topic": a.topic,
            "database": a.db,
            "vgroup_id": a.vgroup,
            "message_type": message_type,
            "offset": a.begin_offset,
        });
        self.last_message += 1;
        let id = self.last_message;
        self.messages.insert(
            id,
            Msg {
                entry,
                announced: false,
                sent: false,
            },
        );
        while self.messages.len() > KEEP_MESSAGES {
            self.messages.pop_first();
        }
        let mut reply = reply;
        reply["message_id"] = json!(id);
        Ok(reply)
    }

    fn message(&mut self, args: &Json) -> Result<&mut Msg, EmuError> {
        let id = arg_u64(args, "message_id")?;
        self.messages
            .get_mut(&id)
            .ok_or_else(|| EmuError::new(0xffff, format!("message {id} not found")))
    }

    fn fetch(&mut self, args: &Json) -> Result<Json, EmuError> {
        let with_table_name = self.sub()?.with_table_name;
        let m = self.message(args)?;
        let WalBody::Data {
            table,
            fields,
            precision,
            columns,
        } = &m.entry.body
        else {
            return Ok(json!({ "completed": true, "rows": 0 }));
        };
        if m.sent {
            return Ok(json!({ "completed": true, "rows": 0 }));
        }
        m.announced = true;
        let rows = columns.first().map_or(0, |c| c.len());
        Ok(json!({
            "completed": false,
            "table_name": if with_table_name { json!(table) } else { Json::Null },
            "fields_count": fields.len(),
            "fields_names": fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            "fields_types": fields.iter().map(|f| f.ty.code()).collect::<Vec<_>>(),
            "fields_lengths": fields.iter().map(|f| f.bytes).collect::<Vec<_>>(),
            "precision": precision.code(),
            "rows": rows,
        }))
    }

    fn fetch_block(&mut self, args: &Json) -> Result<Vec<u8>, EmuError> {
        self.sub()?;
        let m = self.message(args)?;
        let WalBody::Data {
            fields, columns, ..
        } = &m.entry.body
        else {
            return Err(EmuError::new(0xffff, "not a data message"));
        };
        if !m.announced || m.sent {
            return Err(EmuError::new(0xffff, "no block pending: call fetch first"));
        }
        if fields.len() != columns.len() {
            return Err(EmuError::new(0xffff, "message rows were not retained"));
        }
        m.sent = true;
        let rows = columns.first().map_or(0, |c| c.len());
        let cols: Vec<_> = columns.iter().collect();
        Ok(raw_block::encode(fields, &cols, 0..rows))
    }

    fn fetch_json_meta(&mut self, args: &Json) -> Result<Json, EmuError> {
        self.sub()?;
        let m = self.message(args)?;
        match &m.entry.body {
            WalBody::Meta(j) => Ok(json!({ "data": j })),
            WalBody::Data { .. } | WalBody::Internal(_) => {
                Err(EmuError::new(0xffff, "not a meta message"))
            }
        }
    }

    fn commit(&mut self, args: &Json) -> Result<Json, EmuError> {
        // taosAdapter commits every vgroup's position; the message id is echoed only.
        let s = self.sub()?;
        self.commit_all(s);
        let mid = args.get("message_id").and_then(Json::as_u64).unwrap_or(0);
        Ok(json!({ "message_id": mid }))
    }

    fn assigned(&mut self, topic: &str, vgroup: u32) -> Result<&mut Assignment, EmuError> {
        let s = self.sub_mut()?;
        if !s.topics.iter().any(|t| t == topic) {
            return Err(EmuError::new(
                code::TMQ_INVALID_TOPIC,
                "Topic does not belong to this consumer",
            ));
        }
        s.assign
            .iter_mut()
            .find(|a| a.topic == topic && a.vgroup == vgroup)
            .ok_or_else(|| {
                EmuError::new(
                    code::TMQ_INVALID_VGID,
                    "VgId does not belong to this consumer",
                )
            })
    }

    fn commit_offset(&mut self, args: &Json) -> Result<Json, EmuError> {
        let topic = arg_str(args, "topic").unwrap_or("").to_owned();
        let vgroup = arg_vgroup(args)?;
        let offset = arg_i64(args, "offset")?;
        self.assigned(&topic, vgroup)?;
        let group = self.sub()?.group.clone();
        self.server.store.tmq_commit(&topic, &group, vgroup, offset);
        Ok(json!({}))
    }

    fn seek(&mut self, args: &Json) -> Result<Json, EmuError> {
        let topic = arg_str(args, "topic").unwrap_or("").to_owned();
        let vgroup = arg_vgroup(args)?;
        let offset = arg_i64(args, "offset")?;
        let store = self.server.store.clone();
        let a = self.assigned(&topic, vgroup)?;
        let (begin, end) = store.tmq_range(a)?;
        if offset < begin || offset > end {
            return Err(EmuError::new(
                code::TMQ_VERSION_OUT_OF_RANGE,
                format!("Offset out of range: {offset} not in [{begin}, {end}]"),
            ));
        }
        // tmq_offset_seek sets both offsets (`beginOffset = endOffset`, clientTmq.c).
        a.pos = offset;
        a.begin_offset = offset;
        Ok(json!({}))
    }

    fn topic_vgroups(args: &Json) -> Result<Vec<(String, u32)>, EmuError> {
        let Some(Json::Array(list)) = args.get("topic_vgroup_ids") else {
            return Err(bad("topic_vgroup_ids must be a list"));
        };
        list.iter()
            .map(|x| {
                let t = arg_str(x, "topic").ok_or_else(|| bad("missing topic"))?;
                Ok((t.to_owned(), arg_vgroup(x)?))
            })
            .collect()
    }

    fn committed(&mut self, args: &Json) -> Result<Json, EmuError> {
        let pairs = Self::topic_vgroups(args)?;
        let mut out = Vec::with_capacity(pairs.len());
        for (topic, vg) in pairs {
            self.assigned(&topic, vg)?;
            let group = &self.sub()?.group;
            out.push(
                self.server
                    .store
                    .tmq_committed(&topic, group, vg)
                    .unwrap_or(NO_COMMITTED),
            );
        }
        Ok(json!({ "committed": out }))
    }

    fn position(&mut self, args: &Json) -> Result<Json, EmuError> {
        let pairs = Self::topic_vgroups(args)?;
        let store = self.server.store.clone();
        let mut out = Vec::with_capacity(pairs.len());
        for (topic, vg) in pairs {
            let a = self.assigned(&topic, vg)?;
            let (begin, _) = store.tmq_range(a)?;
            a.pos = a.pos.max(begin);
            out.push(a.pos);
        }
        Ok(json!({ "position": out }))
    }

    fn assignment(&mut self, args: &Json) -> Result<Json, EmuError> {
        let topic = arg_str(args, "topic").unwrap_or("").to_owned();
        let store = self.server.store.clone();
        let s = self.sub_mut()?;
        if !s.topics.contains(&topic) {
            return Err(EmuError::new(
                code::TMQ_INVALID_TOPIC,
                "Topic does not belong to this consumer",
            ));
        }
        let mut out = Vec::new();
        for a in s.assign.iter_mut().filter(|a| a.topic == topic) {
            let (begin, end) = store.tmq_range(a)?;
            // As TDengine: a position behind the log's start moves to it silently.
            a.pos = a.pos.max(begin);
            // `offset` is the C client's currentOffset = beginOffset
            // (tmq_get_topic_assignment), not the position.
            out.push(json!({
                "vgroup_id": a.vgroup,
                "offset": a.begin_offset,
                "begin": begin,
                "end": end,
            }));
        }
        Ok(json!({ "assignment": out }))
    }
}
