//! HTTP side of the edge: accept TCP, speak HTTP/1.1 (hyper), upgrade `GET <ws_path>` to a WebSocket and
//! hand it to a detached session task. Everything else is a plain HTTP answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::EdgeError;
use crate::session::{self, SessionContext};

/// Time a client has to send its HTTP request head (slowloris bound).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Back-off after an accept error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Body = Full<Bytes>;

/// Accepts connections on `listener` until `shutdown`; sessions and connections go on `tracker`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<SessionContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<(), EdgeError> {
    tracing::info!(addr = ?listener.local_addr().ok(), path = %ctx.config.ws_path, "edge listening for WebSockets");
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let conn = serve_connection(stream, Arc::clone(&ctx), shutdown.clone(), tracker.clone());
                tracker.spawn(conn);
            }
            Err(err) => {
                // Usually EMFILE/ENFILE: keep serving the connections we have and try again shortly.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    ctx: Arc<SessionContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let _ = stream.set_nodelay(true);
    let shutdown_watch = shutdown.clone();
    let service = service_fn(move |req| {
        let response = route(req, &ctx, &shutdown, &tracker);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown_watch.cancelled() => {
            // Draining: finish the request in progress, then close instead of keeping the connection alive.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "http connection ended with an error");
    }
}

fn route(
    mut req: Request<Incoming>,
    ctx: &Arc<SessionContext>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Response<Body> {
    if req.uri().path() != ctx.config.ws_path {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return plain(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required\n");
    }
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(parts) => parts,
        Err(err) => {
            tracing::debug!(error = %err, "bad upgrade request");
            return plain(StatusCode::BAD_REQUEST, "bad WebSocket upgrade request\n");
        }
    };
    let positions = wants_positions(req.uri().query());
    let ctx = Arc::clone(ctx);
    let shutdown = shutdown.clone();
    // Detached from hyper: the session watches the shutdown token itself.
    tracker.spawn(async move {
        match upgrade.await {
            Ok(ws) => session::run(ws.into_inner(), ctx, shutdown, positions).await,
            Err(err) => tracing::debug!(error = %err, "upgrade failed"),
        }
    });
    response.map(|_| Body::default())
}

/// `?positions=1` (or `true`) in the query string.
fn wants_positions(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| matches!(pair, "positions=1" | "positions=true")))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
