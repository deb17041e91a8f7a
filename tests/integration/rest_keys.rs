//! Key envelopes: `GET|POST /channels/keys` and `GET|POST /directory/keys` with real X25519
//! envelopes — delivery per device, all-or-nothing uploads, sender checks, replacement.

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

#[tokio::test]
async fn channel_envelopes_reach_only_their_device() {
    let (server, [alice, bob, carol, dave], channel) = setup().await;
    let bob2 = server.new_device(&bob).await;
    let key = generate_key();
    let upload = channel_upload(
        &channel,
        vec![
            envelope(&alice, &alice, &key),
            envelope(&alice, &bob, &key),
            envelope(&alice, &bob2, &key),
            envelope(&alice, &carol, &key),
        ],
    );
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/channels/keys")
            .json(&upload),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");

    for (user, sent) in [
        (&alice, &upload.envelopes[0]),
        (&bob, &upload.envelopes[1]),
        (&bob2, &upload.envelopes[2]),
        (&carol, &upload.envelopes[3]),
    ] {
        let (status, body) = send_raw(
            user.rest
                .request(Method::GET, &format!("/channels/keys?channel_id={channel}")),
        )
        .await;
        assert_eq!(status, 200, "{}: {body}", user.name);
        assert_eq!(
            json_keys(&body),
            [
                "channel_id",
                "created_at",
                "device_id",
                "envelope",
                "sender_device_id",
                "sender_public_key"
            ]
        );
        let got = user
            .rest
            .channel_key(&channel)
            .await
            .unwrap()
            .expect("an envelope");
        assert_eq!(got.channel_id, channel);
        assert_eq!(
            got.device_id,
            user.device(),
            "{} gets its own device's envelope",
            user.name
        );
        assert_eq!(got.envelope, sent.envelope);
        assert_eq!(got.sender_device_id, alice.device());
        assert_eq!(got.sender_public_key, alice.keys.public_key_b64());
        assert_utc(&got.created_at);
        let unwrapped = user
            .keys
            .unwrap_from(&got.sender_public_key, &got.envelope)
            .unwrap();
        assert_eq!(*unwrapped, *key, "{} recovers the channel key", user.name);
    }
    // Dave's device has none.
    let (status, body) = send_raw(
        dave.rest
            .request(Method::GET, &format!("/channels/keys?channel_id={channel}")),
    )
    .await;
    assert_eq!(status, 404, "body: {body}");
    assert_error_body(&body, "not_found");
    assert!(dave.rest.channel_key(&channel).await.unwrap().is_none());
    assert_eq!(
        count(
            &server,
            &format!(
                "SELECT count(*) AS v FROM channel_key_envelopes WHERE channel_id = '{channel}'"
            )
        )
        .await,
        4
    );
}

#[tokio::test]
async fn channel_key_of_unknown_channel_is_404() {
    let (_server, [alice, ..], _channel) = setup().await;
    assert!(
        alice
            .rest
            .channel_key(&uuid::Uuid::new_v4().to_string())
            .await
            .unwrap()
            .is_none()
    );
    let (status, body) = send_raw(alice.rest.request(
        Method::GET,
        &format!("/channels/keys?channel_id={}", uuid::Uuid::new_v4()),
    ))
    .await;
    assert_eq!(status, 404);
    assert_error_body(&body, "not_found");
}

#[tokio::test]
async fn key_envelopes_need_a_session() {
    let (server, [alice, bob, ..], channel) = setup().await;
    let key = generate_key();
    let anon = server.rest();
    assert_error(anon.channel_key(&channel).await, 401, "unauthorized");
    assert_error(anon.directory_key().await, 401, "unauthorized");
    assert_error(
        anon.upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&alice, &bob, &key)],
        ))
        .await,
        401,
        "unauthorized",
    );
    assert_error(
        anon.upload_directory_keys(&DirectoryKeysUpload {
            envelopes: vec![envelope(&alice, &bob, &key)],
        })
        .await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn directory_envelopes_reach_only_their_device() {
    let (server, [alice, bob, carol, dave], _channel) = setup().await;
    // None yet: 204 with no body.
    let (status, body) = send_raw(bob.rest.request(Method::GET, "/directory/keys")).await;
    assert_eq!(status, 204);
    assert_eq!(body, serde_json::Value::Null);
    assert!(bob.rest.directory_key().await.unwrap().is_none());

    let key = generate_key();
    let upload = DirectoryKeysUpload {
        envelopes: vec![
            envelope(&alice, &alice, &key),
            envelope(&alice, &bob, &key),
            envelope(&alice, &carol, &key),
        ],
    };
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/directory/keys")
            .json(&upload),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");

    for (user, sent) in [
        (&alice, &upload.envelopes[0]),
        (&bob, &upload.envelopes[1]),
        (&carol, &upload.envelopes[2]),
    ] {
        let (status, body) = send_raw(user.rest.request(Method::GET, "/directory/keys")).await;
        assert_eq!(status, 200, "{}: {body}", user.name);
        assert_eq!(
            json_keys(&body),
            [
                "created_at",
                "device_id",
                "envelope",
                "sender_device_id",
                "sender_public_key"
            ]
        );
        let got = user
            .rest
            .directory_key()
            .await
            .unwrap()
            .expect("an envelope");
        assert_eq!(got.device_id, user.device());
        assert_eq!(got.envelope, sent.envelope);
        assert_eq!(got.sender_device_id, alice.device());
        assert_eq!(got.sender_public_key, alice.keys.public_key_b64());
        assert_utc(&got.created_at);
        assert_eq!(
            *user
                .keys
                .unwrap_from(&got.sender_public_key, &got.envelope)
                .unwrap(),
            *key
        );
    }
    let (status, _) = send_raw(dave.rest.request(Method::GET, "/directory/keys")).await;
    assert_eq!(status, 204, "dave has no directory envelope");
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM directory_key_envelopes").await,
        3
    );
}

#[tokio::test]
async fn foreign_sender_device_is_403_and_nothing_is_stored() {
    let (server, [alice, bob, carol, _dave], channel) = setup().await;
    let key = generate_key();
    // The second envelope claims to come from bob's device.
    let forged = EnvelopeUpload {
        sender_device_id: bob.device().to_owned(),
        ..envelope(&alice, &carol, &key)
    };
    let envelopes = vec![envelope(&alice, &bob, &key), forged];
    assert_error(
        alice
            .rest
            .upload_channel_keys(&channel_upload(&channel, envelopes.clone()))
            .await,
        403,
        "forbidden",
    );
    assert_error(
        alice
            .rest
            .upload_directory_keys(&DirectoryKeysUpload { envelopes })
            .await,
        403,
        "forbidden",
    );
    assert!(bob.rest.channel_key(&channel).await.unwrap().is_none());
    assert!(bob.rest.directory_key().await.unwrap().is_none());
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM channel_key_envelopes").await,
        0
    );
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM directory_key_envelopes").await,
        0
    );

    // Alice's other device is not "the caller's device" either.
    let alice2 = server.new_device(&alice).await;
    let other_device = EnvelopeUpload {
        sender_device_id: alice2.device().to_owned(),
        ..envelope(&alice, &bob, &key)
    };
    assert_error(
        alice
            .rest
            .upload_channel_keys(&channel_upload(&channel, vec![other_device]))
            .await,
        403,
        "forbidden",
    );
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM channel_key_envelopes").await,
        0
    );
}

#[tokio::test]
async fn sender_public_key_must_be_the_callers_registered_key() {
    let (server, [alice, bob, carol, _dave], channel) = setup().await;
    let alice2 = server.new_device(&alice).await;
    let key = generate_key();
    let stranger = DeviceKeypair::generate().public_key_b64();
    for claimed in [
        bob.keys.public_key_b64(),
        alice2.keys.public_key_b64(),
        stranger,
        "AAAA".to_owned(),
    ] {
        let wrong = EnvelopeUpload {
            sender_public_key: claimed.clone(),
            ..envelope(&alice, &carol, &key)
        };
        let envelopes = vec![envelope(&alice, &bob, &key), wrong];
        assert_error(
            alice
                .rest
                .upload_channel_keys(&channel_upload(&channel, envelopes.clone()))
                .await,
            403,
            "forbidden",
        );
        assert_error(
            alice
                .rest
                .upload_directory_keys(&DirectoryKeysUpload { envelopes })
                .await,
            403,
            "forbidden",
        );
    }
    assert!(bob.rest.channel_key(&channel).await.unwrap().is_none());
    assert!(bob.rest.directory_key().await.unwrap().is_none());
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM channel_key_envelopes").await,
        0
    );
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM directory_key_envelopes").await,
        0
    );
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

#[tokio::test]
async fn unknown_target_device_is_404_and_no_channel_envelope_is_stored() {
    let (server, [alice, bob, carol, _dave], channel) = setup().await;
    let key = generate_key();
    for target in [
        uuid::Uuid::new_v4().to_string(),
        "no-such-device".to_owned(),
    ] {
        let envelopes = with_unknown_target(&alice, &bob, &carol, &key, &target);
        assert_error(
            alice
                .rest
                .upload_channel_keys(&channel_upload(&channel, envelopes))
                .await,
            404,
            "not_found",
        );
        assert!(
            bob.rest.channel_key(&channel).await.unwrap().is_none(),
            "bob's envelope was stored although the upload failed (target {target})"
        );
        assert_eq!(
            count(&server, "SELECT count(*) AS v FROM channel_key_envelopes").await,
            0
        );
    }
}

#[tokio::test]
async fn unknown_target_device_is_404_and_no_directory_envelope_is_stored() {
    let (server, [alice, bob, carol, _dave], _channel) = setup().await;
    let key = generate_key();
    for target in [
        uuid::Uuid::new_v4().to_string(),
        "no-such-device".to_owned(),
    ] {
        let envelopes = with_unknown_target(&alice, &bob, &carol, &key, &target);
        assert_error(
            alice
                .rest
                .upload_directory_keys(&DirectoryKeysUpload { envelopes })
                .await,
            404,
            "not_found",
        );
        assert!(
            bob.rest.directory_key().await.unwrap().is_none(),
            "bob's envelope was stored although the upload failed (target {target})"
        );
        assert_eq!(
            count(&server, "SELECT count(*) AS v FROM directory_key_envelopes").await,
            0
        );
    }
}

#[tokio::test]
async fn upload_to_unknown_channel_is_404() {
    let (server, [alice, bob, ..], _channel) = setup().await;
    let key = generate_key();
    for id in [
        uuid::Uuid::new_v4().to_string(),
        "no-such-channel".to_owned(),
    ] {
        assert_error(
            alice
                .rest
                .upload_channel_keys(&channel_upload(&id, vec![envelope(&alice, &bob, &key)]))
                .await,
            404,
            "not_found",
        );
    }
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM channel_key_envelopes").await,
        0
    );
}

#[tokio::test]
async fn inner_channel_id_must_match_the_outer_one() {
    let (server, [alice, bob, carol, _dave], channel) = setup().await;
    let other = alice.rest.create_channel("b3RoZXI=").await.unwrap().id;
    let key = generate_key();

    // v1 clients repeat channel_id in each envelope: accepted when it matches.
    let same = EnvelopeUpload {
        channel_id: Some(channel.clone()),
        ..envelope(&alice, &bob, &key)
    };
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/channels/keys")
            .json(&channel_upload(&channel, vec![same])),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    let got = bob
        .rest
        .channel_key(&channel)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        *bob.keys
            .unwrap_from(&got.sender_public_key, &got.envelope)
            .unwrap(),
        *key
    );

    // A different one is refused, and the whole upload with it.
    let differs = EnvelopeUpload {
        channel_id: Some(other.clone()),
        ..envelope(&alice, &carol, &key)
    };
    let matching = EnvelopeUpload {
        channel_id: Some(channel.clone()),
        ..envelope(&alice, &alice, &key)
    };
    assert_error(
        alice
            .rest
            .upload_channel_keys(&channel_upload(&channel, vec![matching, differs]))
            .await,
        400,
        "invalid_request",
    );
    assert!(carol.rest.channel_key(&channel).await.unwrap().is_none());
    assert!(carol.rest.channel_key(&other).await.unwrap().is_none());
    assert!(alice.rest.channel_key(&channel).await.unwrap().is_none());
    assert_eq!(
        count(&server, "SELECT count(*) AS v FROM channel_key_envelopes").await,
        1
    );
}

#[tokio::test]
async fn upload_replaces_an_existing_envelope() {
    let (server, [alice, bob, ..], channel) = setup().await;
    let alice2 = server.new_device(&alice).await;
    let first = generate_key();
    alice
        .rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&alice, &bob, &first)],
        ))
        .await
        .unwrap();
    alice
        .rest
        .upload_directory_keys(&DirectoryKeysUpload {
            envelopes: vec![envelope(&alice, &bob, &first)],
        })
        .await
        .unwrap();
    let old = bob.rest.channel_key(&channel).await.unwrap().unwrap();
    assert_eq!(
        *bob.keys
            .unwrap_from(&old.sender_public_key, &old.envelope)
            .unwrap(),
        *first
    );

    // Rotation from alice's other device: bob now gets the new key, from the new sender.
    let second = generate_key();
    alice2
        .rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&alice2, &bob, &second)],
        ))
        .await
        .unwrap();
    alice2
        .rest
        .upload_directory_keys(&DirectoryKeysUpload {
            envelopes: vec![envelope(&alice2, &bob, &second)],
        })
        .await
        .unwrap();

    let new = bob.rest.channel_key(&channel).await.unwrap().unwrap();
    assert_eq!(new.sender_device_id, alice2.device());
    assert_eq!(new.sender_public_key, alice2.keys.public_key_b64());
    assert_ne!(new.envelope, old.envelope);
    assert_eq!(
        *bob.keys
            .unwrap_from(&new.sender_public_key, &new.envelope)
            .unwrap(),
        *second
    );
    assert!(assert_utc(&new.created_at) >= assert_utc(&old.created_at));

    let dir = bob.rest.directory_key().await.unwrap().unwrap();
    assert_eq!(dir.sender_device_id, alice2.device());
    assert_eq!(
        *bob.keys
            .unwrap_from(&dir.sender_public_key, &dir.envelope)
            .unwrap(),
        *second
    );

    let bob_dev = bob.device();
    assert_eq!(
        count(
            &server,
            &format!(
                "SELECT count(*) AS v FROM channel_key_envelopes WHERE device_id = '{bob_dev}'"
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &server,
            &format!(
                "SELECT count(*) AS v FROM directory_key_envelopes WHERE device_id = '{bob_dev}'"
            )
        )
        .await,
        1
    );
}

#[tokio::test]
async fn any_member_may_wrap_the_key_for_others() {
    // Envelopes are written by whoever holds the key, not only admins (e.g. bob re-wrapping for
    // his new device).
    let (server, [alice, bob, ..], channel) = setup().await;
    let key = generate_key();
    alice
        .rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&alice, &bob, &key)],
        ))
        .await
        .unwrap();
    let bob2 = server.new_device(&bob).await;
    let got = bob.rest.channel_key(&channel).await.unwrap().unwrap();
    let recovered = bob
        .keys
        .unwrap_from(&got.sender_public_key, &got.envelope)
        .unwrap();
    bob.rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&bob, &bob2, &recovered)],
        ))
        .await
        .unwrap();
    let mine = bob2.rest.channel_key(&channel).await.unwrap().unwrap();
    assert_eq!(mine.sender_device_id, bob.device());
    assert_eq!(
        *bob2
            .keys
            .unwrap_from(&mine.sender_public_key, &mine.envelope)
            .unwrap(),
        *key
    );
}
