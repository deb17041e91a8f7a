//! Upgrading a dialtone v1 (Go server) PostgreSQL database (SPEC §10): the v1 schema and rows built
//! by hand, then the server started on it — additive migrations, bcrypt logins re-hashed to
//! argon2id, lazy encryption of plaintext device keys, v1 invites, v1 history; and `dialtone rekey`
//! over the upgraded database.

use std::collections::BTreeSet;

use base64::Engine;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{AuthResponse, ErrorBody, LoginRequest, RegisterRequest};

use crate::support::*;

/// The dialtone v1 schema as the Go server created it: TEXT ids holding UUIDs, TIMESTAMPTZ times,
/// its own `schema_migrations` ledger.
const V1_DDL: &str = r#"
CREATE TABLE schema_migrations (
    id         TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username_hash TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    is_trusted    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    public_key   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_seen_at TIMESTAMPTZ
);
CREATE INDEX idx_devices_user_id ON devices(user_id);

CREATE TABLE broadcast_messages (
    id                TEXT PRIMARY KEY,
    sender_id         TEXT NOT NULL REFERENCES users(id),
    sender_public_key TEXT NOT NULL,
    sender_name_enc   TEXT NOT NULL,
    body              TEXT NOT NULL,
    key_envelopes     JSONB NOT NULL,
    sent_at           TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE channels (
    id         TEXT PRIMARY KEY,
    name_enc   TEXT NOT NULL,
    created_by TEXT REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE channel_messages (
    id              TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    sender_id       TEXT NOT NULL REFERENCES users(id),
    sender_name_enc TEXT NOT NULL,
    body            TEXT NOT NULL,
    sent_at         TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_channel_messages_channel_sent ON channel_messages(channel_id, sent_at);

CREATE TABLE channel_key_envelopes (
    channel_id        TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    device_id         TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    sender_device_id  TEXT NOT NULL REFERENCES devices(id),
    sender_public_key TEXT NOT NULL,
    envelope          TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (channel_id, device_id)
);

CREATE TABLE user_profiles (
    user_id    TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    name_enc   TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE directory_key_envelopes (
    device_id         TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    sender_device_id  TEXT NOT NULL REFERENCES devices(id),
    sender_public_key TEXT NOT NULL,
    envelope          TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE server_invites (
    id          TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at  TIMESTAMPTZ NOT NULL,
    consumed_at TIMESTAMPTZ,
    consumed_by TEXT REFERENCES users(id)
);

INSERT INTO schema_migrations (id, applied_at) VALUES
    ('001_init.sql', '2024-01-10T08:00:00Z'),
    ('002_channels_and_envelopes.sql', '2024-02-01T08:00:00Z');
"#;

const LEGACY_PASSWORD: &str = "legacy-pass-123";
const BOSS_PASSWORD: &str = "boss-pass-456";

/// Everything the v1 database holds, as the test inserted it.
struct V1Data {
    user_id: String,
    device_id: String,
    keys: DeviceKeypair,
    boss_id: String,
    boss_device_id: String,
    boss_keys: DeviceKeypair,
    channel_id: String,
    /// (id, sender id, sender_name_enc, body, sent_at) in time order.
    messages: Vec<(String, String, String, String, &'static str)>,
    invite: String,
    used_invite: String,
    expired_invite: String,
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn bcrypt_2a(password: &str) -> String {
    let h = bcrypt::hash(password, 4).unwrap();
    let h = h.replacen("$2b$", "$2a$", 1);
    assert!(h.starts_with("$2a$04$"), "{h}");
    h
}

/// A fresh database with the v1 schema and rows, as the Go server left it.
async fn v1_database() -> (TestDb, V1Data, String) {
    let db = TestDb::create().await;
    let pepper = &test_pepper(&db);
    db.execute(V1_DDL).await;

    let d = V1Data {
        user_id: uuid(),
        device_id: uuid(),
        keys: DeviceKeypair::generate(),
        boss_id: uuid(),
        boss_device_id: uuid(),
        boss_keys: DeviceKeypair::generate(),
        channel_id: uuid(),
        messages: Vec::new(),
        invite: format!("v1invite{}", uuid::Uuid::new_v4().simple()),
        used_invite: format!("v1used{}", uuid::Uuid::new_v4().simple()),
        expired_invite: format!("v1expired{}", uuid::Uuid::new_v4().simple()),
    };
    let messages = vec![
        (
            uuid(),
            d.boss_id.clone(),
            "Ym9zcy1uYW1l".to_owned(),
            "djEtbWVzc2FnZS0x".to_owned(),
            "2024-03-02T09:00:00Z",
        ),
        (
            uuid(),
            d.user_id.clone(),
            "bGVnYWN5LW5hbWU=".to_owned(),
            "djEtbWVzc2FnZS0y".to_owned(),
            "2024-03-02T09:05:00Z",
        ),
        (
            uuid(),
            d.boss_id.clone(),
            "Ym9zcy1uYW1l".to_owned(),
            "djEtbWVzc2FnZS0z".to_owned(),
            "2024-03-02T09:10:30Z",
        ),
    ];
    let mut sql = format!(
        "INSERT INTO users (id, username_hash, password_hash, is_admin, is_trusted, created_at) VALUES
            ('{boss}', '{boss_hash}', '{boss_pw}', TRUE, TRUE, '2024-01-10T08:05:00Z'),
            ('{user}', '{user_hash}', '{user_pw}', FALSE, TRUE, '2024-01-11T12:00:00Z');
         INSERT INTO devices (id, user_id, public_key, created_at, last_seen_at) VALUES
            ('{boss_dev}', '{boss}', '{boss_key}', '2024-01-10T08:05:00Z', '2024-03-02T09:10:30Z'),
            ('{dev}', '{user}', '{key}', '2024-01-11T12:00:00Z', '2024-03-02T09:05:00Z');
         INSERT INTO channels (id, name_enc, created_by, created_at) VALUES
            ('{ch}', 'djEtY2hhbm5lbC1uYW1l', '{boss}', '2024-01-12T10:00:00Z');
         INSERT INTO channel_key_envelopes (channel_id, device_id, sender_device_id, sender_public_key, envelope, created_at) VALUES
            ('{ch}', '{dev}', '{boss_dev}', '{boss_key}', 'djEtY2hhbm5lbC1lbnZlbG9wZQ==', '2024-01-12T10:01:00Z');
         INSERT INTO directory_key_envelopes (device_id, sender_device_id, sender_public_key, envelope, created_at) VALUES
            ('{dev}', '{boss_dev}', '{boss_key}', 'djEtZGlyZWN0b3J5LWVudmVsb3Bl', '2024-01-12T10:02:00Z');
         INSERT INTO user_profiles (user_id, name_enc, updated_at) VALUES
            ('{user}', 'djEtcHJvZmlsZQ==', '2024-01-13T10:00:00Z');
         INSERT INTO broadcast_messages (id, sender_id, sender_public_key, sender_name_enc, body, key_envelopes, sent_at) VALUES
            ('{bc}', '{boss}', '{boss_key}', 'djEtYnJvYWRjYXN0LW5hbWU=', 'djEtYnJvYWRjYXN0', '{{\"{dev}\": \"djEtYmMtZW52\"}}', '2024-02-20T10:00:00Z');
         INSERT INTO server_invites (id, created_at, expires_at, consumed_at, consumed_by) VALUES
            ('{invite}', NOW() - INTERVAL '1 day', NOW() + INTERVAL '6 days', NULL, NULL),
            ('{used}', '2024-01-11T11:00:00Z', '2024-01-18T11:00:00Z', '2024-01-11T12:00:00Z', '{user}'),
            ('{expired}', NOW() - INTERVAL '10 days', NOW() - INTERVAL '3 days', NULL, NULL);
        ",
        boss = d.boss_id,
        boss_hash = username_hash(pepper, "legacyboss"),
        boss_pw = bcrypt_2a(BOSS_PASSWORD),
        user = d.user_id,
        user_hash = username_hash(pepper, "legacyuser"),
        user_pw = bcrypt_2a(LEGACY_PASSWORD),
        boss_dev = d.boss_device_id,
        boss_key = d.boss_keys.public_key_b64(),
        dev = d.device_id,
        key = d.keys.public_key_b64(),
        ch = d.channel_id,
        bc = uuid(),
        invite = d.invite,
        used = d.used_invite,
        expired = d.expired_invite,
    );
    for (id, sender, name, body, at) in &messages {
        sql.push_str(&format!(
            "INSERT INTO channel_messages (id, channel_id, sender_id, sender_name_enc, body, sent_at) \
             VALUES ('{id}', '{ch}', '{sender}', '{name}', '{body}', '{at}');\n",
            ch = d.channel_id
        ));
    }
    db.execute(&sql).await;
    let pepper = pepper.clone();
    (db, V1Data { messages, ..d }, pepper)
}

/// The pepper every test server uses (the v1 rows must be hashed with it).
fn test_pepper(db: &TestDb) -> String {
    ServerSettings::new(db, std::path::Path::new("/nonexistent")).vars["DIALTONE_USERNAME_PEPPER"]
        .clone()
}

/// POST a JSON body unauthenticated; the exact status and the parsed JSON body.
async fn post(
    server: &TestServer,
    path: &str,
    body: &impl serde::Serialize,
) -> (u16, serde_json::Value) {
    post_json(&server.rest(), path, body).await
}

fn login_req(name: &str, password: &str, key: &str) -> LoginRequest {
    LoginRequest {
        username: name.to_owned(),
        password: password.to_owned(),
        public_key: key.to_owned(),
        // v1 clients send it on login too.
        invite_token: Some(String::new()),
    }
}

#[track_caller]
fn auth_of(status: u16, body: serde_json::Value, expected: u16) -> AuthResponse {
    assert_eq!(status, expected, "{body}");
    serde_json::from_value(body).expect("auth response")
}

#[track_caller]
fn error_of(status: u16, body: serde_json::Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    let e: ErrorBody = serde_json::from_value(body).expect("error body");
    assert_eq!(e.code, code, "{e:?}");
}

async fn columns_of(db: &TestDb, table: &str) -> BTreeSet<String> {
    db.strings(&format!(
        "SELECT column_name AS v FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}'"
    ))
    .await
    .into_iter()
    .flatten()
    .collect()
}

fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    assert!(s.ends_with('Z'), "not UTC with Z: {s}");
    chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
}

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
