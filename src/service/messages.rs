//! Persistence of channel messages (group commit, idempotent by `client_message_id`) and
//! broadcasts.

use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// Resends: rows not stored because their sender already has a message with that
    /// `client_message_id` (committed earlier, or earlier in this batch: the first of a batch is
    /// the original).
    pub duplicates: Vec<Duplicate>,
}

/// A resend, and the stored original it stands for (its echo is the original: same id, same
/// `sent_at`).
#[derive(Debug)]
pub struct Duplicate {
    /// The id the batch gave the resend (never stored).
    pub resent_id: String,
    pub original: MessageRow,
}

type ClientKey = (String, String);

fn client_key(row: &MessageRow) -> Option<ClientKey> {
    let id = row.client_message_id.as_ref()?;
    Some((row.sender_id.clone(), id.clone()))
}

/// Commit a batch of channel messages in one transaction. Rows addressed to a channel that does not
/// exist are returned apart; so are resends of a `(sender, client_message_id)` already stored,
/// with their originals. The rest commit together or not at all.
pub async fn commit_batch(store: &Store, rows: Vec<MessageRow>) -> ServiceResult<Committed> {
    let mut conn = store.commit_pool.get().await?;
    let committed = conn
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
                // A resend of a stored message, or of one earlier in this very statement, is
                // skipped by the insert (`ON CONFLICT DO NOTHING`), never an error.
                let inserted = db::messages::insert_batch(&mut db, &ok).await?;
                if inserted == ok.len() {
                    return Ok(Ok(Committed {
                        rows: ok,
                        missing_channel: missing,
                        duplicates: Vec::new(),
                    }));
                }
                // Some rows met the unique (sender_id, client_message_id) index: read back what
                // is stored under every key of the batch and tell new rows from resends.
                let keyed: Vec<ClientKey> = ok.iter().filter_map(client_key).collect();
                let senders: Vec<&str> = keyed
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                let client_ids: Vec<&str> = keyed.iter().map(|(_, c)| c.as_str()).collect();
                let stored: HashMap<ClientKey, MessageRow> =
                    db::messages::by_client_ids(&mut db, &senders, &client_ids)
                        .await?
                        .into_iter()
                        .filter_map(|r| Some((client_key(&r)?, r)))
                        .collect();
                let mut rows = Vec::with_capacity(ok.len());
                let mut duplicates = Vec::new();
                for row in ok {
                    let Some(key) = client_key(&row) else {
                        rows.push(row);
                        continue;
                    };
                    let Some(original) = stored.get(&key) else {
                        return Ok(Err(format!(
                            "message {} neither inserted nor found by its client_message_id",
                            row.id
                        )));
                    };
                    if original.id == row.id {
                        rows.push(row);
                    } else {
                        duplicates.push(Duplicate {
                            resent_id: row.id,
                            original: original.clone(),
                        });
                    }
                }
                if rows.len() != inserted {
                    return Ok(Err(format!(
                        "{inserted} messages inserted but {} found as new",
                        rows.len()
                    )));
                }
                Ok(Ok(Committed {
                    rows,
                    missing_channel: missing,
                    duplicates,
                }))
            }
            .boxed()
        })
        .await?;
    committed.map_err(ServiceError::Internal)
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
    // The cap on envelopes in one key upload bounds a broadcast's envelope table too (it is
    // stored, decoded and walked per recipient); so it also bounds the devices one broadcast
    // can reach. Refused as invalid, not throttled: resending the same frame never passes.
    let cap = store.settings.caps.envelopes_per_request;
    if cap > 0 && req.key_envelopes.len() > cap {
        return Err(ServiceError::Invalid(format!(
            "key_envelopes: {} envelopes, more than the {cap} one request may carry",
            req.key_envelopes.len()
        )));
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
