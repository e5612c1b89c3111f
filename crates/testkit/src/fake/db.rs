//! The fake database: schema, rows and the change log, behind one lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use taosbackup_core::{
    CatalogSnapshot, ChangeEvent, ColumnDef, DataType, DatabaseDef, Positions, Precision,
    SuperTableDef, TableDef, TableEvent, TableKind, TagValue, Value,
};

use super::{Faults, Op, lock};

/// Databases in memory, shared by clones (a [`super::FakeSource`] and any number of
/// [`super::FakeFeed`]s see the same data). Change it with [`FakeDb::apply`].
#[derive(Debug, Clone, Default)]
pub struct FakeDb {
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// The fault script of the source and feeds over this database.
    pub faults: Faults,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) databases: BTreeMap<String, Database>,
    /// Positions committed by feeds, by (database, group).
    pub(crate) committed: BTreeMap<(String, String), Positions>,
}

#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) precision: Precision,
    pub(crate) stables: BTreeMap<String, Stable>,
    pub(crate) tables: BTreeMap<String, Table>,
    pub(crate) log: Log,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stable {
    /// Columns, the timestamp first.
    pub(crate) columns: Vec<ColumnDef>,
    pub(crate) tags: Vec<ColumnDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub(crate) super_table: Option<String>,
    /// Tag values in the super table's tag order (child tables).
    pub(crate) tags: Vec<Value>,
    /// Columns of a normal table, the timestamp first (empty for a child table).
    pub(crate) columns: Vec<ColumnDef>,
    /// Rows by timestamp: the values of every column after the timestamp.
    pub(crate) rows: BTreeMap<i64, Vec<Value>>,
}

/// The change log of one database: one stream per vgroup (`"vg:<n>"`), each a run of
/// versions; a table's events always go to the same stream.
#[derive(Debug)]
pub(crate) struct Log {
    pub(crate) streams: BTreeMap<String, Stream>,
    /// Global order of entries across streams.
    pub(crate) seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// The first version still held (earlier ones were purged).
    pub(crate) first: i64,
    /// The version the next entry gets.
    pub(crate) next: i64,
    /// (version, global sequence, event), versions `first..next`.
    pub(crate) entries: Vec<(i64, u64, ChangeEvent)>,
}

impl Log {
    fn new(vgroups: u32) -> Log {
        Log {
            streams: (1..=vgroups.max(1))
                .map(|v| (format!("vg:{v}"), Stream::default()))
                .collect(),
            seq: 0,
        }
    }

    /// The stream a table's events go to (stable over runs: a hash of the name).
    fn stream_of(&self, table: &str) -> String {
        let h = blake3::hash(table.as_bytes());
        let n = self.streams.len().max(1);
        let k = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8])) as usize % n;
        self.streams.keys().nth(k).cloned().unwrap_or_default()
    }

    pub(crate) fn push(&mut self, table: &str, event: ChangeEvent) {
        let key = self.stream_of(table);
        self.seq += 1;
        let seq = self.seq;
        if let Some(s) = self.streams.get_mut(&key) {
            s.entries.push((s.next, seq, event));
            s.next += 1;
        }
    }

    pub(crate) fn ends(&self) -> Positions {
        self.streams
            .iter()
            .map(|(k, s)| (k.clone(), s.next))
            .collect()
    }
}

impl Table {
    fn columns<'a>(&'a self, stables: &'a BTreeMap<String, Stable>) -> &'a [ColumnDef] {
        match &self.super_table {
            Some(s) => stables.get(s).map(|s| &s.columns[..]).unwrap_or(&[]),
            None => &self.columns,
        }
    }
}

/// One table as [`FakeDb::dump`] shows it: comparable with `==`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDump {
    /// The super table of a child table.
    pub super_table: Option<String>,
    /// Tag values of a child table, by name.
    pub tags: Vec<(String, Value)>,
    /// Column names and types, the timestamp first.
    pub columns: Vec<ColumnDef>,
    /// Rows: the timestamp, then every other column's value.
    pub rows: Vec<(i64, Vec<Value>)>,
}

/// A whole database's schema and rows, comparable with `==` (what a restore must recreate).
#[derive(Debug, Clone, PartialEq)]
pub struct DbDump {
    /// Timestamp precision.
    pub precision: Precision,
    /// Super tables: columns and tags.
    pub stables: BTreeMap<String, (Vec<ColumnDef>, Vec<ColumnDef>)>,
    /// Tables by name.
    pub tables: BTreeMap<String, TableDump>,
}

/// A workload op the database refuses, as TDengine would (unknown table, duplicate name…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fake database: {0}")]
pub struct OpError(pub String);

impl FakeDb {
    /// An empty set of databases.
    pub fn new() -> FakeDb {
        FakeDb::default()
    }

    /// Creates database `name` with `vgroups` change-log streams. Refuses an existing one.
    pub fn create_database(
        &self,
        name: &str,
        precision: Precision,
        vgroups: u32,
    ) -> Result<(), OpError> {
        let mut inner = lock(&self.inner);
        if inner.databases.contains_key(name) {
            return Err(OpError(format!("database {name} already exists")));
        }
        inner
            .databases
            .insert(name.to_string(), Database::new(precision, vgroups));
        Ok(())
    }

    /// Applies one workload op to `database` and logs the changes it makes, as a change feed
    /// reports them (events on a super table are expanded to its child tables).
    pub fn apply(&self, database: &str, op: &Op) -> Result<(), OpError> {
        let mut inner = lock(&self.inner);
        let db = inner
            .databases
            .get_mut(database)
            .ok_or_else(|| OpError(format!("database {database} does not exist")))?;
        db.apply(op)
    }

    /// Appends `event` to the change log of `database`, in the stream of `table`, without
    /// changing any data: a feed event the test scripts (a `Reread`, a spurious change).
    pub fn push_event(&self, database: &str, table: &str, event: ChangeEvent) {
        if let Some(db) = lock(&self.inner).databases.get_mut(database) {
            db.log.push(table, event);
        }
    }

    /// Drops every logged entry of `database` before the current end of each stream, as a
    /// WAL purge does: a feed whose committed positions lie before it reports a gap.
    pub fn purge_log(&self, database: &str) {
        if let Some(db) = lock(&self.inner).databases.get_mut(database) {
            for s in db.log.streams.values_mut() {
                s.first = s.next;
                s.entries.clear();
            }
        }
    }

    /// The current end of every change-log stream of `database`.
    pub fn log_ends(&self, database: &str) -> Positions {
        lock(&self.inner)
            .databases
            .get(database)
            .map(|d| d.log.ends())
            .unwrap_or_default()
    }

    /// The positions a feed of `group` last committed on `database`.
    pub fn committed(&self, database: &str, group: &str) -> Option<Positions> {
        lock(&self.inner)
            .committed
            .get(&(database.to_string(), group.to_string()))
            .cloned()
    }

    /// Names of the databases.
    pub fn databases(&self) -> Vec<String> {
        lock(&self.inner).databases.keys().cloned().collect()
    }

    /// The whole of `database`, comparable with `==`; `None` if it does not exist.
    pub fn dump(&self, database: &str) -> Option<DbDump> {
        let inner = lock(&self.inner);
        let db = inner.databases.get(database)?;
        let stables = db
            .stables
            .iter()
            .map(|(n, s)| (n.clone(), (s.columns.clone(), s.tags.clone())))
            .collect();
        let tables = db
            .tables
            .iter()
            .map(|(n, t)| {
                let tags = match &t.super_table {
                    Some(s) => db.stables[s]
                        .tags
                        .iter()
                        .zip(&t.tags)
                        .map(|(d, v)| (d.name.clone(), v.clone()))
                        .collect(),
                    None => Vec::new(),
                };
                let dump = TableDump {
                    super_table: t.super_table.clone(),
                    tags,
                    columns: t.columns(&db.stables).to_vec(),
                    rows: t.rows.iter().map(|(k, v)| (*k, v.clone())).collect(),
                };
                (n.clone(), dump)
            })
            .collect();
        Some(DbDump {
            precision: db.precision,
            stables,
            tables,
        })
    }

    /// The catalog of `database` as the real source reads it.
    pub(crate) fn catalog(&self, database: &str) -> Option<CatalogSnapshot> {
        let inner = lock(&self.inner);
        let db = inner.databases.get(database)?;
        Some(db.catalog(database))
    }
}

fn precision_sql(p: Precision) -> &'static str {
    match p {
        Precision::Ms => "ms",
        Precision::Us => "us",
        Precision::Ns => "ns",
    }
}

impl Database {
    pub(crate) fn new(precision: Precision, vgroups: u32) -> Database {
        Database {
            precision,
            stables: BTreeMap::new(),
            tables: BTreeMap::new(),
            log: Log::new(vgroups),
        }
    }

    pub(crate) fn catalog(&self, name: &str) -> CatalogSnapshot {
        let database = DatabaseDef {
            name: name.to_string(),
            precision: self.precision,
            ddl: format!(
                "CREATE DATABASE `{name}` PRECISION '{}'",
                precision_sql(self.precision)
            ),
        };
        let super_tables = self
            .stables
            .iter()
            .map(|(n, s)| SuperTableDef {
                name: n.clone(),
                columns: s.columns.clone(),
                tags: s.tags.clone(),
                ddl: Op::CreateStable {
                    name: n.clone(),
                    columns: s.columns.clone(),
                    tags: s.tags.clone(),
                }
                .to_sql(name),
            })
            .collect();
        let tables = self
            .tables
            .iter()
            .map(|(n, t)| TableDef {
                name: n.clone(),
                kind: match t.super_table {
                    Some(_) => TableKind::Child,
                    None => TableKind::Normal,
                },
                super_table: t.super_table.clone(),
                tags: match &t.super_table {
                    Some(s) => self.stables[s]
                        .tags
                        .iter()
                        .zip(&t.tags)
                        .map(|(d, v)| TagValue {
                            name: d.name.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    None => Vec::new(),
                },
                comment: None,
                ttl: None,
                columns: t.columns.clone(),
            })
            .collect();
        CatalogSnapshot {
            database,
            super_tables,
            tables,
            skipped: Vec::new(),
        }
    }

    /// The columns of `table` (timestamp first), if it exists.
    pub(crate) fn columns_of(&self, table: &str) -> Option<&[ColumnDef]> {
        self.tables.get(table).map(|t| t.columns(&self.stables))
    }

    /// Creates the schema objects of `catalog` that do not exist yet.
    pub(crate) fn create_missing(&mut self, catalog: &CatalogSnapshot) {
        for s in &catalog.super_tables {
            self.stables
                .entry(s.name.clone())
                .or_insert_with(|| Stable {
                    columns: s.columns.clone(),
                    tags: s.tags.clone(),
                });
        }
        for t in &catalog.tables {
            if self.tables.contains_key(&t.name) {
                continue;
            }
            let tags = match &t.super_table {
                Some(s) => match self.stables.get(s) {
                    Some(st) => st
                        .tags
                        .iter()
                        .map(|d| {
                            t.tags
                                .iter()
                                .find(|v| v.name == d.name)
                                .map(|v| v.value.clone())
                                .unwrap_or(Value::Null)
                        })
                        .collect(),
                    None => continue,
                },
                None => Vec::new(),
            };
            self.tables.insert(
                t.name.clone(),
                Table {
                    super_table: t.super_table.clone(),
                    tags,
                    columns: t.columns.clone(),
                    rows: BTreeMap::new(),
                },
            );
            self.log.push(
                &t.name,
                ChangeEvent::Table {
                    table: t.name.clone(),
                    event: TableEvent::Created,
                },
            );
        }
    }

    /// Writes rows (overwriting whole rows, as TDengine does for an equal timestamp) and logs
    /// them.
    pub(crate) fn write_rows(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[(i64, Vec<Value>)],
    ) -> Result<u64, OpError> {
        let defs = self
            .columns_of(table)
            .ok_or_else(|| OpError(format!("table {table} does not exist")))?
            .to_vec();
        let index: Vec<Option<usize>> = defs[1..]
            .iter()
            .map(|d| columns.iter().position(|c| *c == d.name))
            .collect();
        let t = self
            .tables
            .get_mut(table)
            .ok_or_else(|| OpError(format!("table {table} does not exist")))?;
        for (ts, values) in rows {
            let row = index
                .iter()
                .map(|i| {
                    i.and_then(|i| values.get(i).cloned())
                        .unwrap_or(Value::Null)
                })
                .collect();
            t.rows.insert(*ts, row);
        }
        if !rows.is_empty() {
            self.log.push(
                table,
                ChangeEvent::Rows {
                    table: table.to_string(),
                    timestamps: rows.iter().map(|r| r.0).collect(),
                },
            );
        }
        Ok(rows.len() as u64)
    }

    fn apply(&mut self, op: &Op) -> Result<(), OpError> {
        match op {
            Op::CreateStable {
                name,
                columns,
                tags,
            } => {
                check_columns(columns)?;
                if self.stables.contains_key(name) || self.tables.contains_key(name) {
                    return Err(OpError(format!("{name} already exists")));
                }
                self.stables.insert(
                    name.clone(),
                    Stable {
                        columns: columns.clone(),
                        tags: tags.clone(),
                    },
                );
            }
            Op::CreateTable { name, columns } => {
                check_columns(columns)?;
                self.new_table(name, None, Vec::new(), columns.clone())?;
            }
            Op::CreateChild { name, stable, tags } => {
                let st = self
                    .stables
                    .get(stable)
                    .ok_or_else(|| OpError(format!("super table {stable} does not exist")))?;
                if tags.len() != st.tags.len() {
                    return Err(OpError(format!(
                        "{name}: {} tag values for {} tags",
                        tags.len(),
                        st.tags.len()
                    )));
                }
                self.new_table(name, Some(stable.clone()), tags.clone(), Vec::new())?;
            }
            Op::Insert {
                table,
                columns,
                rows,
            } => {
                self.write_rows(table, columns, rows)?;
            }
            Op::Delete { table, start, end } => {
                let t = self
                    .tables
                    .get_mut(table)
                    .ok_or_else(|| OpError(format!("table {table} does not exist")))?;
                if start <= end {
                    let doomed: Vec<i64> = t.rows.range(*start..=*end).map(|r| *r.0).collect();
                    for k in doomed {
                        t.rows.remove(&k);
                    }
                }
                self.log.push(
                    table,
                    ChangeEvent::Delete {
                        table: table.clone(),
                        start: *start,
                        end: *end,
                    },
                );
            }
            Op::DropTable { table } => {
                if self.tables.remove(table).is_none() {
                    return Err(OpError(format!("table {table} does not exist")));
                }
                self.log.push(
                    table,
                    ChangeEvent::Table {
                        table: table.clone(),
                        event: TableEvent::Dropped,
                    },
                );
            }
            Op::AddStableColumn { stable, column } => {
                let st = self
                    .stables
                    .get_mut(stable)
                    .ok_or_else(|| OpError(format!("super table {stable} does not exist")))?;
                if st.columns.iter().any(|c| c.name == column.name) {
                    return Err(OpError(format!("{stable} already has {}", column.name)));
                }
                st.columns.push(column.clone());
                let children: Vec<String> = self
                    .tables
                    .iter()
                    .filter(|(_, t)| t.super_table.as_deref() == Some(stable.as_str()))
                    .map(|(n, _)| n.clone())
                    .collect();
                for c in children {
                    if let Some(t) = self.tables.get_mut(&c) {
                        t.rows.values_mut().for_each(|r| r.push(Value::Null));
                    }
                    self.log.push(
                        &c,
                        ChangeEvent::Table {
                            table: c.clone(),
                            event: TableEvent::SchemaChanged,
                        },
                    );
                }
            }
            Op::AddColumn { table, column } => {
                let t = self
                    .tables
                    .get_mut(table)
                    .filter(|t| t.super_table.is_none())
                    .ok_or_else(|| OpError(format!("no normal table {table}")))?;
                if t.columns.iter().any(|c| c.name == column.name) {
                    return Err(OpError(format!("{table} already has {}", column.name)));
                }
                t.columns.push(column.clone());
                t.rows.values_mut().for_each(|r| r.push(Value::Null));
                self.log.push(
                    table,
                    ChangeEvent::Table {
                        table: table.clone(),
                        event: TableEvent::SchemaChanged,
                    },
                );
            }
            Op::SetTag { table, tag, value } => {
                let t = self
                    .tables
                    .get_mut(table)
                    .ok_or_else(|| OpError(format!("table {table} does not exist")))?;
                let st = t
                    .super_table
                    .as_ref()
                    .and_then(|s| self.stables.get(s))
                    .ok_or_else(|| OpError(format!("{table} is not a child table")))?;
                let i = st
                    .tags
                    .iter()
                    .position(|d| d.name == *tag)
                    .ok_or_else(|| OpError(format!("{table} has no tag {tag}")))?;
                t.tags[i] = value.clone();
                self.log.push(
                    table,
                    ChangeEvent::Table {
                        table: table.clone(),
                        event: TableEvent::TagsChanged,
                    },
                );
            }
        }
        Ok(())
    }

    fn new_table(
        &mut self,
        name: &str,
        super_table: Option<String>,
        tags: Vec<Value>,
        columns: Vec<ColumnDef>,
    ) -> Result<(), OpError> {
        if self.tables.contains_key(name) || self.stables.contains_key(name) {
            return Err(OpError(format!("{name} already exists")));
        }
        self.tables.insert(
            name.to_string(),
            Table {
                super_table,
                tags,
                columns,
                rows: BTreeMap::new(),
            },
        );
        self.log.push(
            name,
            ChangeEvent::Table {
                table: name.to_string(),
                event: TableEvent::Created,
            },
        );
        Ok(())
    }
}

/// A table's first column must be its timestamp.
fn check_columns(columns: &[ColumnDef]) -> Result<(), OpError> {
    match columns.first() {
        Some(c) if c.data_type == DataType::Timestamp => Ok(()),
        _ => Err(OpError("the first column must be a TIMESTAMP".into())),
    }
}
