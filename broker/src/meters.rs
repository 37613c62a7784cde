//! The broker's Prometheus metrics, registered once per server so that recording one is a few atomic
//! operations on a held handle: no name lookup, no label formatting, no allocation per publish.
//!
//! | Metric | Kind | Labels |
//! |---|---|---|
//! | `crier_broker_publishes_total` | counter | `result`: `ok`, `invalid_argument`, `unavailable`, `internal` |
//! | `crier_broker_publish_latency_seconds` | histogram | one sample per RPC (a batch counts once) |
//! | `crier_broker_redis_errors_total` | counter | |

use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

use crate::error::BrokerError;
use crier_store::log::LogError;

/// Handles of the broker's metrics.
#[derive(Clone)]
pub struct BrokerMeters {
    ok: Counter,
    invalid_argument: Counter,
    unavailable: Counter,
    internal: Counter,
    latency: Histogram,
    redis_errors: Counter,
}

impl BrokerMeters {
    /// Registers the metrics with the process's recorder (installing it if needed).
    #[must_use]
    pub fn new() -> Self {
        crier_store::telemetry::prometheus();
        let publishes = |result: &'static str| counter!("crier_broker_publishes_total", "result" => result);
        Self {
            ok: publishes("ok"),
            invalid_argument: publishes("invalid_argument"),
            unavailable: publishes("unavailable"),
            internal: publishes("internal"),
            latency: histogram!("crier_broker_publish_latency_seconds"),
            redis_errors: counter!("crier_broker_redis_errors_total"),
        }
    }

    /// Counts one publish by its outcome and records how long it took.
    pub fn publish<T>(&self, result: &Result<T, BrokerError>, elapsed: Duration) {
        self.latency.record(elapsed.as_secs_f64());
        self.count(result);
    }

    /// Counts each item of a batch or broadcast by its outcome; records the call's duration once.
    pub fn publish_many<T>(&self, results: &[Result<T, BrokerError>], elapsed: Duration) {
        self.latency.record(elapsed.as_secs_f64());
        for result in results {
            self.count(result);
        }
    }

    fn count<T>(&self, result: &Result<T, BrokerError>) {
        match result {
            Ok(_) => self.ok.increment(1),
            Err(
                BrokerError::InvalidConversationId(_)
                | BrokerError::InvalidPayload(_)
                | BrokerError::InvalidIdempotencyKey(_)
                | BrokerError::InvalidRequest(_),
            ) => {
                self.invalid_argument.increment(1);
            }
            Err(BrokerError::Log(LogError::Unavailable { .. })) => {
                self.redis_errors.increment(1);
                self.unavailable.increment(1);
            }
            Err(_) => self.internal.increment(1),
        }
    }
}

impl Default for BrokerMeters {
    fn default() -> Self {
        Self::new()
    }
}
