//! [`WalFeed`]: the `wal` [`ChangeFeed`] over the vnode WALs of one database.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use taosbackup_core::{
    ChangeBatch, ChangeEvent, ChangeFeed, FeedStart, Positions, SourceError, TableEvent,
};

use super::{
    decode::{self, Entry},
    error::WalError,
    vnode::{self, Read1, Record, SegReader, Vnode},
};

/// A table the catalog knows: what a [`TableResolver`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedTable {
    /// Table uid (`information_schema.ins_tables.uid`).
    pub uid: i64,
    /// Table name.
    pub name: String,
    /// Super table name of a child table.
    pub super_table: Option<String>,
}

/// Where [`WalFeed`] looks up table names for uids its WAL does not name: the database
/// catalog, read through the connector (`SELECT table_name, uid, stable_name FROM
/// information_schema.ins_tables WHERE db_name = …`).
#[async_trait]
pub trait TableResolver: Send + Sync {
    /// Every child and normal table of the feed's database, as the catalog has them now.
    /// Called when the feed starts and whenever a record names an unknown uid.
    async fn tables(&self) -> Result<Vec<ResolvedTable>, SourceError>;
}

/// A [`TableResolver`] over an in-memory table list that callers can change (tests; setups
/// without a catalog). Clones share the list.
#[derive(Debug, Clone, Default)]
pub struct MapResolver {
    inner: Arc<Mutex<(BTreeMap<i64, ResolvedTable>, u64)>>,
}

impl MapResolver {
    /// An empty resolver.
    pub fn new() -> MapResolver {
        MapResolver::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<i64, ResolvedTable>, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a table.
    pub fn insert(&self, uid: i64, name: &str, super_table: Option<&str>) {
        self.lock().0.insert(
            uid,
            ResolvedTable {
                uid,
                name: name.to_string(),
                super_table: super_table.map(str::to_string),
            },
        );
    }

    /// Removes a table.
    pub fn remove(&self, uid: i64) {
        self.lock().0.remove(&uid);
    }

    /// How many times [`TableResolver::tables`] was called.
    pub fn lookups(&self) -> u64 {
        self.lock().1
    }
}

#[async_trait]
impl TableResolver for MapResolver {
    async fn tables(&self) -> Result<Vec<ResolvedTable>, SourceError> {
        let mut g = self.lock();
        g.1 += 1;
        Ok(g.0.values().cloned().collect())
    }
}

/// Options of a [`WalFeed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFeedOptions {
    /// TDengine's dataDir on this host, its `vnode/` directory, or one `vnode<N>` directory.
    pub wal_path: PathBuf,
    /// The database whose vnodes to read.
    pub database: String,
    /// The feed's state file (committed positions and the uid → name map it learned).
    pub state_file: PathBuf,
    /// At most this many events a batch (at least one record is always returned).
    pub max_batch_events: usize,
}

impl WalFeedOptions {
    /// Options with the default batch size (10 000 events).
    pub fn new(
        wal_path: impl Into<PathBuf>,
        database: impl Into<String>,
        state_file: impl Into<PathBuf>,
    ) -> WalFeedOptions {
        WalFeedOptions {
            wal_path: wal_path.into(),
            database: database.into(),
            state_file: state_file.into(),
            max_batch_events: 10_000,
        }
    }
}

/// The state file: committed positions and the names learned (uids of dropped tables stay
/// resolvable after a restart).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    format: u32,
    database: String,
    positions: Positions,
    tables: Vec<ResolvedTable>,
}

const STATE_FORMAT: u32 = 1;

#[derive(Debug)]
struct Stream {
    vnode: Vnode,
    key: String,
    next: i64,
    reader: Option<SegReader>,
}

/// The `wal` change feed (**experimental**: the format was taken from TDengine's source at
/// commit `a4874a8c` of the 3.3.7 line and has not been run against a real server; see
/// `docs/wal-format.md`).
///
/// Reads the vnode WAL files of one database on the TDengine host: one stream per vnode,
/// positions `"vnode:<vgId>"` → next WAL version. Table names come from create/drop records
/// in the WAL and otherwise from a [`TableResolver`] (the catalog); a uid nobody can name
/// is an error ([`WalError::UnknownTable`]), never a silently dropped change.
pub struct WalFeed {
    opts: WalFeedOptions,
    resolver: Box<dyn TableResolver>,
    streams: Vec<Stream>,
    /// uid → (name, super table).
    names: HashMap<i64, (String, Option<String>)>,
    /// Per stream, the end of the WAL when the current catch-up began: (segment, length).
    target: Option<Vec<Option<(i64, u64)>>>,
    started: bool,
    /// The catalog was consulted during the current batch.
    refreshed: bool,
}

impl std::fmt::Debug for WalFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalFeed")
            .field("opts", &self.opts)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl WalFeed {
    /// A feed; nothing is read until [`ChangeFeed::start`].
    pub fn new(opts: WalFeedOptions, resolver: Box<dyn TableResolver>) -> WalFeed {
        WalFeed {
            opts,
            resolver,
            streams: Vec::new(),
            names: HashMap::new(),
            target: None,
            started: false,
            refreshed: false,
        }
    }

    /// The positions last committed to `state_file`, if it exists.
    pub fn read_state(state_file: &Path) -> Result<Option<Positions>, WalError> {
        Ok(load_state(state_file)?.map(|s| s.positions))
    }

    async fn refresh(&mut self) -> Result<(), WalError> {
        let tables = self.resolver.tables().await.map_err(WalError::Resolver)?;
        for t in tables {
            self.names.insert(t.uid, (t.name, t.super_table));
        }
        self.refreshed = true;
        Ok(())
    }

    async fn start_impl(&mut self, committed: &Positions) -> Result<FeedStart, WalError> {
        let vnodes = vnode::discover(&self.opts.wal_path, &self.opts.database)?;
        let state = load_state(&self.opts.state_file)?;
        let mut committed = committed.clone();
        if let Some(s) = state {
            if s.database != self.opts.database {
                return Err(WalError::BadState {
                    path: self.opts.state_file.clone(),
                    reason: format!(
                        "it is the state of database {:?}, not {:?}",
                        s.database, self.opts.database
                    ),
                });
            }
            for t in s.tables {
                self.names.insert(t.uid, (t.name, t.super_table));
            }
            if committed.is_empty() {
                committed = s.positions;
            }
        }
        // The catalog now: every table that exists before the first record read.
        self.refresh().await?;

        let mut ends = Vec::with_capacity(vnodes.len());
        for v in &vnodes {
            ends.push(wal_bounds(v)?);
        }
        let keys: Vec<String> = vnodes
            .iter()
            .map(|v| format!("vnode:{}", v.vg_id))
            .collect();
        let mut gaps = Vec::new();
        let start = if committed.is_empty() {
            FeedStart::Fresh {
                reason: format!(
                    "no committed positions: the wal feed starts at the current end of {} vnode WAL(s) of database {}",
                    vnodes.len(),
                    self.opts.database
                ),
            }
        } else {
            for (k, p) in &committed {
                if !keys.contains(k) {
                    gaps.push(format!(
                        "{k} (position {p}) is not a vnode of database {} under {}",
                        self.opts.database,
                        self.opts.wal_path.display()
                    ));
                }
            }
            for (k, (first, end)) in keys.iter().zip(&ends) {
                match committed.get(k) {
                    None => gaps.push(format!("{k} has no committed position (a new vnode?)")),
                    Some(&p) if p < *first => gaps.push(format!(
                        "{k}: committed position {p} was purged from the WAL (first version on disk {first})"
                    )),
                    Some(&p) if p > *end => gaps.push(format!(
                        "{k}: committed position {p} is past the end of the WAL ({end}): the WAL was reset or the vnode recreated"
                    )),
                    Some(_) => {}
                }
            }
            if gaps.is_empty() {
                FeedStart::Continued
            } else {
                FeedStart::Gap {
                    reason: gaps.join("; "),
                }
            }
        };
        let continued = start == FeedStart::Continued;
        self.streams = vnodes
            .into_iter()
            .zip(keys)
            .zip(ends)
            .map(|((vnode, key), (_, end))| {
                let next = if continued {
                    committed.get(&key).copied().unwrap_or(end)
                } else {
                    end
                };
                Stream {
                    vnode,
                    key,
                    next,
                    reader: None,
                }
            })
            .collect();
        self.target = None;
        self.started = true;
        Ok(start)
    }

    async fn next_impl(&mut self) -> Result<Option<ChangeBatch>, WalError> {
        if !self.started {
            return Err(WalError::NotStarted);
        }
        if self.target.is_none() {
            let mut t = Vec::with_capacity(self.streams.len());
            for s in &self.streams {
                t.push(snapshot_end(&s.vnode)?);
            }
            self.target = Some(t);
        }
        let saved: Vec<i64> = self.streams.iter().map(|s| s.next).collect();
        self.refreshed = false;
        match self.read_batch().await {
            Ok(b) => {
                if b.is_none() {
                    self.target = None;
                }
                Ok(b)
            }
            Err(e) => {
                // Leave the feed where the last returned batch ended.
                for (s, n) in self.streams.iter_mut().zip(saved) {
                    s.next = n;
                    s.reader = None;
                }
                Err(e)
            }
        }
    }

    async fn read_batch(&mut self) -> Result<Option<ChangeBatch>, WalError> {
        let max = self.opts.max_batch_events.max(1);
        let mut batch = ChangeBatch::default();
        let mut any = false;
        let targets = self.target.clone().unwrap_or_default();
        for i in 0..self.streams.len() {
            let target = targets.get(i).copied().flatten();
            while batch.events.len() < max {
                let Some(rec) = read_one(&mut self.streams[i], target)? else {
                    break;
                };
                any = true;
                self.apply(i, rec, &mut batch.events).await?;
                let s = &self.streams[i];
                batch.positions.insert(s.key.clone(), s.next);
            }
            if batch.events.len() >= max {
                break;
            }
        }
        Ok(any.then_some(batch))
    }

    async fn apply(
        &mut self,
        stream: usize,
        rec: Record,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), WalError> {
        let vg = self.streams[stream].vnode.vg_id;
        let entries = match decode::decode(rec.msg_type, &rec.body) {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            Err(reason) => {
                return Err(WalError::BadBody {
                    vnode: vg,
                    version: rec.version,
                    msg_type: rec.msg_type,
                    reason,
                });
            }
        };
        let table = |table: String, event| ChangeEvent::Table { table, event };
        for e in entries {
            match e {
                Entry::Rows { uid, timestamps } => {
                    if timestamps.is_empty() {
                        continue;
                    }
                    let name = self.name_of(stream, rec.version, uid).await?;
                    out.push(ChangeEvent::Rows {
                        table: name,
                        timestamps,
                    });
                }
                Entry::Create { uid, name, stable } => {
                    let known = self.names.get(&uid).is_some_and(|(n, _)| *n == name);
                    self.names.insert(uid, (name.clone(), stable));
                    // Every insert naming a super table carries an auto-create request, and
                    // CREATE TABLE IF NOT EXISTS is logged for existing tables too (with their
                    // uid): only a uid the feed did not know is a new table.
                    if !known {
                        out.push(table(name, TableEvent::Created));
                    }
                }
                Entry::Drop { uid, name } => {
                    if uid == 0 {
                        // Not filled in by pre-processing (e.g. mnode-built requests): by name.
                        self.names.retain(|_, (n, _)| *n != name);
                    } else {
                        self.names.remove(&uid);
                    }
                    out.push(table(name, TableEvent::Dropped));
                }
                Entry::Alter { name, event } => {
                    if let Some(ev) = event {
                        out.push(table(name, ev));
                    }
                }
                Entry::Stable { name, altered } => {
                    if altered {
                        for child in self.children(&name) {
                            out.push(table(child, TableEvent::SchemaChanged));
                        }
                    }
                }
                Entry::DropStable { name } => {
                    let mut gone: Vec<(i64, String)> = self
                        .names
                        .iter()
                        .filter(|(_, (_, s))| s.as_deref() == Some(name.as_str()))
                        .map(|(u, (n, _))| (*u, n.clone()))
                        .collect();
                    gone.sort_by(|a, b| a.1.cmp(&b.1));
                    for (uid, child) in gone {
                        self.names.remove(&uid);
                        out.push(table(child, TableEvent::Dropped));
                    }
                }
                Entry::Delete { uids, start, end } => {
                    for uid in uids {
                        let name = self.name_of(stream, rec.version, uid).await?;
                        out.push(ChangeEvent::Delete {
                            table: name,
                            start,
                            end,
                        });
                    }
                }
                Entry::DeleteByName { name, start, end } => {
                    out.push(ChangeEvent::Delete {
                        table: name,
                        start,
                        end,
                    });
                }
                Entry::DropUids { uids } => {
                    for uid in uids {
                        let name = self.name_of(stream, rec.version, uid).await?;
                        self.names.remove(&uid);
                        out.push(table(name, TableEvent::Dropped));
                    }
                }
            }
        }
        Ok(())
    }

    fn children(&self, stable: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .names
            .values()
            .filter(|(_, s)| s.as_deref() == Some(stable))
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// The name of `uid`: known, else from the catalog (once a batch), else from a later
    /// DROP TABLE record of the same vnode (a table dropped since), else an error.
    async fn name_of(&mut self, stream: usize, version: i64, uid: i64) -> Result<String, WalError> {
        if let Some((n, _)) = self.names.get(&uid) {
            return Ok(n.clone());
        }
        if !self.refreshed {
            self.refresh().await?;
            if let Some((n, _)) = self.names.get(&uid) {
                return Ok(n.clone());
            }
        }
        let vnode = self.streams[stream].vnode.clone();
        if let Some(name) = find_drop(&vnode, version, uid)? {
            self.names.insert(uid, (name.clone(), None));
            return Ok(name);
        }
        Err(WalError::UnknownTable {
            vnode: vnode.vg_id,
            version,
            uid,
        })
    }

    fn commit_impl(&mut self, positions: &Positions) -> Result<(), WalError> {
        if !self.started {
            return Err(WalError::NotStarted);
        }
        for (k, v) in positions {
            if !self.streams.iter().any(|s| &s.key == k) {
                return Err(WalError::BadPosition {
                    key: k.clone(),
                    value: *v,
                    reason: format!(
                        "not a vnode of database {} read by this feed",
                        self.opts.database
                    ),
                });
            }
        }
        let mut tables: Vec<ResolvedTable> = self
            .names
            .iter()
            .map(|(uid, (name, st))| ResolvedTable {
                uid: *uid,
                name: name.clone(),
                super_table: st.clone(),
            })
            .collect();
        tables.sort_by_key(|t| t.uid);
        // Streams absent from `positions` keep their earlier committed position.
        let mut all = load_state(&self.opts.state_file)?
            .map(|s| s.positions)
            .unwrap_or_default();
        all.retain(|k, _| self.streams.iter().any(|s| &s.key == k));
        all.extend(positions.iter().map(|(k, v)| (k.clone(), *v)));
        let state = State {
            format: STATE_FORMAT,
            database: self.opts.database.clone(),
            positions: all,
            tables,
        };
        write_atomic(&self.opts.state_file, &state)
    }
}

#[async_trait]
impl ChangeFeed for WalFeed {
    fn name(&self) -> &'static str {
        "wal"
    }

    async fn start(&mut self, committed: &Positions) -> Result<FeedStart, SourceError> {
        Ok(self.start_impl(committed).await?)
    }

    async fn next_batch(&mut self) -> Result<Option<ChangeBatch>, SourceError> {
        Ok(self.next_impl().await?)
    }

    fn positions(&self) -> Positions {
        self.streams
            .iter()
            .map(|s| (s.key.clone(), s.next))
            .collect()
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SourceError> {
        Ok(self.commit_impl(positions)?)
    }
}

/// `(first version on disk, version after the last complete record)` of a vnode's WAL.
fn wal_bounds(v: &Vnode) -> Result<(i64, i64), WalError> {
    let segs = vnode::segments(&v.wal_dir)?;
    let meta = vnode::read_meta(&v.wal_dir)?;
    let Some((first, _)) = segs.first() else {
        // No segment: everything was purged (walEndSnapshot sets firstVer = lastVer + 1) or
        // nothing was ever written.
        let end = meta.map_or(0, |m| m.last_ver.max(-1) + 1);
        return Ok((end, end));
    };
    let Some((last, path)) = segs.last() else {
        return Ok((*first, *first));
    };
    let end = SegReader::open(*last, path.clone(), 0)?.end_version()?;
    Ok((*first, end))
}

/// The last segment and its length now: where the current catch-up stops.
fn snapshot_end(v: &Vnode) -> Result<Option<(i64, u64)>, WalError> {
    let segs = vnode::segments(&v.wal_dir)?;
    let Some((first, path)) = segs.last() else {
        return Ok(None);
    };
    let len = fs::metadata(path)
        .map_err(|e| WalError::io("stat", path, e))?
        .len();
    Ok(Some((*first, len)))
}

/// Positions the stream's reader at `next`; `false` when that version is not written yet.
fn open_at(s: &mut Stream) -> Result<bool, WalError> {
    let segs = vnode::segments(&s.vnode.wal_dir)?;
    let Some((first, _)) = segs.first() else {
        return Ok(false);
    };
    if s.next < *first {
        return Err(WalError::Purged {
            vnode: s.vnode.vg_id,
            position: s.next,
            first: *first,
        });
    }
    let Some(i) = segs.iter().rposition(|(f, _)| *f <= s.next) else {
        return Ok(false);
    };
    let (f, path) = &segs[i];
    let mut r = SegReader::open(*f, path.clone(), 0)?;
    if r.seek_version(s.next)? {
        s.reader = Some(r);
        return Ok(true);
    }
    if i + 1 < segs.len() {
        return Err(WalError::Corrupt {
            path: path.clone(),
            offset: r.offset,
            reason: format!(
                "segment ends before version {} but the next segment starts at {}",
                s.next,
                segs[i + 1].0
            ),
        });
    }
    Ok(false)
}

/// The next record of a stream, stopping at `target` (the end when the catch-up began).
fn read_one(s: &mut Stream, target: Option<(i64, u64)>) -> Result<Option<Record>, WalError> {
    let Some((tseg, tlen)) = target else {
        return Ok(None);
    };
    loop {
        if s.reader.is_none() && !open_at(s)? {
            return Ok(None);
        }
        let Some(r) = s.reader.as_mut() else {
            return Ok(None);
        };
        if r.first > tseg || (r.first == tseg && r.offset >= tlen) {
            return Ok(None);
        }
        match r.next(Some(s.next))? {
            Read1::Record(rec) => {
                s.next += 1;
                return Ok(Some(rec));
            }
            Read1::End => {
                // Rotation: continue in the segment that starts at the next version.
                let segs = vnode::segments(&s.vnode.wal_dir)?;
                let cur = r.first;
                match segs.iter().find(|(f, _)| *f > cur) {
                    Some((f, path)) if *f == s.next => {
                        s.reader = Some(SegReader::open(*f, path.clone(), 0)?);
                    }
                    Some((f, path)) => {
                        return Err(WalError::Corrupt {
                            path: path.clone(),
                            offset: 0,
                            reason: format!(
                                "segment starts at version {f} but the previous one ends before version {}",
                                s.next
                            ),
                        });
                    }
                    None => return Ok(None),
                }
            }
        }
    }
}

/// Looks for a DROP TABLE of `uid` after `version` in the vnode's WAL.
fn find_drop(v: &Vnode, version: i64, uid: i64) -> Result<Option<String>, WalError> {
    let mut s = Stream {
        vnode: v.clone(),
        key: String::new(),
        next: version + 1,
        reader: None,
    };
    let target = snapshot_end(v)?;
    while let Some(rec) = read_one(&mut s, target)? {
        if rec.msg_type != decode::TDMT_VND_DROP_TABLE {
            continue;
        }
        if let Ok(Some(entries)) = decode::decode(rec.msg_type, &rec.body) {
            for e in entries {
                if let Entry::Drop { uid: u, name } = e {
                    if u == uid {
                        return Ok(Some(name));
                    }
                }
            }
        }
    }
    Ok(None)
}

fn load_state(path: &Path) -> Result<Option<State>, WalError> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("read the state file", path, e)),
    };
    let s: State = serde_json::from_slice(&text).map_err(|e| WalError::BadState {
        path: path.to_path_buf(),
        reason: format!("not a wal feed state file: {e}"),
    })?;
    if s.format != STATE_FORMAT {
        return Err(WalError::BadState {
            path: path.to_path_buf(),
            reason: format!("format {} (this version writes {STATE_FORMAT})", s.format),
        });
    }
    Ok(Some(s))
}

/// Writes `state` to a temporary file beside `path`, fsyncs it, renames it over `path` and
/// fsyncs the directory.
fn write_atomic(path: &Path, state: &State) -> Result<(), WalError> {
    let op = "write the state file";
    let bytes =
        serde_json::to_vec(state).map_err(|e| WalError::io(op, path, std::io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| WalError::io(op, &dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = fs::File::create(&tmp).map_err(|e| WalError::io(op, &tmp, e))?;
        f.write_all(&bytes).map_err(|e| WalError::io(op, &tmp, e))?;
        f.sync_all().map_err(|e| WalError::io(op, &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| WalError::io(op, path, e))?;
    // Directory fsync makes the rename durable; some file systems refuse it (EINVAL).
    let d = fs::File::open(&dir).map_err(|e| WalError::io(op, &dir, e))?;
    match d.sync_all() {
        Err(e) if e.kind() != std::io::ErrorKind::InvalidInput => Err(WalError::io(op, &dir, e)),
        _ => Ok(()),
    }
}
