//! Byte-level work on TDengine raw blocks (layout in `tdengine-notes.md` §2): validate,
//! read the timestamp column, keep a subset of columns, cut a range of rows. The output is
//! again a standard raw block, so `write_raw_block` takes it; values are copied as bytes,
//! never decoded and re-encoded.

use crate::Error;
use taosbackup_core::Value;

const HEADER_LEN: usize = 28;
const TY_TIMESTAMP: u8 = 9;

/// TDengine's DECIMAL type code (16-byte little-endian two's complement, precision 19–38).
pub(crate) const TY_DECIMAL: u8 = 17;
/// TDengine's BLOB type code (var width with a u32 length prefix).
pub(crate) const TY_BLOB: u8 = 18;
/// TDengine's DECIMAL64 type code (8-byte integer, precision 1–18).
pub(crate) const TY_DECIMAL64: u8 = 21;

/// Width of a fixed-width type, `None` for variable-width types (VARCHAR 8, NCHAR 10, JSON 15,
/// VARBINARY 16, BLOB 18, GEOMETRY 20). DECIMAL (17) is 16 bytes, DECIMAL64 (21) 8
/// (`DECIMAL128_BYTES`/`DECIMAL64_BYTES`, `TYPE_BYTES` in TDengine source/common/src/ttypes.c).
fn fixed_width(ty: u8) -> Option<Option<usize>> {
    Some(match ty {
        1 | 2 | 11 => Some(1),
        3 | 12 => Some(2),
        4 | 6 | 13 => Some(4),
        5 | 7 | 9 | 14 | TY_DECIMAL64 => Some(8),
        TY_DECIMAL => Some(16),
        8 | 10 | 15 | 16 | TY_BLOB | 20 => None,
        _ => return None,
    })
}

/// Bytes of a var-width value's length prefix: a u32 for BLOB (`BLOBSTR_HEADER_SIZE`; taosAdapter
/// `driver/common/parser/block.go` `rawConvertBlob`), a u16 for the others.
fn len_prefix(ty: u8) -> usize {
    if ty == TY_BLOB { 4 } else { 2 }
}

/// Precision and scale from a DECIMAL column's schema entry, which TDengine packs as
/// `width << 24 | precision << 8 | scale` (`fillBytesForDecimalType`, called by `blockEncode`
/// in source/common/src/tdatablock.c; taosAdapter `RawBlockGetDecimalInfo` reads byte 0 as the
/// scale and byte 1 as the precision).
pub(crate) fn decimal_prec_scale(bytes: u32) -> (u8, u8) {
    (((bytes >> 8) & 0xFF) as u8, (bytes & 0xFF) as u8)
}

/// The exact text of an unscaled decimal with `scale` digits after the point (`-12.30`).
pub(crate) fn decimal_text(v: i128, scale: u8) -> String {
    let digits = v.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if v < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{sign}{i}.{f}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Col {
    ty: u8,
    bytes: u32,
    /// Fixed width, or `None` for var-width.
    width: Option<usize>,
    /// Start of the bitmap (fixed) or offsets (var).
    start: usize,
    /// The data length entry.
    len: usize,
}

impl Col {
    fn prefix_len(&self, rows: usize) -> usize {
        match self.width {
            Some(_) => rows.div_ceil(8),
            None => rows * 4,
        }
    }
}

/// A parsed raw block: a view over the bytes.
#[derive(Debug)]
pub(crate) struct RawView<'a> {
    bytes: &'a [u8],
    header: [u8; HEADER_LEN],
    rows: usize,
    cols: Vec<Col>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidBlock {
        table: None,
        reason: reason.into(),
    }
}

/// The length of the var-width entry at `at` in a column's data `data` (its `p`-byte length
/// prefix, u16 or BLOB's u32, and the value), or `None` when it does not lie inside `data`.
///
/// Every var-width cell of every block a backup fetches passes through this, several times
/// (the parse's check, a cut's copy, a several-table answer's split), so it is inlined and
/// returns no error of its own: an `Err` of this crate's size is returned through memory,
/// and the call was 5–6% of the tool's samples in a 10 M-row full backup.
#[inline(always)]
fn var_entry_len(data: &[u8], at: usize, p: usize) -> Option<usize> {
    let n = if p == 4 {
        let h = data.get(at..at.checked_add(4)?)?;
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize
    } else {
        let h = data.get(at..at.checked_add(2)?)?;
        u16::from_le_bytes([h[0], h[1]]) as usize
    };
    // Saturating: a hostile u32 length must not wrap past the end on a 32-bit target.
    (at.saturating_add(p).saturating_add(n) <= data.len()).then_some(p + n)
}

/// The error for a var-width entry [`var_entry_len`] found outside its column's data.
#[cold]
fn var_out_of_range() -> Error {
    bad("var value out of range")
}

/// `a == b`, without a call into libc for short slices: [`RawView::equal_runs`] compares a
/// run's table name with every row's, and a `memcmp` call per row was 1.8% of a 10 M-row
/// full backup's samples (docs/performance-history.md, "A row's table name compared inline").
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    // A word from the head and one from the tail (overlapping when the length is less than
    // two words) cover every byte.
    let word4 = |s: &[u8], i: usize| u32::from_ne_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let word8 = |s: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    match n {
        0..=3 => a == b,
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

fn u32_at(b: &[u8], pos: usize) -> Result<u32, Error> {
    let s = b.get(pos..pos + 4).ok_or_else(|| bad("truncated block"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> RawView<'a> {
    /// Parses and bounds-checks `bytes`.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<RawView<'a>, Error> {
        let view = Self::parse_layout(bytes)?;
        view.check_var_columns()?;
        Ok(view)
    }

    /// Parses a block this crate built from a parsed view ([`RawView::rewrite`],
    /// [`RawView::select_rows`], [`RawView::slice_rows`]): its layout is checked as
    /// [`RawView::parse`] checks it, but not each var-width offset again, which the view it
    /// was built from checked and `build` rewrote consistently. A several-table answer's
    /// runs are parsed once more to be cut at bucket boundaries, and that second pass over
    /// every offset was ~1.9% of the tool's CPU in a 10 M-row full backup.
    pub(crate) fn parse_built(bytes: &'a [u8]) -> Result<RawView<'a>, Error> {
        let view = Self::parse_layout(bytes)?;
        debug_assert!(
            view.check_var_columns().is_ok(),
            "a block built from a checked view has a var offset out of range"
        );
        Ok(view)
    }

    /// Every var-width column's offsets lie inside its data ([`RawView::check_var_column`]):
    /// validated once, so later reads cannot go out of bounds.
    fn check_var_columns(&self) -> Result<(), Error> {
        for i in 0..self.cols.len() {
            if self.cols[i].width.is_none() {
                self.check_var_column(i)?;
            }
        }
        Ok(())
    }

    /// The header, schema and column lengths of `bytes`, checked; var-width offsets not.
    fn parse_layout(bytes: &'a [u8]) -> Result<RawView<'a>, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(bad("shorter than the header"));
        }
        let total = u32_at(bytes, 4)? as usize;
        if total != bytes.len() {
            return Err(bad(format!(
                "length field {total} but {} bytes",
                bytes.len()
            )));
        }
        let rows = u32_at(bytes, 8)? as usize;
        let ncols = u32_at(bytes, 12)? as usize;
        let schema = HEADER_LEN;
        let lengths = schema
            .checked_add(
                ncols
                    .checked_mul(5)
                    .ok_or_else(|| bad("too many columns"))?,
            )
            .ok_or_else(|| bad("too many columns"))?;
        let mut pos = lengths + ncols * 4;
        if pos > bytes.len() {
            return Err(bad("truncated schema"));
        }
        let mut cols = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let ty = bytes[schema + i * 5];
            let cb = u32_at(bytes, schema + i * 5 + 1)?;
            let width = fixed_width(ty).ok_or_else(|| bad(format!("unsupported type {ty}")))?;
            let len = u32_at(bytes, lengths + i * 4)? as usize;
            let col = Col {
                ty,
                bytes: cb,
                width,
                start: pos,
                len,
            };
            if let Some(w) = width {
                if len != rows * w {
                    return Err(bad(format!("column {i}: length {len} for {rows} rows")));
                }
            }
            pos = pos
                .checked_add(col.prefix_len(rows) + len)
                .filter(|p| *p <= bytes.len())
                .ok_or_else(|| bad(format!("column {i} runs past the end")))?;
            cols.push(col);
        }
        // Newer servers append one byte counted in the length.
        if bytes.len() - pos > 1 {
            return Err(bad("trailing bytes after the last column"));
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&bytes[..HEADER_LEN]);
        Ok(RawView {
            bytes,
            header,
            rows,
            cols,
        })
    }

    /// Var-width column `c`'s offsets (one `i32` per row, negative for NULL), its data, and
    /// the size of its entries' length prefix.
    fn var_parts(&self, c: usize) -> Result<(&'a [u8], &'a [u8], usize), Error> {
        let col = &self.cols[c];
        let data_at = col.start + self.rows * 4;
        match (
            self.bytes.get(col.start..data_at),
            self.bytes.get(data_at..data_at + col.len),
        ) {
            (Some(offsets), Some(data)) => Ok((offsets, data, len_prefix(col.ty))),
            _ => Err(bad("truncated block")),
        }
    }

    /// Checks every entry of var-width column `c` in one pass over its offsets: a non-NULL
    /// entry's length prefix and value lie inside the column's data ([`var_entry_len`], as
    /// [`RawView::var_range`] checks one row). Every block a backup fetches and every block
    /// a restore writes is parsed; row by row this check was 1–2.5% of the tool's CPU.
    fn check_var_column(&self, c: usize) -> Result<(), Error> {
        let (offsets, data, p) = self.var_parts(c)?;
        // One loop per prefix size, so that each has its width as a constant.
        let fits = |p: usize| {
            move |o: &[u8]| {
                let off = i32::from_le_bytes([o[0], o[1], o[2], o[3]]);
                off < 0 || var_entry_len(data, off as usize, p).is_some()
            }
        };
        let ok = if p == 4 {
            offsets.chunks_exact(4).all(fits(4))
        } else {
            offsets.chunks_exact(4).all(fits(2))
        };
        if ok { Ok(()) } else { Err(var_out_of_range()) }
    }

    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub(crate) fn ncols(&self) -> usize {
        self.cols.len()
    }

    /// A column's type code and its width entry (`bytes`) in the block's schema.
    pub(crate) fn col_type(&self, c: usize) -> Option<(u8, u32)> {
        self.cols.get(c).map(|c| (c.ty, c.bytes))
    }

    fn is_null_fixed(&self, c: &Col, r: usize) -> bool {
        self.bytes[c.start + r / 8] & (0x80 >> (r % 8)) != 0
    }

    /// The `len + bytes` entry of a var-width value (u16 length, u32 for BLOB), `None` when
    /// NULL.
    fn var_value(&self, c: usize, r: usize) -> Result<Option<&'a [u8]>, Error> {
        Ok(self.var_range(c, r)?.map(|at| &self.bytes[at]))
    }

    /// The runs of consecutive rows whose var-width column `c` holds the same value: each
    /// run's end row (exclusive) and the value without its length prefix, in row order.
    /// A NULL cell is an error. One pass over the column's offsets and values (the rows of a
    /// several-table export are split by their `TBNAME` this way, every row checked).
    pub(crate) fn equal_runs(&self, c: usize) -> Result<Vec<(usize, &'a [u8])>, Error> {
        let col = self
            .cols
            .get(c)
            .ok_or_else(|| bad("column index out of bounds"))?;
        if col.width.is_some() {
            return Err(bad("not a var-width column"));
        }
        let offsets = self
            .bytes
            .get(col.start..col.start + self.rows * 4)
            .ok_or_else(|| bad("var offsets out of range"))?;
        let data_at = col.start + self.rows * 4;
        let data = self
            .bytes
            .get(data_at..data_at + col.len)
            .ok_or_else(|| bad("var offset out of range"))?;
        let p = len_prefix(col.ty);
        let value = |off: &[u8]| -> Result<&'a [u8], Error> {
            let off = i32::from_le_bytes([off[0], off[1], off[2], off[3]]);
            let at = usize::try_from(off).map_err(|_| bad("a NULL where a value is needed"))?;
            let len = var_entry_len(data, at, p).ok_or_else(var_out_of_range)?;
            Ok(&data[at + p..at + len])
        };
        let mut runs: Vec<(usize, &'a [u8])> = Vec::new();
        let mut last_off: &[u8] = &[];
        for (r, off) in offsets.chunks_exact(4).enumerate() {
            if let Some((end, v)) = runs.last_mut() {
                // The same offset is the same value (a server may share one).
                if off == last_off || same_bytes(value(off)?, v) {
                    *end = r + 1;
                    last_off = off;
                    continue;
                }
            }
            runs.push((r + 1, value(off)?));
            last_off = off;
        }
        Ok(runs)
    }

    /// Where [`RawView::var_value`]'s entry lies in the block's bytes.
    fn var_range(&self, c: usize, r: usize) -> Result<Option<std::ops::Range<usize>>, Error> {
        let col = &self.cols[c];
        let off = u32_at(self.bytes, col.start + r * 4)? as i32;
        if off < 0 {
            return Ok(None);
        }
        let data_at = col.start + self.rows * 4;
        let data = self
            .bytes
            .get(data_at..data_at + col.len)
            .ok_or_else(|| bad("var offset out of range"))?;
        let at = off as usize;
        let len = var_entry_len(data, at, len_prefix(col.ty)).ok_or_else(var_out_of_range)?;
        Ok(Some(data_at + at..data_at + at + len))
    }

    /// The first column's timestamps (it must be a non-null TIMESTAMP column).
    pub(crate) fn timestamps(&self) -> Result<Vec<i64>, Error> {
        let c = self
            .cols
            .first()
            .filter(|c| c.ty == TY_TIMESTAMP)
            .ok_or_else(|| bad("first column is not a TIMESTAMP"))?;
        let bitmap = &self.bytes[c.start..c.start + c.prefix_len(self.rows)];
        // The bitmap's whole bytes at once, then the bits of the last; every row of every
        // fetched block passes through here, and row by row (a bit test and a bounds-checked
        // slice each) it was ~3% of a 10 M-row full backup's samples.
        let whole = self.rows / 8;
        if bitmap[..whole].iter().any(|b| *b != 0)
            || (whole * 8..self.rows).any(|r| self.is_null_fixed(c, r))
        {
            return Err(bad("NULL primary timestamp"));
        }
        let at = c.start + bitmap.len();
        Ok(self.bytes[at..at + self.rows * 8]
            .chunks_exact(8)
            .map(|s| i64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
            .collect())
    }

    /// A new block with rows `[from, to)` of the columns `keep` (indices, in output order).
    pub(crate) fn rewrite(&self, keep: &[usize], from: usize, to: usize) -> Result<Vec<u8>, Error> {
        if from > to || to > self.rows {
            return Err(bad("row range out of bounds"));
        }
        self.build(keep, Rows::Range(from, to))
    }

    /// Column `c`, after checking that cell `(c, r)` exists.
    fn cell_col(&self, c: usize, r: usize) -> Result<&Col, Error> {
        if r >= self.rows {
            return Err(bad("row index out of bounds"));
        }
        self.cols
            .get(c)
            .ok_or_else(|| bad("column index out of bounds"))
    }

    /// One cell as a typed value, decoded from the block's bytes without the connector
    /// (which cannot parse DECIMAL or BLOB blocks: taos-query 0.12.4). NCHAR is UCS-4LE;
    /// DECIMAL's scale comes from the column's schema entry.
    pub(crate) fn value(&self, c: usize, r: usize) -> Result<Value, Error> {
        let col = self.cell_col(c, r)?;
        let Some(w) = col.width else {
            let Some(entry) = self.var_value(c, r)? else {
                return Ok(Value::Null);
            };
            let b = entry[len_prefix(col.ty)..].to_vec();
            return Ok(match col.ty {
                8 => Value::VarChar(b),
                16 => Value::VarBinary(b),
                20 => Value::Geometry(b),
                TY_BLOB => Value::Blob(b),
                15 => {
                    Value::Json(String::from_utf8(b).map_err(|_| bad("JSON value is not UTF-8"))?)
                }
                10 => {
                    if b.len() % 4 != 0 {
                        return Err(bad("NCHAR value is not UCS-4"));
                    }
                    let text: Option<String> = b
                        .chunks_exact(4)
                        .map(|q| char::from_u32(u32::from_le_bytes([q[0], q[1], q[2], q[3]])))
                        .collect();
                    Value::NChar(text.ok_or_else(|| bad("invalid character in NCHAR"))?)
                }
                t => return Err(bad(format!("unsupported type {t}"))),
            });
        };
        if self.is_null_fixed(col, r) {
            return Ok(Value::Null);
        }
        let at = col.start + col.prefix_len(self.rows) + r * w;
        let d = &self.bytes[at..at + w];
        let mut a = [0u8; 16];
        a[..w].copy_from_slice(d);
        let (a1, a2, a4, a8) = (
            [a[0]],
            [a[0], a[1]],
            [a[0], a[1], a[2], a[3]],
            [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]],
        );
        Ok(match col.ty {
            1 => Value::Bool(a[0] != 0),
            2 => Value::TinyInt(i8::from_le_bytes(a1)),
            3 => Value::SmallInt(i16::from_le_bytes(a2)),
            4 => Value::Int(i32::from_le_bytes(a4)),
            5 => Value::BigInt(i64::from_le_bytes(a8)),
            6 => Value::Float(f32::from_le_bytes(a4)),
            7 => Value::Double(f64::from_le_bytes(a8)),
            9 => Value::Timestamp(i64::from_le_bytes(a8)),
            11 => Value::UTinyInt(a[0]),
            12 => Value::USmallInt(u16::from_le_bytes(a2)),
            13 => Value::UInt(u32::from_le_bytes(a4)),
            14 => Value::UBigInt(u64::from_le_bytes(a8)),
            TY_DECIMAL64 => Value::Decimal(decimal_text(
                i128::from(i64::from_le_bytes(a8)),
                decimal_prec_scale(col.bytes).1,
            )),
            TY_DECIMAL => Value::Decimal(decimal_text(
                i128::from_le_bytes(a),
                decimal_prec_scale(col.bytes).1,
            )),
            t => return Err(bad(format!("unsupported type {t}"))),
        })
    }

    /// The bytes of one cell, to compare cells for equality: a NULL marker, or the value's
    /// bytes (fixed width) or `len + bytes` (var width).
    pub(crate) fn cell_bytes(&self, c: usize, r: usize) -> Result<Vec<u8>, Error> {
        let col = self.cell_col(c, r)?;
        match col.width {
            Some(w) => {
                if self.is_null_fixed(col, r) {
                    return Ok(vec![0]);
                }
                let data = col.start + col.prefix_len(self.rows) + r * w;
                let mut out = vec![1];
                out.extend_from_slice(&self.bytes[data..data + w]);
                Ok(out)
            }
            None => Ok(match self.var_value(c, r)? {
                None => vec![0],
                Some(v) => std::iter::once(1).chain(v.iter().copied()).collect(),
            }),
        }
    }

    /// A new block with the rows `rows` (ascending indices) of every column.
    pub(crate) fn select_rows(&self, rows: &[usize]) -> Result<Vec<u8>, Error> {
        if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|&r| r >= self.rows) {
            return Err(bad("row selection out of bounds"));
        }
        let all: Vec<usize> = (0..self.cols.len()).collect();
        self.build(&all, Rows::Pick(rows))
    }

    /// All columns, rows `[from, to)`.
    pub(crate) fn slice_rows(&self, from: usize, to: usize) -> Result<Vec<u8>, Error> {
        let all: Vec<usize> = (0..self.cols.len()).collect();
        self.rewrite(&all, from, to)
    }

    /// A new block of the columns `keep` (in output order) and the rows `rows` (checked by
    /// the caller), written in place: header, schema, then each column, its length entry
    /// filled in once known. A row range copies each fixed-width column's values in one
    /// slice, and its bitmap as bytes when it has no NULL; a var-width column whose values
    /// lie back to back in row order (how servers lay them out) is copied as one slice.
    fn build(&self, keep: &[usize], rows: Rows<'_>) -> Result<Vec<u8>, Error> {
        if keep.iter().any(|&k| k >= self.cols.len()) {
            return Err(bad("column index out of bounds"));
        }
        let n = rows.len();
        let lengths_at = HEADER_LEN + keep.len() * 5;
        let body_at = lengths_at + keep.len() * 4;
        let estimate: usize = keep
            .iter()
            .map(|&k| {
                let c = &self.cols[k];
                let part = match c.width {
                    Some(w) => n * w,
                    // The source's share of the column's values, with room for rows whose
                    // values are longer than the average (growing the block copies it).
                    None => (c.len / self.rows.max(1) * n * 5 / 4 + 64).min(c.len),
                };
                c.prefix_len(n) + part
            })
            .sum();
        let mut out = Vec::with_capacity(body_at + estimate);
        out.extend_from_slice(&self.header[..4]);
        out.extend_from_slice(&[0; 4]); // total length, filled in at the end
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&(keep.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.header[16..HEADER_LEN]);
        for &k in keep {
            let c = &self.cols[k];
            out.push(c.ty);
            out.extend_from_slice(&c.bytes.to_le_bytes());
        }
        out.resize(body_at, 0); // length entries, filled in per column
        for (i, &k) in keep.iter().enumerate() {
            let c = &self.cols[k];
            let len = match c.width {
                Some(w) => {
                    self.copy_fixed(c, w, rows, &mut out);
                    n * w
                }
                None => self.copy_var(k, rows, &mut out)?,
            };
            let len = u32::try_from(len).map_err(|_| bad("column larger than 4 GiB"))?;
            out[lengths_at + i * 4..lengths_at + i * 4 + 4].copy_from_slice(&len.to_le_bytes());
        }
        let total = u32::try_from(out.len()).map_err(|_| bad("block larger than 4 GiB"))?;
        out[4..8].copy_from_slice(&total.to_le_bytes());
        Ok(out)
    }

    /// Appends a fixed-width column's bitmap and values for `rows`.
    fn copy_fixed(&self, c: &Col, w: usize, rows: Rows<'_>, out: &mut Vec<u8>) {
        let n = rows.len();
        let bitmap_at = out.len();
        out.resize(bitmap_at + n.div_ceil(8), 0);
        let src = &self.bytes[c.start..c.start + self.rows.div_ceil(8)];
        let no_nulls = match rows {
            // The bytes holding the range's bits: all zero means no NULL among them.
            Rows::Range(from, to) => {
                from == to || src[from / 8..to.div_ceil(8)].iter().all(|b| *b == 0)
            }
            Rows::Pick(_) => false,
        };
        if !no_nulls {
            for (i, r) in rows.iter().enumerate() {
                if self.is_null_fixed(c, r) {
                    out[bitmap_at + i / 8] |= 0x80 >> (i % 8);
                }
            }
        }
        let data = c.start + c.prefix_len(self.rows);
        match rows {
            Rows::Range(from, to) => {
                out.extend_from_slice(&self.bytes[data + from * w..data + to * w]);
            }
            Rows::Pick(p) => {
                for &r in p {
                    out.extend_from_slice(&self.bytes[data + r * w..data + (r + 1) * w]);
                }
            }
        }
    }

    /// Appends a var-width column's offsets and values for `rows`; returns the values'
    /// length. The values are written back to back in row order, each offset the running
    /// length: where the source holds them that way already, one copy moves them all.
    fn copy_var(&self, k: usize, rows: Rows<'_>, out: &mut Vec<u8>) -> Result<usize, Error> {
        // Monomorphised per kind of row set: the chained iterator of `Rows::iter` costs a
        // branch per row in this, the per-row part of cutting a block.
        match rows {
            Rows::Range(from, to) => self.copy_var_rows(k, from..to, out),
            Rows::Pick(p) => self.copy_var_rows(k, p.iter().copied(), out),
        }
    }

    /// [`RawView::copy_var`] over `rows`: the column's offsets and data are looked up once,
    /// not per row as [`RawView::var_range`] does.
    fn copy_var_rows(
        &self,
        k: usize,
        rows: impl ExactSizeIterator<Item = usize> + Clone,
        out: &mut Vec<u8>,
    ) -> Result<usize, Error> {
        let (offsets, data, p) = self.var_parts(k)?;
        // The entry of row `r` within `data`, `None` when NULL.
        let entry = |r: usize| -> Result<Option<std::ops::Range<usize>>, Error> {
            let o = offsets
                .get(r * 4..r * 4 + 4)
                .ok_or_else(|| bad("row out of range"))?;
            let off = i32::from_le_bytes([o[0], o[1], o[2], o[3]]);
            if off < 0 {
                return Ok(None);
            }
            let at = off as usize;
            let len = var_entry_len(data, at, p).ok_or_else(var_out_of_range)?;
            Ok(Some(at..at + len))
        };
        let offsets_at = out.len();
        out.resize(offsets_at + rows.len() * 4, 0);
        // The span the values occupy, while they are contiguous in row order.
        let mut span: Option<(usize, usize)> = None;
        let mut contiguous = true;
        let mut payload = 0usize;
        for (i, r) in rows.clone().enumerate() {
            let at = offsets_at + i * 4;
            match entry(r)? {
                None => out[at..at + 4].copy_from_slice(&(-1i32).to_le_bytes()),
                Some(v) => {
                    let off =
                        i32::try_from(payload).map_err(|_| bad("column larger than 2 GiB"))?;
                    out[at..at + 4].copy_from_slice(&off.to_le_bytes());
                    span = match span {
                        None => Some((v.start, v.end)),
                        Some((s, e)) => {
                            contiguous &= e == v.start;
                            Some((s, v.end))
                        }
                    };
                    payload += v.len();
                }
            }
        }
        match span {
            None => {}
            Some((s, e)) if contiguous => out.extend_from_slice(&data[s..e]),
            Some(_) => {
                for r in rows {
                    if let Some(v) = entry(r)? {
                        out.extend_from_slice(&data[v]);
                    }
                }
            }
        }
        Ok(payload)
    }
}

/// Which rows [`RawView::build`] copies.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// Rows `[from, to)`.
    Range(usize, usize),
    /// These rows, ascending.
    Pick(&'a [usize]),
}

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::Range(from, to) => to - from,
            Rows::Pick(p) => p.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let (range, pick) = match *self {
            Rows::Range(from, to) => (from..to, &[][..]),
            Rows::Pick(p) => (0..0, p),
        };
        range.chain(pick.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ts TIMESTAMP, v INT (row 1 NULL), s VARCHAR (row 0 NULL): 3 rows.
    fn sample() -> Vec<u8> {
        let rows = 3usize;
        let mut body = Vec::new();
        // ts
        body.push(0u8);
        for t in [10i64, 20, 30] {
            body.extend_from_slice(&t.to_le_bytes());
        }
        // v
        body.push(0x40);
        for v in [1i32, 0, 3] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        // s
        for o in [-1i32, 0, 4] {
            body.extend_from_slice(&o.to_le_bytes());
        }
        let payload = [2u8, 0, b'a', b'b', 1, 0, b'c'];
        body.extend_from_slice(&payload);
        let mut out = Vec::new();
        let schema: Vec<u8> = [(9u8, 8u32), (4, 4), (8, 10)]
            .iter()
            .flat_map(|(t, b)| std::iter::once(*t).chain(b.to_le_bytes()))
            .collect();
        let lengths: Vec<u8> = [24u32, 12, payload.len() as u32]
            .iter()
            .flat_map(|l| l.to_le_bytes())
            .collect();
        let total = 28 + schema.len() + lengths.len() + body.len();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(rows as u32).to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&schema);
        out.extend_from_slice(&lengths);
        out.extend_from_slice(&body);
        out
    }

    /// ts TIMESTAMP, name VARCHAR: one row per `(offset, …)` entry, with the values'
    /// bytes `payload` (each entry u16 length + bytes); an offset of -1 is NULL.
    fn named(offsets: &[i32], payload: &[u8]) -> Vec<u8> {
        let rows = offsets.len();
        let mut body = vec![0u8; rows.div_ceil(8)];
        for t in 0..rows as i64 {
            body.extend_from_slice(&t.to_le_bytes());
        }
        for o in offsets {
            body.extend_from_slice(&o.to_le_bytes());
        }
        body.extend_from_slice(payload);
        let mut out = Vec::new();
        let schema: Vec<u8> = [(9u8, 8u32), (8, 10)]
            .iter()
            .flat_map(|(t, b)| std::iter::once(*t).chain(b.to_le_bytes()))
            .collect();
        let lengths: Vec<u8> = [rows as u32 * 8, payload.len() as u32]
            .iter()
            .flat_map(|l| l.to_le_bytes())
            .collect();
        let total = 28 + schema.len() + lengths.len() + body.len();
        for v in [1u32, total as u32, rows as u32, 2, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&schema);
        out.extend_from_slice(&lengths);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn equal_runs_follow_the_values_not_the_offsets() {
        // "a" at 0, "b" at 3, "a" again at 6: rows a a(shared) b a a.
        let payload = [1u8, 0, b'a', 1, 0, b'b', 1, 0, b'a'];
        let block = named(&[0, 0, 3, 6, 0], &payload);
        let v = RawView::parse(&block).unwrap();
        let runs = v.equal_runs(1).unwrap();
        assert_eq!(runs, vec![(2, &b"a"[..]), (3, &b"b"[..]), (5, &b"a"[..])]);
        assert!(v.equal_runs(0).is_err(), "a fixed-width column");
        let with_null = named(&[0, -1], &payload);
        let v = RawView::parse(&with_null).unwrap();
        assert!(v.equal_runs(1).is_err());
        let empty = named(&[], &[]);
        assert!(
            RawView::parse(&empty)
                .unwrap()
                .equal_runs(1)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn same_bytes_is_slice_equality_at_every_length() {
        // Every length up to past the widest overlapping load, every single-byte
        // difference, and slices that differ only in length.
        for n in 0..=40usize {
            let a: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "length {n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!same_bytes(&a, &b), "length {n}, byte {i}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer), "length {n} against {}", n + 1);
        }
    }

    /// The per-row copy `build` made before its fast paths: the reference its output must
    /// equal byte for byte.
    fn reference_build(v: &RawView<'_>, picked: &[usize]) -> Vec<u8> {
        let n = picked.len();
        let (mut schema, mut lengths, mut body) = (Vec::new(), Vec::new(), Vec::new());
        for (k, c) in v.cols.iter().enumerate() {
            schema.push(c.ty);
            schema.extend_from_slice(&c.bytes.to_le_bytes());
            match c.width {
                Some(w) => {
                    let mut bitmap = vec![0u8; n.div_ceil(8)];
                    for (i, &r) in picked.iter().enumerate() {
                        if v.is_null_fixed(c, r) {
                            bitmap[i / 8] |= 0x80 >> (i % 8);
                        }
                    }
                    body.extend_from_slice(&bitmap);
                    let data = c.start + c.prefix_len(v.rows);
                    for &r in picked {
                        body.extend_from_slice(&v.bytes[data + r * w..data + (r + 1) * w]);
                    }
                    lengths.extend_from_slice(&((n * w) as u32).to_le_bytes());
                }
                None => {
                    let (mut offsets, mut payload) = (Vec::new(), Vec::new());
                    for &r in picked {
                        match v.var_value(k, r).unwrap() {
                            None => offsets.extend_from_slice(&(-1i32).to_le_bytes()),
                            Some(x) => {
                                offsets.extend_from_slice(&(payload.len() as i32).to_le_bytes());
                                payload.extend_from_slice(x);
                            }
                        }
                    }
                    body.extend_from_slice(&offsets);
                    body.extend_from_slice(&payload);
                    lengths.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                }
            }
        }
        let total = HEADER_LEN + schema.len() + lengths.len() + body.len();
        let mut out = v.header[..4].to_vec();
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&(v.cols.len() as u32).to_le_bytes());
        out.extend_from_slice(&v.header[16..]);
        out.extend_from_slice(&schema);
        out.extend_from_slice(&lengths);
        out.extend_from_slice(&body);
        out
    }

    /// A block of ts, an INT, a VARCHAR and a BLOB column: `nulls` marks NULL cells of the
    /// last three; var values are laid out in row order, or in `order` (a permutation of the
    /// rows) with `gap` unused bytes after each, as a block may legally hold them.
    fn varied_block(
        rows: usize,
        nulls: &[(bool, bool, bool)],
        order: Option<&[usize]>,
        gap: usize,
    ) -> Vec<u8> {
        let mut cols: Vec<(u8, u32, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut bitmap = vec![0u8; rows.div_ceil(8)];
        let ts: Vec<u8> = (0..rows)
            .flat_map(|r| (r as i64 * 10).to_le_bytes())
            .collect();
        cols.push((9, 8, bitmap.clone(), ts));
        let mut ints = Vec::new();
        for (r, n) in nulls.iter().enumerate().take(rows) {
            if n.0 {
                bitmap[r / 8] |= 0x80 >> (r % 8);
            }
            ints.extend_from_slice(&(r as i32 * 7).to_le_bytes());
        }
        cols.push((4, 4, bitmap, ints));
        for (ty, prefix) in [(8u8, 2usize), (TY_BLOB, 4)] {
            let mut offsets = vec![-1i32; rows];
            let mut payload = Vec::new();
            let in_order: Vec<usize> = (0..rows).collect();
            for &r in order.unwrap_or(&in_order) {
                let null = if ty == 8 { nulls[r].1 } else { nulls[r].2 };
                if null {
                    continue;
                }
                offsets[r] = payload.len() as i32;
                let value = vec![b'a' + (r % 26) as u8; r % 5];
                payload.extend_from_slice(&(value.len() as u32).to_le_bytes()[..prefix]);
                payload.extend_from_slice(&value);
                payload.extend(std::iter::repeat_n(0xEE, gap));
            }
            let offsets: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
            cols.push((ty, 64, offsets, payload));
        }
        let mut out = Vec::new();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(rows as u32).to_le_bytes());
        out.extend_from_slice(&(cols.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        for (ty, bytes, _, _) in &cols {
            out.push(*ty);
            out.extend_from_slice(&bytes.to_le_bytes());
        }
        for (_, _, _, data) in &cols {
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        for (_, _, prefix, data) in &cols {
            out.extend_from_slice(prefix);
            out.extend_from_slice(data);
        }
        let total = out.len() as u32;
        out[4..8].copy_from_slice(&total.to_le_bytes());
        out
    }

    proptest::proptest! {
        /// Slices and row selections equal the per-row reference byte for byte, whatever the
        /// NULLs and however the var values lie (in order, shuffled, with gaps).
        #[test]
        fn cuts_equal_the_per_row_reference(
            nulls in proptest::collection::vec(
                proptest::prelude::any::<(bool, bool, bool)>(), 0..40),
            shuffle in proptest::prelude::any::<u64>(),
            gap in 0usize..3,
            a in 0usize..41,
            b in 0usize..41,
            pick in proptest::collection::vec(proptest::prelude::any::<bool>(), 40),
        ) {
            let rows = nulls.len();
            let mut order: Vec<usize> = (0..rows).collect();
            if shuffle % 2 == 1 {
                // A deterministic permutation from the seed.
                let mut x = shuffle;
                for i in (1..rows).rev() {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    order.swap(i, (x >> 33) as usize % (i + 1));
                }
            }
            let bytes = varied_block(rows, &nulls, Some(&order), gap);
            let v = RawView::parse(&bytes).unwrap();
            let (from, to) = (a.min(b).min(rows), a.max(b).min(rows));
            let range: Vec<usize> = (from..to).collect();
            proptest::prop_assert_eq!(v.slice_rows(from, to).unwrap(), reference_build(&v, &range));
            let picked: Vec<usize> = (0..rows).filter(|&r| pick[r]).collect();
            proptest::prop_assert_eq!(v.select_rows(&picked).unwrap(), reference_build(&v, &picked));
            let out = v.slice_rows(from, to).unwrap();
            proptest::prop_assert_eq!(RawView::parse(&out).unwrap().rows(), to - from);
            // What `parse_built` leaves unchecked holds for every block `build` makes: the
            // full check accepts it, and both parses see the same layout.
            let selected = v.select_rows(&picked).unwrap();
            let projected = v.rewrite(&[2, 0], from, to).unwrap();
            for built in [&out, &selected, &projected] {
                let checked = RawView::parse(built).unwrap();
                let trusted = RawView::parse_built(built).unwrap();
                proptest::prop_assert_eq!(checked.rows, trusted.rows);
                proptest::prop_assert_eq!(&checked.cols, &trusted.cols);
            }
        }
    }

    proptest::proptest! {
        /// The one-pass check of a var-width column accepts exactly the blocks whose every
        /// row passes the per-row check, whatever bytes of the offsets and values are broken.
        #[test]
        fn var_column_check_equals_the_per_row_check(
            nulls in proptest::collection::vec(
                proptest::prelude::any::<(bool, bool, bool)>(), 1..20),
            gap in 0usize..3,
            flips in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(),
                 proptest::prelude::any::<u8>()), 0..4),
        ) {
            let rows = nulls.len();
            let mut bytes = varied_block(rows, &nulls, None, gap);
            let (header, cols) = {
                let good = RawView::parse(&bytes).unwrap();
                (good.header, good.cols.clone())
            };
            // Break bytes only inside the var columns (offsets, prefixes, values), so that
            // the header and the column layout stay valid.
            let var_spans: Vec<std::ops::Range<usize>> = cols
                .iter()
                .filter(|c| c.width.is_none())
                .map(|c| c.start..c.start + rows * 4 + c.len)
                .collect();
            let span_bytes: Vec<usize> = var_spans.iter().flat_map(|r| r.clone()).collect();
            for (i, b) in &flips {
                if !span_bytes.is_empty() {
                    bytes[span_bytes[i.index(span_bytes.len())]] = *b;
                }
            }
            let v = RawView {
                bytes: &bytes,
                header,
                rows,
                cols,
            };
            for c in 0..v.cols.len() {
                if v.cols[c].width.is_none() {
                    let per_row = (0..rows).all(|r| v.var_range(c, r).is_ok());
                    proptest::prop_assert_eq!(v.check_var_column(c).is_ok(), per_row);
                }
            }
        }
    }

    #[test]
    fn in_order_var_values_are_copied_whole_and_gaps_are_dropped() {
        let nulls = vec![(false, false, false); 12];
        let plain = varied_block(12, &nulls, None, 0);
        let gappy = varied_block(12, &nulls, None, 2);
        let (p, g) = (
            RawView::parse(&plain).unwrap(),
            RawView::parse(&gappy).unwrap(),
        );
        // The same values: the cut of the gappy block equals the cut of the plain one.
        assert_eq!(p.slice_rows(3, 9).unwrap(), g.slice_rows(3, 9).unwrap());
        assert_eq!(
            p.slice_rows(0, 12).unwrap(),
            plain,
            "identity is byte-exact"
        );
    }

    #[test]
    fn identity_rewrite_is_byte_exact() {
        let b = sample();
        let v = RawView::parse(&b).unwrap();
        assert_eq!(v.timestamps().unwrap(), vec![10, 20, 30]);
        assert_eq!(v.slice_rows(0, 3).unwrap(), b);
    }

    #[test]
    fn slices_and_projections_keep_values_and_nulls() {
        let b = sample();
        let v = RawView::parse(&b).unwrap();
        let tail = v.slice_rows(1, 3).unwrap();
        let t = RawView::parse(&tail).unwrap();
        assert_eq!(t.rows(), 2);
        assert_eq!(t.timestamps().unwrap(), vec![20, 30]);
        assert!(t.is_null_fixed(&t.cols[1], 0));
        assert!(!t.is_null_fixed(&t.cols[1], 1));
        assert_eq!(t.var_value(2, 0).unwrap(), Some(&[2u8, 0, b'a', b'b'][..]));
        assert_eq!(t.var_value(2, 1).unwrap(), Some(&[1u8, 0, b'c'][..]));
        let p = v.rewrite(&[0, 2], 0, 3).unwrap();
        let p = RawView::parse(&p).unwrap();
        assert_eq!(p.ncols(), 2);
        assert_eq!(p.var_value(1, 0).unwrap(), None);
        let empty = v.slice_rows(2, 2).unwrap();
        assert_eq!(RawView::parse(&empty).unwrap().rows(), 0);
    }

    #[test]
    fn selected_rows_and_cells() {
        let b = sample();
        let v = RawView::parse(&b).unwrap();
        let all: Vec<usize> = (0..3).collect();
        assert_eq!(v.select_rows(&all).unwrap(), b, "identity is byte-exact");
        let s = v.select_rows(&[0, 2]).unwrap();
        let s = RawView::parse(&s).unwrap();
        assert_eq!(s.timestamps().unwrap(), vec![10, 30]);
        assert_eq!(s.cell_bytes(2, 0).unwrap(), vec![0], "NULL");
        assert_eq!(s.cell_bytes(2, 1).unwrap(), vec![1, 1, 0, b'c']);
        assert_eq!(s.cell_bytes(1, 1).unwrap(), vec![1, 3, 0, 0, 0]);
        assert!(v.select_rows(&[2, 1]).is_err());
        assert!(v.select_rows(&[3]).is_err());
    }

    proptest::proptest! {
        /// The timestamps are read whole-bitmap-byte at a time: a NULL in any row, in a whole
        /// byte of the bitmap or in its last part, is an error; otherwise every value comes
        /// back in row order.
        #[test]
        fn timestamps_refuse_a_null_in_any_row(
            ts in proptest::collection::vec(proptest::prelude::any::<i64>(), 1..40),
            null_at in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            use taosbackup_testkit::{ColumnData, Field, Ty, raw_block};
            let null = null_at.map(|i| i.index(ts.len()));
            let cells: Vec<Option<i64>> = ts
                .iter()
                .enumerate()
                .map(|(r, t)| (Some(r) != null).then_some(*t))
                .collect();
            let fields = [Field::new("ts", Ty::Timestamp, 8)];
            let col = ColumnData::Timestamp(cells.into());
            let bytes = raw_block::encode(&fields, &[&col], 0..ts.len());
            let got = RawView::parse(&bytes).unwrap().timestamps();
            match null {
                Some(_) => proptest::prop_assert!(got.is_err()),
                None => proptest::prop_assert_eq!(got.unwrap(), ts),
            }
        }
    }

    #[test]
    fn hostile_blocks_are_errors() {
        let b = sample();
        for cut in [0, 10, 30, b.len() - 2] {
            let mut short = b[..cut].to_vec();
            if short.len() >= 8 {
                let l = short.len() as u32;
                short[4..8].copy_from_slice(&l.to_le_bytes());
            }
            assert!(RawView::parse(&short).is_err(), "cut at {cut}");
        }
        let mut bad_off = b.clone();
        let n = bad_off.len();
        // The last offset (row 2 of s) points past the payload.
        let pos = n - 7 - 4;
        bad_off[pos..pos + 4].copy_from_slice(&100i32.to_le_bytes());
        assert!(RawView::parse(&bad_off).is_err());
    }

    #[test]
    fn decimal_and_blob_cells_decode_exactly() {
        use taosbackup_testkit::{ColumnData, Field, Ty, raw_block};
        let fields = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::decimal("a", 38, 38),
            Field::decimal("b", 18, 0),
            Field::decimal("c", 10, 2),
            Field::new("d", Ty::Blob, 4 << 20),
        ];
        let cols = [
            ColumnData::Timestamp(vec![Some(1), Some(2), Some(3)].into()),
            ColumnData::Decimal(vec![Some(-(10i128.pow(38) - 1)), None, Some(5)].into()),
            ColumnData::Decimal64(vec![Some(-999_999_999_999_999_999), Some(0), None].into()),
            ColumnData::Decimal64(vec![Some(-1), Some(1250), Some(100)].into()),
            ColumnData::Blob(vec![Some(vec![0, 255]), None, Some(vec![])].into()),
        ];
        let bytes = raw_block::encode(&fields, &cols.iter().collect::<Vec<_>>(), 0..3);
        let v = RawView::parse(&bytes).unwrap();
        let d = |t: &str| Value::Decimal(t.into());
        assert_eq!(v.value(1, 0).unwrap(), d(&format!("-0.{}", "9".repeat(38))));
        assert_eq!(v.value(1, 1).unwrap(), Value::Null);
        assert_eq!(v.value(1, 2).unwrap(), d(&format!("0.{}5", "0".repeat(37))));
        assert_eq!(v.value(2, 0).unwrap(), d("-999999999999999999"));
        assert_eq!(v.value(2, 1).unwrap(), d("0"));
        assert_eq!(v.value(3, 0).unwrap(), d("-0.01"));
        assert_eq!(v.value(3, 1).unwrap(), d("12.50"));
        assert_eq!(v.value(3, 2).unwrap(), d("1.00"));
        assert_eq!(v.value(4, 0).unwrap(), Value::Blob(vec![0, 255]));
        assert_eq!(v.value(4, 1).unwrap(), Value::Null);
        assert_eq!(v.value(4, 2).unwrap(), Value::Blob(vec![]));
        assert_eq!(v.col_type(3), Some((TY_DECIMAL64, 8 << 24 | 10 << 8 | 2)));
        // Cutting rows keeps the u32 BLOB prefix and the decimal widths.
        let cut = v.slice_rows(1, 3).unwrap();
        let c = RawView::parse(&cut).unwrap();
        assert_eq!(c.value(4, 1).unwrap(), Value::Blob(vec![]));
        assert_eq!(c.value(1, 1).unwrap(), v.value(1, 2).unwrap());
    }
}
