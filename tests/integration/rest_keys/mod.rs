//! Key envelopes: `GET|POST /channels/keys` and `GET|POST /directory/keys` with real X25519
//! envelopes — delivery per device, all-or-nothing uploads, sender checks, replacement.

mod delivery;
mod refusals;

use dialtone::crypto::e2e::{DeviceKeypair, SymmetricKey, generate_key};
use dialtone::protocol::rest::{DirectoryKeysUpload, EnvelopeUpload};
use reqwest::Method;

use crate::support::*;

async fn count(server: &TestServer, sql: &str) -> i64 {
    server.db.count(sql).await
}

/// Envelopes for bob (a real device) then for a device that does not exist.
fn with_unknown_target(
    alice: &TestUser,
    bob: &TestUser,
    carol: &TestUser,
    key: &SymmetricKey,
    target: &str,
) -> Vec<EnvelopeUpload> {
    let ghost = EnvelopeUpload {
        device_id: target.to_owned(),
        ..envelope(alice, carol, key)
    };
    vec![envelope(alice, bob, key), ghost]
}
