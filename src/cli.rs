//! Command-line flags (each also from a `CRIER_*` environment variable) and their translation into the
//! crates' configs. All validation happens here, before any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use crier_broker::BrokerConfig;
use crier_broker::log::{DEFAULT_MAX_LEN, RedisTopology, Retention};
use crier_edge::{AuthMode, EdgeConfig};
use crier_proto::partition::DEFAULT_PARTITIONS;

use crate::security_args::{AccessArgs, JwtArgs, LimitArgs};

/// crier: real-time notifications from backend services to browsers.
#[derive(Debug, Parser)]
#[command(name = "crier", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `pretty` for people, `json` for log pipelines.
    #[arg(long, global = true, env = "CRIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
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

#[derive(Debug, Args)]
pub struct DevArgs {
    /// WebSocket listen address (endpoint path /api/ws).
    #[arg(long, env = "CRIER_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// gRPC listen address.
    #[arg(long, env = "CRIER_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    #[command(flatten)]
    pub log: LogArgs,
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
pub struct RedisArgs {
    /// Redis URL, `redis://HOST:PORT[/DB]`. Repeat (or comma-separate) for several standalone nodes, which
    /// then share the partitions by jump consistent hash; with --redis-cluster, the cluster's seed nodes.
    #[arg(long, env = "CRIER_REDIS_URL", required = true, value_delimiter = ',')]
    pub redis_url: Vec<String>,
    /// The URLs name seed nodes of a Redis Cluster.
    #[arg(long, env = "CRIER_REDIS_CLUSTER")]
    pub redis_cluster: bool,
    /// Bound on one Redis command and on connecting, e.g. `2s`.
    #[arg(long, env = "CRIER_REDIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// gRPC listen address.
    #[arg(long, env = "CRIER_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
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
    #[arg(long, env = "CRIER_AUTH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub auth_timeout: Duration,
    /// Largest accepted client message, in bytes (larger: close 1009).
    #[arg(long, env = "CRIER_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Per-connection outbound queue bound, in bytes (overflow: close 4008).
    #[arg(long, env = "CRIER_MAX_QUEUE_BYTES", default_value_t = 1024 * 1024)]
    pub max_queue_bytes: usize,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Broker address, e.g. http://127.0.0.1:50051.
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

impl RedisArgs {
    pub fn topology(&self) -> RedisTopology {
        if self.redis_cluster {
            RedisTopology::Cluster(self.redis_url.clone())
        } else {
            RedisTopology::Nodes(self.redis_url.clone())
        }
    }
}

impl DevArgs {
    /// Broker and edge configs of `crier dev`, or every problem with the flags.
    pub fn configs(&self) -> Result<(BrokerConfig, EdgeConfig), Vec<String>> {
        let broker = BrokerConfig { partitions: self.log.partitions, ..BrokerConfig::default() };
        let edge = EdgeConfig { partitions: self.log.partitions, ..EdgeConfig::dev() };
        let mut problems = self.log.problems();
        problems.extend(broker.problems());
        problems.extend(edge.problems());
        if self.listen == self.grpc_listen {
            problems.push(format!("--listen and --grpc-listen are both {}", self.listen));
        }
        dedup_or(problems, (broker, edge))
    }
}

impl BrokerArgs {
    /// The broker config, or every problem with the flags.
    pub fn config(&self) -> Result<BrokerConfig, Vec<String>> {
        let config = BrokerConfig {
            partitions: self.log.partitions,
            max_payload_bytes: self.max_payload_bytes,
            dedupe_window: self.dedupe_window,
            api_token: self.api_token.clone(),
        };
        let mut problems = self.log.problems();
        problems.extend(config.problems());
        problems.extend(redis_problems(&self.redis));
        dedup_or(problems, config)
    }
}

impl EdgeArgs {
    /// The edge config, or every problem with the flags.
    pub fn config(&self) -> Result<EdgeConfig, Vec<String>> {
        let mut problems = self.log.problems();
        problems.extend(redis_problems(&self.redis));
        let auth = match self.auth_mode {
            AuthModeArg::Jwt => self.jwt.config(&mut problems).map_or(AuthMode::None, AuthMode::Jwt),
            AuthModeArg::None => AuthMode::None,
        };
        let config = EdgeConfig {
            partitions: self.log.partitions,
            ws_path: self.ws_path.clone(),
            auth,
            acl: self.access.acl(),
            origins: self.access.origins(),
            limits: self.limits.limits(),
            auth_timeout: self.auth_timeout,
            max_frame_bytes: self.max_frame_bytes,
            max_queue_bytes: self.max_queue_bytes,
            ..EdgeConfig::dev()
        };
        problems.extend(config.problems());
        dedup_or(problems, config)
    }
}

fn redis_problems(redis: &RedisArgs) -> Vec<String> {
    let mut problems = Vec::new();
    for url in &redis.redis_url {
        if let Err(err) = redis::Client::open(url.as_str()) {
            problems.push(format!("--redis-url {url:?} is not a Redis URL: {err}"));
        }
    }
    if redis.redis_url.iter().collect::<std::collections::HashSet<_>>().len() != redis.redis_url.len() {
        problems.push("--redis-url lists the same node twice".to_owned());
    }
    if redis.redis_timeout.is_zero() {
        problems.push("--redis-timeout must be positive".to_owned());
    }
    problems
}

fn dedup_or<T>(mut problems: Vec<String>, value: T) -> Result<T, Vec<String>> {
    problems.dedup();
    if problems.is_empty() { Ok(value) } else { Err(problems) }
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

    /// The dev defaults form a valid configuration.
    #[test]
    fn dev_defaults_are_valid() {
        let Command::Dev(args) = parse(&["dev"]).command else { panic!("not dev") };
        let (broker, edge) = args.configs().unwrap();
        assert_eq!((broker.partitions, edge.partitions), (64, 64));
        assert_eq!(edge.auth, AuthMode::None);
        assert_eq!(edge.acl, AclMode::Open);
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
