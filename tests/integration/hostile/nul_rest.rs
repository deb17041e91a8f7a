//! NUL (U+0000) in every REST field that reaches the database is a 400 `invalid_request` naming
//! the field — never a 500 — and nothing is stored; another user's traffic meanwhile is served.

use dialtone::protocol::rest::{ChannelKeysUpload, DirectoryKeysUpload, EnvelopeUpload};
use reqwest::Method;
use serde_json::json;

use super::still_chatting;
use crate::support::*;

/// Assert a 400 `invalid_request` whose message names `field`.
#[track_caller]
fn assert_refused(what: &str, (status, body): (u16, serde_json::Value), field: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_error_body(&body, "invalid_request");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains(field) && msg.contains("NUL"),
        "{what}: the message names `{field}`: {msg}"
    );
}

fn envelope(user: &TestUser, device_id: &str, envelope: &str) -> EnvelopeUpload {
    EnvelopeUpload {
        device_id: device_id.to_owned(),
        sender_device_id: user.device().to_owned(),
        sender_public_key: user.keys.public_key_b64(),
        envelope: envelope.to_owned(),
        channel_id: None,
    }
}

#[tokio::test]
async fn nul_in_any_rest_field_is_a_400_naming_it() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut bob_ws = server.ws(&bob).await;
    ws_ready(&mut bob_ws).await;
    let rest = &alice.rest;
    let nul = "YWxp\0Y2U=";

    let channel_keys = |device_id: &str, env: &str| ChannelKeysUpload {
        generation: None,
        channel_id: channel.id.clone(),
        envelopes: vec![envelope(&alice, device_id, env)],
    };
    let directory_keys = |device_id: &str, env: &str| DirectoryKeysUpload {
        envelopes: vec![envelope(&alice, device_id, env)],
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        (
            "profile name_enc",
            rest.request(Method::POST, "/users/profiles")
                .json(&json!({ "name_enc": nul })),
            "name_enc",
        ),
        (
            "channel create name_enc",
            rest.request(Method::POST, "/channels")
                .json(&json!({ "name_enc": nul })),
            "name_enc",
        ),
        (
            "channel rename name_enc",
            rest.request(Method::PATCH, "/channels")
                .json(&json!({ "channel_id": channel.id, "name_enc": nul })),
            "name_enc",
        ),
        (
            "channel key envelope device_id",
            rest.request(Method::POST, "/channels/keys")
                .json(&channel_keys("dev\0ice", "ZW52")),
            "device_id",
        ),
        (
            "channel key envelope",
            rest.request(Method::POST, "/channels/keys")
                .json(&channel_keys(alice.device(), nul)),
            "envelope",
        ),
        (
            "directory key envelope device_id",
            rest.request(Method::POST, "/directory/keys")
                .json(&directory_keys("dev\0ice", "ZW52")),
            "device_id",
        ),
        (
            "directory key envelope",
            rest.request(Method::POST, "/directory/keys")
                .json(&directory_keys(alice.device(), nul)),
            "envelope",
        ),
        (
            "presence ids",
            rest.request(Method::POST, "/presence")
                .json(&json!({ "user_ids": [bob.id(), "us\0er"] })),
            "user_ids",
        ),
        (
            "history cursor",
            rest.request(
                Method::GET,
                &format!("/channels/messages?channel_id={}&after=%00", channel.id),
            ),
            "cursor",
        ),
        (
            "admin invite path",
            server
                .admin()
                .request(Method::DELETE, "/admin/invites/inv%00ite"),
            "invite id",
        ),
        (
            "admin user path",
            server
                .admin()
                .request(Method::POST, "/admin/users/us%00er/disable"),
            "user id",
        ),
        (
            "admin user path (promote)",
            server
                .admin()
                .request(Method::POST, "/admin/users/%00/promote"),
            "user id",
        ),
    ];
    for (i, (what, req, field)) in cases.into_iter().enumerate() {
        // Bob's send and the refused request are in flight together.
        let cmid = format!("bob-{i}");
        let (refused, ()) = tokio::join!(
            send_raw(req),
            still_chatting(&mut bob_ws, &channel.id, &cmid)
        );
        assert_refused(what, refused, field);
    }

    // Nothing of it was stored, and bob's messages all were.
    let db = &server.db;
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM user_profiles").await, 0);
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM channels").await, 1);
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM channel_key_envelopes")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM directory_key_envelopes")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM channel_messages").await,
        12
    );
    // The same fields without the NUL are accepted.
    rest.set_profile("YWxpY2U=", None).await.unwrap();
    rest.rename_channel(&channel.id, "cmVuYW1lZA==")
        .await
        .unwrap();
}
