//! SELECT execution: row selection, projection, aggregation, ordering and limits (the
//! expressions they evaluate are in `expr`).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use super::catalog::{Catalog, TableKind, table_not_exist};
use super::convert::{Ctx, konst};
use super::exec::{Env, table_columns};
use super::expr::{
    B, D, Ref, Row, Scope, bind, cmp_datum, conjuncts, const_value, datum, eval, is_const,
    is_ts_bound, only_bounds_and_tags, pred, ts_bounds, uses_data, value_datum,
};
use super::{ResultSet, show};
use crate::error::{EmuError, code};
use crate::sql::ast::{Expr, Lit, Select, SelectItem};
use crate::types::{ColumnData, Field, Precision, Ty, Value};

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

/// Applies `OFFSET offset LIMIT limit` to selections that are output one after another.
fn limit_in_order<'a>(
    sels: impl Iterator<Item = &'a mut Sel>,
    offset: Option<u64>,
    limit: Option<u64>,
) {
    let mut skip = offset.unwrap_or(0) as usize;
    let mut take = limit.map_or(usize::MAX, |l| l as usize);
    for sel in sels {
        let n = sel.len();
        let sk = skip.min(n);
        let tk = take.min(n - sk);
        if sk > 0 || tk < n {
            *sel = sel.window(sk, tk);
        }
        skip -= sk;
        take -= tk;
    }
}

/// The first index in `0..n` where `pred` turns false (`pred` true on a prefix), as
/// `slice::partition_point`.
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
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
        let key = |i: usize| i128::from(ts.get(i).unwrap_or(i64::MIN));
        lo = partition_point(n, |i| key(i) < l);
        hi = partition_point(n, |i| key(i) <= h).max(lo);
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
        let narrow = show::Narrow::of(s.filter.as_ref());
        let (fields, cols) = show::system_table(cat, env, &from.name, &narrow)?;
        let scope = Scope::new(fields, Vec::new());
        let segs = [Seg {
            cols: &cols,
            tags: &[],
            tbname: &from.name,
        }];
        let ctx = Ctx::new(Precision::Millisecond, env.now_ns);
        return run(
            &scope,
            &segs,
            false,
            false,
            None,
            s,
            &ctx,
            Precision::Millisecond,
        );
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
        return run(&scope, &segs, true, false, None, s, &ctx, db.opts.precision);
    }
    if let Some(st) = db.stables.get(&from.name) {
        let scope = Scope::new(st.columns.clone(), st.tags.clone());
        // A `TBNAME IN (…)` or `TBNAME = '…'` conjunct names the children to scan, as
        // TDengine turns it into a table list before the scan (`optimizeTbnameInCond`,
        // source/libs/executor/src/executil.c); the whole WHERE still filters every row, so
        // this only spares the other children.
        let named = s.filter.as_ref().and_then(tbname_list);
        let children: Box<dyn Iterator<Item = &_>> = match named {
            Some(names) => Box::new(names.into_iter().filter_map(|n| db.tables.get(n))),
            None => Box::new(db.tables.values()),
        };
        let segs: Vec<Seg<'_>> = children
            .filter_map(|t| match &t.kind {
                TableKind::Child { stable, tags } if *stable == st.name => Some(Seg {
                    cols: &t.data.cols,
                    tags,
                    tbname: &t.name,
                }),
                _ => None,
            })
            .collect();
        let width = fileset_width(db.opts.duration, db.opts.precision);
        return run(&scope, &segs, true, true, width, s, &ctx, db.opts.precision);
    }
    Err(table_not_exist(&from.name))
}

/// The table names a `TBNAME IN ('a', …)` or `TBNAME = 'a'` conjunct of `filter` allows,
/// sorted and without repeats (the order a scan of every child would give), or `None` when
/// no conjunct names them that way.
fn tbname_list<'e>(filter: &'e Expr<'_>) -> Option<Vec<&'e str>> {
    let is_tbname =
        |e: &Expr<'_>| matches!(e, Expr::Col(c) if c.as_str().eq_ignore_ascii_case("tbname"));
    let text = |e: &'e Expr<'_>| match e {
        Expr::Lit(Lit::Str(t)) => Some(t.as_ref()),
        _ => None,
    };
    let mut names = match filter {
        Expr::And(a, b) => return tbname_list(a).or_else(|| tbname_list(b)),
        Expr::In {
            expr,
            list,
            negated: false,
        } if is_tbname(expr) => list.iter().map(text).collect::<Option<Vec<_>>>()?,
        e => match show::column_equals_text(e) {
            Some((col, name)) if col.eq_ignore_ascii_case("tbname") => vec![name],
            _ => return None,
        },
    };
    names.sort_unstable();
    names.dedup();
    Some(names)
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

/// Runs `s` over `segs` (one per table). `fileset` is the width of the database's file set
/// windows in timestamp units, for a super-table scan: a plain projection over several tables
/// then returns its rows window by window as TDengine's reader does (`fileset_runs`).
#[allow(clippy::too_many_arguments)]
fn run(
    scope: &Scope,
    segs: &[Seg<'_>],
    ts_sorted: bool,
    is_stable: bool,
    fileset: Option<i64>,
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
        // A plain projection over several children comes out in the reader's order: file set
        // window by window, the children in turn within each (`fileset_runs`). ORDER BY,
        // DISTINCT, `SELECT TAGS` and PARTITION BY keep the children one after another.
        let interleave = fileset.filter(|_| {
            segs.len() > 1 && order.is_empty() && partition.is_empty() && !s.distinct && !s.tags
        });
        if let Some(width) = interleave {
            // No ORDER BY or DISTINCT here: the rows are final, and the return below is taken.
            let mut runs = fileset_runs(segs, &sels, width);
            // OFFSET/LIMIT apply to the output, so after the reordering.
            limit_in_order(runs.iter_mut().map(|r| &mut r.sel), s.offset, s.limit);
            for run in runs.iter().filter(|r| r.sel.len() > 0) {
                emit(&outs, &segs[run.seg], &run.sel, &mut columns, false)?;
            }
        } else {
            if single_ts_order && order[0].1 {
                for sel in &mut sels {
                    let mut v = sel.indices();
                    v.reverse();
                    *sel = Sel::Idx(v);
                }
            }
            if !needs_sort && !s.distinct {
                // Apply OFFSET/LIMIT before materialising.
                limit_in_order(sels.iter_mut(), s.offset, s.limit);
            }
            for (seg, sel) in segs.iter().zip(&sels) {
                emit(&outs, seg, sel, &mut columns, false)?;
            }
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

/// The width of a database's file set window (its DURATION, kept in minutes) in timestamp
/// units of `precision`, as `tsdbKeyFid` counts it (`tsTickPerMin[precision] * days`,
/// source/dnode/vnode/src/tsdb/tsdbUtil.c); `None` when it does not fit in an `i64`.
fn fileset_width(duration_min: i64, precision: Precision) -> Option<i64> {
    let per_min: i64 = match precision {
        Precision::Millisecond => 60_000,
        Precision::Microsecond => 60_000_000,
        Precision::Nanosecond => 60_000_000_000,
    };
    duration_min.checked_mul(per_min).filter(|w| *w > 0)
}

/// One segment's selected rows within one file set window.
struct Run {
    seg: usize,
    fid: i64,
    sel: Sel,
}

/// Orders the selected rows of `segs` as TDengine's storage reader returns a super-table
/// scan: file set by file set (windows of `width` timestamp units, `fid = floor(ts / width)`,
/// ascending), and within a file set each table's rows of that window, ascending, tables in
/// list order. So a table's rows come in ascending timestamps but in one run per window, with
/// the other tables' runs between them.
///
/// Read in TDengine's source (source/dnode/vnode/src/tsdb/): `doTsdbNextDataBlock2`
/// (tsdbRead2.c) reads every file set (`buildBlockFromFiles`, moving on with
/// `filesetIteratorNext`, which walks the file sets in `fid` order and bounds each with
/// `tsdbFidKeyRange`) before the memtable (`buildBlockFromBufferSequentially`, table by
/// table); within a file set `initBlockIterator` (tsdbReadUtil.c) lists the data blocks of
/// all the scan's tables ordered by their offset in the data file (that a commit writes
/// the tables there one after another, so that they come in turn, is our reading, not a
/// line found in the source); `tsdbKeyFid` (tsdbUtil.c) gives `fid`. The Project operator
/// appends the blocks in that order (`doProjectOperation` → `blockDataMerge`,
/// source/libs/executor/src/projectoperator.c). The emulator has no memtable, stt files or
/// block boundaries, so all rows count as committed, one run per table and window.
///
/// Each selection must list rows in ascending timestamps (as `select_rows` does on a sorted
/// segment); runs are found with binary searches, so the cost is per window, not per row
/// (an `Idx` selection's indices are copied into its runs).
fn fileset_runs(segs: &[Seg<'_>], sels: &[Sel], width: i64) -> Vec<Run> {
    let mut runs = Vec::new();
    for (si, (seg, sel)) in segs.iter().zip(sels).enumerate() {
        let n = sel.len();
        if n == 0 {
            continue;
        }
        let Some(ts) = seg.cols.first().and_then(ColumnData::timestamps) else {
            runs.push(Run {
                seg: si,
                fid: 0,
                sel: sel.clone(),
            });
            continue;
        };
        // The k-th selected row's timestamp.
        let row = |k: usize| match sel {
            Sel::Range(a, _) => a + k,
            Sel::Idx(v) => v[k],
        };
        let key = |k: usize| ts.get(row(k)).unwrap_or(i64::MIN);
        let mut k = 0;
        while k < n {
            let fid = key(k).div_euclid(width);
            let end = (i128::from(fid) + 1) * i128::from(width);
            let next = k + partition_point(n - k, |j| i128::from(key(k + j)) < end);
            let part = match sel {
                Sel::Range(a, _) => Sel::Range(a + k, a + next),
                Sel::Idx(v) => Sel::Idx(v[k..next].to_vec()),
            };
            runs.push(Run {
                seg: si,
                fid,
                sel: part,
            });
            k = next;
        }
    }
    // Stable: within a window the tables keep their order.
    runs.sort_by_key(|r| (r.fid, r.seg));
    runs
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
