//! Progress of backup, restore and verify: indicatif bars on a terminal, periodic log lines
//! otherwise. Implements the engine's [`Progress`] trait.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use taosbackup_core::Progress;

/// How often a log line is written when standard error is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Runs `f` with the bars hidden, so text written to standard error does not tear them.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match MULTI_USED.get() {
        Some(_) => multi().suspend(f),
        None => f(),
    }
}

static MULTI_USED: OnceLock<()> = OnceLock::new();

/// Whether bars are drawn: when standard error is a terminal. Periodic log lines are used
/// otherwise.
pub fn bars_enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// Formats a byte count (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Formats a count with thousands separators.
pub fn count(n: u64) -> String {
    indicatif::HumanCount(n).to_string()
}

struct Phase {
    name: String,
    total_blocks: u64,
    started: Instant,
    last_log: Instant,
    bar: Option<ProgressBar>,
}

/// The CLI's [`Progress`]: counts blocks, rows and bytes of the current phase.
pub struct CliProgress {
    bars: bool,
    blocks: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    /// Rows the current phase expects (0: unknown).
    estimated_rows: AtomicU64,
    phase: Mutex<Option<Phase>>,
}

impl CliProgress {
    /// Bars when `bars` is set, log lines otherwise.
    pub fn new(bars: bool) -> CliProgress {
        CliProgress {
            bars,
            blocks: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            estimated_rows: AtomicU64::new(0),
            phase: Mutex::new(None),
        }
    }

    /// Bars on a terminal, log lines otherwise.
    pub fn auto() -> CliProgress {
        CliProgress::new(bars_enabled())
    }

    /// A progress that never draws (for `--json` and tests).
    pub fn hidden() -> CliProgress {
        CliProgress::new(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Phase>> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn message(&self, elapsed: Duration) -> String {
        let rows = self.rows.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64().max(1e-3);
        let of = match self.estimated_rows.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!("/~{}", count(n)),
        };
        format!(
            "{}{of} rows, {} ({}/s)",
            count(rows),
            self::bytes(bytes),
            self::bytes((bytes as f64 / secs) as u64)
        )
    }
}

impl Progress for CliProgress {
    fn begin(&self, phase: &str, total_blocks: u64, estimated_rows: u64) {
        self.blocks.store(0, Ordering::Relaxed);
        self.rows.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.estimated_rows.store(estimated_rows, Ordering::Relaxed);
        // The same phase begun again (its total became known): keep its bar and clock.
        if let Some(p) = self.lock().as_mut().filter(|p| p.name == phase) {
            p.total_blocks = total_blocks;
            if let Some(bar) = &p.bar {
                bar.set_length(total_blocks);
                bar.set_position(0);
            } else {
                tracing::info!(
                    phase,
                    blocks = total_blocks,
                    estimated_rows,
                    "{phase}: about {total_blocks} blocks, {estimated_rows} rows"
                );
            }
            return;
        }
        if let Some(old) = self.lock().take() {
            if let Some(bar) = old.bar {
                bar.finish_and_clear();
                multi().remove(&bar);
            }
        }
        let bar = if self.bars {
            let _ = MULTI_USED.set(());
            let bar = multi().add(ProgressBar::new(total_blocks));
            let style = ProgressStyle::with_template(
                "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} blocks, {msg}, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(phase.to_string());
            bar.set_message(self.message(Duration::ZERO));
            bar.enable_steady_tick(Duration::from_millis(200));
            Some(bar)
        } else {
            tracing::info!(
                phase,
                blocks = total_blocks,
                estimated_rows,
                "{phase} started"
            );
            None
        };
        let now = Instant::now();
        *self.lock() = Some(Phase {
            name: phase.to_string(),
            total_blocks,
            started: now,
            last_log: now,
            bar,
        });
    }

    fn advance(&self, blocks: u64, rows: u64, bytes: u64) {
        let done = self.blocks.fetch_add(blocks, Ordering::Relaxed) + blocks;
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut guard = self.lock();
        let Some(p) = guard.as_mut() else { return };
        let elapsed = p.started.elapsed();
        if let Some(bar) = &p.bar {
            bar.set_position(done);
            bar.set_message(self.message(elapsed));
        } else if p.last_log.elapsed() >= LOG_EVERY {
            p.last_log = Instant::now();
            tracing::info!(
                phase = %p.name,
                blocks = done,
                total_blocks = p.total_blocks,
                "{}: {done}/{} blocks, {}",
                p.name,
                p.total_blocks,
                self.message(elapsed)
            );
        }
    }

    fn end(&self) {
        let Some(p) = self.lock().take() else { return };
        let elapsed = p.started.elapsed();
        match p.bar {
            Some(bar) => {
                bar.finish_and_clear();
                multi().remove(&bar);
            }
            None => tracing::info!(
                phase = %p.name,
                blocks = self.blocks.load(Ordering::Relaxed),
                seconds = elapsed.as_secs_f64(),
                "{} finished: {} blocks, {}",
                p.name,
                self.blocks.load(Ordering::Relaxed),
                self.message(elapsed)
            ),
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        if let Some(p) = self.lock().take() {
            if let Some(bar) = p.bar {
                bar.finish_and_clear();
                multi().remove(&bar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_phase() {
        let p = CliProgress::hidden();
        p.begin("export", 3, 0);
        p.advance(2, 10, 100);
        p.advance(1, 5, 50);
        assert_eq!(p.blocks.load(Ordering::Relaxed), 3);
        assert_eq!(p.rows.load(Ordering::Relaxed), 15);
        p.end();
        p.begin("restore", 1, 0);
        assert_eq!(p.blocks.load(Ordering::Relaxed), 0);
    }
}
