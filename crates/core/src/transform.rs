//! Column-aware, byte-exact transforms of TDengine raw blocks before compression.
//!
//! A raw block is column-major already, but its values are stored as they are: timestamps
//! a minute apart still differ in several bytes, and a float column's neighbouring values
//! share sign and exponent bytes that zstd sees only every fourth byte. [`encode`] rewrites
//! each column's values in place so that a general-purpose compressor finds the
//! regularities:
//!
//! - integers and timestamps (1 < width ≤ 8 bytes): the difference to the previous value
//!   (wrapping, in the column's width), zig-zag encoded, written as byte planes (every
//!   value's lowest byte, then every value's second byte, …);
//! - FLOAT and DOUBLE: the XOR with the previous value's bits, as byte planes
//!   ([`Floats::Xor`], frames `TBC2`), or unchanged ([`Floats::AsIs`], frames `TBC3`: what
//!   writers emit since issue 18 — decimal-rounded sensor values such as the benchmark's
//!   `current` compress better as they are, with or without a shared dictionary, than as
//!   XOR planes; docs/format.md §5.1);
//! - offsets of variable-width columns: like 4-byte integers;
//! - everything else (the block header, schema, lengths, null bitmaps, 1-byte values,
//!   variable-width payloads, trailing bytes): unchanged.
//!
//! Every transform keeps the length of what it rewrites and leaves the header, schema and
//! lengths untouched, so [`decode`] derives the same column layout from the transformed
//! bytes and inverts each column exactly. A block whose layout is not understood (unknown
//! type, lengths that do not fit) is not transformed: [`encode`] returns `None` and the
//! caller stores it as it is. The format is specified in docs/format.md §5.1.

/// Raw block header: version, length, rows, columns, flag (u32 each), group id (u64).
const HEADER_LEN: usize = 28;

/// Why transformed bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transformed raw block: {0}")]
pub struct TransformError(String);

/// How one region of the block is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Wrapping delta to the previous value, zig-zag, byte planes.
    Delta(usize),
    /// XOR with the previous value, byte planes.
    Xor(usize),
}

/// A region `[start, start + len)` of `len / width` values.
#[derive(Debug, Clone, Copy)]
struct Region {
    start: usize,
    len: usize,
    kind: Kind,
}

enum Width {
    Fixed(usize),
    Var,
}

/// TDengine type codes (docs: tdengine-notes §2).
fn width(ty: u8) -> Option<Width> {
    Some(match ty {
        1 | 2 | 11 => Width::Fixed(1),
        3 | 12 => Width::Fixed(2),
        4 | 6 | 13 => Width::Fixed(4),
        5 | 7 | 9 | 14 => Width::Fixed(8),
        8 | 10 | 15 | 16 | 20 => Width::Var,
        _ => return None,
    })
}

fn u32_at(b: &[u8], pos: usize) -> Option<usize> {
    let s = b.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// How FLOAT and DOUBLE columns are transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floats {
    /// XOR with the previous value, byte planes (frames `TBC2`).
    Xor,
    /// Left as they are (frames `TBC3`).
    AsIs,
}

/// The regions to rewrite, read from the header, schema and lengths (which no transform
/// touches). `None` when the layout is not understood or does not fit in `b`.
fn layout(b: &[u8], floats: Floats) -> Option<Vec<Region>> {
    let block = columns(b)?;
    let rows = block.rows;
    let regions = block.cols.iter().filter_map(|c| match c.width {
        Width::Fixed(w) => {
            let kind = match c.ty {
                6 | 7 if floats == Floats::AsIs => None,
                6 | 7 => Some(Kind::Xor(w)),
                _ if w > 1 => Some(Kind::Delta(w)),
                _ => None,
            }?;
            Some(Region {
                start: c.start + rows.div_ceil(8),
                len: c.len,
                kind,
            })
        }
        Width::Var => Some(Region {
            start: c.start,
            len: rows * 4,
            kind: Kind::Delta(4),
        }),
    });
    Some(regions.collect())
}

/// The low `W` bytes of `v` (`W` ≤ 8), as a value with the bits above them zero.
#[inline(always)]
fn load<const W: usize>(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..W].copy_from_slice(&b[..W]);
    u64::from_le_bytes(v)
}

/// The mask of the low `W` bytes.
const fn mask<const W: usize>() -> u64 {
    if W == 8 {
        u64::MAX
    } else {
        (1u64 << (W * 8)) - 1
    }
}

/// Value `i` of the plane-major `src` (`W` planes of `n` bytes each).
#[inline(always)]
fn gather<const W: usize>(src: &[u8], n: usize, i: usize) -> u64 {
    let mut t = [0u8; 8];
    for (plane, byte) in t[..W].iter_mut().enumerate() {
        *byte = src[plane * n + i];
    }
    u64::from_le_bytes(t)
}

/// [`Kind`]'s forward transform for one value width and kind, chosen once per region so
/// that the per-value loop has no run-time width (it unrolls per `W`).
fn forward_w<const W: usize, const XOR: bool>(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / W;
    let shift = 64 - W as u32 * 8;
    let mut prev = 0u64;
    for (i, value) in src.chunks_exact(W).enumerate() {
        let v = load::<W>(value);
        let t = if XOR {
            v ^ prev
        } else {
            // Wrapping difference in the column's width, sign-extended, zig-zagged.
            let d = ((v.wrapping_sub(prev) << shift) as i64) >> shift;
            ((d << 1) ^ (d >> 63)) as u64 & mask::<W>()
        };
        prev = v;
        let bytes = t.to_le_bytes();
        for (plane, byte) in bytes[..W].iter().enumerate() {
            dst[plane * n + i] = *byte;
        }
    }
}

/// The inverse of [`forward_w`].
fn inverse_w<const W: usize, const XOR: bool>(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / W;
    let mut prev = 0u64;
    for (i, out) in dst.chunks_exact_mut(W).enumerate() {
        let t = gather::<W>(src, n, i);
        let v = if XOR {
            t ^ prev
        } else {
            let d = (t >> 1) ^ (t & 1).wrapping_neg();
            prev.wrapping_add(d) & mask::<W>()
        };
        prev = v;
        out.copy_from_slice(&v.to_le_bytes()[..W]);
    }
}

/// Dispatches on the region's width and kind (only widths 2, 4 and 8 occur: see
/// [`layout`]; any other is left unchanged, which [`layout`] never produces).
fn forward(src: &[u8], dst: &mut [u8], kind: Kind) {
    match kind {
        Kind::Delta(2) => forward_w::<2, false>(src, dst),
        Kind::Delta(4) => forward_w::<4, false>(src, dst),
        Kind::Delta(8) => forward_w::<8, false>(src, dst),
        Kind::Xor(4) => forward_w::<4, true>(src, dst),
        Kind::Xor(8) => forward_w::<8, true>(src, dst),
        _ => dst.copy_from_slice(src),
    }
}

fn inverse(src: &[u8], dst: &mut [u8], kind: Kind) {
    match kind {
        Kind::Delta(2) => inverse_w::<2, false>(src, dst),
        Kind::Delta(4) => inverse_w::<4, false>(src, dst),
        Kind::Delta(8) => inverse_w::<8, false>(src, dst),
        Kind::Xor(4) => inverse_w::<4, true>(src, dst),
        Kind::Xor(8) => inverse_w::<8, true>(src, dst),
        _ => dst.copy_from_slice(src),
    }
}

/// The transformed form of raw block `raw` (same length) with floats XORed ([`Floats::Xor`],
/// frames `TBC2`), or `None` when its layout is not understood and it should be stored as
/// it is.
pub fn encode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    encode_into(raw, &mut out, Floats::Xor).then_some(out)
}

/// Appends the transformed form of `raw` to `out` (one pass, no intermediate copy) and
/// returns `true`; returns `false`, leaving `out` as it was, when the layout of `raw` is not
/// understood.
pub fn encode_into(raw: &[u8], out: &mut Vec<u8>, floats: Floats) -> bool {
    let Some(regions) = layout(raw, floats) else {
        return false;
    };
    let base = out.len();
    out.extend_from_slice(raw);
    for r in regions {
        let end = r.start + r.len;
        forward(
            &raw[r.start..end],
            &mut out[base + r.start..base + end],
            r.kind,
        );
    }
    true
}

/// The raw block that [`encode`] turned into `transformed`.
pub fn decode(transformed: &[u8]) -> Result<Vec<u8>, TransformError> {
    decode_with(transformed, Floats::Xor)
}

/// The raw block that [`encode_into`] with `floats` turned into `transformed`.
pub fn decode_with(transformed: &[u8], floats: Floats) -> Result<Vec<u8>, TransformError> {
    let regions = layout(transformed, floats).ok_or_else(|| {
        TransformError("its header, schema or column lengths do not describe it".into())
    })?;
    let mut out = transformed.to_vec();
    for r in regions {
        let end = r.start + r.len;
        inverse(&transformed[r.start..end], &mut out[r.start..end], r.kind);
    }
    Ok(out)
}

/// One column of a raw block, as [`columns`] reads it from the header, schema and lengths.
struct Col {
    ty: u8,
    /// The schema's byte length of the column.
    bytes: [u8; 4],
    width: Width,
    /// Start of the bitmap (fixed) or offsets (var).
    start: usize,
    /// The data length entry.
    len: usize,
}

/// A raw block whose layout is understood: its bytes, rows, columns and trailing bytes.
struct Columns<'a> {
    bytes: &'a [u8],
    rows: usize,
    cols: Vec<Col>,
    /// The bytes after the last column.
    trailing: &'a [u8],
}

/// A raw block's columns, read from its header, schema and lengths (which no transform
/// touches), when every type is one the table in [`width`] knows, every fixed-width column
/// has `rows × width` bytes and the columns fit in `b`; else `None`. The length field is
/// not checked here ([`concat`] checks it).
fn columns(b: &[u8]) -> Option<Columns<'_>> {
    let rows = u32_at(b, 8)?;
    let ncols = u32_at(b, 12)?;
    let schema = HEADER_LEN;
    let lengths = schema.checked_add(ncols.checked_mul(5)?)?;
    let mut pos = lengths.checked_add(ncols.checked_mul(4)?)?;
    let mut cols = Vec::with_capacity(ncols.min(4096));
    for i in 0..ncols {
        let ty = *b.get(schema + i * 5)?;
        let bytes = b
            .get(schema + i * 5 + 1..schema + i * 5 + 5)?
            .try_into()
            .ok()?;
        let len = u32_at(b, lengths + i * 4)?;
        let width = width(ty)?;
        let start = pos;
        pos = match width {
            Width::Fixed(w) => {
                if len != rows.checked_mul(w)? {
                    return None;
                }
                pos.checked_add(rows.div_ceil(8))?.checked_add(len)?
            }
            Width::Var => pos.checked_add(rows.checked_mul(4)?)?.checked_add(len)?,
        };
        cols.push(Col {
            ty,
            bytes,
            width,
            start,
            len,
        });
    }
    Some(Columns {
        bytes: b,
        rows,
        cols,
        trailing: b.get(pos..)?,
    })
}

/// One raw block holding the rows of `blocks` in order, or `None` when any block's layout is
/// not understood (as for [`encode`]), the blocks' schemas (types and byte lengths) or
/// trailing bytes differ, a variable-width value lies outside its column, or the result
/// would not fit the format's 32-bit lengths and offsets. Every row keeps its values and
/// NULLs exactly; the header's version, flag and group id are the first block's.
///
/// Restore joins a table's consecutive blocks with it, so that one write carries them.
pub fn concat(blocks: &[&[u8]]) -> Option<Vec<u8>> {
    let parts = blocks
        .iter()
        .map(|b| columns(b).filter(|_| u32_at(b, 4) == Some(b.len())))
        .collect::<Option<Vec<_>>>()?;
    let first = parts.first()?;
    let (cols, trailing) = (&first.cols, first.trailing);
    let differs = |p: &Columns<'_>| {
        p.cols.len() != cols.len()
            || p.cols
                .iter()
                .zip(cols)
                .any(|(a, b)| a.ty != b.ty || a.bytes != b.bytes)
            || p.trailing != trailing
    };
    if parts[1..].iter().any(differs) {
        return None;
    }
    let rows: usize = parts.iter().map(|p| p.rows).sum();
    let rows32 = u32::try_from(rows).ok()?;
    let lengths_at = HEADER_LEN + cols.len() * 5;
    let body_at = lengths_at + cols.len() * 4;
    let total: usize = parts.iter().map(|p| p.bytes.len()).sum();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&first.bytes[..lengths_at]);
    out[8..12].copy_from_slice(&rows32.to_le_bytes());
    out.resize(body_at, 0);
    for (i, c) in cols.iter().enumerate() {
        let len = match c.width {
            Width::Fixed(w) => {
                let bitmap_at = out.len();
                out.resize(bitmap_at + rows.div_ceil(8), 0);
                let mut row = 0;
                for p in &parts {
                    let start = p.cols[i].start;
                    let bits = &p.bytes[start..start + p.rows.div_ceil(8)];
                    // NULL bits, most significant first; a bitmap of zeros has none.
                    if bits.iter().any(|x| *x != 0) {
                        for r in 0..p.rows {
                            if bits[r / 8] & (0x80 >> (r % 8)) != 0 {
                                let k = row + r;
                                out[bitmap_at + k / 8] |= 0x80 >> (k % 8);
                            }
                        }
                    }
                    row += p.rows;
                }
                for p in &parts {
                    let data = p.cols[i].start + p.rows.div_ceil(8);
                    out.extend_from_slice(&p.bytes[data..data + p.rows * w]);
                }
                rows * w
            }
            Width::Var => {
                let mut base = 0usize;
                for p in &parts {
                    let col = &p.cols[i];
                    let data_at = col.start + p.rows * 4;
                    let data = &p.bytes[data_at..data_at + col.len];
                    for o in p.bytes[col.start..data_at].chunks_exact(4) {
                        let off = i32::from_le_bytes([o[0], o[1], o[2], o[3]]);
                        if off < 0 {
                            out.extend_from_slice(o);
                            continue;
                        }
                        // The u16 length prefix and the value must lie in the column.
                        let at = off as usize;
                        let head = data.get(at..at + 2)?;
                        let end = at + 2 + usize::from(u16::from_le_bytes([head[0], head[1]]));
                        if end > data.len() {
                            return None;
                        }
                        let moved = i32::try_from(at + base).ok()?;
                        out.extend_from_slice(&moved.to_le_bytes());
                    }
                    base += col.len;
                }
                for p in &parts {
                    let col = &p.cols[i];
                    let data_at = col.start + p.rows * 4;
                    out.extend_from_slice(&p.bytes[data_at..data_at + col.len]);
                }
                base
            }
        };
        let len = u32::try_from(len).ok()?;
        out[lengths_at + i * 4..lengths_at + i * 4 + 4].copy_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(trailing);
    let total = u32::try_from(out.len()).ok()?;
    out[4..8].copy_from_slice(&total.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A raw block with the given columns: (type, per-row value bytes or None for NULL).
    fn block(cols: &[(u8, Vec<Option<Vec<u8>>>)], rows: usize, trailing: &[u8]) -> Vec<u8> {
        let mut schema = Vec::new();
        let mut lengths = Vec::new();
        let mut body = Vec::new();
        for (ty, values) in cols {
            match width(*ty) {
                Some(Width::Fixed(w)) => {
                    schema.push(*ty);
                    schema.extend_from_slice(&(w as u32).to_le_bytes());
                    let mut bitmap = vec![0u8; rows.div_ceil(8)];
                    let mut data = Vec::new();
                    for (r, v) in values.iter().enumerate() {
                        match v {
                            Some(v) => data.extend_from_slice(&v[..w]),
                            None => {
                                bitmap[r / 8] |= 0x80 >> (r % 8);
                                data.extend(std::iter::repeat_n(0, w));
                            }
                        }
                    }
                    lengths.extend_from_slice(&(data.len() as u32).to_le_bytes());
                    body.extend_from_slice(&bitmap);
                    body.extend_from_slice(&data);
                }
                _ => {
                    schema.push(*ty);
                    schema.extend_from_slice(&64u32.to_le_bytes());
                    let mut offsets = Vec::new();
                    let mut data = Vec::new();
                    for v in values {
                        match v {
                            Some(v) => {
                                offsets.extend_from_slice(&(data.len() as i32).to_le_bytes());
                                data.extend_from_slice(&(v.len() as u16).to_le_bytes());
                                data.extend_from_slice(v);
                            }
                            None => offsets.extend_from_slice(&(-1i32).to_le_bytes()),
                        }
                    }
                    lengths.extend_from_slice(&(data.len() as u32).to_le_bytes());
                    body.extend_from_slice(&offsets);
                    body.extend_from_slice(&data);
                }
            }
        }
        let total = HEADER_LEN + schema.len() + lengths.len() + body.len() + trailing.len();
        let mut out = Vec::new();
        for v in [1u32, total as u32, rows as u32, cols.len() as u32, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&schema);
        out.extend_from_slice(&lengths);
        out.extend_from_slice(&body);
        out.extend_from_slice(trailing);
        out
    }

    fn fixed(ty: u8, values: impl IntoIterator<Item = i64>) -> (u8, Vec<Option<Vec<u8>>>) {
        (
            ty,
            values
                .into_iter()
                .map(|v| Some(v.to_le_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn meters_like_block_round_trips_and_timestamps_become_constant_planes() {
        let rows = 1000;
        let ts = fixed(9, (0..rows as i64).map(|i| 1_700_000_000_000 + i * 60_000));
        let current = (
            6,
            (0..rows)
                .map(|i| Some((10.0f32 + (i as f32 * 0.01).sin()).to_le_bytes().to_vec()))
                .collect(),
        );
        let voltage = fixed(4, (0..rows as i64).map(|i| 218 + (i * 7919) % 5));
        let status = (
            8,
            (0..rows)
                .map(|i| (i % 50 != 0).then(|| b"ok".to_vec()))
                .collect(),
        );
        let raw = block(&[ts, current, voltage, status], rows, &[0]);
        let t = encode(&raw).expect("layout understood");
        assert_eq!(t.len(), raw.len());
        assert_eq!(decode(&t).unwrap(), raw);
        // The header, schema and lengths are untouched.
        let prelude = HEADER_LEN + 4 * 5 + 4 * 4;
        assert_eq!(t[..prelude], raw[..prelude]);
        // Timestamp deltas after the first are all 60 000: its planes are runs.
        let data = prelude + rows.div_ceil(8);
        let plane0 = &t[data..data + rows];
        assert!(
            plane0[1..].iter().all(|b| *b == plane0[1]),
            "{:?}",
            &plane0[..8]
        );
        let z = |b: &[u8]| zstd::bulk::compress(b, 3).unwrap().len();
        println!(
            "meters-like block: raw {} B, zstd-3 {} B, transformed + zstd-3 {} B",
            raw.len(),
            z(&raw),
            z(&t)
        );
        assert!(z(&t) < z(&raw), "{} vs {}", z(&t), z(&raw));
    }

    /// The format cannot drift unnoticed: fixed input, fixed bytes (docs/format.md §5.2).
    #[test]
    fn golden_timestamp_and_float_columns() {
        let raw = block(
            &[
                fixed(9, [1000, 61_000]),
                (
                    6,
                    vec![
                        Some(1.0f32.to_le_bytes().to_vec()),
                        Some(1.5f32.to_le_bytes().to_vec()),
                    ],
                ),
            ],
            2,
            &[],
        );
        let t = encode(&raw).unwrap();
        let prelude = HEADER_LEN + 2 * 5 + 2 * 4;
        // Timestamps: deltas 1000 and 60 000, zig-zagged to 0x7d0 and 0x1d4c0, as 8 planes.
        let ts = prelude + 1;
        assert_eq!(
            t[ts..ts + 16],
            [
                0xd0, 0xc0, 0x07, 0xd4, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        // Floats: 1.0 = 0x3f800000, 1.5 = 0x3fc00000; XORs 0x3f800000 and 0x00400000.
        let f = ts + 16 + 1;
        assert_eq!(t[f..f + 8], [0, 0, 0, 0, 0x80, 0x40, 0x3f, 0x00]);
        assert_eq!(decode(&t).unwrap(), raw);
    }

    #[test]
    fn extremes_and_nulls_round_trip() {
        let rows = 9;
        let big = [i64::MIN, i64::MAX, 0, -1, 1, i64::MIN, i64::MAX, 7, -7];
        let cols = vec![
            fixed(5, big),
            fixed(9, big),
            fixed(14, big),
            fixed(4, big.map(|v| v as i32 as i64)),
            fixed(3, big.map(|v| v as i16 as i64)),
            fixed(12, big.map(|v| v as u16 as i64)),
            fixed(2, big.map(|v| v as i8 as i64)),
            fixed(1, big.map(|v| v & 1)),
            (
                7,
                [
                    f64::NAN,
                    f64::INFINITY,
                    -0.0,
                    1e300,
                    -1e-300,
                    0.1,
                    0.2,
                    0.3,
                    f64::MIN,
                ]
                .map(|f| Some(f.to_le_bytes().to_vec()))
                .to_vec(),
            ),
            (
                6,
                (0..rows)
                    .map(|i| {
                        (i % 3 != 0).then(|| {
                            f32::from_bits(0x7fc0_0001 + i as u32)
                                .to_le_bytes()
                                .to_vec()
                        })
                    })
                    .collect(),
            ),
            (
                10,
                (0..rows)
                    .map(|i| (i % 2 == 0).then(|| vec![0xff; i * 4]))
                    .collect(),
            ),
        ];
        for trailing in [&[][..], &[0][..], &[1, 2, 3][..]] {
            let raw = block(&cols, rows, trailing);
            let t = encode(&raw).expect("understood");
            assert_eq!(decode(&t).unwrap(), raw);
        }
        // Zero rows, zero columns.
        let raw = block(&[], 0, &[]);
        assert_eq!(decode(&encode(&raw).unwrap()).unwrap(), raw);
    }

    #[test]
    fn unknown_layouts_are_not_transformed_and_bad_input_is_an_error() {
        let raw = block(&[fixed(5, [1, 2, 3])], 3, &[]);
        // Type 17 (DECIMAL) has no known width here.
        let mut unknown = raw.clone();
        unknown[HEADER_LEN] = 17;
        assert_eq!(encode(&unknown), None);
        assert!(decode(&unknown).is_err());
        // A length that disagrees with rows × width.
        let mut wrong = raw.clone();
        wrong[HEADER_LEN + 5] = 23;
        assert_eq!(encode(&wrong), None);
        // Truncated.
        assert_eq!(encode(&raw[..raw.len() - 1]), None);
        assert!(decode(&raw[..10]).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn blocks_that_cannot_be_joined_are_refused() {
        let a = block(&[fixed(9, [1, 2]), fixed(4, [5, 6])], 2, &[]);
        // Another type in the second column.
        let b = block(&[fixed(9, [3]), fixed(5, [7])], 1, &[]);
        assert_eq!(concat(&[&a, &b]), None);
        // Other trailing bytes.
        let c = block(&[fixed(9, [3]), fixed(4, [7])], 1, &[0]);
        assert_eq!(concat(&[&a, &c]), None);
        // An unknown type (17, DECIMAL) is never joined.
        let mut d = a.clone();
        d[HEADER_LEN + 5] = 17;
        assert_eq!(concat(&[&d, &d]), None);
        // A var-width offset past its column's data.
        let s = block(&[(8, vec![Some(b"xyz".to_vec())])], 1, &[]);
        let mut bad = s.clone();
        let offsets = HEADER_LEN + 5 + 4;
        bad[offsets..offsets + 4].copy_from_slice(&3i32.to_le_bytes());
        assert_eq!(concat(&[&s, &bad]), None);
        // A length field that does not match the bytes.
        assert_eq!(concat(&[&a[..a.len() - 1]]), None);
        assert_eq!(concat(&[]), None);
        // One block is itself; NULLs across a byte boundary keep their rows.
        assert_eq!(concat(&[&a]), Some(a.clone()));
        let n1 = block(&[(4, vec![None; 7])], 7, &[]);
        let n2 = block(&[(4, vec![Some(vec![1, 0, 0, 0]), None])], 2, &[]);
        let mut both = vec![None; 7];
        both.extend([Some(vec![1, 0, 0, 0]), None]);
        assert_eq!(concat(&[&n1, &n2]), Some(block(&[(4, both)], 9, &[])));
    }

    fn arb_column() -> impl Strategy<Value = (u8, Vec<Option<Vec<u8>>>)> {
        let types = prop::sample::select(vec![
            1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 20,
        ]);
        (types, 0usize..40).prop_flat_map(|(ty, rows)| {
            let value = match width(ty) {
                Some(Width::Fixed(w)) => prop::collection::vec(any::<u8>(), w..=w).boxed(),
                _ => prop::collection::vec(any::<u8>(), 0..12).boxed(),
            };
            (
                Just(ty),
                prop::collection::vec(prop::option::of(value), rows..=rows),
            )
        })
    }

    proptest! {
        #[test]
        fn every_block_round_trips_byte_for_byte(
            cols in prop::collection::vec(arb_column(), 0..6),
            trailing in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            // All columns must have the same number of rows: cut to the shortest.
            let rows = cols.iter().map(|c| c.1.len()).min().unwrap_or(0);
            let cols: Vec<_> = cols.into_iter().map(|(t, v)| (t, v[..rows].to_vec())).collect();
            let raw = block(&cols, rows, &trailing);
            let t = encode(&raw).expect("a well-formed block is understood");
            prop_assert_eq!(t.len(), raw.len());
            prop_assert_eq!(decode(&t).unwrap(), raw.clone());
            let mut t = Vec::new();
            prop_assert!(encode_into(&raw, &mut t, Floats::AsIs));
            prop_assert_eq!(decode_with(&t, Floats::AsIs).unwrap(), raw);
        }

        #[test]
        fn concatenated_parts_are_the_whole_block(
            cols in prop::collection::vec(arb_column(), 0..6),
            trailing in prop::collection::vec(any::<u8>(), 0..2),
            cuts in prop::collection::vec(0usize..40, 0..3),
        ) {
            let rows = cols.iter().map(|c| c.1.len()).min().unwrap_or(0);
            let cols: Vec<_> = cols.into_iter().map(|(t, v)| (t, v[..rows].to_vec())).collect();
            let whole = block(&cols, rows, &trailing);
            // Cut the rows at up to three points (empty parts included).
            let mut at: Vec<usize> = cuts.into_iter().map(|c| c.min(rows)).collect();
            at.push(0);
            at.push(rows);
            at.sort_unstable();
            let parts: Vec<Vec<u8>> = at
                .windows(2)
                .map(|w| {
                    let part: Vec<_> = cols
                        .iter()
                        .map(|(t, v)| (*t, v[w[0]..w[1]].to_vec()))
                        .collect();
                    block(&part, w[1] - w[0], &trailing)
                })
                .collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(concat(&refs), Some(whole));
        }

        #[test]
        fn concatenating_arbitrary_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            flip in 0usize..120,
        ) {
            let good = block(&[fixed(9, [1, 2, 3]), (8, vec![Some(b"ab".to_vec()), None, Some(vec![])])], 3, &[]);
            let _ = concat(&[&bytes, &good]);
            let _ = concat(&[&good, &bytes]);
            let mut bent = good.clone();
            if flip < bent.len() {
                bent[flip] ^= 0x5a;
            }
            let _ = concat(&[&good, &bent]);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = decode_with(&bytes, Floats::AsIs);
            let _ = encode(&bytes);
        }
    }
}
