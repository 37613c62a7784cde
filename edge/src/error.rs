//! The close-code table (DESIGN.md §2) and the edge's errors. Every way the edge ends a session is one
//! [`CloseReason`], listed once with its [`CloseCode`], close-frame reason and error frame; the metrics
//! count closes by [`CloseCode::ALL`]. The README's table is written from the same lists by hand, so keep
//! them together.

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

/// Why the edge ends a session. An operator's disconnect (4030) carries the operator's reason instead, so
/// it is not listed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The token (or dev `userId`) was refused.
    AuthFailed,
    /// No `auth` frame within the auth timeout.
    AuthTimeout,
    /// The connection token expired without a refresh.
    TokenExpired,
    /// The user is at `--max-connections-per-user`.
    TooManyConnections,
    /// The client sent more than its message rate allows.
    RateLimited,
    /// The outbound queue overflowed, or the session's partition reader missed entries.
    SlowConsumer,
    /// Entries a recovery (already answered `recovered:true`) still had to send were trimmed or lost.
    RecoveryInterrupted,
    /// The edge drains and this session's moment came.
    ShuttingDown,
    /// The peer answered no ping in time.
    PingTimeout,
    /// No client message within `--idle-timeout`.
    IdleTimeout,
    /// A client frame broke the WebSocket protocol.
    ProtocolError,
    /// A text frame was not valid UTF-8.
    InvalidUtf8,
    /// A client frame exceeded the size limit.
    TooBig,
}

impl CloseReason {
    /// The table: close code, close-frame reason, and the error frame's message sent first (if any).
    #[must_use]
    pub const fn row(self) -> (CloseCode, &'static str, Option<&'static str>) {
        use CloseCode as C;
        match self {
            Self::AuthFailed => (C::AuthFailed, "Authentication failed", Some("Authentication failed")),
            Self::AuthTimeout => (C::AuthFailed, "Authentication timeout", Some("Authentication timeout")),
            Self::TokenExpired => (C::TokenExpired, "Token expired", Some("Token expired")),
            Self::TooManyConnections => {
                (C::RateLimited, "too many connections", Some("Too many connections"))
            }
            Self::RateLimited => (C::RateLimited, "rate limit exceeded", Some("Rate limit exceeded")),
            Self::SlowConsumer => (C::SlowConsumer, "slow consumer", None),
            Self::RecoveryInterrupted => (C::SlowConsumer, "recovery interrupted", None),
            Self::ShuttingDown => (C::GoingAway, "server shutting down", None),
            Self::PingTimeout => (C::GoingAway, "ping timeout", None),
            Self::IdleTimeout => (C::Normal, "Session timeout", Some("Session timeout")),
            Self::ProtocolError => (C::ProtocolError, "invalid frame", None),
            Self::InvalidUtf8 => (C::InvalidPayload, "invalid frame", None),
            Self::TooBig => (C::TooBig, "invalid frame", None),
        }
    }

    /// The close code.
    #[must_use]
    pub const fn code(self) -> CloseCode {
        self.row().0
    }

    /// The close frame's reason.
    #[must_use]
    pub const fn text(self) -> &'static str {
        self.row().1
    }

    /// The `error` frame's message the client gets before the close, if any.
    #[must_use]
    pub const fn error_message(self) -> Option<&'static str> {
        self.row().2
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

    /// Every code a reason closes with is in the list the metrics register, and reasons fit a close frame.
    #[test]
    fn every_reason_has_a_listed_code_and_a_short_text() {
        use CloseReason as R;
        let reasons = [
            R::AuthFailed,
            R::AuthTimeout,
            R::TokenExpired,
            R::TooManyConnections,
            R::RateLimited,
            R::SlowConsumer,
            R::RecoveryInterrupted,
            R::ShuttingDown,
            R::PingTimeout,
            R::IdleTimeout,
            R::ProtocolError,
            R::InvalidUtf8,
            R::TooBig,
        ];
        for reason in reasons {
            assert!(CloseCode::ALL.contains(&reason.code()), "{reason:?}");
            assert!(reason.text().len() <= 123, "{reason:?}");
        }
        assert_eq!((R::AuthTimeout.code().code(), R::AuthTimeout.text()), (4001, "Authentication timeout"));
        assert_eq!(R::TokenExpired.code().code(), 4003);
    }
}
