//! Live delivery by pub/sub: one connection per standalone Redis node carries the live channel of every
//! partition this process reads on that node. A reader joins its partition's channel when it starts and
//! leaves when it is dropped; one task per node owns the connection, so joins and leaves reach Redis in the
//! order they were made (a leave and a quick re-join of the same channel can never end unsubscribed).
//!
//! When the connection is lost every reader is told ([`Live::Lost`]) and forgotten: whatever is published
//! until it joins again never reaches it, so it fails its read, and its consumer starts a new reader that
//! joins again and catches up from the stream. The feed never reads streams itself.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};

/// Back-off bounds between failed connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a reader receives from its channel.
#[derive(Debug)]
pub(super) enum Live {
    /// One published message, verbatim.
    Message(Bytes),
    /// The connection was lost: nothing more arrives on this route.
    Lost,
}

enum Command {
    Join { channel: String, reader: u64, route: mpsc::UnboundedSender<Live>, joined: oneshot::Sender<bool> },
    Leave { channel: String, reader: u64 },
}

/// The feed of one node: a handle on its connection task, started on first use.
pub(super) struct Feed {
    commands: mpsc::UnboundedSender<Command>,
}

impl Feed {
    /// A feed from the node behind `client`; its task connects at once and ends with the last handle.
    pub fn start(client: Client, timeout: Duration) -> Self {
        let (commands, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(client, timeout, queue));
        Self { commands }
    }

    /// Subscribes reader `reader` to `channel`; resolves once Redis confirmed the subscription, so every
    /// message published from then on reaches `route`. `false` when the connection is down.
    pub async fn join(&self, channel: &str, reader: u64, route: mpsc::UnboundedSender<Live>) -> bool {
        let (joined, confirmed) = oneshot::channel();
        let channel = channel.to_owned();
        if self.commands.send(Command::Join { channel, reader, route, joined }).is_err() {
            return false;
        }
        confirmed.await.unwrap_or(false)
    }

    /// Unsubscribes reader `reader` from `channel` (the channel itself when it was the last reader).
    pub fn leave(&self, channel: &str, reader: u64) {
        let _ = self.commands.send(Command::Leave { channel: channel.to_owned(), reader });
    }
}

/// Channel → readers (normally one per channel per process; a replaced reader may linger briefly).
type Routes = HashMap<String, Vec<(u64, mpsc::UnboundedSender<Live>)>>;

async fn run(client: Client, timeout: Duration, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut routes = Routes::new();
    // Each connection attempt backs off on failure (`connect`); a lost connection is retried at once.
    while let Some((mut sink, mut stream)) = connect(&client, timeout, &mut commands, &mut routes).await {
        if !serve(&mut sink, &mut stream, &mut commands, &mut routes).await {
            return;
        }
        for (_, route) in routes.drain().flat_map(|(_, readers)| readers) {
            let _ = route.send(Live::Lost);
        }
        tracing::warn!("live pub/sub connection lost; reconnecting");
    }
}

/// Connects, answering joins with `false` (and applying leaves) while the node is unreachable. `None` once
/// every handle is gone.
async fn connect(
    client: &Client,
    timeout: Duration,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    routes: &mut Routes,
) -> Option<(PubSubSink, PubSubStream)> {
    let mut backoff = BACKOFF_MIN;
    loop {
        match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => return Some(pubsub.split()),
            Ok(Err(err)) => tracing::warn!(error = %err, "live pub/sub connection failed"),
            Err(_) => tracing::warn!("live pub/sub connection timed out"),
        }
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                command = commands.recv() => match command? {
                    Command::Join { joined, .. } => { let _ = joined.send(false); }
                    Command::Leave { channel, reader } => remove(routes, &channel, reader),
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Routes messages and applies joins and leaves until the connection fails (`true`) or every handle is
/// gone (`false`).
async fn serve(
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    routes: &mut Routes,
) -> bool {
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return true };
                route(routes, message.get_channel_name(), message.get_payload_bytes());
            }
            command = commands.recv() => {
                let Some(command) = command else { return false };
                if !apply(sink, routes, command).await {
                    return true;
                }
            }
        }
    }
}

/// Applies one join or leave; `false` when Redis did not take it (the connection is gone).
async fn apply(sink: &mut PubSubSink, routes: &mut Routes, command: Command) -> bool {
    match command {
        Command::Join { channel, reader, route, joined } => {
            let ok = sink.subscribe(&channel).await.is_ok();
            routes.entry(channel).or_default().push((reader, route));
            let _ = joined.send(ok);
            ok
        }
        Command::Leave { channel, reader } => {
            remove(routes, &channel, reader);
            if routes.contains_key(&channel) {
                return true;
            }
            sink.unsubscribe(&channel).await.is_ok()
        }
    }
}

fn remove(routes: &mut Routes, channel: &str, reader: u64) {
    if let Some(readers) = routes.get_mut(channel) {
        readers.retain(|(r, _)| *r != reader);
        if readers.is_empty() {
            routes.remove(channel);
        }
    }
}

fn route(routes: &mut Routes, channel: &str, payload: &[u8]) {
    let Some(readers) = routes.get_mut(channel) else { return };
    let payload = Bytes::copy_from_slice(payload);
    readers.retain(|(_, route)| route.send(Live::Message(payload.clone())).is_ok());
}
