//! The chaos run: start the deployment, subscribe the clients, publish and inject faults for the configured
//! time, then a calm phase (no faults, publishing goes on, so every conversation has acknowledged entries in
//! its final epoch), stop publishing, wait until every client stands at its conversations' last acknowledged
//! positions (bounded), stop the clients and judge their histories.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use crier_proto::keys::PartitionKeys;
use crier_proto::partition::{DEFAULT_PARTITIONS, partition};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checker::{Verdict, check};
use super::client::{self, ClientSpec, Cursors};
use super::deployment::ChaosDeployment;
use super::faults::{self, FaultCounts, FaultPace};
use super::history::History;
use super::publisher::{self, PublishStats, PublisherSpec};
use super::truth::Truth;
use crate::redis_cluster::{MASTERS, RedisCluster};

/// Brokers and edges of the run.
const BROKERS: usize = 2;
const EDGES: usize = 3;
/// Conversations each client subscribes to.
const PER_CLIENT: usize = 3;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The `crier` binary to spawn.
    pub crier: PathBuf,
    /// Seed of every random choice (faults, conversations, jitter).
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    /// Calm time after the faults, still publishing.
    pub calm: Duration,
    /// Bound on the clients catching up at the end.
    pub settle: Duration,
    /// Clients (WebSocket connections).
    pub clients: usize,
    /// Conversations, spread evenly over the Redis masters.
    pub conversations: usize,
    /// Publishers (publisher `i` publishes to conversations `i`, `i + publishers`, ...), and each one's
    /// payloads per second.
    pub publishers: usize,
    pub rate: f64,
    /// How often and how long faults happen.
    pub pace: FaultPace,
    /// Where the processes' logs go (kept); a temporary directory, removed at the end, when `None`.
    pub logs: Option<PathBuf>,
    /// Print a line of progress to stderr every this often.
    pub progress: Option<Duration>,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct ChaosOutcome {
    /// The checker's counts and violations.
    pub verdict: Verdict,
    /// The faults injected.
    pub faults: FaultCounts,
    /// The publishers' retries and failures.
    pub publishing: PublishStats,
    /// Whether every client caught up within the settle bound.
    pub settled: bool,
    /// The seed, to replay the fault schedule.
    pub seed: u64,
    /// Where the processes' logs are, when the run failed.
    pub logs: Option<PathBuf>,
}

impl ChaosOutcome {
    /// Everything that fails the run: violations, processes that died on their own, refused publishes,
    /// clients that never caught up.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let mut failures: Vec<String> = self.verdict.details.clone();
        if self.verdict.violations > self.verdict.details.len() {
            failures.push(format!("{} violations in all", self.verdict.violations));
        }
        failures.extend(self.faults.unexpected_exits.iter().map(|name| format!("{name} exited on its own")));
        failures.extend(self.publishing.refused.iter().map(|r| format!("publish refused: {r}")));
        if !self.settled {
            failures.push("clients did not catch up with the last acknowledged entries".to_owned());
        }
        if let Some(logs) = self.logs.as_ref().filter(|_| !failures.is_empty()) {
            failures.push(format!("process logs in {}", logs.display()));
        }
        failures
    }
}

/// Runs the chaos scenario.
pub async fn run(config: ChaosConfig) -> anyhow::Result<ChaosOutcome> {
    let tmp = tempfile::Builder::new().prefix("crier-chaos-").tempdir()?;
    let logs = config.logs.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let deployment = Arc::new(ChaosDeployment::start(&config.crier, BROKERS, EDGES, &logs).await?);
    let conversations: Arc<[String]> = {
        let cluster = deployment.cluster.lock().await;
        conversations_over_masters(&cluster, config.conversations).await?.into()
    };
    let stop_clients = CancellationToken::new();
    let clients = start_clients(&config, &deployment, &conversations, &stop_clients).await;
    let truth = Arc::new(Mutex::new(Truth::default()));
    let stop_publishers = CancellationToken::new();
    let publishers = start_publishers(&config, &deployment, &conversations, &truth, &stop_publishers).await;
    let stop_faults = CancellationToken::new();
    let fault_loops =
        tokio::spawn(faults::run(Arc::clone(&deployment), config.seed, config.pace, stop_faults.clone()));
    report_until(&config, config.duration, &truth, &clients).await;
    stop_faults.cancel();
    let faults = fault_loops.await??;
    report_until(&config, config.calm, &truth, &clients).await;
    stop_publishers.cancel();
    let mut publishing = PublishStats::default();
    for publisher in publishers {
        publishing.add(publisher.await??);
    }
    let truth = Arc::try_unwrap(truth).map_or_else(
        |shared| lock(&shared).clone(),
        |owned| owned.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let settled = settle(&truth, &conversations, &clients, config.settle).await;
    stop_clients.cancel();
    let mut histories: Vec<History> = Vec::new();
    for (handle, _) in clients {
        histories.push(handle.await?);
    }
    let verdict = check(&truth, &histories);
    let mut outcome = ChaosOutcome { verdict, faults, publishing, settled, seed: config.seed, logs: None };
    if !outcome.failures().is_empty() {
        // Kept for whoever investigates: a temporary directory would vanish with the evidence.
        outcome.logs = Some(if config.logs.is_some() { logs } else { tmp.keep() });
    }
    Ok(outcome)
}

/// `n` conversation ids (`chaos-<i>`), as evenly spread over the masters as ids allow.
async fn conversations_over_masters(cluster: &RedisCluster, n: usize) -> anyhow::Result<Vec<String>> {
    let per_master = n.div_ceil(MASTERS);
    let mut counts = [0; MASTERS];
    let mut chosen = Vec::new();
    for i in 0..100_000 {
        let conversation = format!("chaos-{i}");
        let key = PartitionKeys::new(partition(&conversation, DEFAULT_PARTITIONS)).stream;
        let master = cluster.node_for_key(&key).await?;
        if counts[master] < per_master {
            counts[master] += 1;
            chosen.push(conversation);
            if chosen.len() == n {
                break;
            }
        }
    }
    Ok(chosen)
}

type ClientTask = (JoinHandle<History>, Cursors);

async fn start_clients(
    config: &ChaosConfig,
    deployment: &ChaosDeployment,
    conversations: &[String],
    stop: &CancellationToken,
) -> Vec<ClientTask> {
    let edges = deployment.edge_urls().await;
    (0..config.clients)
        .map(|index| {
            let picks = 0..PER_CLIENT.min(conversations.len());
            let conversations =
                picks.map(|j| conversations[(index * PER_CLIENT + j) % conversations.len()].clone());
            let spec = ClientSpec {
                index,
                conversations: conversations.collect(),
                edges: edges.clone(),
                seed: config.seed ^ (0xc11e47 + index as u64),
            };
            let cursors = Cursors::default();
            (tokio::spawn(client::run(spec, Arc::clone(&cursors), stop.clone())), cursors)
        })
        .collect()
}

async fn start_publishers(
    config: &ChaosConfig,
    deployment: &ChaosDeployment,
    conversations: &[String],
    truth: &Arc<Mutex<Truth>>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<anyhow::Result<PublishStats>>> {
    let brokers = deployment.broker_urls().await;
    (0..config.publishers)
        .map(|index| {
            // Each conversation has its publishers: one waiting for a dead master stalls only its own.
            let mut own: Vec<String> =
                conversations.iter().skip(index).step_by(config.publishers).cloned().collect();
            if own.is_empty() {
                own.push(conversations[index % conversations.len()].clone());
            }
            let spec = PublisherSpec {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                conversations: own.into(),
                brokers: brokers.clone(),
                rate: config.rate,
                seed: config.seed ^ (0x9b1e + index as u64),
            };
            tokio::spawn(publisher::run(spec, Arc::clone(truth), stop.clone()))
        })
        .collect()
}

/// Waits `phase`, printing progress when configured.
async fn report_until(config: &ChaosConfig, phase: Duration, truth: &Mutex<Truth>, clients: &[ClientTask]) {
    let end = Instant::now() + phase;
    let Some(every) = config.progress else { return tokio::time::sleep_until(end).await };
    while Instant::now() < end {
        tokio::time::sleep_until(end.min(Instant::now() + every)).await;
        let (sent, acked) = {
            let truth = lock(truth);
            (truth.sent_count(), truth.acked_count())
        };
        eprintln!("chaos: {sent} published, {acked} acknowledged, {} clients", clients.len());
    }
}

/// Waits until every client stands at (or past) the last acknowledged position of each of its
/// conversations, within `limit`; `false` if some did not.
async fn settle(truth: &Truth, conversations: &[String], clients: &[ClientTask], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let last: Vec<_> =
        conversations.iter().filter_map(|c| Some((c.as_str(), truth.last_position(c)?))).collect();
    loop {
        let behind = clients.iter().any(|(_, cursors)| {
            let cursors = cursors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            last.iter().any(|(conversation, last)| {
                cursors.get(*conversation).is_some_and(|at| at.epoch != last.epoch || at.id < last.id)
            })
        });
        if !behind {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lock(truth: &Mutex<Truth>) -> std::sync::MutexGuard<'_, Truth> {
    truth.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
