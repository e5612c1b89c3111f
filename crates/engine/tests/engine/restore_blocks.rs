//! Blocks of every size restore exactly: a restore decodes a small block on its own task and
//! a large one (over its 64 KiB limit) on tokio's blocking pool, and both paths must give
//! back the same rows.

use std::sync::Arc;

use taosbackup_core::{ColumnDef, DataType, Precision, Value};
use taosbackup_testkit::fake::{FakeDb, FakeSource, MemoryRepository, Op};

#[tokio::test]
async fn small_and_large_blocks_restore_exactly() {
    let db = FakeDb::new();
    db.create_database("d", Precision::Ms, 2).unwrap();
    let apply = |op: Op| db.apply("d", &op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    let columns = vec![
        ColumnDef::new("ts", DataType::Timestamp, None),
        ColumnDef::new("v", DataType::BigInt, None),
        ColumnDef::new("s", DataType::VarChar, Some(16)),
    ];
    let base = 1_760_000_040_000i64;
    // `big`: 20,000 rows in one one-minute bucket, ~0.5 MB raw; `small`: 3 rows.
    for (table, rows) in [("big", 20_000i64), ("small", 3)] {
        apply(Op::CreateTable {
            name: table.into(),
            columns: columns.clone(),
        });
        apply(Op::Insert {
            table: table.into(),
            columns: vec!["v".into(), "s".into()],
            rows: (0..rows)
                .map(|i| {
                    (
                        base + i,
                        vec![
                            Value::BigInt(i * 7_919 % 1_000_003),
                            Value::VarChar(format!("row {i}").into_bytes()),
                        ],
                    )
                })
                .collect(),
        });
    }
    let repo = Arc::new(MemoryRepository::default());
    let source = Arc::new(FakeSource::new(db.clone()));
    let report = crate::model::full_backup(source.clone(), repo.clone(), false).await;
    assert_eq!(report.snapshot.stats.blocks, 2);
    // The large block is well over the restore's inline limit (64 KiB).
    assert!(
        report.snapshot.stats.bytes_read > 256 * 1024,
        "{:?}",
        report.snapshot.stats
    );
    let r = crate::model::restore_exactly(&db, &source, &*repo, &report.snapshot.id).await;
    assert_eq!(r.rows_written, 20_003);
}
