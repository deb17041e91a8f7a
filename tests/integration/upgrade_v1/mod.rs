//! Upgrading a dialtone v1 (Go server) PostgreSQL database (SPEC §10): the v1 schema and rows built
//! by hand, then the server started on it — additive migrations, bcrypt logins re-hashed to
//! argon2id, lazy encryption of plaintext device keys, v1 invites, v1 history; and `dialtone rekey`
//! over the upgraded database. This file builds the v1 database; the tests are beside it.

use std::collections::BTreeSet;

use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{AuthResponse, ErrorBody, LoginRequest};

use crate::support::*;

mod in_place;
mod rekey;

/// The dialtone v1 schema as the Go server created it: TEXT ids holding UUIDs, TIMESTAMPTZ times,
/// its own `schema_migrations` ledger.
pub(super) const V1_DDL: &str = r#"
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

pub(super) const LEGACY_PASSWORD: &str = "legacy-pass-123";
pub(super) const BOSS_PASSWORD: &str = "boss-pass-456";

/// Everything the v1 database holds, as the test inserted it.
pub(super) struct V1Data {
    pub(super) user_id: String,
    pub(super) device_id: String,
    pub(super) keys: DeviceKeypair,
    pub(super) boss_id: String,
    pub(super) boss_device_id: String,
    pub(super) boss_keys: DeviceKeypair,
    pub(super) channel_id: String,
    /// (id, sender id, sender_name_enc, body, sent_at) in time order.
    pub(super) messages: Vec<(String, String, String, String, &'static str)>,
    pub(super) invite: String,
    pub(super) used_invite: String,
    pub(super) expired_invite: String,
}

pub(super) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn bcrypt_2a(password: &str) -> String {
    let h = bcrypt::hash(password, 4).unwrap();
    let h = h.replacen("$2b$", "$2a$", 1);
    assert!(h.starts_with("$2a$04$"), "{h}");
    h
}

/// A fresh database with the v1 schema and rows, as the Go server left it.
pub(super) async fn v1_database() -> (TestDb, V1Data, String) {
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
pub(super) fn test_pepper(db: &TestDb) -> String {
    ServerSettings::new(db, std::path::Path::new("/nonexistent")).vars["DIALTONE_USERNAME_PEPPER"]
        .clone()
}

/// POST a JSON body unauthenticated; the exact status and the parsed JSON body.
pub(super) async fn post(
    server: &TestServer,
    path: &str,
    body: &impl serde::Serialize,
) -> (u16, serde_json::Value) {
    post_json(&server.rest(), path, body).await
}

pub(super) fn login_req(name: &str, password: &str, key: &str) -> LoginRequest {
    LoginRequest {
        username: name.to_owned(),
        password: password.to_owned(),
        public_key: key.to_owned(),
        // v1 clients send it on login too.
        invite_token: Some(String::new()),
    }
}

#[track_caller]
pub(super) fn auth_of(status: u16, body: serde_json::Value, expected: u16) -> AuthResponse {
    assert_eq!(status, expected, "{body}");
    serde_json::from_value(body).expect("auth response")
}

#[track_caller]
pub(super) fn error_of(status: u16, body: serde_json::Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    let e: ErrorBody = serde_json::from_value(body).expect("error body");
    assert_eq!(e.code, code, "{e:?}");
}

pub(super) async fn columns_of(db: &TestDb, table: &str) -> BTreeSet<String> {
    db.strings(&format!(
        "SELECT column_name AS v FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}'"
    ))
    .await
    .into_iter()
    .flatten()
    .collect()
}

pub(super) fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    assert!(s.ends_with('Z'), "not UTC with Z: {s}");
    chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
}
