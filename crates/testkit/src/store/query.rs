//! SELECT: name binding, predicate evaluation, projection, aggregation, ordering and limits.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use super::catalog::{Catalog, TableKind, table_not_exist};
use super::convert::{Ctx, K, coerce, konst};
use super::exec::{Env, table_columns};
use super::{ResultSet, show};
use crate::error::{EmuError, code};
use crate::sql::ast::{ArithOp, CmpOp, Expr, Select, SelectItem};
use crate::types::{ColumnData, Field, Precision, Ty, Value};

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

    fn resolve(&self, name: &str) -> Result<Ref, EmuError> {
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

    fn field(&self, r: Ref) -> Field {
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

fn is_const(e: &Expr<'_>) -> bool {
    match e {
        Expr::Lit(_) => true,
        Expr::Neg(x) => is_const(x),
        Expr::Arith(_, a, b) => is_const(a) && is_const(b),
        Expr::Func(n, a) => a.is_empty() && n == "today",
        _ => false,
    }
}

/// A folded constant as a value, typed like `target` when it is a timestamp or text type.
fn const_value(k: &K<'_>, target: Option<(Ty, &Field)>, ctx: &Ctx) -> Result<Value, EmuError> {
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
            match $v[i] {
                Some(x) => D::I(x as i128),
                None => D::Null,
            }
        };
    }
    match c {
        ColumnData::Bool(v) => v[i].map_or(D::Null, D::Bool),
        ColumnData::TinyInt(v) => int!(v),
        ColumnData::SmallInt(v) => int!(v),
        ColumnData::Int(v) => int!(v),
        ColumnData::BigInt(v) => int!(v),
        ColumnData::Timestamp(v) => int!(v),
        ColumnData::UTinyInt(v) => int!(v),
        ColumnData::USmallInt(v) => int!(v),
        ColumnData::UInt(v) => int!(v),
        ColumnData::UBigInt(v) => int!(v),
        ColumnData::Float(v) => v[i].map_or(D::Null, |x| D::F(f64::from(x))),
        ColumnData::Double(v) => v[i].map_or(D::Null, D::F),
        // DECIMAL compares by its unscaled integer: comparisons with other numbers are not
        // emulated (docs/emulator.md).
        ColumnData::Decimal(v) => v[i].map_or(D::Null, D::I),
        ColumnData::Decimal64(v) => int!(v),
        ColumnData::VarChar(v)
        | ColumnData::VarBinary(v)
        | ColumnData::Geometry(v)
        | ColumnData::Blob(v) => v[i].as_deref().map_or(D::Null, D::S),
        ColumnData::NChar(v) | ColumnData::Json(v) => {
            v[i].as_deref().map_or(D::Null, |s| D::S(s.as_bytes()))
        }
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

fn eval<'a>(b: &'a B, r: &Row<'a>) -> D<'a> {
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

fn pred(b: &B, r: &Row<'_>) -> Option<bool> {
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

fn uses_data(b: &B) -> bool {
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
fn ts_bounds(b: &B, lo: &mut i128, hi: &mut i128) {
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
fn conjuncts(b: &B) -> Vec<&B> {
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
fn is_ts_bound(b: &B) -> bool {
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
fn only_bounds_and_tags(b: &B) -> bool {
    conjuncts(b)
        .into_iter()
        .all(|c| is_ts_bound(c) || !uses_data(c))
}

/// One table's worth of rows feeding a query.
struct Seg<'a> {
    cols: &'a [ColumnData],
    tags: &'a [Value],
    tbname: &'a str,
}

impl Seg<'_> {
    fn len(&self) -> usize {
        self.cols.first().map_or(0, ColumnData::len)
    }
}

/// Selected rows of a segment.
#[derive(Debug, Clone)]
enum Sel {
    Range(usize, usize),
    Idx(Vec<usize>),
}

impl Sel {
    fn len(&self) -> usize {
        match self {
            Sel::Range(a, b) => b - a,
            Sel::Idx(v) => v.len(),
        }
    }
    fn indices(&self) -> Vec<usize> {
        match self {
            Sel::Range(a, b) => (*a..*b).collect(),
            Sel::Idx(v) => v.clone(),
        }
    }
    /// Keeps `skip..skip+take` of the selection.
    fn window(&self, skip: usize, take: usize) -> Sel {
        match self {
            Sel::Range(a, b) => {
                let s = (a + skip).min(*b);
                Sel::Range(s, (s + take).min(*b))
            }
            Sel::Idx(v) => Sel::Idx(v.iter().skip(skip).take(take).copied().collect()),
        }
    }
}

fn select_rows(seg: &Seg<'_>, filter: Option<&B>, ts_sorted: bool) -> Sel {
    let n = seg.len();
    let Some(p) = filter else {
        return Sel::Range(0, n);
    };
    let (mut lo, mut hi) = (0, n);
    if ts_sorted && let Some(ts) = seg.cols.first().and_then(ColumnData::timestamps) {
        let (mut l, mut h) = (i128::from(i64::MIN), i128::from(i64::MAX));
        ts_bounds(p, &mut l, &mut h);
        let key = |t: &Option<i64>| i128::from(t.unwrap_or(i64::MIN));
        lo = ts.partition_point(|t| key(t) < l);
        hi = ts.partition_point(|t| key(t) <= h).max(lo);
    }
    if only_bounds_and_tags(p) {
        // Timestamp bounds are exact (already applied) and the rest does not read rows.
        let row = Row {
            cols: seg.cols,
            i: 0,
            tags: seg.tags,
            tbname: seg.tbname,
        };
        let rest_ok = conjuncts(p)
            .into_iter()
            .filter(|c| !is_ts_bound(c))
            .all(|c| pred(c, &row) == Some(true));
        return if rest_ok && ts_sorted {
            Sel::Range(lo, hi)
        } else if rest_ok {
            // Unsorted sources keep per-row evaluation of the bounds.
            let mut idx = Vec::new();
            for i in 0..n {
                let row = Row {
                    cols: seg.cols,
                    i,
                    tags: seg.tags,
                    tbname: seg.tbname,
                };
                if pred(p, &row) == Some(true) {
                    idx.push(i);
                }
            }
            Sel::Idx(idx)
        } else {
            Sel::Range(0, 0)
        };
    }
    if !uses_data(p) {
        let row = Row {
            cols: seg.cols,
            i: 0,
            tags: seg.tags,
            tbname: seg.tbname,
        };
        return if pred(p, &row) == Some(true) {
            Sel::Range(lo, hi)
        } else {
            Sel::Range(0, 0)
        };
    }
    let mut idx = Vec::new();
    for i in lo..hi {
        let row = Row {
            cols: seg.cols,
            i,
            tags: seg.tags,
            tbname: seg.tbname,
        };
        if pred(p, &row) == Some(true) {
            idx.push(i);
        }
    }
    Sel::Idx(idx)
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Count,
    First,
    Last,
    LastRow,
    Min,
    Max,
    Sum,
    Avg,
}

/// One output column.
#[derive(Debug, Clone)]
enum Out {
    Ref(Ref),
    Const(Value),
    Agg(Agg, Option<Ref>),
    Expr(B),
}

/// Runs a SELECT.
pub fn select(cat: &Catalog, env: &Env<'_>, s: &Select<'_>) -> Result<ResultSet, EmuError> {
    let Some(from) = &s.from else {
        return select_no_from(env, s);
    };
    let sys = from.db.as_deref().or(env.db).is_some_and(|d| {
        d.eq_ignore_ascii_case("information_schema") || d.eq_ignore_ascii_case("performance_schema")
    });
    if sys {
        let (fields, cols) = show::system_table(cat, env, &from.name)?;
        let scope = Scope::new(fields, Vec::new());
        let segs = [Seg {
            cols: &cols,
            tags: &[],
            tbname: &from.name,
        }];
        let ctx = Ctx::new(Precision::Millisecond, env.now_ns);
        return run(&scope, &segs, false, false, s, &ctx, Precision::Millisecond);
    }
    let dbn = env.db_of(from)?;
    let db = cat.db(dbn)?;
    let ctx = Ctx::new(db.opts.precision, env.now_ns);
    if let Some(t) = db.tables.get(&from.name) {
        let (tags_f, tags_v): (Vec<Field>, &[Value]) = match &t.kind {
            TableKind::Child { stable, tags } => (
                db.stables
                    .get(stable)
                    .map(|st| st.tags.clone())
                    .unwrap_or_default(),
                tags,
            ),
            TableKind::Normal { .. } => (Vec::new(), &[]),
        };
        let scope = Scope::new(table_columns(db, t).to_vec(), tags_f);
        let segs = [Seg {
            cols: &t.data.cols,
            tags: tags_v,
            tbname: &t.name,
        }];
        return run(&scope, &segs, true, false, s, &ctx, db.opts.precision);
    }
    if let Some(st) = db.stables.get(&from.name) {
        let scope = Scope::new(st.columns.clone(), st.tags.clone());
        let segs: Vec<Seg<'_>> = db
            .tables
            .values()
            .filter_map(|t| match &t.kind {
                TableKind::Child { stable, tags } if *stable == st.name => Some(Seg {
                    cols: &t.data.cols,
                    tags,
                    tbname: &t.name,
                }),
                _ => None,
            })
            .collect();
        return run(&scope, &segs, true, true, s, &ctx, db.opts.precision);
    }
    Err(table_not_exist(&from.name))
}

fn select_no_from(env: &Env<'_>, s: &Select<'_>) -> Result<ResultSet, EmuError> {
    let ctx = Ctx::new(Precision::Millisecond, env.now_ns);
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for item in &s.items {
        let SelectItem::Expr { expr, alias, text } = item else {
            return Err(EmuError::syntax("*"));
        };
        let name = alias.clone().unwrap_or_else(|| text.clone());
        let v = match expr {
            Expr::Func(f, args) if args.is_empty() => match f.as_str() {
                "server_version" | "client_version" => {
                    Value::VarChar(env.server_version.as_bytes().to_vec())
                }
                "database" => env
                    .db
                    .map_or(Value::Null, |d| Value::VarChar(d.as_bytes().to_vec())),
                "server_status" => Value::Int(1),
                "current_user" | "user" => Value::VarChar(b"root@localhost".to_vec()),
                "timezone" => Value::VarChar(b"UTC (UTC, +0000)".to_vec()),
                "today" => const_value(&konst(expr, &ctx)?, None, &ctx)?,
                _ => {
                    return Err(EmuError::new(
                        code::INVALID_FUNCTION,
                        format!("Invalid function name: {f}"),
                    ));
                }
            },
            e if is_const(e) => const_value(&konst(e, &ctx)?, None, &ctx)?,
            _ => {
                return Err(EmuError::new(
                    code::INVALID_COLUMN,
                    format!("Invalid column name: {text}"),
                ));
            }
        };
        let (ty, bytes) = match &v {
            Value::Null => (Ty::VarChar, 0),
            Value::VarChar(b) => (Ty::VarChar, b.len() as u32),
            other => {
                let ty = other.ty().unwrap_or(Ty::VarChar);
                (ty, ty.fixed_width().unwrap_or(0) as u32)
            }
        };
        let mut c = ColumnData::new(ty);
        c.push(v);
        fields.push(Field::new(name, ty, bytes));
        columns.push(c);
    }
    Ok(ResultSet {
        fields,
        precision: Precision::Millisecond,
        columns,
    })
}

fn agg_of(name: &str) -> Option<Agg> {
    Some(match name {
        "count" => Agg::Count,
        "first" => Agg::First,
        "last" => Agg::Last,
        "last_row" => Agg::LastRow,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "sum" => Agg::Sum,
        "avg" => Agg::Avg,
        _ => return None,
    })
}

fn output_of(e: &Expr<'_>, scope: &Scope, ctx: &Ctx) -> Result<(Out, Ty, u32), EmuError> {
    match e {
        Expr::Col(n) => {
            let r = scope.resolve(n)?;
            let f = scope.field(r);
            Ok((Out::Ref(r), f.ty, f.bytes))
        }
        Expr::Func(name, args) if agg_of(name).is_some() => {
            let agg = agg_of(name).unwrap_or(Agg::Count);
            let arg = match args.as_slice() {
                [Expr::Star] if agg == Agg::Count => None,
                [Expr::Star] => Some(Ref::Col(0)),
                [Expr::Col(c)] => Some(scope.resolve(c)?),
                [e] if agg == Agg::Count && is_const(e) => None,
                _ => {
                    return Err(EmuError::new(
                        code::INVALID_FUNCTION,
                        format!("Invalid function para number: {name}"),
                    ));
                }
            };
            let (ty, bytes) = match (agg, arg) {
                (Agg::Count, _) => (Ty::BigInt, 8),
                (Agg::Avg, _) => (Ty::Double, 8),
                (Agg::Sum, Some(r)) => match scope.field(r).ty {
                    Ty::Float | Ty::Double => (Ty::Double, 8),
                    Ty::UTinyInt | Ty::USmallInt | Ty::UInt | Ty::UBigInt => (Ty::UBigInt, 8),
                    _ => (Ty::BigInt, 8),
                },
                (_, Some(r)) => {
                    let f = scope.field(r);
                    (f.ty, f.bytes)
                }
                (_, None) => (Ty::BigInt, 8),
            };
            Ok((Out::Agg(agg, arg), ty, bytes))
        }
        e if is_const(e) => {
            let v = const_value(&konst(e, ctx)?, None, ctx)?;
            let (ty, bytes) = match &v {
                Value::VarChar(b) => (Ty::VarChar, b.len() as u32),
                Value::Null => (Ty::VarChar, 0),
                other => {
                    let t = other.ty().unwrap_or(Ty::BigInt);
                    (t, t.fixed_width().unwrap_or(0) as u32)
                }
            };
            Ok((Out::Const(v), ty, bytes))
        }
        Expr::Func(name, _) => Err(EmuError::new(
            code::INVALID_FUNCTION,
            format!("Invalid function name: {name}"),
        )),
        e => {
            let b = bind(e, scope, ctx)?;
            let ty = match &b {
                B::Arith(..) => Ty::Double,
                _ => Ty::Bool,
            };
            Ok((Out::Expr(b), ty, 8))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    scope: &Scope,
    segs: &[Seg<'_>],
    ts_sorted: bool,
    is_stable: bool,
    s: &Select<'_>,
    ctx: &Ctx,
    precision: Precision,
) -> Result<ResultSet, EmuError> {
    // Output items.
    let mut outs: Vec<Out> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    for item in &s.items {
        match item {
            SelectItem::Star => {
                for i in 0..scope.cols.len() {
                    outs.push(Out::Ref(Ref::Col(i)));
                    fields.push(scope.cols[i].clone());
                }
                if is_stable {
                    for i in 0..scope.tags.len() {
                        outs.push(Out::Ref(Ref::Tag(i)));
                        fields.push(scope.tags[i].clone());
                    }
                }
            }
            SelectItem::Expr {
                expr: Expr::Func(fname, args),
                alias: None,
                ..
            } if matches!(args.as_slice(), [Expr::Star])
                && agg_of(fname).is_some_and(|a| a != Agg::Count) =>
            {
                // `last(*)` and friends: one output per data column.
                let agg = agg_of(fname).unwrap_or(Agg::Last);
                for (i, f) in scope.cols.iter().enumerate() {
                    let (ty, bytes) = match agg {
                        Agg::Avg | Agg::Sum => (Ty::Double, 8),
                        _ => (f.ty, f.bytes),
                    };
                    outs.push(Out::Agg(agg, Some(Ref::Col(i))));
                    fields.push(Field::new(format!("{fname}({})", f.name), ty, bytes));
                }
            }
            SelectItem::Expr { expr, alias, text } => {
                let (o, ty, bytes) = output_of(expr, scope, ctx)?;
                let name = match (alias, expr) {
                    (Some(a), _) => a.clone(),
                    (None, Expr::Col(n)) => match o {
                        Out::Ref(r) => {
                            let f = scope.field(r);
                            if f.name.eq_ignore_ascii_case(n) {
                                n.clone()
                            } else {
                                f.name
                            }
                        }
                        _ => n.clone(),
                    },
                    (None, _) => text.clone(),
                };
                outs.push(o);
                fields.push(Field::new(name, ty, bytes));
            }
        }
    }
    let visible = outs.len();
    // ORDER BY keys: an output column (by alias/name/position) or a hidden extra column.
    let mut order: Vec<(usize, bool)> = Vec::new();
    for (e, desc) in &s.order {
        let pos = match e {
            Expr::Lit(crate::sql::ast::Lit::Num { neg: false, text }) => {
                let n: usize = text.parse().map_err(|_| EmuError::syntax(text))?;
                if n == 0 || n > visible {
                    return Err(EmuError::syntax(text));
                }
                Some(n - 1)
            }
            Expr::Col(n) => fields[..visible].iter().position(|f| &f.name == n),
            _ => None,
        };
        let pos = match pos {
            Some(p) => p,
            None => {
                let (o, ty, bytes) = output_of(e, scope, ctx)?;
                outs.push(o);
                fields.push(Field::new("_order", ty, bytes));
                outs.len() - 1
            }
        };
        order.push((pos, *desc));
    }
    let is_agg = outs.iter().any(|o| matches!(o, Out::Agg(..)));
    let pred = match &s.filter {
        Some(f) => Some(bind(f, scope, ctx)?),
        None => None,
    };
    let mut partition: Vec<B> = Vec::new();
    for p in &s.partition {
        let b = bind(p, scope, ctx)?;
        if uses_data(&b) {
            return Err(EmuError::new(
                code::INVALID_OPERATION,
                "PARTITION BY supports tbname and tags only",
            ));
        }
        partition.push(b);
    }
    let tag_only = !outs.iter().any(|o| match o {
        Out::Ref(Ref::Col(_)) | Out::Agg(..) => true,
        Out::Expr(b) => uses_data(b),
        _ => false,
    });
    let mut columns: Vec<ColumnData> = fields.iter().map(|f| ColumnData::new(f.ty)).collect();

    if is_agg {
        aggregate(
            &outs,
            &fields,
            segs,
            pred.as_ref(),
            &partition,
            ts_sorted,
            &mut columns,
        )?;
    } else if (s.tags || s.distinct) && tag_only && !segs.is_empty() && is_stable {
        // One row per child table.
        for seg in segs {
            let sel = select_rows(seg, pred.as_ref(), ts_sorted);
            let keep = match &pred {
                Some(p) if uses_data(p) => sel.len() > 0,
                Some(p) => pred_const(p, seg),
                None => true,
            };
            if keep {
                emit(&outs, seg, &Sel::Range(0, 1), &mut columns, true)?;
            }
        }
    } else {
        let mut sels: Vec<Sel> = segs
            .iter()
            .map(|seg| select_rows(seg, pred.as_ref(), ts_sorted))
            .collect();
        let single_ts_order = order.len() == 1
            && segs.len() <= 1
            && ts_sorted
            && matches!(outs[order[0].0], Out::Ref(Ref::Col(0)));
        let needs_sort = !order.is_empty() && !single_ts_order;
        if single_ts_order && order[0].1 {
            for sel in &mut sels {
                let mut v = sel.indices();
                v.reverse();
                *sel = Sel::Idx(v);
            }
        }
        if !needs_sort && !s.distinct {
            // Apply OFFSET/LIMIT before materialising.
            let mut skip = s.offset.unwrap_or(0) as usize;
            let mut take = s.limit.map_or(usize::MAX, |l| l as usize);
            for sel in &mut sels {
                let n = sel.len();
                let sk = skip.min(n);
                let tk = take.min(n - sk);
                *sel = sel.window(sk, tk);
                skip -= sk;
                take -= tk;
            }
        }
        for (seg, sel) in segs.iter().zip(&sels) {
            emit(&outs, seg, sel, &mut columns, false)?;
        }
        if !needs_sort && !s.distinct {
            columns.truncate(visible);
            fields.truncate(visible);
            return Ok(ResultSet {
                fields,
                precision,
                columns,
            });
        }
    }
    if s.distinct {
        let n = columns.first().map_or(0, ColumnData::len);
        let mut seen = HashSet::new();
        let keep: Vec<usize> = (0..n)
            .filter(|&i| {
                let key: Vec<String> = columns[..visible]
                    .iter()
                    .map(|c| format!("{:?}", c.get(i)))
                    .collect();
                seen.insert(key)
            })
            .collect();
        if keep.len() != n {
            columns = columns.iter().map(|c| c.take(&keep)).collect();
        }
    }
    if !order.is_empty() {
        let n = columns.first().map_or(0, ColumnData::len);
        let mut perm: Vec<usize> = (0..n).collect();
        perm.sort_by(|&a, &b| {
            for &(k, desc) in &order {
                let (x, y) = (datum(&columns[k], a), datum(&columns[k], b));
                let o = match (&x, &y) {
                    (D::Null, D::Null) => Ordering::Equal,
                    (D::Null, _) => Ordering::Less,
                    (_, D::Null) => Ordering::Greater,
                    _ => cmp_datum(&x, &y).unwrap_or(Ordering::Equal),
                };
                let o = if desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        columns = columns.iter().map(|c| c.take(&perm)).collect();
    }
    columns.truncate(visible);
    fields.truncate(visible);
    let n = columns.first().map_or(0, ColumnData::len);
    let skip = (s.offset.unwrap_or(0) as usize).min(n);
    let take = s.limit.map_or(n - skip, |l| (l as usize).min(n - skip));
    if skip > 0 || take < n - skip {
        columns = columns.iter().map(|c| c.slice(skip..skip + take)).collect();
    }
    Ok(ResultSet {
        fields,
        precision,
        columns,
    })
}

fn pred_const(p: &B, seg: &Seg<'_>) -> bool {
    let row = Row {
        cols: seg.cols,
        i: 0,
        tags: seg.tags,
        tbname: seg.tbname,
    };
    pred(p, &row) == Some(true)
}

fn d_to_value(d: &D<'_>, ty: Ty) -> Value {
    let mut c = ColumnData::new(ty);
    let v = match (d, ty) {
        (D::Null, _) => Value::Null,
        (D::Bool(b), Ty::Bool) => Value::Bool(*b),
        (D::I(i), Ty::Bool) => Value::Bool(*i != 0),
        (D::F(f), Ty::Double) => Value::Double(*f),
        (D::I(i), Ty::Double) => Value::Double(*i as f64),
        (D::Bool(b), Ty::Double) => Value::Double(f64::from(u8::from(*b))),
        (D::F(f), Ty::Bool) => Value::Bool(*f != 0.0),
        _ => Value::Null,
    };
    if c.push(v.clone()) { v } else { Value::Null }
}

/// Appends a segment's selected rows for each output item.
fn emit(
    outs: &[Out],
    seg: &Seg<'_>,
    sel: &Sel,
    columns: &mut [ColumnData],
    one: bool,
) -> Result<(), EmuError> {
    let n = if one { 1 } else { sel.len() };
    for (o, col) in outs.iter().zip(columns.iter_mut()) {
        let ok = match o {
            Out::Ref(Ref::Col(i)) => match (sel, seg.cols.get(*i)) {
                (_, None) => col.push_repeat(&Value::Null, n),
                (Sel::Range(a, b), Some(c)) => col.extend_range(c, *a..*b),
                (Sel::Idx(v), Some(c)) => col.extend_indices(c, v),
            },
            Out::Ref(Ref::Tag(i)) => col.push_repeat(seg.tags.get(*i).unwrap_or(&Value::Null), n),
            Out::Ref(Ref::Tbname) => {
                col.push_repeat(&Value::VarChar(seg.tbname.as_bytes().to_vec()), n)
            }
            Out::Const(v) => col.push_repeat(v, n),
            Out::Expr(b) => {
                let ty = col.ty();
                for i in sel.indices().into_iter().take(n) {
                    let row = Row {
                        cols: seg.cols,
                        i,
                        tags: seg.tags,
                        tbname: seg.tbname,
                    };
                    col.push(d_to_value(&eval(b, &row), ty));
                }
                true
            }
            Out::Agg(..) => false,
        };
        if !ok {
            return Err(EmuError::new(
                code::INVALID_OPERATION,
                "internal: output type mismatch",
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Acc {
    Count(i64),
    Pick(Option<(i128, Value)>),
    Sum(Option<f64>, Option<i128>),
    Avg(f64, i64),
}

fn aggregate(
    outs: &[Out],
    fields: &[Field],
    segs: &[Seg<'_>],
    pred: Option<&B>,
    partition: &[B],
    ts_sorted: bool,
    columns: &mut [ColumnData],
) -> Result<(), EmuError> {
    for o in outs {
        let data = match o {
            Out::Ref(Ref::Col(_)) => true,
            Out::Expr(b) => uses_data(b),
            _ => false,
        };
        if data {
            return Err(EmuError::new(
                code::INVALID_OPERATION,
                "Not a single-group group function",
            ));
        }
    }
    // Groups in order of first appearance.
    let mut groups: Vec<(Vec<usize>, usize)> = Vec::new(); // (segment indices, representative)
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (si, seg) in segs.iter().enumerate() {
        let key = if partition.is_empty() {
            String::new()
        } else {
            let row = Row {
                cols: seg.cols,
                i: 0,
                tags: seg.tags,
                tbname: seg.tbname,
            };
            partition
                .iter()
                .map(|b| format!("{:?}", eval(b, &row)))
                .collect::<Vec<_>>()
                .join("\u{1}")
        };
        match by_key.get(&key) {
            Some(&g) => groups[g].0.push(si),
            None => {
                by_key.insert(key, groups.len());
                groups.push((vec![si], si));
            }
        }
    }
    let only_counts = outs
        .iter()
        .all(|o| matches!(o, Out::Agg(Agg::Count, _) | Out::Const(_)));
    if groups.is_empty() && partition.is_empty() {
        groups.push((Vec::new(), usize::MAX));
    }
    for (members, rep) in &groups {
        let mut accs: Vec<Acc> = outs
            .iter()
            .map(|o| match o {
                Out::Agg(Agg::Count, _) => Acc::Count(0),
                Out::Agg(Agg::Sum, _) => Acc::Sum(None, None),
                Out::Agg(Agg::Avg, _) => Acc::Avg(0.0, 0),
                _ => Acc::Pick(None),
            })
            .collect();
        let mut total = 0usize;
        for &si in members {
            let seg = &segs[si];
            let sel = select_rows(seg, pred, ts_sorted);
            total += sel.len();
            let idx = sel.indices();
            for (k, o) in outs.iter().enumerate() {
                let Out::Agg(agg, arg) = o else { continue };
                accumulate(*agg, *arg, seg, &idx, ts_sorted, &mut accs[k]);
            }
        }
        if total == 0 && !(only_counts && partition.is_empty()) {
            continue;
        }
        for (k, o) in outs.iter().enumerate() {
            let v = match (o, &accs[k]) {
                (Out::Agg(..), Acc::Count(c)) => Value::BigInt(*c),
                (Out::Agg(..), Acc::Pick(p)) => p.as_ref().map_or(Value::Null, |(_, v)| v.clone()),
                (Out::Agg(..), Acc::Avg(s, c)) => {
                    if *c == 0 {
                        Value::Null
                    } else {
                        Value::Double(s / *c as f64)
                    }
                }
                (Out::Agg(..), Acc::Sum(f, i)) => match (fields[k].ty, f, i) {
                    (Ty::Double, Some(f), _) => Value::Double(*f),
                    (Ty::UBigInt, _, Some(i)) => {
                        Value::UBigInt(u64::try_from(*i).unwrap_or(u64::MAX))
                    }
                    (Ty::BigInt, _, Some(i)) => {
                        Value::BigInt(i64::try_from(*i).unwrap_or(i64::MAX))
                    }
                    _ => Value::Null,
                },
                (Out::Const(v), _) => v.clone(),
                (Out::Ref(r), _) => match segs.get(*rep) {
                    Some(seg) => match r {
                        Ref::Tag(i) => seg.tags.get(*i).cloned().unwrap_or(Value::Null),
                        Ref::Tbname => Value::VarChar(seg.tbname.as_bytes().to_vec()),
                        Ref::Col(_) => Value::Null,
                    },
                    None => Value::Null,
                },
                (Out::Expr(b), _) => match segs.get(*rep) {
                    Some(seg) => {
                        let row = Row {
                            cols: seg.cols,
                            i: 0,
                            tags: seg.tags,
                            tbname: seg.tbname,
                        };
                        d_to_value(&eval(b, &row), fields[k].ty)
                    }
                    None => Value::Null,
                },
            };
            if !columns[k].push(v) {
                columns[k].push_null();
            }
        }
    }
    Ok(())
}

fn accumulate(
    agg: Agg,
    arg: Option<Ref>,
    seg: &Seg<'_>,
    idx: &[usize],
    ts_sorted: bool,
    acc: &mut Acc,
) {
    let value_at = |i: usize| -> Value {
        match arg {
            Some(Ref::Col(c)) => seg.cols.get(c).map_or(Value::Null, |col| col.get(i)),
            Some(Ref::Tag(t)) => seg.tags.get(t).cloned().unwrap_or(Value::Null),
            Some(Ref::Tbname) => Value::VarChar(seg.tbname.as_bytes().to_vec()),
            None => Value::Null,
        }
    };
    let is_null = |i: usize| match arg {
        Some(Ref::Col(c)) => seg.cols.get(c).is_none_or(|col| col.is_null(i)),
        Some(Ref::Tag(t)) => seg.tags.get(t).is_none_or(Value::is_null),
        Some(Ref::Tbname) => false,
        None => false,
    };
    let key = |i: usize| -> i128 {
        if ts_sorted {
            seg.cols.first().map_or(0, |c| match datum(c, i) {
                D::I(t) => t,
                _ => 0,
            })
        } else {
            i as i128
        }
    };
    match (agg, acc) {
        (Agg::Count, Acc::Count(c)) => {
            *c += match arg {
                None => idx.len() as i64,
                Some(_) => idx.iter().filter(|&&i| !is_null(i)).count() as i64,
            };
        }
        (Agg::First, Acc::Pick(p)) => {
            if let Some(&i) = idx.iter().find(|&&i| !is_null(i)) {
                let k = key(i);
                if p.as_ref().is_none_or(|(pk, _)| k < *pk) {
                    *p = Some((k, value_at(i)));
                }
            }
        }
        (Agg::Last, Acc::Pick(p)) => {
            if let Some(&i) = idx.iter().rev().find(|&&i| !is_null(i)) {
                let k = key(i);
                if p.as_ref().is_none_or(|(pk, _)| k >= *pk) {
                    *p = Some((k, value_at(i)));
                }
            }
        }
        (Agg::LastRow, Acc::Pick(p)) => {
            if let Some(&i) = idx.last() {
                let k = key(i);
                if p.as_ref().is_none_or(|(pk, _)| k >= *pk) {
                    *p = Some((k, value_at(i)));
                }
            }
        }
        (Agg::Min | Agg::Max, Acc::Pick(p)) => {
            for &i in idx {
                if is_null(i) {
                    continue;
                }
                let v = value_at(i);
                let better = match p {
                    None => true,
                    Some((_, cur)) => {
                        let o = cmp_datum(&value_datum(&v), &value_datum(cur));
                        if agg == Agg::Min {
                            o == Some(Ordering::Less)
                        } else {
                            o == Some(Ordering::Greater)
                        }
                    }
                };
                if better {
                    *p = Some((0, v));
                }
            }
        }
        (Agg::Sum, Acc::Sum(f, s)) => {
            for &i in idx {
                match value_datum(&value_at(i)) {
                    D::I(x) => *s = Some(s.unwrap_or(0).saturating_add(x)),
                    D::F(x) => *f = Some(f.unwrap_or(0.0) + x),
                    _ => {}
                }
            }
        }
        (Agg::Avg, Acc::Avg(s, c)) => {
            for &i in idx {
                match value_datum(&value_at(i)) {
                    D::I(x) => {
                        *s += x as f64;
                        *c += 1;
                    }
                    D::F(x) => {
                        *s += x;
                        *c += 1;
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}
