//! Queries on `channels`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::ChannelRow;
use super::schema::channels;
use super::{Db, DbResult};
use crate::dispatch;

/// Every channel, newest first.
pub async fn list(db: &mut Db<'_>) -> DbResult<Vec<ChannelRow>> {
    Ok(dispatch!(db, |c| channels::table
        .order((channels::created_at.desc(), channels::id.desc()))
        .select(ChannelRow::as_select())
        .load(c)
        .await)?)
}

pub async fn list_ids(db: &mut Db<'_>) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| channels::table
        .select(channels::id)
        .load(c)
        .await)?)
}

pub async fn find(db: &mut Db<'_>, id: &str) -> DbResult<Option<ChannelRow>> {
    Ok(dispatch!(db, |c| channels::table
        .find(id)
        .select(ChannelRow::as_select())
        .first(c)
        .await
        .optional())?)
}

pub async fn exists(db: &mut Db<'_>, id: &str) -> DbResult<bool> {
    Ok(dispatch!(db, |c| diesel::select(diesel::dsl::exists(
        channels::table.find(id)
    ))
    .get_result::<bool>(c)
    .await)?)
}

/// Those of `ids` that exist, locked against deletion until the transaction ends.
///
/// PostgreSQL takes `FOR KEY SHARE` row locks; an SQLite write transaction already excludes every
/// other writer.
pub async fn existing_locked(db: &mut Db<'_>, ids: &[&str]) -> DbResult<Vec<String>> {
    let query = channels::table
        .filter(channels::id.eq_any(ids))
        .select(channels::id);
    Ok(match db {
        Db::Postgres(c) => query.for_key_share().load(&mut **c).await?,
        Db::Sqlite(c) => query.load(&mut **c).await?,
    })
}

pub async fn insert(db: &mut Db<'_>, row: &ChannelRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(channels::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Rename; the updated row, or `None` for an unknown channel.
pub async fn rename(db: &mut Db<'_>, id: &str, name_enc: &str) -> DbResult<Option<ChannelRow>> {
    let n = dispatch!(db, |c| diesel::update(channels::table.find(id))
        .set(channels::name_enc.eq(name_enc))
        .execute(c)
        .await)?;
    if n == 0 {
        return Ok(None);
    }
    find(db, id).await
}

/// Delete (messages and envelopes cascade); false for an unknown channel.
pub async fn delete(db: &mut Db<'_>, id: &str) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::delete(channels::table.find(id))
        .execute(c)
        .await)?;
    Ok(n == 1)
}
