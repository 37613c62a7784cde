//! Group commit of appends. Each lane (a standalone node, or one partition on a Redis Cluster, where a
//! script's keys must share a slot) has one task sending one append-script call at a time; appends that
//! arrive while a call is in flight go together in the next call. An idle lane sends at once: nothing ever
//! waits to fill a batch. A lane sends its appends in arrival order, and the script appends in argument
//! order, so per-conversation order and idempotency (a repeated key in one call is a duplicate too) hold.
//!
//! Lane tasks end when the log's last handle is dropped (their queues close); they hold no handle of it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_proto::keys::{ENTRY_FIELD, PartitionKeys};
use redis::{RedisError, Script, Value};
use tokio::sync::{mpsc, oneshot};

use super::reply::{self, protocol, timed_out};
use super::topology::Conn;
use super::{Appended, LogError, new_epoch};

/// Most appends one script call carries: bounds the call's size and its time in Redis (~10 µs each). With
/// one call in flight per lane, a lane carries at most this many appends per round trip, so it must be
/// large: on a loaded machine a round trip takes tens of milliseconds (64 capped a lane at ~1.4k/s there).
const MAX_GROUP: usize = 1024;

/// One append waiting for its lane.
pub(super) struct Pending {
    pub partition: u32,
    pub data: Bytes,
    /// The idempotency key and its window (ms), if the publish has one.
    pub dedupe: Option<(String, u64)>,
    pub reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// What every lane shares: keys, bounds and the script.
pub(super) struct Shared {
    pub keys: Arc<[PartitionKeys]>,
    pub script: &'static Script,
    pub max_len: String,
    pub max_age_ms: String,
    /// `PUBLISH`, or `SPUBLISH` on a Cluster (a shard channel stays on its slot's node).
    pub publish: &'static str,
    pub timeout: Duration,
}

/// The sending side of one lane.
pub(super) struct Lane {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Lane {
    /// Starts a lane sending over `conn`.
    pub fn start(conn: Conn, shared: Arc<Shared>) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(pending, conn, shared));
        Self { queue }
    }

    /// Appends through this lane; resolves when the call carrying it has been answered.
    pub async fn append(
        &self,
        partition: u32,
        data: Bytes,
        dedupe: Option<(String, u64)>,
    ) -> Result<Appended, LogError> {
        let (reply, answer) = oneshot::channel();
        let gone = || LogError::Unavailable { partition, source: closed() };
        self.queue.send(Pending { partition, data, dedupe, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(mut pending: mpsc::UnboundedReceiver<Pending>, conn: Conn, shared: Arc<Shared>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        let outcome = tokio::time::timeout(shared.timeout, commit(&conn, &shared, &group)).await;
        let answers = match outcome {
            Ok(Ok(reply)) => answers(&group, reply),
            Ok(Err(source)) => group.iter().map(|p| Err(unavailable(p, source.clone()))).collect(),
            Err(_) => group.iter().map(|p| Err(unavailable(p, timed_out("append")))).collect(),
        };
        for (p, answer) in group.drain(..).zip(answers) {
            let _ = p.reply.send(answer);
        }
    }
}

/// One call of the append script carrying every append of `group`.
async fn commit(conn: &Conn, shared: &Shared, group: &[Pending]) -> Result<Value, RedisError> {
    let mut call = shared.script.prepare_invoke();
    call.arg(format!("{:x}", new_epoch())).arg(ENTRY_FIELD).arg(&shared.max_len).arg(&shared.max_age_ms);
    call.arg(shared.publish);
    for p in group {
        let keys = &shared.keys[p.partition as usize];
        call.key(&keys.stream).key(&keys.epoch).key(&keys.seq);
        call.arg(p.data.as_ref());
        match &p.dedupe {
            Some((key, window)) => call.key(key).arg(*window),
            None => call.arg(0),
        };
        call.arg(&keys.live);
    }
    conn.invoke(&call).await
}

/// Two reply items per append, in order: `"<epoch> <id>"`, duplicate (0|1).
fn answers(group: &[Pending], reply: Value) -> Vec<Result<Appended, LogError>> {
    let items = match reply::array(0, reply) {
        Ok(items) if items.len() == 2 * group.len() => items,
        other => {
            let detail = format!("append reply for {} entries: {other:?}", group.len());
            return group
                .iter()
                .map(|p| Err(LogError::Protocol { partition: p.partition, detail: detail.clone() }))
                .collect();
        }
    };
    group.iter().zip(items.chunks(2)).map(|(p, item)| appended(p.partition, &item[0], &item[1])).collect()
}

fn appended(partition: u32, result: &Value, duplicate: &Value) -> Result<Appended, LogError> {
    let (epoch, id) =
        reply::text(result).and_then(|t| t.split_once(' ')).ok_or_else(|| protocol(partition, result))?;
    Ok(Appended {
        epoch: u64::from_str_radix(epoch, 16).map_err(|_| protocol(partition, result))?,
        id: id.parse().map_err(|_| protocol(partition, result))?,
        duplicate: matches!(duplicate, Value::Int(1)),
    })
}

fn unavailable(p: &Pending, source: RedisError) -> LogError {
    LogError::Unavailable { partition: p.partition, source }
}

fn closed() -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "append lane stopped"))
}
