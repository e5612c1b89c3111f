//! The binary encoding of shard objects (docs/format.md §8.3.1), written by repositories of
//! format 3.
//!
//! A shard is mostly block references: a 32-byte blob id, a row count and two timestamps per
//! block. JSON spells each id in 64 hex digits and each number in decimal, under a key
//! name, and a 1% incremental rewrites most shards of a large database, so that text was
//! most of what an incremental read, wrote and compressed after its exports. Here ids are
//! raw bytes and numbers LEB128 varints; buckets and timestamps are stored as differences,
//! which are small. Each table's definition stays the compact JSON the fingerprint is taken
//! over (§8.2), so a reader checks the fingerprint over the stored bytes without parsing
//! them, and one codec (serde's) defines what a definition is.
//!
//! ```text
//! "TBSH" || u8 1 || varint tables || table*
//! table = varint def_len || def (compact JSON) || varint blocks || block*
//! block = bucket || blob (32 bytes) || varint rows || zigzag min_ts || zigzag (max_ts - min_ts)
//! bucket: the first zigzag-encoded, each further one as varint (bucket - previous) ≥ 1
//! ```

use std::collections::BTreeMap;

use crate::BlobId;
use crate::cursor::Cursor;
use crate::manifest::BlockRef;

/// The first bytes of a binary shard; a JSON object starts with `{` or whitespace.
pub(crate) const MAGIC: &[u8; 4] = b"TBSH";
/// The version of this encoding, the byte after [`MAGIC`].
const CODEC_VERSION: u8 = 1;

/// Whether `bytes` are a binary shard (they may still be damaged).
pub(crate) fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// One table of a shard to encode: its definition's compact JSON and its blocks.
pub(crate) struct TableIn<'a> {
    pub def: &'a [u8],
    pub blocks: &'a BTreeMap<i64, BlockRef>,
}

/// Encodes a shard's tables (in order) into a binary shard.
pub(crate) fn encode<'a>(tables: impl ExactSizeIterator<Item = TableIn<'a>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + tables.len() * 256);
    out.extend_from_slice(MAGIC);
    out.push(CODEC_VERSION);
    varint(&mut out, tables.len() as u64);
    for t in tables {
        varint(&mut out, t.def.len() as u64);
        out.extend_from_slice(t.def);
        varint(&mut out, t.blocks.len() as u64);
        let mut prev: Option<i64> = None;
        for (&bucket, b) in t.blocks {
            match prev {
                None => varint(&mut out, zigzag(bucket)),
                // A BTreeMap's keys ascend, so the difference is at least 1; as u64 it is
                // exact even across the whole i64 range.
                Some(p) => varint(&mut out, bucket.wrapping_sub(p) as u64),
            }
            prev = Some(bucket);
            out.extend_from_slice(b.blob.as_bytes());
            varint(&mut out, b.rows);
            varint(&mut out, zigzag(b.min_ts));
            varint(&mut out, zigzag(b.max_ts.wrapping_sub(b.min_ts)));
        }
    }
    out
}

/// One table of a decoded binary shard: its definition as stored and its blocks.
#[derive(Debug)]
pub(crate) struct TableOut<'a> {
    pub def: &'a [u8],
    pub blocks: BTreeMap<i64, BlockRef>,
}

/// Decodes a binary shard; the reason on failure. Never panics, whatever the bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<TableOut<'_>>, String> {
    let mut r = Cursor::new(bytes, |at| format!("ends early (at byte {at})"));
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a binary shard".into());
    }
    let version = r.take(1)?[0];
    if version != CODEC_VERSION {
        return Err(format!(
            "binary shard encoding {version}, this build reads {CODEC_VERSION}"
        ));
    }
    let count = read_count(&mut r, "tables", 2)?;
    let mut tables = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_count(&mut r, "definition bytes", 1)?;
        let def = r.take(len)?;
        let n = read_count(&mut r, "blocks", BLOCK_MIN)?;
        let mut blocks = BTreeMap::new();
        let mut prev: Option<i64> = None;
        for _ in 0..n {
            let bucket = match prev {
                None => unzigzag(read_varint(&mut r)?),
                Some(p) => {
                    // Wrapping, the sum is the true one exactly when it ends above `p` (any
                    // difference of 1..2^64 that overflows wraps to at most `p`).
                    let b = p.wrapping_add(read_varint(&mut r)? as i64);
                    if b <= p {
                        return Err("buckets are not in ascending order".into());
                    }
                    b
                }
            };
            prev = Some(bucket);
            let blob = BlobId::from_bytes(r.array()?);
            let rows = read_varint(&mut r)?;
            let min_ts = unzigzag(read_varint(&mut r)?);
            let max_ts = min_ts.wrapping_add(unzigzag(read_varint(&mut r)?));
            blocks.insert(
                bucket,
                BlockRef {
                    blob,
                    rows,
                    min_ts,
                    max_ts,
                },
            );
        }
        tables.push(TableOut { def, blocks });
    }
    if r.remaining() > 0 {
        return Err(format!("{} bytes after the last table", r.remaining()));
    }
    Ok(tables)
}

/// The fewest bytes a block takes (a one-byte bucket, the id, three one-byte varints).
const BLOCK_MIN: usize = 1 + 32 + 3;

/// A LEB128 varint of at most 64 bits.
fn read_varint(r: &mut Cursor<'_, String>) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = r.take(1)?[0];
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return Err("a varint overflows 64 bits".into());
        }
        v |= bits << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("a varint overflows 64 bits".into())
}

/// A count of items of at least `min` bytes each: refused when the rest of the input cannot
/// hold them, so a damaged count never allocates.
fn read_count(r: &mut Cursor<'_, String>, what: &str, min: usize) -> Result<usize, String> {
    let n = read_varint(r)?;
    let room = r.remaining() / min.max(1);
    if n > room as u64 {
        return Err(format!("{n} {what} do not fit in the rest of the shard"));
    }
    Ok(n as usize)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(k: u8, rows: u64, min_ts: i64, max_ts: i64) -> BlockRef {
        BlockRef {
            blob: BlobId::from_bytes([k; 32]),
            rows,
            min_ts,
            max_ts,
        }
    }

    /// A shard of one table, definition `{}`, with `blocks`.
    fn one_table(blocks: &BTreeMap<i64, BlockRef>) -> Vec<u8> {
        encode(std::iter::once(TableIn { def: b"{}", blocks }))
    }

    fn round_trip(tables: &[(Vec<u8>, BTreeMap<i64, BlockRef>)]) {
        let bytes = encode(tables.iter().map(|(d, b)| TableIn { def: d, blocks: b }));
        assert!(is_binary(&bytes));
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), tables.len());
        for (got, (def, blocks)) in back.iter().zip(tables) {
            assert_eq!(got.def, def.as_slice());
            assert_eq!(&got.blocks, blocks);
        }
    }

    #[test]
    fn the_layout_is_as_documented() {
        // docs/format.md §8.3.1, spelled out byte by byte.
        let mut blocks = BTreeMap::new();
        blocks.insert(-1, block(0xaa, 3, -5, 10));
        blocks.insert(1, block(0xbb, 200, 7, 7));
        let bytes = one_table(&blocks);
        let mut want = b"TBSH\x01\x01\x02{}\x02".to_vec();
        want.push(0x01); // bucket -1, zigzag
        want.extend([0xaa; 32]);
        want.extend([0x03, 0x09, 0x1e]); // rows 3, min -5, max - min = 15
        want.push(0x02); // bucket 1 = -1 + 2
        want.extend([0xbb; 32]);
        want.extend([0xc8, 0x01, 0x0e, 0x00]); // rows 200, min 7, max - min = 0
        assert_eq!(bytes, want);
    }

    #[test]
    fn extremes_round_trip() {
        let mut blocks = BTreeMap::new();
        blocks.insert(i64::MIN, block(1, u64::MAX, i64::MIN, i64::MAX));
        blocks.insert(i64::MAX, block(2, 0, i64::MAX, i64::MIN));
        round_trip(&[(Vec::new(), BTreeMap::new()), (b"x".to_vec(), blocks)]);
    }

    #[test]
    fn damage_is_refused() {
        let mut blocks = BTreeMap::new();
        blocks.insert(5, block(1, 1, 1, 2));
        let good = one_table(&blocks);
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "cut at {n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long).unwrap_err().contains("after the last table"));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert!(decode(&v2).unwrap_err().contains("encoding 2"));
        // A count far beyond the input allocates nothing and is refused.
        let huge = b"TBSH\x01\xff\xff\xff\xff\x0f";
        assert!(decode(huge).unwrap_err().contains("do not fit"));
        // A repeated bucket (difference 0).
        blocks.insert(6, block(2, 1, 1, 2));
        let mut two = one_table(&blocks);
        let second = 5 + 1 + 1 + 2 + 1 + (1 + 32 + 3);
        assert_eq!(two[second], 1);
        two[second] = 0;
        assert!(decode(&two).unwrap_err().contains("ascending"));
        // An overlong varint.
        assert!(
            decode(b"TBSH\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f")
                .unwrap_err()
                .contains("overflows")
        );
    }

    proptest! {
        #[test]
        fn any_shard_round_trips(
            tables in prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..40),
                    prop::collection::btree_map(
                        any::<i64>(),
                        (any::<u8>(), any::<u64>(), any::<i64>(), any::<i64>()),
                        0..6,
                    ),
                ),
                0..8,
            )
        ) {
            let tables: Vec<(Vec<u8>, BTreeMap<i64, BlockRef>)> = tables
                .into_iter()
                .map(|(d, b)| {
                    let b = b.into_iter().map(|(k, (id, r, lo, hi))| (k, block(id, r, lo, hi))).collect();
                    (d, b)
                })
                .collect();
            round_trip(&tables);
        }

        #[test]
        fn any_bytes_decode_without_panicking(mut bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            bytes.splice(0..0, MAGIC.iter().copied().chain([CODEC_VERSION]));
            let _ = decode(&bytes);
        }
    }
}
