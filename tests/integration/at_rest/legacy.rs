//! Lazy encryption of legacy (dialtone v1) plaintext rows: a device key is encrypted on its
//! first read and still found by login.

use std::collections::BTreeSet;

use base64::Engine;
use dialtone::crypto::e2e::DeviceKeypair;

use super::*;

#[tokio::test]
async fn legacy_plaintext_device_key_is_encrypted_on_first_read() {
    let server = TestServer::start().await;
    let user = server.user("legacyreader").await;
    let key = user.keys.public_key_b64();
    let device = user.device().to_owned();
    let original_hash = server
        .db
        .string(&format!(
            "SELECT public_key_hash AS v FROM devices WHERE id = '{device}'"
        ))
        .await
        .expect("hash stored at registration");

    // Make the row look like dialtone v1 wrote it.
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = '{key}', public_key_hash = NULL WHERE id = '{device}'"
        ))
        .await;
    assert_eq!(
        server
            .db
            .string(&format!(
                "SELECT public_key AS v FROM devices WHERE id = '{device}'"
            ))
            .await,
        Some(key.clone())
    );

    // One read through the API.
    let keys = user.rest.device_keys(user.id()).await.unwrap();
    assert_eq!(keys.user_id, user.id());
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].device_id, device);
    assert_eq!(keys.keys[0].public_key, key);

    let stored = server
        .db
        .string(&format!(
            "SELECT public_key AS v FROM devices WHERE id = '{device}'"
        ))
        .await
        .unwrap();
    assert!(
        stored.starts_with("enc:v1:"),
        "still plaintext after a read: {stored}"
    );
    assert!(!stored.contains(key.trim_end_matches('=')));
    let hash = server
        .db
        .string(&format!(
            "SELECT public_key_hash AS v FROM devices WHERE id = '{device}'"
        ))
        .await;
    assert_eq!(
        hash.as_deref(),
        Some(original_hash.as_str()),
        "hash filled (same keyed hash)"
    );
    // Same key id as the rest of the database.
    assert_eq!(key_ids(&server).await.len(), 1);

    // Login with that key reuses the device.
    let again = login(&server, &user.name, &key).await.unwrap();
    assert_eq!(again.device_id, device);
    assert_eq!(
        server.db.count("SELECT COUNT(*) AS v FROM devices").await,
        1
    );
    // A second read returns the same key and leaves the (already current) ciphertext alone.
    let keys = user.rest.device_keys(user.id()).await.unwrap();
    assert_eq!(keys.keys[0].public_key, key);
    assert_eq!(
        server
            .db
            .string(&format!(
                "SELECT public_key AS v FROM devices WHERE id = '{device}'"
            ))
            .await,
        Some(stored)
    );
}

#[tokio::test]
async fn legacy_plaintext_device_key_is_found_by_login() {
    let server = TestServer::start().await;
    let user = server.user("legacylogin").await;
    // A second device, made legacy; the first session stays on the first device.
    let second = DeviceKeypair::generate();
    let second_key = second.public_key_b64();
    let dev2 = user.rest.add_device(user.id(), &second_key).await.unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = '{second_key}', public_key_hash = NULL WHERE id = '{}'",
            dev2.id
        ))
        .await;

    // The first read is a login with that key: it must find the legacy row, not create a device.
    let auth = login(&server, &user.name, &second_key).await.unwrap();
    assert_eq!(auth.device_id, dev2.id);
    assert_eq!(auth.device_public_key, second_key);
    assert_eq!(
        server.db.count("SELECT COUNT(*) AS v FROM devices").await,
        2
    );
    let stored = server
        .db
        .string(&format!(
            "SELECT public_key AS v FROM devices WHERE id = '{}'",
            dev2.id
        ))
        .await
        .unwrap();
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    let hash = server
        .db
        .string(&format!(
            "SELECT public_key_hash AS v FROM devices WHERE id = '{}'",
            dev2.id
        ))
        .await
        .unwrap_or_default();
    assert_eq!(hash.len(), 64, "hash filled: {hash:?}");

    // Another login with the same key: same device again; the key lists correctly.
    let again = login(&server, &user.name, &second_key).await.unwrap();
    assert_eq!(again.device_id, dev2.id);
    let keys = server
        .rest()
        .with_token(&again.token)
        .device_keys(user.id())
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
            (user.device().to_owned(), user.keys.public_key_b64()),
            (dev2.id.clone(), second_key.clone()),
        ])
    );
}

/// A device stored while the server ran on an older key, with no `dialtone rekey` since: its
/// hash is the previous key's. A login with that device's key signs into it, not a new device,
/// and moves its hash to the current key.
#[tokio::test]
async fn a_device_hashed_under_the_previous_key_is_found_by_login() {
    let mut server = TestServer::start().await;
    let user = server.user("oldhash").await;
    let k1 = server.settings.vars["DIALTONE_CHANNEL_KEY"].clone();
    let k2 = base64::engine::general_purpose::STANDARD.encode(dialtone::crypto::random_bytes(32));
    let hash_of = |id: &str| format!("SELECT public_key_hash AS v FROM devices WHERE id = '{id}'");
    let under_k1 = server.db.string(&hash_of(user.device())).await.unwrap();
    server
        .restart_with(move |s| {
            s.set("DIALTONE_CHANNEL_KEY", k2)
                .set("DIALTONE_CHANNEL_KEY_PREVIOUS", k1);
        })
        .await;

    let auth = login(&server, &user.name, &user.keys.public_key_b64())
        .await
        .unwrap();
    assert_eq!(auth.device_id, user.device());
    assert_eq!(
        server.db.count("SELECT COUNT(*) AS v FROM devices").await,
        1
    );
    let now = server.db.string(&hash_of(user.device())).await.unwrap();
    assert_ne!(now, under_k1, "the hash moved to the current key");
    let again = login(&server, &user.name, &user.keys.public_key_b64())
        .await
        .unwrap();
    assert_eq!(again.device_id, user.device());
}
