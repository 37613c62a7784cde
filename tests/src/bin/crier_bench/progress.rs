//! Progress bars on stderr (indicatif), so a long run shows that it is alive and how it is doing; the
//! table and JSON come at the end.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

/// How often a timed phase refreshes its status line.
const REFRESH: Duration = Duration::from_millis(250);

/// A bar counting up to `len` (connections opened, ...).
pub fn counter(label: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_owned());
    bar
}

/// Shows a bar for a phase of `duration`, refreshing `status()` as its message, until it is over.
pub async fn timed(label: &str, duration: Duration, status: &(dyn Fn() -> String + Sync)) {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:40}] {elapsed}/{duration} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_owned());
    let start = Instant::now();
    let end = start + duration;
    while Instant::now() < end {
        tokio::time::sleep(REFRESH.min(end - Instant::now())).await;
        bar.set_position(start.elapsed().as_millis() as u64);
        bar.set_message(status());
    }
    bar.finish_and_clear();
}
