//! The edge's Prometheus metrics. Every handle, labelled ones included, is registered once when the edge
//! starts; recording is then an atomic operation on a held handle, with no lookup or allocation. The hot
//! path records per notification (never per recipient): deliveries and drops are added as counts.
//!
//! | Metric | Kind | Labels |
//! |---|---|---|
//! | `crier_edge_connections` | gauge | |
//! | `crier_edge_sessions_authenticated` | gauge | |
//! | `crier_edge_subscriptions` | gauge | |
//! | `crier_edge_deliveries_total` | counter | |
//! | `crier_edge_drops_total` | counter | `reason`: `slow_consumer` (per recipient), `unreadable_entry`, `invalid_utf8` (payload not UTF-8: skipped, never sent) |
//! | `crier_edge_closes_total` | counter | `code`: a close code, or `peer` when the client went first |
//! | `crier_edge_outbound_queue_bytes` | histogram | bytes a socket had queued when its writer took them |
//! | `crier_edge_partitions_read` | gauge | |
//! | `crier_edge_partition_read_lag_seconds` | histogram | age of the oldest entry of each read batch |
//! | `crier_edge_delivery_latency_seconds` | histogram | broker accept → frames queued for every recipient |
//! | `crier_edge_redis_errors_total` | counter | |
//! | `crier_edge_reader_gaps_total` | counter | a partition reader found entries trimmed before it read them |
//! | `crier_edge_recoveries_total` | counter | `outcome` of a `subscribe` with `since`: `recovered` (caught up, live), `not_recovered` (position trimmed, of another epoch, or not a position), `beyond_scan_bound` (`--max-recovery-scan`), `unavailable` (log read failed), `interrupted` (lost its place on the way: 4008) |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::error::CloseCode;
use crier_store::log::Unsendable;

/// Handles of the edge's metrics. Cheap to clone (each handle is an `Arc`).
#[derive(Clone)]
pub struct EdgeMeters {
    /// Open WebSocket sessions.
    pub connections: Gauge,
    /// Sessions that have authenticated.
    pub authenticated: Gauge,
    /// Live (session, conversation) subscriptions.
    pub subscriptions: Gauge,
    /// Partitions with a running reader.
    pub partitions_read: Gauge,
    /// Bytes a socket had queued when its writer drained them.
    pub queue_bytes: Histogram,
    /// Failed log calls of partition readers.
    pub redis_errors: Counter,
    /// Age of the oldest entry of a read batch.
    pub read_lag: Histogram,
    /// Entries skipped because they do not decode or have an unknown format version.
    unreadable: Counter,
    /// Entries skipped because their payload is not UTF-8.
    not_utf8: Counter,
    /// Times a partition reader found entries trimmed before it read them (its sessions closed with 4008).
    pub reader_gaps: Counter,
    /// Recoveries by outcome, in [`Recovery`] order.
    recoveries: [Counter; 5],
    deliveries: Counter,
    slow_consumer_drops: Counter,
    delivery_latency: Histogram,
    // Bound: one counter per close code (a fixed list); every metric label here is a constant, never a
    // user or conversation id, so the recorder holds a fixed set of series (drained by its upkeep thread).
    closes: Vec<(CloseCode, Counter)>,
    peer_closes: Counter,
}

impl EdgeMeters {
    /// Registers the metrics with the process's recorder (installing it if needed).
    #[must_use]
    pub fn new() -> Self {
        crier_store::telemetry::prometheus();
        let drops = |reason: &'static str| counter!("crier_edge_drops_total", "reason" => reason);
        let closes = CloseCode::ALL
            .iter()
            .map(|&code| (code, counter!("crier_edge_closes_total", "code" => code.code().to_string())))
            .collect();
        Self {
            connections: gauge!("crier_edge_connections"),
            authenticated: gauge!("crier_edge_sessions_authenticated"),
            subscriptions: gauge!("crier_edge_subscriptions"),
            partitions_read: gauge!("crier_edge_partitions_read"),
            queue_bytes: histogram!("crier_edge_outbound_queue_bytes"),
            redis_errors: counter!("crier_edge_redis_errors_total"),
            read_lag: histogram!("crier_edge_partition_read_lag_seconds"),
            unreadable: drops("unreadable_entry"),
            not_utf8: drops("invalid_utf8"),
            reader_gaps: counter!("crier_edge_reader_gaps_total"),
            recoveries: Recovery::ALL
                .map(|outcome| counter!("crier_edge_recoveries_total", "outcome" => outcome.label())),
            deliveries: counter!("crier_edge_deliveries_total"),
            slow_consumer_drops: drops("slow_consumer"),
            delivery_latency: histogram!("crier_edge_delivery_latency_seconds"),
            closes,
            peer_closes: counter!("crier_edge_closes_total", "code" => "peer"),
        }
    }

    /// One notification fanned out: `delivered` outboxes took it, `dropped` were full; it was accepted by
    /// the broker at `published_at_ms`.
    pub fn delivered(&self, delivered: usize, dropped: usize, published_at_ms: u64) {
        self.deliveries.increment(delivered as u64);
        if dropped > 0 {
            self.slow_consumer_drops.increment(dropped as u64);
        }
        self.delivery_latency.record(age(published_at_ms).as_secs_f64());
    }

    /// A partition reader skipped an entry.
    pub fn skipped(&self, why: Unsendable) {
        match why {
            Unsendable::Unreadable => self.unreadable.increment(1),
            Unsendable::NotUtf8 => self.not_utf8.increment(1),
        }
    }

    /// A recovery ended with `outcome`.
    pub fn recovery(&self, outcome: Recovery) {
        self.recoveries[outcome as usize].increment(1);
    }

    /// A session ended: with `code` sent by the edge, or `None` when the peer closed or vanished.
    pub fn closed(&self, code: Option<CloseCode>) {
        let counter = code.and_then(|code| self.closes.iter().find(|(c, _)| *c == code).map(|(_, c)| c));
        counter.unwrap_or(&self.peer_closes).increment(1);
    }
}

/// How a `subscribe` with `since` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Everything missed was delivered; the subscription is live.
    Recovered,
    /// `recovered:false`: the position was trimmed, is of another epoch or partition, or is no position.
    NotRecovered,
    /// `recovered:false`: more than `--max-recovery-scan` entries lie between the position and the end.
    BeyondScanBound,
    /// The log could not be read (`recovered:false`, or `unsubscribed` with a reason mid-way).
    Unavailable,
    /// Entries still to deliver were trimmed or lost on the way: closed with 4008.
    Interrupted,
}

impl Recovery {
    const ALL: [Self; 5] =
        [Self::Recovered, Self::NotRecovered, Self::BeyondScanBound, Self::Unavailable, Self::Interrupted];

    fn label(self) -> &'static str {
        match self {
            Self::Recovered => "recovered",
            Self::NotRecovered => "not_recovered",
            Self::BeyondScanBound => "beyond_scan_bound",
            Self::Unavailable => "unavailable",
            Self::Interrupted => "interrupted",
        }
    }
}

impl Default for EdgeMeters {
    fn default() -> Self {
        Self::new()
    }
}

/// Time since `ms` (Unix milliseconds); zero for timestamps in the future.
#[must_use]
pub fn age(ms: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    now.saturating_sub(Duration::from_millis(ms))
}
