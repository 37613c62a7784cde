//! [`AdminClient`]: plain HTTP/1.1 GETs against an admin listener (`/metrics`, `/healthz`, `/readyz`), written
//! against the raw socket so the tests share no HTTP code with the server. Plus [`Scrape`], a parsed
//! Prometheus text exposition.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{Context, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::deadline::within;

/// Where an admin listener is.
#[derive(Debug, Clone, Copy)]
pub struct AdminClient {
    addr: SocketAddr,
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl AdminClient {
    /// The admin listener's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client of the admin listener at `addr`.
    #[must_use]
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// `GET path`, one request per connection.
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpReply> {
        let what = format!("GET http://{}{path}", self.addr);
        within(&what, self.get_unbounded(path)).await?.context(what)
    }

    async fn get_unbounded(&self, path: &str) -> anyhow::Result<HttpReply> {
        let mut stream = TcpStream::connect(self.addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw)?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no header end in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no status in {head:?}"))?;
        Ok(HttpReply { status, body: body.to_owned() })
    }

    /// `GET /metrics`, parsed; fails unless the answer is 200.
    pub async fn scrape(&self) -> anyhow::Result<Scrape> {
        let reply = self.get("/metrics").await?;
        anyhow::ensure!(reply.status == 200, "/metrics answered {}: {}", reply.status, reply.body);
        Ok(Scrape::parse(&reply.body))
    }
}

/// Samples of a Prometheus text exposition: `name{labels}` exactly as written → value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: HashMap<String, f64>,
    /// The exposition, for error messages.
    pub text: String,
}

impl Scrape {
    /// Parses `text`; comment lines and malformed lines are skipped.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
            .collect();
        Self { samples, text: text.to_owned() }
    }

    /// The value of the sample written exactly as `series` (e.g. `crier_broker_publishes_total{result="ok"}`).
    pub fn value(&self, series: &str) -> anyhow::Result<f64> {
        self.samples.get(series).copied().ok_or_else(|| anyhow!("no sample {series} in:\n{}", self.text))
    }

    /// Whether any sample's name starts with `prefix`.
    #[must_use]
    pub fn has(&self, prefix: &str) -> bool {
        self.samples.keys().any(|k| k.starts_with(prefix))
    }
}
