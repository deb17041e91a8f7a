//! Encryption at rest (SPEC §6): what a database dump reveals after a real session, lazy encryption
//! of legacy plaintext rows, `dialtone rekey` to a new key, and tampered or moved ciphertexts.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dialtone::client::ClientError;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{
    ChannelKeysUpload, DirectoryKeysUpload, EnvelopeUpload, LoginRequest,
};
use dialtone::protocol::ws::{ClientFrame, event_type};

use crate::support::*;

/// The only columns SPEC §6 encrypts.
const ENCRYPTED_COLUMNS: [(&str, &str); 4] = [
    ("users", "username"),
    ("devices", "public_key"),
    ("broadcast_messages", "sender_name_enc"),
    ("broadcast_messages", "sender_public_key"),
];

/// Columns where v1's schema stores a device public key beside an envelope (the key a recipient
/// needs to unwrap it). SPEC §6 lists exactly four encrypted columns and these are not among them,
/// and the API hands the value out verbatim to the envelope's recipient: plaintext is allowed here.
const PLAINTEXT_KEY_COLUMNS: [(&str, &str); 2] = [
    ("channel_key_envelopes", "sender_public_key"),
    ("directory_key_envelopes", "sender_public_key"),
];

fn pepper(server: &TestServer) -> String {
    server.settings.vars["DIALTONE_USERNAME_PEPPER"].clone()
}

/// Every `(table, column, value)` of the dump holding `needle` (case-insensitive).
fn occurrences<'a>(
    dump: &'a [(String, String, String)],
    needle: &str,
) -> Vec<&'a (String, String, String)> {
    let needle = needle.to_lowercase();
    dump.iter()
        .filter(|(_, _, v)| v.to_lowercase().contains(&needle))
        .collect()
}

/// Every stored value of one column (NULLs included as `None`).
async fn column(server: &TestServer, table: &str, column: &str) -> Vec<Option<String>> {
    server
        .db
        .strings(&format!("SELECT {column} AS v FROM {table} ORDER BY id"))
        .await
}

/// The `(table.column, value)` of every `enc:` value in the database.
async fn encrypted_values(server: &TestServer) -> Vec<(String, String)> {
    server
        .db
        .dump()
        .await
        .into_iter()
        .filter(|(_, _, v)| v.starts_with("enc:"))
        .map(|(t, c, v)| (format!("{t}.{c}"), v))
        .collect()
}

/// The distinct key ids of every `enc:` value (panics on a malformed one).
async fn key_ids(server: &TestServer) -> BTreeSet<String> {
    encrypted_values(server)
        .await
        .iter()
        .map(|(col, v)| {
            enc_key_id(v)
                .unwrap_or_else(|| panic!("{col}: malformed enc value {v}"))
                .to_owned()
        })
        .collect()
}

fn envelope(device_id: &str, sender: &TestUser, envelope: &str) -> EnvelopeUpload {
    EnvelopeUpload {
        device_id: device_id.to_owned(),
        sender_device_id: sender.device().to_owned(),
        sender_public_key: sender.keys.public_key_b64(),
        envelope: envelope.to_owned(),
        channel_id: None,
    }
}

#[track_caller]
fn assert_internal_error<T: std::fmt::Debug>(r: Result<T, ClientError>) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => {
            assert_eq!(
                (status, code.as_str(), message.as_str()),
                (500, "internal", "internal error"),
                "expected a clean 500"
            );
        }
        other => panic!("expected 500 internal error, got {other:?}"),
    }
}

async fn login(
    server: &TestServer,
    name: &str,
    public_key: &str,
) -> Result<dialtone::protocol::rest::AuthResponse, ClientError> {
    server
        .rest()
        .login(&LoginRequest {
            username: name.to_owned(),
            password: password(name),
            public_key: public_key.to_owned(),
            invite_token: None,
        })
        .await
}

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
        .set_profile("cHJvZmlsZS1uYW1lLWJvYg==")
        .await
        .unwrap();
    alice
        .rest
        .upload_channel_keys(&ChannelKeysUpload {
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

    // Every value is now under K2's key id; nothing is plaintext; the device hashes moved too.
    assert_eq!(key_ids(&server).await, BTreeSet::from([new_id.clone()]));
    assert_eq!(encrypted_values(&server).await.len(), 3 + 3 + 2);
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
