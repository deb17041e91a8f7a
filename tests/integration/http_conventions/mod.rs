//! HTTP conventions of SPEC §3: body limit (413), malformed and unknown-field JSON (400), any
//! Content-Type, 405/404 with JSON bodies, the exact error shape, `/health` and `/ready` with the
//! database up (their 503 side is in `dependency_down.rs`), RFC 3339 UTC times and UUID ids.
//!
//! This file: the helpers, the body limit, JSON parsing and Content-Type; `errors`: methods,
//! paths, the error shape, health and readiness, times and ids.

mod errors;

use dialtone::crypto::e2e::{DeviceKeypair, generate_key};
use dialtone::protocol::rest::{
    ChannelKeysUpload, CreateInviteRequest, EnvelopeUpload, LoginRequest,
};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

const MIB: usize = 1 << 20;

/// A register body of exactly `len` bytes (the username is padded).
fn register_body_of_len(len: usize) -> String {
    let skeleton = r#"{"username":"","password":"abcdefg1","public_key":"x","invite_token":"x"}"#;
    let pad = "a".repeat(len - skeleton.len());
    let body = format!(
        r#"{{"username":"{pad}","password":"abcdefg1","public_key":"x","invite_token":"x"}}"#
    );
    assert_eq!(body.len(), len);
    body
}

fn is_snake_case(s: &str) -> bool {
    !s.is_empty()
        && s.split('_').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Send and check the response is an error with exactly `{error, code}`, JSON-typed.
async fn error_response(req: reqwest::RequestBuilder, status: u16) -> serde_json::Value {
    let res = req.send().await.expect("request");
    assert_eq!(res.status().as_u16(), status, "status");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.unwrap();
    error_shape(&content_type, &text)
}

/// POST to `path` announcing a body of `len` bytes, and read the answer before sending any of it
/// (returns status, content type, body). An oversized body is refused on its `Content-Length`
/// alone; a client that kept writing it after the 413 could meet the server's close as a
/// connection reset instead of reading the answer.
async fn post_head_only(server: &TestServer, path: &str, len: usize) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = server.raw_tls().await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).into_owned();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let length: usize = header("content-length")
                    .expect("a sized answer")
                    .parse()
                    .unwrap();
                if got.len() >= end + 4 + length {
                    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                    let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]);
                    return (
                        status,
                        header("content-type").unwrap_or_default(),
                        body.into(),
                    );
                }
            }
            let n = tls.read(&mut buf).await.expect("read the answer");
            assert!(n > 0, "connection ended before a full answer: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("an answer")
}

/// Check an error response's type and body: exactly `{error, code}`, JSON-typed; the body.
fn error_shape(content_type: &str, text: &str) -> serde_json::Value {
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
    let body: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(json_keys(&body), ["code", "error"], "error body {body}");
    let code = body["code"].as_str().expect("code is a string");
    assert!(is_snake_case(code), "code {code:?} is not snake_case");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error message: {body}"
    );
    body
}

#[tokio::test]
async fn body_over_1_mib_is_413() {
    let server = TestServer::start().await;
    // One byte over, and far larger: refused before the body is read.
    for len in [MIB + 1, 4 * MIB] {
        let (status, content_type, text) = post_head_only(&server, "/auth/register", len).await;
        assert_eq!(status, 413, "{len} bytes: {text}");
        let err = error_shape(&content_type, &text);
        assert_eq!(
            err,
            json!({"error": "request body too large (limit 1 MiB)", "code": "payload_too_large"})
        );
    }
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 0);
}

#[tokio::test]
async fn body_of_exactly_1_mib_is_read() {
    let server = TestServer::start().await;
    // Parsed (and refused for its content), not refused for its size.
    let req = server
        .rest()
        .request(Method::POST, "/auth/register")
        .header("Content-Type", "application/json")
        .body(register_body_of_len(MIB));
    let err = error_response(req, 400).await;
    assert_eq!(err["code"], "invalid_request", "{err}");
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    for body in [
        r#"{"username":"#,
        "not json",
        r#"{"username":"alice",}"#,
        "[]",
        "null",
        "42",
    ] {
        let req = server
            .rest()
            .request(Method::POST, "/auth/login")
            .header("Content-Type", "application/json")
            .body(body);
        let err = error_response(req, 400).await;
        assert_eq!(err["code"], "invalid_json", "body {body:?}");
    }
    // Wrong field types are malformed too.
    let req = alice
        .rest
        .request(Method::POST, "/channels")
        .json(&json!({"name_enc": 12}));
    error_response(req, 400).await;
    // An authenticated endpoint with a required body and none.
    let req = alice.rest.request(Method::POST, "/channels");
    error_response(req, 400).await;
    assert_eq!(alice.rest.channels().await.unwrap(), vec![]);
}

#[tokio::test]
async fn unknown_fields_are_400() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let keys = DeviceKeypair::generate();
    let invite = server.invite().await;
    let req = server
        .rest()
        .request(Method::POST, "/auth/register")
        .json(&json!({
            "username": "bob",
            "password": "pw-bob-12345",
            "public_key": keys.public_key_b64(),
            "invite_token": invite,
            "is_admin": true,
        }));
    error_response(req, 400).await;
    let req = alice
        .rest
        .request(Method::POST, "/channels")
        .json(&json!({"name_enc": "bmFtZQ==", "created_by": "someone"}));
    error_response(req, 400).await;
    let req = alice
        .rest
        .request(Method::POST, "/presence")
        .json(&json!({"user_ids": [], "extra": 1}));
    error_response(req, 400).await;
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM users").await,
        1,
        "bob was not registered"
    );
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM channels").await,
        0
    );
    // The invite is still unused.
    let bob = server
        .rest()
        .register(&dialtone::protocol::rest::RegisterRequest {
            username: "bob".into(),
            password: "pw-bob-12345".into(),
            public_key: keys.public_key_b64(),
            invite_token: invite,
        })
        .await
        .unwrap();
    assert!(!bob.is_admin);
}

#[tokio::test]
async fn any_content_type_is_accepted() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let login = serde_json::to_vec(&LoginRequest {
        username: "alice".into(),
        password: password("alice"),
        public_key: alice.keys.public_key_b64(),
        invite_token: None,
    })
    .unwrap();
    // No Content-Type at all.
    let res = server
        .rest()
        .request(Method::POST, "/auth/login")
        .body(login.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let auth: dialtone::protocol::rest::AuthResponse = res.json().await.unwrap();
    assert_eq!(auth.user_id, alice.id());
    // Another Content-Type.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ] {
        let (status, body) = send_raw(
            server
                .rest()
                .request(Method::POST, "/auth/login")
                .header("Content-Type", ct)
                .body(login.clone()),
        )
        .await;
        assert_eq!(status, 200, "content type {ct}: {body}");
        assert_eq!(body["user_id"], alice.id());
    }
    // An authenticated write without a Content-Type.
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/channels")
            .body(r#"{"name_enc":"bmFtZQ=="}"#),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(body["channel"]["name_enc"], "bmFtZQ==");
}
