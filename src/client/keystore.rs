//! The local key store: one file per profile holding everything a device must keep secret (its
//! X25519 secret key, the channel keys, the directory key, the session token) plus the profile
//! that goes with them (server, trust, user, device), sealed under a passphrase.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::tls::Trust;
use crate::crypto::e2e::{self, DeviceKeypair, SymmetricKey};
use crate::crypto::random_bytes;

const FORMAT: &str = "dialtone-keystore";
const VERSION: u32 = 1;
const SALT_LEN: usize = 16;
/// Smallest passphrase accepted when a store is created.
pub const MIN_PASSPHRASE_CHARS: usize = 8;
/// A store holds keys, not history: anything bigger is not ours (and is not read into memory).
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Bounds on the KDF parameters read from a file, so a damaged or planted file cannot make us
/// allocate gigabytes or spin for hours before failing.
const MAX_M_COST_KIB: u32 = 1 << 20;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

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
    /// The profile name (`POST /users/profiles`) was published under the directory key.
    #[serde(default)]
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

#[derive(Serialize, Deserialize)]
struct KdfParams {
    algorithm: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    format: String,
    version: u32,
    kdf: KdfParams,
    sealed: String,
}

/// The sealed part, as serialized (keys base64).
#[derive(Serialize, Deserialize)]
struct Contents {
    profile: Option<Profile>,
    device_secret: String,
    #[serde(default)]
    channel_keys: BTreeMap<String, String>,
    #[serde(default)]
    directory_key: Option<String>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.device_secret.zeroize();
        for v in self.channel_keys.values_mut() {
            v.zeroize();
        }
        if let Some(k) = &mut self.directory_key {
            k.zeroize();
        }
    }
}

/// The KDF output and the parameters that produced it.
struct SealingKey {
    key: SymmetricKey,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    salt: Vec<u8>,
}

impl SealingKey {
    fn derive(
        passphrase: &str,
        m_cost: u32,
        t_cost: u32,
        p_cost: u32,
        salt: Vec<u8>,
    ) -> KeyStoreResult<Self> {
        let params = Params::new(m_cost, t_cost, p_cost, Some(32))
            .map_err(|e| KeyStoreError::Invalid(format!("key store KDF parameters: {e}")))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
            .map_err(|e| KeyStoreError::Invalid(format!("key derivation failed: {e}")))?;
        Ok(Self {
            key,
            m_cost,
            t_cost,
            p_cost,
            salt,
        })
    }

    fn fresh(passphrase: &str) -> KeyStoreResult<Self> {
        Self::derive(
            passphrase,
            Params::DEFAULT_M_COST,
            Params::DEFAULT_T_COST,
            Params::DEFAULT_P_COST,
            random_bytes(SALT_LEN),
        )
    }

    fn kdf_params(&self) -> KdfParams {
        KdfParams {
            algorithm: "argon2id".to_owned(),
            m_cost: self.m_cost,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
            salt: STANDARD.encode(&self.salt),
        }
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
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .field("profile", &self.profile)
            .field("device", &self.device)
            .field("channel_keys", &self.channel_keys.len())
            .field("directory_key", &self.directory_key.is_some())
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
            directory_key: None,
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
        Ok(Self {
            path: path.to_owned(),
            sealing,
            profile: contents.profile.clone(),
            profile_dirty: false,
            device: DeviceKeypair::from_secret_bytes(device_secret),
            channel_keys,
            removed_channels: BTreeSet::new(),
            directory_key,
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

    /// Forget a channel's key (the channel was deleted).
    pub fn remove_channel_key(&mut self, channel_id: &str) -> bool {
        self.removed_channels.insert(channel_id.to_owned());
        self.channel_keys.remove(channel_id).is_some()
    }

    pub fn directory_key(&self) -> Option<&SymmetricKey> {
        self.directory_key.as_ref()
    }

    pub fn set_directory_key(&mut self, key: SymmetricKey) {
        self.directory_key = Some(key);
    }

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
        if self.directory_key.is_none() {
            self.directory_key = disk.directory_key.as_deref().and_then(decode_key);
        }
        if !self.profile_dirty && disk.profile.is_some() {
            self.profile = disk.profile.clone();
        }
        Ok(())
    }
}

fn format_error(path: &Path, reason: &str) -> KeyStoreError {
    KeyStoreError::Format {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn decode_key(b64: &str) -> Option<SymmetricKey> {
    let bytes = Zeroizing::new(STANDARD.decode(b64).ok()?);
    let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(Zeroizing::new(key))
}

fn read_file(path: &Path) -> KeyStoreResult<FileFormat> {
    let io = |source| KeyStoreError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyStoreError::NotFound(path.to_owned()));
        }
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(format_error(path, "file too large"));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let file: FileFormat =
        serde_json::from_slice(&bytes).map_err(|_| format_error(path, "not the expected JSON"))?;
    if file.format != FORMAT {
        return Err(format_error(path, "unknown format"));
    }
    if file.version != VERSION {
        return Err(format_error(
            path,
            &format!("unsupported version {}", file.version),
        ));
    }
    let kdf = &file.kdf;
    if kdf.algorithm != "argon2id"
        || kdf.m_cost > MAX_M_COST_KIB
        || kdf.t_cost > MAX_T_COST
        || kdf.p_cost > MAX_P_COST
    {
        return Err(format_error(path, "unsupported key derivation parameters"));
    }
    Ok(file)
}

fn unseal(path: &Path, key: &SymmetricKey, sealed: &str) -> KeyStoreResult<Contents> {
    let plain = Zeroizing::new(
        e2e::open(key, sealed).map_err(|_| KeyStoreError::WrongPassphrase(path.to_owned()))?,
    );
    // Authenticated but unparsable means a bug or a future version, not a wrong passphrase.
    serde_json::from_slice(&plain).map_err(|_| format_error(path, "sealed contents do not parse"))
}

/// Write `bytes` to `path` so that readers see the old file or the new one, never a mix, and the
/// file never exists with a mode wider than 0600 (not even for an instant).
fn write_atomically(path: &Path, bytes: &[u8]) -> KeyStoreResult<()> {
    let io = |source| KeyStoreError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keystore".to_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(random_bytes(6))));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Create the store's folder (and parents) readable by the owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            server_url: "https://localhost:8080".into(),
            trust: Trust::Fingerprint("ab".repeat(32)),
            user_id: "u1".into(),
            device_id: "d1".into(),
            username: "alice".into(),
            token: Some("secret-token".into()),
            is_admin: true,
            profile_published: false,
        }
    }

    #[test]
    fn round_trip_keeps_every_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = KeyStore::path_for(&dir.path().join("home"), "default").unwrap();
        let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
        assert!(!path.exists(), "nothing is written before save");
        store.set_profile(profile());
        store.set_channel_key("c1", Zeroizing::new([7u8; 32]));
        store.set_directory_key(Zeroizing::new([9u8; 32]));
        store.save().unwrap();

        let opened = KeyStore::open(&path, "correct horse battery").unwrap();
        assert_eq!(opened.profile(), Some(&profile()));
        assert_eq!(
            opened.device().public_key_b64(),
            store.device().public_key_b64()
        );
        assert_eq!(opened.channel_key("c1").map(|k| **k), Some([7u8; 32]));
        assert_eq!(opened.directory_key().map(|k| **k), Some([9u8; 32]));
        assert_eq!(opened.channel_ids(), vec!["c1".to_owned()]);

        let text = std::fs::read_to_string(&path).unwrap();
        for secret in [
            "secret-token",
            "alice",
            "localhost",
            &STANDARD.encode([7u8; 32]),
        ] {
            assert!(!text.contains(secret), "{secret} is stored in the clear");
        }
        assert!(
            KeyStore::create(&path, "correct horse battery").is_err(),
            "never overwrites a store"
        );
    }

    #[test]
    fn wrong_passphrase_and_corruption_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.keystore");
        let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
        store.set_profile(profile());
        store.save().unwrap();

        let err = KeyStore::open(&path, "wrong horse battery").unwrap_err();
        assert!(matches!(err, KeyStoreError::WrongPassphrase(_)));
        assert!(
            err.to_string()
                .starts_with("wrong passphrase or corrupted key store"),
            "{err}"
        );

        // Flip one byte of the sealed part: same message, never garbage.
        let mut file: FileFormat = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut raw = STANDARD.decode(&file.sealed).unwrap();
        raw[20] ^= 0x01;
        file.sealed = STANDARD.encode(raw);
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let err = KeyStore::open(&path, "correct horse battery").unwrap_err();
        assert!(matches!(err, KeyStoreError::WrongPassphrase(_)), "{err}");

        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            KeyStore::open(&path, "x"),
            Err(KeyStoreError::Format { .. })
        ));
        assert!(matches!(
            KeyStore::open(&dir.path().join("missing.keystore"), "x"),
            Err(KeyStoreError::NotFound(_))
        ));
        assert!(matches!(
            KeyStore::create(&dir.path().join("new.keystore"), "short"),
            Err(KeyStoreError::Invalid(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_written_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("cfg").join("dialtone");
        let path = KeyStore::path_for(&home, "work").unwrap();
        let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
        store.set_profile(profile());
        store.save().unwrap();
        store.set_channel_key("c2", Zeroizing::new([1u8; 32]));
        store.save().unwrap();

        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let leftovers: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn concurrent_saves_merge_instead_of_losing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.keystore");
        let mut first = KeyStore::create(&path, "correct horse battery").unwrap();
        first.set_profile(profile());
        first.set_channel_key("gone", Zeroizing::new([3u8; 32]));
        first.save().unwrap();

        // Another process (say `tail`) opens the same store...
        let mut other = KeyStore::open(&path, "correct horse battery").unwrap();
        // ...while this one learns a key, forgets one and logs in again.
        first.set_channel_key("new", Zeroizing::new([4u8; 32]));
        first.remove_channel_key("gone");
        first.profile_mut().unwrap().token = Some("fresh-token".into());
        first.save().unwrap();

        other.set_channel_key("from-tail", Zeroizing::new([5u8; 32]));
        other.save().unwrap();

        let merged = KeyStore::open(&path, "correct horse battery").unwrap();
        assert!(merged.channel_key("new").is_some());
        assert!(merged.channel_key("from-tail").is_some());
        assert_eq!(
            merged.profile().unwrap().token.as_deref(),
            Some("fresh-token")
        );
        // `other` never saw the removal, so it still has "gone" in memory and writes it back:
        // removal only sticks for the process that did it. That is harmless (a deleted channel's
        // key decrypts nothing new) and keeps the merge simple.

        // A store re-created at the same path is not clobbered by a stale process.
        std::fs::remove_file(&path).unwrap();
        let mut recreated = KeyStore::create(&path, "another passphrase").unwrap();
        recreated.set_profile(profile());
        recreated.save().unwrap();
        assert!(matches!(other.save(), Err(KeyStoreError::ChangedOnDisk(_))));
    }

    #[test]
    fn profile_names_are_plain_words_and_debug_hides_the_token() {
        let home = Path::new("/tmp/x");
        assert!(KeyStore::path_for(home, "alice-2").is_ok());
        for bad in ["", "../etc", "a/b", ".hidden", "sp ace"] {
            assert!(KeyStore::path_for(home, bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", profile()).contains("secret-token"));
    }
}
