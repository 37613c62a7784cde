//! The revocation listener: follows the access store's revocation feed (the Redis control stream in
//! production) and, for each revoked grant, forgets the cached decision and kicks the user's live
//! subscriptions to the conversation on this edge. One task per edge.
//!
//! When the feed fails or lags, every cached grant is forgotten (the next subscribe asks the store), and
//! the feed is polled again after a back-off; it resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use crier_store::access::AccessStore;
use tokio_util::sync::CancellationToken;

use crate::session::SessionContext;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Opens the feed, then applies revocations until `shutdown`.
pub async fn run(store: Arc<dyn AccessStore>, ctx: Arc<SessionContext>, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let mut feed = loop {
        match store.revocations().await {
            Ok(feed) => break feed,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the revocation feed; retrying");
                if pause(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    };
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => return,
            batch = feed.next_batch() => batch,
        };
        match batch {
            Ok(batch) => {
                backoff = BACKOFF_MIN;
                for revocation in batch {
                    ctx.gate.forget(&revocation.user, &revocation.conversation);
                    if ctx.gate.enforces() {
                        ctx.connections.revoke(&revocation.user, &revocation.conversation);
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "revocation feed failed; forgetting cached grants");
                ctx.gate.forget_all();
                if pause(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `backoff` (then doubles it); `true` when shutdown came first.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}
