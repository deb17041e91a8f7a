//! Key authority (README "Key authority", issue 10 items 1 and 7): only key holders, admins and
//! a channel's creator bootstrapping write envelopes; refusals are 409 with the device ids and
//! write nothing; a device deletes its own envelopes; v1 flows keep working, and `device.joined`
//! comes on every WebSocket connection.

mod channel;
mod directory;
mod v1;

use dialtone::crypto::e2e::SymmetricKey;
use dialtone::protocol::rest::EnvelopeUpload;
use reqwest::Method;

use crate::support::*;

/// POST `body` to `path` as `user`: the status and the JSON body.
pub async fn post(
    user: &TestUser,
    path: &str,
    body: &impl serde::Serialize,
) -> (u16, serde_json::Value) {
    send_raw(user.rest.request(Method::POST, path).json(body)).await
}

/// Assert a 409 refusal with `code` naming exactly `devices` (in any order).
pub fn assert_refused(status: u16, body: &serde_json::Value, code: &str, devices: &[&TestUser]) {
    assert_eq!(status, 409, "body: {body}");
    assert_eq!(
        json_keys(body),
        ["code", "device_ids", "error"],
        "body: {body}"
    );
    assert_eq!(body["code"], code, "body: {body}");
    let mut got: Vec<String> = body["device_ids"]
        .as_array()
        .expect("device_ids")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = devices.iter().map(|u| u.device().to_owned()).collect();
    want.sort();
    assert_eq!(got, want, "body: {body}");
}

/// The channel key `user`'s device recovers from its envelope (`None`: it has none).
pub async fn channel_key_of(user: &TestUser, channel: &str) -> Option<[u8; 32]> {
    let env = user.rest.channel_key(channel).await.unwrap()?;
    let key = user
        .keys
        .unwrap_from(&env.sender_public_key, &env.envelope)
        .unwrap();
    Some(*key)
}

/// The directory key `user`'s device recovers from its envelope (`None`: it has none).
pub async fn directory_key_of(user: &TestUser) -> Option<[u8; 32]> {
    let env = user.rest.directory_key().await.unwrap()?;
    let key = user
        .keys
        .unwrap_from(&env.sender_public_key, &env.envelope)
        .unwrap();
    Some(*key)
}
