//! crier in a real browser: headless Debian Chromium against in-process servers. The raw protocol as the
//! replaced system's React hook spoke it, the browser client `/crier.js`, and `crier dev`'s demo page.
//!
//! Needs `chromium` and `chromedriver` (`apt-get install -y chromium chromium-driver`; `.ci/run` does it):
//! without them every test here fails, saying so.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_proto::partition::DEFAULT_PARTITIONS;
use crier_store::log::{DEFAULT_MAX_LEN, MemoryLog};
use crier_tests::{Browser, Servers, mint_token, within};
use serde_json::{Value, json};

const SECRET: &str = "browser-test-secret-0123456789";

/// A broker and one edge serving the demo page, on an in-memory log: `crier dev` in-process.
async fn dev_servers() -> Result<Servers> {
    let log = Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN));
    let mut servers = Servers::start(log, 0).await?;
    servers.add_demo_edge(EdgeConfig::dev()).await?;
    Ok(servers)
}

/// Runs the old React hook's flow in the page: open, `ready` → auth, `authenticated` → subscribe, then
/// record every other frame.
const HOOK_FLOW: &str = r#"
    const [url, user, conversation] = arguments;
    const hook = (window.hook = { types: [], subscribed: false, notifications: [] });
    const ws = new WebSocket(url);
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      hook.types.push(msg.type);
      if (msg.type === "ready") ws.send(JSON.stringify({ action: "auth", userId: user }));
      else if (msg.type === "authenticated") ws.send(JSON.stringify({ action: "subscribe", conversationId: conversation }));
      else if (msg.type === "subscribed") hook.subscribed = true;
      else hook.notifications.push(msg);
    };
"#;

/// The replaced system's React-hook flow (ready → auth → subscribe → notifications) works unchanged in
/// Chromium: same frames, same order, the payload verbatim.
#[tokio::test]
async fn react_style_hook_flow_works_in_a_real_browser() -> Result<()> {
    let servers = dev_servers().await?;
    let browser = Browser::start().await?;
    browser.goto(&servers.edge_http_url(0)).await?;
    browser.eval(HOOK_FLOW, vec![json!(servers.edge_ws_url(0)), json!("u1"), json!("c1")]).await?;
    browser.wait_for("the hook to be subscribed", "window.hook.subscribed", "window.hook").await?;
    let payload = json!({"type": "job-status", "jobId": "job-123", "status": "completed", "conversationId": "c1", "messageId": "m1"});
    servers.publish_client().await?.publish("c1", &payload).await?;
    browser.wait_for("the notification", "window.hook.notifications.length > 0", "window.hook").await?;
    let hook = browser.eval("return window.hook;", Vec::new()).await?;
    ensure!(hook["notifications"] == json!([payload]), "got {hook}");
    ensure!(hook["types"] == json!(["ready", "authenticated", "subscribed", "job-status"]), "got {hook}");
    browser.close().await?;
    servers.shutdown().await
}

/// A notification published by gRPC appears in the demo page, rendered by type: job-status as a badge
/// (updated in place), research-progress as a bar, task-completed as a line. Leaves a screenshot.
#[tokio::test]
async fn notification_published_by_grpc_shows_up_in_the_demo_page() -> Result<()> {
    let servers = dev_servers().await?;
    let browser = Browser::start().await?;
    browser.goto(&servers.edge_http_url(0)).await?;
    browser.fill("#user", "alice").await?;
    browser.fill("#conversation", "launch-42").await?;
    browser.click("#subscribe").await?;
    wait_live(&browser, "launch-42").await?;
    let state = browser.eval("return document.getElementById('state').textContent;", Vec::new()).await?;
    ensure!(state == "connected as alice", "state pill says {state}");

    let mut publisher = servers.publish_client().await?;
    let job = |status| json!({"type": "job-status", "jobId": "job-123", "status": status, "conversationId": "launch-42"});
    publisher.publish("launch-42", &job("running")).await?;
    wait_css(&browser, r#"li[data-type="job-status"] .badge[data-status="running"]"#).await?;
    let research = json!({"type": "research-progress", "researchId": "r-1", "progress": 65, "conversationId": "launch-42"});
    publisher.publish("launch-42", &research).await?;
    let task = json!({"type": "task-completed", "taskId": "t-1", "title": "Draft the launch notes", "conversationId": "launch-42"});
    publisher.publish("launch-42", &task).await?;
    publisher.publish("launch-42", &job("completed")).await?;
    let other =
        json!({"type": "job-status", "jobId": "job-124", "status": "running", "conversationId": "launch-42"});
    publisher.publish("launch-42", &other).await?;
    wait_css(&browser, r#"li[data-type="job-status"] .badge[data-status="completed"]"#).await?;
    wait_css(&browser, r#"li[data-key="launch-42/job:job-124"] .badge[data-status="running"]"#).await?;
    wait_css(&browser, r#"li[data-type="research-progress"] .fill[style*="65%"]"#).await?;
    let line = wait_css(&browser, r#"li[data-type="task-completed"]"#).await?;
    ensure!(line.as_str().is_some_and(|l| l.contains("Draft the launch notes")), "task line: {line}");
    let rows = browser
        .eval("return document.querySelectorAll('#notifications li[data-type]').length;", vec![])
        .await?;
    ensure!(rows == 4, "job-123's two statuses share one row: expected 4 rows, got {rows}");

    browser
        .wait_for("the highlight of new rows to fade", "!document.querySelector('.fresh')", PAGE_STATE)
        .await?;
    save_screenshot(&browser.screenshot().await?)?;
    browser.close().await?;
    servers.shutdown().await
}

/// The demo page's form publishes through `POST /dev/publish` (the broker's publisher) and the result
/// arrives back over the WebSocket.
#[tokio::test]
async fn demo_form_publishes_through_the_dev_endpoint() -> Result<()> {
    let servers = dev_servers().await?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{}/?user=bob&conversation=form-test&connect=1", servers.edge_http_url(0))).await?;
    wait_live(&browser, "form-test").await?;
    browser.select("#kind", "task-completed").await?;
    browser.fill("#task", "Ship it").await?;
    browser.click("#publish").await?;
    let line = wait_css(&browser, r#"li[data-type="task-completed"]"#).await?;
    ensure!(line.as_str().is_some_and(|l| l.contains("Ship it")), "task line: {line}");
    let result = wait_css(&browser, "#publish-result.ok").await?;
    ensure!(result.as_str().is_some_and(|r| r.contains("Published at position")), "result: {result}");
    browser.close().await?;
    servers.shutdown().await
}

/// The client reconnects by itself after its edge restarts (1001 on drain) and, resubscribing with
/// `since`, receives what was published while it was away: exactly once, in order, then live ones.
#[tokio::test]
async fn client_reconnects_after_edge_restart_and_gets_what_it_missed() -> Result<()> {
    let mut servers = dev_servers().await?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{}/?user=u1&conversation=c1&connect=1", servers.edge_http_url(0))).await?;
    wait_live(&browser, "c1").await?;
    let mut publisher = servers.publish_client().await?;
    let task = |n: u32| json!({"type": "task-completed", "taskId": format!("t-{n}"), "title": format!("step {n}"), "conversationId": "c1"});
    publisher.publish("c1", &task(1)).await?;
    wait_tasks(&browser, 1).await?;

    servers.stop_edge(0).await?;
    browser
        .wait_for(
            "the page to notice",
            "document.getElementById('state').dataset.state !== 'connected'",
            "document.getElementById('state').dataset.state",
        )
        .await?;
    publisher.publish("c1", &task(2)).await?;
    publisher.publish("c1", &task(3)).await?;
    servers.restart_edge(0).await?;
    wait_live(&browser, "c1").await?;
    publisher.publish("c1", &task(4)).await?;
    wait_tasks(&browser, 4).await?;
    let resumed = "[...document.querySelectorAll('#notifications li.system')].some((li) => li.textContent.startsWith('resumed'))";
    browser.wait_for("the page to report recovered:true", resumed, PAGE_STATE).await?;
    let titles = browser.eval(TASK_TITLES, Vec::new()).await?;
    ensure!(titles == json!(["step 4", "step 3", "step 2", "step 1"]), "newest first, each once: {titles}");
    browser.close().await?;
    servers.shutdown().await
}

/// After a 4001 close (bad token) the client stops: state `closed` with code 4001 and no second socket,
/// while a valid token on the same edge connects.
#[tokio::test]
async fn client_does_not_reconnect_after_4001() -> Result<()> {
    let log = Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN));
    let mut servers = Servers::start(log, 0).await?;
    servers.add_edge(EdgeConfig::with_jwt_secret(SECRET)).await?;
    let browser = Browser::start().await?;
    // Any page of the edge's origin will do: the client module is served by every edge.
    browser.goto(&format!("{}/crier.js", servers.edge_http_url(0))).await?;
    let url = json!(servers.edge_ws_url(0));
    let good = mint_token(SECRET, "u1", Duration::from_secs(300))?;
    browser.eval(START_CLIENT, vec![json!("good"), url.clone(), json!(good)]).await?;
    browser
        .wait_for(
            "a valid token to connect",
            "window.clients?.good?.states.includes('connected')",
            "window.clients",
        )
        .await?;

    browser.eval(START_CLIENT, vec![json!("bad"), url, json!("not-a-jwt")]).await?;
    browser
        .wait_for("the 4001 close", "window.clients?.bad?.states.includes('closed')", "window.clients")
        .await?;
    // Absence of a reconnect can only be watched for a while: 50 times the configured first delay.
    let watch = browser.client().execute_async(WATCH_CLIENT, vec![json!("bad")]);
    let bad = within("the watch for a reconnect", watch).await??;
    ensure!(bad["sockets"] == 1, "reconnected after 4001: {bad}");
    ensure!(bad["codes"] == json!([4001]) && bad["state"] == "closed", "{bad}");
    browser.close().await?;
    servers.shutdown().await
}

/// After the edge's idle timeout (1000 `Session timeout`) the client stays closed: no second socket.
#[tokio::test]
async fn client_does_not_reconnect_after_the_idle_timeout() -> Result<()> {
    let log = Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN));
    let mut servers = Servers::start(log, 0).await?;
    let mut edge = EdgeConfig::with_jwt_secret(SECRET);
    edge.limits.idle_timeout = Some(Duration::from_millis(300));
    servers.add_edge(edge).await?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{}/crier.js", servers.edge_http_url(0))).await?;
    let token = mint_token(SECRET, "u1", Duration::from_secs(300))?;
    let url = json!(servers.edge_ws_url(0));
    browser.eval(START_CLIENT, vec![json!("idle"), url, json!(token)]).await?;
    browser
        .wait_for("the idle close", "window.clients?.idle?.states.includes('closed')", "window.clients")
        .await?;
    let watch = browser.client().execute_async(WATCH_CLIENT, vec![json!("idle")]);
    let idle = within("the watch for a reconnect", watch).await??;
    ensure!(idle["sockets"] == 1, "reconnected after the idle timeout: {idle}");
    ensure!(idle["codes"] == json!([1000]) && idle["state"] == "closed", "{idle}");
    browser.close().await?;
    servers.shutdown().await
}

/// A page loading mid-job shows the job's current status at once: the demo page subscribes with `last: 1`.
#[tokio::test]
async fn demo_page_shows_a_jobs_status_on_load() -> Result<()> {
    let servers = dev_servers().await?;
    let job =
        json!({"type": "job-status", "jobId": "job-7", "status": "running", "conversationId": "launch-7"});
    servers.publish_client().await?.publish("launch-7", &job).await?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{}/?user=bob&conversation=launch-7&connect=1", servers.edge_http_url(0))).await?;
    wait_css(&browser, r#"li[data-type="job-status"] .badge[data-status="running"]"#).await?;
    browser.close().await?;
    servers.shutdown().await
}

/// The client's side of recovery, against a scripted server in the page: with positions on it asks for
/// `?positions=1`, unwraps notifications, and after a dropped connection resubscribes with `since` set
/// to the last position it delivered, or, for a conversation without notifications, the position of its
/// `subscribed` frame.
#[tokio::test]
async fn client_resubscribes_with_since_after_a_dropped_connection() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{}/crier.js", servers.edge_http_url(0))).await?;
    browser.eval(FAKE_SERVER, vec![json!({})]).await?;
    let url = browser.wait_for("the first socket", "window.fake.sockets[0]?.url", "window.fake").await?;
    ensure!(url.as_str().is_some_and(|u| u.ends_with("/api/ws?positions=1")), "url {url}");
    let auth = json!({"action": "auth", "userId": "u1"});
    let first = [
        json!({"type": "ready", "message": "Send auth message with JWT token"}),
        json!({"type": "authenticated", "userId": "u1"}),
        json!({"type": "subscribed", "conversationId": "c1", "position": "7:a:90-0"}),
        json!({"type": "subscribed", "conversationId": "c2", "position": "3:a:5-0"}),
        json!({"type": "notification", "conversationId": "c1", "position": "7:a:100-0", "data": {"type": "job-status", "n": 1}}),
    ];
    let sent = serve_fake(&browser, 0, &first, 3).await?;
    let subscribes = [
        json!({"action": "subscribe", "conversationId": "c1"}),
        json!({"action": "subscribe", "conversationId": "c2"}),
    ];
    ensure!(sent == json!([auth, subscribes[0], subscribes[1]]), "sent {sent}");
    let delivered = browser
        .wait_for("the delivery", "window.fake.delivered.length && window.fake.delivered", "window.fake")
        .await?;
    ensure!(delivered == json!([[{"type": "job-status", "n": 1}, "7:a:100-0"]]), "delivered {delivered}");

    browser.eval("window.fake.sockets[0].drop(1006);", Vec::new()).await?;
    browser.wait_for("a second socket", "window.fake.sockets[1]", "window.fake.states").await?;
    let sent = serve_fake(&browser, 1, &first[..2], 3).await?;
    // c1 from its last notification; c2, which got none, from where `subscribed` said.
    let c1 = json!({"action": "subscribe", "conversationId": "c1", "since": "7:a:100-0"});
    let c2 = json!({"action": "subscribe", "conversationId": "c2", "since": "3:a:5-0"});
    ensure!(sent == json!([auth, c1, c2]), "sent {sent}");
    let states = browser.eval("return window.fake.states;", Vec::new()).await?;
    let expected = [
        "connecting",
        "authenticating",
        "connected",
        "reconnecting:1006",
        "connecting",
        "authenticating",
        "connected",
    ];
    ensure!(states == json!(expected), "states {states}");
    browser.close().await?;
    servers.shutdown().await
}

/// Token refresh: with `getToken`, the client sends `refresh` with a fresh token `refreshMarginMs` before
/// the JWT's `exp`; `refresh(token)` resolves with the `expiresAt` of the edge's `refreshed`.
#[tokio::test]
async fn client_refreshes_its_token_before_it_expires() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{}/crier.js", servers.edge_http_url(0))).await?;
    // Expiring in 30 s with a 30 s margin: the refresh is due as soon as the client is connected.
    let options = json!({"tokenTtlSec": 30, "refreshMarginMs": 30_000});
    browser.eval(FAKE_SERVER, vec![options]).await?;
    browser.wait_for("the first socket", "window.fake.sockets[0]", "window.fake").await?;
    let ready = json!({"type": "ready", "message": "Send auth message with JWT token"});
    let sent = serve_fake(&browser, 0, &[ready, json!({"type": "authenticated", "userId": "u1"})], 4).await?;
    ensure!(sent[0]["action"] == "auth" && sent[0]["token"].is_string(), "auth frame {sent}");
    ensure!(sent[3]["action"] == "refresh" && sent[3]["token"].is_string(), "no automatic refresh: {sent}");

    let by_hand = "window.fake.client.refresh('by-hand').then((at) => { window.fake.refreshedAt = at; });";
    browser.eval(by_hand, Vec::new()).await?;
    let refreshed = json!({"type": "refreshed", "expiresAt": 4_102_444_800_u64});
    browser.eval("window.fake.sockets[0].frame(arguments[0]);", vec![refreshed]).await?;
    let at = browser.wait_for("refresh() to resolve", "window.fake.refreshedAt", "window.fake").await?;
    ensure!(at == 4_102_444_800_u64, "resolved with {at}");
    let sent = browser.eval("return window.fake.sockets[0].sent[4];", Vec::new()).await?;
    ensure!(sent == json!({"action": "refresh", "token": "by-hand"}), "sent {sent}");
    browser.close().await?;
    servers.shutdown().await
}

/// Keepalive: after `pingIntervalMs` of silence the client sends `{"action":"ping"}`; when nothing answers
/// within `pongTimeoutMs` it drops the connection and reconnects.
#[tokio::test]
async fn client_reconnects_when_its_ping_goes_unanswered() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{}/crier.js", servers.edge_http_url(0))).await?;
    browser.eval(FAKE_SERVER, vec![json!({"pingIntervalMs": 50, "pongTimeoutMs": 50})]).await?;
    browser.wait_for("the first socket", "window.fake.sockets[0]", "window.fake").await?;
    let ready = json!({"type": "ready", "message": "Send auth message with JWT token"});
    serve_fake(&browser, 0, &[ready, json!({"type": "authenticated", "userId": "u1"})], 3).await?;
    browser.wait_for("a second socket", "window.fake.sockets[1]", "window.fake.states").await?;
    let sent = browser.eval("return window.fake.sockets[0].sent.slice(3);", Vec::new()).await?;
    ensure!(sent == json!([{"action": "ping"}]), "after subscribing, socket 0 got {sent}");
    let states = browser.eval("return window.fake.states;", Vec::new()).await?;
    ensure!(states.as_array().is_some_and(|s| s.contains(&json!("reconnecting:4000"))), "states {states}");
    browser.close().await?;
    servers.shutdown().await
}

/// A `FakeSocket` the client uses instead of `WebSocket`: it records what the client sends; the test opens
/// it, feeds it server frames and drops it.
const FAKE_SERVER: &str = r#"
    const fake = (window.fake = { sockets: [], delivered: [], states: [] });
    class FakeSocket {
      constructor(url) { this.url = url; this.sent = []; this.readyState = 0; fake.sockets.push(this); }
      send(text) { this.sent.push(JSON.parse(text)); }
      close() { this.readyState = 3; }
      open() { this.readyState = 1; this.onopen?.({}); }
      frame(msg) { this.onmessage?.({ data: JSON.stringify(msg) }); }
      drop(code) { this.readyState = 3; this.onclose?.({ code, reason: "" }); }
    }
    // Options: `tokenTtlSec` authenticates with getToken and a JWT expiring then (else userId "u1"); the
    // rest goes to the client as is.
    const { tokenTtlSec, ...options } = arguments[0] ?? {};
    const base64url = (value) => btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    const jwt = () => `${base64url({ alg: "HS256" })}.${base64url({ exp: Math.floor(Date.now() / 1000) + tokenTtlSec })}.sig`;
    const auth = tokenTtlSec === undefined ? { userId: "u1" } : { getToken: () => Promise.resolve(jwt()) };
    import("/crier.js").then(({ CrierClient }) => {
      fake.client = new CrierClient("ws://crier.invalid/api/ws", {
        ...auth, WebSocket: FakeSocket, initialDelayMs: 10, ...options,
        onStateChange: (state, info) => fake.states.push(info.code ? `${state}:${info.code}` : state),
      });
      fake.client.subscribe("c1", (data, meta) => fake.delivered.push([data, meta.position]));
      fake.client.subscribe("c2", (data, meta) => fake.delivered.push([data, meta.position]));
      fake.client.connect();
    });
"#;

/// Opens fake socket `index`, feeds it `frames` one by one (each after the client's answer to the
/// previous, as a server would), and returns the first `expect` frames the client sent.
async fn serve_fake(browser: &Browser, index: usize, frames: &[Value], expect: usize) -> Result<Value> {
    browser.eval("window.fake.sockets[arguments[0]].open();", vec![json!(index)]).await?;
    for frame in frames {
        browser
            .eval("window.fake.sockets[arguments[0]].frame(arguments[1]);", vec![json!(index), frame.clone()])
            .await?;
        // `ready` is answered after the token is resolved (a microtask): wait for the answer.
        if frame["type"] == "ready" {
            let sent = format!("window.fake.sockets[{index}].sent.length > 0");
            browser.wait_for("the auth frame", &sent, "window.fake").await?;
        }
    }
    let condition =
        format!("window.fake.sockets[{index}].sent.length >= {expect} && window.fake.sockets[{index}].sent");
    browser.wait_for(&format!("{expect} client frames"), &condition, "window.fake").await
}

/// Starts `new CrierClient(url, {token})` as `window.clients[name]`, counting its sockets and recording its
/// states and close codes. Reconnect delays are tiny so that a wrong reconnect would happen at once.
const START_CLIENT: &str = r#"
    const [name, url, token] = arguments;
    window.clients ??= {};
    const record = (window.clients[name] = { sockets: 0, states: [], codes: [] });
    class CountingSocket extends WebSocket {
      constructor(...args) { super(...args); record.sockets += 1; }
    }
    import("/crier.js").then(({ CrierClient }) => {
      record.client = new CrierClient(url, {
        token, WebSocket: CountingSocket, initialDelayMs: 10, maxDelayMs: 20, goingAwayJitterMs: 10,
        onStateChange: (state, info) => {
          record.states.push(state);
          if (info.code) record.codes.push(info.code);
        },
      }).connect();
    });
"#;

/// After 500 ms, what client `arguments[0]` did: sockets opened, close codes, state.
const WATCH_CLIENT: &str = r#"
    const [name, done] = [arguments[0], arguments[arguments.length - 1]];
    setTimeout(() => {
      const watched = window.clients[name];
      done({ sockets: watched.sockets, codes: watched.codes, state: watched.client.state });
    }, 500);
"#;

const TASK_TITLES: &str = r#"
    return [...document.querySelectorAll('#notifications li[data-type="task-completed"]')]
      .map((li) => li.querySelector('.title').textContent);
"#;

/// Waits until the demo page shows `conversation` as confirmed by the edge.
async fn wait_live(browser: &Browser, conversation: &str) -> Result<Value> {
    let css = format!(r#"#subscriptions li[data-conversation="{conversation}"][data-live]"#);
    browser.wait_for(&format!("{conversation} to be live"), &selector_text(&css), PAGE_STATE).await
}

/// Waits until an element matches `css`; returns its text.
async fn wait_css(browser: &Browser, css: &str) -> Result<Value> {
    browser.wait_for(&format!("an element matching {css}"), &selector_text(css), PAGE_STATE).await
}

/// Waits until the demo page lists `count` task lines.
async fn wait_tasks(browser: &Browser, count: usize) -> Result<Value> {
    let condition = format!(
        r#"document.querySelectorAll('#notifications li[data-type="task-completed"]').length >= {count}"#
    );
    browser.wait_for(&format!("{count} task lines"), &condition, PAGE_STATE).await
}

/// A JS expression: the text of the first element matching `css` (`" "` when empty), or null.
fn selector_text(css: &str) -> String {
    let css = serde_json::to_string(css).unwrap_or_default();
    format!("(document.querySelector({css})?.textContent || (document.querySelector({css}) && ' '))")
}

/// What the demo page shows, for timeout messages.
const PAGE_STATE: &str = "document.getElementById('state').textContent + ' | ' + \
     document.getElementById('subscriptions').outerHTML + ' | ' + document.getElementById('notifications').innerText";

/// Writes the demo page's screenshot next to the test binaries, and into the README's copy when
/// `CRIER_UPDATE_SCREENSHOT=1`.
fn save_screenshot(png: &[u8]) -> Result<()> {
    let scratch = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-page.png");
    std::fs::write(&scratch, png)?;
    eprintln!("demo page screenshot: {}", scratch.display());
    if std::env::var_os("CRIER_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots/demo-page.png");
        std::fs::create_dir_all(committed.parent().unwrap_or(&committed))?;
        std::fs::write(&committed, png)?;
    }
    Ok(())
}
