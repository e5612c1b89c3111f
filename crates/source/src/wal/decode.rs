//! Message bodies → [`Entry`]s: just enough of TDengine's encodings to get uids, names,
//! timestamps and deleted ranges (`docs/wal-format.md`, "Bodies"; TDengine commit
//! `a4874a8c64bbcfd0ef9865bcaa4df7951a9f9557`: `include/util/tencode.h`,
//! `source/common/src/msg/tmsg.c`, `source/common/src/tdataformat.c`,
//! `source/dnode/vnode/src/vnd/vnodeSvr.c`).

use taosbackup_core::TableEvent;

use crate::tencode::{Dec, DecResult};

// Message types (`include/common/tmsgdef.h`: vnode segment 2 << 8, two numbers a message).
pub(crate) const TDMT_VND_SUBMIT: i16 = 513;
pub(crate) const TDMT_VND_CREATE_TABLE: i16 = 515;
pub(crate) const TDMT_VND_ALTER_TABLE: i16 = 517;
pub(crate) const TDMT_VND_DROP_TABLE: i16 = 519;
pub(crate) const TDMT_VND_CREATE_STB: i16 = 531;
pub(crate) const TDMT_VND_ALTER_STB: i16 = 533;
pub(crate) const TDMT_VND_DROP_STB: i16 = 535;
pub(crate) const TDMT_VND_DELETE: i16 = 579;
pub(crate) const TDMT_VND_BATCH_DEL: i16 = 581;
pub(crate) const TDMT_VND_DROP_TTL_TABLE: i16 = 593;

/// `sizeof(SMsgHead)`.
const MSG_HEAD: usize = 8;
/// `sizeof(SSubmitReq2Msg)`: SMsgHead + be64 version.
const SUBMIT_HEAD: usize = 16;
const SUBMIT_REQ_AUTO_CREATE_TABLE: i32 = 0x1;
const SUBMIT_REQ_COLUMN_DATA_FORMAT: i32 = 0x2;
const TSDB_DATA_TYPE_TIMESTAMP: i8 = 9;
const HAS_VALUE: i8 = 0x4;
const TSDB_CHILD_TABLE: i8 = 2;
const TSDB_VIRTUAL_CHILD_TABLE: i8 = 9;
/// `sizeof(SRow)` header: flag, numOfPKs, sver, len, ts.
const SROW_HEAD: usize = 16;

/// What one WAL record means for the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Rows written to table `uid`.
    Rows { uid: i64, timestamps: Vec<i64> },
    /// A create request (CREATE TABLE or auto-create); `stable` for child tables.
    Create {
        uid: i64,
        name: String,
        stable: Option<String>,
    },
    /// DROP TABLE.
    Drop { uid: i64, name: String },
    /// ALTER TABLE; `None` when the action changes nothing a backup tracks.
    Alter {
        name: String,
        event: Option<TableEvent>,
    },
    /// CREATE/ALTER STABLE.
    Stable { name: String, altered: bool },
    /// DROP STABLE.
    DropStable { name: String },
    /// Rows of these uids in `[start, end]` deleted.
    Delete {
        uids: Vec<i64>,
        start: i64,
        end: i64,
    },
    /// Rows of a table named in the message deleted.
    DeleteByName { name: String, start: i64, end: i64 },
    /// Tables dropped by TTL.
    DropUids { uids: Vec<i64> },
}

/// Decodes the body of a record of `msg_type`; `None` for message types the feed skips.
pub(crate) fn decode(msg_type: i16, body: &[u8]) -> DecResult<Option<Vec<Entry>>> {
    let mut out = Vec::new();
    match msg_type {
        TDMT_VND_SUBMIT => submit(body, &mut out)?,
        TDMT_VND_CREATE_TABLE => {
            let mut d = after_head(body)?;
            let mut b = d.block()?;
            let n = b.iv()?;
            let n = b.count(n, "request count")?;
            for _ in 0..n {
                out.push(create_req(&mut b)?);
            }
        }
        TDMT_VND_DROP_TABLE => {
            let mut d = after_head(body)?;
            let mut b = d.block()?;
            let n = b.iv()?;
            let n = b.count(n, "request count")?;
            for _ in 0..n {
                let mut r = b.block()?;
                let name = r.cstr()?;
                let _suid = r.i64()?;
                let uid = r.i64()?;
                out.push(Entry::Drop { uid, name });
            }
        }
        TDMT_VND_ALTER_TABLE => {
            let mut d = after_head(body)?;
            let mut b = d.block()?;
            let name = b.cstr()?;
            let action = b.i8()?;
            out.push(Entry::Alter {
                name,
                event: alter_event(action),
            });
        }
        TDMT_VND_CREATE_STB | TDMT_VND_ALTER_STB => {
            let mut d = after_head(body)?;
            let mut b = d.block()?;
            let name = b.cstr()?;
            out.push(Entry::Stable {
                name,
                altered: msg_type == TDMT_VND_ALTER_STB,
            });
        }
        TDMT_VND_DROP_STB => {
            let mut d = after_head(body)?;
            let mut b = d.block()?;
            out.push(Entry::DropStable { name: b.cstr()? });
        }
        TDMT_VND_DELETE => {
            // SDeleteRes, no nested block (tmsg.c:tEncodeDeleteRes).
            let mut d = after_head(body)?;
            let _suid = d.i64()?;
            let n = d.iv()?;
            let n = d.count(n, "uid count")?;
            let mut uids = Vec::with_capacity(n);
            for _ in 0..n {
                uids.push(d.i64()?);
            }
            let start = d.i64()?;
            let end = d.i64()?;
            out.push(Entry::Delete { uids, start, end });
        }
        TDMT_VND_BATCH_DEL => {
            // SBatchDeleteReq, no nested block (tmsg.c:tEncodeSBatchDeleteReq).
            let mut d = after_head(body)?;
            let _suid = d.i64()?;
            let n = d.i32()?;
            let n = d.count(i64::from(n), "delete count")?;
            for _ in 0..n {
                let name = d.cstr()?;
                let start = d.i64()?;
                let end = d.i64()?;
                out.push(Entry::DeleteByName { name, start, end });
            }
        }
        TDMT_VND_DROP_TTL_TABLE => {
            let mut d = after_head(body)?;
            let mut b = d.block()?;
            let _ts = b.i32()?;
            let _max = b.i32()?;
            let n = b.i32()?;
            let n = b.count(i64::from(n), "uid count")?;
            let mut uids = Vec::with_capacity(n);
            for _ in 0..n {
                uids.push(b.i64()?);
            }
            out.push(Entry::DropUids { uids });
        }
        _ => return Ok(None),
    }
    Ok(Some(out))
}

fn after_head(body: &[u8]) -> DecResult<Dec<'_>> {
    let mut d = Dec::new(body);
    d.skip(MSG_HEAD)?;
    Ok(d)
}

/// `TSDB_ALTER_TABLE_*` action → the table event it means (`include/common/tmsg.h`).
fn alter_event(action: i8) -> Option<TableEvent> {
    match action {
        1 | 2 | 3 | 4 | 8 | 15 => Some(TableEvent::TagsChanged),
        5 | 6 | 7 | 10 | 14 | 16 | 17 | 18 => Some(TableEvent::SchemaChanged),
        _ => None,
    }
}

/// `SVCreateTbReq` (tmsg.c:tEncodeSVCreateTbReq): the fields up to the super table name.
fn create_req(d: &mut Dec<'_>) -> DecResult<Entry> {
    let mut b = d.block()?;
    let _flags = b.iv()?;
    let name = b.cstr()?;
    let uid = b.i64()?;
    let _btime = b.i64()?;
    let _ttl = b.i32()?;
    let ty = b.i8()?;
    let comment_len = b.i32()?;
    if comment_len > 0 {
        b.cstr()?;
    }
    let stable = if ty == TSDB_CHILD_TABLE || ty == TSDB_VIRTUAL_CHILD_TABLE {
        Some(b.cstr()?)
    } else {
        None
    };
    Ok(Entry::Create { uid, name, stable })
}

/// `SSubmitReq2Msg` + `tEncodeSubmitReq` (tmsg.c): uid and timestamps of every table.
fn submit(body: &[u8], out: &mut Vec<Entry>) -> DecResult<()> {
    let mut d = Dec::new(body);
    d.skip(MSG_HEAD)?;
    let version = i64::from_be_bytes(d.arr()?);
    if version != 1 {
        return Err(format!(
            "unsupported submit message version {version} (only version 1, SSubmitReq2, is \
             known; version 0 is the pre-3.0 SSubmitReq)"
        ));
    }
    debug_assert_eq!(d.pos, SUBMIT_HEAD);
    let mut req = d.block()?;
    let n = req.uv()?;
    let n = req.count(n as i64, "table count")?;
    for _ in 0..n {
        let mut t = req.block()?;
        let flags = t.iv()? as i32;
        let fmt_version = (flags >> 8) & 0xff;
        if fmt_version > 1 {
            return Err(format!(
                "unsupported submit data version {fmt_version} (flags {flags:#x}; versions 0 and 1 are known)"
            ));
        }
        let created = if flags & SUBMIT_REQ_AUTO_CREATE_TABLE != 0 {
            Some(create_req(&mut t)?)
        } else {
            None
        };
        let _suid = t.i64()?;
        let uid = t.i64()?;
        let _sver = t.iv()?;
        let timestamps = if flags & SUBMIT_REQ_COLUMN_DATA_FORMAT != 0 {
            ts_column(&mut t)?
        } else {
            let n = t.uv()?;
            let n = t.count(n as i64, "row count")?;
            let mut ts = Vec::with_capacity(n);
            for _ in 0..n {
                // SRow: u8 flag, u8 numOfPKs, u16 sver, u32 len, i64 ts, data.
                let row_start = t.pos;
                t.skip(4)?;
                let len = t.u32()? as usize;
                if len < SROW_HEAD {
                    return Err(format!("row of {len} bytes is shorter than its header"));
                }
                ts.push(t.i64()?);
                t.pos = row_start;
                t.skip(len)?;
            }
            ts
        };
        if let Some(mut c) = created {
            // Pre-processing writes the assigned uid in both places; the submit's is the
            // one the rows go to.
            if let Entry::Create { uid: u, .. } = &mut c {
                *u = uid;
            }
            out.push(c);
        }
        out.push(Entry::Rows { uid, timestamps });
    }
    Ok(())
}

/// The first `SColData` of a column-format submit: the timestamp key
/// (tdataformat.c:tDecodeColDataVersion0; vnodeSvr.c requires `flag == HAS_VALUE`).
fn ts_column(t: &mut Dec<'_>) -> DecResult<Vec<i64>> {
    let ncol = t.uv()?;
    if ncol == 0 {
        return Ok(Vec::new());
    }
    let _cid = t.iv()?;
    let ty = t.i8()?;
    let nval = t.iv()?;
    let flag = t.i8()?;
    if ty != TSDB_DATA_TYPE_TIMESTAMP || flag != HAS_VALUE {
        return Err(format!(
            "first column is not a timestamp key with values (type {ty}, flag {flag:#x})"
        ));
    }
    let n = t.count(nval, "value count")?;
    let mut ts = Vec::with_capacity(n);
    for _ in 0..n {
        ts.push(t.i64()?);
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_lengths_are_errors() {
        // A block claiming more bytes than there are.
        let mut d = Dec::new(&[0xFF, 0xFF, 0xFF, 0x7F, 1, 2]);
        assert!(d.block().is_err());
        let mut d = Dec::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        assert!(d.cstr().is_err());
        assert!(decode(TDMT_VND_SUBMIT, &[0; 10]).is_err());
        assert_eq!(decode(597, &[]).unwrap(), None);
    }

    #[test]
    fn submit_version_zero_is_refused() {
        let mut body = vec![0u8; 16];
        body.extend_from_slice(&[0; 8]);
        let e = decode(TDMT_VND_SUBMIT, &body).unwrap_err();
        assert!(e.contains("version 0"), "{e}");
    }
}
