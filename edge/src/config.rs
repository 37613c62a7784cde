//! Edge settings. Built by the CLI from flags (or directly by tests) and validated before any port is bound.

use std::time::Duration;

use crier_broker::control::{HEARTBEAT_INTERVAL, HEARTBEAT_TTL};
use crier_proto::partition::DEFAULT_PARTITIONS;

/// Default drain window of `crier edge`: long enough to spread reconnects, well inside Kubernetes' default
/// 30 s termination grace period.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(5);

/// How sessions prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// `{"action":"auth","token":"<JWT>"}`, HS256-signed with this secret.
    Jwt {
        /// The HMAC secret (never logged).
        secret: String,
    },
    /// `{"action":"auth","userId":"<id>"}` is believed. `crier dev` and tests only.
    None,
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
    /// Close with 4001 when no valid auth arrives within this time.
    pub auth_timeout: Duration,
    /// Largest accepted client message, in bytes.
    pub max_frame_bytes: usize,
    /// Per-connection outbound queue bound, in bytes.
    pub max_queue_bytes: usize,
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
}

impl EdgeConfig {
    /// Settings of `crier dev` and of tests: dev auth, defaults elsewhere.
    #[must_use]
    pub fn dev() -> Self {
        Self {
            partitions: DEFAULT_PARTITIONS,
            ws_path: "/api/ws".to_owned(),
            auth: AuthMode::None,
            auth_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            max_queue_bytes: 1024 * 1024,
            read_batch: 256,
            read_block: Duration::from_secs(5),
            // Dev and tests stop at once; `crier edge` defaults to DEFAULT_DRAIN_WINDOW.
            drain_window: Duration::ZERO,
            edge_id: random_edge_id(),
            heartbeat_interval: HEARTBEAT_INTERVAL,
        }
    }

    /// A fresh random id, for edges not given one.
    #[must_use]
    pub fn random_id() -> String {
        random_edge_id()
    }

    /// Production defaults with HS256 tokens signed by `secret`.
    #[must_use]
    pub fn with_jwt_secret(secret: impl Into<String>) -> Self {
        Self { auth: AuthMode::Jwt { secret: secret.into() }, ..Self::dev() }
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
        if let AuthMode::Jwt { secret } = &self.auth
            && secret.len() < 16
        {
            problems.push("--jwt-secret must be at least 16 bytes (HS256 needs a strong key)".to_owned());
        }
        if self.auth_timeout.is_zero() {
            problems.push("--auth-timeout must be positive".to_owned());
        }
        if self.max_frame_bytes < 256 {
            problems.push(format!("--max-frame-bytes must be at least 256, got {}", self.max_frame_bytes));
        }
        if self.max_queue_bytes < 64 * 1024 {
            problems.push(format!("--max-queue-bytes must be at least 65536, got {}", self.max_queue_bytes));
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
            problems.push("--read-batch must be positive".to_owned());
        }
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

    /// Dev defaults are valid; a short secret and a zero timeout are both reported.
    #[test]
    fn reports_each_problem() {
        assert!(EdgeConfig::dev().problems().is_empty());
        let bad = EdgeConfig { auth_timeout: Duration::ZERO, ..EdgeConfig::with_jwt_secret("short") };
        assert_eq!(bad.problems().len(), 2, "{:?}", bad.problems());
    }
}
