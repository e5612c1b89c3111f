//! Fault injection: a deterministic plan of faults the server applies to matching requests
//! (dropped connections, stalls, TDengine error replies). See `docs/emulator.md`, "Fault
//! injection".

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value as Json;
use tokio_tungstenite::tungstenite::Message;

use super::wire::Cursor;

/// Where in the protocol a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// A statement: JSON `query` or binary query (action 6). `matching` applies to the SQL.
    Query,
    /// A fetch of a query result: JSON `fetch`/`fetch_block` or binary fetch (action 7).
    /// `matching` applies to the SQL of the connection's most recent statement.
    Fetch,
    /// A raw-block write (binary actions 4 and 5). `matching` applies to the table name.
    Write,
    /// A TMQ `poll`. `matching` applies to nothing (any `matching` never fires).
    TmqPoll,
    /// A TMQ `fetch`, `fetch_block`, `fetch_json_meta`, `fetch_raw` or `fetch_raw_data` of a
    /// polled message. `matching` applies to the action's name.
    TmqFetch,
    /// A TMQ `commit` or `commit_offset`.
    TmqCommit,
}

/// What a fault does to the request it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Close the TCP connection without a reply or close frame, as a crashed server would.
    Drop,
    /// Wait this long, then serve the request normally (the client may time out first).
    Stall(Duration),
    /// Reply with this TDengine error (`code & 0xffff` is sent) instead of serving the request.
    Error {
        /// TDengine error code, e.g. `0x000B` (unable to establish connection).
        code: u32,
        /// Message carried by the reply.
        message: String,
    },
}

/// When a fault fires among the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// On the Nth matching request only (1-based).
    Nth(u64),
    /// On every matching request from the Nth on (1-based).
    From(u64),
    /// On each matching request with probability `per_mille / 1000`, drawn from a generator
    /// seeded with `seed` (the same requests in the same order fire the same way).
    Rate {
        /// Firing probability in thousandths.
        per_mille: u32,
        /// Seed of the generator.
        seed: u64,
    },
}

/// One programmed fault: a point, an optional substring filter, an action, a trigger and a
/// cap on how many times it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    point: FaultPoint,
    matching: Option<String>,
    action: FaultAction,
    trigger: Trigger,
    limit: Option<u64>,
}

impl Fault {
    /// A fault at `point` doing `action` on the first matching request, once.
    pub fn new(point: FaultPoint, action: FaultAction) -> Self {
        Fault {
            point,
            matching: None,
            action,
            trigger: Trigger::Nth(1),
            limit: None,
        }
    }

    /// Shorthand for a [`FaultAction::Error`].
    pub fn error(point: FaultPoint, code: u32, message: impl Into<String>) -> Self {
        Fault::new(
            point,
            FaultAction::Error {
                code,
                message: message.into(),
            },
        )
    }

    /// Only requests whose text (see [`FaultPoint`]) contains `needle`, case-insensitively.
    pub fn matching(mut self, needle: impl Into<String>) -> Self {
        self.matching = Some(needle.into().to_ascii_lowercase());
        self
    }

    /// Fire when `trigger` says so.
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Fire at most `n` times in all.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
}

/// Counters of one programmed fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests that matched its point and filter.
    pub matched: u64,
    /// Times it fired.
    pub fired: u64,
}

struct Armed {
    fault: Fault,
    stats: FaultStats,
    rng: u64,
}

/// The server's fault plan.
#[derive(Default)]
pub(crate) struct Plan {
    armed: Mutex<Vec<Armed>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plan")
    }
}

impl Plan {
    pub(crate) fn add(&self, fault: Fault) -> usize {
        let rng = match fault.trigger {
            Trigger::Rate { seed, .. } => seed,
            _ => 0,
        };
        let mut armed = self.lock();
        armed.push(Armed {
            fault,
            stats: FaultStats::default(),
            rng,
        });
        armed.len() - 1
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn stats(&self) -> Vec<FaultStats> {
        self.lock().iter().map(|a| a.stats).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Armed>> {
        // A poisoned plan is still a valid plan: counters are plain integers.
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The action of the first programmed fault that fires on `req`, if any. Every matching
    /// fault counts the request, whether or not an earlier one fired.
    pub(crate) fn check(&self, req: &Request, last_sql: &str) -> Option<FaultAction> {
        let mut armed = self.lock();
        if armed.is_empty() {
            return None;
        }
        let mut out = None;
        for a in armed.iter_mut() {
            if a.fault.point != req.point {
                continue;
            }
            if let Some(needle) = &a.fault.matching {
                let text = match req.point {
                    FaultPoint::Fetch => last_sql,
                    _ => req.text.as_str(),
                };
                if !text.to_ascii_lowercase().contains(needle.as_str()) {
                    continue;
                }
            }
            a.stats.matched += 1;
            let n = a.stats.matched;
            let due = match a.fault.trigger {
                Trigger::Nth(k) => n == k,
                Trigger::From(k) => n >= k,
                Trigger::Rate { per_mille, .. } => {
                    (splitmix(&mut a.rng) % 1000) < u64::from(per_mille)
                }
            };
            let capped = a.fault.limit.is_some_and(|l| a.stats.fired >= l);
            if due && !capped && out.is_none() {
                a.stats.fired += 1;
                out = Some(a.fault.action.clone());
            }
        }
        out
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A request as the fault plan sees it.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) point: FaultPoint,
    /// SQL for queries, table name for writes, empty otherwise.
    pub(crate) text: String,
    /// The action name for error replies.
    pub(crate) action: String,
    pub(crate) req_id: u64,
    /// For binary fetches (action 7): the result id, whose error reply is binary.
    pub(crate) binary_fetch: Option<u64>,
}

/// Classifies a data frame of the query (`tmq == false`) or TMQ protocol; `None` for requests
/// no fault point covers.
pub(crate) fn classify(frame: &Message, tmq: bool) -> Option<Request> {
    match frame {
        Message::Text(text) => {
            let v: Json = serde_json::from_str(text).ok()?;
            let action = v.get("action").and_then(Json::as_str)?.to_owned();
            let args = v.get("args");
            let req_id = args
                .and_then(|a| a.get("req_id"))
                .and_then(Json::as_u64)
                .unwrap_or(0);
            let (point, text) = match (tmq, action.as_str()) {
                (false, "query") => (
                    FaultPoint::Query,
                    args.and_then(|a| a.get("sql"))
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_owned(),
                ),
                (false, "fetch" | "fetch_block") => (FaultPoint::Fetch, String::new()),
                (true, "poll") => (FaultPoint::TmqPoll, String::new()),
                (
                    true,
                    "fetch" | "fetch_block" | "fetch_json_meta" | "fetch_raw" | "fetch_raw_data",
                ) => (FaultPoint::TmqFetch, action.clone()),
                (true, "commit" | "commit_offset") => (FaultPoint::TmqCommit, String::new()),
                _ => return None,
            };
            Some(Request {
                point,
                text,
                action,
                req_id,
                binary_fetch: None,
            })
        }
        Message::Binary(bytes) if !tmq => {
            let mut c = Cursor::new(bytes);
            let req_id = c.u64().ok()?;
            let id = c.u64().ok()?;
            let action = c.u64().ok()?;
            match action {
                6 => {
                    let _version = c.u16().ok()?;
                    let len = c.u32().ok()? as usize;
                    let sql = String::from_utf8_lossy(c.take(len).ok()?).into_owned();
                    Some(Request {
                        point: FaultPoint::Query,
                        text: sql,
                        action: "binary_query".into(),
                        req_id,
                        binary_fetch: None,
                    })
                }
                7 => Some(Request {
                    point: FaultPoint::Fetch,
                    text: String::new(),
                    action: "fetch_raw_block".into(),
                    req_id,
                    binary_fetch: Some(id),
                }),
                4 | 5 => {
                    let _rows = c.u32().ok()?;
                    let len = c.u16().ok()? as usize;
                    let table = String::from_utf8_lossy(c.take(len).ok()?).into_owned();
                    Some(Request {
                        point: FaultPoint::Write,
                        text: table,
                        action: if action == 4 {
                            "write_raw_block".into()
                        } else {
                            "write_raw_block_with_fields".into()
                        },
                        req_id,
                        binary_fetch: None,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}
