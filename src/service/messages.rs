//! Persistence of channel messages (group commit) and broadcasts.

use std::collections::{BTreeMap, HashSet};

use futures_util::FutureExt;

use super::validate::{self, MAX_NAME_ENC};
use super::{ServiceError, ServiceResult, Store, new_id};
use crate::crypto::field::Column;
use crate::db;
use crate::db::models::{BroadcastRow, MessageRow};
use crate::db::types::{Json, Time};
use crate::protocol::ws::MAX_BODY_BYTES;

/// Outcome of one group commit.
#[derive(Debug, Default)]
pub struct Committed {
    /// Rows now durable, in commit order.
    pub rows: Vec<MessageRow>,
    /// Rows refused because their channel does not exist (any more).
    pub missing_channel: Vec<MessageRow>,
}

/// Commit a batch of channel messages in one transaction. Rows addressed to a channel that does not
/// exist are returned apart; the rest commit together or not at all.
pub async fn commit_batch(store: &Store, rows: Vec<MessageRow>) -> ServiceResult<Committed> {
    let mut conn = store.commit_pool.get().await?;
    let Ok(committed) = conn
        .transaction(move |mut db| {
            async move {
                let ids: Vec<&str> = rows
                    .iter()
                    .map(|r| r.channel_id.as_str())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                // Locks the channel rows until commit, so a concurrent delete cannot slip in
                // between this check and the insert.
                let existing: HashSet<String> = db::channels::existing_locked(&mut db, &ids)
                    .await?
                    .into_iter()
                    .collect();
                let (ok, missing): (Vec<_>, Vec<_>) = rows
                    .into_iter()
                    .partition(|r| existing.contains(&r.channel_id));
                db::messages::insert_batch(&mut db, &ok).await?;
                Ok(Ok::<_, std::convert::Infallible>(Committed {
                    rows: ok,
                    missing_channel: missing,
                }))
            }
            .boxed()
        })
        .await?;
    Ok(committed)
}

/// Validate the fields of a `channel.message.send`.
pub fn check_channel_message(
    body: &str,
    sender_name_enc: &str,
    client_message_id: Option<&str>,
) -> ServiceResult<()> {
    if body.is_empty() {
        return Err(ServiceError::invalid("body is required"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(ServiceError::invalid(format!(
            "body must be at most {MAX_BODY_BYTES} bytes"
        )));
    }
    validate::storable("body", body)?;
    validate::ciphertext("sender_name_enc", sender_name_enc, MAX_NAME_ENC)?;
    if let Some(id) = client_message_id {
        if id.len() > validate::MAX_CLIENT_MESSAGE_ID {
            return Err(ServiceError::invalid(format!(
                "client_message_id must be at most {} bytes",
                validate::MAX_CLIENT_MESSAGE_ID
            )));
        }
        validate::storable("client_message_id", id)?;
    }
    Ok(())
}

/// A broadcast as sent by a client.
#[derive(Debug, Clone)]
pub struct BroadcastRequest {
    pub sender_id: String,
    pub sender_device_id: String,
    pub body: String,
    pub sender_name_enc: String,
    pub public_key: String,
    pub key_envelopes: BTreeMap<String, String>,
}

/// A stored broadcast, in the clear fields the fan-out needs.
#[derive(Debug, Clone)]
pub struct StoredBroadcast {
    pub id: String,
    pub sender_id: String,
    pub sender_name_enc: String,
    pub sender_public_key: String,
    pub body: String,
    pub sent_at: Time,
    pub key_envelopes: BTreeMap<String, String>,
}

/// Persist a `message.broadcast` (sender name and key encrypted at rest).
pub async fn store_broadcast(
    store: &Store,
    req: BroadcastRequest,
) -> ServiceResult<StoredBroadcast> {
    check_channel_message(&req.body, &req.sender_name_enc, None)?;
    let public_key = validate::public_key(&req.public_key)?;
    if req.key_envelopes.is_empty() {
        return Err(ServiceError::invalid("key_envelopes must not be empty"));
    }
    for (device_id, env) in &req.key_envelopes {
        validate::storable("key_envelopes", device_id)?;
        validate::ciphertext("key_envelopes", env, validate::MAX_ENVELOPE)?;
    }
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    let device = db::devices::find(&mut db, &req.sender_device_id)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    if super::devices::open(store, &mut db, device)
        .await?
        .public_key
        != public_key
    {
        return Err(ServiceError::invalid("public_key is not this device's key"));
    }
    let id = new_id();
    let sent_at = Time::now();
    let envelopes_json = serde_json::to_string(&req.key_envelopes)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let row = BroadcastRow {
        sender_id: req.sender_id.clone(),
        sender_public_key: store.cipher().encrypt(
            Column::BroadcastSenderPublicKey,
            &id,
            &public_key,
        ),
        sender_name_enc: store.cipher().encrypt(
            Column::BroadcastSenderName,
            &id,
            &req.sender_name_enc,
        ),
        body: req.body.clone(),
        key_envelopes: Json(envelopes_json),
        sent_at,
        id: id.clone(),
    };
    db::broadcasts::insert(&mut db, &row).await?;
    Ok(StoredBroadcast {
        id,
        sender_id: req.sender_id,
        sender_name_enc: req.sender_name_enc,
        sender_public_key: public_key,
        body: req.body,
        sent_at,
        key_envelopes: req.key_envelopes,
    })
}
