//! Every SQL statement the source crate sends to TDengine is built here, so that one test can
//! check them all (`tests::every_statement_quotes_its_names`).
//!
//! Rules, from TDengine's parser (`source/libs/parser/inc/sql.y`, `parTokenizer.c`):
//! - every name — database, table, column, tag, topic, and the columns and tables of
//!   `information_schema` — is written in backquotes: names are `NK_ID` in the grammar and
//!   many system-table columns are keywords (`ttl`, `precision`, `wal_retention_period`,
//!   `meta`, …), which are syntax errors when bare (fidelity audit A1);
//! - string literals use single quotes with `\'` and `\\` escaped;
//! - system tables whose column set differs between server versions are read with `SELECT *`
//!   and their columns are found by name in the reply.
//!
//! Statements that carry many items (child tables, rows) are cut by size with
//! [`Batcher`] so that none exceeds [`MAX_SQL_LEN`].

/// `TSDB_MAX_ALLOWED_SQL_LEN` of TDengine 3.x (`include/util/tdef.h`: 1 MiB): a longer
/// statement is refused by the client library with 0x0219 before it reaches the server.
pub(crate) const MAX_SQL_LEN: usize = 1024 * 1024;

/// `` `name` `` (backquotes inside names are doubled, which TDengine's tokenizer reads back).
pub(crate) fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

/// Appends [`ident`] of `name` to `out`.
fn push_ident(out: &mut String, name: &str) {
    out.push('`');
    for (i, part) in name.split('`').enumerate() {
        if i > 0 {
            out.push_str("``");
        }
        out.push_str(part);
    }
    out.push('`');
}

/// `'text'` with TDengine's escapes for `'` and `\`.
pub(crate) fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `` `db`.`name` ``.
pub(crate) fn qualified(db: &str, name: &str) -> String {
    let mut out = String::with_capacity(db.len() + name.len() + 5);
    push_qualified(&mut out, db, name);
    out
}

/// Appends [`qualified`] of `db` and `name` to `out`.
fn push_qualified(out: &mut String, db: &str, name: &str) {
    push_ident(out, db);
    out.push('.');
    push_ident(out, name);
}

/// `` `information_schema`.`<table>` ``.
fn system_table(table: &str) -> String {
    qualified("information_schema", table)
}

/// A comma-separated list of backquoted names.
fn ident_list<S: AsRef<str>>(names: &[S]) -> String {
    let mut out = String::new();
    push_ident_list(&mut out, names);
    out
}

/// Appends [`ident_list`] of `names` to `out`.
fn push_ident_list<S: AsRef<str>>(out: &mut String, names: &[S]) {
    push_separated(out, names, |out, n| push_ident(out, n.as_ref()));
}

/// Appends each of `items` to `out` with `push`, separated by `, `.
fn push_separated<T>(out: &mut String, items: &[T], push: impl Fn(&mut String, &T)) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push(out, item);
    }
}

// ---- server and catalog ----

/// The server's version (`noarg_func` of sql.y).
pub(crate) fn server_version() -> String {
    "SELECT SERVER_VERSION()".to_string()
}

/// `SHOW CREATE DATABASE` (the DDL is column 1 of the reply).
pub(crate) fn show_create_database(db: &str) -> String {
    format!("SHOW CREATE DATABASE {}", ident(db))
}

/// The database's row of `ins_databases`, every column (the column set grows with the server
/// version; `name` and `precision` exist in all of them).
pub(crate) fn database_row(db: &str) -> String {
    format!(
        "SELECT * FROM {} WHERE {} = {}",
        system_table("ins_databases"),
        ident("name"),
        quote_str(db)
    )
}

/// Names of the super tables of `db`.
pub(crate) fn stable_names(db: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} = {}",
        ident("stable_name"),
        system_table("ins_stables"),
        ident("db_name"),
        quote_str(db)
    )
}

/// Every table of `db` with what the catalog needs (columns of `ins_tables` present in
/// every 3.x version: `source/common/src/systable.c`, `userTblsSchema`).
pub(crate) fn tables(db: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} = {}",
        ident_list(&["table_name", "stable_name", "ttl", "table_comment", "type"]),
        system_table("ins_tables"),
        ident("db_name"),
        quote_str(db)
    )
}

/// Names of the tables of `db`, or of the children of `stable`.
pub(crate) fn table_names(db: &str, stable: Option<&str>) -> String {
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {} = {}",
        ident("table_name"),
        system_table("ins_tables"),
        ident("db_name"),
        quote_str(db)
    );
    if let Some(s) = stable {
        sql.push_str(&format!(" AND {} = {}", ident("stable_name"), quote_str(s)));
    }
    sql
}

/// Name, uid and super table of every table of `db` (the `wal` feed's resolver).
pub(crate) fn table_uids(db: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} = {}",
        ident_list(&["table_name", "uid", "stable_name"]),
        system_table("ins_tables"),
        ident("db_name"),
        quote_str(db)
    )
}

/// Columns of the normal tables of `db`.
pub(crate) fn normal_table_columns(db: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} = {} AND {} = 'NORMAL_TABLE'",
        ident_list(&["table_name", "col_name", "col_type", "col_length"]),
        system_table("ins_columns"),
        ident("db_name"),
        quote_str(db),
        ident("table_type")
    )
}

/// Every topic, every column: `ins_topics` has `meta` and `type` in some versions only
/// (`systable.c` `topicSchema`, `mndTopic.c` `mndRetrieveTopic`).
pub(crate) fn topics() -> String {
    format!("SELECT * FROM {}", system_table("ins_topics"))
}

/// `SHOW CREATE STABLE`.
pub(crate) fn show_create_stable(db: &str, stable: &str) -> String {
    format!("SHOW CREATE STABLE {}", qualified(db, stable))
}

/// `DESCRIBE` a table or super table.
pub(crate) fn describe(db: &str, table: &str) -> String {
    format!("DESCRIBE {}", qualified(db, table))
}

/// The typed tag values of every child of `stable`: `tbname` then `tags` in order.
pub(crate) fn child_tags(db: &str, stable: &str, tags: &[String]) -> String {
    format!(
        "SELECT TAGS TBNAME, {} FROM {}",
        ident_list(tags),
        qualified(db, stable)
    )
}

// ---- export and verification ----

/// A table's rows with `from <= ts < to`, in timestamp order.
pub(crate) fn export_rows(db: &str, table: &str, ts_column: &str, from: i64, to: i64) -> String {
    let ts = ident(ts_column);
    format!(
        "SELECT * FROM {} WHERE {ts} >= {from} AND {ts} < {to} ORDER BY {ts} ASC",
        qualified(db, table)
    )
}

/// The rows of the children `tables` of `stable` with `from <= ts < to`, each row with
/// its table's name as the last column (`export_tables.rs`). No `ORDER BY`: a table's rows
/// ascend, but the tables' runs interleave (`export_tables.rs` explains why).
pub(crate) fn export_children(
    db: &str,
    stable: &str,
    columns: &[String],
    tables: &[&str],
    ts_column: &str,
    from: i64,
    to: i64,
) -> String {
    let ts = ident(ts_column);
    let names: Vec<String> = tables.iter().map(|t| quote_str(t)).collect();
    format!(
        "SELECT {}, TBNAME FROM {} WHERE TBNAME IN ({}) AND {ts} >= {from} AND {ts} < {to}",
        ident_list(columns),
        qualified(db, stable),
        names.join(", ")
    )
}

/// `COUNT(*)` of one table.
pub(crate) fn count_rows(db: &str, table: &str) -> String {
    format!("SELECT COUNT(*) FROM {}", qualified(db, table))
}

/// `COUNT(*)` of every child of a super table.
pub(crate) fn count_rows_by_child(db: &str, stable: &str) -> String {
    format!(
        "SELECT TBNAME, COUNT(*) FROM {} PARTITION BY TBNAME",
        qualified(db, stable)
    )
}

/// The rows and the first and last timestamp of one table (the estimate of a full backup,
/// `estimate.rs`).
pub(crate) fn table_extent(db: &str, table: &str, ts_column: &str) -> String {
    let ts = ident(ts_column);
    format!(
        "SELECT COUNT(*), FIRST({ts}), LAST({ts}) FROM {}",
        qualified(db, table)
    )
}

/// [`table_extent`] of every child of a super table (children without rows are absent).
pub(crate) fn table_extent_by_child(db: &str, stable: &str, ts_column: &str) -> String {
    let ts = ident(ts_column);
    format!(
        "SELECT TBNAME, COUNT(*), FIRST({ts}), LAST({ts}) FROM {} PARTITION BY TBNAME",
        qualified(db, stable)
    )
}

// ---- restore ----

/// `CREATE STABLE IF NOT EXISTS` from columns and tags given as `` `name` TYPE `` items.
pub(crate) fn create_stable(db: &str, stable: &str, columns: &[String], tags: &[String]) -> String {
    format!(
        "CREATE STABLE IF NOT EXISTS {} ({}) TAGS ({})",
        qualified(db, stable),
        columns.join(", "),
        tags.join(", ")
    )
}

/// `CREATE TABLE IF NOT EXISTS` of a normal table; `options` is empty or starts with a space.
pub(crate) fn create_normal_table(
    db: &str,
    table: &str,
    columns: &[String],
    options: &str,
) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}){options}",
        qualified(db, table),
        columns.join(", ")
    )
}

/// One clause of a batched `CREATE TABLE`: `` IF NOT EXISTS `db`.`c` USING `db`.`st` (tags)
/// TAGS (values) `` and options.
pub(crate) fn child_clause(
    db: &str,
    table: &str,
    stable: &str,
    tag_names: &[&str],
    tag_values: &[String],
    options: &str,
) -> String {
    // Written into one buffer: a restore builds one clause per child table, 100,000 and
    // more.
    let names: usize = tag_names.iter().map(|n| n.len() + 4).sum();
    let values: usize = tag_values.iter().map(|v| v.len() + 2).sum();
    let mut out = String::with_capacity(
        40 + 2 * db.len() + table.len() + stable.len() + names + values + options.len(),
    );
    out.push_str("IF NOT EXISTS ");
    push_qualified(&mut out, db, table);
    out.push_str(" USING ");
    push_qualified(&mut out, db, stable);
    out.push_str(" (");
    push_ident_list(&mut out, tag_names);
    out.push_str(") TAGS (");
    push_separated(&mut out, tag_values, |out, v| out.push_str(v));
    out.push(')');
    out.push_str(options);
    out
}

/// Rewrites `CREATE STABLE <name> …` from `SHOW CREATE STABLE` into
/// `CREATE STABLE IF NOT EXISTS <db>.<name> …`, keeping every option the server printed.
pub(crate) fn qualify_stable_ddl(ddl: &str, db: &str, name: &str) -> Option<String> {
    let upper = ddl.to_ascii_uppercase();
    let head = "CREATE STABLE ";
    let start = upper.find(head)?;
    let after = &ddl[start + head.len()..];
    let after = after.trim_start();
    let rest = if let Some(r) = after.strip_prefix(&ident(name)) {
        r
    } else {
        after.strip_prefix(name)?
    };
    Some(format!(
        "CREATE STABLE IF NOT EXISTS {}.{}{}",
        ident(db),
        ident(name),
        rest
    ))
}

/// The head of a batched `CREATE TABLE` (clauses follow, separated by spaces).
pub(crate) const CREATE_TABLES_HEAD: &str = "CREATE TABLE";

/// The head of an `INSERT` into `db.table` with a column list (rows follow).
pub(crate) fn insert_head(db: &str, table: &str, columns: &[String]) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES",
        qualified(db, table),
        ident_list(columns)
    )
}

/// Whether a database of that name exists.
pub(crate) fn database_exists(db: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} = {}",
        ident("name"),
        system_table("ins_databases"),
        ident("name"),
        quote_str(db)
    )
}

// ---- tmq feed ----

/// Every subscription, every column: `ins_subscriptions` gained `rows` and changed
/// `consumer_id`'s type across versions (`systable.c` `subscriptionSchema`).
pub(crate) fn subscriptions() -> String {
    format!("SELECT * FROM {}", system_table("ins_subscriptions"))
}

/// Drops a topic (`feed drop`, a failed first backup's topic).
pub(crate) fn drop_topic(topic: &str) -> String {
    format!("DROP TOPIC IF EXISTS {}", ident(topic))
}

/// The feed's topic over a whole database, with table creations, drops, alters and deletes.
pub(crate) fn create_topic(topic: &str, db: &str) -> String {
    format!(
        "CREATE TOPIC IF NOT EXISTS {} WITH META AS DATABASE {}",
        ident(topic),
        ident(db)
    )
}

/// Collects items (`CREATE TABLE` clauses, `VALUES` rows) into statements of at most
/// `limit` bytes: `head item item …`. An item that cannot fit even alone is an error.
#[derive(Debug)]
pub(crate) struct Batcher {
    head: String,
    limit: usize,
    current: String,
    items: usize,
    done: Vec<String>,
}

impl Batcher {
    /// Statements starting with `head`, each at most `limit` bytes.
    pub(crate) fn new(head: impl Into<String>, limit: usize) -> Batcher {
        let head = head.into();
        Batcher {
            current: head.clone(),
            head,
            limit,
            items: 0,
            done: Vec::new(),
        }
    }

    /// Adds one item; returns its size when it cannot fit in a statement by itself.
    pub(crate) fn push(&mut self, item: &str) -> Result<(), usize> {
        let alone = self.head.len() + 1 + item.len();
        if alone > self.limit {
            return Err(alone);
        }
        if self.items > 0 && self.current.len() + 1 + item.len() > self.limit {
            let full = std::mem::replace(&mut self.current, self.head.clone());
            self.done.push(full);
            self.items = 0;
        }
        self.current.push(' ');
        self.current.push_str(item);
        self.items += 1;
        Ok(())
    }

    /// The statements, in order.
    pub(crate) fn finish(mut self) -> Vec<String> {
        if self.items > 0 {
            self.done.push(self.current);
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taosbackup_testkit::keywords::{bare_words, is_keyword};

    /// Keywords the statements above use as syntax (each must be a TDengine keyword). Any
    /// other bare word in a statement is a name that was not backquoted.
    const SYNTAX: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "ORDER",
        "BY",
        "ASC",
        "SHOW",
        "CREATE",
        "DATABASE",
        "STABLE",
        "TABLE",
        "DESCRIBE",
        "TAGS",
        "TBNAME",
        "COUNT",
        "PARTITION",
        "IF",
        "NOT",
        "EXISTS",
        "USING",
        "INSERT",
        "INTO",
        "VALUES",
        "TOPIC",
        "DROP",
        "FIRST",
        "LAST",
        "WITH",
        "META",
        "AS",
        "SERVER_VERSION",
        "COMMENT",
        "TTL",
        "NULL",
        "TIMESTAMP",
        "INT",
        "BIGINT",
        "NCHAR",
        "VARCHAR",
        "UNSIGNED",
        "DOUBLE",
        "BOOL",
        "TINYINT",
        "SMALLINT",
        "FLOAT",
        "JSON",
        "VARBINARY",
        "GEOMETRY",
        "DECIMAL",
        "BINARY",
    ];

    /// Names that are TDengine keywords, to prove quoting: a bare one would be a syntax
    /// error on a real server.
    const DB: &str = "select";
    const TABLE: &str = "ttl";
    const STABLE: &str = "meta";
    const COLUMN: &str = "wal_retention_period";

    /// Every statement the crate can send, with hostile names where it takes names.
    pub(crate) fn every_statement() -> Vec<String> {
        let cols = vec![
            format!("{} TIMESTAMP", ident("ts")),
            format!("{} INT", ident(COLUMN)),
        ];
        let tags = vec![format!("{} NCHAR(8)", ident("value"))];
        let mut v = vec![
            server_version(),
            show_create_database(DB),
            database_row(DB),
            stable_names(DB),
            tables(DB),
            table_names(DB, None),
            table_names(DB, Some(STABLE)),
            table_uids(DB),
            normal_table_columns(DB),
            topics(),
            show_create_stable(DB, STABLE),
            describe(DB, TABLE),
            child_tags(DB, STABLE, &["value".into(), "tag".into()]),
            export_rows(DB, TABLE, "timestamp", -5, 10),
            count_rows(DB, TABLE),
            count_rows_by_child(DB, STABLE),
            create_stable(DB, STABLE, &cols, &tags),
            create_normal_table(DB, TABLE, &cols, " COMMENT 'c' TTL 3"),
            database_exists(DB),
            create_topic("topic", DB),
            subscriptions(),
            drop_topic("topic"),
            table_extent(DB, TABLE, "timestamp"),
            table_extent_by_child(DB, STABLE, "timestamp"),
        ];
        let clause = child_clause(DB, TABLE, STABLE, &["value"], &["'x'".into()], " TTL 1");
        let mut b = Batcher::new(CREATE_TABLES_HEAD, MAX_SQL_LEN);
        b.push(&clause).unwrap();
        b.push(&clause).unwrap();
        v.extend(b.finish());
        let mut b = Batcher::new(insert_head(DB, TABLE, &["ts".into(), "value".into()]), 100);
        b.push("(1, NULL)").unwrap();
        v.extend(b.finish());
        v.extend(crate::restore::every_statement_for_tests(
            DB, TABLE, STABLE, COLUMN,
        ));
        v
    }

    #[test]
    fn names_are_quoted_with_inner_backquotes_doubled() {
        assert_eq!(ident("t"), "`t`");
        assert_eq!(ident("a`b``"), "`a``b`````");
        assert_eq!(ident(""), "``");
        assert_eq!(
            child_clause(
                "d`b",
                "c`1",
                "m",
                &["t`a", "tb"],
                &["1".into(), "'x'".into()],
                " TTL 2"
            ),
            "IF NOT EXISTS `d``b`.`c``1` USING `d``b`.`m` (`t``a`, `tb`) TAGS (1, 'x') TTL 2"
        );
    }

    #[test]
    fn every_statement_quotes_its_names() {
        for sql in every_statement() {
            let words = bare_words(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            for w in words {
                assert!(
                    is_keyword(w),
                    "{sql}: bare word {w:?} is no keyword: an unquoted name"
                );
                assert!(
                    SYNTAX.iter().any(|s| s.eq_ignore_ascii_case(w))
                        || crate::dbopts::is_option_keyword(w),
                    "{sql}: bare keyword {w:?} used where the statement has a name"
                );
            }
            assert!(sql.len() <= MAX_SQL_LEN);
        }
        for w in SYNTAX {
            assert!(is_keyword(w), "{w} is not a TDengine keyword");
        }
    }

    /// The statements parse on the emulator, which rejects bare keywords as TDengine does.
    #[test]
    fn every_statement_parses() {
        let store = taosbackup_testkit::Store::new(Default::default());
        let mut session = taosbackup_testkit::Session::default();
        for sql in every_statement() {
            if let Err(e) = store.execute(&mut session, &sql) {
                assert_ne!(e.code, taosbackup_testkit::code::SYNTAX_ERROR, "{sql}: {e}");
            }
        }
    }

    /// No statement text outside this module: a `SELECT`/`SHOW`/`CREATE`… literal anywhere
    /// else in the crate's code would escape the tests above.
    #[test]
    fn statements_are_built_here_only() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let starters = [
            "\"SELECT ",
            "\"SHOW ",
            "\"CREATE ",
            "\"DESCRIBE ",
            "\"INSERT ",
            "\"DROP ",
            "\"ALTER ",
            "\"DELETE ",
            "\"USE ",
        ];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                // The conformance suite sends statements of its own on purpose (one of them a
                // bare keyword, to show the server refuses it); the tool never sends them.
                let suite = path.file_stem().is_some_and(|n| n == "conformance")
                    || path
                        .parent()
                        .and_then(|p| p.file_name())
                        .is_some_and(|n| n == "conformance");
                if path.file_name().is_some_and(|n| n == "sql.rs") || suite {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for line in code.lines() {
                    let l = line.trim_start();
                    if l.starts_with("//") {
                        continue;
                    }
                    if starters.iter().any(|s| l.contains(s)) {
                        offenders.push(format!("{}: {l}", path.display()));
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "statements built outside sql.rs:\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn batches_stay_under_the_limit() {
        let mut b = Batcher::new("H", 10);
        for item in ["aaa", "bbb", "cc", "d"] {
            b.push(item).unwrap();
        }
        assert_eq!(b.finish(), vec!["H aaa bbb", "H cc d"]);
        let mut b = Batcher::new("H", 10);
        assert_eq!(b.push("123456789"), Err(11));
        assert!(b.finish().is_empty());
    }
}
