//! Who wrote what (trust v2, docs/TRUST.md §6.4): this device's signatures on what it seals,
//! and, on what it reads, the sender device's signature checked against the sender's verified
//! device list; display names from signed directory profiles rather than from the message.

use std::collections::HashMap;

use crate::client::sealing::{self, Authenticity};
use crate::client::trust::TrustError;
use crate::client::trust::authors::{Author, AuthorError};
use crate::client::trust::bound::{self, Binding, Parsed, Signer};
use crate::crypto::sign::{self, SignContext};
use crate::protocol::rest::{ChannelKeyEnvelope, EnvelopeUpload, Profile, ProfileSignature};

use super::*;

/// Profiles as last fetched, and the names that verified. Dropped per user when their profile
/// or device list changes, and whole when a user is not in the snapshot (a newer profile).
#[derive(Debug, Default)]
pub struct NameCache {
    profiles: Option<HashMap<String, Profile>>,
    names: HashMap<String, Option<String>>,
}

impl NameCache {
    pub fn forget(&mut self, user_id: &str) {
        self.names.remove(user_id);
        self.profiles = None;
    }
}

impl Chat {
    /// This device as a signer.
    pub(super) fn signer(&self) -> Signer<'_> {
        Signer {
            user_id: &self.user_id,
            device_id: &self.device_id,
            key: self.store.signing_key(),
        }
    }

    /// Forget what is cached of `user_id`'s devices and profile (a `device_list.updated` or
    /// `user.profile.updated` event).
    pub fn forget_author(&mut self, user_id: &str) {
        self.authors.forget(user_id);
        self.names.forget(user_id);
    }

    /// The signature of a decrypted v2 text, checked with the signer device's key as its user's
    /// verified list names it. A signature that fails, or a device never on a verified list, is
    /// an error like tampering; a signer that cannot be checked (no list, an identity change
    /// not accepted yet) makes the text unverified, with the reason.
    pub(super) async fn authenticate(
        &mut self,
        parsed: &Parsed<'_>,
        binding: &Binding<'_>,
        what: &str,
    ) -> ChatResult<Authenticity> {
        let refused = |reason: String| ChatError::Decrypt {
            what: what.to_owned(),
            reason,
        };
        let author = self
            .authors
            .device(
                &self.rest,
                &mut self.store,
                parsed.signer_user,
                parsed.signer_device,
            )
            .await;
        match author {
            Ok(Author::Listed(d)) => {
                parsed
                    .verify(binding, &d.signing_key)
                    .map_err(|e| refused(e.to_string()))?;
                Ok(Authenticity::Verified {
                    device_id: parsed.signer_device.to_owned(),
                })
            }
            Ok(Author::NoList) => Ok(Authenticity::Unverified(format!(
                "user {} has published no signed device list, so the signature cannot be checked: \
                 anyone in the channel could have written this",
                parsed.signer_user
            ))),
            Err(e @ AuthorError::NotListed { .. }) => Err(refused(e.to_string())),
            Err(AuthorError::Trust(TrustError::Client(e))) => Err(e.into()),
            Err(AuthorError::Trust(e)) => Ok(Authenticity::Unverified(e.to_string())),
        }
    }

    /// This device's signature over its profile `name_enc`.
    pub(super) fn sign_profile(&self, name_enc: &str) -> ProfileSignature {
        ProfileSignature {
            device_id: self.device_id.clone(),
            signature: self.store.signing_key().sign(
                SignContext::Profile,
                &bound::profile_bytes(&self.user_id, &self.device_id, name_enc),
            ),
        }
    }

    /// The display name `user_id`'s profile gives, when the profile is signed by a device of
    /// their verified list and opens under the directory key; `None` otherwise.
    pub async fn verified_name(&mut self, user_id: &str) -> Option<String> {
        if let Some(n) = self.names.names.get(user_id) {
            return n.clone();
        }
        let key = self.store.directory_key().cloned()?;
        if self
            .names
            .profiles
            .as_ref()
            .is_none_or(|p| !p.contains_key(user_id))
        {
            let fetched = self.rest.profiles().await.ok()?;
            self.names.profiles = Some(
                fetched
                    .into_iter()
                    .map(|p| (p.user_id.clone(), p))
                    .collect(),
            );
        }
        let profile = self
            .names
            .profiles
            .as_ref()
            .and_then(|p| p.get(user_id))
            .cloned();
        let name = match profile {
            Some(p) => self.check_profile(&key, &p).await,
            None => None,
        };
        self.names.names.insert(user_id.to_owned(), name.clone());
        name
    }

    async fn check_profile(&mut self, key: &[u8; 32], p: &Profile) -> Option<String> {
        let sig = p.signature.as_ref()?;
        let Ok(Author::Listed(d)) = self
            .authors
            .device(&self.rest, &mut self.store, &p.user_id, &sig.device_id)
            .await
        else {
            return None;
        };
        sign::verify(
            &d.signing_key,
            SignContext::Profile,
            &bound::profile_bytes(&p.user_id, &sig.device_id, &p.name_enc),
            &sig.signature,
        )
        .ok()?;
        sealing::open_text(key, &p.name_enc, "a profile").ok()
    }

    /// Show the sender's verified profile name instead of the one the message claims.
    pub(super) async fn with_verified_name(&mut self, mut m: ChatMessage) -> ChatMessage {
        if let Some(name) = self.verified_name(&m.sender_id).await {
            m.sender_name = name;
            m.name_verified = true;
        }
        m
    }

    /// Sign v2 envelopes of generation `generation` of `channel_id` (wraps made by this device).
    pub(super) fn sign_envelopes(
        &self,
        channel_id: &str,
        generation: i64,
        uploads: Vec<EnvelopeUpload>,
    ) -> Vec<EnvelopeUpload> {
        let signer = self.signer();
        uploads
            .into_iter()
            .map(|mut u| {
                let bytes = bound::envelope_bytes(
                    channel_id,
                    generation,
                    &u.device_id,
                    &u.sender_device_id,
                    &u.sender_public_key,
                    signer.user_id,
                    &u.envelope,
                );
                u.envelope = bound::signed_envelope(&signer, &u.envelope, &bytes);
                u
            })
            .collect()
    }

    /// Refuse to hand out a generation key signed by this device unless it is on its user's
    /// signed device list: every other member refuses envelopes from a user with no list
    /// ([`Chat::checked_wrap`]), so the key would reach nobody.
    pub(super) async fn require_own_list(&mut self) -> ChatResult<()> {
        let (user, device) = (self.user_id.clone(), self.device_id.clone());
        match self
            .authors
            .device(&self.rest, &mut self.store, &user, &device)
            .await
        {
            Ok(Author::Listed(_)) => Ok(()),
            Ok(Author::NoList) => Err(ChatError::Invalid(
                "this account has no signed device list: publish its identity first \
                 (`identity init`); other members refuse private-channel keys from a user \
                 without one"
                    .into(),
            )),
            Err(AuthorError::Trust(TrustError::Client(e))) => Err(e.into()),
            Err(e) => Err(ChatError::Invalid(format!(
                "this device cannot hand out private-channel keys: {e}"
            ))),
        }
    }

    /// The wrap inside the v2 envelope of `channel_id`'s generation `generation` addressed to
    /// this device, once its signature verifies — over the channel and generation asked for, not
    /// those the server's answer names — with the sender device's key, and the sender's X25519
    /// key is the one its verified list names.
    ///
    /// A sender with no signed device list is refused: taken on the server's word, any key the
    /// server wrapped (under a device of a list-less account of its own) would become the
    /// channel's. Every v2 client publishes a list with its account's first device (TRUST §2.5),
    /// and v1 clients cannot read v2 texts, so no client that can use the key is shut out.
    pub(super) async fn checked_wrap(
        &mut self,
        channel_id: &str,
        env: &ChannelKeyEnvelope,
        generation: i64,
        what: &str,
    ) -> ChatResult<String> {
        let refused = |reason: String| ChatError::Decrypt {
            what: what.to_owned(),
            reason,
        };
        if env.channel_id != channel_id
            || env.device_id != self.device_id
            || env.generation.is_some_and(|g| g != generation)
        {
            return Err(refused(format!(
                "the server answered with the envelope of channel {} generation {} for device \
                 {}: not the one asked for, refused",
                env.channel_id,
                env.generation
                    .map_or_else(|| "?".to_owned(), |g| g.to_string()),
                env.device_id
            )));
        }
        let (user, wrap, signature) = bound::parse_envelope(&env.envelope)
            .ok_or_else(|| refused("the envelope is not signed (a v2 envelope must be)".into()))?;
        let author = self
            .authors
            .device(&self.rest, &mut self.store, user, &env.sender_device_id)
            .await;
        match author {
            Ok(Author::Listed(d)) => {
                if d.public_key != env.sender_public_key {
                    return Err(refused(format!(
                        "the envelope names a key for device {} other than its signed device list: \
                         the server substituted it, refused",
                        env.sender_device_id
                    )));
                }
                let bytes = bound::envelope_bytes(
                    channel_id,
                    generation,
                    &self.device_id,
                    &env.sender_device_id,
                    &env.sender_public_key,
                    user,
                    wrap,
                );
                sign::verify(&d.signing_key, SignContext::Envelope, &bytes, signature).map_err(
                    |_| refused("the envelope's signature does not verify: forged, refused".into()),
                )?;
            }
            Ok(Author::NoList) => {
                return Err(refused(format!(
                    "signed by user {user}, who has no signed device list: a v2 envelope must \
                     come from a device on its sender's list, refused"
                )));
            }
            Err(AuthorError::Trust(TrustError::Client(e))) => return Err(e.into()),
            Err(e) => return Err(refused(e.to_string())),
        }
        Ok(wrap.to_owned())
    }

    /// A v1 envelope's sender (a public channel's or the directory key's, unsigned so that v1
    /// clients can read them): when the sender device's owner has a signed device list, the
    /// envelope's sender key must be the X25519 key that list names for the device, and the
    /// device must be on it. Owners with no list, or whose list cannot be checked, are taken on
    /// v1 terms (the server's word).
    pub(super) async fn check_v1_sender(
        &mut self,
        sender_device_id: &str,
        sender_public_key: &str,
        what: &str,
    ) -> ChatResult<()> {
        let substituted = || ChatError::Decrypt {
            what: what.to_owned(),
            reason: format!(
                "the envelope names a key for device {sender_device_id} other than its signed \
                 device list: the server substituted it, refused"
            ),
        };
        if sender_device_id == self.device_id {
            return if sender_public_key == self.store.device().public_key_b64() {
                Ok(())
            } else {
                Err(substituted())
            };
        }
        if !self.device_owners.contains_key(sender_device_id) {
            for d in self.rest.all_device_keys().await? {
                let owner = d.user_id.unwrap_or_else(|| self.user_id.clone());
                self.device_owners.insert(d.device_id, owner);
            }
        }
        let owner = self.device_owners.get(sender_device_id).cloned();
        // A sender device deleted since it wrapped the key: nothing to check it against.
        let Some(owner) = owner else {
            return Ok(());
        };
        match self
            .authors
            .device(&self.rest, &mut self.store, &owner, sender_device_id)
            .await
        {
            Ok(Author::Listed(d)) if d.public_key == sender_public_key => Ok(()),
            Ok(Author::Listed(_)) => Err(substituted()),
            Ok(Author::NoList) => Ok(()),
            Err(e @ AuthorError::NotListed { .. }) => Err(ChatError::Decrypt {
                what: what.to_owned(),
                reason: e.to_string(),
            }),
            Err(AuthorError::Trust(TrustError::Client(e))) => Err(e.into()),
            Err(AuthorError::Trust(_)) => Ok(()),
        }
    }
}
