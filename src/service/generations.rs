//! Key generations of private and direct channels (trust v2, docs/TRUST.md §6.3): rotation, and
//! the envelopes of each generation.
//!
//! - **Rotation** (`POST /channels/rotate`) posts generation n+1 wrapped for every active member
//!   device. It wins only from generation n (compare-and-swap under the channel's row lock: of
//!   two rotations exactly one commits, the other hears 409 `generation_conflict`), and only when
//!   its envelopes cover exactly the active member devices (else 409 `envelope_coverage` with
//!   `missing` and `extra`). Any active member may rotate; the generation's key never reaches a
//!   removed member or a revoked device, since neither is among the targets.
//! - **Sharing** a held generation (`POST /channels/keys` with `generation`) reaches a member's
//!   new device, or a new member: only active member devices, only generations from the one
//!   current when their user joined, only from a device that holds that generation.
//! - **Reading** (`GET /channels/keys`) is for active members; old generations stay readable to
//!   them.

use futures_util::FutureExt;

use super::auth::AuthContext;
use super::key_authority::{self, Refusal, Sealed, Write};
use super::{ServiceError, ServiceResult, Store, validate};
use crate::db::models::{ChannelRow, GenerationEnvelopeRow};
use crate::db::types::Time;
use crate::db::{self, Db};
use crate::protocol::members::{KeyRotated, RotateKeyRequest};
use crate::protocol::rest::{ChannelKeyEnvelope, ChannelKeysUpload, EnvelopeUpload};

/// Why a rotation was refused (HTTP 409; nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationRefused {
    /// The generation is not current + 1: another rotation won, or the client is behind.
    #[error("generation {current} is current: a rotation must post generation {next}", next = current + 1)]
    Generation { current: i64 },
    /// The envelopes do not cover exactly the active members' devices.
    #[error("a new generation must be wrapped for exactly the active members' devices")]
    Coverage {
        missing: Vec<String>,
        extra: Vec<String>,
    },
}

impl RotationRefused {
    pub fn code(&self) -> &'static str {
        match self {
            RotationRefused::Generation { .. } => "generation_conflict",
            RotationRefused::Coverage { .. } => "envelope_coverage",
        }
    }
}

fn wire(row: GenerationEnvelopeRow) -> ChannelKeyEnvelope {
    ChannelKeyEnvelope {
        channel_id: row.channel_id,
        device_id: row.device_id,
        sender_device_id: row.sender_device_id,
        sender_public_key: row.sender_public_key,
        envelope: row.envelope,
        created_at: row.created_at.wire(),
        generation: Some(row.generation),
    }
}

fn rows(
    channel_id: &str,
    generation: i64,
    ctx: &AuthContext,
    sender_key: &str,
    envelopes: Vec<EnvelopeUpload>,
) -> Vec<GenerationEnvelopeRow> {
    let now = Time::now();
    envelopes
        .into_iter()
        .map(|e| GenerationEnvelopeRow {
            channel_id: channel_id.to_owned(),
            generation,
            device_id: e.device_id.trim().to_owned(),
            sender_device_id: ctx.device_id.clone(),
            sender_public_key: sender_key.to_owned(),
            envelope: e.envelope,
            created_at: now,
        })
        .collect()
}

/// `POST /channels/rotate`.
pub async fn rotate(
    store: &Store,
    ctx: &AuthContext,
    req: RotateKeyRequest,
) -> ServiceResult<KeyRotated> {
    let channel_id = validate::id("channel_id", &req.channel_id)
        .map_err(|_| ServiceError::NotFound("channel"))?;
    let sender_key = super::keys::check_sender(store, ctx, &req.envelopes).await?;
    let generation = req.generation;
    let rows = rows(&channel_id, generation, ctx, &sender_key, req.envelopes);
    let caller = ctx.clone();
    let mut conn = store.pool.get().await?;
    let rotated = conn
        .transaction(move |mut db| {
            async move {
                let channel = match super::members::locked(&mut db, &caller, &channel_id).await? {
                    Ok((c, _)) => c,
                    Err(e) => return Ok(Err(e)),
                };
                if generation != channel.key_generation + 1 {
                    return Ok(Err(ServiceError::Rotation(RotationRefused::Generation {
                        current: channel.key_generation,
                    })));
                }
                let wanted = db::members::active_device_ids(&mut db, &channel_id).await?;
                let mut given: Vec<&str> = rows.iter().map(|r| r.device_id.as_str()).collect();
                given.sort_unstable();
                given.dedup();
                if given.len() != rows.len() {
                    return Ok(Err(ServiceError::invalid(
                        "one envelope per device: a device id is listed twice",
                    )));
                }
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|w| given.binary_search(&w.as_str()).is_err())
                    .cloned()
                    .collect();
                let extra: Vec<String> = given
                    .iter()
                    .filter(|g| !wanted.iter().any(|w| w == *g))
                    .map(|g| (*g).to_owned())
                    .collect();
                if !missing.is_empty() || !extra.is_empty() {
                    return Ok(Err(ServiceError::Rotation(RotationRefused::Coverage {
                        missing,
                        extra,
                    })));
                }
                db::members::upsert_envelopes(&mut db, &rows).await?;
                db::channels::set_generation(&mut db, &channel_id, generation).await?;
                Ok(Ok(KeyRotated {
                    channel_id,
                    generation,
                }))
            }
            .boxed()
        })
        .await??;
    tracing::info!(channel_id = %rotated.channel_id, generation = rotated.generation, "channel key rotated");
    Ok(rotated)
}

/// `GET /channels/keys` on a private channel: the caller device's envelope of `generation`
/// (default: the current one).
pub async fn envelope(
    store: &Store,
    ctx: &AuthContext,
    channel: &ChannelRow,
    generation: Option<i64>,
) -> ServiceResult<ChannelKeyEnvelope> {
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();
    db::members::active(&mut db, &channel.id, &ctx.user_id)
        .await?
        .ok_or(ServiceError::NotFound("channel"))?;
    let generation = generation.unwrap_or(channel.key_generation);
    db::members::envelope(&mut db, &channel.id, generation, &ctx.device_id)
        .await?
        .map(wire)
        .ok_or(ServiceError::NotFound("channel key envelope"))
}

/// `POST /channels/keys` on a private channel: share a held generation with active member
/// devices (all or nothing; a refusal names the devices).
pub async fn share(
    store: &Store,
    ctx: &AuthContext,
    channel_id: String,
    req: ChannelKeysUpload,
) -> ServiceResult<()> {
    let sender_key = super::keys::check_sender(store, ctx, &req.envelopes).await?;
    let requested = req.generation;
    if requested.is_some_and(|g| g < 1) {
        return Err(ServiceError::invalid("generation must be at least 1"));
    }
    let caller = ctx.clone();
    let envelopes = req.envelopes;
    let mut conn = store.pool.get().await?;
    conn.transaction(move |mut db| {
        async move {
            let channel = match super::members::locked(&mut db, &caller, &channel_id).await? {
                Ok((c, _)) => c,
                Err(e) => return Ok(Err(e)),
            };
            let generation = requested.unwrap_or(channel.key_generation);
            if generation < 1 || generation > channel.key_generation {
                return Ok(Err(ServiceError::invalid(
                    "no such key generation in this channel: rotate to create one",
                )));
            }
            let rows = rows(&channel_id, generation, &caller, &sender_key, envelopes);
            let all = rows.iter().map(|r| r.device_id.clone()).collect::<Vec<_>>();
            if !db::members::holds(&mut db, &channel_id, generation, &caller.device_id).await? {
                return Ok(Err(ServiceError::EnvelopeRefused {
                    reason: Refusal::NotKeyHolder,
                    device_ids: all,
                }));
            }
            let mut refused = Vec::new();
            for row in &rows {
                if !may_receive(&mut db, &channel_id, generation, &row.device_id).await? {
                    refused.push(row.device_id.clone());
                    continue;
                }
                let stored =
                    db::members::envelope(&mut db, &channel_id, generation, &row.device_id).await?;
                let stored = stored.as_ref().map(|s| Sealed {
                    sender_device_id: &s.sender_device_id,
                    sender_public_key: &s.sender_public_key,
                    envelope: &s.envelope,
                });
                let new = Sealed {
                    sender_device_id: &row.sender_device_id,
                    sender_public_key: &row.sender_public_key,
                    envelope: &row.envelope,
                };
                let write =
                    key_authority::judge(&mut db, &caller, &row.device_id, &new, stored.as_ref())
                        .await?;
                if write == Write::Conflict {
                    refused.push(row.device_id.clone());
                }
            }
            if !refused.is_empty() {
                return Ok(Err(ServiceError::EnvelopeRefused {
                    reason: Refusal::Conflict,
                    device_ids: refused,
                }));
            }
            db::members::upsert_envelopes(&mut db, &rows).await?;
            Ok(Ok(()))
        }
        .boxed()
    })
    .await??;
    tracing::debug!(device_id = %ctx.device_id, "private channel key envelopes stored");
    Ok(())
}

/// An active member's device, whose user joined at or before `generation`.
async fn may_receive(
    db: &mut Db<'_>,
    channel_id: &str,
    generation: i64,
    device_id: &str,
) -> db::DbResult<bool> {
    let Some(device) = db::devices::find(db, device_id).await? else {
        return Ok(false);
    };
    Ok(db::members::active(db, channel_id, &device.user_id)
        .await?
        .is_some_and(|m| m.joined_generation <= generation))
}

/// `DELETE /channels/keys` on a private channel: the caller device's envelopes of every
/// generation. `false` when there were none.
pub async fn delete_own(store: &Store, ctx: &AuthContext, channel_id: &str) -> ServiceResult<bool> {
    let mut conn = store.pool.get().await?;
    let n = db::members::delete_own(&mut conn.db(), channel_id, &ctx.device_id).await?;
    Ok(n > 0)
}
