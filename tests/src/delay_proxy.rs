//! [`DelayProxy`]: a TCP proxy on `127.0.0.1:0` that holds every chunk it forwards, in each direction, for a
//! delay before passing it on: a slow link to a real server (a Redis answering 200 ms late), not a slow
//! server. The delay starts at zero (setup runs at full speed) and is set with [`DelayProxy::slow_down`]. Chunks keep their order; the delay is latency, not throughput (a chunk read while another is
//! held is held in parallel). It also records what clients sent, so a test can wait until a request is in
//! flight instead of sleeping.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deadline::within;

/// Bytes clients sent upstream, kept for [`DelayProxy::sent`] waits.
// Bound: tests send little; the record is capped and drops its oldest half when full.
const MAX_RECORD: usize = 4 * 1024 * 1024;

/// A running proxy; stopped (every connection dropped) when dropped.
pub struct DelayProxy {
    addr: SocketAddr,
    sent: watch::Receiver<Vec<u8>>,
    /// The delay each way, in microseconds.
    delay: Arc<AtomicU64>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl DelayProxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`, without delay until
    /// [`slow_down`](Self::slow_down).
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the delay proxy")?;
        let addr = listener.local_addr()?;
        let (record, sent) = watch::channel(Vec::new());
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let spawner = Arc::clone(&tasks);
        let record = Arc::new(record);
        let delay = Arc::new(AtomicU64::new(0));
        let delays = Arc::clone(&delay);
        tasks.lock().unwrap_or_else(PoisonError::into_inner).spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                let job = connection(client, upstream, Arc::clone(&delays), record);
                spawner.lock().unwrap_or_else(PoisonError::into_inner).spawn(job);
            }
        });
        Ok(Self { addr, sent, delay, tasks })
    }

    /// Where clients connect.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, every chunk read (either way, on every connection) is held for `delay`.
    pub fn slow_down(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay.store(micros, Ordering::SeqCst);
    }

    /// The `redis://` URL of the proxied server.
    #[must_use]
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Waits (bounded) until some client has sent bytes containing `needle` through the proxy: the request
    /// is then on its way, held by the delay.
    pub async fn sent(&self, needle: &[u8]) -> anyhow::Result<()> {
        let mut sent = self.sent.clone();
        let what = format!("{:?} to pass the delay proxy", String::from_utf8_lossy(needle));
        within(what, sent.wait_for(|bytes| bytes.windows(needle.len()).any(|w| w == needle))).await??;
        Ok(())
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).abort_all();
    }
}

/// Proxies one connection until either side closes.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    delay: Arc<AtomicU64>,
    record: Arc<watch::Sender<Vec<u8>>>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream = forward(client_read, server_write, Arc::clone(&delay), Some(record));
    let downstream = forward(server_read, client_write, delay, None);
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// Reads chunks from `from` and writes each to `to` the current delay after it was read, in order.
async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin + Send + 'static,
    delay: Arc<AtomicU64>,
    record: Option<Arc<watch::Sender<Vec<u8>>>>,
) {
    let (held, mut due) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0_u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        let chunk = Bytes::copy_from_slice(&buf[..n]);
        if let Some(record) = &record {
            record.send_modify(|all| remember(all, &chunk));
        }
        let due = Instant::now() + Duration::from_micros(delay.load(Ordering::SeqCst));
        if held.send((due, chunk)).is_err() {
            break;
        }
    }
    drop(held);
    let _ = writer.await;
}

/// Appends `chunk` to the record, halving it first when it would pass [`MAX_RECORD`].
fn remember(all: &mut Vec<u8>, chunk: &[u8]) {
    if all.len() + chunk.len() > MAX_RECORD {
        all.drain(..all.len() / 2);
    }
    all.extend_from_slice(chunk);
}
