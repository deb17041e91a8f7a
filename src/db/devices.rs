//! Queries on `devices`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::DeviceRow;
use super::schema::devices;
use super::types::Time;
use super::{Db, DbResult};
use crate::dispatch;

pub async fn insert(db: &mut Db<'_>, row: &DeviceRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(devices::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn find(db: &mut Db<'_>, id: &str) -> DbResult<Option<DeviceRow>> {
    Ok(dispatch!(db, |c| devices::table
        .find(id)
        .select(DeviceRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The user's device whose key hash is any of `hashes` (current key first, then previous keys).
pub async fn find_by_key_hash(
    db: &mut Db<'_>,
    user_id: &str,
    hashes: &[String],
) -> DbResult<Option<DeviceRow>> {
    Ok(dispatch!(db, |c| devices::table
        .filter(devices::user_id.eq(user_id))
        .filter(devices::public_key_hash.eq_any(hashes))
        .order(devices::created_at.asc())
        .select(DeviceRow::as_select())
        .first(c)
        .await
        .optional())?)
}

pub async fn list_for_user(db: &mut Db<'_>, user_id: &str) -> DbResult<Vec<DeviceRow>> {
    Ok(dispatch!(db, |c| devices::table
        .filter(devices::user_id.eq(user_id))
        .order((devices::created_at.asc(), devices::id.asc()))
        .select(DeviceRow::as_select())
        .load(c)
        .await)?)
}

pub async fn count_for_user(db: &mut Db<'_>, user_id: &str) -> DbResult<usize> {
    let n: i64 = dispatch!(db, |c| devices::table
        .filter(devices::user_id.eq(user_id))
        .count()
        .get_result(c)
        .await)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub async fn list_all(db: &mut Db<'_>) -> DbResult<Vec<DeviceRow>> {
    Ok(dispatch!(db, |c| devices::table
        .order((
            devices::user_id.asc(),
            devices::created_at.asc(),
            devices::id.asc()
        ))
        .select(DeviceRow::as_select())
        .load(c)
        .await)?)
}

/// Devices of `user_id` still in legacy form (plaintext key or no hash).
pub async fn legacy_for_user(db: &mut Db<'_>, user_id: &str) -> DbResult<Vec<DeviceRow>> {
    Ok(dispatch!(db, |c| devices::table
        .filter(devices::user_id.eq(user_id))
        .filter(
            devices::public_key_hash
                .is_null()
                .or(devices::public_key.not_like("enc:%")),
        )
        .select(DeviceRow::as_select())
        .load(c)
        .await)?)
}

pub async fn set_key(db: &mut Db<'_>, id: &str, public_key_enc: &str, hash: &str) -> DbResult<()> {
    dispatch!(db, |c| diesel::update(devices::table.find(id))
        .set((
            devices::public_key.eq(public_key_enc),
            devices::public_key_hash.eq(hash),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn touch(db: &mut Db<'_>, id: &str, at: Time) -> DbResult<()> {
    dispatch!(db, |c| diesel::update(devices::table.find(id))
        .set(devices::last_seen_at.eq(at))
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn delete(db: &mut Db<'_>, id: &str) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::delete(devices::table.find(id))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// A page of `(id, public_key)` after `after_id`, for re-encryption.
pub async fn key_page(
    db: &mut Db<'_>,
    after_id: &str,
    limit: i64,
) -> DbResult<Vec<(String, String)>> {
    Ok(dispatch!(db, |c| devices::table
        .filter(devices::id.gt(after_id))
        .order(devices::id.asc())
        .select((devices::id, devices::public_key))
        .limit(limit)
        .load(c)
        .await)?)
}
