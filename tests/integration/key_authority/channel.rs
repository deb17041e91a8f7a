//! Channel envelopes under key authority.

use dialtone::crypto::e2e::generate_key;
use reqwest::Method;

use super::*;

/// alice (admin) creates a channel and wraps its key for herself and bob; carol and dave hold
/// nothing.
async fn setup() -> (TestServer, [TestUser; 4], String, SymmetricKey) {
    let (server, [alice, bob, carol, dave], channel) = four_users_and_a_channel().await;
    let key = generate_key();
    alice
        .rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&alice, &alice, &key), envelope(&alice, &bob, &key)],
        ))
        .await
        .unwrap();
    (server, [alice, bob, carol, dave], channel, key)
}

async fn envelopes_of(server: &TestServer, channel: &str) -> i64 {
    server
        .db
        .count(&format!(
            "SELECT count(*) AS v FROM channel_key_envelopes WHERE channel_id = '{channel}'"
        ))
        .await
}

#[tokio::test]
async fn squatting_fails_and_the_real_holder_then_shares() {
    let (server, [_alice, bob, carol, dave], channel, key) = setup().await;
    // carol holds no envelope: she can plant her own key neither for dave (the race of issue 10)
    // nor for herself.
    let planted = generate_key();
    for target in [&dave, &carol] {
        let (status, body) = post(
            &carol,
            "/channels/keys",
            &channel_upload(&channel, vec![envelope(&carol, target, &planted)]),
        )
        .await;
        assert_refused(status, &body, "not_key_holder", &[target]);
    }
    assert_eq!(envelopes_of(&server, &channel).await, 2, "nothing planted");

    // bob, who holds the key, shares it with dave and carol: 201, and they get the real key.
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &channel_upload(
            &channel,
            vec![envelope(&bob, &dave, &key), envelope(&bob, &carol, &key)],
        ),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(channel_key_of(&dave, &channel).await, Some(*key));
    assert_eq!(channel_key_of(&carol, &channel).await, Some(*key));
}

#[tokio::test]
async fn a_holder_cannot_overwrite_another_users_envelope_and_a_mixed_upload_writes_nothing() {
    let (server, [alice, bob, carol, dave], channel, key) = setup().await;
    alice
        .rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&alice, &carol, &key)],
        ))
        .await
        .unwrap();
    // bob holds the key but tries to swap carol's (written by alice) for one of his, in the same
    // upload as a legitimate envelope for dave: refused as a whole, naming only carol.
    let planted = generate_key();
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &channel_upload(
            &channel,
            vec![
                envelope(&bob, &dave, &key),
                envelope(&bob, &carol, &planted),
            ],
        ),
    )
    .await;
    assert_refused(status, &body, "envelope_conflict", &[&carol]);
    assert_eq!(
        channel_key_of(&carol, &channel).await,
        Some(*key),
        "carol's stays"
    );
    assert_eq!(
        channel_key_of(&dave, &channel).await,
        None,
        "all or nothing"
    );
    assert_eq!(envelopes_of(&server, &channel).await, 3);

    // The client drops the listed devices and retries: 201.
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &channel_upload(&channel, vec![envelope(&bob, &dave, &key)]),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(channel_key_of(&dave, &channel).await, Some(*key));

    // The typed client error carries the device ids.
    let err = bob
        .rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&bob, &carol, &planted)],
        ))
        .await
        .unwrap_err();
    match err {
        dialtone::client::ClientError::EnvelopeRefused {
            refusal: dialtone::client::EnvelopeRefusal::Conflict,
            device_ids,
            ..
        } => assert_eq!(device_ids, [carol.device()]),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn holder_reshares_to_a_new_device_replaces_its_own_and_admin_may_replace() {
    let (server, [alice, bob, carol, _dave], channel, key) = setup().await;
    let bob2 = server.new_device(&bob).await;
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &channel_upload(
            &channel,
            vec![envelope(&bob, &bob2, &key), envelope(&bob, &carol, &key)],
        ),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(channel_key_of(&bob2, &channel).await, Some(*key));

    // carol, now a holder, may replace the envelope addressed to her own device (bob's).
    let (status, body) = post(
        &carol,
        "/channels/keys",
        &channel_upload(&channel, vec![envelope(&carol, &carol, &key)]),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    let env = carol.rest.channel_key(&channel).await.unwrap().unwrap();
    assert_eq!(env.sender_device_id, carol.device());

    // An admin holds authority over public channels: alice replaces carol's envelope.
    let (status, body) = post(
        &alice,
        "/channels/keys",
        &channel_upload(&channel, vec![envelope(&alice, &carol, &key)]),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    let env = carol.rest.channel_key(&channel).await.unwrap().unwrap();
    assert_eq!(env.sender_device_id, alice.device());
}

#[tokio::test]
async fn identical_reupload_is_idempotent() {
    let (server, [_alice, bob, carol, _dave], channel, key) = setup().await;
    let upload = channel_upload(&channel, vec![envelope(&bob, &carol, &key)]);
    let (status, body) = post(&bob, "/channels/keys", &upload).await;
    assert_eq!(status, 201, "body: {body}");
    let first = carol.rest.channel_key(&channel).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, body) = post(&bob, "/channels/keys", &upload).await;
    assert_eq!(status, 201, "a byte-identical retry is accepted: {body}");
    let again = carol.rest.channel_key(&channel).await.unwrap().unwrap();
    assert_eq!(again, first, "and left as it was (not rewritten)");
    assert_eq!(envelopes_of(&server, &channel).await, 3);
}

#[tokio::test]
async fn a_device_deletes_only_its_own_envelope() {
    let (server, [alice, bob, carol, _dave], channel, key) = setup().await;
    let path = format!("/channels/keys?channel_id={channel}");
    let (status, body) = send_raw(carol.rest.request(Method::DELETE, &path)).await;
    assert_eq!(status, 404, "carol has none: {body}");
    assert_error_body(&body, "not_found");

    bob.rest.delete_channel_key(&channel).await.unwrap();
    assert_eq!(channel_key_of(&bob, &channel).await, None);
    assert_eq!(
        channel_key_of(&alice, &channel).await,
        Some(*key),
        "alice's stays"
    );
    assert_eq!(envelopes_of(&server, &channel).await, 1);
    let (status, _) = send_raw(bob.rest.request(Method::DELETE, &path)).await;
    assert_eq!(status, 404, "already gone");

    // bob wrapped nothing and holds nothing now: he lost authority; alice re-shares to him.
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &channel_upload(&channel, vec![envelope(&bob, &bob, &key)]),
    )
    .await;
    assert_refused(status, &body, "not_key_holder", &[&bob]);
    alice
        .rest
        .upload_channel_keys(&channel_upload(
            &channel,
            vec![envelope(&alice, &bob, &key)],
        ))
        .await
        .unwrap();
    assert_eq!(channel_key_of(&bob, &channel).await, Some(*key));

    let (status, body) = send_raw(carol.rest.request(Method::DELETE, &path)).await;
    assert_eq!(status, 404, "body: {body}");
    let (status, _) = send_raw(server.rest().request(Method::DELETE, &path)).await;
    assert_eq!(status, 401, "needs a session");
}

#[tokio::test]
async fn only_the_creator_or_an_admin_bootstraps_a_channel_without_envelopes() {
    let (server, [alice, bob, carol, _dave], _channel, _key) = setup().await;
    let mine = alice.rest.create_channel("bmFtZQ==").await.unwrap().id;
    let theirs = alice.rest.create_channel("bmFtZQ==").await.unwrap().id;
    // bob is recorded as the creator of `mine` (as when an admin who created it was demoted).
    server
        .db
        .execute(&format!(
            "UPDATE channels SET created_by = '{}' WHERE id = '{mine}'",
            bob.id()
        ))
        .await;
    let key = generate_key();
    let (status, body) = post(
        &carol,
        "/channels/keys",
        &channel_upload(&mine, vec![envelope(&carol, &carol, &key)]),
    )
    .await;
    assert_refused(status, &body, "not_key_holder", &[&carol]);
    // bob bootstraps in two batches: after the first, his device holds the key (it wrapped one).
    for target in [&carol, &bob] {
        let (status, body) = post(
            &bob,
            "/channels/keys",
            &channel_upload(&mine, vec![envelope(&bob, target, &key)]),
        )
        .await;
        assert_eq!(status, 201, "body: {body}");
    }
    assert_eq!(channel_key_of(&carol, &mine).await, Some(*key));
    // bob is not the creator of `theirs`, which has no envelopes: refused.
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &channel_upload(&theirs, vec![envelope(&bob, &bob, &key)]),
    )
    .await;
    assert_refused(status, &body, "not_key_holder", &[&bob]);
}
