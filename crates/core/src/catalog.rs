//! The catalog model: what a backup records about a database's schema, so that a restore
//! can recreate it. The source crate fills it from `SHOW CREATE …` and `INFORMATION_SCHEMA`.

use serde::{Deserialize, Serialize};

/// Timestamp precision of a TDengine database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Milliseconds (`PRECISION 'ms'`, TDengine's default).
    Ms,
    /// Microseconds (`PRECISION 'us'`).
    Us,
    /// Nanoseconds (`PRECISION 'ns'`).
    Ns,
}

impl Precision {
    /// Timestamp units per second.
    pub fn units_per_second(&self) -> i64 {
        match self {
            Precision::Ms => 1_000,
            Precision::Us => 1_000_000,
            Precision::Ns => 1_000_000_000,
        }
    }
}

/// A snapshot of one database's catalog at backup time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSnapshot {
    /// The database itself.
    pub database: DatabaseDef,
    /// Its super tables.
    pub super_tables: Vec<SuperTableDef>,
    /// Its tables (normal and child).
    pub tables: Vec<TableDef>,
    /// Objects of the database the backup does not contain, each with the reason (virtual
    /// tables and virtual super tables, TDengine 3.3.6+). Listed so that nothing is skipped
    /// silently; absent in catalogs written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedObject>,
}

/// An object of the database that a backup does not contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedObject {
    /// Its name.
    pub name: String,
    /// What it is, as TDengine names the kind (`VIRTUAL_NORMAL_TABLE`, `VIRTUAL_CHILD_TABLE`,
    /// `VIRTUAL_STABLE`).
    pub kind: String,
    /// Why it is not in the backup, and what to do about it.
    pub reason: String,
}

/// A database definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseDef {
    /// Database name.
    pub name: String,
    /// Timestamp precision.
    pub precision: Precision,
    /// The exact text `SHOW CREATE DATABASE` returned.
    pub ddl: String,
}

/// The TDengine data type of a column or tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum DataType {
    /// `TIMESTAMP`
    Timestamp,
    /// `BOOL`
    Bool,
    /// `TINYINT`
    TinyInt,
    /// `SMALLINT`
    SmallInt,
    /// `INT`
    Int,
    /// `BIGINT`
    BigInt,
    /// `TINYINT UNSIGNED`
    #[serde(rename = "TINYINT UNSIGNED")]
    UTinyInt,
    /// `SMALLINT UNSIGNED`
    #[serde(rename = "SMALLINT UNSIGNED")]
    USmallInt,
    /// `INT UNSIGNED`
    #[serde(rename = "INT UNSIGNED")]
    UInt,
    /// `BIGINT UNSIGNED`
    #[serde(rename = "BIGINT UNSIGNED")]
    UBigInt,
    /// `FLOAT`
    Float,
    /// `DOUBLE`
    Double,
    /// `VARCHAR` / `BINARY` (bytes, length in bytes)
    VarChar,
    /// `NCHAR` (length in characters)
    NChar,
    /// `JSON` (tags only)
    Json,
    /// `VARBINARY`
    VarBinary,
    /// `GEOMETRY` (WKB bytes)
    Geometry,
    /// `DECIMAL(p, s)`: precision and scale are in [`ColumnDef::decimal`]. TDengine stores
    /// precision up to 18 as DECIMAL64 (type 21, 8 bytes) and above as DECIMAL (type 17,
    /// 16 bytes); both print as `DECIMAL(p,s)`.
    Decimal,
    /// `BLOB` (bytes, TDengine 3.3.7+)
    Blob,
}

/// A column or tag definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Data type.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Declared length for variable-length types (`VARCHAR(20)` → 20), else `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    /// The table's composite key: the second column declared `PRIMARY KEY` (TDengine 3.3+;
    /// `DESCRIBE` notes it as `COMPOSITE KEY`). Rows sharing a timestamp but not the key are
    /// distinct rows. Absent in catalogs written before it existed (read as `false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary_key: bool,
    /// `(precision, scale)` of a DECIMAL column, else `None`. Absent in catalogs written
    /// before DECIMAL was supported (read as `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<(u8, u8)>,
}

impl ColumnDef {
    /// A column without the composite-key flag.
    pub fn new(name: impl Into<String>, data_type: DataType, length: Option<u32>) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            data_type,
            length,
            primary_key: false,
            decimal: None,
        }
    }

    /// A `DECIMAL(precision, scale)` column.
    pub fn decimal(name: impl Into<String>, precision: u8, scale: u8) -> ColumnDef {
        let mut c = ColumnDef::new(name, DataType::Decimal, None);
        c.decimal = Some((precision, scale));
        c
    }
}

/// A super table definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperTableDef {
    /// Super table name.
    pub name: String,
    /// Data columns, the first is the timestamp.
    pub columns: Vec<ColumnDef>,
    /// Tag columns.
    pub tags: Vec<ColumnDef>,
    /// The exact text `SHOW CREATE STABLE` returned.
    pub ddl: String,
}

/// Whether a table is a normal table or a child table of a super table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// A table with its own schema.
    Normal,
    /// A child table of a super table, with tag values.
    Child,
}

/// A table definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// Table name.
    pub name: String,
    /// Normal or child.
    pub kind: TableKind,
    /// The super table of a child table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_table: Option<String>,
    /// Tag values of a child table, in the super table's tag order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagValue>,
    /// Table comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// TTL in days, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Columns of a normal table (child tables take them from the super table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDef>,
}

/// A named tag value of a child table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagValue {
    /// Tag name.
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// A typed value, exact to the byte: binary types keep their bytes (hex in JSON), floats
/// keep their bits (non-finite floats are written as strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL (of any type).
    Null,
    /// `BOOL`
    Bool(bool),
    /// `TINYINT`
    TinyInt(i8),
    /// `SMALLINT`
    SmallInt(i16),
    /// `INT`
    Int(i32),
    /// `BIGINT`
    BigInt(i64),
    /// `TINYINT UNSIGNED`
    #[serde(rename = "TINYINT UNSIGNED")]
    UTinyInt(u8),
    /// `SMALLINT UNSIGNED`
    #[serde(rename = "SMALLINT UNSIGNED")]
    USmallInt(u16),
    /// `INT UNSIGNED`
    #[serde(rename = "INT UNSIGNED")]
    UInt(u32),
    /// `BIGINT UNSIGNED`
    #[serde(rename = "BIGINT UNSIGNED")]
    UBigInt(u64),
    /// `FLOAT`
    Float(#[serde(with = "float32")] f32),
    /// `DOUBLE`
    Double(#[serde(with = "float64")] f64),
    /// `TIMESTAMP` in the database precision.
    Timestamp(i64),
    /// `VARCHAR`/`BINARY` bytes.
    VarChar(#[serde(with = "crate::id::hex_bytes")] Vec<u8>),
    /// `NCHAR` text.
    NChar(String),
    /// `JSON` tag text as the server returned it.
    Json(String),
    /// `VARBINARY` bytes.
    VarBinary(#[serde(with = "crate::id::hex_bytes")] Vec<u8>),
    /// `GEOMETRY` WKB bytes.
    Geometry(#[serde(with = "crate::id::hex_bytes")] Vec<u8>),
    /// `DECIMAL` as exact decimal text (`-12.30`, as many digits after the point as the
    /// column's scale).
    Decimal(String),
    /// `BLOB` bytes.
    Blob(#[serde(with = "crate::id::hex_bytes")] Vec<u8>),
}

macro_rules! float_serde {
    ($name:ident, $t:ty) => {
        mod $name {
            use serde::{Deserialize, Deserializer, Serializer};

            #[derive(serde::Deserialize)]
            #[serde(untagged)]
            enum Repr {
                Num($t),
                Text(String),
            }

            pub(crate) fn serialize<S: Serializer>(v: &$t, s: S) -> Result<S::Ok, S::Error> {
                if v.is_finite() {
                    s.serialize_some(v)
                } else if v.is_nan() {
                    s.serialize_str("NaN")
                } else if *v > 0.0 {
                    s.serialize_str("inf")
                } else {
                    s.serialize_str("-inf")
                }
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                match Repr::deserialize(d)? {
                    Repr::Num(v) => Ok(v),
                    Repr::Text(t) => match t.as_str() {
                        "NaN" => Ok(<$t>::NAN),
                        "inf" => Ok(<$t>::INFINITY),
                        "-inf" => Ok(<$t>::NEG_INFINITY),
                        _ => Err(serde::de::Error::custom(
                            "expected a number, NaN, inf or -inf",
                        )),
                    },
                }
            }
        }
    };
}
float_serde!(float32, f32);
float_serde!(float64, f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_exactly() {
        let values = vec![
            Value::Null,
            Value::Float(0.1),
            Value::Float(f32::INFINITY),
            Value::Double(-1.0e300),
            Value::VarBinary(vec![0, 255, 7]),
            Value::Geometry(vec![1, 1, 0, 0, 0]),
            Value::NChar("电表".into()),
            Value::Json("{\"a\":1}".into()),
            Value::UBigInt(u64::MAX),
        ];
        let text = serde_json::to_string(&values).unwrap();
        let back: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, values);
        assert_eq!(
            serde_json::to_string(&DataType::UBigInt).unwrap(),
            "\"BIGINT UNSIGNED\""
        );
        assert_eq!(
            serde_json::to_string(&DataType::VarChar).unwrap(),
            "\"VARCHAR\""
        );
        assert_eq!(
            serde_json::to_string(&Value::NChar("a".into())).unwrap(),
            r#"{"type":"NCHAR","value":"a"}"#
        );
        assert_eq!(
            serde_json::to_string(&Value::Null).unwrap(),
            r#"{"type":"NULL"}"#
        );
        let nan: Value = serde_json::from_str(r#"{"type":"DOUBLE","value":"NaN"}"#).unwrap();
        // Catalogs written before the composite-key flag existed read as "no key", and a
        // column without the key is written exactly as before.
        let old: ColumnDef = serde_json::from_str(r#"{"name":"v","type":"INT"}"#).unwrap();
        assert_eq!(old, ColumnDef::new("v", DataType::Int, None));
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"name":"v","type":"INT"}"#
        );
        let mut key = ColumnDef::new("k", DataType::VarChar, Some(8));
        key.primary_key = true;
        let text = serde_json::to_string(&key).unwrap();
        assert_eq!(
            text,
            r#"{"name":"k","type":"VARCHAR","length":8,"primary_key":true}"#
        );
        assert_eq!(serde_json::from_str::<ColumnDef>(&text).unwrap(), key);
        assert!(matches!(nan, Value::Double(v) if v.is_nan()));
        let d = ColumnDef::decimal("d", 38, 10);
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"name":"d","type":"DECIMAL","decimal":[38,10]}"#);
        assert_eq!(serde_json::from_str::<ColumnDef>(&text).unwrap(), d);
    }
}
