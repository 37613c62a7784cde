//! The soak's checks and figures: exact delivery accounting per conversation ([`Deliveries`]), RSS growth
//! after warm-up, latency per minute, and publishing errors. Every failed check goes to
//! [`Report::fail`], which makes the bench exit non-zero after printing the whole report.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::publisher::PublishStats;
use crate::recorder::{Percentiles, Recorder};
use crate::report::Report;
use crate::rss_series::{GROWTH_LIMIT, NOISE_FLOOR_KIB};
use crate::soak::{Observed, SoakArgs};

/// Deliveries expected (published × subscribers, per conversation) against those counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub published: u64,
    pub expected: u64,
    pub received: u64,
    /// Deliveries missing, summed over conversations that received fewer than expected.
    pub lost: u64,
    /// Deliveries beyond the expected, summed over conversations that received more.
    pub duplicated: u64,
    /// Conversations with any difference.
    pub conversations_off: u64,
}

impl Deliveries {
    /// Compares per conversation: conversation `c` of `published.len()` has the subscribers connection
    /// `i` of `connections` has when `i % published.len() == c`.
    pub fn count(published: &[u64], received: &[u64], connections: usize) -> Self {
        let mut tally = Self::default();
        for (c, &sent) in published.iter().enumerate() {
            let expected = sent * subscribers(c, published.len(), connections);
            let got = received.get(c).copied().unwrap_or(0);
            tally.published += sent;
            tally.expected += expected;
            tally.received += got;
            tally.lost += expected.saturating_sub(got);
            tally.duplicated += got.saturating_sub(expected);
            tally.conversations_off += u64::from(got != expected);
        }
        tally
    }

    /// Deliveries expected in all for `published` per conversation.
    pub fn expected_total(published: &[u64], connections: usize) -> u64 {
        Self::count(published, &[], connections).expected
    }
}

/// Subscribers of conversation `c` of `conversations` when connection `i` subscribes to `i % conversations`.
fn subscribers(c: usize, conversations: usize, connections: usize) -> u64 {
    (connections / conversations + usize::from(c < connections % conversations)) as u64
}

pub fn parameters(args: &SoakArgs) -> serde_json::Value {
    json!({
        "connections": args.connections, "conversations": args.conversations, "rate_per_s": args.rate,
        "duration_s": args.duration.as_secs_f64(), "sample_every_s": args.sample_every.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(), "retention_max_age_s": args.retention_max_age.as_secs_f64(),
        "workers": args.workers, "payload_bytes": 204,
        "growth_limit_percent": 100.0 * GROWTH_LIMIT, "noise_floor_mib": NOISE_FLOOR_KIB / 1024,
    })
}

/// Adds every figure of the run and fails the report on loss, duplicates or RSS growth.
pub fn judge(report: &mut Report, args: &SoakArgs, observed: &Observed, deliveries: &Deliveries) {
    report.figure("connections held", args.connections as f64, "", None);
    report.figure("notifications published", deliveries.published as f64, "", None);
    report.figure("deliveries expected", deliveries.expected as f64, "frames", None);
    report.figure("deliveries received", deliveries.received as f64, "frames", None);
    report.figure("deliveries lost", deliveries.lost as f64, "frames", None);
    report.figure("deliveries duplicated", deliveries.duplicated as f64, "frames", None);
    if deliveries.lost > 0 || deliveries.duplicated > 0 {
        report.fail(format!(
            "{} deliveries lost and {} duplicated, over {} conversations",
            deliveries.lost, deliveries.duplicated, deliveries.conversations_off
        ));
    }
    latency(report, observed);
    memory(report, args, observed);
}

fn latency(report: &mut Report, observed: &Observed) {
    let whole = Recorder::percentiles_of(&observed.total);
    report.figure("probe latency p50 (whole run)", whole.p50, "ms", None);
    report.figure("probe latency p99 (whole run)", whole.p99, "ms", None);
    report.figure("probe latency max (whole run)", whole.max, "ms", None);
    for (minute, p) in observed.minutes.iter().enumerate() {
        report.note(minute_line(minute + 1, p));
    }
}

fn minute_line(minute: usize, p: &Percentiles) -> String {
    format!(
        "latency minute {minute:>2}: {:>7} frames, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        p.count, p.p50, p.p90, p.p99, p.max
    )
}

fn memory(report: &mut Report, args: &SoakArgs, observed: &Observed) {
    let every = args.sample_every.as_secs_f64();
    for line in observed.rss.lines() {
        report.note(format!("{line} (every {every:.0} s)"));
    }
    for (series, growth) in observed.rss.series.iter().zip(observed.rss.growth(args.warmup)) {
        if series.vanished {
            report.fail(format!("{} (pid {}) exited during the run", series.name, series.pid));
        }
        let Some(growth) = growth else {
            report.note(format!("{}: no RSS sample after warm-up; growth not judged", series.name));
            continue;
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        report.figure(format!("{} RSS after warm-up", growth.name), mib(growth.baseline_kib), "MiB", None);
        report.figure(format!("{} RSS peak after warm-up", growth.name), mib(growth.peak_kib), "MiB", None);
        report.figure(format!("{} RSS at the end", growth.name), mib(growth.last_kib), "MiB", None);
        report.figure(format!("{} RSS growth after warm-up", growth.name), growth.percent(), "%", None);
        if growth.excessive() {
            report.fail(format!(
                "{} RSS grew after warm-up from {:.1} to {:.1} MiB ({:+.1} %; limit {:.0} % and {} MiB)",
                growth.name,
                mib(growth.baseline_kib),
                mib(growth.peak_kib),
                growth.percent(),
                100.0 * GROWTH_LIMIT,
                NOISE_FLOOR_KIB / 1024
            ));
        }
    }
}

/// Fails on refused publishes and on connections the server closed.
pub fn check_publishing(report: &mut Report, stats: &PublishStats, closed: u64) {
    let failed = stats.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = stats.first_error().unwrap_or_default();
        report.fail(format!("{failed} publishes failed, first: {first}"));
    }
    if closed > 0 {
        report.fail(format!("{closed} connections were closed by the server during the run"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 7 connections over 3 conversations: 3, 2, 2 subscribers; a missing and an extra delivery in
    /// different conversations are both reported, not netted out.
    #[test]
    fn deliveries_are_checked_per_conversation() {
        let published = [10, 10, 9];
        assert_eq!(Deliveries::expected_total(&published, 7), 30 + 20 + 18);
        let exact = Deliveries::count(&published, &[30, 20, 18], 7);
        assert_eq!((exact.lost, exact.duplicated, exact.conversations_off), (0, 0, 0));
        let off = Deliveries::count(&published, &[29, 21, 18], 7);
        assert_eq!((off.lost, off.duplicated, off.conversations_off), (1, 1, 2));
        assert_eq!(off.received, off.expected);
    }
}
