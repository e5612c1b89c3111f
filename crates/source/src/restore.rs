//! The restore writer: the target database from the source DDL (renamed, KEEP overridable),
//! super tables, batched child tables with typed tag literals, normal tables; then chunks
//! written with the raw-block write, columns mapped by name, with an SQL-insert fallback and
//! KEEP rejections counted rather than dropped.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use taos::RawBlock;
use taosbackup_core::{
    BlockChunk, CatalogSnapshot, ColumnDef, DataType, Precision, RestoreOptions, TableDef,
    TableKind, WriteReport,
};

use crate::Error;
use crate::catalog::text;
use crate::conn::{Ctx, Pool};
use crate::dbopts::{self, Generation, OptionChange};
use crate::raw::RawView;
use crate::sql::{self, Batcher, MAX_SQL_LEN, ident, quote_str};
use crate::value::{sql_literal, to_core_value};

/// TDengine: timestamp out of KEEP range.
pub(crate) const CODE_KEEP: u32 = 0x060B;
/// Invalid column name (a chunk column the target lacks).
const CODE_INVALID_COLUMN: u32 = 0x2602;
/// Operation not supported (raw-block write refused).
const CODE_NOT_SUPPORTED: u32 = 0x0100;

fn type_sql(c: &ColumnDef) -> String {
    let base = match c.data_type {
        DataType::Timestamp => "TIMESTAMP",
        DataType::Bool => "BOOL",
        DataType::TinyInt => "TINYINT",
        DataType::SmallInt => "SMALLINT",
        DataType::Int => "INT",
        DataType::BigInt => "BIGINT",
        DataType::UTinyInt => "TINYINT UNSIGNED",
        DataType::USmallInt => "SMALLINT UNSIGNED",
        DataType::UInt => "INT UNSIGNED",
        DataType::UBigInt => "BIGINT UNSIGNED",
        DataType::Float => "FLOAT",
        DataType::Double => "DOUBLE",
        DataType::VarChar => "VARCHAR",
        DataType::NChar => "NCHAR",
        DataType::Json => "JSON",
        DataType::VarBinary => "VARBINARY",
        DataType::Geometry => "GEOMETRY",
        DataType::Decimal => "DECIMAL",
        _ => "VARCHAR",
    };
    match c.length {
        Some(l) => format!("{} {base}({l})", ident(&c.name)),
        None => format!("{} {base}", ident(&c.name)),
    }
}

fn table_options(t: &TableDef) -> String {
    let mut s = String::new();
    if let Some(c) = &t.comment {
        s.push_str(" COMMENT ");
        s.push_str(&quote_str(c));
    }
    if let Some(ttl) = t.ttl {
        s.push_str(&format!(" TTL {ttl}"));
    }
    s
}

/// `CREATE TABLE IF NOT EXISTS db.t (…)` for a normal table.
pub(crate) fn normal_table_sql(db: &str, t: &TableDef) -> String {
    let cols: Vec<String> = t.columns.iter().map(type_sql).collect();
    sql::create_normal_table(db, &t.name, &cols, &table_options(t))
}

/// One clause `IF NOT EXISTS db.c USING db.st (tags…) TAGS (…)` of a batched create.
pub(crate) fn child_clause(db: &str, t: &TableDef) -> Result<String, Error> {
    let st = t
        .super_table
        .as_deref()
        .ok_or_else(|| Error::UnexpectedReply {
            what: "catalog".into(),
            database: Some(db.to_string()),
            table: Some(t.name.clone()),
            reason: "child table without a super table".into(),
        })?;
    let names: Vec<String> = t.tags.iter().map(|v| v.name.clone()).collect();
    let values = t
        .tags
        .iter()
        .map(|v| sql_literal(&v.value, &t.name, &v.name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sql::child_clause(
        db,
        &t.name,
        st,
        &names,
        &values,
        &table_options(t),
    ))
}

/// Whether a database exists.
pub(crate) async fn database_exists(pool: &Arc<Pool>, db: &str) -> Result<bool, Error> {
    let rows = pool
        .query_values(
            Ctx::db(db).doing("checking whether the target database exists"),
            &sql::database_exists(db),
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .any(|r| r.first().and_then(text).as_deref() == Some(db)))
}

/// The server's version (`SELECT SERVER_VERSION()`).
pub(crate) async fn server_version(pool: &Arc<Pool>) -> Result<String, Error> {
    let rows = pool
        .query_values(
            Ctx::default().doing("asking the server version"),
            &sql::server_version(),
        )
        .await?;
    rows.rows
        .first()
        .and_then(|r| r.first())
        .and_then(text)
        .ok_or_else(|| Error::UnexpectedReply {
            what: "the server version".into(),
            database: None,
            table: None,
            reason: "no version returned".into(),
        })
}

/// What [`create_schema`] did: the target database and the database options that could
/// not be replayed as the backup had them.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaOutcome {
    pub(crate) target: String,
    pub(crate) option_changes: Vec<OptionChange>,
}

/// `CREATE TABLE` statements for every table of `catalog` in `target`: normal tables one each,
/// child tables batched into statements under TDengine's statement size limit.
pub(crate) fn table_statements(
    catalog: &CatalogSnapshot,
    target: &str,
    limit: usize,
) -> Result<Vec<String>, Error> {
    let mut statements = Vec::new();
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.kind == TableKind::Normal)
    {
        statements.push(normal_table_sql(target, t));
    }
    let mut batch = Batcher::new(sql::CREATE_TABLES_HEAD, limit);
    for t in catalog.tables.iter().filter(|t| t.kind == TableKind::Child) {
        let clause = child_clause(target, t)?;
        batch.push(&clause).map_err(|size| Error::UnrepresentableValue {
            table: t.name.clone(),
            column: "(tags)".into(),
            reason: format!(
                "its CREATE TABLE clause is {size} bytes, over TDengine's statement limit of                  {limit} bytes"
            ),
        })?;
    }
    statements.extend(batch.finish());
    Ok(statements)
}

/// Creates the target database and every table of `catalog`.
pub(crate) async fn create_schema(
    pool: &Arc<Pool>,
    catalog: &CatalogSnapshot,
    options: &RestoreOptions,
) -> Result<SchemaOutcome, Error> {
    let target = options
        .target_database
        .clone()
        .unwrap_or_else(|| catalog.database.name.clone());
    let ctx = Ctx::db(&target);
    let mut option_changes = Vec::new();
    // Everything is checked before the first statement that changes the target.
    let statements = table_statements(catalog, &target, MAX_SQL_LEN)?;
    if database_exists(pool, &target).await? {
        if !options.allow_existing {
            return Err(Error::TargetExists {
                database: target,
                endpoint: pool.endpoint().to_string(),
            });
        }
    } else {
        let version = server_version(pool).await?;
        let (ddl, changes) = dbopts::recreate(
            &catalog.database.ddl,
            &target,
            Generation::of(&version),
            options.keep.as_deref(),
        )
        .map_err(|reason| Error::UnexpectedReply {
            what: "the database DDL of the backup".into(),
            database: Some(catalog.database.name.clone()),
            table: None,
            reason,
        })?;
        for c in &changes {
            tracing::warn!(
                database = %target,
                server_version = %version,
                source = %c.source,
                target = ?c.target,
                reason = %c.reason,
                "database option changed for the target server"
            );
        }
        option_changes = changes;
        pool.exec(ctx.doing("creating the target database"), &ddl)
            .await?;
    }
    for st in &catalog.super_tables {
        let sql = match sql::qualify_stable_ddl(&st.ddl, &target, &st.name) {
            Some(s) => s,
            None => {
                let cols: Vec<String> = st.columns.iter().map(type_sql).collect();
                let tags: Vec<String> = st.tags.iter().map(type_sql).collect();
                sql::create_stable(&target, &st.name, &cols, &tags)
            }
        };
        pool.exec(
            Ctx::table(&target, &st.name).doing("creating a super table"),
            &sql,
        )
        .await?;
    }
    let parallel = pool.size().max(1);
    let target_ref = target.as_str();
    futures::stream::iter(statements)
        .map(|sql| async move {
            pool.exec(Ctx::db(target_ref).doing("creating tables"), &sql)
                .await
        })
        .buffer_unordered(parallel)
        .try_collect::<Vec<usize>>()
        .await?;
    Ok(SchemaOutcome {
        target,
        option_changes,
    })
}

/// How chunks are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteMode {
    /// Raw-block write, SQL `INSERT` only when the server refuses raw blocks.
    #[default]
    RawBlock,
    /// Always SQL `INSERT` (slow; for servers without raw-block write).
    Sql,
}

fn to_taos_precision(p: Precision) -> taos::Precision {
    match p {
        Precision::Ms => taos::Precision::Millisecond,
        Precision::Us => taos::Precision::Microsecond,
        Precision::Ns => taos::Precision::Nanosecond,
    }
}

/// Writes chunks into one target database (its pool has the database as current).
pub(crate) struct Writer<'a> {
    pub(crate) pool: &'a Arc<Pool>,
    pub(crate) db: &'a str,
    pub(crate) mode: WriteMode,
    pub(crate) target_columns: Option<Vec<String>>,
}

impl Writer<'_> {
    /// Writes rows `[from, to)` of the projected block (columns `keep`), by raw block or SQL.
    async fn write_rows(
        &self,
        table: &str,
        chunk: &BlockChunk,
        view: &RawView<'_>,
        keep: &[usize],
        rows: std::ops::Range<usize>,
        sql: bool,
    ) -> Result<(), Error> {
        let (from, to) = (rows.start, rows.end);
        let ctx = Ctx::table(self.db, table);
        let identity = from == 0 && to == view.rows() && keep.len() == view.ncols();
        let bytes = if identity {
            chunk.raw.clone()
        } else {
            view.rewrite(keep, from, to)?
        };
        let names: Vec<String> = keep.iter().map(|&k| chunk.columns[k].clone()).collect();
        let precision = to_taos_precision(chunk.precision);
        if !sql {
            let pool = self.pool;
            return pool
                .retry(ctx, |mut conn| {
                    let bytes = bytes.clone();
                    let names = names.clone();
                    async move {
                        let mut block = RawBlock::parse_from_raw_block(bytes, precision);
                        block.with_field_names(&names);
                        block.with_table_name(table);
                        conn.write_raw_block(ctx, &block).await
                    }
                })
                .await;
        }
        // SQL fallback: decode values from a throwaway parsed block.
        let block = {
            let mut b = RawBlock::parse_from_raw_block(bytes, precision);
            b.with_field_names(&names);
            b
        };
        let head = sql::insert_head(self.db, table, &names);
        let mut batch = Batcher::new(head, MAX_SQL_LEN);
        for row in 0..block.nrows() {
            let mut vals = Vec::with_capacity(names.len());
            for (col, name) in names.iter().enumerate() {
                let v = block.get_ref(row, col).ok_or_else(|| Error::InvalidBlock {
                    table: Some(table.to_string()),
                    reason: format!("no value at row {row} column {col}"),
                })?;
                vals.push(sql_literal(&to_core_value(v), table, name)?);
            }
            let item = format!("({})", vals.join(", "));
            batch
                .push(&item)
                .map_err(|size| Error::UnrepresentableValue {
                    table: table.to_string(),
                    column: "(row)".into(),
                    reason: format!(
                        "row {row} as SQL is {size} bytes, over TDengine's statement limit of \
                     {MAX_SQL_LEN} bytes"
                    ),
                })?;
        }
        let statements = batch.finish();
        drop(block);
        for s in statements {
            self.pool.exec(ctx, &s).await?;
        }
        Ok(())
    }

    /// Writes a chunk, mapping columns, falling back to SQL, counting KEEP rejections.
    pub(crate) async fn write_chunk(
        &mut self,
        table: &str,
        chunk: &BlockChunk,
    ) -> Result<WriteReport, Error> {
        let view = RawView::parse(&chunk.raw).map_err(|e| match e {
            Error::InvalidBlock { reason, .. } => Error::InvalidBlock {
                table: Some(table.to_string()),
                reason,
            },
            e => e,
        })?;
        if chunk.columns.len() != view.ncols() {
            return Err(Error::InvalidBlock {
                table: Some(table.to_string()),
                reason: format!(
                    "{} column names for {} block columns",
                    chunk.columns.len(),
                    view.ncols()
                ),
            });
        }
        let mut report = WriteReport {
            used_sql_fallback: self.mode == WriteMode::Sql,
            ..WriteReport::default()
        };
        let rows = view.rows();
        if rows == 0 {
            return Ok(report);
        }
        let mut described = false;
        loop {
            let keep = self.keep_columns(chunk);
            match self
                .write_rows(
                    table,
                    chunk,
                    &view,
                    &keep,
                    0..rows,
                    report.used_sql_fallback,
                )
                .await
            {
                Ok(()) => {
                    report.rows_written = rows as u64;
                    return Ok(report);
                }
                Err(e) if e.code() == Some(CODE_INVALID_COLUMN) && !described => {
                    described = true;
                    self.describe(table).await?;
                }
                Err(e) if e.code() == Some(CODE_NOT_SUPPORTED) && !report.used_sql_fallback => {
                    tracing::warn!(table, error = %e, "raw-block write refused, using SQL insert");
                    report.used_sql_fallback = true;
                }
                Err(e) if e.code() == Some(CODE_KEEP) => {
                    return self
                        .write_past_keep(table, chunk, &view, &keep, report)
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Columns of the chunk that the target has (all when the target is unknown).
    fn keep_columns(&self, chunk: &BlockChunk) -> Vec<usize> {
        match &self.target_columns {
            Some(target) => (0..chunk.columns.len())
                .filter(|&i| target.iter().any(|t| t == &chunk.columns[i]))
                .collect(),
            None => (0..chunk.columns.len()).collect(),
        }
    }

    async fn describe(&mut self, table: &str) -> Result<(), Error> {
        let rows = self
            .pool
            .query_values(Ctx::table(self.db, table), &sql::describe(self.db, table))
            .await?;
        let f = rows.col("field", "DESCRIBE")?;
        let n = rows.col("note", "DESCRIBE")?;
        let cols = rows
            .rows
            .iter()
            .filter(|r| {
                !r.get(n)
                    .and_then(text)
                    .is_some_and(|s| s.eq_ignore_ascii_case("TAG"))
            })
            .filter_map(|r| r.get(f).and_then(text))
            .collect();
        self.target_columns = Some(cols);
        Ok(())
    }

    /// The block was refused for KEEP. Rows are sorted by time, so the refused rows are a
    /// prefix: binary search for the first accepted row (writing suffixes is idempotent), then
    /// report the prefix as rejected.
    async fn write_past_keep(
        &self,
        table: &str,
        chunk: &BlockChunk,
        view: &RawView<'_>,
        keep: &[usize],
        mut report: WriteReport,
    ) -> Result<WriteReport, Error> {
        let rows = view.rows();
        let ts = view.timestamps()?;
        // Invariant: writing [lo, rows) fails; writing [hi, rows) succeeds (empty is fine).
        let (mut lo, mut hi) = (0usize, rows);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self
                .write_rows(
                    table,
                    chunk,
                    view,
                    keep,
                    mid..rows,
                    report.used_sql_fallback,
                )
                .await
            {
                Ok(()) => hi = mid,
                Err(e) if e.code() == Some(CODE_KEEP) => lo = mid,
                Err(e) => return Err(e),
            }
        }
        report.rows_written = (rows - hi) as u64;
        report.rows_rejected_by_keep = hi as u64;
        if hi > 0 {
            report.rejected_range = Some((ts[0], ts[hi - 1]));
            tracing::warn!(
                table,
                rejected = hi,
                "rows older than the target database's KEEP were rejected"
            );
        }
        Ok(report)
    }
}

/// The statements of a restore with hostile names, for the statement tests in `sql.rs`.
#[cfg(test)]
pub(crate) fn every_statement_for_tests(
    db: &str,
    table: &str,
    stable: &str,
    column: &str,
) -> Vec<String> {
    use taosbackup_core::{DatabaseDef, SuperTableDef, TagValue, Value};
    let col = |name: &str, data_type, length| ColumnDef {
        name: name.into(),
        data_type,
        length,
    };
    let catalog = CatalogSnapshot {
        database: DatabaseDef {
            name: db.into(),
            precision: Precision::Ms,
            ddl: format!("CREATE DATABASE {} KEEP 3650d PRECISION 'ms'", ident(db)),
        },
        super_tables: vec![SuperTableDef {
            name: stable.into(),
            columns: vec![col("ts", DataType::Timestamp, None)],
            tags: vec![col("value", DataType::NChar, Some(8))],
            ddl: format!(
                "CREATE STABLE {} ({} TIMESTAMP) TAGS ({} NCHAR(8))",
                ident(stable),
                ident("ts"),
                ident("value")
            ),
        }],
        tables: vec![
            TableDef {
                name: table.into(),
                kind: TableKind::Normal,
                super_table: None,
                tags: vec![],
                comment: Some("c".into()),
                ttl: Some(2),
                columns: vec![
                    col("ts", DataType::Timestamp, None),
                    col(column, DataType::UInt, None),
                    col("tag", DataType::VarChar, Some(4)),
                ],
            },
            TableDef {
                name: "child".into(),
                kind: TableKind::Child,
                super_table: Some(stable.into()),
                tags: vec![TagValue {
                    name: "value".into(),
                    value: Value::Null,
                }],
                comment: None,
                ttl: None,
                columns: vec![],
            },
        ],
    };
    let mut v = table_statements(&catalog, db, MAX_SQL_LEN).unwrap_or_default();
    let st = &catalog.super_tables[0];
    v.extend(sql::qualify_stable_ddl(&st.ddl, db, stable));
    for g in [Generation::V3_3_0, Generation::V3_3_6, Generation::V3_4] {
        if let Ok((ddl, _)) = dbopts::recreate(&catalog.database.ddl, db, g, Some("10d")) {
            v.push(ddl);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use taosbackup_core::{TagValue, Value};

    /// Audit A12: child tables with long tags are cut into statements by bytes, each under
    /// TDengine's 1 MiB limit, none lost.
    #[test]
    fn create_table_batches_are_cut_by_bytes() {
        use taosbackup_core::DatabaseDef;
        let long = "x".repeat(16_000);
        let tables: Vec<TableDef> = (0..300)
            .map(|i| TableDef {
                name: format!("c{i}"),
                kind: TableKind::Child,
                super_table: Some("m".into()),
                tags: vec![TagValue {
                    name: "t".into(),
                    value: Value::NChar(long.clone()),
                }],
                comment: None,
                ttl: None,
                columns: vec![],
            })
            .collect();
        let catalog = CatalogSnapshot {
            database: DatabaseDef {
                name: "d".into(),
                precision: Precision::Ms,
                ddl: "CREATE DATABASE d".into(),
            },
            super_tables: vec![],
            tables,
        };
        let statements = table_statements(&catalog, "r", MAX_SQL_LEN).unwrap();
        assert!(statements.len() >= 5, "{}", statements.len());
        assert!(statements.iter().all(|s| s.len() <= MAX_SQL_LEN));
        let clauses: usize = statements
            .iter()
            .map(|s| s.matches(" USING ").count())
            .sum();
        assert_eq!(clauses, 300);
        // A single clause over the limit is refused before anything is sent.
        let e = table_statements(&catalog, "r", 10_000).unwrap_err();
        assert!(
            e.to_string().contains("over TDengine's statement limit"),
            "{e}"
        );
    }

    #[test]
    fn stable_and_table_ddl() {
        assert_eq!(
            sql::qualify_stable_ddl(
                "CREATE STABLE `m` (`ts` TIMESTAMP) TAGS (`t` INT)",
                "r",
                "m"
            )
            .unwrap(),
            "CREATE STABLE IF NOT EXISTS `r`.`m` (`ts` TIMESTAMP) TAGS (`t` INT)"
        );
        let t = TableDef {
            name: "c1".into(),
            kind: TableKind::Child,
            super_table: Some("m".into()),
            tags: vec![
                TagValue {
                    name: "t".into(),
                    value: Value::NChar("a'b".into()),
                },
                TagValue {
                    name: "n".into(),
                    value: Value::Null,
                },
            ],
            comment: Some("c".into()),
            ttl: Some(3),
            columns: vec![],
        };
        assert_eq!(
            child_clause("r", &t).unwrap(),
            "IF NOT EXISTS `r`.`c1` USING `r`.`m` (`t`, `n`) TAGS ('a\\'b', NULL) COMMENT 'c' TTL 3"
        );
        let n = TableDef {
            name: "n1".into(),
            kind: TableKind::Normal,
            super_table: None,
            tags: vec![],
            comment: None,
            ttl: None,
            columns: vec![
                ColumnDef {
                    name: "ts".into(),
                    data_type: DataType::Timestamp,
                    length: None,
                },
                ColumnDef {
                    name: "s".into(),
                    data_type: DataType::NChar,
                    length: Some(8),
                },
            ],
        };
        assert_eq!(
            normal_table_sql("r", &n),
            "CREATE TABLE IF NOT EXISTS `r`.`n1` (`ts` TIMESTAMP, `s` NCHAR(8))"
        );
    }
}
