//! Queries on `server_invites`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::InviteRow;
use super::schema::server_invites;
use super::types::Time;
use super::{Db, DbResult};
use crate::dispatch;

pub async fn insert(db: &mut Db<'_>, row: &InviteRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(server_invites::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn find_by_hash(db: &mut Db<'_>, token_hash: &str) -> DbResult<Option<InviteRow>> {
    Ok(dispatch!(db, |c| server_invites::table
        .filter(server_invites::token_hash.eq(token_hash))
        .select(InviteRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Count one use; the last use also marks the invite consumed (v1's `consumed_*` columns).
pub async fn record_use(
    db: &mut Db<'_>,
    invite: &InviteRow,
    user_id: &str,
    at: Time,
) -> DbResult<()> {
    let uses = invite.uses + 1;
    let exhausted = uses >= invite.max_uses;
    dispatch!(db, |c| diesel::update(
        server_invites::table.find(&invite.id)
    )
    .set((
        server_invites::uses.eq(uses),
        server_invites::consumed_at.eq(if exhausted { Some(at) } else { None }),
        server_invites::consumed_by.eq(if exhausted { Some(user_id) } else { None }),
    ))
    .execute(c)
    .await)?;
    Ok(())
}

/// Every invite, newest first.
pub async fn list(db: &mut Db<'_>) -> DbResult<Vec<InviteRow>> {
    Ok(dispatch!(db, |c| server_invites::table
        .order((server_invites::created_at.desc(), server_invites::id.asc()))
        .select(InviteRow::as_select())
        .load(c)
        .await)?)
}

pub async fn revoke(db: &mut Db<'_>, id: &str, at: Time) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::update(
        server_invites::table
            .find(id)
            .filter(server_invites::revoked_at.is_null())
    )
    .set(server_invites::revoked_at.eq(at))
    .execute(c)
    .await)?;
    Ok(n == 1)
}
