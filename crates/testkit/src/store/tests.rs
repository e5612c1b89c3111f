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
}
