//! The revocation listener: follows the access store's feed of grants and revocations (the Redis control
//! stream in production). For each revocation it tells the gate (which forgets the cached grant and
//! remembers the revocation) and kicks the user's live subscriptions to the conversation on this edge; for
//! each grant it tells the gate (which forgets the cached denial and the revocation). One task per edge.
//!
//! At start the feed replays the changes of the last revocation-memory window (as far as the stream still
//! holds them), so a new edge knows the revocations its tokens could undo. When the feed lost changes
//! (lag), every cached answer is forgotten; when it fails, the same, and it is polled again after a
//! back-off: it resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use crier_store::access::{AccessChange, AccessStore, ChangeKind};
use tokio_util::sync::CancellationToken;

use crate::session::SessionContext;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Opens the feed, then applies changes until `shutdown`.
pub async fn run(store: Arc<dyn AccessStore>, ctx: Arc<SessionContext>, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let replay = ctx.config.revocation_memory();
    let mut feed = loop {
        match store.changes(replay).await {
            Ok(feed) => break feed,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the access-change feed; retrying");
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
                if batch.lagged {
                    tracing::warn!("access-change feed lost changes; forgetting cached access answers");
                    ctx.gate.forget_all();
                }
                batch.changes.iter().for_each(|change| apply(&ctx, change));
            }
            Err(err) => {
                tracing::warn!(error = %err, "access-change feed failed; forgetting cached access answers");
                ctx.gate.forget_all();
                if pause(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

fn apply(ctx: &SessionContext, change: &AccessChange) {
    let (user, conversation) = (change.user.as_str(), change.conversation.as_str());
    match change.kind {
        ChangeKind::Granted => ctx.gate.granted_access(user, conversation),
        ChangeKind::Revoked => {
            ctx.gate.revoked_access(user, conversation);
            if ctx.gate.enforces() {
                ctx.directory.revoke(user, conversation);
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
