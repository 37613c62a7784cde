//! Bounds on every wait of the harness: a hung server or client must fail a test in seconds, with a message
//! saying what was awaited, instead of hanging the whole run until nextest's slow-test timeout.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;

/// How long one step of a test (a connect, a frame, a publish, a log read) may take before it fails.
/// Generous for a loaded CI machine, short enough that a hang is reported quickly.
pub const STEP: Duration = Duration::from_secs(5);

/// Awaits `fut` for at most [`STEP`]; the error names `what` was awaited.
pub async fn within<T>(what: impl Display, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    within_for(STEP, what, fut).await
}

/// Awaits `fut` for at most `limit`; the error names `what` was awaited.
pub async fn within_for<T>(
    limit: Duration,
    what: impl Display,
    fut: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("timed out after {limit:?} waiting for {what}"))
}
