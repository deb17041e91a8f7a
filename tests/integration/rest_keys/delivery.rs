//! Envelopes reach the device they are for, and only it; an upload replaces what it covers;
//! any member may wrap the channel key for others.

use super::*;

#[tokio::test]
async fn channel_envelopes_reach_only_their_device() {
    let (server, [alice, bob, carol, dave], channel) = four_users_and_a_channel().await;
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
async fn directory_envelopes_reach_only_their_device() {
    let (server, [alice, bob, carol, dave], _channel) = four_users_and_a_channel().await;
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
async fn upload_replaces_an_existing_envelope() {
    let (server, [alice, bob, ..], channel) = four_users_and_a_channel().await;
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
    let (server, [alice, bob, ..], channel) = four_users_and_a_channel().await;
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
