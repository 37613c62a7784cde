//! Scenario `soak`: endurance through Redis. `redis-server` + `crier broker` + `crier edge` (spawned, no
//! `/metrics` scraping: the recorder's upkeep must run on its own), N connections on the one edge over C
//! conversations, published to at R msg/s round-robin for a long time.
//!
//! - Connection `i` subscribes to conversation `i % C`. The first C connections (one per conversation) are
//!   the bench's own *probes* and measure publish-to-frame latency (one process, one clock); the others
//!   live in worker processes on the other source addresses and only count.
//! - Every receiver counts deliveries per conversation; at the end each conversation must have exactly
//!   `published(c) × subscribers(c)` deliveries: anything missing is lost, anything extra duplicated.
//! - Every spawned process's RSS is sampled every `--sample-every` ([`RssWatch`]); growth after warm-up
//!   beyond 5 % (and a 4 MiB noise floor) fails the run, as do losses, duplicates, closed connections,
//!   failed publishes and a process that exits.
//! - The broker runs with a short `--retention-max-age` (30 s by default), so Redis' streams reach their
//!   steady size within warm-up; with the 10-minute default they would grow, by design, for the whole run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deployment::{Deployment, TargetArgs};
use crate::fleet::{Fleet, FleetSpec};
use crate::payload::Clock;
use crate::progress;
use crate::publisher::{self, PublishStats};
use crate::recorder::{Percentiles, Recorder};
use crate::report::Report;
use crate::rss_series::RssWatch;
use crate::soak_verdict::{Deliveries, check_publishing, judge, parameters};
use crate::worker_pool::WorkerPool;

/// Bound on opening every connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on the last deliveries arriving after the last publish was answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Conversation ids are `soak-<index>`.
const PREFIX: &str = "soak";
/// Latency percentiles are reported per this window.
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// WebSocket connections held on the edge, spread over the conversations.
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// Conversations; connection i subscribes to conversation i % conversations.
    #[arg(long, default_value_t = 1_000)]
    pub conversations: usize,
    /// Notifications per second, round-robin over the conversations.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// How long to publish.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// RSS sampling interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// Growth is measured against the first RSS sample at or after this much publishing.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// The broker's --retention-max-age: how much history Redis holds in steady state.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retention_max_age: Duration,
    /// Worker processes holding the connections that are not probes.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Connections each process opens at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// What the publishing phase saw.
pub struct Observed {
    pub rss: RssWatch,
    /// The probes' latency per minute of publishing (the last one partial, including the drain).
    pub minutes: Vec<Percentiles>,
    /// The probes' latencies of the whole run.
    pub total: Histogram<u64>,
}

pub async fn run(target: &TargetArgs, args: &SoakArgs) -> anyhow::Result<Report> {
    if args.conversations == 0 || args.connections < args.conversations {
        bail!("--connections must be at least --conversations (one probe per conversation), and both > 0");
    }
    let mut report = Report::new("soak", parameters(args));
    let retention = humantime::format_duration(args.retention_max_age).to_string();
    let deployment = Deployment::redis(target, &["--retention-max-age".to_owned(), retention]).await?;
    let recorder = Arc::new(Recorder::new(Clock::new())?);
    let (probes, pool) = connect_all(&deployment, target, args, &recorder).await?;
    let stats = Arc::new(PublishStats::per_conversation(args.conversations));
    let mut observed = publish(&deployment, args, &recorder, &stats).await?;
    let expected = Deliveries::expected_total(&stats.conversation_counts(), args.connections);
    drain(expected, &probes, &pool).await;
    remaining_latency(&recorder, &mut observed);
    let closed = probes.tally.closed.load(Ordering::Relaxed) + pool.totals().closed;
    let mut received = probes.tally.conversation_counts();
    probes.shutdown().await;
    let from_workers = pool.stop().await;
    received.iter_mut().zip(from_workers).for_each(|(sum, n)| *sum += n);
    let tally = Deliveries::count(&stats.conversation_counts(), &received, args.connections);
    judge(&mut report, args, &observed, &tally);
    check_publishing(&mut report, &stats, closed);
    Ok(report)
}

/// Opens every connection: the workers' first, then the probes (latencies to `recorder`).
async fn connect_all(
    deployment: &Deployment,
    target: &TargetArgs,
    args: &SoakArgs,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<(Fleet, WorkerPool)> {
    let (probe_spec, worker_spec) = specs(deployment, target, args);
    let mut pool = WorkerPool::default();
    pool.spawn(&worker_spec.split(args.workers, 0)).await?;
    pool.go_and_wait(CONNECT_TIMEOUT).await?;
    let probes = Fleet::counting(args.conversations);
    probes.connect(probe_spec, Some(Arc::clone(recorder))).await;
    let open = probes.tally.open.load(Ordering::Relaxed) + pool.totals().open;
    if open < args.connections as u64 {
        let error = probes.first_error().or_else(|| pool.first_error()).unwrap_or_default();
        bail!("{open} of {} connections open: {error}", args.connections);
    }
    eprintln!("{open} connections open; publishing for {}", humantime::format_duration(args.duration));
    Ok((probes, pool))
}

/// The probes (connections 0..C, in this process) and the workers' connections (C..N).
fn specs(deployment: &Deployment, target: &TargetArgs, args: &SoakArgs) -> (FleetSpec, FleetSpec) {
    let probes = FleetSpec {
        server: deployment.ws,
        path: deployment.path.clone(),
        source_ips: target.source_ips.clone(),
        first: 0,
        connections: args.conversations,
        conversations: args.conversations,
        prefix: PREFIX.to_owned(),
        concurrency: args.concurrency,
    };
    let workers = FleetSpec {
        first: args.conversations,
        connections: args.connections - args.conversations,
        ..probes.clone()
    };
    (probes, workers)
}

/// Publishes for the whole duration while sampling RSS and collecting latency per minute.
async fn publish(
    deployment: &Deployment,
    args: &SoakArgs,
    recorder: &Arc<Recorder>,
    stats: &Arc<PublishStats>,
) -> anyhow::Result<Observed> {
    let sink = publisher::Sink::connect(deployment).await?;
    let conversations: Vec<String> = (0..args.conversations).map(|i| format!("{PREFIX}-{i}")).collect();
    let watched = watched_processes(deployment);
    let stop = CancellationToken::new();
    let publishing = async {
        publisher::at_rate(&sink, &conversations, args.rate, args.duration, recorder.clock, stats).await;
        stop.cancel();
    };
    let status = || {
        format!("{} probe frames, {} published", recorder.count(), stats.published.load(Ordering::Relaxed))
    };
    let (rss, (minutes, total), (), ()) = tokio::join!(
        sample_rss(&watched, args.sample_every, &stop),
        latency_by_minute(recorder, &stop),
        publishing,
        progress::timed("soak", args.duration, &status),
    );
    Ok(Observed { rss, minutes, total })
}

/// The processes whose RSS is watched: everything spawned, or the given edge.
fn watched_processes(deployment: &Deployment) -> Vec<(&'static str, u32)> {
    let spawned = deployment.processes();
    if spawned.is_empty() {
        deployment.edge_pid.map(|pid| ("edge", pid)).into_iter().collect()
    } else {
        spawned
    }
}

/// Samples RSS every `every` until `stop`, starting at once.
async fn sample_rss(
    processes: &[(&'static str, u32)],
    every: Duration,
    stop: &CancellationToken,
) -> RssWatch {
    let mut watch = RssWatch::new(processes);
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => watch.sample(started.elapsed()),
        }
    }
    watch.sample(started.elapsed());
    watch
}

/// Takes the probes' latency percentiles every minute until `stop`; returns them and their sum.
async fn latency_by_minute(
    recorder: &Recorder,
    stop: &CancellationToken,
) -> (Vec<Percentiles>, Histogram<u64>) {
    let mut minutes = Vec::new();
    let mut total = Histogram::new_from(&*recorder.lock());
    let mut next = Instant::now() + MINUTE;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(next) => {
                next += MINUTE;
                minutes.push(take_minute(recorder, &mut total));
            }
        }
    }
    (minutes, total)
}

/// The percentiles recorded since the last call, added to `total`; the recorder starts afresh.
fn take_minute(recorder: &Recorder, total: &mut Histogram<u64>) -> Percentiles {
    let mut histogram = recorder.lock();
    let _ = total.add(&*histogram);
    let minute = Recorder::percentiles_of(&histogram);
    histogram.reset();
    minute
}

/// The last (partial) minute, recorded while publishing ended and deliveries drained.
fn remaining_latency(recorder: &Recorder, observed: &mut Observed) {
    if recorder.count() > 0 {
        let minute = take_minute(recorder, &mut observed.total);
        observed.minutes.push(minute);
    }
}

/// Waits (bounded) until the receivers have counted at least `expected` frames.
async fn drain(expected: u64, probes: &Fleet, pool: &WorkerPool) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let counted = || probes.tally.frames.load(Ordering::Relaxed) + pool.totals().frames;
    while counted() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
