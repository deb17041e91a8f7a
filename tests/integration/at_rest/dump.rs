//! What a database dump reveals after a real session: no usernames, no device keys, only
//! the columns SPEC §6 allows in plaintext.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{ChannelKeysUpload, DirectoryKeysUpload};
use dialtone::protocol::ws::{ClientFrame, event_type};

use super::*;

#[tokio::test]
async fn database_dump_reveals_no_usernames_or_device_keys() {
    let server = TestServer::start().await;
    let names = ["zanzibarquokka", "marzipanotter", "xylophoneyak"];
    let placeholder = "phantomplaceholder";

    // Three users, each with more devices.
    let alice = server.user(names[0]).await;
    assert!(alice.auth.is_admin);
    let bob = server.user(names[1]).await;
    let carol = server.user(names[2]).await;
    let bob_extra = DeviceKeypair::generate();
    let bob_dev2 = bob
        .rest
        .add_device(bob.id(), &bob_extra.public_key_b64())
        .await
        .unwrap();
    assert_eq!(bob_dev2.public_key, bob_extra.public_key_b64());
    let carol2 = server.new_device(&carol).await;
    let alice_extra = DeviceKeypair::generate();
    let alice_dev2 = alice
        .rest
        .add_device(alice.id(), &alice_extra.public_key_b64())
        .await
        .unwrap();
    // A placeholder user (admin only).
    let created = alice.rest.create_user(placeholder).await.unwrap();
    assert_eq!(created.username, placeholder);
    // An invite minted but never used: its token must not be stored either.
    let unused_invite = server.invite().await;

    // Every device: (device id, public key).
    let devices: Vec<(String, String)> = vec![
        (alice.device().to_owned(), alice.keys.public_key_b64()),
        (alice_dev2.id.clone(), alice_extra.public_key_b64()),
        (bob.device().to_owned(), bob.keys.public_key_b64()),
        (bob_dev2.id.clone(), bob_extra.public_key_b64()),
        (carol.device().to_owned(), carol.keys.public_key_b64()),
        (carol2.device().to_owned(), carol2.keys.public_key_b64()),
    ];
    assert_eq!(
        devices.iter().map(|d| &d.0).collect::<BTreeSet<_>>().len(),
        6
    );

    // Channels, a profile, channel and directory key envelopes.
    let ch1 = alice
        .rest
        .create_channel("Y2hhbm5lbC1vbmUtbmFtZQ==")
        .await
        .unwrap();
    let ch2 = alice
        .rest
        .create_channel("Y2hhbm5lbC10d28tbmFtZQ==")
        .await
        .unwrap();
    bob.rest
        .set_profile("cHJvZmlsZS1uYW1lLWJvYg==", None)
        .await
        .unwrap();
    alice
        .rest
        .upload_channel_keys(&ChannelKeysUpload {
            generation: None,
            channel_id: ch1.id.clone(),
            envelopes: devices
                .iter()
                .map(|(d, _)| envelope(d, &alice, &format!("Y2gxLWVudi0{}", &d[..8])))
                .collect(),
        })
        .await
        .unwrap();
    alice
        .rest
        .upload_directory_keys(&DirectoryKeysUpload {
            envelopes: devices
                .iter()
                .map(|(d, _)| envelope(d, &alice, &format!("ZGlyLWVudi0{}", &d[..8])))
                .collect(),
        })
        .await
        .unwrap();

    // Channel messages and a broadcast over WebSocket.
    let mut ws_alice = server.ws(&alice).await;
    let mut ws_bob = server.ws(&bob).await;
    let mut ws_carol2 = server.ws(&carol2).await;
    for ws in [&mut ws_alice, &mut ws_bob, &mut ws_carol2] {
        ws_ready(ws).await;
    }
    for (i, ch) in [&ch1, &ch2].into_iter().enumerate() {
        ws_alice
            .send(&ClientFrame::channel_message(
                &ch.id,
                format!("Ym9keS17aX0tY2lwaGVydGV4dA{i}"),
                "c2VuZGVyLWFsaWNl",
                Some(format!("m{i}")),
            ))
            .await
            .unwrap();
        let echo = ws_alice
            .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
            .await
            .unwrap();
        assert_eq!(echo.client_message_id, Some(format!("m{i}")));
    }
    let broadcast_name = "YnJvYWRjYXN0LXNlbmRlci1uYW1lLWVuYw==";
    let broadcast_body = "YnJvYWRjYXN0LWJvZHk=";
    let key_envelopes: BTreeMap<String, String> = devices
        .iter()
        .map(|(d, _)| (d.clone(), format!("YmMtZW52LQ{}", &d[..8])))
        .collect();
    ws_alice
        .send(&ClientFrame::broadcast(
            broadcast_body,
            broadcast_name,
            alice.keys.public_key_b64(),
            key_envelopes.clone(),
        ))
        .await
        .unwrap();
    for (ws, device) in [
        (&mut ws_alice, alice.device()),
        (&mut ws_bob, bob.device()),
        (&mut ws_carol2, carol2.device()),
    ] {
        let b = ws
            .expect_event(event_type::MESSAGE_BROADCAST, WAIT)
            .await
            .unwrap();
        assert_eq!(b.sender, alice.id());
        assert_eq!(b.body, broadcast_body);
        assert_eq!(b.sender_name_enc.as_deref(), Some(broadcast_name));
        assert_eq!(b.sender_public_key, Some(alice.keys.public_key_b64()));
        assert_eq!(
            b.key_envelope.as_ref(),
            Some(&key_envelopes[device]),
            "own envelope only"
        );
    }
    assert_eq!(
        server
            .db
            .count("SELECT COUNT(*) AS v FROM broadcast_messages")
            .await,
        1
    );

    // The API still hands everything out decrypted.
    let all_keys = alice.rest.all_device_keys().await.unwrap();
    let listed: BTreeSet<(String, String)> = all_keys
        .iter()
        .map(|k| (k.device_id.clone(), k.public_key.clone()))
        .collect();
    assert_eq!(listed, devices.iter().cloned().collect());
    let mut usernames: Vec<String> = server
        .admin()
        .admin_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    usernames.sort();
    let mut expected: Vec<String> = names
        .iter()
        .chain([&placeholder])
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(usernames, expected);
    let env = carol2
        .rest
        .channel_key(&ch1.id)
        .await
        .unwrap()
        .expect("envelope");
    assert_eq!(env.sender_public_key, alice.keys.public_key_b64());

    // ---- the dump ----
    let dump = server.db.dump().await;
    assert!(
        dump.len() > 50,
        "dump is suspiciously small: {}",
        dump.len()
    );

    // No plaintext username anywhere.
    for name in names.iter().chain([&placeholder]) {
        let found = occurrences(&dump, name);
        assert!(
            found.is_empty(),
            "username {name} stored in plaintext: {found:?}"
        );
    }
    // users.username: one enc:v1 value per user; username_hash: the v1 HMAC.
    let stored_names = column(&server, "users", "username").await;
    assert_eq!(stored_names.len(), 4);
    for v in &stored_names {
        let v = v.as_deref().expect("username filled");
        assert!(
            v.starts_with("enc:v1:"),
            "users.username not encrypted: {v}"
        );
    }
    let hashes: BTreeSet<String> = column(&server, "users", "username_hash")
        .await
        .into_iter()
        .flatten()
        .collect();
    let expected_hashes: BTreeSet<String> = names
        .iter()
        .chain([&placeholder])
        .map(|n| username_hash(&pepper(&server), n))
        .collect();
    assert_eq!(hashes, expected_hashes);

    // No device public key in plaintext, except beside envelopes (see PLAINTEXT_KEY_COLUMNS).
    for (device, key) in &devices {
        let raw = STANDARD.decode(key).unwrap();
        let forms = [
            key.trim_end_matches('=').to_owned(),
            URL_SAFE_NO_PAD.encode(&raw),
            hex::encode(&raw),
        ];
        for form in &forms {
            for (t, c, v) in occurrences(&dump, form) {
                assert!(
                    PLAINTEXT_KEY_COLUMNS.contains(&(t.as_str(), c.as_str())),
                    "public key of device {device} stored in plaintext in {t}.{c}: {v}"
                );
            }
        }
    }
    let stored_keys = column(&server, "devices", "public_key").await;
    assert_eq!(stored_keys.len(), 6);
    for v in stored_keys {
        let v = v.expect("public_key");
        assert!(
            v.starts_with("enc:v1:"),
            "devices.public_key not encrypted: {v}"
        );
    }
    let key_hashes: Vec<String> = column(&server, "devices", "public_key_hash")
        .await
        .into_iter()
        .map(|h| h.expect("hash filled"))
        .collect();
    assert_eq!(key_hashes.len(), 6);
    assert!(
        key_hashes
            .iter()
            .all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        "{key_hashes:?}"
    );
    assert_eq!(
        key_hashes.iter().collect::<BTreeSet<_>>().len(),
        6,
        "hashes are distinct"
    );

    // The broadcast: sender name and key encrypted, the client's sender_name_enc nowhere in clear.
    for col in ["sender_name_enc", "sender_public_key"] {
        let v = server
            .db
            .string(&format!("SELECT {col} AS v FROM broadcast_messages"))
            .await
            .unwrap();
        assert!(
            v.starts_with("enc:v1:"),
            "broadcast_messages.{col} not encrypted: {v}"
        );
    }
    let found = occurrences(&dump, broadcast_name.trim_end_matches('='));
    assert!(
        found.is_empty(),
        "broadcast sender_name_enc stored in clear: {found:?}"
    );

    // Only the four SPEC §6 columns hold enc: values, all under one key id.
    let enc = encrypted_values(&server).await;
    let enc_columns: BTreeSet<&str> = enc.iter().map(|(c, _)| c.as_str()).collect();
    let allowed: BTreeSet<String> = ENCRYPTED_COLUMNS
        .iter()
        .map(|(t, c)| format!("{t}.{c}"))
        .collect();
    for c in &enc_columns {
        assert!(allowed.contains(*c), "unexpected enc: column {c}");
    }
    assert_eq!(enc.len(), 4 + 6 + 2);
    assert_eq!(key_ids(&server).await.len(), 1, "one key id for everything");
    // Every ciphertext is distinct (random nonces), even for equal plaintexts.
    assert_eq!(
        enc.iter().map(|(_, v)| v).collect::<BTreeSet<_>>().len(),
        enc.len()
    );

    // Secrets the server must never store in clear: session and invite tokens, passwords.
    for user in [&alice, &bob, &carol, &carol2] {
        assert!(
            occurrences(&dump, user.token()).is_empty(),
            "session token stored in clear"
        );
        assert!(
            occurrences(&dump, &password(&user.name)).is_empty(),
            "password stored in clear"
        );
    }
    assert!(
        occurrences(&dump, &unused_invite).is_empty(),
        "invite token stored in clear"
    );
}
