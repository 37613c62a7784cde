//! [`RssWatch`]: the soak's memory samples. Every watched process's resident size (`VmRSS`) is sampled at a
//! fixed interval; after the run, [`RssWatch::growth`] compares each process's samples after warm-up with
//! its baseline, the first sample taken at or after the end of warm-up.
//!
//! A process has grown when a later sample exceeds the baseline by more than [`GROWTH_LIMIT`] *and* by
//! more than [`NOISE_FLOOR_KIB`]: the floor keeps allocator noise in a small process (a 15 MiB broker
//! moving by 1 MiB is 7 %) from failing a run, while a leak of the issue-14 kind (tens of MiB per minute)
//! crosses it within a minute.

use std::time::Duration;

use crate::process_usage::rss_kib;

/// Largest accepted growth after warm-up, as a fraction of the baseline.
pub const GROWTH_LIMIT: f64 = 0.05;
/// Growth below this many KiB is noise, whatever the fraction (4 MiB).
pub const NOISE_FLOOR_KIB: u64 = 4 * 1024;

/// The samples of one process: (time since the run started, RSS in KiB).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: &'static str,
    pub pid: u32,
    pub samples: Vec<(Duration, u64)>,
    /// The process could not be read at some sample: it exited.
    pub vanished: bool,
}

/// How one process's RSS moved after warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Growth {
    pub name: &'static str,
    /// The first sample at or after the end of warm-up, in KiB.
    pub baseline_kib: u64,
    /// The largest sample after it, in KiB.
    pub peak_kib: u64,
    /// The last sample, in KiB.
    pub last_kib: u64,
}

impl Growth {
    /// Growth of the peak over the baseline, in percent.
    pub fn percent(&self) -> f64 {
        100.0 * (self.peak_kib as f64 - self.baseline_kib as f64) / self.baseline_kib.max(1) as f64
    }

    /// Whether the growth exceeds both the limit and the noise floor.
    pub fn excessive(&self) -> bool {
        let grown = self.peak_kib.saturating_sub(self.baseline_kib);
        grown > NOISE_FLOOR_KIB && grown as f64 > GROWTH_LIMIT * self.baseline_kib as f64
    }
}

/// RSS samples of several processes.
#[derive(Debug, Clone)]
pub struct RssWatch {
    pub series: Vec<Series>,
}

impl RssWatch {
    /// Watches `processes` (name, pid).
    pub fn new(processes: &[(&'static str, u32)]) -> Self {
        let series = processes
            .iter()
            .map(|&(name, pid)| Series { name, pid, samples: Vec::new(), vanished: false })
            .collect();
        Self { series }
    }

    /// Samples every process, at `at` since the run started.
    pub fn sample(&mut self, at: Duration) {
        for series in &mut self.series {
            match rss_kib(series.pid) {
                Ok(kib) => series.samples.push((at, kib)),
                Err(_) => series.vanished = true,
            }
        }
    }

    /// Each process's growth after `warmup`; `None` for a process with no sample after it.
    pub fn growth(&self, warmup: Duration) -> Vec<Option<Growth>> {
        self.series.iter().map(|series| growth_of(series, warmup)).collect()
    }

    /// One line per process: its samples in MiB, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.series
            .iter()
            .map(|series| {
                let mib: Vec<String> =
                    series.samples.iter().map(|&(_, kib)| format!("{:.1}", kib as f64 / 1024.0)).collect();
                format!("{} RSS MiB: {}", series.name, mib.join(" "))
            })
            .collect()
    }
}

fn growth_of(series: &Series, warmup: Duration) -> Option<Growth> {
    let mut after = series.samples.iter().skip_while(|&&(at, _)| at < warmup).map(|&(_, kib)| kib);
    let baseline_kib = after.next()?;
    let (peak_kib, last_kib) =
        after.fold((baseline_kib, baseline_kib), |(peak, _), kib| (peak.max(kib), kib));
    Some(Growth { name: series.name, baseline_kib, peak_kib, last_kib })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(samples: &[(u64, u64)]) -> Series {
        let samples = samples.iter().map(|&(s, kib)| (Duration::from_secs(s), kib)).collect();
        Series { name: "edge", pid: 0, samples, vanished: false }
    }

    /// Warm-up growth is ignored; later growth counts only beyond both 5 % and the 4 MiB floor.
    #[test]
    fn growth_is_judged_after_warmup_above_the_noise_floor() {
        let warmup = Duration::from_secs(60);
        let steady = growth_of(&series(&[(0, 10_000), (60, 50_000), (70, 52_000), (80, 51_000)]), warmup);
        let steady = steady.unwrap();
        assert_eq!((steady.baseline_kib, steady.peak_kib, steady.last_kib), (50_000, 52_000, 51_000));
        assert!(!steady.excessive(), "4 % is within the limit");
        let small = growth_of(&series(&[(60, 20_000), (70, 23_000)]), warmup).unwrap();
        assert!(!small.excessive(), "15 % of a small process but under the 4 MiB floor");
        let leak = growth_of(&series(&[(60, 50_000), (70, 60_000), (80, 70_000)]), warmup).unwrap();
        assert!(leak.excessive());
        assert!((leak.percent() - 40.0).abs() < 1e-9);
        assert!(growth_of(&series(&[(0, 1), (50, 2)]), warmup).is_none());
    }
}
