//! Executor tests: every statement form against the in-memory store.

use super::*;
use crate::types::{Ty, Value};

/// 2023-11-14T22:13:20Z in nanoseconds.
const NOW: i64 = 1_700_000_000_000_000_000;

fn store() -> (Store, Session) {
    let s = Store::new(StoreConfig::default());
    s.set_now_override(Some(NOW));
    (s, Session::default())
}

fn run(s: &Store, se: &mut Session, sql: &str) -> Outcome {
    match s.execute(se, sql) {
        Ok(o) => o,
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn rows(s: &Store, se: &mut Session, sql: &str) -> ResultSet {
    match run(s, se, sql) {
        Outcome::Rows(r) => r,
        Outcome::Affected(n) => panic!("{sql}: affected {n}, expected rows"),
    }
}

fn affected(s: &Store, se: &mut Session, sql: &str) -> usize {
    match run(s, se, sql) {
        Outcome::Affected(n) => n,
        Outcome::Rows(_) => panic!("{sql}: rows, expected affected"),
    }
}

fn err(s: &Store, se: &mut Session, sql: &str) -> u32 {
    match s.execute(se, sql) {
        Ok(o) => panic!("{sql}: expected an error, got {o:?}"),
        Err(e) => e.code,
    }
}

/// Column `c` of a result as values.
fn col(r: &ResultSet, c: usize) -> Vec<Value> {
    (0..r.rows()).map(|i| r.columns[c].get(i)).collect()
}

fn names(r: &ResultSet) -> Vec<&str> {
    r.fields.iter().map(|f| f.name.as_str()).collect()
}

fn vc(s: &str) -> Value {
    Value::VarChar(s.as_bytes().to_vec())
}

#[test]
fn core_create_insert_select() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    assert_eq!(
        err(&s, &mut se, "create database d"),
        code::DB_ALREADY_EXIST
    );
    run(&s, &mut se, "create database if not exists d");
    assert_eq!(
        err(&s, &mut se, "create table t (ts timestamp, v int)"),
        code::DB_NOT_SPECIFIED
    );
    assert_eq!(err(&s, &mut se, "use nope"), code::DB_NOT_EXIST);
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create table t (ts timestamp, v int, s binary(8))",
    );
    assert_eq!(
        err(&s, &mut se, "create table t (ts timestamp, v int)"),
        code::TABLE_ALREADY_EXIST
    );
    assert_eq!(
        affected(
            &s,
            &mut se,
            "insert into t values (1000, 1, 'a') (2000, null, 'b') (3000, 3, NULL)"
        ),
        3
    );
    let r = rows(&s, &mut se, "select * from t");
    assert_eq!(names(&r), ["ts", "v", "s"]);
    assert_eq!(r.fields[2], Field::new("s", Ty::VarChar, 8));
    assert_eq!(r.precision, Precision::Millisecond);
    assert_eq!(
        col(&r, 0),
        [
            Value::Timestamp(1000),
            Value::Timestamp(2000),
            Value::Timestamp(3000)
        ]
    );
    assert_eq!(col(&r, 1), [Value::Int(1), Value::Null, Value::Int(3)]);
    assert_eq!(col(&r, 2), [vc("a"), vc("b"), Value::Null]);
    assert_eq!(
        err(&s, &mut se, "select * from nope"),
        code::TABLE_NOT_EXIST
    );
    assert_eq!(err(&s, &mut se, "select * from nope.t"), code::DB_NOT_EXIST);
    assert_eq!(err(&s, &mut se, "selec * from t"), code::SYNTAX_ERROR);
    assert_eq!(err(&s, &mut se, "select nope from t"), code::INVALID_COLUMN);
    assert_eq!(
        err(&s, &mut se, "insert into nope values (1, 1, 'a')"),
        code::TABLE_NOT_EXIST
    );
}

#[test]
fn super_tables_children_and_tags() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d precision 'us' keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v double) tags (loc nchar(16), gid int)",
    );
    run(
        &s,
        &mut se,
        "create table a using st tags ('北京', 1) b using st (gid) tags (2)",
    );
    assert_eq!(
        affected(
            &s,
            &mut se,
            "insert into a values (1, 1.5) (2, 2.5) b values (3, 3.5) \
             c using st tags ('x', 3) values (4, 4.5) d.c (ts) values (5)"
        ),
        5
    );
    let r = rows(&s, &mut se, "select * from st order by ts");
    assert_eq!(names(&r), ["ts", "v", "loc", "gid"]);
    assert_eq!(r.precision, Precision::Microsecond);
    assert_eq!(
        col(&r, 1),
        [
            Value::Double(1.5),
            Value::Double(2.5),
            Value::Double(3.5),
            Value::Double(4.5),
            Value::Null
        ]
    );
    assert_eq!(col(&r, 2)[0], Value::NChar("北京".into()));
    assert_eq!(col(&r, 2)[2], Value::Null);
    assert_eq!(col(&r, 3)[4], Value::Int(3));
    let r = rows(
        &s,
        &mut se,
        "select tbname, ts from st where gid >= 2 order by ts desc",
    );
    assert_eq!(col(&r, 0), [vc("c"), vc("c"), vc("b")]);
    let r = rows(
        &s,
        &mut se,
        "select tags tbname, loc, gid from st order by tbname",
    );
    assert_eq!(col(&r, 0), [vc("a"), vc("b"), vc("c")]);
    assert_eq!(col(&r, 2), [Value::Int(1), Value::Int(2), Value::Int(3)]);
    let r = rows(
        &s,
        &mut se,
        "select distinct tbname, gid from st where gid < 3",
    );
    assert_eq!(r.rows(), 2);
    // Empty child tables still show up in tag queries.
    run(&s, &mut se, "create table e using st tags ('e', 9)");
    let r = rows(&s, &mut se, "select tags tbname from st where gid = 9");
    assert_eq!(col(&r, 0), [vc("e")]);
    let r = rows(&s, &mut se, "select count(*) from st");
    assert_eq!(col(&r, 0), [Value::BigInt(5)]);
    let r = rows(
        &s,
        &mut se,
        "select count(*), first(ts), last(ts) from st partition by tbname order by tbname",
    );
    assert_eq!(
        col(&r, 0),
        [Value::BigInt(2), Value::BigInt(1), Value::BigInt(2)]
    );
    assert_eq!(
        col(&r, 1),
        [
            Value::Timestamp(1),
            Value::Timestamp(3),
            Value::Timestamp(4)
        ]
    );
    let r = rows(
        &s,
        &mut se,
        "select tbname, count(*) from st partition by tbname order by tbname",
    );
    assert_eq!(col(&r, 0), [vc("a"), vc("b"), vc("c")]);
    assert_eq!(
        err(&s, &mut se, "create table x using st tags (1)"),
        code::TAGS_NOT_MATCHED
    );
    assert_eq!(
        err(&s, &mut se, "create table x using nope tags (1)"),
        code::TABLE_NOT_EXIST
    );
    assert_eq!(
        err(&s, &mut se, "insert into st values (1, 1)"),
        code::INVALID_OPERATION
    );
    // INSERT INTO stb (tbname, …): rows go to (auto-created) children by name.
    assert_eq!(
        affected(
            &s,
            &mut se,
            "insert into st (tbname, ts, gid, v, loc) values ('a', 10, 99, 10.5, 'ignored') \
             ('n1', 11, 7, 11.5, 'new') ('n1', 12, 8, 12.5, 'other') ('n2', 13, null, null, null)"
        ),
        4
    );
    let r = rows(
        &s,
        &mut se,
        "select tags tbname, loc, gid from st where tbname in ('a', 'n1', 'n2') order by tbname",
    );
    assert_eq!(
        col(&r, 1),
        [
            Value::NChar("北京".into()),
            Value::NChar("new".into()),
            Value::Null
        ]
    );
    assert_eq!(col(&r, 2), [Value::Int(1), Value::Int(7), Value::Null]);
    let r = rows(&s, &mut se, "select ts, v from n1");
    assert_eq!(col(&r, 1), [Value::Double(11.5), Value::Double(12.5)]);
    assert_eq!(
        err(&s, &mut se, "insert into st (ts, v) values (1, 1)"),
        code::INVALID_OPERATION
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "insert into st (tbname, ts, nope) values ('a', 1, 1)"
        ),
        code::INVALID_COLUMN
    );
    assert_eq!(
        err(&s, &mut se, "insert into st (tbname, v) values ('a', 1)"),
        code::INVALID_COLUMN
    );
    assert_eq!(
        err(&s, &mut se, "insert into st (tbname, ts) values ('', 1)"),
        code::INVALID_OPERATION
    );
    run(&s, &mut se, "create table plain (ts timestamp, v double)");
    assert_eq!(
        err(
            &s,
            &mut se,
            "insert into st (tbname, ts) values ('plain', 1)"
        ),
        code::INVALID_OPERATION
    );
}

/// A `TBNAME IN (…)` or `TBNAME = …` conjunct narrows a super-table scan to the named
/// children; the rows are the same as the whole WHERE over every child gives (here the same
/// names spelled with OR, which nothing narrows).
#[test]
fn tbname_in_scans_only_the_named_children_with_the_same_rows() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v int) tags (g int)",
    );
    run(&s, &mut se, "create table plain (ts timestamp, v int)");
    run(&s, &mut se, "insert into plain values (1, 100)");
    for (t, g) in [("a", 1), ("b", 2), ("c", 3)] {
        run(
            &s,
            &mut se,
            &format!("insert into {t} using st tags ({g}) values (1, {g}) (2, {g}) (3, {g})"),
        );
    }
    for (narrowed, whole) in [
        (
            "select tbname, ts, v from st where tbname in ('c', 'a', 'a', 'nosuch', 'plain', 'A')",
            "select tbname, ts, v from st where tbname = 'c' or tbname = 'a' or tbname = 'nosuch' \
             or tbname = 'plain' or tbname = 'A'",
        ),
        (
            "select tbname, ts, v from st where ts >= 2 and tbname in ('b', 'c') and v > 2",
            "select tbname, ts, v from st where ts >= 2 and (tbname = 'b' or tbname = 'c') and v > 2",
        ),
        (
            "select tbname, ts from st where 'b' = tbname",
            "select tbname, ts from st where tbname = 'b' or tbname = 'nosuch'",
        ),
        (
            "select tbname, ts from st where tbname not in ('a')",
            "select tbname, ts from st where tbname = 'b' or tbname = 'c'",
        ),
    ] {
        let (n, w) = (rows(&s, &mut se, narrowed), rows(&s, &mut se, whole));
        assert!(n.rows() > 0, "{narrowed}");
        for c in 0..n.fields.len() {
            assert_eq!(col(&n, c), col(&w, c), "{narrowed}");
        }
    }
    let r = rows(
        &s,
        &mut se,
        "select tbname from st where tbname in ('c', 'a')",
    );
    assert_eq!(
        col(&r, 0),
        [vc("a"), vc("a"), vc("a"), vc("c"), vc("c"), vc("c")]
    );
}

/// `(tbname, ts)` of each row of a result whose first two columns are `tbname, ts`.
fn tbname_ts(r: &ResultSet) -> Vec<(String, i64)> {
    (0..r.rows())
        .map(|i| match (r.columns[0].get(i), r.columns[1].get(i)) {
            (Value::VarChar(n), Value::Timestamp(t)) => (String::from_utf8(n).unwrap(), t),
            other => panic!("row {i}: {other:?}"),
        })
        .collect()
}

/// A plain projection over several children of a super table comes out as TDengine's reader
/// returns it: file set window (DURATION) by window, and within a window each child's rows of
/// that window, children in turn; each child's rows stay ascending. ORDER BY, aggregates and
/// PARTITION BY are unchanged.
#[test]
fn super_table_scan_interleaves_children_by_file_set_window() {
    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;
    // A day boundary (ms) within KEEP of NOW.
    const D0: i64 = 1_698_969_600_000;
    assert_eq!(D0 % DAY, 0);
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000 duration 1d");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v int) tags (g int)",
    );
    let data: [(&str, &[i64]); 3] = [
        (
            "a",
            &[D0 + H, D0 + 2 * H, D0 + DAY + H, D0 + 2 * DAY + 5 * H],
        ),
        ("b", &[D0 + 3 * H, D0 + DAY, D0 + DAY + 2 * H]),
        ("c", &[D0 + 2 * DAY + H, D0 + 3 * DAY]),
    ];
    for (g, (t, tss)) in data.iter().enumerate() {
        let values: String = tss.iter().map(|ts| format!(" ({ts}, {g})")).collect();
        run(
            &s,
            &mut se,
            &format!("insert into {t} using st tags ({g}) values{values}"),
        );
    }
    let row = |t: &str, ts: i64| (t.to_string(), ts);
    let interleaved = vec![
        row("a", D0 + H),
        row("a", D0 + 2 * H),
        row("b", D0 + 3 * H),
        row("a", D0 + DAY + H),
        row("b", D0 + DAY),
        row("b", D0 + DAY + 2 * H),
        row("a", D0 + 2 * DAY + 5 * H),
        row("c", D0 + 2 * DAY + H),
        row("c", D0 + 3 * DAY),
    ];
    for q in [
        "select tbname, ts, v from st where tbname in ('c', 'b', 'a')",
        "select tbname, ts, v from st",
        "select tbname, ts from st where tbname in ('a', 'b', 'c') and ts >= 0",
        // A filter on a data column selects rows one by one (`Sel::Idx`).
        "select tbname, ts from st where tbname in ('a', 'b', 'c') and v >= 0",
        "select tbname, ts, ts + 1 from st where tbname = 'a' or tbname = 'b' or tbname = 'c'",
    ] {
        assert_eq!(tbname_ts(&rows(&s, &mut se, q)), interleaved, "{q}");
    }
    // `ts, v, TBNAME` as a reader of several tables asks for them.
    let r = rows(
        &s,
        &mut se,
        "select ts, v, tbname from st where tbname in ('a', 'b', 'c')",
    );
    let got: Vec<(String, i64)> = (0..r.rows())
        .map(|i| match (r.columns[2].get(i), r.columns[0].get(i)) {
            (Value::VarChar(n), Value::Timestamp(t)) => (String::from_utf8(n).unwrap(), t),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, interleaved);
    assert_eq!(
        col(&r, 1),
        [0, 0, 1, 0, 1, 1, 0, 2, 2].map(Value::Int).to_vec()
    );
    // Rows in a window of one child only, a window skipped, a later child alone.
    let q = "select tbname, ts from st where tbname in ('c', 'a') and ts >= ";
    assert_eq!(
        tbname_ts(&rows(&s, &mut se, &format!("{q}{}", D0 + DAY + H))),
        [
            row("a", D0 + DAY + H),
            row("a", D0 + 2 * DAY + 5 * H),
            row("c", D0 + 2 * DAY + H),
            row("c", D0 + 3 * DAY),
        ]
    );
    // LIMIT/OFFSET cut the reordered output.
    assert_eq!(
        tbname_ts(&rows(
            &s,
            &mut se,
            "select tbname, ts from st where tbname in ('a', 'b', 'c') limit 4 offset 2"
        )),
        interleaved[2..6]
    );
    assert_eq!(
        tbname_ts(&rows(
            &s,
            &mut se,
            "select tbname, ts from st where tbname in ('a', 'b', 'c') limit 100 offset 8"
        )),
        interleaved[8..]
    );
    // ORDER BY sorts as before.
    let mut by_ts = interleaved.clone();
    by_ts.sort_by_key(|(_, ts)| *ts);
    assert_eq!(
        tbname_ts(&rows(
            &s,
            &mut se,
            "select tbname, ts from st where tbname in ('a', 'b', 'c') order by ts"
        )),
        by_ts
    );
    // PARTITION BY keeps each child's rows together, children in order.
    let mut by_table = interleaved.clone();
    by_table.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
    assert_eq!(
        tbname_ts(&rows(
            &s,
            &mut se,
            "select tbname, ts from st where tbname in ('a', 'b', 'c') partition by tbname"
        )),
        by_table
    );
    // Aggregates are unchanged.
    let r = rows(
        &s,
        &mut se,
        "select tbname, count(*), first(ts), last(ts) from st where tbname in ('a', 'b', 'c') \
         partition by tbname",
    );
    assert_eq!(col(&r, 0), [vc("a"), vc("b"), vc("c")]);
    assert_eq!(col(&r, 1), [4, 3, 2].map(Value::BigInt).to_vec());
    assert_eq!(
        col(&r, 2),
        [D0 + H, D0 + 3 * H, D0 + 2 * DAY + H]
            .map(Value::Timestamp)
            .to_vec()
    );
    assert_eq!(
        col(&r, 3),
        [D0 + 2 * DAY + 5 * H, D0 + DAY + 2 * H, D0 + 3 * DAY]
            .map(Value::Timestamp)
            .to_vec()
    );
    let r = rows(
        &s,
        &mut se,
        "select count(*), min(ts), max(ts) from st where tbname in ('a', 'b', 'c')",
    );
    assert_eq!(r.columns[0].get(0), Value::BigInt(9));
    assert_eq!(r.columns[1].get(0), Value::Timestamp(D0 + H));
    assert_eq!(r.columns[2].get(0), Value::Timestamp(D0 + 3 * DAY));
    // One child alone is one table's scan: ascending.
    assert_eq!(
        tbname_ts(&rows(
            &s,
            &mut se,
            "select tbname, ts from st where tbname = 'a'"
        )),
        interleaved
            .iter()
            .filter(|(t, _)| t == "a")
            .cloned()
            .collect::<Vec<_>>()
    );
}

/// The file set window is DURATION in the database's precision: 12 hours of microseconds.
#[test]
fn file_set_windows_follow_the_database_precision() {
    const H: i64 = 3_600_000_000;
    // A day boundary (us) within KEEP of NOW.
    const D0: i64 = 1_698_969_600_000_000;
    let (s, mut se) = store();
    run(
        &s,
        &mut se,
        "create database d precision 'us' keep 365000 duration 12h",
    );
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v int) tags (g int)",
    );
    run(
        &s,
        &mut se,
        &format!(
            "insert into a using st tags (1) values ({}, 1) ({}, 1) ({}, 1)",
            D0 + H,
            D0 + 3 * H,
            D0 + 14 * H
        ),
    );
    run(
        &s,
        &mut se,
        &format!(
            "insert into b using st tags (2) values ({}, 2) ({}, 2)",
            D0 + 2 * H,
            D0 + 13 * H
        ),
    );
    // Too narrow a window would give timestamp order, too wide one child after the other.
    let row = |t: &str, ts: i64| (t.to_string(), ts);
    assert_eq!(
        tbname_ts(&rows(&s, &mut se, "select tbname, ts from st")),
        [
            row("a", D0 + H),
            row("a", D0 + 3 * H),
            row("b", D0 + 2 * H),
            row("a", D0 + 14 * H),
            row("b", D0 + 13 * H),
        ]
    );
}

#[test]
fn every_type_with_nulls_round_trips() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000; ");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create table t (ts timestamp, b bool, i8 tinyint, i16 smallint, i32 int, i64 bigint, \
         u8 tinyint unsigned, u16 smallint unsigned, u32 int unsigned, u64 bigint unsigned, \
         f float, d double, vc varchar(10), nc nchar(4), vb varbinary(8), g geometry(32), t2 timestamp)",
    );
    run(
        &s,
        &mut se,
        "insert into t values (1, true, -128, -32768, -2147483648, -9223372036854775808, 255, 65535, \
         4294967295, 18446744073709551615, 1.5, -2.25e10, 'hello', 'ñçü€', '\\x00ff', 'POINT(1 2)', \
         '1970-01-01 00:00:01.5') \
         (2, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null)",
    );
    let r = rows(&s, &mut se, "select * from t");
    let expect = [
        Value::Timestamp(1),
        Value::Bool(true),
        Value::TinyInt(-128),
        Value::SmallInt(-32768),
        Value::Int(i32::MIN),
        Value::BigInt(i64::MIN),
        Value::UTinyInt(255),
        Value::USmallInt(65535),
        Value::UInt(u32::MAX),
        Value::UBigInt(u64::MAX),
        Value::Float(1.5),
        Value::Double(-2.25e10),
        vc("hello"),
        Value::NChar("ñçü€".into()),
        Value::VarBinary(vec![0, 255]),
    ];
    for (i, v) in expect.iter().enumerate() {
        assert_eq!(&r.columns[i].get(0), v, "column {}", r.fields[i].name);
        if i > 0 {
            assert!(r.columns[i].is_null(1), "column {} row 2", r.fields[i].name);
        }
    }
    let Value::Geometry(g) = r.columns[15].get(0) else {
        panic!()
    };
    assert_eq!(g[..5], [1, 1, 0, 0, 0]);
    assert_eq!(r.columns[16].get(0), Value::Timestamp(1500));
    assert_eq!(r.fields[13], Field::new("nc", Ty::NChar, 4));
    assert_eq!(r.fields[4], Field::new("i32", Ty::Int, 4));
    // Out of range and too long values are rejected and write nothing.
    assert_eq!(
        err(&s, &mut se, "insert into t (ts, i8) values (3, 128)"),
        code::SYNTAX_ERROR
    );
    assert_eq!(
        err(&s, &mut se, "insert into t (ts, u8) values (3, -1)"),
        code::SYNTAX_ERROR
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "insert into t (ts, vc) values (3, '12345678901')"
        ),
        code::VALUE_TOO_LONG
    );
    assert_eq!(
        err(&s, &mut se, "insert into t (ts, nc) values (3, '12345')"),
        code::VALUE_TOO_LONG
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "insert into t (ts, t2) values (3, 'yesterday')"
        ),
        code::INCORRECT_TIMESTAMP
    );
    assert_eq!(
        err(&s, &mut se, "insert into t (ts, nope) values (3, 1)"),
        code::INVALID_COLUMN
    );
    assert_eq!(
        err(&s, &mut se, "insert into t (i8) values (1)"),
        code::INVALID_COLUMN
    );
    assert_eq!(
        err(&s, &mut se, "insert into t (ts, i8) values (null, 1)"),
        code::INVALID_COLUMN
    );
    assert_eq!(
        err(&s, &mut se, "insert into t values (3, 1)"),
        code::INVALID_COLUMN
    );
    assert_eq!(
        rows(&s, &mut se, "select count(*) from t").columns[0].get(0),
        Value::BigInt(2)
    );
}

#[test]
fn json_tags_and_tag_types() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable sj (ts timestamp, v int) tags (j json)",
    );
    run(
        &s,
        &mut se,
        "create table j1 using sj tags ('{\"k\":1,\"s\":\"x\"}')",
    );
    run(&s, &mut se, "create table j2 using sj tags (null)");
    assert_eq!(
        err(&s, &mut se, "create table j3 using sj tags ('[1]')"),
        code::INVALID_JSON
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "create stable bad (ts timestamp, v int) tags (j json, k int)"
        ),
        code::ONLY_ONE_JSON_TAG
    );
    let r = rows(&s, &mut se, "select tags tbname, j from sj order by tbname");
    assert_eq!(
        col(&r, 1),
        [Value::Json("{\"k\":1,\"s\":\"x\"}".into()), Value::Null]
    );
    assert_eq!(r.fields[1].ty, Ty::Json);
    run(
        &s,
        &mut se,
        "create stable sall (ts timestamp, v int) tags (tb bool, ti tinyint, tu bigint unsigned, tf float, \
         td double, tv varchar(8), tn nchar(8), tt timestamp, tvb varbinary(8), tg geometry(64))",
    );
    run(
        &s,
        &mut se,
        "create table c1 using sall tags (false, -1, 18446744073709551615, 0.5, 1e300, 'it''s', '中文', \
         '2020-01-01 00:00:00', '\\x41', 'POINT(3 4)')",
    );
    run(
        &s,
        &mut se,
        "create table c2 using sall tags (null, null, null, null, null, null, null, null, null, null)",
    );
    let r = rows(
        &s,
        &mut se,
        "select tags tb, ti, tu, tf, td, tv, tn, tt, tvb from sall where tbname = 'c1'",
    );
    assert_eq!(
        (0..9).map(|c| r.columns[c].get(0)).collect::<Vec<_>>(),
        [
            Value::Bool(false),
            Value::TinyInt(-1),
            Value::UBigInt(u64::MAX),
            Value::Float(0.5),
            Value::Double(1e300),
            vc("it's"),
            Value::NChar("中文".into()),
            Value::Timestamp(1_577_836_800_000),
            Value::VarBinary(b"A".to_vec()),
        ]
    );
    let r = rows(&s, &mut se, "select tags tbname from sall where tv is null");
    assert_eq!(col(&r, 0), [vc("c2")]);
}

#[test]
fn precisions_and_now() {
    for (p, unit) in [("ms", 1_000_000i64), ("us", 1_000), ("ns", 1)] {
        let (s, mut se) = store();
        run(&s, &mut se, &format!("create database d precision '{p}'"));
        run(&s, &mut se, "use d");
        run(&s, &mut se, "create table t (ts timestamp, v int)");
        run(
            &s,
            &mut se,
            "insert into t values (now, 1) (now - 1s, 2) (now + 1a, 3) ('2023-11-14 22:13:19.5', 4)",
        );
        let r = rows(&s, &mut se, "select ts, v from t");
        let now = NOW / unit;
        assert_eq!(
            col(&r, 0),
            [
                Value::Timestamp(now - 1_000_000_000 / unit),
                Value::Timestamp(now - 500_000_000 / unit),
                Value::Timestamp(now),
                Value::Timestamp(now + 1_000_000 / unit),
            ],
            "precision {p}"
        );
        assert_eq!(
            col(&r, 1),
            [Value::Int(2), Value::Int(4), Value::Int(1), Value::Int(3)]
        );
        assert_eq!(r.precision.as_str(), p);
        let r = rows(
            &s,
            &mut se,
            "select count(*) from t where ts >= now - 1s and ts < now",
        );
        assert_eq!(r.columns[0].get(0), Value::BigInt(2), "precision {p}");
        let r = rows(
            &s,
            &mut se,
            "select v from t where ts between '2023-11-14 22:13:19' and '2023-11-14 22:13:20'",
        );
        assert_eq!(
            col(&r, 0),
            [Value::Int(2), Value::Int(4), Value::Int(1)],
            "precision {p}"
        );
    }
}

#[test]
fn overwrite_late_rows_and_delete() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create table t (ts timestamp, v int, w binary(4))",
    );
    run(
        &s,
        &mut se,
        "insert into t values (10, 1, 'a') (20, 2, 'b') (30, 3, 'c')",
    );
    // Same timestamp: whole-row overwrite (NULL included); late rows land in order.
    run(
        &s,
        &mut se,
        "insert into t values (20, 22, null) (5, 0, 'z') (25, 25, 'y') (20, 23, 'q')",
    );
    let r = rows(&s, &mut se, "select * from t");
    assert_eq!(col(&r, 0), [5, 10, 20, 25, 30].map(Value::Timestamp));
    assert_eq!(col(&r, 1), [0, 1, 23, 25, 3].map(Value::Int));
    assert_eq!(col(&r, 2)[2], vc("q"));
    assert_eq!(
        affected(&s, &mut se, "insert into t (ts, v) values (30, 33)"),
        1
    );
    let r = rows(&s, &mut se, "select v, w from t where ts = 30");
    assert_eq!(
        (r.columns[0].get(0), r.columns[1].get(0)),
        (Value::Int(33), Value::Null)
    );
    assert_eq!(
        affected(&s, &mut se, "delete from t where ts >= 10 and ts <= 20"),
        2
    );
    let r = rows(&s, &mut se, "select ts from t");
    assert_eq!(col(&r, 0), [5, 25, 30].map(Value::Timestamp));
    assert_eq!(affected(&s, &mut se, "delete from t where ts > 1000"), 0);
    assert_eq!(affected(&s, &mut se, "delete from t"), 3);
    assert_eq!(rows(&s, &mut se, "select * from t").rows(), 0);
    let r = rows(&s, &mut se, "select count(*) from t");
    assert_eq!(col(&r, 0), [Value::BigInt(0)]);
    assert_eq!(rows(&s, &mut se, "select first(ts) from t").rows(), 0);
    // DELETE on a super table reaches every child.
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v int) tags (g int)",
    );
    run(
        &s,
        &mut se,
        "insert into a using st tags (1) values (1, 1) (2, 2) b using st tags (2) values (1, 1) (3, 3)",
    );
    assert_eq!(affected(&s, &mut se, "delete from st where ts < 3"), 3);
    let r = rows(&s, &mut se, "select tbname, ts from st");
    assert_eq!(col(&r, 0), [vc("b")]);
}

#[test]
fn where_order_limit() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create table t (ts timestamp, v int, s varchar(8))",
    );
    let values: String = (0..20)
        .map(|i| format!("({}, {}, 's{}')", i * 10, i % 5, i))
        .collect();
    run(&s, &mut se, &format!("insert into t values {values}"));
    let q = |sql: &str| {
        let mut se = Session {
            db: Some("d".into()),
        };
        col(&rows(&s, &mut se, sql), 0)
    };
    assert_eq!(
        q("select v from t where ts > 150"),
        [1, 2, 3, 4].map(Value::Int)
    );
    assert_eq!(
        q("select ts from t where ts >= 30 and ts < 60"),
        [30, 40, 50].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t where ts between 30 and 50 and v != 4"),
        [30, 50].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t where not ts > 10"),
        [0, 10].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t where v in (0) or s = 's1'"),
        [0, 10, 50, 100, 150].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t where v not in (0, 1, 2, 3) and ts < 100"),
        [40, 90].map(Value::Timestamp)
    );
    assert_eq!(
        q("select s from t where s like 's1_'"),
        (10..20).map(|i| vc(&format!("s{i}"))).collect::<Vec<_>>()
    );
    assert_eq!(
        q("select ts from t where s like '%9'"),
        [90, 190].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t where s not like 's1%' and ts < 50"),
        [0, 20, 30, 40].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t where (v = 1 or v = 2) and ts < 100"),
        [10, 20, 60, 70].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t where v <> 0 and v <= 1 and ts < 100"),
        [10, 60].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t order by ts desc limit 3"),
        [190, 180, 170].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t limit 2 offset 3"),
        [30, 40].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t limit 3, 2"),
        [30, 40].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t order by ts desc limit 2 offset 1"),
        [180, 170].map(Value::Timestamp)
    );
    assert_eq!(
        q("select v from t order by v desc, ts asc limit 3"),
        [4, 4, 4].map(Value::Int)
    );
    assert_eq!(
        q("select ts from t where v = 4 order by s desc limit 2"),
        [90, 40].map(Value::Timestamp)
    );
    assert_eq!(
        q("select count(v) from t where ts >= 100"),
        [Value::BigInt(10)]
    );
    assert_eq!(q("select max(v) from t"), [Value::Int(4)]);
    assert_eq!(q("select min(s) from t"), [vc("s0")]);
    assert_eq!(q("select last(s) from t"), [vc("s19")]);
    assert_eq!(
        q("select first(ts) from t where ts > 55"),
        [Value::Timestamp(60)]
    );
    assert_eq!(q("select sum(v) from t"), [Value::BigInt(40)]);
    assert_eq!(q("select avg(v) from t"), [Value::Double(2.0)]);
    assert_eq!(
        q("select distinct v from t order by v"),
        [0, 1, 2, 3, 4].map(Value::Int)
    );
    assert_eq!(q("select ts from t where v is null"), Vec::<Value>::new());
    assert_eq!(
        q("select ts from t where ts > '1970-01-01 00:00:00.185'"),
        [190].map(Value::Timestamp)
    );
    assert_eq!(
        err(&s, &mut se, "select count(*), v + 1 from t"),
        code::INVALID_OPERATION
    );
    assert_eq!(
        err(&s, &mut se, "select count(*), v from t"),
        code::INVALID_OPERATION
    );
    assert_eq!(
        err(&s, &mut se, "select count(*) from t partition by v"),
        code::INVALID_OPERATION
    );
    assert_eq!(
        err(&s, &mut se, "select nosuch(v) from t"),
        code::INVALID_FUNCTION
    );
    assert_eq!(q("select v * 2 from t where ts = 30"), [Value::Double(6.0)]);
    assert_eq!(
        q("select ts from t where v + 1 = 5 and ts < 100"),
        [40, 90].map(Value::Timestamp)
    );
    assert_eq!(
        q("select ts from t order by 1 desc limit 1"),
        [Value::Timestamp(190)]
    );
    assert_eq!(
        q("select ts from t where ts > 9223372036854775807"),
        Vec::<Value>::new()
    );
    assert_eq!(
        q("select ts from t where ts < -9223372036854775808"),
        Vec::<Value>::new()
    );
    assert_eq!(
        q("select ts from t where ts >= 30 and ts <= 30 and ts != 30"),
        Vec::<Value>::new()
    );
    assert_eq!(
        q("select ts from t where 40 > ts and 20 <= ts"),
        [20, 30].map(Value::Timestamp)
    );
    let r = rows(&s, &mut se, "select last(*) from t where ts < 100");
    assert_eq!(names(&r), ["last(ts)", "last(v)", "last(s)"]);
    assert_eq!(
        (0..3).map(|c| r.columns[c].get(0)).collect::<Vec<_>>(),
        [Value::Timestamp(90), Value::Int(4), vc("s9")]
    );
    let r = rows(&s, &mut se, "select count(*) as n, last(ts) l from t");
    assert_eq!(names(&r), ["n", "l"]);
    let r = rows(&s, &mut se, "select `v`, V from t limit 1");
    assert_eq!(names(&r), ["v", "v"]);
}

#[test]
fn keep_rejects_old_rows() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 10d");
    run(&s, &mut se, "use d");
    run(&s, &mut se, "create table t (ts timestamp, v int)");
    assert_eq!(
        err(&s, &mut se, "insert into t values (now - 11d, 1)"),
        code::TIMESTAMP_OUT_OF_RANGE
    );
    assert_eq!(
        err(&s, &mut se, "insert into t values (now, 1) (0, 2)"),
        code::TIMESTAMP_OUT_OF_RANGE
    );
    assert_eq!(
        rows(&s, &mut se, "select * from t").rows(),
        0,
        "a rejected statement writes nothing"
    );
    assert_eq!(
        affected(&s, &mut se, "insert into t values (now - 9d, 1)"),
        1
    );
    // Default KEEP is 3650 days.
    run(&s, &mut se, "create database d2");
    run(&s, &mut se, "create table d2.t (ts timestamp, v int)");
    assert_eq!(
        err(&s, &mut se, "insert into d2.t values (now - 3651d, 1)"),
        code::TIMESTAMP_OUT_OF_RANGE
    );
    assert_eq!(
        affected(&s, &mut se, "insert into d2.t values (now - 3649d, 1)"),
        1
    );
}

#[test]
fn drop_and_alter() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v int) tags (g int)",
    );
    run(
        &s,
        &mut se,
        "insert into a using st tags (1) values (1, 1) b using st tags (2) values (2, 2)",
    );
    run(&s, &mut se, "alter stable st add column w varchar(5)");
    run(&s, &mut se, "insert into a values (3, 3, 'x')");
    let r = rows(&s, &mut se, "select ts, w from st order by ts");
    assert_eq!(col(&r, 1), [Value::Null, Value::Null, vc("x")]);
    run(&s, &mut se, "alter stable st modify column w varchar(10)");
    run(&s, &mut se, "insert into a values (4, 4, '0123456789')");
    assert_eq!(
        err(&s, &mut se, "alter stable st modify column w varchar(3)"),
        code::INVALID_OPERATION
    );
    assert_eq!(
        err(&s, &mut se, "alter stable st add column v int"),
        code::COLUMN_ALREADY_EXIST
    );
    run(&s, &mut se, "alter stable st drop column v");
    let r = rows(&s, &mut se, "select * from a");
    assert_eq!(names(&r), ["ts", "w"]);
    assert_eq!(r.rows(), 3);
    assert_eq!(
        err(&s, &mut se, "alter stable st drop column nope"),
        code::COLUMN_NOT_EXIST
    );
    assert_eq!(
        err(&s, &mut se, "alter stable st drop column ts"),
        code::INVALID_COLUMN
    );
    run(&s, &mut se, "alter stable st add tag h nchar(4)");
    run(&s, &mut se, "alter table a set tag h = 'hh', g = 10");
    let r = rows(
        &s,
        &mut se,
        "select tags tbname, g, h from st order by tbname",
    );
    assert_eq!(col(&r, 1), [Value::Int(10), Value::Int(2)]);
    assert_eq!(col(&r, 2), [Value::NChar("hh".into()), Value::Null]);
    assert_eq!(
        err(&s, &mut se, "alter table a set tag nope = 1"),
        code::INVALID_TAG_NAME
    );
    run(&s, &mut se, "alter stable st drop tag h");
    assert_eq!(rows(&s, &mut se, "select * from st").fields.len(), 3);
    // Normal tables.
    run(&s, &mut se, "create table n (ts timestamp, v int)");
    run(&s, &mut se, "insert into n values (1, 1)");
    run(&s, &mut se, "alter table n add column x double");
    run(&s, &mut se, "insert into n values (2, 2, 2.5)");
    let r = rows(&s, &mut se, "select x from n");
    assert_eq!(col(&r, 0), [Value::Null, Value::Double(2.5)]);
    run(&s, &mut se, "alter table n drop column v");
    assert_eq!(names(&rows(&s, &mut se, "select * from n")), ["ts", "x"]);
    // Drops.
    run(&s, &mut se, "drop table a, n");
    assert_eq!(err(&s, &mut se, "select * from a"), code::TABLE_NOT_EXIST);
    assert_eq!(err(&s, &mut se, "drop table a"), code::TABLE_NOT_EXIST);
    run(&s, &mut se, "drop table if exists a");
    run(&s, &mut se, "drop stable st");
    assert_eq!(err(&s, &mut se, "select * from b"), code::TABLE_NOT_EXIST);
    assert_eq!(err(&s, &mut se, "drop stable st"), code::STB_NOT_EXIST);
    run(&s, &mut se, "drop stable if exists st");
    run(&s, &mut se, "drop database d");
    assert_eq!(se.db, None);
    assert_eq!(err(&s, &mut se, "drop database d"), code::DB_NOT_EXIST);
    run(&s, &mut se, "drop database if exists d");
}

fn text(r: &ResultSet, c: usize, i: usize) -> String {
    match r.columns[c].get(i) {
        Value::VarChar(b) => String::from_utf8(b).unwrap_or_default(),
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn show_and_describe() {
    let (s, mut se) = store();
    run(
        &s,
        &mut se,
        "create database d vgroups 3 precision 'ns' keep 365000",
    );
    run(&s, &mut se, "create database e");
    assert_eq!(err(&s, &mut se, "show tables"), code::DB_NOT_SPECIFIED);
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v nchar(5)) tags (g int)",
    );
    run(
        &s,
        &mut se,
        "create stable mm (ts timestamp, v int) tags (g int)",
    );
    run(&s, &mut se, "create table a using st tags (1)");
    run(&s, &mut se, "create table n (ts timestamp, x int)");
    assert_eq!(
        err(&s, &mut se, "create table n (ts timestamp, x int)"),
        code::TABLE_ALREADY_EXIST
    );
    assert_eq!(
        err(&s, &mut se, "create table st (ts timestamp, x int)"),
        code::TABLE_ALREADY_EXIST
    );
    let r = rows(&s, &mut se, "show databases");
    let dbs: Vec<String> = (0..r.rows()).map(|i| text(&r, 0, i)).collect();
    assert_eq!(dbs, ["information_schema", "performance_schema", "d", "e"]);
    let r = rows(&s, &mut se, "show stables");
    assert_eq!(names(&r), ["stable_name"]);
    assert_eq!(col(&r, 0), [vc("mm"), vc("st")]);
    assert_eq!(
        col(&rows(&s, &mut se, "show d.stables like 's%'"), 0),
        [vc("st")]
    );
    let r = rows(&s, &mut se, "show tables");
    assert_eq!(names(&r), ["table_name"]);
    assert_eq!(col(&r, 0), [vc("a"), vc("n")]);
    assert_eq!(rows(&s, &mut se, "show e.tables").rows(), 0);
    let r = rows(&s, &mut se, "describe st");
    assert_eq!(
        names(&r),
        [
            "field", "type", "length", "note", "encode", "compress", "level"
        ]
    );
    assert_eq!(col(&r, 0), [vc("ts"), vc("v"), vc("g")]);
    assert_eq!(col(&r, 1), [vc("TIMESTAMP"), vc("NCHAR"), vc("INT")]);
    assert_eq!(col(&r, 2), [Value::Int(8), Value::Int(5), Value::Int(4)]);
    assert_eq!(col(&r, 3), [vc(""), vc(""), vc("TAG")]);
    assert_eq!(col(&r, 4), [vc("delta-i"), vc("disabled"), vc("disabled")]);
    assert_eq!(col(&r, 5), [vc("lz4"), vc("zstd"), vc("disabled")]);
    assert_eq!(
        col(&rows(&s, &mut se, "desc a"), 3),
        [vc(""), vc(""), vc("TAG")]
    );
    assert_eq!(rows(&s, &mut se, "desc n").rows(), 2);
    assert_eq!(err(&s, &mut se, "describe nope"), code::TABLE_NOT_EXIST);
    let r = rows(&s, &mut se, "show vgroups");
    assert_eq!(r.rows(), 3);
    let r = rows(
        &s,
        &mut se,
        "select server_version(), database(), server_status()",
    );
    assert_eq!(r.columns[0].get(0), vc("3.3.6.0"));
    assert_eq!(r.columns[1].get(0), vc("d"));
    assert_eq!(r.columns[2].get(0), Value::Int(1));
    assert_eq!(
        names(&r),
        ["server_version()", "database()", "server_status()"]
    );
}

#[test]
fn show_create_round_trips() {
    let (s, mut se) = store();
    run(
        &s,
        &mut se,
        "create database src precision 'us' vgroups 4 keep 30d,60d,90d duration 12h \
         wal_retention_period 7200 wal_retention_size 1024 buffer 64 cachemodel 'last_row' comp 1",
    );
    run(&s, &mut se, "use src");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, a bool, b tinyint unsigned, c varchar(20), d nchar(7), \
         e varbinary(9), f geometry(50), g double) tags (t1 int, t2 varchar(10), t3 nchar(4), \
         t4 varbinary(4), t5 timestamp, t6 float, t7 bool) comment 'my stable'",
    );
    run(
        &s,
        &mut se,
        "create table c1 using st tags (7, 'it''s \\\\', '中文', '\\x0102', 12345, 1.25, true) ttl 5 \
         comment 'child'",
    );
    run(&s, &mut se, "create table c2 using st (t1) tags (null)");
    run(
        &s,
        &mut se,
        "create table n1 (ts timestamp, v bigint, w varchar(3)) comment '' ttl 2",
    );
    run(
        &s,
        &mut se,
        "create stable sj (ts timestamp, v int) tags (j json)",
    );
    run(
        &s,
        &mut se,
        "create table cj using sj tags ('{\"a\":\"b\"}')",
    );

    let r = rows(&s, &mut se, "show create database src");
    assert_eq!(names(&r), ["Database", "Create Database"]);
    let db_sql = text(&r, 1, 0);
    assert!(
        db_sql.starts_with("CREATE DATABASE `src` BUFFER 64 "),
        "{db_sql}"
    );
    assert!(db_sql.contains(" DURATION 12h "), "{db_sql}");
    assert!(db_sql.contains(" KEEP 30d,60d,90d "), "{db_sql}");
    assert!(db_sql.contains(" PRECISION 'us' "), "{db_sql}");
    assert!(db_sql.contains(" VGROUPS 4 "), "{db_sql}");
    assert!(
        db_sql.contains(" WAL_RETENTION_PERIOD 7200 WAL_RETENTION_SIZE 1024 "),
        "{db_sql}"
    );
    assert!(
        db_sql.contains(" CACHEMODEL 'last_row' COMP 1 "),
        "{db_sql}"
    );

    let ddl_in = |db: &str, sql: &str| {
        let mut se = Session {
            db: Some(db.into()),
        };
        let r = rows(&s, &mut se, sql);
        assert_eq!(names(&r), ["Table", "Create Table"]);
        text(&r, 1, 0)
    };
    let ddl = |sql: &str| ddl_in("src", sql);
    let st_sql = ddl("show create stable st");
    assert_eq!(
        st_sql,
        "CREATE STABLE `st` (`ts` TIMESTAMP ENCODE 'delta-i' COMPRESS 'lz4' LEVEL 'medium', \
         `a` BOOL ENCODE 'bit-packing' COMPRESS 'lz4' LEVEL 'medium', \
         `b` TINYINT UNSIGNED ENCODE 'simple8b' COMPRESS 'lz4' LEVEL 'medium', \
         `c` VARCHAR(20) ENCODE 'disabled' COMPRESS 'zstd' LEVEL 'medium', \
         `d` NCHAR(7) ENCODE 'disabled' COMPRESS 'zstd' LEVEL 'medium', \
         `e` VARBINARY(9) ENCODE 'disabled' COMPRESS 'zstd' LEVEL 'medium', \
         `f` GEOMETRY(50) ENCODE 'disabled' COMPRESS 'zstd' LEVEL 'medium', \
         `g` DOUBLE ENCODE 'delta-d' COMPRESS 'lz4' LEVEL 'medium') TAGS (`t1` INT, \
         `t2` VARCHAR(10), `t3` NCHAR(4), `t4` VARBINARY(4), `t5` TIMESTAMP, `t6` FLOAT, `t7` BOOL) \
         COMMENT 'my stable'"
    );
    let c1_sql = ddl("show create table c1");
    assert_eq!(
        c1_sql,
        "CREATE TABLE `c1` USING `st` (`t1`, `t2`, `t3`, `t4`, `t5`, `t6`, `t7`) TAGS (7, 'it\\'s \\\\', \
         '中文', '\\x0102', 12345, 1.25, true) COMMENT 'child' TTL 5"
    );
    let c2_sql = ddl("show create table c2");
    let n1_sql = ddl("show create table n1");
    assert_eq!(
        n1_sql,
        "CREATE TABLE `n1` (`ts` TIMESTAMP ENCODE 'delta-i' COMPRESS 'lz4' LEVEL 'medium', \
         `v` BIGINT ENCODE 'simple8b' COMPRESS 'lz4' LEVEL 'medium', \
         `w` VARCHAR(3) ENCODE 'disabled' COMPRESS 'zstd' LEVEL 'medium') COMMENT '' TTL 2"
    );
    let sj_sql = ddl("show create stable sj");
    let cj_sql = ddl("show create table cj");
    assert_eq!(ddl("show create table st"), st_sql);
    assert_eq!(err(&s, &mut se, "show create stable c1"), code::NOT_STABLE);

    // Replaying the DDL in a new database recreates identical objects.
    let dst_sql = db_sql.replacen("`src`", "`dst`", 1);
    run(&s, &mut se, &dst_sql);
    run(&s, &mut se, "use dst");
    for sql in [&st_sql, &c1_sql, &c2_sql, &n1_sql, &sj_sql, &cj_sql] {
        run(&s, &mut se, sql);
    }
    let r = rows(&s, &mut se, "show create database dst");
    assert_eq!(text(&r, 1, 0), dst_sql);
    for (obj, sql) in [
        ("stable st", &st_sql),
        ("table c1", &c1_sql),
        ("table c2", &c2_sql),
        ("table n1", &n1_sql),
        ("stable sj", &sj_sql),
        ("table cj", &cj_sql),
    ] {
        assert_eq!(&ddl_in("dst", &format!("show create {obj}")), sql, "{obj}");
    }
    let a = rows(
        &s,
        &mut se,
        "select tags tbname, t1, t2, t3, t4, t5, t6, t7 from src.st order by tbname",
    );
    let b = rows(
        &s,
        &mut se,
        "select tags tbname, t1, t2, t3, t4, t5, t6, t7 from dst.st order by tbname",
    );
    assert_eq!(a.columns, b.columns);
    assert_eq!(a.fields, b.fields);
}

#[test]
fn information_schema_contents() {
    let (s, mut se) = store();
    run(
        &s,
        &mut se,
        "create database d precision 'us' vgroups 4 keep 100d duration 2d wal_retention_period 60",
    );
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v int, w varchar(6)) tags (g int, h nchar(3)) comment 'c'",
    );
    run(
        &s,
        &mut se,
        "create table a using st tags (1, 'x') b using st tags (null, 'y') ttl 7",
    );
    run(
        &s,
        &mut se,
        "create table n (ts timestamp, v int) comment 'normal'",
    );
    let r = rows(
        &s,
        &mut se,
        "select * from information_schema.ins_databases where name = 'd'",
    );
    assert_eq!(r.rows(), 1);
    let get = |r: &ResultSet, name: &str| {
        let i = r
            .fields
            .iter()
            .position(|f| f.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        r.columns[i].get(0)
    };
    assert_eq!(get(&r, "vgroups"), Value::Int(4));
    assert_eq!(get(&r, "ntables"), Value::BigInt(3));
    assert_eq!(get(&r, "precision"), vc("us"));
    assert_eq!(get(&r, "keep"), vc("100d,100d,100d"));
    assert_eq!(get(&r, "duration"), vc("2d"));
    assert_eq!(get(&r, "wal_retention_period"), Value::Int(60));
    assert_eq!(get(&r, "replica"), Value::TinyInt(1));
    assert_eq!(get(&r, "create_time"), Value::Timestamp(NOW / 1_000_000));
    let r = rows(
        &s,
        &mut se,
        "select stable_name, db_name, `columns`, `tags`, table_comment from information_schema.ins_stables",
    );
    assert_eq!(
        (0..5).map(|c| r.columns[c].get(0)).collect::<Vec<_>>(),
        [vc("st"), vc("d"), Value::Int(3), Value::Int(2), vc("c")]
    );
    let r = rows(
        &s,
        &mut se,
        "select table_name, stable_name, columns, `ttl`, type, vgroup_id, uid, table_comment \
         from information_schema.ins_tables where db_name = 'd' order by table_name",
    );
    assert_eq!(col(&r, 0), [vc("a"), vc("b"), vc("n")]);
    assert_eq!(col(&r, 1), [vc("st"), vc("st"), Value::Null]);
    assert_eq!(col(&r, 2), [Value::Int(3), Value::Int(3), Value::Int(2)]);
    assert_eq!(col(&r, 3), [Value::Int(0), Value::Int(7), Value::Int(0)]);
    assert_eq!(
        col(&r, 4),
        [vc("CHILD_TABLE"), vc("CHILD_TABLE"), vc("NORMAL_TABLE")]
    );
    assert_eq!(col(&r, 7)[2], vc("normal"));
    let vg: Vec<Value> = col(&r, 5);
    for v in &vg {
        let Value::Int(v) = v else { panic!() };
        assert!((2..6).contains(v), "vgroup {v}");
    }
    let uids: std::collections::HashSet<String> =
        col(&r, 6).iter().map(|v| format!("{v:?}")).collect();
    assert_eq!(uids.len(), 3);
    // Deterministic vgroups: a second store gives the same assignment.
    let (s2, mut se2) = store();
    run(
        &s2,
        &mut se2,
        "create database d precision 'us' vgroups 4 keep 100d duration 2d wal_retention_period 60",
    );
    run(&s2, &mut se2, "create table d.n (ts timestamp, v int)");
    let r2 = rows(
        &s2,
        &mut se2,
        "select vgroup_id from information_schema.ins_tables where table_name = 'n'",
    );
    assert_eq!(r2.columns[0].get(0), vg[2]);
    let r = rows(
        &s,
        &mut se,
        "select table_name, tag_name, tag_type, tag_value from information_schema.ins_tags \
         where db_name = 'd' and stable_name = 'st' order by table_name, tag_name",
    );
    assert_eq!(col(&r, 0), [vc("a"), vc("a"), vc("b"), vc("b")]);
    assert_eq!(col(&r, 1), [vc("g"), vc("h"), vc("g"), vc("h")]);
    assert_eq!(
        col(&r, 2),
        [vc("INT"), vc("NCHAR(3)"), vc("INT"), vc("NCHAR(3)")]
    );
    assert_eq!(col(&r, 3), [vc("1"), vc("x"), Value::Null, vc("y")]);
    assert_eq!(r.fields[3], Field::new("tag_value", Ty::VarChar, 16384));
    let r = rows(
        &s,
        &mut se,
        "select col_name, col_type, col_length, table_type from information_schema.ins_columns \
         where table_name = 'st'",
    );
    assert_eq!(col(&r, 0), [vc("ts"), vc("v"), vc("w")]);
    assert_eq!(col(&r, 1), [vc("TIMESTAMP"), vc("INT"), vc("VARCHAR(6)")]);
    assert_eq!(col(&r, 2), [Value::Int(8), Value::Int(4), Value::Int(6)]);
    assert_eq!(col(&r, 3)[0], vc("SUPER_TABLE"));
    let r = rows(
        &s,
        &mut se,
        "select count(*) from information_schema.ins_tables where stable_name = 'st'",
    );
    assert_eq!(col(&r, 0), [Value::BigInt(2)]);
    // USE information_schema works for unqualified names too.
    let mut se3 = Session {
        db: Some("information_schema".into()),
    };
    assert_eq!(rows(&s, &mut se3, "select * from ins_stables").rows(), 1);
    assert_eq!(
        err(&s, &mut se, "select * from information_schema.ins_nope"),
        code::TABLE_NOT_EXIST
    );
}

#[test]
fn raw_block_writes() {
    use crate::raw_block::{encode, parse};
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create table t (ts timestamp, a int, b varchar(8), c double)",
    );
    run(&s, &mut se, "insert into t values (2, 20, 'old', 2.0)");
    let fields = vec![
        Field::new("b", Ty::VarChar, 8),
        Field::new("ts", Ty::Timestamp, 8),
        Field::new("a", Ty::Int, 4),
    ];
    let cols = [
        ColumnData::VarChar(vec![Some(b"x".to_vec()), None, Some(b"z".to_vec())].into()),
        ColumnData::Timestamp(vec![Some(1), Some(2), Some(3)].into()),
        ColumnData::Int(vec![Some(1), Some(2), None].into()),
    ];
    let bytes = encode(&fields, &cols.iter().collect::<Vec<_>>(), 0..3);
    let block = match parse(&bytes) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(s.write_raw_block(&se, "t", &fields, block.clone()), Ok(3));
    let r = rows(&s, &mut se, "select * from t");
    assert_eq!(col(&r, 0), [1, 2, 3].map(Value::Timestamp));
    assert_eq!(col(&r, 1), [Value::Int(1), Value::Int(2), Value::Null]);
    assert_eq!(col(&r, 2), [vc("x"), Value::Null, vc("z")]);
    assert_eq!(
        col(&r, 3),
        [Value::Null, Value::Null, Value::Null],
        "missing columns are NULL, overwrite is whole-row"
    );
    assert_eq!(s.write_raw_block(&se, "d.t", &fields, block.clone()), Ok(3));
    assert_eq!(
        s.table_fields(&Session::default(), "`d`.`t`"),
        Ok(vec![
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("a", Ty::Int, 4),
            Field::new("b", Ty::VarChar, 8),
            Field::new("c", Ty::Double, 8),
        ])
    );
    assert_eq!(
        s.table_fields(&se, "nope").map_err(|e| e.code),
        Err(code::TABLE_NOT_EXIST)
    );
    assert_eq!(
        s.write_raw_block(&se, "nope", &fields, block.clone())
            .map_err(|e| e.code),
        Err(code::TABLE_NOT_EXIST)
    );
    // As TDengine's rawBlockBindData: an unknown name binds nothing (the column it named
    // is dropped without an error) and the columns it does not name are NULL.
    let mut bad = fields.clone();
    bad[2].name = "zz".into();
    assert_eq!(s.write_raw_block(&se, "t", &bad, block.clone()), Ok(3));
    let r = rows(&s, &mut se, "select a from t");
    assert_eq!(col(&r, 0), [Value::Null, Value::Null, Value::Null]);
    let no_db = Session::default();
    assert_eq!(
        s.write_raw_block(&no_db, "t", &fields, block.clone())
            .map_err(|e| e.code),
        Err(code::DB_NOT_SPECIFIED)
    );
    // KEEP applies to raw writes too.
    run(&s, &mut se, "create database k keep 1d");
    run(
        &s,
        &mut se,
        "create table k.t (ts timestamp, b varchar(8), a int)",
    );
    assert_eq!(
        s.write_raw_block(&se, "k.t", &fields, block)
            .map_err(|e| e.code),
        Err(code::TIMESTAMP_OUT_OF_RANGE)
    );
    // Only bound columns are read, as rawBlockBindData reads them: an NCHAR value that is
    // no UCS-4 text fails its column when bound, and is never looked at when not.
    run(
        &s,
        &mut se,
        "create table u (ts timestamp, a int, s nchar(2))",
    );
    let fields = vec![
        Field::new("ts", Ty::Timestamp, 8),
        Field::new("a", Ty::Int, 4),
        Field::new("s", Ty::NChar, 2),
    ];
    let cols = [
        ColumnData::Timestamp(vec![Some(1), Some(2)].into()),
        ColumnData::Int(vec![Some(1), Some(2)].into()),
        ColumnData::NChar(vec![Some("a".into()), Some("é".into())].into()),
    ];
    let mut bytes = encode(&fields, &cols.iter().collect::<Vec<_>>(), 0..2);
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&0x11_0000u32.to_le_bytes()); // past U+10FFFF
    assert!(crate::raw_block::decode(&bytes).is_err());
    let corrupt = match parse(&bytes) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        s.write_raw_block(&se, "u", &fields, corrupt.clone())
            .map_err(|e| e.code),
        Err(code::INVALID_PARA)
    );
    let mut unbound = fields.clone();
    unbound[2].name = "zz".into();
    assert_eq!(s.write_raw_block(&se, "u", &unbound, corrupt), Ok(2));
    let r = rows(&s, &mut se, "select a, s from u");
    assert_eq!(col(&r, 0), [Value::Int(1), Value::Int(2)]);
    assert_eq!(col(&r, 1), [Value::Null, Value::Null]);
}

/// A store with database `d` and `tables` normal tables `t0`… `(ts timestamp, a int)`, the
/// fields of their raw blocks, a block of 10 rows from timestamp `first`, and a runtime of
/// two workers, as the server has.
#[allow(clippy::type_complexity)]
fn raw_write_store(
    tables: usize,
) -> (
    Arc<Store>,
    Session,
    Vec<Field>,
    impl Fn(i64) -> RawBlock,
    tokio::runtime::Runtime,
) {
    use crate::raw_block::{encode, parse};
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    for t in 0..tables {
        run(
            &s,
            &mut se,
            &format!("create table t{t} (ts timestamp, a int)"),
        );
    }
    let fields = vec![
        Field::new("ts", Ty::Timestamp, 8),
        Field::new("a", Ty::Int, 4),
    ];
    let block_fields = fields.clone();
    let block = move |first: i64| {
        let cols = [
            ColumnData::Timestamp((first..first + 10).map(Some).collect::<Vec<_>>().into()),
            ColumnData::Int((0..10).map(Some).collect::<Vec<_>>().into()),
        ];
        let bytes = encode(&block_fields, &cols.iter().collect::<Vec<_>>(), 0..10);
        match parse(&bytes) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    (Arc::new(s), se, fields, block, runtime)
}

#[test]
fn queued_raw_block_writes_each_land_with_their_own_result() {
    let (s, mut se, fields, block, runtime) = raw_write_store(8);
    // 8 tables × 20 blocks from 8 writers at once, and writes to a missing table among them:
    // each is applied in place or by the queue's drainer in a batch, with its own result.
    let results = runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..9 {
            let (s, se, fields) = (s.clone(), se.clone(), fields.clone());
            let blocks: Vec<RawBlock> = (0..20).map(|b| block(b * 10)).collect();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for b in blocks {
                    let table = if t == 8 {
                        "missing".into()
                    } else {
                        format!("t{t}")
                    };
                    out.push(
                        s.queue_raw_block(&se, table, fields.clone(), b)
                            .await
                            .map_err(|e| e.code),
                    );
                }
                out
            }));
        }
        answered(tasks, 60).await
    });
    for (t, r) in results.iter().enumerate() {
        let want = if t == 8 {
            Err(code::TABLE_NOT_EXIST)
        } else {
            Ok(10)
        };
        assert!(r.iter().all(|x| *x == want), "table {t}: {r:?}");
    }
    for t in 0..8 {
        let r = rows(&s, &mut se, &format!("select count(*), sum(a) from t{t}"));
        assert_eq!(col(&r, 0), [Value::BigInt(200)], "t{t}");
        assert_eq!(col(&r, 1), [Value::BigInt(20 * 45)], "t{t}");
    }
}

/// The write queue's state: whether a drainer runs (or a write is applied in place), and
/// how many writes wait.
fn queue_state(s: &Store) -> (bool, usize) {
    let q = s.writes.lock().unwrap();
    (q.draining, q.pending.len())
}

/// Waits until the write queue is in state `want`.
async fn settle(s: &Store, want: (bool, usize)) {
    while queue_state(s) != want {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Spawns a raw-block write of 10 rows into table `t{t}`.
fn spawn_write(
    s: &Arc<Store>,
    se: &Session,
    fields: &[Field],
    block: RawBlock,
    t: usize,
) -> tokio::task::JoinHandle<Result<usize, EmuError>> {
    let (s, se, fields) = (s.clone(), se.clone(), fields.to_vec());
    tokio::spawn(async move { s.queue_raw_block(&se, format!("t{t}"), fields, block).await })
}

/// The outputs of `tasks` in order, all within `secs` seconds (a write left queued with no
/// drainer would wait for ever).
async fn answered<T>(tasks: Vec<tokio::task::JoinHandle<T>>, secs: u64) -> Vec<T> {
    let all = async {
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    };
    tokio::time::timeout(std::time::Duration::from_secs(secs), all)
        .await
        .expect("every write is answered in time")
}

/// Requires every write of `writes` to answer `Ok(10)` within 20 s.
async fn all_answer_ok(writes: Vec<tokio::task::JoinHandle<Result<usize, EmuError>>>) {
    let results = answered(writes, 20).await;
    assert!(results.iter().all(|r| *r == Ok(10)), "{results:?}");
}

/// Holds the store's read lock on a thread of its own until told (or 20 s have passed);
/// returns once the lock is held. The thread's result says whether it was told.
fn hold_store(s: &Arc<Store>) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let s = s.clone();
        std::thread::spawn(move || {
            let _reading = s.read();
            held_tx.send(()).unwrap();
            release_rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .is_ok()
        })
    };
    held_rx.recv().unwrap();
    (release_tx, reader)
}

#[test]
fn a_write_that_finds_the_store_busy_queues_and_the_writes_behind_it_are_applied() {
    let (s, mut se, fields, block, runtime) = raw_write_store(4);
    // A reader holds the store: the first write, which finds no drainer, finds the lock
    // taken and queues for a drainer of its own, which waits for the lock on a blocking
    // thread; the next three queue behind it.
    let (release, reader) = hold_store(&s);
    runtime.block_on(async {
        let first = spawn_write(&s, &se, &fields, block(0), 0);
        settle(&s, (true, 0)).await;
        let rest: Vec<_> = (1..4)
            .map(|t| spawn_write(&s, &se, &fields, block(0), t))
            .collect();
        settle(&s, (true, 3)).await;
        release.send(()).unwrap();
        all_answer_ok(std::iter::once(first).chain(rest).collect()).await;
        settle(&s, (false, 0)).await;
    });
    assert!(reader.join().unwrap());
    for t in 0..4 {
        let r = rows(&s, &mut se, &format!("select count(*) from t{t}"));
        assert_eq!(col(&r, 0), [Value::BigInt(10)], "t{t}");
    }
}

#[test]
fn a_write_that_finds_the_store_busy_leaves_its_runtime_thread_free() {
    let (s, mut se, fields, block, _workers) = raw_write_store(1);
    let (release, reader) = hold_store(&s);
    // One runtime thread: a write that waited for the lock on it would stop the task that
    // releases the lock until the reader gave up (20 s).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let written = runtime.block_on(async {
        let write = spawn_write(&s, &se, &fields, block(0), 0);
        while queue_state(&s) != (true, 0) && !write.is_finished() {
            tokio::task::yield_now().await;
        }
        let _ = release.send(());
        write.await.unwrap()
    });
    assert!(
        reader.join().unwrap(),
        "the write held the runtime's only thread until the reader gave up"
    );
    assert_eq!(written, Ok(10));
    let r = rows(&s, &mut se, "select count(*) from t0");
    assert_eq!(col(&r, 0), [Value::BigInt(10)]);
}

#[test]
fn writes_queued_behind_a_write_applied_in_place_are_handed_to_a_drainer() {
    let (s, mut se, fields, block, runtime) = raw_write_store(3);
    runtime.block_on(async {
        // What `take_turn` does before it applies a write in place: it marks itself the
        // drainer, so that writes arriving meanwhile queue.
        s.writes.lock().unwrap().draining = true;
        let writes: Vec<_> = (0..3)
            .map(|t| spawn_write(&s, &se, &fields, block(0), t))
            .collect();
        settle(&s, (true, 3)).await;
        // The write in place is done: the three go to a drainer.
        s.end_turn();
        all_answer_ok(writes).await;
        settle(&s, (false, 0)).await;
        // With nothing queued, ending a turn starts no drainer.
        s.writes.lock().unwrap().draining = true;
        s.end_turn();
        assert_eq!(queue_state(&s), (false, 0));
    });
    for t in 0..3 {
        let r = rows(&s, &mut se, &format!("select count(*) from t{t}"));
        assert_eq!(col(&r, 0), [Value::BigInt(10)], "t{t}");
    }
}

#[test]
fn garbage_sql_never_panics() {
    const FUZZ_N: usize = 20_000;
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create stable st (ts timestamp, v int, w nchar(4)) tags (g int)",
    );
    run(
        &s,
        &mut se,
        "insert into a using st tags (1) values (1, 1, 'x')",
    );
    let frags = [
        "select",
        "*",
        "from",
        "st",
        "a",
        "(",
        ")",
        ",",
        "'x'",
        "1",
        "-",
        "now",
        "where",
        "and",
        "or",
        "tags",
        "using",
        "values",
        "insert",
        "into",
        "create",
        "table",
        "stable",
        ".",
        ";",
        "`q`",
        "1d",
        "is",
        "null",
        "not",
        "between",
        "in",
        "like",
        "limit",
        "order",
        "by",
        "ts",
        "v",
        "w",
        "g",
        "tbname",
        "count(*)",
        "first(ts)",
        "delete",
        "drop",
        "alter",
        "add",
        "column",
        "int",
        "=",
        "<",
        "partition",
        "distinct",
        "show",
        "describe",
        "information_schema.ins_tables",
        "99999999999999999999",
        "'\\x'",
        "''",
        "\"",
        "d",
        "database",
        "if",
        "exists",
        "1.5e400",
        "-9223372036854775809",
        "+",
        "/",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..FUZZ_N {
        let mut sql = String::new();
        let n = (x % 14) as usize;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sql.push_str(frags[(x % frags.len() as u64) as usize]);
            sql.push(' ');
        }
        x = x.wrapping_add(0x9e37_79b9);
        let _ = s.execute(&mut se, &sql);
        if se.db.as_deref() != Some("d") {
            se.db = Some("d".into());
        }
    }
    // Raw bytes too.
    for i in 0..2_000u32 {
        let bytes: Vec<u8> = (0..(i % 40))
            .map(|k| (i.wrapping_mul(31).wrapping_add(k * 17) % 256) as u8)
            .collect();
        let sql = String::from_utf8_lossy(&bytes);
        let _ = s.execute(&mut se, &sql);
    }
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "create table d.t (ts timestamp, v int)");
    let s = std::sync::Arc::new(s);
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut se = Session {
                    db: Some("d".into()),
                };
                for i in 0..100 {
                    let sql = format!("insert into t values ({}, {k})", k * 1000 + i);
                    if s.execute(&mut se, &sql).is_err() {
                        return false;
                    }
                    if s.execute(&mut se, "select count(*) from t").is_err() {
                        return false;
                    }
                }
                true
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap_or(false));
    }
    let r = rows(&s, &mut se, "select count(*) from d.t");
    assert_eq!(col(&r, 0), [Value::BigInt(400)]);
}

mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        /// Multi-row insert of (ts, value or NULL).
        Insert(Vec<(i64, Option<i32>)>),
        /// DELETE WHERE ts BETWEEN lo AND hi.
        Delete(i64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec((0i64..200, proptest::option::of(-50i32..50)), 1..40).prop_map(Op::Insert),
            1 => (0i64..200, 0i64..60).prop_map(|(lo, w)| Op::Delete(lo, lo + w)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_btreemap_model(ops in proptest::collection::vec(op(), 1..30)) {
            let (s, mut se) = store();
            run(&s, &mut se, "create database d keep 365000");
            run(&s, &mut se, "use d");
            run(&s, &mut se, "create table t (ts timestamp, v int)");
            let mut model: BTreeMap<i64, Option<i32>> = BTreeMap::new();
            for op in &ops {
                match op {
                    Op::Insert(rows) => {
                        let values: String = rows
                            .iter()
                            .map(|(ts, v)| format!("({ts}, {})", v.map_or("NULL".to_string(), |v| v.to_string())))
                            .collect();
                        let n = affected(&s, &mut se, &format!("insert into t values {values}"));
                        prop_assert_eq!(n, rows.len());
                        for (ts, v) in rows {
                            model.insert(*ts, *v);
                        }
                    }
                    Op::Delete(lo, hi) => {
                        let n = affected(&s, &mut se, &format!("delete from t where ts between {lo} and {hi}"));
                        let before = model.len();
                        model.retain(|k, _| k < lo || k > hi);
                        prop_assert_eq!(n, before - model.len());
                    }
                }
                let r = rows(&s, &mut se, "select ts, v from t");
                let got: Vec<(Value, Value)> = (0..r.rows()).map(|i| (r.columns[0].get(i), r.columns[1].get(i))).collect();
                let want: Vec<(Value, Value)> = model
                    .iter()
                    .map(|(k, v)| (Value::Timestamp(*k), v.map_or(Value::Null, Value::Int)))
                    .collect();
                prop_assert_eq!(got, want);
            }
            for (lo, hi) in [(0i64, 50i64), (20, 20), (150, 400), (-5, 10)] {
                let r = rows(&s, &mut se, &format!("select count(*), count(v) from t where ts >= {lo} and ts < {hi}"));
                let n = model.range(lo..hi.max(lo)).count() as i64;
                let nv = model.range(lo..hi.max(lo)).filter(|(_, v)| v.is_some()).count() as i64;
                prop_assert_eq!(col(&r, 0), vec![Value::BigInt(n)]);
                prop_assert_eq!(col(&r, 1), vec![Value::BigInt(nv)]);
                let r = rows(&s, &mut se, &format!("select ts from t where ts > {lo} and ts <= {hi} and v is not null"));
                let want: Vec<Value> = model
                    .iter()
                    .filter(|(k, v)| **k > lo && **k <= hi && v.is_some())
                    .map(|(k, _)| Value::Timestamp(*k))
                    .collect();
                prop_assert_eq!(col(&r, 0), want);
            }
            let r = rows(&s, &mut se, "select ts from t order by ts desc limit 5 offset 1");
            let want: Vec<Value> = model.keys().rev().skip(1).take(5).map(|k| Value::Timestamp(*k)).collect();
            prop_assert_eq!(col(&r, 0), want);
        }
    }
}

#[test]
fn mutated_valid_statements_never_panic() {
    const ROUNDS: usize = 20_000;
    let seeds = [
        "create database m precision 'ns' vgroups 3 keep 30d,60d,90d duration 1d",
        "create stable m.st (ts timestamp, v int, w nchar(8), x double, y varbinary(8)) tags (g int, h varchar(8))",
        "create table m.a using m.st tags (1, 'x') m.b using m.st (g) tags (2)",
        "insert into m.a values (now, 1, 'a', 1.5, '\\x01') (now + 1s, null, null, null, null) m.c using m.st tags (3, 'z') values (now - 1h, -5, 'q', -0.5, 'ab')",
        "select ts, v, tbname, g from m.st where ts >= now - 1d and (v between -10 and 10 or h in ('x', 'z')) and w like 'a%' order by ts desc limit 5 offset 1",
        "select count(*), first(ts), last(v), max(x), min(w), sum(v), avg(x) from m.st where g is not null partition by tbname order by tbname",
        "select distinct tbname, g from m.st where h = 'x' limit 2, 1",
        "select tags tbname, h from m.st",
        "delete from m.st where ts < now - 10m",
        "alter stable m.st add column z bigint unsigned",
        "alter table m.a set tag h = 'yy', g = 4",
        "show create table m.a",
        "select * from information_schema.ins_tags where db_name = 'm' and tag_value is not null order by table_name",
        "select last(*) from m.st",
        "select server_version(), database(), now, 1 + 2 * 3",
    ];
    let extremes = [
        "",
        "-",
        "(",
        ")",
        ",",
        "'",
        "''",
        "`",
        "99999999999999999999999999999999999999999",
        "-9223372036854775808",
        "1e309",
        "0x",
        "0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
        "now",
        "null",
        "*",
        "tbname",
        "1d",
        "9999999999999999w",
        "'\\x0'",
        "'2021-99-99'",
        "not",
        "and",
        "or",
        "in",
        "(1)",
    ];
    let (s, mut se) = store();
    for seed in &seeds {
        let _ = s.execute(&mut se, seed);
    }
    let mut x: u64 = 0xdead_beef_cafe_f00d;
    let mut rnd = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    for _ in 0..ROUNDS {
        let seed = seeds[rnd(seeds.len())];
        let mut toks: Vec<String> = seed.split(' ').map(str::to_string).collect();
        for _ in 0..=rnd(3) {
            let i = rnd(toks.len());
            match rnd(4) {
                0 => {
                    toks.remove(i);
                }
                1 => {
                    let t = toks[rnd(toks.len())].clone();
                    toks.insert(i, t);
                }
                2 => toks[i] = extremes[rnd(extremes.len())].to_string(),
                _ => {
                    let t = &toks[i];
                    let cut = t
                        .char_indices()
                        .nth(rnd(t.chars().count() + 1))
                        .map_or(t.len(), |(k, _)| k);
                    toks[i] = t[..cut].to_string();
                }
            }
            if toks.is_empty() {
                break;
            }
        }
        let sql = toks.join(" ");
        let _ = s.execute(&mut se, &sql);
        se.db = None;
    }
    // The store is still usable afterwards.
    let r = rows(
        &s,
        &mut se,
        "select count(*) from information_schema.ins_databases",
    );
    assert_eq!(r.rows(), 1);
}

#[test]
fn composite_primary_keys() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    // Only the second column, only INT/BIGINT (UNSIGNED)/VARCHAR, never a tag.
    assert_eq!(
        err(
            &s,
            &mut se,
            "create table x (ts timestamp, a int, k int primary key)"
        ),
        0x2678
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "create table x (ts timestamp, k double primary key)"
        ),
        0x2679
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "create stable x (ts timestamp, v int) tags (t int primary key)"
        ),
        0x2677
    );
    run(
        &s,
        &mut se,
        "create table t (ts timestamp, k varchar(8) primary key, v int)",
    );
    assert_eq!(
        affected(
            &s,
            &mut se,
            "insert into t values (2, 'b', 1) (1, 'z', 2) (2, 'a', 3) (2, 'b', 4)"
        ),
        4
    );
    let r = rows(&s, &mut se, "select * from t order by ts");
    assert_eq!(
        col(&r, 1),
        [vc("z"), vc("a"), vc("b")],
        "sorted by (ts, key)"
    );
    assert_eq!(
        col(&r, 2),
        [2, 3, 4].map(Value::Int),
        "same (ts, key) overwrites"
    );
    assert_eq!(
        err(&s, &mut se, "insert into t values (3, NULL, 1)"),
        0x267B
    );
    assert_eq!(
        err(&s, &mut se, "insert into t (ts, v) values (3, 1)"),
        0x267B
    );
    let d = rows(&s, &mut se, "describe t");
    assert_eq!(col(&d, 3)[1], vc("COMPOSITE KEY"));
    assert_eq!(col(&d, 3)[2], vc(""));
    let c = rows(&s, &mut se, "show create table t");
    let Value::VarChar(ddl) = col(&c, 1)[0].clone() else {
        panic!("ddl")
    };
    let ddl = String::from_utf8(ddl).unwrap();
    assert!(ddl.contains("LEVEL 'medium' COMPOSITE KEY, `v`"), "{ddl}");
    // The printed DDL replays (COMPOSITE KEY is accepted as PRIMARY KEY is).
    run(&s, &mut se, &ddl.replace("`t`", "`t2`"));
    assert_eq!(
        col(&rows(&s, &mut se, "describe t2"), 3)[1],
        vc("COMPOSITE KEY")
    );
}

#[test]
fn virtual_tables_by_version() {
    let (s, mut se) = store();
    run(&s, &mut se, "create database d");
    run(&s, &mut se, "use d");
    run(&s, &mut se, "create table src (ts timestamp, v int)");
    run(
        &s,
        &mut se,
        "create vtable vn (ts timestamp, v int from d.src.v)",
    );
    run(
        &s,
        &mut se,
        "create stable vs (ts timestamp, v int) tags (t int) virtual 1",
    );
    run(&s, &mut se, "create vtable vc using vs tags (1)");
    assert_eq!(err(&s, &mut se, "create table c using vs tags (1)"), 0x2690);
    assert_eq!(err(&s, &mut se, "insert into vn values (1, 1)"), 0x6205);
    let r = rows(
        &s,
        &mut se,
        "select table_name, `type` from information_schema.ins_tables where db_name = 'd' order by table_name",
    );
    assert_eq!(
        col(&r, 1),
        [
            vc("NORMAL_TABLE"),
            vc("VIRTUAL_CHILD_TABLE"),
            vc("VIRTUAL_NORMAL_TABLE")
        ]
    );
    let c = rows(&s, &mut se, "show create stable vs");
    let Value::VarChar(ddl) = col(&c, 1)[0].clone() else {
        panic!("ddl")
    };
    assert!(String::from_utf8(ddl).unwrap().ends_with(" VIRTUAL 1"));
    // Before 3.3.6 there is no such statement.
    let old = Store::new(StoreConfig {
        server_version: "3.3.0.0".into(),
        ..StoreConfig::default()
    });
    let mut se = Session::default();
    run(&old, &mut se, "create database d");
    assert_eq!(
        err(&old, &mut se, "create vtable d.vn (ts timestamp, v int)"),
        code::SYNTAX_ERROR
    );
}

#[test]
fn decimal_and_blob_columns() {
    let s = Store::new(StoreConfig {
        server_version: "3.4.0.0".into(),
        ..StoreConfig::default()
    });
    s.set_now_override(Some(NOW));
    let mut se = Session::default();
    run(&s, &mut se, "create database d keep 365000");
    run(&s, &mut se, "use d");
    run(
        &s,
        &mut se,
        "create table t (ts timestamp, a decimal(38, 38), b decimal(18,0), c decimal(10, 2), \
         e blob)",
    );
    run(
        &s,
        &mut se,
        "insert into t values (1700000000000, '-0.12345678901234567890123456789012345678', \
         -999999999999999999, 12.5, '\\x00ff'), (1700000000001, null, 0, '-0.01', 'abc'), \
         (1700000000002, 0.5, 1, -12345678.99, null)",
    );
    let r = rows(&s, &mut se, "select * from t");
    assert_eq!(r.fields[1].ty, Ty::Decimal);
    assert_eq!((r.fields[1].precision, r.fields[1].scale), (38, 38));
    assert_eq!(r.fields[2].ty, Ty::Decimal64);
    assert_eq!(
        col(&r, 1),
        [
            Value::Decimal(-12345678901234567890123456789012345678),
            Value::Null,
            Value::Decimal(5 * 10i128.pow(37))
        ]
    );
    assert_eq!(
        col(&r, 2),
        [
            Value::Decimal64(-999999999999999999),
            Value::Decimal64(0),
            Value::Decimal64(1)
        ]
    );
    assert_eq!(
        col(&r, 3),
        [
            Value::Decimal64(1250),
            Value::Decimal64(-1),
            Value::Decimal64(-1234567899)
        ]
    );
    assert_eq!(
        col(&r, 4),
        [
            Value::Blob(vec![0, 255]),
            Value::Blob(b"abc".to_vec()),
            Value::Null
        ]
    );
    // Raw block: decimal schema entries carry width, precision and scale.
    let block = crate::raw_block::encode(
        &r.fields,
        &r.columns.iter().collect::<Vec<_>>(),
        0..r.rows(),
    );
    let d = crate::raw_block::decode(&block).unwrap();
    assert_eq!(d.schema[1], (Ty::Decimal, 16 << 24 | 38 << 8 | 38));
    assert_eq!(d.schema[3], (Ty::Decimal64, 8 << 24 | 10 << 8 | 2));
    assert_eq!(d.columns, r.columns);
    // Too many digits, too large, bad text.
    assert_eq!(
        err(
            &s,
            &mut se,
            "insert into t values (1700000000009, 1, 1, 123456789.1, null)"
        ),
        code::SYNTAX_ERROR
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "insert into t values (1700000000009, 1, 1, 1.123, null)"
        ),
        code::SYNTAX_ERROR
    );
    assert_eq!(
        err(
            &s,
            &mut se,
            "insert into t values (1700000000009, 'x', 1, 1, null)"
        ),
        code::SYNTAX_ERROR
    );
    // DESCRIBE and SHOW CREATE as command.c prints them.
    let dsc = rows(&s, &mut se, "describe t");
    assert_eq!(text(&dsc, 1, 1), "DECIMAL(38, 38)");
    assert_eq!(col(&dsc, 2)[1], Value::Int(16));
    assert_eq!(text(&dsc, 1, 3), "DECIMAL(10, 2)");
    assert_eq!(col(&dsc, 2)[3], Value::Int(8));
    assert_eq!(text(&dsc, 1, 4), "BLOB");
    let c = rows(&s, &mut se, "show create table t");
    let ddl = text(&c, 1, 0);
    assert!(ddl.contains("`c` DECIMAL(10,2)"), "{ddl}");
    assert!(ddl.contains("`e` BLOB"), "{ddl}");
    // Not tags; bounds of precision and scale.
    assert_ne!(
        err(
            &s,
            &mut se,
            "create stable st (ts timestamp, v int) tags (t decimal(5,1))"
        ),
        0
    );
    assert_ne!(
        err(
            &s,
            &mut se,
            "create stable st (ts timestamp, v int) tags (t blob)"
        ),
        0
    );
    assert_ne!(
        err(
            &s,
            &mut se,
            "create table x (ts timestamp, v decimal(39, 1))"
        ),
        0
    );
    assert_ne!(
        err(
            &s,
            &mut se,
            "create table x (ts timestamp, v decimal(5, 6))"
        ),
        0
    );
    // Per version: no DECIMAL before 3.3.6, no BLOB before 3.3.7.
    for (version, sql) in [
        ("3.3.0.0", "create table d.x (ts timestamp, v decimal(5,1))"),
        ("3.3.6.0", "create table d.x (ts timestamp, v blob)"),
    ] {
        let old = Store::new(StoreConfig {
            server_version: version.into(),
            ..StoreConfig::default()
        });
        let mut se = Session::default();
        run(&old, &mut se, "create database d");
        assert_eq!(err(&old, &mut se, sql), code::SYNTAX_ERROR, "{version}");
    }
}

/// `ins_tables`, `ins_tags` and `ins_columns` are built for the `column = 'text'` terms of a
/// query's top-level `AND`s only (`show::Narrow`): every such query answers exactly as the
/// same query whose `WHERE` the builders cannot use (`… OR 1 = 0`, which builds every row).
#[test]
fn system_tables_built_for_the_where_answer_as_built_whole() {
    let (s, mut se) = store();
    for db in ["d", "e"] {
        run(&s, &mut se, &format!("create database {db}"));
        run(
            &s,
            &mut se,
            &format!("create stable {db}.st (ts timestamp, v int) tags (g int, h nchar(3))"),
        );
        run(
            &s,
            &mut se,
            &format!("create stable {db}.su (ts timestamp, w double) tags (k int)"),
        );
        run(
            &s,
            &mut se,
            &format!("create table {db}.a using {db}.st tags (1, 'x')"),
        );
        run(
            &s,
            &mut se,
            &format!("create table {db}.b using {db}.st tags (null, 'y')"),
        );
        run(
            &s,
            &mut se,
            &format!("create table {db}.c using {db}.su tags (3)"),
        );
        run(
            &s,
            &mut se,
            &format!("create table {db}.n (ts timestamp, v int, x binary(4))"),
        );
    }
    let cases: [(&str, &str, usize); 12] = [
        ("ins_tables", "db_name = 'd'", 4),
        ("ins_tables", "'e' = db_name", 4),
        ("ins_tables", "DB_NAME = 'd' and `stable_name` = 'st'", 2),
        (
            "ins_tables",
            "stable_name = 'su' and type = 'CHILD_TABLE'",
            2,
        ),
        ("ins_tables", "db_name = 'D'", 0),
        ("ins_tables", "db_name = 'd' and db_name = 'e'", 0),
        ("ins_tables", "db_name = 'd' or db_name = 'e'", 8),
        ("ins_tags", "db_name = 'e' and stable_name = 'st'", 4),
        ("ins_tags", "stable_name = 'su' and tag_value = '3'", 2),
        (
            "ins_columns",
            "db_name = 'd' and table_type = 'NORMAL_TABLE'",
            3,
        ),
        (
            "ins_columns",
            "table_type = 'SUPER_TABLE' and db_name = 'e'",
            4,
        ),
        (
            "ins_columns",
            "table_type = 'NORMAL_TABLE' and col_name = 'x'",
            2,
        ),
    ];
    let user_rows = |r: &ResultSet| -> Vec<String> {
        let mut out: Vec<String> = (0..r.rows())
            .map(|i| {
                format!(
                    "{:?}",
                    r.columns.iter().map(|c| c.get(i)).collect::<Vec<_>>()
                )
            })
            .collect();
        out.sort();
        out
    };
    for (table, filter, expected) in cases {
        let narrowed = rows(
            &s,
            &mut se,
            &format!("select * from information_schema.{table} where {filter}"),
        );
        let whole = rows(
            &s,
            &mut se,
            &format!("select * from information_schema.{table} where ({filter}) or 1 = 0"),
        );
        assert_eq!(narrowed.rows(), expected, "{table} where {filter}");
        assert_eq!(narrowed.fields, whole.fields, "{table} where {filter}");
        assert_eq!(
            user_rows(&narrowed),
            user_rows(&whole),
            "{table} where {filter}"
        );
    }
}

/// A raw-block write is applied on the connection's own thread when no other write is
/// being applied (`Store::queue_raw_block`), so a panic in binding or merging it would close
/// the client's connection instead of answering an error. Mutated blocks and field lists
/// must give `Ok` or `Err`, never a panic, and leave the store usable. (What TDengine's
/// `rawBlockBindData`, source/libs/parser/src/parInsertUtil.c, does with each malformed
/// block was not checked; the emulator's contract is an error, docs/emulator.md.)
mod hostile_raw_blocks {
    use super::*;
    use crate::raw_block::{encode, parse};
    use crate::types::ColumnData;
    use proptest::prelude::*;

    fn fields() -> Vec<Field> {
        vec![
            Field::new("ts", Ty::Timestamp, 8),
            Field::new("a", Ty::Int, 4),
            Field::new("b", Ty::VarChar, 8),
            Field::new("c", Ty::Double, 8),
            Field::new("d", Ty::NChar, 4),
        ]
    }

    fn valid_block() -> Vec<u8> {
        let cols = [
            ColumnData::Timestamp((1..=5).map(Some).collect::<Vec<_>>().into()),
            ColumnData::Int(vec![Some(1), None, Some(3), Some(-4), None].into()),
            ColumnData::VarChar(
                vec![
                    Some(b"ab".to_vec()),
                    None,
                    Some(Vec::new()),
                    Some(b"xyzw".to_vec()),
                    None,
                ]
                .into(),
            ),
            ColumnData::Double(vec![None, Some(1.5), Some(-2.0), None, Some(0.0)].into()),
            ColumnData::NChar(
                vec![
                    Some("é".to_string()),
                    None,
                    Some("wxyz".to_string()),
                    None,
                    Some(String::new()),
                ]
                .into(),
            ),
        ];
        encode(&fields(), &cols.iter().collect::<Vec<_>>(), 0..5)
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        /// Overwrite the byte at this index (modulo the length) with this value.
        Set(usize, u8),
        /// Overwrite four bytes from this index with this little-endian `u32`: lengths,
        /// offsets and counts, where one byte rarely reaches far.
        SetU32(usize, u32),
        /// Cut the block to this many bytes (modulo the length).
        Truncate(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
            2 => (any::<usize>(), prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(0x7fff_ffff), any::<u32>()])
                .prop_map(|(i, v)| Mutation::SetU32(i, v)),
            1 => any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    /// A change to the field list the message carries: another type or width for one
    /// field, or one field dropped.
    #[derive(Debug, Clone)]
    enum FieldChange {
        Keep,
        Retype(usize, u8, u32),
        Drop(usize),
    }

    fn field_change() -> impl Strategy<Value = FieldChange> {
        prop_oneof![
            2 => Just(FieldChange::Keep),
            1 => (0usize..5, 1u8..=15, prop_oneof![Just(0u32), 1u32..64, Just(u32::MAX)])
                .prop_map(|(i, t, b)| FieldChange::Retype(i, t, b)),
            1 => (0usize..5).prop_map(FieldChange::Drop),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn hostile_raw_block_writes_are_errors_not_panics(
            mutations in proptest::collection::vec(mutation(), 0..5),
            change in field_change(),
        ) {
            let (s, mut se) = store();
            run(&s, &mut se, "create database d keep 365000");
            run(&s, &mut se, "use d");
            run(&s, &mut se, "create table t (ts timestamp, a int, b varchar(8), c double, d nchar(4))");
            let mut bytes = valid_block();
            for m in &mutations {
                let n = bytes.len();
                match *m {
                    Mutation::Set(i, v) if n > 0 => bytes[i % n] = v,
                    Mutation::SetU32(i, v) if n >= 4 => {
                        let at = i % (n - 3);
                        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    }
                    Mutation::Truncate(i) => bytes.truncate(i % (n + 1)),
                    _ => {}
                }
            }
            let mut fields = fields();
            match change {
                FieldChange::Keep => {}
                FieldChange::Retype(i, t, b) => {
                    if let Some(ty) = Ty::from_code(t) {
                        fields[i] = Field::new(fields[i].name.clone(), ty, b);
                    }
                }
                FieldChange::Drop(i) => {
                    fields.remove(i);
                }
            }
            // A block whose header does not hold is refused before the store sees it, as the
            // server's message handler does (`raw_block::parse`).
            if let Ok(block) = parse(&bytes) {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    s.write_raw_block(&se, "t", &fields, block)
                }));
                prop_assert!(outcome.is_ok(), "the write panicked: {:?} {:?}", mutations, change);
            }
            // The store still reads and writes.
            let r = rows(&s, &mut se, "select count(*) from t");
            prop_assert_eq!(r.rows(), 1);
            prop_assert_eq!(affected(&s, &mut se, "insert into t values (100, 1, 'z', 1.0, 'q')"), 1);
        }
    }
}
