//! Queries on `user_profiles`.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::models::ProfileRow;
use super::schema::user_profiles as p;
use super::{Db, DbResult};
use crate::dispatch;

pub async fn upsert(db: &mut Db<'_>, row: &ProfileRow) -> DbResult<()> {
    dispatch!(db, |c| diesel::insert_into(p::table)
        .values(row)
        .on_conflict(p::user_id)
        .do_update()
        .set((
            p::name_enc.eq(excluded(p::name_enc)),
            p::updated_at.eq(excluded(p::updated_at)),
            p::signer_device_id.eq(excluded(p::signer_device_id)),
            p::signature.eq(excluded(p::signature)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Every profile, most recently updated first.
pub async fn list(db: &mut Db<'_>) -> DbResult<Vec<ProfileRow>> {
    Ok(dispatch!(db, |c| p::table
        .order((p::updated_at.desc(), p::user_id.asc()))
        .select(ProfileRow::as_select())
        .load(c)
        .await)?)
}
