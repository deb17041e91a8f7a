//! Queries on `users`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::UserRow;
use super::schema::users;
use super::types::Time;
use super::{Db, DbResult};
use crate::dispatch;

pub async fn insert(db: &mut Db<'_>, row: &UserRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(users::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn find(db: &mut Db<'_>, id: &str) -> DbResult<Option<UserRow>> {
    Ok(dispatch!(db, |c| users::table
        .find(id)
        .select(UserRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The user, its row locked until the transaction ends: a user's device and session counts change
/// one at a time, and a disable committed meanwhile is seen. `FOR NO KEY UPDATE`, not `FOR
/// UPDATE`: the foreign-key checks of rows referencing the user (members, sessions, devices)
/// take `FOR KEY SHARE`, which it does not block, so two users opening direct channels with each
/// other cannot deadlock (SQLite's write transaction already
/// excludes other writers).
pub async fn lock(db: &mut Db<'_>, id: &str) -> DbResult<Option<UserRow>> {
    let query = users::table.find(id);
    Ok(match db {
        Db::Postgres(c) => query
            .select(UserRow::as_select())
            .for_no_key_update()
            .first(&mut **c)
            .await
            .optional()?,
        Db::Sqlite(c) => query
            .select(UserRow::as_select())
            .first(&mut **c)
            .await
            .optional()?,
    })
}

pub async fn find_by_hash(db: &mut Db<'_>, username_hash: &str) -> DbResult<Option<UserRow>> {
    Ok(dispatch!(db, |c| users::table
        .filter(users::username_hash.eq(username_hash))
        .select(UserRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Whether any user exists (the first registered user becomes admin).
pub async fn any_exist(db: &mut Db<'_>) -> DbResult<bool> {
    Ok(dispatch!(db, |c| diesel::select(diesel::dsl::exists(
        users::table.select(users::id)
    ))
    .get_result::<bool>(c)
    .await)?)
}

pub async fn set_username(db: &mut Db<'_>, id: &str, username_enc: &str) -> DbResult<()> {
    dispatch!(db, |c| diesel::update(users::table.find(id))
        .set(users::username.eq(username_enc))
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn set_password_hash(db: &mut Db<'_>, id: &str, hash: &str) -> DbResult<()> {
    dispatch!(db, |c| diesel::update(users::table.find(id))
        .set(users::password_hash.eq(hash))
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn set_disabled(db: &mut Db<'_>, id: &str, at: Option<Time>) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::update(users::table.find(id))
        .set(users::disabled_at.eq(at))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

pub async fn set_admin(db: &mut Db<'_>, id: &str, is_admin: bool) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::update(users::table.find(id))
        .set(users::is_admin.eq(is_admin))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Enabled admins other than `id` (the last one may not be demoted or disabled).
pub async fn other_active_admins(db: &mut Db<'_>, id: &str) -> DbResult<i64> {
    Ok(dispatch!(db, |c| users::table
        .filter(users::is_admin.eq(true))
        .filter(users::disabled_at.is_null())
        .filter(users::id.ne(id))
        .count()
        .get_result::<i64>(c)
        .await)?)
}

/// Those of `ids` whose account is disabled.
pub async fn disabled_among(db: &mut Db<'_>, ids: &[String]) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| users::table
        .filter(users::id.eq_any(ids))
        .filter(users::disabled_at.is_not_null())
        .select(users::id)
        .load(c)
        .await)?)
}

/// `(id, is_admin)` of those of `ids` that exist.
pub async fn admin_flags(db: &mut Db<'_>, ids: &[String]) -> DbResult<Vec<(String, bool)>> {
    Ok(dispatch!(db, |c| users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::is_admin))
        .load(c)
        .await)?)
}

/// Every user, oldest first.
pub async fn list(db: &mut Db<'_>) -> DbResult<Vec<UserRow>> {
    Ok(dispatch!(db, |c| users::table
        .order((users::created_at.asc(), users::id.asc()))
        .select(UserRow::as_select())
        .load(c)
        .await)?)
}

/// A page of `(id, username)` with a stored username, after `after_id`, for re-encryption.
pub async fn username_page(
    db: &mut Db<'_>,
    after_id: &str,
    limit: i64,
) -> DbResult<Vec<(String, String)>> {
    let rows: Vec<(String, Option<String>)> = dispatch!(db, |c| users::table
        .filter(users::id.gt(after_id))
        .order(users::id.asc())
        .select((users::id, users::username))
        .limit(limit)
        .load(c)
        .await)?;
    Ok(rows
        .into_iter()
        .map(|(id, u)| (id, u.unwrap_or_default()))
        .collect())
}
