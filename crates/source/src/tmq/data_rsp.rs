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
//! which taosAdapter itself uses on these bytes, through the WAL feed's bounds-checked
//! `tEncoder` reader ([`crate::tencode::Dec`]): a short or inconsistent reply is an error,
//! never a panic or a guess.
//! `tqAddBlockDataToRsp` (`source/dnode/vnode/src/tq/tqScan.c`) writes `compressed = 0`; a
//! compressed block is refused rather than misread.

use crate::tencode::{Dec, DecResult};

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
/// and nothing after it in `d` is read.
fn wal_offset(d: &mut Dec<'_>) -> DecResult<Option<i64>> {
    let t = d.i8()?;
    let ty = if t > 0 { t & 0x0F } else { t };
    if ty != OFFSET_LOG {
        return Ok(None);
    }
    d.i64().map(Some)
}

/// Reads the request and response offsets (skipped as taosAdapter's `skipHead` does) and
/// returns the response offset when both are WAL offsets.
fn offsets(d: &mut Dec<'_>) -> DecResult<Option<i64>> {
    let first = d.i8()?;
    if first >= MQ_DATA_RSP_VERSION {
        // `i32 offsetLen | offsets`: a nested block.
        let mut inner = d.block()?;
        // A malformed offset region leaves the blocks readable: only the offset is lost.
        return Ok(match wal_offset(&mut inner) {
            Ok(Some(_)) => wal_offset(&mut inner).ok().flatten(),
            _ => None,
        });
    }
    // Before MQ_DATA_RSP_VERSION: two `STqOffsetVal`s, each its type then 8 bytes (a WAL
    // version) or 16 (a snapshot position: uid and timestamp).
    let mut ty = first;
    let mut rsp = None;
    for which in ["request offset", "response offset"] {
        match ty {
            OFFSET_LOG if which == "response offset" => rsp = Some(d.i64()?),
            1 => d.skip(8)?,
            2 | 3 => d.skip(16)?,
            other => return Err(format!("{which}: unknown offset type {other}")),
        }
        if which == "request offset" {
            ty = d.i8()?;
        }
    }
    Ok(rsp)
}

/// The blocks of a data or meta+data message's raw bytes, in order, with its response
/// offset.
pub(crate) fn parse(raw: &[u8]) -> DecResult<DataRsp<'_>> {
    let mut d = Dec::new(raw);
    let rsp_offset = offsets(&mut d)?;
    let count = d.i32()?;
    let count = usize::try_from(count).map_err(|_| format!("block count {count}"))?;
    if count == 0 {
        return Ok(DataRsp {
            rsp_offset,
            blocks: Vec::new(),
        });
    }
    let with_table_name = d.i8()? != 0;
    let with_schema = d.i8()? != 0;
    // Each block takes at least its header: a count beyond that is a corrupt reply, not a
    // reason to reserve memory.
    let mut blocks = Vec::with_capacity(count.min(raw.len() / RETRIEVE_HEADER));
    for i in 0..count {
        let len = d.uv()?;
        let len = d.count(len as i64, "block length")?;
        let retrieve = d.take(len)?;
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
            let cols = d.iv()?;
            d.iv()?; // schema version
            for _ in 0..cols.max(0) {
                d.skip(2)?; // type, flags
                d.iv()?; // bytes
                d.iv()?; // column id
                d.cstr()?; // name
            }
        }
        let table = if with_table_name {
            Some(d.cstr()?).filter(|t| !t.is_empty())
        } else {
            None
        };
        blocks.push(RspBlock { table, block });
    }
    Ok(DataRsp { rsp_offset, blocks })
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
