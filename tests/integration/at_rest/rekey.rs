//! `dialtone rekey`: every encrypted value moves to the new key.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::ws::{ClientFrame, event_type};

use super::*;

#[tokio::test]
async fn rekey_moves_every_value_to_the_new_key() {
    let mut server = TestServer::start().await;
    let k1 = server.settings.vars["DIALTONE_CHANNEL_KEY"].clone();
    let k2 = STANDARD.encode(dialtone::crypto::random_bytes(32));

    // Data under K1: three usernames, three devices (one of them legacy plaintext), a broadcast.
    let alice = server.user("rekeyalice").await;
    let bob = server.user("rekeybob").await;
    let bob_extra = DeviceKeypair::generate();
    let bob_dev2 = bob
        .rest
        .add_device(bob.id(), &bob_extra.public_key_b64())
        .await
        .unwrap();
    alice.rest.create_user("rekeyplaceholder").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
    ws.send(&ClientFrame::broadcast(
        "Ym9keQ==",
        "bmFtZQ==",
        alice.keys.public_key_b64(),
        BTreeMap::from([(bob.device().to_owned(), "ZW52".to_owned())]),
    ))
    .await
    .unwrap();
    ws.expect_event(event_type::MESSAGE_BROADCAST, WAIT)
        .await
        .unwrap();
    ws.close().await.unwrap();
    // And a signed device list (trust v2): its statement is encrypted at rest too.
    let ik = dialtone::crypto::sign::SigningKeyPair::generate();
    let alice_list = crate::trust::signed_list(&ik, None, &[&crate::trust::Signer::new(&alice)]);
    alice.rest.publish_device_list(&alice_list).await.unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = '{}', public_key_hash = NULL WHERE id = '{}'",
            bob_extra.public_key_b64(),
            bob_dev2.id
        ))
        .await;

    let before = key_ids(&server).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let old_id = before.into_iter().next().unwrap();
    let hashes_before: BTreeSet<String> = column(&server, "devices", "public_key_hash")
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(hashes_before.len(), 2);
    server.stop().await.expect("clean shutdown");

    // dialtone rekey: K2 current, K1 previous.
    let (code, stdout, stderr) = run_rekey(&server, &k2, Some(&k1)).await;
    assert_eq!(code, 0, "rekey failed\nstdout: {stdout}\nstderr: {stderr}");
    let report = rekey_report(&stdout);
    let new_id = report["key_id"].as_str().expect("key_id").to_owned();
    assert_ne!(new_id, old_id);
    assert_rekey_counts(&report, "users_username", 3, 0);
    assert_rekey_counts(&report, "devices_public_key", 3, 0);
    assert_rekey_counts(&report, "broadcast_sender_name", 1, 0);
    assert_rekey_counts(&report, "broadcast_sender_public_key", 1, 0);
    assert_rekey_counts(&report, "device_lists_statement", 1, 0);

    // Every value is now under K2's key id; nothing is plaintext; the device hashes moved too.
    assert_eq!(key_ids(&server).await, BTreeSet::from([new_id.clone()]));
    assert_eq!(encrypted_values(&server).await.len(), 3 + 3 + 2 + 1);
    for v in column(&server, "devices", "public_key").await {
        assert!(v.unwrap().starts_with("enc:v1:"));
    }
    let hashes_after: Vec<String> = column(&server, "devices", "public_key_hash")
        .await
        .into_iter()
        .map(|h| h.expect("hash filled"))
        .collect();
    assert_eq!(hashes_after.len(), 3);
    assert!(
        hashes_after.iter().all(|h| !hashes_before.contains(h)),
        "device hashes still under K1"
    );
    let snapshot = encrypted_values(&server).await;

    // A second run has nothing to do.
    let (code, stdout, stderr) = run_rekey(&server, &k2, Some(&k1)).await;
    assert_eq!(
        code, 0,
        "second rekey failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let report = rekey_report(&stdout);
    assert_eq!(report["key_id"], new_id.as_str());
    assert_rekey_counts(&report, "users_username", 0, 3);
    assert_rekey_counts(&report, "devices_public_key", 0, 3);
    assert_rekey_counts(&report, "broadcast_sender_name", 0, 1);
    assert_rekey_counts(&report, "broadcast_sender_public_key", 0, 1);
    assert_rekey_counts(&report, "device_lists_statement", 0, 1);
    assert_eq!(encrypted_values(&server).await, snapshot);

    // Servers on the rekeyed database: K2 with K1 as previous, then K2 alone.
    for previous in [Some(k1.clone()), None] {
        let k2 = k2.clone();
        server
            .restart_with(move |s| {
                s.set("DIALTONE_CHANNEL_KEY", k2);
                match previous {
                    Some(p) => {
                        s.set("DIALTONE_CHANNEL_KEY_PREVIOUS", p);
                    }
                    None => {
                        s.vars.remove("DIALTONE_CHANNEL_KEY_PREVIOUS");
                    }
                }
            })
            .await;
        // Old sessions survive; logins find the same devices through the rotated hashes.
        let old_session = server.rest().with_token(alice.token());
        assert_eq!(
            old_session
                .device_keys(alice.id())
                .await
                .unwrap()
                .keys
                .len(),
            1
        );
        let a = login(&server, "rekeyalice", &alice.keys.public_key_b64())
            .await
            .unwrap();
        assert_eq!(a.device_id, alice.device());
        let b = login(&server, "rekeybob", &bob_extra.public_key_b64())
            .await
            .unwrap();
        assert_eq!(b.device_id, bob_dev2.id);
        let lists = server
            .rest()
            .with_token(&b.token)
            .device_lists(alice.id(), None)
            .await
            .unwrap();
        assert_eq!(
            lists.lists,
            vec![alice_list.clone()],
            "the same signed bytes"
        );
        let keys = server
            .rest()
            .with_token(&b.token)
            .device_keys(bob.id())
            .await
            .unwrap();
        let listed: BTreeSet<(String, String)> = keys
            .keys
            .into_iter()
            .map(|k| (k.device_id, k.public_key))
            .collect();
        assert_eq!(
            listed,
            BTreeSet::from([
                (bob.device().to_owned(), bob.keys.public_key_b64()),
                (bob_dev2.id.clone(), bob_extra.public_key_b64()),
            ])
        );
        let mut names: Vec<String> = server
            .admin()
            .admin_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        names.sort();
        assert_eq!(names, ["rekeyalice", "rekeybob", "rekeyplaceholder"]);
        assert_eq!(
            server.db.count("SELECT COUNT(*) AS v FROM devices").await,
            3
        );
        assert_eq!(key_ids(&server).await, BTreeSet::from([new_id.clone()]));
    }

    // The old key alone no longer opens anything: a clean 500, and nothing is overwritten.
    let k1_only = k1.clone();
    server
        .restart_with(move |s| {
            s.set("DIALTONE_CHANNEL_KEY", k1_only);
            s.vars.remove("DIALTONE_CHANNEL_KEY_PREVIOUS");
        })
        .await;
    server
        .expect_error("failed to decrypt")
        .expect_error("request failed status=500");
    let before = encrypted_values(&server).await;
    assert_internal_error(server.admin().admin_users().await);
    assert_internal_error(
        server
            .rest()
            .with_token(alice.token())
            .device_keys(alice.id())
            .await,
    );
    server.rest().health().await.unwrap();
    assert_eq!(encrypted_values(&server).await, before);
}
