//! Channels and message history. Public channels: admins write, every user reads. Private and
//! direct channels (trust v2, [`super::members`]): their members only, their channel admins
//! write.

use futures_util::FutureExt;

use super::auth::AuthContext;
use super::validate::{self, MAX_NAME_ENC};
use super::{ServiceError, ServiceResult, Store, new_id};
use crate::db;
use crate::db::messages::Cursor;
use crate::db::models::{ChannelRow, MessageRow};
use crate::db::types::Time;
use crate::protocol::rest::{Channel, ChannelMessage, MessagesResponse};

/// Default and largest page of `GET /channels/messages` and `sync`.
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 500;

pub fn wire(row: ChannelRow) -> Channel {
    let private = row.is_private();
    Channel {
        id: row.id,
        name_enc: row.name_enc,
        created_by: row.created_by.unwrap_or_default(),
        created_at: row.created_at.wire(),
        kind: private.then_some(row.kind),
        key_generation: private.then_some(row.key_generation),
        rotation_required: private.then_some(row.rotation_required),
    }
}

pub fn wire_message(row: MessageRow) -> ChannelMessage {
    ChannelMessage {
        id: row.id,
        channel_id: row.channel_id,
        sender_id: row.sender_id,
        sender_name_enc: row.sender_name_enc,
        body: row.body,
        sent_at: row.sent_at.wire(),
        client_message_id: row.client_message_id,
        seq: row.seq,
    }
}

fn require_admin(ctx: &AuthContext) -> ServiceResult<()> {
    if ctx.is_admin {
        Ok(())
    } else {
        Err(ServiceError::Forbidden("admin only"))
    }
}

/// `GET /channels`: every public channel and the caller's private and direct ones.
pub async fn list(store: &Store, ctx: &AuthContext) -> ServiceResult<Vec<Channel>> {
    let mut conn = store.pool.get().await?;
    Ok(db::channels::list_visible(&mut conn.db(), &ctx.user_id)
        .await?
        .into_iter()
        .map(wire)
        .collect())
}

/// Those of `ids` that exist (a cluster node announces channels it learned of by repair).
pub async fn by_ids(store: &Store, ids: Vec<String>) -> ServiceResult<Vec<Channel>> {
    let mut conn = store.pool.get().await?;
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        found.extend(
            db::channels::find_many(&mut conn.db(), chunk)
                .await?
                .into_iter()
                .map(wire),
        );
    }
    Ok(found)
}

/// Every channel id (the broker's registry at start).
pub async fn ids(store: &Store) -> ServiceResult<Vec<String>> {
    let mut conn = store.pool.get().await?;
    Ok(db::channels::list_ids(&mut conn.db()).await?)
}

/// Every channel's last committed `seq`.
pub async fn seqs(store: &Store) -> ServiceResult<Vec<(String, i64)>> {
    let mut conn = store.pool.get().await?;
    Ok(db::channels::list_seqs(&mut conn.db()).await?)
}

/// Up to `limit` committed messages of a channel after `after_seq`, ascending (the cluster's gap
/// fill). A channel that is gone has none.
pub async fn messages_after_seq(
    store: &Store,
    channel_id: &str,
    after_seq: i64,
    limit: i64,
) -> ServiceResult<Vec<MessageRow>> {
    let mut conn = store.pool.get().await?;
    let (rows, _) = db::messages::page(
        &mut conn.db(),
        channel_id,
        &Cursor::AfterSeq(after_seq),
        limit,
    )
    .await?;
    Ok(rows)
}

pub async fn create(
    store: &Store,
    ctx: &AuthContext,
    name_enc: String,
    private: bool,
) -> ServiceResult<Channel> {
    if private {
        return super::members::create_private(store, ctx, name_enc).await;
    }
    require_admin(ctx)?;
    validate::ciphertext("name_enc", &name_enc, MAX_NAME_ENC)?;
    let row = ChannelRow {
        id: new_id(),
        name_enc,
        created_by: Some(ctx.user_id.clone()),
        created_at: Time::now(),
        kind: db::models::channel_kind::PUBLIC.to_owned(),
        key_generation: 0,
        rotation_required: false,
        direct_pair: None,
    };
    let mut conn = store.pool.get().await?;
    db::channels::insert(&mut conn.db(), &row).await?;
    tracing::info!(channel_id = %row.id, "channel created");
    Ok(wire(row))
}

pub async fn rename(
    store: &Store,
    ctx: &AuthContext,
    channel_id: &str,
    name_enc: String,
) -> ServiceResult<Channel> {
    let channel_id = channel_id_or_404(channel_id)?;
    validate::ciphertext("name_enc", &name_enc, MAX_NAME_ENC)?;
    let mut conn = store.pool.get().await?;
    may_manage(&mut conn.db(), ctx, &channel_id, false).await?;
    db::channels::rename(&mut conn.db(), &channel_id, &name_enc)
        .await?
        .map(wire)
        .ok_or(ServiceError::NotFound("channel"))
}

/// A public channel is managed by global admins. A private one by its channel admins, and for
/// deletion also by global admins (moderation: they cannot read it, but may remove it). Anyone
/// else hears `forbidden` for a public channel and `channel not found` for a private one.
async fn may_manage(
    db: &mut db::Db<'_>,
    ctx: &AuthContext,
    channel_id: &str,
    deleting: bool,
) -> ServiceResult<()> {
    let Some(channel) = db::channels::find(db, channel_id).await? else {
        return Err(ServiceError::NotFound("channel"));
    };
    if !channel.is_private() {
        return require_admin(ctx);
    }
    match db::members::active(db, channel_id, &ctx.user_id).await? {
        Some(m) if m.role == crate::protocol::members::role::ADMIN => Ok(()),
        Some(_) => Err(ServiceError::Forbidden("channel admins only")),
        None if deleting && ctx.is_admin => Ok(()),
        None => Err(ServiceError::NotFound("channel")),
    }
}

pub async fn delete(store: &Store, ctx: &AuthContext, channel_id: &str) -> ServiceResult<String> {
    let channel_id = channel_id_or_404(channel_id)?;
    let mut conn = store.pool.get().await?;
    may_manage(&mut conn.db(), ctx, &channel_id, true).await?;
    let id = channel_id.clone();
    let deleted = conn
        .transaction(move |mut db| {
            async move { db::channels::delete(&mut db, &id).await.map(Ok::<_, ()>) }.boxed()
        })
        .await?;
    if !matches!(deleted, Ok(true)) {
        return Err(ServiceError::NotFound("channel"));
    }
    tracing::info!(channel_id = %channel_id, "channel deleted");
    Ok(channel_id)
}

/// An id that is not even a UUID cannot name a channel: 404 like any unknown channel.
fn channel_id_or_404(raw: &str) -> ServiceResult<String> {
    if raw.trim().is_empty() {
        return Err(ServiceError::invalid("channel_id is required"));
    }
    validate::id("channel_id", raw).map_err(|_| ServiceError::NotFound("channel"))
}

/// Which page of history: at most one cursor.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// [ext] Messages with a lower `seq`.
    pub before_seq: Option<i64>,
    /// [ext] Messages with a higher `seq`.
    pub after_seq: Option<i64>,
}

/// `GET /channels/messages` and `sync`: ascending order (time for message-id cursors, seq for
/// seq cursors: the same order for what one node committed).
pub async fn history(
    store: &Store,
    user_id: &str,
    channel_id: &str,
    page: PageRequest,
) -> ServiceResult<MessagesResponse> {
    let channel_id = channel_id_or_404(channel_id)?;
    let limit = match page.limit {
        None => DEFAULT_PAGE,
        Some(n) if n >= 1 => n.min(MAX_PAGE),
        Some(_) => return Err(ServiceError::invalid("limit must be a positive number")),
    };
    let given = [
        page.before.is_some(),
        page.after.is_some(),
        page.before_seq.is_some(),
        page.after_seq.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ServiceError::invalid(
            "use only one cursor: before, after, before_seq or after_seq",
        ));
    }
    for seq in [page.before_seq, page.after_seq].into_iter().flatten() {
        if seq < 0 {
            return Err(ServiceError::invalid(
                "before_seq and after_seq must not be negative",
            ));
        }
    }
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    super::members::visible(&mut db, user_id, &channel_id).await?;
    for cursor in [&page.before, &page.after].into_iter().flatten() {
        validate::storable("cursor", cursor)?;
    }
    let cursor = if let Some(id) = page.before {
        Cursor::BeforeSeq(cursor_seq(&mut db, &channel_id, &id).await?)
    } else if let Some(id) = page.after {
        Cursor::AfterSeq(cursor_seq(&mut db, &channel_id, &id).await?)
    } else if let Some(seq) = page.before_seq {
        Cursor::BeforeSeq(seq)
    } else if let Some(seq) = page.after_seq {
        Cursor::AfterSeq(seq)
    } else {
        Cursor::Latest
    };
    let (rows, has_more) = db::messages::page(&mut db, &channel_id, &cursor, limit).await?;
    Ok(MessagesResponse {
        channel_id,
        messages: rows.into_iter().map(wire_message).collect(),
        has_more,
    })
}

/// A v1 cursor (a message id) as the `seq` of its message.
async fn cursor_seq(db: &mut db::Db<'_>, channel_id: &str, message_id: &str) -> ServiceResult<i64> {
    db::messages::seq_of(db, channel_id, message_id.trim())
        .await?
        .ok_or_else(|| ServiceError::invalid("cursor message is not in this channel"))
}
