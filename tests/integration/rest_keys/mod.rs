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

/// Upload `envelopes` both as `channel`'s and as the directory's: each must be refused with
/// `status` and `code` (the two endpoints check senders and targets alike).
async fn refused_both_ways(
    by: &TestUser,
    channel: &str,
    envelopes: Vec<EnvelopeUpload>,
    status: u16,
    code: &str,
) {
    assert_error(
        by.rest
            .upload_channel_keys(&channel_upload(channel, envelopes.clone()))
            .await,
        status,
        code,
    );
    assert_error(
        by.rest
            .upload_directory_keys(&DirectoryKeysUpload { envelopes })
            .await,
        status,
        code,
    );
}

/// After refused uploads: `bob` got neither envelope, and no envelope of either kind is stored.
async fn nothing_stored(server: &TestServer, bob: &TestUser, channel: &str) {
    assert!(bob.rest.channel_key(channel).await.unwrap().is_none());
    assert!(bob.rest.directory_key().await.unwrap().is_none());
    for table in ["channel_key_envelopes", "directory_key_envelopes"] {
        assert_eq!(
            count(server, &format!("SELECT count(*) AS v FROM {table}")).await,
            0,
            "{table}"
        );
    }
}
