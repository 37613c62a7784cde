//! Native TLS (issue 15 item 1): the edge serves `wss://` and `https://` from PEM files it re-reads when they
//! change; the broker serves gRPC over TLS, optionally requiring client certificates (mTLS). Certificates
//! come from a CA made for each test (rcgen).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use crier_broker::{BrokerConfig, BrokerTls, Publisher, Services};
use crier_edge::tls::TlsFiles;
use crier_proto::partition::DEFAULT_PARTITIONS;
use crier_store::log::{DEFAULT_MAX_LEN, MemoryLog};
use crier_tests::pki::{presented_certificate, tls_connect};
use crier_tests::raw_ws::{OP_CLOSE, OP_TEXT, ServerFrame, client_frame, text_frame};
use crier_tests::{
    CrierProcess, PublishClient, RawWs, STEP, Servers, ServersConfig, TestCa, WsClient, crier_binary,
    free_port, within,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A dev edge (and a plaintext broker) whose listener serves TLS with `cert`/`key`, checked every 50 ms.
async fn tls_edge(cert: &Path, key: &Path) -> Result<Servers> {
    let mut config = ServersConfig::dev(DEFAULT_PARTITIONS, 1);
    let files = TlsFiles { reload_interval: Duration::from_millis(50), ..TlsFiles::new(cert, key) };
    config.edge.tls = Some(files);
    Servers::start_with(Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN)), config).await
}

/// An authenticated `wss://` client of `servers`' edge subscribed to `conversation`.
async fn subscribed(
    servers: &Servers,
    tls: Arc<rustls::ClientConfig>,
    conversation: &str,
) -> Result<WsClient> {
    let url = format!("wss://{}/api/ws", servers.edge_addr(0));
    let mut ws = WsClient::connect_tls(&url, tls).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe(conversation).await?;
    Ok(ws)
}

/// `wss://` carries the whole protocol (a notification arrives), and `https://` serves `/crier.js`.
#[tokio::test]
async fn edge_serves_wss_and_https() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("crier test CA")?;
    let (cert, key) = ca.server()?.write(dir.path(), "edge")?;
    let servers = tls_edge(&cert, &key).await?;
    let mut ws = subscribed(&servers, ca.client_config(None)?, "c1").await?;
    let payload = json!({"type": "job-status", "status": "done", "conversationId": "c1"});
    servers.publish_client().await?.publish("c1", &payload).await?;
    ensure!(ws.recv_json().await? == payload);
    let mut tls = tls_connect(servers.edge_addr(0), ca.client_config(None)?).await?;
    tls.write_all(b"GET /crier.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await?;
    let mut reply = String::new();
    within("the /crier.js reply", tls.read_to_string(&mut reply)).await??;
    ensure!(reply.starts_with("HTTP/1.1 200"), "got {}", reply.lines().next().unwrap_or_default());
    ensure!(reply.contains("application/javascript") || reply.contains("text/javascript"), "{reply:.300}");
    servers.shutdown().await
}

/// A plaintext client, a client stalled mid-handshake and a client with a bad handshake each cost only their
/// own connection: a TLS client connected before keeps receiving, and a new one connects meanwhile.
#[tokio::test]
async fn plaintext_and_stalled_clients_cost_only_their_connection() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("crier test CA")?;
    let (cert, key) = ca.server()?.write(dir.path(), "edge")?;
    let servers = tls_edge(&cert, &key).await?;
    let addr = servers.edge_addr(0);
    let mut first = subscribed(&servers, ca.client_config(None)?, "c1").await?;
    // Stalled: connected, never says a word; the accept loop must not wait for it.
    let _stalled = within("TCP connect", TcpStream::connect(addr)).await??;
    let mut plain = within("TCP connect", TcpStream::connect(addr)).await??;
    plain.write_all(b"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await?;
    let mut answer = Vec::new();
    // The edge ends the plaintext connection (a TLS alert at most, never an HTTP answer).
    within("the edge to end the plaintext connection", plain.read_to_end(&mut answer)).await?.ok();
    ensure!(
        !answer.starts_with(b"HTTP"),
        "plaintext got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // A client that does not trust the certificate fails its own handshake.
    let stranger = TestCa::new("another CA")?;
    ensure!(tls_connect(addr, stranger.client_config(None)?).await.is_err(), "untrusted handshake passed");
    let mut second = subscribed(&servers, ca.client_config(None)?, "c1").await?;
    let payload = json!({"type": "job-status", "status": "running", "conversationId": "c1"});
    servers.publish_client().await?.publish("c1", &payload).await?;
    ensure!(first.recv_json().await? == payload);
    ensure!(second.recv_json().await? == payload);
    servers.shutdown().await
}

/// More notifications than the sockets hold while the client is not reading (a small receive buffer, far
/// more than the send buffer's maximum) arrive whole and in order over `wss://` once it reads: encrypted
/// bytes rustls still holds when the socket fills go out when it drains, with nothing new to send.
#[tokio::test]
async fn burst_to_a_paused_wss_client_arrives_whole_and_in_order() -> Result<()> {
    const COUNT: usize = 512;
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("crier test CA")?;
    let (cert, key) = ca.server()?.write(dir.path(), "edge")?;
    let mut config = ServersConfig::dev(DEFAULT_PARTITIONS, 1);
    config.edge.tls = Some(TlsFiles::new(&cert, &key));
    config.edge.max_queue_bytes = 64 * 1024 * 1024;
    let servers =
        Servers::start_with(Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN)), config).await?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(16 * 1024)?;
    let tcp = within("TCP connect", socket.connect(servers.edge_addr(0))).await??;
    let url = format!("wss://{}/api/ws", servers.edge_addr(0));
    let mut ws = WsClient::connect_tls_over(&url, tcp, ca.client_config(None)?).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("big").await?;
    let mut publisher = servers.publish_client().await?;
    let filler = "x".repeat(16 * 1024);
    for seq in 0..COUNT {
        publisher.publish("big", &json!({"seq": seq, "filler": filler})).await?;
    }
    for seq in 0..COUNT {
        let frame = ws.recv_json().await?;
        ensure!(frame["seq"] == seq, "expected seq {seq}, got {}", frame["seq"]);
        ensure!(frame["filler"].as_str().map(str::len) == Some(16 * 1024), "notification {seq} cut");
    }
    servers.shutdown().await
}

/// A `wss://` client that writes 2,000 `ping` frames at once without reading receives the `Rate limit
/// exceeded` error and close 4029, then the edge's `close_notify` and a FIN, not a reset: the lingering close
/// reads and decrypts the client's rest.
#[tokio::test]
async fn flooding_wss_client_receives_4029_then_close_notify() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("crier test CA")?;
    let (cert, key) = ca.server()?.write(dir.path(), "edge")?;
    let servers = tls_edge(&cert, &key).await?;
    let mut raw = RawWs::connect_tls(servers.edge_addr(0), "/api/ws", ca.client_config(None)?).await?;
    let mut flood = text_frame(r#"{"action":"auth","userId":"flooder"}"#);
    flood.extend((0..2_000).flat_map(|_| text_frame(r#"{"action":"ping"}"#)));
    raw.write(&flood).await?;
    let frames = raw.frames_until_close().await?;
    let (close, texts) = frames.split_last().unzip();
    ensure!(close.and_then(ServerFrame::close_code) == Some(4029), "last frames {:?}", frames.last());
    let error = texts.and_then(<[ServerFrame]>::last).map(ServerFrame::text);
    ensure!(error.as_deref() == Some(r#"{"type":"error","message":"Rate limit exceeded"}"#), "{error:?}");
    ensure!(raw.ends_with_close_notify_and_fin().await?, "no close_notify and FIN after the close frame");
    servers.shutdown().await
}

/// A `wss://` client that writes a 2 MiB message in one go (over the 64 KiB limit) receives close 1009, then
/// `close_notify` and a FIN: past a broken framing the edge still decrypts and drops until the client's end.
#[tokio::test]
async fn oversized_wss_message_receives_1009_then_close_notify() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("crier test CA")?;
    let (cert, key) = ca.server()?.write(dir.path(), "edge")?;
    let servers = tls_edge(&cert, &key).await?;
    let mut raw = RawWs::connect_tls(servers.edge_addr(0), "/api/ws", ca.client_config(None)?).await?;
    raw.write(&client_frame(OP_TEXT, true, &vec![b'x'; 2 * 1024 * 1024])).await?;
    let frames = raw.frames_until_close().await?;
    let last = frames.last();
    ensure!(last.is_some_and(|f| f.opcode == OP_CLOSE && f.close_code() == Some(1009)), "{last:?}");
    ensure!(raw.ends_with_close_notify_and_fin().await?, "no close_notify and FIN after the close frame");
    servers.shutdown().await
}

/// A certificate replaced on disk is presented to new connections without a restart, while a connection
/// made before the rotation stays open and keeps receiving.
#[tokio::test]
async fn rotated_certificate_reaches_new_connections_and_spares_live_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("crier test CA")?;
    let old = ca.server()?;
    let (cert, key) = old.write(dir.path(), "edge")?;
    let servers = tls_edge(&cert, &key).await?;
    let addr = servers.edge_addr(0);
    let tls = ca.client_config(None)?;
    ensure!(&presented_certificate(addr, Arc::clone(&tls)).await? == old.der(), "not the first certificate");
    let mut live = subscribed(&servers, Arc::clone(&tls), "c1").await?;
    let new = ca.server()?;
    new.write(dir.path(), "edge")?;
    within("the edge to present the rotated certificate", async {
        loop {
            if &presented_certificate(addr, Arc::clone(&tls)).await? == new.der() {
                return anyhow::Ok(());
            }
            tokio::task::yield_now().await;
        }
    })
    .await??;
    let payload = json!({"type": "job-status", "status": "rotated", "conversationId": "c1"});
    servers.publish_client().await?.publish("c1", &payload).await?;
    ensure!(live.recv_json().await? == payload, "the connection from before the rotation lost its stream");
    live.send_json(&json!({"action": "ping"})).await?;
    live.expect_type("pong").await?;
    servers.shutdown().await
}

/// A broker on `127.0.0.1:0` serving TLS with a fresh server certificate of `ca`, requiring client
/// certificates of `ca` when `mtls`; returns its `https://` URL and the token that stops it.
async fn tls_broker(ca: &TestCa, mtls: bool) -> Result<(String, CancellationToken)> {
    let server = ca.server()?;
    let tls = BrokerTls {
        cert_pem: server.cert_pem.clone().into_bytes(),
        key_pem: server.key_pem.clone().into_bytes(),
        client_ca_pem: mtls.then(|| ca.pem.clone().into_bytes()),
        handshake_timeout: STEP,
    };
    let log = Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN));
    let publisher = Publisher::new(log, &BrokerConfig::default());
    let access = Arc::new(crier_store::access::MemoryAccessStore::new());
    let services = Services { publisher, access, api_token: None, admin_token: None, tls: Some(tls) };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let stop = CancellationToken::new();
    tokio::spawn(crier_broker::server::serve(listener, services, None, stop.clone()));
    Ok((url, stop))
}

fn client_tls(ca: &TestCa) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem)).domain_name("127.0.0.1")
}

/// gRPC over TLS: a client trusting the broker's CA publishes; one trusting another CA cannot connect.
#[tokio::test]
async fn broker_serves_grpc_over_tls() -> Result<()> {
    let ca = TestCa::new("crier test CA")?;
    let (url, stop) = tls_broker(&ca, false).await?;
    let mut client = PublishClient::connect_tls(&url, client_tls(&ca)).await?;
    client.publish("c1", &json!({"type": "job-status"})).await?;
    let stranger = TestCa::new("another CA")?;
    ensure!(
        PublishClient::connect_tls(&url, client_tls(&stranger)).await.is_err(),
        "untrusted broker accepted"
    );
    stop.cancel();
    Ok(())
}

/// With a client CA the broker refuses a client without a certificate, and one whose certificate another
/// CA signed; a client certificate of the configured CA publishes.
#[tokio::test]
async fn mtls_broker_refuses_clients_without_a_certificate() -> Result<()> {
    let ca = TestCa::new("crier test CA")?;
    let (url, stop) = tls_broker(&ca, true).await?;
    let refused = |result: Result<String>| match result {
        Ok(position) => bail!("published at {position} without a valid client certificate"),
        Err(_) => Ok(()),
    };
    let payload = json!({"type": "job-status"});
    // The handshake may complete before the server checks the (missing) certificate, so the refusal shows
    // at the connect or at the first call.
    if let Ok(mut anonymous) = PublishClient::connect_tls(&url, client_tls(&ca)).await {
        refused(anonymous.publish("c1", &payload).await)?;
    }
    let foreign = TestCa::new("another CA")?.client("mallory")?;
    let identity = Identity::from_pem(&foreign.cert_pem, &foreign.key_pem);
    if let Ok(mut mallory) = PublishClient::connect_tls(&url, client_tls(&ca).identity(identity)).await {
        refused(mallory.publish("c1", &payload).await)?;
    }
    let alice = ca.client("alice")?;
    let identity = Identity::from_pem(&alice.cert_pem, &alice.key_pem);
    let mut client = PublishClient::connect_tls(&url, client_tls(&ca).identity(identity))
        .await
        .context("client with a certificate of the configured CA")?;
    client.publish("c1", &payload).await?;
    stop.cancel();
    Ok(())
}

/// `crier publish` against `broker` with `extra` flags; returns its exit code and stdout.
async fn publish_cli(broker: &str, extra: &[&str]) -> Result<(Option<i32>, String)> {
    let args = [&["publish", "--broker", broker, "--conversation", "c1"][..], extra, &[r#"{"type":"job"}"#]]
        .concat();
    let output = within(
        "crier publish",
        tokio::process::Command::new(crier_binary()?).args(&args).env_clear().output(),
    )
    .await??;
    Ok((output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// The binary end to end: `crier dev` with the TLS flags serves `wss://` and mTLS gRPC; `crier publish`
/// with `--ca-file` alone is refused (69), with `--cert-file`/`--key-file` publishes, and the `wss://`
/// subscriber receives it.
#[tokio::test]
async fn crier_dev_and_publish_speak_tls_with_the_flags() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("crier test CA")?;
    let (cert, key) = ca.server()?.write(dir.path(), "server")?;
    let (client_cert, client_key) = ca.client("backend")?.write(dir.path(), "client")?;
    let ca_file = ca.write(dir.path(), "ca.crt")?;
    let (ws_port, grpc_port) = (free_port()?, free_port()?);
    let path = |p: &Path| p.display().to_string();
    let (cert, key, ca_file) = (path(&cert), path(&key), path(&ca_file));
    let (ws, grpc) = (format!("127.0.0.1:{ws_port}"), format!("127.0.0.1:{grpc_port}"));
    let _dev = CrierProcess::spawn(
        &["dev", "--listen", &ws, "--grpc-listen", &grpc, "--tls-client-ca-file", &ca_file],
        &[("CRIER_TLS_CERT_FILE", &cert), ("CRIER_TLS_KEY_FILE", &key)],
    )?;
    let url = format!("wss://{ws}/api/ws");
    let mut subscriber = within("crier dev to serve wss://", async {
        loop {
            if let Ok(client) = WsClient::connect_tls(&url, ca.client_config(None)?).await {
                return anyhow::Ok(client);
            }
            tokio::task::yield_now().await;
        }
    })
    .await??;
    subscriber.auth_dev("u1").await?;
    subscriber.subscribe("c1").await?;
    let broker = format!("https://{grpc}");
    let (code, _) = publish_cli(&broker, &["--ca-file", &ca_file]).await?;
    ensure!(code == Some(69), "publish without a client certificate exited {code:?}");
    let (client_cert, client_key) = (path(&client_cert), path(&client_key));
    let (code, position) = publish_cli(
        &broker,
        &["--ca-file", &ca_file, "--cert-file", &client_cert, "--key-file", &client_key],
    )
    .await?;
    ensure!(code == Some(0) && !position.trim().is_empty(), "publish exited {code:?}, printed {position:?}");
    ensure!(subscriber.recv_json().await? == json!({"type": "job"}));
    Ok(())
}
