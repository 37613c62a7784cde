//! The client subcommands: `publish` (one notification through a broker) and `token` (mint a dev JWT).

use std::process::ExitCode;

use crier_proto::v1::PublishRequest;
use crier_proto::v1::publish_service_client::PublishServiceClient;

use crate::cli::{PublishArgs, TokenArgs};

/// BSD `EX_DATAERR`: the broker refused the input.
const EXIT_DATAERR: u8 = 65;
/// BSD `EX_UNAVAILABLE`: the broker or its log is unreachable.
const EXIT_UNAVAILABLE: u8 = 69;

pub async fn publish(args: PublishArgs) -> ExitCode {
    let mut client = match PublishServiceClient::connect(args.broker.clone()).await {
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
            eprintln!("crier: publish failed: {:?}: {}", status.code(), status.message());
            match status.code() {
                tonic::Code::InvalidArgument => ExitCode::from(EXIT_DATAERR),
                tonic::Code::Unavailable => ExitCode::from(EXIT_UNAVAILABLE),
                _ => ExitCode::FAILURE,
            }
        }
    }
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
