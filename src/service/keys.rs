//! Key envelopes: channel keys and the directory key, wrapped per device by clients.
//!
//! Uploads are all-or-nothing. The sender must be the caller's own device with its registered
//! public key, so nobody can plant an envelope that claims to come from someone else's device, and
//! the caller must hold the key ([`super::key_authority`]): a refusal is a 409 naming the devices.

use std::collections::HashSet;

use futures_util::FutureExt;

use super::auth::AuthContext;
use super::key_authority::{self, Refusal, Sealed, Write};
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
    generation: Option<i64>,
) -> ServiceResult<ChannelKeyEnvelope> {
    let channel_id =
        validate::id("channel_id", channel_id).map_err(|_| ServiceError::NotFound("channel"))?;
    let mut conn = store.pool.get().await?;
    if let Some(channel) = private_channel(&mut conn.db(), &channel_id).await? {
        drop(conn);
        return super::generations::envelope(store, ctx, &channel, generation).await;
    }
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
        generation: None,
    })
}

/// The channel when it is private or direct (its keys are per generation).
async fn private_channel(
    db: &mut db::Db<'_>,
    channel_id: &str,
) -> db::DbResult<Option<crate::db::models::ChannelRow>> {
    Ok(db::channels::find(db, channel_id)
        .await?
        .filter(crate::db::models::ChannelRow::is_private))
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
pub(super) async fn check_sender(
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

/// Why an upload transaction declined (it commits nothing).
enum Declined {
    Channel,
    Device,
    Refused(Refusal, Vec<String>),
}

impl From<Declined> for ServiceError {
    fn from(d: Declined) -> Self {
        match d {
            Declined::Channel => ServiceError::NotFound("channel"),
            Declined::Device => ServiceError::NotFound("device"),
            Declined::Refused(reason, device_ids) => {
                ServiceError::EnvelopeRefused { reason, device_ids }
            }
        }
    }
}

/// The target device ids of `rows`, in upload order, each once (for a `not_key_holder` refusal).
fn targets<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    // A set, not a scan of what was kept: an upload may name thousands of ids.
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id))
        .map(str::to_owned)
        .collect()
}

fn sealed_channel(row: &ChannelEnvelopeRow) -> Sealed<'_> {
    Sealed {
        sender_device_id: &row.sender_device_id,
        sender_public_key: &row.sender_public_key,
        envelope: &row.envelope,
    }
}

fn sealed_directory(row: &DirectoryEnvelopeRow) -> Sealed<'_> {
    Sealed {
        sender_device_id: &row.sender_device_id,
        sender_public_key: &row.sender_public_key,
        envelope: &row.envelope,
    }
}

/// A key envelope row (channel or directory key) as the upload loop handles it: whom it is for,
/// what it seals, and how it is read and written.
trait EnvelopeRow: Sized + Send + Sync {
    fn device_id(&self) -> &str;
    fn sealed(&self) -> Sealed<'_>;
    /// What is stored for this row's target now.
    fn stored<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<Option<Self>>> + Send + 'a;
    /// Insert unless one appeared meanwhile; `false` then.
    fn insert_new<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<bool>> + Send + 'a;
    fn upsert<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<()>> + Send + 'a;
}

impl EnvelopeRow for ChannelEnvelopeRow {
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn sealed(&self) -> Sealed<'_> {
        sealed_channel(self)
    }
    fn stored<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<Option<Self>>> + Send + 'a {
        db::keys::channel_envelope(db, &self.channel_id, &self.device_id)
    }
    fn insert_new<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<bool>> + Send + 'a {
        db::keys::insert_new_channel_envelope(db, self)
    }
    fn upsert<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<()>> + Send + 'a {
        db::keys::upsert_channel_envelope(db, self)
    }
}

impl EnvelopeRow for DirectoryEnvelopeRow {
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn sealed(&self) -> Sealed<'_> {
        sealed_directory(self)
    }
    fn stored<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<Option<Self>>> + Send + 'a {
        db::keys::directory_envelope(db, &self.device_id)
    }
    fn insert_new<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<bool>> + Send + 'a {
        db::keys::insert_new_directory_envelope(db, self)
    }
    fn upsert<'a>(
        &'a self,
        db: &'a mut db::Db<'_>,
    ) -> impl Future<Output = db::DbResult<()>> + Send + 'a {
        db::keys::upsert_directory_envelope(db, self)
    }
}

/// Judge and write every target of an upload, inside its transaction: an unknown device, or any
/// target another holder's envelope already occupies, declines the whole upload (the caller rolls
/// back).
async fn write_envelopes<R: EnvelopeRow>(
    db: &mut db::Db<'_>,
    caller: &AuthContext,
    rows: &[R],
) -> db::DbResult<Result<(), Declined>> {
    let mut conflicts: Vec<String> = Vec::new();
    let mut conflicted = HashSet::new();
    for row in rows {
        if db::devices::find(db, row.device_id()).await?.is_none() {
            return Ok(Err(Declined::Device));
        }
        let stored = row.stored(db).await?;
        let stored = stored.as_ref().map(EnvelopeRow::sealed);
        let write =
            key_authority::judge(db, caller, row.device_id(), &row.sealed(), stored.as_ref())
                .await?;
        let written = match write {
            Write::Insert => row.insert_new(db).await?,
            Write::Replace => {
                row.upsert(db).await?;
                true
            }
            Write::Unchanged => true,
            Write::Conflict => false,
        };
        if !written && conflicted.insert(row.device_id()) {
            conflicts.push(row.device_id().to_owned());
        }
    }
    if !conflicts.is_empty() {
        return Ok(Err(Declined::Refused(Refusal::Conflict, conflicts)));
    }
    Ok(Ok(()))
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
    if private_channel(&mut store.pool.get().await?.db(), &channel_id)
        .await?
        .is_some()
    {
        return super::generations::share(store, ctx, channel_id, req).await;
    }
    if req.generation.is_some() {
        return Err(ServiceError::invalid(
            "generation is only for private channels",
        ));
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
    let caller = ctx.clone();
    let mut conn = store.pool.get().await?;
    let outcome: Result<(), Declined> = conn
        .transaction(move |mut db| {
            async move {
                // A refusal rolls back the envelopes already written: all or nothing.
                let Some(channel) = db::channels::find(&mut db, &channel_id).await? else {
                    return Ok(Err(Declined::Channel));
                };
                let created_by = channel.created_by.as_deref();
                if !key_authority::may_write_channel(&mut db, &caller, &channel_id, created_by)
                    .await?
                {
                    let ids = targets(rows.iter().map(|r| r.device_id.as_str()));
                    return Ok(Err(Declined::Refused(Refusal::NotKeyHolder, ids)));
                }
                write_envelopes(&mut db, &caller, &rows).await
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
    let count = rows.len();
    let caller = ctx.clone();
    let mut conn = store.pool.get().await?;
    let outcome: Result<(), Declined> = conn
        .transaction(move |mut db| {
            async move {
                // A refusal rolls back the envelopes already written: all or nothing.
                if !key_authority::may_write_directory(&mut db, &caller).await? {
                    let ids = targets(rows.iter().map(|r| r.device_id.as_str()));
                    return Ok(Err(Declined::Refused(Refusal::NotKeyHolder, ids)));
                }
                write_envelopes(&mut db, &caller, &rows).await
            }
            .boxed()
        })
        .await?;
    outcome?;
    tracing::debug!(device_id = %ctx.device_id, count, "directory key envelopes stored");
    Ok(())
}

/// `DELETE /channels/keys`: drop the envelope addressed to the caller's device (for example one
/// planted before key authority, so a real holder can re-share). `false` when there was none.
pub async fn delete_channel_key(
    store: &Store,
    ctx: &AuthContext,
    channel_id: &str,
) -> ServiceResult<bool> {
    let channel_id =
        validate::id("channel_id", channel_id).map_err(|_| ServiceError::NotFound("channel"))?;
    let mut conn = store.pool.get().await?;
    if private_channel(&mut conn.db(), &channel_id)
        .await?
        .is_some()
    {
        drop(conn);
        return super::generations::delete_own(store, ctx, &channel_id).await;
    }
    let deleted =
        db::keys::delete_channel_envelope(&mut conn.db(), &channel_id, &ctx.device_id).await?;
    tracing::debug!(device_id = %ctx.device_id, deleted, "own channel key envelope deleted");
    Ok(deleted)
}

/// `DELETE /directory/keys`: drop the directory envelope addressed to the caller's device.
pub async fn delete_directory_key(store: &Store, ctx: &AuthContext) -> ServiceResult<bool> {
    let mut conn = store.pool.get().await?;
    let deleted = db::keys::delete_directory_envelope(&mut conn.db(), &ctx.device_id).await?;
    tracing::debug!(device_id = %ctx.device_id, deleted, "own directory key envelope deleted");
    Ok(deleted)
}
