//! The catalog: databases, super tables, tables and their options.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::table::TableData;
use super::wal::{Spill, TmqState, VgWal, WalBody};
use super::wal_files::{VnodeFiles, WalFilesConfig};
use crate::error::{EmuError, code};
use crate::sql::ast::OptVal;
use crate::types::{Field, Precision, Value};
use crate::walfile::Msg;

/// Minutes per day.
const DAY_M: i64 = 1440;

/// Database options as TDengine 3.3 reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct DbOptions {
    /// PRECISION.
    pub precision: Precision,
    /// VGROUPS.
    pub vgroups: u32,
    /// KEEP in minutes (keep0, keep1, keep2).
    pub keep: [i64; 3],
    /// DURATION in minutes.
    pub duration: i64,
    /// WAL_RETENTION_PERIOD in seconds.
    pub wal_retention_period: i64,
    /// WAL_RETENTION_SIZE in KB.
    pub wal_retention_size: i64,
    /// BUFFER (MB).
    pub buffer: i64,
    /// CACHESIZE (MB).
    pub cachesize: i64,
    /// CACHEMODEL.
    pub cachemodel: String,
    /// COMP.
    pub comp: i64,
    /// WAL_FSYNC_PERIOD.
    pub wal_fsync_period: i64,
    /// MAXROWS.
    pub maxrows: i64,
    /// MINROWS.
    pub minrows: i64,
    /// STT_TRIGGER.
    pub stt_trigger: i64,
    /// PAGES.
    pub pages: i64,
    /// PAGESIZE.
    pub pagesize: i64,
    /// REPLICA.
    pub replica: i64,
    /// WAL_LEVEL.
    pub wal_level: i64,
    /// SINGLE_STABLE.
    pub single_stable: i64,
    /// TABLE_PREFIX.
    pub table_prefix: i64,
    /// TABLE_SUFFIX.
    pub table_suffix: i64,
    /// TSDB_PAGESIZE.
    pub tsdb_pagesize: i64,
    /// KEEP_TIME_OFFSET.
    pub keep_time_offset: i64,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            precision: Precision::Millisecond,
            vgroups: 2,
            keep: [3650 * DAY_M; 3],
            duration: 10 * DAY_M,
            wal_retention_period: 3600,
            wal_retention_size: 0,
            buffer: 256,
            cachesize: 1,
            cachemodel: "none".into(),
            comp: 2,
            wal_fsync_period: 3000,
            maxrows: 4096,
            minrows: 100,
            stt_trigger: 2,
            pages: 256,
            pagesize: 4,
            replica: 1,
            wal_level: 1,
            single_stable: 0,
            table_prefix: 0,
            table_suffix: 0,
            tsdb_pagesize: 4,
            keep_time_offset: 0,
        }
    }
}

fn opt_err(name: &str, why: &str) -> EmuError {
    EmuError::new(
        code::INVALID_DB_OPTION,
        format!("Invalid option {name}: {why}"),
    )
}

fn opt_int(name: &str, v: &OptVal) -> Result<i64, EmuError> {
    match v {
        OptVal::Num(n) => n.parse().map_err(|_| opt_err(name, "not an integer")),
        _ => Err(opt_err(name, "not an integer")),
    }
}

/// A duration option (`n` days or `n` with unit m/h/d) in minutes.
fn opt_minutes(name: &str, v: &OptVal) -> Result<i64, EmuError> {
    match v {
        OptVal::Num(n) => n
            .parse::<i64>()
            .ok()
            .and_then(|d| d.checked_mul(DAY_M))
            .ok_or_else(|| opt_err(name, "bad number")),
        OptVal::Duration(n, u) => {
            let n: i64 = n.parse().map_err(|_| opt_err(name, "bad number"))?;
            let m = match u.as_str() {
                "m" => 1,
                "h" => 60,
                "d" => DAY_M,
                _ => return Err(opt_err(name, "unit must be m, h or d")),
            };
            n.checked_mul(m).ok_or_else(|| opt_err(name, "too large"))
        }
        _ => Err(opt_err(name, "not a duration")),
    }
}

fn opt_text(name: &str, v: &OptVal) -> Result<String, EmuError> {
    match v {
        OptVal::Str(s) | OptVal::Word(s) => Ok(s.clone()),
        _ => Err(opt_err(name, "not a string")),
    }
}

impl DbOptions {
    /// Applies `CREATE/ALTER DATABASE` options.
    pub fn apply(
        &mut self,
        options: &[(String, OptVal)],
        profile: crate::Profile,
    ) -> Result<(), EmuError> {
        let accepted = profile.database_options();
        for (name, v) in options {
            let n = name.as_str();
            // An option this version's grammar lacks is a syntax error there (sql.y).
            if !accepted.contains(&n) {
                return Err(EmuError::syntax(name));
            }
            match n {
                "PRECISION" => {
                    let s = opt_text(n, v)?;
                    self.precision =
                        Precision::parse(&s).ok_or_else(|| opt_err(n, "must be ms, us or ns"))?;
                }
                "VGROUPS" => {
                    let x = opt_int(n, v)?;
                    if !(1..=1024).contains(&x) {
                        return Err(opt_err(n, "must be 1..1024"));
                    }
                    self.vgroups = x as u32;
                }
                "KEEP" => {
                    let list: Vec<i64> = match v {
                        OptVal::List(l) => l
                            .iter()
                            .map(|x| opt_minutes(n, x))
                            .collect::<Result<_, _>>()?,
                        x => vec![opt_minutes(n, x)?],
                    };
                    if list.is_empty() || list.len() > 3 || list.iter().any(|k| *k <= 0) {
                        return Err(opt_err(n, "one to three positive values"));
                    }
                    let k0 = list[0];
                    let k1 = list.get(1).copied().unwrap_or(k0);
                    let k2 = list.get(2).copied().unwrap_or(k1);
                    self.keep = [k0, k1, k2];
                }
                "DURATION" => {
                    let d = opt_minutes(n, v)?;
                    if d <= 0 {
                        return Err(opt_err(n, "must be positive"));
                    }
                    self.duration = d;
                }
                "WAL_RETENTION_PERIOD" => self.wal_retention_period = opt_int(n, v)?,
                "WAL_RETENTION_SIZE" => self.wal_retention_size = opt_int(n, v)?,
                "BUFFER" => self.buffer = opt_int(n, v)?,
                "CACHESIZE" => self.cachesize = opt_int(n, v)?,
                "CACHEMODEL" => {
                    let s = opt_text(n, v)?;
                    if !["none", "last_row", "last_value", "both"].contains(&s.as_str()) {
                        return Err(opt_err(n, "none, last_row, last_value or both"));
                    }
                    self.cachemodel = s;
                }
                "COMP" => self.comp = opt_int(n, v)?,
                "WAL_FSYNC_PERIOD" => self.wal_fsync_period = opt_int(n, v)?,
                "MAXROWS" => self.maxrows = opt_int(n, v)?,
                "MINROWS" => self.minrows = opt_int(n, v)?,
                "STT_TRIGGER" => self.stt_trigger = opt_int(n, v)?,
                "PAGES" => self.pages = opt_int(n, v)?,
                "PAGESIZE" => self.pagesize = opt_int(n, v)?,
                "REPLICA" => self.replica = opt_int(n, v)?,
                "WAL_LEVEL" => self.wal_level = opt_int(n, v)?,
                "SINGLE_STABLE" => self.single_stable = opt_int(n, v)?,
                "TABLE_PREFIX" => self.table_prefix = opt_int(n, v)?,
                "TABLE_SUFFIX" => self.table_suffix = opt_int(n, v)?,
                "TSDB_PAGESIZE" => self.tsdb_pagesize = opt_int(n, v)?,
                "KEEP_TIME_OFFSET" => self.keep_time_offset = opt_int(n, v)?,
                // Accepted (by the profile) and not stored.
                _ if accepted.contains(&n) => {}
                _ => {
                    return Err(EmuError::syntax(name));
                }
            }
        }
        Ok(())
    }

    /// KEEP (keep2) in nanoseconds.
    pub fn keep_ns(&self) -> i64 {
        self.keep[2].saturating_mul(60_000_000_000)
    }
}

/// A database.
#[derive(Debug)]
pub struct Db {
    /// Name.
    pub name: String,
    /// Options.
    pub opts: DbOptions,
    /// Creation time (ms).
    pub create_time: i64,
    /// First vgroup id; the database owns `vgroup_base .. vgroup_base + vgroups`.
    pub vgroup_base: u32,
    /// Super tables by name.
    pub stables: BTreeMap<String, STable>,
    /// Child and normal tables by name.
    pub tables: BTreeMap<String, Table>,
    /// Write-ahead log per vgroup id.
    pub wal: BTreeMap<u32, VgWal>,
    /// TDengine-format WAL directory per vgroup id, when WAL files are enabled.
    pub files: BTreeMap<u32, VnodeFiles>,
}

impl Db {
    /// Whether a table or super table named `name` may be created: `Ok(true)` when the name
    /// is free, `Ok(false)` when it is taken and `IF NOT EXISTS` was given (nothing to do),
    /// else TDengine's "Table already exists" with `code`.
    pub fn name_is_free(
        &self,
        name: &str,
        if_not_exists: bool,
        code: u32,
    ) -> Result<bool, EmuError> {
        if !self.stables.contains_key(name) && !self.tables.contains_key(name) {
            Ok(true)
        } else if if_not_exists {
            Ok(false)
        } else {
            Err(EmuError::new(code, "Table already exists"))
        }
    }

    /// The vgroup a table name hashes to (FNV-1a of the name).
    pub fn vgroup_of(&self, table: &str) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in table.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        self.vgroup_base + h % self.opts.vgroups.max(1)
    }

    /// The database's vgroup ids.
    pub fn vgroup_ids(&self) -> std::ops::Range<u32> {
        self.vgroup_base..self.vgroup_base + self.opts.vgroups.max(1)
    }

    /// The log of a vgroup (created empty on first use), with retention applied at `now_ns`.
    pub fn wal_mut(&mut self, vgroup: u32, now_ns: i64) -> &mut VgWal {
        let w = self.wal.entry(vgroup).or_default();
        w.apply_retention(&self.opts, now_ns);
        w
    }

    /// Appends a change to a vgroup's log and, when WAL files are enabled, `msg` as the same
    /// version to the vgroup's WAL files; returns the version. Fails (changing nothing) when
    /// the WAL files cannot be written.
    pub fn log(
        &mut self,
        vgroup: u32,
        now_ns: i64,
        body: WalBody,
        msg: Msg,
    ) -> Result<i64, EmuError> {
        if let Some(f) = self.files.get(&vgroup) {
            f.check()?;
        }
        let w = self.wal.entry(vgroup).or_default();
        let v = w.append(now_ns, body);
        w.apply_retention(&self.opts, now_ns);
        let (begin, end) = (w.begin, w.end);
        if let Some(f) = self.files.get_mut(&vgroup) {
            f.append(v, &msg)?;
            f.purge_below(begin, end)?;
        }
        Ok(v)
    }

    /// Appends a change to every vgroup's log (super-table DDL reaches every vnode).
    pub fn log_all(&mut self, now_ns: i64, body: &WalBody, msg: &Msg) -> Result<(), EmuError> {
        for vg in self.vgroup_ids() {
            self.log(vg, now_ns, body.clone(), msg.clone())?;
        }
        Ok(())
    }

    /// Deletes the WAL file segments of `vgroup` below its log's first version (after a
    /// purge).
    pub fn sync_files(&mut self, vgroup: u32) -> Result<(), EmuError> {
        let (begin, end) = self.wal.get(&vgroup).map_or((0, 0), |w| (w.begin, w.end));
        match self.files.get_mut(&vgroup) {
            Some(f) => f.purge_below(begin, end),
            None => Ok(()),
        }
    }

    /// Creates the WAL directories of every vgroup that has none, each starting at its log's
    /// end (the database's earlier changes are not written).
    pub fn create_files(&mut self, cfg: &WalFilesConfig) -> Result<(), EmuError> {
        for vg in self.vgroup_ids() {
            if self.files.contains_key(&vg) {
                continue;
            }
            let end = self.wal.get(&vg).map_or(0, |w| w.end);
            let f = VnodeFiles::create(cfg, vg, &self.name, self.opts.precision, end)?;
            self.files.insert(vg, f);
        }
        Ok(())
    }

    /// Deletes the WAL directories (DROP DATABASE).
    pub fn remove_files(&mut self) -> Result<(), EmuError> {
        for (_, f) in std::mem::take(&mut self.files) {
            f.remove()?;
        }
        Ok(())
    }

    /// The super table uid of a table (0 for a normal table).
    pub fn suid_of(&self, t: &Table) -> i64 {
        t.stable()
            .and_then(|s| self.stables.get(s))
            .map_or(0, |s| s.uid)
    }
}

/// A super table.
#[derive(Debug, Clone)]
pub struct STable {
    /// Name.
    pub name: String,
    /// Unique id.
    pub uid: i64,
    /// Creation time (ms).
    pub create_time: i64,
    /// Last schema change (ms).
    pub last_update: i64,
    /// Data columns (first is the timestamp).
    pub columns: Vec<Field>,
    /// Tags.
    pub tags: Vec<Field>,
    /// Comment.
    pub comment: Option<String>,
    /// Schema version (bumped on column changes).
    pub version: i32,
    /// Tag schema version.
    pub tag_version: i32,
    /// A virtual super table (`VIRTUAL 1`, TDengine 3.3.6+).
    pub is_virtual: bool,
}

/// What kind of table.
#[derive(Debug, Clone)]
pub enum TableKind {
    /// A normal table with its own schema.
    Normal {
        /// Data columns.
        columns: Vec<Field>,
    },
    /// A child table of a super table.
    Child {
        /// The super table's name.
        stable: String,
        /// Tag values aligned with the super table's tags.
        tags: Vec<Value>,
    },
}

/// A child or normal table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Name.
    pub name: String,
    /// Unique id.
    pub uid: i64,
    /// Creation time (ms).
    pub create_time: i64,
    /// Vgroup id.
    pub vgroup: u32,
    /// TTL in days (0 = none).
    pub ttl: i64,
    /// Comment.
    pub comment: Option<String>,
    /// Schema version of a normal table.
    pub version: i32,
    /// Normal or child.
    pub kind: TableKind,
    /// A virtual table (`CREATE VTABLE`, TDengine 3.3.6+): no rows of its own.
    pub is_virtual: bool,
    /// Rows.
    pub data: TableData,
}

impl Table {
    /// The super table name of a child table.
    pub fn stable(&self) -> Option<&str> {
        match &self.kind {
            TableKind::Child { stable, .. } => Some(stable),
            TableKind::Normal { .. } => None,
        }
    }
}

/// All databases.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Databases by name.
    pub dbs: BTreeMap<String, Db>,
    /// Next unique id for tables.
    pub next_uid: i64,
    /// Next free vgroup id.
    pub next_vgroup: u32,
    /// Topics and consumer-group offsets.
    pub tmq: TmqState,
    /// Where the vgroups' TDengine-format WAL files go, when enabled.
    pub wal_files: Option<WalFilesConfig>,
    /// The file the vgroups' logs keep their batches in (created at the first batch).
    pub wal_spill: Arc<Spill>,
}

impl Catalog {
    /// A fresh unique id.
    pub fn uid(&mut self) -> i64 {
        self.next_uid += 1;
        // TDengine uids are large positive numbers; keep them recognisable but unique.
        0x1000_0000_0000 + self.next_uid
    }

    /// The database, or TDengine's "Database not exist".
    pub fn db(&self, name: &str) -> Result<&Db, EmuError> {
        self.dbs.get(name).ok_or_else(|| db_not_exist(name))
    }

    /// The database, mutably.
    pub fn db_mut(&mut self, name: &str) -> Result<&mut Db, EmuError> {
        self.dbs.get_mut(name).ok_or_else(|| db_not_exist(name))
    }
}

/// 0x0388 Database not exist.
pub fn db_not_exist(name: &str) -> EmuError {
    let _ = name;
    EmuError::new(code::DB_NOT_EXIST, "Database not exist")
}

/// 0x2603 Table does not exist.
pub fn table_not_exist(name: &str) -> EmuError {
    EmuError::new(
        code::TABLE_NOT_EXIST,
        format!("Table does not exist: {name}"),
    )
}
