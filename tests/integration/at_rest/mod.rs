//! Encryption at rest (SPEC §6): what a database dump reveals after a real session, lazy encryption
//! of legacy plaintext rows, `dialtone rekey` to a new key, and tampered or moved ciphertexts. This
//! file holds the vocabulary the four areas share.

use std::collections::BTreeSet;

use dialtone::client::ClientError;
use dialtone::protocol::rest::{EnvelopeUpload, LoginRequest};

use crate::support::*;

mod dump;
mod legacy;
mod rekey;
mod tamper;

/// The only columns SPEC §6 encrypts.
pub(super) const ENCRYPTED_COLUMNS: [(&str, &str); 4] = [
    ("users", "username"),
    ("devices", "public_key"),
    ("broadcast_messages", "sender_name_enc"),
    ("broadcast_messages", "sender_public_key"),
];

/// Columns where v1's schema stores a device public key beside an envelope (the key a recipient
/// needs to unwrap it). SPEC §6 lists exactly four encrypted columns and these are not among them,
/// and the API hands the value out verbatim to the envelope's recipient: plaintext is allowed here.
pub(super) const PLAINTEXT_KEY_COLUMNS: [(&str, &str); 2] = [
    ("channel_key_envelopes", "sender_public_key"),
    ("directory_key_envelopes", "sender_public_key"),
];

pub(super) fn pepper(server: &TestServer) -> String {
    server.settings.vars["DIALTONE_USERNAME_PEPPER"].clone()
}

/// Every `(table, column, value)` of the dump holding `needle` (case-insensitive).
pub(super) fn occurrences<'a>(
    dump: &'a [(String, String, String)],
    needle: &str,
) -> Vec<&'a (String, String, String)> {
    let needle = needle.to_lowercase();
    dump.iter()
        .filter(|(_, _, v)| v.to_lowercase().contains(&needle))
        .collect()
}

/// Every stored value of one column (NULLs included as `None`).
pub(super) async fn column(server: &TestServer, table: &str, column: &str) -> Vec<Option<String>> {
    server
        .db
        .strings(&format!("SELECT {column} AS v FROM {table} ORDER BY id"))
        .await
}

/// The `(table.column, value)` of every `enc:` value in the database.
pub(super) async fn encrypted_values(server: &TestServer) -> Vec<(String, String)> {
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
pub(super) async fn key_ids(server: &TestServer) -> BTreeSet<String> {
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

pub(super) fn envelope(device_id: &str, sender: &TestUser, envelope: &str) -> EnvelopeUpload {
    EnvelopeUpload {
        device_id: device_id.to_owned(),
        sender_device_id: sender.device().to_owned(),
        sender_public_key: sender.keys.public_key_b64(),
        envelope: envelope.to_owned(),
        channel_id: None,
    }
}

#[track_caller]
pub(super) fn assert_internal_error<T: std::fmt::Debug>(r: Result<T, ClientError>) {
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

pub(super) async fn login(
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
