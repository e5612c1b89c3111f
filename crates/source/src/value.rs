//! Typed values: from the connector's values to the catalog's, and to SQL literals.

use taos::BorrowedValue;
use taosbackup_core::Value;

use crate::Error;
use crate::sql::quote_str;

/// Converts a connector value to the catalog's typed value, byte-exact.
pub(crate) fn to_core_value(v: BorrowedValue<'_>) -> Value {
    match v {
        BorrowedValue::Null(_) => Value::Null,
        BorrowedValue::Bool(b) => Value::Bool(b),
        BorrowedValue::TinyInt(x) => Value::TinyInt(x),
        BorrowedValue::SmallInt(x) => Value::SmallInt(x),
        BorrowedValue::Int(x) => Value::Int(x),
        BorrowedValue::BigInt(x) => Value::BigInt(x),
        BorrowedValue::UTinyInt(x) => Value::UTinyInt(x),
        BorrowedValue::USmallInt(x) => Value::USmallInt(x),
        BorrowedValue::UInt(x) => Value::UInt(x),
        BorrowedValue::UBigInt(x) => Value::UBigInt(x),
        BorrowedValue::Float(x) => Value::Float(x),
        BorrowedValue::Double(x) => Value::Double(x),
        BorrowedValue::Timestamp(t) => Value::Timestamp(t.as_raw_i64()),
        BorrowedValue::VarChar(s) => Value::VarChar(s.as_bytes().to_vec()),
        BorrowedValue::NChar(s) => Value::NChar(s.into_owned()),
        BorrowedValue::Json(b) => Value::Json(String::from_utf8_lossy(&b).into_owned()),
        BorrowedValue::VarBinary(b) => Value::VarBinary(b.into_owned()),
        BorrowedValue::Geometry(b) => Value::Geometry(b.into_owned()),
        BorrowedValue::Blob(b) | BorrowedValue::MediumBlob(b) => Value::Blob(b.to_vec()),
        BorrowedValue::Decimal(d) => Value::Decimal(d.to_string()),
    }
}

/// `'\x0a0b…'`: TDengine's hex literal for VARBINARY (and GEOMETRY as a fallback).
fn hex_literal(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2 + 4);
    s.push_str("'\\x");
    for x in b {
        s.push_str(&format!("{x:02X}"));
    }
    s.push('\'');
    s
}

/// Renders `v` as a SQL literal for a column or tag, so that the server stores exactly `v`.
/// `table` and `column` are for the error message.
pub(crate) fn sql_literal(v: &Value, table: &str, column: &str) -> Result<String, Error> {
    let unrepresentable = |reason: &str| Error::UnrepresentableValue {
        table: table.to_string(),
        column: column.to_string(),
        reason: reason.to_string(),
    };
    Ok(match v {
        Value::Null => "NULL".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::TinyInt(x) => x.to_string(),
        Value::SmallInt(x) => x.to_string(),
        Value::Int(x) => x.to_string(),
        Value::BigInt(x) => x.to_string(),
        Value::UTinyInt(x) => x.to_string(),
        Value::USmallInt(x) => x.to_string(),
        Value::UInt(x) => x.to_string(),
        Value::UBigInt(x) => x.to_string(),
        // `{:?}` is the shortest text that reads back to the same bits.
        Value::Float(x) if x.is_finite() => format!("{x:?}"),
        Value::Double(x) if x.is_finite() => format!("{x:?}"),
        Value::Float(_) | Value::Double(_) => {
            return Err(unrepresentable("NaN and infinities have no SQL literal"));
        }
        Value::Timestamp(t) => t.to_string(),
        Value::VarChar(b) => quote_str(
            std::str::from_utf8(b).map_err(|_| unrepresentable("VARCHAR bytes are not UTF-8"))?,
        ),
        Value::NChar(s) | Value::Json(s) => quote_str(s),
        // `parseBlob` (TDengine parInsertSql.c) takes a string; `\x…` is hex, so the bytes
        // are exact whatever they are.
        Value::VarBinary(b) | Value::Blob(b) => hex_literal(b),
        // DECIMAL is parsed from the token's text (`decimal128FromStr`/`decimal64FromStr` in
        // parInsertSql.c, quotes trimmed by `checkAndTrimValue`): exact, never via a double.
        Value::Decimal(text) => {
            let ok = !text.is_empty()
                && text
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.');
            if !ok {
                return Err(unrepresentable("not a decimal number"));
            }
            format!("'{text}'")
        }
        Value::Geometry(b) => match wkb_to_wkt(b) {
            Some(wkt) => quote_str(&wkt),
            None => hex_literal(b),
        },
        _ => return Err(unrepresentable("unsupported value type")),
    })
}

/// WKT for a 2-D WKB POINT, LINESTRING or POLYGON (either byte order); `None` otherwise.
pub(crate) fn wkb_to_wkt(b: &[u8]) -> Option<String> {
    let le = match b.first()? {
        1 => true,
        0 => false,
        _ => return None,
    };
    let mut pos = 1usize;
    let u32_at = |pos: &mut usize| -> Option<u32> {
        let s: [u8; 4] = b.get(*pos..*pos + 4)?.try_into().ok()?;
        *pos += 4;
        Some(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let f64_at = |pos: &mut usize| -> Option<f64> {
        let s: [u8; 8] = b.get(*pos..*pos + 8)?.try_into().ok()?;
        *pos += 8;
        Some(if le {
            f64::from_le_bytes(s)
        } else {
            f64::from_be_bytes(s)
        })
    };
    let point = |pos: &mut usize| -> Option<String> {
        let x = f64_at(pos)?;
        let y = f64_at(pos)?;
        Some(format!("{x:?} {y:?}"))
    };
    let points = |pos: &mut usize| -> Option<String> {
        let n = u32_at(pos)? as usize;
        if n > b.len() / 16 {
            return None;
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(point(pos)?);
        }
        Some(v.join(", "))
    };
    let wkt = match u32_at(&mut pos)? {
        1 => format!("POINT ({})", point(&mut pos)?),
        2 => format!("LINESTRING ({})", points(&mut pos)?),
        3 => {
            let rings = u32_at(&mut pos)? as usize;
            if rings > b.len() / 4 {
                return None;
            }
            let mut v = Vec::with_capacity(rings);
            for _ in 0..rings {
                v.push(format!("({})", points(&mut pos)?));
            }
            format!("POLYGON ({})", v.join(", "))
        }
        _ => return None,
    };
    (pos == b.len()).then_some(wkt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let l = |v: Value| sql_literal(&v, "t", "c").unwrap();
        assert_eq!(l(Value::Null), "NULL");
        assert_eq!(l(Value::Bool(true)), "true");
        assert_eq!(l(Value::UBigInt(u64::MAX)), "18446744073709551615");
        assert_eq!(l(Value::BigInt(i64::MIN)), "-9223372036854775808");
        assert_eq!(l(Value::Float(0.1)), "0.1");
        assert_eq!(l(Value::Double(-1.5e300)), "-1.5e300");
        assert_eq!(l(Value::NChar("it's \\ 电".into())), "'it\\'s \\\\ 电'");
        assert_eq!(l(Value::VarBinary(vec![0, 0xab])), "'\\x00AB'");
        assert_eq!(l(Value::Blob(vec![0, 0xab])), "'\\x00AB'");
        assert_eq!(l(Value::Decimal("-0.0100".into())), "'-0.0100'");
        assert!(sql_literal(&Value::Decimal("1' or '1".into()), "t", "c").is_err());
        assert_eq!(l(Value::Json("{\"a\":\"'\"}".into())), "'{\"a\":\"\\'\"}'");
        assert!(sql_literal(&Value::Double(f64::NAN), "t", "c").is_err());
        assert!(sql_literal(&Value::VarChar(vec![0xff]), "t", "c").is_err());
        assert_eq!(crate::sql::ident("a`b"), "`a``b`");
    }

    #[test]
    fn wkt_from_wkb() {
        let mut p = vec![1, 1, 0, 0, 0];
        p.extend_from_slice(&1.0f64.to_le_bytes());
        p.extend_from_slice(&2.5f64.to_le_bytes());
        assert_eq!(wkb_to_wkt(&p).as_deref(), Some("POINT (1.0 2.5)"));
        assert_eq!(
            sql_literal(&Value::Geometry(p.clone()), "t", "g").unwrap(),
            "'POINT (1.0 2.5)'"
        );
        let mut line = vec![0, 0, 0, 0, 2, 0, 0, 0, 2];
        for v in [0.0f64, 1.0, 2.0, 3.0] {
            line.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(
            wkb_to_wkt(&line).as_deref(),
            Some("LINESTRING (0.0 1.0, 2.0 3.0)")
        );
        p.push(0);
        assert_eq!(wkb_to_wkt(&p), None, "trailing bytes");
        assert_eq!(
            sql_literal(&Value::Geometry(vec![9]), "t", "g").unwrap(),
            "'\\x09'"
        );
    }
}
