//! Queries on `channel_key_envelopes` and `directory_key_envelopes`.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::models::{ChannelEnvelopeRow, DirectoryEnvelopeRow};
use super::schema::{channel_key_envelopes as ck, directory_key_envelopes as dk};
use super::{Db, DbResult};
use crate::dispatch;

pub async fn channel_envelope(
    db: &mut Db<'_>,
    channel_id: &str,
    device_id: &str,
) -> DbResult<Option<ChannelEnvelopeRow>> {
    Ok(dispatch!(db, |c| ck::table
        .find((channel_id, device_id))
        .select(ChannelEnvelopeRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Insert or replace one channel envelope.
pub async fn upsert_channel_envelope(db: &mut Db<'_>, row: &ChannelEnvelopeRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(ck::table)
        .values(row)
        .on_conflict((ck::channel_id, ck::device_id))
        .do_update()
        .set((
            ck::sender_device_id.eq(excluded(ck::sender_device_id)),
            ck::sender_public_key.eq(excluded(ck::sender_public_key)),
            ck::envelope.eq(excluded(ck::envelope)),
            ck::created_at.eq(excluded(ck::created_at)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn directory_envelope(
    db: &mut Db<'_>,
    device_id: &str,
) -> DbResult<Option<DirectoryEnvelopeRow>> {
    Ok(dispatch!(db, |c| dk::table
        .find(device_id)
        .select(DirectoryEnvelopeRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Insert or replace one directory envelope.
pub async fn upsert_directory_envelope(
    db: &mut Db<'_>,
    row: &DirectoryEnvelopeRow,
) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(dk::table)
        .values(row)
        .on_conflict(dk::device_id)
        .do_update()
        .set((
            dk::sender_device_id.eq(excluded(dk::sender_device_id)),
            dk::sender_public_key.eq(excluded(dk::sender_public_key)),
            dk::envelope.eq(excluded(dk::envelope)),
            dk::created_at.eq(excluded(dk::created_at)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Insert one channel envelope only when its target has none; `false` when one exists (a
/// concurrent writer got there first: the caller reports a conflict instead of overwriting).
pub async fn insert_new_channel_envelope(
    db: &mut Db<'_>,
    row: &ChannelEnvelopeRow,
) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::insert_into(ck::table)
        .values(row)
        .on_conflict((ck::channel_id, ck::device_id))
        .do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Whether the channel has any envelope at all (none: its creator may bootstrap the key).
pub async fn channel_has_envelopes(db: &mut Db<'_>, channel_id: &str) -> DbResult<bool> {
    Ok(dispatch!(db, |c| diesel::select(diesel::dsl::exists(
        ck::table.filter(ck::channel_id.eq(channel_id))
    ))
    .get_result::<bool>(c)
    .await)?)
}

/// Whether `device_id` holds the channel's key: an envelope is addressed to it, or it wrapped
/// one for somebody (which it could only do holding the key).
pub async fn holds_channel_key(
    db: &mut Db<'_>,
    channel_id: &str,
    device_id: &str,
) -> DbResult<bool> {
    Ok(dispatch!(db, |c| diesel::select(diesel::dsl::exists(
        ck::table.filter(ck::channel_id.eq(channel_id)).filter(
            ck::device_id
                .eq(device_id)
                .or(ck::sender_device_id.eq(device_id))
        )
    ))
    .get_result::<bool>(c)
    .await)?)
}

/// Delete the channel envelope addressed to `device_id`; `false` when there was none.
pub async fn delete_channel_envelope(
    db: &mut Db<'_>,
    channel_id: &str,
    device_id: &str,
) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::delete(
        ck::table.find((channel_id, device_id))
    )
    .execute(c)
    .await)?;
    Ok(n > 0)
}

/// Insert one directory envelope only when its target has none (see
/// [`insert_new_channel_envelope`]).
pub async fn insert_new_directory_envelope(
    db: &mut Db<'_>,
    row: &DirectoryEnvelopeRow,
) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::insert_into(dk::table)
        .values(row)
        .on_conflict(dk::device_id)
        .do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Whether `device_id` holds the directory key (addressed to it, or it wrapped one).
pub async fn holds_directory_key(db: &mut Db<'_>, device_id: &str) -> DbResult<bool> {
    Ok(dispatch!(db, |c| diesel::select(diesel::dsl::exists(
        dk::table.filter(
            dk::device_id
                .eq(device_id)
                .or(dk::sender_device_id.eq(device_id))
        )
    ))
    .get_result::<bool>(c)
    .await)?)
}

/// Delete the directory envelope addressed to `device_id`; `false` when there was none.
pub async fn delete_directory_envelope(db: &mut Db<'_>, device_id: &str) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::delete(dk::table.find(device_id))
        .execute(c)
        .await)?;
    Ok(n > 0)
}
