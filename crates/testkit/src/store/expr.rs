//! Expression evaluation for queries and DELETE: name binding ([`Scope`], [`bind`]), datums,
//! predicates and the timestamp bounds a WHERE clause implies.

use std::cmp::Ordering;

use super::convert::{Ctx, K, coerce, konst};
use crate::error::{EmuError, code};
use crate::sql::ast::{ArithOp, CmpOp, Expr};
use crate::types::{ColumnData, Field, Ty, Value};

/// Bytes reported for `tbname`.
pub const TBNAME_BYTES: u32 = 192;

/// What names mean in a query: data columns, tags, and `tbname`.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Data columns (column 0 is the timestamp for real tables).
    pub cols: Vec<Field>,
    /// Tags.
    pub tags: Vec<Field>,
}

/// A resolved name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ref {
    /// Data column `i`.
    Col(usize),
    /// Tag `i`.
    Tag(usize),
    /// The table name.
    Tbname,
}

impl Scope {
    /// A scope over columns and tags.
    pub fn new(cols: Vec<Field>, tags: Vec<Field>) -> Scope {
        Scope { cols, tags }
    }

    pub(super) fn resolve(&self, name: &str) -> Result<Ref, EmuError> {
        if let Some(i) = self.cols.iter().position(|f| f.name == name) {
            return Ok(Ref::Col(i));
        }
        if let Some(i) = self.tags.iter().position(|f| f.name == name) {
            return Ok(Ref::Tag(i));
        }
        if name.eq_ignore_ascii_case("tbname") {
            return Ok(Ref::Tbname);
        }
        // Case-insensitive fallback for unquoted names of mixed-case columns.
        if let Some(i) = self
            .cols
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
        {
            return Ok(Ref::Col(i));
        }
        if let Some(i) = self
            .tags
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
        {
            return Ok(Ref::Tag(i));
        }
        Err(EmuError::new(
            code::INVALID_COLUMN,
            format!("Invalid column name: {name}"),
        ))
    }

    pub(super) fn field(&self, r: Ref) -> Field {
        match r {
            Ref::Col(i) => self.cols[i].clone(),
            Ref::Tag(i) => self.tags[i].clone(),
            Ref::Tbname => Field::new("tbname", Ty::VarChar, TBNAME_BYTES),
        }
    }
}

/// A bound expression.
#[derive(Debug, Clone)]
pub enum B {
    /// A column, tag or tbname.
    Ref(Ref, Ty),
    /// A constant.
    Const(Value),
    /// Comparison.
    Cmp(CmpOp, Box<B>, Box<B>),
    /// Arithmetic.
    Arith(ArithOp, Box<B>, Box<B>),
    /// AND.
    And(Box<B>, Box<B>),
    /// OR.
    Or(Box<B>, Box<B>),
    /// NOT.
    Not(Box<B>),
    /// BETWEEN.
    Between(Box<B>, Box<B>, Box<B>, bool),
    /// IN.
    In(Box<B>, Vec<B>, bool),
    /// LIKE (pattern as chars).
    Like(Box<B>, Vec<char>, bool),
    /// IS [NOT] NULL.
    IsNull(Box<B>, bool),
}

pub(super) fn is_const(e: &Expr<'_>) -> bool {
    match e {
        Expr::Lit(_) => true,
        Expr::Neg(x) => is_const(x),
        Expr::Arith(_, a, b) => is_const(a) && is_const(b),
        Expr::Func(n, a) => a.is_empty() && n == "today",
        _ => false,
    }
}

/// A folded constant as a value, typed like `target` when it is a timestamp or text type.
pub(super) fn const_value(
    k: &K<'_>,
    target: Option<(Ty, &Field)>,
    ctx: &Ctx,
) -> Result<Value, EmuError> {
    if let Some((ty, f)) = target {
        match ty {
            Ty::Timestamp | Ty::VarChar | Ty::NChar | Ty::VarBinary | Ty::Geometry | Ty::Json => {
                let mut wide = f.clone();
                wide.bytes = u32::MAX;
                wide.ty = if ty == Ty::Json { Ty::NChar } else { ty };
                return coerce(k, &wide, ctx);
            }
            Ty::Bool => {
                if let K::Bool(b) = k {
                    return Ok(Value::Bool(*b));
                }
            }
            _ => {}
        }
    }
    Ok(match k {
        K::Null => Value::Null,
        K::Bool(b) => Value::Bool(*b),
        K::Int(i) => match i64::try_from(*i) {
            Ok(v) => Value::BigInt(v),
            Err(_) => match u64::try_from(*i) {
                Ok(v) => Value::UBigInt(v),
                Err(_) => Value::Double(*i as f64),
            },
        },
        K::Float(f) => Value::Double(*f),
        K::Str(s) => Value::VarChar(s.as_bytes().to_vec()),
        K::Ts(t) => Value::Timestamp(*t),
        K::Dur(d) => Value::BigInt(ctx.ns_to_prec(*d)),
    })
}

fn ref_field(b: &B, scope: &Scope) -> Option<(Ty, Field)> {
    match b {
        B::Ref(r, ty) => Some((*ty, scope.field(*r))),
        _ => None,
    }
}

fn bind_operand(
    e: &Expr<'_>,
    other: Option<&(Ty, Field)>,
    scope: &Scope,
    ctx: &Ctx,
) -> Result<B, EmuError> {
    if is_const(e) {
        let k = konst(e, ctx)?;
        return Ok(B::Const(const_value(&k, other.map(|(t, f)| (*t, f)), ctx)?));
    }
    bind(e, scope, ctx)
}

/// Binds an expression to a scope.
pub fn bind(e: &Expr<'_>, scope: &Scope, ctx: &Ctx) -> Result<B, EmuError> {
    Ok(match e {
        Expr::Col(n) => {
            let r = scope.resolve(n)?;
            B::Ref(r, scope.field(r).ty)
        }
        Expr::Lit(_) | Expr::Neg(_) if is_const(e) => {
            B::Const(const_value(&konst(e, ctx)?, None, ctx)?)
        }
        Expr::Neg(x) => B::Arith(
            ArithOp::Sub,
            Box::new(B::Const(Value::BigInt(0))),
            Box::new(bind(x, scope, ctx)?),
        ),
        Expr::Arith(op, a, b) => {
            if is_const(e) {
                B::Const(const_value(&konst(e, ctx)?, None, ctx)?)
            } else {
                B::Arith(
                    *op,
                    Box::new(bind(a, scope, ctx)?),
                    Box::new(bind(b, scope, ctx)?),
                )
            }
        }
        Expr::Cmp(op, a, b) => {
            let (ba, bb) = if is_const(a) {
                let bb = bind(b, scope, ctx)?;
                let f = ref_field(&bb, scope);
                (bind_operand(a, f.as_ref(), scope, ctx)?, bb)
            } else {
                let ba = bind(a, scope, ctx)?;
                let f = ref_field(&ba, scope);
                (ba, bind_operand(b, f.as_ref(), scope, ctx)?)
            };
            B::Cmp(*op, Box::new(ba), Box::new(bb))
        }
        Expr::And(a, b) => B::And(
            Box::new(bind(a, scope, ctx)?),
            Box::new(bind(b, scope, ctx)?),
        ),
        Expr::Or(a, b) => B::Or(
            Box::new(bind(a, scope, ctx)?),
            Box::new(bind(b, scope, ctx)?),
        ),
        Expr::Not(a) => B::Not(Box::new(bind(a, scope, ctx)?)),
        Expr::Between {
            expr,
            lo,
            hi,
            negated,
        } => {
            let x = bind(expr, scope, ctx)?;
            let f = ref_field(&x, scope);
            let lo = bind_operand(lo, f.as_ref(), scope, ctx)?;
            let hi = bind_operand(hi, f.as_ref(), scope, ctx)?;
            B::Between(Box::new(x), Box::new(lo), Box::new(hi), *negated)
        }
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let x = bind(expr, scope, ctx)?;
            let f = ref_field(&x, scope);
            let list = list
                .iter()
                .map(|i| bind_operand(i, f.as_ref(), scope, ctx))
                .collect::<Result<_, _>>()?;
            B::In(Box::new(x), list, *negated)
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => {
            let x = bind(expr, scope, ctx)?;
            let p = match konst(pattern, ctx)? {
                K::Str(s) => s.chars().collect(),
                _ => {
                    return Err(EmuError::new(
                        code::WRONG_VALUE_TYPE,
                        "LIKE needs a string pattern",
                    ));
                }
            };
            B::Like(Box::new(x), p, *negated)
        }
        Expr::IsNull { expr, negated } => B::IsNull(Box::new(bind(expr, scope, ctx)?), *negated),
        Expr::Lit(_) | Expr::Star | Expr::Func(..) => {
            if is_const(e) {
                B::Const(const_value(&konst(e, ctx)?, None, ctx)?)
            } else {
                return Err(EmuError::new(
                    code::INVALID_OPERATION,
                    "Unsupported expression in this position",
                ));
            }
        }
    })
}

/// A scalar during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum D<'a> {
    /// NULL.
    Null,
    /// Integer (all integer types, timestamps, bools in arithmetic).
    I(i128),
    /// Float.
    F(f64),
    /// Bytes (text types).
    S(&'a [u8]),
    /// Boolean.
    Bool(bool),
}

/// The datum at row `i` of a column.
pub fn datum(c: &ColumnData, i: usize) -> D<'_> {
    macro_rules! int {
        ($v:expr) => {
            match $v.get(i) {
                Some(x) => D::I(x as i128),
                None => D::Null,
            }
        };
    }
    match c {
        ColumnData::Bool(v) => v.get(i).map_or(D::Null, D::Bool),
        ColumnData::TinyInt(v) => int!(v),
        ColumnData::SmallInt(v) => int!(v),
        ColumnData::Int(v) => int!(v),
        ColumnData::BigInt(v) => int!(v),
        ColumnData::Timestamp(v) => int!(v),
        ColumnData::UTinyInt(v) => int!(v),
        ColumnData::USmallInt(v) => int!(v),
        ColumnData::UInt(v) => int!(v),
        ColumnData::UBigInt(v) => int!(v),
        ColumnData::Float(v) => v.get(i).map_or(D::Null, |x| D::F(f64::from(x))),
        ColumnData::Double(v) => v.get(i).map_or(D::Null, D::F),
        // DECIMAL compares by its unscaled integer: comparisons with other numbers are not
        // emulated (docs/emulator.md).
        ColumnData::Decimal(v) => v.get(i).map_or(D::Null, D::I),
        ColumnData::Decimal64(v) => int!(v),
        ColumnData::VarChar(v)
        | ColumnData::VarBinary(v)
        | ColumnData::Geometry(v)
        | ColumnData::Blob(v) => v.get(i).map_or(D::Null, D::S),
        // Text is stored as UTF-8: its bytes are the text's.
        ColumnData::NChar(v) | ColumnData::Json(v) => v.get(i).map_or(D::Null, D::S),
    }
}

/// A value as a datum.
pub fn value_datum(v: &Value) -> D<'_> {
    match v {
        Value::Null => D::Null,
        Value::Bool(b) => D::Bool(*b),
        Value::TinyInt(x) => D::I(i128::from(*x)),
        Value::SmallInt(x) => D::I(i128::from(*x)),
        Value::Int(x) => D::I(i128::from(*x)),
        Value::BigInt(x) | Value::Timestamp(x) => D::I(i128::from(*x)),
        Value::UTinyInt(x) => D::I(i128::from(*x)),
        Value::USmallInt(x) => D::I(i128::from(*x)),
        Value::UInt(x) => D::I(i128::from(*x)),
        Value::UBigInt(x) => D::I(i128::from(*x)),
        Value::Float(x) => D::F(f64::from(*x)),
        Value::Double(x) => D::F(*x),
        Value::VarChar(b) | Value::VarBinary(b) | Value::Geometry(b) | Value::Blob(b) => D::S(b),
        Value::NChar(s) | Value::Json(s) => D::S(s.as_bytes()),
        Value::Decimal(x) => D::I(*x),
        Value::Decimal64(x) => D::I(i128::from(*x)),
    }
}

/// Compares two datums; `None` when either is NULL or they are incomparable.
pub fn cmp_datum(a: &D<'_>, b: &D<'_>) -> Option<Ordering> {
    let num = |d: &D<'_>| match d {
        D::I(i) => Some(*i as f64),
        D::F(f) => Some(*f),
        D::Bool(b) => Some(f64::from(u8::from(*b))),
        D::S(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
        D::Null => None,
    };
    match (a, b) {
        (D::Null, _) | (_, D::Null) => None,
        (D::I(x), D::I(y)) => Some(x.cmp(y)),
        (D::S(x), D::S(y)) => Some(x.cmp(y)),
        (D::Bool(x), D::Bool(y)) => Some(x.cmp(y)),
        _ => num(a)?.partial_cmp(&num(b)?),
    }
}

/// A row to evaluate against.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    /// Data columns.
    pub cols: &'a [ColumnData],
    /// Row index.
    pub i: usize,
    /// Tag values.
    pub tags: &'a [Value],
    /// Table name.
    pub tbname: &'a str,
}

pub(super) fn eval<'a>(b: &'a B, r: &Row<'a>) -> D<'a> {
    match b {
        B::Ref(Ref::Col(c), _) => match r.cols.get(*c) {
            Some(col) if r.i < col.len() => datum(col, r.i),
            _ => D::Null,
        },
        B::Ref(Ref::Tag(t), _) => r.tags.get(*t).map_or(D::Null, value_datum),
        B::Ref(Ref::Tbname, _) => D::S(r.tbname.as_bytes()),
        B::Const(v) => value_datum(v),
        B::Arith(op, x, y) => {
            let (x, y) = (eval(x, r), eval(y, r));
            match (x, y) {
                (D::I(a), D::I(b)) if *op != ArithOp::Div => match op {
                    ArithOp::Add => a.checked_add(b).map_or(D::Null, D::I),
                    ArithOp::Sub => a.checked_sub(b).map_or(D::Null, D::I),
                    ArithOp::Mul => a.checked_mul(b).map_or(D::Null, D::I),
                    _ => a.checked_rem(b).map_or(D::Null, D::I),
                },
                (a, b) => {
                    let f = |d: D<'_>| match d {
                        D::I(i) => Some(i as f64),
                        D::F(f) => Some(f),
                        _ => None,
                    };
                    match (f(a), f(b)) {
                        (Some(a), Some(b)) => D::F(match op {
                            ArithOp::Add => a + b,
                            ArithOp::Sub => a - b,
                            ArithOp::Mul => a * b,
                            ArithOp::Div => a / b,
                            ArithOp::Rem => a % b,
                        }),
                        _ => D::Null,
                    }
                }
            }
        }
        other => match pred(other, r) {
            Some(v) => D::Bool(v),
            None => D::Null,
        },
    }
}

/// SQL LIKE matching with `%`, `_` and `\` escapes.
pub fn like_match(s: &[char], p: &[char]) -> bool {
    // Iterative wildcard match with backtracking on the last '%'.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && p[j] == '\\' && j + 1 < p.len() && (p[j + 1] == '%' || p[j + 1] == '_') {
            if s[i] == p[j + 1] {
                i += 1;
                j += 2;
                continue;
            }
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
            continue;
        } else if j < p.len() && (p[j] == '_' || p[j] == s[i]) {
            i += 1;
            j += 1;
            continue;
        }
        match star {
            Some((sj, si)) => {
                j = sj + 1;
                i = si + 1;
                star = Some((sj, si + 1));
            }
            None => return false,
        }
    }
    while j < p.len() && p[j] == '%' {
        j += 1;
    }
    j == p.len()
}

pub(super) fn pred(b: &B, r: &Row<'_>) -> Option<bool> {
    match b {
        B::Cmp(op, x, y) => {
            let o = cmp_datum(&eval(x, r), &eval(y, r))?;
            Some(match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
            })
        }
        B::And(x, y) => match (pred(x, r), pred(y, r)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        B::Or(x, y) => match (pred(x, r), pred(y, r)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        B::Not(x) => pred(x, r).map(|v| !v),
        B::Between(x, lo, hi, neg) => {
            let v = eval(x, r);
            let a = cmp_datum(&v, &eval(lo, r))?;
            let b = cmp_datum(&v, &eval(hi, r))?;
            let inside = a != Ordering::Less && b != Ordering::Greater;
            Some(inside != *neg)
        }
        B::In(x, list, neg) => {
            let v = eval(x, r);
            if v == D::Null {
                return None;
            }
            let found = list
                .iter()
                .any(|i| cmp_datum(&v, &eval(i, r)) == Some(Ordering::Equal));
            Some(found != *neg)
        }
        B::Like(x, p, neg) => match eval(x, r) {
            D::S(s) => {
                let chars: Vec<char> = String::from_utf8_lossy(s).chars().collect();
                Some(like_match(&chars, p) != *neg)
            }
            D::Null => None,
            _ => Some(*neg),
        },
        B::IsNull(x, neg) => Some((eval(x, r) == D::Null) != *neg),
        other => match eval(other, r) {
            D::Null => None,
            D::Bool(b) => Some(b),
            D::I(i) => Some(i != 0),
            D::F(f) => Some(f != 0.0),
            D::S(_) => Some(false),
        },
    }
}

/// Evaluates a predicate at row `i` (NULL counts as false).
pub fn eval_bool(
    b: &B,
    cols: &[ColumnData],
    i: usize,
    tags: &[Value],
    tbname: &str,
) -> Result<bool, EmuError> {
    Ok(pred(
        b,
        &Row {
            cols,
            i,
            tags,
            tbname,
        },
    ) == Some(true))
}

pub(super) fn uses_data(b: &B) -> bool {
    match b {
        B::Ref(Ref::Col(_), _) => true,
        B::Ref(..) | B::Const(_) => false,
        B::Cmp(_, x, y) | B::Arith(_, x, y) | B::And(x, y) | B::Or(x, y) => {
            uses_data(x) || uses_data(y)
        }
        B::Not(x) | B::Like(x, _, _) | B::IsNull(x, _) => uses_data(x),
        B::Between(x, y, z, _) => uses_data(x) || uses_data(y) || uses_data(z),
        B::In(x, l, _) => uses_data(x) || l.iter().any(uses_data),
    }
}

/// Timestamp bounds (inclusive) implied by top-level AND-ed conditions on column 0.
pub(super) fn ts_bounds(b: &B, lo: &mut i128, hi: &mut i128) {
    let c = |x: &B| match x {
        B::Const(Value::Timestamp(t)) | B::Const(Value::BigInt(t)) => Some(i128::from(*t)),
        _ => None,
    };
    let is_ts = |x: &B| matches!(x, B::Ref(Ref::Col(0), Ty::Timestamp));
    match b {
        B::And(x, y) => {
            ts_bounds(x, lo, hi);
            ts_bounds(y, lo, hi);
        }
        B::Cmp(op, x, y) => {
            let (op, v) = if is_ts(x) {
                match c(y) {
                    Some(v) => (*op, v),
                    None => return,
                }
            } else if is_ts(y) {
                let flipped = match op {
                    CmpOp::Lt => CmpOp::Gt,
                    CmpOp::Le => CmpOp::Ge,
                    CmpOp::Gt => CmpOp::Lt,
                    CmpOp::Ge => CmpOp::Le,
                    o => *o,
                };
                match c(x) {
                    Some(v) => (flipped, v),
                    None => return,
                }
            } else {
                return;
            };
            match op {
                CmpOp::Eq => {
                    *lo = (*lo).max(v);
                    *hi = (*hi).min(v);
                }
                CmpOp::Gt => *lo = (*lo).max(v + 1),
                CmpOp::Ge => *lo = (*lo).max(v),
                CmpOp::Lt => *hi = (*hi).min(v - 1),
                CmpOp::Le => *hi = (*hi).min(v),
                CmpOp::Ne => {}
            }
        }
        B::Between(x, l, h, false) if is_ts(x) => {
            if let (Some(l), Some(h)) = (c(l), c(h)) {
                *lo = (*lo).max(l);
                *hi = (*hi).min(h);
            }
        }
        _ => {}
    }
}

/// The AND-ed parts of a predicate.
pub(super) fn conjuncts(b: &B) -> Vec<&B> {
    let mut out = Vec::new();
    let mut stack = vec![b];
    while let Some(x) = stack.pop() {
        match x {
            B::And(l, r) => {
                stack.push(r);
                stack.push(l);
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether a conjunct is a bound on column 0 (timestamp) that [`ts_bounds`] applies exactly.
pub(super) fn is_ts_bound(b: &B) -> bool {
    let is_ts = |x: &B| matches!(x, B::Ref(Ref::Col(0), Ty::Timestamp));
    let is_c = |x: &B| {
        matches!(
            x,
            B::Const(Value::Timestamp(_)) | B::Const(Value::BigInt(_))
        )
    };
    match b {
        B::Cmp(op, x, y) => *op != CmpOp::Ne && ((is_ts(x) && is_c(y)) || (is_ts(y) && is_c(x))),
        B::Between(x, l, h, false) => is_ts(x) && is_c(l) && is_c(h),
        _ => false,
    }
}

/// Whether every conjunct is an exact timestamp bound or reads no row data.
pub(super) fn only_bounds_and_tags(b: &B) -> bool {
    conjuncts(b)
        .into_iter()
        .all(|c| is_ts_bound(c) || !uses_data(c))
}
