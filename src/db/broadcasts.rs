//! Queries on `broadcast_messages`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::BroadcastRow;
use super::schema::broadcast_messages as b;
use super::{Db, DbResult};
use crate::dispatch;

pub async fn insert(db: &mut Db<'_>, row: &BroadcastRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(b::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// A page of `(id, sender_name_enc, sender_public_key)` after `after_id`, for re-encryption.
pub async fn encrypted_page(
    db: &mut Db<'_>,
    after_id: &str,
    limit: i64,
) -> DbResult<Vec<(String, String, String)>> {
    Ok(dispatch!(db, |c| b::table
        .filter(b::id.gt(after_id))
        .order(b::id.asc())
        .select((b::id, b::sender_name_enc, b::sender_public_key))
        .limit(limit)
        .load(c)
        .await)?)
}

pub async fn set_encrypted(
    db: &mut Db<'_>,
    id: &str,
    sender_name_enc: &str,
    sender_public_key: &str,
) -> DbResult<()> {
    dispatch!(db, |c| diesel::update(b::table.find(id))
        .set((
            b::sender_name_enc.eq(sender_name_enc),
            b::sender_public_key.eq(sender_public_key),
        ))
        .execute(c)
        .await)?;
    Ok(())
}
