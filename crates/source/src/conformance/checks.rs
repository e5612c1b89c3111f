//! The checks, in the order they run. Each states one assumption and where TDengine defines
//! the behaviour; the schema they share is created by `schema.create`, the first check.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use taos::AsyncQueryable;
use taosbackup_core::{
    ChangeEvent, ChangeFeed, ExportRequest, FeedStart, Positions, Precision, RestoreOptions,
    SourceError, SourceErrorKind, TableEvent, TableKind, TimeRange, Value,
};

use super::{Check, Entry, Env, Verdict};
use crate::raw::RawView;
use crate::wsquery::WsQuery;
use crate::{ConnectOptions, TaosSource, TmqFeed, TmqFeedOptions};

type Run = for<'e> fn(&'e Env) -> BoxFuture<'e, Result<Verdict, String>>;

const fn entry(
    name: &'static str,
    assumption: &'static str,
    source: &'static str,
    run: Run,
) -> Entry {
    Entry {
        check: Check {
            name,
            assumption,
            source,
        },
        run,
    }
}

/// Every check, in the order [`super::run`] runs them.
pub static CHECKS: &[Entry] = &[
    entry(
        "schema.create",
        "the scratch schema's DDL is accepted: a super table with a column named like a \
         keyword (`ttl`, backquoted), child tables with tags, COMMENT and TTL, a normal table",
        "source/libs/parser/inc/sql.y (create_table_clause, table_options)",
        |e| Box::pin(schema_create(e)),
    ),
    entry(
        "sql.backquoted_keywords",
        "keyword-named system-table columns work when backquoted: `ttl`, `type` \
         (ins_tables), `precision`, `wal_retention_period` (ins_databases)",
        "source/libs/parser/src/parTokenizer.c (keywordTable), source/common/src/systable.c",
        |e| Box::pin(backquoted_keywords(e)),
    ),
    entry(
        "sql.bare_keywords_rejected",
        "a keyword used as a bare column name is a syntax error, so the tool must \
         backquote every identifier",
        "source/libs/parser/inc/sql.y (column_name ::= NK_ID), parTokenizer.c",
        |e| Box::pin(bare_keywords_rejected(e)),
    ),
    entry(
        "catalog.system_columns",
        "the information_schema columns the tool reads by name exist: ins_databases(name, \
         precision), ins_stables(stable_name, db_name), ins_tables(table_name, db_name, \
         stable_name, type, ttl, table_comment, vgroup_id), ins_columns(table_name, db_name, \
         table_type, col_name, col_type, col_length), ins_topics(topic_name, db_name, sql)",
        "source/common/src/systable.c, source/dnode/mnode/impl/src/mndTopic.c",
        |e| Box::pin(system_columns(e)),
    ),
    entry(
        "catalog.read",
        "the tool's catalog read returns the database's super tables, child tables with \
         typed tag values, normal tables with columns, comments and TTLs",
        "source/common/src/systable.c; SHOW CREATE / DESCRIBE in source/libs/command/src/command.c",
        |e| Box::pin(catalog_read(e)),
    ),
    entry(
        "export.restore_roundtrip",
        "rows exported as raw blocks by time range and written with the raw-block writer \
         into a database created from SHOW CREATE DDL equal the source, value for value",
        "taosAdapter controller/ws (binary query/fetch, write_raw_block_with_fields); \
         source/libs/parser/src/parInsertUtil.c (rawBlockBindData)",
        |e| Box::pin(export_restore_roundtrip(e)),
    ),
    entry(
        "restore.database_options",
        "SHOW CREATE DATABASE of this server replays on the same version with no option \
         dropped or renamed (the tool knows this version's database options)",
        "source/libs/command/src/command.c (SHOW CREATE DATABASE), \
         source/libs/parser/inc/sql.y (db_options)",
        |e| Box::pin(database_options(e)),
    ),
    entry(
        "restore.long_statements",
        "CREATE TABLE batches the tool cuts under TSDB_MAX_ALLOWED_SQL_LEN (1 MiB) are \
         accepted: 100 child tables with 16,000-character tags",
        "include/util/tdef.h (TSDB_MAX_ALLOWED_SQL_LEN)",
        |e| Box::pin(long_statements(e)),
    ),
    entry(
        "data.composite_primary_key",
        "rows sharing a timestamp but not their second (PRIMARY KEY) column are distinct \
         rows, and export + restore keeps every one of them",
        "source/libs/parser/inc/sql.y (column_options PRIMARY KEY), \
         source/dnode/vnode/src/tq/tqRead.c (primary-key flag); TDengine 3.3.0+",
        |e| Box::pin(composite_primary_key(e)),
    ),
    entry(
        "types.decimal_blob",
        "DECIMAL(p,s) (128-bit), DECIMAL64 and BLOB columns export (read without the \
         connector's block parser, which panics on types 17/18/21) and restore exactly, \
         NULLs and extreme values included; DECIMAL from 3.3.6, BLOB from 3.3.7",
        "include/common/ttypes.h, source/libs/parser/src/parInsertSql.c (decimal128FromStr, \
         parseBlob), taosAdapter RawBlockGetDecimalInfo",
        |e| Box::pin(decimal_blob(e)),
    ),
    entry(
        "restore.count_by_child",
        "SELECT TBNAME, COUNT(*) … PARTITION BY TBNAME counts every child table with rows \
         (the restore check)",
        "source/libs/parser/inc/sql.y (partition_by_clause_opt)",
        |e| Box::pin(count_by_child(e)),
    ),
    entry(
        "data.same_timestamp_overwrites",
        "a row written at an existing timestamp replaces the row (a block is the rows as \
         of the backup)",
        "source/dnode/vnode/src/tsdb (last-write-wins merge of rows with equal keys)",
        |e| Box::pin(same_timestamp_overwrites(e)),
    ),
    entry(
        "data.delete_inclusive",
        "DELETE … WHERE ts >= a AND ts <= b removes both ends of the range",
        "source/libs/parser/src/parTranslater.c (translateDelete); the WAL's SDeleteRes",
        |e| Box::pin(delete_inclusive(e)),
    ),
    entry(
        "error.keep_refusal",
        "a row older than the database's KEEP is refused with 0x060B, which restore \
         reports as rows rejected by KEEP",
        "include/util/taoserror.h (TSDB_CODE_TDB_TIMESTAMP_OUT_OF_RANGE)",
        |e| Box::pin(keep_refusal(e)),
    ),
    entry(
        "error.table_not_exist",
        "a missing table is error 0x2603, classified as not found",
        "include/util/taoserror.h (TSDB_CODE_PAR_TABLE_NOT_EXIST)",
        |e| Box::pin(table_not_exist(e)),
    ),
    entry(
        "error.database_not_exist",
        "a missing database is error 0x0388, classified as not found (the tool names the \
         database)",
        "include/util/taoserror.h (TSDB_CODE_MND_DB_NOT_EXIST)",
        |e| Box::pin(database_not_exist(e)),
    ),
    entry(
        "error.auth_failure",
        "a wrong password is error 0x0357, classified as an authentication failure",
        "include/util/taoserror.h (TSDB_CODE_MND_AUTH_FAILURE)",
        |e| Box::pin(auth_failure(e)),
    ),
    entry(
        "tmq.fresh_start",
        "the tmq feed creates its topic WITH META AS DATABASE, subscribes and catches up \
         to the end of every vgroup",
        "source/dnode/mnode/impl/src/mndTopic.c; taosAdapter controller/ws/tmq/tmq.go",
        |e| Box::pin(tmq_fresh_start(e)),
    ),
    entry(
        "tmq.topic_sql",
        "ins_topics has the topic's CREATE TOPIC text in `sql`, which says WITH META",
        "source/dnode/mnode/impl/src/mndTopic.c (mndRetrieveTopic), source/common/src/systable.c",
        |e| Box::pin(tmq_topic_sql(e)),
    ),
    entry(
        "tmq.changes_reported",
        "inserts, deletes, created and dropped tables, added columns and changed tags reach \
         the feed as data and meta messages",
        "source/dnode/vnode/src/tq/tqRead.c, source/client/src/clientRawBlockWrite.c",
        |e| Box::pin(tmq_changes_reported(e)),
    ),
    entry(
        "tmq.meta_kinds",
        "meta messages the connector cannot type (ALTER TABLE … TTL / COMMENT: alterType 9 \
         without colName) neither fail nor stall the feed, and a multi-table CREATE TABLE \
         (createList) reports every table it created",
        "source/client/src/clientRawBlockWrite.c (processAlterTable, processCreateTable), \
         taos-query 0.12.4 src/common/raw/meta.rs",
        |e| Box::pin(tmq_meta_kinds(e)),
    ),
    entry(
        "tmq.auto_create_insert",
        "an INSERT that creates its child table (USING … TAGS) reaches the feed as the \
         table's creation and its rows (one meta+data message on a WITH META topic)",
        "source/dnode/vnode/src/tq/tqScan.c (taosx scan of submits with create requests), \
         taosAdapter controller/ws/tmq/tmq.go (message_type 3)",
        |e| Box::pin(tmq_auto_create_insert(e)),
    ),
    entry(
        "tmq.drop_tables_list",
        "DROP TABLE a, b (several tables in one statement) reaches the feed as each table \
         dropped (one meta message per vgroup with tableNameList)",
        "source/client/src/clientRawBlockWrite.c (processDropTable)",
        |e| Box::pin(tmq_drop_tables_list(e)),
    ),
    entry(
        "tmq.metadata_create_list",
        "one INSERT that creates two child tables reaches the feed as both creations and \
         their rows",
        "source/client/src/clientRawBlockWrite.c (buildCreateCTableJson, createList), \
         source/dnode/vnode/src/tq/tqScan.c",
        |e| Box::pin(tmq_metadata_create_list(e)),
    ),
    entry(
        "tmq.idle_catch_up",
        "a consumer that resumes from committed offsets on an idle database catches up: \
         WAL entries that yield no message (subscribe, commit) still move its position",
        "source/dnode/vnode/src/tq/tqUtil.c (tqFetchLog), source/client/src/clientTmq.c",
        |e| Box::pin(tmq_idle_catch_up(e)),
    ),
    entry(
        "tmq.deletes_between_inserts",
        "inserts and deletes alternating in one table reach the feed in order, and the \
         positions the feed ends at (taken from data messages' response offsets and, after \
         a meta message, from `position`) resume without replaying or losing a change",
        "source/dnode/vnode/src/tq/tqUtil.c (a meta message ends the data message before \
         it), source/client/src/clientTmq.c (tmq_position, tmq_get_vgroup_offset), \
         taosAdapter controller/ws/tmq/tmq.go (position takes several vgroups)",
        |e| Box::pin(tmq_deletes_between_inserts(e)),
    ),
    entry(
        "net.nagle_off",
        "after a catalog read and a feed's catch-up, none of the tool's connections to the \
         server has Nagle's algorithm on: the connector leaves it on and taosAdapter delays \
         its ACKs, so each request on such a connection would wait up to 40 ms",
        "taosadapter main.go (Go net/http: TCP_NODELAY on its side, no TCP_QUICKACK); taos-ws \
         0.12.3 src/lib.rs (ws_tool_build_stream: ws-tool ClientConfig::default(), no write \
         buffer, no TCP_NODELAY)",
        |e| Box::pin(nagle_off(e)),
    ),
];

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// The schema the data checks share.
async fn schema_create(env: &Env) -> Result<Verdict, String> {
    let db = &env.db;
    for sql in [
        format!(
            "CREATE STABLE `{db}`.`m` (`ts` TIMESTAMP, `ttl` INT, `d` DOUBLE, `s` VARCHAR(16), \
             `n` NCHAR(8), `b` BOOL) TAGS (`t_int` INT, `t_str` VARCHAR(16))"
        ),
        format!("CREATE TABLE `{db}`.`c1` USING `{db}`.`m` TAGS (1, 'one')"),
        format!(
            "CREATE TABLE `{db}`.`c2` USING `{db}`.`m` TAGS (NULL, NULL) COMMENT 'second' TTL 7"
        ),
        format!(
            "CREATE TABLE `{db}`.`n1` (`ts` TIMESTAMP, `v` DOUBLE, `s` NCHAR(4)) COMMENT 'normal'"
        ),
    ] {
        env.exec(&sql).await?;
    }
    let mut values = Vec::new();
    for i in 0..100i64 {
        let ts = env.t0 + i * 1000;
        if i % 10 == 3 {
            values.push(format!("({ts}, NULL, NULL, NULL, NULL, NULL)"));
        } else {
            values.push(format!(
                "({ts}, {i}, {}, 's{i}', 'n{}', {})",
                i as f64 / 4.0,
                i % 7,
                i % 2 == 0
            ));
        }
    }
    env.exec(&format!(
        "INSERT INTO `{db}`.`c1` VALUES {}",
        values.join(" ")
    ))
    .await?;
    let values: Vec<String> = (0..10i64)
        .map(|i| format!("({}, {i}, 0.5, 'x', 'y', true)", env.t0 + 500 + i * 1000))
        .collect();
    env.exec(&format!(
        "INSERT INTO `{db}`.`c2` VALUES {}",
        values.join(" ")
    ))
    .await?;
    let values: Vec<String> = (0..20i64)
        .map(|i| {
            format!(
                "({}, {}, 'é{}')",
                env.t0 + i * 60_000,
                i as f64 * 1.5,
                i % 10
            )
        })
        .collect();
    env.exec(&format!(
        "INSERT INTO `{db}`.`n1` VALUES {}",
        values.join(" ")
    ))
    .await?;
    Ok(Verdict::Holds)
}

async fn backquoted_keywords(env: &Env) -> Result<Verdict, String> {
    let lit = format!("'{}'", env.db);
    env.query(&format!(
        "SELECT `table_name`, `ttl`, `type` FROM information_schema.ins_tables WHERE `db_name` = {lit}"
    ))
    .await?;
    env.query(&format!(
        "SELECT `name`, `precision`, `wal_retention_period` FROM \
         information_schema.ins_databases WHERE `name` = {lit}"
    ))
    .await?;
    Ok(Verdict::Holds)
}

async fn bare_keywords_rejected(env: &Env) -> Result<Verdict, String> {
    let sql = format!(
        "SELECT table_name, ttl FROM information_schema.ins_tables WHERE db_name = '{}'",
        env.db
    );
    match env.taos.exec(&sql).await {
        Ok(_) => Err(format!("`{sql}` was accepted")),
        Err(e) => {
            let code = u32::from(e.code()) & 0xffff;
            ensure(code & 0xff00 == 0x2600, || {
                format!("`{sql}` failed, but not with a parser error (0x26xx): {e}")
            })?;
            Ok(Verdict::Holds)
        }
    }
}

async fn system_columns(env: &Env) -> Result<Verdict, String> {
    let lit = format!("'{}'", env.db);
    let wanted: [(&str, String, &[&str]); 5] = [
        (
            "ins_databases",
            format!("`name` = {lit}"),
            &["name", "precision"],
        ),
        (
            "ins_stables",
            format!("`db_name` = {lit}"),
            &["stable_name", "db_name"],
        ),
        (
            "ins_tables",
            format!("`db_name` = {lit}"),
            &[
                "table_name",
                "db_name",
                "stable_name",
                "type",
                "ttl",
                "table_comment",
                "vgroup_id",
            ],
        ),
        (
            "ins_columns",
            format!("`db_name` = {lit}"),
            &[
                "table_name",
                "db_name",
                "table_type",
                "col_name",
                "col_type",
                "col_length",
            ],
        ),
        (
            "ins_topics",
            format!("`db_name` = {lit}"),
            &["topic_name", "db_name", "sql"],
        ),
    ];
    let mut missing = Vec::new();
    for (table, filter, columns) in wanted {
        let (names, _) = env
            .query(&format!(
                "SELECT * FROM information_schema.`{table}` WHERE {filter}"
            ))
            .await?;
        for c in columns {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(c)) {
                missing.push(format!("{table}.{c} (has {names:?})"));
            }
        }
    }
    ensure(missing.is_empty(), || {
        format!("missing: {}", missing.join("; "))
    })?;
    Ok(Verdict::Holds)
}

async fn catalog_read(env: &Env) -> Result<Verdict, String> {
    let cat = env
        .source
        .read_catalog(&env.db)
        .await
        .map_err(|e| e.to_string())?;
    ensure(cat.database.precision == Precision::Ms, || {
        format!("precision {:?}, created as ms", cat.database.precision)
    })?;
    ensure(!cat.database.ddl.is_empty(), || "no database DDL".into())?;
    let m = cat
        .super_tables
        .iter()
        .find(|s| s.name == "m")
        .ok_or_else(|| format!("super table m not read: {:?}", names(&cat.super_tables)))?;
    let cols: Vec<&str> = m.columns.iter().map(|c| c.name.as_str()).collect();
    ensure(cols == ["ts", "ttl", "d", "s", "n", "b"], || {
        format!("columns of m: {cols:?}")
    })?;
    let tags: Vec<&str> = m.tags.iter().map(|c| c.name.as_str()).collect();
    ensure(tags == ["t_int", "t_str"], || {
        format!("tags of m: {tags:?}")
    })?;
    let table = |name: &str| {
        cat.tables
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("table {name} not read"))
    };
    let c1 = table("c1")?;
    ensure(
        c1.kind == TableKind::Child && c1.super_table.as_deref() == Some("m"),
        || format!("c1 read as {:?} of {:?}", c1.kind, c1.super_table),
    )?;
    let tag_values: Vec<String> = c1.tags.iter().map(|t| format!("{:?}", t.value)).collect();
    ensure(tag_values == ["Int(1)", "VarChar([111, 110, 101])"], || {
        format!("tags of c1: {tag_values:?}")
    })?;
    let c2 = table("c2")?;
    ensure(
        c2.comment.as_deref() == Some("second") && c2.ttl == Some(7),
        || format!("c2 comment {:?} ttl {:?}", c2.comment, c2.ttl),
    )?;
    ensure(
        c2.tags
            .iter()
            .all(|t| t.value == taosbackup_core::Value::Null),
        || format!("tags of c2 (all NULL): {:?}", c2.tags),
    )?;
    let n1 = table("n1")?;
    let cols: Vec<&str> = n1.columns.iter().map(|c| c.name.as_str()).collect();
    ensure(
        n1.kind == TableKind::Normal
            && cols == ["ts", "v", "s"]
            && n1.comment.as_deref() == Some("normal"),
        || {
            format!(
                "n1: {:?} columns {cols:?} comment {:?}",
                n1.kind, n1.comment
            )
        },
    )?;
    Ok(Verdict::Holds)
}

/// Exports `table` from the scratch database through the tool (buckets of `split_every`
/// ms), writes every chunk into the target with the tool's writer, and compares all rows.
async fn copy_table(env: &Env, table: &str, split_every: i64) -> Result<(), String> {
    copy_table_unchecked(env, table, split_every).await?;
    compare_table(env, table).await
}

/// Exports `table` through the tool and writes every chunk into the target with the
/// tool's writer (no comparison).
async fn copy_table_unchecked(env: &Env, table: &str, split_every: i64) -> Result<(), String> {
    let request = ExportRequest {
        table: table.to_string(),
        ranges: vec![TimeRange {
            start: env.t0 - 3_600_000,
            end: env.t0 + 3_600_000,
        }],
        split_every: Some(split_every),
    };
    let mut stream = env
        .source
        .export(&env.db, Precision::Ms, request)
        .await
        .map_err(|e| format!("exporting {table}: {e}"))?;
    while let Some(chunk) = stream
        .next_chunk()
        .await
        .map_err(|e| format!("exporting {table}: {e}"))?
    {
        let report = env
            .source
            .write_chunk(&env.target, table, &chunk)
            .await
            .map_err(|e| format!("writing {table}: {e}"))?;
        ensure(report.rows_written == u64::from(chunk.rows), || {
            format!(
                "{table}: {} rows written of {}",
                report.rows_written, chunk.rows
            )
        })?;
    }
    Ok(())
}

/// Creates the normal table `table` of the scratch database in the target, as restore
/// would (the target database is created too).
async fn create_in_target(env: &Env, table: &str) -> Result<(), String> {
    let mut cat = env
        .source
        .read_catalog(&env.db)
        .await
        .map_err(|e| e.to_string())?;
    cat.tables.retain(|t| t.name == table);
    cat.super_tables.clear();
    let options = RestoreOptions {
        target_database: Some(env.target.clone()),
        keep: None,
        allow_existing: true,
    };
    env.source
        .create_schema(&cat, &options)
        .await
        .map_err(|e| format!("creating the target table: {e}"))?;
    Ok(())
}

/// Compares every row of `table` in the scratch database and the target.
async fn compare_table(env: &Env, table: &str) -> Result<(), String> {
    // Rows sharing a timestamp (composite keys) come in no promised order: compare sorted.
    let rows = |db: String| async move {
        let q = format!("SELECT * FROM `{db}`.`{table}`");
        let (_, rows) = env.query(&q).await?;
        let mut rows: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
        rows.sort();
        Ok::<_, String>(rows)
    };
    let source_rows = rows(env.db.clone()).await?;
    let target_rows = rows(env.target.clone()).await?;
    ensure(!source_rows.is_empty(), || format!("{table} has no rows"))?;
    ensure(source_rows == target_rows, || {
        format!(
            "{table}: {} source rows, {} restored; first difference: {:?}",
            source_rows.len(),
            target_rows.len(),
            source_rows.iter().zip(&target_rows).find(|(a, b)| a != b)
        )
    })
}

fn names(s: &[taosbackup_core::SuperTableDef]) -> Vec<&str> {
    s.iter().map(|s| s.name.as_str()).collect()
}

async fn export_restore_roundtrip(env: &Env) -> Result<Verdict, String> {
    let cat = env
        .source
        .read_catalog(&env.db)
        .await
        .map_err(|e| e.to_string())?;
    let options = RestoreOptions {
        target_database: Some(env.target.clone()),
        keep: None,
        allow_existing: false,
    };
    env.source
        .create_schema(&cat, &options)
        .await
        .map_err(|e| format!("creating the target schema: {e}"))?;
    for t in &cat.tables {
        copy_table(env, &t.name, 30_000).await?;
    }
    Ok(Verdict::Holds)
}

async fn database_options(env: &Env) -> Result<Verdict, String> {
    // export.restore_roundtrip created the target from this server's DDL.
    let changes = env.source.database_option_changes();
    ensure(changes.is_empty(), || {
        let list: Vec<String> = changes
            .iter()
            .map(|c| format!("{} -> {:?} ({})", c.source, c.target, c.reason))
            .collect();
        format!("replaying on the same server changed: {}", list.join("; "))
    })?;
    let (_, rows) = env
        .query(&format!("SHOW CREATE DATABASE `{}`", env.target))
        .await?;
    ensure(!rows.is_empty(), || {
        "the restored database has no DDL".into()
    })?;
    Ok(Verdict::Holds)
}

async fn long_statements(env: &Env) -> Result<Verdict, String> {
    let db = &env.db;
    env.exec(&format!(
        "CREATE STABLE `{db}`.`wide` (`ts` TIMESTAMP, `v` INT) TAGS (`t` VARCHAR(16000))"
    ))
    .await?;
    let tag = "x".repeat(16_000);
    for i in 0..100 {
        env.exec(&format!(
            "CREATE TABLE `{db}`.`w{i}` USING `{db}`.`wide` TAGS ('{tag}')"
        ))
        .await?;
    }
    let mut cat = env
        .source
        .read_catalog(db)
        .await
        .map_err(|e| e.to_string())?;
    cat.super_tables.retain(|s| s.name == "wide");
    cat.tables
        .retain(|t| t.super_table.as_deref() == Some("wide"));
    ensure(cat.tables.len() == 100, || {
        format!("{} of 100 wide children read", cat.tables.len())
    })?;
    let options = RestoreOptions {
        target_database: Some(env.target.clone()),
        keep: None,
        allow_existing: true,
    };
    env.source
        .create_schema(&cat, &options)
        .await
        .map_err(|e| format!("creating 100 children with long tags: {e}"))?;
    let (_, rows) = env
        .query(&format!(
            "SELECT COUNT(*) FROM information_schema.ins_tables WHERE `db_name` = '{}' \
             AND `stable_name` = 'wide'",
            env.target
        ))
        .await?;
    let n = rows.first().and_then(|r| r.first()).cloned();
    ensure(n == Some(taos::Value::BigInt(100)), || {
        format!("{n:?} of 100 children created in the target")
    })?;
    Ok(Verdict::Holds)
}

async fn composite_primary_key(env: &Env) -> Result<Verdict, String> {
    if !env.at_least([3, 3, 0]) {
        return Ok(Verdict::NotApplicable(
            "composite primary keys arrived in TDengine 3.3.0".into(),
        ));
    }
    let t = format!("`{}`.`pk`", env.db);
    env.exec(&format!(
        "CREATE TABLE {t} (`ts` TIMESTAMP, `id` INT PRIMARY KEY, `v` INT)"
    ))
    .await?;
    let values: Vec<String> = (0..300i64)
        .map(|i| format!("({}, {}, {i})", env.t0 + (i / 3) * 1000, i % 3))
        .collect();
    env.exec(&format!("INSERT INTO {t} VALUES {}", values.join(" ")))
        .await?;
    let (_, rows) = env.query(&format!("SELECT COUNT(*) FROM {t}")).await?;
    let count = rows.first().and_then(|r| r.first()).cloned();
    ensure(count == Some(taos::Value::BigInt(300)), || {
        format!("300 rows on 100 timestamps × 3 keys counted as {count:?}")
    })?;
    create_in_target(env, "pk").await?;
    copy_table(env, "pk", 10_000).await?;
    Ok(Verdict::Holds)
}

async fn decimal_blob(env: &Env) -> Result<Verdict, String> {
    if !env.at_least([3, 3, 6]) {
        return Ok(Verdict::NotApplicable(
            "DECIMAL arrived in TDengine 3.3.6".into(),
        ));
    }
    if env.connect.resolve().is_ok_and(|(e, _)| e.is_native()) {
        return Ok(Verdict::NotApplicable(
            "DECIMAL and BLOB are read over taosAdapter's WebSocket API; run with a ws:// DSN"
                .into(),
        ));
    }
    let blob = env.at_least([3, 3, 7]);
    let t = format!("`{}`.`dec`", env.db);
    let blob_col = if blob { ", `bl` BLOB" } else { "" };
    env.exec(&format!(
        "CREATE TABLE {t} (`ts` TIMESTAMP, `d38` DECIMAL(38,10), `d18` DECIMAL(18,2){blob_col})"
    ))
    .await?;
    let rows = [
        (
            "'1234567890123456789012345678.0123456789'",
            "'-9999999999999999.99'",
            "'\\x00ff10'",
        ),
        ("'-0.0000000001'", "'0.01'", "''"),
        ("NULL", "NULL", "NULL"),
        ("'0'", "'9999999999999999.99'", "'text'"),
    ];
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (a, b, c))| {
            let ts = env.t0 + i as i64 * 1000;
            if blob {
                format!("({ts}, {a}, {b}, {c})")
            } else {
                format!("({ts}, {a}, {b})")
            }
        })
        .collect();
    env.exec(&format!("INSERT INTO {t} VALUES {}", values.join(" ")))
        .await?;
    create_in_target(env, "dec").await?;
    // The connector cannot parse these columns: read them with the tool's own WebSocket
    // client and block decoder, and check the source against the inserted literals first so
    // that a wrong decoder cannot pass by reading both sides equally wrong.
    let select = |db: &str| format!("SELECT * FROM `{db}`.`dec` ORDER BY `ts`");
    let before = query_raw(env, &select(&env.db)).await?;
    let expected_decimals = [
        (
            "1234567890123456789012345678.0123456789",
            "-9999999999999999.99",
        ),
        ("-0.0000000001", "0.01"),
        ("", ""),
        ("0.0000000000", "9999999999999999.99"),
    ];
    for (row, (d38, d18)) in before.iter().zip(expected_decimals) {
        let want = |s: &str| {
            if s.is_empty() {
                Value::Null
            } else {
                Value::Decimal(s.to_string())
            }
        };
        ensure(
            row.get(1) == Some(&want(d38)) && row.get(2) == Some(&want(d18)),
            || format!("the source reads back as {row:?}, inserted {d38:?} and {d18:?}"),
        )?;
    }
    copy_table_unchecked(env, "dec", 30_000).await?;
    let after = query_raw(env, &select(&env.target)).await?;
    ensure(before.len() == rows.len() && before == after, || {
        format!("source {before:?}, restored {after:?}")
    })?;
    Ok(Verdict::Holds)
}

/// Runs `sql` over the tool's own WebSocket query client and decodes every cell with its
/// raw-block reader: the connector's block parser panics on DECIMAL and BLOB columns.
async fn query_raw(env: &Env, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    let (endpoint, creds) = env.connect.resolve().map_err(|e| e.to_string())?;
    let fail = |e: crate::Error| format!("`{}` failed: {e}", super::shorten(sql));
    let mut c = WsQuery::connect(&endpoint, &creds, None, env.connect.request_timeout)
        .await
        .map_err(fail)?;
    let cols = c.query(sql).await.map_err(fail)?;
    let mut rows = Vec::new();
    while let Some(block) = c.fetch(cols.id).await.map_err(fail)? {
        let view = RawView::parse(&block).map_err(fail)?;
        for r in 0..view.rows() {
            let row = (0..view.ncols())
                .map(|col| view.value(col, r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            rows.push(row);
        }
    }
    Ok(rows)
}

async fn count_by_child(env: &Env) -> Result<Verdict, String> {
    let counts = env
        .source
        .count_rows_by_child(&env.db, "m")
        .await
        .map_err(|e| e.to_string())?;
    let want: BTreeMap<String, u64> = [("c1".to_string(), 100), ("c2".to_string(), 10)].into();
    ensure(counts == want, || {
        format!("counts {counts:?}, want {want:?}")
    })?;
    Ok(Verdict::Holds)
}

async fn same_timestamp_overwrites(env: &Env) -> Result<Verdict, String> {
    let t = format!("`{}`.`ow`", env.db);
    env.exec(&format!("CREATE TABLE {t} (`ts` TIMESTAMP, `v` INT)"))
        .await?;
    env.exec(&format!("INSERT INTO {t} VALUES ({}, 1)", env.t0))
        .await?;
    env.exec(&format!("INSERT INTO {t} VALUES ({}, 2)", env.t0))
        .await?;
    let (_, rows) = env.query(&format!("SELECT `v` FROM {t}")).await?;
    ensure(
        rows.len() == 1 && rows[0].first() == Some(&taos::Value::Int(2)),
        || format!("rows after two writes at one timestamp: {rows:?}"),
    )?;
    Ok(Verdict::Holds)
}

async fn delete_inclusive(env: &Env) -> Result<Verdict, String> {
    let t = format!("`{}`.`del`", env.db);
    env.exec(&format!("CREATE TABLE {t} (`ts` TIMESTAMP, `v` INT)"))
        .await?;
    let values: Vec<String> = (0..10i64)
        .map(|i| format!("({}, {i})", env.t0 + i * 1000))
        .collect();
    env.exec(&format!("INSERT INTO {t} VALUES {}", values.join(" ")))
        .await?;
    env.exec(&format!(
        "DELETE FROM {t} WHERE `ts` >= {} AND `ts` <= {}",
        env.t0 + 2000,
        env.t0 + 4000
    ))
    .await?;
    let (_, rows) = env
        .query(&format!("SELECT `v` FROM {t} ORDER BY `ts`"))
        .await?;
    let left: Vec<&taos::Value> = rows.iter().filter_map(|r| r.first()).collect();
    let want: Vec<taos::Value> = [0, 1, 5, 6, 7, 8, 9].map(taos::Value::Int).into();
    ensure(left.iter().copied().eq(want.iter()), || {
        format!("rows left: {left:?}")
    })?;
    Ok(Verdict::Holds)
}

async fn keep_refusal(env: &Env) -> Result<Verdict, String> {
    // The scratch database has the default KEEP (3650 days); 4000 days ago is outside it.
    let old = env.t0 - 4000 * 86_400_000;
    let sql = format!("INSERT INTO `{}`.`n1` VALUES ({old}, 1.0, 'old')", env.db);
    match env.taos.exec(&sql).await {
        Ok(_) => Err(format!("`{sql}` was accepted")),
        Err(e) => {
            let code = u32::from(e.code()) & 0xffff;
            ensure(code == 0x060B, || format!("refused with {code:#06x}: {e}"))?;
            Ok(Verdict::Holds)
        }
    }
}

fn kind_of(e: crate::Error) -> (SourceErrorKind, String) {
    let text = e.to_string();
    (SourceError::from(e).kind(), text)
}

async fn table_not_exist(env: &Env) -> Result<Verdict, String> {
    let err = env
        .source
        .count_rows(&env.db, "no_such_table")
        .await
        .err()
        .ok_or("COUNT(*) of a missing table succeeded")?;
    let code = err.code();
    let (kind, text) = kind_of(err);
    ensure(
        code == Some(0x2603) && kind == SourceErrorKind::NotFound,
        || format!("code {code:x?}, classified {kind:?}: {text}"),
    )?;
    Ok(Verdict::Holds)
}

async fn database_not_exist(env: &Env) -> Result<Verdict, String> {
    let missing = format!("{}_missing", env.db);
    let err = env
        .source
        .read_catalog(&missing)
        .await
        .err()
        .ok_or("reading the catalog of a missing database succeeded")?;
    let code = err.code();
    let (kind, text) = kind_of(err);
    ensure(
        code == Some(0x0388) && kind == SourceErrorKind::NotFound,
        || format!("code {code:x?}, classified {kind:?}: {text}"),
    )?;
    ensure(text.contains(&missing), || {
        format!("the message does not name {missing}: {text}")
    })?;
    Ok(Verdict::Holds)
}

async fn auth_failure(env: &Env) -> Result<Verdict, String> {
    let (_, creds) = env.connect.resolve().map_err(|e| e.to_string())?;
    let mut o: ConnectOptions = env.connect.clone();
    o.user = Some(creds.user.clone());
    o.password = Some(format!("{}-wrong", creds.password()));
    o.retry_count = 0;
    let source = TaosSource::connect(o).map_err(|e| e.to_string())?;
    let err = source
        .execute("SELECT SERVER_VERSION()")
        .await
        .err()
        .ok_or("a wrong password was accepted")?;
    let code = err.code();
    let (kind, text) = kind_of(err);
    ensure(
        code == Some(0x0357) && kind == SourceErrorKind::Authentication,
        || format!("code {code:x?}, classified {kind:?}: {text}"),
    )?;
    Ok(Verdict::Holds)
}

/// How long a catch-up may take before the check calls it stalled.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// A feed on the scratch database for a repository id of its own (its own topic and group).
fn feed(env: &Env, name: &str) -> Result<TmqFeed, String> {
    let options = TmqFeedOptions::new(&format!("conformance-{}-{name}", env.db), env.db.clone());
    if let Ok(mut t) = env.topics.lock() {
        if !t.contains(&options.topic) {
            t.push(options.topic.clone());
        }
    }
    TmqFeed::new(env.connect.clone(), options).map_err(|e| e.to_string())
}

/// A fresh feed named `name`, started from nothing and read to its end.
async fn caught_up_feed(env: &Env, name: &str) -> Result<TmqFeed, String> {
    let mut f = feed(env, name)?;
    f.start(&Positions::new())
        .await
        .map_err(|e| format!("start: {e}"))?;
    catch_up(&mut f).await?;
    Ok(f)
}

/// Commits the feed's current positions.
async fn commit_all(f: &mut TmqFeed) -> Result<(), String> {
    let positions = f.positions();
    f.commit(&positions)
        .await
        .map_err(|e| format!("commit: {e}"))
}

/// Reads the feed to its end, returning the events.
async fn catch_up(feed: &mut TmqFeed) -> Result<Vec<ChangeEvent>, String> {
    let started = Instant::now();
    let mut events = Vec::new();
    loop {
        let left = CATCH_UP_DEADLINE
            .checked_sub(started.elapsed())
            .ok_or("catch-up did not finish within 60 s")?;
        match tokio::time::timeout(left, feed.next_batch()).await {
            Err(_) => return Err("catch-up did not finish within 60 s".into()),
            Ok(Err(e)) => return Err(format!("catch-up failed: {e}")),
            Ok(Ok(None)) => return Ok(events),
            Ok(Ok(Some(batch))) => events.extend(batch.events),
        }
    }
}

async fn tmq_fresh_start(env: &Env) -> Result<Verdict, String> {
    let mut f = feed(env, "fresh")?;
    let start = f
        .start(&Positions::new())
        .await
        .map_err(|e| format!("start: {e}"))?;
    ensure(matches!(start, FeedStart::Fresh { .. }), || {
        format!("a new topic started as {start:?}, not fresh")
    })?;
    catch_up(&mut f).await?;
    let positions = f.positions();
    ensure(!positions.is_empty(), || "no vgroup positions".into())?;
    f.commit(&positions)
        .await
        .map_err(|e| format!("commit: {e}"))?;
    Ok(Verdict::Holds)
}

async fn tmq_topic_sql(env: &Env) -> Result<Verdict, String> {
    let f = feed(env, "fresh")?;
    let topic = f.options().topic.clone();
    let (names, rows) = env
        .query("SELECT * FROM information_schema.ins_topics")
        .await?;
    let col = |n: &str| names.iter().position(|c| c.eq_ignore_ascii_case(n));
    let (tn, sq) = (
        col("topic_name").ok_or("ins_topics has no topic_name")?,
        col("sql").ok_or("ins_topics has no sql")?,
    );
    let row = rows
        .iter()
        .find(|r| r.get(tn).and_then(|v| v.to_string().ok()).as_deref() == Some(topic.as_str()))
        .ok_or_else(|| format!("topic {topic} not in ins_topics (run after tmq.fresh_start)"))?;
    let sql = row
        .get(sq)
        .and_then(|v| v.to_string().ok())
        .unwrap_or_default();
    let lower = sql.to_ascii_lowercase();
    ensure(
        lower.contains("with meta") && lower.contains("database"),
        || format!("sql of {topic}: {sql:?}"),
    )?;
    Ok(Verdict::Holds)
}

async fn tmq_changes_reported(env: &Env) -> Result<Verdict, String> {
    let mut f = caught_up_feed(env, "changes").await?;
    let db = &env.db;
    let t1 = env.t0 + 200_000;
    for sql in [
        format!(
            "INSERT INTO `{db}`.`c1` (`ts`, `ttl`) VALUES ({t1}, 7) ({}, 8)",
            t1 + 1000
        ),
        format!("CREATE TABLE `{db}`.`c3` USING `{db}`.`m` TAGS (3, 'three')"),
        format!(
            "DELETE FROM `{db}`.`c1` WHERE `ts` >= {} AND `ts` <= {}",
            env.t0,
            env.t0 + 1000
        ),
        format!("DROP TABLE `{db}`.`c2`"),
        format!("ALTER STABLE `{db}`.`m` ADD COLUMN `extra` INT"),
        format!("ALTER TABLE `{db}`.`c1` SET TAG `t_int` = 5"),
    ] {
        env.exec(&sql).await?;
    }
    let events = catch_up(&mut f).await?;
    let has = |p: &dyn Fn(&ChangeEvent) -> bool| events.iter().any(p);
    let mut missing = Vec::new();
    if !has_rows(&events, "c1", t1) {
        missing.push("rows of c1");
    }
    if !has_table_event(&events, "c3", TableEvent::Created) {
        missing.push("c3 created");
    }
    if !has(
        &|e| matches!(e, ChangeEvent::Delete { table, start, end } if table == "c1" && *start <= env.t0 && *end >= env.t0 + 1000),
    ) {
        missing.push("delete on c1");
    }
    if !has_table_event(&events, "c2", TableEvent::Dropped) {
        missing.push("c2 dropped");
    }
    if !has_table_event(&events, "c1", TableEvent::SchemaChanged) {
        missing.push("schema change of m (on c1)");
    }
    if !has_table_event(&events, "c1", TableEvent::TagsChanged) {
        missing.push("tag change of c1");
    }
    ensure(missing.is_empty(), || {
        format!("not reported: {}; events: {events:?}", missing.join(", "))
    })?;
    commit_all(&mut f).await?;
    Ok(Verdict::Holds)
}

async fn tmq_meta_kinds(env: &Env) -> Result<Verdict, String> {
    let mut f = caught_up_feed(env, "meta").await?;
    let db = &env.db;
    let t1 = env.t0 + 300_000;
    for sql in [
        format!("ALTER TABLE `{db}`.`c1` TTL 9"),
        format!("ALTER TABLE `{db}`.`c1` COMMENT 'changed'"),
        format!(
            "CREATE TABLE `{db}`.`b1` USING `{db}`.`m` TAGS (11, 'b1') \
             `{db}`.`b2` USING `{db}`.`m` TAGS (12, 'b2')"
        ),
        format!("INSERT INTO `{db}`.`c1` (`ts`, `ttl`) VALUES ({t1}, 9)"),
    ] {
        env.exec(&sql).await?;
    }
    let events = catch_up(&mut f).await?;
    let mut missing = Vec::new();
    for t in ["b1", "b2"] {
        if !has_table_event(&events, t, TableEvent::Created) {
            missing.push(format!("{t} created"));
        }
    }
    if !has_rows(&events, "c1", t1) {
        missing.push("the row written after the alters".into());
    }
    ensure(missing.is_empty(), || {
        format!("not reported: {}; events: {events:?}", missing.join(", "))
    })?;
    commit_all(&mut f).await?;
    Ok(Verdict::Holds)
}

async fn tmq_auto_create_insert(env: &Env) -> Result<Verdict, String> {
    let mut f = caught_up_feed(env, "autocreate").await?;
    let db = &env.db;
    let t1 = env.t0 + 400_000;
    env.exec(&format!(
        "INSERT INTO `{db}`.`a1` USING `{db}`.`m` TAGS (21, 'a1') (`ts`, `ttl`) VALUES ({t1}, 1)"
    ))
    .await?;
    let events = catch_up(&mut f).await?;
    let rows = has_rows(&events, "a1", t1);
    ensure(
        has_table_event(&events, "a1", TableEvent::Created) && rows,
        || format!("want a1 created and its row; events: {events:?}"),
    )?;
    commit_all(&mut f).await?;
    Ok(Verdict::Holds)
}

/// Whether the feed reported rows of `name` at timestamp `ts`.
fn has_rows(events: &[ChangeEvent], name: &str, ts: i64) -> bool {
    events.iter().any(
        |e| matches!(e, ChangeEvent::Rows { table, timestamps } if table == name && timestamps.contains(&ts)),
    )
}

fn has_table_event(events: &[ChangeEvent], name: &str, wanted: TableEvent) -> bool {
    events.iter().any(
        |e| matches!(e, ChangeEvent::Table { table, event } if table == name && *event == wanted),
    )
}

async fn tmq_drop_tables_list(env: &Env) -> Result<Verdict, String> {
    let db = &env.db;
    for i in 0..4 {
        env.exec(&format!(
            "CREATE TABLE `{db}`.`dl{i}` USING `{db}`.`m` TAGS ({i}, 'dl')"
        ))
        .await?;
    }
    let mut f = caught_up_feed(env, "droplist").await?;
    env.exec(&format!(
        "DROP TABLE `{db}`.`dl0`, `{db}`.`dl1`, `{db}`.`dl2`, `{db}`.`dl3`"
    ))
    .await?;
    let events = catch_up(&mut f).await?;
    let missing: Vec<String> = (0..4)
        .map(|i| format!("dl{i}"))
        .filter(|t| !has_table_event(&events, t, TableEvent::Dropped))
        .collect();
    ensure(missing.is_empty(), || {
        format!("not reported dropped: {missing:?}; events: {events:?}")
    })?;
    commit_all(&mut f).await?;
    Ok(Verdict::Holds)
}

async fn tmq_metadata_create_list(env: &Env) -> Result<Verdict, String> {
    let mut f = caught_up_feed(env, "createlist").await?;
    let db = &env.db;
    let t1 = env.t0 + 500_000;
    env.exec(&format!(
        "INSERT INTO `{db}`.`cl1` USING `{db}`.`m` TAGS (31, 'cl1') (`ts`, `ttl`) VALUES ({t1}, 1) \
         `{db}`.`cl2` USING `{db}`.`m` TAGS (32, 'cl2') (`ts`, `ttl`) VALUES ({t1}, 2)"
    ))
    .await?;
    let events = catch_up(&mut f).await?;
    let mut missing = Vec::new();
    for t in ["cl1", "cl2"] {
        if !has_table_event(&events, t, TableEvent::Created) {
            missing.push(format!("{t} created"));
        }
        if !has_rows(&events, t, t1) {
            missing.push(format!("rows of {t}"));
        }
    }
    ensure(missing.is_empty(), || {
        format!("not reported: {}; events: {events:?}", missing.join(", "))
    })?;
    commit_all(&mut f).await?;
    Ok(Verdict::Holds)
}

async fn tmq_idle_catch_up(env: &Env) -> Result<Verdict, String> {
    let mut committed = Positions::new();
    for run in 0..4 {
        let mut f = feed(env, "idle")?;
        let start = f
            .start(&committed)
            .await
            .map_err(|e| format!("run {run}: start: {e}"))?;
        if run > 0 {
            ensure(start == FeedStart::Continued, || {
                format!("run {run}: resumed from {committed:?} as {start:?}")
            })?;
        }
        let events = catch_up(&mut f)
            .await
            .map_err(|e| format!("run {run}: {e}"))?;
        if run > 0 {
            ensure(events.is_empty(), || {
                format!("run {run}: an idle database reported {events:?}")
            })?;
        }
        committed = f.positions();
        f.commit(&committed)
            .await
            .map_err(|e| format!("run {run}: commit: {e}"))?;
    }
    Ok(Verdict::Holds)
}

async fn tmq_deletes_between_inserts(env: &Env) -> Result<Verdict, String> {
    let db = &env.db;
    env.exec(&format!(
        "CREATE TABLE `{db}`.`il` USING `{db}`.`m` TAGS (9, 'il')"
    ))
    .await?;
    let mut f = caught_up_feed(env, "interleaved").await?;
    let t1 = env.t0 + 400_000;
    let stamps: Vec<i64> = (0..10).map(|i| t1 + i * 1000).collect();
    for (i, ts) in stamps.iter().enumerate() {
        env.exec(&format!(
            "INSERT INTO `{db}`.`il` (`ts`, `ttl`) VALUES ({ts}, {i})"
        ))
        .await?;
        env.exec(&format!(
            "DELETE FROM `{db}`.`il` WHERE `ts` >= {ts} AND `ts` <= {ts}"
        ))
        .await?;
    }
    let events = catch_up(&mut f).await?;
    // Each insert's rows, then its delete, in the order written.
    let mut next = 0;
    for ts in &stamps {
        let rows = events[next..].iter().position(|e| {
            matches!(e, ChangeEvent::Rows { table, timestamps } if table == "il" && timestamps.contains(ts))
        });
        let Some(r) = rows else {
            return Err(format!(
                "rows at {ts} not reported in order; events: {events:?}"
            ));
        };
        let delete = events[next + r..].iter().position(|e| {
            matches!(e, ChangeEvent::Delete { table, start, end } if table == "il" && start <= ts && end >= ts)
        });
        let Some(d) = delete else {
            return Err(format!(
                "delete at {ts} not reported after its rows; events: {events:?}"
            ));
        };
        next += r + d + 1;
    }
    commit_all(&mut f).await?;
    let committed = f.positions();
    drop(f);
    let mut again = feed(env, "interleaved")?;
    let start = again
        .start(&committed)
        .await
        .map_err(|e| format!("resume: {e}"))?;
    ensure(start == FeedStart::Continued, || {
        format!("resumed from {committed:?} as {start:?}")
    })?;
    let replayed = catch_up(&mut again).await?;
    ensure(replayed.is_empty(), || {
        format!("resumed at {committed:?}, the feed read again: {replayed:?}")
    })?;
    Ok(Verdict::Holds)
}

async fn nagle_off(env: &Env) -> Result<Verdict, String> {
    let (endpoint, _) = env.connect.resolve().map_err(|e| e.to_string())?;
    if endpoint.is_native() {
        return Ok(Verdict::NotApplicable(
            "a native DSN: the client library's own protocol, not taosAdapter's WebSocket".into(),
        ));
    }
    let server: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", endpoint.host))?
            .collect();
    env.source
        .read_catalog(&env.db)
        .await
        .map_err(|e| format!("catalog read: {e}"))?;
    let _feed = caught_up_feed(env, "nagle").await?;
    let on: Vec<_> = taosbackup_core::net::sockets_with_nagle()
        .map_err(|e| {
            format!(
                "the sockets cannot be inspected ({e}), so Nagle's algorithm stays on: every \
                 request may wait up to 40 ms"
            )
        })?
        .into_iter()
        .filter(|(_, peer)| server.contains(peer))
        .collect();
    ensure(on.is_empty(), || {
        format!("connections (local, server) with Nagle's algorithm on: {on:?}")
    })?;
    Ok(Verdict::Holds)
}
