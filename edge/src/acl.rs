//! Access decisions: may this user subscribe to this conversation? Pure: no I/O.
//!
//! DESIGN.md §3: a subscription is allowed if any source says yes: the `open` policy, the connection
//! token's conversations claim, a subscription token for exactly this user and conversation, or a grant in
//! the access store. The cheap sources are consulted first; the store (through the edge's cache) only when
//! they all say no, which [`decide`] reports as [`Decision::NeedGrant`].

use crate::config::AclMode;

/// What is known about one subscribe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evidence {
    /// The connection token's conversations claim lists the conversation.
    pub claimed: bool,
    /// A valid subscription token for this user and conversation came with the request.
    pub subscription_token: bool,
    /// The access store's answer, once asked.
    pub granted: Option<bool>,
}

/// Which source allowed a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--acl open`.
    Open,
    /// The conversations claim.
    Claim,
    /// A subscription token.
    SubscriptionToken,
    /// A grant in the access store.
    Grant,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Subscribe.
    Allow(Source),
    /// Ask the access store, then decide again with `granted` set.
    NeedGrant,
    /// Refuse: "Access denied to conversation".
    Deny,
}

/// The decision for `mode` given `evidence`.
#[must_use]
pub fn decide(mode: AclMode, evidence: Evidence) -> Decision {
    match (mode, evidence) {
        (AclMode::Open, _) => Decision::Allow(Source::Open),
        (AclMode::Checked, Evidence { claimed: true, .. }) => Decision::Allow(Source::Claim),
        (AclMode::Checked, Evidence { subscription_token: true, .. }) => {
            Decision::Allow(Source::SubscriptionToken)
        }
        (AclMode::Checked, Evidence { granted: Some(true), .. }) => Decision::Allow(Source::Grant),
        (AclMode::Checked, Evidence { granted: None, .. }) => Decision::NeedGrant,
        (AclMode::Checked, Evidence { granted: Some(false), .. }) => Decision::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(claimed: bool, subscription_token: bool, granted: Option<bool>) -> Evidence {
        Evidence { claimed, subscription_token, granted }
    }

    /// The full decision table of DESIGN.md §3.
    #[test]
    fn decision_table() {
        use Decision::{Allow, Deny, NeedGrant};
        let table = [
            (AclMode::Open, ev(false, false, None), Allow(Source::Open)),
            (AclMode::Open, ev(false, false, Some(false)), Allow(Source::Open)),
            (AclMode::Checked, ev(true, false, None), Allow(Source::Claim)),
            (AclMode::Checked, ev(true, true, Some(false)), Allow(Source::Claim)),
            (AclMode::Checked, ev(false, true, None), Allow(Source::SubscriptionToken)),
            (AclMode::Checked, ev(false, false, None), NeedGrant),
            (AclMode::Checked, ev(false, false, Some(true)), Allow(Source::Grant)),
            (AclMode::Checked, ev(false, false, Some(false)), Deny),
        ];
        for (mode, evidence, expected) in table {
            assert_eq!(decide(mode, evidence), expected, "{mode:?} {evidence:?}");
        }
    }
}
