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
use crate::raw::RawView;
use crate::value::{ident, quote_str, sql_literal, to_core_value};

/// Child tables per `CREATE TABLE` statement.
pub(crate) const CHILD_BATCH: usize = 500;
/// Approximate size limit of one SQL-fallback `INSERT` statement.
const SQL_BATCH_BYTES: usize = 512 * 1024;

/// TDengine: timestamp out of KEEP range.
pub(crate) const CODE_KEEP: u32 = 0x060B;
/// Invalid column name (a chunk column the target lacks).
const CODE_INVALID_COLUMN: u32 = 0x2602;
/// Operation not supported (raw-block write refused).
const CODE_NOT_SUPPORTED: u32 = 0x0100;

fn is_word_at(upper: &str, i: usize, word: &str) -> bool {
    let b = upper.as_bytes();
    upper[i..].starts_with(word)
        && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'_')
        && b.get(i + word.len())
            .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_')
}

/// Byte ranges of `ddl` outside quotes and backquotes.
fn outside_quotes(ddl: &str) -> Vec<bool> {
    let mut out = vec![true; ddl.len()];
    let mut quote: Option<u8> = None;
    let b = ddl.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                out[i] = false;
                if c == b'\\' && q != b'`' && i + 1 < b.len() {
                    out[i + 1] = false;
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == b'\'' || c == b'"' || c == b'`' => {
                out[i] = false;
                quote = Some(c);
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// Rewrites `CREATE DATABASE <name> …` to create `target`, replacing the KEEP option when
/// `keep` is given (appending it when the DDL has none).
pub(crate) fn rename_database_ddl(
    ddl: &str,
    target: &str,
    keep: Option<&str>,
) -> Result<String, String> {
    let upper = ddl.to_ascii_uppercase();
    let start = upper
        .find("CREATE DATABASE")
        .ok_or_else(|| "the DDL is not a CREATE DATABASE statement".to_string())?;
    let mut i = start + "CREATE DATABASE".len();
    let skip_ws = |i: &mut usize| {
        while ddl
            .as_bytes()
            .get(*i)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if upper[i..].starts_with("IF NOT EXISTS") {
        i += "IF NOT EXISTS".len();
        skip_ws(&mut i);
    }
    let b = ddl.as_bytes();
    if b.get(i) == Some(&b'`') {
        i += 1;
        while i < b.len() && b[i] != b'`' {
            i += 1;
        }
        i += 1;
    } else {
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
    }
    let name_end = i.min(b.len());
    let rest = &ddl[name_end..];
    let mut rest = rest.to_string();
    if let Some(keep) = keep {
        let upper_rest = rest.to_ascii_uppercase();
        let outside = outside_quotes(&rest);
        let pos = (0..upper_rest.len()).find(|&j| outside[j] && is_word_at(&upper_rest, j, "KEEP"));
        match pos {
            Some(j) => {
                let mut k = j + 4;
                let rb = rest.as_bytes();
                while rb.get(k).is_some_and(|c| c.is_ascii_whitespace()) {
                    k += 1;
                }
                let mut e = k;
                while rb.get(e).is_some_and(|c| !c.is_ascii_whitespace()) {
                    e += 1;
                }
                rest.replace_range(k..e, keep);
            }
            None => {
                rest.push_str(" KEEP ");
                rest.push_str(keep);
            }
        }
    }
    Ok(format!("CREATE DATABASE {}{}", ident(target), rest))
}

/// Rewrites `CREATE STABLE <name> …` from `SHOW CREATE STABLE` into
/// `CREATE STABLE IF NOT EXISTS <db>.<name> …`, keeping every option the server printed.
pub(crate) fn qualify_stable_ddl(ddl: &str, db: &str, name: &str) -> Option<String> {
    let upper = ddl.to_ascii_uppercase();
    let head = "CREATE STABLE ";
    let start = upper.find(head)?;
    let after = &ddl[start + head.len()..];
    let after = after.trim_start();
    let rest = if let Some(r) = after.strip_prefix(&ident(name)) {
        r
    } else {
        after.strip_prefix(name)?
    };
    Some(format!(
        "CREATE STABLE IF NOT EXISTS {}.{}{}",
        ident(db),
        ident(name),
        rest
    ))
}

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
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} ({}){}",
        ident(db),
        ident(&t.name),
        cols.join(", "),
        table_options(t)
    )
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
    let names: Vec<String> = t.tags.iter().map(|v| ident(&v.name)).collect();
    let values = t
        .tags
        .iter()
        .map(|v| sql_literal(&v.value, &t.name, &v.name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!(
        "IF NOT EXISTS {}.{} USING {}.{} ({}) TAGS ({}){}",
        ident(db),
        ident(&t.name),
        ident(db),
        ident(st),
        names.join(", "),
        values.join(", "),
        table_options(t)
    ))
}

/// Whether a database exists.
pub(crate) async fn database_exists(pool: &Arc<Pool>, db: &str) -> Result<bool, Error> {
    let rows = pool
        .query_values(
            Ctx::db(db),
            &format!(
                "SELECT name FROM information_schema.ins_databases WHERE name = {}",
                quote_str(db)
            ),
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .any(|r| r.first().and_then(text).as_deref() == Some(db)))
}

/// Creates the target database and every table of `catalog`; returns the target name.
pub(crate) async fn create_schema(
    pool: &Arc<Pool>,
    catalog: &CatalogSnapshot,
    options: &RestoreOptions,
) -> Result<String, Error> {
    let target = options
        .target_database
        .clone()
        .unwrap_or_else(|| catalog.database.name.clone());
    let ctx = Ctx::db(&target);
    if database_exists(pool, &target).await? {
        if !options.allow_existing {
            return Err(Error::TargetExists {
                database: target,
                endpoint: pool.endpoint().to_string(),
            });
        }
    } else {
        let ddl = rename_database_ddl(&catalog.database.ddl, &target, options.keep.as_deref())
            .map_err(|reason| Error::UnexpectedReply {
                what: "SHOW CREATE DATABASE text".into(),
                database: Some(catalog.database.name.clone()),
                table: None,
                reason,
            })?;
        pool.exec(ctx, &ddl).await?;
    }
    for st in &catalog.super_tables {
        let sql = match qualify_stable_ddl(&st.ddl, &target, &st.name) {
            Some(s) => s,
            None => {
                let cols: Vec<String> = st.columns.iter().map(type_sql).collect();
                let tags: Vec<String> = st.tags.iter().map(type_sql).collect();
                format!(
                    "CREATE STABLE IF NOT EXISTS {}.{} ({}) TAGS ({})",
                    ident(&target),
                    ident(&st.name),
                    cols.join(", "),
                    tags.join(", ")
                )
            }
        };
        pool.exec(Ctx::table(&target, &st.name), &sql).await?;
    }
    let mut statements = Vec::new();
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.kind == TableKind::Normal)
    {
        statements.push(normal_table_sql(&target, t));
    }
    let children: Vec<&TableDef> = catalog
        .tables
        .iter()
        .filter(|t| t.kind == TableKind::Child)
        .collect();
    for batch in children.chunks(CHILD_BATCH) {
        let clauses = batch
            .iter()
            .map(|t| child_clause(&target, t))
            .collect::<Result<Vec<_>, _>>()?;
        statements.push(format!("CREATE TABLE {}", clauses.join(" ")));
    }
    let parallel = pool.size().max(1);
    let target_ref = target.as_str();
    futures::stream::iter(statements)
        .map(|sql| async move { pool.exec(Ctx::db(target_ref), &sql).await })
        .buffer_unordered(parallel)
        .try_collect::<Vec<usize>>()
        .await?;
    Ok(target)
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
        let head = format!(
            "INSERT INTO {}.{} ({}) VALUES ",
            ident(self.db),
            ident(table),
            names
                .iter()
                .map(|n| ident(n))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut statements = Vec::new();
        let mut sql_text = head.clone();
        for row in 0..block.nrows() {
            let mut vals = Vec::with_capacity(names.len());
            for (col, name) in names.iter().enumerate() {
                let v = block.get_ref(row, col).ok_or_else(|| Error::InvalidBlock {
                    table: Some(table.to_string()),
                    reason: format!("no value at row {row} column {col}"),
                })?;
                vals.push(sql_literal(&to_core_value(v), table, name)?);
            }
            sql_text.push('(');
            sql_text.push_str(&vals.join(", "));
            sql_text.push_str(") ");
            if sql_text.len() > SQL_BATCH_BYTES {
                statements.push(std::mem::replace(&mut sql_text, head.clone()));
            }
        }
        if sql_text.len() > head.len() {
            statements.push(sql_text);
        }
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
            .query_values(
                Ctx::table(self.db, table),
                &format!("DESCRIBE {}.{}", ident(self.db), ident(table)),
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use taosbackup_core::{TagValue, Value};

    #[test]
    fn database_ddl_rename_and_keep() {
        let ddl = "CREATE DATABASE `power` BUFFER 256 CACHESIZE 1 KEEP 3650d,3650d,3650d PRECISION 'us' COMMENT 'keep me'";
        assert_eq!(
            rename_database_ddl(ddl, "p2", None).unwrap(),
            "CREATE DATABASE `p2` BUFFER 256 CACHESIZE 1 KEEP 3650d,3650d,3650d PRECISION 'us' COMMENT 'keep me'"
        );
        assert_eq!(
            rename_database_ddl(ddl, "p2", Some("36500d")).unwrap(),
            "CREATE DATABASE `p2` BUFFER 256 CACHESIZE 1 KEEP 36500d PRECISION 'us' COMMENT 'keep me'"
        );
        assert_eq!(
            rename_database_ddl("create database d", "x", Some("10d")).unwrap(),
            "CREATE DATABASE `x` KEEP 10d"
        );
        // A quoted ' KEEP ' is not the option.
        assert_eq!(
            rename_database_ddl("CREATE DATABASE d COMMENT ' KEEP 1'", "x", Some("2d")).unwrap(),
            "CREATE DATABASE `x` COMMENT ' KEEP 1' KEEP 2d"
        );
        assert!(rename_database_ddl("DROP DATABASE d", "x", None).is_err());
    }

    #[test]
    fn stable_and_table_ddl() {
        assert_eq!(
            qualify_stable_ddl(
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
