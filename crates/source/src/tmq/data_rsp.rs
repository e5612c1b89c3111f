//! The blocks of a data message in its raw form (`fetch_raw_data`): one reply carries every
//! block of the message, where `fetch` + `fetch_block` take two round trips per block.
//!
//! The bytes are `tmq_get_raw`'s for a data (`RES_TYPE__TMQ`, 2) or meta+data
//! (`RES_TYPE__TMQ_METADATA`, 4) message: `encodeMqDataRsp` in TDengine's
//! `source/client/src/clientRawBlockWrite.c` over `tEncodeMqDataRspCommon`
//! (`source/common/src/tmsg.c`):
//!
//! ```text
//! i8 100 (MQ_DATA_RSP_VERSION) | i32 offsetLen | reqOffset | rspOffset       -- from 3.3
//!   (older: reqOffset | rspOffset directly, each i8 type | i64 version, or 16 bytes for
//!    the snapshot types 2 and 3)
//! i32 blockNum | i8 withTbName | i8 withSchema | per block:
//!   u32v len | SRetrieveTableRspForTmq: i64 version | i64 rows | i8 compressed |
//!              i8 precision | raw block (len - 18 bytes)
//!   [withSchema: i32v nCols | i32v version | per column i8 type | i8 flags | i32v bytes |
//!                i16v colId | u32v len | name with its NUL]
//!   [withTbName: u32v len | table name with its NUL]
//! then the sleep time (data) or the create requests (meta+data): not read here.
//! ```
//!
//! The reader follows taosAdapter's `driver/common/parser/raw.go` (`TMQRawDataParser`),
//! which taosAdapter itself uses on these bytes, and is bounds-checked throughout: a short
//! or inconsistent reply is an error naming what is wrong, never a panic or a guess.
//! `tqAddBlockDataToRsp` (`source/dnode/vnode/src/tq/tqScan.c`) writes `compressed = 0`; a
//! compressed block is refused rather than misread.

/// One block of a data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RspBlock<'a> {
    /// The child or normal table the rows belong to (`withTbName`).
    pub table: Option<String>,
    /// The raw block (`blockEncode`), as `fetch_block` would return it.
    pub block: &'a [u8],
}

/// `MQ_DATA_RSP_VERSION`: from this first byte on, the offsets are preceded by their length.
const MQ_DATA_RSP_VERSION: i8 = 100;
/// The bytes of `SRetrieveTableRspForTmq` before the raw block.
const RETRIEVE_HEADER: usize = 18;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{what}: {n} bytes at offset {} of a {}-byte message",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn i8(&mut self, what: &str) -> Result<i8, String> {
        Ok(self.take(1, what)?[0] as i8)
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned LEB128 varint (`tEncodeU32v`), at most 32 bits.
    fn u32v(&mut self, what: &str) -> Result<u32, String> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1, what)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| format!("{what}: varint over 32 bits"));
            }
        }
        Err(format!("{what}: varint longer than 5 bytes"))
    }

    /// A zigzag varint (`tEncodeI32v`, `tEncodeI16v`).
    fn zigzag(&mut self, what: &str) -> Result<i64, String> {
        let n = i64::from(self.u32v(what)?);
        Ok((n >> 1) ^ -(n & 1))
    }

    /// `tEncodeCStr`: `u32v len` counting the NUL, then the bytes and the NUL.
    fn cstr(&mut self, what: &str) -> Result<String, String> {
        let len = self.u32v(what)? as usize;
        let bytes = self.take(len, what)?;
        let text = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(text.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
    }
}

/// A data message: its blocks and, when it is a WAL offset, its response offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataRsp<'a> {
    /// `rspOffset` as a WAL version: where the consumer's next poll of this vgroup starts.
    /// The C client makes it the vgroup's `endOffset` (`updateVgInfo` in
    /// `client/src/clientTmq.c`), which `tmq_position` answers, so it is the position after
    /// this message. `None` when it is not a plain WAL offset.
    pub rsp_offset: Option<i64>,
    /// The blocks, in order.
    pub blocks: Vec<RspBlock<'a>>,
}

/// `TMQ_OFFSET__LOG`, the `STqOffsetVal` type of a WAL version (`include/common/tmsg.h`).
const OFFSET_LOG: i8 = 1;

/// One `STqOffsetVal` (`tEncodeSTqOffsetVal`): its type, then for a WAL offset the version
/// as a little-endian i64. Newer versions keep an encoding version in the type's upper four
/// bits (the connector's raw parser masks them: `type_id & 0x0F`). A snapshot offset (types
/// 2 and 3: uid, timestamp and, in newer encodings, a primary key) is not decoded: `None`,
/// and nothing after it in `r` is read.
fn wal_offset(r: &mut Reader<'_>, masked: bool) -> Result<Option<i64>, String> {
    let t = r.i8("offset type")?;
    let ty = if masked && t > 0 { t & 0x0F } else { t };
    if ty != OFFSET_LOG {
        return Ok(None);
    }
    let b = r.take(8, "offset version")?;
    Ok(Some(i64::from_le_bytes(b.try_into().unwrap_or_default())))
}

/// Reads the request and response offsets (skipped as taosAdapter's `skipHead` does) and
/// returns the response offset when both are WAL offsets.
fn offsets(r: &mut Reader<'_>) -> Result<Option<i64>, String> {
    let first = r.i8("message version")?;
    if first >= MQ_DATA_RSP_VERSION {
        let len = r.i32("offset length")?;
        let len = usize::try_from(len).map_err(|_| format!("offset length {len}"))?;
        let mut inner = Reader {
            bytes: r.take(len, "offsets")?,
            at: 0,
        };
        // A malformed offset region leaves the blocks readable: only the offset is lost.
        return Ok(match wal_offset(&mut inner, true) {
            Ok(Some(_)) => wal_offset(&mut inner, true).ok().flatten(),
            _ => None,
        });
    }
    // Before MQ_DATA_RSP_VERSION: two `STqOffsetVal`s, each its type then 8 bytes (a WAL
    // version) or 16 (a snapshot position: uid and timestamp).
    let mut ty = first;
    let mut rsp = None;
    for which in ["request offset", "response offset"] {
        let len = match ty {
            1 => 8,
            2 | 3 => 16,
            other => return Err(format!("{which}: unknown offset type {other}")),
        };
        let b = r.take(len, which)?;
        if which == "request offset" {
            ty = r.i8("response offset type")?;
        } else if ty == OFFSET_LOG {
            rsp = Some(i64::from_le_bytes(b.try_into().unwrap_or_default()));
        }
    }
    Ok(rsp)
}

/// The blocks of a data or meta+data message's raw bytes, in order, with its response
/// offset.
pub(crate) fn parse(raw: &[u8]) -> Result<DataRsp<'_>, String> {
    let mut r = Reader { bytes: raw, at: 0 };
    let rsp_offset = offsets(&mut r)?;
    let blocks = blocks(&mut r)?;
    Ok(DataRsp { rsp_offset, blocks })
}

fn blocks<'a>(r: &mut Reader<'a>) -> Result<Vec<RspBlock<'a>>, String> {
    let raw = r.bytes;
    let count = r.i32("block count")?;
    let count = usize::try_from(count).map_err(|_| format!("block count {count}"))?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let with_table_name = r.i8("withTbName")? != 0;
    let with_schema = r.i8("withSchema")? != 0;
    // Each block takes at least its header: a count beyond that is a corrupt reply, not a
    // reason to reserve memory.
    let mut out = Vec::with_capacity(count.min(raw.len() / RETRIEVE_HEADER));
    for i in 0..count {
        let len = r.u32v("block length")? as usize;
        let retrieve = r.take(len, "block")?;
        if len < RETRIEVE_HEADER {
            return Err(format!(
                "block {i}: {len} bytes, shorter than its {RETRIEVE_HEADER}-byte header"
            ));
        }
        if retrieve[16] != 0 {
            return Err(format!(
                "block {i} is compressed ({}), which TDengine's data messages never are",
                retrieve[16]
            ));
        }
        let block = &retrieve[RETRIEVE_HEADER..];
        if with_schema {
            let cols = r.zigzag("column count")?;
            r.zigzag("schema version")?;
            for _ in 0..cols.max(0) {
                r.take(2, "column type and flags")?;
                r.zigzag("column bytes")?;
                r.zigzag("column id")?;
                r.cstr("column name")?;
            }
        }
        let table = if with_table_name {
            Some(r.cstr("table name")?).filter(|t| !t.is_empty())
        } else {
            None
        };
        out.push(RspBlock { table, block });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn u32v(out: &mut Vec<u8>, mut v: u32) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn zigzag(out: &mut Vec<u8>, v: i32) {
        u32v(out, ((v << 1) ^ (v >> 31)) as u32);
    }

    fn cstr(out: &mut Vec<u8>, s: &str) {
        u32v(out, s.len() as u32 + 1);
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A message as `encodeMqDataRsp` lays it out (written from the layout above, not from
    /// the emulator's encoder, so the two are checked against each other by the feed tests).
    fn message(versioned: bool, blocks: &[(&str, &[u8])], schema: bool) -> Vec<u8> {
        let mut m = Vec::new();
        if versioned {
            m.push(100);
            m.extend_from_slice(&18i32.to_le_bytes());
            for v in [7i64, 9] {
                m.push(1);
                m.extend_from_slice(&v.to_le_bytes());
            }
        } else {
            for v in [7i64, 9] {
                m.push(1);
                m.extend_from_slice(&v.to_le_bytes());
            }
        }
        m.extend_from_slice(&(blocks.len() as i32).to_le_bytes());
        if blocks.is_empty() {
            m.extend_from_slice(&0i64.to_le_bytes());
            return m;
        }
        m.push(1);
        m.push(u8::from(schema));
        for (table, block) in blocks {
            let mut retrieve = Vec::new();
            retrieve.extend_from_slice(&1i64.to_le_bytes());
            retrieve.extend_from_slice(&3i64.to_be_bytes());
            retrieve.push(0);
            retrieve.push(0);
            retrieve.extend_from_slice(block);
            u32v(&mut m, retrieve.len() as u32);
            m.extend_from_slice(&retrieve);
            if schema {
                zigzag(&mut m, 2);
                zigzag(&mut m, 1);
                for (i, name) in ["ts", "v"].iter().enumerate() {
                    m.push(9);
                    m.push(1);
                    zigzag(&mut m, 8);
                    zigzag(&mut m, i as i32 + 1);
                    cstr(&mut m, name);
                }
            }
            cstr(&mut m, table);
        }
        m.extend_from_slice(&0i64.to_le_bytes());
        m
    }

    #[test]
    fn blocks_and_table_names_in_order() {
        let a = vec![1u8; 300];
        let b = vec![2u8; 5];
        for versioned in [true, false] {
            for schema in [true, false] {
                let m = message(versioned, &[("d1", &a), ("d2", &b)], schema);
                let rsp = parse(&m).unwrap();
                assert_eq!(rsp.rsp_offset, Some(9));
                let got = rsp.blocks;
                assert_eq!(got.len(), 2);
                assert_eq!(got[0].table.as_deref(), Some("d1"));
                assert_eq!(got[0].block, &a[..]);
                assert_eq!(got[1].table.as_deref(), Some("d2"));
                assert_eq!(got[1].block, &b[..]);
            }
        }
        assert!(parse(&message(true, &[], true)).unwrap().blocks.is_empty());
    }

    #[test]
    fn response_offsets() {
        let m = message(true, &[("d1", &[1])], false);
        // Type bytes at 5 (request) and 14 (response): an encoding version in the upper
        // four bits is masked.
        let mut v = m.clone();
        (v[5], v[14]) = (0x11, 0x11);
        assert_eq!(parse(&v).unwrap().rsp_offset, Some(9));
        // A snapshot offset is not decoded; the blocks still are.
        for (at, ty) in [(5, 2), (14, 3)] {
            let mut v = m.clone();
            v[at] = ty;
            let rsp = parse(&v).unwrap();
            assert_eq!(rsp.rsp_offset, None);
            assert_eq!(rsp.blocks.len(), 1);
        }
        assert_eq!(
            parse(&message(false, &[], false)).unwrap().rsp_offset,
            Some(9)
        );
    }

    #[test]
    fn bad_messages_are_errors() {
        let m = message(true, &[("d1", &[1, 2, 3])], true);
        for cut in 0..m.len() - 8 {
            // Every truncation inside the blocks is reported (the trailing sleep time is
            // not read).
            assert!(parse(&m[..cut]).is_err(), "cut at {cut}");
        }
        let mut compressed = m.clone();
        // The first block's compressed flag: after the 23-byte head, the block count, the
        // two flags and the 1-byte length, 16 bytes into the retrieve header.
        compressed[23 + 4 + 2 + 1 + 16] = 1;
        let e = parse(&compressed).unwrap_err();
        assert!(e.contains("compressed"), "{e}");
        let mut old = message(false, &[("d1", &[1])], false);
        old[0] = 7;
        let e = parse(&old).unwrap_err();
        assert!(e.contains("unknown offset type 7"), "{e}");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn encoded_blocks_round_trip(
            sizes in proptest::collection::vec(0usize..400, 0..6),
            versioned in any::<bool>(),
            schema in any::<bool>(),
        ) {
            let data: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
            let names: Vec<String> = (0..sizes.len()).map(|i| format!("t{i}")).collect();
            let list: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(data.iter().map(Vec::as_slice)).collect();
            let m = message(versioned, &list, schema);
            let got = parse(&m).unwrap().blocks;
            prop_assert_eq!(got.len(), list.len());
            for (g, (name, bytes)) in got.iter().zip(&list) {
                prop_assert_eq!(g.table.as_deref(), Some(*name));
                prop_assert_eq!(g.block, *bytes);
            }
        }
    }
}
