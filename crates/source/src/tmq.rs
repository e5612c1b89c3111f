//! The `tmq` change feed: TDengine's data subscription (TMQ) on a `WITH META` database
//! topic, turned into [`ChangeEvent`]s for the change tracker.
//!
//! How it reads (see docs/change-feeds.md): one consumer per (repository, database) group,
//! never auto-committing, through taosAdapter's `/rest/tmq` WebSocket API ([`client`]);
//! positions are the next WAL version per vgroup (`"vg:<id>"`), taken after every message
//! (from its raw form's response offset, confirmed with `position` once per batch, or with
//! `position` itself) and after every empty poll (WAL entries such as subscribes and offset
//! commits yield no message but move the position); a catch-up reads to the `end` every
//! vgroup had when it began. Gaps (the WAL purged past a position, topic recreated, vgroup
//! gone) are reported as [`FeedStart::Gap`] by `start` and as [`FeedError::Gap`] while
//! reading — never skipped.

pub(crate) mod admin;
mod client;
mod data_rsp;
mod error;
mod meta;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use taosbackup_core::{
    ChangeBatch, ChangeEvent, ChangeFeed, FeedStart, Positions, SourceError, TableEvent,
};

use self::client::{Assigned, Polled, TmqClient};
pub use self::error::FeedError;
use self::meta::{MetaChange, parse_meta};
use crate::Error;
use crate::catalog::{int, text};
use crate::conn::{Ctx, Pool};
use crate::dsn::{ConnectOptions, Credentials, Endpoint, Protocol};
use crate::raw::RawView;
use crate::sql;

/// Longest topic or consumer-group name TDengine accepts.
pub const MAX_NAME_LEN: usize = 192;

/// How long one poll waits on the server for a message (taosAdapter's `blocking_time`).
const POLL_WAIT: Duration = Duration::from_millis(300);

/// Empty polls in a row, without the position moving, before a catch-up is declared
/// stalled.
const MAX_EMPTY_POLLS: u32 = 20;

/// `position`/`committed` when there is no offset (TDengine's value,
/// `TSDB_CODE_TMQ_NO_COMMITTED` as an offset).
const NO_OFFSET: i64 = -2_147_467_247;

/// What the `tmq` feed reads and how.
#[derive(Debug, Clone)]
pub struct TmqFeedOptions {
    /// The database whose changes are read.
    pub database: String,
    /// The topic (created `WITH META AS DATABASE <database>` when missing).
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Most events per batch (default 10,000).
    pub max_batch_events: usize,
    /// Most row timestamps per batch (default 1,000,000).
    pub max_batch_timestamps: usize,
}

impl TmqFeedOptions {
    /// Options with the default topic and group names for `repository_id` and `database`
    /// (see [`default_names`]).
    pub fn new(repository_id: &str, database: impl Into<String>) -> Self {
        let database = database.into();
        let (topic, group) = default_names(repository_id, &database);
        TmqFeedOptions {
            database,
            topic,
            group,
            max_batch_events: 10_000,
            max_batch_timestamps: 1_000_000,
        }
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust versions and platforms.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Default topic and consumer-group names for a repository and database:
/// `taosbackup_<database>_<16 hex digits>`, the hex a stable hash of both ids, so two
/// repositories backing up one database never share a topic or group. The database part
/// keeps `[a-z0-9_]` only (others become `_`) and is shortened so the whole name stays
/// within [`MAX_NAME_LEN`]; the hash keeps names of different databases apart.
pub fn default_names(repository_id: &str, database: &str) -> (String, String) {
    let hash = fnv1a(&[repository_id, database]);
    let mut db: String = database
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // "taosbackup_" + db + "_" + 16 hex, and the group adds "_g".
    let room = MAX_NAME_LEN - "taosbackup_".len() - 1 - 16 - 2;
    db.truncate(room);
    let topic = format!("taosbackup_{db}_{hash:016x}");
    let group = format!("{topic}_g");
    (topic, group)
}

/// Whether a topic delivers meta messages, from its `CREATE TOPIC` text (the `sql` column of
/// `ins_topics`, present in every 3.x version) or, without it, from the `meta` column of the
/// versions that have one (`yes`/`no`; older texts said `with`/`without`).
fn topic_has_meta(statement: Option<&str>, meta: Option<&str>) -> bool {
    if let Some(sql) = statement.filter(|s| !s.trim().is_empty()) {
        // `CREATE TOPIC [IF NOT EXISTS] name WITH META AS …`: the words before `AS`, outside
        // backquotes and quotes (a topic may be named `with meta`).
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quote: Option<char> = None;
        for c in sql.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '`' || c == '\'' || c == '"' => {
                    quote = Some(c);
                    words.push(std::mem::take(&mut word));
                    words.push("<name>".to_string());
                }
                None if c.is_whitespace() => words.push(std::mem::take(&mut word)),
                None => word.push(c.to_ascii_uppercase()),
            }
        }
        words.push(word);
        let words: Vec<&str> = words
            .iter()
            .map(String::as_str)
            .filter(|w| !w.is_empty())
            .collect();
        let head = words
            .iter()
            .position(|w| *w == "AS")
            .map_or(&words[..], |i| &words[..i]);
        return head.windows(2).any(|w| w == ["WITH", "META"]);
    }
    let m = meta.unwrap_or_default().trim().to_ascii_lowercase();
    m == "yes" || (m.starts_with("with") && !m.starts_with("without"))
}

/// Where the current catch-up must get to: each vgroup's `end` when it began.
type Ends = BTreeMap<i32, i64>;

/// The `tmq` change feed of one database. See the module docs.
pub struct TmqFeed {
    options: TmqFeedOptions,
    endpoint: Endpoint,
    creds: Credentials,
    pool: Arc<Pool>,
    timeout: Duration,
    consumer: Option<TmqClient>,
    /// Next WAL version to read per vgroup.
    positions: BTreeMap<i32, i64>,
    /// The current catch-up's targets (`None`: no catch-up under way).
    ends: Option<Ends>,
    wal_retention_period: Option<i64>,
}

impl std::fmt::Debug for TmqFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmqFeed")
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl TmqFeed {
    /// Prepares the feed; does no I/O (connections open in [`ChangeFeed::start`]).
    /// Credentials and endpoint resolve as for [`crate::TaosSource`].
    pub fn new(connect: ConnectOptions, options: TmqFeedOptions) -> Result<TmqFeed, FeedError> {
        let (endpoint, creds) = connect.resolve()?;
        let invalid = |reason: String| {
            FeedError::Source(Error::InvalidDsn {
                endpoint: endpoint.to_string(),
                reason,
            })
        };
        for (what, name) in [
            ("topic", &options.topic),
            ("consumer group", &options.group),
        ] {
            if name.is_empty()
                || name.len() > MAX_NAME_LEN
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(invalid(format!(
                    "{what} name {name:?} must be 1–{MAX_NAME_LEN} letters, digits or _ and \
                     not start with a digit"
                )));
            }
        }
        if options.database.is_empty() {
            return Err(invalid("no database given for the tmq change feed".into()));
        }
        if endpoint.protocol == Protocol::Native {
            return Err(invalid(
                "the tmq change feed reads TDengine's data subscription through taosAdapter's \
                 WebSocket API (/rest/tmq): give the source as ws://host:6041 (or wss://)"
                    .into(),
            ));
        }
        let pool = Arc::new(Pool::new(&connect, endpoint.clone(), &creds, None)?);
        Ok(TmqFeed {
            timeout: connect.request_timeout,
            options,
            endpoint,
            creds,
            pool,
            consumer: None,
            positions: BTreeMap::new(),
            ends: None,
            wal_retention_period: None,
        })
    }

    /// The database's `WAL_RETENTION_PERIOD` in seconds as read by the last `start` (`-1`:
    /// kept forever), so the caller can warn when it is shorter than the backup interval.
    pub fn wal_retention_period(&self) -> Option<i64> {
        self.wal_retention_period
    }

    /// The options (topic and group names included).
    pub fn options(&self) -> &TmqFeedOptions {
        &self.options
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx::db(&self.options.database)
    }

    fn gap(&self, reason: String) -> FeedError {
        FeedError::Gap {
            topic: self.options.topic.clone(),
            database: self.options.database.clone(),
            reason,
        }
    }

    fn bad(&self, reason: String) -> FeedError {
        FeedError::BadMessage {
            topic: self.options.topic.clone(),
            reason,
        }
    }

    /// Checks the database (exists, WAL kept) and makes sure the topic exists; returns
    /// whether it was created now.
    async fn prepare_topic(&mut self) -> Result<bool, FeedError> {
        let db = self.options.database.clone();
        let rows = self
            .pool
            .query_values(
                self.ctx()
                    .doing("checking the database's WAL retention (ins_databases)"),
                &sql::database_row(&db),
            )
            .await?;
        let period_col = rows.col("wal_retention_period", "ins_databases")?;
        let name_col = rows.col("name", "ins_databases")?;
        let row = rows
            .rows
            .iter()
            .find(|r| r.get(name_col).and_then(text).as_deref() == Some(db.as_str()))
            .ok_or_else(|| FeedError::DatabaseNotFound {
                database: db.clone(),
                endpoint: self.endpoint.to_string(),
            })?;
        let period = row.get(period_col).and_then(int).ok_or_else(|| {
            FeedError::Source(Error::UnexpectedReply {
                what: "ins_databases".into(),
                database: Some(db.clone()),
                table: None,
                reason: "wal_retention_period is not an integer".into(),
            })
        })?;
        self.wal_retention_period = Some(period);
        if period == 0 {
            return Err(FeedError::WalRetentionDisabled {
                database: db,
                endpoint: self.endpoint.to_string(),
            });
        }

        let topic = self.options.topic.clone();
        let topics = self
            .pool
            .query_values(
                self.ctx()
                    .doing("looking for the feed's topic (ins_topics)"),
                &sql::topics(),
            )
            .await?;
        let (tc, dc) = (
            topics.col("topic_name", "ins_topics")?,
            topics.col("db_name", "ins_topics")?,
        );
        // `sql` (the CREATE TOPIC statement) is in every version; `meta` only in some, and
        // with version-dependent content (systable.c `topicSchema`, mndTopic.c).
        let sql_col = topics.col("sql", "ins_topics").ok();
        let meta_col = topics.col("meta", "ins_topics").ok();
        let existing = topics
            .rows
            .iter()
            .find(|r| r.get(tc).and_then(text).as_deref() == Some(topic.as_str()));
        if let Some(r) = existing {
            let topic_db = r.get(dc).and_then(text).unwrap_or_default();
            let conflict = |reason: String| FeedError::TopicConflict {
                topic: topic.clone(),
                endpoint: self.endpoint.to_string(),
                reason,
            };
            if topic_db != db {
                return Err(conflict(format!(
                    "it reads database {topic_db:?}, not {db:?}"
                )));
            }
            let statement = sql_col.and_then(|c| r.get(c)).and_then(text);
            let meta = meta_col.and_then(|c| r.get(c)).and_then(text);
            if !topic_has_meta(statement.as_deref(), meta.as_deref()) {
                return Err(conflict(
                    "it was created without WITH META, so it does not deliver table \
                     creations, drops, alters and deletes"
                        .into(),
                ));
            }
            return Ok(false);
        }
        self.pool
            .exec(
                self.ctx().doing("creating the feed's topic"),
                &sql::create_topic(&topic, &db),
            )
            .await?;
        Ok(true)
    }

    /// `ws[s]://host:port/rest/tmq[?token=…]`.
    fn tmq_url(&self) -> String {
        let scheme = if self.endpoint.protocol == Protocol::Wss {
            "wss"
        } else {
            "ws"
        };
        let host = if self.endpoint.host.contains(':') {
            format!("[{}]", self.endpoint.host)
        } else {
            self.endpoint.host.clone()
        };
        let mut url = format!("{scheme}://{host}:{}/rest/tmq", self.endpoint.port);
        if let Some(t) = self.endpoint.token() {
            url.push_str("?token=");
            url.push_str(t);
        }
        url
    }

    /// A new consumer of the group, subscribed to the topic, not yet positioned.
    async fn connect_consumer(&self) -> Result<TmqClient, FeedError> {
        let mut c =
            TmqClient::connect(&self.tmq_url(), &self.endpoint.to_string(), self.timeout).await?;
        // Never auto-commit: offsets are committed only once what covers them is durable.
        c.subscribe(
            &self.creds.user,
            self.creds.password(),
            &self.options.group,
            std::slice::from_ref(&self.options.topic),
        )
        .await?;
        Ok(c)
    }

    /// The topic's assignment per vgroup.
    async fn assignment(&self, c: &mut TmqClient) -> Result<BTreeMap<i32, Assigned>, FeedError> {
        let list = c.assignment(&self.options.topic).await?;
        if list.is_empty() {
            return Err(FeedError::NoAssignment {
                topic: self.options.topic.clone(),
            });
        }
        Ok(list.into_iter().map(|a| (a.vgroup, a)).collect())
    }

    /// The consumer, (re)connected and positioned at `self.positions` when needed. A
    /// position the WAL no longer holds is a gap.
    async fn ensure_consumer(&mut self) -> Result<TmqClient, FeedError> {
        if let Some(c) = self.consumer.take() {
            return Ok(c);
        }
        let mut c = match self.connect_consumer().await {
            // 0x03E1: the topic does not exist (any more).
            Err(FeedError::Source(e)) if e.code() == Some(0x03E1) => {
                return Err(self.gap(format!("the topic is gone: {e}")));
            }
            other => other?,
        };
        let assignment = self.assignment(&mut c).await?;
        self.check_continuity(&assignment)?;
        for (&vg, &pos) in &self.positions {
            c.seek(&self.options.topic, vg, pos).await?;
        }
        Ok(c)
    }

    /// Every vgroup we stand in must still hold our position, and every vgroup must be
    /// one we know.
    fn check_continuity(&self, assignment: &BTreeMap<i32, Assigned>) -> Result<(), FeedError> {
        for (&vg, &pos) in &self.positions {
            match assignment.get(&vg) {
                None => {
                    return Err(self.gap(format!(
                        "vgroup {vg} is no longer assigned (topic recreated or vgroups changed)"
                    )));
                }
                Some(&Assigned { begin, end, .. }) if pos < begin || pos > end => {
                    return Err(self.gap(format!(
                        "vgroup {vg}: position {pos} is outside the WAL range {begin}..{end} \
                         (WAL purged past it, or topic recreated)"
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(vg) = assignment
            .keys()
            .find(|vg| !self.positions.contains_key(vg))
        {
            return Err(self.gap(format!("vgroup {vg} appeared without a known position")));
        }
        Ok(())
    }

    /// Names of the super tables of the database now.
    async fn super_tables(&self) -> Result<BTreeSet<String>, FeedError> {
        let db = &self.options.database;
        let rows = self
            .pool
            .query_values(
                self.ctx().doing("listing super tables (ins_stables)"),
                &sql::stable_names(db),
            )
            .await?;
        let c = rows.col("stable_name", "ins_stables")?;
        Ok(rows
            .rows
            .iter()
            .filter_map(|r| r.get(c).and_then(text))
            .collect())
    }

    /// Child tables of `stable` now (or, for `None`, every table of the database).
    async fn tables_of(&self, stable: Option<&str>) -> Result<Vec<String>, FeedError> {
        let db = &self.options.database;
        let rows = self
            .pool
            .query_values(
                self.ctx().doing("listing tables (ins_tables)"),
                &sql::table_names(db, stable),
            )
            .await?;
        let c = rows.col("table_name", "ins_tables")?;
        Ok(rows
            .rows
            .iter()
            .filter_map(|r| r.get(c).and_then(text))
            .collect())
    }

    /// Turns meta changes into events, expanding super tables to their children.
    async fn expand(
        &self,
        changes: Vec<MetaChange>,
        stables: &mut Option<BTreeSet<String>>,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), FeedError> {
        for change in changes {
            let is_super = |s: &Option<BTreeSet<String>>, name: &str| {
                s.as_ref().is_some_and(|s| s.contains(name))
            };
            if stables.is_none()
                && matches!(
                    change,
                    MetaChange::Altered { .. }
                        | MetaChange::Delete { .. }
                        | MetaChange::SuperCreated(_)
                        | MetaChange::SuperDropped(_)
                        | MetaChange::Reread { table: Some(_), .. }
                )
            {
                *stables = Some(self.super_tables().await?);
            }
            match change {
                MetaChange::Created(table) => out.push(ChangeEvent::Table {
                    table,
                    event: TableEvent::Created,
                }),
                MetaChange::Dropped(table) => out.push(ChangeEvent::Table {
                    table,
                    event: TableEvent::Dropped,
                }),
                MetaChange::SuperCreated(name) => {
                    if let Some(s) = stables.as_mut() {
                        s.insert(name);
                    }
                }
                MetaChange::SuperDropped(name) => {
                    // The children of a dropped super table are usually gone from the
                    // catalog by the time the drop is read, and then cannot be named here.
                    // That is safe: the engine diffs catalogs and sees them missing. Children
                    // that exist now belong to a super table recreated under the same name
                    // later in the log (their `create` events follow).
                    for table in self.tables_of(Some(&name)).await? {
                        out.push(ChangeEvent::Table {
                            table,
                            event: TableEvent::Dropped,
                        });
                    }
                    if let Some(s) = stables.as_mut() {
                        s.remove(&name);
                    }
                }
                MetaChange::Altered { table, event } => {
                    if is_super(stables, &table) {
                        for child in self.tables_of(Some(&table)).await? {
                            out.push(ChangeEvent::Table {
                                table: child,
                                event,
                            });
                        }
                    } else {
                        out.push(ChangeEvent::Table { table, event });
                    }
                }
                MetaChange::Delete { table, range } => {
                    let (start, end) = range.unwrap_or_else(|| {
                        tracing::warn!(
                            table = %table,
                            "tmq delete with an unreadable time range: assuming the whole range"
                        );
                        (i64::MIN, i64::MAX)
                    });
                    if is_super(stables, &table) {
                        for child in self.tables_of(Some(&table)).await? {
                            out.push(ChangeEvent::Delete {
                                table: child,
                                start,
                                end,
                            });
                        }
                    } else {
                        out.push(ChangeEvent::Delete { table, start, end });
                    }
                }
                MetaChange::DeleteUnknown(sql) => {
                    tracing::warn!(
                        sql = %sql,
                        "tmq delete whose table cannot be read: assuming every table of the \
                         database lost rows in its whole time range"
                    );
                    for table in self.tables_of(None).await? {
                        out.push(ChangeEvent::Delete {
                            table,
                            start: i64::MIN,
                            end: i64::MAX,
                        });
                    }
                }
                MetaChange::Reread { table, reason } => {
                    tracing::warn!(table = ?table, %reason, "tmq meta message not understood");
                    match table {
                        Some(t) if is_super(stables, &t) => {
                            for child in self.tables_of(Some(&t)).await? {
                                out.push(ChangeEvent::Reread {
                                    table: Some(child),
                                    reason: reason.clone(),
                                });
                            }
                        }
                        table => out.push(ChangeEvent::Reread { table, reason }),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads one message fully into events: the meta part (message type 2 or 3) from its
    /// raw JSON, the data part (1 or 3) in one `fetch_raw_data` reply where the server has
    /// it, else block by block (`fetch` + `fetch_block`: two round trips per block).
    ///
    /// Returns the message's response offset when its raw form carried one as a WAL version
    /// (the position after it, see [`data_rsp::DataRsp::rsp_offset`]).
    async fn read_message(
        &self,
        c: &mut TmqClient,
        msg: &Polled,
        stables: &mut Option<BTreeSet<String>>,
        out: &mut Vec<ChangeEvent>,
        timestamps: &mut usize,
    ) -> Result<Option<i64>, FeedError> {
        if !matches!(msg.message_type, 1..=3) {
            return Err(self.bad(format!(
                "message type {} from vgroup {} (1 data, 2 meta, 3 both expected)",
                msg.message_type, msg.vgroup
            )));
        }
        if msg.message_type != 1 {
            let json = c.fetch_json_meta(msg.message_id).await?;
            self.expand(parse_meta(&json), stables, out).await?;
        }
        if msg.message_type == 2 {
            return Ok(None);
        }
        if c.reads_raw_data() {
            let raw = c.fetch_raw_data(msg.message_id).await?;
            let rsp = data_rsp::parse(&raw).map_err(|e| {
                self.bad(format!(
                    "data message {} of vgroup {}: {e}",
                    msg.message_id, msg.vgroup
                ))
            })?;
            for b in rsp.blocks {
                self.push_rows(b.table, b.block, out, timestamps)?;
            }
            return Ok(rsp.rsp_offset);
        }
        while let Some(f) = c.fetch(msg.message_id).await? {
            let block = c.fetch_block(msg.message_id, &f).await?;
            self.push_rows(f.table, &block, out, timestamps)?;
        }
        Ok(None)
    }

    /// The rows of one data block as an event (none for a block without rows).
    fn push_rows(
        &self,
        table: Option<String>,
        block: &[u8],
        out: &mut Vec<ChangeEvent>,
        timestamps: &mut usize,
    ) -> Result<(), FeedError> {
        let table = table.ok_or_else(|| self.bad("data block without a table name".into()))?;
        let ts = RawView::parse(block)
            .and_then(|v| v.timestamps())
            .map_err(|e| self.bad(format!("block of {table}: {e}")))?;
        *timestamps += ts.len();
        if !ts.is_empty() {
            out.push(ChangeEvent::Rows {
                table,
                timestamps: ts,
            });
        }
        Ok(())
    }

    /// After an empty poll: the consumer's position in every vgroup still short of its
    /// target. Nothing is in flight (the client waits for every reply), so whatever lies
    /// below the position was delivered to us or yielded no message (subscribe and commit
    /// entries, `tqFetchLog`): it is adopted. A position below ours (the server went back)
    /// is corrected with a seek. Returns whether any position moved.
    async fn adopt_positions(
        &mut self,
        c: &mut TmqClient,
        ends: &Ends,
        batch: &mut ChangeBatch,
    ) -> Result<bool, FeedError> {
        let topic = self.options.topic.clone();
        let short: Vec<i32> = ends
            .iter()
            .filter(|(vg, end)| self.positions.get(vg).is_none_or(|p| p < end))
            .map(|(&vg, _)| vg)
            .collect();
        if short.is_empty() {
            return Ok(false);
        }
        let mut moved = false;
        for (vg, theirs) in short
            .iter()
            .copied()
            .zip(c.positions(&topic, &short).await?)
        {
            let ours = self.positions.get(&vg).copied().unwrap_or(i64::MIN);
            if theirs == NO_OFFSET {
                return Err(self.bad(format!("vgroup {vg}: the consumer reports no position")));
            }
            if theirs > ours {
                self.set_position(batch, vg, theirs);
                moved = true;
            } else if theirs < ours {
                c.seek(&topic, vg, ours).await?;
            }
        }
        Ok(moved)
    }

    /// The server's position in each vgroup of `after_meta`, whose last message read was a
    /// meta message (its position is not in the message): each must have moved past where
    /// the vgroup's position stood. One round trip for all of them.
    async fn resolve_after_meta(
        &mut self,
        c: &mut TmqClient,
        after_meta: &mut BTreeMap<i32, Option<i64>>,
        batch: &mut ChangeBatch,
    ) -> Result<(), FeedError> {
        if after_meta.is_empty() {
            return Ok(());
        }
        let topic = self.options.topic.clone();
        let vgs: Vec<i32> = std::mem::take(after_meta).into_keys().collect();
        for (vg, after) in vgs.iter().copied().zip(c.positions(&topic, &vgs).await?) {
            let before = self.positions.get(&vg).copied().unwrap_or(i64::MIN);
            self.advance(batch, vg, before, after, "a meta message")?;
        }
        Ok(())
    }

    /// Records that the position in `vg` moved from `before` to `after` by reading `what`.
    /// It must move past it: a position that does not is the server's inconsistency (or a
    /// misreading of its replies), which skipping would hide.
    fn advance(
        &mut self,
        batch: &mut ChangeBatch,
        vg: i32,
        before: i64,
        after: i64,
        what: &str,
    ) -> Result<(), FeedError> {
        if after <= before || after == NO_OFFSET {
            return Err(self.bad(format!(
                "vgroup {vg}: position {after} after {what} read at {before}"
            )));
        }
        self.set_position(batch, vg, after);
        Ok(())
    }

    /// The feed's position in `vg` is now `pos`, and the batch reports it.
    fn set_position(&mut self, batch: &mut ChangeBatch, vg: i32, pos: i64) {
        self.positions.insert(vg, pos);
        batch.positions.insert(key(vg), pos);
    }

    /// Asks the server's `position` in each vgroup whose position came from messages'
    /// response offsets. Nothing is in flight, so it equals the last one unless this reading
    /// of the raw form is wrong for the server at hand: then the server's position is taken
    /// (a lower one means entries are read again, never skipped) and a warning names both.
    async fn confirm_positions(
        &mut self,
        c: &mut TmqClient,
        unconfirmed: BTreeSet<i32>,
        batch: &mut ChangeBatch,
    ) -> Result<(), FeedError> {
        if unconfirmed.is_empty() {
            return Ok(());
        }
        let topic = self.options.topic.clone();
        let vgs: Vec<i32> = unconfirmed.into_iter().collect();
        for (vg, theirs) in vgs.iter().copied().zip(c.positions(&topic, &vgs).await?) {
            let ours = self.positions.get(&vg).copied();
            if Some(theirs) == ours {
                continue;
            }
            if theirs == NO_OFFSET {
                return Err(self.bad(format!("vgroup {vg}: the consumer reports no position")));
            }
            tracing::warn!(
                topic = %topic,
                vgroup = vg,
                response_offset = ?ours,
                position = theirs,
                "the server's position differs from the last message's response offset; \
                 the server's is used"
            );
            self.set_position(batch, vg, theirs);
        }
        Ok(())
    }

    /// The body of `next_batch`; on error the caller drops the consumer and restores the
    /// positions of the last returned batch.
    async fn read_batch(&mut self, c: &mut TmqClient) -> Result<Option<ChangeBatch>, FeedError> {
        let topic = self.options.topic.clone();
        if self.ends.is_none() {
            let assignment = self.assignment(c).await?;
            self.check_continuity(&assignment)?;
            self.ends = Some(assignment.iter().map(|(&vg, a)| (vg, a.end)).collect());
        }
        let ends = self.ends.clone().unwrap_or_default();
        let caught_up = |positions: &BTreeMap<i32, i64>| {
            ends.iter()
                .all(|(vg, end)| positions.get(vg).is_some_and(|p| p >= end))
        };
        let start_positions = self.positions.clone();
        let mut batch = ChangeBatch::default();
        let mut timestamps = 0usize;
        let mut stables = None;
        let mut empty_polls = 0u32;
        let mut unconfirmed = BTreeSet::new();
        // Vgroups whose last message read was a meta message, with the poll's offset hint
        // (`Polled::offset`). The message does not say where it ended, so their positions
        // are asked for when the hint says the message may have been the vgroup's last
        // (polling then could wait on the server for nothing) or the batch ends — unless a
        // data message of theirs, which does say, comes first. Asking after each meta
        // message cost a round trip each.
        let mut after_meta: BTreeMap<i32, Option<i64>> = BTreeMap::new();
        loop {
            if caught_up(&self.positions) {
                break;
            }
            let maybe_last = after_meta
                .iter()
                .any(|(vg, hint)| match (hint, ends.get(vg)) {
                    (Some(h), Some(end)) => h.saturating_add(1) >= *end,
                    _ => true,
                });
            if maybe_last {
                self.resolve_after_meta(c, &mut after_meta, &mut batch)
                    .await?;
                continue;
            }
            if batch.events.len() >= self.options.max_batch_events
                || timestamps >= self.options.max_batch_timestamps
            {
                break;
            }
            let Some(msg) = c.poll(POLL_WAIT).await? else {
                after_meta.clear();
                if self.adopt_positions(c, &ends, &mut batch).await? {
                    empty_polls = 0;
                    continue;
                }
                if !batch.events.is_empty() {
                    break;
                }
                empty_polls += 1;
                if empty_polls >= MAX_EMPTY_POLLS {
                    let behind: Vec<String> = ends
                        .iter()
                        .filter(|(vg, end)| self.positions.get(vg).is_none_or(|p| p < end))
                        .map(|(vg, end)| {
                            format!("vgroup {vg} at {:?}, end {end}", self.positions.get(vg))
                        })
                        .collect();
                    return Err(FeedError::Stalled {
                        topic,
                        reason: format!(
                            "{empty_polls} polls delivered nothing and the position did not \
                             move: {}",
                            behind.join(", ")
                        ),
                    });
                }
                continue;
            };
            empty_polls = 0;
            if msg.topic != topic {
                return Err(self.bad(format!("message of topic {:?}", msg.topic)));
            }
            let vg = msg.vgroup;
            let Some(&before) = self.positions.get(&vg) else {
                return Err(self.gap(format!("message from unknown vgroup {vg}")));
            };
            let rsp_offset = self
                .read_message(c, &msg, &mut stables, &mut batch.events, &mut timestamps)
                .await?;
            // The position after the message (the C client's endOffset), not assignment's
            // `offset`, which is where the last data message started (tmq_get_topic_assignment).
            // A raw data message carries it as its response offset, which saves a round trip;
            // the server's `position` confirms it once per vgroup before the batch is returned.
            let after = match rsp_offset {
                Some(r) if r > before => {
                    unconfirmed.insert(vg);
                    after_meta.remove(&vg);
                    r
                }
                None if msg.message_type == 2 => {
                    // A hint below where the vgroup stood is no hint.
                    after_meta.insert(vg, msg.offset.filter(|&h| h >= before));
                    unconfirmed.remove(&vg);
                    continue;
                }
                _ => {
                    after_meta.remove(&vg);
                    c.position(&topic, vg).await?
                }
            };
            self.advance(&mut batch, vg, before, after, "a message")?;
        }
        self.resolve_after_meta(c, &mut after_meta, &mut batch)
            .await?;
        self.confirm_positions(c, unconfirmed, &mut batch).await?;
        if batch.events.is_empty() && batch.positions.is_empty() {
            self.ends = None;
            return Ok(None);
        }
        // Messages read while the WAL was purged under us: the server moves a consumer
        // below `begin` to `begin` silently, so check that no vgroup we read from lost
        // entries after where this batch started.
        let assignment = self.assignment(c).await?;
        for (vg, &start) in &start_positions {
            if let Some(a) = assignment.get(vg) {
                if a.begin > start {
                    return Err(self.gap(format!(
                        "vgroup {vg}: WAL purged to {} while reading from {start}",
                        a.begin
                    )));
                }
            }
        }
        Ok(Some(batch))
    }
}

fn key(vgroup: i32) -> String {
    format!("vg:{vgroup}")
}

fn parse_key(key: &str) -> Option<i32> {
    key.strip_prefix("vg:")?.parse().ok()
}

#[async_trait]
impl ChangeFeed for TmqFeed {
    fn name(&self) -> &'static str {
        "tmq"
    }

    async fn start(&mut self, committed: &Positions) -> Result<FeedStart, SourceError> {
        self.consumer = None;
        self.ends = None;
        self.positions.clear();
        let created = self.prepare_topic().await?;
        let mut consumer = self.connect_consumer().await?;
        let assignment = self.assignment(&mut consumer).await?;

        let mut gap = None;
        if committed.is_empty() {
            // Fresh: positioned at the end below.
        } else if created {
            gap = Some(format!(
                "topic {} was created now, so the committed positions belong to an earlier \
                 topic",
                self.options.topic
            ));
        } else {
            let mut wanted = BTreeMap::new();
            for (k, &v) in committed {
                match parse_key(k) {
                    Some(vg) => {
                        wanted.insert(vg, v);
                    }
                    None => {
                        gap = Some(format!("committed position key {k:?} is not a tmq vgroup"));
                    }
                }
            }
            for (vg, &Assigned { begin, end, .. }) in &assignment {
                match wanted.get(vg) {
                    None => {
                        gap.get_or_insert(format!("no committed position for vgroup {vg}"));
                    }
                    Some(&c) if c < begin => {
                        gap.get_or_insert(format!(
                            "vgroup {vg}: committed offset {c} is before the WAL's begin \
                             {begin} (purged by WAL_RETENTION_PERIOD/SIZE)"
                        ));
                    }
                    Some(&c) if c > end => {
                        gap.get_or_insert(format!(
                            "vgroup {vg}: committed offset {c} is after the WAL's end {end} \
                             (database or topic recreated)"
                        ));
                    }
                    Some(_) => {}
                }
            }
            if let Some(vg) = wanted.keys().find(|vg| !assignment.contains_key(vg)) {
                gap.get_or_insert(format!("committed vgroup {vg} is not assigned any more"));
            }
            if gap.is_none() {
                self.positions = wanted;
            }
        }
        if self.positions.is_empty() {
            // Fresh or after a gap: the feed starts at the current end of every vgroup.
            self.positions = assignment.iter().map(|(&vg, a)| (vg, a.end)).collect();
        }
        for (&vg, &pos) in &self.positions {
            consumer.seek(&self.options.topic, vg, pos).await?;
        }
        self.consumer = Some(consumer);
        Ok(match gap {
            Some(reason) => FeedStart::Gap { reason },
            None if committed.is_empty() => FeedStart::Fresh {
                reason: if created {
                    format!("topic {} created", self.options.topic)
                } else {
                    "no committed positions".into()
                },
            },
            None => FeedStart::Continued,
        })
    }

    async fn next_batch(&mut self) -> Result<Option<ChangeBatch>, SourceError> {
        if self.positions.is_empty() {
            return Err(FeedError::BadMessage {
                topic: self.options.topic.clone(),
                reason: "next_batch called before a successful start".into(),
            }
            .into());
        }
        let saved = self.positions.clone();
        let mut consumer = match self.ensure_consumer().await {
            Ok(c) => c,
            Err(e) => return Err(e.into()),
        };
        match self.read_batch(&mut consumer).await {
            Ok(b) => {
                self.consumer = Some(consumer);
                Ok(b)
            }
            Err(e) => {
                // Leave the feed where the last returned batch ended: a fresh consumer
                // seeks there on the next call.
                self.positions = saved;
                consumer.close().await;
                Err(e.into())
            }
        }
    }

    fn positions(&self) -> Positions {
        self.positions
            .iter()
            .map(|(&vg, &p)| (key(vg), p))
            .collect()
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SourceError> {
        let mut consumer = self.ensure_consumer().await?;
        let topic = self.options.topic.clone();
        let mut result = Ok(());
        for (k, &offset) in positions {
            let Some(vg) = parse_key(k) else {
                result = Err(self.bad(format!("cannot commit position key {k:?}")));
                break;
            };
            if let Err(e) = consumer.commit_offset(&topic, vg, offset).await {
                result = Err(FeedError::from(e));
                break;
            }
        }
        if result.is_ok() {
            self.consumer = Some(consumer);
        } else {
            consumer.close().await;
        }
        result.map_err(SourceError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_meta_from_its_statement() {
        let yes = "CREATE TOPIC IF NOT EXISTS `t` WITH META AS DATABASE `d`";
        assert!(topic_has_meta(Some(yes), None));
        assert!(topic_has_meta(
            Some("create topic t with  meta as database d"),
            Some("no")
        ));
        assert!(!topic_has_meta(
            Some("CREATE TOPIC t AS DATABASE d"),
            Some("yes")
        ));
        assert!(!topic_has_meta(
            Some("CREATE TOPIC `with meta` AS DATABASE d"),
            None
        ));
        assert!(!topic_has_meta(
            Some("CREATE TOPIC t ONLY META AS DATABASE d"),
            None
        ));
        // No statement text: the version's meta column decides.
        assert!(topic_has_meta(None, Some("yes")));
        assert!(topic_has_meta(Some(""), Some("with")));
        assert!(!topic_has_meta(None, Some("no")));
        assert!(!topic_has_meta(None, Some("without")));
        assert!(!topic_has_meta(None, None));
    }

    #[test]
    fn default_names_are_safe_distinct_and_bounded() {
        let (t, g) = default_names("repo-1", "Power.DB");
        assert!(t.starts_with("taosbackup_power_db_"), "{t}");
        assert_eq!(g, format!("{t}_g"));
        assert_ne!(default_names("repo-2", "Power.DB").0, t);
        assert_ne!(default_names("repo-1", "power_db").0, t);
        assert_eq!(default_names("repo-1", "Power.DB").0, t, "stable");
        let long = "x".repeat(500);
        let (t, g) = default_names("r", &long);
        assert!(
            t.len() <= MAX_NAME_LEN && g.len() <= MAX_NAME_LEN,
            "{}",
            g.len()
        );
        assert!(
            t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{t}"
        );
        let o = TmqFeedOptions::new("r", "db");
        assert!(TmqFeed::new(ConnectOptions::new("ws://h:1"), o).is_ok());
        let mut o = TmqFeedOptions::new("r", "db");
        o.topic = "bad-name".into();
        assert!(TmqFeed::new(ConnectOptions::new("ws://h:1"), o).is_err());
    }

    #[test]
    fn position_keys() {
        assert_eq!(key(3), "vg:3");
        assert_eq!(parse_key("vg:3"), Some(3));
        assert_eq!(parse_key("wal:3"), None);
    }
}
