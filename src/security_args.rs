//! The edge's security flags: JWT verification, access control, origins and limits (README "Security"), and
//! their translation into `crier_edge` config; also the conversation-id limit, which brokers share. Key
//! files are read here, so a missing one is a config problem (exit 64) before any port is bound.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use crier_edge::{AclMode, JwtConfig, KeySource, Limits, OriginPolicy};
use crier_proto::conversation_id::DEFAULT_MAX_CONVERSATION_ID_BYTES;

/// Every limit's default, from the edge that applies it.
const LIMITS: Limits = Limits::DEFAULT;
/// The JWT leeway's default, from the edge's verifier.
const DEFAULT_LEEWAY: Duration = JwtConfig::DEFAULT_LEEWAY;

#[derive(Debug, Args)]
pub struct JwtArgs {
    /// Accepted JWT algorithms, comma-separated, one family: HS256/384/512, RS*, PS*, ES256/384, EdDSA.
    #[arg(long, env = "CRIER_JWT_ALGORITHMS", value_delimiter = ',', default_value = "HS256")]
    pub jwt_algorithms: Vec<String>,
    /// HMAC secret for HS* tokens (at least 16 bytes). Never logged.
    #[arg(long, env = "CRIER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key file for RS*/PS*/ES*/EdDSA tokens.
    #[arg(long, env = "CRIER_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS URL for RS*/PS*/ES*/EdDSA tokens; keys chosen by `kid`. `https://` is verified against the
    /// public (Mozilla) roots, or only against --jwt-jwks-ca-file when given; `http://` only for in-cluster
    /// or sidecar endpoints.
    #[arg(long, env = "CRIER_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// PEM CA bundle an `https://` --jwt-jwks-url must chain to (an internal CA); replaces the public roots.
    #[arg(long, env = "CRIER_JWT_JWKS_CA_FILE")]
    pub jwt_jwks_ca_file: Option<PathBuf>,
    /// JWKS refetch period.
    #[arg(long, env = "CRIER_JWT_JWKS_REFRESH", default_value = "5m", value_parser = humantime::parse_duration)]
    pub jwt_jwks_refresh: Duration,
    /// Minimum time between two JWKS fetches (unknown `kid`s trigger early ones).
    #[arg(long, env = "CRIER_JWT_JWKS_MIN_REFRESH", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_jwks_min_refresh: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[arg(long, env = "CRIER_JWT_LEEWAY", default_value_t = DEFAULT_LEEWAY.into())]
    pub jwt_leeway: humantime::Duration,
    /// Required `iss` claim.
    #[arg(long, env = "CRIER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "CRIER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Claim holding the user id.
    #[arg(long, env = "CRIER_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
    /// Array claim listing the conversations the user may subscribe to.
    #[arg(long, env = "CRIER_JWT_CONVERSATIONS_CLAIM", default_value = "conversations")]
    pub jwt_conversations_claim: String,
    /// Longest token lifetime accepted (`exp` at most this far ahead); revocations are remembered as long.
    #[arg(long, env = "CRIER_JWT_MAX_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    pub jwt_max_lifetime: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AclArg {
    /// Grants in the access store, the conversations claim, or a subscription token.
    Checked,
    /// Any authenticated user may subscribe to anything. Must be chosen explicitly outside `crier dev`.
    Open,
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// Access control for subscribes.
    #[arg(long, env = "CRIER_ACL", value_enum, default_value_t = AclArg::Checked)]
    pub acl: AclArg,
    /// Origins allowed besides same-origin and Origin-less clients, comma-separated (`*`: any).
    #[arg(long, env = "CRIER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

/// The conversation-id rule shared by broker and edge (give both the same value).
#[derive(Debug, Args)]
pub struct ConversationIdArgs {
    /// Longest accepted conversation id, in bytes (1-1024; ids are printable ASCII). Brokers refuse longer
    /// ids with INVALID_ARGUMENT, edges with an `Invalid conversationId` error frame: set the same on both.
    #[arg(long, env = "CRIER_MAX_CONVERSATION_ID_BYTES", default_value_t = DEFAULT_MAX_CONVERSATION_ID_BYTES)]
    pub max_conversation_id_bytes: usize,
}

#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Open WebSockets per edge (more: HTTP 503).
    #[arg(long, env = "CRIER_MAX_CONNECTIONS", default_value_t = LIMITS.max_connections)]
    pub max_connections: usize,
    /// Open WebSockets per user per edge (more: close 4029).
    #[arg(long, env = "CRIER_MAX_CONNECTIONS_PER_USER", default_value_t = LIMITS.max_connections_per_user)]
    pub max_connections_per_user: usize,
    /// Subscriptions per connection (more: error frame).
    #[arg(long, env = "CRIER_MAX_SUBSCRIPTIONS", default_value_t = LIMITS.max_subscriptions)]
    pub max_subscriptions: usize,
    /// Sustained client messages per second per connection (beyond the burst: close 4029).
    #[arg(long, env = "CRIER_MESSAGES_PER_SECOND", default_value_t = LIMITS.messages_per_second)]
    pub messages_per_second: u32,
    /// Client messages a connection may send at once.
    #[arg(long, env = "CRIER_MESSAGE_BURST", default_value_t = LIMITS.message_burst)]
    pub message_burst: u32,
    /// Time to complete the HTTP upgrade request (slowloris bound).
    #[arg(long, env = "CRIER_HANDSHAKE_TIMEOUT", default_value_t = LIMITS.handshake_timeout.into())]
    pub handshake_timeout: humantime::Duration,
    /// Server WebSocket ping period.
    #[arg(long, env = "CRIER_PING_INTERVAL", default_value_t = LIMITS.ping_interval.into())]
    pub ping_interval: humantime::Duration,
    /// Close a connection silent this long after a ping.
    #[arg(long, env = "CRIER_PONG_TIMEOUT", default_value_t = LIMITS.pong_timeout.into())]
    pub pong_timeout: humantime::Duration,
    /// Close a session after this long without a client message (1000 "Session timeout"); 0 is off.
    #[arg(long, env = "CRIER_IDLE_TIMEOUT", default_value = "0")]
    pub idle_timeout: humantime::Duration,
}

impl JwtArgs {
    /// The JWT config, or the problems with the flags.
    pub fn config(&self, problems: &mut Vec<String>) -> Option<JwtConfig> {
        let mut algorithms = Vec::new();
        for name in &self.jwt_algorithms {
            match name.trim().parse() {
                Ok(alg) => algorithms.push(alg),
                Err(_) => problems.push(format!("--jwt-algorithms: unknown algorithm {name:?}")),
            }
        }
        let keys = self.key_source(problems)?;
        Some(JwtConfig {
            algorithms,
            keys,
            leeway: self.jwt_leeway.into(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            user_claim: self.jwt_user_claim.clone(),
            conversations_claim: self.jwt_conversations_claim.clone(),
            max_lifetime: self.jwt_max_lifetime,
        })
    }

    fn key_source(&self, problems: &mut Vec<String>) -> Option<KeySource> {
        if self.jwt_jwks_ca_file.is_some() && self.jwt_jwks_url.is_none() {
            problems.push("--jwt-jwks-ca-file needs --jwt-jwks-url".to_owned());
        }
        match (&self.jwt_secret, &self.jwt_public_key_file, &self.jwt_jwks_url) {
            (Some(secret), None, None) => Some(KeySource::Secret(secret.clone())),
            (None, Some(path), None) => match std::fs::read(path) {
                Ok(pem) => Some(KeySource::Pem(pem)),
                Err(err) => {
                    problems.push(format!("--jwt-public-key-file {}: {err}", path.display()));
                    None
                }
            },
            (None, None, Some(url)) => Some(KeySource::Jwks {
                url: url.clone(),
                ca_pem: self.jwks_ca_pem(problems),
                refresh: self.jwt_jwks_refresh,
                min_refresh: self.jwt_jwks_min_refresh,
            }),
            (None, None, None) => {
                problems.push(
                    "--auth-mode jwt needs one of --jwt-secret, --jwt-public-key-file, --jwt-jwks-url"
                        .to_owned(),
                );
                None
            }
            _ => {
                problems
                    .push("give only one of --jwt-secret, --jwt-public-key-file, --jwt-jwks-url".to_owned());
                None
            }
        }
    }

    /// The CA bundle's contents; `None` without the flag, or when unreadable (a problem noted).
    fn jwks_ca_pem(&self, problems: &mut Vec<String>) -> Option<Vec<u8>> {
        let path = self.jwt_jwks_ca_file.as_ref()?;
        std::fs::read(path)
            .map_err(|err| problems.push(format!("--jwt-jwks-ca-file {}: {err}", path.display())))
            .ok()
    }
}

impl AccessArgs {
    pub fn acl(&self) -> AclMode {
        match self.acl {
            AclArg::Checked => AclMode::Checked,
            AclArg::Open => AclMode::Open,
        }
    }

    pub fn origins(&self) -> OriginPolicy {
        OriginPolicy::AllowList(self.allowed_origins.iter().map(|o| o.trim().to_owned()).collect())
    }
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_connections_per_user: self.max_connections_per_user,
            max_subscriptions: self.max_subscriptions,
            messages_per_second: self.messages_per_second,
            message_burst: self.message_burst,
            handshake_timeout: self.handshake_timeout.into(),
            ping_interval: self.ping_interval.into(),
            pong_timeout: self.pong_timeout.into(),
            idle_timeout: Some(Duration::from(self.idle_timeout)).filter(|idle| !idle.is_zero()),
        }
    }
}
