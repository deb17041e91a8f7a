//! Key envelopes as tests upload them: a real X25519 wrap of a channel key from one user's device
//! to another's, the channel upload around them, and the four users and channel most key tests
//! start from.

use dialtone::crypto::e2e::SymmetricKey;
use dialtone::protocol::rest::{ChannelKeysUpload, EnvelopeUpload};

use super::server::{TestServer, TestUser};

/// An envelope of `key` from `sender`'s device to `target`'s device.
pub fn envelope(sender: &TestUser, target: &TestUser, key: &SymmetricKey) -> EnvelopeUpload {
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

/// A channel key upload of `envelopes` (no generation: the v1 form).
pub fn channel_upload(channel_id: &str, envelopes: Vec<EnvelopeUpload>) -> ChannelKeysUpload {
    ChannelKeysUpload {
        generation: None,
        channel_id: channel_id.to_owned(),
        envelopes,
    }
}

/// Users alice (admin), bob, carol and dave, and a channel made by alice.
pub async fn four_users_and_a_channel() -> (TestServer, [TestUser; 4], String) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap().id;
    (server, [alice, bob, carol, dave], channel)
}
