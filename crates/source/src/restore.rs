//! The restore writer: the target database from the source DDL (renamed, KEEP overridable),
//! super tables, batched child tables with typed tag literals, normal tables; then chunks
//! written with the raw-block write, columns mapped by name, with an SQL-insert fallback and
//! KEEP rejections counted rather than dropped.

use std::collections::HashSet;
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
use crate::value::sql_literal;

/// TDengine: timestamp out of KEEP range.
pub(crate) const CODE_KEEP: u32 = 0x060B;
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
        DataType::Blob => "BLOB",
        _ => "VARCHAR",
    };
    // `PRIMARY KEY` is the column option `CREATE TABLE` takes for a composite key (TDengine
    // documentation of CREATE TABLE; `SHOW CREATE TABLE` prints it as `COMPOSITE KEY`).
    let key = if c.primary_key { " PRIMARY KEY" } else { "" };
    match (c.length, c.decimal) {
        // `DECIMAL(p,s)` as `SHOW CREATE TABLE` prints it (command.c `appendColumnFields`).
        (_, Some((p, sc))) => format!("{} {base}({p},{sc}){key}", ident(&c.name)),
        (Some(l), None) => format!("{} {base}({l}){key}", ident(&c.name)),
        (None, None) => format!("{} {base}{key}", ident(&c.name)),
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
    let names: Vec<&str> = t.tags.iter().map(|v| v.name.as_str()).collect();
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
    rows.first_text().ok_or_else(|| Error::UnexpectedReply {
        what: "the server version".into(),
        database: None,
        table: None,
        reason: "no version returned".into(),
    })
}

/// Names of the tables and super tables of `db` (an existing restore target), read before
/// anything is created: their columns are whatever they are, so the writer describes them.
async fn existing_tables(pool: &Arc<Pool>, db: &str) -> Result<HashSet<String>, Error> {
    let mut names = HashSet::new();
    for q in [sql::table_names(db, None), sql::stable_names(db)] {
        let rows = pool
            .query_values(
                Ctx::db(db).doing("listing the tables the target database already has"),
                &q,
            )
            .await?;
        names.extend(rows.rows.iter().filter_map(|r| r.first().and_then(text)));
    }
    Ok(names)
}

/// What [`create_schema`] did: the target database, the database options that could not be
/// replayed as the backup had them, and the tables and super tables that existed in the
/// target before (empty for a new database).
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaOutcome {
    pub(crate) target: String,
    pub(crate) option_changes: Vec<OptionChange>,
    pub(crate) existing: HashSet<String>,
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
        batch
            .push(&clause)
            .map_err(|size| Error::UnrepresentableValue {
                table: t.name.clone(),
                column: "(tags)".into(),
                reason: format!(
                    "its CREATE TABLE clause is {size} bytes, over TDengine's statement \
                     limit of {limit} bytes"
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
    let mut existing = HashSet::new();
    // Everything is checked before the first statement that changes the target.
    let statements = table_statements(catalog, &target, MAX_SQL_LEN)?;
    if database_exists(pool, &target).await? {
        if !options.allow_existing {
            return Err(Error::TargetExists {
                database: target,
                endpoint: pool.endpoint().to_string(),
            });
        }
        existing = existing_tables(pool, &target).await?;
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
        existing,
    })
}

/// The TDengine type code of a catalog type (`include/common/ttypes.h`; the raw-block
/// schema carries it).
pub(crate) fn type_code(t: DataType) -> Option<u8> {
    Some(match t {
        DataType::Bool => 1,
        DataType::TinyInt => 2,
        DataType::SmallInt => 3,
        DataType::Int => 4,
        DataType::BigInt => 5,
        DataType::Float => 6,
        DataType::Double => 7,
        DataType::VarChar => 8,
        DataType::Timestamp => 9,
        DataType::NChar => 10,
        DataType::UTinyInt => 11,
        DataType::USmallInt => 12,
        DataType::UInt => 13,
        DataType::UBigInt => 14,
        DataType::Json => 15,
        DataType::VarBinary => 16,
        DataType::Decimal => 17,
        DataType::Blob => 18,
        DataType::Geometry => 20,
        _ => return None,
    })
}

/// The type code of a catalog column: a DECIMAL of precision up to 18 is DECIMAL64 (21),
/// above DECIMAL (17) (`decimalTypeFromPrecision`, TDengine source/common/src/ttypes.c).
pub(crate) fn column_code(c: &ColumnDef) -> Option<u8> {
    match (c.data_type, c.decimal) {
        (DataType::Decimal, Some((p, _))) if p <= 18 => Some(crate::raw::TY_DECIMAL64),
        (DataType::Decimal, None) => None,
        (t, _) => type_code(t),
    }
}

/// Whether the connector (taos-query 0.12.4) cannot parse a block with this column type:
/// DECIMAL (17), BLOB (18), DECIMAL64 (21).
pub(crate) fn connector_cannot_parse(ty: u8) -> bool {
    matches!(
        ty,
        crate::raw::TY_DECIMAL | crate::raw::TY_BLOB | crate::raw::TY_DECIMAL64
    )
}

/// The declared length a raw-block column's width entry stands for (`VARCHAR(n)` has width
/// `n + 2`, `NCHAR(n)` `4n + 2`: `getSchemaBytes` in `source/libs/command/src/command.c`), or
/// `None` for fixed-width types.
fn declared_length(ty: u8, bytes: u32) -> Option<u32> {
    match ty {
        8 | 16 | 20 => Some(bytes.saturating_sub(2)),
        10 => Some(bytes.saturating_sub(2) / 4),
        _ => None,
    }
}

/// What a restore knows about one target table's columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct TargetTable {
    /// The table's columns in the backup's catalog (the source's schema when the backup was
    /// taken); `None` when no catalog was given to this source (`create_schema` not called).
    /// Shared: the children of a super table have one list, and each write takes a copy of
    /// its table's entry.
    pub(crate) expected: Option<Arc<[ColumnDef]>>,
    /// The target table's data columns; `None` until known: a table that existed before the
    /// restore is described before the first write.
    pub(crate) actual: Option<Arc<[ColumnDef]>>,
}

/// Maps a chunk's columns onto the target table by name, on the client, so that nothing
/// depends on how the server binds raw blocks (TDengine's `rawBlockBindData` binds an
/// unknown name to nothing and shifts every later column, and only refuses a type when both
/// type and width differ: see docs/emulator.md). Returns the chunk's column indices to write,
/// in the target's order.
///
/// - A chunk column the backup's catalog does not have (or has with another type) was dropped
///   in the source after the block was written: it is left out, as the source left it.
/// - A chunk column the target lacks, or has with another type or a shorter length: refused,
///   naming the column.
/// - Target columns the chunk does not have are written as NULL, except the timestamp and the
///   composite key, which must be there.
pub(crate) fn project(
    database: &str,
    table: &str,
    chunk: &[(String, u8, u32)],
    expected: Option<&[ColumnDef]>,
    actual: &[ColumnDef],
) -> Result<Vec<usize>, Error> {
    let mismatch = |reason: String| Error::SchemaMismatch {
        database: database.to_string(),
        table: table.to_string(),
        reason,
    };
    let mut keep: Vec<(usize, usize)> = Vec::with_capacity(chunk.len());
    let mut missing = Vec::new();
    for (i, (name, ty, bytes)) in chunk.iter().enumerate() {
        if let Some(exp) = expected {
            let live = exp
                .iter()
                .any(|e| &e.name == name && column_code(e) == Some(*ty));
            if !live {
                tracing::debug!(table, column = %name, "column dropped in the source after this block: left out");
                continue;
            }
        }
        let Some((pos, a)) = actual.iter().enumerate().find(|(_, a)| &a.name == name) else {
            missing.push(format!("`{name}`"));
            continue;
        };
        if column_code(a) != Some(*ty) {
            return Err(mismatch(format!(
                "column `{name}` is type {} in the backup but {:?} in the target",
                type_name(*ty),
                a.data_type
            )));
        }
        if connector_cannot_parse(*ty) && *ty != crate::raw::TY_BLOB {
            // Values are unscaled integers: only the same scale keeps them, and a smaller
            // precision could not hold them.
            let (p, sc) = crate::raw::decimal_prec_scale(*bytes);
            match a.decimal {
                Some((tp, ts)) if ts == sc && tp >= p => {}
                other => {
                    return Err(mismatch(format!(
                        "column `{name}` is DECIMAL({p},{sc}) in the backup but {} in the \
                         target",
                        other.map_or("DECIMAL of unknown precision".to_string(), |(tp, ts)| {
                            format!("DECIMAL({tp},{ts})")
                        })
                    )));
                }
            }
        }
        if let (Some(have), Some(want)) = (a.length, declared_length(*ty, *bytes)) {
            if have < want {
                return Err(mismatch(format!(
                    "column `{name}` holds up to {want} in the backup but the target's length is \
                     {have}"
                )));
            }
        }
        keep.push((pos, i));
    }
    if !missing.is_empty() {
        return Err(mismatch(format!(
            "the target table has no column {} (the backup has)",
            missing.join(", ")
        )));
    }
    for (pos, a) in actual.iter().enumerate() {
        let required = pos == 0 || a.primary_key;
        if required && !keep.iter().any(|(p, _)| *p == pos) {
            return Err(mismatch(format!(
                "the backup has no values for the target's {} column `{}`",
                if pos == 0 {
                    "timestamp"
                } else {
                    "composite key"
                },
                a.name
            )));
        }
    }
    keep.sort_unstable();
    Ok(keep.into_iter().map(|(_, i)| i).collect())
}

fn type_name(code: u8) -> &'static str {
    match code {
        1 => "BOOL",
        2 => "TINYINT",
        3 => "SMALLINT",
        4 => "INT",
        5 => "BIGINT",
        6 => "FLOAT",
        7 => "DOUBLE",
        8 => "VARCHAR",
        9 => "TIMESTAMP",
        10 => "NCHAR",
        11 => "TINYINT UNSIGNED",
        12 => "SMALLINT UNSIGNED",
        13 => "INT UNSIGNED",
        14 => "BIGINT UNSIGNED",
        15 => "JSON",
        16 => "VARBINARY",
        17 => "DECIMAL",
        18 => "BLOB",
        20 => "GEOMETRY",
        21 => "DECIMAL64",
        _ => "an unknown type",
    }
}

/// The data columns `DESCRIBE` reports for a table (tags left out), with the composite key.
pub(crate) async fn describe_target(
    pool: &Arc<Pool>,
    db: &str,
    table: &str,
) -> Result<Vec<ColumnDef>, Error> {
    let rows = pool
        .query_values(
            Ctx::table(db, table).doing("reading the target table's columns (DESCRIBE)"),
            &sql::describe(db, table),
        )
        .await?;
    Ok(crate::catalog::describe_columns(&rows, "DESCRIBE")?.0)
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
    pub(crate) target: TargetTable,
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
        // The chunk's own bytes only when nothing changes: every column, in its order.
        let identity = from == 0
            && to == view.rows()
            && keep.len() == view.ncols()
            && keep.iter().enumerate().all(|(i, &k)| i == k);
        // Borrowed when whole: copying it was ~1% of a 50 M-row restore's CPU.
        let bytes: std::borrow::Cow<'_, [u8]> = if identity {
            std::borrow::Cow::Borrowed(&chunk.raw)
        } else {
            std::borrow::Cow::Owned(view.rewrite(keep, from, to)?)
        };
        let names: Vec<String> = keep.iter().map(|&k| chunk.columns[k].clone()).collect();
        let precision = to_taos_precision(chunk.precision);
        if !sql {
            // The own client sends the block's bytes as they are, with fields from the
            // block's schema; the connector parses the block first (`Pool::own_client`).
            let fields: Vec<(&str, u8, u32)> = keep
                .iter()
                .map(|&k| {
                    let (ty, bytes) = view.col_type(k).unwrap_or((0, 0));
                    (chunk.columns[k].as_str(), ty, bytes)
                })
                .collect();
            let rows = u32::try_from(to - from).map_err(|_| Error::InvalidBlock {
                table: Some(table.to_string()),
                reason: "more than 2^32 rows in one block".into(),
            })?;
            if self
                .pool
                .write_raw_block_own(ctx, table, rows, &bytes, &fields)
                .await?
            {
                return Ok(());
            }
            let pool = self.pool;
            return pool
                .retry(ctx, |mut conn| {
                    let bytes = bytes.to_vec();
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
        // SQL: values decoded from the block's bytes by the tool itself (the connector
        // cannot parse DECIMAL or BLOB blocks), written as exact literals.
        let block = RawView::parse(&bytes).map_err(|e| match e {
            Error::InvalidBlock { reason, .. } => Error::InvalidBlock {
                table: Some(table.to_string()),
                reason,
            },
            e => e,
        })?;
        let head = sql::insert_head(self.db, table, &names);
        let mut batch = Batcher::new(head, MAX_SQL_LEN);
        for row in 0..block.rows() {
            let mut vals = Vec::with_capacity(names.len());
            for (col, name) in names.iter().enumerate() {
                vals.push(sql_literal(&block.value(col, row)?, table, name)?);
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
        // DECIMAL and BLOB chunks are written with SQL: the connector cannot build a raw-block
        // request from them (taos-query 0.12.4 panics parsing the block), and whether
        // TDengine's `rawBlockBindData` reads BLOB's u32 length prefix and DECIMAL's packed
        // schema entry could not be checked in its source (docs/emulator.md).
        let sql_only = (0..view.ncols()).any(|i| {
            view.col_type(i)
                .is_some_and(|(ty, _)| connector_cannot_parse(ty))
        });
        let mut report = WriteReport {
            used_sql_fallback: self.mode == WriteMode::Sql || sql_only,
            ..WriteReport::default()
        };
        let rows = view.rows();
        if rows == 0 {
            return Ok(report);
        }
        if self.target.actual.is_none() {
            self.target.actual = Some(describe_target(self.pool, self.db, table).await?.into());
        }
        let cols: Vec<(String, u8, u32)> = (0..view.ncols())
            .map(|i| {
                let (ty, bytes) = view.col_type(i).unwrap_or((0, 0));
                (chunk.columns[i].clone(), ty, bytes)
            })
            .collect();
        let keep = project(
            self.db,
            table,
            &cols,
            self.target.expected.as_deref(),
            self.target.actual.as_deref().unwrap_or_default(),
        )?;
        loop {
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
    let col = |name: &str, data_type, length| ColumnDef::new(name, data_type, length);
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
        skipped: Vec::new(),
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
            skipped: Vec::new(),
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
            e.to_string()
                .contains("over TDengine's statement limit of 10000 bytes"),
            "{e}"
        );
    }

    #[test]
    fn projection_by_name_on_the_client() {
        let c = |n: &str, t: DataType, l: Option<u32>| ColumnDef::new(n, t, l);
        let chunk = vec![
            ("ts".to_string(), 9u8, 8u32),
            ("a".to_string(), 4, 4),
            ("s".to_string(), 8, 10),
            ("gone".to_string(), 7, 8),
        ];
        let expected = [
            c("ts", DataType::Timestamp, None),
            c("a", DataType::Int, None),
            c("s", DataType::VarChar, Some(8)),
        ];
        // Target order differs and has an extra column: reordered, `gone` (dropped in the
        // source) left out.
        let target = [
            c("ts", DataType::Timestamp, None),
            c("s", DataType::VarChar, Some(20)),
            c("x", DataType::Double, None),
            c("a", DataType::Int, None),
        ];
        assert_eq!(
            project("d", "t", &chunk, Some(&expected), &target).unwrap(),
            vec![0, 2, 1]
        );
        // Without the catalog, `gone` cannot be told from a lost column.
        let e = project("d", "t", &chunk, None, &target).unwrap_err();
        assert!(e.to_string().contains("`gone`"), "{e}");
        // Another type, a shorter length, a missing key.
        let float = [
            c("ts", DataType::Timestamp, None),
            c("a", DataType::Float, None),
        ];
        let e = project("d", "t", &chunk[..2], Some(&expected), &float).unwrap_err();
        assert!(e.to_string().contains("`a` is type INT"), "{e}");
        let short = [
            c("ts", DataType::Timestamp, None),
            c("s", DataType::VarChar, Some(4)),
        ];
        let e = project(
            "d",
            "t",
            &[chunk[0].clone(), chunk[2].clone()],
            Some(&expected),
            &short,
        )
        .unwrap_err();
        assert!(e.to_string().contains("up to 8"), "{e}");
        let mut keyed = target.to_vec();
        keyed[2].primary_key = true;
        let e = project("d", "t", &chunk, Some(&expected), &keyed).unwrap_err();
        assert!(e.to_string().contains("composite key column `x`"), "{e}");
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
                ColumnDef::new("ts", DataType::Timestamp, None),
                ColumnDef::new("s", DataType::NChar, Some(8)),
                ColumnDef {
                    primary_key: true,
                    ..ColumnDef::new("k", DataType::VarChar, Some(4))
                },
            ],
        };
        assert_eq!(
            normal_table_sql("r", &n),
            "CREATE TABLE IF NOT EXISTS `r`.`n1` (`ts` TIMESTAMP, `s` NCHAR(8), `k` VARCHAR(4) PRIMARY KEY)"
        );
    }
}
