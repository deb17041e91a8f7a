//! Trust v2 identity operations on a device's key store (docs/TRUST.md §2.5): the first list,
//! pairing a new device with a short code, checking a contact against its pin, accepting a
//! changed identity, and resetting one's own.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::lists::{TrustError, verified_devices};
use super::pins::{Pin, Verdict};
use crate::client::ClientError;
use crate::client::keystore::KeyStore;
use crate::client::rest::RestClient;
use crate::crypto::device_list::{self, CheckedList};
use crate::crypto::safety;
use crate::crypto::sign::{self, SignContext, SigningKeyPair};
use crate::protocol::format_time;
use crate::protocol::trust::ListedDevice;

/// What a new device shows so an existing one can sign it in: the offer to carry over (copy and
/// paste; it holds public keys only) and the short code both screens must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingOffer {
    pub offer: String,
    pub code: String,
}

/// The short code of a pairing offer: 12 digits of SHA-256 over the exact offer, shown on both
/// devices. It commits to the new device's keys, so an offer swapped on the way (by the server,
/// or whoever carried it) shows another code.
pub fn short_code(offer: &str) -> String {
    let digest = Sha256::digest(offer.as_bytes());
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    let digits = format!("{:012}", u64::from_be_bytes(n) % 1_000_000_000_000);
    format!("{} {} {}", &digits[..4], &digits[4..8], &digits[8..])
}

fn me(store: &KeyStore) -> Result<(String, String), TrustError> {
    let p = store.profile().ok_or(TrustError::NotLoggedIn)?;
    Ok((p.user_id.clone(), p.device_id.clone()))
}

/// This user's own newest list, verified from this device's pin; `None` if there is none yet.
async fn own_list(rest: &RestClient, store: &KeyStore) -> Result<Option<CheckedList>, TrustError> {
    let (user, _) = me(store)?;
    match verified_devices(rest, &user, store.pin(&user)).await {
        Ok((list, Verdict::IdentityChanged { .. })) => {
            Err(TrustError::OwnIdentityChanged(list.statement.version))
        }
        Ok((list, _)) => Ok(Some(list)),
        Err(TrustError::NoList(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`own_list`], which must exist (`NoList` otherwise).
async fn own_list_required(rest: &RestClient, store: &KeyStore) -> Result<CheckedList, TrustError> {
    let (user, _) = me(store)?;
    own_list(rest, store).await?.ok_or(TrustError::NoList(user))
}

fn this_device(store: &KeyStore, user: &str, device: &str, identity_key: &str) -> ListedDevice {
    device_list::listed_device(
        user,
        identity_key,
        device,
        &store.device().public_key_b64(),
        store.signing_key(),
    )
}

/// Sign, publish and pin the list after `prev` naming `devices`; the store is saved.
async fn publish_next(
    rest: &RestClient,
    store: &mut KeyStore,
    prev: Option<&CheckedList>,
    identity: &SigningKeyPair,
    devices: Vec<ListedDevice>,
) -> Result<CheckedList, TrustError> {
    let (user, _) = me(store)?;
    let st = device_list::next_statement(
        &user,
        prev,
        &identity.public_b64(),
        devices,
        format_time(chrono::Utc::now()),
    );
    let signed = device_list::sign_statement(&st, identity);
    let checked = device_list::check(&signed, &user, prev)?;
    rest.publish_device_list(&signed).await?;
    store.set_pin(Pin {
        verified: true,
        ..Pin::of(&checked)
    });
    store.save()?;
    Ok(checked)
}

/// On a user's first device: make the identity key and publish list version 1 naming this
/// device. Refused when the user already has a list (pair this device instead, or reset).
pub async fn init(rest: &RestClient, store: &mut KeyStore) -> Result<CheckedList, TrustError> {
    let (user, device) = me(store)?;
    if let Some(list) = own_list(rest, store).await? {
        return Err(TrustError::AlreadyPublished(list.statement.version));
    }
    let identity = SigningKeyPair::generate();
    let entry = this_device(store, &user, &device, &identity.public_b64());
    // Kept before publishing: a list the server stored must never lose its key to a crash.
    store.set_identity_key(identity.clone());
    store.save()?;
    publish_next(rest, store, None, &identity, vec![entry]).await
}

/// Where sign-in left this device on its user's signed device list ([`after_sign_in`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIn {
    /// The user had no list and this is their only device: it made the identity key and
    /// published this version (1) naming itself.
    Created(u64),
    /// The user's newest list names this device.
    Listed(u64),
    /// The user's list (this version) does not name this device: v2 clients share no keys with
    /// it until a listed device signs it in (`identity pair` / `identity approve`).
    NotListed(u64),
    /// No list yet, and the user has other devices: making the identity here would leave them
    /// off the list, so the user chooses where (`identity init`).
    NoListOtherDevices(usize),
    /// The server does not serve device lists (a v1 server): nothing to do.
    Unsupported,
}

/// Run after register or login: a user's first device makes the identity by itself (issue 10:
/// "made on their first device"), so nobody has to know about `identity init`. A device that
/// finds a list without itself, or other unlisted devices, is told rather than acted for.
pub async fn after_sign_in(
    rest: &RestClient,
    store: &mut KeyStore,
) -> Result<SignedIn, TrustError> {
    let (_, device) = me(store)?;
    let list = match own_list(rest, store).await {
        Ok(list) => list,
        Err(TrustError::Client(ClientError::Api { status: 404, .. })) => {
            return Ok(SignedIn::Unsupported);
        }
        Err(e) => return Err(e),
    };
    if let Some(list) = list {
        let version = list.statement.version;
        return Ok(
            if list.statement.devices.iter().any(|d| d.device_id == device) {
                SignedIn::Listed(version)
            } else {
                SignedIn::NotListed(version)
            },
        );
    }
    let others = rest
        .devices()
        .await?
        .into_iter()
        .filter(|d| d.id != device)
        .count();
    if others > 0 {
        return Ok(SignedIn::NoListOtherDevices(others));
    }
    match init(rest, store).await {
        Ok(list) => Ok(SignedIn::Created(list.statement.version)),
        // Another device of this user published first (a race): this one is simply not listed.
        Err(TrustError::AlreadyPublished(version)) => Ok(SignedIn::NotListed(version)),
        Err(e) => Err(e),
    }
}

/// On a new device: the offer and code an existing device approves (`approve`).
pub async fn pairing_offer(
    rest: &RestClient,
    store: &KeyStore,
) -> Result<PairingOffer, TrustError> {
    let (user, device) = me(store)?;
    let list = own_list_required(rest, store).await?;
    if list.statement.devices.iter().any(|d| d.device_id == device) {
        return Err(TrustError::AlreadyListed);
    }
    let entry = this_device(store, &user, &device, &list.statement.identity_key);
    let json = serde_json::to_vec(&entry).unwrap_or_default();
    let offer = URL_SAFE_NO_PAD.encode(json);
    let code = short_code(&offer);
    Ok(PairingOffer { offer, code })
}

/// The entry an offer carries, if the offer is exactly what [`pairing_offer`] makes of it. Any
/// other spelling of the same entry (spaces, escapes, field order) is refused: each would give a
/// code of its own, so whoever carries an offer could otherwise try spellings of a substitute,
/// without signing anything anew, until one shows the code the new device shows. Canonical
/// offers leave one spelling per signed entry: every try then costs a fresh device binding.
fn decode_offer(offer: &str) -> Result<ListedDevice, TrustError> {
    let bad = || TrustError::BadOffer("not a pairing offer".into());
    let bytes = URL_SAFE_NO_PAD.decode(offer).map_err(|_| bad())?;
    let entry: ListedDevice = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if serde_json::to_vec(&entry).ok().as_deref() != Some(bytes.as_slice()) {
        return Err(TrustError::BadOffer(
            "not in the form a dialtone device makes it".into(),
        ));
    }
    Ok(entry)
}

/// On a device holding the identity key: check a new device's offer against the code its screen
/// shows, then publish the next list with it.
pub async fn approve(
    rest: &RestClient,
    store: &mut KeyStore,
    offer: &str,
    code: &str,
) -> Result<CheckedList, TrustError> {
    let (user, _) = me(store)?;
    let offer = offer.trim();
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    if digits(&short_code(offer)) != digits(code) {
        return Err(TrustError::CodeMismatch);
    }
    let entry = decode_offer(offer)?;
    let identity = store
        .identity_key()
        .cloned()
        .ok_or(TrustError::NoIdentityKey)?;
    let list = own_list_required(rest, store).await?;
    if list.statement.identity_key != identity.public_b64() {
        return Err(TrustError::NoIdentityKey);
    }
    sign::verify(
        &entry.signing_key,
        SignContext::DeviceListDevice,
        &device_list::binding_bytes(&user, &list.statement.identity_key, &entry),
        &entry.binding_signature,
    )
    .map_err(|_| TrustError::BadOffer("its signature does not verify for this account".into()))?;
    let mut devices = list.statement.devices.clone();
    if devices.iter().any(|d| d.device_id == entry.device_id) {
        return Err(TrustError::AlreadyListed);
    }
    devices.push(entry);
    publish_next(rest, store, Some(&list), &identity, devices).await
}

/// A new identity key and a list naming this device alone; every contact sees an identity
/// change. For a user who lost the device holding the identity key.
pub async fn reset(rest: &RestClient, store: &mut KeyStore) -> Result<CheckedList, TrustError> {
    let (user, device) = me(store)?;
    // The chain continues from the newest list this device can verify.
    let prev = match own_list(rest, store).await {
        Ok(p) => p,
        Err(TrustError::OwnIdentityChanged(_)) => {
            let (list, _) = verified_devices(rest, &user, None).await?;
            Some(list)
        }
        Err(e) => return Err(e),
    };
    let identity = SigningKeyPair::generate();
    let entry = this_device(store, &user, &device, &identity.public_b64());
    store.set_identity_key(identity.clone());
    store.save()?;
    publish_next(rest, store, prev.as_ref(), &identity, vec![entry]).await
}

/// Check a contact's devices against the pin (pinning on first use, following the chain); an
/// identity change is returned and leaves the pin as it was.
pub async fn check_contact(
    rest: &RestClient,
    store: &mut KeyStore,
    user_id: &str,
) -> Result<(CheckedList, Verdict), TrustError> {
    let (list, verdict) = verified_devices(rest, user_id, store.pin(user_id)).await?;
    if let Verdict::FirstUse(p) | Verdict::Same(p) = &verdict {
        store.set_pin(p.clone());
        store.save()?;
    }
    Ok((list, verdict))
}

/// Accept a contact's changed identity: pin the new one (unverified). A contact the user had
/// verified must be verified again instead ([`mark_verified`] after comparing safety numbers).
pub async fn accept(
    rest: &RestClient,
    store: &mut KeyStore,
    user_id: &str,
) -> Result<Pin, TrustError> {
    let (_, verdict) = verified_devices(rest, user_id, store.pin(user_id)).await?;
    if matches!(&verdict, Verdict::IdentityChanged { pinned, .. } if pinned.verified) {
        return Err(TrustError::ReverifyNeeded);
    }
    let pin = verdict.into_newest();
    store.set_pin(pin.clone());
    store.save()?;
    Ok(pin)
}

/// What `verify` shows: the safety number of this user and a contact, its QR payload, and how
/// the contact's identity compares with the pin.
#[derive(Debug, Clone)]
pub struct SafetyView {
    /// 60 digits, identical on both sides.
    pub number: String,
    /// libsignal's `CombinedFingerprints` bytes (local first) for a QR code.
    pub qr: Vec<u8>,
    pub verdict: Verdict,
    pub list: CheckedList,
}

/// The safety number between this user's identity and `user_id`'s current one (as the
/// verified chain gives it; the pin is not changed here).
pub async fn safety(
    rest: &RestClient,
    store: &KeyStore,
    user_id: &str,
) -> Result<SafetyView, TrustError> {
    let (me_id, _) = me(store)?;
    let mine = own_list_required(rest, store).await?;
    let (list, verdict) = verified_devices(rest, user_id, store.pin(user_id)).await?;
    let raw = |k: &str| sign::parse_public(k).map(|k| k.to_bytes());
    let my_key = raw(&mine.statement.identity_key)?;
    let their_key = raw(&list.statement.identity_key)?;
    let local = safety::fingerprint(&my_key, me_id.as_bytes(), safety::ITERATIONS);
    let remote = safety::fingerprint(&their_key, user_id.as_bytes(), safety::ITERATIONS);
    Ok(SafetyView {
        number: safety::safety_number(&local, &remote),
        qr: safety::qr_payload(&local, &remote),
        verdict,
        list,
    })
}

/// The user compared the safety number `compared` with `user_id` and it matched: pin the
/// contact's identity as verified (this also accepts a changed identity) — only if it is the
/// identity that number was computed from. The identity is fetched again here, so without that
/// check a server could show one identity for the comparison and another for the mark.
pub async fn mark_verified(
    rest: &RestClient,
    store: &mut KeyStore,
    user_id: &str,
    compared: &str,
) -> Result<Pin, TrustError> {
    let view = safety(rest, store, user_id).await?;
    let digits: String = compared.chars().filter(|c| !c.is_whitespace()).collect();
    if digits != view.number {
        return Err(TrustError::SafetyNumberMismatch);
    }
    let pin = Pin {
        verified: true,
        ..view.verdict.into_newest()
    };
    store.set_pin(pin.clone());
    store.save()?;
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ListedDevice {
        ListedDevice {
            device_id: "0b7e6f0a-3c1d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            public_key: "a2V5".into(),
            signing_key: "c2lnbg==".into(),
            binding_signature: "c2ln".into(),
        }
    }

    #[test]
    fn only_the_canonical_spelling_of_an_offer_is_taken() {
        let canonical = serde_json::to_vec(&entry()).unwrap();
        let offer = URL_SAFE_NO_PAD.encode(&canonical);
        assert_eq!(decode_offer(&offer).unwrap(), entry());

        let spaced = String::from_utf8(canonical.clone())
            .unwrap()
            .replace(',', ", ");
        let escaped = String::from_utf8(canonical)
            .unwrap()
            .replace("device_id", "device\\u005fid");
        for other in [spaced, escaped] {
            let offer = URL_SAFE_NO_PAD.encode(other.as_bytes());
            assert!(
                matches!(decode_offer(&offer), Err(TrustError::BadOffer(_))),
                "{other}"
            );
        }
        assert!(matches!(
            decode_offer("not base64 !"),
            Err(TrustError::BadOffer(_))
        ));
    }
}
