//! The value vocabulary of the emulator: TDengine column types, precisions, single values and
//! typed column vectors.
//!
//! Type codes are TDengine's (`include/util/taosdef.h`, mirrored by taos-query's `Ty`).

use std::fmt;

use crate::cells::{Bytes, Cells, Fixed, Text, Var, VarKind};

/// A TDengine column type, with its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Ty {
    /// BOOL, 1 byte.
    Bool = 1,
    /// TINYINT, i8.
    TinyInt = 2,
    /// SMALLINT, i16.
    SmallInt = 3,
    /// INT, i32.
    Int = 4,
    /// BIGINT, i64.
    BigInt = 5,
    /// FLOAT, f32.
    Float = 6,
    /// DOUBLE, f64.
    Double = 7,
    /// VARCHAR / BINARY: bytes.
    VarChar = 8,
    /// TIMESTAMP, i64 in the database precision.
    Timestamp = 9,
    /// NCHAR: unicode text (UCS-4 in raw blocks).
    NChar = 10,
    /// TINYINT UNSIGNED.
    UTinyInt = 11,
    /// SMALLINT UNSIGNED.
    USmallInt = 12,
    /// INT UNSIGNED.
    UInt = 13,
    /// BIGINT UNSIGNED.
    UBigInt = 14,
    /// JSON (tags only).
    Json = 15,
    /// VARBINARY: bytes.
    VarBinary = 16,
    /// DECIMAL(p, s) with 18 < p <= 38: a 128-bit two's-complement integer scaled by
    /// 10^-s (TDengine 3.3.6+; `decimalTypeFromPrecision` in source/common/src/ttypes.c).
    Decimal = 17,
    /// BLOB: bytes, with a 4-byte length prefix in raw blocks (TDengine 3.3.7+).
    Blob = 18,
    /// GEOMETRY: WKB bytes.
    Geometry = 20,
    /// DECIMAL(p, s) with p <= 18: a 64-bit integer scaled by 10^-s (TDengine 3.3.6+).
    Decimal64 = 21,
}

impl Ty {
    /// Every supported type, in code order.
    pub const ALL: [Ty; 20] = [
        Ty::Bool,
        Ty::TinyInt,
        Ty::SmallInt,
        Ty::Int,
        Ty::BigInt,
        Ty::Float,
        Ty::Double,
        Ty::VarChar,
        Ty::Timestamp,
        Ty::NChar,
        Ty::UTinyInt,
        Ty::USmallInt,
        Ty::UInt,
        Ty::UBigInt,
        Ty::Json,
        Ty::VarBinary,
        Ty::Decimal,
        Ty::Blob,
        Ty::Geometry,
        Ty::Decimal64,
    ];

    /// The type for a wire code, if supported.
    pub fn from_code(code: u8) -> Option<Ty> {
        Ty::ALL.iter().copied().find(|t| *t as u8 == code)
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Width in bytes of a fixed-width type; `None` for variable-width types.
    pub fn fixed_width(self) -> Option<usize> {
        Some(match self {
            Ty::Bool | Ty::TinyInt | Ty::UTinyInt => 1,
            Ty::SmallInt | Ty::USmallInt => 2,
            Ty::Int | Ty::UInt | Ty::Float => 4,
            Ty::BigInt | Ty::UBigInt | Ty::Double | Ty::Timestamp | Ty::Decimal64 => 8,
            Ty::Decimal => 16,
            Ty::VarChar | Ty::NChar | Ty::Json | Ty::VarBinary | Ty::Geometry | Ty::Blob => {
                return None;
            }
        })
    }

    /// Whether values are length-prefixed bytes in raw blocks.
    pub fn is_var(self) -> bool {
        self.fixed_width().is_none()
    }

    /// Whether this is DECIMAL or DECIMAL64 (`IS_DECIMAL_TYPE`, include/common/ttypes.h).
    pub fn is_decimal(self) -> bool {
        matches!(self, Ty::Decimal | Ty::Decimal64)
    }

    /// Bytes of the length prefix of a var-width value in raw blocks: 4 for BLOB
    /// (`BLOBSTR_HEADER_SIZE`; taosAdapter `driver/common/parser/block.go` `rawConvertBlob`
    /// reads a u32), 2 for the others (`VARSTR_HEADER_SIZE`).
    pub fn len_prefix(self) -> usize {
        if self == Ty::Blob { 4 } else { 2 }
    }

    /// The SQL name as TDengine prints it (`DESCRIBE`, `SHOW CREATE`; both DECIMAL types
    /// are named `DECIMAL`: `tDataTypes` in source/common/src/ttypes.c).
    pub fn sql_name(self) -> &'static str {
        match self {
            Ty::Bool => "BOOL",
            Ty::TinyInt => "TINYINT",
            Ty::SmallInt => "SMALLINT",
            Ty::Int => "INT",
            Ty::BigInt => "BIGINT",
            Ty::Float => "FLOAT",
            Ty::Double => "DOUBLE",
            Ty::VarChar => "VARCHAR",
            Ty::Timestamp => "TIMESTAMP",
            Ty::NChar => "NCHAR",
            Ty::UTinyInt => "TINYINT UNSIGNED",
            Ty::USmallInt => "SMALLINT UNSIGNED",
            Ty::UInt => "INT UNSIGNED",
            Ty::UBigInt => "BIGINT UNSIGNED",
            Ty::Json => "JSON",
            Ty::VarBinary => "VARBINARY",
            Ty::Geometry => "GEOMETRY",
            Ty::Decimal | Ty::Decimal64 => "DECIMAL",
            Ty::Blob => "BLOB",
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// Timestamp precision of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Milliseconds (wire code 0), TDengine's default.
    #[default]
    Millisecond,
    /// Microseconds (wire code 1).
    Microsecond,
    /// Nanoseconds (wire code 2).
    Nanosecond,
}

impl Precision {
    /// Wire code used in query replies.
    pub fn code(self) -> u8 {
        match self {
            Precision::Millisecond => 0,
            Precision::Microsecond => 1,
            Precision::Nanosecond => 2,
        }
    }

    /// The SQL spelling: `ms`, `us`, `ns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Millisecond => "ms",
            Precision::Microsecond => "us",
            Precision::Nanosecond => "ns",
        }
    }

    /// Parses `ms`, `us`, `ns` (case-insensitive).
    pub fn parse(s: &str) -> Option<Precision> {
        match s.to_ascii_lowercase().as_str() {
            "ms" => Some(Precision::Millisecond),
            "us" => Some(Precision::Microsecond),
            "ns" => Some(Precision::Nanosecond),
            _ => None,
        }
    }

    /// Units of this precision per second.
    pub fn per_second(self) -> i64 {
        match self {
            Precision::Millisecond => 1_000,
            Precision::Microsecond => 1_000_000,
            Precision::Nanosecond => 1_000_000_000,
        }
    }
}

/// One value of a cell or tag.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// BOOL.
    Bool(bool),
    /// TINYINT.
    TinyInt(i8),
    /// SMALLINT.
    SmallInt(i16),
    /// INT.
    Int(i32),
    /// BIGINT.
    BigInt(i64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// VARCHAR bytes.
    VarChar(Vec<u8>),
    /// TIMESTAMP in the database precision.
    Timestamp(i64),
    /// NCHAR text.
    NChar(String),
    /// TINYINT UNSIGNED.
    UTinyInt(u8),
    /// SMALLINT UNSIGNED.
    USmallInt(u16),
    /// INT UNSIGNED.
    UInt(u32),
    /// BIGINT UNSIGNED.
    UBigInt(u64),
    /// JSON text.
    Json(String),
    /// VARBINARY bytes.
    VarBinary(Vec<u8>),
    /// GEOMETRY bytes.
    Geometry(Vec<u8>),
    /// DECIMAL: the unscaled 128-bit integer (the column's scale places the point).
    Decimal(i128),
    /// BLOB bytes.
    Blob(Vec<u8>),
    /// DECIMAL64: the unscaled 64-bit integer.
    Decimal64(i64),
}

impl Value {
    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value's type; `None` for NULL.
    pub fn ty(&self) -> Option<Ty> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => Ty::Bool,
            Value::TinyInt(_) => Ty::TinyInt,
            Value::SmallInt(_) => Ty::SmallInt,
            Value::Int(_) => Ty::Int,
            Value::BigInt(_) => Ty::BigInt,
            Value::Float(_) => Ty::Float,
            Value::Double(_) => Ty::Double,
            Value::VarChar(_) => Ty::VarChar,
            Value::Timestamp(_) => Ty::Timestamp,
            Value::NChar(_) => Ty::NChar,
            Value::UTinyInt(_) => Ty::UTinyInt,
            Value::USmallInt(_) => Ty::USmallInt,
            Value::UInt(_) => Ty::UInt,
            Value::UBigInt(_) => Ty::UBigInt,
            Value::Json(_) => Ty::Json,
            Value::VarBinary(_) => Ty::VarBinary,
            Value::Geometry(_) => Ty::Geometry,
            Value::Decimal(_) => Ty::Decimal,
            Value::Blob(_) => Ty::Blob,
            Value::Decimal64(_) => Ty::Decimal64,
        })
    }
}

macro_rules! columns {
    (fixed { $($fv:ident($ft:ty)),* $(,)? } var { $($vv:ident($vk:ty)),* $(,)? }) => {
        /// A typed column with NULLs; the storage unit of the emulator's tables and the source
        /// of raw blocks. Fixed-width types keep their values in one vector, variable-width
        /// ones as offsets into one byte buffer ([`crate::cells`]); NCHAR and JSON as UTF-8.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ColumnData {
            $(
                #[doc = concat!("A column of `", stringify!($fv), "` values.")]
                $fv(Fixed<$ft>),
            )*
            $(
                #[doc = concat!("A column of `", stringify!($vv), "` values.")]
                $vv(Var<$vk>),
            )*
        }

        /// Runs `$body` with the column's storage bound to `$x` (any variant).
        macro_rules! with_cells {
            ($c:expr, |$x:ident| $body:expr) => {
                match $c {
                    $(ColumnData::$fv($x) => $body,)*
                    $(ColumnData::$vv($x) => $body,)*
                }
            };
        }

        /// Runs `$body` with both columns' storage bound when they have the same variant
        /// (`$V` names the variant constructor), else evaluates `$other`.
        macro_rules! with_cells2 {
            ($a:expr, $b:expr, |$x:ident, $y:ident, $V:ident| $body:expr, $other:expr) => {
                match ($a, $b) {
                    $((ColumnData::$fv($x), ColumnData::$fv($y)) => {
                        #[allow(unused_imports)]
                        use ColumnData::$fv as $V;
                        $body
                    })*
                    $((ColumnData::$vv($x), ColumnData::$vv($y)) => {
                        #[allow(unused_imports)]
                        use ColumnData::$vv as $V;
                        $body
                    })*
                    #[allow(unreachable_patterns)]
                    _ => $other,
                }
            };
        }
        pub(crate) use {with_cells, with_cells2};

        impl ColumnData {
            /// An empty column of type `ty`.
            pub fn new(ty: Ty) -> ColumnData {
                ColumnData::with_capacity(ty, 0)
            }

            /// An empty column of type `ty` with room for `n` values.
            pub fn with_capacity(ty: Ty, n: usize) -> ColumnData {
                match ty {
                    $(Ty::$fv => ColumnData::$fv(Fixed::with_capacity(n)),)*
                    $(Ty::$vv => ColumnData::$vv(Var::with_capacity(n)),)*
                }
            }

            /// The column's type.
            pub fn ty(&self) -> Ty {
                match self {
                    $(ColumnData::$fv(_) => Ty::$fv,)*
                    $(ColumnData::$vv(_) => Ty::$vv,)*
                }
            }

            /// The value at `i` (panics when out of range, like slice indexing).
            pub fn get(&self, i: usize) -> Value {
                match self {
                    $(ColumnData::$fv(v) => v.get(i).map_or(Value::Null, Value::$fv),)*
                    $(ColumnData::$vv(v) => v.get(i).map_or(Value::Null, |b| Value::$vv(<$vk>::own(b))),)*
                }
            }

            /// Appends a value; NULL is always accepted. Returns `false` (and appends
            /// nothing) when the value's type differs from the column's.
            pub fn push(&mut self, value: Value) -> bool {
                match (self, value) {
                    $((ColumnData::$fv(v), Value::$fv(x)) => v.push(Some(x)),)*
                    $((ColumnData::$vv(v), Value::$vv(x)) => v.push(Some(<$vk>::bytes(&x))),)*
                    (c, Value::Null) => c.push_null(),
                    _ => return false,
                }
                true
            }

            /// Inserts a value at `i`, shifting later values; `false` on a type mismatch.
            pub fn insert(&mut self, i: usize, value: Value) -> bool {
                match (self, value) {
                    $((ColumnData::$fv(v), Value::$fv(x)) => v.insert(i, Some(x)),)*
                    $((ColumnData::$vv(v), Value::$vv(x)) => v.insert(i, Some(<$vk>::bytes(&x))),)*
                    $((ColumnData::$fv(v), Value::Null) => v.insert(i, None),)*
                    $((ColumnData::$vv(v), Value::Null) => v.insert(i, None),)*
                    _ => return false,
                }
                true
            }

            /// Replaces the value at `i`; `false` on a type mismatch.
            pub fn set(&mut self, i: usize, value: Value) -> bool {
                match (self, value) {
                    $((ColumnData::$fv(v), Value::$fv(x)) => v.set(i, Some(x)),)*
                    $((ColumnData::$vv(v), Value::$vv(x)) => v.set(i, Some(<$vk>::bytes(&x))),)*
                    $((ColumnData::$fv(v), Value::Null) => v.set(i, None),)*
                    $((ColumnData::$vv(v), Value::Null) => v.set(i, None),)*
                    _ => return false,
                }
                true
            }
        }
    };
}

impl ColumnData {
    /// Number of values.
    pub fn len(&self) -> usize {
        with_cells!(self, |v| v.len())
    }

    /// Whether the column holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the value at `i` is NULL.
    pub fn is_null(&self, i: usize) -> bool {
        with_cells!(self, |v| v.is_null(i))
    }

    /// Appends a NULL.
    pub fn push_null(&mut self) {
        with_cells!(self, |v| v.push_null())
    }

    /// Removes the values in `range`.
    pub fn drain(&mut self, range: std::ops::Range<usize>) {
        with_cells!(self, |v| v.drain(range))
    }

    /// Keeps only the rows whose index is marked `true` in `keep` (same length).
    pub fn retain_mask(&mut self, keep: &[bool]) {
        with_cells!(self, |v| v.retain_mask(keep))
    }

    /// A copy of the values in `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ColumnData {
        with_cells2!(self, self, |v, _w, V| V(v.slice(range)), unreachable!())
    }

    /// A copy of the values at `indices`, in that order.
    pub fn take(&self, indices: &[usize]) -> ColumnData {
        with_cells2!(self, self, |v, _w, V| V(v.take(indices)), unreachable!())
    }

    /// Releases spare capacity beyond a quarter of the length.
    pub fn trim(&mut self) {
        with_cells!(self, |v| v.trim())
    }

    /// Releases all spare capacity.
    pub fn fit(&mut self) {
        with_cells!(self, |v| v.fit())
    }
}

columns! {
    fixed {
        Bool(bool),
        TinyInt(i8),
        SmallInt(i16),
        Int(i32),
        BigInt(i64),
        Float(f32),
        Double(f64),
        Timestamp(i64),
        UTinyInt(u8),
        USmallInt(u16),
        UInt(u32),
        UBigInt(u64),
        Decimal(i128),
        Decimal64(i64),
    }
    var {
        VarChar(Bytes),
        NChar(Text),
        Json(Text),
        VarBinary(Bytes),
        Geometry(Bytes),
        Blob(Bytes),
    }
}

/// A column of a result set or table schema as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: Ty,
    /// Declared length in bytes: the type width, or the declared VARCHAR/NCHAR/… length
    /// (NCHAR counts characters, as TDengine reports it in query replies).
    pub bytes: u32,
    /// The second column of a table declared `PRIMARY KEY` (a composite key, TDengine
    /// 3.3+: `COL_IS_KEY` in the schema flags); always `false` in result sets.
    pub primary_key: bool,
    /// DECIMAL precision (digits), 0 for other types (TDengine keeps it in the schema's
    /// `typeMod`: `decimalCalcTypeMod` in source/common/src/ttypes.c).
    pub precision: u8,
    /// DECIMAL scale (digits after the point), 0 for other types.
    pub scale: u8,
}

impl Field {
    /// A field with the type's natural width (fixed types) or the given length.
    pub fn new(name: impl Into<String>, ty: Ty, bytes: u32) -> Field {
        Field {
            name: name.into(),
            ty,
            bytes,
            primary_key: false,
            precision: 0,
            scale: 0,
        }
    }

    /// A DECIMAL(precision, scale) field: DECIMAL64 (8 bytes) up to precision 18, DECIMAL
    /// (16 bytes) above (`decimalTypeFromPrecision`, source/common/src/ttypes.c).
    pub fn decimal(name: impl Into<String>, precision: u8, scale: u8) -> Field {
        let ty = if precision > 18 {
            Ty::Decimal
        } else {
            Ty::Decimal64
        };
        let mut f = Field::new(name, ty, ty.fixed_width().unwrap_or(0) as u32);
        f.precision = precision;
        f.scale = scale;
        f
    }

    /// The same field marked as the composite primary key.
    pub fn with_primary_key(mut self) -> Field {
        self.primary_key = true;
        self
    }
}
