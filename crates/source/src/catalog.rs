//! Catalog discovery in a bounded number of round trips: `SHOW CREATE DATABASE`,
//! `information_schema` in bulk (`ins_databases`, `ins_stables`, `ins_tables`,
//! `ins_columns`), and per super table `SHOW CREATE STABLE`, `DESCRIBE` and one
//! `SELECT TAGS tbname, …` for the typed tag values of all its children. So the number of
//! statements is `4 + 3 × super tables`, whatever the number of tables.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use taos::BorrowedValue;
use taosbackup_core::{
    CatalogSnapshot, ColumnDef, DataType, DatabaseDef, Precision, SkippedObject, SuperTableDef,
    TableDef, TableKind, TagValue, Value,
};

use crate::Error;
use crate::conn::{Ctx, Pool, Rows};
use crate::sql;
use crate::value::to_core_value;

/// Text of a string-typed value.
pub(crate) fn text(v: &Value) -> Option<String> {
    // Cloning costs what copying the text out did: one allocation for a string value.
    into_text(v.clone())
}

/// The text of a string-typed value, moved out of it (invalid UTF-8 is replaced, as
/// `String::from_utf8_lossy` does).
fn into_text(v: Value) -> Option<String> {
    match v {
        Value::VarChar(b) | Value::VarBinary(b) => Some(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        Value::NChar(s) | Value::Json(s) => Some(s),
        _ => None,
    }
}

/// [`text`] of a cell read in place ([`crate::conn::Pool::query_rows`]): one copy, of
/// the text alone.
fn cell_text(v: BorrowedValue<'_>) -> Option<String> {
    into_text(to_core_value(v))
}

/// The text of a `VARCHAR` or `NCHAR` cell, borrowed: for a cell that is only compared.
fn cell_str<'a>(v: &'a BorrowedValue<'_>) -> Option<&'a str> {
    match v {
        BorrowedValue::VarChar(s) => Some(s),
        BorrowedValue::NChar(s) => Some(s),
        _ => None,
    }
}

/// An integer value of any integer type.
pub(crate) fn int(v: &Value) -> Option<i64> {
    Some(match v {
        Value::TinyInt(x) => *x as i64,
        Value::SmallInt(x) => *x as i64,
        Value::Int(x) => *x as i64,
        Value::BigInt(x) => *x,
        Value::UTinyInt(x) => *x as i64,
        Value::USmallInt(x) => *x as i64,
        Value::UInt(x) => *x as i64,
        Value::UBigInt(x) => i64::try_from(*x).ok()?,
        _ => return None,
    })
}

/// Parses a TDengine type name (`INT UNSIGNED`, `VARCHAR(20)`, `BINARY`) into a type and
/// the length in parentheses, if any.
pub(crate) fn parse_type(name: &str) -> Option<(DataType, Option<u32>)> {
    let name = name.trim();
    let (base, len) = match name.split_once('(') {
        Some((b, rest)) => {
            let inner = rest.strip_suffix(')')?;
            (
                b.trim(),
                inner.split(',').next()?.trim().parse::<u32>().ok(),
            )
        }
        None => (name, None),
    };
    let ty = match base.to_ascii_uppercase().as_str() {
        "TIMESTAMP" => DataType::Timestamp,
        "BOOL" => DataType::Bool,
        "TINYINT" => DataType::TinyInt,
        "SMALLINT" => DataType::SmallInt,
        "INT" => DataType::Int,
        "BIGINT" => DataType::BigInt,
        "TINYINT UNSIGNED" => DataType::UTinyInt,
        "SMALLINT UNSIGNED" => DataType::USmallInt,
        "INT UNSIGNED" => DataType::UInt,
        "BIGINT UNSIGNED" => DataType::UBigInt,
        "FLOAT" => DataType::Float,
        "DOUBLE" => DataType::Double,
        "VARCHAR" | "BINARY" => DataType::VarChar,
        "NCHAR" => DataType::NChar,
        "JSON" => DataType::Json,
        "VARBINARY" => DataType::VarBinary,
        "GEOMETRY" => DataType::Geometry,
        "DECIMAL" => DataType::Decimal,
        "BLOB" => DataType::Blob,
        _ => return None,
    };
    Some((ty, len))
}

/// `(precision, scale)` of `DECIMAL(p,s)` / `DECIMAL(p, s)` (`SHOW CREATE` and `DESCRIBE`
/// spellings, TDengine source/libs/command/src/command.c); `DECIMAL(p)` has scale 0.
pub(crate) fn decimal_args(name: &str) -> Option<(u8, u8)> {
    let (base, rest) = name.trim().split_once('(')?;
    if !base.trim().eq_ignore_ascii_case("DECIMAL") {
        return None;
    }
    let inner = rest.strip_suffix(')')?;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u8>());
    let p = parts.next()?.ok()?;
    let s = match parts.next() {
        Some(s) => s.ok()?,
        None => 0,
    };
    (parts.next().is_none() && (1..=38).contains(&p) && s <= p).then_some((p, s))
}

fn has_length(ty: DataType) -> bool {
    matches!(
        ty,
        DataType::VarChar | DataType::NChar | DataType::VarBinary | DataType::Geometry
    )
}

fn column(
    name: String,
    type_name: &str,
    length: Option<i64>,
    what: &str,
) -> Result<ColumnDef, Error> {
    let (data_type, len_in_name) = parse_type(type_name).ok_or_else(|| Error::UnexpectedReply {
        what: what.to_string(),
        database: None,
        table: None,
        reason: format!("unknown type {type_name:?} of column {name}"),
    })?;
    let length = if has_length(data_type) {
        len_in_name.or_else(|| length.and_then(|l| u32::try_from(l).ok()))
    } else {
        None
    };
    let mut def = ColumnDef::new(name, data_type, length);
    // Precision and scale from the type's spelling; a spelling without them (ins_columns
    // may print a bare `DECIMAL`) leaves them unknown until `DESCRIBE` is read.
    def.decimal = (data_type == DataType::Decimal)
        .then(|| decimal_args(type_name))
        .flatten();
    Ok(def)
}

fn unexpected(what: &str, database: &str, reason: impl Into<String>) -> Error {
    Error::UnexpectedReply {
        what: what.to_string(),
        database: Some(database.to_string()),
        table: None,
        reason: reason.into(),
    }
}

fn cell(rows: &Rows, row: usize, col: usize) -> &Value {
    rows.rows
        .get(row)
        .and_then(|r| r.get(col))
        .unwrap_or(&Value::Null)
}

/// `(columns, tags)` from `DESCRIBE`.
pub(crate) fn describe_columns(
    rows: &Rows,
    what: &str,
) -> Result<(Vec<ColumnDef>, Vec<ColumnDef>), Error> {
    let (f, t, l, n) = (
        rows.col("field", what)?,
        rows.col("type", what)?,
        rows.col("length", what)?,
        rows.col("note", what)?,
    );
    let mut cols = Vec::new();
    let mut tags = Vec::new();
    for r in 0..rows.rows.len() {
        let name = text(cell(rows, r, f)).unwrap_or_default();
        let ty = text(cell(rows, r, t)).unwrap_or_default();
        let mut def = column(name, &ty, int(cell(rows, r, l)), what)?;
        let note = text(cell(rows, r, n)).unwrap_or_default();
        if note.eq_ignore_ascii_case("TAG") {
            tags.push(def);
        } else {
            // TDengine's `setDescResultIntoDataBlock` (source/libs/command/src/command.c)
            // notes the second column of a composite key as "COMPOSITE KEY".
            def.primary_key = cols.len() == 1 && note.eq_ignore_ascii_case("COMPOSITE KEY");
            cols.push(def);
        }
    }
    Ok((cols, tags))
}

/// Reads a super table: DDL, columns, tags and the tag values of all its children.
async fn read_stable(
    pool: &Arc<Pool>,
    db: &str,
    name: String,
) -> Result<(SuperTableDef, HashMap<String, Vec<TagValue>>), Error> {
    let ctx = Ctx::table(db, &name);
    let ddl_rows = pool
        .query_values(
            ctx.doing("reading a super table's DDL (SHOW CREATE STABLE)"),
            &sql::show_create_stable(db, &name),
        )
        .await?;
    let ddl = ddl_rows
        .rows
        .first()
        .and_then(|r| r.get(1))
        .and_then(text)
        .ok_or_else(|| unexpected("super table DDL", db, "no DDL returned"))?;
    let desc = pool
        .query_values(
            ctx.doing("reading a super table's columns (DESCRIBE)"),
            &sql::describe(db, &name),
        )
        .await?;
    let (columns, tags) = describe_columns(&desc, "DESCRIBE")?;
    let mut children = HashMap::new();
    if !tags.is_empty() {
        let list: Vec<String> = tags.iter().map(|t| t.name.clone()).collect();
        let rows = pool
            .query_rows(
                ctx.doing("reading child tables' tags (SELECT TAGS)"),
                &sql::child_tags(db, &name, &list),
                &[],
                |row| {
                    // By position: `tbname`, then the tags in the order asked for.
                    let tb = row
                        .at(0)
                        .and_then(cell_text)
                        .ok_or_else(|| unexpected("child tag values", db, "tbname missing"))?;
                    if row.width() <= tags.len() {
                        return Err(unexpected(
                            "child tag values",
                            db,
                            "fewer tag values than tags",
                        ));
                    }
                    let values = (1..)
                        .zip(&tags)
                        .map(|(col, t)| TagValue {
                            name: t.name.clone(),
                            value: row.at(col).map(to_core_value).unwrap_or(Value::Null),
                        })
                        .collect::<Vec<_>>();
                    Ok((tb, values))
                },
            )
            .await?;
        children.reserve(rows.len());
        children.extend(rows);
    }
    Ok((
        SuperTableDef {
            name,
            columns,
            tags,
            ddl,
        },
        children,
    ))
}

/// Reads the catalog of `db` (see the module docs for the statements used).
/// The database's DDL and precision: two one-row queries (a missing database fails with
/// the server's own error from `SHOW CREATE DATABASE`).
pub(crate) async fn database_header(
    pool: &Arc<Pool>,
    db: &str,
) -> Result<(String, Precision), Error> {
    let ctx = Ctx::db(db);
    let ddl = pool
        .query_values(
            ctx.doing("reading the database's DDL (SHOW CREATE DATABASE)"),
            &sql::show_create_database(db),
        )
        .await?
        .rows
        .first()
        .and_then(|r| r.get(1))
        .and_then(text)
        .ok_or_else(|| unexpected("database DDL", db, "no DDL returned"))?;
    let prec = pool
        .query_values(
            ctx.doing("reading the database's precision (ins_databases)"),
            &sql::database_row(db),
        )
        .await?;
    let pc = prec.col("precision", "ins_databases")?;
    let precision = match prec
        .rows
        .first()
        .and_then(|r| r.get(pc))
        .and_then(text)
        .as_deref()
    {
        Some("ms") => Precision::Ms,
        Some("us") => Precision::Us,
        Some("ns") => Precision::Ns,
        other => {
            return Err(unexpected(
                "ins_databases",
                db,
                format!("precision {other:?}"),
            ));
        }
    };
    Ok((ddl, precision))
}

pub(crate) async fn read_catalog(pool: &Arc<Pool>, db: &str) -> Result<CatalogSnapshot, Error> {
    let ctx = Ctx::db(db);
    // The independent statements run at once, on the pool's connections: the catalog read
    // is most of what an incremental backup with few changes waits for, and each statement
    // is a round trip (the 10,000-row answers are parsed while the server answers the
    // others). Each part copes alone with tables created or dropped between statements.
    let stables = async {
        let stables = pool
            .query_values(
                ctx.doing("reading the catalog (ins_stables)"),
                &sql::stable_names(db),
            )
            .await?;
        let sc = stables.col("stable_name", "ins_stables")?;
        let mut names: Vec<String> = stables
            .rows
            .iter()
            .filter_map(|r| r.get(sc).and_then(text))
            .collect();
        names.sort();
        let parallel = pool.size().max(1);
        futures::stream::iter(names.into_iter().map(|n| read_stable(pool, db, n)))
            .buffered(parallel)
            .try_collect::<Vec<(SuperTableDef, HashMap<String, Vec<TagValue>>)>>()
            .await
    };
    let tables_sql = sql::tables(db);
    let tables = pool.query_rows(
        ctx.doing("reading the catalog (ins_tables)"),
        &tables_sql,
        &["table_name", "stable_name", "ttl", "table_comment", "type"],
        |row| {
            let cell = row.get(4);
            let kind = match cell.as_ref().and_then(cell_str) {
                Some(k) => RowKind::of(k),
                None => RowKind::of(&cell.and_then(cell_text).unwrap_or_default()),
            };
            Ok(TableRow {
                name: row.get(0).and_then(cell_text).unwrap_or_default(),
                // Only a child table's is kept.
                super_table: match kind {
                    RowKind::Child => row.get(1).and_then(cell_text),
                    _ => None,
                },
                ttl: row
                    .get(2)
                    .and_then(|v| int(&to_core_value(v)))
                    .filter(|t| *t > 0),
                comment: row.get(3).and_then(cell_text).filter(|c| !c.is_empty()),
                kind,
            })
        },
    );
    let normal = async {
        let normal_cols = pool
            .query_values(
                ctx.doing("reading the catalog (ins_columns)"),
                &sql::normal_table_columns(db),
            )
            .await?;
        let mut columns_of: HashMap<String, Vec<ColumnDef>> = HashMap::new();
        let what = "ins_columns";
        let (t, n, ty, l) = (
            normal_cols.col("table_name", what)?,
            normal_cols.col("col_name", what)?,
            normal_cols.col("col_type", what)?,
            normal_cols.col("col_length", what)?,
        );
        for r in 0..normal_cols.rows.len() {
            let table = text(cell(&normal_cols, r, t)).unwrap_or_default();
            let def = column(
                text(cell(&normal_cols, r, n)).unwrap_or_default(),
                &text(cell(&normal_cols, r, ty)).unwrap_or_default(),
                int(cell(&normal_cols, r, l)),
                what,
            )?;
            columns_of.entry(table).or_default().push(def);
        }
        mark_composite_keys(pool, db, &mut columns_of).await?;
        Ok::<_, Error>(columns_of)
    };
    let (header, read, tables, columns_of) =
        futures::join!(database_header(pool, db), stables, tables, normal);
    // The header's error first: a missing database fails with the server's own message
    // from `SHOW CREATE DATABASE`, whatever the other statements said.
    let (ddl, precision) = header?;
    let (mut read, tables, mut columns_of) = (read?, tables?, columns_of?);

    let mut skipped = Vec::new();
    read.retain(|(st, _)| {
        if !is_virtual_stable(&st.ddl) {
            return true;
        }
        skipped.push(skip_virtual(&st.name, "VIRTUAL_STABLE"));
        false
    });
    // Each super table's children by name, looked up under the super table `ins_tables`
    // names (the maps stay as read: merging them into one re-hashed every child).
    let mut tags_of: HashMap<String, HashMap<String, Vec<TagValue>>> =
        HashMap::with_capacity(read.len());
    let super_tables: Vec<SuperTableDef> = read
        .into_iter()
        .map(|(s, children)| {
            tags_of.insert(s.name.clone(), children);
            s
        })
        .collect();

    let mut out = Vec::with_capacity(tables.len());
    for TableRow {
        name,
        super_table,
        ttl,
        comment,
        kind,
    } in tables
    {
        match kind {
            RowKind::Child => {
                let own = super_table
                    .as_deref()
                    .and_then(|st| tags_of.get_mut(st))
                    .and_then(|children| children.remove(&name));
                let Some(tags) = own.or_else(|| tags_of.values_mut().find_map(|c| c.remove(&name)))
                else {
                    // Dropped between the two statements: it no longer exists.
                    continue;
                };
                out.push(TableDef {
                    name,
                    kind: TableKind::Child,
                    super_table,
                    tags,
                    comment,
                    ttl,
                    columns: Vec::new(),
                });
            }
            RowKind::Normal => {
                let Some(columns) = columns_of.remove(&name) else {
                    continue;
                };
                out.push(TableDef {
                    name,
                    kind: TableKind::Normal,
                    super_table: None,
                    tags: Vec::new(),
                    comment,
                    ttl,
                    columns,
                });
            }
            RowKind::Other(kind) => skipped.push(other_kind(name, kind)),
        }
    }
    for s in &skipped {
        tracing::warn!(database = db, object = %s.name, kind = %s.kind, reason = %s.reason, "not backed up");
    }
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(CatalogSnapshot {
        database: DatabaseDef {
            name: db.to_string(),
            precision,
            ddl,
        },
        super_tables,
        tables: out,
        skipped,
    })
}

/// A row of `ins_tables` as the catalog keeps it.
struct TableRow {
    name: String,
    super_table: Option<String>,
    /// A positive TTL (0 is none).
    ttl: Option<i64>,
    comment: Option<String>,
    kind: RowKind,
}

/// A table's `type` in `ins_tables`.
enum RowKind {
    Child,
    Normal,
    /// Any other type, as the server wrote it.
    Other(String),
}

impl RowKind {
    fn of(kind: &str) -> RowKind {
        if kind.eq_ignore_ascii_case("CHILD_TABLE") {
            RowKind::Child
        } else if kind.eq_ignore_ascii_case("NORMAL_TABLE") {
            RowKind::Normal
        } else {
            RowKind::Other(kind.to_string())
        }
    }
}

/// Why a table of type `kind` (neither a child nor a normal table) is not backed up.
fn other_kind(name: String, kind: String) -> SkippedObject {
    let upper = kind.to_ascii_uppercase();
    if upper.starts_with("VIRTUAL_") {
        return skip_virtual(&name, &upper);
    }
    // A kind this version of taosbackup does not know: listed, never dropped quietly.
    SkippedObject {
        name,
        reason: format!(
            "table type {kind:?} is not known to this version of taosbackup: its rows are not \
             in the backup"
        ),
        kind,
    }
}

/// Why a virtual table or virtual super table is not backed up.
///
/// Virtual tables (TDengine 3.3.6+: `CREATE VTABLE`, `ins_tables.type` `VIRTUAL_NORMAL_TABLE` /
/// `VIRTUAL_CHILD_TABLE`, a super table created `VIRTUAL 1`; `source/common/src/systable.c`,
/// `source/libs/command/src/command.c`) store no rows: each column reads a column of another
/// table (`FROM db.table.column`). Their rows are therefore in the backup already, through
/// the tables they reference. Their definitions are not restored: the references name the
/// source database, which a restore under another name would silently re-point, and the
/// referenced tables must exist first. So they are listed, and the operator recreates them
/// with `SHOW CREATE VTABLE` on the source after the restore.
fn skip_virtual(name: &str, kind: &str) -> SkippedObject {
    SkippedObject {
        name: name.to_string(),
        kind: kind.to_string(),
        reason: "virtual: it stores no rows of its own (they are backed up with the tables it \
                 references); its definition is not restored. Recreate it after a restore \
                 from SHOW CREATE VTABLE (or SHOW CREATE STABLE) on the source"
            .into(),
    }
}

/// Whether `SHOW CREATE STABLE` text describes a virtual super table: TDengine prints the
/// option ` VIRTUAL 1` for one (`appendTableOptions` in `source/libs/command/src/command.c`).
pub(crate) fn is_virtual_stable(ddl: &str) -> bool {
    let upper = ddl.to_ascii_uppercase();
    let outside = outside_quotes(ddl);
    let b = upper.as_bytes();
    let mut from = 0;
    while let Some(p) = upper[from..].find("VIRTUAL") {
        let i = from + p;
        from = i + 7;
        let word = outside[i]
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            && b.get(i + 7).is_some_and(|c| c.is_ascii_whitespace());
        if word {
            let rest = upper[i + 7..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if digits.parse::<u32>().is_ok_and(|v| v != 0) {
                return true;
            }
        }
    }
    false
}

/// Which bytes of `text` are outside quotes and backquotes (TDengine's tokenizer: `\\`
/// escapes inside '…' and "…", none inside `…`).
fn outside_quotes(text: &str) -> Vec<bool> {
    let b = text.as_bytes();
    let mut out = vec![true; b.len()];
    let mut quote: Option<u8> = None;
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

/// The types TDengine allows for the second column of a composite key (the TDengine
/// documentation of `CREATE TABLE`: "integer or string (varchar)"; the emulator accepts
/// INT, BIGINT, INT UNSIGNED, BIGINT UNSIGNED and VARCHAR).
fn key_capable(ty: DataType) -> bool {
    matches!(
        ty,
        DataType::Int | DataType::BigInt | DataType::UInt | DataType::UBigInt | DataType::VarChar
    )
}

/// `ins_columns` does not say which column is a composite key, so every normal table whose
/// second column could be one is described (`DESCRIBE`, note `COMPOSITE KEY`), in parallel;
/// so is every table with a DECIMAL column `ins_columns` gave no precision and scale for.
/// Other tables cost nothing.
async fn mark_composite_keys(
    pool: &Arc<Pool>,
    db: &str,
    columns_of: &mut HashMap<String, Vec<ColumnDef>>,
) -> Result<(), Error> {
    // Also every table with a DECIMAL column whose precision and scale `ins_columns` did
    // not spell out: `DESCRIBE` prints `DECIMAL(p, s)` (command.c `setDescResultIntoDataBlock`).
    let candidates: Vec<String> = columns_of
        .iter()
        .filter(|(_, c)| {
            c.get(1).is_some_and(|c| key_capable(c.data_type))
                || c.iter()
                    .any(|c| c.data_type == DataType::Decimal && c.decimal.is_none())
        })
        .map(|(t, _)| t.clone())
        .collect();
    let parallel = pool.size().max(1);
    let keyed: Vec<Option<(String, Vec<ColumnDef>)>> =
        futures::stream::iter(candidates.into_iter().map(|t| async move {
            let ctx = Ctx::table(db, &t).doing("looking for a composite key (DESCRIBE)");
            let desc = match pool.query_values(ctx, &sql::describe(db, &t)).await {
                Ok(d) => d,
                // Dropped since `ins_columns` was read: the catalog read leaves it out anyway.
                Err(e) if e.code() == Some(0x2603) => return Ok(None),
                Err(e) => return Err(e),
            };
            let (cols, _) = describe_columns(&desc, "DESCRIBE")?;
            Ok::<_, Error>(Some((t, cols)))
        }))
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    for (t, described) in keyed.into_iter().flatten() {
        let Some(cols) = columns_of.get_mut(&t) else {
            continue;
        };
        if described.get(1).is_some_and(|c| c.primary_key) {
            if let Some(c) = cols.get_mut(1) {
                c.primary_key = true;
            }
        }
        for c in cols.iter_mut().filter(|c| c.data_type == DataType::Decimal) {
            c.decimal = described
                .iter()
                .find(|d| d.name == c.name)
                .and_then(|d| d.decimal);
        }
    }
    for (t, cols) in columns_of.iter() {
        if let Some(c) = cols
            .iter()
            .find(|c| c.data_type == DataType::Decimal && c.decimal.is_none())
        {
            return Err(unexpected(
                "DESCRIBE",
                db,
                format!("no precision and scale for DECIMAL column {t}.{}", c.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_read_in_place_has_the_text_a_typed_copy_has() {
        use std::borrow::Cow;
        // What `text` read before it shared `into_text`: `from_utf8_lossy` of the bytes.
        let cases = [
            (BorrowedValue::VarChar("meters"), Some("meters")),
            (
                BorrowedValue::VarBinary(Cow::Borrowed(b"a\xffb")),
                Some("a\u{FFFD}b"),
            ),
            (BorrowedValue::NChar(Cow::Borrowed("名")), Some("名")),
            (BorrowedValue::Json(Cow::Borrowed(b"{}")), Some("{}")),
            (BorrowedValue::Int(7), None),
            (BorrowedValue::Null(taos::Ty::VarChar), None),
        ];
        for (v, want) in cases {
            let want = want.map(str::to_string);
            assert_eq!(text(&to_core_value(v.clone())), want, "{v:?}");
            assert_eq!(cell_text(v.clone()), want, "{v:?}");
            // Only the two text types are compared in place.
            let borrowed = match &v {
                BorrowedValue::VarChar(_) | BorrowedValue::NChar(_) => want.as_deref(),
                _ => None,
            };
            assert_eq!(cell_str(&v), borrowed, "{v:?}");
        }
    }

    #[test]
    fn table_types_as_ins_tables_writes_them() {
        assert!(matches!(RowKind::of("CHILD_TABLE"), RowKind::Child));
        assert!(matches!(RowKind::of("child_table"), RowKind::Child));
        assert!(matches!(RowKind::of("NORMAL_TABLE"), RowKind::Normal));
        let RowKind::Other(k) = RowKind::of("SYSTEM_TABLE") else {
            panic!("another type is neither a child nor a normal table");
        };
        assert_eq!(k, "SYSTEM_TABLE");
        let virt = other_kind("v".into(), "virtual_child_table".into());
        assert_eq!(virt.kind, "VIRTUAL_CHILD_TABLE");
        let unknown = other_kind("x".into(), "SYSTEM_TABLE".into());
        assert_eq!(unknown.kind, "SYSTEM_TABLE");
        assert!(unknown.reason.contains("not known"), "{}", unknown.reason);
    }

    #[test]
    fn virtual_super_tables_by_their_ddl() {
        assert!(is_virtual_stable(
            "CREATE STABLE `vs` (`ts` TIMESTAMP) TAGS (`t` INT) VIRTUAL 1"
        ));
        assert!(!is_virtual_stable(
            "CREATE STABLE `vs` (`ts` TIMESTAMP) TAGS (`t` INT) COMMENT 'VIRTUAL 1'"
        ));
        assert!(!is_virtual_stable(
            "CREATE STABLE `VIRTUAL 1` (`ts` TIMESTAMP) TAGS (`t` INT)"
        ));
        assert!(!is_virtual_stable(
            "CREATE STABLE s (ts TIMESTAMP) TAGS (t INT) VIRTUAL 0"
        ));
    }

    #[test]
    fn type_names() {
        assert_eq!(parse_type("INT UNSIGNED"), Some((DataType::UInt, None)));
        assert_eq!(
            parse_type("VARCHAR(20)"),
            Some((DataType::VarChar, Some(20)))
        );
        assert_eq!(parse_type("binary(7)"), Some((DataType::VarChar, Some(7))));
        assert_eq!(
            parse_type("DECIMAL(10,2)"),
            Some((DataType::Decimal, Some(10)))
        );
        let c = column("d".into(), "DECIMAL(10, 2)", Some(8), "t").unwrap();
        assert_eq!(c, ColumnDef::decimal("d", 10, 2));
        let c = column("d".into(), "decimal(38,38)", Some(16), "t").unwrap();
        assert_eq!(c.decimal, Some((38, 38)));
        assert_eq!(decimal_args("DECIMAL(5)"), Some((5, 0)));
        assert_eq!(decimal_args("DECIMAL(5,6)"), None);
        assert_eq!(decimal_args("DECIMAL(39,1)"), None);
        assert_eq!(decimal_args("VARCHAR(5)"), None);
        let c = column("d".into(), "DECIMAL", Some(16), "t").unwrap();
        assert_eq!((c.data_type, c.decimal), (DataType::Decimal, None));
        let c = column("b".into(), "BLOB", Some(4), "t").unwrap();
        assert_eq!((c.data_type, c.length), (DataType::Blob, None));
        assert_eq!(parse_type("BLOBBY"), None);
        let c = column("n".into(), "NCHAR", Some(10), "t").unwrap();
        assert_eq!(c.length, Some(10));
        let c = column("n".into(), "INT", Some(4), "t").unwrap();
        assert_eq!(c.length, None);
    }
}
