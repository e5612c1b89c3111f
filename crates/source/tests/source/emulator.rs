//! The source against the TDengine wire emulator over a real WebSocket.

use std::time::Duration;

use futures::TryStreamExt;
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, TaosBuilder};
use taosbackup_core::{
    BlockChunk, DataType, ExportRequest, Precision, RestoreOptions, TableKind, TimeRange, Value,
};
use taosbackup_source::{ConnectOptions, Error, TaosSource, WriteMode};
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle, Fault, FaultPoint, Trigger};

/// A recent timestamp (inside the default KEEP) in `p`.
fn base(p: Precision) -> i64 {
    1_760_000_000_000 * (p.units_per_second() / 1000)
}

fn emu() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::default()).expect("emulator starts")
}

fn source(emu: &EmulatorHandle) -> TaosSource {
    let mut o = ConnectOptions::new(emu.dsn()).with_credentials("root", "taosdata");
    o.retry_count = 5;
    o.retry_interval_ms = 10;
    o.request_timeout = Duration::from_secs(3);
    TaosSource::connect(o).expect("source")
}

async fn sql(emu: &EmulatorHandle, statements: &[&str]) {
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .unwrap();
    crate::nodelay(&taos).await;
    for s in statements {
        taos.exec(*s)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", &s[..s.len().min(200)]));
    }
}

async fn rows(emu: &EmulatorHandle, q: &str) -> Vec<Vec<taos::Value>> {
    let taos = TaosBuilder::from_dsn(emu.dsn())
        .unwrap()
        .build()
        .await
        .unwrap();
    crate::nodelay(&taos).await;
    let mut rs = taos.query(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
    rs.to_records().await.unwrap()
}

const ALL_COLUMNS: &str = "ts TIMESTAMP, b BOOL, i8 TINYINT, i16 SMALLINT, i32 INT, i64 BIGINT, \
    u8 TINYINT UNSIGNED, u16 SMALLINT UNSIGNED, u32 INT UNSIGNED, u64 BIGINT UNSIGNED, \
    f FLOAT, d DOUBLE, vc VARCHAR(20), nc NCHAR(10), vb VARBINARY(16), g GEOMETRY(64)";
const ALL_TAGS: &str = "tb BOOL, t8 TINYINT, t16 SMALLINT, t32 INT, t64 BIGINT, tu8 TINYINT UNSIGNED, \
    tu16 SMALLINT UNSIGNED, tu32 INT UNSIGNED, tu64 BIGINT UNSIGNED, tf FLOAT, td DOUBLE, \
    tts TIMESTAMP, tvc VARCHAR(20), tnc NCHAR(10), tvb VARBINARY(16), tg GEOMETRY(64)";

/// A database with every column and tag type, NULLs, a JSON tag, a normal table.
async fn seed(emu: &EmulatorHandle, db: &str, precision: &str, base: i64) {
    let stmts = [
        format!("CREATE DATABASE {db} PRECISION '{precision}' VGROUPS 2"),
        format!("CREATE STABLE {db}.m ({ALL_COLUMNS}) TAGS ({ALL_TAGS})"),
        format!("CREATE STABLE {db}.j (ts TIMESTAMP, v INT) TAGS (info JSON)"),
        format!(
            "CREATE TABLE {db}.c1 USING {db}.m TAGS (true, -8, -16, -32, -64, 8, 16, 32, \
             18446744073709551615, 1.5, -2.25e100, 1700000000000, 'it''s', '电表α', '\\x00ff10', 'POINT(1 2)') \
             COMMENT 'first' TTL 7"
        ),
        format!(
            "CREATE TABLE {db}.c2 USING {db}.m TAGS (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
        format!("CREATE TABLE {db}.j1 USING {db}.j TAGS ('{{\"k\":\"v\",\"n\":1}}')"),
        format!("CREATE TABLE {db}.j2 USING {db}.j TAGS (NULL)"),
        format!("CREATE TABLE {db}.n1 (ts TIMESTAMP, v DOUBLE, s NCHAR(4)) COMMENT 'normal'"),
        format!(
            "INSERT INTO {db}.c1 VALUES ({base}, true, 1, 2, 3, 4, 5, 6, 7, 8, 0.5, 0.25, 'ab', 'αβ', '\\x0102', 'POINT(3 4)') \
             ({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) \
             ({}, false, -128, -32768, -2147483648, -9223372036854775808, 255, 65535, 4294967295, \
             18446744073709551615, -1.25, 1e300, '', '', '\\x', 'POINT(-1 -2)')",
            base + 1,
            base + 2
        ),
        format!(
            "INSERT INTO {db}.c2 VALUES ({base}, true, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 'x', 'y', '\\x01', 'POINT(0 0)')"
        ),
        format!(
            "INSERT INTO {db}.j1 VALUES ({base}, 1) ({}, NULL)",
            base + 5
        ),
        format!(
            "INSERT INTO {db}.n1 VALUES ({base}, 1.5, '中') ({}, NULL, NULL)",
            base + 3
        ),
    ];
    let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
    sql(emu, &refs).await;
}

#[tokio::test]
async fn catalog_fidelity_for_every_type_and_precision() {
    let emu = emu();
    let src = source(&emu);
    for (db, p, prec) in [
        ("pms", "ms", Precision::Ms),
        ("pus", "us", Precision::Us),
        ("pns", "ns", Precision::Ns),
    ] {
        seed(&emu, db, p, base(prec)).await;
        let cat = src.read_catalog(db).await.unwrap();
        assert_eq!(cat.database.precision, prec);
        assert!(
            cat.database.ddl.contains("VGROUPS 2"),
            "{}",
            cat.database.ddl
        );
        assert_eq!(
            cat.super_tables
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["j", "m"]
        );
        let m = &cat.super_tables[1];
        assert_eq!(m.columns.len(), 16);
        assert_eq!(m.tags.len(), 16);
        assert_eq!(m.columns[13].data_type, DataType::NChar);
        assert_eq!(m.columns[13].length, Some(10));
        assert_eq!(m.columns[15].data_type, DataType::Geometry);
        assert_eq!(m.tags[8].data_type, DataType::UBigInt);
        assert!(m.ddl.starts_with("CREATE STABLE"), "{}", m.ddl);
        let names: Vec<&str> = cat.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["c1", "c2", "j1", "j2", "n1"]);
        let c1 = &cat.tables[0];
        assert_eq!(c1.kind, TableKind::Child);
        assert_eq!(c1.super_table.as_deref(), Some("m"));
        assert_eq!(c1.comment.as_deref(), Some("first"));
        assert_eq!(c1.ttl, Some(7));
        let tags: Vec<Value> = c1.tags.iter().map(|t| t.value.clone()).collect();
        let mut point = vec![1u8, 1, 0, 0, 0];
        point.extend_from_slice(&1f64.to_le_bytes());
        point.extend_from_slice(&2f64.to_le_bytes());
        assert_eq!(
            tags,
            vec![
                Value::Bool(true),
                Value::TinyInt(-8),
                Value::SmallInt(-16),
                Value::Int(-32),
                Value::BigInt(-64),
                Value::UTinyInt(8),
                Value::USmallInt(16),
                Value::UInt(32),
                Value::UBigInt(u64::MAX),
                Value::Float(1.5),
                Value::Double(-2.25e100),
                Value::Timestamp(1_700_000_000_000),
                Value::VarChar(b"it's".to_vec()),
                Value::NChar("电表α".into()),
                Value::VarBinary(vec![0, 0xff, 0x10]),
                Value::Geometry(point),
            ]
        );
        assert_eq!(c1.tags[13].name, "tnc");
        assert!(cat.tables[1].tags.iter().all(|t| t.value == Value::Null));
        assert_eq!(cat.tables[1].tags.len(), 16);
        assert_eq!(
            cat.tables[2].tags[0].value,
            Value::Json("{\"k\":\"v\",\"n\":1}".into())
        );
        assert_eq!(cat.tables[3].tags[0].value, Value::Null);
        let n1 = &cat.tables[4];
        assert_eq!(n1.kind, TableKind::Normal);
        assert_eq!(n1.comment.as_deref(), Some("normal"));
        assert_eq!(n1.columns.len(), 3);
        assert_eq!(n1.columns[2].data_type, DataType::NChar);
        assert_eq!(n1.columns[2].length, Some(4));
        // The catalog is what a manifest stores: it survives JSON.
        let json = serde_json::to_string(&cat).unwrap();
        let back: taosbackup_core::CatalogSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cat);
    }
}

#[tokio::test]
async fn catalog_takes_a_bounded_number_of_requests() {
    let emu = emu();
    sql(
        &emu,
        &[
            "CREATE DATABASE big",
            "CREATE STABLE big.s (ts TIMESTAMP, v INT) TAGS (id INT, name NCHAR(16))",
        ],
    )
    .await;
    let mut batch = String::from("CREATE TABLE");
    for i in 0..3000 {
        batch.push_str(&format!(" big.t{i} USING big.s TAGS ({i}, 'n{i}')"));
    }
    sql(&emu, &[&batch]).await;
    let src = source(&emu);
    let before = emu.requests();
    let cat = src.read_catalog("big").await.unwrap();
    let used = emu.requests() - before;
    assert_eq!(cat.tables.len(), 3000);
    assert_eq!(cat.tables[0].name, "t0");
    let t2999 = cat.tables.iter().find(|t| t.name == "t2999").unwrap();
    assert_eq!(t2999.tags[0].value, Value::Int(2999));
    assert_eq!(t2999.tags[1].value, Value::NChar("n2999".into()));
    // 7 statements plus their fetches and the handshake: not one per table.
    assert!(used < 40, "{used} requests for 3000 tables");
}

/// Exports every table of `db` over `buckets` of `width` and collects the chunks per table.
async fn export_all(
    src: &TaosSource,
    db: &str,
    precision: Precision,
    tables: &[String],
    start: i64,
    width: i64,
    buckets: i64,
) -> Vec<BlockChunk> {
    let requests: Vec<ExportRequest> = tables
        .iter()
        .map(|t| ExportRequest {
            table: t.clone(),
            split_every: None,
            ranges: (0..buckets)
                .map(|k| TimeRange {
                    start: start + k * width,
                    end: start + (k + 1) * width,
                })
                .collect(),
        })
        .collect();
    src.export_parallel(db, precision, requests)
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn export_then_restore_round_trips_every_value() {
    let emu = emu();
    let src = source(&emu);
    for (db, p, prec) in [("rms", "ms", Precision::Ms), ("rns", "ns", Precision::Ns)] {
        let base = base(prec);
        seed(&emu, db, p, base).await;
        let cat = src.read_catalog(db).await.unwrap();
        let tables: Vec<String> = cat.tables.iter().map(|t| t.name.clone()).collect();
        // Buckets of 2 units: rows land in several buckets, adjacent ones merged per query.
        let chunks = export_all(&src, db, prec, &tables, base - 10, 2, 20).await;
        for c in &chunks {
            assert!(c.range.contains(c.min_ts) && c.range.contains(c.max_ts));
            assert!(c.range.end - c.range.start == 2);
        }
        let target = format!("{db}_restored");
        let got = src
            .create_schema(
                &cat,
                &RestoreOptions {
                    target_database: Some(target.clone()),
                    ..RestoreOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(got, target);
        // Through the chunk frame format, as a repository would store them.
        for c in &chunks {
            let mut blob = Vec::new();
            c.encode(&mut blob).unwrap();
            let back = BlockChunk::decode_all(&blob, &c.table, c.range).unwrap();
            assert_eq!(&back[0], c);
            let r = src.write_chunk(&target, &c.table, &back[0]).await.unwrap();
            assert_eq!(r.rows_written, c.rows as u64);
            assert_eq!(r.rows_rejected_by_keep, 0);
        }
        let restored = src.read_catalog(&target).await.unwrap();
        assert_eq!(restored.tables, cat.tables, "tables, tags, comments, TTLs");
        assert_eq!(restored.super_tables.len(), cat.super_tables.len());
        for t in &tables {
            let a = rows(&emu, &format!("SELECT * FROM {db}.{t} ORDER BY ts")).await;
            let b = rows(&emu, &format!("SELECT * FROM {target}.{t} ORDER BY ts")).await;
            assert!(!a.is_empty() || t == "j2", "{db}.{t} has rows");
            assert_eq!(a, b, "{db}.{t}");
        }
        let total: u64 = chunks.iter().map(|c| c.rows as u64).sum();
        assert_eq!(total, 3 + 1 + 2 + 2);
        // A table's chunks joined into one raw block (as a restore joins a table's
        // consecutive blocks) write the same rows: every type, NULLs, several buckets.
        let joined = format!("{db}_joined");
        src.create_schema(
            &cat,
            &RestoreOptions {
                target_database: Some(joined.clone()),
                ..RestoreOptions::default()
            },
        )
        .await
        .unwrap();
        let mut several = 0;
        for t in &tables {
            let mine: Vec<BlockChunk> = chunks.iter().filter(|c| &c.table == t).cloned().collect();
            if mine.is_empty() {
                continue;
            }
            several += usize::from(mine.len() > 1);
            let one = BlockChunk::concat(&mine).unwrap_or_else(|| panic!("{db}.{t} joins"));
            let r = src.write_chunk(&joined, t, &one).await.unwrap();
            assert_eq!(r.rows_written, one.rows as u64);
            let a = rows(&emu, &format!("SELECT * FROM {db}.{t} ORDER BY ts")).await;
            let b = rows(&emu, &format!("SELECT * FROM {joined}.{t} ORDER BY ts")).await;
            assert_eq!(a, b, "{db}.{t} joined");
        }
        assert!(several >= 3, "{several} tables of several chunks");
        // Exported bytes are exactly what the restore wrote: exporting the restored tables
        // gives the same raw blocks, byte for byte (NCHAR, VARBINARY, GEOMETRY, NULLs).
        let mut again = export_all(&src, &target, prec, &tables, base - 10, 2, 20).await;
        let mut first = chunks.clone();
        for v in [&mut first, &mut again] {
            v.sort_by(|a, b| (&a.table, a.min_ts).cmp(&(&b.table, b.min_ts)));
        }
        assert_eq!(again.len(), first.len());
        for (a, b) in first.iter().zip(&again) {
            assert_eq!(
                (&a.table, a.rows, &a.columns),
                (&b.table, b.rows, &b.columns)
            );
            assert_eq!(a.raw, b.raw, "{}.{} at {}", db, a.table, a.min_ts);
        }
    }
}

#[tokio::test]
async fn sql_fallback_writes_the_same_values() {
    let emu = emu();
    let base = base(Precision::Us);
    seed(&emu, "q", "us", base).await;
    let src = source(&emu).with_write_mode(WriteMode::Sql);
    let cat = src.read_catalog("q").await.unwrap();
    let tables: Vec<String> = cat.tables.iter().map(|t| t.name.clone()).collect();
    let chunks = export_all(&src, "q", Precision::Us, &tables, base, 1000, 1).await;
    let opts = RestoreOptions {
        target_database: Some("q2".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &opts).await.unwrap();
    for c in &chunks {
        let r = src.write_chunk("q2", &c.table, c).await.unwrap();
        assert!(r.used_sql_fallback);
        assert_eq!(r.rows_written, c.rows as u64);
    }
    for t in &tables {
        let a = rows(&emu, &format!("SELECT * FROM q.{t} ORDER BY ts")).await;
        let b = rows(&emu, &format!("SELECT * FROM q2.{t} ORDER BY ts")).await;
        assert_eq!(a, b, "{t}");
    }
}

#[tokio::test]
async fn restore_refuses_an_existing_database_unless_asked() {
    let emu = emu();
    seed(&emu, "e", "ms", base(Precision::Ms)).await;
    let src = source(&emu);
    let cat = src.read_catalog("e").await.unwrap();
    let err = src
        .create_schema(&cat, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TargetExists { .. }), "{err}");
    let opts = RestoreOptions {
        allow_existing: true,
        ..RestoreOptions::default()
    };
    assert_eq!(src.create_schema(&cat, &opts).await.unwrap(), "e");
}

#[tokio::test]
async fn blocks_from_before_add_and_drop_column_restore_into_the_new_schema() {
    let emu = emu();
    sql(
        &emu,
        &[
            "CREATE DATABASE s",
            "CREATE TABLE s.t (ts TIMESTAMP, a INT, b NCHAR(5))",
            "CREATE STABLE s.st (ts TIMESTAMP, a INT, b VARCHAR(5)) TAGS (k INT)",
            "CREATE TABLE s.c USING s.st TAGS (1)",
            "INSERT INTO s.t VALUES (1760000001000, 1, 'x') (1760000002000, NULL, 'y')",
            "INSERT INTO s.c VALUES (1760000001000, 7, 'p')",
        ],
    )
    .await;
    let src = source(&emu);
    src.read_catalog("s").await.unwrap();
    let tables = vec!["t".to_string(), "c".to_string()];
    let old = export_all(
        &src,
        "s",
        Precision::Ms,
        &tables,
        1_760_000_000_000,
        10_000,
        1,
    )
    .await;
    assert_eq!(old.len(), 2);
    sql(
        &emu,
        &[
            "ALTER TABLE s.t ADD COLUMN c DOUBLE",
            "ALTER TABLE s.t DROP COLUMN b",
            "ALTER STABLE s.st ADD COLUMN z BIGINT",
            "ALTER STABLE s.st DROP COLUMN b",
        ],
    )
    .await;
    let cat = src.read_catalog("s").await.unwrap();
    let opts = RestoreOptions {
        target_database: Some("s2".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &opts).await.unwrap();
    for c in &old {
        assert!(c.columns.contains(&"b".to_string()));
        let r = src.write_chunk("s2", &c.table, c).await.unwrap();
        assert_eq!(r.rows_written, c.rows as u64);
    }
    let t = rows(&emu, "SELECT * FROM s2.t ORDER BY ts").await;
    assert_eq!(
        t,
        vec![
            vec![
                taos::Value::Timestamp(taos::taos_query::common::Timestamp::Milliseconds(
                    1_760_000_001_000
                )),
                taos::Value::Int(1),
                taos::Value::Null(taos::Ty::Double)
            ],
            vec![
                taos::Value::Timestamp(taos::taos_query::common::Timestamp::Milliseconds(
                    1_760_000_002_000
                )),
                taos::Value::Null(taos::Ty::Int),
                taos::Value::Null(taos::Ty::Double)
            ],
        ]
    );
    let c = rows(&emu, "SELECT * FROM s2.c").await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0][1], taos::Value::Int(7));
    assert_eq!(c[0][2], taos::Value::Null(taos::Ty::BigInt));

    // Without the backup's catalog (no create_schema in this process) the target is described,
    // and a block column it lacks cannot be told from a dropped one: refused, not dropped.
    sql(
        &emu,
        &[
            "CREATE DATABASE s3",
            "CREATE TABLE s3.t (ts TIMESTAMP, a INT, c DOUBLE)",
        ],
    )
    .await;
    let fresh = source(&emu);
    let t_chunk = old.iter().find(|c| c.table == "t").unwrap();
    let err = fresh.write_chunk("s3", "t", t_chunk).await.unwrap_err();
    assert!(
        matches!(&err, Error::SchemaMismatch { table, reason, .. } if table == "t" && reason.contains("`b`")),
        "{err}"
    );
    assert!(
        rows(&emu, "SELECT a FROM s3.t").await.is_empty(),
        "nothing written"
    );
}

/// Restore into a database that already has the tables, with other schemas: the writer
/// describes each pre-existing table and maps columns by name on the client. A different
/// column order restores exactly; a missing column or another type is refused naming the
/// table and column, before anything is written (TDengine's raw-block binding would drop the
/// column or reinterpret INT bits as FLOAT without an error).
#[tokio::test]
async fn restore_into_existing_tables_with_other_schemas() {
    let emu = emu();
    let b = 1_760_000_000_000i64;
    sql(
        &emu,
        &[
            "CREATE DATABASE x",
            "CREATE TABLE x.order_t (ts TIMESTAMP, a INT, s VARCHAR(8))",
            "CREATE TABLE x.narrow_t (ts TIMESTAMP, a INT, s VARCHAR(8))",
            "CREATE TABLE x.type_t (ts TIMESTAMP, a INT, s VARCHAR(8))",
            "CREATE TABLE x.short_t (ts TIMESTAMP, a INT, s VARCHAR(8))",
            &format!(
                "INSERT INTO x.order_t VALUES ({b}, 1, 'one') ({}, 2, NULL)",
                b + 1
            ),
            &format!("INSERT INTO x.narrow_t VALUES ({b}, 1, 'one')"),
            &format!("INSERT INTO x.type_t VALUES ({b}, 1, 'one')"),
            &format!("INSERT INTO x.short_t VALUES ({b}, 1, 'eight888')"),
            // The target: same names, other schemas.
            "CREATE DATABASE y",
            "CREATE TABLE y.order_t (ts TIMESTAMP, s VARCHAR(8), extra DOUBLE, a INT)",
            "CREATE TABLE y.narrow_t (ts TIMESTAMP, a INT)",
            "CREATE TABLE y.type_t (ts TIMESTAMP, a FLOAT, s VARCHAR(8))",
            "CREATE TABLE y.short_t (ts TIMESTAMP, a INT, s VARCHAR(4))",
        ],
    )
    .await;
    let src = source(&emu);
    let cat = src.read_catalog("x").await.unwrap();
    let tables: Vec<String> = cat.tables.iter().map(|t| t.name.clone()).collect();
    let chunks = export_all(&src, "x", Precision::Ms, &tables, b, 1000, 1).await;
    let opts = RestoreOptions {
        target_database: Some("y".into()),
        allow_existing: true,
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &opts).await.unwrap();
    let chunk = |t: &str| chunks.iter().find(|c| c.table == t).unwrap();
    let r = src
        .write_chunk("y", "order_t", chunk("order_t"))
        .await
        .unwrap();
    assert_eq!(r.rows_written, 2);
    assert_eq!(
        rows(&emu, "SELECT a, s, extra FROM y.order_t ORDER BY ts").await,
        vec![
            vec![
                taos::Value::Int(1),
                taos::Value::VarChar("one".into()),
                taos::Value::Null(taos::Ty::Double)
            ],
            vec![
                taos::Value::Int(2),
                taos::Value::Null(taos::Ty::VarChar),
                taos::Value::Null(taos::Ty::Double)
            ],
        ]
    );
    for (t, column) in [("narrow_t", "`s`"), ("type_t", "`a`"), ("short_t", "`s`")] {
        let err = src.write_chunk("y", t, chunk(t)).await.unwrap_err();
        match &err {
            Error::SchemaMismatch {
                database,
                table,
                reason,
            } => {
                assert_eq!((database.as_str(), table.as_str()), ("y", t));
                assert!(reason.contains(column), "{t}: {err}");
            }
            other => panic!("{t}: {other}"),
        }
        assert!(
            rows(&emu, &format!("SELECT * FROM y.{t}")).await.is_empty(),
            "{t}: nothing written"
        );
    }
}

#[tokio::test]
async fn rows_older_than_keep_are_reported_and_keep_can_be_overridden() {
    let emu = emu();
    let day_ms: i64 = 86_400_000;
    let now_ms: i64 = 1_760_000_000_000;
    // The source accepted old rows when they were recent.
    emu.store()
        .set_now_override(Some((now_ms - 4000 * day_ms) * 1_000_000));
    let old = now_ms - 3700 * day_ms; // older than the default KEEP of 3650 days at `now`
    let recent = now_ms - 10 * day_ms;
    sql(
        &emu,
        &[
            "CREATE DATABASE k",
            "CREATE TABLE k.t (ts TIMESTAMP, v INT)",
            &format!(
                "INSERT INTO k.t VALUES ({old}, 1) ({}, 2) ({}, 3) ({recent}, 4) ({}, 5)",
                old + 1,
                old + 2,
                recent + 1
            ),
        ],
    )
    .await;
    emu.store().set_now_override(Some(now_ms * 1_000_000));
    let src = source(&emu);
    let cat = src.read_catalog("k").await.unwrap();
    let chunks = export_all(&src, "k", Precision::Ms, &["t".into()], 0, now_ms, 1).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].rows, 5);

    let plain = RestoreOptions {
        target_database: Some("k_default".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &plain).await.unwrap();
    let r = src.write_chunk("k_default", "t", &chunks[0]).await.unwrap();
    assert_eq!(r.rows_rejected_by_keep, 3);
    assert_eq!(r.rows_written, 2);
    assert_eq!(r.rejected_range, Some((old, old + 2)));
    assert_eq!(rows(&emu, "SELECT * FROM k_default.t").await.len(), 2);

    let long = RestoreOptions {
        target_database: Some("k_long".into()),
        keep: Some("36500d".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &long).await.unwrap();
    let r = src.write_chunk("k_long", "t", &chunks[0]).await.unwrap();
    assert_eq!((r.rows_written, r.rows_rejected_by_keep), (5, 0));
    assert_eq!(
        rows(&emu, "SELECT * FROM k_long.t ORDER BY ts").await,
        rows(&emu, "SELECT * FROM k.t ORDER BY ts").await
    );
}

#[tokio::test]
async fn export_resumes_after_the_server_drops_every_connection() {
    let emu = Emulator::start(EmulatorConfig {
        block_rows: 100,
        ..EmulatorConfig::default()
    })
    .unwrap();
    sql(
        &emu,
        &[
            "CREATE DATABASE d",
            "CREATE TABLE d.t (ts TIMESTAMP, v BIGINT, s NCHAR(8))",
        ],
    )
    .await;
    let n: i64 = 6000;
    const T0: i64 = 1_760_000_000_000;
    for part in 0..6 {
        let mut ins = String::from("INSERT INTO d.t VALUES ");
        for i in part * 1000..(part + 1) * 1000 {
            ins.push_str(&format!("({}, {i}, 'r{i}') ", T0 + i));
        }
        sql(&emu, &[&ins]).await;
    }
    let src = source(&emu);
    let mut stream = src
        .export(
            "d",
            Precision::Ms,
            ExportRequest {
                table: "t".into(),
                split_every: None,
                ranges: vec![TimeRange {
                    start: T0,
                    end: T0 + 10_000_000,
                }],
            },
        )
        .await
        .unwrap();
    let mut ts = Vec::new();
    let mut drops = 0;
    while let Some(c) = stream.next_chunk().await.unwrap() {
        let view =
            taos::RawBlock::parse_from_raw_block(c.raw.clone(), taos::Precision::Millisecond);
        assert_eq!(view.nrows(), c.rows as usize);
        for r in 0..view.nrows() {
            match view.get_ref(r, 0) {
                Some(taos::BorrowedValue::Timestamp(t)) => ts.push(t.as_raw_i64()),
                other => panic!("{other:?}"),
            }
        }
        if ts.len() % 1500 < 100 && drops < 3 {
            drops += 1;
            emu.disconnect_all();
        }
    }
    assert_eq!(drops, 3);
    let expected: Vec<i64> = (0..n).map(|i| T0 + i).collect();
    assert_eq!(ts, expected, "every row exactly once, in order");

    // Idle pooled connections the server dropped are replaced on the next call.
    emu.disconnect_all();
    let cat = src.read_catalog("d").await.unwrap();
    assert_eq!(cat.tables.len(), 1);

    // Restore writes are retried on fresh connections too.
    let chunks = export_all(&src, "d", Precision::Ms, &["t".into()], T0, 10_000_000, 1).await;
    let opts = RestoreOptions {
        target_database: Some("d2".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &opts).await.unwrap();
    for (i, c) in chunks.iter().enumerate() {
        if i % 20 == 0 {
            emu.disconnect_all();
        }
        assert_eq!(
            src.write_chunk("d2", "t", c).await.unwrap().rows_written,
            c.rows as u64
        );
    }
    assert_eq!(
        rows(&emu, "SELECT * FROM d2.t ORDER BY ts").await,
        rows(&emu, "SELECT * FROM d.t ORDER BY ts").await
    );
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let emu = emu();
    let mut o = ConnectOptions::new(emu.dsn()).with_credentials("root", "wrong");
    o.retry_count = 50;
    o.retry_interval_ms = 1000;
    let src = TaosSource::connect(o).unwrap();
    let started = std::time::Instant::now();
    let err = src.read_catalog("x").await.unwrap_err();
    assert_eq!(err.code(), Some(0x0357), "{err}");
    assert!(!err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not retried 50 times"
    );
    assert!(!err.to_string().contains("wrong"), "password leaked: {err}");
    let err = source(&emu).read_catalog("nodb").await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let s: taosbackup_core::SourceError = err.into();
    assert_eq!(s.kind(), taosbackup_core::SourceErrorKind::NotFound);
}

#[test]
fn native_dsn_without_client_library_names_both_fixes() {
    // No TDengine client is installed on the machines this runs on (nor in CI).
    for dsn in ["taos://db.example:6030", "db.example:6030", "db.example"] {
        let err = TaosSource::connect(ConnectOptions::new(dsn)).unwrap_err();
        assert!(matches!(err, Error::NativeClientMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("install the TDengine client"), "{msg}");
        assert!(msg.contains("ws://db.example:6041"), "{msg}");
    }
}

#[tokio::test]
async fn parallel_export_stays_within_the_pool() {
    let emu = Emulator::start(EmulatorConfig {
        block_rows: 10,
        ..EmulatorConfig::default()
    })
    .unwrap();
    let t0 = base(Precision::Ms);
    let mut stmts = vec![
        "CREATE DATABASE pp".to_string(),
        "CREATE STABLE pp.m (ts TIMESTAMP, v INT) TAGS (k INT)".to_string(),
    ];
    for t in 0..6 {
        stmts.push(format!("CREATE TABLE pp.t{t} USING pp.m TAGS ({t})"));
        let values: String = (0..200).map(|i| format!("({}, {i}) ", t0 + i)).collect();
        stmts.push(format!("INSERT INTO pp.t{t} VALUES {values}"));
    }
    let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
    sql(&emu, &refs).await;
    // Wait (with a deadline) for the helper's connection to be gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while emu.open_connections() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "helper connection lingers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut o = ConnectOptions::new(emu.dsn());
    o.pool_size = 2;
    let src = TaosSource::connect(o).unwrap();
    let cat = src.read_catalog("pp").await.unwrap();
    let tables: Vec<String> = cat.tables.iter().map(|t| t.name.clone()).collect();
    let requests = tables
        .iter()
        .map(|t| ExportRequest {
            table: t.clone(),
            split_every: None,
            ranges: vec![TimeRange {
                start: t0,
                end: t0 + 1000,
            }],
        })
        .collect();
    let mut stream = Box::pin(src.export_parallel("pp", Precision::Ms, requests));
    let mut max_open = 0;
    let mut per_table = std::collections::BTreeMap::<String, u32>::new();
    while let Some(c) = futures::StreamExt::next(&mut stream).await {
        let c = c.unwrap();
        max_open = max_open.max(emu.open_connections());
        *per_table.entry(c.table).or_default() += c.rows;
    }
    assert!(max_open <= 2, "{max_open} connections for a pool of 2");
    assert!(max_open >= 1);
    assert_eq!(per_table.len(), 6);
    assert!(per_table.values().all(|n| *n == 200), "{per_table:?}");
}

/// Composite primary keys (TDengine 3.3+): rows sharing a timestamp are distinct rows. The
/// catalog records the key (normal table from `DESCRIBE`, super table from its DDL), an
/// export interrupted mid-timestamp resumes at that timestamp and leaves out exactly the rows
/// already delivered (resuming at `max_ts + 1` would lose the rest of that timestamp's rows),
/// and the restore recreates the key and every row.
#[tokio::test]
async fn composite_keys_back_up_and_restore_exactly_across_resumed_fetches() {
    let emu = Emulator::start(EmulatorConfig {
        block_rows: 100,
        ..EmulatorConfig::default()
    })
    .unwrap();
    let b = 1_760_000_000_000i64;
    sql(
        &emu,
        &[
            "CREATE DATABASE pk",
            "CREATE TABLE pk.n (ts TIMESTAMP, k INT PRIMARY KEY, v VARCHAR(16))",
            "CREATE STABLE pk.m (ts TIMESTAMP, k VARCHAR(8) PRIMARY KEY, v INT) TAGS (t INT)",
            "CREATE TABLE pk.c1 USING pk.m TAGS (1)",
            // A second column that could be a key but is not.
            "CREATE TABLE pk.plain (ts TIMESTAMP, k INT, v INT)",
        ],
    )
    .await;
    // 20 timestamps × 30 keys: 100-row blocks end in the middle of a timestamp.
    let (stamps, keys) = (20i64, 30i64);
    let mut n = String::from("INSERT INTO pk.n VALUES ");
    let mut c = String::from("INSERT INTO pk.c1 VALUES ");
    for t in 0..stamps {
        for k in (0..keys).rev() {
            n.push_str(&format!("({}, {k}, 'v{t}_{k}') ", b + t));
            c.push_str(&format!("({}, 'k{k:02}', {}) ", b + t, t * 100 + k));
        }
    }
    sql(
        &emu,
        &[
            &n,
            &c,
            &format!("INSERT INTO pk.plain VALUES ({b}, 1, 1) ({}, 2, 2)", b + 1),
        ],
    )
    .await;
    let total = (stamps * keys) as usize;
    assert_eq!(rows(&emu, "SELECT * FROM pk.n").await.len(), total);

    let src = source(&emu);
    let cat = src.read_catalog("pk").await.unwrap();
    let table = |name: &str| cat.tables.iter().find(|t| t.name == name).unwrap();
    assert!(table("n").columns[1].primary_key, "{:?}", table("n"));
    assert!(!table("plain").columns[1].primary_key);
    assert!(cat.super_tables[0].columns[1].primary_key);
    assert!(
        cat.super_tables[0].ddl.contains("COMPOSITE KEY"),
        "{}",
        cat.super_tables[0].ddl
    );

    // Fetches of the export fail mid-table, twice; the export resumes each time.
    for nth in [3, 6] {
        emu.inject(
            Fault::error(FaultPoint::Fetch, 0xE002, "injected: connection closed")
                .matching("from `pk`.")
                .trigger(Trigger::Nth(nth)),
        );
    }
    let tables = ["n".to_string(), "c1".to_string()];
    let mut chunks = Vec::new();
    for t in &tables {
        let mut s = src
            .export(
                "pk",
                Precision::Ms,
                ExportRequest {
                    table: t.clone(),
                    split_every: None,
                    ranges: vec![TimeRange {
                        start: b,
                        end: b + 1000,
                    }],
                },
            )
            .await
            .unwrap();
        while let Some(c) = s.next_chunk().await.unwrap() {
            chunks.push(c);
        }
    }
    let fired: u64 = emu.fault_stats().iter().map(|s| s.fired).sum();
    assert_eq!(fired, 2, "both faults fired");
    emu.clear_faults();
    for t in &tables {
        let got: u32 = chunks
            .iter()
            .filter(|c| &c.table == t)
            .map(|c| c.rows)
            .sum();
        assert_eq!(got as usize, total, "{t}: every row exactly once");
    }

    let opts = RestoreOptions {
        target_database: Some("pk2".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &opts).await.unwrap();
    for c in &chunks {
        src.write_chunk("pk2", &c.table, c).await.unwrap();
    }
    for t in ["n", "c1"] {
        let a = rows(&emu, &format!("SELECT * FROM pk.{t} ORDER BY ts")).await;
        let r = rows(&emu, &format!("SELECT * FROM pk2.{t} ORDER BY ts")).await;
        assert_eq!(a.len(), total);
        assert_eq!(a, r, "{t}");
    }
    let restored = src.read_catalog("pk2").await.unwrap();
    assert_eq!(restored.tables, cat.tables);
    assert_eq!(
        restored.super_tables[0].columns,
        cat.super_tables[0].columns
    );
}

/// Virtual tables (TDengine 3.3.6+) store no rows: the catalog lists them (and virtual super
/// tables) as skipped with the reason, instead of dropping them without a word, and a
/// restore does not create them.
#[tokio::test]
async fn virtual_tables_are_listed_as_skipped() {
    let emu = emu();
    sql(
        &emu,
        &[
            "CREATE DATABASE v",
            "CREATE TABLE v.src (ts TIMESTAMP, a INT)",
            "CREATE VTABLE v.vn (ts TIMESTAMP, a INT FROM v.src.a)",
            "CREATE STABLE v.vs (ts TIMESTAMP, a INT) TAGS (t INT) VIRTUAL 1",
            "CREATE VTABLE v.vc USING v.vs TAGS (1)",
        ],
    )
    .await;
    let src = source(&emu);
    let cat = src.read_catalog("v").await.unwrap();
    let names: Vec<&str> = cat.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["src"]);
    assert!(cat.super_tables.is_empty());
    let skipped: Vec<(&str, &str)> = cat
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("vc", "VIRTUAL_CHILD_TABLE"),
            ("vn", "VIRTUAL_NORMAL_TABLE"),
            ("vs", "VIRTUAL_STABLE")
        ]
    );
    assert!(
        cat.skipped
            .iter()
            .all(|s| s.reason.contains("SHOW CREATE VTABLE"))
    );
    let opts = RestoreOptions {
        target_database: Some("v2".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &opts).await.unwrap();
    let again = src.read_catalog("v2").await.unwrap();
    assert!(again.skipped.is_empty());
    assert_eq!(again.tables.len(), 1);
}

/// Geometry values of every WKT kind TDengine accepts back up and restore byte for byte.
#[tokio::test]
async fn every_geometry_kind_round_trips() {
    let emu = emu();
    let b = 1_760_000_000_000i64;
    let wkts = [
        "POINT (1.5 -2)",
        "POINT EMPTY",
        "LINESTRING (0 0, 1 1, 2 0.5)",
        "POLYGON ((0 0, 4 0, 4 4, 0 0), (1 1, 2 1, 2 2, 1 1))",
        "MULTIPOINT ((1 2), (3 4))",
        "MULTILINESTRING ((0 0, 1 1), (2 2, 3 3))",
        "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))",
        "LINESTRING EMPTY",
    ];
    let mut stmts = vec![
        "CREATE DATABASE geo".to_string(),
        "CREATE TABLE geo.g (ts TIMESTAMP, g GEOMETRY(512))".to_string(),
    ];
    for (i, w) in wkts.iter().enumerate() {
        stmts.push(format!(
            "INSERT INTO geo.g VALUES ({}, '{w}')",
            b + i as i64
        ));
    }
    let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
    sql(&emu, &refs).await;
    let src = source(&emu);
    let cat = src.read_catalog("geo").await.unwrap();
    let chunks = export_all(&src, "geo", Precision::Ms, &["g".into()], b, 1000, 1).await;
    assert_eq!(
        chunks.iter().map(|c| c.rows).sum::<u32>(),
        wkts.len() as u32
    );
    let opts = RestoreOptions {
        target_database: Some("geo2".into()),
        ..RestoreOptions::default()
    };
    src.create_schema(&cat, &opts).await.unwrap();
    for c in &chunks {
        src.write_chunk("geo2", "g", c).await.unwrap();
    }
    let again = export_all(&src, "geo2", Precision::Ms, &["g".into()], b, 1000, 1).await;
    assert_eq!(again.len(), chunks.len());
    for (a, r) in chunks.iter().zip(&again) {
        assert_eq!(a.raw, r.raw);
    }
}

/// A catalog read records every table's timestamp and key columns, per database, so an
/// export after it describes no table: child and normal tables, in two databases read one
/// after the other, with a normal table whose columns are not the super table's. Any
/// `DESCRIBE` fails through an injected fault; without the catalog read one is issued.
#[tokio::test]
async fn an_export_after_a_catalog_read_describes_no_table() {
    let emu = emu();
    let b = base(Precision::Ms);
    sql(
        &emu,
        &[
            "CREATE DATABASE kc1",
            "CREATE DATABASE kc2",
            "CREATE STABLE kc1.m (ts TIMESTAMP, v INT) TAGS (t INT)",
            "CREATE TABLE kc1.c1 USING kc1.m TAGS (1)",
            "CREATE TABLE kc1.n (at TIMESTAMP, k INT PRIMARY KEY, v INT)",
            "CREATE TABLE kc2.n (ts TIMESTAMP, v INT)",
            &format!("INSERT INTO kc1.c1 VALUES ({b}, 1) ({}, 2)", b + 1),
            &format!(
                "INSERT INTO kc1.n VALUES ({b}, 1, 1) ({b}, 2, 2) ({}, 1, 3)",
                b + 1
            ),
            &format!("INSERT INTO kc2.n VALUES ({b}, 1)"),
        ],
    )
    .await;
    let src = source(&emu);
    src.read_catalog("kc1").await.unwrap();
    src.read_catalog("kc2").await.unwrap();
    emu.inject(
        Fault::error(
            FaultPoint::Query,
            0x2603,
            "injected: DESCRIBE after a catalog read",
        )
        .matching("describe")
        .trigger(Trigger::From(1)),
    );
    let rows_of = |chunks: &[BlockChunk]| chunks.iter().map(|c| c.rows).sum::<u32>();
    let names = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let kc1 = export_all(&src, "kc1", Precision::Ms, &names(&["c1", "n"]), b, 1000, 1).await;
    assert_eq!(rows_of(&kc1), 5);
    let kc2 = export_all(&src, "kc2", Precision::Ms, &names(&["n"]), b, 1000, 1).await;
    assert_eq!(rows_of(&kc2), 1);
    assert_eq!(emu.faults_fired(), 0);

    // The fault does catch a DESCRIBE: a source that has not read the catalog issues one.
    let fresh = source(&emu);
    let request = ExportRequest {
        table: "n".into(),
        split_every: None,
        ranges: vec![TimeRange {
            start: b,
            end: b + 1000,
        }],
    };
    let r: Result<Vec<BlockChunk>, Error> = fresh
        .export_parallel("kc2", Precision::Ms, vec![request])
        .try_collect()
        .await;
    assert!(r.is_err(), "{r:?}");
    assert!(emu.faults_fired() > 0);
}

/// taos-ws 0.12.3's query connections (ws-tool without a write buffer) have Nagle's
/// algorithm on and send a frame's header and payload in two writes; taosAdapter (like the
/// emulator) delays its ACKs, so every request would wait up to 40 ms. The source turns
/// Nagle off on each connection it opens (`taosbackup_core::net`).
#[tokio::test]
async fn the_sources_connections_have_nagle_off() {
    let emu = emu();
    sql(
        &emu,
        &[
            "CREATE DATABASE nd",
            "CREATE TABLE nd.t (ts TIMESTAMP, v INT)",
        ],
    )
    .await;
    // No test turns Nagle off for the source from here on (crate::NAGLE).
    let _only_the_source = crate::NAGLE.lock().await;
    let src = source(&emu);
    src.read_catalog("nd").await.unwrap();
    assert_eq!(
        crate::nagle_on_to(emu.addr()),
        [],
        "connections to the emulator with Nagle on"
    );
}

/// Every chunk of `requests` read with one `export_tables` call, in the order they come.
async fn export_together(
    src: &TaosSource,
    db: &str,
    requests: Vec<ExportRequest>,
) -> Vec<BlockChunk> {
    let mut s = src
        .export_tables(db, Precision::Ms, requests)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next_chunk().await.unwrap() {
        out.push(c);
    }
    out
}

/// Every chunk of `requests` read one table at a time with `export`.
async fn export_each(src: &TaosSource, db: &str, requests: Vec<ExportRequest>) -> Vec<BlockChunk> {
    let mut out = Vec::new();
    for r in requests {
        let mut s = src.export(db, Precision::Ms, r).await.unwrap();
        while let Some(c) = s.next_chunk().await.unwrap() {
            out.push(c);
        }
    }
    out
}

/// Several children of one super table over the same ranges are read with one query
/// (`export_tables.rs`), and give what per-table reads give: the same chunks, byte for
/// byte. The database's file sets are a day wide, so the emulator returns the children's
/// rows window by window, interleaved, as TDengine's reader does. A child without rows is
/// read alone; a refused group query falls back to per-table reads; a child dropped since
/// the catalog read fails the export as a per-table read does, instead of looking empty.
#[tokio::test]
async fn children_read_with_one_query_give_the_chunks_of_per_table_reads() {
    let emu = emu();
    let b = base(Precision::Ms);
    let day = 86_400_000i64;
    let mut setup = vec![
        "CREATE DATABASE mt DURATION 1d".to_string(),
        "CREATE STABLE mt.m (ts TIMESTAMP, v INT, s VARCHAR(8)) TAGS (t INT)".to_string(),
    ];
    for c in 0..6 {
        setup.push(format!("CREATE TABLE mt.c{c} USING mt.m TAGS ({c})"));
    }
    for c in 0..5 {
        // Every 6 hours over four days, starting at a different hour per child.
        let values: Vec<String> = (0..16)
            .map(|k| {
                let ts = b + k * day / 4 + c * 3_600_000;
                let s = if k % 3 == 0 {
                    "NULL".to_string()
                } else {
                    format!("'s{c}{k}'")
                };
                format!("({ts}, {}, {s})", c * 100 + k)
            })
            .collect();
        setup.push(format!("INSERT INTO mt.c{c} VALUES {}", values.join(" ")));
    }
    let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
    sql(&emu, &setup).await;
    // The same data on a server whose answers hold 7 rows a block: a table's rows of one
    // bucket come in several runs there, which the group joins into one chunk.
    let small_blocks = Emulator::start(EmulatorConfig {
        block_rows: 7,
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    sql(&small_blocks, &setup).await;
    let src = source(&emu);
    src.read_catalog("mt").await.unwrap();
    let names: Vec<String> = (0..6).map(|c| format!("c{c}")).collect();
    let request = |t: &str| ExportRequest {
        table: t.to_string(),
        split_every: Some(day),
        ranges: vec![TimeRange {
            start: b - day,
            end: b + 5 * day,
        }],
    };
    let requests = || names.iter().map(|t| request(t)).collect::<Vec<_>>();
    let alone = export_each(&src, "mt", requests()).await;
    assert_eq!(
        alone.len(),
        5 * 5,
        "five children over five day buckets each"
    );
    // Count the group queries without refusing them.
    emu.inject(
        Fault::error(FaultPoint::Query, 0x2603, "never")
            .matching("tbname in")
            .trigger(Trigger::Nth(1_000)),
    );
    let grouped = export_together(&src, "mt", requests()).await;
    assert_eq!(emu.fault_stats()[0].matched, 1, "one query for the group");
    // Each table's chunks together and in order: the same as per-table reads, table by
    // table in the group's order.
    assert_eq!(grouped, alone);
    let src_small = source(&small_blocks);
    src_small.read_catalog("mt").await.unwrap();
    assert_eq!(export_together(&src_small, "mt", requests()).await, alone);

    // A refused group query: the tables are read one by one.
    emu.clear_faults();
    emu.inject(
        Fault::error(FaultPoint::Query, 0x2603, "injected: the group query")
            .matching("tbname in")
            .trigger(Trigger::From(1)),
    );
    assert_eq!(export_together(&src, "mt", requests()).await, alone);
    assert_eq!(emu.faults_fired(), 1);

    // A child dropped since the catalog read is not taken for an empty one.
    emu.clear_faults();
    sql(&emu, &["DROP TABLE mt.c2"]).await;
    let mut s = src
        .export_tables("mt", Precision::Ms, requests())
        .await
        .unwrap();
    let err = loop {
        match s.next_chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the export of a dropped table ended without an error"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("c2"), "{err}");
}

/// The first query over a super table's children reads a few of them to learn their size:
/// small children then share one query for the rest of each group, large ones (over 64 KiB
/// each) are read one by one from then on. Either way the chunks are a per-table read's.
#[tokio::test]
async fn a_probe_decides_whether_children_share_queries() {
    let emu = emu();
    let b = base(Precision::Ms);
    let mut setup = vec![
        "CREATE DATABASE pr".to_string(),
        "CREATE STABLE pr.small (ts TIMESTAMP, v INT) TAGS (t INT)".to_string(),
        "CREATE STABLE pr.large (ts TIMESTAMP, v BIGINT, w BIGINT, s VARCHAR(16)) TAGS (t INT)"
            .to_string(),
    ];
    for c in 0..12 {
        setup.push(format!("CREATE TABLE pr.s{c} USING pr.small TAGS ({c})"));
        setup.push(format!("CREATE TABLE pr.l{c} USING pr.large TAGS ({c})"));
        setup.push(format!(
            "INSERT INTO pr.s{c} VALUES ({b}, {c}) ({}, {c})",
            b + 1
        ));
        // 2,000 rows of ~40 bytes: ~80 KB a table.
        for part in 0..4 {
            let values: Vec<String> = (0..500)
                .map(|k| {
                    let k = part * 500 + k;
                    format!("({}, {k}, {c}, 'value-{k:08}')", b + k)
                })
                .collect();
            setup.push(format!("INSERT INTO pr.l{c} VALUES {}", values.join(" ")));
        }
    }
    let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
    sql(&emu, &setup).await;
    let src = source(&emu);
    src.read_catalog("pr").await.unwrap();
    let request = |t: String| ExportRequest {
        table: t,
        split_every: None,
        ranges: vec![TimeRange {
            start: b,
            end: b + 10_000,
        }],
    };
    let requests = |prefix: &str| (0..12).map(|c| request(format!("{prefix}{c}"))).collect();
    let export = |prefix: &'static str| export_together(&src, "pr", requests(prefix));
    let alone = |prefix: &'static str| export_each(&src, "pr", requests(prefix));
    let counter = || {
        emu.clear_faults();
        emu.inject(
            Fault::error(FaultPoint::Query, 0x2603, "never")
                .matching("tbname in")
                .trigger(Trigger::Nth(1_000)),
        );
    };
    let group_queries = || emu.fault_stats()[0].matched;
    let rows = |chunks: &[BlockChunk]| chunks.iter().map(|c| c.rows).sum::<u32>();
    // Small: the probe (8 tables), then one query for the other 4; later groups one query.
    counter();
    let small = export("s").await;
    assert_eq!(group_queries(), 2);
    assert_eq!(small, alone("s").await);
    counter();
    assert_eq!(export("s").await, small);
    assert_eq!(group_queries(), 1);
    // Large: the probe, then the other 4 one by one; later groups one by one.
    counter();
    let large = export("l").await;
    assert_eq!(group_queries(), 1);
    assert_eq!(rows(&large), 12 * 2000);
    let mut by_table = large.clone();
    by_table.sort_by(|a, b| a.table.cmp(&b.table).then(a.min_ts.cmp(&b.min_ts)));
    let mut expected = alone("l").await;
    expected.sort_by(|a, b| a.table.cmp(&b.table).then(a.min_ts.cmp(&b.min_ts)));
    assert_eq!(rows(&expected), rows(&by_table));
    counter();
    assert_eq!(rows(&export("l").await), 12 * 2000);
    assert_eq!(group_queries(), 0);
}
