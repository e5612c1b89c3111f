//! The TMQ protocol (`/rest/tmq`) as taosAdapter serves it (`controller/ws/tmq/tmq.go`).
//!
//! Text frames carry `{"action": …, "args": {…}}`: `version`, `subscribe`, `poll`, `fetch`,
//! `fetch_block`, `fetch_json_meta`, `fetch_raw`, `fetch_raw_data`, `commit`,
//! `commit_offset`, `seek`, `committed`, `position`, `assignment`, `unsubscribe`. Every text
//! reply carries `code`, `message`, `action`, `req_id` and `timing`, plus the fields the
//! client's reply type requires even on errors (`data`, `committed`, `position`), because a
//! reply it cannot deserialize panics its reader task. Binary replies:
//!
//! - `fetch_block`: `u64 timing | u64 req_id | u64 message_id | raw block`;
//! - `fetch_raw`: `u64 timing | u64 req_id | u64 message_id | u64 3 | u32 len |
//!   u16 raw type | raw` (`fetchRawBlock`);
//! - `fetch_raw_data` (taosAdapter 3.3.2.0 and later): `u64 0xFFFF_FFFF_FFFF_FFFF | u64 8 |
//!   u16 1 | u64 timing | u64 req_id | u32 code | u32 message length | message |
//!   u64 message_id` and, on success, `u16 raw type | u32 len | raw`
//!   (`wsFetchRawBlockMessage`, `tmqFetchRawBlockErrorMsg`).
//!
//! One connection holds at most one subscription (one consumer) and, as taosAdapter's
//! `tmpMessage`, one message: a poll frees the previous one, and a fetch naming another
//! message id fails. Offsets are WAL versions; the consumer group's committed offsets live in
//! the store, so they survive reconnects.

use std::time::Instant;

use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::Server;
use super::wire::{elapsed_ns, ok_reply};
use crate::error::{EmuError, code};
use crate::raw_block;
use crate::store::tmq_api::{Assignment, OffsetReset, Polled, WalBody, create_children};
use crate::walfile::Encoder;

/// TDengine's "no committed offset" as the `committed` value (`TSDB_CODE_TMQ_NO_COMMITTED`).
const NO_COMMITTED: i64 = -2_147_467_247;
/// `fetch_raw`'s marker after the message id (`TMQRawMessage`, `controller/ws/tmq/const.go`).
const TMQ_RAW_MESSAGE: u64 = 3;
/// `fetch_raw_data`'s action number in its binary reply (`TMQFetchRawNewMessage`).
const TMQ_FETCH_RAW_NEW_MESSAGE: u64 = 8;
/// `tmq_raw_data.raw_type` of a data message (`RES_TYPE__TMQ`, `client/inc/clientInt.h`).
const RES_TYPE_TMQ: u16 = 2;
/// `tmq_raw_data.raw_type` of a meta+data message (`RES_TYPE__TMQ_METADATA`).
const RES_TYPE_TMQ_METADATA: u16 = 4;
/// First byte of `tmq_get_raw`'s data encoding (`MQ_DATA_RSP_VERSION`, `encodeMqDataRsp`).
const MQ_DATA_RSP_VERSION: i8 = 100;
/// `STqOffsetVal.type` of a WAL offset (`TMQ_OFFSET__LOG`).
const TMQ_OFFSET_LOG: i8 = 1;

/// The connection's message (taosAdapter's `tmpMessage`).
struct Msg {
    /// The message id (`tmpMessage.Index`).
    id: u64,
    polled: Polled,
    /// The poll reply's message fields, sent again when a poll names another message id.
    reply: Json,
    /// The request offset of the poll that returned it (`reqOffset`).
    req_offset: i64,
    /// The position after it (`rspOffset`).
    rsp_offset: i64,
    /// Blocks `fetch` has taken (`taos_fetch_raw_block` iterates the message).
    fetched: usize,
    /// What `fetch` left for `fetch_block`: `u64 0 | u64 req_id | u64 message_id | block`.
    buffer: Option<Vec<u8>>,
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
    message: Option<Msg>,
    last_message: u64,
    /// The server version as four numbers, for the actions newer taosAdapters added.
    version: [u32; 4],
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
        version: version_numbers(&server.config.server_version),
        server: server.clone(),
        sub: None,
        message: None,
        last_message: 0,
    };
    super::serve(&server, ws, stop, conn).await;
}

impl super::Protocol for Conn {
    const TMQ: bool = true;

    fn fault_reply(req: &super::fault::Request, err: &EmuError) -> Message {
        if req.action == "fetch_raw_data" {
            // taosAdapter answers this action's errors in binary (tmqFetchRawBlockErrorMsg).
            return Message::Binary(raw_data_reply(0, req.req_id, 0, Err(err.clone())).into());
        }
        Message::Text(error_json(&req.action, req.req_id, 0, err).into())
    }

    async fn on_frame(&mut self, frame: Message) -> Option<Message> {
        match frame {
            Message::Text(text) => Some(self.on_text(&text)),
            _ => Some(Message::Text(
                error_json(
                    "",
                    0,
                    0,
                    &EmuError::new(
                        code::INVALID_MSG,
                        "binary frames are not part of the TMQ protocol",
                    ),
                )
                .into(),
            )),
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

/// `a.b.c.d` as numbers (missing or unparseable parts are 0).
fn version_numbers(v: &str) -> [u32; 4] {
    let mut out = [0; 4];
    for (o, p) in out.iter_mut().zip(v.split('.')) {
        *o = p.trim().parse().unwrap_or(0);
    }
    out
}

/// taosAdapter 3.3.2.0 added `fetch_raw_data`.
const FETCH_RAW_DATA_SINCE: [u32; 4] = [3, 3, 2, 0];
/// taosAdapter 3.3.6.0 added the poll's `message_id` (`checkPollMessageID`).
const POLL_MESSAGE_ID_SINCE: [u32; 4] = [3, 3, 6, 0];

impl Conn {
    fn on_text(&mut self, text: &str) -> Message {
        let t = Instant::now();
        let v: Json = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let err = EmuError::new(code::INVALID_MSG, format!("invalid JSON request: {e}"));
                return Message::Text(error_json("", 0, 0, &err).into());
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
            "poll" => self.poll(&args),
            "fetch" => self.fetch(&args, req_id),
            "fetch_block" => match self.fetch_block(&args) {
                Ok(mut out) => {
                    out[..8].copy_from_slice(&elapsed_ns(t).to_le_bytes());
                    return Message::Binary(out.into());
                }
                Err(e) => Err(e),
            },
            "fetch_json_meta" => self.fetch_json_meta(&args),
            "fetch_raw" => match self.fetch_raw(&args) {
                Ok((raw_type, raw)) => {
                    let mid = args.get("message_id").and_then(Json::as_u64).unwrap_or(0);
                    let mut out = Vec::with_capacity(38 + raw.len());
                    out.extend_from_slice(&elapsed_ns(t).to_le_bytes());
                    out.extend_from_slice(&req_id.to_le_bytes());
                    out.extend_from_slice(&mid.to_le_bytes());
                    out.extend_from_slice(&TMQ_RAW_MESSAGE.to_le_bytes());
                    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
                    out.extend_from_slice(&raw_type.to_le_bytes());
                    out.extend_from_slice(&raw);
                    return Message::Binary(out.into());
                }
                Err(e) => Err(e),
            },
            "fetch_raw_data" if self.version >= FETCH_RAW_DATA_SINCE => {
                let mid = args.get("message_id").and_then(Json::as_u64).unwrap_or(0);
                let result = self.fetch_raw(&args);
                return Message::Binary(raw_data_reply(elapsed_ns(t), req_id, mid, result).into());
            }
            "commit" => self.commit(&args),
            "commit_offset" => self.commit_offset(&args),
            "seek" => self.seek(&args),
            "committed" => self.committed(&args),
            "position" => self.position(&args),
            "assignment" => self.assignment(&args),
            other => Err(EmuError::new(0xffff, format!("unknown action {other:?}"))),
        };
        Message::Text(
            match result {
                Ok(extra) => ok_reply(&action, req_id, elapsed_ns(t), extra),
                Err(err) => error_json(&action, req_id, elapsed_ns(t), &err),
            }
            .into(),
        )
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
        self.message = None;
    }

    fn commit_all(&self, s: &Sub) {
        for a in &s.assign {
            self.server
                .store
                .tmq_commit(&a.topic, &s.group, a.vgroup, a.pos);
        }
    }

    fn poll(&mut self, args: &Json) -> Result<Json, EmuError> {
        let store = self.server.store.clone();
        self.sub()?;
        // taosAdapter 3.3.6+ (`checkPollMessageID`): a poll naming a message id other than the
        // one it holds gets that message again instead of a new one (a client that lost the
        // reply).
        if self.version >= POLL_MESSAGE_ID_SINCE
            && let (Some(asked), Some(m)) = (
                args.get("message_id").and_then(Json::as_u64),
                self.message.as_ref(),
            )
            && asked != m.id
        {
            return Ok(m.reply.clone());
        }
        if let Some(s) = self.sub.as_ref()
            && s.auto_commit
        {
            self.commit_all(s);
        }
        // A new poll frees the message held (`wrapperFreeResult`).
        self.message = None;
        let s = self.sub_mut()?;
        let n = s.assign.len();
        let mut found = None;
        for k in 0..n {
            let i = (s.next + k) % n;
            let requested = s.assign[i].pos;
            if let Some(p) = store.tmq_poll(&mut s.assign[i])? {
                s.next = (i + 1) % n;
                found = Some((i, requested, p));
                break;
            }
        }
        let Some((i, requested, polled)) = found else {
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
        let a = s.assign[i].clone();
        self.last_message += 1;
        let id = self.last_message;
        // taosAdapter's `offset` is `tmq_get_vgroup_offset`: the request offset of a data
        // message, the offset after a meta message (clientTmq.c) — both `begin_offset`.
        let reply = json!({
            "have_message": true,
            "topic": a.topic,
            "database": a.db,
            "vgroup_id": a.vgroup,
            "message_type": polled.message_type(),
            "message_id": id,
            "offset": a.begin_offset,
        });
        self.message = Some(Msg {
            id,
            polled,
            reply: reply.clone(),
            req_offset: requested,
            rsp_offset: a.pos,
            fetched: 0,
            buffer: None,
        });
        Ok(reply)
    }

    /// The message held, checked against the request's `message_id` as taosAdapter does
    /// ("message has been freed", "message ID are not equal").
    fn message(&mut self, args: &Json) -> Result<&mut Msg, EmuError> {
        self.sub()?;
        let id = arg_u64(args, "message_id")?;
        let m = self
            .message
            .as_mut()
            .ok_or_else(|| EmuError::new(0xffff, "message has been freed"))?;
        if m.id != id {
            return Err(EmuError::new(0xffff, "message ID are not equal"));
        }
        Ok(m)
    }

    /// The next block of a data message into the buffer `fetch_block` sends
    /// (`fetch`: `taos_fetch_raw_block`, then the table name, fields and precision).
    fn fetch(&mut self, args: &Json, req_id: u64) -> Result<Json, EmuError> {
        let with_table_name = self.sub()?.with_table_name;
        let m = self.message(args)?;
        if m.polled.message_type() == 2 {
            return Err(EmuError::new(0xffff, "message type is not data"));
        }
        let blocks = m.polled.blocks();
        let Some(b) = blocks.get(m.fetched).copied() else {
            return Ok(json!({ "message_id": m.id, "completed": true }));
        };
        if !b.retained() {
            return Err(EmuError::new(0xffff, "message rows were not retained"));
        }
        let block = b.block_bytes()?;
        let rows = b.rows();
        let reply = json!({
            "message_id": m.id,
            "completed": false,
            "table_name": if with_table_name { json!(b.table) } else { json!("") },
            "fields_count": b.fields.len(),
            "fields_names": b.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            "fields_types": b.fields.iter().map(|f| f.ty.code()).collect::<Vec<_>>(),
            "fields_lengths": b.fields.iter().map(|f| f.bytes).collect::<Vec<_>>(),
            "precision": b.precision.code(),
            "rows": rows,
        });
        let mut buffer = Vec::with_capacity(24 + block.len());
        buffer.extend_from_slice(&0u64.to_le_bytes());
        buffer.extend_from_slice(&req_id.to_le_bytes());
        buffer.extend_from_slice(&m.id.to_le_bytes());
        buffer.extend_from_slice(&block);
        m.buffer = Some(buffer);
        m.fetched += 1;
        Ok(reply)
    }

    /// The buffer the last `fetch` filled (taosAdapter sends it again if asked again).
    fn fetch_block(&mut self, args: &Json) -> Result<Vec<u8>, EmuError> {
        let m = self.message(args)?;
        if m.polled.message_type() == 2 {
            return Err(EmuError::new(0xffff, "message type is not data"));
        }
        m.buffer
            .clone()
            .ok_or_else(|| EmuError::new(0xffff, "no fetch data"))
    }

    /// `tmq_get_json_meta`: the meta message's JSON, or for a meta+data message the creates
    /// it carries as one `create` (`processAutoCreateTable` → `buildCreateCTableJson`).
    fn fetch_json_meta(&mut self, args: &Json) -> Result<Json, EmuError> {
        self.sub()?;
        // taosAdapter checks the type before the id.
        if let Some(m) = self.message.as_ref()
            && m.polled.message_type() == 1
        {
            return Err(EmuError::new(
                0xffff,
                "message type can not get meta, type: 1",
            ));
        }
        let m = self.message(args)?;
        let data = match &m.polled {
            Polled::Meta(e) => match &e.body {
                WalBody::Meta(j) => j.clone(),
                _ => Json::Null,
            },
            Polled::Data { .. } => {
                let creates: Vec<Json> = m.polled.creates().into_iter().cloned().collect();
                create_children(&creates).unwrap_or(Json::Null)
            }
        };
        Ok(json!({ "message_id": m.id, "data": data }))
    }

    /// `tmq_get_raw` of the message: its raw type and bytes. Data and meta+data messages are
    /// encoded as `encodeMqDataRsp` does; meta messages are refused (see [`raw_data`]).
    fn fetch_raw(&mut self, args: &Json) -> Result<(u16, Vec<u8>), EmuError> {
        let with_table_name = self.sub()?.with_table_name;
        let m = self.message(args)?;
        raw_data(m, with_table_name)
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

/// `tmq_get_raw` of a data (`RES_TYPE__TMQ`) or meta+data (`RES_TYPE__TMQ_METADATA`)
/// message, as `encodeMqDataRsp` (`client/src/clientRawBlockWrite.c`) writes it:
///
/// ```text
/// i8 100 (MQ_DATA_RSP_VERSION) | i32 offsetLen | reqOffset | rspOffset   -- offsetLen bytes
/// i32 blockNum | [i8 withTbName | i8 withSchema (1) | per block:
///     binary(SRetrieveTableRspForTmq: i64 version 1 | i64 rows (big-endian) |
///            i8 compressed 0 | i8 precision | raw block)
///     SSchemaWrapper: i32v nCols | i32v version | per column i8 type | i8 flags |
///                     i32v bytes | i16v colId | cstr name
///     [cstr table name]]
/// data: i64 sleepTime (tEncodeMqDataRsp)
/// meta+data: i32 createTableNum | per create binary(SVCreateTbReq) (tEncodeSTaosxRsp)
/// ```
///
/// (`tEncodeMqDataRspCommon`, `source/common/src/tmsg.c`; `SRetrieveTableRspForTmq`,
/// `include/common/tmsg.h`; `tqAddBlockDataToRsp`, `tq/tqScan.c`; colId `i + 1` as
/// taosAdapter's `TestTMQ_FetchRawNew` reads it.) An offset is `i8 type (1, log) |
/// i64 version` as the stored 3.3-era `tEncodeSTqOffsetVal` writes it; newer versions put an
/// encoding version in the type's upper four bits, which every reader skips with
/// `offsetLen`. The create requests carry no tag values (`walfile::create_table_req`).
///
/// A meta message's raw form is the vnode request as the WAL holds it (`tmq_get_raw` hands
/// out `metaRsp.metaRsp`); the emulator does not keep those bytes, so it refuses with
/// 0x0100.
fn raw_data(m: &Msg, with_table_name: bool) -> Result<(u16, Vec<u8>), EmuError> {
    let Polled::Data { .. } = &m.polled else {
        return Err(EmuError::new(
            code::OPS_NOT_SUPPORT,
            "the emulator keeps no raw form of meta messages; use fetch_json_meta",
        ));
    };
    let blocks = m.polled.blocks();
    let mut offsets = Encoder::new();
    for v in [m.req_offset, m.rsp_offset] {
        offsets.i8(TMQ_OFFSET_LOG).i64(v);
    }
    let offsets = offsets.finish();
    let mut e = Encoder::new();
    e.i8(MQ_DATA_RSP_VERSION)
        .i32(offsets.len() as i32)
        .raw(&offsets)
        .i32(blocks.len() as i32);
    if !blocks.is_empty() {
        e.i8(i8::from(with_table_name)).i8(1);
        for b in &blocks {
            let block = b.block_bytes()?;
            let mut retrieve = Vec::with_capacity(18 + block.len());
            retrieve.extend_from_slice(&1i64.to_le_bytes());
            retrieve.extend_from_slice(&(b.rows() as i64).to_be_bytes());
            retrieve.push(0);
            retrieve.push(b.precision.code());
            retrieve.extend_from_slice(&block);
            e.binary(&retrieve);
            e.iv(b.fields.len() as i64).iv(1);
            for (i, f) in b.fields.iter().enumerate() {
                e.u8(f.ty.code())
                    .i8(1)
                    .iv(i64::from(raw_block::schema_bytes(f)))
                    .iv(i as i64 + 1)
                    .cstr(&f.name);
            }
            if with_table_name {
                e.cstr(&b.table);
            }
        }
    }
    let creates: Vec<&[u8]> = match &m.polled {
        Polled::Data {
            with_meta: true, ..
        } => blocks
            .iter()
            .filter_map(|b| b.create.as_ref().map(|c| c.req.as_slice()))
            .collect(),
        _ => Vec::new(),
    };
    if creates.is_empty() {
        e.i64(0);
        Ok((RES_TYPE_TMQ, e.finish()))
    } else {
        e.i32(creates.len() as i32);
        for c in creates {
            e.binary(c);
        }
        Ok((RES_TYPE_TMQ_METADATA, e.finish()))
    }
}

/// `fetch_raw_data`'s binary reply: `wsFetchRawBlockMessage` on success,
/// `tmqFetchRawBlockErrorMsg` on failure (`controller/ws/tmq/tmq.go`).
fn raw_data_reply(
    timing: u64,
    req_id: u64,
    message_id: u64,
    result: Result<(u16, Vec<u8>), EmuError>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u64::MAX.to_le_bytes());
    out.extend_from_slice(&TMQ_FETCH_RAW_NEW_MESSAGE.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&timing.to_le_bytes());
    out.extend_from_slice(&req_id.to_le_bytes());
    match result {
        Ok((raw_type, raw)) => {
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&message_id.to_le_bytes());
            out.extend_from_slice(&raw_type.to_le_bytes());
            out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            out.extend_from_slice(&raw);
        }
        Err(e) => {
            out.extend_from_slice(&(e.code & 0xffff).to_le_bytes());
            out.extend_from_slice(&(e.message.len() as u32).to_le_bytes());
            out.extend_from_slice(e.message.as_bytes());
            out.extend_from_slice(&message_id.to_le_bytes());
        }
    }
    out
}
