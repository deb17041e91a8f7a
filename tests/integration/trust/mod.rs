//! Trust v2 (docs/TRUST.md): signed device lists, published and served, and the client's checks
//! against its pins.

mod device_lists;
mod pinning;

use dialtone::crypto::device_list::{self, CheckedList};
use dialtone::crypto::sign::SigningKeyPair;
use dialtone::protocol::trust::SignedDeviceList;

use crate::support::*;

/// A device of a test user, as a list names it, with its signing key.
pub struct Signer {
    pub user_id: String,
    pub device_id: String,
    pub x25519: String,
    pub signing: SigningKeyPair,
}

impl Signer {
    pub fn new(user: &TestUser) -> Self {
        Signer {
            user_id: user.id().to_owned(),
            device_id: user.device().to_owned(),
            x25519: user.keys.public_key_b64(),
            signing: SigningKeyPair::generate(),
        }
    }
}

/// The list after `prev` naming `devices`, signed by `ik` (each device countersigning).
pub fn signed_list(
    ik: &SigningKeyPair,
    prev: Option<&CheckedList>,
    devices: &[&Signer],
) -> SignedDeviceList {
    let user_id = &devices[0].user_id;
    let entries = devices
        .iter()
        .map(|d| {
            device_list::listed_device(
                user_id,
                &ik.public_b64(),
                &d.device_id,
                &d.x25519,
                &d.signing,
            )
        })
        .collect();
    let st = device_list::next_statement(
        user_id,
        prev,
        &ik.public_b64(),
        entries,
        "2026-12-02T00:00:00Z".into(),
    );
    device_list::sign_statement(&st, ik)
}

/// Publish through the client library; the accepted list as checked locally.
pub async fn publish(
    by: &TestUser,
    list: SignedDeviceList,
    prev: Option<&CheckedList>,
) -> CheckedList {
    let accepted = by.rest.publish_device_list(&list).await.unwrap();
    let checked = device_list::check(&list, by.id(), prev).unwrap();
    assert_eq!(accepted.version, checked.statement.version);
    assert_eq!(accepted.hash, checked.hash);
    checked
}

/// POST a list as `by`: status and JSON body.
pub async fn post_list(by: &TestUser, list: &SignedDeviceList) -> (u16, serde_json::Value) {
    send_raw(
        by.rest
            .request(reqwest::Method::POST, "/devices/list")
            .json(list),
    )
    .await
}
