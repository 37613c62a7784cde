//! [`Browser`]: headless Debian Chromium driven over WebDriver (fantoccini ↔ a `chromedriver` we spawn on a
//! free port), for tests of crier's browser client and demo page in a real browser.
//!
//! chromedriver runs in its own process group, so Chromium and its helpers, which it starts, are killed
//! with it on drop. A missing `chromium` or `chromedriver` is an error naming the install command, never a
//! skipped test. Every wait is bounded; waits poll page state (DOM, JS values), never sleep blindly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::deadline::{within, within_for};

/// How long one browser step (a page load, a condition on the page) may take. Longer than [`crate::STEP`]:
/// a browser on a loaded CI machine is slow to start and to render.
pub const BROWSER_STEP: Duration = Duration::from_secs(15);

/// How often a condition on the page is checked while waiting for it.
const POLL: Duration = Duration::from_millis(25);

const INSTALL_HINT: &str = "install them with: apt-get install -y chromium chromium-driver";

/// Flags this machine needs (see the machine notes): no sandbox as root, no GPU, and no background
/// networking, which the closed network refuses noisily.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// One headless Chromium with its chromedriver; both killed on drop.
pub struct Browser {
    client: Client,
    driver: Child,
    /// Chromium's profile and chromedriver's log; removed on drop.
    _dir: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a Chromium session with a fresh profile.
    pub async fn start() -> anyhow::Result<Self> {
        let chromium = find_executable("chromium")?;
        let chromedriver = find_executable("chromedriver")?;
        let dir = tempfile::tempdir().context("creating a temp dir for the browser profile")?;
        let port = free_port().await?;
        let log = dir.path().join("chromedriver.log");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}; {INSTALL_HINT}", chromedriver.display()))?;
        match connect(port, &chromium, dir.path()).await {
            Ok(client) => Ok(Self { client, driver, _dir: dir }),
            Err(err) => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                kill_group(&driver);
                Err(err.context(format!("chromedriver log (last lines, newest first):\n{tail}")))
            }
        }
    }

    /// The WebDriver session, for anything the helpers here do not cover.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Loads `url` and waits for the page's `load` event.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        within_for(BROWSER_STEP, format!("the browser to load {url}"), self.client.goto(url))
            .await?
            .with_context(|| format!("loading {url}"))
    }

    /// Runs `script` (a function body: use `return`) in the page with `args` as `arguments`.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        within("a script to run in the browser", self.client.execute(script, args))
            .await?
            .with_context(|| format!("running in the browser: {script}"))
    }

    /// Polls the JS expression `condition` until it is truthy, for at most [`BROWSER_STEP`]; returns its
    /// value. `what` names the awaited state in the timeout error, which also shows `describe`'s value.
    pub async fn wait_for(&self, what: &str, condition: &str, describe: &str) -> anyhow::Result<Value> {
        let script = format!("return ({condition}) || null;");
        let polled = within_for(BROWSER_STEP, what, async {
            loop {
                match self.eval(&script, Vec::new()).await? {
                    Value::Null => tokio::time::sleep(POLL).await,
                    value => return anyhow::Ok(value),
                }
            }
        })
        .await;
        match polled {
            Ok(value) => value,
            Err(timeout) => {
                let seen = self.eval(&format!("return ({describe});"), Vec::new()).await;
                Err(timeout.context(format!("the page showed: {seen:?}")))
            }
        }
    }

    /// Replaces the text of the input matching `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let input = self.find(css).await?;
        within(format!("clearing {css}"), input.clear()).await??;
        within(format!("typing into {css}"), input.send_keys(text)).await??;
        Ok(())
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        within(format!("clicking {css}"), element.click()).await??;
        Ok(())
    }

    /// Selects the `<option>` with `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        within(format!("selecting {value} in {css}"), element.select_by_value(value)).await??;
        Ok(())
    }

    async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        within(format!("finding {css}"), self.client.find(Locator::Css(css)))
            .await?
            .with_context(|| format!("no element matches {css}"))
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        within("a screenshot", self.client.screenshot()).await?.context("taking a screenshot")
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn close(self) -> anyhow::Result<()> {
        let closed = within("the browser session to close", self.client.clone().close()).await;
        drop(self);
        closed?.context("closing the browser session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Before the profile dir goes: Chromium writes to it until it dies.
        kill_group(&self.driver);
    }
}

/// Opens a WebDriver session on the chromedriver at `port`, retrying while it starts listening.
async fn connect(port: u16, chromium: &Path, dir: &Path) -> anyhow::Result<Client> {
    let addr = format!("127.0.0.1:{port}");
    within(format!("chromedriver to listen on {addr}"), async {
        while TcpStream::connect(&addr).await.is_err() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await?;
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&a| a.to_owned()).collect();
    args.push(format!("--user-data-dir={}", dir.join("profile").display()));
    let options = json!({ "binary": chromium, "args": args });
    let mut capabilities = Capabilities::new();
    capabilities.insert("browserName".to_owned(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".to_owned(), options);
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(capabilities);
    within_for(BROWSER_STEP, "Chromium to start", builder.connect(&format!("http://{addr}")))
        .await?
        .map_err(|err| anyhow!("starting a Chromium session: {err}"))
}

/// `name` on `PATH`, or an error with the install command.
fn find_executable(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file());
    match found {
        Some(path) => Ok(path),
        None => bail!(
            "{name} not found on PATH: browser tests need Debian's chromium and chromedriver; {INSTALL_HINT}"
        ),
    }
}

async fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// SIGKILLs chromedriver's process group: chromedriver, Chromium and Chromium's helpers.
fn kill_group(driver: &Child) {
    if let Some(pid) = driver.id() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }
}
