//! Execution of DDL, INSERT, DELETE and raw-block writes.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Outcome;
use super::catalog::{
    Catalog, Db, DbOptions, STable, Table, TableKind, db_not_exist, table_not_exist,
};
use super::convert::{Ctx, expr_to_value};
use super::expr::{Scope, bind, eval_bool};
use super::table::TableData;
use super::wal::{self, WalBody, alter_type};
use super::wal_files as files;
use crate::error::{EmuError, code};
use crate::raw_block::RawBlock;
use crate::sql::ast::{AlterAction, CreateChild, Expr, InsertTarget, Name, Statement};
use crate::types::{ColumnData, Field, Ty, Value};
use crate::walfile::{CreateKind, CreateTable, Msg, RowFormat, SubmitTable};

/// What a statement needs from its connection and the store.
#[derive(Debug, Clone, Copy)]
pub struct Env<'s> {
    /// The session's current database.
    pub db: Option<&'s str>,
    /// Now, in nanoseconds.
    pub now_ns: i64,
    /// Server version string.
    pub server_version: &'s str,
    /// The login user (for `ins_users`).
    pub user: &'s str,
    /// The behaviour set of that version.
    pub profile: crate::Profile,
}

impl Env<'_> {
    /// The database a name refers to.
    pub fn db_of<'n>(&'n self, name: &'n Name) -> Result<&'n str, EmuError> {
        match (&name.db, self.db) {
            (Some(d), _) => Ok(d),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(EmuError::new(
                code::DB_NOT_SPECIFIED,
                "Database not specified",
            )),
        }
    }

    /// Now in milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.now_ns.div_euclid(1_000_000)
    }
}

/// Executes a statement that changes the catalog.
pub fn execute(cat: &mut Catalog, env: &Env<'_>, stmt: Statement<'_>) -> Result<Outcome, EmuError> {
    match stmt {
        Statement::CreateDatabase {
            if_not_exists,
            name,
            options,
        } => {
            if cat.dbs.contains_key(&name) {
                if if_not_exists {
                    return Ok(Outcome::Affected(0));
                }
                return Err(EmuError::new(
                    code::DB_ALREADY_EXIST,
                    "Database already exists",
                ));
            }
            check_name(&name)?;
            let mut opts = DbOptions::default();
            opts.apply(&options, env.profile)?;
            let vgroup_base = cat.next_vgroup.max(2);
            cat.next_vgroup = vgroup_base.saturating_add(opts.vgroups);
            let mut db = Db {
                name: name.clone(),
                opts,
                create_time: env.now_ms(),
                vgroup_base,
                stables: BTreeMap::new(),
                tables: BTreeMap::new(),
                wal: BTreeMap::new(),
                files: BTreeMap::new(),
            };
            if let Some(cfg) = &cat.wal_files {
                // TDengine creates the vnodes (and their WALs) with the database.
                db.create_files(cfg)?;
            }
            cat.dbs.insert(name, db);
            Ok(Outcome::Affected(0))
        }
        Statement::AlterDatabase { name, options } => {
            let db = cat.db_mut(&name)?;
            let mut opts = db.opts.clone();
            opts.apply(&options, env.profile)?;
            if opts.precision != db.opts.precision || opts.vgroups != db.opts.vgroups {
                return Err(EmuError::new(
                    code::INVALID_DB_OPTION,
                    "Invalid option: PRECISION and VGROUPS cannot be altered",
                ));
            }
            db.opts = opts;
            Ok(Outcome::Affected(0))
        }
        Statement::CreateStable {
            if_not_exists,
            name,
            columns,
            tags,
            comment,
            virtual_stable,
        } => {
            if virtual_stable {
                check_virtual(env)?;
            }
            let dbn = env.db_of(&name)?.to_string();
            check_schema(env, &columns, &tags)?;
            let uid = cat.uid();
            let db = cat.db_mut(&dbn)?;
            if !db.name_is_free(&name.name, if_not_exists, code::STB_ALREADY_EXIST)? {
                return Ok(Outcome::Affected(0));
            }
            check_name(&name.name)?;
            let now = env.now_ms();
            let meta = wal::create_super(&name.name, &columns, &tags);
            let msg = Msg::CreateStable {
                name: name.name.clone(),
                suid: uid,
            };
            db.log_all(env.now_ns, &WalBody::Meta(meta), &msg)?;
            db.stables.insert(
                name.name.clone(),
                STable {
                    name: name.name,
                    uid,
                    create_time: now,
                    last_update: now,
                    columns,
                    tags,
                    comment,
                    version: 1,
                    tag_version: 1,
                    is_virtual: virtual_stable,
                },
            );
            Ok(Outcome::Affected(0))
        }
        Statement::CreateTable {
            if_not_exists,
            name,
            columns,
            comment,
            ttl,
            virtual_table,
        } => {
            if virtual_table {
                check_virtual(env)?;
            }
            let dbn = env.db_of(&name)?.to_string();
            check_schema(env, &columns, &[])?;
            let uid = cat.uid();
            let db = cat.db_mut(&dbn)?;
            if !db.name_is_free(&name.name, if_not_exists, code::TABLE_ALREADY_EXIST)? {
                return Ok(Outcome::Affected(0));
            }
            check_name(&name.name)?;
            let vgroup = db.vgroup_of(&name.name);
            let data = TableData::new(&columns);
            let meta = wal::create_normal(&name.name, &columns);
            let msg = files::create_table(&name.name, uid, None);
            db.log(vgroup, env.now_ns, WalBody::Meta(meta), msg)?;
            db.tables.insert(
                name.name.clone(),
                Table {
                    name: name.name,
                    uid,
                    create_time: env.now_ms(),
                    vgroup,
                    ttl: ttl.unwrap_or(0),
                    comment,
                    version: 1,
                    kind: TableKind::Normal { columns },
                    data,
                    is_virtual: virtual_table,
                },
            );
            Ok(Outcome::Affected(0))
        }
        Statement::CreateChildren(children) => {
            // TDengine sends one TDMT_VND_CREATE_TABLE batch per vgroup; its meta message
            // lists the batch in `createList` (clientRawBlockWrite.c buildCreateCTableJson).
            let mut batches: BTreeMap<(String, u32), (Vec<serde_json::Value>, Vec<Msg>)> =
                BTreeMap::new();
            for c in &children {
                if let Some((dbn, vgroup, meta, msg)) = create_child(cat, env, c)? {
                    let b = batches.entry((dbn, vgroup)).or_default();
                    b.0.push(meta);
                    b.1.push(msg);
                }
            }
            for ((dbn, vgroup), (metas, msgs)) in batches {
                let Some(meta) = wal::create_children(&metas) else {
                    continue;
                };
                let db = cat.db_mut(&dbn)?;
                db.log(vgroup, env.now_ns, WalBody::Meta(meta), merge_creates(msgs))?;
            }
            Ok(Outcome::Affected(0))
        }
        Statement::DropTable { if_exists, names } => drop_tables(cat, env, if_exists, &names),
        Statement::DropStable { if_exists, name } => {
            let dbn = env.db_of(&name)?.to_string();
            let db = cat.db_mut(&dbn)?;
            if !db.stables.contains_key(&name.name) {
                if if_exists {
                    return Ok(Outcome::Affected(0));
                }
                return Err(EmuError::new(code::STB_NOT_EXIST, "STable not exist"));
            }
            drop_stable(db, &name.name, env.now_ns)?;
            Ok(Outcome::Affected(0))
        }
        Statement::Alter {
            stable,
            name,
            action,
        } => alter(cat, env, stable, &name, action),
        Statement::Insert(targets) => insert(cat, env, &targets).map(Outcome::Affected),
        Statement::Delete { table, filter } => delete(cat, env, &table, filter.as_ref()),
        Statement::Use(_)
        | Statement::DropDatabase { .. }
        | Statement::Select(_)
        | Statement::ShowDatabases
        | Statement::ShowStables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowCreateDatabase(_)
        | Statement::ShowCreateTable { .. }
        | Statement::Describe(_)
        | Statement::ShowVgroups(_)
        | Statement::CreateTopic { .. }
        | Statement::DropTopic { .. }
        | Statement::ShowTopics
        | Statement::ShowGrants
        | Statement::ShowDnodes
        | Statement::ShowSubscriptions
        | Statement::PurgeWal { .. } => {
            Err(EmuError::new(code::INVALID_OPERATION, "Invalid operation"))
        }
    }
}

/// `DROP DATABASE`.
pub fn drop_database(cat: &mut Catalog, if_exists: bool, name: &str) -> Result<Outcome, EmuError> {
    if cat.tmq.topics.values().any(|t| t.db == name) {
        return Err(EmuError::new(
            code::TOPIC_MUST_BE_DROPPED,
            "Topic must be dropped first",
        ));
    }
    match cat.dbs.remove(name) {
        Some(mut db) => db.remove_files()?,
        None if !if_exists => return Err(db_not_exist(name)),
        None => {}
    }
    Ok(Outcome::Affected(0))
}

/// `DROP TABLE [IF EXISTS] a, b, …`. Every name is resolved before anything is dropped (the
/// client's parser reads every table's meta first). The child and normal tables are dropped
/// with one `TDMT_VND_DROP_TABLE` request per vgroup listing them all (the client groups a
/// drop statement's tables by vgroup), so each vgroup logs one entry whose meta message
/// lists the batch (`processDropTable`, `client/src/clientRawBlockWrite.c`). Super tables
/// named here are dropped as `DROP STABLE` does.
fn drop_tables(
    cat: &mut Catalog,
    env: &Env<'_>,
    if_exists: bool,
    names: &[Name],
) -> Result<Outcome, EmuError> {
    let mut stables: Vec<(String, String)> = Vec::new();
    // (db, vgroup) → (names, WAL-file requests), in statement order.
    let mut batches: BTreeMap<(String, u32), (Vec<String>, Vec<crate::walfile::DropTable>)> =
        BTreeMap::new();
    let mut seen = HashSet::new();
    for n in names {
        let dbn = env.db_of(n)?.to_string();
        if !seen.insert((dbn.clone(), n.name.clone())) {
            continue;
        }
        let db = cat.db_mut(&dbn)?;
        match db.tables.get(&n.name) {
            Some(t) => {
                let b = batches.entry((dbn.clone(), t.vgroup)).or_default();
                b.0.push(t.name.clone());
                b.1.push(crate::walfile::DropTable {
                    name: t.name.clone(),
                    uid: t.uid,
                    suid: db.suid_of(t),
                });
            }
            None if db.stables.contains_key(&n.name) => stables.push((dbn, n.name.clone())),
            None if if_exists => {}
            None => return Err(table_not_exist(&n.name)),
        }
    }
    for ((dbn, vgroup), (tables, reqs)) in batches {
        let db = cat.db_mut(&dbn)?;
        let meta = wal::drop_tables(&tables);
        db.log(
            vgroup,
            env.now_ns,
            WalBody::Meta(meta),
            Msg::DropTables(reqs),
        )?;
        for t in &tables {
            db.tables.remove(t);
        }
    }
    for (dbn, name) in stables {
        let db = cat.db_mut(&dbn)?;
        if db.stables.contains_key(&name) {
            drop_stable(db, &name, env.now_ns)?;
        }
    }
    Ok(Outcome::Affected(0))
}

fn drop_stable(db: &mut Db, name: &str, now_ns: i64) -> Result<(), EmuError> {
    let suid = db.stables.get(name).map_or(0, |s| s.uid);
    let msg = Msg::DropStable {
        name: name.to_string(),
        suid,
    };
    db.log_all(now_ns, &WalBody::Meta(wal::drop_super(name)), &msg)?;
    db.stables.remove(name);
    db.tables.retain(|_, t| t.stable() != Some(name));
    Ok(())
}

fn check_name(name: &str) -> Result<(), EmuError> {
    if name.is_empty() || name.len() > 192 {
        return Err(EmuError::new(
            code::INVALID_IDENTIFIER,
            format!("Invalid identifier name: {name}"),
        ));
    }
    Ok(())
}

/// Virtual tables hold no rows: writes are refused (TSDB_CODE_VTABLE_NOT_SUPPORT_STMT,
/// include/util/taoserror.h; the exact code TDengine returns for an INSERT was not checked).
fn virtual_write() -> EmuError {
    EmuError::new(0x6205, "Virtual table not support in this statement")
}

/// Virtual tables and virtual super tables exist from TDengine 3.3.6 (`CREATE VTABLE` in
/// sql.y, `VIRTUAL_NORMAL_TABLE`/`VIRTUAL_CHILD_TABLE` in source/common/src/systable.c); older
/// versions' grammar has no such statement.
fn check_virtual(env: &Env<'_>) -> Result<(), EmuError> {
    if env.profile < crate::Profile::V3_3_6 {
        return Err(EmuError::syntax("VTABLE"));
    }
    Ok(())
}

/// DECIMAL columns exist from TDengine 3.3.6.0 (taosAdapter ver-3.3.6.0 `feat: support
/// decimal`), BLOB columns from 3.3.7.0 (taosAdapter ver-3.3.7.0 `rawConvertBlob`); older
/// grammars do not know the words. Neither can be a tag (`TSDB_CODE_BLOB_NOT_SUPPORT_TAG` in
/// parInsertSql.c for BLOB; the error code for a DECIMAL tag was not checked).
fn check_types(env: &Env<'_>, columns: &[Field], tags: &[Field]) -> Result<(), EmuError> {
    for f in columns.iter().chain(tags) {
        if f.ty.is_decimal() && env.profile < crate::Profile::V3_3_6 {
            return Err(EmuError::syntax("DECIMAL"));
        }
        if f.ty == Ty::Blob && !crate::profile::has_blob(env.server_version) {
            return Err(EmuError::syntax("BLOB"));
        }
    }
    if let Some(t) = tags.iter().find(|t| t.ty.is_decimal() || t.ty == Ty::Blob) {
        return Err(EmuError::new(
            code::INVALID_COLUMN,
            format!(
                "{} type is not supported for tag {}",
                t.ty.sql_name(),
                t.name
            ),
        ));
    }
    Ok(())
}

fn check_schema(env: &Env<'_>, columns: &[Field], tags: &[Field]) -> Result<(), EmuError> {
    check_types(env, columns, tags)?;
    match columns.first() {
        Some(f) if f.ty == Ty::Timestamp => {}
        _ => {
            return Err(EmuError::new(
                code::INVALID_COLUMN,
                "The first column should be primary timestamp column",
            ));
        }
    }
    let mut seen = HashSet::new();
    for f in columns.iter().chain(tags) {
        if !seen.insert(f.name.to_ascii_lowercase()) {
            return Err(EmuError::new(
                code::DUPLICATED_COLUMN,
                "Duplicated column names",
            ));
        }
    }
    // Composite keys (TDengine 3.3+; codes from include/util/taoserror.h): only the second
    // column, only an integer or VARCHAR type (the CREATE TABLE documentation: "integer or
    // string (varchar)"; INT, BIGINT and their UNSIGNED forms here), never a tag.
    if tags.iter().any(|t| t.primary_key) {
        return Err(EmuError::new(0x2677, "tag can not be primary key"));
    }
    for (i, f) in columns.iter().enumerate().filter(|(_, f)| f.primary_key) {
        if i != 1 {
            return Err(EmuError::new(
                0x2678,
                "primary key column must be second column",
            ));
        }
        if !matches!(
            f.ty,
            Ty::Int | Ty::BigInt | Ty::UInt | Ty::UBigInt | Ty::VarChar
        ) {
            return Err(EmuError::new(
                0x2679,
                "primary key column must be of type int, uint, bigint, ubigint, and varchar",
            ));
        }
    }
    if tags.iter().any(|t| t.ty == Ty::Json) && tags.len() != 1 {
        return Err(EmuError::new(
            code::ONLY_ONE_JSON_TAG,
            "Only one tag if there is a json tag",
        ));
    }
    Ok(())
}

/// Tag values for a child table from `TAGS (...)` with optional tag names.
/// A value of an INSERT (a row value, or a tag of `USING … TAGS`): TDengine's insert parser
/// reads the string `'null'` (any case) as NULL for a column or tag that is not a string type
/// (`parInsertSql.c`: `isNullValue` = `TK_NULL`, or `!IS_STR_DATA_TYPE(type) &&
/// isNullStr(token)`; string types are VARCHAR/BINARY, NCHAR and VARBINARY).
fn insert_value(e: &Expr<'_>, field: &Field, ctx: &Ctx) -> Result<Value, EmuError> {
    if let Expr::Lit(crate::sql::ast::Lit::Str(s)) = e {
        let string_type = matches!(field.ty, Ty::VarChar | Ty::NChar | Ty::VarBinary);
        if !string_type && s.eq_ignore_ascii_case("null") {
            return Ok(Value::Null);
        }
    }
    expr_to_value(e, field, ctx)
}

fn tag_values(
    st: &STable,
    names: Option<&[String]>,
    exprs: &[Expr<'_>],
    ctx: &Ctx,
    insert: bool,
) -> Result<Vec<Value>, EmuError> {
    let value = |e: &Expr<'_>, f: &Field| {
        if insert {
            insert_value(e, f, ctx)
        } else {
            expr_to_value(e, f, ctx)
        }
    };
    let mismatch = || EmuError::new(code::TAGS_NOT_MATCHED, "Tags number not matched");
    let mut out = vec![Value::Null; st.tags.len()];
    match names {
        Some(names) => {
            if names.len() != exprs.len() {
                return Err(mismatch());
            }
            for (n, e) in names.iter().zip(exprs) {
                let i = st.tags.iter().position(|t| &t.name == n).ok_or_else(|| {
                    EmuError::new(code::INVALID_TAG_NAME, format!("Invalid tag name: {n}"))
                })?;
                out[i] = value(e, &st.tags[i])?;
            }
        }
        None => {
            if exprs.len() != st.tags.len() {
                return Err(mismatch());
            }
            for (i, e) in exprs.iter().enumerate() {
                out[i] = value(e, &st.tags[i])?;
            }
        }
    }
    Ok(out)
}

/// One create request of a batch: database, vgroup, meta JSON and WAL-file message.
type CreatedChild = (String, u32, serde_json::Value, Msg);

/// Creates a child table; returns what the caller logs (batched per vgroup), or `None`
/// when `IF NOT EXISTS` found it.
fn create_child(
    cat: &mut Catalog,
    env: &Env<'_>,
    c: &CreateChild<'_>,
) -> Result<Option<CreatedChild>, EmuError> {
    let dbn = env.db_of(&c.name)?.to_string();
    let stdb = c.stable.db.as_deref().unwrap_or(&dbn);
    if stdb != dbn {
        return Err(EmuError::new(
            code::INVALID_OPERATION,
            "Child table and super table must be in the same database",
        ));
    }
    let uid = cat.uid();
    let db = cat.db_mut(&dbn)?;
    if !db.name_is_free(&c.name.name, c.if_not_exists, code::TABLE_ALREADY_EXIST)? {
        return Ok(None);
    }
    check_name(&c.name.name)?;
    let st = db
        .stables
        .get(&c.stable.name)
        .ok_or_else(|| table_not_exist(&c.stable.name))?;
    if c.virtual_table {
        check_virtual(env)?;
    }
    if c.virtual_table != st.is_virtual {
        // TSDB_CODE_PAR_MISMATCH_STABLE_TYPE (include/util/taoserror.h).
        return Err(EmuError::new(
            0x2690,
            "Create child table using virtual super table in normal child table statement \
             or vice versa",
        ));
    }
    let ctx = Ctx::new(db.opts.precision, env.now_ns);
    let tags = tag_values(st, c.tag_names.as_deref(), &c.tags, &ctx, false)?;
    let data = TableData::new(&st.columns);
    let vgroup = db.vgroup_of(&c.name.name);
    if let Some(f) = db.files.get(&vgroup) {
        // Refuse before creating anything when the WAL files are out of step.
        f.check()?;
    }
    let meta = wal::create_child(&c.name.name, &st.name, &st.tags, &tags);
    let msg = files::create_table(&c.name.name, uid, Some((&st.name, st.uid)));
    db.tables.insert(
        c.name.name.clone(),
        Table {
            name: c.name.name.clone(),
            uid,
            create_time: env.now_ms(),
            vgroup,
            ttl: c.ttl.unwrap_or(0),
            comment: c.comment.clone(),
            version: 1,
            kind: TableKind::Child {
                stable: c.stable.name.clone(),
                tags,
            },
            data,
            is_virtual: c.virtual_table,
        },
    );
    Ok(Some((dbn, vgroup, meta, msg)))
}

/// One `TDMT_VND_CREATE_TABLE` message of several create requests.
fn merge_creates(msgs: Vec<Msg>) -> Msg {
    let mut all = Vec::new();
    for m in msgs {
        match m {
            Msg::CreateTables(list) => all.extend(list),
            other => return other,
        }
    }
    Msg::CreateTables(all)
}

/// The data columns of a table.
pub fn table_columns<'d>(db: &'d Db, t: &'d Table) -> &'d [Field] {
    match &t.kind {
        TableKind::Normal { columns } => columns,
        TableKind::Child { stable, .. } => db.stables.get(stable).map_or(&[], |s| &s.columns),
    }
}

fn keep_error() -> EmuError {
    EmuError::new(code::TIMESTAMP_OUT_OF_RANGE, "Timestamp data out of range")
}

/// The oldest timestamp KEEP accepts, in the database precision.
fn keep_floor(db: &Db, ctx: &Ctx) -> i64 {
    ctx.ns_to_prec(ctx.now_ns.saturating_sub(db.opts.keep_ns()))
}

/// A child table an INSERT creates.
struct NewChild {
    db: String,
    name: String,
    stable: String,
    tags: Vec<Value>,
}

fn invalid_column(c: &str) -> EmuError {
    EmuError::new(code::INVALID_COLUMN, format!("Invalid column name: {c}"))
}

fn ts_required() -> EmuError {
    EmuError::new(
        code::INVALID_COLUMN,
        "Primary timestamp column should not be null",
    )
}

/// Converts rows into a batch of `schema` columns; `map[k]` is the schema column of value
/// position `k` (`None` for positions that are not data columns).
fn build_batch<'r, 'a: 'r>(
    schema: &[Field],
    map: &[Option<usize>],
    rows: impl Iterator<Item = &'r [Expr<'a>]>,
    capacity: usize,
    ctx: &Ctx,
    floor: i64,
) -> Result<Vec<ColumnData>, EmuError> {
    let mut cols: Vec<ColumnData> = schema
        .iter()
        .map(|f| ColumnData::with_capacity(f.ty, capacity))
        .collect();
    let mut present = vec![false; schema.len()];
    for i in map.iter().flatten() {
        present[*i] = true;
    }
    if !present.first().copied().unwrap_or(false) {
        return Err(ts_required());
    }
    for row in rows {
        for (e, i) in row.iter().zip(map) {
            let Some(i) = *i else { continue };
            let v = insert_value(e, &schema[i], ctx)?;
            if i == 0 {
                match v {
                    Value::Timestamp(ts) if ts < floor => return Err(keep_error()),
                    Value::Timestamp(_) => {}
                    _ => return Err(ts_required()),
                }
            }
            if v.is_null() && schema[i].primary_key {
                return Err(EmuError::new(
                    super::bind::PRIMARY_KEY_IS_NULL,
                    "Primary key column should not be null",
                ));
            }
            cols[i].push(v);
        }
        for (i, c) in cols.iter_mut().enumerate() {
            if !present[i] {
                if schema[i].primary_key {
                    return Err(EmuError::new(
                        super::bind::PRIMARY_KEY_IS_NULL,
                        "Primary key column should not be null",
                    ));
                }
                c.push_null();
            }
        }
    }
    Ok(cols)
}

fn check_width(t: &InsertTarget<'_>, n: usize) -> Result<(), EmuError> {
    if n != t.width {
        return Err(EmuError::new(
            code::INVALID_COLUMN,
            "Illegal number of columns",
        ));
    }
    Ok(())
}

fn insert(
    cat: &mut Catalog,
    env: &Env<'_>,
    targets: &[InsertTarget<'_>],
) -> Result<usize, EmuError> {
    // Phase 1: resolve and convert everything, so that a bad value writes nothing.
    // (database, table, rows, the target named a super table: the submit carries an
    // auto-create request for it).
    let mut batches: Vec<(String, String, Vec<ColumnData>, bool)> =
        Vec::with_capacity(targets.len());
    let mut creates: Vec<NewChild> = Vec::new();
    let mut pending: HashMap<(String, String), (String, Vec<Field>)> = HashMap::new();
    for t in targets {
        let dbn = env.db_of(&t.table)?.to_string();
        let db = cat.db(&dbn)?;
        let ctx = Ctx::new(db.opts.precision, env.now_ns);
        let floor = keep_floor(db, &ctx);
        let width = t.width.max(1);
        let is_virtual = db.tables.get(&t.table.name).is_some_and(|t| t.is_virtual)
            || db.stables.get(&t.table.name).is_some_and(|s| s.is_virtual);
        if is_virtual {
            return Err(virtual_write());
        }
        if let Some(st) = db.stables.get(&t.table.name) {
            // INSERT INTO stb (tbname, cols…, tags…) VALUES (…): one child per tbname value.
            let cols = match &t.columns {
                Some(c) if t.using.is_none() && c.iter().any(|n| n == "tbname") => c,
                _ => {
                    return Err(EmuError::new(
                        code::INVALID_OPERATION,
                        "insert into a super table needs a column list with tbname",
                    ));
                }
            };
            check_width(t, cols.len())?;
            let mut map: Vec<Option<usize>> = Vec::with_capacity(cols.len());
            let mut tag_pos: Vec<(usize, usize)> = Vec::new();
            let mut name_pos = 0;
            let mut seen = HashSet::new();
            for (k, c) in cols.iter().enumerate() {
                if !seen.insert(c.as_str()) {
                    return Err(EmuError::new(
                        code::DUPLICATED_COLUMN,
                        "Duplicated column names",
                    ));
                }
                if c == "tbname" {
                    name_pos = k;
                    map.push(None);
                } else if let Some(i) = st.columns.iter().position(|f| &f.name == c) {
                    map.push(Some(i));
                } else if let Some(j) = st.tags.iter().position(|f| &f.name == c) {
                    tag_pos.push((k, j));
                    map.push(None);
                } else {
                    return Err(invalid_column(c));
                }
            }
            // Group rows by child name, keeping first-seen order.
            let mut order: Vec<String> = Vec::new();
            let mut groups: HashMap<String, (Vec<Value>, Vec<&[Expr<'_>]>)> = HashMap::new();
            let name_field = Field::new("tbname", Ty::VarChar, 192);
            for row in t.values.chunks(width) {
                let name = match expr_to_value(&row[name_pos], &name_field, &ctx)? {
                    Value::VarChar(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
                    _ => {
                        return Err(EmuError::new(
                            code::INVALID_OPERATION,
                            "tbname must be a non-empty string",
                        ));
                    }
                };
                let entry = match groups.get_mut(&name) {
                    Some(e) => e,
                    None => {
                        let mut tags = vec![Value::Null; st.tags.len()];
                        for &(k, j) in &tag_pos {
                            tags[j] = expr_to_value(&row[k], &st.tags[j], &ctx)?;
                        }
                        order.push(name.clone());
                        groups.entry(name.clone()).or_insert((tags, Vec::new()))
                    }
                };
                entry.1.push(row);
            }
            for name in order {
                let Some((tags, rows)) = groups.remove(&name) else {
                    continue;
                };
                let key = (dbn.clone(), name.clone());
                match (db.tables.get(&name), pending.get(&key)) {
                    (Some(tb), _) if tb.stable() == Some(st.name.as_str()) => {}
                    (None, Some((s, _))) if *s == st.name => {}
                    (None, None) => {
                        check_name(&name)?;
                        pending.insert(key, (st.name.clone(), st.columns.clone()));
                        creates.push(NewChild {
                            db: dbn.clone(),
                            name: name.clone(),
                            stable: st.name.clone(),
                            tags,
                        });
                    }
                    _ => {
                        return Err(EmuError::new(
                            code::INVALID_OPERATION,
                            format!("table {name} is not a child table of {}", st.name),
                        ));
                    }
                }
                let n = rows.len();
                let batch = build_batch(&st.columns, &map, rows.into_iter(), n, &ctx, floor)?;
                batches.push((dbn.clone(), name, batch, true));
            }
            continue;
        }
        let key = (dbn.clone(), t.table.name.clone());
        let schema: Vec<Field> = if let Some(tb) = db.tables.get(&t.table.name) {
            table_columns(db, tb).to_vec()
        } else if let Some((_, s)) = pending.get(&key) {
            s.clone()
        } else if let Some(u) = &t.using {
            let st = db
                .stables
                .get(&u.stable.name)
                .ok_or_else(|| table_not_exist(&u.stable.name))?;
            if u.stable.db.as_deref().is_some_and(|d| d != dbn) {
                return Err(EmuError::new(
                    code::INVALID_OPERATION,
                    "Child table and super table must be in the same database",
                ));
            }
            let tags = tag_values(st, u.tag_names.as_deref(), &u.tags, &ctx, true)?;
            check_name(&t.table.name)?;
            creates.push(NewChild {
                db: dbn.clone(),
                name: t.table.name.clone(),
                stable: st.name.clone(),
                tags,
            });
            pending.insert(key.clone(), (st.name.clone(), st.columns.clone()));
            st.columns.clone()
        } else {
            return Err(table_not_exist(&t.table.name));
        };
        // Map value positions to schema columns.
        let map: Vec<Option<usize>> = match &t.columns {
            Some(cols) => {
                let mut seen = HashSet::new();
                let mut m = Vec::with_capacity(cols.len());
                for c in cols {
                    let i = schema
                        .iter()
                        .position(|f| &f.name == c)
                        .ok_or_else(|| invalid_column(c))?;
                    if !seen.insert(i) {
                        return Err(EmuError::new(
                            code::DUPLICATED_COLUMN,
                            "Duplicated column names",
                        ));
                    }
                    m.push(Some(i));
                }
                m
            }
            None => (0..schema.len()).map(Some).collect(),
        };
        check_width(t, map.len())?;
        let rows = t.values.len() / width;
        let batch = build_batch(&schema, &map, t.values.chunks(width), rows, &ctx, floor)?;
        batches.push((dbn, t.table.name.clone(), batch, t.using.is_some()));
    }
    // Phase 2: create. An insert that creates a table logs no entry of its own: the create
    // request travels inside the submit (`SUBMIT_REQ_AUTO_CREATE_TABLE`) and the vnode
    // creates the table while applying it (`vnodeSvr.c`, `vnodeProcessSubmitReq`).
    for c in creates {
        let uid = cat.uid();
        let db = cat.db_mut(&c.db)?;
        if db.tables.contains_key(&c.name) {
            continue;
        }
        let columns = db
            .stables
            .get(&c.stable)
            .map(|s| s.columns.clone())
            .ok_or_else(|| table_not_exist(&c.stable))?;
        let vgroup = db.vgroup_of(&c.name);
        if let Some(f) = db.files.get(&vgroup) {
            // Refuse before creating anything when the WAL files are out of step.
            f.check()?;
        }
        db.tables.insert(
            c.name.clone(),
            Table {
                name: c.name,
                uid,
                create_time: env.now_ms(),
                vgroup,
                ttl: 0,
                comment: None,
                version: 1,
                kind: TableKind::Child {
                    stable: c.stable,
                    tags: c.tags,
                },
                data: TableData::new(&columns),
                is_virtual: false,
            },
        );
    }
    // Phase 3: write. The client sends one submit request per vgroup holding every table of
    // the statement in that vgroup (`SSubmitReq2`, one `SSubmitTbData` per table): one log
    // entry per vgroup, one block per table.
    type Group = (
        Vec<wal::DataBlock>,
        Vec<SubmitTable>,
        Vec<(String, Vec<ColumnData>)>,
    );
    let mut per_vgroup: BTreeMap<(String, u32), Group> = BTreeMap::new();
    let spill = std::sync::Arc::clone(&cat.wal_spill);
    for (dbn, tn, cols, auto_create) in batches {
        let db = cat.db_mut(&dbn)?;
        let t = db.tables.get(&tn).ok_or_else(|| table_not_exist(&tn))?;
        let (vgroup, uid, suid) = (t.vgroup, t.uid, db.suid_of(t));
        let created = match (&t.kind, auto_create) {
            (TableKind::Child { stable, tags }, true) => {
                let tag_fields = db.stables.get(stable).map(|s| s.tags.as_slice());
                let req = CreateTable {
                    name: tn.clone(),
                    uid,
                    kind: CreateKind::Child {
                        stable: stable.clone(),
                        suid,
                    },
                };
                // tqProcessSubData passes the request on only for a table created at most
                // 1000 ms before the submit.
                let fresh = env.now_ms() - t.create_time <= 1000;
                let auto = fresh.then(|| wal::AutoCreate {
                    json: wal::create_child(&tn, stable, tag_fields.unwrap_or(&[]), tags),
                    req: crate::walfile::create_table_req(&req),
                });
                Some((req, auto))
            }
            _ => None,
        };
        let file_table = SubmitTable {
            uid,
            suid,
            format: RowFormat::Rows,
            timestamps: present_timestamps(&cols),
            auto_create: created.as_ref().map(|(req, _)| req.clone()),
        };
        // With WAL_RETENTION_PERIOD 0 the entry is purged at once: skip keeping the rows.
        let block = wal::DataBlock::new(
            tn.clone(),
            table_columns(db, t).to_vec(),
            db.opts.precision,
            &cols,
            db.opts.wal_retention_period != 0,
            created.and_then(|(_, json)| json),
            &spill,
        );
        let entry = per_vgroup.entry((dbn.clone(), vgroup)).or_default();
        entry.0.push(block);
        entry.1.push(file_table);
        entry.2.push((tn, cols));
    }
    let mut total = 0;
    for ((dbn, vgroup), (blocks, tables, rows)) in per_vgroup {
        let db = cat.db_mut(&dbn)?;
        db.log(
            vgroup,
            env.now_ns,
            WalBody::Data(blocks),
            Msg::Submit(tables),
        )?;
        for (tn, cols) in rows {
            let t = db.tables.get_mut(&tn).ok_or_else(|| table_not_exist(&tn))?;
            total += t.data.merge(cols);
        }
    }
    Ok(total)
}

fn delete(
    cat: &mut Catalog,
    env: &Env<'_>,
    name: &Name,
    filter: Option<&Expr<'_>>,
) -> Result<Outcome, EmuError> {
    let dbn = env.db_of(name)?.to_string();
    let db = cat.db_mut(&dbn)?;
    let ctx = Ctx::new(db.opts.precision, env.now_ns);
    let (scope, targets): (Scope, Vec<String>) = if let Some(t) = db.tables.get(&name.name) {
        let cols = table_columns(db, t).to_vec();
        let tags = match t.stable().and_then(|s| db.stables.get(s)) {
            Some(s) => s.tags.clone(),
            None => Vec::new(),
        };
        (Scope::new(cols, tags), vec![name.name.clone()])
    } else if let Some(st) = db.stables.get(&name.name) {
        let names = db
            .tables
            .values()
            .filter(|t| t.stable() == Some(name.name.as_str()))
            .map(|t| t.name.clone())
            .collect();
        (Scope::new(st.columns.clone(), st.tags.clone()), names)
    } else {
        return Err(table_not_exist(&name.name));
    };
    let pred = match filter {
        Some(f) => Some(bind(f, &scope, &ctx)?),
        None => None,
    };
    let mut total = 0;
    for tn in targets {
        let Some(t) = db.tables.get_mut(&tn) else {
            continue;
        };
        let tags: Vec<Value> = match &t.kind {
            TableKind::Child { tags, .. } => tags.clone(),
            TableKind::Normal { .. } => Vec::new(),
        };
        let n = t.data.len();
        let mask: Vec<bool> = match &pred {
            None => vec![true; n],
            Some(p) => (0..n)
                .map(|r| eval_bool(p, &t.data.cols, r, &tags, &t.name))
                .collect::<Result<_, _>>()?,
        };
        // One log entry per run of consecutive deleted rows: an exact time range each.
        let ts = t.data.ts();
        let mut runs: Vec<(i64, i64)> = Vec::new();
        let mut open: Option<(i64, i64)> = None;
        for (r, del) in mask.iter().enumerate() {
            let stamp = ts.get(r).copied();
            match (del, stamp, open.as_mut()) {
                (true, Some(x), Some(run)) => run.1 = x,
                (true, Some(x), None) => open = Some((x, x)),
                _ => runs.extend(open.take()),
            }
        }
        runs.extend(open.take());
        let (tname, vgroup, uid) = (t.name.clone(), t.vgroup, t.uid);
        let ts_col = scope
            .cols
            .first()
            .map_or_else(|| "ts".to_string(), |f| f.name.clone());
        total += t.data.delete_mask(&mask);
        let suid = db.tables.get(&tn).map_or(0, |t| db.suid_of(t));
        for (a, b) in runs {
            let meta = wal::delete(&tname, &ts_col, a, b);
            let msg = files::delete(&dbn, &tname, uid, suid, a, b);
            db.log(vgroup, env.now_ns, WalBody::Meta(meta), msg)?;
        }
    }
    Ok(Outcome::Affected(total))
}

fn alter(
    cat: &mut Catalog,
    env: &Env<'_>,
    stable: bool,
    name: &Name,
    action: AlterAction<'_>,
) -> Result<Outcome, EmuError> {
    let dbn = env.db_of(name)?.to_string();
    let db = cat.db_mut(&dbn)?;
    let now = env.now_ms();
    let ctx = Ctx::new(db.opts.precision, env.now_ns);
    let col_exists = || EmuError::new(code::COLUMN_ALREADY_EXIST, "Column already exists");
    let col_missing = |c: &str| {
        EmuError::new(
            code::COLUMN_NOT_EXIST,
            format!("Column does not exist: {c}"),
        )
    };
    let is_stable = db.stables.contains_key(&name.name);
    if is_stable {
        let st = db
            .stables
            .get_mut(&name.name)
            .ok_or_else(|| table_not_exist(&name.name))?;
        let sname = st.name.clone();
        let taken = |st: &STable, n: &str| st.columns.iter().chain(&st.tags).any(|f| f.name == n);
        let meta: Option<serde_json::Value>;
        match action {
            AlterAction::AddColumn(f) => {
                if taken(st, &f.name) {
                    return Err(col_exists());
                }
                meta = Some(wal::alter_field(
                    "super",
                    &sname,
                    alter_type::ADD_COLUMN,
                    &f,
                ));
                let ty = f.ty;
                st.columns.push(f);
                st.version += 1;
                st.last_update = now;
                for t in db
                    .tables
                    .values_mut()
                    .filter(|t| t.stable() == Some(sname.as_str()))
                {
                    t.data.add_column(ty);
                }
            }
            AlterAction::DropColumn(c) => {
                let i = st
                    .columns
                    .iter()
                    .position(|f| f.name == c)
                    .ok_or_else(|| col_missing(&c))?;
                if i == 0 {
                    return Err(EmuError::new(
                        code::INVALID_COLUMN,
                        "Cannot drop the timestamp column",
                    ));
                }
                meta = Some(wal::alter_name(
                    "super",
                    &sname,
                    alter_type::DROP_COLUMN,
                    &c,
                ));
                st.columns.remove(i);
                st.version += 1;
                st.last_update = now;
                for t in db
                    .tables
                    .values_mut()
                    .filter(|t| t.stable() == Some(sname.as_str()))
                {
                    if i < t.data.cols.len() {
                        t.data.cols.remove(i);
                    }
                }
            }
            AlterAction::ModifyColumn(f) | AlterAction::ModifyTag(f) => {
                let tag = st.tags.iter().any(|x| x.name == f.name);
                let list = if tag { &mut st.tags } else { &mut st.columns };
                let cur = list
                    .iter_mut()
                    .find(|x| x.name == f.name)
                    .ok_or_else(|| col_missing(&f.name))?;
                if cur.ty != f.ty || !cur.ty.is_var() || f.bytes < cur.bytes {
                    return Err(EmuError::new(
                        code::INVALID_OPERATION,
                        "Only the length of VARCHAR/NCHAR/VARBINARY/GEOMETRY can be increased",
                    ));
                }
                cur.bytes = f.bytes;
                let kind = if tag {
                    alter_type::MODIFY_TAG
                } else {
                    alter_type::MODIFY_COLUMN
                };
                meta = Some(wal::alter_field("super", &sname, kind, &f));
                st.version += 1;
                st.last_update = now;
            }
            AlterAction::AddTag(f) => {
                if taken(st, &f.name) {
                    return Err(EmuError::new(code::TAG_ALREADY_EXIST, "Tag already exists"));
                }
                if f.ty == Ty::Json || st.tags.iter().any(|t| t.ty == Ty::Json) {
                    return Err(EmuError::new(
                        code::ONLY_ONE_JSON_TAG,
                        "Only one tag if there is a json tag",
                    ));
                }
                meta = Some(wal::alter_field("super", &sname, alter_type::ADD_TAG, &f));
                st.tags.push(f);
                st.tag_version += 1;
                st.last_update = now;
                for t in db.tables.values_mut() {
                    if let TableKind::Child { stable, tags } = &mut t.kind
                        && *stable == sname
                    {
                        tags.push(Value::Null);
                    }
                }
            }
            AlterAction::DropTag(tn) => {
                let i = st
                    .tags
                    .iter()
                    .position(|f| f.name == tn)
                    .ok_or_else(|| EmuError::new(code::TAG_NOT_EXIST, "Tag does not exist"))?;
                if st.tags.len() == 1 {
                    return Err(EmuError::new(
                        code::INVALID_OPERATION,
                        "Cannot drop the last tag",
                    ));
                }
                meta = Some(wal::alter_name("super", &sname, alter_type::DROP_TAG, &tn));
                st.tags.remove(i);
                st.tag_version += 1;
                st.last_update = now;
                for t in db.tables.values_mut() {
                    if let TableKind::Child { stable, tags } = &mut t.kind
                        && *stable == sname
                        && i < tags.len()
                    {
                        tags.remove(i);
                    }
                }
            }
            AlterAction::Rename { tag, from, to } => {
                if !tag {
                    return Err(EmuError::new(
                        code::INVALID_OPERATION,
                        "Cannot rename a super table column",
                    ));
                }
                if taken(st, &to) {
                    return Err(EmuError::new(code::TAG_ALREADY_EXIST, "Tag already exists"));
                }
                let f = st
                    .tags
                    .iter_mut()
                    .find(|f| f.name == from)
                    .ok_or_else(|| EmuError::new(code::TAG_NOT_EXIST, "Tag does not exist"))?;
                meta = Some(wal::alter_rename(
                    "super",
                    &sname,
                    alter_type::RENAME_TAG,
                    &from,
                    &to,
                ));
                f.name = to;
                st.tag_version += 1;
                st.last_update = now;
            }
            AlterAction::Options { comment, .. } => {
                // TDengine logs table options too (alterType 9); the emulator does not.
                meta = None;
                if comment.is_some() {
                    st.comment = comment;
                }
            }
            AlterAction::SetTag(_) => {
                return Err(EmuError::new(
                    code::INVALID_OPERATION,
                    "Cannot set tag on a super table",
                ));
            }
        }
        if let Some(m) = meta {
            let suid = db.stables.get(&sname).map_or(0, |s| s.uid);
            let msg = Msg::AlterStable { name: sname, suid };
            db.log_all(env.now_ns, &WalBody::Meta(m), &msg)?;
        }
        return Ok(Outcome::Affected(0));
    }
    if stable {
        return Err(table_not_exist(&name.name));
    }
    let stables = &db.stables;
    let t = db
        .tables
        .get_mut(&name.name)
        .ok_or_else(|| table_not_exist(&name.name))?;
    let tname = t.name.clone();
    let vgroup = t.vgroup;
    let mut metas: Vec<serde_json::Value> = Vec::new();
    match (&mut t.kind, action) {
        (TableKind::Child { stable, tags }, AlterAction::SetTag(sets)) => {
            let st = stables
                .get(stable.as_str())
                .ok_or_else(|| table_not_exist(stable))?;
            let mut new = tags.clone();
            for (n, e) in &sets {
                let i = st.tags.iter().position(|f| &f.name == n).ok_or_else(|| {
                    EmuError::new(code::INVALID_TAG_NAME, format!("Invalid tag name: {n}"))
                })?;
                new[i] = expr_to_value(e, &st.tags[i], &ctx)?;
                metas.push(wal::set_tag(&tname, &st.tags[i], &new[i]));
            }
            if metas.len() > 1 {
                // Several tags in one statement: one TSDB_ALTER_TABLE_UPDATE_MULTI_TAG_VAL
                // request, printed without its values (processAlterTable's default case).
                metas = vec![wal::alter_bare(&tname, alter_type::UPDATE_MULTI_TAG_VAL)];
            }
            *tags = new;
        }
        (_, AlterAction::Options { comment, ttl }) => {
            if comment.is_some() {
                t.comment = comment;
            }
            if let Some(ttl) = ttl {
                t.ttl = ttl;
            }
            // TDMT_VND_ALTER_TABLE with TSDB_ALTER_TABLE_UPDATE_OPTIONS: a meta message with
            // no `colName` (processAlterTable).
            metas.push(wal::alter_bare(&tname, alter_type::UPDATE_OPTIONS));
        }
        (TableKind::Normal { columns }, action) => {
            match action {
                AlterAction::AddColumn(f) => {
                    if columns.iter().any(|c| c.name == f.name) {
                        return Err(col_exists());
                    }
                    metas.push(wal::alter_field(
                        "normal",
                        &tname,
                        alter_type::ADD_COLUMN,
                        &f,
                    ));
                    t.data.add_column(f.ty);
                    columns.push(f);
                }
                AlterAction::DropColumn(c) => {
                    let i = columns
                        .iter()
                        .position(|f| f.name == c)
                        .ok_or_else(|| col_missing(&c))?;
                    if i == 0 {
                        return Err(EmuError::new(
                            code::INVALID_COLUMN,
                            "Cannot drop the timestamp column",
                        ));
                    }
                    metas.push(wal::alter_name(
                        "normal",
                        &tname,
                        alter_type::DROP_COLUMN,
                        &c,
                    ));
                    columns.remove(i);
                    t.data.cols.remove(i);
                }
                AlterAction::ModifyColumn(f) => {
                    let cur = columns
                        .iter_mut()
                        .find(|x| x.name == f.name)
                        .ok_or_else(|| col_missing(&f.name))?;
                    if cur.ty != f.ty || !cur.ty.is_var() || f.bytes < cur.bytes {
                        return Err(EmuError::new(
                            code::INVALID_OPERATION,
                            "Only the length of VARCHAR/NCHAR/VARBINARY/GEOMETRY can be increased",
                        ));
                    }
                    cur.bytes = f.bytes;
                    metas.push(wal::alter_field(
                        "normal",
                        &tname,
                        alter_type::MODIFY_COLUMN,
                        &f,
                    ));
                }
                AlterAction::Rename {
                    tag: false,
                    from,
                    to,
                } => {
                    if columns.iter().any(|c| c.name == to) {
                        return Err(col_exists());
                    }
                    let cur = columns
                        .iter_mut()
                        .find(|x| x.name == from)
                        .ok_or_else(|| col_missing(&from))?;
                    metas.push(wal::alter_rename(
                        "normal",
                        &tname,
                        alter_type::RENAME_COLUMN,
                        &from,
                        &to,
                    ));
                    cur.name = to;
                }
                _ => {
                    return Err(EmuError::new(
                        code::INVALID_OPERATION,
                        "Invalid alter table statement",
                    ));
                }
            }
            t.version += 1;
        }
        (TableKind::Child { .. }, _) => {
            return Err(EmuError::new(
                code::INVALID_OPERATION,
                "Invalid alter table statement: alter the super table instead",
            ));
        }
    }
    for m in metas {
        // The alter type of the meta JSON is TDengine's action code (TSDB_ALTER_TABLE_*).
        let action = m["alterType"].as_i64().and_then(|a| i8::try_from(a).ok());
        let msg = Msg::AlterTable {
            name: tname.clone(),
            action: action.unwrap_or_default(),
        };
        db.log(vgroup, env.now_ns, WalBody::Meta(m), msg)?;
    }
    Ok(Outcome::Affected(0))
}

/// Splits `db.table` / `` `db`.`table` `` / `table`.
fn split_table_name(table: &str) -> Name {
    match table.split_once('.') {
        Some((d, t)) if !d.is_empty() && !t.is_empty() => Name {
            db: Some(d.trim_matches('`').to_string()),
            name: t.trim_matches('`').to_string(),
        },
        _ => Name {
            db: None,
            name: table.trim_matches('`').to_string(),
        },
    }
}

/// The data columns of an existing table.
pub fn table_fields(cat: &Catalog, env: &Env<'_>, table: &str) -> Result<Vec<Field>, EmuError> {
    let name = split_table_name(table);
    let db = cat.db(env.db_of(&name)?)?;
    let t = db
        .tables
        .get(&name.name)
        .ok_or_else(|| table_not_exist(&name.name))?;
    Ok(table_columns(db, t).to_vec())
}

/// Writes a raw block into an existing table, binding columns as TDengine's
/// `rawBlockBindData` does (see [`super::bind`]).
pub fn write_raw_block(
    cat: &mut Catalog,
    env: &Env<'_>,
    table: &str,
    fields: &[Field],
    block: RawBlock,
) -> Result<usize, EmuError> {
    let name = split_table_name(table);
    let dbn = env.db_of(&name)?.to_string();
    let spill = std::sync::Arc::clone(&cat.wal_spill);
    let db = cat.db_mut(&dbn)?;
    let ctx = Ctx::new(db.opts.precision, env.now_ns);
    let floor = keep_floor(db, &ctx);
    let t = db
        .tables
        .get(&name.name)
        .ok_or_else(|| table_not_exist(&name.name))?;
    if t.is_virtual {
        return Err(virtual_write());
    }
    let schema = table_columns(db, t).to_vec();
    let rows = block.rows;
    let slots = super::bind::bind(&block, fields, &schema)?;
    let Some(ts) = slots[0].as_ref() else {
        return Err(EmuError::new(
            code::INVALID_COLUMN,
            "Primary timestamp column should not be null",
        ));
    };
    for t in ts.timestamps().into_iter().flat_map(|t| t.iter()) {
        match t {
            None => {
                return Err(EmuError::new(
                    code::INVALID_COLUMN,
                    "Primary timestamp column should not be null",
                ));
            }
            Some(v) if v < floor => return Err(keep_error()),
            Some(_) => {}
        }
    }
    let batch = super::bind::fill(slots, &schema, rows);
    let vgroup = t.vgroup;
    // Raw blocks arrive column by column, as stmt/raw writes reach the vnode.
    let msg = files::submit(
        t.uid,
        db.suid_of(t),
        RowFormat::Columns,
        present_timestamps(&batch),
    );
    let body = WalBody::Data(vec![wal::DataBlock::written(
        name.name.clone(),
        schema,
        db.opts.precision,
        block,
        fields,
        db.opts.wal_retention_period != 0,
        &spill,
    )]);
    db.log(vgroup, env.now_ns, body, msg)?;
    let t = db
        .tables
        .get_mut(&name.name)
        .ok_or_else(|| table_not_exist(&name.name))?;
    Ok(t.data.merge(batch))
}

/// The non-NULL timestamps of a batch's first column, for the WAL file's submit message.
fn present_timestamps(cols: &[ColumnData]) -> Vec<i64> {
    cols.first()
        .and_then(ColumnData::timestamps)
        .map(|t| {
            if t.has_nulls() {
                t.iter().flatten().collect()
            } else {
                t.values().to_vec()
            }
        })
        .unwrap_or_default()
}
