//! The E2E client's errors: one enum for every layer above the wire (REST, key store, sealing,
//! the chat operations), so `sealing` and `chat` share it without importing each other.

use super::ClientError;
use super::keystore::KeyStoreError;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// A ciphertext did not authenticate (wrong key or tampered) or did not parse.
    #[error("cannot decrypt {what}: {reason}")]
    Decrypt { what: String, reason: String },
    #[error(
        "this device has no key for channel {0} yet: a member's online client shares it when a device joins, or run `share` on a device that has it"
    )]
    NoChannelKey(String),
    /// Trust v2: a private channel's message or name is sealed under a generation this device
    /// was never given (sent before its user joined, or its envelope is not shared yet).
    #[error(
        "this device has no key for generation {generation} of channel {channel}: it was sealed before you joined, or a member has not shared that key with this device yet"
    )]
    NoGenerationKey { channel: String, generation: i64 },
    #[error("this device has no directory key yet: run `share` on a device that has it")]
    NoDirectoryKey,
    #[error("no channel {name:?} (see `channels`){hint}")]
    UnknownChannel { name: String, hint: String },
    #[error("{name:?} names several channels; use one of their ids: {ids}")]
    AmbiguousChannel { name: String, ids: String },
    #[error("this profile is not logged in (run `login`)")]
    NotLoggedIn,
    /// An `error` event answering our request; `retry_after`: seconds to wait before sending it
    /// again, when a limit or a full queue refused it.
    #[error("the server refused: {message} ({code}){}", retry_hint(*retry_after))]
    Refused {
        code: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// The server closed the socket for good (logout, revoked or expired session, disabled user).
    #[error("the server ended the session: {0}; log in again")]
    SessionEnded(String),
    #[error("{0}")]
    Invalid(String),
    /// Trust v2: a device list or an identity could not be verified, or an identity operation
    /// was refused.
    #[error(transparent)]
    Trust(#[from] super::trust::TrustError),
}

pub type ChatResult<T> = Result<T, ChatError>;

fn retry_hint(retry_after: Option<u64>) -> String {
    retry_after
        .map(|s| format!("; retry in {s} s"))
        .unwrap_or_default()
}
