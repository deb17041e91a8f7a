//! `dialtone rekey` over an upgraded v1 database: every plaintext value gets encrypted.

use base64::Engine;

use super::*;

#[tokio::test]
async fn rekey_encrypts_every_v1_plaintext_value() {
    if backend() == Backend::Sqlite {
        skip("dialtone v1 ran on PostgreSQL only: there is no v1 SQLite database to upgrade");
        return;
    }
    let (db, v1, _) = v1_database().await;
    let mut server = TestServer::start_on(db, |_| {}).await;
    server.stop().await.expect("clean shutdown");
    let key = server.settings.vars["DIALTONE_CHANNEL_KEY"].clone();

    // Nothing was read yet: the v1 plaintext is all still there.
    assert_eq!(
        server
            .db
            .count("SELECT COUNT(*) AS v FROM devices WHERE public_key NOT LIKE 'enc:%'")
            .await,
        2
    );

    // Same key, nothing previous: only legacy plaintext is rewritten.
    let (code, stdout, stderr) = run_rekey(&server, &key, None).await;
    assert_eq!(code, 0, "rekey failed\nstdout: {stdout}\nstderr: {stderr}");
    let report = rekey_report(&stdout);
    assert_rekey_counts(&report, "users_username", 0, 0);
    assert_rekey_counts(&report, "devices_public_key", 2, 0);
    assert_rekey_counts(&report, "broadcast_sender_name", 1, 0);
    assert_rekey_counts(&report, "broadcast_sender_public_key", 1, 0);

    let key_id = report["key_id"].as_str().unwrap().to_owned();
    for sql in [
        "SELECT public_key AS v FROM devices",
        "SELECT sender_name_enc AS v FROM broadcast_messages",
        "SELECT sender_public_key AS v FROM broadcast_messages",
    ] {
        for v in server.db.strings(sql).await {
            let v = v.unwrap();
            assert_eq!(enc_key_id(&v), Some(key_id.as_str()), "{sql}: {v}");
        }
    }
    assert_eq!(
        server
            .db
            .count("SELECT COUNT(*) AS v FROM devices WHERE public_key_hash IS NULL")
            .await,
        0
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for k in [&v1.keys, &v1.boss_keys] {
        let key = k.public_key_b64();
        let raw = b64.decode(&key).unwrap();
        assert_eq!(raw.len(), 32);
        for (t, c, v) in server.db.dump().await {
            if v.contains(key.trim_end_matches('=')) {
                assert!(
                    (t == "channel_key_envelopes" || t == "directory_key_envelopes")
                        && c == "sender_public_key",
                    "plaintext device key left in {t}.{c}"
                );
            }
        }
    }

    // The server reads the rekeyed rows: the v1 user logs in on the same device (found by hash).
    server.restart_with(|_| {}).await;
    let (s, b) = post(
        &server,
        "/auth/login",
        &login_req("legacyuser", LEGACY_PASSWORD, &v1.keys.public_key_b64()),
    )
    .await;
    let auth = auth_of(s, b, 200);
    assert_eq!(auth.device_id, v1.device_id);
    let keys = server
        .rest()
        .with_token(&auth.token)
        .all_device_keys()
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        server.db.count("SELECT COUNT(*) AS v FROM devices").await,
        2
    );
}
