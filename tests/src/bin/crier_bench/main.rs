//! `crier-bench`: measures a crier deployment against the targets of DESIGN.md §8.
//!
//! ```text
//!  crier-bench ──spawns──▶ crier dev | redis-server + crier broker + crier edge   (or --ws/--grpc/--pid)
//!      │  gRPC Publish/PublishBatch ──▶ broker ──▶ log ──▶ edge ──WebSocket──▶ RawWs receivers
//!      └──re-runs itself as `worker` processes (source addresses 127.0.0.2–9) holding more receivers
//! ```
//!
//! Each scenario is bounded in time, kills what it spawned (also on Ctrl-C, error and panic), shows
//! progress on stderr, and prints a table (and `--json FILE`) at the end.
//!
//! - `idle`, `fanout`, `latency` (+ `redis`), `compare`, `connect`, `soak`: the scenarios; `rss_series` and
//!   `soak_verdict`: the soak's memory samples and its checks.
//! - `deployment`: the servers under test, spawned or given; `replaced`: the design crier replaces.
//! - `fleet`: many subscribed connections of one process; `raw_ws`: one connection; `ws_frame`: framing.
//! - `worker`, `worker_pool`: the worker processes and the bench's side of them.
//! - `publisher`: gRPC publishing (flood, fixed rate); `payload`: the stamped 204-byte payload.
//! - `recorder`: latency histogram; `process_usage`: RSS and CPU from /proc; `machine`: what we ran on.
//! - `report`: figures against targets, table and JSON; `progress`: progress bars.

mod compare;
mod connect;
mod deployment;
mod fanout;
mod fleet;
mod idle;
mod latency;
mod machine;
mod payload;
mod process_usage;
mod progress;
mod publisher;
mod raw_ws;
mod recorder;
mod replaced;
mod report;
mod rss_series;
mod soak;
mod soak_verdict;
mod worker;
mod worker_pool;
mod ws_frame;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::deployment::TargetArgs;
use crate::report::Report;

/// Benchmarks crier: memory per idle connection, fan-out throughput, latency, connection rate.
#[derive(Debug, Parser)]
#[command(name = "crier-bench")]
struct Cli {
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N idle authenticated subscribed connections → edge RSS per connection.
    Idle {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        args: idle::IdleArgs,
    },
    /// One conversation × S subscribers, publish as fast as possible → deliveries/s, edge CPU per million.
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        args: fanout::FanoutArgs,
    },
    /// One conversation × S subscribers at a fixed rate → publish-to-frame latency percentiles.
    Latency {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        args: latency::LatencyArgs,
    },
    /// C conversations × 2 subscribers at R msg/s through Redis → latency percentiles.
    Redis {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        args: latency::RedisArgs,
    },
    /// Endurance: N connections over C conversations via Redis at R msg/s for a long time → RSS series of
    /// every spawned process, latency per minute; fails on RSS growth after warm-up or any loss.
    Soak {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        args: soak::SoakArgs,
    },
    /// The replaced design (Node + Redis pub/sub) and crier through Redis side by side, same load
    /// generator: latency, deliveries/s and CPU per million deliveries of every process, and the ratios.
    Compare {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        args: compare::CompareArgs,
    },
    /// Connection rate: connect + upgrade + auth + subscribe per second.
    Connect {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        args: connect::ConnectArgs,
    },
    /// Internal: a worker process holding connections for the bench.
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let scenario = match cli.scenario {
        Scenario::Worker(args) => return exit_code(worker::run(args)),
        scenario => scenario,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return exit_code(Err(err.into())),
    };
    let report = runtime.block_on(async {
        tokio::select! {
            report = run(scenario) => report,
            signal = interrupted() => Err(anyhow::anyhow!("{signal}; spawned processes stopped")),
        }
    });
    // Dropping the runtime drops every task still holding a spawned process, which kills it.
    drop(runtime);
    exit_code(report.and_then(|report| {
        print!("{}", report.table());
        if let Some(path) = &cli.json {
            report.write_json(path)?;
        }
        match report.failures.len() {
            0 => Ok(()),
            n => Err(anyhow::anyhow!("{n} check(s) failed: {}", report.failures.join("; "))),
        }
    }))
}

async fn run(scenario: Scenario) -> anyhow::Result<Report> {
    match scenario {
        Scenario::Idle { target, args } => idle::run(&target, &args).await,
        Scenario::Fanout { target, args } => fanout::run(&target, &args).await,
        Scenario::Latency { target, args } => latency::run_dev(&target, &args).await,
        Scenario::Redis { target, args } => latency::run_redis(&target, &args).await,
        Scenario::Compare { target, args } => compare::run(&target, &args).await,
        Scenario::Connect { target, args } => connect::run(&target, &args).await,
        Scenario::Soak { target, args } => soak::run(&target, &args).await,
        Scenario::Worker(_) => anyhow::bail!("worker runs without a scenario runtime"),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming which.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "terminated",
            _ = tokio::signal::ctrl_c() => "interrupted",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crier-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
