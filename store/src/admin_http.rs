//! The admin listener (`--admin-listen`), separate from the public ports: Prometheus `/metrics`, liveness
//! `/healthz` and readiness `/readyz`. Plain HTTP/1.1 on hyper; meant for the cluster's probes and scrapers,
//! never for clients.
//!
//! Readiness is "not draining and the dependency answers": once `draining` is cancelled `/readyz` says 503 so
//! load balancers stop sending new clients, while `/metrics` and `/healthz` keep answering until `stop`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::PartitionedLog;

/// How long a readiness check may take before it counts as failed.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a scraper has to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Back-off after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Body = Full<Bytes>;

/// Whether what a server depends on is reachable.
#[async_trait]
pub trait Readiness: Send + Sync + 'static {
    /// `Err` with a short reason when the server should not get new work.
    async fn check(&self) -> Result<(), String>;
}

/// Ready while the partitioned log's store answers a cheap read; with several standalone Redis nodes, while
/// any of them does. A node that is down makes its partitions unavailable (publishes there get
/// `UNAVAILABLE`), but failing readiness on every pod for it would take the whole service down, the
/// partitions on healthy nodes included. Nodes that do not answer are logged.
pub struct LogReachable(pub Arc<dyn PartitionedLog>);

#[async_trait]
impl Readiness for LogReachable {
    async fn check(&self) -> Result<(), String> {
        let probes = self.0.probe_partitions();
        let answers = futures_util::future::join_all(probes.iter().map(|&partition| async move {
            match tokio::time::timeout(READY_CHECK_TIMEOUT, self.0.head(partition)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("log unreachable at partition {partition}: {err}")),
                Err(_) => Err(format!("log did not answer in time at partition {partition}")),
            }
        }))
        .await;
        let failures: Vec<String> = answers.into_iter().filter_map(Result::err).collect();
        if failures.len() == probes.len() {
            return Err(failures.join("; "));
        }
        for failure in &failures {
            tracing::warn!(%failure, "a Redis node does not answer; its partitions are unavailable");
        }
        Ok(())
    }
}

/// What the admin endpoints report on.
#[derive(Clone)]
pub struct AdminState {
    /// Checked by `/readyz`; `None` means ready whenever not draining.
    pub readiness: Option<Arc<dyn Readiness>>,
    /// Cancelled when the server starts draining.
    pub draining: CancellationToken,
}

/// Serves the admin endpoints on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    tracing::info!(addr = ?listener.local_addr().ok(), "admin listening (/metrics, /healthz, /readyz)");
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tracker.spawn(serve_connection(stream, state.clone(), stop.clone()));
            }
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

async fn serve_connection(stream: TcpStream, state: AdminState, stop: CancellationToken) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&req, &state).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "admin connection ended with an error");
    }
}

async fn route(req: &Request<Incoming>, state: &AdminState) -> Response<Body> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => metrics(),
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => readyz(state).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn metrics() -> Response<Body> {
    let handle = crate::telemetry::prometheus();
    handle.run_upkeep();
    let mut response = text(StatusCode::OK, handle.render());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

async fn readyz(state: &AdminState) -> Response<Body> {
    if state.draining.is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    let check = match &state.readiness {
        Some(readiness) => readiness.check().await,
        None => Ok(()),
    };
    match check {
        Ok(()) => text(StatusCode::OK, "ready\n".into()),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
