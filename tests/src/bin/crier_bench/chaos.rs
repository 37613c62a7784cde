//! Scenario `chaos`: the chaos run of `crier_tests::chaos` for as long as asked (default 5 minutes). A
//! 3-master Redis Cluster, 2 brokers and 3 edges (spawned), browser-like clients and retrying publishers;
//! an edge, a broker and a Redis master (restarted empty) killed or stopped and restarted at random, all
//! from one seed; then the exact checker. Any violation, a process dying on its own, a refused publish or a
//! client that never catches up fails the run (exit 1).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use crier_tests::chaos::faults::FaultPace;
use crier_tests::chaos::{self, ChaosConfig, ChaosOutcome};
use serde_json::json;

use crate::deployment::given_or_sibling_crier;
use crate::report::Report;

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// How long faults are injected (a calm phase and the catch-up follow).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Seed of the fault schedule and every other random choice (default: a fresh one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// WebSocket clients, each subscribed to 3 conversations.
    #[arg(long, default_value_t = 30)]
    pub clients: usize,
    /// Conversations, spread evenly over the 3 Redis masters.
    #[arg(long, default_value_t = 12)]
    pub conversations: usize,
    /// Publishers; publisher i publishes to conversations i, i + publishers, ...
    #[arg(long, default_value_t = 12)]
    pub publishers: usize,
    /// Payloads per second of each publisher.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Mean pause between two faults of one kind.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub fault_pause: Duration,
    /// Longest time a killed process stays down.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub max_down: Duration,
    /// Keep the processes' logs in this directory (default: a temporary one, removed).
    #[arg(long)]
    pub logs: Option<PathBuf>,
    /// The `crier` binary to spawn (default: `crier` next to this binary).
    #[arg(long)]
    pub crier: Option<PathBuf>,
}

pub async fn run(args: &ChaosArgs) -> anyhow::Result<Report> {
    let seed = args.seed.unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    });
    eprintln!("chaos: seed {seed} (--seed {seed} replays the fault schedule)");
    let config = ChaosConfig {
        crier: given_or_sibling_crier(args.crier.as_deref())?,
        seed,
        duration: args.duration,
        calm: Duration::from_secs(3),
        settle: Duration::from_secs(30),
        clients: args.clients,
        conversations: args.conversations,
        publishers: args.publishers,
        rate: args.rate,
        pace: FaultPace { pause: args.fault_pause, max_down: args.max_down },
        logs: args.logs.clone(),
        progress: Some(Duration::from_secs(10)),
    };
    let outcome = chaos::run(config).await?;
    let parameters = json!({
        "seed": seed, "duration_s": args.duration.as_secs(), "clients": args.clients,
        "conversations": args.conversations, "publishers": args.publishers, "rate_per_publisher": args.rate,
        "fault_pause_ms": args.fault_pause.as_millis(), "max_down_ms": args.max_down.as_millis(),
        "brokers": 2, "edges": 3, "redis_masters": 3,
    });
    let mut report = Report::new("chaos", parameters);
    figures(&mut report, &outcome);
    for failure in outcome.failures() {
        report.fail(failure);
    }
    Ok(report)
}

#[allow(clippy::cast_precision_loss)]
fn figures(report: &mut Report, outcome: &ChaosOutcome) {
    let v = &outcome.verdict;
    let mut count =
        |name: &str, value: usize, unit: &'static str| report.figure(name, value as f64, unit, None);
    count("published", v.published, "payloads");
    count("acknowledged", v.acknowledged, "payloads");
    count("delivered", v.delivered, "frames");
    count("unacknowledged copies delivered", v.unacknowledged_copies, "frames");
    count("recovered:true spans", v.recovered_spans, "");
    count("recovered:false spans", v.unrecovered_spans, "");
    count("  of them in the same epoch", v.unrecovered_same_epoch, "");
    count("acknowledged entries in recovered:false spans", v.declared_lost, "entries");
    count("subscriptions ended by the edge", v.dropped, "");
    for (code, n) in &v.closes {
        count(&format!("connections closed: {code}"), *n, "");
    }
    let f = &outcome.faults;
    count("faults: edge killed", f.edge_kills, "");
    count("faults: edge drained (SIGTERM)", f.edge_drains, "");
    count("faults: broker killed", f.broker_kills, "");
    count("faults: broker stopped (SIGTERM)", f.broker_stops, "");
    count("faults: Redis master restarted empty", f.redis_restarts, "");
    for (code, n) in &outcome.publishing.retried {
        count(&format!("publish attempts retried: {code}"), *n, "");
    }
    count("publishes given up", outcome.publishing.gave_up, "");
    count("violations", v.violations, "");
    report.note(format!("seed {}", outcome.seed));
}
