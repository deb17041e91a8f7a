//! Channel and directory keys: fetching this device's envelopes, sharing keys with other
//! devices (all-or-nothing uploads under the server's key authority), and directory profiles.

use crate::client::ClientError;
use crate::client::key_upload::{self, Target, Uploaded};
use crate::client::sealing::{self, SkippedDevice, Wrapped};
use crate::client::trust;
use crate::crypto::e2e::{self, SymmetricKey};
use crate::protocol::rest::{CreateInviteRequest, Device, DeviceKey, InviteResponse};

use super::*;

impl Chat {
    /// Fetch what this device lacks and can get (the directory key), and publish its profile
    /// name once it can. Cheap when nothing is missing.
    pub async fn refresh(&mut self) -> ChatResult<()> {
        if self.store.directory_key().is_none() {
            self.fetch_directory_key().await?;
        }
        self.publish_profile().await
    }

    pub(super) async fn fetch_directory_key(&mut self) -> ChatResult<bool> {
        let Some(env) = self.rest.directory_key().await? else {
            return Ok(false);
        };
        let what = "the directory key envelope";
        self.check_v1_sender(&env.sender_device_id, &env.sender_public_key, what)
            .await?;
        let key = sealing::unwrap_envelope(
            self.store.device(),
            &env.sender_public_key,
            &env.envelope,
            "the directory key envelope",
        )?;
        self.store.set_directory_key(key);
        self.store.save()?;
        Ok(true)
    }

    /// Publish this user's display name (its username) under the directory key, once.
    pub(super) async fn publish_profile(&mut self) -> ChatResult<()> {
        let published = self.store.profile().is_some_and(|p| p.profile_published);
        let Some(key) = self.store.directory_key().cloned() else {
            return Ok(());
        };
        if published {
            return Ok(());
        }
        let name_enc = sealing::seal_text(&key, &self.username);
        let signature = self.sign_profile(&name_enc);
        self.rest.set_profile(&name_enc, Some(signature)).await?;
        if let Some(p) = self.store.profile_mut() {
            p.profile_published = true;
        }
        self.store.save()?;
        Ok(())
    }

    /// Make sure this device holds the directory key. With `may_create`, and only when nobody
    /// can hold one yet (no envelope for this device and no published profile on the server),
    /// generate it and share it with every device.
    pub async fn ensure_directory_key(
        &mut self,
        may_create: bool,
    ) -> ChatResult<Option<ShareReport>> {
        if self.store.directory_key().is_some() || self.fetch_directory_key().await? {
            return Ok(None);
        }
        if !may_create || !self.rest.profiles().await?.is_empty() {
            return Err(ChatError::NoDirectoryKey);
        }
        self.store.set_directory_key(e2e::generate_key());
        self.store.save()?;
        let (devices, withheld) = self.trusted_device_keys(None).await?;
        let mut report = self.share_directory_key_with(&devices).await?;
        report.skip(&withheld);
        Ok(Some(report))
    }

    /// The key of `channel_id`: held, or fetched from this device's envelope and kept.
    pub async fn channel_key(&mut self, channel_id: &str) -> ChatResult<SymmetricKey> {
        self.try_channel_key(channel_id)
            .await?
            .ok_or_else(|| ChatError::NoChannelKey(channel_id.to_owned()))
    }

    /// [`Chat::channel_key`], `None` when no envelope exists for this device yet.
    pub async fn try_channel_key(&mut self, channel_id: &str) -> ChatResult<Option<SymmetricKey>> {
        if let Some(k) = self.store.channel_key(channel_id) {
            return Ok(Some(k.clone()));
        }
        if self.store.newest_generation(channel_id).is_some() {
            // This device knows the channel as private: a v1 key for it can only be one the
            // server made, and everything sealed under it would be the server's to read.
            return Err(ChatError::Decrypt {
                what: format!("a v1 key for channel {channel_id}"),
                reason: "this device holds the channel's key generations (it is private): a v1 \
                         text or key for it is the server's, refused"
                    .into(),
            });
        }
        // A private channel's envelopes are per generation (`generation_key`), never a v1 key.
        let Some(env) = self
            .rest
            .channel_key(channel_id)
            .await?
            .filter(|e| e.generation.is_none())
        else {
            return Ok(None);
        };
        let what = format!("the key envelope of channel {channel_id}");
        self.check_v1_sender(&env.sender_device_id, &env.sender_public_key, &what)
            .await?;
        let key = sealing::unwrap_envelope(
            self.store.device(),
            &env.sender_public_key,
            &env.envelope,
            &what,
        )?;
        self.store.set_channel_key(channel_id, key.clone());
        self.store.save()?;
        Ok(Some(key))
    }

    /// The devices keys may be wrapped for (trust v2, [`crate::client::trust::screen`]): every
    /// registered device of users without a signed device list, as v1 does; for the others only
    /// the devices of their verified list. `only`: screen just that device (and fetch just its
    /// user's lists), as `tail` does for each `device.joined`. Returns them and the withheld
    /// ones; new pins are kept.
    pub async fn trusted_device_keys(
        &mut self,
        only: Option<&str>,
    ) -> ChatResult<(Vec<DeviceKey>, Vec<SkippedDevice>)> {
        self.trusted_device_keys_where(|d| only.is_none_or(|o| d.device_id == o))
            .await
    }

    /// [`Chat::trusted_device_keys`] for the devices `keep` selects: only their users' lists are
    /// checked (a rotation screens the channel's members, not every user of the server).
    pub async fn trusted_device_keys_where(
        &mut self,
        keep: impl Fn(&DeviceKey) -> bool,
    ) -> ChatResult<(Vec<DeviceKey>, Vec<SkippedDevice>)> {
        let mut devices = self.rest.all_device_keys().await?;
        devices.retain(|d| keep(d));
        let screened = trust::screen::screen(&self.rest, &self.store, &self.user_id, devices).await;
        let mut changed = false;
        for pin in screened.pins {
            if self.store.pin(&pin.user_id) != Some(&pin) {
                self.store.set_pin(pin);
                changed = true;
            }
        }
        if changed {
            self.store.save()?;
        }
        Ok((screened.allowed, screened.skipped))
    }

    /// Wrap every held key (or only `channel_id`'s) for every device keys may go to (or only
    /// `device_id`; see [`Chat::trusted_device_keys`]), and upload. Missing keys are fetched first when this device can read them.
    pub async fn share_keys(
        &mut self,
        channel_id: Option<&str>,
        device_id: Option<&str>,
    ) -> ChatResult<ShareReport> {
        // Private channels' keys go per generation, to their members only.
        let mut private = Vec::new();
        match channel_id {
            Some(c) => {
                if self.channel(c).await?.kind.is_some() {
                    return self.share_generation(c, device_id).await;
                }
                self.channel_key(c).await?;
            }
            None => {
                // Pick up keys this device could read but never fetched, so it can pass them on.
                for c in self.rest.channels().await? {
                    if c.kind.is_some() {
                        private.push(c.id);
                    } else if self.store.channel_key(&c.id).is_none() {
                        let _ = self.try_channel_key(&c.id).await;
                    }
                }
                if self.store.directory_key().is_none() {
                    self.fetch_directory_key().await?;
                }
            }
        }
        let (mut devices, withheld) = self.trusted_device_keys(device_id).await?;
        devices.retain(|d| d.device_id != self.device_id);
        let mut report = self.share_with(channel_id, &devices).await?;
        report.skip(&withheld);
        for c in private {
            match self.share_generation(&c, device_id).await {
                Ok(r) => report.absorb(r),
                Err(e) => report.failed.push((KeyRef::Channel(c), e.to_string())),
            }
        }
        Ok(report)
    }

    /// Share held keys with exactly `devices` (as listed by `GET /devices/keys?all=1`):
    /// `channel_id`'s key, or every channel key and the directory key. Devices whose public key
    /// does not parse are skipped and reported; the others still get every key.
    pub async fn share_with(
        &mut self,
        channel_id: Option<&str>,
        devices: &[DeviceKey],
    ) -> ChatResult<ShareReport> {
        let channels = match channel_id {
            Some(c) => vec![c.to_owned()],
            None => self.store.channel_ids(),
        };
        let mut report = ShareReport::default();
        for channel in channels {
            let Some(key) = self.store.channel_key(&channel).cloned() else {
                report.failed.push((
                    KeyRef::Channel(channel.clone()),
                    "this device does not hold its key".into(),
                ));
                continue;
            };
            let wrapped = sealing::wrap_for_devices(self.store.device(), &key, devices);
            report.skip(&wrapped.skipped);
            match self.upload(Target::Channel(&channel), &wrapped).await {
                Ok(done) => report.record(KeyRef::Channel(channel), done),
                Err(e) if is_channel_missing(&e) => {
                    // Deleted meanwhile: its key protects nothing that can still be read.
                    self.store.remove_channel_key(&channel);
                    self.store.save()?;
                }
                Err(e) => report
                    .failed
                    .push((KeyRef::Channel(channel), e.to_string())),
            }
        }
        if channel_id.is_none() && self.store.directory_key().is_some() {
            report.absorb(self.share_directory_key_with(devices).await?);
        }
        Ok(report)
    }

    pub(super) async fn share_directory_key_with(
        &mut self,
        devices: &[DeviceKey],
    ) -> ChatResult<ShareReport> {
        let mut report = ShareReport::default();
        let Some(key) = self.store.directory_key().cloned() else {
            return Ok(report);
        };
        let wrapped = sealing::wrap_for_devices(self.store.device(), &key, devices);
        report.skip(&wrapped.skipped);
        if wrapped.envelopes.is_empty() {
            return Ok(report);
        }
        match self.upload(Target::Directory, &wrapped).await {
            Ok(done) => report.record(KeyRef::Directory, done),
            Err(e) => report.failed.push((KeyRef::Directory, e.to_string())),
        }
        Ok(report)
    }

    /// Upload one key's envelopes (see [`key_upload`]).
    pub(super) async fn upload(
        &self,
        target: Target<'_>,
        wrapped: &Wrapped,
    ) -> Result<Uploaded, ClientError> {
        key_upload::upload(
            &self.rest,
            target,
            self.store.device(),
            &self.device_id,
            wrapped,
        )
        .await
    }

    // ---- channels ----

    /// Every published profile: `(user_id, decrypted name)`.
    pub async fn profiles(&mut self) -> ChatResult<Vec<(String, Result<String, ChatError>)>> {
        if self.store.directory_key().is_none() {
            self.fetch_directory_key().await?;
        }
        let key = self.store.directory_key().cloned();
        let profiles = self.rest.profiles().await?;
        Ok(profiles
            .into_iter()
            .map(|p| {
                let name = match &key {
                    Some(k) => sealing::open_text(
                        k,
                        &p.name_enc,
                        &format!("the profile of user {}", p.user_id),
                    ),
                    None => Err(ChatError::NoDirectoryKey),
                };
                (p.user_id, name)
            })
            .collect())
    }

    /// This user's devices.
    pub async fn devices(&self) -> ChatResult<Vec<Device>> {
        Ok(self.rest.devices().await?)
    }

    /// Mint an invite (admins).
    pub async fn invite(&self, req: &CreateInviteRequest) -> ChatResult<InviteResponse> {
        Ok(self.rest.mint_invite(req).await?)
    }
}
