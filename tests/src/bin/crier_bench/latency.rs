//! Scenarios `latency` (one conversation × S subscribers on `crier dev`) and `redis` (C conversations × 2
//! subscribers through Redis: `crier broker` and `crier edge` on a spawned `redis-server`): publish at a
//! fixed rate, each payload stamped just before its `Publish` call, and measure until each frame is read.
//! Publisher and receivers live in this one process, on one monotonic clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;
use tokio::time::Instant;

use crate::deployment::{Deployment, TargetArgs};
use crate::fleet::{Fleet, FleetSpec};
use crate::payload::Clock;
use crate::process_usage::{CLK_TCK, cpu_ticks};
use crate::progress;
use crate::publisher::{self, PublishStats};
use crate::recorder::Recorder;
use crate::report::{Report, Target};

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Subscribers of the one conversation.
    #[arg(long, default_value_t = 2_000)]
    pub subscribers: usize,
    /// Notifications per second.
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,
    #[command(flatten)]
    pub timing: Timing,
}

#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Conversations, each with --per-conversation subscribers.
    #[arg(long, default_value_t = 1_000)]
    pub conversations: usize,
    #[arg(long, default_value_t = 2)]
    pub per_conversation: usize,
    /// Notifications per second, round-robin over the conversations.
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    #[command(flatten)]
    pub timing: Timing,
}

#[derive(Debug, Clone, Args)]
pub struct Timing {
    /// Measured time.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before it, at the same rate.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Connections opened at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
}

/// One latency run: who subscribes to what, how fast, and the p99 target.
pub struct Plan {
    pub conversations: usize,
    pub per_conversation: usize,
    /// Notifications per second; `None`: as fast as deliveries follow.
    pub rate: Option<f64>,
    pub timing: Timing,
    pub prefix: &'static str,
    pub p99_target_ms: f64,
}

/// Notifications [`publisher::unlimited`] may publish ahead of the average subscriber: far below any
/// queue bound (2,000 × 204 bytes spread over every subscriber), enough to keep every stage busy.
const UNLIMITED_WINDOW: u64 = 2_000;

pub async fn run_dev(target: &TargetArgs, args: &LatencyArgs) -> anyhow::Result<Report> {
    let deployment = Deployment::dev(target).await?;
    let plan = Plan {
        conversations: 1,
        per_conversation: args.subscribers,
        rate: Some(args.rate),
        timing: args.timing.clone(),
        prefix: "latency",
        p99_target_ms: 22.0,
    };
    measure("latency", &deployment, target, &plan).await
}

pub async fn run_redis(target: &TargetArgs, args: &RedisArgs) -> anyhow::Result<Report> {
    let deployment = Deployment::redis(target, &[]).await?;
    let plan = Plan {
        conversations: args.conversations,
        per_conversation: args.per_conversation,
        rate: Some(args.rate),
        timing: args.timing.clone(),
        prefix: "redis",
        p99_target_ms: 0.7,
    };
    measure("redis", &deployment, target, &plan).await
}

pub async fn measure(
    scenario: &'static str,
    deployment: &Deployment,
    target: &TargetArgs,
    plan: &Plan,
) -> anyhow::Result<Report> {
    let mut report = Report::new(scenario, parameters(plan));
    let recorder = Arc::new(Recorder::new(Clock::new())?);
    let fleet = Fleet::new();
    let spec = fleet_spec(deployment, target, plan);
    connect(&fleet, &spec, &recorder).await?;
    let conversations: Vec<String> = (0..plan.conversations).map(|i| spec.conversation(i)).collect();
    let sink = publisher::Sink::connect(deployment).await?;
    let per_conversation = plan.per_conversation as u64;
    let delivered = || recorder.count() / per_conversation;
    let publish =
        |label, duration| publish(label, &sink, &conversations, plan.rate, duration, &recorder, &delivered);
    publish("warm-up", plan.timing.warmup).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    recorder.reset();
    let mut servers = server_processes(deployment);
    servers.push(("load generator", std::process::id()));
    let before: Vec<u64> = servers.iter().map(|&(_, pid)| cpu_ticks(pid).unwrap_or(0)).collect();
    let started = Instant::now();
    let stats = publish("measuring", plan.timing.duration).await;
    let expected = stats.published.load(Ordering::Relaxed) * plan.per_conversation as u64;
    drain(&recorder, expected).await;
    let seconds = started.elapsed().as_secs_f64();
    add_figures(&mut report, &recorder, plan, expected);
    report.figure("deliveries per second", recorder.count() as f64 / seconds, "/s", None);
    let millions = (recorder.count() as f64 / 1e6).max(f64::MIN_POSITIVE);
    let mut servers_cpu = 0.0;
    for (&(name, pid), before) in servers.iter().zip(before) {
        let used = cpu_ticks(pid).unwrap_or(0).saturating_sub(before) as f64 / CLK_TCK;
        report.figure(format!("{name} CPU use"), 100.0 * used / seconds, "% of 1 CPU", None);
        report.figure(format!("{name} CPU per million deliveries"), used / millions, "CPU-s", None);
        servers_cpu += if name == "load generator" { 0.0 } else { used };
    }
    report.figure(SERVERS_CPU_PER_MILLION, servers_cpu / millions, "CPU-s", None);
    notes(&mut report, &fleet, &stats);
    fleet.shutdown().await;
    Ok(report)
}

/// The figure of every server process's CPU together (all but the load generator).
pub const SERVERS_CPU_PER_MILLION: &str = "servers CPU per million deliveries";

/// Publishes at `rate` (or unlimited) for `duration` with a progress bar; returns the publishing counters.
async fn publish(
    label: &str,
    sink: &publisher::Sink,
    conversations: &[String],
    rate: Option<f64>,
    duration: Duration,
    recorder: &Recorder,
    delivered: &(dyn Fn() -> u64 + Sync),
) -> Arc<PublishStats> {
    let stats = Arc::new(PublishStats::default());
    let status = || format!("{} frames", recorder.count());
    let clock = recorder.clock;
    let publishing = async {
        match rate {
            Some(rate) => publisher::at_rate(sink, conversations, rate, duration, clock, &stats).await,
            None => {
                let window = UNLIMITED_WINDOW;
                publisher::unlimited(sink, conversations, duration, window, clock, delivered, &stats).await;
            }
        }
    };
    tokio::join!(publishing, progress::timed(label, duration, &status));
    stats
}

/// The server processes whose CPU is reported: everything spawned, or the given edge.
fn server_processes(deployment: &Deployment) -> Vec<(&'static str, u32)> {
    let spawned = deployment.processes();
    if spawned.is_empty() {
        deployment.edge_pid.map(|pid| ("edge", pid)).into_iter().collect()
    } else {
        spawned
    }
}

fn fleet_spec(deployment: &Deployment, target: &TargetArgs, plan: &Plan) -> FleetSpec {
    FleetSpec {
        server: deployment.ws,
        path: deployment.path.clone(),
        source_ips: target.source_ips.clone(),
        first: 0,
        connections: plan.conversations * plan.per_conversation,
        conversations: plan.conversations,
        prefix: plan.prefix.to_owned(),
        concurrency: plan.timing.concurrency,
    }
}

fn parameters(plan: &Plan) -> serde_json::Value {
    json!({
        "conversations": plan.conversations, "subscribers_per_conversation": plan.per_conversation,
        "rate_per_s": plan.rate.map_or(json!("unlimited"), |rate| json!(rate)), "duration_s": plan.timing.duration.as_secs_f64(), "payload_bytes": 204,
    })
}

async fn connect(fleet: &Fleet, spec: &FleetSpec, recorder: &Arc<Recorder>) -> anyhow::Result<()> {
    let bar = progress::counter("connecting", spec.connections as u64);
    let opening = fleet.connect(spec.clone(), Some(Arc::clone(recorder)));
    tokio::pin!(opening);
    loop {
        tokio::select! {
            () = &mut opening => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                bar.set_position(fleet.tally.open.load(Ordering::Relaxed));
            }
        }
    }
    bar.finish_and_clear();
    let open = fleet.tally.open.load(Ordering::Relaxed);
    if open < spec.connections as u64 {
        bail!(
            "{open} of {} subscribers connected: {}",
            spec.connections,
            fleet.first_error().unwrap_or_default()
        );
    }
    Ok(())
}

/// Waits (at most 5 s) until every expected frame has arrived.
async fn drain(recorder: &Recorder, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorder.count() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn add_figures(report: &mut Report, recorder: &Recorder, plan: &Plan, expected: u64) {
    let p = recorder.percentiles();
    report.figure("latency p50", p.p50, "ms", None);
    report.figure("latency p90", p.p90, "ms", None);
    report.figure("latency p99", p.p99, "ms", Some(Target::AtMost(plan.p99_target_ms)));
    report.figure("latency max", p.max, "ms", None);
    report.figure("frames measured", p.count as f64, "frames", None);
    if p.count < expected {
        report
            .note(format!("{} of {expected} expected frames did not arrive within 5 s", expected - p.count));
    }
}

fn notes(report: &mut Report, fleet: &Fleet, stats: &PublishStats) {
    let failed = stats.failed.load(Ordering::Relaxed);
    if failed > 0 {
        report.note(format!("{failed} publishes failed, first: {}", stats.first_error().unwrap_or_default()));
    }
    let closed = fleet.tally.closed.load(Ordering::Relaxed);
    if closed > 0 {
        report.note(format!("{closed} subscribers were closed by the server during the run"));
    }
}
