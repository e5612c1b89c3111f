//! SHOW, DESCRIBE, SHOW CREATE and the information_schema tables.

use super::ResultSet;
use super::catalog::{Catalog, Db, STable, Table, TableKind, table_not_exist};
use super::convert::{value_sql, value_text};
use super::exec::{Env, table_columns};
use super::expr::TBNAME_BYTES;
use crate::error::{EmuError, code};
use crate::sql::ast::{CmpOp, Expr, Lit, Statement};
use crate::types::{ColumnData, Field, Precision, Ty, Value};

const DB_NAME_BYTES: u32 = 64;
const COMMENT_BYTES: u32 = 1024;
const COL_NAME_BYTES: u32 = 64;

/// A table being built row by row.
struct Tb {
    fields: Vec<Field>,
    cols: Vec<ColumnData>,
}

impl Tb {
    fn new(spec: &[(&str, Ty, u32)]) -> Tb {
        Tb {
            fields: spec
                .iter()
                .map(|(n, t, b)| Field::new(*n, *t, *b))
                .collect(),
            cols: spec.iter().map(|(_, t, _)| ColumnData::new(*t)).collect(),
        }
    }

    fn row(&mut self, vals: Vec<Value>) {
        for (c, v) in self.cols.iter_mut().zip(vals) {
            if !c.push(v) {
                c.push_null();
            }
        }
    }

    fn into_result(self, precision: Precision) -> ResultSet {
        ResultSet {
            fields: self.fields,
            precision,
            columns: self.cols,
        }
    }
}

fn s(x: impl AsRef<str>) -> Value {
    Value::VarChar(x.as_ref().as_bytes().to_vec())
}

fn opt_s(x: Option<&str>) -> Value {
    x.map_or(Value::Null, s)
}

/// `VARCHAR(16)`, `NCHAR(8)`, `INT UNSIGNED`: a type as TDengine spells it in catalogs.
pub fn type_str(f: &Field) -> String {
    match f.ty {
        Ty::VarChar | Ty::NChar | Ty::VarBinary | Ty::Geometry => {
            format!("{}({})", f.ty.sql_name(), f.bytes)
        }
        // `appendColumnFields` (source/libs/command/src/command.c) prints `DECIMAL(p,s)`.
        Ty::Decimal | Ty::Decimal64 => format!("DECIMAL({},{})", f.precision, f.scale),
        _ => f.ty.sql_name().to_string(),
    }
}

/// The `type` column of `DESCRIBE`: `setDescResultIntoDataBlock` (command.c) prints a
/// DECIMAL as `DECIMAL(p, s)` (with a space), every other type by its bare name.
fn describe_type(f: &Field) -> String {
    if f.ty.is_decimal() {
        format!("DECIMAL({}, {})", f.precision, f.scale)
    } else {
        f.ty.sql_name().to_string()
    }
}

/// Minutes as TDengine prints DURATION/KEEP: `10d`, `12h` or `90m`.
fn dur_str(m: i64) -> String {
    if m % 1440 == 0 {
        format!("{}d", m / 1440)
    } else if m % 60 == 0 {
        format!("{}h", m / 60)
    } else {
        format!("{m}m")
    }
}

fn ins_databases(cat: &Catalog) -> Tb {
    let mut t = Tb::new(&[
        ("name", Ty::VarChar, DB_NAME_BYTES),
        ("create_time", Ty::Timestamp, 8),
        ("vgroups", Ty::Int, 4),
        ("ntables", Ty::BigInt, 8),
        ("replica", Ty::TinyInt, 1),
        ("strict", Ty::VarChar, 4),
        ("duration", Ty::VarChar, 10),
        ("keep", Ty::VarChar, 32),
        ("buffer", Ty::Int, 4),
        ("pagesize", Ty::Int, 4),
        ("pages", Ty::Int, 4),
        ("minrows", Ty::Int, 4),
        ("maxrows", Ty::Int, 4),
        ("comp", Ty::TinyInt, 1),
        ("precision", Ty::VarChar, 2),
        ("status", Ty::VarChar, 10),
        ("retentions", Ty::VarChar, 60),
        ("single_stable", Ty::Bool, 1),
        ("cachemodel", Ty::VarChar, 11),
        ("cachesize", Ty::Int, 4),
        ("wal_level", Ty::TinyInt, 1),
        ("wal_fsync_period", Ty::Int, 4),
        ("wal_retention_period", Ty::Int, 4),
        ("wal_retention_size", Ty::BigInt, 8),
        ("stt_trigger", Ty::SmallInt, 2),
        ("table_prefix", Ty::SmallInt, 2),
        ("table_suffix", Ty::SmallInt, 2),
        ("tsdb_pagesize", Ty::Int, 4),
        ("keep_time_offset", Ty::Int, 4),
    ]);
    for sys in ["information_schema", "performance_schema"] {
        let mut row = vec![s(sys), Value::Null, Value::Null, Value::BigInt(0)];
        row.resize(t.fields.len(), Value::Null);
        row[14] = s("ms");
        row[15] = s("ready");
        t.row(row);
    }
    for db in cat.dbs.values() {
        let o = &db.opts;
        t.row(vec![
            s(&db.name),
            Value::Timestamp(db.create_time),
            Value::Int(o.vgroups as i32),
            Value::BigInt(db.tables.len() as i64),
            Value::TinyInt(o.replica as i8),
            s("off"),
            s(dur_str(o.duration)),
            s(format!(
                "{},{},{}",
                dur_str(o.keep[0]),
                dur_str(o.keep[1]),
                dur_str(o.keep[2])
            )),
            Value::Int(o.buffer as i32),
            Value::Int(o.pagesize as i32),
            Value::Int(o.pages as i32),
            Value::Int(o.minrows as i32),
            Value::Int(o.maxrows as i32),
            Value::TinyInt(o.comp as i8),
            s(o.precision.as_str()),
            s("ready"),
            Value::Null,
            Value::Bool(o.single_stable != 0),
            s(&o.cachemodel),
            Value::Int(o.cachesize as i32),
            Value::TinyInt(o.wal_level as i8),
            Value::Int(o.wal_fsync_period as i32),
            Value::Int(o.wal_retention_period as i32),
            Value::BigInt(o.wal_retention_size),
            Value::SmallInt(o.stt_trigger as i16),
            Value::SmallInt(o.table_prefix as i16),
            Value::SmallInt(o.table_suffix as i16),
            Value::Int(o.tsdb_pagesize as i32),
            Value::Int(o.keep_time_offset as i32),
        ]);
    }
    t
}

fn ins_stables(cat: &Catalog, profile: crate::Profile) -> Tb {
    let mut spec = vec![
        ("stable_name", Ty::VarChar, TBNAME_BYTES),
        ("db_name", Ty::VarChar, DB_NAME_BYTES),
        ("create_time", Ty::Timestamp, 8),
        ("columns", Ty::Int, 4),
        ("tags", Ty::Int, 4),
        ("last_update", Ty::Timestamp, 8),
        ("table_comment", Ty::VarChar, COMMENT_BYTES),
        ("watermark", Ty::VarChar, 64),
        ("max_delay", Ty::VarChar, 64),
        ("rollup", Ty::VarChar, 128),
    ];
    let extra = profile.stables_extra_columns();
    for c in extra {
        spec.push(match *c {
            "uid" => ("uid", Ty::BigInt, 8),
            "isvirtual" => ("isvirtual", Ty::Bool, 1),
            _ => ("keep", Ty::VarChar, 32),
        });
    }
    let mut t = Tb::new(&spec);
    for db in cat.dbs.values() {
        for st in db.stables.values() {
            let keep = format!(
                "{},{},{}",
                dur_str(db.opts.keep[0]),
                dur_str(db.opts.keep[1]),
                dur_str(db.opts.keep[2])
            );
            let mut row = vec![
                s(&st.name),
                s(&db.name),
                Value::Timestamp(st.create_time),
                Value::Int(st.columns.len() as i32),
                Value::Int(st.tags.len() as i32),
                Value::Timestamp(st.last_update),
                opt_s(st.comment.as_deref()),
                s("5000a,5000a"),
                s("-1a,-1a"),
                s(""),
            ];
            for c in extra {
                row.push(match *c {
                    "uid" => Value::BigInt(st.uid),
                    "isvirtual" => Value::Bool(false),
                    _ => s(&keep),
                });
            }
            t.row(row);
        }
    }
    t
}

fn ins_tables(cat: &Catalog, narrow: &Narrow<'_>) -> Tb {
    let mut t = Tb::new(&[
        ("table_name", Ty::VarChar, TBNAME_BYTES),
        ("db_name", Ty::VarChar, DB_NAME_BYTES),
        ("create_time", Ty::Timestamp, 8),
        ("columns", Ty::Int, 4),
        ("stable_name", Ty::VarChar, TBNAME_BYTES),
        ("uid", Ty::BigInt, 8),
        ("vgroup_id", Ty::Int, 4),
        ("ttl", Ty::Int, 4),
        ("table_comment", Ty::VarChar, COMMENT_BYTES),
        ("type", Ty::VarChar, 21),
    ]);
    for db in cat.dbs.values().filter(|db| narrow.db(&db.name)) {
        for tb in db.tables.values() {
            if !narrow.stable(tb.stable()) {
                continue;
            }
            t.row(vec![
                s(&tb.name),
                s(&db.name),
                Value::Timestamp(tb.create_time),
                Value::Int(table_columns(db, tb).len() as i32),
                opt_s(tb.stable()),
                Value::BigInt(tb.uid),
                Value::Int(tb.vgroup as i32),
                Value::Int(tb.ttl as i32),
                opt_s(tb.comment.as_deref()),
                s(table_type(tb)),
            ]);
        }
    }
    t
}

fn ins_tags(cat: &Catalog, narrow: &Narrow<'_>) -> Tb {
    let mut t = Tb::new(&[
        ("table_name", Ty::VarChar, TBNAME_BYTES),
        ("db_name", Ty::VarChar, DB_NAME_BYTES),
        ("stable_name", Ty::VarChar, TBNAME_BYTES),
        ("tag_name", Ty::VarChar, COL_NAME_BYTES),
        ("tag_type", Ty::VarChar, 32),
        ("tag_value", Ty::VarChar, 16384),
    ]);
    for db in cat.dbs.values().filter(|db| narrow.db(&db.name)) {
        for tb in db.tables.values() {
            let TableKind::Child { stable, tags } = &tb.kind else {
                continue;
            };
            if !narrow.stable(Some(stable)) {
                continue;
            }
            let Some(st) = db.stables.get(stable) else {
                continue;
            };
            for (f, v) in st.tags.iter().zip(tags) {
                t.row(vec![
                    s(&tb.name),
                    s(&db.name),
                    s(stable),
                    s(&f.name),
                    s(type_str(f)),
                    opt_s(value_text(v).as_deref()),
                ]);
            }
        }
    }
    t
}

fn ins_columns(cat: &Catalog, narrow: &Narrow<'_>) -> Tb {
    let mut t = Tb::new(&[
        ("table_name", Ty::VarChar, TBNAME_BYTES),
        ("db_name", Ty::VarChar, DB_NAME_BYTES),
        ("table_type", Ty::VarChar, 21),
        ("col_name", Ty::VarChar, COL_NAME_BYTES),
        ("col_type", Ty::VarChar, 32),
        ("col_length", Ty::Int, 4),
        ("col_precision", Ty::Int, 4),
        ("col_scale", Ty::Int, 4),
        ("col_nullable", Ty::Int, 4),
    ]);
    let add = |t: &mut Tb, table: &str, db: &str, kind: &str, cols: &[Field]| {
        for f in cols {
            t.row(vec![
                s(table),
                s(db),
                s(kind),
                s(&f.name),
                s(type_str(f)),
                Value::Int(f.bytes as i32),
                // `userColsSchema` has col_precision/col_scale (systable.c); that DECIMAL
                // columns fill them with precision and scale was not checked.
                Value::Int(i32::from(f.precision)),
                Value::Int(i32::from(f.scale)),
                Value::Int(0),
            ]);
        }
    };
    for db in cat.dbs.values().filter(|db| narrow.db(&db.name)) {
        if narrow.table_type("SUPER_TABLE") {
            for st in db.stables.values() {
                add(&mut t, &st.name, &db.name, "SUPER_TABLE", &st.columns);
            }
        }
        for tb in db.tables.values() {
            let kind = table_type(tb);
            if narrow.table_type(kind) {
                add(&mut t, &tb.name, &db.name, kind, table_columns(db, tb));
            }
        }
    }
    t
}

/// `ins_topics` (`systable.c` `topicSchema`): `meta` is `yes`/`no` and `type` `db` for a
/// database topic where the version has them ([`crate::Profile::topics_have_meta_and_type`]).
fn ins_topics(cat: &Catalog, profile: crate::Profile) -> Tb {
    let mut spec = vec![
        ("topic_name", Ty::VarChar, TBNAME_BYTES),
        ("db_name", Ty::VarChar, DB_NAME_BYTES),
        ("create_time", Ty::Timestamp, 8),
        ("sql", Ty::VarChar, COMMENT_BYTES),
        ("schema", Ty::VarChar, 65517),
    ];
    let extra = profile.topics_have_meta_and_type();
    if extra {
        spec.push(("meta", Ty::VarChar, 4));
        spec.push(("type", Ty::VarChar, 8));
    }
    let mut t = Tb::new(&spec);
    for tp in cat.tmq.topics.values() {
        let mut row = vec![
            s(&tp.name),
            s(&tp.db),
            Value::Timestamp(tp.create_time),
            s(&tp.sql),
            Value::Null,
        ];
        if extra {
            row.push(s(if tp.with_meta { "yes" } else { "no" }));
            row.push(s("db"));
        }
        t.row(row);
    }
    t
}

/// `ins_cluster` (`systable.c` `clusterSchema`): one community cluster; `version` is the
/// edition name the connector's edition check reads, `expire_time` NULL (no licence).
fn ins_cluster(env: &Env<'_>) -> Tb {
    let mut t = Tb::new(&[
        ("id", Ty::BigInt, 8),
        ("name", Ty::VarChar, 40),
        ("uptime", Ty::Int, 4),
        ("create_time", Ty::Timestamp, 8),
        ("version", Ty::VarChar, 10),
        ("expire_time", Ty::Timestamp, 8),
    ]);
    t.row(vec![
        Value::BigInt(1),
        s("taos-emu"),
        Value::Int(0),
        Value::Timestamp(0),
        s("community"),
        Value::Null,
    ]);
    let _ = env;
    t
}

/// `ins_dnodes` (`systable.c` `dnodesSchema`, community build): the one dnode.
fn ins_dnodes(cat: &Catalog) -> Tb {
    let mut t = Tb::new(&[
        ("id", Ty::Int, 4),
        ("endpoint", Ty::VarChar, 134),
        ("vnodes", Ty::SmallInt, 2),
        ("support_vnodes", Ty::SmallInt, 2),
        ("status", Ty::VarChar, 10),
        ("create_time", Ty::Timestamp, 8),
        ("reboot_time", Ty::Timestamp, 8),
        ("note", Ty::VarChar, 256),
    ]);
    let vnodes: u32 = cat.dbs.values().map(|d| d.opts.vgroups).sum();
    t.row(vec![
        Value::Int(1),
        s("localhost:6030"),
        Value::SmallInt(i16::try_from(vnodes).unwrap_or(i16::MAX)),
        Value::SmallInt(256),
        s("ready"),
        Value::Timestamp(0),
        Value::Timestamp(0),
        s(""),
    ]);
    t
}

/// `ins_vgroups` (`systable.c` `vgroupsSchema`): one row per vgroup, on dnode 1.
fn ins_vgroups(cat: &Catalog) -> Tb {
    let mut t = Tb::new(&[
        ("vgroup_id", Ty::Int, 4),
        ("db_name", Ty::VarChar, DB_NAME_BYTES),
        ("tables", Ty::Int, 4),
        ("v1_dnode", Ty::SmallInt, 2),
        ("v1_status", Ty::VarChar, 9),
        ("v2_dnode", Ty::SmallInt, 2),
        ("v2_status", Ty::VarChar, 9),
        ("v3_dnode", Ty::SmallInt, 2),
        ("v3_status", Ty::VarChar, 9),
        ("v4_dnode", Ty::SmallInt, 2),
        ("v4_status", Ty::VarChar, 9),
        ("cacheload", Ty::Int, 4),
        ("cacheelements", Ty::Int, 4),
        ("tsma", Ty::TinyInt, 1),
    ]);
    for db in cat.dbs.values() {
        for v in db.vgroup_base..db.vgroup_base + db.opts.vgroups {
            let n = db.tables.values().filter(|tb| tb.vgroup == v).count();
            let mut row = vec![
                Value::Int(v as i32),
                s(&db.name),
                Value::Int(n as i32),
                Value::SmallInt(1),
                s("leader"),
            ];
            row.resize(11, Value::Null);
            row.extend([Value::Int(0), Value::Int(0), Value::TinyInt(0)]);
            t.row(row);
        }
    }
    t
}

/// `ins_users` (`systable.c` `userUsersSchema`): the login user.
fn ins_users(env: &Env<'_>) -> Tb {
    let mut t = Tb::new(&[
        ("name", Ty::VarChar, 24),
        ("super", Ty::TinyInt, 1),
        ("enable", Ty::TinyInt, 1),
        ("sysinfo", Ty::TinyInt, 1),
        ("create_time", Ty::Timestamp, 8),
        ("allowed_host", Ty::VarChar, 49152),
    ]);
    t.row(vec![
        s(env.user),
        Value::TinyInt(1),
        Value::TinyInt(1),
        Value::TinyInt(1),
        Value::Timestamp(0),
        s("127.0.0.1/32"),
    ]);
    t
}

/// `SHOW GRANTS` of a community build (`include/common/tgrant.h` `GRANTS_SCHEMA`, not
/// re-checked: version, expire_time, service_time, expired, state, timeseries, dnodes,
/// cpu_cores).
fn grants() -> Tb {
    let mut t = Tb::new(&[
        ("version", Ty::VarChar, 9),
        ("expire_time", Ty::VarChar, 19),
        ("service_time", Ty::VarChar, 19),
        ("expired", Ty::VarChar, 5),
        ("state", Ty::VarChar, 9),
        ("timeseries", Ty::VarChar, 21),
        ("dnodes", Ty::VarChar, 10),
        ("cpu_cores", Ty::VarChar, 13),
    ]);
    t.row(vec![
        s("community"),
        s("unlimited"),
        s("unlimited"),
        s("false"),
        s("ungranted"),
        s("unlimited"),
        s("unlimited"),
        s("unlimited"),
    ]);
    t
}

/// One row per (topic, group, vgroup) a group has subscribed to or committed on, and per
/// consumer holding it; `offset` is the committed offset as `wal:N`.
fn ins_subscriptions(cat: &Catalog) -> Tb {
    let mut t = Tb::new(&[
        ("topic_name", Ty::VarChar, TBNAME_BYTES),
        ("consumer_group", Ty::VarChar, TBNAME_BYTES),
        ("vgroup_id", Ty::Int, 4),
        ("consumer_id", Ty::BigInt, 8),
        ("offset", Ty::VarChar, 64),
    ]);
    for ((topic, group, vg), st) in &cat.tmq.subs {
        let offset = st.committed.map(|c| format!("wal:{c}"));
        let consumers: Vec<Value> = if st.consumers.is_empty() {
            vec![Value::Null]
        } else {
            st.consumers
                .iter()
                .map(|c| Value::BigInt(*c as i64))
                .collect()
        };
        for c in consumers {
            t.row(vec![
                s(topic),
                s(group),
                Value::Int(*vg as i32),
                c,
                opt_s(offset.as_deref()),
            ]);
        }
    }
    t
}

/// The column and the text of a `column = 'text'` (or `'text' = column`) term.
pub(super) fn column_equals_text<'e>(e: &'e Expr<'_>) -> Option<(&'e str, &'e str)> {
    match e {
        Expr::Cmp(CmpOp::Eq, a, b) => match (&**a, &**b) {
            (Expr::Col(c), Expr::Lit(Lit::Str(t))) | (Expr::Lit(Lit::Str(t)), Expr::Col(c)) => {
                Some((c.as_str(), t.as_ref()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// What a query's `WHERE` says every row of its answer has: the `column = 'text'` terms
/// among its top-level `AND`s, for the columns the per-table system tables are built by.
/// Building `ins_tables`, `ins_tags` and `ins_columns` skips the rows these rule out, which
/// changes no answer: the whole `WHERE` still filters what is built. Without it a catalog
/// read built every column of every table of the server (50,000 rows of `ins_columns` for
/// 10,000 tables of five columns) to keep the normal tables' (docs/emulator.md, "Speed").
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Narrow<'a> {
    db_name: Option<&'a str>,
    stable_name: Option<&'a str>,
    table_type: Option<&'a str>,
}

impl<'a> Narrow<'a> {
    /// The terms of `filter` (a query's `WHERE`) a builder can use.
    pub fn of(filter: Option<&'a Expr<'a>>) -> Narrow<'a> {
        let mut n = Narrow::default();
        if let Some(f) = filter {
            n.add(f);
        }
        n
    }

    fn add(&mut self, e: &'a Expr<'a>) {
        match e {
            Expr::And(a, b) => {
                self.add(a);
                self.add(b);
            }
            Expr::Cmp(..) => {
                let Some((col, text)) = column_equals_text(e) else {
                    return;
                };
                // Column names resolve without regard to case (`Scope::resolve`); string
                // equality compares bytes (`cmp_datum`), as `same` does here.
                let slot = if col.eq_ignore_ascii_case("db_name") {
                    &mut self.db_name
                } else if col.eq_ignore_ascii_case("stable_name") {
                    &mut self.stable_name
                } else if col.eq_ignore_ascii_case("table_type") {
                    &mut self.table_type
                } else {
                    return;
                };
                // A second term on the same column: either narrows correctly (rows must
                // satisfy both); keep the first.
                slot.get_or_insert(text);
            }
            _ => {}
        }
    }

    fn db(&self, name: &str) -> bool {
        same(self.db_name, name)
    }

    fn stable(&self, name: Option<&str>) -> bool {
        self.stable_name.is_none_or(|want| name == Some(want))
    }

    fn table_type(&self, ty: &str) -> bool {
        same(self.table_type, ty)
    }
}

fn same(want: Option<&str>, have: &str) -> bool {
    want.is_none_or(|w| w == have)
}

/// The rows of an information_schema table; `narrow` may leave out rows its query's `WHERE`
/// rules out (see [`Narrow`]).
pub fn system_table(
    cat: &Catalog,
    env: &Env<'_>,
    name: &str,
    narrow: &Narrow<'_>,
) -> Result<(Vec<Field>, Vec<ColumnData>), EmuError> {
    let t = match name.to_ascii_lowercase().as_str() {
        "ins_databases" => ins_databases(cat),
        "ins_stables" => ins_stables(cat, env.profile),
        "ins_tables" => ins_tables(cat, narrow),
        "ins_tags" => ins_tags(cat, narrow),
        "ins_columns" => ins_columns(cat, narrow),
        "ins_topics" => ins_topics(cat, env.profile),
        "ins_cluster" => ins_cluster(env),
        "ins_dnodes" => ins_dnodes(cat),
        "ins_vgroups" => ins_vgroups(cat),
        "ins_users" => ins_users(env),
        "ins_subscriptions" => ins_subscriptions(cat),
        _ => return Err(table_not_exist(name)),
    };
    Ok((t.fields, t.cols))
}

/// `CREATE DATABASE …` as the profile's TDengine version prints it.
pub fn create_database_sql(db: &Db, profile: crate::Profile) -> String {
    let o = &db.opts;
    format!(
        "CREATE DATABASE `{}` BUFFER {} CACHESIZE {} CACHEMODEL '{}' COMP {} DURATION {} \
         WAL_FSYNC_PERIOD {} MAXROWS {} MINROWS {} STT_TRIGGER {} KEEP {},{},{} PAGES {} PAGESIZE {} \
         PRECISION '{}' REPLICA {} WAL_LEVEL {} VGROUPS {} SINGLE_STABLE {} TABLE_PREFIX {} TABLE_SUFFIX {} \
         TSDB_PAGESIZE {} WAL_RETENTION_PERIOD {} WAL_RETENTION_SIZE {} KEEP_TIME_OFFSET {} {}",
        db.name,
        o.buffer,
        o.cachesize,
        o.cachemodel,
        o.comp,
        dur_str(o.duration),
        o.wal_fsync_period,
        o.maxrows,
        o.minrows,
        o.stt_trigger,
        dur_str(o.keep[0]),
        dur_str(o.keep[1]),
        dur_str(o.keep[2]),
        o.pages,
        o.pagesize,
        o.precision.as_str(),
        o.replica,
        o.wal_level,
        o.vgroups,
        o.single_stable,
        o.table_prefix,
        o.table_suffix,
        o.tsdb_pagesize,
        o.wal_retention_period,
        o.wal_retention_size,
        o.keep_time_offset,
        profile.create_database_tail(),
    )
}

/// TDengine 3.3's default (encode, compress, level) of a data column.
fn compression(ty: Ty) -> (&'static str, &'static str, &'static str) {
    let encode = match ty {
        Ty::Timestamp => "delta-i",
        Ty::TinyInt
        | Ty::SmallInt
        | Ty::Int
        | Ty::BigInt
        | Ty::UTinyInt
        | Ty::USmallInt
        | Ty::UInt
        | Ty::UBigInt => "simple8b",
        Ty::Float | Ty::Double => "delta-d",
        Ty::Bool => "bit-packing",
        _ => "disabled",
    };
    let compress = if ty.is_var() { "zstd" } else { "lz4" };
    (encode, compress, "medium")
}

/// Tags: `` `name` TYPE ``; data columns add TDengine 3.3's ENCODE/COMPRESS/LEVEL.
fn field_list(fields: &[Field], columns: bool) -> String {
    fields
        .iter()
        .map(|f| {
            if columns {
                let (e, c, l) = compression(f.ty);
                // `appendColumnFields` (source/libs/command/src/command.c) prints the key
                // after the type and its options: "`k` INT ENCODE … COMPOSITE KEY".
                let key = if f.primary_key { " COMPOSITE KEY" } else { "" };
                format!(
                    "`{}` {} ENCODE '{e}' COMPRESS '{c}' LEVEL '{l}'{key}",
                    f.name,
                    type_str(f)
                )
            } else {
                format!("`{}` {}", f.name, type_str(f))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn table_options(comment: Option<&str>, ttl: i64) -> String {
    let mut out = String::new();
    if let Some(c) = comment {
        out.push_str(&format!(
            " COMMENT '{}'",
            c.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    }
    if ttl > 0 {
        out.push_str(&format!(" TTL {ttl}"));
    }
    out
}

/// `ins_tables.type` and `ins_columns.table_type` of a table (`source/common/src/systable.c`;
/// the virtual kinds exist from 3.3.6).
fn table_type(tb: &super::catalog::Table) -> &'static str {
    match (tb.stable().is_some(), tb.is_virtual) {
        (true, false) => "CHILD_TABLE",
        (false, false) => "NORMAL_TABLE",
        (true, true) => "VIRTUAL_CHILD_TABLE",
        (false, true) => "VIRTUAL_NORMAL_TABLE",
    }
}

/// `CREATE STABLE …` as TDengine prints it (a virtual super table ends in ` VIRTUAL 1`:
/// `appendTableOptions` in source/libs/command/src/command.c).
pub fn create_stable_sql(st: &STable) -> String {
    format!(
        "CREATE STABLE `{}` ({}) TAGS ({}){}{}",
        st.name,
        field_list(&st.columns, true),
        field_list(&st.tags, false),
        table_options(st.comment.as_deref(), 0),
        if st.is_virtual { " VIRTUAL 1" } else { "" }
    )
}

/// `CREATE TABLE …` for a child or normal table as TDengine prints it.
pub fn create_table_sql(db: &Db, t: &Table) -> String {
    match &t.kind {
        TableKind::Normal { columns } => format!(
            "CREATE TABLE `{}` ({}){}",
            t.name,
            field_list(columns, true),
            table_options(t.comment.as_deref(), t.ttl)
        ),
        TableKind::Child { stable, tags } => {
            let names = db
                .stables
                .get(stable)
                .map(|st| {
                    st.tags
                        .iter()
                        .map(|f| format!("`{}`", f.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let vals = tags.iter().map(value_sql).collect::<Vec<_>>().join(", ");
            format!(
                "CREATE TABLE `{}` USING `{}` ({}) TAGS ({}){}",
                t.name,
                stable,
                names,
                vals,
                table_options(t.comment.as_deref(), t.ttl)
            )
        }
    }
}

fn like_filter(pattern: Option<&str>, name: &str) -> bool {
    match pattern {
        None => true,
        Some(p) => {
            let pc: Vec<char> = p.chars().collect();
            let nc: Vec<char> = name.chars().collect();
            super::expr::like_match(&nc, &pc)
        }
    }
}

/// Runs a SHOW / DESCRIBE statement.
pub fn show(cat: &Catalog, env: &Env<'_>, stmt: &Statement<'_>) -> Result<ResultSet, EmuError> {
    let db_for = |d: &Option<String>| -> Result<&Db, EmuError> {
        match d.as_deref().or(env.db) {
            Some(n) => cat.db(n),
            None => Err(EmuError::new(
                code::DB_NOT_SPECIFIED,
                "Database not specified",
            )),
        }
    };
    match stmt {
        Statement::ShowDatabases => Ok(ins_databases(cat).into_result(Precision::Millisecond)),
        Statement::ShowStables { db, like } => {
            let db = db_for(db)?;
            let mut t = Tb::new(&[("stable_name", Ty::VarChar, TBNAME_BYTES)]);
            for st in db
                .stables
                .values()
                .filter(|s| like_filter(like.as_deref(), &s.name))
            {
                t.row(vec![s(&st.name)]);
            }
            Ok(t.into_result(Precision::Millisecond))
        }
        Statement::ShowTables { db, like } => {
            let db = db_for(db)?;
            let mut t = Tb::new(&[("table_name", Ty::VarChar, TBNAME_BYTES)]);
            for tb in db
                .tables
                .values()
                .filter(|s| like_filter(like.as_deref(), &s.name))
            {
                t.row(vec![s(&tb.name)]);
            }
            Ok(t.into_result(Precision::Millisecond))
        }
        Statement::ShowCreateDatabase(name) => {
            let db = cat.db(name)?;
            let mut t = Tb::new(&[
                ("Database", Ty::VarChar, DB_NAME_BYTES),
                ("Create Database", Ty::VarChar, 4096),
            ]);
            t.row(vec![s(&db.name), s(create_database_sql(db, env.profile))]);
            Ok(t.into_result(Precision::Millisecond))
        }
        Statement::ShowCreateTable { stable, name } => {
            let dbn = env.db_of(name)?;
            let db = cat.db(dbn)?;
            let sql = if let Some(st) = db.stables.get(&name.name) {
                create_stable_sql(st)
            } else if let Some(tb) = db.tables.get(&name.name) {
                if *stable {
                    return Err(EmuError::new(
                        code::NOT_STABLE,
                        "Table is not a super table",
                    ));
                }
                create_table_sql(db, tb)
            } else {
                return Err(table_not_exist(&name.name));
            };
            let mut t = Tb::new(&[
                ("Table", Ty::VarChar, TBNAME_BYTES),
                ("Create Table", Ty::VarChar, 65535),
            ]);
            t.row(vec![s(&name.name), s(sql)]);
            Ok(t.into_result(Precision::Millisecond))
        }
        Statement::Describe(name) => {
            let dbn = env.db_of(name)?;
            let db = cat.db(dbn)?;
            let (cols, tags): (Vec<Field>, Vec<Field>) =
                if let Some(st) = db.stables.get(&name.name) {
                    (st.columns.clone(), st.tags.clone())
                } else if let Some(tb) = db.tables.get(&name.name) {
                    let tags = tb
                        .stable()
                        .and_then(|s| db.stables.get(s))
                        .map(|s| s.tags.clone())
                        .unwrap_or_default();
                    (table_columns(db, tb).to_vec(), tags)
                } else {
                    return Err(table_not_exist(&name.name));
                };
            let mut t = Tb::new(&[
                ("field", Ty::VarChar, COL_NAME_BYTES),
                ("type", Ty::VarChar, 32),
                ("length", Ty::Int, 4),
                ("note", Ty::VarChar, 16),
                ("encode", Ty::VarChar, 8),
                ("compress", Ty::VarChar, 8),
                ("level", Ty::VarChar, 8),
            ]);
            for f in &cols {
                let (e, c, l) = compression(f.ty);
                // `setDescResultIntoDataBlock` (source/libs/command/src/command.c).
                let note = if f.primary_key { "COMPOSITE KEY" } else { "" };
                t.row(vec![
                    s(&f.name),
                    s(describe_type(f)),
                    Value::Int(f.bytes as i32),
                    s(note),
                    s(e),
                    s(c),
                    s(l),
                ]);
            }
            for f in &tags {
                t.row(vec![
                    s(&f.name),
                    s(f.ty.sql_name()),
                    Value::Int(f.bytes as i32),
                    s("TAG"),
                    s("disabled"),
                    s("disabled"),
                    s("disabled"),
                ]);
            }
            Ok(t.into_result(Precision::Millisecond))
        }
        Statement::ShowVgroups(d) => {
            let db = db_for(d)?;
            let mut t = Tb::new(&[
                ("vgroup_id", Ty::Int, 4),
                ("db_name", Ty::VarChar, DB_NAME_BYTES),
                ("tables", Ty::Int, 4),
            ]);
            for v in db.vgroup_base..db.vgroup_base + db.opts.vgroups {
                let n = db.tables.values().filter(|t| t.vgroup == v).count();
                t.row(vec![
                    Value::Int(v as i32),
                    s(&db.name),
                    Value::Int(n as i32),
                ]);
            }
            Ok(t.into_result(Precision::Millisecond))
        }
        Statement::ShowTopics => {
            Ok(ins_topics(cat, env.profile).into_result(Precision::Millisecond))
        }
        Statement::ShowGrants => Ok(grants().into_result(Precision::Millisecond)),
        Statement::ShowDnodes => Ok(ins_dnodes(cat).into_result(Precision::Millisecond)),
        Statement::ShowSubscriptions => {
            Ok(ins_subscriptions(cat).into_result(Precision::Millisecond))
        }
        _ => Err(EmuError::new(code::INVALID_OPERATION, "Invalid operation")),
    }
}
