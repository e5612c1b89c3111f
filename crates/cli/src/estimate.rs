//! A total for the progress of a full backup (issue 16, item 5).
//!
//! The engine knows how many blocks an incremental exports, but a full backup exports whole
//! tables and begins its export phase with a total of 0 ("1188/0 blocks, ETA 0s"). When
//! that happens, [`Estimating`] asks the source for an estimate from the catalog
//! (`TaosSource::spawn_estimate`: a few aggregate queries, in the background, so the export
//! does not wait) and, once it arrives, begins the phase again on the wrapped progress with
//! that total and replays the counts so far. The CLI's bars and the daemon's
//! `/backup/status` both show it.

use std::sync::{Arc, Mutex, MutexGuard};

use taosbackup_core::{BucketWidth, Progress};
use taosbackup_source::TaosSource;

/// A [`Progress`] that fills in the total of an export phase begun without one.
pub struct Estimating {
    inner: Arc<dyn Progress>,
    source: Arc<TaosSource>,
    database: String,
    width: BucketWidth,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Bumped by every begin and end: an estimate for an older phase is dropped.
    generation: u64,
    blocks: u64,
    rows: u64,
    bytes: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Estimating {
    /// Wraps `inner` for a backup of `database` (buckets of `width`) from `source`.
    pub fn new(
        inner: Arc<dyn Progress>,
        source: Arc<TaosSource>,
        database: &str,
        width: BucketWidth,
    ) -> Estimating {
        Estimating {
            inner,
            source,
            database: database.to_string(),
            width,
            state: Arc::default(),
        }
    }
}

impl Progress for Estimating {
    fn begin(&self, phase: &str, total_blocks: u64, estimated_rows: u64) {
        let generation = {
            let mut st = lock(&self.state);
            st.generation += 1;
            st.blocks = 0;
            st.rows = 0;
            st.bytes = 0;
            self.inner.begin(phase, total_blocks, estimated_rows);
            st.generation
        };
        if phase != "export" || total_blocks != 0 {
            return;
        }
        let (state, inner) = (self.state.clone(), self.inner.clone());
        let database = self.database.clone();
        self.source
            .spawn_estimate(&self.database, self.width, move |estimate| {
                let e = match estimate {
                    Ok(e) => e,
                    Err(err) => {
                        tracing::debug!(error = %err, "no estimate of the export's size");
                        return;
                    }
                };
                let st = lock(&state);
                if st.generation != generation {
                    return;
                }
                tracing::info!(
                    database = %database,
                    tables = e.tables,
                    blocks = e.blocks,
                    rows = e.rows,
                    "export of {database}: about {} blocks, {} rows (estimated from the catalog)",
                    e.blocks,
                    e.rows
                );
                inner.begin("export", e.blocks.max(st.blocks), e.rows);
                inner.advance(st.blocks, st.rows, st.bytes);
            });
    }

    fn advance(&self, blocks: u64, rows: u64, bytes: u64) {
        let mut st = lock(&self.state);
        st.blocks += blocks;
        st.rows += rows;
        st.bytes += bytes;
        self.inner.advance(blocks, rows, bytes);
    }

    fn end(&self) {
        let mut st = lock(&self.state);
        st.generation += 1;
        self.inner.end();
    }
}
