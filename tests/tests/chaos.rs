//! A short chaos run in the test suite (the long one is `crier-bench chaos`): a 3-master Redis Cluster, 2
//! brokers and 3 edges as real processes, killed and restarted at random while browser-like clients receive
//! and publishers retry, then the exact checker over every client's history.

use std::time::Duration;

use anyhow::{Result, ensure};
use crier_tests::chaos::faults::FaultPace;
use crier_tests::chaos::{self, ChaosConfig};
use crier_tests::crier_binary;

/// The seed: `CRIER_CHAOS_SEED` to replay a failure's fault schedule, else a fresh one (printed).
fn seed() -> u64 {
    std::env::var("CRIER_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    })
}

/// For 15 seconds an edge, a broker and a Redis master (restarted empty) are killed or stopped and
/// restarted at random, overlapping. Every notification `Publish` acknowledged after a client's first
/// `subscribed` reaches it exactly once and in order, or lies in a span it was told `recovered:false` for;
/// at the end every client has caught up with the last acknowledged entry of each of its conversations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_notifications_survive_random_kills_exactly_once_or_declared_lost() -> Result<()> {
    let seed = seed();
    eprintln!("chaos seed {seed} (CRIER_CHAOS_SEED={seed} replays its fault schedule)");
    let config = ChaosConfig {
        crier: crier_binary()?,
        seed,
        duration: Duration::from_secs(15),
        calm: Duration::from_secs(2),
        settle: Duration::from_secs(15),
        clients: 12,
        conversations: 9,
        publishers: 9,
        rate: 10.0,
        pace: FaultPace { pause: Duration::from_secs(2), max_down: Duration::from_millis(1_500) },
        logs: None,
        progress: None,
    };
    let outcome = chaos::run(config).await?;
    let verdict = &outcome.verdict;
    eprintln!("{verdict:#?}\n{:#?}\n{:#?}", outcome.faults, outcome.publishing);
    ensure!(outcome.failures().is_empty(), "seed {seed}: {:#?}", outcome.failures());
    ensure!(verdict.acknowledged > 300 && verdict.delivered > 1_000, "too little happened: {verdict:?}");
    let faults = &outcome.faults;
    ensure!(faults.redis_restarts > 0 && faults.edge_kills + faults.edge_drains > 0, "no faults: {faults:?}");
    Ok(())
}
