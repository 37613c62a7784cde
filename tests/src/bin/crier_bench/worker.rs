//! Worker processes: the bench re-runs its own binary as `crier-bench worker ...` so that one run can hold
//! more sockets than one process may open, and spread them over several source addresses.
//!
//! The protocol over the worker's pipes, one line each:
//! - worker → bench: `hello` once its runtime is up; `count <frames> <open> <failed> <closed>` every
//!   [`REPORT_EVERY`]; `ready <µs>` when every open attempt has finished (µs since `go`); `error <text>`
//!   for the first failed attempt; `conversations <n0> <n1> ...` (frames per conversation index) on the way
//!   out, after its connections are closed.
//! - bench → worker: `go` starts connecting; `stop` or end of input closes everything and exits. A bench
//!   that dies therefore never leaves workers behind: their stdin closes.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Stdout};

use crate::fleet::{Fleet, FleetSpec, Tally};

/// How often a worker reports its counters.
pub const REPORT_EVERY: Duration = Duration::from_millis(50);

/// The hidden `worker` subcommand: one [`FleetSpec`] on the command line.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    server: SocketAddr,
    #[arg(long)]
    path: String,
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    #[arg(long)]
    first: usize,
    #[arg(long)]
    connections: usize,
    #[arg(long)]
    conversations: usize,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    concurrency: usize,
}

impl WorkerArgs {
    fn spec(self) -> FleetSpec {
        FleetSpec {
            server: self.server,
            path: self.path,
            source_ips: self.source_ips,
            first: self.first,
            connections: self.connections,
            conversations: self.conversations,
            prefix: self.prefix,
            concurrency: self.concurrency,
        }
    }
}

/// The command-line arguments that make a worker open `spec`'s connections.
pub fn command_line(spec: &FleetSpec) -> Vec<String> {
    let ips: Vec<String> = spec.source_ips.iter().map(ToString::to_string).collect();
    [
        ("--server", spec.server.to_string()),
        ("--path", spec.path.clone()),
        ("--source-ips", ips.join(",")),
        ("--first", spec.first.to_string()),
        ("--connections", spec.connections.to_string()),
        ("--conversations", spec.conversations.to_string()),
        ("--prefix", spec.prefix.clone()),
        ("--concurrency", spec.concurrency.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

/// Runs a worker on a single-threaded runtime (the cheapest for many idle sockets) until told to stop.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args.spec()))
}

async fn serve(spec: FleetSpec) -> anyhow::Result<()> {
    let mut input = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    say(&mut out, "hello").await?;
    if input.next_line().await?.as_deref() != Some("go") {
        return Ok(());
    }
    let fleet = Fleet::counting(spec.conversations);
    let started = Instant::now();
    let mut report = tokio::time::interval(REPORT_EVERY);
    {
        let connect = fleet.connect(spec, None);
        tokio::pin!(connect);
        loop {
            tokio::select! {
                () = &mut connect => break,
                _ = report.tick() => say(&mut out, &count_line(&fleet.tally)).await?,
            }
        }
    }
    say(&mut out, &count_line(&fleet.tally)).await?;
    if let Some(error) = fleet.first_error() {
        say(&mut out, &format!("error {}", error.replace('\n', " "))).await?;
    }
    say(&mut out, &format!("ready {}", started.elapsed().as_micros())).await?;
    loop {
        tokio::select! {
            line = input.next_line() => match line?.as_deref() {
                None | Some("stop") => break,
                Some(_) => {}
            },
            _ = report.tick() => say(&mut out, &count_line(&fleet.tally)).await?,
        }
    }
    fleet.shutdown().await;
    let counts: Vec<String> = fleet.tally.conversation_counts().iter().map(u64::to_string).collect();
    say(&mut out, &format!("conversations {}", counts.join(" "))).await?;
    Ok(())
}

fn count_line(tally: &Tally) -> String {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    format!(
        "count {} {} {} {}",
        load(&tally.frames),
        load(&tally.open),
        load(&tally.failed),
        load(&tally.closed)
    )
}

async fn say(out: &mut Stdout, line: &str) -> std::io::Result<()> {
    out.write_all(format!("{line}\n").as_bytes()).await?;
    out.flush().await
}
