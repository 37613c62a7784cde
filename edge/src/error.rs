//! The close-code table (DESIGN.md §2) and the edge's errors. Every way a session can end is one
//! [`CloseCode`]; the README's table is generated from the same list by hand, so keep them together.

/// WebSocket close codes the edge sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// Normal close; also after `--idle-timeout` without a client message (reason `Session timeout`).
    Normal = 1000,
    /// The edge is shutting down; reconnect with jitter.
    GoingAway = 1001,
    /// The client broke the WebSocket protocol.
    ProtocolError = 1002,
    /// A text frame was not valid UTF-8.
    InvalidPayload = 1007,
    /// Origin not allowed, or another policy violation; do not reconnect.
    Policy = 1008,
    /// A client frame exceeded the size limit.
    TooBig = 1009,
    /// Authentication failed or timed out; do not reconnect.
    AuthFailed = 4001,
    /// The token expired without a refresh.
    TokenExpired = 4003,
    /// The outbound queue overflowed; reconnect with `since`.
    SlowConsumer = 4008,
    /// Too many client messages.
    RateLimited = 4029,
    /// Disconnected by an operator.
    Disconnected = 4030,
}

impl CloseCode {
    /// Every code, in the table's order (the metrics pre-register one counter each).
    pub const ALL: [Self; 11] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::InvalidPayload,
        Self::Policy,
        Self::TooBig,
        Self::AuthFailed,
        Self::TokenExpired,
        Self::SlowConsumer,
        Self::RateLimited,
        Self::Disconnected,
    ];

    /// The numeric code.
    #[must_use]
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// Why the edge could not serve.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The listener failed.
    #[error("accepting connections: {0}")]
    Accept(#[source] std::io::Error),
    /// The configuration is unusable (normally caught by `EdgeConfig::problems` before binding).
    #[error("configuration: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes existing clients rely on keep their numbers.
    #[test]
    fn codes_are_the_documented_numbers() {
        assert_eq!(CloseCode::AuthFailed.code(), 4001);
        assert_eq!(CloseCode::SlowConsumer.code(), 4008);
        assert_eq!(CloseCode::GoingAway.code(), 1001);
    }
}
