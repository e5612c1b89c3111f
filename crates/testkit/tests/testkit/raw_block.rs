//! Property tests: the emulator's raw-block encoder and decoder agree with the connector's
//! own parser (taos-query 0.12.4), for every type, NULLs included.

use proptest::prelude::*;
use taos::{Precision as TaosPrecision, RawBlock, Value as TaosValue};
use taosbackup_testkit::raw_block::{decode, encode};
use taosbackup_testkit::{ColumnData, Field, Ty, Value};

fn value_strategy(ty: Ty) -> BoxedStrategy<Value> {
    let v = match ty {
        Ty::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Ty::TinyInt => any::<i8>().prop_map(Value::TinyInt).boxed(),
        Ty::SmallInt => any::<i16>().prop_map(Value::SmallInt).boxed(),
        Ty::Int => any::<i32>().prop_map(Value::Int).boxed(),
        Ty::BigInt => any::<i64>().prop_map(Value::BigInt).boxed(),
        Ty::Float => any::<f32>()
            .prop_filter("NaN never equals", |f| !f.is_nan())
            .prop_map(Value::Float)
            .boxed(),
        Ty::Double => any::<f64>()
            .prop_filter("NaN never equals", |f| !f.is_nan())
            .prop_map(Value::Double)
            .boxed(),
        Ty::Timestamp => (-(1i64 << 50)..(1i64 << 50))
            .prop_map(Value::Timestamp)
            .boxed(),
        Ty::UTinyInt => any::<u8>().prop_map(Value::UTinyInt).boxed(),
        Ty::USmallInt => any::<u16>().prop_map(Value::USmallInt).boxed(),
        Ty::UInt => any::<u32>().prop_map(Value::UInt).boxed(),
        Ty::UBigInt => any::<u64>().prop_map(Value::UBigInt).boxed(),
        Ty::VarChar => "[ -~]{0,24}"
            .prop_map(|s| Value::VarChar(s.into_bytes()))
            .boxed(),
        Ty::NChar => "\\PC{0,12}".prop_map(Value::NChar).boxed(),
        Ty::Json => "[a-z]{0,8}"
            .prop_map(|k| Value::Json(format!("{{\"{k}\":1}}")))
            .boxed(),
        Ty::VarBinary => proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(Value::VarBinary)
            .boxed(),
        Ty::Geometry => proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(Value::Geometry)
            .boxed(),
        Ty::Blob => proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(Value::Blob)
            .boxed(),
        Ty::Decimal => any::<i128>().prop_map(Value::Decimal).boxed(),
        Ty::Decimal64 => any::<i64>().prop_map(Value::Decimal64).boxed(),
    };
    prop_oneof![1 => Just(Value::Null), 4 => v].boxed()
}

/// The types taos-query 0.12.4 parses: not DECIMAL (17), BLOB (18), DECIMAL64 (21), on
/// which it panics (the reason the tool reads those tables with its own client).
fn connector_types() -> Vec<Ty> {
    Ty::ALL
        .into_iter()
        .filter(|t| !t.is_decimal() && *t != Ty::Blob)
        .collect()
}

fn block_strategy() -> impl Strategy<Value = (Vec<Field>, Vec<ColumnData>)> {
    typed_block_strategy(connector_types())
}

fn typed_block_strategy(all: Vec<Ty>) -> impl Strategy<Value = (Vec<Field>, Vec<ColumnData>)> {
    let tys = proptest::collection::vec(proptest::sample::select(all), 1..8);
    (tys, 0usize..40).prop_flat_map(|(tys, rows)| {
        let cols: Vec<_> = tys
            .iter()
            .map(|&ty| proptest::collection::vec(value_strategy(ty), rows))
            .collect();
        (Just(tys), cols).prop_map(|(tys, cols)| {
            let fields: Vec<Field> = tys
                .iter()
                .enumerate()
                .map(|(i, ty)| match ty {
                    Ty::Decimal => Field::decimal(format!("c{i}"), 38, (i * 5) as u8),
                    Ty::Decimal64 => Field::decimal(format!("c{i}"), 18, (i * 2) as u8),
                    _ => Field::new(format!("c{i}"), *ty, ty.fixed_width().unwrap_or(64) as u32),
                })
                .collect();
            let data = tys
                .iter()
                .zip(cols)
                .map(|(ty, values)| {
                    let mut c = ColumnData::new(*ty);
                    for v in values {
                        assert!(c.push(v));
                    }
                    c
                })
                .collect();
            (fields, data)
        })
    })
}

/// What the connector should read back for one of our values.
fn expected(v: &Value, ty: Ty) -> TaosValue {
    match v.clone() {
        Value::Null => TaosValue::Null(taos_ty(ty)),
        Value::Bool(x) => TaosValue::Bool(x),
        Value::TinyInt(x) => TaosValue::TinyInt(x),
        Value::SmallInt(x) => TaosValue::SmallInt(x),
        Value::Int(x) => TaosValue::Int(x),
        Value::BigInt(x) => TaosValue::BigInt(x),
        Value::Float(x) => TaosValue::Float(x),
        Value::Double(x) => TaosValue::Double(x),
        Value::VarChar(x) => TaosValue::VarChar(String::from_utf8(x).expect("ascii in this test")),
        Value::Timestamp(x) => TaosValue::Timestamp(taos::taos_query::common::Timestamp::new(
            x,
            TaosPrecision::Millisecond,
        )),
        Value::NChar(x) => TaosValue::NChar(x),
        Value::UTinyInt(x) => TaosValue::UTinyInt(x),
        Value::USmallInt(x) => TaosValue::USmallInt(x),
        Value::UInt(x) => TaosValue::UInt(x),
        Value::UBigInt(x) => TaosValue::UBigInt(x),
        Value::Json(x) => TaosValue::Json(serde_json::from_str(&x).expect("valid json")),
        Value::VarBinary(x) => TaosValue::VarBinary(x.into()),
        Value::Geometry(x) => TaosValue::Geometry(x.into()),
        other => unreachable!("the connector cannot parse {other:?}"),
    }
}

fn taos_ty(ty: Ty) -> taos::Ty {
    taos::Ty::from(ty.code())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Our encoder's bytes parse in the connector to exactly our values.
    #[test]
    fn encoder_matches_connector_parser((fields, cols) in block_strategy()) {
        let rows = cols[0].len();
        let refs: Vec<&ColumnData> = cols.iter().collect();
        let bytes = encode(&fields, &refs, 0..rows);
        let mut block = RawBlock::parse_from_raw_block(bytes.clone(), TaosPrecision::Millisecond);
        // The connector names columns from the query reply, as here.
        block.with_field_names(fields.iter().map(|f| f.name.clone()));
        prop_assert_eq!(block.nrows(), rows);
        prop_assert_eq!(block.ncols(), cols.len());
        let got = block.to_values();
        for (r, row) in got.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                prop_assert_eq!(v, &expected(&cols[c].get(r), cols[c].ty()), "row {} col {}", r, c);
            }
        }
        // And our decoder reads our bytes back to the same columns.
        let decoded = decode(&bytes).expect("own bytes decode");
        prop_assert_eq!(decoded.columns, cols);
    }

    /// Bytes the connector produces (as in `write_raw_block`) decode to the same values.
    #[test]
    fn decoder_reads_connector_bytes((fields, cols) in block_strategy()) {
        let rows = cols[0].len();
        let refs: Vec<&ColumnData> = cols.iter().collect();
        let ours = encode(&fields, &refs, 0..rows);
        let block = RawBlock::parse_from_raw_block(ours, TaosPrecision::Millisecond);
        // Rebuild from the connector's views so the bytes are the connector's own encoding.
        let views: Vec<_> = block.column_views().to_vec();
        let rebuilt = RawBlock::from_views(&views, TaosPrecision::Millisecond);
        let decoded = decode(rebuilt.as_raw_bytes()).expect("connector bytes decode");
        prop_assert_eq!(decoded.rows, rows);
        prop_assert_eq!(decoded.columns, cols);
    }

    /// Every type, DECIMAL/DECIMAL64/BLOB included: our decoder reads our encoder's bytes
    /// back exactly, and the DECIMAL schema entries carry precision and scale.
    #[test]
    fn every_type_round_trips((fields, cols) in typed_block_strategy(Ty::ALL.to_vec())) {
        let rows = cols[0].len();
        let refs: Vec<&ColumnData> = cols.iter().collect();
        let bytes = encode(&fields, &refs, 0..rows);
        let decoded = decode(&bytes).expect("own bytes decode");
        prop_assert_eq!(&decoded.columns, &cols);
        for (f, (ty, b)) in fields.iter().zip(&decoded.schema) {
            prop_assert_eq!(*ty, f.ty);
            if f.ty.is_decimal() {
                prop_assert_eq!(
                    taosbackup_testkit::raw_block::decimal_prec_scale(*b),
                    (f.precision, f.scale)
                );
            }
        }
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn decoder_survives_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }
}
