//! Recursive-descent parser from tokens to [`Statement`]s.

use super::ast::*;
use super::keywords::{KEYWORD_FUNCTIONS, PSEUDO_COLUMNS, is_keyword};
use super::lexer::{Tok, Token, tokenize};
use crate::error::{EmuError, code};
use crate::types::{Field, Ty};

/// Bytes TDengine reports for a JSON tag.
pub const JSON_BYTES: u32 = 4095;
/// The width of a BLOB column: `TSDB_MAX_BLOB_LEN` (4 MiB, include/util/tdef.h). What
/// `DESCRIBE` prints as its length was not checked.
pub const BLOB_BYTES: u32 = 4 << 20;

/// Parses one statement (an optional trailing `;` is accepted).
pub fn parse(sql: &str) -> Result<Statement<'_>, EmuError> {
    let toks = tokenize(sql)?;
    let mut p = Parser {
        sql,
        toks,
        i: 0,
        depth: 0,
        nodes: 0,
        in_vtable: false,
    };
    let stmt = p.statement()?;
    p.eat(&Tok::Semi);
    while p.eat(&Tok::Semi) {}
    if !matches!(p.peek(), Tok::Eof) {
        return Err(p.err());
    }
    Ok(stmt)
}

/// Converts a duration (`amount`, `unit`) to nanoseconds: units `b u a s m h d w`.
pub fn duration_ns(amount: &str, unit: &str) -> Option<i64> {
    let n: i64 = amount.parse().ok()?;
    let mult: i64 = match unit.to_ascii_lowercase().as_str() {
        "b" => 1,
        "u" => 1_000,
        "a" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Deepest expression nesting accepted (parentheses, unary operators, NOT).
const MAX_DEPTH: usize = 128;
/// Most operator nodes in one expression (bounds recursion when evaluating and dropping).
const MAX_NODES: usize = 1000;

struct Parser<'a> {
    sql: &'a str,
    toks: Vec<Token<'a>>,
    i: usize,
    /// Current expression nesting.
    depth: usize,
    /// Operator nodes built in the current top-level expression.
    nodes: usize,
    /// Parsing `CREATE VTABLE`: column definitions may carry `FROM` references.
    in_vtable: bool,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok<'a> {
        &self.toks[self.i.min(self.toks.len() - 1)].tok
    }

    fn peek_at(&self, k: usize) -> &Tok<'a> {
        &self.toks[(self.i + k).min(self.toks.len() - 1)].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i.min(self.toks.len() - 1)].pos
    }

    fn bump(&mut self) -> Tok<'a> {
        let t = self.toks[self.i.min(self.toks.len() - 1)].tok.clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn err(&self) -> EmuError {
        let rest = &self.sql[self.pos()..];
        let cut = rest.char_indices().nth(80).map_or(rest.len(), |(k, _)| k);
        EmuError::syntax(&rest[..cut])
    }

    fn eat(&mut self, t: &Tok<'_>) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok<'_>) -> Result<(), EmuError> {
        if self.eat(t) { Ok(()) } else { Err(self.err()) }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn is_kw_at(&self, k: usize, kw: &str) -> bool {
        matches!(self.peek_at(k), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), EmuError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.err())
        }
    }

    fn at_end(&self) -> bool {
        matches!(self.peek(), Tok::Eof | Tok::Semi)
    }

    /// An identifier: bare words are lower-cased, backquoted ones kept. A bare keyword is a
    /// syntax error, as in TDengine (names are `NK_ID` in `sql.y`; see [`super::keywords`]).
    fn ident(&mut self) -> Result<String, EmuError> {
        match self.peek() {
            Tok::Word(w) if is_keyword(w) => Err(self.err()),
            Tok::Word(w) => {
                let s = w.to_ascii_lowercase();
                self.bump();
                Ok(s)
            }
            Tok::Quoted(w) => {
                let s = (*w).to_string();
                self.bump();
                if s.is_empty() {
                    return Err(EmuError::new(
                        code::INVALID_IDENTIFIER,
                        "Invalid identifier name: ``",
                    ));
                }
                Ok(s)
            }
            _ => Err(self.err()),
        }
    }

    /// Whether the next token can be a name: backquoted, or a bare word that is no keyword.
    fn is_ident(&self) -> bool {
        match self.peek() {
            Tok::Quoted(_) => true,
            Tok::Word(w) => !is_keyword(w),
            _ => false,
        }
    }

    fn name(&mut self) -> Result<Name, EmuError> {
        let first = self.ident()?;
        if self.eat(&Tok::Dot) {
            let second = self.ident()?;
            Ok(Name {
                db: Some(first),
                name: second,
            })
        } else {
            Ok(Name {
                db: None,
                name: first,
            })
        }
    }

    fn if_not_exists(&mut self) -> Result<bool, EmuError> {
        if self.is_kw("if") {
            self.bump();
            self.expect_kw("not")?;
            self.expect_kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn if_exists(&mut self) -> Result<bool, EmuError> {
        if self.is_kw("if") {
            self.bump();
            self.expect_kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn int(&mut self) -> Result<i64, EmuError> {
        let neg = self.eat(&Tok::Minus);
        match self.peek() {
            Tok::Num(n) => {
                let v: i64 = n.parse().map_err(|_| self.err())?;
                self.bump();
                Ok(if neg { -v } else { v })
            }
            _ => Err(self.err()),
        }
    }

    fn string(&mut self) -> Result<String, EmuError> {
        match self.peek() {
            Tok::Str(s) => {
                let s = s.to_string();
                self.bump();
                Ok(s)
            }
            _ => Err(self.err()),
        }
    }

    fn statement(&mut self) -> Result<Statement<'a>, EmuError> {
        let Tok::Word(w) = self.peek() else {
            return Err(self.err());
        };
        let w = w.to_ascii_lowercase();
        match w.as_str() {
            "select" => {
                self.bump();
                Ok(Statement::Select(Box::new(self.select()?)))
            }
            "insert" => {
                self.bump();
                self.expect_kw("into")?;
                self.insert()
            }
            "create" => {
                self.bump();
                self.create()
            }
            "drop" => {
                self.bump();
                self.drop()
            }
            "use" => {
                self.bump();
                Ok(Statement::Use(self.ident()?))
            }
            "show" => {
                self.bump();
                self.show()
            }
            "describe" | "desc" => {
                self.bump();
                Ok(Statement::Describe(self.name()?))
            }
            "delete" => {
                self.bump();
                self.expect_kw("from")?;
                let table = self.name()?;
                let filter = if self.eat_kw("where") {
                    Some(self.expr()?)
                } else {
                    None
                };
                Ok(Statement::Delete { table, filter })
            }
            "alter" => {
                self.bump();
                self.alter()
            }
            "purge" => {
                self.bump();
                self.expect_kw("wal")?;
                let db = self.ident()?;
                let vgroup = if self.eat_kw("vgroup") {
                    let n = self.int()?;
                    Some(u32::try_from(n).map_err(|_| self.err())?)
                } else {
                    None
                };
                self.expect_kw("to")?;
                let to = self.int()?;
                Ok(Statement::PurgeWal { db, vgroup, to })
            }
            _ => Err(self.err()),
        }
    }

    // ---- DDL ----

    fn create(&mut self) -> Result<Statement<'a>, EmuError> {
        if self.eat_kw("topic") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident()?;
            let with_meta = if self.eat_kw("with") {
                self.expect_kw("meta")?;
                true
            } else {
                false
            };
            self.expect_kw("as")?;
            if !self.eat_kw("database") {
                return Err(EmuError::new(
                    code::OPS_NOT_SUPPORT,
                    "the emulator supports database topics only (AS DATABASE db)",
                ));
            }
            let db = self.ident()?;
            return Ok(Statement::CreateTopic {
                if_not_exists,
                name,
                with_meta,
                db,
            });
        }
        if self.eat_kw("database") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident()?;
            let options = self.db_options()?;
            return Ok(Statement::CreateDatabase {
                if_not_exists,
                name,
                options,
            });
        }
        // `CREATE VTABLE` (sql.y, TDengine 3.3.6+; `VTABLE` is a keyword in parTokenizer.c):
        // a virtual normal table with `FROM db.table.column` references, or a virtual child
        // table `USING` a virtual super table. Refused by older versions' grammar.
        let (stable, virtual_table) = if self.eat_kw("stable") {
            (true, false)
        } else if self.eat_kw("table") {
            (false, false)
        } else if self.eat_kw("vtable") {
            (false, true)
        } else {
            return Err(self.err());
        };
        self.in_vtable = virtual_table;
        let if_not_exists = self.if_not_exists()?;
        let name = self.name()?;
        if !stable && self.is_kw("using") {
            return self.create_children(if_not_exists, name, virtual_table);
        }
        let columns = self.column_defs(false)?;
        if !stable && virtual_table && self.is_kw("using") {
            // Column references of a virtual child table: kept only as a parse.
            return self.create_children(if_not_exists, name, true);
        }
        let tags = if self.eat_kw("tags") {
            Some(self.column_defs(true)?)
        } else {
            None
        };
        let (comment, ttl) = self.table_options()?;
        let virtual_stable = stable && self.virtual_option()?;
        match tags {
            Some(_) if virtual_table => Err(self.err()),
            Some(tags) => Ok(Statement::CreateStable {
                if_not_exists,
                name,
                columns,
                tags,
                comment,
                virtual_stable,
            }),
            None if stable => Err(self.err()),
            None => Ok(Statement::CreateTable {
                if_not_exists,
                name,
                columns,
                comment,
                ttl,
                virtual_table,
            }),
        }
    }

    /// `VIRTUAL 0|1` after a super table's options (printed by `appendTableOptions` in
    /// source/libs/command/src/command.c).
    fn virtual_option(&mut self) -> Result<bool, EmuError> {
        if !self.eat_kw("virtual") {
            return Ok(false);
        }
        Ok(self.int()? != 0)
    }

    fn table_options(&mut self) -> Result<(Option<String>, Option<i64>), EmuError> {
        let mut comment = None;
        let mut ttl = None;
        loop {
            if self.eat_kw("comment") {
                comment = Some(self.string()?);
            } else if self.eat_kw("ttl") {
                ttl = Some(self.int()?);
            } else if self.is_kw("sma") {
                self.bump();
                self.expect(&Tok::LParen)?;
                while !self.eat(&Tok::RParen) {
                    if self.at_end() {
                        return Err(self.err());
                    }
                    self.bump();
                }
            } else if self.is_kw("watermark")
                || self.is_kw("max_delay")
                || self.is_kw("delete_mark")
            {
                self.bump();
                self.bump();
                while self.eat(&Tok::Comma) {
                    self.bump();
                }
            } else {
                return Ok((comment, ttl));
            }
        }
    }

    fn create_children(
        &mut self,
        first_ine: bool,
        first: Name,
        virtual_table: bool,
    ) -> Result<Statement<'a>, EmuError> {
        let mut out = Vec::new();
        let mut ine = first_ine;
        let mut name = first;
        loop {
            self.expect_kw("using")?;
            let stable = self.name()?;
            let tag_names = if matches!(self.peek(), Tok::LParen) {
                Some(self.ident_list()?)
            } else {
                None
            };
            self.expect_kw("tags")?;
            let tags = self.expr_list()?;
            let (comment, ttl) = self.table_options()?;
            out.push(CreateChild {
                if_not_exists: ine,
                name,
                stable,
                tag_names,
                tags,
                ttl,
                comment,
                virtual_table,
            });
            if self.at_end() || virtual_table {
                return Ok(Statement::CreateChildren(out));
            }
            ine = self.if_not_exists()?;
            name = self.name()?;
        }
    }

    fn ident_list(&mut self) -> Result<Vec<String>, EmuError> {
        self.expect(&Tok::LParen)?;
        let mut v = vec![self.ident()?];
        while self.eat(&Tok::Comma) {
            v.push(self.ident()?);
        }
        self.expect(&Tok::RParen)?;
        Ok(v)
    }

    /// `(a, b, …)` of an INSERT: TDengine's hand-written insert parser
    /// (`parInsertSql.c`, `parseBoundColumns`) looks each name up among the columns (and
    /// `tbname`) without asking the tokenizer whether it is a keyword, so bare keywords are
    /// names here.
    fn insert_name_list(&mut self) -> Result<Vec<String>, EmuError> {
        self.expect(&Tok::LParen)?;
        let mut v = Vec::new();
        loop {
            match self.peek() {
                Tok::Word(w) => {
                    v.push(w.to_ascii_lowercase());
                    self.bump();
                }
                _ => v.push(self.ident()?),
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        Ok(v)
    }

    fn expr_list(&mut self) -> Result<Vec<Expr<'a>>, EmuError> {
        self.expect(&Tok::LParen)?;
        let mut v = vec![self.expr()?];
        while self.eat(&Tok::Comma) {
            v.push(self.expr()?);
        }
        self.expect(&Tok::RParen)?;
        Ok(v)
    }

    fn column_defs(&mut self, tags: bool) -> Result<Vec<Field>, EmuError> {
        self.expect(&Tok::LParen)?;
        let mut v = Vec::new();
        loop {
            let name = self.ident()?;
            let mut f = self.data_type()?;
            let ty = f.ty;
            if ty == Ty::Json && !tags {
                return Err(EmuError::new(
                    code::INVALID_COLUMN,
                    "Only tag can be json type",
                ));
            }
            // Column options TDengine prints or accepts; ENCODE/COMPRESS/LEVEL/COMMENT are
            // ignored. `PRIMARY KEY` declares a composite key (`COMPOSITE KEY` is how SHOW
            // CREATE TABLE prints it: `appendColumnFields` in
            // source/libs/command/src/command.c; COMPOSITE is a keyword in parTokenizer.c).
            let mut key = false;
            loop {
                if self.eat_kw("encode") || self.eat_kw("compress") || self.eat_kw("level") {
                    self.string()?;
                } else if self.eat_kw("primary") || self.eat_kw("composite") {
                    self.expect_kw("key")?;
                    key = true;
                } else if self.eat_kw("comment") {
                    self.string()?;
                } else if self.in_vtable && self.eat_kw("from") {
                    // A virtual table's column reference `FROM [db.]table.column`.
                    self.ident()?;
                    while self.eat(&Tok::Dot) {
                        self.ident()?;
                    }
                } else {
                    break;
                }
            }
            f.name = name;
            f.primary_key = key;
            v.push(f);
            if self.eat(&Tok::Comma) {
                continue;
            }
            self.expect(&Tok::RParen)?;
            return Ok(v);
        }
    }

    /// A type (returned as a field without a name): `DECIMAL`, `DECIMAL(p)` and
    /// `DECIMAL(p, s)` are TDengine's grammar (`type_name` in source/libs/parser/inc/sql.y);
    /// the emulator requires the precision (the tool always writes it; what bare `DECIMAL`
    /// means on a server was not checked). Precision 1–38, scale 0–precision
    /// (`TSDB_DECIMAL_*` in include/util/tdef.h).
    fn data_type(&mut self) -> Result<Field, EmuError> {
        if self.is_kw("decimal") {
            self.bump();
            self.expect(&Tok::LParen)?;
            let p = self.int()?;
            let sc = if self.eat(&Tok::Comma) {
                self.int()?
            } else {
                0
            };
            self.expect(&Tok::RParen)?;
            if !(1..=38).contains(&p) || !(0..=p).contains(&sc) {
                return Err(EmuError::new(
                    code::INVALID_PARA,
                    format!("Invalid column type: DECIMAL({p},{sc})"),
                ));
            }
            return Ok(Field::decimal("", p as u8, sc as u8));
        }
        if self.is_kw("blob") {
            self.bump();
            return Ok(Field::new("", Ty::Blob, BLOB_BYTES));
        }
        let (ty, bytes) = self.plain_type()?;
        Ok(Field::new("", ty, bytes))
    }

    fn plain_type(&mut self) -> Result<(Ty, u32), EmuError> {
        let Tok::Word(w) = self.peek() else {
            return Err(self.err());
        };
        let w = w.to_ascii_lowercase();
        let ty = match w.as_str() {
            "bool" | "boolean" => Ty::Bool,
            "tinyint" => Ty::TinyInt,
            "smallint" => Ty::SmallInt,
            "int" | "integer" => Ty::Int,
            "bigint" => Ty::BigInt,
            "float" => Ty::Float,
            "double" => Ty::Double,
            "timestamp" => Ty::Timestamp,
            "binary" | "varchar" => Ty::VarChar,
            "nchar" => Ty::NChar,
            "json" => Ty::Json,
            "varbinary" => Ty::VarBinary,
            "geometry" => Ty::Geometry,
            _ => return Err(self.err()),
        };
        self.bump();
        let ty = if self.is_kw("unsigned") {
            let u = match ty {
                Ty::TinyInt => Ty::UTinyInt,
                Ty::SmallInt => Ty::USmallInt,
                Ty::Int => Ty::UInt,
                Ty::BigInt => Ty::UBigInt,
                _ => return Err(self.err()),
            };
            self.bump();
            u
        } else {
            ty
        };
        if let Some(w) = ty.fixed_width() {
            return Ok((ty, w as u32));
        }
        if ty == Ty::Json {
            return Ok((ty, JSON_BYTES));
        }
        self.expect(&Tok::LParen)?;
        let n = self.int()?;
        self.expect(&Tok::RParen)?;
        let max = match ty {
            Ty::NChar => 16_382,
            _ => 65_517,
        };
        if n <= 0 || n > max {
            return Err(EmuError::new(
                code::INVALID_PARA,
                format!("Invalid binary/nchar column/tag length: {n}"),
            ));
        }
        Ok((ty, n as u32))
    }

    fn db_options(&mut self) -> Result<Vec<(String, OptVal)>, EmuError> {
        let mut out = Vec::new();
        while let Tok::Word(w) = self.peek() {
            let name = w.to_ascii_uppercase();
            self.bump();
            let mut v = self.opt_val()?;
            if self.is_list_opt(&name) && matches!(self.peek(), Tok::Comma) {
                let mut list = vec![v];
                while self.eat(&Tok::Comma) {
                    list.push(self.opt_val()?);
                }
                v = OptVal::List(list);
            }
            out.push((name, v));
        }
        Ok(out)
    }

    fn is_list_opt(&self, name: &str) -> bool {
        matches!(name, "KEEP" | "RETENTIONS" | "COMPACT_TIME_RANGE")
    }

    fn opt_val(&mut self) -> Result<OptVal, EmuError> {
        let neg = self.eat(&Tok::Minus);
        let sign = if neg { "-" } else { "" };
        let v = match self.peek() {
            Tok::Num(n) => OptVal::Num(format!("{sign}{n}")),
            Tok::Duration(n, u) => OptVal::Duration(format!("{sign}{n}"), u.to_ascii_lowercase()),
            Tok::Str(s) if !neg => OptVal::Str(s.to_string()),
            Tok::Word(w) if !neg => OptVal::Word(w.to_ascii_lowercase()),
            _ => return Err(self.err()),
        };
        self.bump();
        Ok(v)
    }

    fn drop(&mut self) -> Result<Statement<'a>, EmuError> {
        if self.eat_kw("topic") {
            let if_exists = self.if_exists()?;
            let name = self.ident()?;
            return Ok(Statement::DropTopic { if_exists, name });
        }
        if self.eat_kw("database") {
            let if_exists = self.if_exists()?;
            let name = self.ident()?;
            return Ok(Statement::DropDatabase { if_exists, name });
        }
        if self.eat_kw("stable") {
            let if_exists = self.if_exists()?;
            let name = self.name()?;
            return Ok(Statement::DropStable { if_exists, name });
        }
        self.expect_kw("table")?;
        let if_exists = self.if_exists()?;
        let mut names = vec![self.name()?];
        while self.eat(&Tok::Comma) {
            names.push(self.name()?);
        }
        Ok(Statement::DropTable { if_exists, names })
    }

    fn alter(&mut self) -> Result<Statement<'a>, EmuError> {
        if self.eat_kw("database") {
            let name = self.ident()?;
            let options = self.db_options()?;
            return Ok(Statement::AlterDatabase { name, options });
        }
        let stable = if self.eat_kw("stable") {
            true
        } else {
            self.expect_kw("table")?;
            false
        };
        let name = self.name()?;
        let action = if self.eat_kw("add") {
            if self.eat_kw("tag") {
                let n = self.ident()?;
                let mut f = self.data_type()?;
                f.name = n;
                AlterAction::AddTag(f)
            } else {
                self.expect_kw("column")?;
                let n = self.ident()?;
                let mut f = self.data_type()?;
                if f.ty == Ty::Json {
                    return Err(EmuError::new(
                        code::INVALID_COLUMN,
                        "Only tag can be json type",
                    ));
                }
                f.name = n;
                AlterAction::AddColumn(f)
            }
        } else if self.eat_kw("drop") {
            if self.eat_kw("tag") {
                AlterAction::DropTag(self.ident()?)
            } else {
                self.expect_kw("column")?;
                AlterAction::DropColumn(self.ident()?)
            }
        } else if self.eat_kw("modify") {
            let tag = if self.eat_kw("tag") {
                true
            } else {
                self.expect_kw("column")?;
                false
            };
            let n = self.ident()?;
            let mut f = self.data_type()?;
            f.name = n;
            if tag {
                AlterAction::ModifyTag(f)
            } else {
                AlterAction::ModifyColumn(f)
            }
        } else if self.eat_kw("rename") {
            let tag = if self.eat_kw("tag") {
                true
            } else {
                self.expect_kw("column")?;
                false
            };
            let from = self.ident()?;
            let to = self.ident()?;
            AlterAction::Rename { tag, from, to }
        } else if self.eat_kw("set") {
            self.expect_kw("tag")?;
            let mut v = Vec::new();
            loop {
                let n = self.ident()?;
                self.expect(&Tok::Eq)?;
                let e = self.expr()?;
                v.push((n, e));
                if !self.eat(&Tok::Comma) {
                    break;
                }
                self.eat_kw("tag");
            }
            AlterAction::SetTag(v)
        } else {
            let (comment, ttl) = self.table_options()?;
            if comment.is_none() && ttl.is_none() {
                return Err(self.err());
            }
            AlterAction::Options { comment, ttl }
        };
        Ok(Statement::Alter {
            stable,
            name,
            action,
        })
    }

    fn show(&mut self) -> Result<Statement<'a>, EmuError> {
        if self.eat_kw("databases") {
            return Ok(Statement::ShowDatabases);
        }
        if self.eat_kw("topics") {
            return Ok(Statement::ShowTopics);
        }
        if self.eat_kw("grants") {
            return Ok(Statement::ShowGrants);
        }
        if self.eat_kw("dnodes") {
            return Ok(Statement::ShowDnodes);
        }
        if self.eat_kw("subscriptions") {
            return Ok(Statement::ShowSubscriptions);
        }
        if self.eat_kw("create") {
            if self.eat_kw("database") {
                return Ok(Statement::ShowCreateDatabase(self.ident()?));
            }
            let stable = if self.eat_kw("stable") {
                true
            } else {
                self.expect_kw("table")?;
                false
            };
            return Ok(Statement::ShowCreateTable {
                stable,
                name: self.name()?,
            });
        }
        let db = if self.is_ident() && matches!(self.peek_at(1), Tok::Dot) {
            let d = self.ident()?;
            self.bump();
            Some(d)
        } else {
            None
        };
        let which = if self.eat_kw("stables") {
            0
        } else if self.eat_kw("tables") {
            1
        } else if self.eat_kw("vgroups") {
            return Ok(Statement::ShowVgroups(db));
        } else {
            return Err(self.err());
        };
        let like = if self.eat_kw("like") {
            Some(self.string()?)
        } else {
            None
        };
        Ok(if which == 0 {
            Statement::ShowStables { db, like }
        } else {
            Statement::ShowTables { db, like }
        })
    }

    // ---- INSERT ----

    fn insert(&mut self) -> Result<Statement<'a>, EmuError> {
        let mut targets = Vec::new();
        loop {
            let table = self.name()?;
            let using = if self.eat_kw("using") {
                let stable = self.name()?;
                let tag_names = if matches!(self.peek(), Tok::LParen) {
                    Some(self.insert_name_list()?)
                } else {
                    None
                };
                self.expect_kw("tags")?;
                let tags = self.expr_list()?;
                Some(InsertUsing {
                    stable,
                    tag_names,
                    tags,
                })
            } else {
                None
            };
            let columns = if matches!(self.peek(), Tok::LParen) {
                Some(self.insert_name_list()?)
            } else {
                None
            };
            self.expect_kw("values")?;
            let mut values = Vec::new();
            let mut width = 0;
            let mut rows = 0usize;
            while matches!(self.peek(), Tok::LParen) {
                self.bump();
                let before = values.len();
                loop {
                    values.push(self.value()?);
                    if self.eat(&Tok::Comma) {
                        continue;
                    }
                    self.expect(&Tok::RParen)?;
                    break;
                }
                let n = values.len() - before;
                if rows == 0 {
                    width = n;
                } else if n != width {
                    return Err(EmuError::new(
                        code::INVALID_COLUMN,
                        "Illegal number of columns",
                    ));
                }
                rows += 1;
                self.eat(&Tok::Comma);
            }
            if rows == 0 {
                return Err(self.err());
            }
            targets.push(InsertTarget {
                table,
                using,
                columns,
                width,
                values,
            });
            if self.at_end() {
                return Ok(Statement::Insert(targets));
            }
        }
    }

    /// One VALUES item, with a fast path for plain literals.
    fn value(&mut self) -> Result<Expr<'a>, EmuError> {
        let simple = matches!(self.peek_at(1), Tok::Comma | Tok::RParen);
        if simple {
            let e = match self.peek() {
                Tok::Num(n) => Some(Expr::Lit(Lit::Num {
                    neg: false,
                    text: n,
                })),
                Tok::Str(s) => Some(Expr::Lit(Lit::Str(s.clone()))),
                Tok::Word(w) if w.eq_ignore_ascii_case("null") => Some(Expr::Lit(Lit::Null)),
                Tok::Word(w) if w.eq_ignore_ascii_case("true") => Some(Expr::Lit(Lit::Bool(true))),
                Tok::Word(w) if w.eq_ignore_ascii_case("false") => {
                    Some(Expr::Lit(Lit::Bool(false)))
                }
                Tok::Word(w) if w.eq_ignore_ascii_case("now") => Some(Expr::Lit(Lit::Now(0))),
                _ => None,
            };
            if let Some(e) = e {
                self.bump();
                return Ok(e);
            }
        }
        if matches!(self.peek(), Tok::Minus | Tok::Plus)
            && matches!(self.peek_at(2), Tok::Comma | Tok::RParen)
            && let Tok::Num(n) = self.peek_at(1)
        {
            let neg = matches!(self.peek(), Tok::Minus);
            let e = Expr::Lit(Lit::Num { neg, text: n });
            self.bump();
            self.bump();
            return Ok(e);
        }
        self.expr()
    }

    // ---- SELECT ----

    fn select(&mut self) -> Result<Select<'a>, EmuError> {
        let mut s = Select {
            distinct: false,
            tags: false,
            items: Vec::new(),
            from: None,
            filter: None,
            partition: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
        };
        if self.eat_kw("distinct") {
            s.distinct = true;
        } else if self.is_kw("tags")
            && !matches!(self.peek_at(1), Tok::Comma)
            && !self.is_kw_at(1, "from")
        {
            self.bump();
            s.tags = true;
        }
        loop {
            if self.eat(&Tok::Star) {
                s.items.push(SelectItem::Star);
            } else {
                let start = self.pos();
                let expr = self.expr()?;
                let end = self.pos();
                let text = self.sql[start..end].trim_end().to_string();
                let has_alias = self.eat_kw("as") || self.is_ident();
                let alias = if has_alias { Some(self.ident()?) } else { None };
                s.items.push(SelectItem::Expr { expr, alias, text });
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        if self.eat_kw("from") {
            s.from = Some(self.name()?);
            // Optional table alias.
            if self.eat_kw("as") || self.is_ident() {
                self.ident()?;
            }
        }
        if self.eat_kw("where") {
            s.filter = Some(self.expr()?);
        }
        if self.is_kw("partition") || self.is_kw("group") {
            self.bump();
            self.expect_kw("by")?;
            s.partition.push(self.expr()?);
            while self.eat(&Tok::Comma) {
                s.partition.push(self.expr()?);
            }
        }
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            loop {
                let e = self.expr()?;
                let desc = if self.eat_kw("desc") {
                    true
                } else {
                    self.eat_kw("asc");
                    false
                };
                s.order.push((e, desc));
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        if self.eat_kw("limit") {
            let a = self.uint()?;
            if self.eat(&Tok::Comma) {
                let b = self.uint()?;
                s.offset = Some(a);
                s.limit = Some(b);
            } else {
                s.limit = Some(a);
                if self.eat_kw("offset") {
                    s.offset = Some(self.uint()?);
                }
            }
        }
        Ok(s)
    }

    fn uint(&mut self) -> Result<u64, EmuError> {
        match self.peek() {
            Tok::Num(n) => {
                let v = n.parse().map_err(|_| self.err())?;
                self.bump();
                Ok(v)
            }
            _ => Err(self.err()),
        }
    }

    // ---- expressions ----

    /// Parses an expression, bounding its nesting and size.
    fn expr(&mut self) -> Result<Expr<'a>, EmuError> {
        if self.depth == 0 {
            self.nodes = 0;
        }
        self.enter()?;
        let e = self.or_expr();
        self.depth -= 1;
        e
    }

    fn enter(&mut self) -> Result<(), EmuError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return Err(EmuError::new(
                code::SYNTAX_ERROR,
                "syntax error: expression nested too deeply",
            ));
        }
        Ok(())
    }

    /// Counts one operator node.
    fn node(&mut self) -> Result<(), EmuError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(EmuError::new(
                code::SYNTAX_ERROR,
                "syntax error: expression too complex",
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr<'a>, EmuError> {
        let mut l = self.and_expr()?;
        while self.eat_kw("or") {
            self.node()?;
            let r = self.and_expr()?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn and_expr(&mut self) -> Result<Expr<'a>, EmuError> {
        let mut l = self.not_expr()?;
        while self.eat_kw("and") {
            self.node()?;
            let r = self.not_expr()?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn not_expr(&mut self) -> Result<Expr<'a>, EmuError> {
        if self.eat_kw("not") {
            self.node()?;
            self.enter()?;
            let e = self.not_expr();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr<'a>, EmuError> {
        let l = self.additive()?;
        let op = match self.peek() {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            self.node()?;
            let r = self.additive()?;
            return Ok(Expr::Cmp(op, Box::new(l), Box::new(r)));
        }
        if self.eat_kw("is") {
            let negated = self.eat_kw("not");
            self.expect_kw("null")?;
            return Ok(Expr::IsNull {
                expr: Box::new(l),
                negated,
            });
        }
        let negated = if self.is_kw("not")
            && (self.is_kw_at(1, "between") || self.is_kw_at(1, "in") || self.is_kw_at(1, "like"))
        {
            self.bump();
            true
        } else {
            false
        };
        if self.eat_kw("between") {
            let lo = self.additive()?;
            self.expect_kw("and")?;
            let hi = self.additive()?;
            return Ok(Expr::Between {
                expr: Box::new(l),
                lo: Box::new(lo),
                hi: Box::new(hi),
                negated,
            });
        }
        if self.eat_kw("in") {
            let list = self.expr_list()?;
            return Ok(Expr::In {
                expr: Box::new(l),
                list,
                negated,
            });
        }
        if self.eat_kw("like") {
            let pattern = self.additive()?;
            return Ok(Expr::Like {
                expr: Box::new(l),
                pattern: Box::new(pattern),
                negated,
            });
        }
        if negated {
            return Err(self.err());
        }
        Ok(l)
    }

    fn additive(&mut self) -> Result<Expr<'a>, EmuError> {
        let mut l = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(l),
            };
            self.bump();
            self.node()?;
            let r = self.multiplicative()?;
            l = match (l, r) {
                (Expr::Lit(Lit::Now(o)), Expr::Lit(Lit::Duration(d))) => {
                    let v = if op == ArithOp::Add {
                        o.checked_add(d)
                    } else {
                        o.checked_sub(d)
                    };
                    Expr::Lit(Lit::Now(v.ok_or_else(|| self.err())?))
                }
                (l, r) => Expr::Arith(op, Box::new(l), Box::new(r)),
            };
        }
    }

    fn multiplicative(&mut self) -> Result<Expr<'a>, EmuError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                Tok::Percent => ArithOp::Rem,
                _ => return Ok(l),
            };
            self.bump();
            self.node()?;
            let r = self.unary()?;
            l = Expr::Arith(op, Box::new(l), Box::new(r));
        }
    }

    fn unary(&mut self) -> Result<Expr<'a>, EmuError> {
        if self.eat(&Tok::Minus) {
            self.node()?;
            self.enter()?;
            let inner = self.unary();
            self.depth -= 1;
            return Ok(match inner? {
                Expr::Lit(Lit::Num { neg, text }) => Expr::Lit(Lit::Num { neg: !neg, text }),
                Expr::Lit(Lit::Duration(d)) => Expr::Lit(Lit::Duration(d.saturating_neg())),
                e => Expr::Neg(Box::new(e)),
            });
        }
        if self.eat(&Tok::Plus) {
            self.node()?;
            self.enter()?;
            let inner = self.unary();
            self.depth -= 1;
            return inner;
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr<'a>, EmuError> {
        let t = self.peek().clone();
        match t {
            Tok::Num(n) => {
                self.bump();
                Ok(Expr::Lit(Lit::Num {
                    neg: false,
                    text: n,
                }))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Lit(Lit::Str(s)))
            }
            Tok::Duration(n, u) => {
                let d = duration_ns(n, u).ok_or_else(|| self.err())?;
                self.bump();
                Ok(Expr::Lit(Lit::Duration(d)))
            }
            Tok::LParen => {
                self.bump();
                let e = self.expr()?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Tok::Quoted(_) => {
                let mut n = self.ident()?;
                if self.eat(&Tok::Dot) {
                    n = self.ident()?;
                }
                Ok(Expr::Col(n))
            }
            Tok::Word(w) => {
                let lw = w.to_ascii_lowercase();
                let keyword = is_keyword(w);
                if matches!(self.peek_at(1), Tok::LParen) {
                    // `function_name ::= NK_ID`: a keyword is a function only where sql.y
                    // has a rule for it (COUNT, FIRST, CAST, SERVER_VERSION …).
                    if keyword && !KEYWORD_FUNCTIONS.iter().any(|k| k.eq_ignore_ascii_case(w)) {
                        return Err(self.err());
                    }
                    self.bump();
                    self.bump();
                    let mut args = Vec::new();
                    if !self.eat(&Tok::RParen) {
                        loop {
                            if self.eat(&Tok::Star) {
                                args.push(Expr::Star);
                            } else {
                                args.push(self.expr()?);
                            }
                            if self.eat(&Tok::Comma) {
                                continue;
                            }
                            self.expect(&Tok::RParen)?;
                            break;
                        }
                    }
                    if lw == "now" && args.is_empty() {
                        return Ok(Expr::Lit(Lit::Now(0)));
                    }
                    return Ok(Expr::Func(lw, args));
                }
                match lw.as_str() {
                    "null" => {
                        self.bump();
                        Ok(Expr::Lit(Lit::Null))
                    }
                    "true" => {
                        self.bump();
                        Ok(Expr::Lit(Lit::Bool(true)))
                    }
                    "false" => {
                        self.bump();
                        Ok(Expr::Lit(Lit::Bool(false)))
                    }
                    "now" => {
                        self.bump();
                        Ok(Expr::Lit(Lit::Now(0)))
                    }
                    _ if keyword && !PSEUDO_COLUMNS.iter().any(|k| k.eq_ignore_ascii_case(w)) => {
                        Err(self.err())
                    }
                    _ => {
                        self.bump();
                        let mut n = lw;
                        if self.eat(&Tok::Dot) {
                            n = self.ident()?;
                        }
                        Ok(Expr::Col(n))
                    }
                }
            }
            _ => Err(self.err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Statement<'_> {
        match parse(s) {
            Ok(st) => st,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn create_database_options() {
        let Statement::CreateDatabase {
            if_not_exists,
            name,
            options,
        } = p(
            "CREATE DATABASE IF NOT EXISTS Power PRECISION 'us' VGROUPS 4 KEEP 10d,20d,30d DURATION 1d WAL_RETENTION_PERIOD 3600 TABLE_PREFIX -1;",
        )
        else {
            panic!()
        };
        assert!(if_not_exists);
        assert_eq!(name, "power");
        assert_eq!(options[0], ("PRECISION".into(), OptVal::Str("us".into())));
        assert_eq!(options[1], ("VGROUPS".into(), OptVal::Num("4".into())));
        assert_eq!(
            options[2].1,
            OptVal::List(vec![
                OptVal::Duration("10".into(), "d".into()),
                OptVal::Duration("20".into(), "d".into()),
                OptVal::Duration("30".into(), "d".into())
            ])
        );
        assert_eq!(options[3].1, OptVal::Duration("1".into(), "d".into()));
        assert_eq!(options[5].1, OptVal::Num("-1".into()));
        assert_eq!(
            p("drop database if exists `X`"),
            Statement::DropDatabase {
                if_exists: true,
                name: "X".into()
            }
        );
        assert_eq!(p("use db1"), Statement::Use("db1".into()));
    }

    #[test]
    fn create_stable_and_tables() {
        let Statement::CreateStable {
            name,
            columns,
            tags,
            comment,
            ..
        } = p(
            "create stable db.meters (ts timestamp, c1 int unsigned, c2 binary(16) ENCODE 'disabled' COMPRESS 'lz4' LEVEL 'medium', c3 nchar(8)) tags (t1 json) comment 'hi'",
        )
        else {
            panic!()
        };
        assert_eq!(name.db.as_deref(), Some("db"));
        assert_eq!(columns.len(), 4);
        assert_eq!(columns[1], Field::new("c1", Ty::UInt, 4));
        assert_eq!(columns[2], Field::new("c2", Ty::VarChar, 16));
        assert_eq!(columns[3], Field::new("c3", Ty::NChar, 8));
        assert_eq!(tags[0], Field::new("t1", Ty::Json, JSON_BYTES));
        assert_eq!(comment.as_deref(), Some("hi"));

        let Statement::CreateTable { columns, ttl, .. } =
            p("create table if not exists t (ts timestamp, v double) ttl 3")
        else {
            panic!()
        };
        assert_eq!(columns.len(), 2);
        assert_eq!(ttl, Some(3));

        let Statement::CreateChildren(c) = p(
            "create table a using s tags (1, 'x') b using s (t2) tags (null) ttl 2 if not exists c using db.s tags(-3)",
        ) else {
            panic!()
        };
        assert_eq!(c.len(), 3);
        assert_eq!(c[1].tag_names.as_deref(), Some(&["t2".to_string()][..]));
        assert_eq!(c[1].ttl, Some(2));
        assert!(c[2].if_not_exists);
        assert_eq!(
            c[2].tags[0],
            Expr::Lit(Lit::Num {
                neg: true,
                text: "3"
            })
        );
        assert!(parse("create table t (ts timestamp, j json)").is_err());
        assert!(parse("create stable s (ts timestamp, v int)").is_err());
        assert!(parse("create table t (ts timestamp, v binary(0))").is_err());
    }

    #[test]
    fn insert_forms() {
        let Statement::Insert(t) = p(
            "insert into d.t1 values (now, 1, 'a') (now+1s, -2, null) t2 (ts, v) values(1626006833639, true) \
             t3 using st (t1) tags ('x') values ('2021-07-11 20:33:53.639', 1.5e3)",
        ) else {
            panic!()
        };
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].width, 3);
        assert_eq!(t[0].values.len(), 6);
        assert_eq!(t[0].values[3], Expr::Lit(Lit::Now(1_000_000_000)));
        assert_eq!(
            t[0].values[4],
            Expr::Lit(Lit::Num {
                neg: true,
                text: "2"
            })
        );
        assert_eq!(t[1].columns.as_ref().map(Vec::len), Some(2));
        assert!(t[2].using.is_some());
        assert!(parse("insert into t values (1,2) (1)").is_err());
        assert!(parse("insert into t values").is_err());
        assert!(matches!(
            p("insert into t values (now - 1d, 1)"),
            Statement::Insert(_)
        ));
    }

    #[test]
    fn select_forms() {
        let Statement::Select(s) = p(
            "SELECT ts, `V` AS x, tbname FROM db.st WHERE ts >= '2021-01-01' AND (v BETWEEN 1 AND 2 OR t1 IN ('a','b')) \
             AND name NOT LIKE 'a%' AND c IS NOT NULL PARTITION BY tbname ORDER BY ts DESC LIMIT 10 OFFSET 5",
        ) else {
            panic!()
        };
        assert_eq!(s.items.len(), 3);
        assert!(matches!(&s.items[1], SelectItem::Expr { alias: Some(a), .. } if a == "x"));
        assert!(s.filter.is_some());
        assert_eq!(s.partition, vec![Expr::Col("tbname".into())]);
        assert_eq!(s.order, vec![(Expr::Col("ts".into()), true)]);
        assert_eq!((s.limit, s.offset), (Some(10), Some(5)));

        let Statement::Select(s) = p("select count(*), first(ts), last(ts) from t limit 5, 10")
        else {
            panic!()
        };
        assert!(matches!(&s.items[0], SelectItem::Expr { text, .. } if text == "count(*)"));
        assert_eq!((s.limit, s.offset), (Some(10), Some(5)));
        let Statement::Select(s) = p("select tags tbname, t1 from st") else {
            panic!()
        };
        assert!(s.tags);
        let Statement::Select(s) = p("select distinct tbname from st") else {
            panic!()
        };
        assert!(s.distinct);
        let Statement::Select(s) = p("select server_version()") else {
            panic!()
        };
        assert!(s.from.is_none());
        assert!(parse("select from").is_err());
        assert!(parse("select * from t where").is_err());
        assert!(parse("select * from t limit x").is_err());
    }

    #[test]
    fn other_statements() {
        assert!(matches!(
            p("delete from t where ts < now - 1h"),
            Statement::Delete { .. }
        ));
        assert!(matches!(
            p("drop table if exists a, db.b"),
            Statement::DropTable { if_exists: true, names } if names.len() == 2
        ));
        assert!(matches!(p("drop stable s"), Statement::DropStable { .. }));
        assert_eq!(
            p("create topic if not exists t with meta as database d"),
            Statement::CreateTopic {
                if_not_exists: true,
                name: "t".into(),
                with_meta: true,
                db: "d".into(),
            }
        );
        assert_eq!(
            p("drop topic t"),
            Statement::DropTopic {
                if_exists: false,
                name: "t".into(),
            }
        );
        assert_eq!(p("show topics"), Statement::ShowTopics);
        assert_eq!(
            p("purge wal d vgroup 3 to 10"),
            Statement::PurgeWal {
                db: "d".into(),
                vgroup: Some(3),
                to: 10,
            }
        );
        assert!(crate::sql::parse("create topic t as select * from x").is_err());
        assert!(matches!(
            p("alter stable s add column c2 varchar(10)"),
            Statement::Alter {
                stable: true,
                action: AlterAction::AddColumn(_),
                ..
            }
        ));
        assert!(matches!(
            p("alter stable s drop column c2"),
            Statement::Alter {
                action: AlterAction::DropColumn(_),
                ..
            }
        ));
        assert!(matches!(
            p("alter stable s add tag t9 nchar(4)"),
            Statement::Alter {
                action: AlterAction::AddTag(_),
                ..
            }
        ));
        assert!(matches!(
            p("alter stable s modify column c2 varchar(20)"),
            Statement::Alter {
                action: AlterAction::ModifyColumn(_),
                ..
            }
        ));
        assert!(matches!(
            p("alter table c1 set tag t1 = 5"),
            Statement::Alter { stable: false, action: AlterAction::SetTag(v), .. } if v.len() == 1
        ));
        assert!(matches!(
            p("alter table t comment 'x'"),
            Statement::Alter { .. }
        ));
        assert_eq!(p("show databases"), Statement::ShowDatabases);
        assert_eq!(
            p("show db.stables like 'm%'"),
            Statement::ShowStables {
                db: Some("db".into()),
                like: Some("m%".into())
            }
        );
        assert_eq!(
            p("show tables"),
            Statement::ShowTables {
                db: None,
                like: None
            }
        );
        assert_eq!(
            p("show create database d"),
            Statement::ShowCreateDatabase("d".into())
        );
        assert!(matches!(
            p("show create stable d.s"),
            Statement::ShowCreateTable { stable: true, .. }
        ));
        assert!(matches!(p("describe t"), Statement::Describe(_)));
        assert!(matches!(p("desc db.t;"), Statement::Describe(_)));
    }

    #[test]
    fn names_comments_and_misc() {
        // Bare names are lower-cased, backquoted ones keep their case.
        let Statement::Describe(n) = p("DESCRIBE `MyDb`.Tb1 -- trailing comment") else {
            panic!()
        };
        assert_eq!(
            n,
            Name {
                db: Some("MyDb".into()),
                name: "tb1".into()
            }
        );
        assert!(matches!(
            p("/* c */ ALTER DATABASE d KEEP 20d WAL_RETENTION_PERIOD 10;;"),
            Statement::AlterDatabase { options, .. } if options.len() == 2
        ));
        assert_eq!(p("show vgroups"), Statement::ShowVgroups(None));
        assert_eq!(
            p("show d.vgroups"),
            Statement::ShowVgroups(Some("d".into()))
        );
        assert!(matches!(
            p("alter stable s rename tag a b"),
            Statement::Alter {
                action: AlterAction::Rename { tag: true, .. },
                ..
            }
        ));
        assert!(matches!(
            p("alter stable s drop tag a"),
            Statement::Alter {
                action: AlterAction::DropTag(_),
                ..
            }
        ));
        assert!(matches!(
            p("alter table t ttl 3"),
            Statement::Alter {
                action: AlterAction::Options { ttl: Some(3), .. },
                ..
            }
        ));
        let Statement::Select(s) = p("select count(1) c, v from t as x where `tags` = 1") else {
            panic!()
        };
        assert!(
            matches!(&s.items[0], SelectItem::Expr { alias: Some(a), text, .. } if a == "c" && text == "count(1)")
        );
        assert_eq!(
            s.filter,
            Some(Expr::Cmp(
                CmpOp::Eq,
                Box::new(Expr::Col("tags".into())),
                Box::new(Expr::Lit(Lit::Num {
                    neg: false,
                    text: "1"
                }))
            ))
        );
        let Statement::Select(s) = p("select * from t where ts > now() - 1h and ts < now + 10a")
        else {
            panic!()
        };
        let Some(Expr::And(a, b)) = s.filter else {
            panic!()
        };
        assert_eq!(
            *a,
            Expr::Cmp(
                CmpOp::Gt,
                Box::new(Expr::Col("ts".into())),
                Box::new(Expr::Lit(Lit::Now(-3_600_000_000_000)))
            )
        );
        assert_eq!(
            *b,
            Expr::Cmp(
                CmpOp::Lt,
                Box::new(Expr::Col("ts".into())),
                Box::new(Expr::Lit(Lit::Now(10_000_000)))
            )
        );
        assert_eq!(duration_ns("2", "w"), Some(1_209_600_000_000_000));
        assert_eq!(duration_ns("1", "x"), None);
        assert!(parse("select * from t; select 1").is_err());
        assert!(parse("create table t (ts timestamp, v int unsigned unsigned)").is_err());
        assert!(parse("create table t (ts timestamp, v float unsigned)").is_err());
    }

    /// TDengine's grammar takes names as `NK_ID` only: a bare keyword where a name belongs
    /// is a syntax error (fidelity audit A1/B1); backquoted it is a name.
    #[test]
    fn bare_keywords_are_not_names() {
        for sql in [
            "select ttl from information_schema.ins_tables",
            "select name, wal_retention_period from information_schema.ins_databases",
            "select topic_name, meta from information_schema.ins_topics",
            "select `precision` from t where value = 1",
            "create table t (ts timestamp, value int)",
            "create stable st (ts timestamp, v int) tags (tag int)",
            "create database keep",
            "describe db.ttl",
            "select v as ttl from t",
            "select v comment from t",
            "select tags from t",
            "select match(v) from t",
            "create topic meta with meta as database d",
        ] {
            let e = parse(sql).expect_err(sql);
            assert_eq!(e.code, code::SYNTAX_ERROR, "{sql}: {e}");
            assert!(e.message.starts_with("syntax error near"), "{e}");
        }
        for sql in [
            "select `ttl`, `meta`, `wal_retention_period` from information_schema.ins_tables",
            "select `precision` from t where `value` = 1",
            "create table t (ts timestamp, `value` int)",
            "select count(*), first(v), last(v), last_row(v), server_version() from t",
            "select tbname, _wstart from t partition by tbname",
            "select tags tbname, `tag` from st",
            "insert into t (ts, value) values (1, 2)",
            "insert into c using st (tag) tags (1) (ts, v) values (1, 2)",
            "select v type, v as `ttl` from t",
        ] {
            parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let samples = [
            "",
            ";",
            "(",
            ")",
            "select",
            "select *",
            "select * from",
            "insert",
            "insert into",
            "insert into t values (",
            "create",
            "create table",
            "create table t (",
            "create table t (ts",
            "create table t (ts timestamp",
            "create database",
            "alter stable s",
            "show",
            "show create",
            "select ((((1",
            "select 1 +",
            "select - - -",
            "'",
            "`",
            "values values",
            "select * from t order",
            "select * from t order by",
            "select * from t limit 1,",
            "create table a using",
            "drop",
            "select * from t where a between 1",
            "select * from t where a in (",
            "select count(",
            "create database d keep 1,",
            "insert into t using s tags",
            "select 99999999999999999999999",
            "create table t (v binary(99999999999999999999))",
            "\u{0}",
            "select é from ü",
        ];
        for s in samples {
            let _ = parse(s);
        }
        // Deep nesting and huge expressions are errors, not stack overflows.
        let deep = format!(
            "select * from t where {}1{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(parse(&deep).is_err());
        let neg = format!("select {}1", "- ".repeat(100_000));
        assert!(parse(&neg).is_err());
        let nots = format!("select * from t where {} a", "not ".repeat(100_000));
        assert!(parse(&nots).is_err());
        let chain = format!(
            "select * from t where a = 1{}",
            " and a = 1".repeat(100_000)
        );
        assert!(parse(&chain).is_err());
        let ok_chain = format!("select * from t where a = 1{}", " or a = 1".repeat(300));
        assert!(parse(&ok_chain).is_ok());
        // Deterministic pseudo-random garbage built from SQL fragments.
        let frags = [
            "select", "*", "from", "t", "(", ")", ",", "'x'", "1", "-", "now", "where", "and",
            "tags", "using", "values", "insert", "into", "create", "table", ".", ";", "`q`", "1d",
            "is", "null", "not", "between", "in", "like", "limit", "order", "by",
        ];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..3000 {
            let mut s = String::new();
            let n = (x % 12) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(frags[(x % frags.len() as u64) as usize]);
                s.push(' ');
            }
            x = x.wrapping_add(1);
            let _ = parse(&s);
        }
    }
}
