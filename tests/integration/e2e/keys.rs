//! Key distribution: a device without the key sees only ciphertext, tampering is detected,
//! joining devices get keys from an online device, a junk device key is skipped.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dialtone::client::rest::Page;
use dialtone::client::sealing;
use dialtone::client::{ChatError, ChatEvent, FollowOptions, KeyRef, KeyStore};
use dialtone::crypto::e2e;

use crate::support::*;

use super::*;

#[tokio::test]
async fn e2e_without_the_key_only_ciphertext_and_tampering_is_detected() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let (channel, _) = admin.create_channel("vault-of-secrets").await.unwrap();
    let first = admin.send(&channel.id, "first secret line").await.unwrap();
    let second = admin.send(&channel.id, "second secret line").await.unwrap();

    // Carol arrives when nobody is online to share: she sees only ciphertext.
    let mut carol = register(&server, "echidna-carol").await;
    let err = carol
        .history(&channel.id, &Page::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::NoChannelKey(_)), "{err}");
    assert!(err.to_string().contains("no key for channel"), "{err}");
    let err = carol.send(&channel.id, "hello?").await.unwrap_err();
    assert!(matches!(err, ChatError::NoChannelKey(_)), "{err}");
    let listed = carol.channels().await.unwrap();
    assert_eq!(listed[0].display_name(), "(no key on this device)");
    let raw = carol
        .rest()
        .messages(&channel.id, &Page::default())
        .await
        .unwrap();
    assert_eq!(raw.messages.len(), 2);
    let guess = e2e::generate_key();
    for m in &raw.messages {
        assert!(!m.body.contains("secret") && !m.sender_name_enc.contains(ADMIN));
        assert!(
            STANDARD.decode(&m.body).unwrap().len() >= 12 + 16,
            "nonce, ciphertext and tag"
        );
        let err = sealing::open_message(&guess, m).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot decrypt message {}: authentication failed (wrong key or tampered)",
                m.id
            )
        );
    }

    // Flip one bit of a stored body: the holder of the key gets a clear error for that message
    // only, never garbage.
    let body = server
        .db
        .string(&format!(
            "SELECT body AS v FROM channel_messages WHERE id = '{}'",
            first.id
        ))
        .await
        .unwrap();
    let mut raw = STANDARD.decode(&body).unwrap();
    raw[20] ^= 0x01;
    server
        .db
        .execute(&format!(
            "UPDATE channel_messages SET body = '{}' WHERE id = '{}'",
            STANDARD.encode(raw),
            first.id
        ))
        .await;
    let h = admin.history(&channel.id, &Page::default()).await.unwrap();
    assert_eq!(h.messages.len(), 2);
    let err = h.messages[0].as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot decrypt message {}: authentication failed (wrong key or tampered)",
            first.id
        )
    );
    let ok = h.messages[1].as_ref().unwrap();
    assert_eq!(
        (ok.id.as_str(), ok.text.as_str()),
        (second.id.as_str(), "second secret line")
    );
}

#[tokio::test]
async fn e2e_devices_that_join_get_keys_from_an_online_device() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let (channel, _) = admin.create_channel("campfire").await.unwrap();
    for text in ["one", "two", "three"] {
        admin.send(&channel.id, text).await.unwrap();
    }
    let admin_device = admin.device_id().to_owned();
    let admin_home = admin.home;
    let mut follower = follow(admin.chat, FollowOptions::default());
    follower
        .wait_for("connected", |e| matches!(e, ChatEvent::Connected { .. }))
        .await;

    // A second device of the same user.
    let mut laptop = new_device(&server, ADMIN).await;
    assert_ne!(laptop.device_id(), admin_device);
    let id = laptop.device_id().to_owned();
    let joined = follower
        .wait_for(
            "the laptop joining",
            |e| matches!(e, ChatEvent::DeviceJoined { device_id, .. } if *device_id == id),
        )
        .await;
    let ChatEvent::DeviceJoined {
        shared: Some(Ok(report)),
        ..
    } = joined
    else {
        panic!("keys were not shared: {joined:?}");
    };
    assert!(
        report
            .shared
            .contains(&(KeyRef::Channel(channel.id.clone()), 1)),
        "{report:?}"
    );
    assert!(
        report.shared.contains(&(KeyRef::Directory, 1)),
        "{report:?}"
    );
    assert!(
        report.skipped.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );

    let h = laptop.history(&channel.id, &Page::default()).await.unwrap();
    let texts: Vec<String> = h.messages.into_iter().map(|m| m.unwrap().text).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    laptop.refresh().await.unwrap();
    assert!(laptop.store().directory_key().is_some());
    // The key store on disk kept what the laptop learned.
    let path = KeyStore::path_for(laptop.home.path(), "default").unwrap();
    let reopened = KeyStore::open(&path, PASSPHRASE).unwrap();
    assert!(reopened.channel_key(&channel.id).is_some() && reopened.directory_key().is_some());

    // A new person gets the keys the same way.
    let mut dingo = register(&server, "dingo-dave").await;
    let id = dingo.device_id().to_owned();
    follower
        .wait_for("dingo joining", |e| {
            matches!(e, ChatEvent::DeviceJoined { device_id, shared: Some(Ok(_)), .. } if *device_id == id)
        })
        .await;
    let h = dingo.history(&channel.id, &Page::default()).await.unwrap();
    assert_eq!(h.messages.len(), 3);
    assert!(h.messages.iter().all(Result::is_ok));

    // The follower decrypts live messages from the new devices.
    laptop
        .send(&channel.id, "typed on the laptop")
        .await
        .unwrap();
    dingo.send(&channel.id, "dingo says hi").await.unwrap();
    let texts: Vec<String> = follower
        .messages(2)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(texts, ["typed on the laptop", "dingo says hi"]);
    let admin = follower.stop().await;
    assert_eq!(admin.device_id(), admin_device);
    drop(admin_home);
}

#[tokio::test]
async fn e2e_a_junk_device_key_is_skipped_and_everyone_else_gets_the_key() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let mut bob = register(&server, BOB).await;
    let mallory = register(&server, "mallory-broken").await;
    // A key no device could have registered (the server validates new keys), as a damaged or
    // hostile database would serve it: legacy rows are handed out as stored.
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = 'this is not a key', public_key_hash = NULL WHERE id = '{}'",
            mallory.device_id()
        ))
        .await;

    let (channel, report) = admin.create_channel("junk-proof").await.unwrap();
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].device_id, mallory.device_id());
    assert_eq!(
        report.skipped[0].user_id.as_deref(),
        Some(mallory.user_id())
    );
    assert!(report.skipped[0].reason.contains("base64"), "{report:?}");
    assert_eq!(report.envelopes(), 2, "admin and bob");
    let m = admin.send(&channel.id, "still works").await.unwrap();
    let h = bob.history(&channel.id, &Page::default()).await.unwrap();
    assert_eq!(h.messages[0].as_ref().unwrap().id, m.id);

    // An explicit share and a broadcast skip it the same way.
    let report = admin.share_keys(None, None).await.unwrap();
    assert_eq!(
        report.skipped.len(),
        1,
        "listed once across keys: {report:?}"
    );
    assert!(
        report.shared.contains(&(KeyRef::Directory, 1)),
        "{report:?}"
    );
    bob.refresh().await.unwrap();
    assert!(bob.store().directory_key().is_some());
    let (_, skipped) = admin.broadcast("all but one").await.unwrap();
    assert_eq!(skipped.len(), 1);

    // The same through the library with a hand-made list.
    let mut list = admin.rest().all_device_keys().await.unwrap();
    list.push(dialtone::protocol::rest::DeviceKey {
        user_id: None,
        device_id: "not-even-a-device".into(),
        public_key: STANDARD.encode([7u8; 5]),
    });
    let report = admin.share_with(Some(&channel.id), &list).await.unwrap();
    let skipped: HashSet<&str> = report
        .skipped
        .iter()
        .map(|s| s.device_id.as_str())
        .collect();
    assert_eq!(
        skipped,
        HashSet::from([mallory.device_id(), "not-even-a-device"])
    );
    assert_eq!(report.shared, [(KeyRef::Channel(channel.id.clone()), 2)]);
}
