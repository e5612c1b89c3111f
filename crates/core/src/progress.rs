//! Progress reporting from long operations (backup, restore, verify) to whoever presents it.

/// Receives progress of a long operation. Implementations must be cheap and thread safe:
/// they are called from many tasks. Every method has an empty default, so an implementation
/// overrides only what it shows.
pub trait Progress: Send + Sync {
    /// A phase begins (`"export"`, `"restore"`, …) with `total_blocks` to process (0 when
    /// unknown) and an estimate of its rows (0 when unknown).
    fn begin(&self, _phase: &str, _total_blocks: u64, _estimated_rows: u64) {}

    /// Blocks, rows and bytes just processed.
    fn advance(&self, _blocks: u64, _rows: u64, _bytes: u64) {}

    /// The current phase ended.
    fn end(&self) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
