//! Key authority: who may write which channel or directory key envelope (README "Key authority").
//!
//! An envelope hands a device the key that reads a channel (or every profile name). Letting
//! anyone write one lets a member plant a key of their own for someone else's device and split
//! the channel, so a write needs authority, and a refusal is always reported (409 with the device
//! ids), never skipped with a 201:
//!
//! 1. **Who may write at all.** The caller's device must already hold the key: an envelope of the
//!    channel (or of the directory) is addressed to it, or it wrapped one for somebody (it could
//!    only do that holding the key). A global admin may always write. The first envelopes of a
//!    channel that has none come from its creator (any of the creator's devices) or an admin.
//!    Otherwise the whole upload is refused: 409 `not_key_holder`.
//! 2. **Which targets.** A target without an envelope gets the new one. A target whose stored
//!    envelope is byte-identical (same envelope, sender device and sender key) is left as it is
//!    and counts as accepted: a retry, or a v1 client re-sharing, is idempotent. A stored envelope
//!    is replaced only when it is addressed to the caller's own device, was sent by one of the
//!    caller's user's devices (a rotation by its own author), was sent by a device that no longer
//!    exists, or the caller is an admin. Any other target is a conflict: 409
//!    `envelope_conflict` listing those device ids.
//! 3. **All or nothing.** A refusal writes nothing, so the client can drop the listed devices
//!    and retry cleanly.

use super::auth::AuthContext;
use crate::db::{self, DbResult};

/// Why an upload was refused (HTTP 409, `code` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller's device holds no envelope of this key and may not bootstrap it.
    #[error("this device does not hold the key, so it may not wrap it for others")]
    NotKeyHolder,
    /// The listed targets already hold a different envelope that the caller may not replace.
    #[error("these devices already hold a different envelope")]
    Conflict,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotKeyHolder => "not_key_holder",
            Refusal::Conflict => "envelope_conflict",
        }
    }
}

/// What an accepted upload does to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// No envelope yet: insert (a concurrent insert that wins first is a conflict).
    Insert,
    /// Overwrite the stored envelope.
    Replace,
    /// The stored envelope is byte-identical: nothing to do.
    Unchanged,
    /// Refused: listed in the 409.
    Conflict,
}

/// The parts of a stored or uploaded envelope that decide [`Write`].
pub struct Sealed<'a> {
    pub sender_device_id: &'a str,
    pub sender_public_key: &'a str,
    pub envelope: &'a str,
}

/// Rule 2 for one target (`target` is its device id).
pub async fn judge(
    db: &mut db::Db<'_>,
    ctx: &AuthContext,
    target: &str,
    new: &Sealed<'_>,
    stored: Option<&Sealed<'_>>,
) -> DbResult<Write> {
    let Some(stored) = stored else {
        return Ok(Write::Insert);
    };
    if stored.envelope == new.envelope
        && stored.sender_device_id == new.sender_device_id
        && stored.sender_public_key == new.sender_public_key
    {
        return Ok(Write::Unchanged);
    }
    if target == ctx.device_id || ctx.is_admin {
        return Ok(Write::Replace);
    }
    Ok(
        match db::devices::find(db, stored.sender_device_id).await? {
            None => Write::Replace,
            Some(sender) if sender.user_id == ctx.user_id => Write::Replace,
            Some(_) => Write::Conflict,
        },
    )
}

/// Rule 1 for a channel (`created_by` is the channel's creator, `None` for v1 channels).
pub async fn may_write_channel(
    db: &mut db::Db<'_>,
    ctx: &AuthContext,
    channel_id: &str,
    created_by: Option<&str>,
) -> DbResult<bool> {
    if ctx.is_admin || db::keys::holds_channel_key(db, channel_id, &ctx.device_id).await? {
        return Ok(true);
    }
    Ok(created_by == Some(ctx.user_id.as_str())
        && !db::keys::channel_has_envelopes(db, channel_id).await?)
}

/// Rule 1 for the directory key. Its first envelopes come from an admin: the first user, who is
/// one, creates it at registration.
pub async fn may_write_directory(db: &mut db::Db<'_>, ctx: &AuthContext) -> DbResult<bool> {
    Ok(ctx.is_admin || db::keys::holds_directory_key(db, &ctx.device_id).await?)
}
