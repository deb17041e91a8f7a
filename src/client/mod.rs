//! The dialtone client library (the seed's `pkg/`): REST and WebSocket over rustls, typed on the
//! same [`crate::protocol`] types the server uses, and the end-to-end layer that keeps plaintext
//! on the device.
//!
//! Uses only [`crate::protocol`], [`crate::crypto`] and the wire — never server internals — so it
//! can be split into its own crate. Futures are `Send` and run on any tokio runtime.
//!
//! - [`rest::RestClient`]: every REST endpoint;
//! - [`ws::WsClient`]: the event stream;
//! - [`tls::Trust`]: system roots, a CA file, or a pinned certificate fingerprint (self-signed
//!   development servers);
//! - [`chat::Chat`]: the end-to-end layer — a device signed in with its [`keystore::KeyStore`],
//!   encrypting and decrypting messages, broadcasts, channel and profile names, distributing
//!   channel and directory keys, and following the live stream ([`tail`]) across reconnects;
//! - [`sealing`]: the E2E encoding of each relayed field, as pure functions;
//! - [`trust`]: trust v2 — fetching and checking signed device lists against pinned identities.

pub mod chat;
pub mod error;
pub mod key_upload;
pub mod keystore;
pub mod rest;
mod rest_members;
pub mod sealing;
pub mod tail;
pub mod tls;
pub mod trust;
pub mod ws;

pub use chat::{
    ChannelInfo, Chat, ChatError, ChatResult, History, KeyRef, LoginOutcome, ServerSpec,
    ShareReport,
};
pub use keystore::{KeyStore, KeyStoreError, Profile};
pub use rest::RestClient;
pub use sealing::{Authenticity, ChatMessage, SkippedDevice};
pub use tail::{ChatEvent, FollowOptions};
pub use tls::Trust;
pub use ws::{ConnectAs, Incoming, WsClient, WsConnector, WsOptions};

/// Errors of the client library.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} ({status} {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server refused a key envelope upload (409): nothing of it was stored.
    #[error("{message} ({}: {})", refusal.code(), device_ids.join(", "))]
    EnvelopeRefused {
        refusal: EnvelopeRefusal,
        message: String,
        /// The target devices the upload was refused for.
        device_ids: Vec<String>,
    },
    /// [v2] A key rotation whose envelopes do not cover exactly the active member devices (409
    /// `envelope_coverage`): nothing was stored.
    #[error("{message} (missing: [{}], extra: [{}])", missing.join(", "), extra.join(", "))]
    Coverage {
        message: String,
        missing: Vec<String>,
        extra: Vec<String>,
    },
    /// Connection, TLS or protocol failure.
    #[error("transport: {0}")]
    Transport(String),
    /// The server's answer did not parse.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// Bad client-side input or configuration.
    #[error("{0}")]
    Config(String),
    /// A timeout elapsed.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl ClientError {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::EnvelopeRefused { .. } => Some(409),
            _ => None,
        }
    }

    /// `code` of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            ClientError::EnvelopeRefused { refusal, .. } => Some(refusal.code()),
            _ => None,
        }
    }
}

/// Why the server refused a key envelope upload (README "Key authority").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeRefusal {
    /// `not_key_holder`: this device holds no envelope of the key, so it may not wrap it.
    NotKeyHolder,
    /// `envelope_conflict`: the listed devices already hold a different envelope.
    Conflict,
}

impl EnvelopeRefusal {
    pub fn code(self) -> &'static str {
        match self {
            EnvelopeRefusal::NotKeyHolder => "not_key_holder",
            EnvelopeRefusal::Conflict => "envelope_conflict",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "not_key_holder" => Some(EnvelopeRefusal::NotKeyHolder),
            "envelope_conflict" => Some(EnvelopeRefusal::Conflict),
            _ => None,
        }
    }
}

/// The typed error of an error body: [`ClientError::EnvelopeRefused`] for a 409 that names
/// devices, else [`ClientError::Api`].
fn api_error(status: u16, body: crate::protocol::rest::ErrorBody) -> ClientError {
    if status == 409
        && let Some(refusal) = EnvelopeRefusal::from_code(&body.code)
    {
        return ClientError::EnvelopeRefused {
            refusal,
            message: body.error,
            device_ids: body.device_ids.unwrap_or_default(),
        };
    }
    if status == 409 && body.code == "envelope_coverage" {
        return ClientError::Coverage {
            message: body.error,
            missing: body.missing.unwrap_or_default(),
            extra: body.extra.unwrap_or_default(),
        };
    }
    ClientError::Api {
        status,
        code: body.code,
        message: body.error,
    }
}

pub type ClientResult<T> = Result<T, ClientError>;
