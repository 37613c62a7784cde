//! The Redis flags shared by broker and edge: URLs (several standalone nodes or a cluster's seeds), the
//! password kept out of them, the command timeout; and their checks.

use std::time::Duration;

use clap::Args;
use crier_store::log::RedisTopology;

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
    /// Redis password, kept out of the URL (and out of logs). Only with a URL without credentials.
    #[arg(long, env = "CRIER_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
}

impl RedisArgs {
    /// The deployment's Redis: standalone nodes or a cluster's seeds, with the password put in.
    pub fn topology(&self) -> RedisTopology {
        let urls = self.urls_with_password();
        if self.redis_cluster { RedisTopology::Cluster(urls) } else { RedisTopology::Nodes(urls) }
    }
}

impl RedisArgs {
    /// The URLs to connect with: each `--redis-url` with `--redis-password` put in, percent-encoded.
    pub fn urls_with_password(&self) -> Vec<String> {
        self.redis_url.iter().map(|url| self.with_password(url)).collect()
    }

    fn with_password(&self, url: &str) -> String {
        let Some(password) = &self.redis_password else { return url.to_owned() };
        let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
        let encoded: String = password
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        format!("{scheme}://:{encoded}@{rest}")
    }

    /// Each problem with the Redis flags, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for url in &self.redis_url {
            if let Err(err) = redis::Client::open(url.as_str()) {
                problems.push(format!("--redis-url {url:?} is not a Redis URL: {err}"));
            }
        }
        if self.redis_url.iter().collect::<std::collections::HashSet<_>>().len() != self.redis_url.len() {
            problems.push("--redis-url lists the same node twice".to_owned());
        }
        let has_credentials = |url: &String| {
            url.split_once("://").is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
        };
        if self.redis_password.is_some() && self.redis_url.iter().any(has_credentials) {
            problems.push("--redis-url carries credentials; with --redis-password it must not".to_owned());
        }
        if self.redis_timeout.is_zero() {
            problems.push("--redis-timeout must be positive".to_owned());
        }
        problems
    }
}
