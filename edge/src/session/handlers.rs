//! What each client frame does to a session, and what a revocation does to it. Rejections answer with an
//! error frame (the connection stays open) unless a close code applies; each is logged at debug, never with
//! a token.

use std::sync::Arc;

use super::subscription::Replay;
use super::{Ending, Session};
use crate::error::CloseReason;
use crate::gate::Verdict;
use crate::protocol::{ClientFrame, ServerFrame};

/// `message` of a refused subscribe (DESIGN.md §3).
pub const ACCESS_DENIED: &str = "Access denied to conversation";

impl Session {
    pub(super) async fn handle_frame(&mut self, frame: ClientFrame) -> Option<Ending> {
        match frame {
            ClientFrame::Auth { token, user_id, positions } => {
                self.positions |= positions;
                return self.authenticate(token, user_id).await;
            }
            ClientFrame::Ping => self.send(&ServerFrame::Pong),
            _ if self.principal.is_none() => self.send(&ServerFrame::error("Not authenticated")),
            ClientFrame::Refresh { token } => return self.refresh(&token).await,
            ClientFrame::Subscribe { conversation_id, since, token, last } => {
                let replay = match since {
                    Some(since) => Replay::Since(since),
                    None => last.map_or(Replay::None, Replay::Last),
                };
                return self.subscribe(&conversation_id, replay, token.as_deref()).await;
            }
            ClientFrame::Unsubscribe { conversation_id } => self.unsubscribe(&conversation_id),
        }
        None
    }

    pub(super) async fn authenticate(
        &mut self,
        token: Option<String>,
        user_id: Option<String>,
    ) -> Option<Ending> {
        if self.principal.is_some() {
            self.send(&ServerFrame::error("Already authenticated"));
            return None;
        }
        let principal = match self.ctx.auth.authenticate(token.as_deref(), user_id.as_deref()).await {
            Ok(principal) => principal,
            Err(err) => {
                tracing::debug!(session = self.id(), error = %err, "authentication failed");
                return self.end(CloseReason::AuthFailed);
            }
        };
        if !self.member.authenticate(&principal.user_id) {
            tracing::debug!(session = self.id(), user_id = %principal.user_id, "too many connections for user");
            return self.end(CloseReason::TooManyConnections);
        }
        let user_id = Arc::clone(&principal.user_id);
        self.timers.expires(principal.expires_at);
        self.principal = Some(principal);
        tracing::info!(session = self.id(), user_id = %user_id, "ws_client_authenticated");
        self.ctx.meters.authenticated.increment(1.0);
        self.send(&ServerFrame::Authenticated { user_id: &user_id });
        None
    }

    async fn refresh(&mut self, token: &str) -> Option<Ending> {
        let current = self.principal.as_ref().map(|p| Arc::clone(&p.user_id));
        let refreshed = match self.ctx.auth.authenticate(Some(token), None).await {
            Ok(p) if Some(&p.user_id) == current.as_ref() && p.expires_at.is_some() => p,
            Ok(_) => {
                tracing::debug!(session = self.id(), "refresh token for another user or without exp");
                self.send(&ServerFrame::error("Refresh token must be for the same user"));
                return None;
            }
            Err(err) => {
                tracing::debug!(session = self.id(), error = %err, "refresh refused");
                self.send(&ServerFrame::error("Invalid refresh token"));
                return None;
            }
        };
        let expires_at = refreshed.expires_at.unwrap_or_default();
        self.timers.expires(Some(expires_at));
        self.principal = Some(refreshed);
        self.send(&ServerFrame::Refreshed { expires_at });
        None
    }

    /// `Some(message)` when the subscribe must be refused.
    pub(super) async fn access_refusal(
        &self,
        conversation: &str,
        token: Option<&str>,
    ) -> Option<&'static str> {
        let principal = self.principal.as_ref()?;
        match self.ctx.gate.check(principal, conversation, token).await {
            Verdict::Allowed => None,
            Verdict::Denied => {
                tracing::debug!(session = self.id(), user_id = %principal.user_id, conversation_id = conversation, "access denied");
                Some(ACCESS_DENIED)
            }
            Verdict::Unavailable => Some("Access check unavailable"),
        }
    }

    pub(super) fn unsubscribe(&mut self, conversation: &str) {
        self.end_subscription(conversation, None);
    }

    /// Ends the subscription to `conversation` (live or still recovering), if any, and says so with
    /// `reason`.
    pub(super) fn end_subscription(&mut self, conversation: &str, reason: Option<&str>) {
        if self.member.leave(conversation) || self.forget_recovery(conversation) {
            tracing::info!(session = self.id(), conversation_id = conversation, "ws_client_unsubscribed");
        }
        self.send(&ServerFrame::Unsubscribed { conversation_id: conversation, reason });
    }

    /// Ends the live subscriptions whose access was revoked.
    pub(super) fn handle_revocations(&mut self) {
        for conversation in self.outbox.take_revoked() {
            if self.member.leave(&conversation) || self.forget_recovery(&conversation) {
                tracing::info!(session = self.id(), conversation_id = %conversation, "ws_client_unsubscribed");
                let reason = Some("access revoked");
                self.send(&ServerFrame::Unsubscribed { conversation_id: &conversation, reason });
            }
        }
    }
}
