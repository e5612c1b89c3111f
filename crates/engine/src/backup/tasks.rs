//! A bounded set of tokio tasks that fails fast: the exports and the commit's shard stores
//! each run on one.

use std::future::Future;

use tokio::task::{JoinError, JoinSet};

use crate::EngineError;

/// At most `limit` tasks at once, each a task of its own (so its work runs on the runtime's
/// workers). When one fails, the others are aborted (each is dropped at its next await) and
/// waited for, so that nothing of a failed step still runs once it reports; the first
/// error is the one reported, the others being consequences of it. Dropping the set aborts
/// what still runs.
pub(super) struct Tasks<T> {
    limit: usize,
    /// What a task is, for the error of one that panics ("an export task").
    what: &'static str,
    running: JoinSet<Result<T, EngineError>>,
    done: Vec<T>,
}

impl<T: Send + 'static> Tasks<T> {
    pub(super) fn new(limit: usize, what: &'static str) -> Self {
        Tasks {
            limit: limit.max(1),
            what,
            running: JoinSet::new(),
            done: Vec::new(),
        }
    }

    /// Starts `task` once fewer than `limit` run; the error of a task that failed meanwhile.
    pub(super) async fn spawn(
        &mut self,
        task: impl Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Result<(), EngineError> {
        while self.running.len() >= self.limit {
            self.join_one().await?;
        }
        self.running.spawn(task);
        Ok(())
    }

    /// Every task's output, in the order they ended, once all have.
    pub(super) async fn finish(mut self) -> Result<Vec<T>, EngineError> {
        while !self.running.is_empty() {
            self.join_one().await?;
        }
        Ok(self.done)
    }

    /// Aborts every task and waits until none runs (their outputs and errors dropped): for
    /// a set whose work is no longer wanted because a step beside it failed.
    pub(super) async fn abort(mut self) {
        self.stop().await;
    }

    /// Aborts what still runs and waits until none does.
    async fn stop(&mut self) {
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
    }

    /// Waits for one task; on a failure, aborts and waits for the others.
    async fn join_one(&mut self) -> Result<(), EngineError> {
        let Some(joined) = self.running.join_next().await else {
            return Ok(());
        };
        match joined.map_err(|e| self.failed(&e)).and_then(|r| r) {
            Ok(out) => {
                self.done.push(out);
                Ok(())
            }
            Err(e) => {
                self.stop().await;
                Err(e)
            }
        }
    }

    /// The error of a task that did not return: it panicked (a bug) or was aborted.
    fn failed(&self, e: &JoinError) -> EngineError {
        if e.is_cancelled() {
            return EngineError::Cancelled;
        }
        EngineError::Internal(format!("{} panicked: {e}", self.what))
    }
}
