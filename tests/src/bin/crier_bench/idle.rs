//! Scenario `idle`: N idle, authenticated, subscribed connections → the edge's resident memory per
//! connection. Counts are reached in steps (e.g. 10,000 then 19,000) on one edge; each step adds worker
//! processes, and the figure is (RSS now − RSS before the first connection) / connections open.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::deployment::{Deployment, TargetArgs};
use crate::fleet::FleetSpec;
use crate::process_usage::rss_kib;
use crate::progress;
use crate::report::{Report, Target};
use crate::worker_pool::WorkerPool;

/// Issue 8: at most 2.0 KiB per idle connection.
const TARGET_KIB: f64 = 2.0;

#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Connection counts to measure at, reached one after the other on the same edge.
    #[arg(long, value_delimiter = ',', default_value = "10000,19000")]
    pub connections: Vec<usize>,
    /// Distinct conversations the connections subscribe to (default: one per connection).
    #[arg(long)]
    pub conversations: Option<usize>,
    /// Most connections per worker process (each process is under ~20k open files).
    #[arg(long, default_value_t = 5_000)]
    pub per_worker: usize,
    /// Connections each worker opens at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Pause before reading RSS, so freed handshake memory is settled.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
}

pub async fn run(target: &TargetArgs, args: &IdleArgs) -> anyhow::Result<Report> {
    let mut steps = args.connections.clone();
    steps.sort_unstable();
    let most = *steps.last().context("--connections is empty")?;
    let conversations = args.conversations.unwrap_or(most);
    let parameters =
        json!({ "connections": steps, "conversations": conversations, "per_worker": args.per_worker });
    let mut report = Report::new("idle", parameters);
    let deployment = Deployment::dev(target).await?;
    let pid = deployment.edge_pid.context("idle needs the edge's pid (--pid) to read its RSS")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib(pid)?;
    report.figure("edge RSS before connections", baseline as f64 / 1024.0, "MiB", None);
    let mut pool = WorkerPool::default();
    let mut spec = FleetSpec {
        server: deployment.ws,
        path: deployment.path.clone(),
        source_ips: target.source_ips.clone(),
        first: 0,
        connections: 0,
        conversations,
        prefix: "idle".to_owned(),
        concurrency: args.concurrency,
    };
    let mut workers = 0;
    for &step in &steps {
        spec.connections = step - spec.first;
        let specs = spec.split(spec.connections.div_ceil(args.per_worker), workers);
        workers += specs.len();
        pool.spawn(&specs).await?;
        pool.go_and_wait(Duration::from_secs(300)).await?;
        spec.first = step;
        progress::timed("settling", args.settle, &String::new).await;
        add_step(&mut report, &pool, rss_kib(pid)?, baseline);
    }
    pool.stop().await;
    Ok(report)
}

/// The figures at one connection count: RSS growth per open connection, and RSS.
fn add_step(report: &mut Report, pool: &WorkerPool, rss: u64, baseline: u64) {
    let totals = pool.totals();
    let per_connection = rss.saturating_sub(baseline) as f64 / totals.open.max(1) as f64;
    let name = format!("edge RSS per idle connection at {}", totals.open);
    report.figure(name, per_connection, "KiB", Some(Target::AtMost(TARGET_KIB)));
    report.figure(format!("edge RSS at {}", totals.open), rss as f64 / 1024.0, "MiB", None);
    if totals.failed > 0 || totals.closed > 0 {
        let error = pool.first_error().unwrap_or_default();
        report.note(format!("{} failed, {} closed by the server: {error}", totals.failed, totals.closed));
    }
}
