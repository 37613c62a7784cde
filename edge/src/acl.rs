//! Access decisions: may this principal subscribe to this conversation? Pure: no I/O.
//!
//! Only the `open` policy exists so far (any authenticated user may subscribe to any conversation); grants,
//! token claims and subscription tokens (DESIGN.md §3) plug in here as further policies.

use crate::auth::Principal;

/// The access policy of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessPolicy {
    /// Any authenticated user may subscribe to any conversation (`crier dev`, or explicitly configured).
    #[default]
    Open,
}

impl AccessPolicy {
    /// Whether `principal` may subscribe to `conversation`.
    #[must_use]
    pub fn allows(self, _principal: &Principal, _conversation: &str) -> bool {
        match self {
            Self::Open => true,
        }
    }
}
