//! [`WsClient`]: a browser stand-in built on tokio-tungstenite, a WebSocket implementation independent of the
//! edge's, so the tests and the server share no protocol code.
//!
//! Every wait is bounded ([`STEP`] unless a method takes a limit), and failures say what was expected and
//! what arrived. WebSocket pings and pongs are answered by tungstenite and never surface here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::deadline::{STEP, within, within_for};

/// One WebSocket connection to an edge.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// For error messages: which connection failed.
    url: String,
}

impl WsClient {
    /// Opens a connection to `url` (e.g. `ws://127.0.0.1:PORT/api/ws?positions=1`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with_headers(url, &[]).await
    }

    /// Opens a connection with extra handshake headers (`Authorization`, `Origin`,
    /// `Sec-WebSocket-Protocol`, ...). A refused handshake is an error that downcasts to
    /// [`tokio_tungstenite::tungstenite::Error`]; `Error::Http(response)` carries the status.
    pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut request = url.into_client_request().with_context(|| format!("bad WebSocket URL {url}"))?;
        for &(name, value) in headers {
            request.headers_mut().append(HeaderName::try_from(name)?, HeaderValue::try_from(value)?);
        }
        Self::connect_request(request).await
    }

    /// Opens a connection with a fully built handshake request.
    pub async fn connect_request(request: Request) -> anyhow::Result<Self> {
        Self::connect_with_connector(request, None).await
    }

    /// Opens a `wss://` connection, verifying the edge's certificate with `tls`.
    pub async fn connect_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Self> {
        let request = url.into_client_request().with_context(|| format!("bad WebSocket URL {url}"))?;
        Self::connect_with_connector(request, Some(Connector::Rustls(tls))).await
    }

    /// Opens a `wss://` connection over `tcp`, already connected to the edge (e.g. with a small receive
    /// buffer), verifying the edge's certificate with `tls`.
    pub async fn connect_tls_over(
        url: &str,
        tcp: TcpStream,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let request = url.into_client_request().with_context(|| format!("bad WebSocket URL {url}"))?;
        let connector = Some(Connector::Rustls(tls));
        let (stream, _response) = within(format!("WebSocket handshake with {url}"), async {
            tokio_tungstenite::client_async_tls_with_config(request, tcp, None, connector).await
        })
        .await?
        .with_context(|| format!("WebSocket handshake with {url}"))?;
        Ok(Self { stream, url: url.to_owned() })
    }

    async fn connect_with_connector(request: Request, connector: Option<Connector>) -> anyhow::Result<Self> {
        let url = request.uri().to_string();
        let (stream, _response) = within(format!("WebSocket handshake with {url}"), async {
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await
        })
        .await?
        .with_context(|| format!("WebSocket handshake with {url}"))?;
        Ok(Self { stream, url })
    }

    /// Sends `value` as one text frame.
    pub async fn send_json(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_raw(Message::text(value.to_string())).await
    }

    /// Sends each of `values` as a text frame, all in one write (so the edge reads them together).
    pub async fn send_all_json(&mut self, values: &[Value]) -> anyhow::Result<()> {
        let what = format!("sending {} frames to {}", values.len(), self.url);
        within(&what, async {
            for value in values {
                self.stream.feed(Message::text(value.to_string())).await?;
            }
            self.stream.flush().await
        })
        .await?
        .context(what)
    }

    /// Sends `text` as one text frame, verbatim (for malformed JSON and the like).
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send_raw(Message::text(text)).await
    }

    /// Sends any frame: binary, oversized, a raw `Message::Frame` with invalid UTF-8, a close.
    pub async fn send_raw(&mut self, message: Message) -> anyhow::Result<()> {
        let what = format!("sending a frame to {}", self.url);
        within(&what, self.stream.send(message)).await?.context(what)
    }

    /// The next text frame, exactly as sent (for byte-for-byte protocol checks).
    pub async fn recv_text(&mut self) -> anyhow::Result<String> {
        let url = self.url.clone();
        let message = within(format!("a text frame from {url}"), self.next_data())
            .await??
            .ok_or_else(|| anyhow!("expected a text frame, but {url} ended without a close frame"))?;
        match message {
            Message::Text(text) => Ok(text.as_str().to_owned()),
            other => bail!("expected a text frame from {url}, got {}", describe(&other)),
        }
    }

    /// The next text frame, parsed as JSON.
    pub async fn recv_json(&mut self) -> anyhow::Result<Value> {
        self.recv_json_expecting("a JSON frame").await
    }

    /// The next frame, which must be JSON with `"type": ty`; returns it whole.
    pub async fn expect_type(&mut self, ty: &str) -> anyhow::Result<Value> {
        let frame = self.recv_json_expecting(&format!("a {ty:?} frame")).await?;
        if frame["type"] != ty {
            bail!("expected a {ty:?} frame from {}, got {frame}", self.url);
        }
        Ok(frame)
    }

    /// The next frame, a `notification` of `conversation` whose payload carries a `seq`; returns that seq
    /// and the frame's position.
    pub async fn expect_seq_notification(&mut self, conversation: &str) -> anyhow::Result<(i64, String)> {
        let frame = self.expect_type("notification").await?;
        if frame["conversationId"] != conversation {
            bail!("expected a notification of {conversation:?}, got {frame}");
        }
        let (Some(seq), Some(position)) = (frame["data"]["seq"].as_i64(), frame["position"].as_str()) else {
            bail!("notification without seq or position: {frame}");
        };
        Ok((seq, position.to_owned()))
    }

    /// Reads until the server's close frame, discarding data frames before it, and returns its close code
    /// (`None` when the connection ended without a code or without a close frame).
    pub async fn expect_close(&mut self) -> anyhow::Result<Option<u16>> {
        self.expect_close_within(STEP).await
    }

    /// [`expect_close`](Self::expect_close) for closes that take longer than a step (e.g. timeouts).
    pub async fn expect_close_within(&mut self, limit: Duration) -> anyhow::Result<Option<u16>> {
        let url = self.url.clone();
        within_for(limit, format!("a close frame from {url}"), async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| u16::from(f.code))),
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => return Ok(None),
                }
            }
        })
        .await?
    }

    /// Asserts that no data or close frame arrives within `window`.
    ///
    /// This is the harness's one bounded wait for *absence*: nothing can signal that a frame will never
    /// come, so the test waits out `window` (keep it short: ~100-300 ms) after the event that would have
    /// caused the frame. Use it only after some later, positively awaited frame cannot prove the absence.
    pub async fn expect_no_frame_within(&mut self, window: Duration) -> anyhow::Result<()> {
        match tokio::time::timeout(window, self.next_data()).await {
            Err(_elapsed) => Ok(()),
            Ok(Ok(Some(message))) => {
                bail!("expected no frame within {window:?} from {}, got {}", self.url, describe(&message))
            }
            Ok(Ok(None)) => bail!("expected no frame within {window:?}, but {} closed", self.url),
            Ok(Err(err)) => Err(err),
        }
    }

    /// Dev auth: reads `ready`, sends `{"action":"auth","userId":user}`, expects `authenticated` for `user`.
    pub async fn auth_dev(&mut self, user: &str) -> anyhow::Result<Value> {
        self.expect_type("ready").await?;
        self.send_json(&json!({ "action": "auth", "userId": user })).await?;
        self.expect_authenticated(user).await
    }

    /// Token auth: reads `ready`, sends `{"action":"auth","token":token}`, expects `authenticated` for
    /// `user`.
    pub async fn auth_token(&mut self, token: &str, user: &str) -> anyhow::Result<Value> {
        self.expect_type("ready").await?;
        self.send_json(&json!({ "action": "auth", "token": token })).await?;
        self.expect_authenticated(user).await
    }

    /// Expects `{"type":"authenticated","userId":user}`.
    pub async fn expect_authenticated(&mut self, user: &str) -> anyhow::Result<Value> {
        let frame = self.expect_type("authenticated").await?;
        if frame["userId"] != user {
            bail!("expected authenticated as {user:?}, got {frame}");
        }
        Ok(frame)
    }

    /// Subscribes to `conversation` and expects `subscribed` for it.
    pub async fn subscribe(&mut self, conversation: &str) -> anyhow::Result<Value> {
        self.send_json(&json!({ "action": "subscribe", "conversationId": conversation })).await?;
        self.expect_subscribed(conversation).await
    }

    /// Subscribes with recovery from `since`; returns the `subscribed` frame (check its `recovered`).
    pub async fn subscribe_since(&mut self, conversation: &str, since: &str) -> anyhow::Result<Value> {
        let request = json!({ "action": "subscribe", "conversationId": conversation, "since": since });
        self.send_json(&request).await?;
        self.expect_subscribed(conversation).await
    }

    /// Unsubscribes from `conversation` and expects `unsubscribed` for it.
    pub async fn unsubscribe(&mut self, conversation: &str) -> anyhow::Result<Value> {
        self.send_json(&json!({ "action": "unsubscribe", "conversationId": conversation })).await?;
        let frame = self.expect_type("unsubscribed").await?;
        if frame["conversationId"] != conversation {
            bail!("expected unsubscribed from {conversation:?}, got {frame}");
        }
        Ok(frame)
    }

    /// Sends a normal close (1000) and waits for the server's answer.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let frame = CloseFrame { code: 1000.into(), reason: "".into() };
        self.send_raw(Message::Close(Some(frame))).await?;
        self.expect_close().await.map(drop)
    }

    async fn expect_subscribed(&mut self, conversation: &str) -> anyhow::Result<Value> {
        let frame = self.expect_type("subscribed").await?;
        if frame["conversationId"] != conversation {
            bail!("expected subscribed to {conversation:?}, got {frame}");
        }
        Ok(frame)
    }

    async fn recv_json_expecting(&mut self, what: &str) -> anyhow::Result<Value> {
        let url = self.url.clone();
        let message = within(format!("{what} from {url}"), self.next_data())
            .await??
            .ok_or_else(|| anyhow!("expected {what}, but {url} ended without a close frame"))?;
        match message {
            Message::Text(text) => serde_json::from_str(text.as_str())
                .with_context(|| format!("expected {what} from {url}, got non-JSON text {text:?}")),
            other => bail!("expected {what} from {url}, got {}", describe(&other)),
        }
    }

    /// The next text, binary or close frame, unbounded in time (wrap it in `within`); `None` when the
    /// connection ended without a close frame, including by a reset.
    pub async fn next_message(&mut self) -> anyhow::Result<Option<Message>> {
        Ok(self.next_data().await.unwrap_or(None))
    }

    /// The next text, binary or close frame; `None` if the stream ended.
    async fn next_data(&mut self) -> anyhow::Result<Option<Message>> {
        loop {
            match self.stream.next().await {
                None => return Ok(None),
                Some(Err(err)) => return Err(err).with_context(|| format!("reading from {}", self.url)),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(message)) => return Ok(Some(message)),
            }
        }
    }
}

fn describe(message: &Message) -> String {
    match message {
        Message::Text(text) => format!("text frame {}", text.as_str()),
        Message::Binary(data) => format!("binary frame of {} bytes", data.len()),
        Message::Close(Some(frame)) => {
            format!("close frame {} {:?}", u16::from(frame.code), frame.reason.as_str())
        }
        Message::Close(None) => "close frame without code".to_owned(),
        other => format!("{other:?}"),
    }
}
