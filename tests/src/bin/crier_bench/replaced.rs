//! The replaced design (`tests/replaced-design/`: Node `ws` + ioredis, notifications over Redis pub/sub) as a
//! [`Deployment`], for side-by-side runs: its files are written into the deployment's temporary directory,
//! `npm ci` installs its two dependencies there, then `redis-server` and `node server.js` start. Its
//! publishers `PUBLISH conversation:<id>` on that Redis, as its job workers do.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::Command;

use crate::deployment::{Deployment, TargetArgs, free_addr, spawn};

/// The replaced design's files, built into the bench so it runs from any directory.
const FILES: [(&str, &str); 3] = [
    ("server.js", include_str!("../../../replaced-design/server.js")),
    ("package.json", include_str!("../../../replaced-design/package.json")),
    ("package-lock.json", include_str!("../../../replaced-design/package-lock.json")),
];

/// Bound on `npm ci` (a download of two small packages and their few dependencies).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(180);

impl Deployment {
    /// `redis-server` + `node server.js` of the replaced design, on free loopback ports.
    pub async fn replaced(target: &TargetArgs) -> anyhow::Result<Self> {
        let logs = TempDir::new()?;
        let dir = logs.path().to_path_buf();
        install(&dir).await?;
        let (ws, unused_grpc) = (free_addr()?, free_addr()?);
        let mut deployment = Self::spawned(target, ws, unused_grpc, logs);
        deployment.path = "/".to_owned();
        let redis = deployment.spawn_redis(&dir).await?;
        let server = dir.join("server.js").to_string_lossy().into_owned();
        let (port, redis_env) = (format!("PORT={}", ws.port()), format!("REDIS_URL={redis}"));
        // `env` execs node, so the process id (for CPU and RSS figures) is node's.
        let args = ["HOST=127.0.0.1", port.as_str(), redis_env.as_str(), "node", server.as_str()];
        let node = spawn("node server.js", Path::new("env"), &args, &dir)?;
        deployment.edge_pid = node.child.id();
        deployment.push(node);
        deployment.wait_listening(&[ws]).await?;
        deployment.publish_redis = Some(redis);
        Ok(deployment)
    }
}

/// Writes the files into `dir` and runs `npm ci` there.
async fn install(dir: &Path) -> anyhow::Result<()> {
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(dir).kill_on_drop(true);
    let output = tokio::time::timeout(INSTALL_TIMEOUT, npm.output())
        .await
        .context("npm ci timed out (it needs the npm registry or a warm npm cache)")?
        .context("running npm (install Node.js 18+ with npm: apt-get install -y nodejs npm)")?;
    if !output.status.success() {
        bail!("npm ci failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
