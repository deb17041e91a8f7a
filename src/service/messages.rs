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
use crate::protocol::members::body_generation;
use crate::protocol::ws::{MAX_BODY_BYTES, error_code};

/// Outcome of one group commit.
#[derive(Debug, Default)]
pub struct Committed {
    /// Rows now durable, in commit order.
    pub rows: Vec<MessageRow>,
    /// Rows refused because their channel does not exist (any more), or is private and their
    /// sender not an active member (told the same, so membership does not leak).
    pub missing_channel: Vec<MessageRow>,
    /// Rows a private channel refused, with the WebSocket error code: `rotation_required` (a
    /// member or device left and no new generation is posted yet) or `stale_key_generation`
    /// (the body is not sealed under the current generation).
    pub refused: Vec<(MessageRow, &'static str)>,
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

/// How often a batch is retried when its insert meets rows it did not expect (resends): the
/// second attempt sets resends apart first, a third only runs if a resend committed concurrently
/// (another connection, another node) between that check and the insert.
const COMMIT_ATTEMPTS: usize = 3;

/// Commit a batch of channel messages in one transaction. Rows addressed to a channel that does not
/// exist are returned apart; so are resends of a `(sender, client_message_id)` already stored,
/// with their originals. The rest commit together or not at all, numbered inside the transaction
/// with their channel's next sequence numbers, in batch order.
///
/// The first attempt assumes there are no resends (no extra read). A resend makes its insert skip
/// a row, and a skipped row would leave a hole in the seqs it reserved, so that attempt rolls back
/// and the next one reads the stored originals before numbering.
pub async fn commit_batch(store: &Store, rows: Vec<MessageRow>) -> ServiceResult<Committed> {
    let mut conn = store.commit_pool.get().await?;
    let mut rows = rows;
    for attempt in 0..COMMIT_ATTEMPTS {
        let check_resends = attempt > 0;
        match conn
            .transaction(move |db| commit_attempt(db, rows, check_resends).boxed())
            .await?
        {
            Ok(committed) => return Ok(committed),
            Err(Retry::Resends(back)) => rows = back,
            Err(Retry::Fail(message)) => return Err(ServiceError::Internal(message)),
        }
    }
    Err(ServiceError::Internal(format!(
        "group commit still met unexpected rows after {COMMIT_ATTEMPTS} attempts"
    )))
}

/// What a group commit of unknown outcome turned out to have done.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Stored (as the database has them, seq included), in seq order.
    pub stored: Vec<MessageRow>,
    /// Not stored.
    pub absent: Vec<MessageRow>,
}

/// Settle a group commit that failed without the database saying no: its connection broke or
/// it took too long, maybe after `COMMIT` had been sent, so it may have committed. That
/// transaction holds its channels' counter locks until it has committed or rolled back, and on
/// PostgreSQL its backend finishes even after its client went away; taking the same locks is the
/// fence, and the read behind it sees the final outcome.
pub async fn resolve_batch(store: &Store, rows: Vec<MessageRow>) -> ServiceResult<Resolved> {
    let mut conn = store.pool.get().await?;
    let channel_ids: Vec<String> = rows
        .iter()
        .map(|r| r.channel_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut stored = conn
        .transaction(move |mut db| {
            async move {
                let channels: Vec<&str> = channel_ids.iter().map(String::as_str).collect();
                db::channels::lock_counters(&mut db, &channels).await?;
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let stored = db::messages::by_ids(&mut db, &ids).await?;
                Ok(Ok::<_, ServiceError>(stored))
            }
            .boxed()
        })
        .await??;
    stored.sort_by_key(|r| r.seq);
    let found: HashSet<&str> = stored.iter().map(|r| r.id.as_str()).collect();
    let absent = rows
        .into_iter()
        .filter(|r| !found.contains(r.id.as_str()))
        .collect();
    Ok(Resolved { stored, absent })
}

/// Why an attempt rolled back without a database error.
enum Retry {
    /// The insert skipped rows (resends): try again, with the rows handed back in batch order.
    Resends(Vec<MessageRow>),
    Fail(String),
}

/// What a row of the batch turned out to be.
#[derive(Clone, Copy)]
enum Kind {
    New,
    MissingChannel,
    /// Refused by its private channel (the error code).
    Refused(&'static str),
    /// A resend of a stored message (`None`) or of the row at this index of the batch.
    Resend(Option<usize>),
}

async fn commit_attempt(
    mut db: db::Db<'_>,
    mut rows: Vec<MessageRow>,
    check_resends: bool,
) -> db::DbResult<Result<Committed, Retry>> {
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r.channel_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // Locks the counters (ascending channel id) until commit: a concurrent delete cannot slip in
    // between this check and the insert, and no other commit numbers rows in these channels.
    let locked: HashMap<String, db::channels::Locked> = db::channels::lock_counters(&mut db, &ids)
        .await?
        .into_iter()
        .map(|l| (l.id.clone(), l))
        .collect();
    // Membership is read under the channel locks: a removal commits before this batch (and is
    // seen) or after it (and the message was sent while its sender was in).
    let private: Vec<String> = locked
        .values()
        .filter(|l| l.is_private())
        .map(|l| l.id.clone())
        .collect();
    let members: HashSet<(String, String)> = if private.is_empty() {
        HashSet::new()
    } else {
        db::members::active_pairs(&mut db, &private)
            .await?
            .into_iter()
            .collect()
    };
    let mut kinds: Vec<Kind> = rows
        .iter()
        .map(|r| match locked.get(&r.channel_id) {
            None => Kind::MissingChannel,
            Some(l) if !l.is_private() => Kind::New,
            Some(l) => private_send(l, r, &members),
        })
        .collect();
    let mut stored: HashMap<ClientKey, MessageRow> = HashMap::new();
    if check_resends {
        stored = stored_originals(&mut db, &rows, &kinds).await?;
        // The first of a batch with a key is the original of the others.
        let mut first: HashMap<ClientKey, usize> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let Some(key) = client_key(row).filter(|_| matches!(kinds[i], Kind::New)) else {
                continue;
            };
            if stored.contains_key(&key) {
                kinds[i] = Kind::Resend(None);
            } else if let Some(&j) = first.get(&key) {
                kinds[i] = Kind::Resend(Some(j));
            } else {
                first.insert(key, i);
            }
        }
    }
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (row, kind) in rows.iter().zip(&kinds) {
        if matches!(kind, Kind::New) {
            *counts.entry(row.channel_id.clone()).or_default() += 1;
        }
    }
    let last = db::channels::bump_counters(&mut db, &counts).await?;
    let mut next: HashMap<&str, i64> = HashMap::with_capacity(counts.len());
    for (channel, n) in &counts {
        let Some(last) = last.get(channel) else {
            return Ok(Err(Retry::Fail(format!(
                "channel {channel} locked but its counter not bumped"
            ))));
        };
        next.insert(channel.as_str(), last - n + 1);
    }
    let mut new = 0;
    for (row, kind) in rows.iter_mut().zip(&kinds) {
        if let (Kind::New, Some(seq)) = (kind, next.get_mut(row.channel_id.as_str())) {
            row.seq = *seq;
            *seq += 1;
            new += 1;
        }
    }
    // A resend skipped here (`ON CONFLICT DO NOTHING`) is never an error: it rolls back this
    // attempt and the next one sets it apart before numbering.
    let inserted = if new == rows.len() {
        db::messages::insert_batch(&mut db, &rows).await?
    } else {
        let fresh: Vec<MessageRow> = rows
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| matches!(k, Kind::New))
            .map(|(r, _)| r.clone())
            .collect();
        db::messages::insert_batch(&mut db, &fresh).await?
    };
    if inserted != new {
        return Ok(Err(Retry::Resends(rows)));
    }
    let originals: Vec<Option<MessageRow>> = kinds
        .iter()
        .map(|k| match k {
            Kind::Resend(Some(j)) => Some(rows[*j].clone()),
            _ => None,
        })
        .collect();
    let mut out = Committed::default();
    for ((row, kind), original) in rows.into_iter().zip(kinds).zip(originals) {
        match kind {
            Kind::New => out.rows.push(row),
            Kind::MissingChannel => out.missing_channel.push(row),
            Kind::Refused(code) => out.refused.push((row, code)),
            Kind::Resend(_) => {
                let original = match original {
                    Some(o) => o,
                    None => match client_key(&row).and_then(|k| stored.get(&k)) {
                        Some(o) => o.clone(),
                        None => {
                            return Ok(Err(Retry::Fail(format!(
                                "message {} neither new nor found by its client_message_id",
                                row.id
                            ))));
                        }
                    },
                };
                out.duplicates.push(Duplicate {
                    resent_id: row.id,
                    original,
                });
            }
        }
    }
    Ok(Ok(out))
}

/// Whether a message may enter its private channel: its sender is an active member, no rotation
/// is pending, and its body is sealed under the current generation (a removed member may hold an
/// older one).
fn private_send(
    channel: &db::channels::Locked,
    row: &MessageRow,
    members: &HashSet<(String, String)>,
) -> Kind {
    if !members.contains(&(row.channel_id.clone(), row.sender_id.clone())) {
        return Kind::MissingChannel;
    }
    if channel.rotation_required || channel.key_generation == 0 {
        return Kind::Refused(error_code::ROTATION_REQUIRED);
    }
    if body_generation(&row.body) != Some(channel.key_generation) {
        return Kind::Refused(error_code::STALE_KEY_GENERATION);
    }
    Kind::New
}

/// What is stored under the `(sender, client_message_id)` of the batch's rows into existing
/// channels (a superset is read; exact pairs are kept).
async fn stored_originals(
    db: &mut db::Db<'_>,
    rows: &[MessageRow],
    kinds: &[Kind],
) -> db::DbResult<HashMap<ClientKey, MessageRow>> {
    let keyed: Vec<ClientKey> = rows
        .iter()
        .zip(kinds)
        .filter(|(_, k)| matches!(k, Kind::New))
        .filter_map(|(r, _)| client_key(r))
        .collect();
    if keyed.is_empty() {
        return Ok(HashMap::new());
    }
    let senders: Vec<&str> = keyed
        .iter()
        .map(|(s, _)| s.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let client_ids: Vec<&str> = keyed.iter().map(|(_, c)| c.as_str()).collect();
    let wanted: HashSet<&ClientKey> = keyed.iter().collect();
    Ok(db::messages::by_client_ids(db, &senders, &client_ids)
        .await?
        .into_iter()
        .filter_map(|r| Some((client_key(&r)?, r)))
        .filter(|(k, _)| wanted.contains(k))
        .collect())
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

/// A stored broadcast, in the clear fields the fan-out needs (and the cluster bus carries).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
