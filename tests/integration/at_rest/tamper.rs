//! Tampered or moved ciphertexts fail cleanly: a bare 500 for the client, the cause in the log.

use std::collections::BTreeSet;

use dialtone::client::ClientError;
use dialtone::crypto::e2e::DeviceKeypair;

use super::*;

/// Flip one base64 character of the ciphertext body (past the nonce) of an `enc:v1:` value.
fn flip_char(stored: &str) -> String {
    let id = enc_key_id(stored).expect("enc value");
    let prefix_len = "enc:v1:".len() + id.len() + 1;
    let mut chars: Vec<char> = stored.chars().collect();
    let i = prefix_len + 20;
    assert!(i < chars.len() - 2 && chars[i] != '=');
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn tampered_or_moved_ciphertext_fails_cleanly() {
    let mut server = TestServer::start().await;
    // Each refused value is a 500 with its cause in the log: that is the point of the test.
    server
        .expect_error("failed to decrypt")
        .expect_error("request failed status=500");
    let alice = server.user("tamperalice").await;
    let bob = server.user("tamperbob").await;
    let bob_extra = DeviceKeypair::generate();
    let bob_dev2 = bob
        .rest
        .add_device(bob.id(), &bob_extra.public_key_b64())
        .await
        .unwrap();
    let read = |id: String| {
        let db = &server.db;
        async move {
            db.string(&format!(
                "SELECT public_key AS v FROM devices WHERE id = '{id}'"
            ))
            .await
            .unwrap()
        }
    };
    let original = read(bob.device().to_owned()).await;
    let original2 = read(bob_dev2.id.clone()).await;
    let key_id = enc_key_id(&original).unwrap().to_owned();

    let corruptions = [
        ("flipped character", flip_char(&original)),
        ("unknown key id", original.replacen(&key_id, "00000000", 1)),
        ("truncated", original[..original.len() - 12].to_owned()),
        ("not base64", format!("enc:v1:{key_id}:%%%not-base64%%%")),
        ("unknown format", "enc:v9:abc:def".to_owned()),
    ];
    for (what, bad) in corruptions {
        assert_ne!(bad, original);
        server
            .db
            .execute(&format!(
                "UPDATE devices SET public_key = '{bad}' WHERE id = '{}'",
                bob.device()
            ))
            .await;
        let r = bob.rest.device_keys(bob.id()).await;
        assert!(
            matches!(r, Err(ClientError::Api { status: 500, .. })),
            "{what}: {r:?}"
        );
        assert_internal_error(r);
        // ?all=1 reads that row too.
        assert_internal_error(alice.rest.all_device_keys().await);
        // The server keeps serving everything else.
        server.rest().health().await.unwrap();
        let keys = alice.rest.device_keys(alice.id()).await.unwrap();
        assert_eq!(
            keys.keys[0].public_key,
            alice.keys.public_key_b64(),
            "{what}"
        );
        // The bad value is reported, never "repaired" or overwritten.
        assert_eq!(read(bob.device().to_owned()).await, bad, "{what}");
    }

    // Restored, the row reads again: the failures were the corruption's doing.
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = '{original}' WHERE id = '{}'",
            bob.device()
        ))
        .await;
    let keys = bob.rest.device_keys(bob.id()).await.unwrap();
    assert_eq!(keys.keys.len(), 2);

    // A valid ciphertext moved to another row (the AAD binds the row id) fails the same way:
    // bob's second device gets his first device's ciphertext.
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = '{original}' WHERE id = '{}'",
            bob_dev2.id
        ))
        .await;
    assert_internal_error(bob.rest.device_keys(bob.id()).await);
    server.rest().health().await.unwrap();
    assert_eq!(
        alice.rest.device_keys(alice.id()).await.unwrap().keys.len(),
        1
    );
    assert_eq!(read(bob_dev2.id.clone()).await, original);

    // Across users too: alice's ciphertext on bob's second device.
    let alice_enc = read(alice.device().to_owned()).await;
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = '{alice_enc}' WHERE id = '{}'",
            bob_dev2.id
        ))
        .await;
    assert_internal_error(bob.rest.device_keys(bob.id()).await);

    // Put bob's second device back; it reads again.
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = '{original2}' WHERE id = '{}'",
            bob_dev2.id
        ))
        .await;
    let keys = bob.rest.device_keys(bob.id()).await.unwrap();
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
    // A username ciphertext copied onto another user fails the admin listing the same way.
    let alice_name = server
        .db
        .string(&format!(
            "SELECT username AS v FROM users WHERE id = '{}'",
            alice.id()
        ))
        .await
        .unwrap();
    let bob_name = server
        .db
        .string(&format!(
            "SELECT username AS v FROM users WHERE id = '{}'",
            bob.id()
        ))
        .await
        .unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE users SET username = '{alice_name}' WHERE id = '{}'",
            bob.id()
        ))
        .await;
    assert_internal_error(server.admin().admin_users().await);
    server.rest().health().await.unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE users SET username = '{bob_name}' WHERE id = '{}'",
            bob.id()
        ))
        .await;
    let mut names: Vec<String> = server
        .admin()
        .admin_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    names.sort();
    assert_eq!(names, ["tamperalice", "tamperbob"]);
}
