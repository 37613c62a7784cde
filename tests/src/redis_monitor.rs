//! [`RedisMonitor`]: Redis' own record of the commands it served (`MONITOR`), so tests check what an edge
//! asked Redis for without taking the edge's word for it.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::deadline::within;

/// A `MONITOR` connection to one Redis server.
pub struct RedisMonitor {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    /// Keeps the connection's write half open.
    _write: tokio::net::tcp::OwnedWriteHalf,
}

/// One command Redis served: its name (upper case) and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoredCommand {
    /// E.g. `XREAD`.
    pub name: String,
    /// Arguments after the name, unquoted.
    pub args: Vec<String>,
}

impl RedisMonitor {
    /// Starts monitoring the Redis on `port`; commands served after this returns are seen.
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let stream = within("connecting MONITOR", TcpStream::connect(("127.0.0.1", port))).await??;
        let (read, mut write) = stream.into_split();
        write.write_all(b"MONITOR\r\n").await?;
        let mut lines = BufReader::new(read).lines();
        let ok = within("MONITOR's +OK", lines.next_line()).await??;
        if ok.as_deref() != Some("+OK") {
            bail!("MONITOR answered {ok:?}");
        }
        Ok(Self { lines, _write: write })
    }

    /// The next command Redis served, waiting at most `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> anyhow::Result<Option<MonitoredCommand>> {
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Err(_) => Ok(None),
            Ok(line) => {
                let line = line.context("reading MONITOR")?.context("MONITOR connection closed")?;
                Ok(Some(parse(&line)))
            }
        }
    }

    /// Every command served until `until` is seen (inclusive), at most `limit` in all.
    pub async fn until(
        &mut self,
        limit: Duration,
        until: impl Fn(&MonitoredCommand) -> bool,
    ) -> anyhow::Result<Vec<MonitoredCommand>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(command) = self.next_within(left).await? else {
                bail!("timed out after {limit:?}; Redis served {seen:?}");
            };
            let done = until(&command);
            seen.push(command);
            if done {
                return Ok(seen);
            }
        }
    }
}

/// `+1700000000.123456 [0 127.0.0.1:5000] "XREAD" "COUNT" "1"` → `XREAD ["COUNT", "1"]`.
fn parse(line: &str) -> MonitoredCommand {
    let mut words = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('"') {
        let mut word = String::new();
        let mut chars = rest[start + 1..].char_indices();
        let mut end = rest.len() - start - 1;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => word.extend(chars.next().map(|(_, c)| c)),
                '"' => {
                    end = i;
                    break;
                }
                c => word.push(c),
            }
        }
        words.push(word);
        rest = rest.get(start + 1 + end + 1..).unwrap_or("");
    }
    let name = if words.is_empty() { String::new() } else { words.remove(0).to_uppercase() };
    MonitoredCommand { name, args: words }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MONITOR lines split into name and arguments, with quotes and escapes removed.
    #[test]
    fn parses_monitor_lines() {
        let c = parse(r#"+1700000000.123456 [0 127.0.0.1:5000] "xread" "STREAMS" "crier:{p2}:log" "a\"b""#);
        assert_eq!(c.name, "XREAD");
        assert_eq!(c.args, ["STREAMS", "crier:{p2}:log", "a\"b"]);
    }
}
