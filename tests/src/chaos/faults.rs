//! The fault loops of a chaos run: one per kind (edge, broker, Redis master), running at once, so faults
//! overlap. Each waits a random pause, picks a random target, takes it down (an edge or broker by SIGKILL or
//! SIGTERM at random, a Redis master by SIGKILL), keeps it down a random while, and brings it back (a master
//! empty: no persistence). All randomness comes from one seed. A loop finishes its current fault when told
//! to stop, so the run ends with everything up.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::deployment::{ChaosDeployment, Kind};
use crate::redis_cluster::MASTERS;

/// How often and how long faults happen.
#[derive(Debug, Clone, Copy)]
pub struct FaultPace {
    /// Mean pause between two faults of one kind (each pause is uniform in [½, 1½] of it).
    pub pause: Duration,
    /// Longest downtime (each is uniform in [0, this]).
    pub max_down: Duration,
}

/// What the loops did.
#[derive(Debug, Clone, Default)]
pub struct FaultCounts {
    /// Edges killed (SIGKILL).
    pub edge_kills: usize,
    /// Edges stopped with SIGTERM (drained).
    pub edge_drains: usize,
    /// Brokers killed (SIGKILL).
    pub broker_kills: usize,
    /// Brokers stopped with SIGTERM.
    pub broker_stops: usize,
    /// Redis masters killed and restarted empty.
    pub redis_restarts: usize,
    /// Processes that exited although nobody stopped them (restarted).
    pub unexpected_exits: Vec<String>,
}

/// Which loop.
#[derive(Debug, Clone, Copy)]
enum Target {
    Process(Kind),
    Redis,
}

/// Runs the three loops until `stop`; returns their counts.
pub async fn run(
    deployment: Arc<ChaosDeployment>,
    seed: u64,
    pace: FaultPace,
    stop: CancellationToken,
) -> anyhow::Result<FaultCounts> {
    let targets = [Target::Process(Kind::Edge), Target::Process(Kind::Broker), Target::Redis];
    let loops = targets.into_iter().enumerate().map(|(i, target)| {
        let rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
        tokio::spawn(fault_loop(Arc::clone(&deployment), target, rng, pace, stop.clone()))
    });
    let mut total = FaultCounts::default();
    for counts in futures_util::future::try_join_all(loops).await? {
        let counts = counts?;
        total.edge_kills += counts.edge_kills;
        total.edge_drains += counts.edge_drains;
        total.broker_kills += counts.broker_kills;
        total.broker_stops += counts.broker_stops;
        total.redis_restarts += counts.redis_restarts;
        total.unexpected_exits.extend(counts.unexpected_exits);
    }
    Ok(total)
}

async fn fault_loop(
    deployment: Arc<ChaosDeployment>,
    target: Target,
    mut rng: StdRng,
    pace: FaultPace,
    stop: CancellationToken,
) -> anyhow::Result<FaultCounts> {
    let mut counts = FaultCounts::default();
    loop {
        let pause = pace.pause.mul_f64(rng.random_range(0.5..1.5));
        tokio::select! {
            () = stop.cancelled() => return Ok(counts),
            () = tokio::time::sleep(pause) => {}
        }
        if let Target::Process(kind) = target {
            counts.unexpected_exits.extend(deployment.restart_exited(kind).await?);
        }
        let down = pace.max_down.mul_f64(rng.random_range(0.0..1.0));
        match target {
            Target::Process(kind) => {
                let i = rng.random_range(0..deployment.count(kind));
                let graceful = rng.random_bool(0.5);
                deployment.stop_role(kind, i, graceful).await?;
                tokio::time::sleep(down).await;
                deployment.start_role(kind, i).await?;
                *counter(&mut counts, kind, graceful) += 1;
            }
            Target::Redis => {
                let i = rng.random_range(0..MASTERS);
                let mut cluster = deployment.cluster.lock().await;
                cluster.kill_master(i);
                tokio::time::sleep(down).await;
                cluster.restart_master_empty(i).await?;
                counts.redis_restarts += 1;
            }
        }
    }
}

fn counter(counts: &mut FaultCounts, kind: Kind, graceful: bool) -> &mut usize {
    match (kind, graceful) {
        (Kind::Edge, false) => &mut counts.edge_kills,
        (Kind::Edge, true) => &mut counts.edge_drains,
        (Kind::Broker, false) => &mut counts.broker_kills,
        (Kind::Broker, true) => &mut counts.broker_stops,
    }
}
