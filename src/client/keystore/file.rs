//! The key store's file: its JSON envelope, the argon2id sealing key, the sealed contents, and
//! reading and writing it (bounded reads, atomic 0600 writes). The key store API is in the parent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{KeyStoreError, KeyStoreResult, Profile};
use crate::client::trust::Pin;
use crate::crypto::e2e::{self, SymmetricKey};
use crate::crypto::random_bytes;

pub(super) const FORMAT: &str = "dialtone-keystore";
pub(super) const VERSION: u32 = 1;
pub(super) const SALT_LEN: usize = 16;
/// A store holds keys, not history: anything bigger is not ours (and is not read into memory).
pub(super) const MAX_FILE_BYTES: u64 = 16 << 20;
/// Bounds on the KDF parameters read from a file, so a damaged or planted file cannot make us
/// allocate gigabytes or spin for hours before failing.
pub(super) const MAX_M_COST_KIB: u32 = 1 << 20;
pub(super) const MAX_T_COST: u32 = 64;
pub(super) const MAX_P_COST: u32 = 16;

#[derive(Serialize, Deserialize)]
pub(super) struct KdfParams {
    pub(super) algorithm: String,
    pub(super) m_cost: u32,
    pub(super) t_cost: u32,
    pub(super) p_cost: u32,
    pub(super) salt: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct FileFormat {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) kdf: KdfParams,
    pub(super) sealed: String,
}

/// The sealed part, as serialized (keys base64).
#[derive(Serialize, Deserialize)]
pub(super) struct Contents {
    pub(super) profile: Option<Profile>,
    pub(super) device_secret: String,
    #[serde(default)]
    pub(super) channel_keys: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) directory_key: Option<String>,
    /// Trust v2: this device's Ed25519 signing key (seed); absent in stores made before v2.
    #[serde(default)]
    pub(super) signing_secret: Option<String>,
    /// Trust v2: the user's identity key (seed), on the device that made it.
    #[serde(default)]
    pub(super) identity_secret: Option<String>,
    /// Trust v2: contacts' identities pinned on first use, by user id.
    #[serde(default)]
    pub(super) pins: BTreeMap<String, Pin>,
    /// Trust v2: private channels' keys, one per generation, by `<channel id>/<generation>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) generation_keys: BTreeMap<String, String>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.device_secret.zeroize();
        for v in self
            .channel_keys
            .values_mut()
            .chain(self.generation_keys.values_mut())
        {
            v.zeroize();
        }
        if let Some(k) = &mut self.directory_key {
            k.zeroize();
        }
        for k in [&mut self.signing_secret, &mut self.identity_secret]
            .into_iter()
            .flatten()
        {
            k.zeroize();
        }
    }
}

/// The KDF output and the parameters that produced it.
pub(super) struct SealingKey {
    pub(super) key: SymmetricKey,
    pub(super) m_cost: u32,
    pub(super) t_cost: u32,
    pub(super) p_cost: u32,
    pub(super) salt: Vec<u8>,
}

impl SealingKey {
    pub(super) fn derive(
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

    pub(super) fn fresh(passphrase: &str) -> KeyStoreResult<Self> {
        Self::derive(
            passphrase,
            Params::DEFAULT_M_COST,
            Params::DEFAULT_T_COST,
            Params::DEFAULT_P_COST,
            random_bytes(SALT_LEN),
        )
    }

    pub(super) fn kdf_params(&self) -> KdfParams {
        KdfParams {
            algorithm: "argon2id".to_owned(),
            m_cost: self.m_cost,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
            salt: STANDARD.encode(&self.salt),
        }
    }
}

pub(super) fn format_error(path: &Path, reason: &str) -> KeyStoreError {
    KeyStoreError::Format {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

pub(super) fn decode_key(b64: &str) -> Option<SymmetricKey> {
    let bytes = Zeroizing::new(STANDARD.decode(b64).ok()?);
    let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(Zeroizing::new(key))
}

pub(super) fn read_file(path: &Path) -> KeyStoreResult<FileFormat> {
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

pub(super) fn unseal(path: &Path, key: &SymmetricKey, sealed: &str) -> KeyStoreResult<Contents> {
    let plain = Zeroizing::new(
        e2e::open(key, sealed).map_err(|_| KeyStoreError::WrongPassphrase(path.to_owned()))?,
    );
    // Authenticated but unparsable means a bug or a future version, not a wrong passphrase.
    serde_json::from_slice(&plain).map_err(|_| format_error(path, "sealed contents do not parse"))
}

/// Write `bytes` to `path` so that readers see the old file or the new one, never a mix, and the
/// file never exists with a mode wider than 0600 (not even for an instant).
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> KeyStoreResult<()> {
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
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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
