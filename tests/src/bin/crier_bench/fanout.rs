//! Scenario `fanout`: one conversation × S subscribers (in worker processes), published to as fast as the
//! edge delivers → deliveries per second counted by the receivers, and the edge's CPU seconds per million
//! deliveries. Also reported: the load generator's CPU and how busy the whole machine was, because on a
//! 2-vCPU machine the receivers compete with the server.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deployment::{Deployment, TargetArgs};
use crate::fleet::FleetSpec;
use crate::process_usage::CpuSnapshot;
use crate::progress;
use crate::publisher::{self, Flood, PublishStats};
use crate::report::{Report, Target};
use crate::worker_pool::WorkerPool;

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Subscribers of the one conversation.
    #[arg(long, default_value_t = 2_000)]
    pub subscribers: usize,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before it, at full speed.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Worker processes the subscribers are spread over.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Connections each worker opens at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Notifications per PublishBatch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// PublishBatch calls in flight.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Most notifications published ahead of the average subscriber.
    #[arg(long, default_value_t = 400)]
    pub window: u64,
}

/// What the measured window saw.
struct Window {
    frames: u64,
    seconds: f64,
    server_cpu: f64,
    loadgen_cpu: f64,
    machine_busy: f64,
}

pub async fn run(target: &TargetArgs, args: &FanoutArgs) -> anyhow::Result<Report> {
    let parameters = json!({
        "subscribers": args.subscribers, "duration_s": args.duration.as_secs_f64(), "workers": args.workers,
        "batch": args.batch, "in_flight": args.in_flight, "window": args.window, "payload_bytes": 204,
    });
    let mut report = Report::new("fanout", parameters);
    let deployment = Deployment::dev(target).await?;
    let spec = FleetSpec {
        server: deployment.ws,
        path: deployment.path.clone(),
        source_ips: target.source_ips.clone(),
        first: 0,
        connections: args.subscribers,
        conversations: 1,
        prefix: "fanout".to_owned(),
        concurrency: args.concurrency,
    };
    let mut pool = WorkerPool::default();
    pool.spawn(&spec.split(args.workers, 0)).await?;
    pool.go_and_wait(Duration::from_secs(120)).await?;
    let client = publisher::connect(&deployment.grpc).await?;
    let (stats, stop) = (PublishStats::default(), CancellationToken::new());
    let flood = Flood { batch: args.batch, in_flight: args.in_flight, window: args.window };
    let delivered = || (pool.totals().frames, pool.totals().open);
    let conversation = spec.conversation(0);
    let publish = publisher::flood(&client, &conversation, flood, &delivered, &stop, &stats);
    let measure = async {
        let window = measure(&pool, deployment.edge_pid, args).await;
        stop.cancel();
        window
    };
    let ((), window) = tokio::join!(publish, measure);
    add_figures(&mut report, &window, &stats);
    let totals = pool.totals();
    if totals.closed > 0 || totals.failed > 0 {
        report.note(format!("{} subscribers failed, {} closed during the run", totals.failed, totals.closed));
    }
    pool.stop().await;
    Ok(report)
}

async fn measure(pool: &WorkerPool, server: Option<u32>, args: &FanoutArgs) -> Window {
    let rate_since = |frames: u64, at: Instant| {
        let rate = (pool.totals().frames - frames) as f64 / at.elapsed().as_secs_f64().max(1e-3);
        format!("{rate:.0} deliveries/s")
    };
    let (frames, at) = (pool.totals().frames, Instant::now());
    progress::timed("warm-up", args.warmup, &|| rate_since(frames, at)).await;
    let mut loadgen = pool.pids();
    loadgen.push(std::process::id());
    let before = CpuSnapshot::take(server, &loadgen);
    let (frames, at) = (pool.totals().frames, Instant::now());
    progress::timed("measuring", args.duration, &|| rate_since(frames, at)).await;
    let after = CpuSnapshot::take(server, &loadgen);
    let (server_cpu, loadgen_cpu, machine_busy) = after.since(&before);
    Window {
        frames: pool.totals().frames - frames,
        seconds: at.elapsed().as_secs_f64(),
        server_cpu,
        loadgen_cpu,
        machine_busy,
    }
}

fn add_figures(report: &mut Report, window: &Window, stats: &PublishStats) {
    let millions = (window.frames as f64 / 1e6).max(1e-9);
    let rate = window.frames as f64 / window.seconds;
    report.figure("deliveries per second", rate, "1/s", Some(Target::AtLeast(1_400_000.0)));
    report.figure(
        "edge CPU per million deliveries",
        window.server_cpu / millions,
        "CPU-s",
        Some(Target::AtMost(0.6)),
    );
    report.figure("edge CPU use", 100.0 * window.server_cpu / window.seconds, "% of 1 CPU", None);
    report.figure("load generator CPU per million deliveries", window.loadgen_cpu / millions, "CPU-s", None);
    report.figure("machine CPU busy", 100.0 * window.machine_busy, "%", None);
    report.figure("deliveries counted", window.frames as f64, "frames", None);
    let published = stats.published.load(std::sync::atomic::Ordering::Relaxed);
    report.figure("notifications published (whole run)", published as f64, "", None);
    if let Some(error) = stats.first_error() {
        report.note(format!("publish errors, first: {error}"));
    }
}
