//! What an upload is refused for (no session, an unknown channel or device, a sender device or
//! key that is not the caller's, a mismatched inner channel id), and that nothing is stored then.

use super::*;

#[tokio::test]
async fn channel_key_of_unknown_channel_is_404() {
    let (_server, [alice, ..], _channel) = four_users_and_a_channel().await;
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
    let (server, [alice, bob, ..], channel) = four_users_and_a_channel().await;
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
async fn foreign_sender_device_is_403_and_nothing_is_stored() {
    let (server, [alice, bob, carol, _dave], channel) = four_users_and_a_channel().await;
    let key = generate_key();
    // The second envelope claims to come from bob's device.
    let forged = EnvelopeUpload {
        sender_device_id: bob.device().to_owned(),
        ..envelope(&alice, &carol, &key)
    };
    let envelopes = vec![envelope(&alice, &bob, &key), forged];
    refused_both_ways(&alice, &channel, envelopes, 403, "forbidden").await;
    nothing_stored(&server, &bob, &channel).await;

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
    let (server, [alice, bob, carol, _dave], channel) = four_users_and_a_channel().await;
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
        refused_both_ways(&alice, &channel, envelopes, 403, "forbidden").await;
    }
    nothing_stored(&server, &bob, &channel).await;
}

#[tokio::test]
async fn unknown_target_device_is_404_and_no_envelope_is_stored() {
    let (server, [alice, bob, carol, _dave], channel) = four_users_and_a_channel().await;
    let key = generate_key();
    for target in [
        uuid::Uuid::new_v4().to_string(),
        "no-such-device".to_owned(),
    ] {
        let envelopes = with_unknown_target(&alice, &bob, &carol, &key, &target);
        refused_both_ways(&alice, &channel, envelopes, 404, "not_found").await;
        // bob's envelope came first: the refusal took it back.
        nothing_stored(&server, &bob, &channel).await;
    }
}

#[tokio::test]
async fn upload_to_unknown_channel_is_404() {
    let (server, [alice, bob, ..], _channel) = four_users_and_a_channel().await;
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
    let (server, [alice, bob, carol, _dave], channel) = four_users_and_a_channel().await;
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
