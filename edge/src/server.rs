//! HTTP side of the edge: accept TCP, speak HTTP/1.1 (hyper), upgrade `GET <ws_path>` to a WebSocket and
//! hand it to a detached session task. Everything else is a plain HTTP answer: the browser client
//! (`/crier.js`, every edge), the demo (`crier dev` only), or 404.
//!
//! Before the upgrade: a client has `handshake_timeout` to send its request head (slowloris); a foreign
//! `Origin` gets 403; a full edge gets 503. Request URIs and headers are never logged: they may carry tokens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::assets::Asset;
use crate::demo::Demo;
use crate::error::EdgeError;
use crate::handshake::{self, BEARER_SUBPROTOCOL, TokenSource};
use crate::session::{self, Handshake, SessionContext};
use crate::stream::{Stream, TlsConnection};

/// Back-off after an accept error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Body = Full<Bytes>;

/// What HTTP requests are answered from.
pub struct Routes {
    /// Shared by every WebSocket session.
    pub sessions: Arc<SessionContext>,
    /// The demo page and its publish endpoint; `crier dev` only.
    pub demo: Option<Demo>,
    /// Serves `https://` and `wss://` with this; `None`: plain `http://` and `ws://`.
    pub tls: Option<TlsAcceptor>,
}

/// Accepts connections on `listener` until `shutdown`; sessions and connections go on `tracker`.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<(), EdgeError> {
    let path = &routes.sessions.config.ws_path;
    let demo = routes.demo.is_some();
    tracing::info!(addr = ?listener.local_addr().ok(), %path, demo, "edge listening for WebSockets");
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let (routes, shutdown) = (Arc::clone(&routes), shutdown.clone());
                // The TLS handshake runs in the connection's own task: a slow or broken one costs only it.
                match routes.tls.clone() {
                    None => tracker.spawn(serve_connection(stream, routes, shutdown, tracker.clone())),
                    Some(tls) => tracker.spawn(serve_tls(stream, tls, routes, shutdown, tracker.clone())),
                };
            }
            Err(err) => {
                // Usually EMFILE/ENFILE: keep serving the connections we have and try again shortly.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Completes the TLS handshake within the handshake timeout, then serves HTTP over it.
async fn serve_tls(
    stream: TcpStream,
    tls: TlsAcceptor,
    routes: Arc<Routes>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let handshake_timeout = routes.sessions.config.limits.handshake_timeout;
    let accepted = tokio::select! {
        () = shutdown.cancelled() => return,
        accepted = tokio::time::timeout(handshake_timeout, tls.accept(stream)) => accepted,
    };
    match accepted {
        Ok(Ok(stream)) => serve_connection(stream, routes, shutdown, tracker).await,
        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(?handshake_timeout, "TLS handshake timed out"),
    }
}

async fn serve_connection<I>(
    stream: I,
    routes: Arc<Routes>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake_timeout = routes.sessions.config.limits.handshake_timeout;
    let service = service_fn(move |req| {
        let (routes, tracker) = (Arc::clone(&routes), tracker.clone());
        async move { Ok::<_, Infallible>(route(req, &routes, &tracker).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(handshake_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    // Browsers keep page connections alive: on shutdown, finish the request in flight and close, or the
    // edge would wait for the browser to hang up. (An upgraded connection has already left hyper.)
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "http connection ended with an error");
    }
}

async fn route(req: Request<Incoming>, routes: &Routes, tracker: &TaskTracker) -> Response<Body> {
    let path = req.uri().path();
    if path == routes.sessions.config.ws_path {
        return upgrade(req, &routes.sessions, tracker);
    }
    if let Some(asset) = Asset::client_library(path) {
        return asset.response(req.method());
    }
    match &routes.demo {
        Some(demo) if Demo::serves(path) => demo.respond(req).await,
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn upgrade(mut req: Request<Incoming>, ctx: &Arc<SessionContext>, tracker: &TaskTracker) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return plain(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required\n");
    }
    if !handshake::origin_allowed(&ctx.config.origins, req.headers()) {
        tracing::debug!("handshake refused: origin not allowed");
        return plain(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let Some(seat) = ctx.directory.seat() else {
        tracing::debug!(limit = ctx.config.limits.max_connections, "handshake refused: edge full");
        let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
        response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
        return response;
    };
    let token = handshake::token(req.headers(), req.uri().query());
    let (mut response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(parts) => parts,
        Err(err) => {
            tracing::debug!(error = %err, "bad upgrade request");
            return plain(StatusCode::BAD_REQUEST, "bad WebSocket upgrade request\n");
        }
    };
    if matches!(token, Some((_, TokenSource::Subprotocol))) {
        // Browsers fail a handshake whose answer selects none of the offered subprotocols.
        let bearer = http::HeaderValue::from_static(BEARER_SUBPROTOCOL);
        response.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, bearer);
    }
    let positions = wants_positions(req.uri().query());
    let handshake = Handshake { token: token.map(|(t, _)| t), seat, positions };
    let ctx = Arc::clone(ctx);
    // Detached from hyper; the directory tells the session when the edge drains.
    // A combinator, not an async block: that would hold the session's future twice.
    tracker.spawn(upgrade.then(move |upgraded| match session_on(upgraded, ctx, handshake) {
        Some(session) => Either::Left(session),
        None => Either::Right(std::future::ready(())),
    }));
    response.map(|_| Body::default())
}

/// The session of an upgraded connection, built before anything is awaited so that the task holds only it.
fn session_on(
    upgraded: Result<
        fastwebsockets::WebSocket<TokioIo<hyper::upgrade::Upgraded>>,
        fastwebsockets::WebSocketError,
    >,
    ctx: Arc<SessionContext>,
    handshake: Handshake,
) -> Option<impl Future<Output = ()> + Send + use<>> {
    match upgraded.map(|ws| connection_of(ws.into_inner().into_inner())) {
        Ok(Some((stream, early))) => Some(session::run(stream, &early, ctx, handshake)),
        Ok(None) => {
            tracing::error!("upgraded connection is neither TCP nor TLS over TCP");
            None
        }
        Err(err) => {
            tracing::debug!(error = %err, "upgrade failed");
            None
        }
    }
}

/// The connection under an upgrade, and the bytes hyper read past the request.
fn connection_of(upgraded: hyper::upgrade::Upgraded) -> Option<(Stream, Bytes)> {
    let tls = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return Some((Stream::Plain(parts.io.into_inner()), parts.read_buf)),
        Err(upgraded) => upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>().ok()?,
    };
    let (tcp, conn) = tls.io.into_inner().into_inner();
    Some((Stream::Tls(Box::new(TlsConnection::new(tcp, conn))), tls.read_buf))
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
