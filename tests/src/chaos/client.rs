//! A chaos client: one browser stand-in behaving like crier.js (edge/static/crier.js), recording everything
//! it sees as a [`History`]. Positions on; auth on `ready`; after every `authenticated`, subscribe to each of
//! its conversations with `since` = the last position seen (the `subscribed` frame's or a notification's);
//! reconnect after every close with crier.js' delays, scaled down ten times (exponential backoff with equal
//! jitter, soon after 1001, at least a second after 4029, never after 4001/1008/1009/4030); an application
//! ping when the connection has been silent, dropping it when even that gets no answer; a subscription the
//! edge ends (`unsubscribed` with a reason, an error naming the conversation) is asked for again shortly
//! after. Each reconnect goes to the next edge, as a load balancer would spread them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crier_proto::Position;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::history::{Event, History, PayloadId};
use crate::tungstenite::Message;
use crate::tungstenite::protocol::CloseFrame;
use crate::ws_client::WsClient;

/// crier.js' delays, scaled down ten times: first backoff ceiling, largest, window after 1001, after 4029.
const INITIAL_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(3);
const GOING_AWAY_JITTER: Duration = Duration::from_millis(100);
const RATE_LIMITED_DELAY: Duration = Duration::from_secs(1);
/// Silence after which the client pings, and after which an unanswered ping drops the connection.
const PING_AFTER: Duration = Duration::from_secs(5);
/// Pause before asking again for a subscription the edge ended.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(300);
/// Close codes after which crier.js does not reconnect.
const TERMINAL: [u16; 4] = [1008, 1009, 4001, 4030];

/// Where each client stands, per conversation: shared with the harness, which waits for it to catch up.
pub type Cursors = Arc<Mutex<HashMap<String, Position>>>;

/// What one client does.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Its index (user `chaos-<index>`).
    pub index: usize,
    /// The conversations it subscribes to.
    pub conversations: Vec<String>,
    /// `ws://` URLs of the edges, with `?positions=1`.
    pub edges: Vec<String>,
    /// Seed of its jitter.
    pub seed: u64,
}

/// How a connection ended.
enum Ending {
    /// Told to stop.
    Stopped,
    /// Closed with this code (`None`: no close frame, or never opened).
    Closed(Option<u16>),
}

/// Runs the client until `stop`; returns what it saw.
pub async fn run(spec: ClientSpec, cursors: Cursors, stop: CancellationToken) -> History {
    let rng = StdRng::seed_from_u64(spec.seed);
    let history = History { client: spec.index, events: Vec::new() };
    let mut client = Client { spec, rng, cursors, history, attempt: 0 };
    let mut edge = client.spec.index;
    loop {
        let url = client.spec.edges[edge % client.spec.edges.len()].clone();
        let code = match client.connection(&url, &stop).await {
            Ending::Stopped => break,
            Ending::Closed(code) => code,
        };
        if code.is_some_and(|c| TERMINAL.contains(&c)) {
            break;
        }
        edge += 1;
        let delay = client.delay(code);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    client.history
}

struct Client {
    spec: ClientSpec,
    rng: StdRng,
    cursors: Cursors,
    history: History,
    /// Consecutive failed connections (crier.js' backoff exponent).
    attempt: u32,
}

impl Client {
    /// One connection, from connect to its end.
    async fn connection(&mut self, url: &str, stop: &CancellationToken) -> Ending {
        let Ok(mut ws) = WsClient::connect(url).await else { return Ending::Closed(None) };
        let mut resubscribe: Vec<(Instant, String)> = Vec::new();
        let mut heard = Instant::now();
        let mut pinged = false;
        loop {
            let quiet = heard + if pinged { 2 * PING_AFTER } else { PING_AFTER };
            let due = resubscribe.iter().map(|(at, _)| *at).min();
            let message = tokio::select! {
                () = stop.cancelled() => {
                    let close = CloseFrame { code: 1000.into(), reason: "".into() };
                    let _ = ws.send_raw(Message::Close(Some(close))).await;
                    return Ending::Stopped;
                }
                () = tokio::time::sleep_until(quiet) => {
                    if pinged || ws.send_json(&json!({"action": "ping"})).await.is_err() {
                        return self.ended(None);
                    }
                    pinged = true;
                    continue;
                }
                () = sleep_until_some(due) => {
                    if self.resubscribe_due(&mut ws, &mut resubscribe).await.is_err() {
                        return self.ended(None);
                    }
                    continue;
                }
                message = ws.next_message() => message,
            };
            (heard, pinged) = (Instant::now(), false);
            let text = match message {
                Ok(Some(Message::Text(text))) => text,
                Ok(Some(Message::Close(frame))) => return self.ended(frame.map(|f| u16::from(f.code))),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return self.ended(None),
            };
            match self.frame(&mut ws, text.as_str()).await {
                Ok(Some(conversation)) => {
                    resubscribe.push((Instant::now() + RESUBSCRIBE_DELAY, conversation))
                }
                Ok(None) => {}
                Err(_) => return self.ended(None),
            }
        }
    }

    /// Subscribes again to the conversations in `pending` whose time has come.
    async fn resubscribe_due(
        &mut self,
        ws: &mut WsClient,
        pending: &mut Vec<(Instant, String)>,
    ) -> anyhow::Result<()> {
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(at, _)| *at <= now);
        *pending = later;
        for (_, conversation) in ready {
            self.subscribe(ws, &conversation).await?;
        }
        Ok(())
    }

    fn ended(&mut self, code: Option<u16>) -> Ending {
        self.history.events.push(Event::Closed { code });
        Ending::Closed(code)
    }

    /// Handles one text frame; returns a conversation to subscribe to again when the edge ended it.
    async fn frame(&mut self, ws: &mut WsClient, text: &str) -> anyhow::Result<Option<String>> {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            self.history.events.push(Event::Garbled { frame: text.to_owned() });
            return Ok(None);
        };
        let conversation = frame["conversationId"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str().unwrap_or_default() {
            "ready" => {
                let user = format!("chaos-{}", self.spec.index);
                ws.send_json(&json!({"action": "auth", "userId": user, "positions": true})).await?;
            }
            "authenticated" => {
                self.attempt = 0;
                for conversation in self.spec.conversations.clone() {
                    self.subscribe(ws, &conversation).await?;
                }
            }
            "subscribed" | "notification" => self.positioned(&frame, conversation, text),
            "unsubscribed" | "error" if !conversation.is_empty() => {
                self.history
                    .events
                    .push(Event::Dropped { conversation: conversation.clone(), why: text.into() });
                return Ok(Some(conversation));
            }
            "pong" | "error" => {}
            _ => self.history.events.push(Event::Garbled { frame: text.to_owned() }),
        }
        Ok(None)
    }

    /// Sends `subscribe`, with `since` when the client has a position in `conversation`.
    async fn subscribe(&mut self, ws: &mut WsClient, conversation: &str) -> anyhow::Result<()> {
        let since = self.cursors_lock().get(conversation).copied();
        let mut request = json!({"action": "subscribe", "conversationId": conversation});
        if let Some(since) = since {
            request["since"] = json!(since.to_string());
        }
        self.history.events.push(Event::Subscribe { conversation: conversation.to_owned(), since });
        ws.send_json(&request).await
    }

    /// A `subscribed` or `notification` frame: recorded, and its position becomes the client's.
    fn positioned(&mut self, frame: &Value, conversation: String, text: &str) {
        let Some(position) = frame["position"].as_str().and_then(|p| p.parse::<Position>().ok()) else {
            self.history.events.push(Event::Garbled { frame: text.to_owned() });
            return;
        };
        let event = if frame["type"] == "subscribed" {
            Event::Subscribed {
                conversation: conversation.clone(),
                recovered: frame["recovered"].as_bool(),
                position,
            }
        } else {
            let data = &frame["data"];
            let (Some(publisher), Some(seq)) = (data["p"].as_u64(), data["s"].as_u64()) else {
                self.history.events.push(Event::Garbled { frame: text.to_owned() });
                return;
            };
            let payload = PayloadId { publisher: u32::try_from(publisher).unwrap_or(u32::MAX), seq };
            let published_to = data["c"].as_str().unwrap_or_default().to_owned();
            Event::Notification { conversation: conversation.clone(), position, payload, published_to }
        };
        self.history.events.push(event);
        self.cursors_lock().insert(conversation, position);
    }

    /// crier.js' reconnect delay for a close with `code`, scaled.
    fn delay(&mut self, code: Option<u16>) -> Duration {
        if matches!(code, Some(1001 | 4003)) {
            self.attempt = 0;
            return GOING_AWAY_JITTER.mul_f64(self.rng.random_range(0.0..1.0));
        }
        let ceiling = MAX_DELAY.min(INITIAL_DELAY * 2u32.saturating_pow(self.attempt.min(16)));
        self.attempt += 1;
        let delay = ceiling / 2 + ceiling.mul_f64(self.rng.random_range(0.0..0.5));
        if code == Some(4029) { delay.max(RATE_LIMITED_DELAY) } else { delay }
    }

    fn cursors_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Position>> {
        // Poisoned only if the harness panicked while reading: the map itself is whole.
        self.cursors.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
