//! [`Recorder`]: publish-to-frame latencies of one process, in microseconds, in one hdrhistogram.
//!
//! Receivers lock it once per socket read (not per frame); critical sections hold no await.

use std::sync::{Mutex, MutexGuard, PoisonError};

use hdrhistogram::Histogram;

use crate::payload::Clock;

/// Highest latency the histogram tracks, in microseconds (larger values are clamped to it).
const MAX_US: u64 = 60_000_000;

/// Latencies measured against one [`Clock`].
pub struct Recorder {
    /// The clock the publisher stamps payloads with.
    pub clock: Clock,
    histogram: Mutex<Histogram<u64>>,
}

/// Percentiles of a run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Recorder {
    /// An empty recorder for payloads stamped by `clock`.
    pub fn new(clock: Clock) -> anyhow::Result<Self> {
        let histogram = Histogram::new_with_bounds(1, MAX_US, 3)?;
        Ok(Self { clock, histogram: Mutex::new(histogram) })
    }

    /// The histogram, for recording a batch of samples.
    pub fn lock(&self) -> MutexGuard<'_, Histogram<u64>> {
        self.histogram.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a frame received at `now_ns` carrying a payload stamped `sent_ns`.
    pub fn record(histogram: &mut Histogram<u64>, sent_ns: u64, now_ns: u64) {
        let us = now_ns.saturating_sub(sent_ns) / 1_000;
        histogram.saturating_record(us.clamp(1, MAX_US));
    }

    /// Forgets everything recorded (after a warm-up).
    pub fn reset(&self) {
        self.lock().reset();
    }

    /// Samples recorded so far.
    pub fn count(&self) -> u64 {
        self.lock().len()
    }

    /// The percentiles recorded so far.
    pub fn percentiles(&self) -> Percentiles {
        Self::percentiles_of(&self.lock())
    }

    /// The percentiles of `histogram`.
    pub fn percentiles_of(histogram: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1_000.0;
        Percentiles {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}
