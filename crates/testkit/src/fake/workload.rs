//! Workload ops: what a test does to a database, applied to a [`super::FakeDb`] directly or
//! sent to a server (the emulator) as SQL.

use std::fmt::Write as _;

use taosbackup_core::{ColumnDef, DataType, Value};

/// One change to a database, in TDengine's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `CREATE STABLE name (columns) TAGS (tags)`; the first column is the timestamp.
    CreateStable {
        /// Super table name.
        name: String,
        /// Columns, the timestamp first.
        columns: Vec<ColumnDef>,
        /// Tag columns.
        tags: Vec<ColumnDef>,
    },
    /// `CREATE TABLE name (columns)`: a normal table.
    CreateTable {
        /// Table name.
        name: String,
        /// Columns, the timestamp first.
        columns: Vec<ColumnDef>,
    },
    /// `CREATE TABLE name USING stable TAGS (tags)`.
    CreateChild {
        /// Table name.
        name: String,
        /// Its super table.
        stable: String,
        /// Tag values in the super table's tag order.
        tags: Vec<Value>,
    },
    /// `INSERT INTO table (ts, columns…) VALUES …`: rows at an existing timestamp are
    /// overwritten whole (columns not named become NULL).
    Insert {
        /// Table name.
        table: String,
        /// Names of the value columns (after the timestamp column, which is always first).
        columns: Vec<String>,
        /// (timestamp, one value per named column).
        rows: Vec<(i64, Vec<Value>)>,
    },
    /// `DELETE FROM table WHERE ts >= start AND ts <= end`.
    Delete {
        /// Table name.
        table: String,
        /// First deleted timestamp (inclusive).
        start: i64,
        /// Last deleted timestamp (inclusive).
        end: i64,
    },
    /// `DROP TABLE table`.
    DropTable {
        /// Table name.
        table: String,
    },
    /// `ALTER TABLE table ADD COLUMN column` on a normal table.
    AddColumn {
        /// Normal table name.
        table: String,
        /// The new column.
        column: ColumnDef,
    },
    /// `ALTER STABLE stable ADD COLUMN column`: every child table gains the column.
    AddStableColumn {
        /// Super table name.
        stable: String,
        /// The new column.
        column: ColumnDef,
    },
    /// `ALTER TABLE table SET TAG tag = value`.
    SetTag {
        /// Child table name.
        table: String,
        /// Tag name.
        tag: String,
        /// New value.
        value: Value,
    },
}

impl Op {
    /// The statement for a server, on database `db`. The timestamp column of an insert is
    /// named `ts`.
    pub fn to_sql(&self, db: &str) -> String {
        match self {
            Op::CreateStable {
                name,
                columns,
                tags,
            } => format!(
                "CREATE STABLE `{db}`.`{name}` ({}) TAGS ({})",
                column_list(columns),
                column_list(tags)
            ),
            Op::CreateTable { name, columns } => {
                format!("CREATE TABLE `{db}`.`{name}` ({})", column_list(columns))
            }
            Op::CreateChild { name, stable, tags } => format!(
                "CREATE TABLE `{db}`.`{name}` USING `{db}`.`{stable}` TAGS ({})",
                tags.iter().map(literal).collect::<Vec<_>>().join(", ")
            ),
            Op::Insert {
                table,
                columns,
                rows,
            } => {
                let mut sql = format!("INSERT INTO `{db}`.`{table}` (ts");
                for c in columns {
                    let _ = write!(sql, ", `{c}`");
                }
                sql.push_str(") VALUES");
                for (ts, values) in rows {
                    let _ = write!(sql, " ({ts}");
                    for v in values {
                        let _ = write!(sql, ", {}", literal(v));
                    }
                    sql.push(')');
                }
                sql
            }
            Op::Delete { table, start, end } => {
                format!("DELETE FROM `{db}`.`{table}` WHERE ts >= {start} AND ts <= {end}")
            }
            Op::DropTable { table } => format!("DROP TABLE `{db}`.`{table}`"),
            Op::AddColumn { table, column } => format!(
                "ALTER TABLE `{db}`.`{table}` ADD COLUMN {}",
                column_sql(column)
            ),
            Op::AddStableColumn { stable, column } => format!(
                "ALTER STABLE `{db}`.`{stable}` ADD COLUMN {}",
                column_sql(column)
            ),
            Op::SetTag { table, tag, value } => format!(
                "ALTER TABLE `{db}`.`{table}` SET TAG `{tag}` = {}",
                literal(value)
            ),
        }
    }
}

fn column_list(columns: &[ColumnDef]) -> String {
    columns
        .iter()
        .map(column_sql)
        .collect::<Vec<_>>()
        .join(", ")
}

fn column_sql(c: &ColumnDef) -> String {
    let ty = match c.data_type {
        DataType::Timestamp => "TIMESTAMP".to_string(),
        DataType::Bool => "BOOL".into(),
        DataType::TinyInt => "TINYINT".into(),
        DataType::SmallInt => "SMALLINT".into(),
        DataType::Int => "INT".into(),
        DataType::BigInt => "BIGINT".into(),
        DataType::UTinyInt => "TINYINT UNSIGNED".into(),
        DataType::USmallInt => "SMALLINT UNSIGNED".into(),
        DataType::UInt => "INT UNSIGNED".into(),
        DataType::UBigInt => "BIGINT UNSIGNED".into(),
        DataType::Float => "FLOAT".into(),
        DataType::Double => "DOUBLE".into(),
        DataType::VarChar => format!("VARCHAR({})", c.length.unwrap_or(16)),
        DataType::NChar => format!("NCHAR({})", c.length.unwrap_or(16)),
        DataType::VarBinary => format!("VARBINARY({})", c.length.unwrap_or(16)),
        DataType::Geometry => format!("GEOMETRY({})", c.length.unwrap_or(64)),
        DataType::Json => "JSON".into(),
        DataType::Blob => "BLOB".into(),
        DataType::Decimal => {
            let (p, s) = c.decimal.unwrap_or((10, 2));
            format!("DECIMAL({p}, {s})")
        }
        _ => "BIGINT".into(),
    };
    format!("`{}` {ty}", c.name)
}

/// A SQL literal for `v` (strings single-quoted with quotes doubled; binary as `\x` hex).
fn literal(v: &Value) -> String {
    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::TinyInt(x) => x.to_string(),
        Value::SmallInt(x) => x.to_string(),
        Value::Int(x) => x.to_string(),
        Value::BigInt(x) => x.to_string(),
        Value::UTinyInt(x) => x.to_string(),
        Value::USmallInt(x) => x.to_string(),
        Value::UInt(x) => x.to_string(),
        Value::UBigInt(x) => x.to_string(),
        Value::Float(x) => format!("{x:?}"),
        Value::Double(x) => format!("{x:?}"),
        Value::Timestamp(x) => x.to_string(),
        Value::VarChar(b) => quote(&String::from_utf8_lossy(b)),
        Value::NChar(s) | Value::Json(s) | Value::Decimal(s) => quote(s),
        Value::VarBinary(b) | Value::Geometry(b) | Value::Blob(b) => {
            format!("'\\x{}'", taosbackup_core::to_hex(b))
        }
        _ => "NULL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_render_as_tdengine_statements() {
        let ts = ColumnDef::new("ts", DataType::Timestamp, None);
        let v = ColumnDef::new("v", DataType::VarChar, Some(8));
        assert_eq!(
            Op::CreateTable {
                name: "n".into(),
                columns: vec![ts, v.clone()],
            }
            .to_sql("d"),
            "CREATE TABLE `d`.`n` (`ts` TIMESTAMP, `v` VARCHAR(8))"
        );
        assert_eq!(
            Op::Insert {
                table: "n".into(),
                columns: vec!["v".into()],
                rows: vec![
                    (5, vec![Value::VarChar(b"it's".to_vec())]),
                    (6, vec![Value::Null])
                ],
            }
            .to_sql("d"),
            "INSERT INTO `d`.`n` (ts, `v`) VALUES (5, 'it''s') (6, NULL)"
        );
        assert_eq!(
            Op::Delete {
                table: "n".into(),
                start: 1,
                end: 2
            }
            .to_sql("d"),
            "DELETE FROM `d`.`n` WHERE ts >= 1 AND ts <= 2"
        );
    }
}
