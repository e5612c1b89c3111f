//! TDengine's raw block format (version 1), the bytes that travel in fetch replies and in
//! `write_raw_block` requests.
//!
//! Layout, all little-endian (taos-query 0.12.4 `src/common/raw/mod.rs`; TDengine
//! `blockEncode` in `source/common/src/tdatablock.c`):
//!
//! ```text
//! u32 version (1) | u32 total_length | u32 nrows | u32 ncols | u32 flag | u64 group_id
//! ncols × (u8 type | u32 bytes)          -- column schemas
//! ncols × u32 length                      -- data length of each column
//! per column:
//!   fixed width: null bitmap ((nrows+7)/8 bytes, MSB first) | nrows × width
//!   var width:   nrows × i32 offsets (-1 = NULL) | values as (u16 len | bytes)
//! ```
//!
//! NCHAR values are UCS-4LE; their u16 length counts bytes. BLOB values carry a u32 length
//! instead of the u16 (taosAdapter `driver/common/parser/block.go`, `rawConvertBlob` reads
//! `isUint32`). DECIMAL (16 bytes, little-endian i128) and DECIMAL64 (8 bytes, i64) are
//! fixed width; their schema entry packs width, precision and scale into the u32 `bytes`
//! as `width << 24 | precision << 8 | scale` (TDengine `blockEncode` calls
//! `fillBytesForDecimalType`, source/common/src/tdatablock.c; taosAdapter reads it back in
//! `RawBlockGetDecimalInfo`: byte 0 scale, byte 1 precision, byte 3 width).

use crate::error::{EmuError, code};
use crate::le::LeReader;
use crate::types::{ColumnData, Field, Ty};

/// Size of the fixed header.
pub const HEADER_LEN: usize = 28;
/// The block version this module writes and reads.
pub const BLOCK_VERSION: u32 = 1;
/// Flag word TDengine writes: the high bit marks the column-segment layout.
pub const BLOCK_FLAG: u32 = 1 << 31;
const VARSTR_HEADER: u32 = 2;

/// The width TDengine stores in a raw block's column schema for a declared field length.
pub fn schema_bytes(field: &Field) -> u32 {
    match field.ty {
        ty if ty.is_decimal() => decimal_bytes(ty, field.precision, field.scale),
        Ty::Blob => field.bytes,
        Ty::NChar => field.bytes.saturating_mul(4).saturating_add(VARSTR_HEADER),
        ty if ty.is_var() => field.bytes.saturating_add(VARSTR_HEADER),
        ty => ty.fixed_width().unwrap_or(0) as u32,
    }
}

/// The schema `bytes` of a DECIMAL/DECIMAL64 column: `width << 24 | precision << 8 | scale`.
pub fn decimal_bytes(ty: Ty, precision: u8, scale: u8) -> u32 {
    let width = ty.fixed_width().unwrap_or(0) as u32;
    (width << 24) | ((precision as u32) << 8) | scale as u32
}

/// Precision and scale from a DECIMAL schema `bytes` entry.
pub fn decimal_prec_scale(bytes: u32) -> (u8, u8) {
    (((bytes >> 8) & 0xFF) as u8, (bytes & 0xFF) as u8)
}

/// Encodes rows `range` of `columns` (described by `fields`, same order) as one raw block.
///
/// # Panics
/// When `fields` and `columns` differ in length or types, or `range` exceeds a column: these
/// are programming errors inside the emulator, not input errors.
pub fn encode(fields: &[Field], columns: &[&ColumnData], range: std::ops::Range<usize>) -> Vec<u8> {
    assert_eq!(fields.len(), columns.len(), "one field per column");
    let rows = range.len();
    let ncols = columns.len();
    let mut out = Vec::with_capacity(HEADER_LEN + ncols * 9 + rows * ncols * 9);
    out.extend_from_slice(&BLOCK_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // total length, patched below
    out.extend_from_slice(&(rows as u32).to_le_bytes());
    out.extend_from_slice(&(ncols as u32).to_le_bytes());
    out.extend_from_slice(&BLOCK_FLAG.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for (field, col) in fields.iter().zip(columns) {
        assert_eq!(field.ty, col.ty(), "field type matches column type");
        out.push(field.ty.code());
        out.extend_from_slice(&schema_bytes(field).to_le_bytes());
    }
    let lengths_at = out.len();
    out.resize(lengths_at + 4 * ncols, 0);
    for (i, col) in columns.iter().enumerate() {
        let start = out.len();
        let data_len = encode_column(&mut out, col, range.clone());
        debug_assert!(out.len() >= start);
        let at = lengths_at + 4 * i;
        out[at..at + 4].copy_from_slice(&(data_len as u32).to_le_bytes());
    }
    let total = out.len() as u32;
    out[4..8].copy_from_slice(&total.to_le_bytes());
    out
}

/// Appends `vals` as `W`-byte little-endian values, into room made at once (a push per
/// value checked the capacity each time and did not vectorise).
fn put_fixed<T, const W: usize>(out: &mut Vec<u8>, vals: &[T], conv: impl Fn(&T) -> [u8; W]) {
    let at = out.len();
    out.resize(at + vals.len() * W, 0);
    for (dst, x) in out[at..].chunks_exact_mut(W).zip(vals) {
        dst.copy_from_slice(&conv(x));
    }
}

/// Writes one column; returns the value of its length entry.
fn encode_column(out: &mut Vec<u8>, col: &ColumnData, range: std::ops::Range<usize>) -> usize {
    macro_rules! fixed {
        ($v:expr, $conv:expr) => {{
            let v = $v;
            let n = range.len();
            let bitmap_at = out.len();
            out.resize(bitmap_at + n.div_ceil(8), 0);
            if v.has_nulls() {
                for (i, r) in range.clone().enumerate() {
                    if v.get(r).is_none() {
                        out[bitmap_at + i / 8] |= 0x80 >> (i % 8);
                    }
                }
            }
            let data_at = out.len();
            // A NULL's slot holds the type's default, as TDengine writes zeros.
            put_fixed(out, &v.values()[range.clone()], $conv);
            out.len() - data_at
        }};
    }
    macro_rules! var {
        ($v:expr, |$x:ident| $bytes:expr) => {{
            let v = $v;
            let offsets_at = out.len();
            out.resize(offsets_at + 4 * range.len(), 0);
            let data_at = out.len();
            let blob = col.ty() == Ty::Blob;
            for (i, r) in range.clone().enumerate() {
                let off: i32 = match v.get(r) {
                    None => -1,
                    Some($x) => {
                        let off = (out.len() - data_at) as i32;
                        let bytes: std::borrow::Cow<[u8]> = $bytes;
                        if blob {
                            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                        } else {
                            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                        }
                        out.extend_from_slice(&bytes);
                        off
                    }
                };
                out[offsets_at + 4 * i..offsets_at + 4 * i + 4].copy_from_slice(&off.to_le_bytes());
            }
            out.len() - data_at
        }};
    }
    match col {
        ColumnData::Bool(v) => fixed!(v, |x: &bool| [*x as u8]),
        ColumnData::TinyInt(v) => fixed!(v, |x: &i8| x.to_le_bytes()),
        ColumnData::SmallInt(v) => fixed!(v, |x: &i16| x.to_le_bytes()),
        ColumnData::Int(v) => fixed!(v, |x: &i32| x.to_le_bytes()),
        ColumnData::BigInt(v) => fixed!(v, |x: &i64| x.to_le_bytes()),
        ColumnData::Float(v) => fixed!(v, |x: &f32| x.to_le_bytes()),
        ColumnData::Double(v) => fixed!(v, |x: &f64| x.to_le_bytes()),
        ColumnData::Timestamp(v) => fixed!(v, |x: &i64| x.to_le_bytes()),
        ColumnData::UTinyInt(v) => fixed!(v, |x: &u8| x.to_le_bytes()),
        ColumnData::USmallInt(v) => fixed!(v, |x: &u16| x.to_le_bytes()),
        ColumnData::UInt(v) => fixed!(v, |x: &u32| x.to_le_bytes()),
        ColumnData::UBigInt(v) => fixed!(v, |x: &u64| x.to_le_bytes()),
        ColumnData::Decimal(v) => fixed!(v, |x: &i128| x.to_le_bytes()),
        ColumnData::Decimal64(v) => fixed!(v, |x: &i64| x.to_le_bytes()),
        ColumnData::VarChar(v)
        | ColumnData::VarBinary(v)
        | ColumnData::Geometry(v)
        | ColumnData::Blob(v) => {
            var!(v, |x| std::borrow::Cow::Borrowed(x))
        }
        ColumnData::Json(v) => var!(v, |x| std::borrow::Cow::Borrowed(x)),
        ColumnData::NChar(v) => var!(v, |x| std::borrow::Cow::Owned(
            String::from_utf8_lossy(x)
                .chars()
                .flat_map(|c| (c as u32).to_le_bytes())
                .collect::<Vec<u8>>()
        )),
    }
}

/// A raw block whose header has been read and checked, its column data left as received:
/// what TDengine's `rawBlockBindData` (`source/libs/parser/src/parInsertUtil.c`) works from.
/// It reads the header, then each *bound* column straight from the buffer; it decodes no
/// column it does not bind and checks nothing of the block as a whole. The emulator binds
/// from this ([`crate::store`]'s raw-block write), so a restore's ingestion decodes each
/// bound column once.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBlock {
    /// Number of rows.
    pub rows: usize,
    /// Per column: type and the width from the block's schema.
    pub schema: Vec<(Ty, u32)>,
    /// Per column: the block's data length entry (what `rawBlockBindData` advances by).
    pub lengths: Vec<usize>,
    /// Offset of the first column's data (after the schema and length entries) in `bytes`.
    pub data_start: usize,
    /// The block as received, for binders that read it at their own offsets.
    pub bytes: Vec<u8>,
}

/// A decoded raw block: column types (with schema widths) and typed data.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedBlock {
    /// Number of rows.
    pub rows: usize,
    /// Per column: type and the width from the block's schema.
    pub schema: Vec<(Ty, u32)>,
    /// Per column data, `rows` values each.
    pub columns: Vec<ColumnData>,
}

fn bad(msg: impl Into<String>) -> EmuError {
    EmuError::new(
        code::INVALID_MSG,
        format!("invalid raw block: {}", msg.into()),
    )
}

/// Gives decoding errors the "invalid raw block" prefix.
fn invalid_block(e: EmuError) -> EmuError {
    match e.message.starts_with("invalid raw block") {
        true => e,
        false => bad(e.message),
    }
}

/// Decodes a raw block, validating every length; hostile input gives an error, never a panic.
pub fn decode(buf: &[u8]) -> Result<DecodedBlock, EmuError> {
    let (h, mut r) = read_header(buf).map_err(invalid_block)?;
    let mut columns = Vec::with_capacity(h.schema.len());
    for (&(ty, _), &len) in h.schema.iter().zip(&h.lengths) {
        columns.push(decode_column(&mut r, ty, h.rows, len).map_err(invalid_block)?);
    }
    Ok(DecodedBlock {
        rows: h.rows,
        schema: h.schema,
        columns,
    })
}

/// Reads and checks a raw block's header (version, total length within `buf`, column count,
/// known type codes, the length entries), keeping its bytes; no column data is decoded.
pub fn parse(buf: &[u8]) -> Result<RawBlock, EmuError> {
    let (h, _) = read_header(buf).map_err(invalid_block)?;
    let bytes = buf[..h.end].to_vec();
    Ok(h.into_block(bytes))
}

/// [`parse`] of bytes the caller owns: they become the block's, without a copy.
pub fn parse_owned(mut buf: Vec<u8>) -> Result<RawBlock, EmuError> {
    let (h, _) = read_header(&buf).map_err(invalid_block)?;
    buf.truncate(h.end);
    Ok(h.into_block(buf))
}

/// A raw block's header as [`read_header`] checked it.
struct Header {
    rows: usize,
    schema: Vec<(Ty, u32)>,
    lengths: Vec<usize>,
    data_start: usize,
    /// Where the block ends in the buffer: its total length (at least the header's end).
    end: usize,
}

impl Header {
    /// The block this header describes, over `bytes` (the block's, `end` long).
    fn into_block(self, bytes: Vec<u8>) -> RawBlock {
        RawBlock {
            bytes,
            rows: self.rows,
            schema: self.schema,
            lengths: self.lengths,
            data_start: self.data_start,
        }
    }
}

/// Reads and checks a raw block's header; also returns a reader positioned at the first
/// column's data.
fn read_header(buf: &[u8]) -> Result<(Header, LeReader<'_>), EmuError> {
    let mut r = LeReader::new(buf);
    let version = r.u32()?;
    if version != BLOCK_VERSION {
        return Err(bad(format!("unsupported version {version}")));
    }
    let total = r.u32()? as usize;
    if total > buf.len() {
        return Err(bad(format!(
            "length {total} exceeds the {} bytes received",
            buf.len()
        )));
    }
    let rows = r.u32()? as usize;
    let ncols = r.u32()? as usize;
    r.take(4 + 8)?; // flag, group id
    // Every column needs at least 9 bytes of schema and length: bound before allocating.
    if ncols > buf.len() / 9 {
        return Err(bad(format!(
            "{ncols} columns cannot fit in {} bytes",
            buf.len()
        )));
    }
    let mut schema = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let t = r.u8()?;
        let ty = Ty::from_code(t).ok_or_else(|| bad(format!("unknown column type {t}")))?;
        schema.push((ty, r.u32()?));
    }
    let mut lengths = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        lengths.push(r.u32()? as usize);
    }
    let data_start = HEADER_LEN + ncols * 9;
    let header = Header {
        rows,
        schema,
        lengths,
        data_start,
        end: total.max(data_start),
    };
    Ok((header, r))
}

/// Reads `rows` values of type `ty` from `buf` at `pos`, the way TDengine's
/// `rawBlockBindData` reads a bound column (`source/libs/parser/src/parInsertUtil.c`): the
/// null bitmap (fixed width) or the offsets (var width) first, then the data; the layout is
/// the *target* column's type, whatever the block's schema says. Returns the column and the
/// position of its data (where the caller adds the block's length entry). TDengine reads
/// whatever memory follows; here a read past the block is an error (0x0118).
pub fn read_column_at(
    buf: &[u8],
    pos: usize,
    ty: Ty,
    rows: usize,
) -> Result<(ColumnData, usize), EmuError> {
    let past = || {
        EmuError::new(
            code::INVALID_PARA,
            "raw block column read past the end of the block",
        )
    };
    let rest = buf.get(pos..).ok_or_else(past)?;
    let prefix = if ty.is_var() {
        rows.checked_mul(4).ok_or_else(past)?
    } else {
        rows.div_ceil(8)
    };
    if prefix > rest.len() {
        return Err(past());
    }
    let data_len = rest.len() - prefix;
    let mut r = LeReader::new(rest);
    let col = decode_column(&mut r, ty, rows, data_len).map_err(|_| past())?;
    Ok((col, pos + prefix))
}

fn decode_column(
    r: &mut LeReader<'_>,
    ty: Ty,
    rows: usize,
    len: usize,
) -> Result<ColumnData, EmuError> {
    if let Some(width) = ty.fixed_width() {
        let nulls = r.take(rows.div_ceil(8))?;
        let data = r.take(
            rows.checked_mul(width)
                .ok_or_else(|| bad("row count overflow"))?,
        )?;
        let mut col = ColumnData::with_capacity(ty, rows);
        // Servers rarely send NULLs in most columns: a bitmap of zeros is decoded in one
        // pass (no per-value flag test or push), which a restore's ingestion spends most
        // of its decoding time on otherwise.
        let any_null = nulls.iter().any(|b| *b != 0);
        macro_rules! fill {
            ($v:expr, $n:literal, $conv:expr) => {{
                if !any_null {
                    $v.extend_present(data.chunks_exact($n).map(|chunk| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(chunk);
                        ($conv)(a)
                    }));
                    return Ok(col);
                }
                for (i, chunk) in data.chunks_exact($n).enumerate() {
                    if nulls[i / 8] & (0x80 >> (i % 8)) != 0 {
                        $v.push(None);
                    } else {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(chunk);
                        $v.push(Some(($conv)(a)));
                    }
                }
            }};
        }
        match &mut col {
            ColumnData::Bool(v) => fill!(v, 1, |a: [u8; 1]| a[0] != 0),
            ColumnData::TinyInt(v) => fill!(v, 1, i8::from_le_bytes),
            ColumnData::SmallInt(v) => fill!(v, 2, i16::from_le_bytes),
            ColumnData::Int(v) => fill!(v, 4, i32::from_le_bytes),
            ColumnData::BigInt(v) => fill!(v, 8, i64::from_le_bytes),
            ColumnData::Float(v) => fill!(v, 4, f32::from_le_bytes),
            ColumnData::Double(v) => fill!(v, 8, f64::from_le_bytes),
            ColumnData::Timestamp(v) => fill!(v, 8, i64::from_le_bytes),
            ColumnData::UTinyInt(v) => fill!(v, 1, u8::from_le_bytes),
            ColumnData::USmallInt(v) => fill!(v, 2, u16::from_le_bytes),
            ColumnData::UInt(v) => fill!(v, 4, u32::from_le_bytes),
            ColumnData::UBigInt(v) => fill!(v, 8, u64::from_le_bytes),
            ColumnData::Decimal(v) => fill!(v, 16, i128::from_le_bytes),
            ColumnData::Decimal64(v) => fill!(v, 8, i64::from_le_bytes),
            _ => unreachable!("fixed-width types only"),
        }
        return Ok(col);
    }
    let offsets = r.take(
        rows.checked_mul(4)
            .ok_or_else(|| bad("row count overflow"))?,
    )?;
    let data = r.take(len)?;
    let mut col = ColumnData::with_capacity(ty, rows);
    // The values need at most the column's data length (length prefixes included): one
    // allocation, where growing by doubling copied them and faulted in fresh pages again.
    if let ColumnData::VarChar(v)
    | ColumnData::VarBinary(v)
    | ColumnData::Geometry(v)
    | ColumnData::Blob(v) = &mut col
    {
        v.reserve_bytes(len);
    }
    for i in 0..rows {
        let o = &offsets[4 * i..4 * i + 4];
        let off = i32::from_le_bytes([o[0], o[1], o[2], o[3]]);
        if off < 0 {
            col.push_null();
            continue;
        }
        let off = off as usize;
        let p = ty.len_prefix();
        let head = data
            .get(off..off + p)
            .ok_or_else(|| bad(format!("offset {off} outside column data of {len} bytes")))?;
        let n = if p == 4 {
            u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize
        } else {
            u16::from_le_bytes([head[0], head[1]]) as usize
        };
        let bytes = data
            .get(off + p..(off + p).saturating_add(n))
            .ok_or_else(|| bad(format!("value of {n} bytes at {off} overruns column data")))?;
        // Straight into the column's byte buffer: a `Value` per row would allocate per row.
        match &mut col {
            ColumnData::VarChar(v)
            | ColumnData::VarBinary(v)
            | ColumnData::Geometry(v)
            | ColumnData::Blob(v) => v.push(Some(bytes)),
            ColumnData::Json(v) => v.push(Some(
                std::str::from_utf8(bytes)
                    .map_err(|_| bad("JSON value is not UTF-8"))?
                    .as_bytes(),
            )),
            ColumnData::NChar(v) => v.push(Some(decode_ucs4(bytes)?.as_bytes())),
            _ => unreachable!("var-width types only"),
        }
    }
    Ok(col)
}

fn decode_ucs4(bytes: &[u8]) -> Result<String, EmuError> {
    if bytes.len() % 4 != 0 {
        return Err(bad(format!(
            "NCHAR value of {} bytes is not UCS-4",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(4)
        .map(|c| {
            let u = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            char::from_u32(u).ok_or_else(|| bad(format!("invalid character U+{u:X} in NCHAR")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    #[test]
    fn parse_owned_is_parse_without_the_copy() {
        let fields = vec![
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("s", Ty::VarChar, 8),
        ];
        let ts = ColumnData::Timestamp(vec![Some(1), Some(2)].into());
        let s = ColumnData::VarChar(vec![Some(b"ab".to_vec()), None].into());
        let block = encode(&fields, &[&ts, &s], 0..2);
        // Bytes after the block's length are not the block's.
        let mut longer = block.clone();
        longer.extend_from_slice(b"trailing");
        let owned = parse_owned(longer.clone()).unwrap();
        assert_eq!(owned, parse(&longer).unwrap());
        assert_eq!(owned.bytes, block);
        assert!(parse_owned(block[..10].to_vec()).is_err());
    }

    #[test]
    fn round_trip_with_nulls() {
        let fields = vec![
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("v", Ty::Int, 4),
            Field::new("s", Ty::NChar, 10),
        ];
        let mut ts = ColumnData::new(Ty::Timestamp);
        let mut v = ColumnData::new(Ty::Int);
        let mut s = ColumnData::new(Ty::NChar);
        for i in 0..11 {
            ts.push(Value::Timestamp(1000 + i));
            v.push(if i % 3 == 0 {
                Value::Null
            } else {
                Value::Int(i as i32)
            });
            s.push(if i % 4 == 0 {
                Value::Null
            } else {
                Value::NChar(format!("é{i}"))
            });
        }
        let bytes = encode(&fields, &[&ts, &v, &s], 2..9);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.rows, 7);
        assert_eq!(d.columns[0], ts.slice(2..9));
        assert_eq!(d.columns[1], v.slice(2..9));
        assert_eq!(d.columns[2], s.slice(2..9));
    }

    proptest::proptest! {
        /// Fixed-width columns with and without NULLs (the latter decoded in one pass), cut
        /// at any range, decode to the values encoded.
        #[test]
        fn fixed_columns_decode_to_what_was_encoded(
            rows in proptest::collection::vec(
                (proptest::option::of(proptest::prelude::any::<i32>()),
                 proptest::prelude::any::<i64>(),
                 proptest::option::weighted(0.9, proptest::prelude::any::<f64>()),
                 proptest::prelude::any::<bool>()),
                1..40),
            cut in (0usize..40, 0usize..40),
        ) {
            let fields = vec![
                Field::new("v", Ty::Int, 4),
                Field::new("b", Ty::BigInt, 8),
                Field::new("d", Ty::Double, 8),
                Field::new("f", Ty::Bool, 1),
            ];
            let v = ColumnData::Int(rows.iter().map(|r| r.0).collect());
            let b = ColumnData::BigInt(rows.iter().map(|r| Some(r.1)).collect());
            let d = ColumnData::Double(rows.iter().map(|r| r.2).collect());
            let f = ColumnData::Bool(rows.iter().map(|r| Some(r.3)).collect());
            let (a, z) = (cut.0.min(rows.len()), cut.1.min(rows.len()));
            let range = a.min(z)..a.max(z);
            let bytes = encode(&fields, &[&v, &b, &d, &f], range.clone());
            let got = decode(&bytes).unwrap();
            proptest::prop_assert_eq!(got.rows, range.len());
            for (got, want) in got.columns.iter().zip([&v, &b, &d, &f]) {
                let want = want.slice(range.clone());
                proptest::prop_assert_eq!(got, &want);
            }
        }
    }

    #[test]
    fn hostile_blocks_are_errors() {
        assert!(decode(&[]).is_err());
        assert!(parse(&[]).is_err());
        let mut b = encode(
            &[Field::new("v", Ty::Int, 4)],
            &[&ColumnData::Int(vec![Some(1)].into())],
            0..1,
        );
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes()); // rows
        assert!(decode(&b).is_err());
        let mut h = b.clone();
        h[4..8].copy_from_slice(&(b.len() as u32 + 1).to_le_bytes()); // total length
        assert!(parse(&h).is_err());
        let mut h = b.clone();
        h[28] = 0xee; // the first column's type code
        assert!(parse(&h).is_err());
        assert!(parse(&b[..HEADER_LEN + 5]).is_err()); // the length entries cut off
        let mut b = encode(
            &[Field::new("v", Ty::VarChar, 4)],
            &[&ColumnData::VarChar(vec![Some(b"ab".to_vec())].into())],
            0..1,
        );
        let n = b.len();
        b[n - 4] = 0xff; // length prefix overruns
        assert!(decode(&b).is_err());
    }
}
