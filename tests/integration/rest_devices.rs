//! `POST|GET /devices`, `GET /devices/keys` (own, `?all=1`) and `DELETE /devices/{id}`.

use std::collections::BTreeSet;

use base64::Engine;
use dialtone::crypto::e2e::{DeviceKeypair, generate_key};
use dialtone::protocol::rest::{
    ChannelKeysUpload, DirectoryKeysUpload, EnvelopeUpload, LoginRequest,
};
use dialtone::protocol::ws::close_code;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn add_device_to_own_account_is_201() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let laptop = DeviceKeypair::generate();
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/devices")
            .json(&json!({"user_id": alice.id(), "public_key": laptop.public_key_b64()})),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    for field in ["id", "user_id", "public_key", "created_at"] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    let id = body["id"].as_str().unwrap();
    assert_uuid(id);
    assert_ne!(id, alice.device());
    assert_eq!(body["user_id"], alice.id());
    assert_eq!(body["public_key"], laptop.public_key_b64());
    assert_utc(body["created_at"].as_str().unwrap());

    let listed: BTreeSet<(String, String)> = alice
        .rest
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.public_key))
        .collect();
    let want: BTreeSet<(String, String)> = [
        (alice.device().to_owned(), alice.keys.public_key_b64()),
        (id.to_owned(), laptop.public_key_b64()),
    ]
    .into();
    assert_eq!(listed, want);

    // Logging in with that key uses the device just added.
    let login = server
        .rest()
        .login(&LoginRequest {
            username: "alice".into(),
            password: password("alice"),
            public_key: laptop.public_key_b64(),
            invite_token: None,
        })
        .await
        .unwrap();
    assert_eq!(login.device_id, id);
}

#[tokio::test]
async fn add_device_to_another_account_is_403() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let key = DeviceKeypair::generate().public_key_b64();
    assert_error(
        alice.rest.add_device(bob.id(), &key).await,
        403,
        "forbidden",
    );
    assert_error(
        bob.rest.add_device(alice.id(), &key).await,
        403,
        "forbidden",
    );
    assert_error(
        bob.rest
            .add_device(&uuid::Uuid::new_v4().to_string(), &key)
            .await,
        403,
        "forbidden",
    );
    assert_eq!(bob.rest.devices().await.unwrap().len(), 1);
    assert_eq!(alice.rest.devices().await.unwrap().len(), 1);
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM devices").await,
        2
    );
}

#[tokio::test]
async fn adding_a_known_key_returns_the_existing_device() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let again = alice
        .rest
        .add_device(alice.id(), &alice.keys.public_key_b64())
        .await
        .unwrap();
    assert_eq!(again.id, alice.device());
    assert_eq!(again.public_key, alice.keys.public_key_b64());

    let laptop = DeviceKeypair::generate().public_key_b64();
    let first = alice.rest.add_device(alice.id(), &laptop).await.unwrap();
    let second = alice.rest.add_device(alice.id(), &laptop).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(first.created_at, second.created_at);
    // The same key written with surrounding whitespace is still the same key.
    let third = alice
        .rest
        .add_device(alice.id(), &format!(" {laptop} "))
        .await
        .unwrap();
    assert_eq!(third.id, first.id);
    assert_eq!(alice.rest.devices().await.unwrap().len(), 2);
}

#[tokio::test]
async fn another_users_key_is_a_separate_device() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    // Bob registers a key alice also uses: it becomes bob's own device, alice's stays hers.
    let shared = alice.keys.public_key_b64();
    let d = bob.rest.add_device(bob.id(), &shared).await.unwrap();
    assert_ne!(d.id, alice.device());
    assert_eq!(d.user_id, bob.id());
    assert_eq!(alice.rest.devices().await.unwrap().len(), 1);
}

#[tokio::test]
async fn add_device_with_a_bad_key_is_400() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![3u8; n]);
    let (short, long, double) = (b64(31), b64(33), b64(64));
    for key in [
        "",
        "AAAA",
        "not base64!!",
        short.as_str(),
        long.as_str(),
        double.as_str(),
    ] {
        assert_error(
            alice.rest.add_device(alice.id(), key).await,
            400,
            "invalid_request",
        );
    }
    assert_eq!(alice.rest.devices().await.unwrap().len(), 1);
}

#[tokio::test]
async fn devices_need_a_session() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let key = DeviceKeypair::generate().public_key_b64();
    assert_error(server.rest().devices().await, 401, "unauthorized");
    assert_error(
        server.rest().add_device(alice.id(), &key).await,
        401,
        "unauthorized",
    );
    assert_error(
        server.rest().device_keys(alice.id()).await,
        401,
        "unauthorized",
    );
    assert_error(server.rest().all_device_keys().await, 401, "unauthorized");
    assert_error(
        server.rest().delete_device(alice.device()).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn devices_lists_only_own_devices() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bob2 = server.new_device(&bob).await;
    let (status, body) = send_raw(alice.rest.request(Method::GET, "/devices")).await;
    assert_eq!(status, 200);
    assert_eq!(json_keys(&body), ["devices"]);
    let mine = alice.rest.devices().await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, alice.device());
    assert_eq!(mine[0].user_id, alice.id());
    let bobs: BTreeSet<String> = bob
        .rest
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        bobs,
        [bob.device().to_owned(), bob2.device().to_owned()].into()
    );
}

#[tokio::test]
async fn device_keys_of_own_user() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice2 = server.new_device(&alice).await;
    let _bob = server.user("bob").await;
    let (status, body) = send_raw(alice.rest.request(
        Method::GET,
        &format!("/devices/keys?user_id={}", alice.id()),
    ))
    .await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(json_keys(&body), ["keys", "user_id"]);
    assert_eq!(body["user_id"], alice.id());
    let mut got: Vec<(String, String)> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(json_keys(k), ["device_id", "public_key"], "key entry {k}");
            (
                k["device_id"].as_str().unwrap().to_owned(),
                k["public_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (alice.device().to_owned(), alice.keys.public_key_b64()),
        (alice2.device().to_owned(), alice2.keys.public_key_b64()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn device_keys_of_someone_else_is_403() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_error(bob.rest.device_keys(alice.id()).await, 403, "forbidden");
    // Admins too: ?all=1 is the way to see everyone's keys.
    assert_error(alice.rest.device_keys(bob.id()).await, 403, "forbidden");
    assert_error(
        bob.rest
            .device_keys(&uuid::Uuid::new_v4().to_string())
            .await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn device_keys_all_lists_every_device() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice2 = server.new_device(&alice).await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    server.admin().create_user("ghost").await.unwrap();

    let (status, body) = send_raw(bob.rest.request(Method::GET, "/devices/keys?all=1")).await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(json_keys(&body), ["keys", "user_id"]);
    assert_eq!(body["user_id"], "");
    let got: BTreeSet<(String, String, String)> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(
                json_keys(k),
                ["device_id", "public_key", "user_id"],
                "key entry {k}"
            );
            (
                k["user_id"].as_str().unwrap().to_owned(),
                k["device_id"].as_str().unwrap().to_owned(),
                k["public_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [&alice, &alice2, &bob, &carol]
        .into_iter()
        .map(|u| {
            (
                u.id().to_owned(),
                u.device().to_owned(),
                u.keys.public_key_b64(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(body["keys"].as_array().unwrap().len(), 4, "no duplicates");

    // The typed client sees the same.
    let typed = carol.rest.all_device_keys().await.unwrap();
    assert_eq!(typed.len(), 4);
    assert!(typed.iter().all(|k| k.user_id.is_some()));
}

#[tokio::test]
async fn delete_own_device_revokes_its_sessions() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice2 = server.new_device(&alice).await;
    let mut ws = server.ws(&alice2).await;
    alice2.rest.devices().await.unwrap();

    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::DELETE, &format!("/devices/{}", alice2.device())),
    )
    .await;
    assert_eq!(status, 204, "body: {body}");

    assert_error(alice2.rest.devices().await, 401, "unauthorized");
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
    let remaining = alice.rest.devices().await.unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].id, alice.device());
    let keys = alice.rest.device_keys(alice.id()).await.unwrap();
    assert_eq!(keys.keys.len(), 1);
    // Deleting it again: it is gone.
    assert_error(
        alice.rest.delete_device(alice2.device()).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn delete_device_removes_envelopes_addressed_to_it() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice2 = server.new_device(&alice).await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let key = generate_key();
    let envelopes = |targets: &[&TestUser]| -> Vec<EnvelopeUpload> {
        targets
            .iter()
            .map(|t| EnvelopeUpload {
                device_id: t.device().to_owned(),
                sender_device_id: alice.device().to_owned(),
                sender_public_key: alice.keys.public_key_b64(),
                envelope: alice.keys.wrap_for(&t.keys.public_key_b64(), &key).unwrap(),
                channel_id: None,
            })
            .collect()
    };
    alice
        .rest
        .upload_channel_keys(&ChannelKeysUpload {
            generation: None,
            channel_id: channel.id.clone(),
            envelopes: envelopes(&[&alice, &alice2]),
        })
        .await
        .unwrap();
    alice
        .rest
        .upload_directory_keys(&DirectoryKeysUpload {
            envelopes: envelopes(&[&alice, &alice2]),
        })
        .await
        .unwrap();
    let d2 = alice2.device();
    let count_for =
        |table: &str| format!("SELECT count(*) AS v FROM {table} WHERE device_id = '{d2}'");
    assert_eq!(
        server.db.count(&count_for("channel_key_envelopes")).await,
        1
    );
    assert_eq!(
        server.db.count(&count_for("directory_key_envelopes")).await,
        1
    );

    alice.rest.delete_device(d2).await.unwrap();
    assert_eq!(
        server.db.count(&count_for("channel_key_envelopes")).await,
        0
    );
    assert_eq!(
        server.db.count(&count_for("directory_key_envelopes")).await,
        0
    );
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT count(*) AS v FROM sessions WHERE device_id = '{d2}'"
            ))
            .await,
        0
    );
    // Alice's own envelopes (sent by the surviving device) are intact and still open.
    let mine = alice
        .rest
        .channel_key(&channel.id)
        .await
        .unwrap()
        .expect("own envelope");
    assert_eq!(
        *alice
            .keys
            .unwrap_from(&mine.sender_public_key, &mine.envelope)
            .unwrap(),
        *key
    );
    assert!(alice.rest.directory_key().await.unwrap().is_some());
}

#[tokio::test]
async fn delete_another_users_device_is_403() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    // Not even an admin may delete someone else's device through this endpoint.
    assert_error(
        alice.rest.delete_device(bob.device()).await,
        403,
        "forbidden",
    );
    assert_error(
        bob.rest.delete_device(alice.device()).await,
        403,
        "forbidden",
    );
    bob.rest.devices().await.unwrap();
    alice.rest.devices().await.unwrap();
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM devices").await,
        2
    );
}

#[tokio::test]
async fn delete_unknown_device_is_404() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    assert_error(
        alice
            .rest
            .delete_device(&uuid::Uuid::new_v4().to_string())
            .await,
        404,
        "not_found",
    );
    assert_error(
        alice.rest.delete_device("not-a-device").await,
        404,
        "not_found",
    );
    assert_eq!(alice.rest.devices().await.unwrap().len(), 1);
}
