//! Queries on `sessions`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{SessionRow, UserRow};
use super::schema::{sessions, users};
use super::types::Time;
use super::{Db, DbResult};
use crate::dispatch;

pub async fn insert(db: &mut Db<'_>, row: &SessionRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(sessions::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// The session with this token hash and its user.
pub async fn find_with_user(
    db: &mut Db<'_>,
    token_hash: &str,
) -> DbResult<Option<(SessionRow, UserRow)>> {
    Ok(dispatch!(db, |c| sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .select((SessionRow::as_select(), UserRow::as_select()))
        .first(c)
        .await
        .optional())?)
}

/// Those of `ids` that still exist and belong to an enabled user (expiry is the socket's own
/// business: it closes itself when its session expires).
pub async fn live_among(db: &mut Db<'_>, ids: &[String]) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq_any(ids))
        .filter(users::disabled_at.is_null())
        .select(sessions::id)
        .load(c)
        .await)?)
}

pub async fn delete(db: &mut Db<'_>, id: &str) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::delete(sessions::table.find(id))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Ids of the deleted sessions.
pub async fn delete_for_user(db: &mut Db<'_>, user_id: &str) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| diesel::delete(
        sessions::table.filter(sessions::user_id.eq(user_id))
    )
    .returning(sessions::id)
    .get_results(c)
    .await)?)
}

/// Ids of the sessions of a device (deleted with it by the foreign key cascade).
pub async fn ids_for_device(db: &mut Db<'_>, device_id: &str) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| sessions::table
        .filter(sessions::device_id.eq(device_id))
        .select(sessions::id)
        .load(c)
        .await)?)
}

/// Sessions of a user that have not expired.
pub async fn count_live_for_user(db: &mut Db<'_>, user_id: &str, now: Time) -> DbResult<usize> {
    let n: i64 = dispatch!(db, |c| sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(now))
        .count()
        .get_result(c)
        .await)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub async fn delete_expired(db: &mut Db<'_>, now: Time) -> DbResult<usize> {
    Ok(dispatch!(db, |c| diesel::delete(
        sessions::table.filter(sessions::expires_at.le(now))
    )
    .execute(c)
    .await)?)
}
