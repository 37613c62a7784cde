//! [`CrierProcess`]: the built `crier` binary as a child process, for what only a real process shows: signal
//! handling, drain timing and the exit code. Its stderr (the logs) is kept and printed if the test fails.
//!
//! The binary is the one `cargo build --workspace --all-targets` (which `.ci/run` runs before the tests)
//! puts next to this test's own executable: `target/<profile>/crier`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::deadline::within_for;

/// A running `crier` child, killed on drop.
pub struct CrierProcess {
    child: Child,
    /// Collects stderr until the process exits.
    stderr: Option<JoinHandle<String>>,
}

/// Where `cargo build` put the `crier` binary of this profile.
pub fn crier_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/crier
    let profile_dir =
        exe.parent().and_then(|deps| deps.parent()).context("test executable has no profile dir")?;
    let binary = profile_dir.join("crier");
    if !binary.exists() {
        bail!("{} does not exist: run `cargo build --workspace --all-targets` first", binary.display());
    }
    Ok(binary)
}

impl CrierProcess {
    /// Starts `crier <args>` with `envs` added to the environment (of the child only).
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::spawn_binary(&crier_binary()?, args, envs, None)
    }

    /// Starts `binary <args>` (a `crier` binary given by path) with `envs` added. Its stderr is kept in
    /// memory, or appended to `log` when given (for long runs and processes restarted many times).
    pub fn spawn_binary(
        binary: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
            None => Stdio::piped(),
        };
        command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).kill_on_drop(true);
        for &(key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("spawning {} {args:?}", binary.display()))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            tokio::spawn(async move {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text).await;
                text
            })
        });
        Ok(Self { child, stderr })
    }

    /// Kills the process (SIGKILL, a crash) and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        within_for(Duration::from_secs(5), "crier to die", self.child.kill()).await??;
        Ok(())
    }

    /// Its exit status if it has exited, without waiting.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod (via `kill`, to stay free of `unsafe`).
    pub async fn sigterm(&self) -> anyhow::Result<()> {
        let pid = self.child.id().context("process already reaped")?;
        let status = within_for(Duration::from_secs(5), "kill -TERM", async {
            Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await
        })
        .await??;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed: {status}");
        Ok(())
    }

    /// Waits up to `limit` for the process to exit; returns its status and its stderr.
    pub async fn wait(mut self, limit: Duration) -> anyhow::Result<(ExitStatus, String)> {
        let status = within_for(limit, "crier to exit", self.child.wait()).await;
        let status = match status {
            Ok(status) => status?,
            Err(err) => {
                let _ = self.child.kill().await;
                let logs = self.logs().await;
                bail!("{err}; its log:\n{logs}");
            }
        };
        Ok((status, self.logs().await))
    }

    async fn logs(&mut self) -> String {
        match self.stderr.take() {
            Some(handle) => within_for(Duration::from_secs(5), "crier's stderr", handle)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        }
    }
}
