//! Frame-level helpers: builders for replies in taosAdapter's shapes, and the bounds-checked
//! reader for binary requests.

use serde_json::{Value as Json, json};

pub(crate) use crate::le::LeReader as Cursor;

use crate::error::EmuError;

/// A success reply: `code 0`, empty message, the action and req_id, plus `extra` fields.
pub(crate) fn ok_reply(action: &str, req_id: u64, timing: u64, extra: Json) -> String {
    let mut v = json!({
        "code": 0,
        "message": "",
        "action": action,
        "req_id": req_id,
        "timing": timing,
    });
    if let (Some(obj), Json::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    v.to_string()
}

/// An error reply in taosAdapter's shape: `code & 0xffff`, the message, the action, req_id.
pub(crate) fn error_reply(action: &str, req_id: u64, timing: u64, err: &EmuError) -> String {
    json!({
        "code": err.code & 0xffff,
        "message": err.message,
        "action": action,
        "req_id": req_id,
        "timing": timing,
    })
    .to_string()
}

/// Nanoseconds since `t`, for the `timing` field of replies.
pub(crate) fn elapsed_ns(t: std::time::Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}
