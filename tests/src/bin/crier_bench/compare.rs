//! Scenario `compare`: the replaced design (Node `ws` + Redis pub/sub, `replaced`) and crier through Redis
//! (`crier broker` + `crier edge`), side by side in one run with the same load generator: C conversations ×
//! 2 subscribers, 204-byte payloads, at a fixed rate and then unlimited. Reports each system's latency,
//! deliveries/s and CPU-s per million deliveries of every process, and crier's ratios to the replaced design
//! (absolute figures drift between runs and machines; ratios of one run do not). With `--with-dev`, `crier
//! dev` too: the Publish API and delivery in one process without Redis, the floor under crier's figures.

use clap::Args;
use serde_json::json;

use crate::deployment::{Deployment, TargetArgs};
use crate::latency::{self, Plan, RedisArgs, SERVERS_CPU_PER_MILLION};
use crate::report::{Report, Target};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The load of the `redis` scenario; `--rate` is that of the fixed-rate phase.
    #[command(flatten)]
    pub load: RedisArgs,
    /// Arguments passed to `crier broker` (e.g. `--broker-arg=--worker-threads=1`).
    #[arg(long, allow_hyphen_values = true)]
    pub broker_arg: Vec<String>,
    /// Also measure `crier dev` (Publish, an in-memory log and delivery in one process, no Redis): what the
    /// gRPC Publish API and the edge cost without the log's hop, the floor of any design behind that API.
    #[arg(long)]
    pub with_dev: bool,
}

/// The two loads of a comparison: the fixed rate, then as fast as deliveries follow.
fn loads(args: &CompareArgs) -> [(&'static str, Option<f64>); 2] {
    [("at rate", Some(args.load.rate)), ("unlimited", None)]
}

pub async fn run(target: &TargetArgs, args: &CompareArgs) -> anyhow::Result<Report> {
    let load = &args.load;
    let parameters = json!({
        "conversations": load.conversations, "subscribers_per_conversation": load.per_conversation,
        "rate_per_s": load.rate, "duration_s": load.timing.duration.as_secs_f64(), "payload_bytes": 204,
    });
    let mut report = Report::new("compare", parameters);
    let replaced = Deployment::replaced(target).await?;
    let replaced_parts = measure_both("replaced", &replaced, target, args, &mut report).await?;
    drop(replaced);
    let crier = Deployment::redis(target, &args.broker_arg).await?;
    let crier_parts = measure_both("crier", &crier, target, args, &mut report).await?;
    drop(crier);
    for (((load, _), old), new) in loads(args).iter().zip(&replaced_parts).zip(&crier_parts) {
        ratios(&mut report, "crier", load, old, new);
    }
    if args.with_dev {
        let dev = Deployment::dev(target).await?;
        let dev_parts = measure_both("crier dev", &dev, target, args, &mut report).await?;
        drop(dev);
        for (((load, _), old), new) in loads(args).iter().zip(&replaced_parts).zip(&dev_parts) {
            ratios(&mut report, "crier dev", load, old, new);
        }
    }
    Ok(report)
}

/// Both loads on one deployment; each part's figures join `report` prefixed with `system` and the load.
async fn measure_both(
    system: &str,
    deployment: &Deployment,
    target: &TargetArgs,
    args: &CompareArgs,
    report: &mut Report,
) -> anyhow::Result<Vec<Report>> {
    let mut parts = Vec::new();
    for (load, rate) in loads(args) {
        let plan = Plan {
            conversations: args.load.conversations,
            per_conversation: args.load.per_conversation,
            rate,
            timing: args.load.timing.clone(),
            prefix: "compare",
            p99_target_ms: 0.7,
        };
        let part = latency::measure("compare", deployment, target, &plan).await?;
        for figure in &part.figures {
            let target = if rate.is_some() { figure.target } else { None };
            report.figure(format!("{system} {load}: {}", figure.name), figure.value, figure.unit, target);
        }
        report.notes.extend(part.notes.iter().map(|note| format!("{system} {load}: {note}")));
        parts.push(part);
    }
    Ok(parts)
}

/// `system` ÷ replaced for the figures the comparison is about; CPU ≤ 1 and capacity ≥ 1 are the targets.
fn ratios(report: &mut Report, system: &str, load: &str, replaced: &Report, crier: &Report) {
    let ratio = |name: &str| Some(value(crier, name)? / value(replaced, name)?);
    if let Some(cpu) = ratio(SERVERS_CPU_PER_MILLION) {
        report.figure(
            format!("{system}/replaced {load}: CPU per delivery"),
            cpu,
            "×",
            Some(Target::AtMost(1.0)),
        );
    }
    if let Some(rate) = ratio("deliveries per second") {
        report.figure(format!("{system}/replaced {load}: deliveries/s"), rate, "×", None);
    }
    if let Some(p99) = ratio("latency p99") {
        report.figure(format!("{system}/replaced {load}: p99 latency"), p99, "×", Some(Target::AtMost(1.0)));
    }
}

fn value(report: &Report, name: &str) -> Option<f64> {
    report.figures.iter().find(|figure| figure.name == name).map(|figure| figure.value).filter(|v| *v > 0.0)
}
