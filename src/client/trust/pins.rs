//! Trust on first use: what a client pins of each user's identity, and how a newly checked list
//! compares with the pin.

use serde::{Deserialize, Serialize};

use crate::crypto::device_list::CheckedList;

/// A contact's identity as this client last accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub user_id: String,
    /// Ed25519 identity public key (standard base64).
    pub identity_key: String,
    /// The newest list version checked against this pin, and its hash: the server may never
    /// serve an older or different list at that version again (no rollback).
    pub version: u64,
    pub hash: String,
    /// The user compared safety numbers and marked the contact verified.
    #[serde(default)]
    pub verified: bool,
}

impl Pin {
    pub fn of(list: &CheckedList) -> Self {
        Pin {
            user_id: list.statement.user_id.clone(),
            identity_key: list.statement.identity_key.clone(),
            version: list.statement.version,
            hash: list.hash.clone(),
            verified: false,
        }
    }
}

/// How the newest checked list relates to the pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No pin yet: pin this identity (first use).
    FirstUse(Pin),
    /// Same identity; the pin moves to the new version (or stays).
    Same(Pin),
    /// The identity key changed (a reset, or a server lying about it). Blocking: nothing is
    /// wrapped for this user's devices until the user accepts the new identity; a verified
    /// contact must be verified again.
    IdentityChanged { pinned: Pin, new: Pin },
}

impl Verdict {
    /// The pin of the newest identity, whatever the verdict (the caller decided to take it).
    pub fn into_newest(self) -> Pin {
        match self {
            Verdict::FirstUse(p) | Verdict::Same(p) | Verdict::IdentityChanged { new: p, .. } => p,
        }
    }

    pub fn judge(pinned: Option<&Pin>, newest: &CheckedList) -> Verdict {
        let new = Pin::of(newest);
        match pinned {
            None => Verdict::FirstUse(new),
            Some(p) if p.identity_key == new.identity_key => Verdict::Same(Pin {
                verified: p.verified,
                ..new
            }),
            Some(p) => Verdict::IdentityChanged {
                pinned: p.clone(),
                new,
            },
        }
    }
}
