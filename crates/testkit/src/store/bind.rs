//! Binding a raw block to a table's columns, as TDengine's `rawBlockBindData` does
//! (`source/libs/parser/src/parInsertUtil.c`, read at TDengine commit 005cd15; the same logic
//! is in the 3.2 and 3.3 branches). It is deliberately as unsafe as TDengine:
//!
//! - with field names (`write_raw_block_with_fields`): more names than block columns, or than
//!   target columns, is 0x0118; each name is looked up among the target's columns; on a match
//!   the *next unread* block column (its schema entry and its data) is read with the target
//!   column's type and the read position advances by the length entry of the *name's* index;
//!   a name that matches nothing advances nothing, so every later column reads its
//!   predecessor's bytes;
//! - the type check refuses only when both the type and the width differ (INT data into a
//!   FLOAT column passes, and the bits are reinterpreted);
//! - a var-width value longer than the target column is 0x2653 (`tColDataAddValueByDataBlock`
//!   in `source/common/src/tdataformat.c`);
//! - the timestamp column must be among the bound names (0x0118); target columns not bound are
//!   NULL, except the composite key: 0x267B (`TSDB_CODE_PAR_PRIMARY_KEY_IS_NULL`), also for a
//!   NULL key value;
//! - without field names (`write_raw_block`), block columns bind to the target's columns by
//!   position, with the same type check;
//! - only bound columns are read (and decoded, once, here): the caller hands over the block
//!   with its header checked ([`crate::raw_block::parse`]), as `rawBlockBindData` reads
//!   nothing of a column it does not bind.
//!
//! Where TDengine would read memory past the block, the emulator refuses with 0x0118.

use crate::error::{EmuError, code};
use crate::raw_block::{RawBlock, read_column_at, schema_bytes};
use crate::types::{ColumnData, Field};

/// `TSDB_CODE_PAR_PRIMARY_KEY_IS_NULL` (`include/util/taoserror.h`).
pub const PRIMARY_KEY_IS_NULL: u32 = 0x267B;

fn invalid(msg: impl Into<String>) -> EmuError {
    EmuError::new(code::INVALID_PARA, msg)
}

/// The batch a write stores: `slots` (from [`bind`]) with NULLs for the columns nothing
/// was bound to.
pub fn fill(slots: Vec<Option<ColumnData>>, schema: &[Field], rows: usize) -> Vec<ColumnData> {
    slots
        .into_iter()
        .zip(schema)
        .map(|(c, f)| c.unwrap_or_else(|| ColumnData::nulls(f.ty, rows)))
        .collect()
}

/// Binds `block` to `schema` (the target table's data columns); `names` are the field names
/// sent with the block (empty: positional). Returns one column per schema column, `None`
/// where nothing was bound (NULL).
pub fn bind(
    block: &RawBlock,
    names: &[Field],
    schema: &[Field],
) -> Result<Vec<Option<ColumnData>>, EmuError> {
    let ncols = block.schema.len();
    let rows = block.rows;
    let mut slots: Vec<Option<ColumnData>> = vec![None; schema.len()];
    let mut pos = block.data_start;
    // The "fields" pointer of rawBlockBindData: the next block schema entry to check.
    let mut k = 0usize;
    let read = |k: usize, len_index: usize, target: &Field, pos: &mut usize| {
        let (bty, bbytes) = *block
            .schema
            .get(k)
            .ok_or_else(|| invalid("raw block column read past the end of the block"))?;
        // The target's `SSchema.bytes`: for DECIMAL the plain width (precision and scale
        // live in the schema extension), while the block's entry packs them in.
        let tbytes = match target.ty.fixed_width() {
            Some(w) if target.ty.is_decimal() => w as u32,
            _ => schema_bytes(target),
        };
        if bty != target.ty && bbytes != tbytes {
            return Err(invalid(format!(
                "column type or bytes not equal, name:{}, schema type:{}, bytes:{}, data \
                 type:{}, bytes:{}",
                target.name, target.ty, tbytes, bty, bbytes
            )));
        }
        let (col, data_at) = read_column_at(&block.bytes, *pos, target.ty, rows)?;
        check_lengths(&col, target, tbytes)?;
        let len = *block
            .lengths
            .get(len_index)
            .ok_or_else(|| invalid("raw block column read past the end of the block"))?;
        *pos = data_at
            .checked_add(len)
            .ok_or_else(|| invalid("raw block column length overflows"))?;
        Ok(col)
    };
    if names.is_empty() {
        for (j, target) in schema.iter().enumerate() {
            slots[j] = Some(read(j, j, target, &mut pos)?);
        }
    } else {
        if names.len() != ncols {
            return Err(invalid(format!(
                "numFields:{} not equal to data cols:{}",
                names.len(),
                ncols
            )));
        }
        if names.len() > schema.len() {
            return Err(invalid(format!(
                "numFields:{} bigger than num of bound cols:{}",
                names.len(),
                schema.len()
            )));
        }
        for (i, f) in names.iter().enumerate() {
            let Some(j) = schema.iter().position(|s| s.name == f.name) else {
                continue;
            };
            let col = read(k, i, &schema[j], &mut pos)?;
            k += 1;
            if slots[j].replace(col).is_some() {
                // TDengine appends the values to the column twice; nothing sensible follows.
                return Err(invalid(format!("column {} bound twice", f.name)));
            }
        }
        if slots.first().is_none_or(Option::is_none) {
            return Err(invalid(
                "timestamp column(primary key) not found in raw data",
            ));
        }
    }
    for (slot, f) in slots.iter().zip(schema) {
        if f.primary_key
            && slot
                .as_ref()
                .is_none_or(|c| (0..c.len()).any(|r| c.is_null(r)))
        {
            return Err(EmuError::new(
                PRIMARY_KEY_IS_NULL,
                "Primary key column should not be null",
            ));
        }
    }
    Ok(slots)
}

/// `varDataTLen(value) > bytes` → 0x2653, as `tColDataAddValueByDataBlock` checks.
fn check_lengths(col: &ColumnData, target: &Field, tbytes: u32) -> Result<(), EmuError> {
    let too_long = |n: usize| n + 2 > tbytes as usize;
    let bad = match col {
        ColumnData::VarChar(v) | ColumnData::VarBinary(v) | ColumnData::Geometry(v) => {
            v.iter().flatten().any(|x| too_long(x.len()))
        }
        ColumnData::NChar(v) => v
            .iter()
            .flatten()
            .any(|x| too_long(String::from_utf8_lossy(x).chars().count() * 4)),
        ColumnData::Json(v) => v.iter().flatten().any(|x| too_long(x.len())),
        _ => false,
    };
    if bad {
        return Err(EmuError::new(
            code::VALUE_TOO_LONG,
            format!("Value too long for column/tag: {}", target.name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw_block::{encode, parse};
    use crate::types::{Ty, Value};

    fn block(fields: &[Field], cols: &[ColumnData]) -> RawBlock {
        let bytes = encode(fields, &cols.iter().collect::<Vec<_>>(), 0..cols[0].len());
        parse(&bytes).unwrap()
    }

    fn ts(v: &[i64]) -> ColumnData {
        ColumnData::Timestamp(v.iter().map(|x| Some(*x)).collect())
    }

    #[test]
    fn names_bind_in_any_order() {
        let f = [
            Field::new("b", Ty::Int, 4),
            Field::new("ts", Ty::Timestamp, 8),
        ];
        let b = block(&f, &[ColumnData::Int(vec![Some(7)].into()), ts(&[1])]);
        let schema = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("a", Ty::Double, 8),
            Field::new("b", Ty::Int, 4),
        ];
        let s = bind(&b, &f, &schema).unwrap();
        assert_eq!(s[0], Some(ts(&[1])));
        assert_eq!(s[1], None);
        assert_eq!(s[2], Some(ColumnData::Int(vec![Some(7)].into())));
    }

    #[test]
    fn an_unmatched_name_shifts_later_columns() {
        // Block (ts, x INT, v INT) into (ts, v INT): `x` matches nothing, so `v` reads x's data.
        let f = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("x", Ty::Int, 4),
            Field::new("v", Ty::Int, 4),
        ];
        let b = block(
            &f,
            &[
                ts(&[1, 2]),
                ColumnData::Int(vec![Some(10), Some(20)].into()),
                ColumnData::Int(vec![Some(1), Some(2)].into()),
            ],
        );
        let schema = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("v", Ty::Int, 4),
            Field::new("w", Ty::Int, 4),
        ];
        let s = bind(&b, &f, &schema).unwrap();
        assert_eq!(s[1], Some(ColumnData::Int(vec![Some(10), Some(20)].into())));
        // More names than target columns is refused.
        let narrow = &schema[..2];
        assert_eq!(bind(&b, &f, narrow).unwrap_err().code, code::INVALID_PARA);
    }

    #[test]
    fn same_width_types_are_reinterpreted() {
        let f = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("v", Ty::Int, 4),
        ];
        let b = block(&f, &[ts(&[1]), ColumnData::Int(vec![Some(1)].into())]);
        let schema = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("v", Ty::Float, 4),
        ];
        let s = bind(&b, &f, &schema).unwrap();
        assert_eq!(
            s[1].as_ref().map(|c| c.get(0)),
            Some(Value::Float(f32::from_bits(1)))
        );
        // Different type and width: refused.
        let schema = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("v", Ty::BigInt, 8),
        ];
        assert_eq!(bind(&b, &f, &schema).unwrap_err().code, code::INVALID_PARA);
    }

    #[test]
    fn long_values_missing_ts_and_null_keys_are_refused() {
        let f = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("s", Ty::VarChar, 8),
        ];
        let b = block(
            &f,
            &[
                ts(&[1]),
                ColumnData::VarChar(vec![Some(b"abcdef".to_vec())].into()),
            ],
        );
        let short = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("s", Ty::VarChar, 4),
        ];
        assert_eq!(bind(&b, &f, &short).unwrap_err().code, code::VALUE_TOO_LONG);
        let no_ts = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("s", Ty::VarChar, 8),
            Field::new("t", Ty::Int, 4),
        ];
        let f2 = [Field::new("s", Ty::VarChar, 8), Field::new("u", Ty::Int, 4)];
        let b2 = block(
            &f2,
            &[
                ColumnData::VarChar(vec![Some(b"a".to_vec())].into()),
                ColumnData::Int(vec![Some(1)].into()),
            ],
        );
        assert_eq!(bind(&b2, &f2, &no_ts).unwrap_err().code, code::INVALID_PARA);
        let keyed = [
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("k", Ty::Int, 4).with_primary_key(),
            Field::new("s", Ty::VarChar, 8),
        ];
        assert_eq!(bind(&b, &f, &keyed).unwrap_err().code, PRIMARY_KEY_IS_NULL);
    }
}
