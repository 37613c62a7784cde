//! The client subcommands: `publish` (one notification through a broker) and `token` (mint a dev JWT).

use std::process::ExitCode;

use crier_proto::v1::PublishRequest;
use crier_proto::v1::publish_service_client::PublishServiceClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::cli::{PublishArgs, TokenArgs};

/// BSD `EX_DATAERR`: the broker refused the input.
const EXIT_DATAERR: u8 = 65;
/// BSD `EX_UNAVAILABLE`: the broker or its log is unreachable.
const EXIT_UNAVAILABLE: u8 = 69;

pub async fn publish(args: PublishArgs) -> ExitCode {
    let tls = match args.tls.config(&args.broker) {
        Ok(tls) => tls,
        Err(problems) => return crate::usage_error(&problems),
    };
    let mut client = match connect(&args.broker, tls).await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("crier: cannot reach broker {}: {err}", args.broker);
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let mut request = tonic::Request::new(PublishRequest {
        conversation_id: args.conversation,
        payload: args.payload.into_bytes().into(),
        idempotency_key: args.idempotency_key,
    });
    if let Some(token) = &args.api_token {
        match format!("Bearer {token}").parse() {
            Ok(value) => {
                request.metadata_mut().insert("authorization", value);
            }
            Err(_) => {
                return crate::usage_error(
                    &["--api-token has characters not allowed in a header".to_owned()],
                );
            }
        }
    }
    match client.publish(request).await {
        Ok(response) => {
            let response = response.into_inner();
            let note = if response.duplicate { " (duplicate: already published)" } else { "" };
            println!("{}{note}", response.position);
            ExitCode::SUCCESS
        }
        Err(status) => {
            // A status with a source is the connection failing (a refused client certificate, a reset).
            let transport = std::error::Error::source(&status);
            let cause = transport.map(|err| format!(" ({})", with_causes(err))).unwrap_or_default();
            eprintln!("crier: publish failed: {:?}: {}{cause}", status.code(), status.message());
            match status.code() {
                tonic::Code::InvalidArgument => ExitCode::from(EXIT_DATAERR),
                tonic::Code::Unavailable => ExitCode::from(EXIT_UNAVAILABLE),
                _ if transport.is_some() => ExitCode::from(EXIT_UNAVAILABLE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// A client of `broker`, over TLS with `tls` (for an `https://` broker).
async fn connect(
    broker: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<PublishServiceClient<Channel>, String> {
    let mut endpoint = Endpoint::from_shared(broker.to_owned()).map_err(|err| err.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|err| err.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|err| with_causes(&err))?;
    Ok(PublishServiceClient::new(channel))
}

/// `err` and its sources: a transport error's own text is only "transport error"; its sources say what
/// failed (an untrusted certificate, a refused client certificate, a refused connection).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

pub fn token(args: &TokenArgs) -> ExitCode {
    if args.secret.len() < 16 {
        return crate::usage_error(&["--secret must be at least 16 bytes".to_owned()]);
    }
    match crier_edge::auth::mint_hs256(&args.secret, &args.user, args.ttl, args.conversation.as_deref()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crier: cannot mint token: {err}");
            ExitCode::FAILURE
        }
    }
}
