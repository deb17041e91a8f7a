//! At-rest field encryption (SPEC §6).
//!
//! Stored format: `enc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`, AES-256-GCM with a random
//! 96-bit nonce. The associated data is `table.column` and the row id, so a ciphertext copied to
//! another row or column fails to decrypt. The encryption key is an HKDF subkey of
//! `DIALTONE_CHANNEL_KEY`; the key id is a separate HKDF output, so it reveals nothing about the key.
//! A value without the `enc:` prefix is legacy plaintext from a dialtone v1 database.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{CryptoError, derive_key, fill_random};

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// An encrypted column. The name is bound into every ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    UsersUsername,
    DevicesPublicKey,
    BroadcastSenderName,
    BroadcastSenderPublicKey,
    DeviceListsStatement,
}

impl Column {
    pub const fn name(self) -> &'static str {
        match self {
            Column::UsersUsername => "users.username",
            Column::DevicesPublicKey => "devices.public_key",
            Column::BroadcastSenderName => "broadcast_messages.sender_name_enc",
            Column::BroadcastSenderPublicKey => "broadcast_messages.sender_public_key",
            Column::DeviceListsStatement => "device_lists.statement",
        }
    }
}

struct FieldKey {
    id: String,
    aead: Aes256Gcm,
}

impl FieldKey {
    fn from_master(master: &[u8]) -> Self {
        let enc = derive_key(master, b"dialtone/at-rest/field-encryption/v1");
        let id = derive_key(master, b"dialtone/at-rest/key-id/v1");
        Self {
            id: hex::encode(&id[..4]),
            aead: Aes256Gcm::new(&enc.into()),
        }
    }
}

/// A decrypted field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub plaintext: String,
    /// The stored value should be rewritten: legacy plaintext, or encrypted under an older key.
    pub needs_rewrite: bool,
    /// The stored value was legacy plaintext.
    pub legacy: bool,
}

/// The field cipher: the current key encrypts, every configured key decrypts.
pub struct FieldCipher {
    current: FieldKey,
    previous: Vec<FieldKey>,
}

impl FieldCipher {
    /// `current` and each of `previous` are the raw 32-byte keys from the configuration.
    pub fn new(current: &[u8], previous: &[&[u8]]) -> Self {
        Self {
            current: FieldKey::from_master(current),
            previous: previous.iter().map(|k| FieldKey::from_master(k)).collect(),
        }
    }

    /// The id written into new ciphertexts.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypt `plaintext` for `column` of row `row_id`.
    pub fn encrypt(&self, column: Column, row_id: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let aad = aad(column, row_id);
        // Encryption only fails for inputs beyond GCM's 64 GiB limit; a field never is.
        let sealed = self
            .current
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(blob))
    }

    /// Decrypt a stored value of `column` in row `row_id`; legacy plaintext passes through.
    pub fn decrypt(
        &self,
        column: Column,
        row_id: &str,
        stored: &str,
    ) -> Result<Opened, CryptoError> {
        if !stored.starts_with("enc:") {
            return Ok(Opened {
                plaintext: stored.to_owned(),
                needs_rewrite: true,
                legacy: true,
            });
        }
        let col = column.name();
        let rest = stored
            .strip_prefix(PREFIX)
            .ok_or(CryptoError::Malformed { column: col })?;
        let (key_id, b64) = rest
            .split_once(':')
            .ok_or(CryptoError::Malformed { column: col })?;
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey {
                column: col,
                key_id: key_id.chars().take(16).collect(),
            })?;
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| CryptoError::Malformed { column: col })?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed { column: col });
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| CryptoError::Malformed { column: col })?;
        let aad = aad(column, row_id);
        let plain = key
            .aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Tampered { column: col })?;
        let plaintext =
            String::from_utf8(plain).map_err(|_| CryptoError::NotUtf8 { column: col })?;
        Ok(Opened {
            plaintext,
            needs_rewrite: key.id != self.current.id,
            legacy: false,
        })
    }
}

fn aad(column: Column, row_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(column.name().len() + 1 + row_id.len());
    aad.extend_from_slice(column.name().as_bytes());
    aad.push(0);
    aad.extend_from_slice(row_id.as_bytes());
    aad
}

/// The key id of a stored `enc:v1:` value, if it is one.
pub fn key_id_of(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(PREFIX)?
        .split_once(':')
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [7u8; 32];
    const K2: [u8; 32] = [9u8; 32];

    #[test]
    fn round_trip_and_format() {
        let c = FieldCipher::new(&K1, &[]);
        let enc = c.encrypt(Column::UsersUsername, "row-1", "alice");
        assert!(enc.starts_with("enc:v1:"));
        assert_eq!(key_id_of(&enc), Some(c.current_key_id()));
        assert!(!enc.contains("alice"));
        let opened = c.decrypt(Column::UsersUsername, "row-1", &enc).unwrap();
        assert_eq!(opened.plaintext, "alice");
        assert!(!opened.needs_rewrite && !opened.legacy);
    }

    #[test]
    fn nonces_differ_between_encryptions() {
        let c = FieldCipher::new(&K1, &[]);
        let a = c.encrypt(Column::UsersUsername, "r", "same");
        let b = c.encrypt(Column::UsersUsername, "r", "same");
        assert_ne!(a, b);
    }

    #[test]
    fn ciphertext_is_bound_to_row_and_column() {
        let c = FieldCipher::new(&K1, &[]);
        let enc = c.encrypt(Column::DevicesPublicKey, "row-1", "key");
        assert!(matches!(
            c.decrypt(Column::DevicesPublicKey, "row-2", &enc),
            Err(CryptoError::Tampered {
                column: "devices.public_key"
            })
        ));
        assert!(matches!(
            c.decrypt(Column::UsersUsername, "row-1", &enc),
            Err(CryptoError::Tampered { .. })
        ));
    }

    #[test]
    fn tampering_is_detected_not_panicking() {
        let c = FieldCipher::new(&K1, &[]);
        let enc = c.encrypt(Column::UsersUsername, "r", "alice");
        // Flip one base64 character of the body.
        let mut chars: Vec<char> = enc.chars().collect();
        let i = chars.len() - 5;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(matches!(
            c.decrypt(Column::UsersUsername, "r", &tampered),
            Err(CryptoError::Tampered { .. })
        ));
        for junk in [
            "enc:v1:",
            "enc:v1:abcd",
            "enc:v2:x:y",
            "enc:v1:zz:%%%",
            "enc:v1:zz:AAAA",
        ] {
            assert!(
                c.decrypt(Column::UsersUsername, "r", junk).is_err(),
                "{junk}"
            );
        }
    }

    #[test]
    fn legacy_plaintext_passes_through_and_asks_for_rewrite() {
        let c = FieldCipher::new(&K1, &[]);
        let o = c
            .decrypt(Column::DevicesPublicKey, "r", "plain-key")
            .unwrap();
        assert_eq!(o.plaintext, "plain-key");
        assert!(o.legacy && o.needs_rewrite);
    }

    #[test]
    fn rotation_decrypts_old_values_and_flags_them() {
        let old = FieldCipher::new(&K1, &[]);
        let enc = old.encrypt(Column::UsersUsername, "r", "bob");
        let new = FieldCipher::new(&K2, &[&K1]);
        assert_ne!(new.current_key_id(), old.current_key_id());
        let o = new.decrypt(Column::UsersUsername, "r", &enc).unwrap();
        assert_eq!(o.plaintext, "bob");
        assert!(o.needs_rewrite && !o.legacy);
        let without_old = FieldCipher::new(&K2, &[]);
        let err = without_old
            .decrypt(Column::UsersUsername, "r", &enc)
            .unwrap_err();
        assert!(matches!(err, CryptoError::UnknownKey { .. }));
        assert!(err.to_string().contains("DIALTONE_CHANNEL_KEY_PREVIOUS"));
    }
}
