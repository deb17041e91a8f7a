//! Private and direct channels on the client (trust v2, docs/TRUST.md §6): sealing and opening
//! their texts under a generation's key, creating them, opening a direct channel, members.
//! Rotating and sharing generations is `generations`.
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
use crate::protocol::members::{MembersResponse, role};
use crate::protocol::rest::{Channel, ChannelMessage};

use super::generations::older_generation;
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
