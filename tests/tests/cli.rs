//! The `crier` binary as operators run it: config problems are reported one line each with exit code 64
//! before any port is bound; `token` mints what the edge accepts.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};

/// The claims of the token a successful `crier token` printed.
fn claims(output: &Output) -> Result<serde_json::Value> {
    use base64::Engine;
    ensure!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout.clone())?;
    let parts: Vec<&str> = token.trim().split('.').collect();
    ensure!(parts.len() == 3, "{token}");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1])?;
    Ok(serde_json::from_slice(&payload)?)
}

/// `target/<profile>/crier`, built by `cargo build --workspace --all-targets` next to this test binary.
fn crier() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).context("test binary outside target/")?;
    let path = profile_dir.join("crier");
    ensure!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --all-targets` first",
        path.display()
    );
    Ok(path)
}

fn run(args: &[&str]) -> Result<Output> {
    Command::new(crier()?).args(args).env_clear().output().context("running crier")
}

/// Every problem is its own line, the exit code is 64, and the port asked for is never bound.
#[test]
fn bad_config_exits_64_with_a_line_per_problem_before_binding() -> Result<()> {
    let probe = TcpListener::bind("127.0.0.1:0")?;
    let port = probe.local_addr()?.port();
    drop(probe);
    let listen = format!("127.0.0.1:{port}");
    let output = run(&["edge", "--listen", &listen, "--redis-url", "nonsense://x", "--partitions", "0"])?;
    ensure!(output.status.code() == Some(64), "exit {:?}", output.status.code());
    let stderr = String::from_utf8(output.stderr)?;
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(lines.len() == 3, "one line per problem, got:\n{stderr}");
    for needle in ["--redis-url", "--jwt-secret", "--partitions"] {
        ensure!(lines.iter().any(|l| l.contains(needle)), "no line about {needle}:\n{stderr}");
    }
    ensure!(TcpListener::bind(&listen).is_ok(), "the edge bound {listen} despite a bad config");
    Ok(())
}

/// The drain window is a duration like every other (a plain number is seconds), and the variable it
/// replaced is refused with its new name instead of being ignored.
#[test]
fn drain_window_takes_durations_and_the_old_variable_is_refused() -> Result<()> {
    let bad = Command::new(crier()?)
        .args(["edge", "--auth-mode", "none", "--acl", "open", "--redis-url", "redis://127.0.0.1:1"])
        .env_clear()
        .env("CRIER_DRAIN_SECONDS", "5")
        .output()?;
    ensure!(bad.status.code() == Some(64), "exit {:?}", bad.status.code());
    let stderr = String::from_utf8(bad.stderr)?;
    ensure!(stderr.contains("CRIER_DRAIN_WINDOW"), "{stderr}");
    for good in ["--drain-window=1m30s", "--drain-seconds=7"] {
        let output = run(&["edge", "--auth-mode", "none", "--acl", "open", good, "--help"])?;
        ensure!(output.status.success(), "{good}: {output:?}");
    }
    let output = run(&["edge", "--drain-window=soon", "--help"])?;
    ensure!(output.status.code() == Some(64), "a bad duration: exit {:?}", output.status.code());
    Ok(())
}

/// `--idle-timeout` takes a duration (`0` is off); a number without a unit is a usage error.
#[test]
fn idle_timeout_takes_a_duration() -> Result<()> {
    for good in ["--idle-timeout=30m", "--idle-timeout=0"] {
        let output = run(&["edge", "--auth-mode", "none", "--acl", "open", good, "--help"])?;
        ensure!(output.status.success(), "{good}: {output:?}");
    }
    let output = run(&["edge", "--idle-timeout=30", "--help"])?;
    ensure!(output.status.code() == Some(64), "a duration without unit: exit {:?}", output.status.code());
    Ok(())
}

/// Unknown flags are usage errors too (64), not clap's default 2.
#[test]
fn unknown_flag_exits_64() -> Result<()> {
    let output = run(&["dev", "--no-such-flag"])?;
    ensure!(output.status.code() == Some(64), "exit {:?}", output.status.code());
    Ok(())
}

/// A runtime without threads is a usage error, named by its flag, before anything starts.
#[test]
fn zero_worker_threads_exits_64() -> Result<()> {
    let output = run(&["--worker-threads", "0", "dev"])?;
    ensure!(output.status.code() == Some(64), "exit {:?}", output.status.code());
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("--worker-threads"), "stderr does not name the flag: {stderr}");
    Ok(())
}

/// A minted token is three base64url parts and names its user and kind: a connection token, or with
/// `--conversation` a subscription token for it.
#[test]
fn token_mints_a_jwt() -> Result<()> {
    let secret = "0123456789abcdef-secret";
    let connection = claims(&run(&["token", "--secret", secret, "--user", "alice", "--ttl", "5m"])?)?;
    ensure!(connection["sub"] == "alice" && connection["typ"] == "crier-connection", "{connection}");
    let subscription =
        claims(&run(&["token", "--secret", secret, "--user", "alice", "--conversation", "c1"])?)?;
    ensure!(subscription["typ"] == "crier-subscription" && subscription["conversation"] == "c1");
    let short = run(&["token", "--secret", "short", "--user", "alice"])?;
    ensure!(short.status.code() == Some(64));
    Ok(())
}

/// Runs `args` (which name `listen` as their listen address, if any) and checks: exit 64, exactly one line
/// on stderr containing every one of `needles`, and `listen` left unbound.
fn exits_64_with_one_line(args: &[&str], listen: &str, needles: &[&str]) -> Result<()> {
    let output = run(args)?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(output.status.code() == Some(64), "{args:?}: exit {:?}\n{stderr}", output.status.code());
    ensure!(stderr.lines().count() == 1, "{args:?}: one line expected, got:\n{stderr}");
    for needle in needles {
        ensure!(stderr.contains(needle), "{args:?}: no {needle:?} in {stderr}");
    }
    ensure!(TcpListener::bind(listen).is_ok(), "{args:?}: {listen} was bound despite a bad config");
    Ok(())
}

/// Bad TLS input is one line each and exit 64 before binding: an unreadable certificate, a key that is not
/// PEM, a key of another certificate, a certificate without its key, a client CA file without a
/// certificate, and `publish`'s CA file.
#[test]
fn bad_tls_files_exit_64_with_one_line_each() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = crier_tests::TestCa::new("crier test CA")?;
    let (cert, key) = ca.server()?.write(dir.path(), "a")?;
    let (_, other_key) = ca.server()?.write(dir.path(), "b")?;
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "just text\n")?;
    let [cert, key, other_key, not_pem] = [cert, key, other_key, not_pem].map(|p| p.display().to_string());
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let edge = ["edge", "--listen", &listen, "--redis-url", "redis://127.0.0.1:1", "--auth-mode", "none"];
    let edge_cases: [(&[&str], &[&str]); 4] = [
        (&["--tls-cert-file", "/no/such.crt", "--tls-key-file", &key], &["--tls-cert-file /no/such.crt"]),
        (&["--tls-cert-file", &cert, "--tls-key-file", &not_pem], &["--tls-key-file", "no PEM private key"]),
        (&["--tls-cert-file", &cert, "--tls-key-file", &other_key], &["does not fit"]),
        (&["--tls-cert-file", &cert], &["--tls-cert-file needs --tls-key-file"]),
    ];
    for (extra, needles) in edge_cases {
        exits_64_with_one_line(&[&edge[..], extra].concat(), &listen, needles)?;
    }
    let broker = ["broker", "--grpc-listen", &listen, "--redis-url", "redis://127.0.0.1:1"];
    let tls = ["--tls-cert-file", &cert, "--tls-key-file", &key];
    let no_ca = [&broker[..], &tls, &["--tls-client-ca-file", &not_pem]].concat();
    exits_64_with_one_line(&no_ca, &listen, &["--tls-client-ca-file", "holds no PEM certificate"])?;
    let mismatched = [&broker[..], &["--tls-cert-file", &cert, "--tls-key-file", &other_key]].concat();
    exits_64_with_one_line(&mismatched, &listen, &["does not fit"])?;
    let dev = ["dev", "--listen", &listen, "--grpc-listen", "127.0.0.1:1", "--tls-cert-file", &cert];
    exits_64_with_one_line(
        &[&dev[..], &["--tls-key-file", &other_key]].concat(),
        &listen,
        &["does not fit"],
    )?;
    let publish =
        ["publish", "--broker", "https://127.0.0.1:1", "--conversation", "c1", "--ca-file", &not_pem];
    exits_64_with_one_line(&[&publish[..], &["{}"]].concat(), &listen, &["--ca-file", "no PEM certificate"])?;
    let plain =
        ["publish", "--broker", "http://127.0.0.1:1", "--conversation", "c1", "--ca-file", &cert, "{}"];
    exits_64_with_one_line(&plain, &listen, &["need an https:// --broker"])?;
    Ok(())
}
