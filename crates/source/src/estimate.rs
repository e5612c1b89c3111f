//! How big a full backup of a database is, from the catalog, before it is read: the total a
//! progress bar shows (issue 16, item 5).
//!
//! One query per super table (`SELECT COUNT(*), FIRST(ts), LAST(ts) FROM db.stb PARTITION BY
//! TBNAME`) and one per normal table. Each table's blocks are counted as the buckets between
//! its first and last timestamp (an upper bound: buckets without rows in between are
//! counted too). `COUNT(*)`, `FIRST` and `LAST` are TDengine aggregate functions a
//! `PARTITION BY TBNAME` query answers per child table (TDengine's docs, "Time-Series
//! Extensions: PARTITION BY"); identifiers are backquoted (fidelity audit A1).

use std::sync::Arc;

use taosbackup_core::{BucketWidth, TableKind, Value};

use crate::Error;
use crate::conn::{Ctx, Pool};
use crate::source::TaosSource;

/// The estimated size of a full backup of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Tables in the catalog.
    pub tables: u64,
    /// Blocks (table × bucket) between each table's first and last row, summed.
    pub blocks: u64,
    /// Rows.
    pub rows: u64,
}

impl TaosSource {
    /// Estimates a full backup of `database` with buckets of `width`, in the
    /// background (on the pool's tracked tasks, so [`TaosSource::close`] waits for it), and
    /// hands the result to `done`.
    pub fn spawn_estimate<F>(&self, database: &str, width: BucketWidth, done: F)
    where
        F: FnOnce(Result<Estimate, Error>) + Send + 'static,
    {
        let pool = self.pool().clone();
        let database = database.to_string();
        self.pool().spawn(async move {
            done(estimate(&pool, &database, width).await);
        });
    }

    /// [`TaosSource::spawn_estimate`], awaited.
    pub async fn estimate(&self, database: &str, width: BucketWidth) -> Result<Estimate, Error> {
        estimate(self.pool(), database, width).await
    }
}

async fn estimate(pool: &Arc<Pool>, db: &str, width: BucketWidth) -> Result<Estimate, Error> {
    let catalog = crate::catalog::read_catalog(pool, db).await?;
    let precision = catalog.database.precision;
    let mut total = Estimate {
        tables: catalog.tables.len() as u64,
        ..Estimate::default()
    };
    let mut add = |row: &[Value], what: &str| -> Result<(), Error> {
        let bad = |reason: String| Error::UnexpectedReply {
            what: what.to_string(),
            database: Some(db.to_string()),
            table: None,
            reason,
        };
        // The last three columns: COUNT(*), FIRST(ts), LAST(ts) (after TBNAME, if any).
        let [.., count, first, last] = row else {
            return Err(bad(format!("{} values, not 3 or 4", row.len())));
        };
        let count = crate::catalog::int(count).ok_or_else(|| bad(format!("count {count:?}")))?;
        if count <= 0 {
            return Ok(());
        }
        let (Value::Timestamp(first), Value::Timestamp(last)) = (first, last) else {
            return Err(bad(format!(
                "first/last are not timestamps: {first:?}, {last:?}"
            )));
        };
        total.rows += count as u64;
        // At least a minute wide (`BucketWidth`), buckets of any timestamp are far from the
        // `i64` ends: the difference cannot overflow.
        let buckets = width.bucket_of(*last, precision).index()
            - width.bucket_of(*first, precision).index()
            + 1;
        total.blocks += buckets.max(1) as u64;
        Ok(())
    };
    for st in &catalog.super_tables {
        let Some(ts) = st.columns.first() else {
            continue;
        };
        let sql = crate::sql::table_extent_by_child(db, &st.name, &ts.name);
        let rows = pool.query_values(Ctx::table(db, &st.name), &sql).await?;
        for row in &rows.rows {
            add(row, "COUNT/FIRST/LAST PARTITION BY TBNAME")?;
        }
    }
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.kind == TableKind::Normal)
    {
        let Some(ts) = t.columns.first() else {
            continue;
        };
        let sql = crate::sql::table_extent(db, &t.name, &ts.name);
        let rows = pool.query_values(Ctx::table(db, &t.name), &sql).await?;
        for row in &rows.rows {
            add(row, "COUNT/FIRST/LAST")?;
        }
    }
    Ok(total)
}
