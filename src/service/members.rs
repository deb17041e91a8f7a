//! Private and direct channels (trust v2, docs/TRUST.md §6): who is a member, who may see a
//! channel, adding and removing members, and opening a direct channel.
//!
//! The server enforces membership; the key generations that keep a removed member from reading
//! live in [`super::generations`]. A non-member is told `channel not found` (404,
//! `channel_not_found`), the same as for a channel that does not exist, so membership does not
//! leak.

use futures_util::FutureExt;

use super::auth::AuthContext;
use super::validate::{self, MAX_NAME_ENC};
use super::{Caps, ServiceError, ServiceResult, Store, new_id};
use crate::db::models::{ChannelRow, MemberRow, channel_kind};
use crate::db::types::Time;
use crate::db::{self, Db, DbResult};
use crate::limits::label;
use crate::protocol::members::{AddMemberRequest, ChannelMember, MembersResponse, role};
use crate::protocol::rest::Channel;

/// The channel if the caller may read and write it: any public channel, or a private or direct
/// one they are an active member of. Anything else is `NotFound("channel")`.
pub async fn visible(
    db: &mut Db<'_>,
    user_id: &str,
    channel_id: &str,
) -> ServiceResult<ChannelRow> {
    let channel = db::channels::find(db, channel_id)
        .await?
        .ok_or(ServiceError::NotFound("channel"))?;
    if channel.is_private()
        && db::members::active(db, channel_id, user_id)
            .await?
            .is_none()
    {
        return Err(ServiceError::NotFound("channel"));
    }
    Ok(channel)
}

/// The caller's active member row, with the channel; `NotFound("channel")` for a non-member or a
/// public channel.
async fn membership(
    db: &mut Db<'_>,
    ctx: &AuthContext,
    channel_id: &str,
) -> ServiceResult<(ChannelRow, MemberRow)> {
    let channel = db::channels::find(db, channel_id)
        .await?
        .filter(ChannelRow::is_private)
        .ok_or(ServiceError::NotFound("channel"))?;
    let member = db::members::active(db, channel_id, &ctx.user_id)
        .await?
        .ok_or(ServiceError::NotFound("channel"))?;
    Ok((channel, member))
}

/// Inside a transaction: the private channel, its row locked (membership changes and rotations
/// of one channel run one at a time), and the caller's active membership; `NotFound("channel")`
/// for a non-member or a public channel.
pub(super) async fn locked(
    db: &mut Db<'_>,
    ctx: &AuthContext,
    channel_id: &str,
) -> db::DbResult<Result<(ChannelRow, MemberRow), ServiceError>> {
    let Some(channel) = db::channels::lock(db, channel_id)
        .await?
        .filter(ChannelRow::is_private)
    else {
        return Ok(Err(ServiceError::NotFound("channel")));
    };
    Ok(db::members::active(db, channel_id, &ctx.user_id)
        .await?
        .map(|me| (channel, me))
        .ok_or(ServiceError::NotFound("channel")))
}

fn wire_member(row: MemberRow) -> ChannelMember {
    ChannelMember {
        user_id: row.user_id,
        role: row.role,
        joined_at: row.joined_at.wire(),
        joined_generation: row.joined_generation,
        removed_at: row.removed_at.map(|t| t.wire()),
    }
}

fn channel_id(raw: &str) -> ServiceResult<String> {
    if raw.trim().is_empty() {
        return Err(ServiceError::invalid("channel_id is required"));
    }
    validate::id("channel_id", raw).map_err(|_| ServiceError::NotFound("channel"))
}

/// `POST /channels` with `private: true`: any user; the caller is its first admin. Sends wait
/// for generation 1 (`rotation_required`).
pub async fn create_private(
    store: &Store,
    ctx: &AuthContext,
    name_enc: String,
) -> ServiceResult<Channel> {
    validate::ciphertext("name_enc", &name_enc, MAX_NAME_ENC)?;
    let now = Time::now();
    let row = ChannelRow {
        id: new_id(),
        name_enc,
        created_by: Some(ctx.user_id.clone()),
        created_at: now,
        kind: channel_kind::PRIVATE.to_owned(),
        key_generation: 0,
        rotation_required: true,
        direct_pair: None,
    };
    let member = MemberRow {
        channel_id: row.id.clone(),
        user_id: ctx.user_id.clone(),
        role: role::ADMIN.to_owned(),
        joined_generation: 0,
        joined_at: now,
        removed_at: None,
    };
    let created = row.clone();
    let cap = store.settings.caps.channels_per_user;
    let mut conn = store.pool.get().await?;
    conn.transaction(move |mut db| {
        async move {
            if let Err(refused) = within_channel_cap(&mut db, &member.user_id, cap).await? {
                return Ok(Err(refused));
            }
            db::channels::insert(&mut db, &row).await?;
            db::members::upsert(&mut db, &member).await?;
            Ok(Ok::<(), ServiceError>(()))
        }
        .boxed()
    })
    .await??;
    tracing::info!(channel_id = %created.id, "private channel created");
    Ok(super::channels::wire(created))
}

/// Whether `user_id` may create one more private or direct channel under `cap`
/// (`DIALTONE_MAX_CHANNELS_PER_USER`). Takes the user's row lock, so concurrent creations are
/// counted one after the other; a user gone meanwhile is refused.
async fn within_channel_cap(
    db: &mut Db<'_>,
    user_id: &str,
    cap: usize,
) -> DbResult<Result<(), ServiceError>> {
    if db::users::lock(db, user_id).await?.is_none() {
        return Ok(Err(ServiceError::Unauthorized));
    }
    let count = db::channels::count_created_by(db, user_id).await?;
    Ok(Caps::check(cap, count, label::CHANNELS_PER_USER))
}

/// `GET /channels/members`: for the channel's active members (and global admins, who moderate).
pub async fn list(
    store: &Store,
    ctx: &AuthContext,
    raw_channel_id: &str,
) -> ServiceResult<MembersResponse> {
    let channel_id = channel_id(raw_channel_id)?;
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    let channel = if ctx.is_admin {
        db::channels::find(&mut db, &channel_id)
            .await?
            .filter(ChannelRow::is_private)
            .ok_or(ServiceError::NotFound("channel"))?
    } else {
        membership(&mut db, ctx, &channel_id).await?.0
    };
    let members = db::members::list(&mut db, &channel_id).await?;
    let device_ids = db::members::active_device_ids(&mut db, &channel_id).await?;
    Ok(MembersResponse {
        channel_id,
        key_generation: channel.key_generation,
        rotation_required: channel.rotation_required,
        members: members.into_iter().map(wire_member).collect(),
        device_ids,
    })
}

/// What a membership change did, for the notice.
pub struct Changed {
    pub channel_id: String,
    pub user_id: String,
    pub role: String,
}

/// `POST /channels/members`: a channel admin adds a user (or re-adds a removed one, or changes a
/// member's role). The new member may be given the current generation and later ones.
pub async fn add(
    store: &Store,
    ctx: &AuthContext,
    req: AddMemberRequest,
) -> ServiceResult<Changed> {
    let channel_id = channel_id(&req.channel_id)?;
    let user_id = validate::id("user_id", &req.user_id)?;
    let new_role = match req.role.as_deref().map(str::trim) {
        None | Some(role::MEMBER) => role::MEMBER,
        Some(role::ADMIN) => role::ADMIN,
        Some(_) => return Err(ServiceError::invalid("role must be `admin` or `member`")),
    };
    let caller = ctx.clone();
    let mut conn = store.pool.get().await?;
    let changed = conn
        .transaction(move |mut db| {
            async move {
                let (channel, me) = match locked(&mut db, &caller, &channel_id).await? {
                    Ok(found) => found,
                    Err(e) => return Ok(Err(e)),
                };
                if me.role != role::ADMIN {
                    return Ok(Err(ServiceError::Forbidden(
                        "only a channel admin may add members",
                    )));
                }
                if channel.kind == channel_kind::DIRECT {
                    return Ok(Err(ServiceError::Forbidden(
                        "a direct channel has exactly its two members",
                    )));
                }
                match db::users::find(&mut db, &user_id).await? {
                    Some(u) if u.disabled_at.is_none() => {}
                    _ => return Ok(Err(ServiceError::NotFound("user"))),
                }
                let existing = db::members::active(&mut db, &channel_id, &user_id).await?;
                let row = MemberRow {
                    channel_id: channel_id.clone(),
                    user_id: user_id.clone(),
                    role: new_role.to_owned(),
                    joined_generation: existing
                        .as_ref()
                        .map_or(channel.key_generation, |m| m.joined_generation),
                    joined_at: existing.as_ref().map_or_else(Time::now, |m| m.joined_at),
                    removed_at: None,
                };
                db::members::upsert(&mut db, &row).await?;
                Ok(Ok(Changed {
                    channel_id,
                    user_id,
                    role: new_role.to_owned(),
                }))
            }
            .boxed()
        })
        .await??;
    tracing::info!(channel_id = %changed.channel_id, "channel member added");
    Ok(changed)
}

/// `DELETE /channels/members`: a channel admin removes a member, or a member leaves. The channel
/// then needs a new key generation before its next message.
pub async fn remove(
    store: &Store,
    ctx: &AuthContext,
    raw_channel_id: &str,
    raw_user_id: &str,
) -> ServiceResult<Changed> {
    let channel_id = channel_id(raw_channel_id)?;
    let user_id = validate::id("user_id", raw_user_id)?;
    let caller = ctx.clone();
    let mut conn = store.pool.get().await?;
    let changed = conn
        .transaction(move |mut db| {
            async move {
                let (channel, me) = match locked(&mut db, &caller, &channel_id).await? {
                    Ok(found) => found,
                    Err(e) => return Ok(Err(e)),
                };
                if user_id != caller.user_id && me.role != role::ADMIN {
                    return Ok(Err(ServiceError::Forbidden(
                        "only a channel admin may remove other members",
                    )));
                }
                if channel.kind == channel_kind::DIRECT {
                    return Ok(Err(ServiceError::Forbidden(
                        "a direct channel has exactly its two members",
                    )));
                }
                let Some(gone) = db::members::active(&mut db, &channel_id, &user_id).await? else {
                    return Ok(Err(ServiceError::NotFound("member")));
                };
                db::members::remove(&mut db, &channel_id, &user_id, Time::now()).await?;
                db::channels::require_rotation(&mut db, std::slice::from_ref(&channel_id)).await?;
                Ok(Ok(Changed {
                    channel_id,
                    user_id,
                    role: gone.role,
                }))
            }
            .boxed()
        })
        .await??;
    tracing::info!(channel_id = %changed.channel_id, "channel member removed");
    Ok(changed)
}

/// A revoked device still holds every generation it was given: each private channel its user is
/// in needs a new one. Runs in the transaction that deletes the device; returns those channels.
pub async fn device_revoked(db: &mut Db<'_>, user_id: &str) -> DbResult<Vec<ChannelRow>> {
    let ids = db::members::channels_of(db, user_id).await?;
    db::channels::require_rotation(db, &ids).await?;
    db::channels::find_many(db, &ids).await
}

/// A direct channel's key: the two user ids, sorted.
fn direct_pair(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}:{b}")
    } else {
        format!("{b}:{a}")
    }
}

/// `POST /channels/direct`: the caller's direct channel with another user, created on the first
/// open (both members admins, waiting for generation 1) and found again on the next. With its two
/// members' ids, as stored (the hub compares them with its sessions'), when it was created now.
pub async fn open_direct(
    store: &Store,
    ctx: &AuthContext,
    other: &str,
    name_enc: String,
) -> ServiceResult<(Channel, Option<Vec<String>>)> {
    let other = validate::id("user_id", other)?;
    if other == ctx.user_id {
        return Err(ServiceError::invalid(
            "a direct channel is with another user",
        ));
    }
    validate::ciphertext("name_enc", &name_enc, MAX_NAME_ENC)?;
    let pair = direct_pair(&ctx.user_id, &other);
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    if let Some(found) = db::channels::find_direct(&mut db, &pair).await? {
        return Ok((super::channels::wire(found), None));
    }
    match db::users::find(&mut db, &other).await? {
        Some(u) if u.disabled_at.is_none() => {}
        _ => return Err(ServiceError::NotFound("user")),
    }
    let now = Time::now();
    let row = ChannelRow {
        id: new_id(),
        name_enc,
        created_by: Some(ctx.user_id.clone()),
        created_at: now,
        kind: channel_kind::DIRECT.to_owned(),
        key_generation: 0,
        rotation_required: true,
        direct_pair: Some(pair.clone()),
    };
    let pair_ids = vec![ctx.user_id.clone(), other];
    let members: Vec<MemberRow> = pair_ids
        .iter()
        .cloned()
        .map(|user_id| MemberRow {
            channel_id: row.id.clone(),
            user_id,
            role: role::ADMIN.to_owned(),
            joined_generation: 0,
            joined_at: now,
            removed_at: None,
        })
        .collect();
    let created = row.clone();
    let cap = store.settings.caps.channels_per_user;
    let inserted = conn
        .transaction(move |mut db| {
            async move {
                let creator = row.created_by.as_deref().unwrap_or_default();
                if let Err(refused) = within_channel_cap(&mut db, creator, cap).await? {
                    return Ok(Err(refused));
                }
                db::channels::insert(&mut db, &row).await?;
                for m in &members {
                    db::members::upsert(&mut db, m).await?;
                }
                Ok(Ok::<(), ServiceError>(()))
            }
            .boxed()
        })
        .await;
    match inserted {
        Ok(result) => result?,
        // The other side opened it at the same moment: theirs is the channel.
        Err(e) if e.is_unique_violation() => {
            let found = db::channels::find_direct(&mut conn.db(), &pair)
                .await?
                .ok_or_else(|| ServiceError::Internal("direct channel vanished".into()))?;
            return Ok((super::channels::wire(found), None));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(channel_id = %created.id, "direct channel created");
    Ok((super::channels::wire(created), Some(pair_ids)))
}

/// Every private and direct channel with its active members (the hub's view, at start and on
/// each cluster repair).
pub async fn private_members(store: &Store) -> ServiceResult<Vec<(String, Vec<String>)>> {
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    let ids = db::channels::private_ids(&mut db).await?;
    let mut out: Vec<(String, Vec<String>)> = ids.into_iter().map(|id| (id, Vec::new())).collect();
    let index: std::collections::HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.clone(), i))
        .collect();
    for (channel_id, user_id) in db::members::all_active_pairs(&mut db).await? {
        if let Some(&i) = index.get(&channel_id) {
            out[i].1.push(user_id);
        }
    }
    Ok(out)
}
