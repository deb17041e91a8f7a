//! Business logic: registration, sessions, devices, channels, history, key envelopes, invites,
//! group-committed message persistence and re-encryption.
//!
//! Runs inside the database actor (its only caller), which owns the [`Store`]: the pool, the field
//! cipher and the keyed-hash keys. SQL lives in [`crate::db`]; this layer validates input, encrypts
//! and hashes fields, decrypts (lazily upgrading legacy rows) and enforces authorization.

pub mod auth;
pub mod channels;
pub mod context;
pub mod device_lists;
pub mod devices;
pub mod generations;
pub mod invites;
pub mod key_authority;
pub mod keys;
pub mod members;
pub mod messages;
pub mod rekey;
pub mod users;
pub mod validate;

use std::time::Duration;

use crate::crypto::CryptoError;
use crate::crypto::field::{Column, FieldCipher};
use crate::crypto::keyed_hash::KeyedHasher;
use crate::db::{DbError, Pool};

/// What the database actor owns.
pub struct Store {
    pub pool: Pool,
    /// The group commit's own connection (see [`Pool::dedicated`]).
    pub commit_pool: Pool,
    cipher: FieldCipher,
    hasher: KeyedHasher,
    pub settings: Settings,
}

/// Policy knobs the service layer needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub session_ttl: Duration,
    pub invite_ttl: Duration,
    /// Per-user caps (0 = none); beyond one the request is refused with
    /// [`ServiceError::CapReached`].
    pub caps: Caps,
}

/// The caps of `DIALTONE_MAX_{DEVICES,SESSIONS,CHANNELS}_PER_USER` and `DIALTONE_MAX_ENVELOPES_PER_REQUEST`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub devices_per_user: usize,
    pub sessions_per_user: usize,
    pub channels_per_user: usize,
    pub envelopes_per_request: usize,
}

impl Caps {
    /// Refuse when `count` already reached `cap` (a cap of 0 is none).
    pub fn check(cap: usize, count: usize, label: &'static str) -> ServiceResult<()> {
        if cap > 0 && count >= cap {
            return Err(ServiceError::CapReached(label));
        }
        Ok(())
    }
}

impl Store {
    pub fn new(
        pool: Pool,
        commit_pool: Pool,
        cipher: FieldCipher,
        hasher: KeyedHasher,
        settings: Settings,
    ) -> Self {
        Self {
            pool,
            commit_pool,
            cipher,
            hasher,
            settings,
        }
    }

    pub fn cipher(&self) -> &FieldCipher {
        &self.cipher
    }

    pub fn hasher(&self) -> &KeyedHasher {
        &self.hasher
    }

    /// Decrypt a stored field, mapping failures to a clear internal error.
    fn open(
        &self,
        column: Column,
        row_id: &str,
        stored: &str,
    ) -> Result<crate::crypto::field::Opened, ServiceError> {
        self.cipher.decrypt(column, row_id, stored).map_err(|e| {
            tracing::error!(column = column.name(), row_id, error = %e, "stored field failed to decrypt");
            ServiceError::Crypto(e)
        })
    }
}

/// Domain errors, mapped to HTTP statuses and WebSocket error codes at the edge.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("token expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    /// A key envelope upload refused as a whole (nothing written), naming the target devices.
    #[error("{reason}")]
    EnvelopeRefused {
        reason: key_authority::Refusal,
        device_ids: Vec<String>,
    },
    /// A key rotation refused as a whole (trust v2 private channels).
    #[error(transparent)]
    Rotation(#[from] generations::RotationRefused),
    /// A device list refused by its checks (format, signatures, version or chain).
    #[error(transparent)]
    DeviceList(#[from] crate::crypto::device_list::ListError),
    #[error("invite already used")]
    InviteUsed,
    #[error("invite expired")]
    InviteExpired,
    #[error("invite revoked")]
    InviteRevoked,
    /// Too much load right now; retry later.
    #[error("{0}")]
    Busy(&'static str),
    /// A per-user cap (devices, sessions, envelopes per request) is reached; the label names it.
    #[error("limit reached ({0})")]
    CapReached(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ServiceError::Invalid(msg.into())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// A new random UUID string (ids are server-generated).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
