//! SIGINT/SIGTERM during a long operation: the first cancels the operation's token (the
//! engine stops before committing, the caller releases the repository lock and says so);
//! the second exits at once (the lock is then found stale: its process is gone).

use taosbackup_engine::CancellationToken;
use tokio::signal::unix::{SignalKind, signal};

/// Exit code after a second signal (the operation failed).
const SECOND_SIGNAL_EXIT: i32 = 1;

/// A token cancelled by the first SIGINT or SIGTERM; `what` names the operation in the
/// messages. Must be called inside the runtime.
pub fn cancel_on_signals(what: &'static str) -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGINT handler: {e}"))?;
    let t = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = name,
            "{name} received: stopping the {what}; nothing will be committed (a second signal exits at once)"
        );
        t.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        crate::progress::suspend(|| {
            eprintln!(
                "error: second {name}: exiting at once; the {what} was not committed\n  \
                 hint: the repository lock of this process is stale now and is ignored by \
                 the next command"
            )
        });
        std::process::exit(SECOND_SIGNAL_EXIT);
    });
    Ok(token)
}
