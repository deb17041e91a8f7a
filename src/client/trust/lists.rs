//! Fetch a user's signed device lists from the pinned version on and check every link, so a
//! client wraps keys only for devices of a list it verified itself.

use super::pins::{Pin, Verdict};
use crate::client::ClientError;
use crate::client::keystore::KeyStoreError;
use crate::client::rest::RestClient;
use crate::crypto::device_list::{self, CheckedList, ListError};
use crate::protocol::trust::DeviceListsResponse;

/// Why a user's devices could not be verified. Each says what it means for the user.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the server served a device list that does not verify ({0}): do not trust it")]
    List(#[from] ListError),
    #[error("{0} has not published a signed device list yet: their devices cannot be verified")]
    NoList(String),
    #[error(
        "the server served version {served} of a device list already seen at version {pinned}: \
         a rollback, refused"
    )]
    Rollback { pinned: u64, served: u64 },
    #[error(
        "the server served a different list at version {0} than the one pinned: the chain was \
         forked, refused"
    )]
    Forked(u64),
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("this profile is not logged in (run `login`)")]
    NotLoggedIn,
    #[error(
        "your own identity key changed (list version {0}) since this device pinned it: another of \
         your devices reset it, or the server lies; check on that device before trusting it"
    )]
    OwnIdentityChanged(u64),
    #[error(
        "this account already has an identity (list version {0}): sign this device in from a \
         listed one (`identity pair` here, `identity approve` there), or `identity reset`"
    )]
    AlreadyPublished(u64),
    #[error("this device is already on the account's device list")]
    AlreadyListed,
    #[error(
        "the code does not match this offer: the offer was changed on the way, or mistyped; do \
         not approve it"
    )]
    CodeMismatch,
    #[error(
        "the safety number the server's answer gives now is not the one you compared: the \
         contact's identity changed in between (or a digit was mistyped); run `verify` again and \
         compare the new number, refused"
    )]
    SafetyNumberMismatch,
    #[error("bad pairing offer: {0}")]
    BadOffer(String),
    #[error(
        "this device does not hold the account's identity key: approve from the device that \
         created it (`identity init`), or `identity reset`"
    )]
    NoIdentityKey,
    #[error(
        "the identity key of user {user} changed (list version {version}): what their devices \
         signed is not trusted until you accept it (`identity show` / `identity accept`)"
    )]
    IdentityChanged { user: String, version: u64 },
    #[error(
        "you had verified this contact, and their identity key changed: compare safety numbers \
         with them again (`verify USER`), then `verify USER --mark NUMBER`"
    )]
    ReverifyNeeded,
}

/// Page through the user's lists after version `after`, handing each page to `take`, which
/// answers the version the chain has reached and how many lists it took from the page. Ends at
/// the newest version the server has, or at a page that added nothing.
async fn each_page(
    rest: &RestClient,
    user_id: &str,
    mut after: u64,
    mut take: impl FnMut(DeviceListsResponse) -> Result<(u64, usize), TrustError>,
) -> Result<(), TrustError> {
    loop {
        let page = rest.device_lists(user_id, Some(after)).await?;
        let latest = page.latest_version;
        let (reached, taken) = take(page)?;
        if reached >= latest || taken == 0 {
            return Ok(());
        }
        after = reached;
    }
}

/// The user's newest list, verified from `pinned` on (from version 1 without a pin), and how it
/// compares with the pin. The caller stores the verdict's pin once the user accepted it.
pub async fn verified_devices(
    rest: &RestClient,
    user_id: &str,
    pinned: Option<&Pin>,
) -> Result<(CheckedList, Verdict), TrustError> {
    let mut at: Option<CheckedList> = None;
    let after = pinned.map_or(0, |p| p.version.saturating_sub(1));
    let walked = each_page(rest, user_id, after, |page| {
        if let Some(p) = pinned
            && page.latest_version < p.version
        {
            return Err(TrustError::Rollback {
                pinned: p.version,
                served: page.latest_version,
            });
        }
        let mut lists = page.lists.into_iter();
        if at.is_none()
            && let Some(p) = pinned
        {
            // The first list served is the pinned version itself: the same bytes, or a fork.
            let first = lists.next().ok_or(TrustError::Forked(p.version))?;
            let hash = device_list::hash_of(&first)?;
            if hash != p.hash {
                return Err(TrustError::Forked(p.version));
            }
            at = Some(device_list::stored(first, hash)?);
        }
        let rest_of_page: Vec<_> = lists.collect();
        at = device_list::check_chain(&rest_of_page, user_id, at.take())?;
        let reached = at.as_ref().map_or(0, |l| l.statement.version);
        Ok((reached, rest_of_page.len()))
    })
    .await;
    match (walked, pinned) {
        // A pinned user's lists cannot vanish: "unknown user" or "no trust v2 here" (404) would
        // put them back on v1 rules, where every device the server adds gets keys.
        (Err(TrustError::Client(ClientError::Api { status: 404, .. })), Some(p)) => {
            return Err(TrustError::Rollback {
                pinned: p.version,
                served: 0,
            });
        }
        (walked, _) => walked?,
    }
    let newest = at.ok_or_else(|| TrustError::NoList(user_id.to_owned()))?;
    let verdict = Verdict::judge(pinned, &newest);
    Ok((newest, verdict))
}

/// Every list of the user's chain from version 1, each checked against the one before, and
/// consistent with `pinned` (the pinned version must be in it with the pinned hash).
pub async fn full_chain(
    rest: &RestClient,
    user_id: &str,
    pinned: Option<&Pin>,
) -> Result<Vec<CheckedList>, TrustError> {
    let mut out: Vec<CheckedList> = Vec::new();
    each_page(rest, user_id, 0, |page| {
        let mut at = out.last().cloned();
        for l in &page.lists {
            at = device_list::check_chain(std::slice::from_ref(l), user_id, at)?;
            out.extend(at.clone());
        }
        let reached = at.as_ref().map_or(0, |l| l.statement.version);
        Ok((reached, page.lists.len()))
    })
    .await?;
    if let Some(p) = pinned {
        match out.iter().find(|l| l.statement.version == p.version) {
            Some(l) if l.hash == p.hash => {}
            Some(_) => return Err(TrustError::Forked(p.version)),
            None => {
                return Err(TrustError::Rollback {
                    pinned: p.version,
                    served: out.last().map_or(0, |l| l.statement.version),
                });
            }
        }
    }
    Ok(out)
}
