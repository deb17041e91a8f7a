//! Private and direct channels on the client (trust v2, docs/TRUST.md §6): keys per generation,
//! rotation, members, and opening a direct channel.
//!
//! Every private channel's text (body, sender name, channel name) is sealed by
//! [`crate::client::trust::bound`] under one generation's key. A rotation wraps a fresh key for
//! exactly the active members' devices, and only for devices keys may go to
//! ([`Chat::trusted_device_keys`]): a member device that is not on its user's verified device
//! list blocks the rotation instead of receiving the key.

use crate::client::ClientError;
use crate::client::sealing::{self, Authenticity, ChatMessage};
use crate::client::trust::bound::{self, Binding, Kind};
use crate::crypto::e2e::{self, SymmetricKey};
use crate::protocol::members::{MembersResponse, RotateKeyRequest, role};
use crate::protocol::rest::{Channel, ChannelKeysUpload, ChannelMessage, DeviceKey};

use super::*;

/// The name a direct channel is created with (each side shows the other user instead).
const DIRECT_NAME: &str = "direct";

impl Chat {
    /// The key of one generation: held, or fetched from this device's envelope (signed by a
    /// device of its sender's verified list) and kept.
    pub async fn generation_key(
        &mut self,
        channel_id: &str,
        generation: i64,
    ) -> ChatResult<SymmetricKey> {
        if let Some(k) = self.store.generation_key(channel_id, generation) {
            return Ok(k.clone());
        }
        let Some(env) = self.rest.generation_key(channel_id, generation).await? else {
            return Err(ChatError::NoGenerationKey {
                channel: channel_id.to_owned(),
                generation,
            });
        };
        let what = format!("generation {generation} of channel {channel_id}'s key");
        let wrap = self
            .checked_wrap(channel_id, &env, generation, &what)
            .await?;
        let key =
            sealing::unwrap_envelope(self.store.device(), &env.sender_public_key, &wrap, &what)?;
        self.store
            .set_generation_key(channel_id, generation, key.clone());
        self.store.save()?;
        Ok(key)
    }

    /// Open a channel's sealed text: v2 values under their generation's key, their signature
    /// checked; v1 values under the channel key, unverified. With `sender_id` (a message), the
    /// signer must be that sender.
    pub(super) async fn open_channel_text(
        &mut self,
        channel_id: &str,
        kind: Kind,
        sender_id: Option<&str>,
        sealed: &str,
        what: &str,
    ) -> ChatResult<(String, Authenticity)> {
        if !bound::is_bound(sealed) {
            let key = self.channel_key(channel_id).await?;
            return Ok((
                sealing::open_text(&key, sealed, what)?,
                Authenticity::Unverified(sealing::V1_UNVERIFIED.into()),
            ));
        }
        let refused = |reason: String| ChatError::Decrypt {
            what: what.to_owned(),
            reason,
        };
        let parsed = bound::parse(sealed).map_err(|e| refused(e.to_string()))?;
        if let Some(sender) = sender_id
            && parsed.signer_user != sender
        {
            return Err(refused(format!(
                "signed by user {}, not by its sender {sender}: re-attributed, refused",
                parsed.signer_user
            )));
        }
        let key = self.generation_key(channel_id, parsed.generation).await?;
        let binding = Binding {
            kind,
            channel_id,
            generation: parsed.generation,
        };
        let text = parsed
            .open(&key, &binding)
            .map_err(|e| refused(e.to_string()))?;
        let authenticity = self.authenticate(&parsed, &binding, what).await?;
        Ok((text, authenticity))
    }

    /// Decrypt a stored message of any channel, with its sender's verified profile name when
    /// there is one.
    pub async fn open_stored(&mut self, m: &ChannelMessage) -> ChatResult<ChatMessage> {
        let opened = if bound::is_bound(&m.body) {
            let (text, authenticity) = self
                .open_channel_text(
                    &m.channel_id,
                    Kind::Body,
                    Some(&m.sender_id),
                    &m.body,
                    &format!("message {}", m.id),
                )
                .await?;
            let (sender_name, _) = self
                .open_channel_text(
                    &m.channel_id,
                    Kind::SenderName,
                    Some(&m.sender_id),
                    &m.sender_name_enc,
                    &format!("the sender name of message {}", m.id),
                )
                .await?;
            ChatMessage::of_stored(m, sender_name, text, authenticity)
        } else {
            let key = self.channel_key(&m.channel_id).await?;
            sealing::open_message(&key, m)?
        };
        Ok(self.with_verified_name(opened).await)
    }

    /// The channel as the server lists it to this user.
    pub async fn channel(&self, channel_id: &str) -> ChatResult<Channel> {
        self.rest
            .channels()
            .await?
            .into_iter()
            .find(|c| c.id == channel_id)
            .ok_or_else(|| ChatError::UnknownChannel {
                name: channel_id.to_owned(),
                hint: String::new(),
            })
    }

    /// `(body, sender_name_enc)` of a message for `channel`: v2 under the current generation for
    /// a private channel, v1 otherwise.
    pub(super) async fn seal_for(
        &mut self,
        channel: &Channel,
        text: &str,
    ) -> ChatResult<(String, String)> {
        let held = self.store.newest_generation(&channel.id);
        let Some(generation) = channel.key_generation.filter(|_| channel.kind.is_some()) else {
            if channel.kind.is_some() || held.is_some() {
                // Sealing v1 here would put this private channel's text under whatever v1 key
                // the server hands out.
                return Err(ChatError::Invalid(format!(
                    "the server lists private channel {} without its key generation (or as \
                     public): not sealing it under a v1 key, refused",
                    channel.id
                )));
            }
            let key = self.channel_key(&channel.id).await?;
            let sealed = sealing::seal_message(&key, &self.username, text);
            return Ok((sealed.body, sealed.sender_name_enc));
        };
        if let Some(newest) = held.filter(|&g| g > generation) {
            return Err(older_generation(&channel.id, generation, newest));
        }
        if channel.rotation_required == Some(true) || generation == 0 {
            return Err(ChatError::Refused {
                code: crate::protocol::ws::error_code::ROTATION_REQUIRED.into(),
                message: "this channel needs a new key generation first (a member or device left): run `members rotate`, or wait for a member's client to do it".into(),
                retry_after: None,
            });
        }
        let key = self.generation_key(&channel.id, generation).await?;
        let bind = |kind| Binding {
            kind,
            channel_id: &channel.id,
            generation,
        };
        let signer = self.signer();
        Ok((
            bound::seal(&key, &bind(Kind::Body), &signer, text),
            bound::seal(&key, &bind(Kind::SenderName), &signer, &self.username),
        ))
    }

    /// Create a private channel: this user its admin, generation 1 made here and wrapped for
    /// this user's devices.
    pub async fn create_private_channel(&mut self, name: &str) -> ChatResult<Channel> {
        let name = super::channels::check_name(name)?;
        let key = e2e::generate_key();
        let name_enc = self.seal_name(&key, None, 1, name);
        let channel = self.rest.create_channel_of(&name_enc, true).await?;
        let members = self.rest.members(&channel.id).await?;
        self.post_generation(&members, 1, key, Some(name)).await?;
        self.channel(&channel.id).await
    }

    /// Open the direct channel with another user: found again if it exists, else created with
    /// generation 1 for both users' devices. `true` when it was created now.
    pub async fn open_direct(&mut self, user_id: &str) -> ChatResult<(Channel, bool)> {
        let key = e2e::generate_key();
        // The id is not known before the channel exists: the name is bound to generation 1 of
        // an unnamed channel, and re-sealed once the id is known.
        let placeholder = self.seal_name(&key, None, 1, DIRECT_NAME);
        let channel = self.rest.open_direct(user_id, &placeholder).await?;
        if channel.key_generation.unwrap_or_default() > 0 {
            return Ok((channel, false));
        }
        let created = channel.name_enc == placeholder;
        // Generation 1 is still missing: post it from this side, whichever side created the
        // channel (both are its admins). The creator's placeholder name was sealed under a key
        // this side never had, so the name is sealed again under this generation. If the other
        // side posted it meanwhile, theirs stands.
        let members = self.rest.members(&channel.id).await?;
        match self
            .post_generation(&members, 1, key, Some(DIRECT_NAME))
            .await
        {
            Ok(()) => {}
            Err(ChatError::Client(ClientError::Api { code, .. }))
                if code == "generation_conflict" => {}
            Err(e) => return Err(e),
        }
        Ok((self.channel(&channel.id).await?, created))
    }

    /// Post the next generation of a private channel, wrapped for every active member device.
    /// Returns the new generation.
    pub async fn rotate_channel(&mut self, channel_id: &str) -> ChatResult<i64> {
        self.rotate_channel_without(channel_id, None).await
    }

    /// [`Chat::rotate_channel`], leaving out `removed`'s devices whatever the server still lists.
    async fn rotate_channel_without(
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

    fn is_channel_admin(&self, members: &MembersResponse) -> bool {
        members
            .members
            .iter()
            .any(|m| m.user_id == self.user_id && m.removed_at.is_none() && m.role == role::ADMIN)
    }

    /// Wrap `key` as generation `generation` for exactly the active member devices and post it;
    /// then, as a channel admin, re-seal the name under it (so members who join later can read
    /// it).
    async fn post_generation(
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

    /// The members of a private channel.
    pub async fn members(&self, channel_id: &str) -> ChatResult<MembersResponse> {
        Ok(self.rest.members(channel_id).await?)
    }

    /// Add a user (as a channel admin) and share the current generation with their devices.
    pub async fn add_member(
        &mut self,
        channel_id: &str,
        user_id: &str,
        admin: bool,
    ) -> ChatResult<ShareReport> {
        self.rest
            .add_member(
                channel_id,
                user_id,
                Some(if admin { role::ADMIN } else { role::MEMBER }),
            )
            .await?;
        self.share_generation(channel_id, None).await
    }

    /// Remove a member (or leave, with this user's own id). Someone who stays rotates the key at
    /// once, so the removed member cannot read what comes next; returns the new generation then.
    pub async fn remove_member(
        &mut self,
        channel_id: &str,
        user_id: &str,
    ) -> ChatResult<Option<i64>> {
        self.rest.remove_member(channel_id, user_id).await?;
        if user_id == self.user_id {
            return Ok(None);
        }
        Ok(Some(
            self.rotate_channel_without(channel_id, Some(user_id))
                .await?,
        ))
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
fn older_generation(channel_id: &str, announced: i64, newest: i64) -> ChatError {
    ChatError::Invalid(format!(
        "the server announces key generation {announced} of channel {channel_id}, but this \
         device already holds generation {newest}: rolled back, refused"
    ))
}

impl Chat {
    /// A private channel's name sealed under generation `generation`, signed by this device
    /// (`channel_id` `None` before the channel exists).
    pub(super) fn seal_name(
        &self,
        key: &[u8; 32],
        channel_id: Option<&str>,
        generation: i64,
        name: &str,
    ) -> String {
        bound::seal(
            key,
            &Binding {
                kind: Kind::ChannelName,
                channel_id: channel_id.unwrap_or_default(),
                generation,
            },
            &self.signer(),
            name,
        )
    }
}
