//! Literal → typed value conversion, timestamps and value printing.
//!
//! Date-time strings (`'YYYY-MM-DD[ HH:MM:SS[.f…]][Z|±HH:MM]'`) without a zone are read as
//! UTC: the emulator has no client time zone.

use crate::error::{EmuError, code};
use crate::sql::ast::{ArithOp, Expr, Lit};
use crate::types::{Field, Precision, Ty, Value};

/// What literal conversion needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The database precision (for timestamps, `now`, durations).
    pub precision: Precision,
    /// Now, in nanoseconds since the epoch.
    pub now_ns: i64,
}

impl Ctx {
    /// Nanoseconds per unit of the precision.
    fn ns_per_unit(&self) -> i64 {
        1_000_000_000 / self.precision.per_second()
    }

    /// Converts nanoseconds to the precision (flooring).
    pub fn ns_to_prec(&self, ns: i64) -> i64 {
        ns.div_euclid(self.ns_per_unit())
    }
}

/// A constant folded from a literal expression.
#[derive(Debug, Clone, PartialEq)]
pub enum K<'e> {
    /// NULL.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i128),
    /// Floating point.
    Float(f64),
    /// Text.
    Str(&'e str),
    /// A timestamp in the context precision.
    Ts(i64),
    /// A duration in nanoseconds.
    Dur(i64),
}

fn bad_value(what: impl std::fmt::Display) -> EmuError {
    EmuError::new(
        code::SYNTAX_ERROR,
        format!("syntax error near \"{what}\" (invalid value)"),
    )
}

fn out_of_range(what: impl std::fmt::Display) -> EmuError {
    EmuError::new(
        code::SYNTAX_ERROR,
        format!("syntax error near \"{what}\" (value out of range)"),
    )
}

fn parse_num(neg: bool, text: &str) -> Result<K<'static>, EmuError> {
    let sign: i128 = if neg { -1 } else { 1 };
    if let Some(h) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        let v = i128::from_str_radix(h, 16).map_err(|_| bad_value(text))?;
        return Ok(K::Int(sign.saturating_mul(v)));
    }
    if text.bytes().all(|c| c.is_ascii_digit()) {
        return match text.parse::<i128>() {
            Ok(v) => Ok(K::Int(sign.saturating_mul(v))),
            Err(_) => Err(out_of_range(text)),
        };
    }
    let f: f64 = text.parse().map_err(|_| bad_value(text))?;
    Ok(K::Float(if neg { -f } else { f }))
}

/// Folds a constant expression.
pub fn konst<'e>(e: &'e Expr<'_>, ctx: &Ctx) -> Result<K<'e>, EmuError> {
    Ok(match e {
        Expr::Lit(l) => match l {
            Lit::Null => K::Null,
            Lit::Bool(b) => K::Bool(*b),
            Lit::Num { neg, text } => parse_num(*neg, text)?,
            Lit::Str(s) => K::Str(s),
            Lit::Now(off) => K::Ts(ctx.ns_to_prec(ctx.now_ns.saturating_add(*off))),
            Lit::Duration(d) => K::Dur(*d),
        },
        Expr::Neg(x) => match konst(x, ctx)? {
            K::Int(i) => K::Int(i.saturating_neg()),
            K::Float(f) => K::Float(-f),
            K::Dur(d) => K::Dur(d.saturating_neg()),
            K::Null => K::Null,
            _ => return Err(bad_value("-")),
        },
        Expr::Arith(op, a, b) => {
            let (a, b) = (konst(a, ctx)?, konst(b, ctx)?);
            arith(*op, a, b, ctx)?
        }
        Expr::Func(name, args) if args.is_empty() && name == "today" => {
            let day = 86_400_000_000_000i64;
            K::Ts(ctx.ns_to_prec(ctx.now_ns.div_euclid(day) * day))
        }
        _ => return Err(bad_value("expression")),
    })
}

fn arith<'e>(op: ArithOp, a: K<'e>, b: K<'e>, ctx: &Ctx) -> Result<K<'e>, EmuError> {
    let dur = |d: i64| ctx.ns_to_prec(d);
    let ts_of = |k: &K<'_>| -> Option<i64> {
        match k {
            K::Ts(t) => Some(*t),
            K::Int(i) => i64::try_from(*i).ok(),
            K::Str(s) => parse_datetime_ns(s).map(|ns| ctx.ns_to_prec(ns)),
            _ => None,
        }
    };
    Ok(match (op, &a, &b) {
        (_, K::Null, _) | (_, _, K::Null) => K::Null,
        (ArithOp::Add | ArithOp::Sub, _, K::Dur(d)) => {
            let t = ts_of(&a).ok_or_else(|| bad_value("+"))?;
            let d = dur(*d);
            K::Ts(if op == ArithOp::Add {
                t.saturating_add(d)
            } else {
                t.saturating_sub(d)
            })
        }
        (ArithOp::Add, K::Dur(d), _) => {
            let t = ts_of(&b).ok_or_else(|| bad_value("+"))?;
            K::Ts(t.saturating_add(dur(*d)))
        }
        (_, K::Int(x), K::Int(y)) => {
            let v = match op {
                ArithOp::Add => x.checked_add(*y),
                ArithOp::Sub => x.checked_sub(*y),
                ArithOp::Mul => x.checked_mul(*y),
                ArithOp::Div => {
                    if *y == 0 {
                        return Ok(K::Null);
                    }
                    return Ok(K::Float(*x as f64 / *y as f64));
                }
                ArithOp::Rem => x.checked_rem(*y),
            };
            K::Int(v.ok_or_else(|| out_of_range("arithmetic"))?)
        }
        _ => {
            let f = |k: &K<'_>| match k {
                K::Int(i) => Some(*i as f64),
                K::Float(f) => Some(*f),
                K::Ts(t) => Some(*t as f64),
                K::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            let (x, y) = (
                f(&a).ok_or_else(|| bad_value("arithmetic"))?,
                f(&b).ok_or_else(|| bad_value("arithmetic"))?,
            );
            K::Float(match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
                ArithOp::Rem => x % y,
            })
        }
    })
}

fn int_in(v: i128, lo: i128, hi: i128, f: &Field) -> Result<i128, EmuError> {
    if v < lo || v > hi {
        Err(out_of_range(format!("{v} for {} {}", f.name, f.ty)))
    } else {
        Ok(v)
    }
}

fn to_int(k: &K<'_>, f: &Field) -> Result<i128, EmuError> {
    match k {
        K::Int(i) => Ok(*i),
        K::Float(x) if x.is_finite() => Ok(x.trunc() as i128),
        K::Bool(b) => Ok(i128::from(*b)),
        K::Ts(t) => Ok(i128::from(*t)),
        K::Str(s) => {
            let t = s.trim();
            if let Ok(v) = t.parse::<i128>() {
                Ok(v)
            } else if let Ok(x) = t.parse::<f64>()
                && x.is_finite()
            {
                Ok(x.trunc() as i128)
            } else if t.eq_ignore_ascii_case("true") {
                Ok(1)
            } else if t.eq_ignore_ascii_case("false") {
                Ok(0)
            } else {
                Err(bad_value(format!("{s} for {} {}", f.name, f.ty)))
            }
        }
        _ => Err(bad_value(format!("value for {} {}", f.name, f.ty))),
    }
}

fn to_float(k: &K<'_>, f: &Field) -> Result<f64, EmuError> {
    match k {
        K::Int(i) => Ok(*i as f64),
        K::Float(x) => Ok(*x),
        K::Bool(b) => Ok(f64::from(u8::from(*b))),
        K::Ts(t) => Ok(*t as f64),
        K::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| bad_value(format!("{s} for {} {}", f.name, f.ty))),
        _ => Err(bad_value(format!("value for {} {}", f.name, f.ty))),
    }
}

fn text_of(k: &K<'_>) -> Option<String> {
    Some(match k {
        K::Str(s) => (*s).to_string(),
        K::Int(i) => i.to_string(),
        K::Float(x) => x.to_string(),
        K::Bool(b) => b.to_string(),
        K::Ts(t) => t.to_string(),
        _ => return None,
    })
}

fn too_long(f: &Field) -> EmuError {
    EmuError::new(
        code::VALUE_TOO_LONG,
        format!("Value too long for column/tag: {}", f.name),
    )
}

/// Decodes `\x…` hex text to bytes; `None` when the text is not hex-escaped.
pub fn hex_bytes(s: &str) -> Option<Result<Vec<u8>, ()>> {
    let h = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X"))?;
    if h.len() % 2 != 0 {
        return Some(Err(()));
    }
    let b = h.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks(2) {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => return Some(Err(())),
        }
    }
    Some(Ok(out))
}

/// Converts a constant to a value of the field's type, checking range and length.
pub fn coerce(k: &K<'_>, f: &Field, ctx: &Ctx) -> Result<Value, EmuError> {
    if matches!(k, K::Null) {
        return Ok(Value::Null);
    }
    Ok(match f.ty {
        Ty::Bool => Value::Bool(match k {
            K::Bool(b) => *b,
            K::Int(i) => *i != 0,
            K::Float(x) => *x != 0.0,
            K::Str(s) if s.eq_ignore_ascii_case("true") => true,
            K::Str(s) if s.eq_ignore_ascii_case("false") => false,
            _ => return Err(bad_value(format!("value for {} BOOL", f.name))),
        }),
        Ty::TinyInt => Value::TinyInt(int_in(to_int(k, f)?, -128, 127, f)? as i8),
        Ty::SmallInt => Value::SmallInt(int_in(to_int(k, f)?, -32768, 32767, f)? as i16),
        Ty::Int => Value::Int(int_in(to_int(k, f)?, i32::MIN.into(), i32::MAX.into(), f)? as i32),
        Ty::BigInt => {
            Value::BigInt(int_in(to_int(k, f)?, i64::MIN.into(), i64::MAX.into(), f)? as i64)
        }
        Ty::UTinyInt => Value::UTinyInt(int_in(to_int(k, f)?, 0, 255, f)? as u8),
        Ty::USmallInt => Value::USmallInt(int_in(to_int(k, f)?, 0, 65535, f)? as u16),
        Ty::UInt => Value::UInt(int_in(to_int(k, f)?, 0, u32::MAX.into(), f)? as u32),
        Ty::UBigInt => Value::UBigInt(int_in(to_int(k, f)?, 0, u64::MAX.into(), f)? as u64),
        Ty::Float => {
            let x = to_float(k, f)?;
            if x.is_finite() && x.abs() > f64::from(f32::MAX) {
                return Err(out_of_range(format!("{x} for {} FLOAT", f.name)));
            }
            Value::Float(x as f32)
        }
        Ty::Double => Value::Double(to_float(k, f)?),
        Ty::Timestamp => Value::Timestamp(match k {
            K::Ts(t) => *t,
            K::Int(i) => i64::try_from(*i).map_err(|_| out_of_range(i))?,
            K::Float(x) if x.is_finite() => *x as i64,
            K::Str(s) => match parse_datetime_ns(s) {
                Some(ns) => ctx.ns_to_prec(ns),
                None => {
                    return Err(EmuError::new(
                        code::INCORRECT_TIMESTAMP,
                        format!("Incorrect TIMESTAMP value: {s}"),
                    ));
                }
            },
            _ => {
                return Err(EmuError::new(
                    code::INCORRECT_TIMESTAMP,
                    format!("Incorrect TIMESTAMP value for {}", f.name),
                ));
            }
        }),
        Ty::VarChar => {
            let s = text_of(k).ok_or_else(|| bad_value(&f.name))?;
            if s.len() > f.bytes as usize {
                return Err(too_long(f));
            }
            Value::VarChar(s.into_bytes())
        }
        Ty::NChar => {
            let s = text_of(k).ok_or_else(|| bad_value(&f.name))?;
            if s.chars().count() > f.bytes as usize {
                return Err(too_long(f));
            }
            Value::NChar(s)
        }
        Ty::Json => {
            let K::Str(s) = k else {
                return Err(EmuError::new(code::INVALID_JSON, "Invalid JSON format"));
            };
            let t = s.trim();
            if t.is_empty() || t.eq_ignore_ascii_case("null") {
                return Ok(Value::Null);
            }
            match serde_json::from_str::<serde_json::Value>(t) {
                Ok(serde_json::Value::Object(_)) => Value::Json(t.to_string()),
                _ => return Err(EmuError::new(code::INVALID_JSON, "Invalid JSON format")),
            }
        }
        Ty::VarBinary | Ty::Geometry => {
            let bytes = match k {
                K::Str(s) => match hex_bytes(s) {
                    Some(Ok(b)) => b,
                    Some(Err(())) => return Err(bad_value(s)),
                    None if f.ty == Ty::VarBinary => s.as_bytes().to_vec(),
                    None => super::wkt::wkt_to_wkb(s).ok_or_else(|| {
                        EmuError::new(code::INVALID_PARA, format!("Invalid geometry value: {s}"))
                    })?,
                },
                _ => return Err(bad_value(&f.name)),
            };
            if bytes.len() > f.bytes as usize {
                return Err(too_long(f));
            }
            if f.ty == Ty::VarBinary {
                Value::VarBinary(bytes)
            } else {
                Value::Geometry(bytes)
            }
        }
        Ty::Blob => {
            // `parseBlob` (parInsertSql.c): a string, `\x…` as hex, else the text's bytes;
            // at most TSDB_MAX_BLOB_LEN - 4 bytes (0x2669? not checked: VALUE_TOO_LONG here).
            let bytes = match k {
                K::Str(s) => match hex_bytes(s) {
                    Some(Ok(b)) => b,
                    Some(Err(())) => return Err(bad_value(s)),
                    None => s.as_bytes().to_vec(),
                },
                _ => return Err(bad_value(&f.name)),
            };
            if bytes.len() + 4 > f.bytes as usize {
                return Err(too_long(f));
            }
            Value::Blob(bytes)
        }
        Ty::Decimal | Ty::Decimal64 => {
            let text = match k {
                K::Int(i) => i.to_string(),
                K::Str(s) => s.to_string(),
                _ => return Err(bad_value(&f.name)),
            };
            return decimal_value(&text, f);
        }
    })
}

/// Converts a literal expression to a value of the field's type.
pub fn expr_to_value(e: &Expr<'_>, f: &Field, ctx: &Ctx) -> Result<Value, EmuError> {
    // Fast path for plain literals.
    if let Expr::Lit(Lit::Num { neg: false, text }) = e
        && matches!(f.ty, Ty::Timestamp | Ty::BigInt | Ty::Int)
        && let Ok(v) = text.parse::<i64>()
    {
        return match f.ty {
            Ty::Timestamp => Ok(Value::Timestamp(v)),
            Ty::BigInt => Ok(Value::BigInt(v)),
            _ => i32::try_from(v)
                .map(Value::Int)
                .map_err(|_| out_of_range(format!("{v} for {} INT", f.name))),
        };
    }
    if f.ty.is_decimal() {
        // TDengine parses a DECIMAL value from the token's text (`decimal128FromStr` /
        // `decimal64FromStr` in parInsertSql.c; quotes are trimmed first by
        // `checkAndTrimValue`), so the text is kept exact rather than read as a double.
        let text: std::borrow::Cow<'_, str> = match e {
            Expr::Lit(Lit::Num { neg, text }) => {
                if *neg {
                    format!("-{text}").into()
                } else {
                    (*text).into()
                }
            }
            Expr::Lit(Lit::Str(s)) => s.clone(),
            _ => {
                let k = konst(e, ctx)?;
                return coerce(&k, f, ctx);
            }
        };
        return decimal_value(&text, f);
    }
    let k = konst(e, ctx)?;
    coerce(&k, f, ctx)
}

/// The unscaled integer of `text` (`[+-]digits[.digits]`) for a DECIMAL(p, s) field.
/// Integer digits beyond `p - s` are out of range. More fractional digits than `s` are
/// refused: TDengine rounds them (`decimal128FromStr`), which the emulator does not
/// reproduce (docs/emulator.md).
pub fn parse_decimal(text: &str, precision: u8, scale: u8) -> Result<i128, String> {
    let t = text.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(format!("invalid DECIMAL value {text:?}"));
    }
    let int = int.trim_start_matches('0');
    if int.len() > usize::from(precision.saturating_sub(scale)) {
        return Err(format!("{text} overflows DECIMAL({precision},{scale})"));
    }
    if frac.len() > usize::from(scale) {
        return Err(format!(
            "{text} has more than {scale} digits after the point"
        ));
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v * 10 + i128::from(b - b'0');
    }
    for _ in frac.len()..usize::from(scale) {
        v *= 10;
    }
    Ok(if neg { -v } else { v })
}

fn decimal_value(text: &str, f: &Field) -> Result<Value, EmuError> {
    let v = parse_decimal(text, f.precision, f.scale).map_err(out_of_range)?;
    Ok(match f.ty {
        Ty::Decimal64 => Value::Decimal64(v as i64),
        _ => Value::Decimal(v),
    })
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.fraction]]][Z|±HH[:MM]]` to nanoseconds since the epoch
/// (UTC when no zone is given).
pub fn parse_datetime_ns(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let mut i = 0;
    let num = |len_min: usize, len_max: usize, i: &mut usize| -> Option<i64> {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - st < len_max {
            *i += 1;
        }
        if *i - st < len_min {
            return None;
        }
        std::str::from_utf8(&b[st..*i]).ok()?.parse().ok()
    };
    let y = num(4, 4, &mut i)?;
    if b.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    let mo = num(1, 2, &mut i)?;
    if b.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    let d = num(1, 2, &mut i)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut frac_ns) = (0i64, 0i64, 0i64, 0i64);
    if i < b.len() && (b[i] == b' ' || b[i] == b'T') {
        i += 1;
        h = num(1, 2, &mut i)?;
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        mi = num(1, 2, &mut i)?;
        if b.get(i) == Some(&b':') {
            i += 1;
            sec = num(1, 2, &mut i)?;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let st = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &b[st..i];
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            let mut v: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
            for _ in digits.len()..9 {
                v *= 10;
            }
            frac_ns = v;
        }
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut offset_s = 0i64;
    if i < b.len() {
        match b[i] {
            b'Z' | b'z' if i + 1 == b.len() => i += 1,
            b'+' | b'-' => {
                let sign = if b[i] == b'-' { -1 } else { 1 };
                i += 1;
                let oh = num(2, 2, &mut i)?;
                if b.get(i) == Some(&b':') {
                    i += 1;
                }
                let om = if i < b.len() { num(2, 2, &mut i)? } else { 0 };
                offset_s = sign * (oh * 3600 + om * 60);
            }
            _ => return None,
        }
    }
    if i != b.len() {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// Quotes text for SQL: `'…'` with `\` and `'` escaped.
pub fn sql_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Lower-case hex with a `\x` prefix.
pub fn hex_text(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for x in b {
        s.push_str(&format!("{x:02X}"));
    }
    s
}

/// A value as an SQL literal that this emulator parses back to the same value.
pub fn value_sql(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::VarChar(b) => sql_quote(&String::from_utf8_lossy(b)),
        Value::NChar(s) | Value::Json(s) => sql_quote(s),
        Value::VarBinary(b) | Value::Geometry(b) | Value::Blob(b) => {
            format!("'{}'", hex_text(b))
        }
        other => value_text(other).unwrap_or_default(),
    }
}

/// A value as plain text (ins_tags.tag_value style); `None` for NULL.
pub fn value_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::TinyInt(x) => x.to_string(),
        Value::SmallInt(x) => x.to_string(),
        Value::Int(x) => x.to_string(),
        Value::BigInt(x) => x.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Double(x) => x.to_string(),
        Value::VarChar(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Timestamp(x) => x.to_string(),
        Value::NChar(s) | Value::Json(s) => s.clone(),
        Value::UTinyInt(x) => x.to_string(),
        Value::USmallInt(x) => x.to_string(),
        Value::UInt(x) => x.to_string(),
        Value::UBigInt(x) => x.to_string(),
        Value::VarBinary(b) | Value::Geometry(b) | Value::Blob(b) => hex_text(b),
        // Without the column's scale only the unscaled integer can be printed.
        Value::Decimal(x) => x.to_string(),
        Value::Decimal64(x) => x.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ast::Lit;
    use std::borrow::Cow;

    fn ctx(p: Precision) -> Ctx {
        Ctx {
            precision: p,
            now_ns: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ns("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_datetime_ns("1970-01-01"), Some(0));
        assert_eq!(
            parse_datetime_ns("2021-07-11 20:33:53.639"),
            Some(1_626_035_633_639_000_000)
        );
        assert_eq!(
            parse_datetime_ns("2021-07-11T20:33:53.639+08:00"),
            Some(1_626_035_633_639_000_000 - 8 * 3_600_000_000_000)
        );
        assert_eq!(
            parse_datetime_ns("1969-12-31 23:59:59.5"),
            Some(-500_000_000)
        );
        assert_eq!(parse_datetime_ns("2021-13-01"), None);
        assert_eq!(parse_datetime_ns("abc"), None);
        assert_eq!(parse_datetime_ns("2021-01-01 00:00:00.1234567891"), None);
        assert_eq!(parse_datetime_ns("2021-01-01 00:00:00 junk"), None);
    }

    #[test]
    fn coercions() {
        let c = ctx(Precision::Microsecond);
        let f = |ty, bytes| Field::new("c", ty, bytes);
        let num = |t| {
            Expr::Lit(Lit::Num {
                neg: false,
                text: t,
            })
        };
        let s = |t| Expr::Lit(Lit::Str(Cow::Borrowed(t)));
        assert_eq!(
            expr_to_value(&num("127"), &f(Ty::TinyInt, 1), &c),
            Ok(Value::TinyInt(127))
        );
        assert!(expr_to_value(&num("128"), &f(Ty::TinyInt, 1), &c).is_err());
        assert!(expr_to_value(&num("3000000000"), &f(Ty::Int, 4), &c).is_err());
        assert_eq!(
            expr_to_value(&num("18446744073709551615"), &f(Ty::UBigInt, 8), &c),
            Ok(Value::UBigInt(u64::MAX))
        );
        assert!(
            expr_to_value(
                &Expr::Lit(Lit::Num {
                    neg: true,
                    text: "1"
                }),
                &f(Ty::UInt, 4),
                &c
            )
            .is_err()
        );
        assert_eq!(
            expr_to_value(&num("1.5"), &f(Ty::Double, 8), &c),
            Ok(Value::Double(1.5))
        );
        assert_eq!(
            expr_to_value(&Expr::Lit(Lit::Now(-1_000)), &f(Ty::Timestamp, 8), &c),
            Ok(Value::Timestamp(1_700_000_000_123_455))
        );
        assert_eq!(
            expr_to_value(&s("1970-01-01 00:00:01"), &f(Ty::Timestamp, 8), &c),
            Ok(Value::Timestamp(1_000_000))
        );
        assert_eq!(
            expr_to_value(&s("bad"), &f(Ty::Timestamp, 8), &c).map_err(|e| e.code),
            Err(code::INCORRECT_TIMESTAMP)
        );
        assert_eq!(
            expr_to_value(&s("abc"), &f(Ty::VarChar, 3), &c),
            Ok(Value::VarChar(b"abc".to_vec()))
        );
        assert_eq!(
            expr_to_value(&s("abcd"), &f(Ty::VarChar, 3), &c).map_err(|e| e.code),
            Err(code::VALUE_TOO_LONG)
        );
        assert_eq!(
            expr_to_value(&s("héé"), &f(Ty::NChar, 3), &c),
            Ok(Value::NChar("héé".into()))
        );
        assert_eq!(
            expr_to_value(&s("\\x0aff"), &f(Ty::VarBinary, 8), &c),
            Ok(Value::VarBinary(vec![0x0a, 0xff]))
        );
        assert!(expr_to_value(&s("\\x0"), &f(Ty::VarBinary, 8), &c).is_err());
        let Ok(Value::Geometry(g)) = expr_to_value(&s("POINT(1 2)"), &f(Ty::Geometry, 64), &c)
        else {
            panic!()
        };
        assert_eq!(g.len(), 21);
        assert!(expr_to_value(&s("LINE(1 2)"), &f(Ty::Geometry, 64), &c).is_err());
        assert_eq!(
            expr_to_value(&s("{\"a\":1}"), &f(Ty::Json, 4095), &c),
            Ok(Value::Json("{\"a\":1}".into()))
        );
        assert!(expr_to_value(&s("[1]"), &f(Ty::Json, 4095), &c).is_err());
        assert_eq!(
            expr_to_value(&Expr::Lit(Lit::Bool(true)), &f(Ty::Bool, 1), &c),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            expr_to_value(&Expr::Lit(Lit::Null), &f(Ty::Bool, 1), &c),
            Ok(Value::Null)
        );
        assert!(expr_to_value(&Expr::Col("x".into()), &f(Ty::Int, 4), &c).is_err());
    }

    #[test]
    fn printing_round_trips() {
        assert_eq!(
            value_sql(&Value::VarChar(b"it's\\".to_vec())),
            "'it\\'s\\\\'"
        );
        assert_eq!(value_sql(&Value::VarBinary(vec![1, 255])), "'\\x01FF'");
        assert_eq!(value_sql(&Value::Null), "NULL");
        assert_eq!(value_sql(&Value::Double(0.1)), "0.1");
        assert_eq!(value_sql(&Value::Bool(true)), "true");
    }
}
