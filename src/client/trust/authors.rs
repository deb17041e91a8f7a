//! Who signed (docs/TRUST.md §6.4): a sender device's keys, taken only from its user's signed
//! device list as this device verified it against its pin, never from what the server says
//! beside a message.
//!
//! One [`Authors`] lives in each [`crate::client::Chat`]; it holds, per user, the devices of every
//! list version it walked. It is unbounded by design only in the sense that it holds one entry
//! per sender seen, each a few devices; [`Authors::forget`] drops a user when their list changes.

use std::collections::HashMap;

use super::lists::{TrustError, full_chain, verified_devices};
use super::pins::Verdict;
use crate::client::ClientError;
use crate::client::keystore::KeyStore;
use crate::client::rest::RestClient;
use crate::protocol::trust::ListedDevice;

/// What this device knows of a sender device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author {
    /// On the user's signed list (the newest, or an earlier version of its verified chain): its
    /// keys as the list names them.
    Listed(ListedDevice),
    /// The user has published no signed list (a dialtone v1 client): nothing to check against.
    NoList,
}

/// Why a sender device could not be taken as theirs.
#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    /// The user has a verified list, and this device was never on it: a forgery.
    #[error(
        "signed by device {device}, which was never on the signed device list of user {user}: \
         forged, refused"
    )]
    NotListed { user: String, device: String },
    /// The list could not be verified, or the identity changed: the sender is unknown until the
    /// user resolves it.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

#[derive(Debug, Default)]
struct Known {
    /// Every device of every list version walked, newest entry last.
    devices: HashMap<String, ListedDevice>,
    /// Whether the whole chain from version 1 was walked (else only from the pin on).
    full: bool,
    no_list: bool,
}

/// Cache of verified sender devices, per user.
#[derive(Debug, Default)]
pub struct Authors {
    users: HashMap<String, Known>,
}

impl Authors {
    /// Drop what is known of `user_id` (their device list changed).
    pub fn forget(&mut self, user_id: &str) {
        self.users.remove(user_id);
    }

    /// The keys of `device_id` of `user_id`, from the user's verified lists. A first sight of a
    /// user pins their identity (trust on first use), as key sharing does; an identity change is
    /// an error until the user accepts it.
    pub async fn device(
        &mut self,
        rest: &RestClient,
        store: &mut KeyStore,
        user_id: &str,
        device_id: &str,
    ) -> Result<Author, AuthorError> {
        if let Some(k) = self.users.get(user_id) {
            if k.no_list {
                return Ok(Author::NoList);
            }
            if let Some(d) = k.devices.get(device_id) {
                return Ok(Author::Listed(d.clone()));
            }
        }
        // Unknown user, or a device not seen yet: it may have joined since; check the newest.
        let known = self.users.entry(user_id.to_owned()).or_default();
        let (newest, verdict) = match verified_devices(rest, user_id, store.pin(user_id)).await {
            Ok(v) => v,
            Err(TrustError::NoList(_))
            | Err(TrustError::Client(ClientError::Api { status: 404, .. })) => {
                known.no_list = true;
                return Ok(Author::NoList);
            }
            Err(e) => return Err(e.into()),
        };
        let pin = match verdict {
            Verdict::FirstUse(p) | Verdict::Same(p) => p,
            Verdict::IdentityChanged { new, .. } => {
                return Err(TrustError::IdentityChanged {
                    user: user_id.to_owned(),
                    version: new.version,
                }
                .into());
            }
        };
        if store.pin(user_id) != Some(&pin) {
            store.set_pin(pin.clone());
            store.save().map_err(TrustError::from)?;
        }
        for d in newest.statement.devices {
            known.devices.insert(d.device_id.clone(), d);
        }
        if !known.devices.contains_key(device_id) && !known.full {
            // A device removed from the list before the pinned version still signed what it
            // sent while listed: walk the whole chain, consistent with the pin.
            for list in full_chain(rest, user_id, Some(&pin)).await? {
                for d in list.statement.devices {
                    known.devices.entry(d.device_id.clone()).or_insert(d);
                }
            }
            known.full = true;
        }
        known
            .devices
            .get(device_id)
            .cloned()
            .map(Author::Listed)
            .ok_or_else(|| AuthorError::NotListed {
                user: user_id.to_owned(),
                device: device_id.to_owned(),
            })
    }
}
