//! `POST|GET /devices/list`: what the server accepts, refuses and serves.

use dialtone::crypto::device_list;
use dialtone::crypto::sign::SigningKeyPair;
use dialtone::protocol::ws::event_type;

use super::*;

#[tokio::test]
async fn a_first_list_is_stored_served_verbatim_and_announced() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut bob_ws = server.ws(&bob).await;
    ws_ready(&mut bob_ws).await;
    // Nothing published yet.
    let none = bob.rest.device_lists(alice.id(), None).await.unwrap();
    assert_eq!((none.latest_version, none.lists.len()), (0, 0));

    let ik = SigningKeyPair::generate();
    let dev = Signer::new(&alice);
    let list = signed_list(&ik, None, &[&dev]);
    let v1 = publish(&alice, list.clone(), None).await;
    assert_eq!(v1.statement.version, 1);

    let e = bob_ws
        .expect_event(event_type::DEVICE_LIST_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.sender, alice.id());
    assert_eq!(e.version, Some(1));
    let served = bob.rest.device_lists(alice.id(), None).await.unwrap();
    assert_eq!(served.latest_version, 1);
    assert_eq!(served.lists, vec![list], "served exactly as signed");
    // Stored encrypted at rest: the statement names device keys.
    let stored = server
        .db
        .string("SELECT statement AS v FROM device_lists")
        .await
        .unwrap();
    assert!(stored.starts_with("enc:v1:"), "{stored}");
}

#[tokio::test]
async fn a_new_device_joins_only_when_a_listed_device_signs_it_in() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice2 = server.new_device(&alice).await;
    let ik = SigningKeyPair::generate();
    let (d1, d2) = (Signer::new(&alice), Signer::new(&alice2));
    let v1 = publish(&alice, signed_list(&ik, None, &[&d1]), None).await;

    // The new device cannot sign itself in, even holding the identity key.
    let v2 = signed_list(&ik, Some(&v1), &[&d1, &d2]);
    let (status, body) = post_list(&alice2, &v2).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    // A listed device can.
    let v2 = publish(&alice, v2, Some(&v1)).await;
    assert_eq!(v2.statement.devices.len(), 2);
    // From now on the new device may publish too.
    let v3 = signed_list(&ik, Some(&v2), &[&d2]);
    let v3 = publish(&alice2, v3, Some(&v2)).await;

    // Replays and lists that do not follow the newest one are 409.
    for stale in [
        v1.signed.clone(),
        v2.signed.clone(),
        signed_list(&ik, Some(&v2), &[&d1]),
    ] {
        let (status, body) = post_list(&alice, &stale).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "device_list_conflict", "{body}");
    }
    let all = alice.rest.device_lists(alice.id(), Some(0)).await.unwrap();
    assert_eq!(all.latest_version, 3);
    let chain: Vec<_> = [v1, v2, v3].into_iter().map(|l| l.signed).collect();
    assert_eq!(all.lists, chain);
    let tail = alice.rest.device_lists(alice.id(), Some(2)).await.unwrap();
    assert_eq!(tail.lists, chain[2..].to_vec());
}

#[tokio::test]
async fn lists_the_server_cannot_vouch_for_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let ik = SigningKeyPair::generate();
    let d1 = Signer::new(&alice);
    let good = signed_list(&ik, None, &[&d1]);

    // Another user's device in alice's list.
    let foreign = Signer::new(&bob);
    let (status, body) = post_list(&alice, &signed_list(&ik, None, &[&d1, &foreign])).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(bob.device()),
        "{body}"
    );
    // alice's device id with another X25519 key than the one it registered.
    let wrong_key = Signer {
        x25519: dialtone::crypto::e2e::DeviceKeypair::generate().public_key_b64(),
        ..Signer::new(&alice)
    };
    let (status, body) = post_list(&alice, &signed_list(&ik, None, &[&wrong_key])).await;
    assert_eq!(status, 400, "{body}");
    // Signed by another key than the identity key it names.
    let mut forged = good.clone();
    forged.identity_signature =
        signed_list(&SigningKeyPair::generate(), None, &[&d1]).identity_signature;
    let (status, body) = post_list(&alice, &forged).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_device_list")),
        "{body}"
    );
    // alice's list uploaded by bob.
    let (status, body) = post_list(&bob, &good).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_device_list")),
        "{body}"
    );
    // Malformed bodies.
    for raw in [
        serde_json::json!({"statement": "%%", "identity_signature": "AAAA"}),
        serde_json::json!({"statement": good.statement, "identity_signature": good.identity_signature, "extra": 1}),
        serde_json::json!({"statement": good.statement}),
    ] {
        let (status, body) = send_raw(
            alice
                .rest
                .request(reqwest::Method::POST, "/devices/list")
                .json(&raw),
        )
        .await;
        assert_eq!(status, 400, "{raw} → {body}");
    }
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM device_lists")
            .await,
        0
    );

    // The good one still goes in; then an identity change without a reset is refused.
    let v1 = publish(&alice, good, None).await;
    let other_ik = SigningKeyPair::generate();
    let silent = {
        let entries = vec![device_list::listed_device(
            alice.id(),
            &other_ik.public_b64(),
            alice.device(),
            &alice.keys.public_key_b64(),
            &d1.signing,
        )];
        let mut st = device_list::next_statement(
            alice.id(),
            Some(&v1),
            &other_ik.public_b64(),
            entries,
            "2026-12-02T00:00:00Z".into(),
        );
        st.reset = false;
        device_list::sign_statement(&st, &other_ik)
    };
    let (status, body) = post_list(&alice, &silent).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_device_list")),
        "{body}"
    );
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM device_lists")
            .await,
        1
    );

    // Fetching: unknown users are 404, bad ids 400.
    let (status, _) = send_raw(alice.rest.request(
        reqwest::Method::GET,
        "/devices/list?user_id=00000000-0000-4000-8000-000000000000",
    ))
    .await;
    assert_eq!(status, 404);
    let (status, _) = send_raw(
        alice
            .rest
            .request(reqwest::Method::GET, "/devices/list?user_id=nope"),
    )
    .await;
    assert_eq!(status, 400);
    // Versions are BIGINT: a cursor past the largest is refused, not read as "the end".
    let (status, body) = send_raw(alice.rest.request(
        reqwest::Method::GET,
        "/devices/list?after_version=9223372036854775808",
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_error_body(&body, "invalid_request");
}

#[tokio::test]
async fn concurrent_publishers_of_one_version_one_wins() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice2 = server.new_device(&alice).await;
    let ik = SigningKeyPair::generate();
    let (d1, d2) = (Signer::new(&alice), Signer::new(&alice2));
    let v1 = publish(&alice, signed_list(&ik, None, &[&d1, &d2]), None).await;
    let a = signed_list(&ik, Some(&v1), &[&d1]);
    let b = signed_list(&ik, Some(&v1), &[&d2]);
    let (ra, rb) = tokio::join!(post_list(&alice, &a), post_list(&alice2, &b));
    let mut statuses = [ra.0, rb.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{ra:?} {rb:?}");
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM device_lists")
            .await,
        2
    );
}
