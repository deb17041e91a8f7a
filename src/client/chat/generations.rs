//! Key generations of private and direct channels on the client (trust v2, docs/TRUST.md
//! §6.3–6.4): rotating to the next one, sharing the current one, and the checks that keep a
//! hostile server from rolling a channel back or steering its key to devices of non-members.

use crate::client::ClientError;
use crate::client::sealing;
use crate::client::trust::bound::Kind;
use crate::crypto::e2e::{self, SymmetricKey};
use crate::protocol::members::{MembersResponse, RotateKeyRequest, role};
use crate::protocol::rest::{ChannelKeysUpload, DeviceKey};

use super::*;

impl Chat {
    /// Post the next generation of a private channel, wrapped for every active member device.
    /// Returns the new generation.
    pub async fn rotate_channel(&mut self, channel_id: &str) -> ChatResult<i64> {
        self.rotate_channel_without(channel_id, None).await
    }

    /// [`Chat::rotate_channel`], leaving out `removed`'s devices whatever the server still lists.
    pub(super) async fn rotate_channel_without(
        &mut self,
        channel_id: &str,
        removed: Option<&str>,
    ) -> ChatResult<i64> {
        let mut members = self.rest.members(channel_id).await?;
        if let Some(gone) = removed {
            members.members.retain(|m| m.user_id != gone);
        }
        let generation = members.key_generation + 1;
        if let Some(newest) = self
            .store
            .newest_generation(channel_id)
            .filter(|&g| g >= generation)
        {
            return Err(older_generation(channel_id, members.key_generation, newest));
        }
        let admin = self.is_channel_admin(&members);
        let name = match self.channel(channel_id).await {
            Ok(c) => self
                .open_channel_text(channel_id, Kind::ChannelName, None, &c.name_enc, "the name")
                .await
                .ok()
                .map(|(name, _)| name),
            Err(_) => None,
        };
        self.post_generation(
            &members,
            generation,
            e2e::generate_key(),
            name.as_deref().filter(|_| admin),
        )
        .await?;
        Ok(generation)
    }

    pub(super) fn is_channel_admin(&self, members: &MembersResponse) -> bool {
        members
            .members
            .iter()
            .any(|m| m.user_id == self.user_id && m.removed_at.is_none() && m.role == role::ADMIN)
    }

    /// Wrap `key` as generation `generation` for exactly the active member devices and post it;
    /// then, as a channel admin, re-seal the name under it (so members who join later can read
    /// it).
    pub(super) async fn post_generation(
        &mut self,
        members: &MembersResponse,
        generation: i64,
        key: SymmetricKey,
        rename_to: Option<&str>,
    ) -> ChatResult<()> {
        let channel_id = members.channel_id.as_str();
        self.require_own_list().await?;
        if self.store.generation_key(channel_id, generation).is_some() {
            // Replacing it would lose what was sealed under the held key.
            return Err(older_generation(channel_id, generation - 1, generation));
        }
        let me = self.user_id.clone();
        let (wanted, withheld) = self
            .trusted_device_keys_where(|d| is_member_device(members, &me, d))
            .await?;
        let blocked: Vec<String> = withheld
            .iter()
            .map(|s| format!("{} ({})", s.device_id, s.reason))
            .collect();
        if !blocked.is_empty() {
            return Err(ChatError::Invalid(format!(
                "cannot rotate the key of channel {channel_id}: these member devices may not get keys, so the new key would not reach them: {}. Verify or accept their users' identities first (`identity accept`, `verify`).",
                blocked.join(", ")
            )));
        }
        let wrapped = sealing::wrap_for_devices(self.store.device(), &key, &wanted);
        // Kept before the upload: until it is posted this is the only copy.
        self.store
            .set_generation_key(channel_id, generation, key.clone());
        self.store.save()?;
        let req = RotateKeyRequest {
            channel_id: channel_id.to_owned(),
            generation,
            envelopes: self.sign_envelopes(
                channel_id,
                generation,
                wrapped.uploads(self.store.device(), &self.device_id),
            ),
        };
        if let Err(e) = self.rest.rotate(&req).await {
            // Keeping it would split this device from the channel: another rotation won this
            // generation (409), or the upload failed. Had the server stored it after all, this
            // device's own envelope brings it back.
            self.store.forget_generation_key(channel_id, generation);
            self.store.save()?;
            return Err(e.into());
        }
        if let Some(name) = rename_to {
            self.rest
                .rename_channel(
                    channel_id,
                    &self.seal_name(&key, Some(channel_id), generation, name),
                )
                .await?;
        }
        Ok(())
    }

    /// As a channel admin, post the next generation if the channel waits for one (a member or a
    /// member's device left). `None` when there was nothing to do, this user is not a channel
    /// admin, the channel is public, or another member rotated first.
    pub async fn rotate_if_required(&mut self, channel_id: &str) -> ChatResult<Option<i64>> {
        let members = match self.rest.members(channel_id).await {
            Ok(m) => m,
            Err(ClientError::Api { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !members.rotation_required || !self.is_channel_admin(&members) {
            return Ok(None);
        }
        if self
            .store
            .newest_generation(channel_id)
            .is_some_and(|g| g > members.key_generation)
        {
            // This device's own rotation (a `remove_member` beside a running `tail`) is being
            // posted: rotating again would only be refused as a rollback.
            return Ok(None);
        }
        match self.rotate_channel(channel_id).await {
            Ok(g) => Ok(Some(g)),
            Err(ChatError::Client(ClientError::Api { code, .. }))
                if code == "generation_conflict" =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Share the current generation with active member devices that lack it (a new member, a
    /// member's new device), or only with `device_id`.
    pub async fn share_generation(
        &mut self,
        channel_id: &str,
        device_id: Option<&str>,
    ) -> ChatResult<ShareReport> {
        let members = self.rest.members(channel_id).await?;
        let generation = members.key_generation;
        let mut report = ShareReport::default();
        if generation == 0 {
            return Ok(report);
        }
        let key = self.generation_key(channel_id, generation).await?;
        self.require_own_list().await?;
        let (me, my_device) = (self.user_id.clone(), self.device_id.clone());
        let (devices, withheld) = self
            .trusted_device_keys_where(|d| {
                d.device_id != my_device
                    && is_member_device(&members, &me, d)
                    && device_id.is_none_or(|o| d.device_id == o)
            })
            .await?;
        report.skip(&withheld);
        if devices.is_empty() {
            return Ok(report);
        }
        let wrapped = sealing::wrap_for_devices(self.store.device(), &key, &devices);
        report.skip(&wrapped.skipped);
        let upload = ChannelKeysUpload {
            channel_id: channel_id.to_owned(),
            envelopes: self.sign_envelopes(
                channel_id,
                generation,
                wrapped.uploads(self.store.device(), &self.device_id),
            ),
            generation: Some(generation),
        };
        if upload.envelopes.is_empty() {
            return Ok(report);
        }
        let n = upload.envelopes.len();
        match self.rest.upload_channel_keys(&upload).await {
            Ok(()) => report
                .shared
                .push((KeyRef::Channel(channel_id.to_owned()), n)),
            Err(ClientError::EnvelopeRefused { device_ids, .. }) => report
                .held
                .push((KeyRef::Channel(channel_id.to_owned()), device_ids)),
            Err(e) => report
                .failed
                .push((KeyRef::Channel(channel_id.to_owned()), e.to_string())),
        }
        Ok(report)
    }
}

/// A device a generation may be wrapped for: listed for the channel, and owned by one of its
/// active members (`me` owns this user's devices, listed without a user id). `device_ids` alone is
/// the server's word; the member list at least ties each device to a user it names as a member
/// (TRUST §4 says what remains).
fn is_member_device(members: &MembersResponse, me: &str, d: &DeviceKey) -> bool {
    let owner = d.user_id.as_deref().unwrap_or(me);
    members.device_ids.contains(&d.device_id)
        && members
            .members
            .iter()
            .any(|m| m.user_id == owner && m.removed_at.is_none())
}

/// The server announced `announced` for a channel of which this device holds `newest`: a removed
/// member may hold the older one, so nothing is sealed or rotated from it.
pub(super) fn older_generation(channel_id: &str, announced: i64, newest: i64) -> ChatError {
    ChatError::Invalid(format!(
        "the server announces key generation {announced} of channel {channel_id}, but this \
         device already holds generation {newest}: rolled back, refused"
    ))
}
