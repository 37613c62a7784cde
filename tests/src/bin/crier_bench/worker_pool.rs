//! [`WorkerPool`]: the bench's side of its worker processes (see `worker` for the line protocol). One task
//! per worker reads its reports into counters the scenarios poll; workers are killed if the pool is dropped
//! without [`WorkerPool::stop`] (Ctrl-C, panic, error).

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::fleet::FleetSpec;
use crate::{progress, worker};

/// Bound on a worker starting its runtime.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What one worker last reported.
#[derive(Debug, Default)]
struct Reports {
    hello: AtomicBool,
    frames: AtomicU64,
    open: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    /// µs from `go` to every attempt done; 0 until then.
    ready_us: AtomicU64,
    exited: AtomicBool,
    error: Mutex<Option<String>>,
    /// Frames per conversation index, reported on the way out.
    conversations: Mutex<Vec<u64>>,
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    reports: Arc<Reports>,
    /// The task reading the worker's reports; it ends at the worker's end of output.
    reader: tokio::task::JoinHandle<()>,
    /// `go` was sent.
    started: bool,
    /// Connections it opens.
    connections: usize,
}

/// Sums over every worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub frames: u64,
    pub open: u64,
    pub failed: u64,
    pub closed: u64,
}

/// Running worker processes.
#[derive(Default)]
pub struct WorkerPool {
    workers: Vec<Worker>,
}

impl WorkerPool {
    /// Starts one worker per spec and waits until each is ready for `go`.
    pub async fn spawn(&mut self, specs: &[FleetSpec]) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the crier-bench binary")?;
        let before = self.workers.len();
        for spec in specs {
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(worker::command_line(spec))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting worker {}", exe.display()))?;
            let reports = Arc::new(Reports::default());
            let stdout = child.stdout.take().context("worker stdout")?;
            let reader = tokio::spawn(read_reports(stdout, Arc::clone(&reports)));
            let stdin = child.stdin.take();
            let connections = spec.connections;
            self.workers.push(Worker { child, stdin, reports, reader, started: false, connections });
        }
        let deadline = Instant::now() + HELLO_TIMEOUT;
        while !self.workers[before..].iter().all(|w| w.reports.hello.load(Ordering::Relaxed)) {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("workers did not start within {HELLO_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Starts the workers spawned last, shows their progress, and returns once all have finished
    /// connecting: the time the slowest worker took. Fails if no connection at all is open.
    pub async fn go_and_wait(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let pending: usize = self.workers.iter().filter(|w| !w.started).map(|w| w.connections).sum();
        self.go().await?;
        let bar = progress::counter("connecting", self.totals().open + pending as u64);
        let took = self.wait_ready(&bar, timeout).await;
        bar.finish_and_clear();
        if self.totals().open == 0 {
            bail!("no connection opened: {}", self.first_error().unwrap_or_default());
        }
        took
    }

    /// Tells every worker that has not started yet to start connecting.
    async fn go(&mut self) -> anyhow::Result<()> {
        for worker in self.workers.iter_mut().filter(|w| !w.started) {
            if let Some(stdin) = worker.stdin.as_mut() {
                stdin.write_all(b"go\n").await.context("starting a worker")?;
                worker.started = true;
            }
        }
        Ok(())
    }

    /// Waits until every worker has finished connecting, showing open connections on `progress`.
    /// Returns the time the slowest worker took.
    async fn wait_ready(&self, progress: &ProgressBar, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            progress.set_position(self.totals().open);
            let ready: Vec<u64> =
                self.workers.iter().map(|w| w.reports.ready_us.load(Ordering::Relaxed)).collect();
            if ready.iter().all(|&us| us > 0) {
                return Ok(Duration::from_micros(ready.into_iter().max().unwrap_or(0)));
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("connections not open within {timeout:?} ({:?})", self.totals());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The counters of every worker, summed.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for worker in &self.workers {
            let r = &worker.reports;
            totals.frames += r.frames.load(Ordering::Relaxed);
            totals.open += r.open.load(Ordering::Relaxed);
            totals.failed += r.failed.load(Ordering::Relaxed);
            totals.closed += r.closed.load(Ordering::Relaxed);
        }
        totals
    }

    /// The first open failure any worker reported.
    pub fn first_error(&self) -> Option<String> {
        self.workers
            .iter()
            .find_map(|w| w.reports.error.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// Process ids of the workers, for CPU accounting.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    /// Closes every worker's input (they disconnect and exit) and waits for them, killing stragglers.
    /// Returns the frames per conversation index the workers reported on the way out, summed.
    pub async fn stop(mut self) -> Vec<u64> {
        for worker in &mut self.workers {
            worker.stdin = None;
        }
        let mut sums: Vec<u64> = Vec::new();
        for worker in &mut self.workers {
            let exited = tokio::time::timeout(Duration::from_secs(10), worker.child.wait()).await;
            if exited.is_err() {
                let _ = worker.child.kill().await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut worker.reader).await;
            let counts = worker.reports.conversations.lock().unwrap_or_else(PoisonError::into_inner);
            sums.resize(sums.len().max(counts.len()), 0);
            sums.iter_mut().zip(counts.iter()).for_each(|(sum, n)| *sum += n);
        }
        sums
    }

    fn check_alive(&self) -> anyhow::Result<()> {
        if self.workers.iter().any(|w| w.reports.exited.load(Ordering::Relaxed)) {
            let error = self.first_error().unwrap_or_default();
            bail!("a worker exited early {error}");
        }
        Ok(())
    }
}

async fn read_reports(stdout: ChildStdout, reports: Arc<Reports>) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split(' ');
        let mut number = || words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        match line.split(' ').next() {
            Some("hello") => reports.hello.store(true, Ordering::Relaxed),
            Some("count") => {
                number();
                for counter in [&reports.frames, &reports.open, &reports.failed, &reports.closed] {
                    counter.store(number(), Ordering::Relaxed);
                }
            }
            Some("ready") => {
                number();
                reports.ready_us.store(number().max(1), Ordering::Relaxed);
            }
            Some("conversations") => {
                let counts = line.split(' ').skip(1).map(|w| w.parse().unwrap_or(0)).collect();
                *reports.conversations.lock().unwrap_or_else(PoisonError::into_inner) = counts;
            }
            Some("error") => {
                let text = line.trim_start_matches("error ").to_owned();
                *reports.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
            }
            _ => {}
        }
    }
    reports.exited.store(true, Ordering::Relaxed);
}
