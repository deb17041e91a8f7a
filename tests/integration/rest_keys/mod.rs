//! Key envelopes: `GET|POST /channels/keys` and `GET|POST /directory/keys` with real X25519
//! envelopes — delivery per device, all-or-nothing uploads, sender checks, replacement.

mod delivery;
mod refusals;

use dialtone::crypto::e2e::{DeviceKeypair, SymmetricKey, generate_key};
use dialtone::protocol::rest::{ChannelKeysUpload, DirectoryKeysUpload, EnvelopeUpload};
use reqwest::Method;

use crate::support::*;

/// An envelope of `key` from `sender`'s device to `target`'s device.
fn envelope(sender: &TestUser, target: &TestUser, key: &SymmetricKey) -> EnvelopeUpload {
    EnvelopeUpload {
        device_id: target.device().to_owned(),
        sender_device_id: sender.device().to_owned(),
        sender_public_key: sender.keys.public_key_b64(),
        envelope: sender
            .keys
            .wrap_for(&target.keys.public_key_b64(), key)
            .unwrap(),
        channel_id: None,
    }
}

fn channel_upload(channel_id: &str, envelopes: Vec<EnvelopeUpload>) -> ChannelKeysUpload {
    ChannelKeysUpload {
        generation: None,
        channel_id: channel_id.to_owned(),
        envelopes,
    }
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    server.db.count(sql).await
}

/// Users alice (admin), bob, carol and dave, and a channel made by alice.
async fn setup() -> (TestServer, [TestUser; 4], String) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap().id;
    (server, [alice, bob, carol, dave], channel)
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
