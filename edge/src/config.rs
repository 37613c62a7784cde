//! Edge settings. Built by the CLI from flags (or directly by tests) and validated before any port is bound.

use std::time::Duration;

use crier_proto::conversation_id::{self, DEFAULT_MAX_CONVERSATION_ID_BYTES};
use crier_proto::partition::DEFAULT_PARTITIONS;
use crier_store::control::{HEARTBEAT_INTERVAL, HEARTBEAT_TTL};

pub use crate::auth::{AuthMode, JwtConfig, KeySource};
pub use crate::tls::TlsFiles;

/// Default drain window of `crier edge`: long enough to spread reconnects, well inside Kubernetes' default
/// 30 s termination grace period.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(5);
/// Default time a connection has to authenticate (close 4001 after it), as in the replaced system.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest client message, in bytes (close 1009 beyond it).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Default per-connection outbound queue bound, in bytes (close 4008 beyond it).
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 1024 * 1024;
/// Default most partition entries one recovery (`subscribe` with `since`) may have to read: a little more
/// than the default retention (10,000 entries, `MAXLEN ~` keeps up to a node more), so every position within
/// the default retention is recovered.
pub const DEFAULT_MAX_RECOVERY_SCAN: usize = 10_240;

/// Who may subscribe to what (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclMode {
    /// Any authenticated user may subscribe to any conversation. `crier dev`, or set explicitly.
    Open,
    /// Grants in the access store, the token's conversations claim, or a subscription token.
    Checked,
}

/// Which `Origin` headers may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin (`crier dev`).
    Any,
    /// Requests without `Origin` (non-browser clients), same-origin requests, and these origins
    /// (`scheme://host[:port]`, compared exactly).
    AllowList(Vec<String>),
}

/// Per-edge, per-user and per-connection limits (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open WebSockets on this edge; more get HTTP 503 before the upgrade.
    pub max_connections: usize,
    /// Open WebSockets of one user on this edge; more are closed with 4029.
    pub max_connections_per_user: usize,
    /// Subscriptions of one connection; more are refused with an error frame.
    pub max_subscriptions: usize,
    /// Sustained client messages per second per connection; beyond the burst, close 4029.
    pub messages_per_second: u32,
    /// Client messages a connection may send at once.
    pub message_burst: u32,
    /// Time a client has to complete its HTTP upgrade request (slowloris bound).
    pub handshake_timeout: Duration,
    /// Server WebSocket ping period.
    pub ping_interval: Duration,
    /// A connection that sends nothing (not even a pong) this long after a ping is dead.
    pub pong_timeout: Duration,
    /// A session without a client message (WebSocket pongs do not count) for this long is closed with
    /// 1000 `Session timeout`; `None` (the default) never.
    pub idle_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Limits {
    /// The defaults, defined once: the CLI's flags take theirs from here.
    pub const DEFAULT: Self = Self {
        max_connections: 20_000,
        max_connections_per_user: 50,
        max_subscriptions: 128,
        messages_per_second: 20,
        message_burst: 50,
        handshake_timeout: Duration::from_secs(10),
        ping_interval: Duration::from_secs(25),
        pong_timeout: Duration::from_secs(10),
        idle_timeout: None,
    };

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let positive = [
            ("--max-connections", self.max_connections),
            ("--max-connections-per-user", self.max_connections_per_user),
            ("--max-subscriptions", self.max_subscriptions),
            ("--messages-per-second", self.messages_per_second as usize),
            ("--message-burst", self.message_burst as usize),
        ];
        for (flag, value) in positive {
            if value == 0 {
                problems.push(format!("{flag} must be positive"));
            }
        }
        let durations = [
            ("--handshake-timeout", self.handshake_timeout),
            ("--ping-interval", self.ping_interval),
            ("--pong-timeout", self.pong_timeout),
        ];
        for (flag, value) in durations {
            if value.is_zero() {
                problems.push(format!("{flag} must be positive"));
            }
        }
        problems
    }
}

/// What the edge needs besides its listener and its log.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Number of partitions; must equal the log's.
    pub partitions: u32,
    /// The WebSocket endpoint path.
    pub ws_path: String,
    /// How clients authenticate.
    pub auth: AuthMode,
    /// Who may subscribe to what.
    pub acl: AclMode,
    /// Which browser origins may connect.
    pub origins: OriginPolicy,
    /// Connection, subscription and message limits.
    pub limits: Limits,
    /// Close with 4001 when no valid auth arrives within this time.
    pub auth_timeout: Duration,
    /// Largest accepted client message, in bytes.
    pub max_frame_bytes: usize,
    /// Longest conversation id a client may subscribe to, in bytes; the brokers' limit.
    pub max_conversation_id_bytes: usize,
    /// Per-connection outbound queue bound, in bytes.
    pub max_queue_bytes: usize,
    /// Most partition entries (of every conversation) a recovery may have to read between its position
    /// and the stream's end; farther positions are answered `recovered:false`.
    pub max_recovery_scan: usize,
    /// Entries fetched per partition read.
    pub read_batch: usize,
    /// How long one partition read blocks before it is re-issued.
    pub read_block: Duration,
    /// On shutdown, sessions close (1001) at random moments within this window, so their clients do not
    /// all reconnect elsewhere at once. Zero closes them at once.
    pub drain_window: Duration,
    /// This edge's id in the control plane's reports (`Stats`, `Presence`); unique per deployment.
    pub edge_id: String,
    /// How often the edge reports to the control plane (reports live for `HEARTBEAT_TTL`).
    pub heartbeat_interval: Duration,
    /// Serve `https://` and `wss://` with this certificate and key; `None`: plain `http://` and `ws://`.
    pub tls: Option<TlsFiles>,
}

impl EdgeConfig {
    /// Settings of `crier dev` and of tests: dev auth, defaults elsewhere.
    #[must_use]
    pub fn dev() -> Self {
        Self {
            partitions: DEFAULT_PARTITIONS,
            ws_path: "/api/ws".to_owned(),
            auth: AuthMode::None,
            acl: AclMode::Open,
            origins: OriginPolicy::Any,
            limits: Limits::default(),
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_conversation_id_bytes: DEFAULT_MAX_CONVERSATION_ID_BYTES,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            max_recovery_scan: DEFAULT_MAX_RECOVERY_SCAN,
            read_batch: 256,
            read_block: Duration::from_secs(5),
            // Dev and tests stop at once; `crier edge` defaults to DEFAULT_DRAIN_WINDOW.
            drain_window: Duration::ZERO,
            edge_id: random_edge_id(),
            heartbeat_interval: HEARTBEAT_INTERVAL,
            tls: None,
        }
    }

    /// How long the gate remembers a revocation: as long as any token this edge accepts can live, plus
    /// the clock-skew leeway (a dev-auth edge accepts no tokens, but keeps the JWT default).
    #[must_use]
    pub fn revocation_memory(&self) -> Duration {
        match &self.auth {
            AuthMode::Jwt(jwt) => jwt.max_lifetime + jwt.leeway,
            AuthMode::None => crate::auth::jwt::DEFAULT_MAX_LIFETIME,
        }
    }

    /// A fresh random id, for edges not given one.
    #[must_use]
    pub fn random_id() -> String {
        random_edge_id()
    }

    /// Production defaults (checked access, same-origin only) with HS256 tokens signed by `secret`.
    #[must_use]
    pub fn with_jwt_secret(secret: impl Into<String>) -> Self {
        Self::with_jwt(JwtConfig::hs256(secret))
    }

    /// Production defaults (checked access, same-origin only) with tokens verified per `jwt`.
    #[must_use]
    pub fn with_jwt(jwt: JwtConfig) -> Self {
        Self {
            auth: AuthMode::Jwt(Box::new(jwt)),
            acl: AclMode::Checked,
            origins: OriginPolicy::AllowList(Vec::new()),
            ..Self::dev()
        }
    }

    /// Every problem with this config, one line each; empty when it is usable.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.partitions == 0 || self.partitions > 16_384 {
            problems.push(format!("--partitions must be 1..=16384, got {}", self.partitions));
        }
        if !self.ws_path.starts_with('/') {
            problems.push(format!("--ws-path must start with '/', got {:?}", self.ws_path));
        }
        if let AuthMode::Jwt(jwt) = &self.auth {
            problems.extend(jwt.problems());
        }
        problems.extend(self.limits.problems());
        if self.auth_timeout.is_zero() {
            problems.push("--auth-timeout must be positive".to_owned());
        }
        if self.max_frame_bytes < 256 {
            problems.push(format!("--max-frame-bytes must be at least 256, got {}", self.max_frame_bytes));
        }
        problems.extend(conversation_id::max_bytes_problem(self.max_conversation_id_bytes));
        if self.max_queue_bytes < 64 * 1024 {
            problems.push(format!("--max-queue-bytes must be at least 65536, got {}", self.max_queue_bytes));
        }
        if self.max_recovery_scan == 0 {
            problems.push("--max-recovery-scan must be positive".to_owned());
        }
        if self.drain_window > Duration::from_secs(600) {
            problems.push(format!(
                "--drain-seconds must be at most 600 (the chart's limit), got {}",
                self.drain_window.as_secs()
            ));
        }
        if self.edge_id.is_empty() || self.edge_id.len() > 128 || self.edge_id.contains(['{', '}']) {
            problems.push(format!("--edge-id must be 1..=128 bytes without braces, got {:?}", self.edge_id));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= HEARTBEAT_TTL {
            problems.push(format!("heartbeat interval must be positive and below {HEARTBEAT_TTL:?}"));
        }
        if self.read_batch == 0 {
            problems.push("read_batch must be positive".to_owned());
        }
        problems.extend(self.tls.iter().flat_map(TlsFiles::problems));
        problems
    }
}

fn random_edge_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is randomly seeded per instance: a random 64-bit id without a dependency.
    format!("edge-{:016x}", RandomState::new().hash_one(std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dev defaults are valid; a short secret, a zero timeout and a zero conversation-id limit are each
    /// reported.
    #[test]
    fn reports_each_problem() {
        assert!(EdgeConfig::dev().problems().is_empty());
        let bad = EdgeConfig {
            auth_timeout: Duration::ZERO,
            max_conversation_id_bytes: 0,
            ..EdgeConfig::with_jwt_secret("short")
        };
        assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
    }
}
