//! Trust v2 signed device lists (docs/TRUST.md §2): building, signing and checking one link of a
//! user's chain. The server checks every upload with [`check`]; clients check what the server
//! serves with the same function, then against their pins.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::sign::{self, SignContext, SigningKeyPair};
use crate::protocol::trust::{
    DEVICE_LIST_KIND, DeviceListStatement, ListedDevice, SignedDeviceList,
};

/// Largest statement accepted (about 300 devices).
pub const MAX_STATEMENT_BYTES: usize = 64 * 1024;
/// Most devices in one list.
pub const MAX_DEVICES: usize = 256;

/// Why a list was refused. The messages name no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("malformed device list: {0}")]
    Malformed(String),
    #[error("the device list is for another user")]
    WrongUser,
    #[error("device list version {got} does not follow version {current} (expected {expected})")]
    Version {
        current: u64,
        expected: u64,
        got: u64,
    },
    #[error("the device list's prev_hash does not match the previous list")]
    Chain,
    #[error("the identity key changed without a reset")]
    IdentityChanged,
    #[error("a reset must change the identity key")]
    ResetWithoutNewKey,
    #[error("the identity signature does not verify")]
    IdentitySignature,
    #[error("the countersignature of device {0} does not verify")]
    Countersignature(String),
}

/// A list that passed [`check`]: its statement and the hash the next list must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedList {
    pub statement: DeviceListStatement,
    /// Standard base64 SHA-256 of the statement bytes.
    pub hash: String,
    pub signed: SignedDeviceList,
}

/// The `prev_hash` of a version-1 list.
pub fn genesis_hash() -> String {
    STANDARD.encode([0u8; 32])
}

fn hash_b64(bytes: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(bytes))
}

/// The bytes a device's `binding_signature` covers: each field length-prefixed (u32 BE), so no
/// two different tuples share an encoding.
pub fn binding_bytes(user_id: &str, identity_key: &str, device: &ListedDevice) -> Vec<u8> {
    let mut out = Vec::new();
    for field in [
        user_id,
        identity_key,
        &device.device_id,
        &device.public_key,
        &device.signing_key,
    ] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// A device entry with its countersignature, made by the device itself.
pub fn listed_device(
    user_id: &str,
    identity_key: &str,
    device_id: &str,
    public_key: &str,
    signing: &SigningKeyPair,
) -> ListedDevice {
    let mut d = ListedDevice {
        device_id: device_id.to_owned(),
        public_key: public_key.to_owned(),
        signing_key: signing.public_b64(),
        binding_signature: String::new(),
    };
    d.binding_signature = signing.sign(
        SignContext::DeviceListDevice,
        &binding_bytes(user_id, identity_key, &d),
    );
    d
}

/// Sign a statement with the identity key. `statement.identity_key` must be `identity`'s.
pub fn sign_statement(
    statement: &DeviceListStatement,
    identity: &SigningKeyPair,
) -> SignedDeviceList {
    // Serializing a struct of strings, numbers and bools cannot fail.
    let bytes = serde_json::to_vec(statement).unwrap_or_default();
    SignedDeviceList {
        statement: STANDARD.encode(&bytes),
        identity_signature: identity.sign(SignContext::DeviceListIdentity, &bytes),
    }
}

/// The statement that follows `prev` (or the first), for `devices`.
pub fn next_statement(
    user_id: &str,
    prev: Option<&CheckedList>,
    identity_key: &str,
    devices: Vec<ListedDevice>,
    created_at: String,
) -> DeviceListStatement {
    let reset = prev.is_some_and(|p| p.statement.identity_key != identity_key);
    DeviceListStatement {
        kind: DEVICE_LIST_KIND.to_owned(),
        user_id: user_id.to_owned(),
        version: prev.map_or(1, |p| p.statement.version + 1),
        prev_hash: prev.map_or_else(genesis_hash, |p| p.hash.clone()),
        identity_key: identity_key.to_owned(),
        devices,
        created_at,
        reset,
    }
}

/// Check `signed` as the list of `user_id` that follows `prev` (`None`: the user's first list):
/// format, version, chain, identity continuity (or an explicit reset), the identity signature and
/// every device's countersignature. What the devices are (registered, the caller's) is for the
/// caller to check.
pub fn check(
    signed: &SignedDeviceList,
    user_id: &str,
    prev: Option<&CheckedList>,
) -> Result<CheckedList, ListError> {
    let bytes = STANDARD
        .decode(&signed.statement)
        .map_err(|_| ListError::Malformed("statement is not standard base64".into()))?;
    if bytes.len() > MAX_STATEMENT_BYTES {
        return Err(ListError::Malformed(format!(
            "statement is over {MAX_STATEMENT_BYTES} bytes"
        )));
    }
    let statement: DeviceListStatement = serde_json::from_slice(&bytes)
        .map_err(|e| ListError::Malformed(format!("statement: {e}")))?;
    if statement.kind != DEVICE_LIST_KIND {
        return Err(ListError::Malformed(format!(
            "kind must be {DEVICE_LIST_KIND}"
        )));
    }
    if statement.user_id != user_id {
        return Err(ListError::WrongUser);
    }
    if statement.devices.is_empty() || statement.devices.len() > MAX_DEVICES {
        return Err(ListError::Malformed(format!(
            "a list holds 1 to {MAX_DEVICES} devices"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for d in &statement.devices {
        if !seen.insert(d.device_id.as_str()) {
            return Err(ListError::Malformed(format!(
                "device {} is listed twice",
                d.device_id
            )));
        }
        crate::crypto::e2e::parse_public_key(&d.public_key).map_err(|_| {
            ListError::Malformed(format!(
                "device {}: public_key is not an X25519 key",
                d.device_id
            ))
        })?;
    }
    let current = prev.map_or(0, |p| p.statement.version);
    if statement.version != current + 1 {
        return Err(ListError::Version {
            current,
            expected: current + 1,
            got: statement.version,
        });
    }
    let expected_prev = prev.map_or_else(genesis_hash, |p| p.hash.clone());
    if statement.prev_hash != expected_prev {
        return Err(ListError::Chain);
    }
    match prev {
        Some(p) if p.statement.identity_key != statement.identity_key && !statement.reset => {
            return Err(ListError::IdentityChanged);
        }
        Some(p) if p.statement.identity_key == statement.identity_key && statement.reset => {
            return Err(ListError::ResetWithoutNewKey);
        }
        None if statement.reset => return Err(ListError::ResetWithoutNewKey),
        _ => {}
    }
    sign::verify(
        &statement.identity_key,
        SignContext::DeviceListIdentity,
        &bytes,
        &signed.identity_signature,
    )
    .map_err(|_| ListError::IdentitySignature)?;
    for d in &statement.devices {
        sign::verify(
            &d.signing_key,
            SignContext::DeviceListDevice,
            &binding_bytes(&statement.user_id, &statement.identity_key, d),
            &d.binding_signature,
        )
        .map_err(|_| ListError::Countersignature(d.device_id.clone()))?;
    }
    Ok(CheckedList {
        hash: hash_b64(&bytes),
        statement,
        signed: signed.clone(),
    })
}

/// The hash a list's successor chains to (SHA-256 of its statement bytes, standard base64).
pub fn hash_of(signed: &SignedDeviceList) -> Result<String, ListError> {
    let bytes = STANDARD
        .decode(&signed.statement)
        .map_err(|_| ListError::Malformed("statement is not standard base64".into()))?;
    Ok(hash_b64(&bytes))
}

/// A list read back from the server's own store, where it was checked on upload: parsed, not
/// re-verified (clients verify everything they are served with [`check`]).
pub fn stored(signed: SignedDeviceList, hash: String) -> Result<CheckedList, ListError> {
    let bytes = STANDARD
        .decode(&signed.statement)
        .map_err(|_| ListError::Malformed("statement is not standard base64".into()))?;
    let statement = serde_json::from_slice(&bytes)
        .map_err(|e| ListError::Malformed(format!("statement: {e}")))?;
    Ok(CheckedList {
        statement,
        hash,
        signed,
    })
}

/// Check a run of lists, ascending, that follows `prev`; returns the last (or `prev` itself when
/// `lists` is empty).
pub fn check_chain(
    lists: &[SignedDeviceList],
    user_id: &str,
    prev: Option<CheckedList>,
) -> Result<Option<CheckedList>, ListError> {
    let mut at = prev;
    for l in lists {
        at = Some(check(l, user_id, at.as_ref())?);
    }
    Ok(at)
}

#[cfg(test)]
mod tests;
