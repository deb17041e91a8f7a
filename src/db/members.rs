//! Queries on `channel_members` and `channel_generation_envelopes` (trust v2 private channels).

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::models::{GenerationEnvelopeRow, MemberRow};
use super::schema::{channel_generation_envelopes as ge, channel_members as cm, devices};
use super::types::Time;
use super::{Db, DbResult};
use crate::dispatch;

/// Every member row of a channel, removed ones included, in join order.
pub async fn list(db: &mut Db<'_>, channel_id: &str) -> DbResult<Vec<MemberRow>> {
    Ok(dispatch!(db, |c| cm::table
        .filter(cm::channel_id.eq(channel_id))
        .order((cm::joined_at.asc(), cm::user_id.asc()))
        .select(MemberRow::as_select())
        .load(c)
        .await)?)
}

pub async fn find(db: &mut Db<'_>, channel_id: &str, user_id: &str) -> DbResult<Option<MemberRow>> {
    Ok(dispatch!(db, |c| cm::table
        .find((channel_id, user_id))
        .select(MemberRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The member row only while the user is in (not removed).
pub async fn active(
    db: &mut Db<'_>,
    channel_id: &str,
    user_id: &str,
) -> DbResult<Option<MemberRow>> {
    Ok(find(db, channel_id, user_id)
        .await?
        .filter(|m| m.removed_at.is_none()))
}

/// Add, or re-add a removed member (its role and joined generation are replaced).
pub async fn upsert(db: &mut Db<'_>, row: &MemberRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(cm::table)
        .values(row)
        .on_conflict((cm::channel_id, cm::user_id))
        .do_update()
        .set((
            cm::role.eq(excluded(cm::role)),
            cm::joined_generation.eq(excluded(cm::joined_generation)),
            cm::joined_at.eq(excluded(cm::joined_at)),
            cm::removed_at.eq(excluded(cm::removed_at)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Mark an active member removed; `false` when the user was not in.
pub async fn remove(db: &mut Db<'_>, channel_id: &str, user_id: &str, at: Time) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::update(
        cm::table
            .find((channel_id, user_id))
            .filter(cm::removed_at.is_null())
    )
    .set(cm::removed_at.eq(Some(at)))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// The user ids of a channel's active members.
pub async fn active_user_ids(db: &mut Db<'_>, channel_id: &str) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| cm::table
        .filter(cm::channel_id.eq(channel_id))
        .filter(cm::removed_at.is_null())
        .select(cm::user_id)
        .load(c)
        .await)?)
}

/// The channels the user is an active member of.
pub async fn channels_of(db: &mut Db<'_>, user_id: &str) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| cm::table
        .filter(cm::user_id.eq(user_id))
        .filter(cm::removed_at.is_null())
        .select(cm::channel_id)
        .load(c)
        .await)?)
}

/// Every active `(channel, user)` pair of these channels.
pub async fn active_pairs(
    db: &mut Db<'_>,
    channel_ids: &[String],
) -> DbResult<Vec<(String, String)>> {
    Ok(dispatch!(db, |c| cm::table
        .filter(cm::channel_id.eq_any(channel_ids))
        .filter(cm::removed_at.is_null())
        .select((cm::channel_id, cm::user_id))
        .load(c)
        .await)?)
}

/// Every active `(channel, user)` pair (the hub's view at start).
pub async fn all_active_pairs(db: &mut Db<'_>) -> DbResult<Vec<(String, String)>> {
    Ok(dispatch!(db, |c| cm::table
        .filter(cm::removed_at.is_null())
        .select((cm::channel_id, cm::user_id))
        .load(c)
        .await)?)
}

/// The device ids of the channel's active members: exactly who a new generation must reach.
pub async fn active_device_ids(db: &mut Db<'_>, channel_id: &str) -> DbResult<Vec<String>> {
    let users = active_user_ids(db, channel_id).await?;
    Ok(dispatch!(db, |c| devices::table
        .filter(devices::user_id.eq_any(&users))
        .order(devices::id.asc())
        .select(devices::id)
        .load(c)
        .await)?)
}

/// The envelope of one generation addressed to one device.
pub async fn envelope(
    db: &mut Db<'_>,
    channel_id: &str,
    generation: i64,
    device_id: &str,
) -> DbResult<Option<GenerationEnvelopeRow>> {
    Ok(dispatch!(db, |c| ge::table
        .find((channel_id, generation, device_id))
        .select(GenerationEnvelopeRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Whether the device holds, or wrapped for someone, this generation's key.
pub async fn holds(
    db: &mut Db<'_>,
    channel_id: &str,
    generation: i64,
    device_id: &str,
) -> DbResult<bool> {
    Ok(dispatch!(db, |c| diesel::select(diesel::dsl::exists(
        ge::table
            .filter(ge::channel_id.eq(channel_id))
            .filter(ge::generation.eq(generation))
            .filter(
                ge::device_id
                    .eq(device_id)
                    .or(ge::sender_device_id.eq(device_id))
            )
    ))
    .get_result::<bool>(c)
    .await)?)
}

/// Insert or replace envelopes (all of one upload, inside its transaction).
pub async fn upsert_envelopes(db: &mut Db<'_>, rows: &[GenerationEnvelopeRow]) -> DbResult<()> {
    for row in rows {
        dispatch!(db, |c| diesel::insert_into(ge::table)
            .values(row)
            .on_conflict((ge::channel_id, ge::generation, ge::device_id))
            .do_update()
            .set((
                ge::sender_device_id.eq(excluded(ge::sender_device_id)),
                ge::sender_public_key.eq(excluded(ge::sender_public_key)),
                ge::envelope.eq(excluded(ge::envelope)),
                ge::created_at.eq(excluded(ge::created_at)),
            ))
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Drop every envelope addressed to the device in this channel; how many there were.
pub async fn delete_own(db: &mut Db<'_>, channel_id: &str, device_id: &str) -> DbResult<usize> {
    Ok(dispatch!(db, |c| diesel::delete(
        ge::table
            .filter(ge::channel_id.eq(channel_id))
            .filter(ge::device_id.eq(device_id))
    )
    .execute(c)
    .await)?)
}
