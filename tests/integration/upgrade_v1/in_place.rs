//! The server started on a v1 database: additive migrations, bcrypt logins re-hashed to
//! argon2id, lazy encryption of plaintext device keys, v1 invites and v1 history.

use std::collections::BTreeSet;

use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::RegisterRequest;

use super::*;

#[tokio::test]
async fn server_upgrades_a_v1_database_in_place() {
    if backend() == Backend::Sqlite {
        skip("dialtone v1 ran on PostgreSQL only: there is no v1 SQLite database to upgrade");
        return;
    }
    let (db, v1, pepper) = v1_database().await;
    let server = TestServer::start_on(db, |_| {}).await;
    let db = &server.db;

    // ---- migrations were additive ----
    assert_eq!(
        db.strings("SELECT id AS v FROM schema_migrations ORDER BY id")
            .await,
        vec![
            Some("001_init.sql".into()),
            Some("002_channels_and_envelopes.sql".into())
        ],
        "the Go server's ledger is untouched"
    );
    for (table, n) in [
        ("users", 2),
        ("devices", 2),
        ("channels", 1),
        ("channel_messages", 3),
        ("channel_key_envelopes", 1),
        ("directory_key_envelopes", 1),
        ("user_profiles", 1),
        ("broadcast_messages", 1),
        ("server_invites", 3),
    ] {
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) AS v FROM {table}"))
                .await,
            n,
            "{table} rows kept"
        );
    }
    assert_eq!(
        db.string(&format!(
            "SELECT password_hash AS v FROM users WHERE id = '{}'",
            v1.user_id
        ))
        .await
        .unwrap()
        .get(..4),
        Some("$2a$"),
        "nothing rewritten before a login"
    );
    for (table, added) in [
        ("users", &["username", "disabled_at"][..]),
        ("devices", &["public_key_hash"][..]),
        (
            "server_invites",
            &["token_hash", "max_uses", "uses", "revoked_at"][..],
        ),
        ("channel_messages", &["client_message_id"][..]),
    ] {
        let cols = columns_of(db, table).await;
        for c in added {
            assert!(cols.contains(*c), "{table}.{c} missing: {cols:?}");
        }
    }
    let session_cols = columns_of(db, "sessions").await;
    for c in ["id", "token_hash", "user_id", "device_id", "expires_at"] {
        assert!(
            session_cols.contains(c),
            "sessions.{c} missing: {session_cols:?}"
        );
    }
    // No v1 invite token survives as plaintext (they become hashes at migration).
    let invite_values: Vec<String> = db
        .dump()
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "server_invites")
        .map(|(_, _, v)| v)
        .collect();
    for token in [&v1.invite, &v1.used_invite, &v1.expired_invite] {
        assert!(
            !invite_values.iter().any(|v| v.contains(token.as_str())),
            "plaintext v1 token {token} kept"
        );
    }

    // ---- the v1 user logs in with its bcrypt password, on the same device ----
    let (s, b) = post(
        &server,
        "/auth/login",
        &login_req("legacyuser", "wrong-pass-123", &v1.keys.public_key_b64()),
    )
    .await;
    error_of(s, b, 401, "unauthorized");
    let (s, b) = post(
        &server,
        "/auth/login",
        &login_req("LegacyUser", LEGACY_PASSWORD, &v1.keys.public_key_b64()),
    )
    .await;
    let auth = auth_of(s, b, 200);
    assert_eq!(auth.user_id, v1.user_id);
    assert_eq!(auth.device_id, v1.device_id, "same device for the same key");
    assert_eq!(auth.username, "legacyuser");
    assert_eq!(auth.device_public_key, v1.keys.public_key_b64());
    assert!(!auth.is_admin);
    assert!(auth.is_trusted);
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM devices").await,
        2,
        "no device created"
    );

    let stored_key = db
        .string(&format!(
            "SELECT public_key AS v FROM devices WHERE id = '{}'",
            v1.device_id
        ))
        .await
        .unwrap();
    assert!(
        stored_key.starts_with("enc:v1:"),
        "device key still plaintext: {stored_key}"
    );
    let hash = db
        .string(&format!(
            "SELECT public_key_hash AS v FROM devices WHERE id = '{}'",
            v1.device_id
        ))
        .await
        .unwrap_or_default();
    assert_eq!(hash.len(), 64, "public_key_hash filled: {hash:?}");
    let username = db
        .string(&format!(
            "SELECT username AS v FROM users WHERE id = '{}'",
            v1.user_id
        ))
        .await
        .unwrap_or_default();
    assert!(
        username.starts_with("enc:v1:"),
        "users.username: {username:?}"
    );
    assert!(!username.contains("legacyuser"));
    let pw = db
        .string(&format!(
            "SELECT password_hash AS v FROM users WHERE id = '{}'",
            v1.user_id
        ))
        .await
        .unwrap();
    assert!(
        pw.starts_with("$argon2id$"),
        "password hash not upgraded: {pw}"
    );
    assert_eq!(
        db.string(&format!(
            "SELECT username_hash AS v FROM users WHERE id = '{}'",
            v1.user_id
        ))
        .await,
        Some(username_hash(&pepper, "legacyuser")),
        "the v1 username hash is kept"
    );
    // The boss has not logged in: no username yet, still bcrypt.
    assert_eq!(
        db.string(&format!(
            "SELECT username AS v FROM users WHERE id = '{}'",
            v1.boss_id
        ))
        .await,
        None
    );

    // The re-hashed password works; the device is still the same.
    let (s, b) = post(
        &server,
        "/auth/login",
        &login_req("legacyuser", LEGACY_PASSWORD, &v1.keys.public_key_b64()),
    )
    .await;
    let again = auth_of(s, b, 200);
    assert_eq!(again.device_id, v1.device_id);
    assert_eq!(
        db.string(&format!(
            "SELECT password_hash AS v FROM users WHERE id = '{}'",
            v1.user_id
        ))
        .await,
        Some(pw),
        "an argon2id hash is not re-hashed"
    );

    // ---- v1 data through the API ----
    let me = server.rest().with_token(&auth.token);
    let keys = me.device_keys(&v1.user_id).await.unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].device_id, v1.device_id);
    assert_eq!(keys.keys[0].public_key, v1.keys.public_key_b64());

    let channels = me.channels().await.unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].id, v1.channel_id);
    assert_eq!(channels[0].name_enc, "djEtY2hhbm5lbC1uYW1l");
    assert_eq!(channels[0].created_by, v1.boss_id);
    assert_eq!(time(&channels[0].created_at), time("2024-01-12T10:00:00Z"));

    let history = me
        .messages(&v1.channel_id, &Default::default())
        .await
        .unwrap();
    assert_eq!(history.channel_id, v1.channel_id);
    assert_eq!(history.messages.len(), 3);
    for (got, (id, sender, name, body, at)) in history.messages.iter().zip(&v1.messages) {
        assert_eq!(&got.id, id);
        assert_eq!(got.channel_id, v1.channel_id);
        assert_eq!(&got.sender_id, sender);
        assert_eq!(&got.sender_name_enc, name);
        assert_eq!(&got.body, body);
        assert_eq!(time(&got.sent_at), time(at));
        assert_eq!(got.client_message_id, None);
    }
    // Cursor paging over v1 rows.
    let page = me
        .messages(
            &v1.channel_id,
            &dialtone::client::rest::Page {
                after: Some(v1.messages[0].0.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        vec![v1.messages[1].0.clone(), v1.messages[2].0.clone()]
    );

    let env = me
        .channel_key(&v1.channel_id)
        .await
        .unwrap()
        .expect("v1 channel envelope");
    assert_eq!(env.device_id, v1.device_id);
    assert_eq!(env.sender_device_id, v1.boss_device_id);
    assert_eq!(env.sender_public_key, v1.boss_keys.public_key_b64());
    assert_eq!(env.envelope, "djEtY2hhbm5lbC1lbnZlbG9wZQ==");
    let dir = me
        .directory_key()
        .await
        .unwrap()
        .expect("v1 directory envelope");
    assert_eq!(dir.envelope, "djEtZGlyZWN0b3J5LWVudmVsb3Bl");
    assert_eq!(dir.sender_public_key, v1.boss_keys.public_key_b64());
    let profiles = me.profiles().await.unwrap();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0].user_id, v1.user_id);
    assert_eq!(profiles[0].name_enc, "djEtcHJvZmlsZQ==");

    // Every device (the boss's plaintext row too) lists correctly and is encrypted by that read.
    let all = me.all_device_keys().await.unwrap();
    let listed: BTreeSet<(String, String)> = all
        .into_iter()
        .map(|k| (k.device_id, k.public_key))
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([
            (v1.device_id.clone(), v1.keys.public_key_b64()),
            (v1.boss_device_id.clone(), v1.boss_keys.public_key_b64()),
        ])
    );
    for v in db.strings("SELECT public_key AS v FROM devices").await {
        assert!(v.unwrap().starts_with("enc:v1:"));
    }
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM devices WHERE public_key_hash IS NULL")
            .await,
        0
    );

    // The v1 admin logs in too and is still admin; the admin listing decrypts both usernames.
    let (s, b) = post(
        &server,
        "/auth/login",
        &login_req("legacyboss", BOSS_PASSWORD, &v1.boss_keys.public_key_b64()),
    )
    .await;
    let boss = auth_of(s, b, 200);
    assert_eq!(boss.device_id, v1.boss_device_id);
    assert!(boss.is_admin);
    let users = server.admin().admin_users().await.unwrap();
    let names: BTreeSet<(String, String)> = users
        .iter()
        .map(|u| (u.id.clone(), u.username.clone()))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            (v1.user_id.clone(), "legacyuser".to_owned()),
            (v1.boss_id.clone(), "legacyboss".to_owned()),
        ])
    );

    // ---- v1 invites ----
    let register = |name: &str, token: &str| RegisterRequest {
        username: name.to_owned(),
        password: "fresh-pass-789".to_owned(),
        public_key: DeviceKeypair::generate().public_key_b64(),
        invite_token: token.to_owned(),
    };
    let (s, b) = post(
        &server,
        "/auth/register",
        &register("olduseduser", &v1.used_invite),
    )
    .await;
    error_of(s, b, 410, "invite_used");
    let (s, b) = post(
        &server,
        "/auth/register",
        &register("oldexpireduser", &v1.expired_invite),
    )
    .await;
    error_of(s, b, 410, "invite_expired");
    let (s, b) = post(
        &server,
        "/auth/register",
        &register("freshuser", &v1.invite),
    )
    .await;
    let fresh = auth_of(s, b, 201);
    assert_eq!(fresh.username, "freshuser");
    assert!(!fresh.is_admin, "users existed: the newcomer is not admin");
    assert!(fresh.is_trusted);
    let (s, b) = post(
        &server,
        "/auth/register",
        &register("seconduser", &v1.invite),
    )
    .await;
    error_of(s, b, 410, "invite_used");
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM users").await, 3);
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM server_invites WHERE uses = 1")
            .await,
        2
    );
    let invite_values: Vec<String> = db
        .dump()
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "server_invites")
        .map(|(_, _, v)| v)
        .collect();
    assert!(
        !invite_values.iter().any(|v| v.contains(v1.invite.as_str())),
        "plaintext v1 token kept"
    );
    // The newcomer sees the v1 history as well.
    let fresh_client = server.rest().with_token(&fresh.token);
    assert_eq!(
        fresh_client
            .messages(&v1.channel_id, &Default::default())
            .await
            .unwrap()
            .messages
            .len(),
        3
    );
}
