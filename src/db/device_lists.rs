//! Queries on `device_lists` (trust v2 signed device lists).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::DeviceListRow;
use super::schema::device_lists;
use super::{Db, DbResult};
use crate::dispatch;

/// The user's newest list.
pub async fn latest(db: &mut Db<'_>, user_id: &str) -> DbResult<Option<DeviceListRow>> {
    Ok(dispatch!(db, |c| device_lists::table
        .filter(device_lists::user_id.eq(user_id))
        .order(device_lists::version.desc())
        .select(DeviceListRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Up to `limit` of the user's lists after `after_version`, ascending.
pub async fn after(
    db: &mut Db<'_>,
    user_id: &str,
    after_version: i64,
    limit: i64,
) -> DbResult<Vec<DeviceListRow>> {
    Ok(dispatch!(db, |c| device_lists::table
        .filter(device_lists::user_id.eq(user_id))
        .filter(device_lists::version.gt(after_version))
        .order(device_lists::version.asc())
        .limit(limit)
        .select(DeviceListRow::as_select())
        .load(c)
        .await)?)
}

/// Insert one version; a concurrent upload of the same version fails with a unique violation.
pub async fn insert(db: &mut Db<'_>, row: &DeviceListRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(device_lists::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// A page of every list (for `dialtone rekey`), by id.
pub async fn page_after(
    db: &mut Db<'_>,
    after_id: &str,
    limit: i64,
) -> DbResult<Vec<DeviceListRow>> {
    Ok(dispatch!(db, |c| device_lists::table
        .filter(device_lists::id.gt(after_id))
        .order(device_lists::id.asc())
        .limit(limit)
        .select(DeviceListRow::as_select())
        .load(c)
        .await)?)
}

/// Replace a row's stored statement (re-encrypted under the current key).
pub async fn set_statement(db: &mut Db<'_>, id: &str, statement: &str) -> DbResult<()> {
    dispatch!(db, |c| diesel::update(device_lists::table.find(id))
        .set(device_lists::statement.eq(statement))
        .execute(c)
        .await)?;
    Ok(())
}
