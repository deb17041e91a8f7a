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
//! - [`sealing`]: the E2E encoding of each relayed field, as pure functions.

pub mod chat;
pub mod keystore;
pub mod rest;
pub mod sealing;
pub mod tail;
pub mod tls;
pub mod ws;

pub use chat::{
    ChannelInfo, Chat, ChatError, ChatResult, History, KeyRef, LoginOutcome, ServerSpec,
    ShareReport,
};
pub use keystore::{KeyStore, KeyStoreError, Profile};
pub use rest::RestClient;
pub use sealing::{ChatMessage, SkippedDevice};
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
            _ => None,
        }
    }

    /// `code` of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;
