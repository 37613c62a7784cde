//! Command-line flags (each also from a `CRIER_*` environment variable) and their translation into the
//! crates' configs. All validation happens here, before any port is bound.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use crier_broker::{BrokerConfig, BrokerTls};
use crier_edge::config::{
    DEFAULT_AUTH_TIMEOUT, DEFAULT_DRAIN_WINDOW, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_RECOVERY_SCAN,
};
use crier_edge::{AuthMode, EdgeConfig};
use crier_proto::partition::DEFAULT_PARTITIONS;
use crier_store::log::{DEFAULT_MAX_LEN, Retention};
use crier_store::telemetry::OtlpConfig;

pub use crate::redis_args::RedisArgs;
use crate::security_args::{AccessArgs, ConversationIdArgs, JwtArgs, LimitArgs};
use crate::tls_args::{ClientCaArgs, ClientTlsArgs, TlsArgs};

/// crier: real-time notifications from backend services to browsers.
#[derive(Debug, Parser)]
#[command(name = "crier", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `pretty` for people, `json` for log pipelines.
    #[arg(long, global = true, env = "CRIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector for traces, e.g. `http://otel-collector:4317`. Unset: tracing is off. The other
    /// standard `OTEL_*` variables (sampler, headers, timeout, resource attributes) apply as usual.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans (default `crier-<command>`).
    #[arg(long, global = true, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// Threads of the async runtime. Unset: one per CPU this process may use (cgroup quotas included).
    /// Set it below the CPU count to leave cores to Redis or a sidecar on the same machine.
    #[arg(long, global = true, env = "CRIER_WORKER_THREADS")]
    pub worker_threads: Option<NonZeroUsize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Broker + edge in one process, in-memory log, dev auth (`{"action":"auth","userId":...}`). No Redis.
    Dev(DevArgs),
    /// The gRPC publish service, appending to Redis.
    Broker(BrokerArgs),
    /// The WebSocket edge, reading from Redis.
    Edge(Box<EdgeArgs>),
    /// Publish one notification through a broker; prints its position.
    Publish(PublishArgs),
    /// Mint an HS256 token for development and tests.
    Token(TokenArgs),
}

impl Command {
    /// The server role, for `service.name`; `None` for the client commands, which export no traces.
    pub fn role(&self) -> Option<&'static str> {
        match self {
            Self::Dev(_) => Some("dev"),
            Self::Broker(_) => Some("broker"),
            Self::Edge(_) => Some("edge"),
            Self::Publish(_) | Self::Token(_) => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// WebSocket listen address (endpoint path /api/ws).
    #[arg(long, env = "CRIER_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// gRPC listen address.
    #[arg(long, env = "CRIER_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub ids: ConversationIdArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub client_ca: ClientCaArgs,
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin HTTP listen address (Prometheus `/metrics`, `/healthz`, `/readyz`), e.g. `0.0.0.0:9090`.
    /// Unset: no admin listener. Keep it off the public network.
    #[arg(long, env = "CRIER_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
}

/// Settings of the partitioned log shared by broker, edge and dev.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Number of partitions. Fixed per deployment: brokers and edges must agree.
    #[arg(long, env = "CRIER_PARTITIONS", default_value_t = DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Entries kept per partition (approximate, `XADD MAXLEN ~`).
    #[arg(long, env = "CRIER_RETENTION_MAX_LEN", default_value_t = DEFAULT_MAX_LEN)]
    pub retention_max_len: usize,
    /// Entries older than this are trimmed (approximate, `XTRIM MINID ~`), e.g. `10m`.
    #[arg(long, env = "CRIER_RETENTION_MAX_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention_max_age: Duration,
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// gRPC listen address.
    #[arg(long, env = "CRIER_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub ids: ConversationIdArgs,
    /// Largest accepted payload, in bytes.
    #[arg(long, env = "CRIER_MAX_PAYLOAD_BYTES", default_value_t = crier_broker::config::DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,
    /// How long an idempotency key is remembered, e.g. `2m`.
    #[arg(long, env = "CRIER_DEDUPE_WINDOW", default_value = "2m", value_parser = humantime::parse_duration)]
    pub dedupe_window: Duration,
    /// Shared bearer secret PublishService/AccessService callers must send (`authorization: Bearer`).
    /// Unset: any caller may publish (keep the port private then). Never logged.
    #[arg(long, env = "CRIER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Bearer secret AdminService callers must send instead of the API token (least privilege).
    /// Unset: AdminService takes the API token. Never logged.
    #[arg(long, env = "CRIER_ADMIN_TOKEN", hide_env_values = true, conflicts_with = "admin_token_file")]
    pub admin_token: Option<String>,
    /// File holding the admin token (one line; a trailing newline is ignored), e.g. a mounted Secret.
    #[arg(long, env = "CRIER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub client_ca: ClientCaArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthModeArg {
    /// HS256 JWT in the `auth` frame, signed with --jwt-secret.
    Jwt,
    /// `{"action":"auth","userId":...}` is believed. Never in production.
    None,
}

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// WebSocket listen address.
    #[arg(long, env = "CRIER_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// WebSocket endpoint path.
    #[arg(long, env = "CRIER_WS_PATH", default_value = "/api/ws")]
    pub ws_path: String,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// How clients authenticate.
    #[arg(long, env = "CRIER_AUTH_MODE", value_enum, default_value_t = AuthModeArg::Jwt)]
    pub auth_mode: AuthModeArg,
    #[command(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Close connections that have not authenticated within this time (code 4001).
    #[arg(long, env = "CRIER_AUTH_TIMEOUT", default_value_t = DEFAULT_AUTH_TIMEOUT.into())]
    pub auth_timeout: humantime::Duration,
    #[command(flatten)]
    pub ids: ConversationIdArgs,
    /// Largest accepted client message, in bytes (larger: close 1009).
    #[arg(long, env = "CRIER_MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Per-connection outbound queue bound, in bytes (overflow: close 4008).
    #[arg(long, env = "CRIER_MAX_QUEUE_BYTES", default_value_t = DEFAULT_MAX_QUEUE_BYTES)]
    pub max_queue_bytes: usize,
    /// Most stream entries (of every conversation in the partition) a `subscribe` with `since` may have to
    /// read; a position farther behind is answered `recovered:false`.
    #[arg(long, env = "CRIER_MAX_RECOVERY_SCAN", default_value_t = DEFAULT_MAX_RECOVERY_SCAN)]
    pub max_recovery_scan: usize,
    /// This edge's id in `AdminService.Stats` (default: random). The chart sets the pod name.
    #[arg(long, env = "CRIER_EDGE_ID")]
    pub edge_id: Option<String>,
    /// On SIGTERM, close sessions (1001) spread over this window, jittered; then exit. A plain number is
    /// seconds (the flag's former unit).
    #[arg(long, env = "CRIER_DRAIN_WINDOW", visible_alias = "drain-seconds", default_value_t = DEFAULT_DRAIN_WINDOW.into(), value_parser = parse_seconds_or_duration)]
    pub drain_window: humantime::Duration,
    /// The drain window's former variable, refused with a pointer to its new name rather than ignored.
    #[arg(long = "retired-drain-seconds", env = "CRIER_DRAIN_SECONDS", hide = true)]
    pub retired_drain_seconds: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Broker address, e.g. http://127.0.0.1:50051, or https://broker.example:50051 for TLS.
    #[arg(long, env = "CRIER_BROKER", default_value = "http://127.0.0.1:50051")]
    pub broker: String,
    /// The conversation the notification is about.
    #[arg(long)]
    pub conversation: String,
    /// Idempotency key (retries with the same key are appended once).
    #[arg(long, default_value = "")]
    pub idempotency_key: String,
    /// The broker's API token, if it requires one.
    #[arg(long, env = "CRIER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// The notification: a JSON object, delivered to subscribers verbatim.
    pub payload: String,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// HS256 secret (the edge's --jwt-secret).
    #[arg(long, env = "CRIER_JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// User id (`sub` claim).
    #[arg(long)]
    pub user: String,
    /// Lifetime, e.g. `1h`, `15m`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Mint a subscription token for this conversation (`"typ":"crier-subscription"`) instead of a
    /// connection token (`"typ":"crier-connection"`).
    #[arg(long)]
    pub conversation: Option<String>,
}

impl LogArgs {
    pub fn retention(&self) -> Retention {
        Retention { max_len: self.retention_max_len, max_age: self.retention_max_age }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.retention_max_len == 0 {
            problems.push("--retention-max-len must be positive".to_owned());
        }
        if self.retention_max_age < Duration::from_secs(1) {
            problems.push("--retention-max-age must be at least 1s".to_owned());
        }
        problems
    }
}

impl DevArgs {
    /// Broker and edge configs of `crier dev` and the broker's TLS, or every problem with the flags.
    pub fn configs(&self) -> Result<(BrokerConfig, EdgeConfig, Option<BrokerTls>), Vec<String>> {
        let max_conversation_id_bytes = self.ids.max_conversation_id_bytes;
        let broker = BrokerConfig {
            partitions: self.log.partitions,
            max_conversation_id_bytes,
            ..BrokerConfig::default()
        };
        let mut problems = self.log.problems();
        let tls = self.tls.edge_files(&mut problems);
        let broker_tls = self.tls.broker(&self.client_ca, &mut problems);
        let edge = EdgeConfig {
            partitions: self.log.partitions,
            max_conversation_id_bytes,
            tls,
            ..EdgeConfig::dev()
        };
        problems.extend(broker.problems());
        problems.extend(edge.problems());
        if self.listen == self.grpc_listen {
            problems.push(format!("--listen and --grpc-listen are both {}", self.listen));
        }
        problems.extend(self.admin.problems(&[self.listen, self.grpc_listen]));
        dedup_or(problems, (broker, edge, broker_tls))
    }
}

impl BrokerArgs {
    /// The broker config and its TLS, or every problem with the flags.
    pub fn config(&self) -> Result<(BrokerConfig, Option<BrokerTls>), Vec<String>> {
        let mut problems = self.log.problems();
        let config = BrokerConfig {
            partitions: self.log.partitions,
            max_payload_bytes: self.max_payload_bytes,
            max_conversation_id_bytes: self.ids.max_conversation_id_bytes,
            dedupe_window: self.dedupe_window,
            api_token: self.api_token.clone(),
            admin_token: self.admin_token(&mut problems),
        };
        problems.extend(config.problems());
        problems.extend(self.redis.problems());
        problems.extend(self.admin.problems(&[self.grpc_listen]));
        let tls = self.tls.broker(&self.client_ca, &mut problems);
        dedup_or(problems, (config, tls))
    }

    /// `--admin-token`, or the contents of `--admin-token-file`.
    fn admin_token(&self, problems: &mut Vec<String>) -> Option<String> {
        let Some(path) = &self.admin_token_file else { return self.admin_token.clone() };
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
            Err(err) => {
                problems.push(format!("--admin-token-file {}: {err}", path.display()));
                None
            }
        }
    }
}

impl EdgeArgs {
    /// The edge config, or every problem with the flags.
    pub fn config(&self) -> Result<EdgeConfig, Vec<String>> {
        let mut problems = self.log.problems();
        problems.extend(self.redis.problems());
        problems.extend(self.admin.problems(&[self.listen]));
        if self.retired_drain_seconds.is_some() {
            problems.push("CRIER_DRAIN_SECONDS is now CRIER_DRAIN_WINDOW (a duration, e.g. 5s)".to_owned());
        }
        let auth = match self.auth_mode {
            AuthModeArg::Jwt => {
                self.jwt.config(&mut problems).map_or(AuthMode::None, |jwt| AuthMode::Jwt(Box::new(jwt)))
            }
            AuthModeArg::None => AuthMode::None,
        };
        let config = EdgeConfig {
            partitions: self.log.partitions,
            ws_path: self.ws_path.clone(),
            auth,
            acl: self.access.acl(),
            origins: self.access.origins(),
            limits: self.limits.limits(),
            auth_timeout: self.auth_timeout.into(),
            max_frame_bytes: self.max_frame_bytes,
            max_conversation_id_bytes: self.ids.max_conversation_id_bytes,
            max_queue_bytes: self.max_queue_bytes,
            max_recovery_scan: self.max_recovery_scan,
            drain_window: self.drain_window.into(),
            edge_id: self.edge_id.clone().unwrap_or_else(EdgeConfig::random_id),
            tls: self.tls.edge_files(&mut problems),
            ..EdgeConfig::dev()
        };
        problems.extend(config.problems());
        dedup_or(problems, config)
    }
}

impl AdminArgs {
    fn problems(&self, others: &[SocketAddr]) -> Vec<String> {
        match self.admin_listen {
            Some(admin) if others.contains(&admin) => {
                vec![format!("--admin-listen {admin} is also a public listen address")]
            }
            _ => Vec::new(),
        }
    }
}

/// The global `OTEL_*` settings, validated: `Ok(None)` when tracing is off.
pub fn otlp_config(cli: &Cli, role: &str) -> Result<Option<OtlpConfig>, Vec<String>> {
    let Some(endpoint) = cli.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else { return Ok(None) };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(vec![format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT (--otlp-endpoint) must be an http:// or https:// URL, got {endpoint:?}"
        )]);
    }
    let service_name = cli.otel_service_name.clone().unwrap_or_else(|| format!("crier-{role}"));
    Ok(Some(OtlpConfig { endpoint: endpoint.to_owned(), service_name, timeout: Duration::from_secs(10) }))
}

/// `value`, or the problems, each once (dev reports a shared setting's problem for broker and edge alike).
fn dedup_or<T>(mut problems: Vec<String>, value: T) -> Result<T, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    if problems.is_empty() { Ok(value) } else { Err(problems) }
}

/// A duration (`5s`, `2m`), or a plain number of seconds as `--drain-seconds` took it.
fn parse_seconds_or_duration(text: &str) -> Result<humantime::Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds).into()),
        Err(_) => text.parse::<humantime::Duration>().map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crier_edge::AclMode;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("crier").chain(args.iter().copied())).unwrap()
    }

    /// A JWT edge without a secret and with a bad URL reports both problems at once.
    #[test]
    fn edge_reports_every_problem() {
        let cli = parse(&["edge", "--redis-url", "nonsense://x", "--partitions", "0"]);
        let Command::Edge(args) = cli.command else { panic!("not edge") };
        let problems = args.config().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("--jwt-secret")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("--redis-url")));
        assert!(problems.iter().any(|p| p.contains("--partitions")));
    }

    /// `--max-recovery-scan` defaults to the edge config's constant, reaches the config, and 0 is refused.
    #[test]
    fn max_recovery_scan_is_configured_and_checked() {
        let edge = |extra: &[&str]| {
            let args = [
                &["edge", "--redis-url", "redis://127.0.0.1", "--jwt-secret", "0123456789abcdef"][..],
                extra,
            ];
            let Command::Edge(args) = parse(&args.concat()).command else { panic!("not edge") };
            args.config()
        };
        assert_eq!(edge(&[]).unwrap().max_recovery_scan, DEFAULT_MAX_RECOVERY_SCAN);
        assert_eq!(edge(&["--max-recovery-scan", "512"]).unwrap().max_recovery_scan, 512);
        let problems = edge(&["--max-recovery-scan", "0"]).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("--max-recovery-scan")), "{problems:?}");
    }

    /// The Redis password goes into every URL percent-encoded, and never alongside URL credentials.
    #[test]
    fn redis_password_is_encoded_into_each_url() {
        let cli =
            parse(&["broker", "--redis-url", "redis://a:1,redis://b:2/3", "--redis-password", "p@ss word"]);
        let Command::Broker(args) = cli.command else { panic!("not broker") };
        assert_eq!(
            args.redis.urls_with_password(),
            ["redis://:p%40ss%20word@a:1", "redis://:p%40ss%20word@b:2/3"]
        );
        let cli = parse(&["broker", "--redis-url", "redis://:x@a:1", "--redis-password", "y"]);
        let Command::Broker(args) = cli.command else { panic!("not broker") };
        assert!(args.config().unwrap_err().iter().any(|p| p.contains("carries credentials")));
    }

    /// The dev defaults form a valid configuration.
    #[test]
    fn dev_defaults_are_valid() {
        let Command::Dev(args) = parse(&["dev"]).command else { panic!("not dev") };
        let (broker, edge, tls) = args.configs().unwrap();
        assert!(tls.is_none() && edge.tls.is_none());
        assert_eq!((broker.partitions, edge.partitions), (64, 64));
        assert_eq!(edge.auth, AuthMode::None);
        assert_eq!(edge.acl, AclMode::Open);
    }

    /// `--max-conversation-id-bytes` reaches broker and edge configs, and out-of-range values are one
    /// problem each (once in dev, which configures both).
    #[test]
    fn conversation_id_limit_is_configured_and_checked() {
        let redis = ["--redis-url", "redis://127.0.0.1"];
        let Command::Broker(broker) =
            parse(&[&["broker"][..], &redis, &["--max-conversation-id-bytes", "64"]].concat()).command
        else {
            panic!("not broker")
        };
        assert_eq!(broker.config().unwrap().0.max_conversation_id_bytes, 64);
        let args = [&["edge"][..], &redis, &["--jwt-secret", "0123456789abcdef"]].concat();
        let Command::Edge(edge) = parse(&args).command else { panic!("not edge") };
        assert_eq!(edge.config().unwrap().max_conversation_id_bytes, 256);
        let Command::Edge(edge) =
            parse(&[&args[..], &["--max-conversation-id-bytes", "1025"]].concat()).command
        else {
            panic!("not edge")
        };
        assert_eq!(edge.config().unwrap_err(), ["--max-conversation-id-bytes must be 1..=1024, got 1025"]);
        let Command::Dev(dev) = parse(&["dev", "--max-conversation-id-bytes", "0"]).command else { panic!() };
        assert_eq!(dev.configs().unwrap_err(), ["--max-conversation-id-bytes must be 1..=1024, got 0"]);
    }

    /// `--jwt-jwks-ca-file` needs an https `--jwt-jwks-url`; an unreadable or certificate-less file, or a URL
    /// of another scheme, is a problem of its own.
    #[test]
    fn jwks_flags_are_checked() {
        let edge = |extra: &[&str]| {
            let base = ["edge", "--redis-url", "redis://127.0.0.1", "--jwt-algorithms", "RS256"];
            let Command::Edge(edge) = parse(&[&base[..], extra].concat()).command else { panic!("not edge") };
            edge.config()
        };
        let https = ["--jwt-jwks-url", "https://idp.example.com/jwks.json"];
        let config = edge(&https).unwrap();
        let AuthMode::Jwt(jwt) = config.auth else { panic!("not JWT") };
        assert!(matches!(jwt.keys, crier_edge::KeySource::Jwks { ca_pem: None, .. }));
        assert_eq!(
            edge(&["--jwt-jwks-url", "file:///etc/jwks.json"]).unwrap_err(),
            [r#"--jwt-jwks-url must be an http:// or https:// URL, got "file:///etc/jwks.json""#]
        );
        let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let problems = edge(&[&https[..], &["--jwt-jwks-ca-file", not_pem]].concat()).unwrap_err();
        assert_eq!(problems, ["--jwt-jwks-ca-file holds no PEM certificate"]);
        let plain = ["--jwt-jwks-url", "http://jwks.auth.svc/keys", "--jwt-jwks-ca-file", "/no/such/file"];
        assert!(edge(&plain).unwrap_err()[0].starts_with("--jwt-jwks-ca-file /no/such/file: "));
        let orphan = edge(&["--jwt-jwks-ca-file", "/no/such/file"]).unwrap_err();
        assert!(orphan.iter().any(|p| p == "--jwt-jwks-ca-file needs --jwt-jwks-url"), "{orphan:?}");
    }

    /// Production edges default to checked access and same-origin only; `open` must be explicit.
    #[test]
    fn edge_defaults_are_closed() {
        let args = ["edge", "--redis-url", "redis://127.0.0.1", "--jwt-secret", "0123456789abcdef"];
        let Command::Edge(edge) = parse(&args).command else { panic!("not edge") };
        let config = edge.config().unwrap();
        assert_eq!(config.acl, AclMode::Checked);
        assert_eq!(config.origins, crier_edge::OriginPolicy::AllowList(Vec::new()));
        let Command::Edge(open) = parse(&[&args[..], &["--acl", "open"]].concat()).command else { panic!() };
        assert_eq!(open.config().unwrap().acl, AclMode::Open);
    }
}
