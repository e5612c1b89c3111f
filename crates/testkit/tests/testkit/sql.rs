//! The SQL surface of the emulator through the real `taos` connector (async and sync APIs):
//! every statement form taosbackup relies on, every type with NULLs in all three precisions,
//! raw-block write round trips, and TDengine's error codes.

use futures::TryStreamExt;
use taos::taos_query::common::Timestamp;
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, Precision, TaosBuilder, Value};
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle};

fn emu() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::default()).expect("emulator starts")
}

async fn connect(emu: &EmulatorHandle) -> taos::Taos {
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .unwrap();
    crate::nodelay(&taos).await;
    taos
}

async fn records(taos: &taos::Taos, sql: &str) -> Vec<Vec<Value>> {
    let mut rs = taos
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rs.to_records().await.unwrap()
}

async fn code_of(taos: &taos::Taos, sql: &str) -> u16 {
    let err = taos.exec(sql).await.expect_err(sql);
    err.code().into()
}

const ALL_TYPES: &str = "ts TIMESTAMP, c_bool BOOL, c_ti TINYINT, c_si SMALLINT, c_int INT, \
    c_bi BIGINT, c_uti TINYINT UNSIGNED, c_usi SMALLINT UNSIGNED, c_ui INT UNSIGNED, \
    c_ubi BIGINT UNSIGNED, c_f FLOAT, c_d DOUBLE, c_vc VARCHAR(32), c_nc NCHAR(16), \
    c_vb VARBINARY(16), c_geo GEOMETRY(64)";
const ALL_TAGS: &str = "t_bool BOOL, t_int INT, t_ubi BIGINT UNSIGNED, t_d DOUBLE, \
    t_vc VARCHAR(16), t_nc NCHAR(8), t_vb VARBINARY(8), t_ts TIMESTAMP";

/// WKB of POINT(1 2), little-endian.
fn wkb_point_1_2() -> Vec<u8> {
    let mut v = vec![1u8, 1, 0, 0, 0];
    v.extend_from_slice(&1f64.to_le_bytes());
    v.extend_from_slice(&2f64.to_le_bytes());
    v
}

fn full_row(ts: i64, p: Precision) -> Vec<Value> {
    vec![
        Value::Timestamp(Timestamp::new(ts, p)),
        Value::Bool(true),
        Value::TinyInt(-128),
        Value::SmallInt(32767),
        Value::Int(-2147483648),
        Value::BigInt(9223372036854775807),
        Value::UTinyInt(255),
        Value::USmallInt(65535),
        Value::UInt(4294967295),
        Value::UBigInt(18446744073709551615),
        Value::Float(1.5),
        Value::Double(-2.25e300),
        Value::VarChar("it's \"quoted\"".into()),
        Value::NChar("東京 ✓".into()),
        Value::VarBinary(vec![0xde, 0xad, 0xbe, 0xef].into()),
        Value::Geometry(wkb_point_1_2().into()),
    ]
}

const FULL_VALUES: &str = "true, -128, 32767, -2147483648, 9223372036854775807, 255, 65535, \
    4294967295, 18446744073709551615, 1.5, -2.25e300, 'it''s \"quoted\"', '東京 ✓', \
    '\\xdeadbeef', 'POINT(1 2)'";

#[tokio::test]
async fn every_type_with_nulls_in_every_precision() {
    let emu = emu();
    let taos = connect(&emu).await;
    for (p, name, scale) in [
        (Precision::Millisecond, "ms", 1i64),
        (Precision::Microsecond, "us", 1_000),
        (Precision::Nanosecond, "ns", 1_000_000),
    ] {
        let db = format!("types_{name}");
        taos.exec(format!("CREATE DATABASE {db} PRECISION '{name}'"))
            .await
            .unwrap();
        taos.exec(format!(
            "CREATE STABLE {db}.st ({ALL_TYPES}) TAGS ({ALL_TAGS})"
        ))
        .await
        .unwrap();
        let ts1 = 1_700_000_000_123 * scale + (scale - 1);
        let ts2 = ts1 + 1;
        taos.exec(format!(
            "INSERT INTO {db}.c1 USING {db}.st TAGS (false, -7, 18446744073709551615, 0.5, 'tag''s', 'ñ', '\\x00ff', {ts1}) \
             VALUES ({ts1}, {FULL_VALUES}) \
             ({ts2}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ))
        .await
        .unwrap();
        taos.exec(format!(
            "CREATE TABLE {db}.c2 USING {db}.st TAGS (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ))
        .await
        .unwrap();

        let mut rs = taos.query(format!("SELECT * FROM {db}.c1")).await.unwrap();
        assert_eq!(rs.precision(), p, "result precision is the database's");
        let got = rs.to_records().await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], full_row(ts1, p), "{name}: all values");
        assert_eq!(got[1][0], Value::Timestamp(Timestamp::new(ts2, p)));
        for (i, v) in got[1].iter().enumerate().skip(1) {
            assert!(v.is_null(), "{name}: column {i} should be NULL, got {v:?}");
        }

        // Typed tags, one row per child, NULL tags included.
        let tags = records(
            &taos,
            &format!("SELECT TAGS tbname, t_bool, t_int, t_ubi, t_d, t_vc, t_nc, t_vb, t_ts FROM {db}.st ORDER BY tbname"),
        )
        .await;
        assert_eq!(tags.len(), 2, "{name}: {tags:?}");
        assert_eq!(
            tags[0],
            vec![
                Value::VarChar("c1".into()),
                Value::Bool(false),
                Value::Int(-7),
                Value::UBigInt(u64::MAX),
                Value::Double(0.5),
                Value::VarChar("tag's".into()),
                Value::NChar("ñ".into()),
                Value::VarBinary(vec![0x00, 0xff].into()),
                Value::Timestamp(Timestamp::new(ts1, p)),
            ]
        );
        assert!(
            tags[1][1..].iter().all(Value::is_null),
            "{name}: {:?}",
            tags[1]
        );

        // `now` is in the database's precision.
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
            / (1_000_000 / scale);
        taos.exec(format!("INSERT INTO {db}.c2 (ts, c_int) VALUES (now, 1)"))
            .await
            .unwrap();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
            / (1_000_000 / scale);
        let (now,): (i64,) = taos
            .query_one(format!("SELECT ts FROM {db}.c2"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            before <= now && now <= after,
            "{name}: now={now} not in [{before}, {after}]"
        );
    }
}

#[tokio::test]
async fn json_tags_round_trip() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE j").await.unwrap();
    taos.exec("CREATE STABLE j.s (ts TIMESTAMP, v INT) TAGS (info JSON)")
        .await
        .unwrap();
    taos.exec(r#"CREATE TABLE j.a USING j.s TAGS ('{"k":"v","n":1}') j.b USING j.s TAGS (NULL)"#)
        .await
        .unwrap();
    let tags = records(&taos, "SELECT TAGS tbname, info FROM j.s ORDER BY tbname").await;
    assert_eq!(
        tags[0][1],
        Value::Json(serde_json::json!({"k": "v", "n": 1}))
    );
    assert!(tags[1][1].is_null());
    // SHOW CREATE TABLE replays into an identical child.
    let ddl = records(&taos, "SHOW CREATE TABLE j.a").await;
    let Value::VarChar(ddl) = &ddl[0][1] else {
        panic!("{ddl:?}")
    };
    taos.exec("CREATE DATABASE j2").await.unwrap();
    taos.exec("CREATE STABLE j2.s (ts TIMESTAMP, v INT) TAGS (info JSON)")
        .await
        .unwrap();
    taos.exec("USE j2").await.unwrap();
    taos.exec(ddl.replace("`j`.", ""))
        .await
        .unwrap_or_else(|e| panic!("replay {ddl}: {e}"));
    let tags2 = records(&taos, "SELECT TAGS tbname, info FROM j2.s").await;
    assert_eq!(tags2[0], tags[0]);
}

#[tokio::test]
async fn statement_forms() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE IF NOT EXISTS f PRECISION 'us' VGROUPS 4 KEEP 36500 DURATION 10 WAL_RETENTION_PERIOD 7200")
        .await
        .unwrap();
    taos.exec("CREATE DATABASE IF NOT EXISTS f").await.unwrap();
    let ddl = records(&taos, "SHOW CREATE DATABASE f").await;
    let Value::VarChar(ddl) = &ddl[0][1] else {
        panic!("{ddl:?}")
    };
    for part in [
        "VGROUPS 4",
        "PRECISION 'us'",
        "KEEP 36500d",
        "DURATION 10d",
        "WAL_RETENTION_PERIOD 7200",
    ] {
        assert!(ddl.contains(part), "{part} missing from {ddl}");
    }
    taos.exec("USE f").await.unwrap();
    taos.exec("CREATE STABLE m (ts TIMESTAMP, v INT, s VARCHAR(8)) TAGS (loc VARCHAR(16), g INT)")
        .await
        .unwrap();
    taos.exec("CREATE TABLE a USING m TAGS ('x', 1) b USING m (g) TAGS (2)")
        .await
        .unwrap();
    taos.exec("CREATE TABLE n (ts TIMESTAMP, v INT)")
        .await
        .unwrap();
    let n = taos
        .exec(
            "INSERT INTO a VALUES (1000, 1, 'a') (2000, 2, 'b') (3000, 3, 'c') \
               b (ts, v) VALUES (1000, 10) (5000, 50) \
               c USING m TAGS ('z', 3) VALUES (1000, 100, NULL) \
               n VALUES (1000, 7)",
        )
        .await
        .unwrap();
    assert_eq!(n, 7);

    let q = |sql: &'static str| {
        let taos = &taos;
        async move {
            let r: Vec<(i64,)> = taos
                .query(sql)
                .await
                .unwrap()
                .deserialize::<(i64,)>()
                .try_collect()
                .await
                .unwrap();
            r.into_iter().map(|r| r.0).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        q("SELECT ts FROM a WHERE ts >= 2000").await,
        vec![2000, 3000]
    );
    assert_eq!(q("SELECT ts FROM a WHERE ts > 2000").await, vec![3000]);
    assert_eq!(q("SELECT ts FROM a WHERE ts < 2000").await, vec![1000]);
    assert_eq!(
        q("SELECT ts FROM a WHERE ts <= 2000").await,
        vec![1000, 2000]
    );
    assert_eq!(
        q("SELECT ts FROM a WHERE ts BETWEEN 1500 AND 3000").await,
        vec![2000, 3000]
    );
    assert_eq!(
        q("SELECT ts FROM a ORDER BY ts DESC").await,
        vec![3000, 2000, 1000]
    );
    assert_eq!(
        q("SELECT ts FROM a ORDER BY ts LIMIT 1 OFFSET 1").await,
        vec![2000]
    );
    assert_eq!(q("SELECT count(*) FROM m").await, vec![6]);
    assert_eq!(q("SELECT first(ts) FROM m").await, vec![1000]);
    assert_eq!(q("SELECT last(ts) FROM m").await, vec![5000]);
    let per: Vec<(String, i64)> = taos
        .query("SELECT tbname, count(*) FROM m PARTITION BY tbname ORDER BY tbname")
        .await
        .unwrap()
        .deserialize()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(per, vec![("a".into(), 3), ("b".into(), 2), ("c".into(), 1)]);
    // SELECT * from a super table: data columns, then tags.
    let star = records(&taos, "SELECT * FROM m WHERE tbname = 'c'").await;
    assert_eq!(star[0].len(), 5);
    assert_eq!(star[0][3], Value::VarChar("z".into()));

    // Overwrite at an existing timestamp, then DELETE on a child and on the super table.
    taos.exec("INSERT INTO a VALUES (2000, 22, 'B')")
        .await
        .unwrap();
    let r = records(&taos, "SELECT v, s FROM a WHERE ts = 2000").await;
    assert_eq!(r, vec![vec![Value::Int(22), Value::VarChar("B".into())]]);
    assert_eq!(
        taos.exec("DELETE FROM a WHERE ts >= 3000").await.unwrap(),
        1
    );
    assert_eq!(
        taos.exec("DELETE FROM m WHERE ts <= 1000").await.unwrap(),
        3
    );
    assert_eq!(q("SELECT count(*) FROM m").await, vec![2]);

    // Schema and tag changes.
    taos.exec("ALTER STABLE m ADD COLUMN extra DOUBLE")
        .await
        .unwrap();
    taos.exec("ALTER STABLE m ADD TAG zone NCHAR(4)")
        .await
        .unwrap();
    taos.exec("ALTER STABLE m DROP COLUMN s").await.unwrap();
    taos.exec("ALTER TABLE a SET TAG loc = 'moved'")
        .await
        .unwrap();
    let d = taos.describe("m").await.unwrap();
    let names: Vec<String> = d.into_iter().map(|c| c.field().to_string()).collect();
    assert_eq!(names, ["ts", "v", "extra", "loc", "g", "zone"]);
    let r = records(&taos, "SELECT v, extra FROM a").await;
    assert_eq!(r, vec![vec![Value::Int(22), Value::Null(taos::Ty::Double)]]);
    let t = records(&taos, "SELECT TAGS loc FROM m WHERE tbname = 'a'").await;
    assert_eq!(t, vec![vec![Value::VarChar("moved".into())]]);

    // SHOW and information_schema.
    let dbs = taos.databases().await.unwrap();
    assert!(dbs.iter().any(|d| d.name == "f"), "{dbs:?}");
    assert_eq!(records(&taos, "SHOW STABLES").await.len(), 1);
    assert_eq!(records(&taos, "SHOW TABLES").await.len(), 4);
    let tables: Vec<(String, Option<String>, i64)> = taos
        .query("SELECT table_name, stable_name, vgroup_id FROM information_schema.ins_tables WHERE db_name = 'f' ORDER BY table_name")
        .await
        .unwrap()
        .deserialize()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tables.len(), 4);
    assert_eq!(tables[3].0, "n");
    assert_eq!(tables[3].1, None, "normal tables have no super table");
    let tags = records(&taos, "SELECT tag_name, tag_value FROM information_schema.ins_tags WHERE db_name = 'f' AND table_name = 'b' ORDER BY tag_name").await;
    assert_eq!(tags.len(), 3);
    let stb = records(
        &taos,
        "SELECT stable_name, `columns`, `tags` FROM information_schema.ins_stables WHERE db_name = 'f'",
    )
    .await;
    assert_eq!(
        stb,
        vec![vec![
            Value::VarChar("m".into()),
            Value::Int(3),
            Value::Int(3)
        ]]
    );
    let cols = records(&taos, "SELECT col_name FROM information_schema.ins_columns WHERE db_name = 'f' AND table_name = 'n'").await;
    assert_eq!(cols.len(), 2);

    // SHOW CREATE STABLE / TABLE replay into another database.
    taos.exec("CREATE DATABASE g PRECISION 'us' KEEP 36500")
        .await
        .unwrap();
    taos.exec("USE g").await.unwrap();
    for sql in [
        "SHOW CREATE STABLE f.m",
        "SHOW CREATE TABLE f.b",
        "SHOW CREATE TABLE f.n",
    ] {
        let r = records(&taos, sql).await;
        let Value::VarChar(ddl) = &r[0][1] else {
            panic!("{r:?}")
        };
        taos.exec(ddl.replace("`f`.", ""))
            .await
            .unwrap_or_else(|e| panic!("replay {ddl}: {e}"));
    }
    let ddl_of = |r: Vec<Vec<Value>>| match &r[0][1] {
        Value::VarChar(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    let f_b = ddl_of(records(&taos, "SHOW CREATE TABLE f.b").await);
    let g_b = ddl_of(records(&taos, "SHOW CREATE TABLE g.b").await);
    assert_eq!(
        g_b.replace("`g`.", ""),
        f_b.replace("`f`.", ""),
        "replayed DDL prints identically"
    );
    taos.exec("USE f").await.unwrap();

    // DROP TABLE and DROP STABLE (which drops its children).
    taos.exec("DROP TABLE a").await.unwrap();
    taos.exec("DROP TABLE IF EXISTS a").await.unwrap();
    taos.exec("DROP STABLE m").await.unwrap();
    assert_eq!(records(&taos, "SHOW TABLES").await.len(), 1);
    let (v,): (String,) = taos
        .query_one("SELECT SERVER_VERSION()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "3.3.6.0");
    taos.exec("DROP DATABASE f").await.unwrap();
    taos.exec("DROP DATABASE IF EXISTS f").await.unwrap();
}

#[tokio::test]
async fn error_codes_are_tdengines() {
    let emu = emu();
    let taos = connect(&emu).await;
    assert_eq!(code_of(&taos, "USE nodb").await, 0x0388);
    assert_eq!(code_of(&taos, "SELECT * FROM nodb.t").await, 0x0388);
    taos.exec("CREATE DATABASE e KEEP 10").await.unwrap();
    assert_eq!(code_of(&taos, "CREATE DATABASE e").await, 0x0381);
    assert_eq!(code_of(&taos, "SELECT * FROM e.missing").await, 0x2603);
    assert_eq!(code_of(&taos, "SELEC * FROM e.t").await, 0x2600);
    assert_eq!(
        code_of(&taos, "CREATE TABLE t (ts TIMESTAMP)").await,
        0x2616,
        "no database selected"
    );
    taos.exec("CREATE TABLE e.t (ts TIMESTAMP, v INT)")
        .await
        .unwrap();
    assert_eq!(
        code_of(&taos, "CREATE TABLE e.t (ts TIMESTAMP, v INT)").await,
        0x0603
    );
    // KEEP: rows older than now - 10 days are rejected, newer ones accepted.
    assert_eq!(
        code_of(&taos, "INSERT INTO e.t VALUES (now - 11d, 1)").await,
        0x060B
    );
    assert_eq!(
        taos.exec("INSERT INTO e.t VALUES (now - 9d, 1)")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn raw_block_write_round_trips_every_type() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE r PRECISION 'ns'").await.unwrap();
    taos.exec(format!("CREATE STABLE r.st ({ALL_TYPES}) TAGS (g INT)"))
        .await
        .unwrap();
    let mut sql = String::from("INSERT INTO r.src USING r.st TAGS (1) VALUES ");
    for i in 0..5000i64 {
        if i % 7 == 0 {
            sql.push_str(&format!("({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)", 1_700_000_000_000_000_000 + i));
        } else {
            sql.push_str(&format!(
                "({}, {FULL_VALUES})",
                1_700_000_000_000_000_000 + i
            ));
        }
    }
    taos.exec(&sql).await.unwrap();
    taos.exec("CREATE TABLE r.dst USING r.st TAGS (2)")
        .await
        .unwrap();
    let mut rs = taos.query("SELECT * FROM r.src").await.unwrap();
    let mut blocks = 0;
    while let Some(mut block) = rs.blocks().try_next().await.unwrap() {
        block.with_table_name("r.dst");
        taos.write_raw_block(&block).await.unwrap();
        blocks += 1;
    }
    assert!(blocks >= 2, "several blocks written ({blocks})");
    let src = records(&taos, "SELECT * FROM r.src").await;
    let dst = records(&taos, "SELECT * FROM r.dst").await;
    assert_eq!(src.len(), 5000);
    assert_eq!(src, dst);
}

#[tokio::test]
async fn raw_blocks_map_columns_by_name_across_schema_changes() {
    let emu = emu();
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE sc KEEP 36500").await.unwrap();
    taos.exec("CREATE TABLE sc.old (ts TIMESTAMP, a INT, b VARCHAR(4))")
        .await
        .unwrap();
    taos.exec("INSERT INTO sc.old VALUES (1000, 1, 'x') (2000, NULL, 'y')")
        .await
        .unwrap();
    // Newer schema: `b` moved after a new column `c`; the block fills `c` with NULL.
    taos.exec("CREATE TABLE sc.new (ts TIMESTAMP, c DOUBLE, a INT, b VARCHAR(4))")
        .await
        .unwrap();
    // A table without `b` must refuse the block rather than drop its values.
    taos.exec("CREATE TABLE sc.narrow (ts TIMESTAMP, a INT)")
        .await
        .unwrap();
    let mut rs = taos.query("SELECT * FROM sc.old").await.unwrap();
    let mut block = rs.blocks().try_next().await.unwrap().unwrap();
    block.with_table_name("sc.new");
    taos.write_raw_block(&block).await.unwrap();
    let got = records(&taos, "SELECT ts, c, a, b FROM sc.new").await;
    assert_eq!(got[0][1], Value::Null(taos::Ty::Double));
    assert_eq!(got[0][2], Value::Int(1));
    assert_eq!(got[1][3], Value::VarChar("y".into()));
    block.with_table_name("sc.narrow");
    assert!(
        taos.write_raw_block(&block).await.is_err(),
        "unknown column refused"
    );
    block.with_table_name("sc.missing");
    let err = taos
        .write_raw_block(&block)
        .await
        .expect_err("missing table");
    assert_eq!(u16::from(err.code()), 0x2603, "{err}");
}
