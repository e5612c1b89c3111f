//! Frame-level helpers: a bounds-checked reader for binary requests and builders for replies
//! in taosAdapter's shapes.

use serde_json::{Value as Json, json};

use crate::error::{EmuError, code};

/// A bounds-checked little-endian reader over a binary request.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], EmuError> {
        match self.pos.checked_add(n).filter(|&e| e <= self.buf.len()) {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(EmuError::new(
                code::INVALID_MSG,
                format!(
                    "message too short: need {n} bytes at offset {} of {}",
                    self.pos,
                    self.buf.len()
                ),
            )),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, EmuError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, EmuError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, EmuError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

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
