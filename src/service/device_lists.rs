//! Trust v2 signed device lists (docs/TRUST.md §2): upload, checked against the user's chain and
//! registered devices, and fetch. The server checks what it can (signatures, chain, that the
//! devices are the user's) but cannot forge a list: it holds no identity key.

use std::collections::HashMap;

use super::context::AuthContext;
use super::{ServiceError, ServiceResult, Store, devices, new_id};
use crate::crypto::device_list::{self, CheckedList, ListError};
use crate::crypto::field::Column;
use crate::db::models::DeviceListRow;
use crate::db::types::Time;
use crate::db::{self, Db};
use crate::protocol::trust::{DeviceListAccepted, DeviceListsResponse, SignedDeviceList};

/// Most lists one `GET /devices/list?after_version=` returns; the client pages on.
pub const PAGE: i64 = 100;

fn signed_of(store: &Store, row: &DeviceListRow) -> ServiceResult<SignedDeviceList> {
    let statement = store
        .open(Column::DeviceListsStatement, &row.id, &row.statement)?
        .plaintext;
    Ok(SignedDeviceList {
        statement,
        identity_signature: row.identity_signature.clone(),
    })
}

/// The user's newest list as the next upload's predecessor. It was checked when it was stored.
async fn latest(
    store: &Store,
    db: &mut Db<'_>,
    user_id: &str,
) -> ServiceResult<Option<CheckedList>> {
    let Some(row) = db::device_lists::latest(db, user_id).await? else {
        return Ok(None);
    };
    let signed = signed_of(store, &row)?;
    device_list::stored(signed, row.hash)
        .map(Some)
        .map_err(|e| ServiceError::Internal(format!("stored device list: {e}")))
}

/// `POST /devices/list`: publish the next version of the caller's list.
///
/// Who may publish: for a user's first list, and for a reset (a new identity key), a device that
/// the new list names; otherwise a device named by the *current* list, so a new device joins
/// only when an existing one signs it in. Every listed device must be one of the user's
/// registered devices, with the X25519 key it registered.
pub async fn upload(
    store: &Store,
    ctx: &AuthContext,
    signed: SignedDeviceList,
) -> ServiceResult<DeviceListAccepted> {
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    let prev = latest(store, &mut db, &ctx.user_id).await?;
    let checked = device_list::check(&signed, &ctx.user_id, prev.as_ref())
        .map_err(ServiceError::DeviceList)?;
    let names_caller = |l: &CheckedList| {
        l.statement
            .devices
            .iter()
            .any(|d| d.device_id == ctx.device_id)
    };
    let signer_ok = match &prev {
        Some(p) if !checked.statement.reset => names_caller(p),
        _ => names_caller(&checked),
    };
    if !signer_ok {
        return Err(ServiceError::Forbidden(
            "a device list is published by a device it already lists (or, for a first list or a reset, by a device it names)",
        ));
    }
    let mut registered = HashMap::new();
    for row in db::devices::list_for_user(&mut db, &ctx.user_id).await? {
        let d = devices::open(store, &mut db, row).await?;
        registered.insert(d.row.id, d.public_key);
    }
    for d in &checked.statement.devices {
        if registered.get(&d.device_id) != Some(&d.public_key) {
            return Err(ServiceError::Invalid(format!(
                "device {} is not one of your registered devices with that public key",
                d.device_id
            )));
        }
    }
    let id = new_id();
    let version = checked.statement.version;
    let row = DeviceListRow {
        statement: store
            .cipher()
            .encrypt(Column::DeviceListsStatement, &id, &signed.statement),
        id,
        user_id: ctx.user_id.clone(),
        version: i64::try_from(version).map_err(|_| {
            ServiceError::DeviceList(ListError::Malformed("version is too large".into()))
        })?,
        identity_signature: signed.identity_signature,
        hash: checked.hash.clone(),
        created_at: Time::now(),
    };
    match db::device_lists::insert(&mut db, &row).await {
        Ok(()) => {}
        // Another device published this version first: the caller refetches and re-signs.
        Err(e) if e.is_unique_violation() => {
            return Err(ServiceError::DeviceList(ListError::Version {
                current: version,
                expected: version + 1,
                got: version,
            }));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user_id = %ctx.user_id, version, reset = checked.statement.reset, "device list published");
    Ok(DeviceListAccepted {
        version,
        hash: checked.hash,
    })
}

/// `GET /devices/list`: the user's newest list, or every list after `after_version` (a page of
/// [`PAGE`], ascending) for a client that pinned an older one and must check the chain.
pub async fn fetch(
    store: &Store,
    user_id: &str,
    after_version: Option<u64>,
) -> ServiceResult<DeviceListsResponse> {
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    if db::users::find(&mut db, user_id).await?.is_none() {
        return Err(ServiceError::NotFound("user"));
    }
    let newest = db::device_lists::latest(&mut db, user_id).await?;
    let latest_version = newest.as_ref().map_or(0, |r| r.version.max(0) as u64);
    let rows = match after_version {
        None => newest.into_iter().collect(),
        Some(after) => {
            // Versions are stored as BIGINT: a larger cursor names no version there can be.
            let after = i64::try_from(after)
                .map_err(|_| ServiceError::invalid("after_version is out of range"))?;
            db::device_lists::after(&mut db, user_id, after, PAGE).await?
        }
    };
    let mut lists = Vec::with_capacity(rows.len());
    for row in &rows {
        lists.push(signed_of(store, row)?);
    }
    Ok(DeviceListsResponse {
        user_id: user_id.to_owned(),
        latest_version,
        lists,
    })
}
