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
