//! Version behaviour sets and the SQL fidelity rows of the audit (B1, B2, B11, B12, B15,
//! B16, A13), through the real `taos` connector where the client matters.

use futures::TryStreamExt;
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, TaosBuilder, Value};
use taosbackup_testkit::{
    Emulator, EmulatorConfig, EmulatorHandle, Outcome, Profile, Session, Store, StoreConfig, code,
};

fn store(p: Profile) -> Store {
    Store::new(StoreConfig {
        server_version: p.version().into(),
        ..StoreConfig::default()
    })
}

fn exec(store: &Store, sql: &str) -> Outcome {
    store
        .execute(&mut Session::default(), sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn err(store: &Store, sql: &str) -> u32 {
    store
        .execute(&mut Session::default(), sql)
        .expect_err(sql)
        .code
}

fn columns(store: &Store, sql: &str) -> Vec<String> {
    match exec(store, sql) {
        Outcome::Rows(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        Outcome::Affected(_) => panic!("{sql}: no rows"),
    }
}

fn text(store: &Store, sql: &str) -> String {
    match exec(store, sql) {
        Outcome::Rows(r) => match r.columns[1].get(0) {
            taosbackup_testkit::Value::VarChar(b) => String::from_utf8(b).unwrap(),
            v => panic!("{v:?}"),
        },
        Outcome::Affected(_) => panic!("{sql}: no rows"),
    }
}

fn emu(p: Profile) -> EmulatorHandle {
    Emulator::start(EmulatorConfig {
        server_version: p.version().into(),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts")
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

/// B2: `ins_topics` has `sql` in every version, `meta`/`type` only up to 3.3.x.
#[test]
fn topics_columns_per_version() {
    for p in Profile::ALL {
        let s = store(p);
        exec(&s, "CREATE DATABASE d WAL_RETENTION_PERIOD 3600");
        exec(&s, "CREATE TOPIC t WITH META AS DATABASE d");
        let cols = columns(&s, "SELECT * FROM information_schema.ins_topics");
        assert_eq!(
            cols[..5],
            ["topic_name", "db_name", "create_time", "sql", "schema"]
        );
        assert_eq!(
            cols.contains(&"meta".to_string()),
            p != Profile::V3_4,
            "{p}: {cols:?}"
        );
        // `meta` is a keyword: only backquoted.
        assert_eq!(
            err(
                &s,
                "SELECT topic_name, meta FROM information_schema.ins_topics"
            ),
            code::SYNTAX_ERROR
        );
        if p != Profile::V3_4 {
            exec(
                &s,
                "SELECT `meta`, `type` FROM information_schema.ins_topics",
            );
        }
    }
}

/// B15: `ins_stables` has `uid`; 3.3.6 adds `isvirtual` and `keep`.
#[test]
fn stables_columns_per_version() {
    for p in Profile::ALL {
        let cols = columns(&store(p), "SELECT * FROM information_schema.ins_stables");
        assert_eq!(cols[9], "rollup");
        assert_eq!(&cols[10..], p.stables_extra_columns(), "{p}");
    }
}

/// A9/B: each version prints its own option names and accepts exactly its own.
#[test]
fn database_options_per_version() {
    let cases = [
        (Profile::V3_3_0, "S3_CHUNKSIZE 131072", "S3_CHUNKPAGES 1"),
        (Profile::V3_3_6, "S3_CHUNKPAGES 131072", "S3_CHUNKSIZE 1"),
        (Profile::V3_4, "SS_CHUNKPAGES 131072", "S3_CHUNKPAGES 1"),
    ];
    for (p, printed, foreign) in cases {
        let s = store(p);
        exec(&s, "CREATE DATABASE d");
        let ddl = text(&s, "SHOW CREATE DATABASE d");
        assert!(ddl.contains(printed), "{p}: {ddl}");
        assert_eq!(
            ddl.contains("COMPACT_INTERVAL"),
            p == Profile::V3_4,
            "{p}: {ddl}"
        );
        // What a version prints, it takes back.
        exec(&s, &ddl.replace("`d`", "`d2`"));
        assert_eq!(
            err(&s, &format!("CREATE DATABASE e {foreign}")),
            code::SYNTAX_ERROR,
            "{p}"
        );
        assert_eq!(err(&s, "CREATE DATABASE e DAYS 10"), code::SYNTAX_ERROR);
    }
}

/// B11: `'null'` is NULL for a non-string column or tag of an INSERT, text for a string one,
/// and not NULL outside the insert parser (CREATE TABLE … TAGS).
#[test]
fn null_strings_in_inserts() {
    let s = store(Profile::V3_3_6);
    exec(&s, "CREATE DATABASE d");
    exec(
        &s,
        "CREATE STABLE d.st (ts TIMESTAMP, i INT, v VARCHAR(8)) TAGS (t INT, n NCHAR(4))",
    );
    exec(
        &s,
        "INSERT INTO d.c1 USING d.st TAGS ('NULL', 'null') VALUES (now, 'null', 'null') (now + 1a, 'Null', NULL)",
    );
    let Outcome::Rows(r) = exec(&s, "SELECT i, v FROM d.c1") else {
        panic!()
    };
    assert_eq!(r.rows(), 2);
    assert!(r.columns[0].get(0).is_null() && r.columns[0].get(1).is_null());
    assert_eq!(
        r.columns[1].get(0),
        taosbackup_testkit::Value::VarChar(b"null".to_vec())
    );
    let Outcome::Rows(r) = exec(&s, "SELECT TAGS t, n FROM d.st") else {
        panic!()
    };
    assert!(r.columns[0].get(0).is_null());
    assert_eq!(
        r.columns[1].get(0),
        taosbackup_testkit::Value::NChar("null".into())
    );
    assert_ne!(
        s.execute(
            &mut Session::default(),
            "CREATE TABLE d.c2 USING d.st TAGS ('null', 'x')"
        )
        .err()
        .map(|e| e.code),
        None
    );
}

/// B12 through the connector: a statement over 1 MiB is refused with 0x0219; one just under
/// it runs.
#[tokio::test(flavor = "multi_thread")]
async fn statement_size_limit() {
    let emu = emu(Profile::V3_3_6);
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE d").await.unwrap();
    taos.exec("CREATE TABLE d.t (ts TIMESTAMP, v VARCHAR(60000))")
        .await
        .unwrap();
    let row = |i: usize| format!("(now + {i}a, '{}')", "x".repeat(50_000));
    let mut sql = "INSERT INTO d.t VALUES".to_string();
    let mut i = 1;
    while sql.len() + 50_100 < 1024 * 1024 {
        sql.push(' ');
        sql.push_str(&row(i));
        i += 1;
    }
    taos.exec(&sql).await.unwrap();
    sql.push(' ');
    sql.push_str(&row(i));
    assert!(sql.len() > 1024 * 1024);
    let e = taos.exec(&sql).await.unwrap_err();
    assert_eq!(u16::from(e.code()), 0x0219, "{e}");
}

/// A13/B16: the connector's edition check (`ins_cluster`, then `SHOW GRANTS`) works, and the
/// system tables a backup may read exist with TDengine's columns.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_tables_and_edition() {
    use taos::taos_query::AsyncTBuilder as _;
    let emu = emu(Profile::V3_4);
    let builder = TaosBuilder::from_dsn(emu.dsn()).unwrap();
    let edition = builder.get_edition().await.expect("edition");
    assert!(!edition.is_enterprise_edition());
    let taos = connect(&emu).await;
    taos.exec("CREATE DATABASE d VGROUPS 3").await.unwrap();
    for (sql, first) in [
        ("SELECT * FROM information_schema.ins_cluster", "id"),
        ("SELECT * FROM information_schema.ins_dnodes", "id"),
        ("SELECT * FROM information_schema.ins_vgroups", "vgroup_id"),
        ("SELECT * FROM information_schema.ins_users", "name"),
        ("SHOW GRANTS", "version"),
        ("SHOW DNODES", "id"),
    ] {
        let mut rs = taos
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(rs.fields()[0].name(), first, "{sql}");
        let rows: Vec<Vec<Value>> = rs.to_records().await.unwrap();
        assert!(!rows.is_empty(), "{sql}");
    }
    let vgroups: Vec<(i32,)> = taos
        .query("SELECT `vgroup_id` FROM information_schema.ins_vgroups WHERE `db_name` = 'd'")
        .await
        .unwrap()
        .deserialize::<(i32,)>()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(vgroups.len(), 3);
}
