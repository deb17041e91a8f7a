//! The local key store: one file per profile holding everything a device must keep secret (its
//! X25519 secret key, the channel keys, the directory key, the session token; for trust v2 its
//! Ed25519 signing key, the user's identity key on the device that holds it, and the identities
//! pinned on first use) plus the profile that goes with them (server, trust, user, device), sealed
//! under a passphrase. Stores made before trust v2 open as they are and get a signing key.
//!
//! Format (JSON): `{format, version, kdf: {algorithm, m_cost, t_cost, p_cost, salt}, sealed}` where
//! `sealed` is [`crate::crypto::e2e::seal`] (AES-256-GCM) of the contents under an argon2id key
//! derived from the passphrase and the random 16-byte salt. Only the KDF parameters are in the
//! clear; a wrong passphrase and a damaged file are indistinguishable on purpose (GCM says only
//! "does not authenticate").
//!
//! The file is created with mode 0600 and written atomically (temporary file in the same folder,
//! fsync, rename), so a crash never leaves a half-written store. Two processes may share one
//! profile (`tail` running while `send` is used): a save merges what another process wrote since
//! (see [`KeyStore::save`]).
//!
//! Layout: this file holds the API ([`KeyStore`], [`Profile`], errors); `file` the on-disk format
//! and its sealing; `persist` saving and the merge with other processes.

mod file;
mod persist;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::tls::Trust;
use super::trust::Pin;
use crate::crypto::e2e::{DeviceKeypair, SymmetricKey};
use crate::crypto::sign::SigningKeyPair;
use file::{SealingKey, decode_key, format_error, read_file, unseal};

/// Smallest passphrase accepted when a store is created.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// Errors of the key store. Messages name the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("wrong passphrase or corrupted key store {}", .0.display())]
    WrongPassphrase(PathBuf),
    #[error("no key store at {} (register or log in with this profile first)", .0.display())]
    NotFound(PathBuf),
    #[error("a key store already exists at {} (use another --profile, or log in)", .0.display())]
    Exists(PathBuf),
    #[error("{} is not a dialtone key store: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("key store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "key store {} was replaced by another process (re-created or another passphrase); not overwriting it",
        .0.display()
    )]
    ChangedOnDisk(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

pub type KeyStoreResult<T> = Result<T, KeyStoreError>;

/// Who this device is, on which server. Saved inside the sealed part of the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `https://host:port`.
    pub server_url: String,
    pub trust: Trust,
    pub user_id: String,
    pub device_id: String,
    pub username: String,
    /// The session token; `None` after logout.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub is_admin: bool,
    /// The profile name (`POST /users/profiles`) was published under the directory key, signed
    /// by this device (trust v2). Stored under a new name so that a store whose profile was
    /// published unsigned (before v2) publishes it again, signed.
    #[serde(default, rename = "profile_published_signed")]
    pub profile_published: bool,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session token is a bearer secret: never in logs or panic messages.
        f.debug_struct("Profile")
            .field("server_url", &self.server_url)
            .field("trust", &self.trust)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("is_admin", &self.is_admin)
            .field("profile_published", &self.profile_published)
            .finish()
    }
}

/// An open key store: the secrets in memory, and where and how to write them back.
pub struct KeyStore {
    path: PathBuf,
    sealing: SealingKey,
    profile: Option<Profile>,
    /// This process changed the profile since it was loaded (so a save keeps ours, not the file's).
    profile_dirty: bool,
    device: DeviceKeypair,
    channel_keys: BTreeMap<String, SymmetricKey>,
    /// Channels whose key this process dropped (deleted channels): a merge must not bring them back.
    removed_channels: BTreeSet<String>,
    directory_key: Option<SymmetricKey>,
    /// Trust v2: this device's signing key, and whether it came from the file (a key made here
    /// for a pre-v2 store yields to one another process saved first).
    signing: SigningKeyPair,
    signing_from_file: bool,
    /// Trust v2: the identity key, when this device holds it; `identity_dirty` once this process
    /// made or replaced it (a reset), so a merge keeps ours.
    identity: Option<SigningKeyPair>,
    identity_dirty: bool,
    /// Trust v2: pinned identities; `pins_changed` names those this process set.
    pins: BTreeMap<String, Pin>,
    pins_changed: BTreeSet<String>,
    /// Trust v2: private channels' keys by (channel, generation). A generation's key never
    /// changes once posted, so a merge only adds, except the slots this process forgot (a key it
    /// made for a rotation that lost): the file still holds that key until this save.
    generation_keys: BTreeMap<(String, i64), SymmetricKey>,
    forgotten_generations: BTreeSet<(String, i64)>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .field("profile", &self.profile)
            .field("device", &self.device)
            .field("channel_keys", &self.channel_keys.len())
            .field("directory_key", &self.directory_key.is_some())
            .field("signing_key", &self.signing.public_b64())
            .field(
                "identity_key",
                &self.identity.as_ref().map(|k| k.public_b64()),
            )
            .field("pins", &self.pins.len())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// The store file of `profile` under `home`. Profile names are plain words (they become
    /// file names).
    pub fn path_for(home: &Path, profile: &str) -> KeyStoreResult<PathBuf> {
        let ok = !profile.is_empty()
            && profile.len() <= 64
            && profile
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && !profile.starts_with('.');
        if !ok {
            return Err(KeyStoreError::Invalid(format!(
                "invalid profile name {profile:?}: use letters, digits, '-', '_' or '.' (at most 64)"
            )));
        }
        Ok(home.join(format!("{profile}.keystore")))
    }

    /// A new store with a fresh device key, in memory only until [`KeyStore::save`]. Fails if a
    /// store already exists at `path`, so an existing device key is never overwritten.
    pub fn create(path: &Path, passphrase: &str) -> KeyStoreResult<Self> {
        Self::create_with_device(path, passphrase, DeviceKeypair::generate())
    }

    /// [`KeyStore::create`] with a given device key.
    pub fn create_with_device(
        path: &Path,
        passphrase: &str,
        device: DeviceKeypair,
    ) -> KeyStoreResult<Self> {
        if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(KeyStoreError::Invalid(format!(
                "the key store passphrase must have at least {MIN_PASSPHRASE_CHARS} characters"
            )));
        }
        if path.exists() {
            return Err(KeyStoreError::Exists(path.to_owned()));
        }
        Ok(Self {
            path: path.to_owned(),
            sealing: SealingKey::fresh(passphrase)?,
            profile: None,
            profile_dirty: true,
            device,
            channel_keys: BTreeMap::new(),
            removed_channels: BTreeSet::new(),
            forgotten_generations: BTreeSet::new(),
            directory_key: None,
            signing: SigningKeyPair::generate(),
            signing_from_file: false,
            identity: None,
            identity_dirty: false,
            pins: BTreeMap::new(),
            pins_changed: BTreeSet::new(),
            generation_keys: BTreeMap::new(),
        })
    }

    pub fn exists(path: &Path) -> bool {
        path.exists()
    }

    /// Open and decrypt the store at `path`.
    pub fn open(path: &Path, passphrase: &str) -> KeyStoreResult<Self> {
        let file = read_file(path)?;
        let kdf = &file.kdf;
        let salt = STANDARD
            .decode(&kdf.salt)
            .map_err(|_| format_error(path, "salt is not base64"))?;
        let sealing = SealingKey::derive(passphrase, kdf.m_cost, kdf.t_cost, kdf.p_cost, salt)?;
        let contents = unseal(path, &sealing.key, &file.sealed)?;
        let device_secret: [u8; 32] = decode_key(&contents.device_secret)
            .map(|k| *k)
            .ok_or_else(|| format_error(path, "device secret key is not 32 bytes of base64"))?;
        let mut channel_keys = BTreeMap::new();
        for (channel, key) in &contents.channel_keys {
            let key = decode_key(key)
                .ok_or_else(|| format_error(path, "a channel key is not 32 bytes of base64"))?;
            channel_keys.insert(channel.clone(), key);
        }
        let directory_key = match &contents.directory_key {
            Some(k) => Some(decode_key(k).ok_or_else(|| {
                format_error(path, "the directory key is not 32 bytes of base64")
            })?),
            None => None,
        };
        let seed = |k: &Option<String>, what: &str| match k {
            Some(k) => SigningKeyPair::from_b64(k)
                .map(Some)
                .map_err(|_| format_error(path, &format!("the {what} is not 32 bytes of base64"))),
            None => Ok(None),
        };
        let mut generation_keys = BTreeMap::new();
        for (id, key) in &contents.generation_keys {
            let (slot, key) = generation_entry(id, key)
                .ok_or_else(|| format_error(path, "a channel generation key is malformed"))?;
            generation_keys.insert(slot, key);
        }
        let signing = seed(&contents.signing_secret, "signing key")?;
        let identity = seed(&contents.identity_secret, "identity key")?;
        Ok(Self {
            path: path.to_owned(),
            sealing,
            profile: contents.profile.clone(),
            profile_dirty: false,
            device: DeviceKeypair::from_secret_bytes(device_secret),
            channel_keys,
            removed_channels: BTreeSet::new(),
            forgotten_generations: BTreeSet::new(),
            directory_key,
            signing_from_file: signing.is_some(),
            signing: signing.unwrap_or_else(SigningKeyPair::generate),
            identity,
            identity_dirty: false,
            pins: contents.pins.clone(),
            pins_changed: BTreeSet::new(),
            generation_keys,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The profile, once this device has registered or logged in.
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    /// Change the profile (kept over the file's on the next save).
    pub fn profile_mut(&mut self) -> Option<&mut Profile> {
        self.profile_dirty = true;
        self.profile.as_mut()
    }

    pub fn set_profile(&mut self, profile: Profile) {
        self.profile_dirty = true;
        self.profile = Some(profile);
    }

    pub fn device(&self) -> &DeviceKeypair {
        &self.device
    }

    pub fn channel_key(&self, channel_id: &str) -> Option<&SymmetricKey> {
        self.channel_keys.get(channel_id)
    }

    /// The channels whose key this device holds.
    pub fn channel_ids(&self) -> Vec<String> {
        self.channel_keys.keys().cloned().collect()
    }

    pub fn set_channel_key(&mut self, channel_id: &str, key: SymmetricKey) {
        self.removed_channels.remove(channel_id);
        self.channel_keys.insert(channel_id.to_owned(), key);
    }

    /// Forget a channel's key, and every generation of it (the channel was deleted).
    pub fn remove_channel_key(&mut self, channel_id: &str) -> bool {
        self.removed_channels.insert(channel_id.to_owned());
        self.generation_keys.retain(|(c, _), _| c != channel_id);
        self.channel_keys.remove(channel_id).is_some()
    }

    /// A private channel's key of one generation.
    pub fn generation_key(&self, channel_id: &str, generation: i64) -> Option<&SymmetricKey> {
        self.generation_keys
            .get(&(channel_id.to_owned(), generation))
    }

    pub fn set_generation_key(&mut self, channel_id: &str, generation: i64, key: SymmetricKey) {
        self.removed_channels.remove(channel_id);
        let slot = (channel_id.to_owned(), generation);
        self.forgotten_generations.remove(&slot);
        self.generation_keys.insert(slot, key);
    }

    /// Drop a generation key that was never posted (its rotation lost or failed): the generation
    /// belongs to whichever key the server took, and this device fetches its envelope.
    pub fn forget_generation_key(&mut self, channel_id: &str, generation: i64) {
        let slot = (channel_id.to_owned(), generation);
        self.generation_keys.remove(&slot);
        self.forgotten_generations.insert(slot);
    }

    /// The newest generation of a private channel this device holds: the floor below which no
    /// server announcement may take it (an older generation may be held by a removed member).
    pub fn newest_generation(&self, channel_id: &str) -> Option<i64> {
        self.generations(channel_id).into_iter().max()
    }

    /// The generations of a private channel this device holds, ascending.
    pub fn generations(&self, channel_id: &str) -> Vec<i64> {
        self.generation_keys
            .keys()
            .filter(|(c, _)| c == channel_id)
            .map(|(_, g)| *g)
            .collect()
    }

    pub fn directory_key(&self) -> Option<&SymmetricKey> {
        self.directory_key.as_ref()
    }

    pub fn set_directory_key(&mut self, key: SymmetricKey) {
        self.directory_key = Some(key);
    }

    /// Trust v2: this device's Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKeyPair {
        &self.signing
    }

    /// Trust v2: the user's identity key, if this device holds it.
    pub fn identity_key(&self) -> Option<&SigningKeyPair> {
        self.identity.as_ref()
    }

    /// Keep a (new) identity key: the first one, or a reset's.
    pub fn set_identity_key(&mut self, key: SigningKeyPair) {
        self.identity = Some(key);
        self.identity_dirty = true;
    }

    /// Trust v2: the pinned identity of `user_id`.
    pub fn pin(&self, user_id: &str) -> Option<&Pin> {
        self.pins.get(user_id)
    }

    pub fn set_pin(&mut self, pin: Pin) {
        self.pins_changed.insert(pin.user_id.clone());
        self.pins.insert(pin.user_id.clone(), pin);
    }
}

/// A stored `<channel id>/<generation>` entry.
fn generation_entry(id: &str, key: &str) -> Option<((String, i64), SymmetricKey)> {
    let (channel, generation) = id.rsplit_once('/')?;
    let generation = generation.parse().ok()?;
    Some(((channel.to_owned(), generation), decode_key(key)?))
}
