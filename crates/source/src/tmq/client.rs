//! A small client of taosAdapter's TMQ WebSocket API (`/rest/tmq`), for the `tmq` feed.
//!
//! Why not the `taos` crate's consumer: taos-ws 0.12.3 (a) parses meta messages into
//! taos-query 0.12.4's typed structs, which reject `alterType` 9 without `colName`, 13, 14,
//! 15 and drop `createList`, so the raw JSON is out of reach; (b) drops a poll whose reply is
//! late (`recv_timeout` abandons the request while taosAdapter has already handed the
//! message out); (c) hides empty polls, so a position that moved over WAL entries that
//! yield no message cannot be told from a lost message. This client sends one request at a
//! time and reads its reply before anything else, so after an empty poll reply nothing is
//! in flight and `position` is exact.
//!
//! The protocol, from taosAdapter's `controller/ws/tmq/tmq.go` (actions `subscribe`,
//! `poll`, `fetch`, `fetch_block`, `fetch_json_meta`, `seek`, `position`, `assignment`,
//! `commit_offset`; request `{"action": …, "args": {"req_id": …, …}}`; every text reply has
//! `code`, `message`, `action`, `req_id`; errors are `code & 0xffff`), and taos-ws 0.12.3's
//! `consumer/messages.rs` for the arguments it sends (`offset_rest`, spelled so on purpose).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Error;

/// The connector's "connection closed" code (taos-ws `WS_ERROR_NO::CONN_CLOSED`): transient.
const CODE_CONN_CLOSED: u32 = 0xE002;

/// A polled message: which vgroup it came from and how to fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Polled {
    /// The topic.
    pub topic: String,
    /// The vgroup.
    pub vgroup: i32,
    /// 1 data, 2 meta, 3 meta and data (taosAdapter's `message_type`).
    pub message_type: i64,
    /// The id for fetches.
    pub message_id: u64,
    /// taosAdapter's `offset`: `tmq_get_vgroup_offset` (clientTmq.c), for a meta message its
    /// response offset, which TDengine sets to the meta entry's version plus one (3.3's
    /// `tqUtil.c`, `extractDataAndRspForDbStbSubscribe`) or, in 3.0's `tqScanTaosx`, to the
    /// version itself. Only a hint: positions are taken from the server's `position`.
    pub offset: Option<i64>,
}

/// One vgroup of the topic's assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Assigned {
    /// The vgroup.
    pub vgroup: i32,
    /// The C client's `currentOffset`: where the last poll that returned data started
    /// (clientTmq.c `tmq_get_topic_assignment`), not the position.
    pub offset: i64,
    /// First WAL version kept.
    pub begin: i64,
    /// Last WAL version + 1.
    pub end: i64,
}

/// What `fetch` announced: the block that `fetch_block` returns next.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    /// The table the block belongs to. (The timestamps are read raw, in the database's
    /// precision, so the reply's `precision` is not needed.)
    pub table: Option<String>,
    /// The `fetch` request's id: taosAdapter's `fetch` writes it into the buffer that
    /// `fetch_block` later sends (`controller/ws/tmq/tmq.go`, `fetch` fills
    /// `message.buffer[8:]`, `fetchBlock` only stamps the timing), so the block carries this
    /// id, not the `fetch_block` request's. taos-ws sends both requests with one id for this
    /// reason.
    pub req_id: u64,
}

/// One consumer connection.
pub(crate) struct TmqClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_req: u64,
    timeout: Duration,
    endpoint: String,
    /// The server answers `fetch_raw_data` (see [`TmqClient::detect_raw_data`]).
    raw_data: bool,
}

impl std::fmt::Debug for TmqClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmqClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn connection_error(op: &'static str, endpoint: &str, message: String) -> Error {
    Error::server(
        op,
        endpoint,
        None,
        None,
        taos::Error::new(CODE_CONN_CLOSED as i32, message),
    )
}

/// The TDengine error of a reply with a non-zero `code`.
fn reply_error(op: &'static str, endpoint: &str, reply: &Json) -> Option<Error> {
    let code = reply.get("code").and_then(Json::as_i64).unwrap_or(0);
    if code == 0 {
        return None;
    }
    let code = ((code as u32) & 0xFFFF) as i32;
    let message = reply
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    Some(Error::server(
        op,
        endpoint,
        None,
        None,
        taos::Error::new(code, message),
    ))
}

impl TmqClient {
    /// Opens `url` (`ws[s]://host:port/rest/tmq[?token=…]`); `endpoint` names it in errors.
    pub(crate) async fn connect(
        url: &str,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<TmqClient, Error> {
        // Nagle off: tungstenite writes each frame at once, but a frame sent before the
        // server has acknowledged the one before it (tungstenite answers a ping with a pong
        // of its own) would wait for a delayed ACK, up to 40 ms (taosbackup_core::net).
        let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (ws, _) = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(connection_error(
                    "connect tmq consumer",
                    endpoint,
                    format!("WebSocket connection to /rest/tmq failed: {e}"),
                ));
            }
            Err(_) => {
                return Err(Error::Timeout {
                    operation: "connect tmq consumer",
                    endpoint: endpoint.to_string(),
                    database: None,
                    table: None,
                    timeout,
                });
            }
        };
        let mut c = TmqClient {
            ws,
            next_req: 1,
            timeout,
            endpoint: endpoint.to_string(),
            raw_data: false,
        };
        c.detect_raw_data().await?;
        Ok(c)
    }

    /// Asks the server's version (`version`, which taosAdapter answers on `/rest/tmq` too:
    /// `controller/ws/tmq/tmq.go`, `case wstool.ClientVersion`) and uses `fetch_raw_data`
    /// from 3.3.2.0 on, the version that added it, as taos-ws does (`is_fetch_raw_supported`
    /// in `taos-ws/src/consumer/conn.rs`, git HEAD). Before it, taosAdapter does not answer
    /// the action at all, so it must never be sent there. An error reply or a version that
    /// cannot be read keeps `fetch` + `fetch_block`, which every version serves.
    async fn detect_raw_data(&mut self) -> Result<(), Error> {
        let reply = match self
            .request("version", "version", json!({}), self.timeout)
            .await
        {
            Ok(r) => r,
            // The server's error reply (not a lost connection, which is reported as one).
            Err(e) if e.code().is_some_and(|c| c != CODE_CONN_CLOSED) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.raw_data = reply
            .get("version")
            .and_then(Json::as_str)
            .is_some_and(serves_raw_data);
        Ok(())
    }

    /// Whether data messages are read with `fetch_raw_data` on this connection.
    pub(crate) fn reads_raw_data(&self) -> bool {
        self.raw_data
    }

    fn timeout_error(&self, op: &'static str, timeout: Duration) -> Error {
        Error::Timeout {
            operation: op,
            endpoint: self.endpoint.clone(),
            database: None,
            table: None,
            timeout,
        }
    }

    async fn send(&mut self, op: &'static str, action: &str, args: Json) -> Result<u64, Error> {
        let req_id = self.next_req;
        self.next_req += 1;
        self.send_as(op, action, args, req_id).await
    }

    /// Sends a request under a given id.
    async fn send_as(
        &mut self,
        op: &'static str,
        action: &str,
        mut args: Json,
        req_id: u64,
    ) -> Result<u64, Error> {
        args["req_id"] = json!(req_id);
        let text = json!({ "action": action, "args": args }).to_string();
        match tokio::time::timeout(self.timeout, self.ws.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => Ok(req_id),
            Ok(Err(e)) => Err(connection_error(op, &self.endpoint, e.to_string())),
            Err(_) => Err(self.timeout_error(op, self.timeout)),
        }
    }

    /// The next data frame (pings are answered by the library; pongs and other control
    /// frames are skipped).
    async fn next_frame(&mut self, op: &'static str, wait: Duration) -> Result<Message, Error> {
        loop {
            let frame = match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return Err(self.timeout_error(op, wait)),
                Ok(None) => {
                    return Err(connection_error(
                        op,
                        &self.endpoint,
                        "connection closed by the server".into(),
                    ));
                }
                Ok(Some(Err(e))) => {
                    return Err(connection_error(op, &self.endpoint, e.to_string()));
                }
                Ok(Some(Ok(m))) => m,
            };
            match frame {
                Message::Text(_) | Message::Binary(_) => return Ok(frame),
                Message::Close(c) => {
                    return Err(connection_error(
                        op,
                        &self.endpoint,
                        format!("connection closed by the server: {c:?}"),
                    ));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Sends a request and returns its JSON reply (`wait` bounds the reply; a server error
    /// becomes an [`Error::Server`]). Replies to other requests cannot arrive: requests are
    /// sequential; one that does is an error, never silently taken for ours.
    async fn request(
        &mut self,
        op: &'static str,
        action: &str,
        args: Json,
        wait: Duration,
    ) -> Result<Json, Error> {
        let req_id = self.send(op, action, args).await?;
        let frame = self.next_frame(op, wait).await?;
        let Message::Text(text) = frame else {
            return Err(self.unexpected(op, "a binary frame where a JSON reply was expected"));
        };
        let reply: Json = serde_json::from_str(&text)
            .map_err(|e| self.unexpected(op, &format!("reply is not JSON ({e}): {text}")))?;
        if let Some(e) = reply_error(op, &self.endpoint, &reply) {
            return Err(e);
        }
        let got = reply.get("req_id").and_then(Json::as_u64);
        if got != Some(req_id) {
            return Err(self.unexpected(op, &format!("reply to request {got:?}, not {req_id}")));
        }
        Ok(reply)
    }

    fn unexpected(&self, op: &'static str, reason: &str) -> Error {
        Error::UnexpectedReply {
            what: format!("tmq {op} on {}", self.endpoint),
            database: None,
            table: None,
            reason: reason.to_string(),
        }
    }

    /// Subscribes to `topics` as a member of `group`, never auto-committing.
    pub(crate) async fn subscribe(
        &mut self,
        user: &str,
        password: &str,
        group: &str,
        topics: &[String],
    ) -> Result<(), Error> {
        let args = json!({
            "user": user,
            "password": password,
            "db": "",
            "group_id": group,
            "client_id": group,
            "offset_rest": "latest",
            "auto_commit": "false",
            "snapshot_enable": "false",
            "with_table_name": "true",
            "topics": topics,
        });
        self.request("subscribe", "subscribe", args, self.timeout)
            .await
            .map(|_| ())
    }

    /// One poll, waiting up to `blocking` on the server. `None`: no message (the position
    /// may still have moved over entries that yield none).
    pub(crate) async fn poll(&mut self, blocking: Duration) -> Result<Option<Polled>, Error> {
        let ms = i64::try_from(blocking.as_millis()).unwrap_or(i64::MAX);
        let r = self
            .request(
                "poll",
                "poll",
                json!({ "blocking_time": ms }),
                self.timeout + blocking,
            )
            .await?;
        if !r
            .get("have_message")
            .and_then(Json::as_bool)
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let field = |k: &str| r.get(k).and_then(Json::as_i64);
        match (
            r.get("topic").and_then(Json::as_str),
            field("vgroup_id").and_then(|v| i32::try_from(v).ok()),
            field("message_type"),
            r.get("message_id").and_then(Json::as_u64),
        ) {
            (Some(topic), Some(vgroup), Some(message_type), Some(message_id)) => Ok(Some(Polled {
                topic: topic.to_string(),
                vgroup,
                message_type,
                message_id,
                offset: r.get("offset").and_then(Json::as_i64),
            })),
            _ => Err(self.unexpected("poll", &format!("incomplete poll reply: {r}"))),
        }
    }

    /// Announces the next block of a data message; `None` when the message has no more.
    pub(crate) async fn fetch(&mut self, message_id: u64) -> Result<Option<Fetched>, Error> {
        let r = self
            .request(
                "fetch tmq block",
                "fetch",
                json!({ "message_id": message_id }),
                self.timeout,
            )
            .await?;
        if r.get("completed").and_then(Json::as_bool).unwrap_or(false) {
            return Ok(None);
        }
        // `request` checked that the reply carries the id the request was sent with.
        let req_id = r.get("req_id").and_then(Json::as_u64).unwrap_or_default();
        Ok(Some(Fetched {
            table: r
                .get("table_name")
                .and_then(Json::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            req_id,
        }))
    }

    /// The raw block `fetch` announced: binary `u64 timing | u64 req_id | u64 message_id |
    /// block` (taosAdapter `fetchBlock`), requested and answered under the `fetch`'s id (see
    /// [`Fetched::req_id`]).
    pub(crate) async fn fetch_block(
        &mut self,
        message_id: u64,
        fetched: &Fetched,
    ) -> Result<Vec<u8>, Error> {
        let op = "fetch tmq block";
        let req_id = self
            .send_as(
                op,
                "fetch_block",
                json!({ "message_id": message_id }),
                fetched.req_id,
            )
            .await?;
        match self.next_frame(op, self.timeout).await? {
            Message::Binary(b) if b.len() >= 24 => {
                let got = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
                if got != req_id {
                    return Err(self.unexpected(op, &format!("block of request {got}")));
                }
                Ok(b[24..].to_vec())
            }
            Message::Text(text) => {
                let reply: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                Err(reply_error(op, &self.endpoint, &reply)
                    .unwrap_or_else(|| self.unexpected(op, &format!("text reply {text}"))))
            }
            _ => Err(self.unexpected(op, "short binary frame")),
        }
    }

    /// A data or meta+data message's raw bytes (`tmq_get_raw`), every block in one reply:
    /// `fetch_raw_data`'s binary `u64 0xFFFF_FFFF_FFFF_FFFF | u64 8 | u16 1 | u64 timing |
    /// u64 req_id | u32 code | u32 message length | message | u64 message_id`, then on
    /// success `u16 raw type | u32 length | raw` (taosAdapter `wsFetchRawBlockMessage`,
    /// `tmqFetchRawBlockErrorMsg`). Only when [`TmqClient::reads_raw_data`].
    pub(crate) async fn fetch_raw_data(&mut self, message_id: u64) -> Result<Vec<u8>, Error> {
        let op = "fetch tmq raw data";
        let req_id = self
            .send(op, "fetch_raw_data", json!({ "message_id": message_id }))
            .await?;
        let b = match self.next_frame(op, self.timeout).await? {
            Message::Binary(b) => b,
            Message::Text(text) => {
                let reply: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                return Err(reply_error(op, &self.endpoint, &reply)
                    .unwrap_or_else(|| self.unexpected(op, &format!("text reply {text}"))));
            }
            _ => return Err(self.unexpected(op, "a frame that is neither text nor binary")),
        };
        let u64_at = |at: usize| {
            b.get(at..at + 8)
                .map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default()))
        };
        let u32_at = |at: usize| {
            b.get(at..at + 4)
                .map(|s| u32::from_le_bytes(s.try_into().unwrap_or_default()))
        };
        if u64_at(0) != Some(u64::MAX) || u64_at(8) != Some(8) {
            return Err(self.unexpected(op, "a binary reply that is not fetch_raw_data's"));
        }
        let (Some(got), Some(code), Some(len)) = (u64_at(26), u32_at(34), u32_at(38)) else {
            return Err(self.unexpected(op, "short binary reply"));
        };
        if got != req_id {
            return Err(self.unexpected(op, &format!("reply to request {got}, not {req_id}")));
        }
        let text_end = 42 + len as usize;
        let Some(text) = b.get(42..text_end) else {
            return Err(self.unexpected(op, "short binary reply"));
        };
        if code != 0 {
            let message = String::from_utf8_lossy(text).into_owned();
            return Err(Error::server(
                op,
                &self.endpoint,
                None,
                None,
                taos::Error::new((code & 0xFFFF) as i32, message),
            ));
        }
        let raw_type = b
            .get(text_end + 8..text_end + 10)
            .map(|s| u16::from_le_bytes([s[0], s[1]]));
        let raw_len = u32_at(text_end + 10).map(|l| l as usize);
        let start = text_end + 14;
        match (raw_type, raw_len) {
            // RES_TYPE__TMQ (2) and RES_TYPE__TMQ_METADATA (4), client/inc/clientInt.h.
            (Some(2 | 4), Some(n)) if b.len() == start + n => Ok(b[start..].to_vec()),
            (Some(2 | 4), _) => Err(self.unexpected(op, "raw data length does not match")),
            (t, _) => Err(self.unexpected(op, &format!("raw type {t:?} for a data message"))),
        }
    }

    /// The meta message's JSON exactly as the server sent it (`fetch_json_meta` → `data`).
    pub(crate) async fn fetch_json_meta(&mut self, message_id: u64) -> Result<Json, Error> {
        let mut r = self
            .request(
                "fetch tmq meta",
                "fetch_json_meta",
                json!({ "message_id": message_id }),
                self.timeout,
            )
            .await?;
        Ok(r.get_mut("data").map(Json::take).unwrap_or(Json::Null))
    }

    /// Moves the consumer to `offset` in `vgroup`.
    pub(crate) async fn seek(
        &mut self,
        topic: &str,
        vgroup: i32,
        offset: i64,
    ) -> Result<(), Error> {
        self.offset_action("seek", "seek", topic, vgroup, offset)
            .await
    }

    /// Commits `offset` for the group in `vgroup`.
    pub(crate) async fn commit_offset(
        &mut self,
        topic: &str,
        vgroup: i32,
        offset: i64,
    ) -> Result<(), Error> {
        self.offset_action("commit offset", "commit_offset", topic, vgroup, offset)
            .await
    }

    /// An action taking `{topic, vgroup_id, offset}` and answering nothing else.
    async fn offset_action(
        &mut self,
        op: &'static str,
        action: &str,
        topic: &str,
        vgroup: i32,
        offset: i64,
    ) -> Result<(), Error> {
        let args = json!({ "topic": topic, "vgroup_id": vgroup, "offset": offset });
        self.request(op, action, args, self.timeout)
            .await
            .map(|_| ())
    }

    /// The consumer's position (next version to read) in `vgroup`: the C client's
    /// `endOffset`, moved by every poll response, empty ones included.
    pub(crate) async fn position(&mut self, topic: &str, vgroup: i32) -> Result<i64, Error> {
        let all = self.positions(topic, &[vgroup]).await?;
        Ok(all.first().copied().unwrap_or_default())
    }

    /// [`TmqClient::position`] of several vgroups in one round trip: taosAdapter's
    /// `position` takes a list of `topic_vgroup_ids` and answers one position each, in
    /// order (`controller/ws/tmq/tmq.go`, `position`).
    pub(crate) async fn positions(
        &mut self,
        topic: &str,
        vgroups: &[i32],
    ) -> Result<Vec<i64>, Error> {
        let ids: Vec<Json> = vgroups
            .iter()
            .map(|vg| json!({ "topic": topic, "vgroup_id": vg }))
            .collect();
        let r = self
            .request(
                "position",
                "position",
                json!({ "topic_vgroup_ids": ids }),
                self.timeout,
            )
            .await?;
        let got: Option<Vec<i64>> = r
            .get("position")
            .and_then(Json::as_array)
            .and_then(|a| a.iter().map(Json::as_i64).collect());
        match got {
            Some(p) if p.len() == vgroups.len() => Ok(p),
            _ => Err(self.unexpected(
                "position",
                &format!("{} positions expected in {r}", vgroups.len()),
            )),
        }
    }

    /// The topic's vgroups with their WAL ranges.
    pub(crate) async fn assignment(&mut self, topic: &str) -> Result<Vec<Assigned>, Error> {
        let r = self
            .request(
                "assignment",
                "assignment",
                json!({ "topic": topic }),
                self.timeout,
            )
            .await?;
        let list = r
            .get("assignment")
            .and_then(Json::as_array)
            .ok_or_else(|| self.unexpected("assignment", &format!("no assignment in {r}")))?;
        list.iter()
            .map(|a| {
                let f = |k: &str| a.get(k).and_then(Json::as_i64);
                match (
                    f("vgroup_id").and_then(|v| i32::try_from(v).ok()),
                    f("offset"),
                    f("begin"),
                    f("end"),
                ) {
                    (Some(vgroup), Some(offset), Some(begin), Some(end)) => Ok(Assigned {
                        vgroup,
                        offset,
                        begin,
                        end,
                    }),
                    _ => Err(self.unexpected("assignment", &format!("incomplete entry {a}"))),
                }
            })
            .collect()
    }

    /// Closes the connection (the server unsubscribes the consumer).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// Whether a server version (`3.3.6.0`, `3.3.2.0-community`, `3.3.2.1.alpha`) is 3.3.2.0
/// or later: its first four numeric parts, split at `.` and `-`, each read up to its first
/// non-digit (taos-ws `compare_versions`). Version 2 servers never serve it.
fn serves_raw_data(version: &str) -> bool {
    if version.starts_with('2') {
        return false;
    }
    let mut parts = version.split(['.', '-']).take(4).map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    let v: [u32; 4] = std::array::from_fn(|_| parts.next().unwrap_or(0));
    v >= [3, 3, 2, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_data_from_3_3_2_0_on() {
        for v in [
            "3.3.2.0",
            "3.3.6.0",
            "3.4.0.0",
            "3.3.2.0-community",
            "3.3.2.1.alpha",
            "4.0",
        ] {
            assert!(serves_raw_data(v), "{v}");
        }
        for v in ["3.3.1.9", "3.3.0.0", "3.1.1.0", "2.6.0.99", "", "x"] {
            assert!(!serves_raw_data(v), "{v}");
        }
    }

    #[test]
    fn error_replies_keep_code_and_message() {
        let r = json!({"code": 0x4007, "message": "Offset out of range", "req_id": 3});
        let e = reply_error("seek", "ws://h:1", &r).unwrap();
        assert_eq!(e.code(), Some(0x4007));
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("Offset out of range"), "{e}");
        assert!(reply_error("seek", "ws://h:1", &json!({"code": 0})).is_none());
        // Negative codes as the adapter may print them are masked like the connector does.
        let e = reply_error("poll", "ws://h:1", &json!({"code": -2147467247})).unwrap();
        assert_eq!(e.code(), Some(0x4011));
    }
}
