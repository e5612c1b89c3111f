//! [`CatalogResolver`]: table uids from `information_schema.ins_tables` through the connector.

use std::sync::Arc;

use async_trait::async_trait;
use taosbackup_core::SourceError;

use super::feed::{ResolvedTable, TableResolver};
use crate::{
    catalog::{int, text},
    conn::{Ctx, Pool},
    dsn::ConnectOptions,
    error::Error,
    sql,
};

/// A [`TableResolver`] that reads `SELECT table_name, uid, stable_name FROM
/// information_schema.ins_tables WHERE db_name = …` over its own connection pool.
#[derive(Debug, Clone)]
pub struct CatalogResolver {
    pool: Arc<Pool>,
    database: String,
}

impl CatalogResolver {
    /// Prepares a resolver for `database`; does no network I/O. Fails for a malformed DSN,
    /// or a native DSN without the TDengine client library.
    pub fn connect(
        options: &ConnectOptions,
        database: impl Into<String>,
    ) -> Result<CatalogResolver, Error> {
        let (endpoint, creds) = options.resolve()?;
        let pool = Arc::new(Pool::new(options, endpoint, &creds, None)?);
        Ok(CatalogResolver {
            pool,
            database: database.into(),
        })
    }
}

#[async_trait]
impl TableResolver for CatalogResolver {
    async fn tables(&self) -> Result<Vec<ResolvedTable>, SourceError> {
        let what = "ins_tables (uids for the wal feed)";
        let db = self.database.as_str();
        let rows = self
            .pool
            .query_values(
                Ctx::db(db).doing("reading table uids (ins_tables)"),
                &sql::table_uids(db),
            )
            .await?;
        let (n, u, s) = (
            rows.col("table_name", what)?,
            rows.col("uid", what)?,
            rows.col("stable_name", what)?,
        );
        let mut out = Vec::with_capacity(rows.rows.len());
        for r in &rows.rows {
            let cell = |i: usize| r.get(i);
            let (Some(name), Some(uid)) = (cell(n).and_then(text), cell(u).and_then(int)) else {
                return Err(Error::UnexpectedReply {
                    what: what.to_string(),
                    database: Some(db.to_string()),
                    table: None,
                    reason: format!("a row without a table name or uid: {r:?}"),
                }
                .into());
            };
            out.push(ResolvedTable {
                uid,
                name,
                super_table: cell(s).and_then(text).filter(|s| !s.is_empty()),
            });
        }
        Ok(out)
    }
}
