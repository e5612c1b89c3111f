//! The statement tree produced by the parser. Literals borrow from the SQL text.

use std::borrow::Cow;

use crate::types::Field;

/// A possibly database-qualified object name (unquoted names are lower-cased by the parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// `db` in `db.table`.
    pub db: Option<String>,
    /// The object name.
    pub name: String,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit<'a> {
    /// NULL.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A numeric literal, kept as text until the target type is known.
    Num {
        /// A leading minus sign.
        neg: bool,
        /// The digits (decimal, float or `0x` hex).
        text: &'a str,
    },
    /// A string literal.
    Str(Cow<'a, str>),
    /// `now` / `now()` / `now ± duration`: the offset from now in nanoseconds.
    Now(i64),
    /// A bare duration such as `1d`, in nanoseconds.
    Duration(i64),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`.
    Eq,
    /// `!=`, `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Rem,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr<'a> {
    /// A column reference (`tbname` included); the optional qualifier is ignored.
    Col(String),
    /// A literal.
    Lit(Lit<'a>),
    /// `*` inside `count(*)`.
    Star,
    /// A function call; the name is lower-cased.
    Func(String, Vec<Expr<'a>>),
    /// A comparison.
    Cmp(CmpOp, Box<Expr<'a>>, Box<Expr<'a>>),
    /// Arithmetic.
    Arith(ArithOp, Box<Expr<'a>>, Box<Expr<'a>>),
    /// Unary minus.
    Neg(Box<Expr<'a>>),
    /// `AND`.
    And(Box<Expr<'a>>, Box<Expr<'a>>),
    /// `OR`.
    Or(Box<Expr<'a>>, Box<Expr<'a>>),
    /// `NOT`.
    Not(Box<Expr<'a>>),
    /// `e [NOT] BETWEEN lo AND hi`.
    Between {
        /// Tested expression.
        expr: Box<Expr<'a>>,
        /// Lower bound (inclusive).
        lo: Box<Expr<'a>>,
        /// Upper bound (inclusive).
        hi: Box<Expr<'a>>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `e [NOT] IN (list)`.
    In {
        /// Tested expression.
        expr: Box<Expr<'a>>,
        /// The list.
        list: Vec<Expr<'a>>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `e [NOT] LIKE pattern`.
    Like {
        /// Tested expression.
        expr: Box<Expr<'a>>,
        /// The pattern.
        pattern: Box<Expr<'a>>,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `e IS [NOT] NULL`.
    IsNull {
        /// Tested expression.
        expr: Box<Expr<'a>>,
        /// `IS NOT NULL`.
        negated: bool,
    },
}

/// A value of a database option.
#[derive(Debug, Clone, PartialEq)]
pub enum OptVal {
    /// A number (as text).
    Num(String),
    /// A string.
    Str(String),
    /// A number with a unit: `10d`.
    Duration(String, String),
    /// A bare word.
    Word(String),
    /// A comma-separated list (`KEEP 10d,20d,30d`).
    List(Vec<OptVal>),
}

/// One `c USING s TAGS (...)` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateChild<'a> {
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The child table.
    pub name: Name,
    /// The super table.
    pub stable: Name,
    /// Explicit tag names, if given.
    pub tag_names: Option<Vec<String>>,
    /// Tag values.
    pub tags: Vec<Expr<'a>>,
    /// `TTL n`.
    pub ttl: Option<i64>,
    /// `COMMENT '...'`.
    pub comment: Option<String>,
    /// `CREATE VTABLE … USING` (a virtual child table, TDengine 3.3.6+).
    pub virtual_table: bool,
}

/// `USING s [(tags)] TAGS (...)` in an INSERT.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertUsing<'a> {
    /// The super table.
    pub stable: Name,
    /// Explicit tag names.
    pub tag_names: Option<Vec<String>>,
    /// Tag values.
    pub tags: Vec<Expr<'a>>,
}

/// One table's part of an INSERT.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertTarget<'a> {
    /// Target table.
    pub table: Name,
    /// Auto-create clause.
    pub using: Option<InsertUsing<'a>>,
    /// Explicit column list.
    pub columns: Option<Vec<String>>,
    /// Values per row.
    pub width: usize,
    /// All values, row-major (`rows × width`).
    pub values: Vec<Expr<'a>>,
}

/// An `ALTER` action.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterAction<'a> {
    /// `ADD COLUMN c type`.
    AddColumn(Field),
    /// `DROP COLUMN c`.
    DropColumn(String),
    /// `MODIFY COLUMN c type`.
    ModifyColumn(Field),
    /// `ADD TAG t type`.
    AddTag(Field),
    /// `DROP TAG t`.
    DropTag(String),
    /// `MODIFY TAG t type`.
    ModifyTag(Field),
    /// `RENAME TAG a b` / `RENAME COLUMN a b`.
    Rename {
        /// Tag (true) or column.
        tag: bool,
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// `SET TAG t = v [, t2 = v2]`.
    SetTag(Vec<(String, Expr<'a>)>),
    /// `COMMENT '..'` / `TTL n`.
    Options {
        /// New comment.
        comment: Option<String>,
        /// New TTL.
        ttl: Option<i64>,
    },
}

/// One SELECT output item.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem<'a> {
    /// `*`.
    Star,
    /// An expression, its alias, and its text (the default column name).
    Expr {
        /// The expression.
        expr: Expr<'a>,
        /// `AS alias`.
        alias: Option<String>,
        /// The expression as written (lower-cased identifiers).
        text: String,
    },
}

/// A SELECT statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Select<'a> {
    /// `SELECT DISTINCT`.
    pub distinct: bool,
    /// `SELECT TAGS`.
    pub tags: bool,
    /// Output items.
    pub items: Vec<SelectItem<'a>>,
    /// `FROM`.
    pub from: Option<Name>,
    /// `WHERE`.
    pub filter: Option<Expr<'a>>,
    /// `PARTITION BY` / `GROUP BY`.
    pub partition: Vec<Expr<'a>>,
    /// `ORDER BY` keys; `true` = descending.
    pub order: Vec<(Expr<'a>, bool)>,
    /// `LIMIT`.
    pub limit: Option<u64>,
    /// `OFFSET`.
    pub offset: Option<u64>,
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement<'a> {
    /// `CREATE DATABASE`.
    CreateDatabase {
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Database name.
        name: String,
        /// Options in order, names upper-cased.
        options: Vec<(String, OptVal)>,
    },
    /// `DROP DATABASE`.
    DropDatabase {
        /// `IF EXISTS`.
        if_exists: bool,
        /// Database name.
        name: String,
    },
    /// `ALTER DATABASE db options`.
    AlterDatabase {
        /// Database name.
        name: String,
        /// Options.
        options: Vec<(String, OptVal)>,
    },
    /// `USE db`.
    Use(String),
    /// `CREATE STABLE`.
    CreateStable {
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Name.
        name: Name,
        /// Data columns.
        columns: Vec<Field>,
        /// Tags.
        tags: Vec<Field>,
        /// Comment.
        comment: Option<String>,
        /// `VIRTUAL 1`: a virtual super table (TDengine 3.3.6+).
        virtual_stable: bool,
    },
    /// `CREATE TABLE` of a normal table, or `CREATE VTABLE` of a virtual normal table.
    CreateTable {
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Name.
        name: Name,
        /// Columns.
        columns: Vec<Field>,
        /// Comment.
        comment: Option<String>,
        /// TTL.
        ttl: Option<i64>,
        /// `CREATE VTABLE` (TDengine 3.3.6+).
        virtual_table: bool,
    },
    /// `CREATE TABLE c USING s TAGS (...) ...`.
    CreateChildren(Vec<CreateChild<'a>>),
    /// `DROP TABLE`.
    DropTable {
        /// `IF EXISTS`.
        if_exists: bool,
        /// Tables.
        names: Vec<Name>,
    },
    /// `DROP STABLE`.
    DropStable {
        /// `IF EXISTS`.
        if_exists: bool,
        /// Super table.
        name: Name,
    },
    /// `ALTER STABLE` (true) or `ALTER TABLE` (false).
    Alter {
        /// `ALTER STABLE`.
        stable: bool,
        /// Object.
        name: Name,
        /// Action.
        action: AlterAction<'a>,
    },
    /// `INSERT INTO`.
    Insert(Vec<InsertTarget<'a>>),
    /// `SELECT`.
    Select(Box<Select<'a>>),
    /// `DELETE FROM t [WHERE ...]`.
    Delete {
        /// Table or super table.
        table: Name,
        /// Condition.
        filter: Option<Expr<'a>>,
    },
    /// `SHOW DATABASES`.
    ShowDatabases,
    /// `SHOW [db.]STABLES [LIKE ..]`.
    ShowStables {
        /// Database.
        db: Option<String>,
        /// LIKE pattern.
        like: Option<String>,
    },
    /// `SHOW [db.]TABLES [LIKE ..]`.
    ShowTables {
        /// Database.
        db: Option<String>,
        /// LIKE pattern.
        like: Option<String>,
    },
    /// `SHOW CREATE DATABASE db`.
    ShowCreateDatabase(String),
    /// `SHOW CREATE STABLE` (true) / `SHOW CREATE TABLE` (false).
    ShowCreateTable {
        /// STABLE form.
        stable: bool,
        /// Object.
        name: Name,
    },
    /// `DESCRIBE t`.
    Describe(Name),
    /// `SHOW VGROUPS` (minimal).
    ShowVgroups(Option<String>),
    /// `CREATE TOPIC [IF NOT EXISTS] t [WITH META] AS DATABASE db`.
    CreateTopic {
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Topic name.
        name: String,
        /// `WITH META`.
        with_meta: bool,
        /// Database the topic reads.
        db: String,
    },
    /// `DROP TOPIC [IF EXISTS] t`.
    DropTopic {
        /// `IF EXISTS`.
        if_exists: bool,
        /// Topic name.
        name: String,
    },
    /// `SHOW TOPICS`.
    ShowTopics,
    /// `SHOW GRANTS`.
    ShowGrants,
    /// `SHOW DNODES`.
    ShowDnodes,
    /// `SHOW SUBSCRIPTIONS`.
    ShowSubscriptions,
    /// Emulator-only: `PURGE WAL db [VGROUP n] TO v` drops log entries below version `v`.
    PurgeWal {
        /// Database.
        db: String,
        /// One vgroup, or every vgroup of the database.
        vgroup: Option<u32>,
        /// New first version.
        to: i64,
    },
}
