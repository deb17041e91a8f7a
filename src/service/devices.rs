//! Devices and their public keys (encrypted at rest, looked up by keyed hash).

use futures_util::FutureExt;

use super::context::AuthContext;
use super::validate;
use super::{Caps, ServiceError, ServiceResult, Store, new_id};
use crate::crypto::field::Column;
use crate::db::models::DeviceRow;
use crate::db::types::Time;
use crate::db::{self, Db, DbResult};
use crate::limits::label;
use crate::protocol::rest::{CreateDeviceRequest, Device, DeviceKey, DeviceKeysResponse};

/// A device with its decrypted public key.
pub struct OpenDevice {
    pub row: DeviceRow,
    pub public_key: String,
}

/// Decrypt a device's key; a legacy plaintext (or old-key) value is re-encrypted and its hash
/// filled right away — the lazy half of SPEC §6.
pub async fn open(store: &Store, db: &mut Db<'_>, row: DeviceRow) -> ServiceResult<OpenDevice> {
    let opened = store.open(Column::DevicesPublicKey, &row.id, &row.public_key)?;
    let hash_current = row.public_key_hash.as_deref()
        == Some(store.hasher().device_key_hash(&opened.plaintext).as_str());
    if opened.needs_rewrite || !hash_current {
        let enc = store
            .cipher()
            .encrypt(Column::DevicesPublicKey, &row.id, &opened.plaintext);
        let hash = store.hasher().device_key_hash(&opened.plaintext);
        db::devices::set_key(db, &row.id, &enc, &hash).await?;
        if opened.legacy {
            tracing::info!(device_id = %row.id, "legacy plaintext device key encrypted");
        }
        return Ok(OpenDevice {
            row: DeviceRow {
                public_key: enc,
                public_key_hash: Some(hash),
                ..row
            },
            public_key: opened.plaintext,
        });
    }
    Ok(OpenDevice {
        row,
        public_key: opened.plaintext,
    })
}

/// The user's device with this (canonical) public key, upgrading legacy rows first so their hash
/// exists for the lookup.
pub async fn find_by_key(
    store: &Store,
    db: &mut Db<'_>,
    user_id: &str,
    public_key: &str,
) -> ServiceResult<Option<DeviceRow>> {
    upgrade_legacy(store, db, user_id).await?;
    let hashes = store.hasher().device_key_hashes(public_key);
    match db::devices::find_by_key_hash(db, user_id, &hashes).await? {
        Some(row) if row.public_key_hash.as_deref() != hashes.first().map(String::as_str) => {
            // Found under a previous key's hash: move it to the current key now.
            Ok(Some(open(store, db, row).await?.row))
        }
        other => Ok(other),
    }
}

/// Bring the user's stored rows for `public_key` to the current key's hash, so that a lookup by
/// that hash alone ([`claim`]) finds the key whatever form it was stored in: legacy rows
/// (plaintext key or no hash), and a row stored under a previous hashing key.
pub async fn move_to_current_hash(
    store: &Store,
    db: &mut Db<'_>,
    user_id: &str,
    public_key: &str,
) -> ServiceResult<()> {
    upgrade_legacy(store, db, user_id).await?;
    let hashes = store.hasher().device_key_hashes(public_key);
    // Only previous keys' hashes: no query at all unless the hashing key has been rotated.
    if let Some(previous) = hashes.get(1..).filter(|p| !p.is_empty())
        && let Some(row) = db::devices::find_by_key_hash(db, user_id, previous).await?
    {
        open(store, db, row).await?;
    }
    Ok(())
}

async fn upgrade_legacy(store: &Store, db: &mut Db<'_>, user_id: &str) -> ServiceResult<()> {
    for legacy in db::devices::legacy_for_user(db, user_id).await? {
        open(store, db, legacy).await?;
    }
    Ok(())
}

/// A new device row for `public_key` (key encrypted, hash filled), not yet stored.
pub fn new_device_row(store: &Store, user_id: &str, public_key: &str, now: Time) -> DeviceRow {
    let id = new_id();
    DeviceRow {
        public_key: store
            .cipher()
            .encrypt(Column::DevicesPublicKey, &id, public_key),
        public_key_hash: Some(store.hasher().device_key_hash(public_key)),
        id,
        user_id: user_id.to_owned(),
        created_at: now,
        last_seen_at: Some(now),
    }
}

/// What [`claim`] found or did.
pub enum Claimed {
    /// The user already has a device with this key (two logins or additions with one new key
    /// raced, or it was registered before).
    Existing(DeviceRow),
    /// The candidate row was stored.
    Added,
}

/// The user's device with `candidate`'s key, or `candidate` stored unless its user already holds
/// `cap` devices. Runs in a transaction that holds its user's row lock ([`db::users::lock`]), which
/// device additions, logins and deletions all take: the lookup here is the authoritative one (a
/// lookup before the lock may have raced a concurrent addition of the same key, or a deletion),
/// and two concurrent additions cannot both pass the count. Looks up by the current key's hash
/// only: [`find_by_key`] or [`move_to_current_hash`] has moved older rows to it.
pub async fn claim(
    db: &mut Db<'_>,
    candidate: &DeviceRow,
    cap: usize,
) -> DbResult<Result<Claimed, ServiceError>> {
    let hash = candidate.public_key_hash.as_slice();
    if let Some(existing) = db::devices::find_by_key_hash(db, &candidate.user_id, hash).await? {
        return Ok(Ok(Claimed::Existing(existing)));
    }
    let count = db::devices::count_for_user(db, &candidate.user_id).await?;
    if let Err(refused) = Caps::check(cap, count, label::DEVICES_PER_USER) {
        return Ok(Err(refused));
    }
    db::devices::insert(db, candidate).await?;
    Ok(Ok(Claimed::Added))
}

fn wire(d: &OpenDevice) -> Device {
    Device {
        id: d.row.id.clone(),
        user_id: d.row.user_id.clone(),
        public_key: d.public_key.clone(),
        created_at: d.row.created_at.wire(),
        last_seen_at: d.row.last_seen_at.map(|t| t.wire()),
    }
}

/// `POST /devices`: register a key for the caller; an existing key returns its device.
/// Returns the device and whether it is new.
pub async fn create(
    store: &Store,
    ctx: &AuthContext,
    req: CreateDeviceRequest,
) -> ServiceResult<(Device, bool)> {
    if req.user_id.trim() != ctx.user_id {
        return Err(ServiceError::Forbidden(
            "devices can only be added to your own account",
        ));
    }
    let public_key = validate::public_key(&req.public_key)?;
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    if let Some(row) = find_by_key(store, &mut db, &ctx.user_id, &public_key).await? {
        let device = open(store, &mut db, row).await?;
        return Ok((wire(&device), false));
    }
    let row = new_device_row(store, &ctx.user_id, &public_key, Time::now());
    let cap = store.settings.caps.devices_per_user;
    let candidate = row.clone();
    let claimed = conn
        .transaction(move |mut db| {
            async move {
                if db::users::lock(&mut db, &candidate.user_id)
                    .await?
                    .is_none()
                {
                    return Ok(Err(ServiceError::Unauthorized));
                }
                claim(&mut db, &candidate, cap).await
            }
            .boxed()
        })
        .await??;
    match claimed {
        Claimed::Existing(existing) => {
            let device = open(store, &mut conn.db(), existing).await?;
            Ok((wire(&device), false))
        }
        Claimed::Added => {
            tracing::info!(user_id = %ctx.user_id, device_id = %row.id, "device added");
            Ok((wire(&OpenDevice { row, public_key }), true))
        }
    }
}

/// `GET /devices`: the caller's devices.
pub async fn list_own(store: &Store, ctx: &AuthContext) -> ServiceResult<Vec<Device>> {
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    let rows = db::devices::list_for_user(&mut db, &ctx.user_id).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(wire(&open(store, &mut db, row).await?));
    }
    Ok(out)
}

/// `GET /devices/keys`: the caller's keys (`user_id` = self), or every device's (`all`).
pub async fn keys(
    store: &Store,
    ctx: &AuthContext,
    user_id: Option<String>,
    all: bool,
) -> ServiceResult<DeviceKeysResponse> {
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    if all {
        let rows = db::devices::list_all(&mut db).await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let d = open(store, &mut db, row).await?;
            keys.push(DeviceKey {
                user_id: Some(d.row.user_id),
                device_id: d.row.id,
                public_key: d.public_key,
            });
        }
        return Ok(DeviceKeysResponse {
            user_id: String::new(),
            keys,
        });
    }
    let user_id = user_id
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| ctx.user_id.clone());
    if user_id != ctx.user_id {
        return Err(ServiceError::Forbidden(
            "only your own device keys, or all of them with ?all=1",
        ));
    }
    let rows = db::devices::list_for_user(&mut db, &user_id).await?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let d = open(store, &mut db, row).await?;
        keys.push(DeviceKey {
            user_id: None,
            device_id: d.row.id,
            public_key: d.public_key,
        });
    }
    Ok(DeviceKeysResponse { user_id, keys })
}

/// What removing a device did.
pub struct Removed {
    /// Its id, as stored (the hub compares it with its sessions').
    pub device_id: String,
    /// Its login sessions, now revoked: their sockets close.
    pub session_ids: Vec<String>,
    /// The private channels its user is in: each now needs a new key generation (the device
    /// still holds the old ones).
    pub channels: Vec<crate::protocol::rest::Channel>,
}

/// `DELETE /devices/{id}`: remove one of the caller's devices with its sessions and the envelopes
/// addressed to it.
pub async fn delete(store: &Store, ctx: &AuthContext, device_id: &str) -> ServiceResult<Removed> {
    let device_id =
        validate::id("device id", device_id).map_err(|_| ServiceError::NotFound("device"))?;
    let mut conn = store.pool.get().await?;
    let user_id = ctx.user_id.clone();
    let target = device_id.clone();
    // Under the user's row lock, as logins and additions are: a login that picked this device
    // either commits its session first (read below, so its socket is closed too) or runs after
    // the delete and adds the key anew; never a session pointing at a deleted device.
    let (session_ids, channels) = conn
        .transaction(move |mut db| {
            async move {
                if db::users::lock(&mut db, &user_id).await?.is_none() {
                    return Ok(Err(ServiceError::Unauthorized));
                }
                let Some(row) = db::devices::find(&mut db, &target).await? else {
                    return Ok(Err(ServiceError::NotFound("device")));
                };
                if row.user_id != user_id {
                    return Ok(Err(ServiceError::Forbidden("not your device")));
                }
                let sessions = db::sessions::ids_for_device(&mut db, &target).await?;
                db::devices::delete(&mut db, &target).await?;
                // Last: it locks the user's private channels, which message commits lock too,
                // and they are held until this transaction commits.
                let channels = super::members::device_revoked(&mut db, &user_id).await?;
                Ok(Ok((sessions, channels)))
            }
            .boxed()
        })
        .await??;
    tracing::info!(user_id = %ctx.user_id, device_id = %device_id, "device removed");
    Ok(Removed {
        device_id,
        session_ids,
        channels: channels.into_iter().map(super::channels::wire).collect(),
    })
}
