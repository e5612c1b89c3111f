//! Errors of the `tmq` change feed.

use taosbackup_core::{SourceError, SourceErrorKind};

use crate::Error;

/// What can go wrong reading TDengine's TMQ change feed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// A connection, query or consumer call failed.
    #[error(transparent)]
    Source(#[from] Error),
    /// The database does not exist.
    #[error(
        "database {database} does not exist on {endpoint}: the tmq change feed needs an \
         existing database; check the database name"
    )]
    DatabaseNotFound {
        /// The database.
        database: String,
        /// The endpoint, without credentials.
        endpoint: String,
    },
    /// The database keeps no write-ahead log, so TMQ cannot deliver changes.
    #[error(
        "database {database} on {endpoint} has WAL_RETENTION_PERIOD 0, so TDengine keeps no \
         write-ahead log for the tmq change feed to read; run `ALTER DATABASE {database} \
         WAL_RETENTION_PERIOD 86400` (seconds; longer than the interval between backups) and \
         retry"
    )]
    WalRetentionDisabled {
        /// The database.
        database: String,
        /// The endpoint, without credentials.
        endpoint: String,
    },
    /// The topic name is taken by a topic this feed cannot use.
    #[error(
        "topic {topic} on {endpoint} cannot be used by the tmq change feed: {reason}; drop it \
         (`DROP TOPIC {topic}`) or configure another topic name"
    )]
    TopicConflict {
        /// The topic.
        topic: String,
        /// The endpoint, without credentials.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Changes may have been missed while reading (WAL purged past the feed's position, topic
    /// or vgroup gone): the tracker is inconsistent and the next backup must be a full one.
    #[error(
        "gap in the tmq change feed (topic {topic}, database {database}): {reason}; changes \
         may have been missed, so the next backup must be a full one"
    )]
    Gap {
        /// The topic.
        topic: String,
        /// The database.
        database: String,
        /// What was detected, naming the vgroup and offsets.
        reason: String,
    },
    /// The consumer delivers nothing although its position is below the end recorded at
    /// the start of the catch-up.
    #[error(
        "tmq consumer of topic {topic} stalled: {reason}; retry later, and check the \
         consumer group with `SHOW SUBSCRIPTIONS`"
    )]
    Stalled {
        /// The topic.
        topic: String,
        /// Which vgroup, where it stands and where it should get.
        reason: String,
    },
    /// The consumer reported no vgroup for the topic (taos-ws reports every failure of the
    /// assignment call this way, dropped connections included).
    #[error(
        "tmq consumer of topic {topic} got no vgroup assignment (connection lost or topic \
         dropped); retry: a new consumer is created"
    )]
    NoAssignment {
        /// The topic.
        topic: String,
    },
    /// The server sent a TMQ message this feed cannot interpret.
    #[error("unexpected tmq message on topic {topic}: {reason}")]
    BadMessage {
        /// The topic.
        topic: String,
        /// What was wrong.
        reason: String,
    },
}

impl FeedError {
    /// Whether retrying (on a fresh consumer) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            FeedError::Source(e) => e.is_retryable(),
            FeedError::Stalled { .. } | FeedError::NoAssignment { .. } => true,
            _ => false,
        }
    }

    /// Whether this error reports a gap (changes may have been missed).
    pub fn is_gap(&self) -> bool {
        matches!(self, FeedError::Gap { .. })
    }

    /// What kind of failure this is (the class [`SourceError`] carries; a wrapped crate
    /// error keeps its own classification, [`crate::Error::kind`]).
    pub fn kind(&self) -> SourceErrorKind {
        match self {
            FeedError::Source(e) => e.kind(),
            FeedError::DatabaseNotFound { .. } => SourceErrorKind::NotFound,
            FeedError::WalRetentionDisabled { .. } | FeedError::TopicConflict { .. } => {
                SourceErrorKind::Rejected
            }
            FeedError::Stalled { .. } | FeedError::NoAssignment { .. } => {
                SourceErrorKind::Connection
            }
            FeedError::Gap { .. } | FeedError::BadMessage { .. } => SourceErrorKind::Other,
        }
    }
}

impl From<FeedError> for SourceError {
    fn from(e: FeedError) -> SourceError {
        match e {
            FeedError::Source(inner) => inner.into(),
            other => SourceError::new(other.kind(), other.is_retryable(), other),
        }
    }
}
