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
//!   development servers).

pub mod rest;
pub mod tls;
pub mod ws;

pub use rest::RestClient;
pub use tls::Trust;
pub use ws::{Incoming, WsClient, WsOptions};

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
