//! Writing a key store back: the sealed file is replaced atomically, after merging in what
//! another process (a `tail` sharing the profile) saved since this one loaded it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::file::{
    Contents, FORMAT, FileFormat, VERSION, decode_key, read_file, unseal, write_atomically,
};
use super::{KeyStore, KeyStoreError, KeyStoreResult, generation_entry};
use crate::crypto::e2e;
use crate::crypto::sign::SigningKeyPair;

impl KeyStore {
    /// Write the store back, atomically, mode 0600.
    ///
    /// If another process saved the same store since it was loaded, its changes are merged first
    /// rather than lost: channel keys it learned are kept (except ones this process removed), its
    /// directory key is taken if this process has none, and its profile (e.g. a fresh token from a
    /// `login`) wins unless this process changed the profile itself. A file re-created under
    /// another salt or passphrase is never overwritten.
    pub fn save(&mut self) -> KeyStoreResult<()> {
        if self.path.exists() {
            self.merge_from_disk()?;
        }
        let contents = Contents {
            profile: self.profile.clone(),
            device_secret: STANDARD.encode(*self.device.secret_bytes()),
            channel_keys: self
                .channel_keys
                .iter()
                .map(|(c, k)| (c.clone(), STANDARD.encode(k.as_slice())))
                .collect(),
            directory_key: self
                .directory_key
                .as_ref()
                .map(|k| STANDARD.encode(k.as_slice())),
            signing_secret: Some(self.signing.seed_b64()),
            identity_secret: self.identity.as_ref().map(SigningKeyPair::seed_b64),
            pins: self.pins.clone(),
            generation_keys: self
                .generation_keys
                .iter()
                .map(|((c, g), k)| (format!("{c}/{g}"), STANDARD.encode(k.as_slice())))
                .collect(),
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&contents)
                .map_err(|e| KeyStoreError::Invalid(format!("key store encoding: {e}")))?,
        );
        let file = FileFormat {
            format: FORMAT.to_owned(),
            version: VERSION,
            kdf: self.sealing.kdf_params(),
            sealed: e2e::seal(&self.sealing.key, &plain),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| KeyStoreError::Invalid(format!("key store encoding: {e}")))?;
        write_atomically(&self.path, &bytes)?;
        self.profile_dirty = false;
        self.signing_from_file = true;
        self.identity_dirty = false;
        self.pins_changed.clear();
        self.forgotten_generations.clear();
        Ok(())
    }

    fn merge_from_disk(&mut self) -> KeyStoreResult<()> {
        let file = read_file(&self.path)?;
        let same_salt = STANDARD
            .decode(&file.kdf.salt)
            .is_ok_and(|s| s == self.sealing.salt);
        if !same_salt {
            return Err(KeyStoreError::ChangedOnDisk(self.path.clone()));
        }
        let disk = unseal(&self.path, &self.sealing.key, &file.sealed)
            .map_err(|_| KeyStoreError::ChangedOnDisk(self.path.clone()))?;
        if decode_key(&disk.device_secret).as_deref() != Some(&*self.device.secret_bytes()) {
            return Err(KeyStoreError::ChangedOnDisk(self.path.clone()));
        }
        for (channel, key) in &disk.channel_keys {
            if self.channel_keys.contains_key(channel) || self.removed_channels.contains(channel) {
                continue;
            }
            if let Some(key) = decode_key(key) {
                self.channel_keys.insert(channel.clone(), key);
            }
        }
        for (id, key) in &disk.generation_keys {
            if let Some((slot, key)) = generation_entry(id, key)
                && !self.removed_channels.contains(&slot.0)
                && !self.forgotten_generations.contains(&slot)
            {
                self.generation_keys.entry(slot).or_insert(key);
            }
        }
        if self.directory_key.is_none() {
            self.directory_key = disk.directory_key.as_deref().and_then(decode_key);
        }
        if !self.signing_from_file
            && let Some(k) = disk.signing_secret.as_deref()
            && let Ok(k) = SigningKeyPair::from_b64(k)
        {
            // Another process gave this pre-v2 store its signing key first: one key per device.
            self.signing = k;
            self.signing_from_file = true;
        }
        if !self.identity_dirty
            && let Some(k) = disk.identity_secret.as_deref()
            && let Ok(k) = SigningKeyPair::from_b64(k)
        {
            self.identity = Some(k);
        }
        for (user, pin) in &disk.pins {
            if !self.pins_changed.contains(user) {
                self.pins.insert(user.clone(), pin.clone());
            }
        }
        if !self.profile_dirty && disk.profile.is_some() {
            self.profile = disk.profile.clone();
        }
        Ok(())
    }
}
