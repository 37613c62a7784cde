//! Scenario `connect`: how many connections per second the edge takes through connect + HTTP upgrade +
//! auth + subscribe. Worker processes open N connections, a fixed number at a time each; the rate is N over
//! the time from `go` until the slowest worker has all of its connections subscribed.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::deployment::{Deployment, TargetArgs};
use crate::fleet::FleetSpec;
use crate::machine::time_wait_sockets;
use crate::process_usage::CpuSnapshot;
use crate::progress;
use crate::report::{Report, Target};
use crate::worker_pool::WorkerPool;

/// Issue 8: at least 12k connections per second.
const TARGET_PER_S: f64 = 12_000.0;
/// Sockets in TIME_WAIT above which the run waits for them to expire first (Linux keeps them 60 s).
const TIME_WAIT_MAX: u64 = 2_000;
/// Longest wait for them.
const TIME_WAIT_PATIENCE: Duration = Duration::from_secs(70);

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Worker processes opening them.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Connections each worker has in progress at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Distinct conversations (default: one per connection).
    #[arg(long)]
    pub conversations: Option<usize>,
}

pub async fn run(target: &TargetArgs, args: &ConnectArgs) -> anyhow::Result<Report> {
    let conversations = args.conversations.unwrap_or(args.connections);
    let parameters = json!({
        "connections": args.connections, "workers": args.workers, "concurrency_per_worker": args.concurrency,
        "conversations": conversations,
    });
    let mut report = Report::new("connect", parameters);
    let time_wait = wait_for_time_wait_to_clear().await;
    report.figure("TCP sockets in TIME_WAIT at start", time_wait as f64, "", None);
    let deployment = Deployment::dev(target).await?;
    let spec = FleetSpec {
        server: deployment.ws,
        path: deployment.path.clone(),
        source_ips: target.source_ips.clone(),
        first: 0,
        connections: args.connections,
        conversations,
        prefix: "connect".to_owned(),
        concurrency: args.concurrency,
    };
    let mut pool = WorkerPool::default();
    pool.spawn(&spec.split(args.workers, 0)).await?;
    let mut loadgen = pool.pids();
    loadgen.push(std::process::id());
    let before = CpuSnapshot::take(deployment.edge_pid, &loadgen);
    let took = pool.go_and_wait(Duration::from_secs(300)).await?;
    let cpu = CpuSnapshot::take(deployment.edge_pid, &loadgen).since(&before);
    add_figures(&mut report, &pool, took.as_secs_f64(), cpu);
    pool.stop().await;
    Ok(report)
}

/// Rate and CPU cost per connection; `cpu` is (edge s, load generator s, machine busy fraction).
fn add_figures(report: &mut Report, pool: &WorkerPool, seconds: f64, cpu: (f64, f64, f64)) {
    let (edge_cpu, loadgen_cpu, busy) = cpu;
    let totals = pool.totals();
    let opened = totals.open as f64;
    report.figure("connections per second", opened / seconds, "1/s", Some(Target::AtLeast(TARGET_PER_S)));
    report.figure("connections opened", opened, "", None);
    report.figure("edge CPU per 1,000 connections", 1_000.0 * edge_cpu / opened, "CPU-s", None);
    report.figure("load generator CPU per 1,000 connections", 1_000.0 * loadgen_cpu / opened, "CPU-s", None);
    report.figure("machine CPU busy", 100.0 * busy, "%", None);
    if totals.failed > 0 {
        let error = pool.first_error().unwrap_or_default();
        report.note(format!("{} connections failed, first: {error}", totals.failed));
    }
}

/// Waits (up to [`TIME_WAIT_PATIENCE`]) until earlier runs' TIME_WAIT sockets are few; returns how many are left.
async fn wait_for_time_wait_to_clear() -> u64 {
    let count = || time_wait_sockets().unwrap_or(0);
    if count() <= TIME_WAIT_MAX {
        return count();
    }
    let label = "TIME_WAIT";
    let status = || format!("{} sockets from earlier runs expiring", count());
    let waiting = progress::timed(label, TIME_WAIT_PATIENCE, &status);
    let cleared = async {
        while count() > TIME_WAIT_MAX {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        () = waiting => {}
        () = cleared => {}
    }
    count()
}
