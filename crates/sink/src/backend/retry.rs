//! Bounded retries of storage requests, counted.
//!
//! Why our own layer instead of object_store's `RetryConfig`: object_store's request retries
//! are switched off for every cloud backend we build (`max_retries = 0`) and this layer
//! retries whole operations instead, because
//!
//! - it can count every retry (the run's `storage_retries`, the daemon's
//!   `taosbackup_storage_retries_total`) and name the object, the attempts and the last HTTP
//!   status when it gives up; object_store's loop is private and reports neither;
//! - it covers what object_store's per-request loop does not: a `PUT` that timed out or whose
//!   connection dropped (object_store retries those only for requests it knows idempotent;
//!   every write of ours is: content-addressed, or the same bytes again), a response body cut
//!   off mid-transfer (a `GET`'s body is read inside the attempt), and a multipart upload
//!   whose completion failed (aborted and started again);
//! - it honours `Retry-After` on throttling answers (429, 503 `SlowDown`/`ServerBusy`),
//!   which object_store 0.14 ignores (`client/retry.rs` never reads the header), capped at
//!   the longest back-off;
//! - one policy applies to every backend and every operation: exponential back-off with
//!   jitter and a total deadline per operation.
//!
//! Multipart parts are retried one by one through object_store's part-level hook
//! (`PutMultipartOptions::with_retry_policy`, object_store 0.14 `src/retry.rs`) with the same
//! policy and counters.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::retry::{RetryContext, RetryFailure, RetryPolicy};
use object_store::{ClientOptions, HeaderMap};

/// How failed storage requests are retried: up to `max_retries` times with exponential
/// back-off and jitter, and no new attempt after `timeout` since the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageRetry {
    /// Retries after the first attempt (0: none).
    pub max_retries: u32,
    /// The first back-off; each further one doubles, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts (also the cap on a server's `Retry-After`).
    pub max_backoff: Duration,
    /// No attempt starts later than this after the first one (the operation's deadline).
    pub timeout: Duration,
}

impl Default for StorageRetry {
    /// 10 retries, 100 ms doubling to at most 15 s, within 5 minutes: a throttled or
    /// briefly unavailable store gets minutes to recover, a dead one fails the run in
    /// bounded time.
    fn default() -> Self {
        StorageRetry {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            timeout: Duration::from_secs(300),
        }
    }
}

impl StorageRetry {
    /// The wait before retry number `retry` (1-based): `d = min(max, initial · 2^(retry-1))`,
    /// then a uniformly random point in `[d/2, d]` ("equal jitter": never less than half the
    /// back-off, so a throttled store is not hammered, and spread so that the concurrent
    /// uploads of one run do not retry in lockstep).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let d = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = d / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Whether another attempt may start: retries left and the deadline not passed.
    pub(crate) fn allows(&self, retries_so_far: u32, elapsed: Duration) -> bool {
        retries_so_far < self.max_retries && elapsed < self.timeout
    }

    /// The wait before retry `retry`, at least the server's `Retry-After` (capped at
    /// `max_backoff`), and never past the deadline.
    pub(crate) fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
    ) -> Duration {
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(self.max_backoff));
        self.backoff(retry)
            .max(asked)
            .min(self.timeout.saturating_sub(elapsed))
    }
}

/// Counters of one backend's storage operations (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    operations: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
}

/// What a backend's storage operations have met so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Operations started (a read, a write, a list, a delete; one multipart upload is one).
    pub operations: u64,
    /// Attempts repeated after a transient failure (5xx, 429, 408, a dropped, reset or
    /// timed-out connection), multipart parts included.
    pub retries: u64,
    /// Operations that failed for good (after their retries, or at once when not
    /// retryable); a read of a missing object is not counted.
    pub failures: u64,
}

impl Counters {
    pub(crate) fn operation(&self) {
        self.operations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StorageStats {
        StorageStats {
            operations: self.operations.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// What the HTTP layer saw during one attempt: the last response's status and its
/// `Retry-After`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seen {
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<Duration>,
}

tokio::task_local! {
    /// Set around each attempt by [`observe`]; written by [`Observing`] for every response
    /// of a request made from the attempt's task (object_store awaits its requests inline;
    /// multipart parts, which it spawns, report through [`PartRetry`] instead).
    static SEEN: Cell<Seen>;
}

/// Runs one attempt and returns its result with what the HTTP layer saw meanwhile.
pub(crate) async fn observe<T>(attempt: impl Future<Output = T>) -> (T, Seen) {
    SEEN.scope(Cell::new(Seen::default()), async move {
        let out = attempt.await;
        (out, SEEN.with(Cell::get))
    })
    .await
}

/// Runs `fut` without letting its requests change what the attempt around it saw (an
/// abort after a failed upload must not hide the failure's status).
pub(crate) async fn unobserved<T>(fut: impl Future<Output = T>) -> T {
    let saved = SEEN.try_with(Cell::get).ok();
    let out = fut.await;
    if let Some(seen) = saved {
        let _ = SEEN.try_with(|cell| cell.set(seen));
    }
    out
}

/// Whether an error of an attempt may go away when the attempt is repeated.
pub(crate) fn retryable(err: &object_store::Error, seen: Seen) -> bool {
    use object_store::Error as E;
    match err {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => false,
        _ => transport_failure(err) || seen.status.is_some_and(retryable_status),
    }
}

/// 5xx, 429 Too Many Requests and 408 Request Timeout.
fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// Whether the error chain holds an HTTP transport error (connect, dropped or reset
/// connection, timeout, a body cut off): every request of ours is idempotent, so each of
/// them is worth repeating.
fn transport_failure(err: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<HttpError>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// `Retry-After` in seconds (the HTTP-date form is not used by S3, Azure or GCS).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The HTTP connector of every cloud backend: reqwest, observed.
#[derive(Debug, Default)]
pub(crate) struct ObservingConnector;

impl HttpConnector for ObservingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Observing(inner)))
    }
}

#[derive(Debug)]
struct Observing(HttpClient);

#[async_trait]
impl HttpService for Observing {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let result = self.0.execute(req).await;
        let seen = match &result {
            Ok(r) => Seen {
                status: Some(r.status().as_u16()),
                retry_after: retry_after(r.headers()),
            },
            Err(_) => Seen::default(),
        };
        // Outside an attempt (no scope) there is nobody to tell.
        let _ = SEEN.try_with(|cell| cell.set(seen));
        result
    }
}

/// The retry policy of multipart parts: the same back-off, limits and counters.
#[derive(Debug)]
pub(crate) struct PartRetry {
    pub(crate) policy: StorageRetry,
    pub(crate) counters: Arc<Counters>,
}

#[async_trait]
impl RetryPolicy for PartRetry {
    async fn retry(&self, ctx: RetryContext) -> bool {
        let transient = match ctx.failure {
            RetryFailure::Status(s) => retryable_status(s.as_u16()),
            RetryFailure::Transport(_) => true,
            _ => false,
        };
        let retries_so_far = ctx.attempt.saturating_sub(1) as u32;
        if !transient || !self.policy.allows(retries_so_far, ctx.elapsed) {
            return false;
        }
        self.counters.retry();
        let wait = self.policy.delay(retries_so_far + 1, None, ctx.elapsed);
        tokio::time::sleep(wait).await;
        true
    }
}

/// A deadline clock for one operation.
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn start() -> Self {
        Clock(Instant::now())
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = StorageRetry {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            timeout: Duration::from_secs(10),
        };
        for _ in 0..200 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b9 = p.backoff(40);
            assert!(b9 >= Duration::from_millis(500) && b9 <= Duration::from_millis(1000));
        }
        // Retry-After raises the wait up to the cap; the deadline truncates it.
        let d = p.delay(1, Some(Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(d, Duration::from_millis(1000));
        let d = p.delay(1, None, Duration::from_millis(9_990));
        assert!(d <= Duration::from_millis(10));
        assert!(p.allows(4, Duration::from_secs(9)));
        assert!(!p.allows(5, Duration::ZERO));
        assert!(!p.allows(0, Duration::from_secs(10)));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let seen = |s: u16| Seen {
            status: Some(s),
            retry_after: None,
        };
        let generic = || object_store::Error::Generic {
            store: "S3",
            source: "status error".into(),
        };
        for s in [500, 502, 503, 429, 408] {
            assert!(retryable(&generic(), seen(s)), "{s}");
        }
        for s in [400, 404, 409, 412] {
            assert!(!retryable(&generic(), seen(s)), "{s}");
        }
        assert!(!retryable(&generic(), Seen::default()), "local I/O errors");
        let transport = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                object_store::client::HttpErrorKind::Interrupted,
                std::io::Error::other("connection reset"),
            )),
        };
        assert!(retryable(&transport, Seen::default()));
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "denied".into(),
        };
        assert!(!retryable(&denied, seen(503)));
    }
}
