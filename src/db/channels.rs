//! Queries on `channels`.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;

use super::models::{ChannelRow, channel_kind};
use super::schema::{channel_members, channel_messages, channels};
use super::{Db, DbResult};
use crate::dispatch;

/// The channels a user may see, newest first: every public one, and the private and direct ones
/// they are an active member of.
pub async fn list_visible(db: &mut Db<'_>, user_id: &str) -> DbResult<Vec<ChannelRow>> {
    let mine = channel_members::table
        .filter(channel_members::user_id.eq(user_id))
        .filter(channel_members::removed_at.is_null())
        .select(channel_members::channel_id);
    Ok(dispatch!(db, |c| channels::table
        .filter(
            channels::kind
                .eq(channel_kind::PUBLIC)
                .or(channels::id.eq_any(mine))
        )
        .order((channels::created_at.desc(), channels::id.desc()))
        .select(ChannelRow::as_select())
        .load(c)
        .await)?)
}

/// How many private and direct channels `user_id` created (still existing).
pub async fn count_created_by(db: &mut Db<'_>, user_id: &str) -> DbResult<usize> {
    let n: i64 = dispatch!(db, |c| channels::table
        .filter(channels::created_by.eq(user_id))
        .filter(channels::kind.ne(channel_kind::PUBLIC))
        .count()
        .get_result(c)
        .await)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// The channel, its row locked until the transaction ends (membership changes and rotations of
/// one channel run one at a time; SQLite's write transaction already excludes other writers).
pub async fn lock(db: &mut Db<'_>, id: &str) -> DbResult<Option<ChannelRow>> {
    let query = channels::table.find(id);
    Ok(match db {
        Db::Postgres(c) => query
            .select(ChannelRow::as_select())
            .for_update()
            .first(&mut **c)
            .await
            .optional()?,
        Db::Sqlite(c) => query
            .select(ChannelRow::as_select())
            .first(&mut **c)
            .await
            .optional()?,
    })
}

/// Generation `generation` is now current: sends may go on.
pub async fn set_generation(db: &mut Db<'_>, id: &str, generation: i64) -> DbResult<()> {
    dispatch!(db, |c| diesel::update(channels::table.find(id))
        .set((
            channels::key_generation.eq(generation),
            channels::rotation_required.eq(false),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// These private channels need a new generation before their next message.
pub async fn require_rotation(db: &mut Db<'_>, ids: &[String]) -> DbResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    dispatch!(db, |c| diesel::update(
        channels::table
            .filter(channels::id.eq_any(ids))
            .filter(channels::kind.ne(channel_kind::PUBLIC))
    )
    .set(channels::rotation_required.eq(true))
    .execute(c)
    .await)?;
    Ok(())
}

/// The direct channel of a pair of users (`user_a:user_b`, sorted).
pub async fn find_direct(db: &mut Db<'_>, pair: &str) -> DbResult<Option<ChannelRow>> {
    Ok(dispatch!(db, |c| channels::table
        .filter(channels::direct_pair.eq(pair))
        .select(ChannelRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The ids of every private and direct channel.
pub async fn private_ids(db: &mut Db<'_>) -> DbResult<Vec<String>> {
    Ok(dispatch!(db, |c| channels::table
        .filter(channels::kind.ne(channel_kind::PUBLIC))
        .select(channels::id)
        .load(c)
        .await)?)
}

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

/// Every channel with its last committed `seq` (the cluster's repair compares these).
pub async fn list_seqs(db: &mut Db<'_>) -> DbResult<Vec<(String, i64)>> {
    Ok(dispatch!(db, |c| channels::table
        .select((channels::id, channels::last_seq))
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

/// Those of `ids` that exist.
pub async fn find_many(db: &mut Db<'_>, ids: &[String]) -> DbResult<Vec<ChannelRow>> {
    Ok(dispatch!(db, |c| channels::table
        .filter(channels::id.eq_any(ids))
        .select(ChannelRow::as_select())
        .load(c)
        .await)?)
}

pub async fn exists(db: &mut Db<'_>, id: &str) -> DbResult<bool> {
    Ok(dispatch!(db, |c| diesel::select(diesel::dsl::exists(
        channels::table.find(id)
    ))
    .get_result::<bool>(c)
    .await)?)
}

/// Those of `ids` that exist, ascending, with their sequence counters locked until the
/// transaction ends: against deletion, and against any other commit into the same channel, so
/// each channel's seqs follow commit order.
///
/// PostgreSQL takes `FOR NO KEY UPDATE` row locks in one statement in ascending id order, so two
/// nodes committing into overlapping channels always lock in the same order and cannot deadlock.
/// An SQLite write transaction already excludes every other writer.
pub async fn lock_counters(db: &mut Db<'_>, ids: &[&str]) -> DbResult<Vec<Locked>> {
    let query = channels::table
        .filter(channels::id.eq_any(ids))
        .order(channels::id.asc())
        .select((
            channels::id,
            channels::kind,
            channels::key_generation,
            channels::rotation_required,
        ));
    Ok(match db {
        Db::Postgres(c) => query.for_no_key_update().load(&mut **c).await?,
        Db::Sqlite(c) => query.load(&mut **c).await?,
    })
}

/// Reserve `n` sequence numbers in each channel of `counts` (channel id → `n`), whose counters
/// the transaction holds from [`lock_counters`]: bump every counter by its `n` and return the new
/// `last_seq` of each, so the caller's rows get `last_seq - n + 1 ..= last_seq`. A rollback
/// returns the numbers, so a refused batch leaves no gap.
pub async fn bump_counters(
    db: &mut Db<'_>,
    counts: &BTreeMap<String, i64>,
) -> DbResult<HashMap<String, i64>> {
    if counts.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = counts.keys().cloned().collect();
    let ns: Vec<i64> = counts.values().copied().collect();
    Ok(match db {
        // One statement for every channel of the batch, however many.
        Db::Postgres(c) => diesel::sql_query(
            "UPDATE channels SET last_seq = channels.last_seq + v.n \
             FROM unnest($1::text[], $2::bigint[]) AS v(id, n) \
             WHERE channels.id = v.id \
             RETURNING channels.id, channels.last_seq",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<BigInt>, _>(&ns)
        .load::<Bumped>(&mut **c)
        .await?
        .into_iter()
        .map(|r| (r.id, r.last_seq))
        .collect(),
        // One blocking call for the whole batch: a thread hop per statement would cost more than
        // the updates themselves.
        Db::Sqlite(c) => {
            c.spawn_blocking(move |conn| {
                let mut out = HashMap::with_capacity(ids.len());
                for (id, n) in ids.into_iter().zip(ns) {
                    let last: Option<i64> = diesel::RunQueryDsl::get_result(
                        diesel::update(channels::table.find(&id))
                            .set(channels::last_seq.eq(channels::last_seq + n))
                            .returning(channels::last_seq),
                        conn,
                    )
                    .optional()?;
                    if let Some(last) = last {
                        out.insert(id, last);
                    }
                }
                Ok(out)
            })
            .await?
        }
    })
}

/// A channel [`lock_counters`] holds: what a send into it must respect.
#[derive(Debug, Clone, Queryable)]
pub struct Locked {
    pub id: String,
    pub kind: String,
    pub key_generation: i64,
    pub rotation_required: bool,
}

impl Locked {
    pub fn is_private(&self) -> bool {
        self.kind != super::models::channel_kind::PUBLIC
    }
}

/// A row of [`bump_counters`]' `RETURNING`.
#[derive(QueryableByName)]
struct Bumped {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
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

/// Delete a channel and its messages (its envelopes and members cascade); false for an unknown
/// channel. Run it in a transaction. The channel row goes first: that waits for a group commit
/// holding the channel's counter lock, so the message delete after it (a later snapshot) also
/// removes what that commit inserted, and later commits find no channel. channel_messages has
/// no foreign keys (migration 000008: they cost half of each batch insert).
pub async fn delete(db: &mut Db<'_>, id: &str) -> DbResult<bool> {
    let n = dispatch!(db, |c| diesel::delete(channels::table.find(id))
        .execute(c)
        .await)?;
    if n == 0 {
        return Ok(false);
    }
    dispatch!(db, |c| diesel::delete(
        channel_messages::table.filter(channel_messages::channel_id.eq(id))
    )
    .execute(c)
    .await)?;
    Ok(true)
}
