//! Key envelopes: channel keys and the directory key, wrapped per device by clients.
//!
//! Uploads are all-or-nothing. The sender must be the caller's own device with its registered
//! public key, so nobody can plant an envelope that claims to come from someone else's device.

use futures_util::FutureExt;

use super::auth::AuthContext;
use super::validate::{self, MAX_ENVELOPE};
use super::{ServiceError, ServiceResult, Store};
use crate::db;
use crate::db::models::{ChannelEnvelopeRow, DirectoryEnvelopeRow};
use crate::db::types::Time;
use crate::limits::label;
use crate::protocol::rest::{
    ChannelKeyEnvelope, ChannelKeysUpload, DirectoryKeyEnvelope, DirectoryKeysUpload,
    EnvelopeUpload,
};

/// `GET /channels/keys`: the envelope addressed to the caller's device.
pub async fn channel_key(
    store: &Store,
    ctx: &AuthContext,
    channel_id: &str,
) -> ServiceResult<ChannelKeyEnvelope> {
    let channel_id =
        validate::id("channel_id", channel_id).map_err(|_| ServiceError::NotFound("channel"))?;
    let mut conn = store.pool.get().await?;
    let row = db::keys::channel_envelope(&mut conn.db(), &channel_id, &ctx.device_id)
        .await?
        .ok_or(ServiceError::NotFound("channel key envelope"))?;
    Ok(ChannelKeyEnvelope {
        channel_id: row.channel_id,
        device_id: row.device_id,
        sender_device_id: row.sender_device_id,
        sender_public_key: row.sender_public_key,
        envelope: row.envelope,
        created_at: row.created_at.wire(),
    })
}

/// `GET /directory/keys`: `None` when the caller's device has none (204).
pub async fn directory_key(
    store: &Store,
    ctx: &AuthContext,
) -> ServiceResult<Option<DirectoryKeyEnvelope>> {
    let mut conn = store.pool.get().await?;
    Ok(db::keys::directory_envelope(&mut conn.db(), &ctx.device_id)
        .await?
        .map(|row| DirectoryKeyEnvelope {
            device_id: row.device_id,
            sender_device_id: row.sender_device_id,
            sender_public_key: row.sender_public_key,
            envelope: row.envelope,
            created_at: row.created_at.wire(),
        }))
}

/// Check that every envelope claims the caller's device and its registered key; returns the
/// canonical sender key.
async fn check_sender(
    store: &Store,
    ctx: &AuthContext,
    envelopes: &[EnvelopeUpload],
) -> ServiceResult<String> {
    if envelopes.is_empty() {
        return Err(ServiceError::invalid("envelopes must not be empty"));
    }
    let cap = store.settings.caps.envelopes_per_request;
    if cap > 0 && envelopes.len() > cap {
        return Err(ServiceError::CapReached(label::ENVELOPES_PER_REQUEST));
    }
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    let row = db::devices::find(&mut db, &ctx.device_id)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    let registered = super::devices::open(store, &mut db, row).await?.public_key;
    for e in envelopes {
        validate::ciphertext("envelope", &e.envelope, MAX_ENVELOPE)?;
        validate::storable("device_id", &e.device_id)?;
        if e.sender_device_id.trim() != ctx.device_id {
            return Err(ServiceError::Forbidden(
                "sender_device_id must be the device of this session",
            ));
        }
        let claimed = validate::public_key(&e.sender_public_key)
            .map_err(|_| ServiceError::Forbidden("sender_public_key is not this device's key"))?;
        if claimed != registered {
            return Err(ServiceError::Forbidden(
                "sender_public_key is not this device's key",
            ));
        }
    }
    Ok(registered)
}

/// Whether an upload may write over the target's current envelope (sent by `existing_sender`):
/// only when there is none, when it came from one of the uploader's own devices (key rotation), or
/// when its sender device is gone. Otherwise any member could swap another device's key for one of
/// their own or for garbage; the existing envelope stays (first writer wins).
async fn may_replace(
    db: &mut db::Db<'_>,
    existing_sender: Option<String>,
    uploader: &str,
) -> Result<bool, crate::db::DbError> {
    let Some(sender) = existing_sender else {
        return Ok(true);
    };
    Ok(match db::devices::find(db, &sender).await? {
        None => true,
        Some(device) => device.user_id == uploader,
    })
}

async fn existing_channel(
    db: &mut db::Db<'_>,
    row: &ChannelEnvelopeRow,
) -> Result<Option<String>, crate::db::DbError> {
    Ok(
        db::keys::channel_envelope(db, &row.channel_id, &row.device_id)
            .await?
            .map(|e| e.sender_device_id),
    )
}

/// Why an upload transaction declined (it commits nothing).
enum Missing {
    Channel,
    Device,
}

impl From<Missing> for ServiceError {
    fn from(m: Missing) -> Self {
        match m {
            Missing::Channel => ServiceError::NotFound("channel"),
            Missing::Device => ServiceError::NotFound("device"),
        }
    }
}

/// `POST /channels/keys`.
pub async fn upload_channel_keys(
    store: &Store,
    ctx: &AuthContext,
    req: ChannelKeysUpload,
) -> ServiceResult<()> {
    let channel_id = validate::id("channel_id", &req.channel_id)
        .map_err(|_| ServiceError::NotFound("channel"))?;
    for e in &req.envelopes {
        if let Some(inner) = &e.channel_id
            && inner.trim() != channel_id
        {
            return Err(ServiceError::invalid(
                "an envelope's channel_id differs from the request's channel_id",
            ));
        }
    }
    let sender_key = check_sender(store, ctx, &req.envelopes).await?;
    let now = Time::now();
    let rows = req
        .envelopes
        .into_iter()
        .map(|e| ChannelEnvelopeRow {
            channel_id: channel_id.clone(),
            device_id: e.device_id.trim().to_owned(),
            sender_device_id: ctx.device_id.clone(),
            sender_public_key: sender_key.clone(),
            envelope: e.envelope,
            created_at: now,
        })
        .collect::<Vec<_>>();
    let count = rows.len();
    let uploader = ctx.user_id.clone();
    let mut conn = store.pool.get().await?;
    let outcome: Result<(), Missing> = conn
        .transaction(move |mut db| {
            async move {
                // A refusal rolls back the envelopes already written: all or nothing.
                if !db::channels::exists(&mut db, &channel_id).await? {
                    return Ok(Err(Missing::Channel));
                }
                for row in &rows {
                    if db::devices::find(&mut db, &row.device_id).await?.is_none() {
                        return Ok(Err(Missing::Device));
                    }
                    let existing = existing_channel(&mut db, row).await?;
                    if may_replace(&mut db, existing, &uploader).await? {
                        db::keys::upsert_channel_envelope(&mut db, row).await?;
                    }
                }
                Ok(Ok(()))
            }
            .boxed()
        })
        .await?;
    outcome?;
    tracing::debug!(device_id = %ctx.device_id, count, "channel key envelopes stored");
    Ok(())
}

/// `POST /directory/keys`.
pub async fn upload_directory_keys(
    store: &Store,
    ctx: &AuthContext,
    req: DirectoryKeysUpload,
) -> ServiceResult<()> {
    let sender_key = check_sender(store, ctx, &req.envelopes).await?;
    let now = Time::now();
    let rows = req
        .envelopes
        .into_iter()
        .map(|e| DirectoryEnvelopeRow {
            device_id: e.device_id.trim().to_owned(),
            sender_device_id: ctx.device_id.clone(),
            sender_public_key: sender_key.clone(),
            envelope: e.envelope,
            created_at: now,
        })
        .collect::<Vec<_>>();
    let uploader = ctx.user_id.clone();
    let mut conn = store.pool.get().await?;
    let outcome: Result<(), Missing> = conn
        .transaction(move |mut db| {
            async move {
                // A refusal rolls back the envelopes already written: all or nothing.
                for row in &rows {
                    if db::devices::find(&mut db, &row.device_id).await?.is_none() {
                        return Ok(Err(Missing::Device));
                    }
                    let existing = db::keys::directory_envelope(&mut db, &row.device_id)
                        .await?
                        .map(|e| e.sender_device_id);
                    if may_replace(&mut db, existing, &uploader).await? {
                        db::keys::upsert_directory_envelope(&mut db, row).await?;
                    }
                }
                Ok(Ok(()))
            }
            .boxed()
        })
        .await?;
    outcome?;
    Ok(())
}
