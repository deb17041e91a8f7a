//! The rate-limit layer (README "Rate limits"): every limit refuses with `429 rate_limited` and
//! `Retry-After` (REST) or a `rate_limited` error event naming the frame (WebSocket), is counted
//! in `/metrics`, and leaves everyone else's traffic alone. Limits are set tiny per test, with
//! refill times of minutes, so what passes and what is refused does not depend on speed.
//!
//! Files: `sign_in` (login, registration, upgrades, trusted proxies), `budgets` (sockets,
//! messages and bytes per user), `requests` (history, sync, subscriptions, uploads, caps).

use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::rest::{LoginRequest, RegisterRequest};
use dialtone::protocol::ws::event_type;
use reqwest::Method;

use crate::support::*;

mod budgets;
mod requests;
mod sign_in;

pub(super) fn limited(limit: &str) -> String {
    format!("dialtone_rate_limited_total{{limit=\"{limit}\"}}")
}

/// Send `req`; the status, `Retry-After` (seconds) and the JSON body.
pub(super) async fn send(req: reqwest::RequestBuilder) -> (u16, Option<u64>, serde_json::Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    (status, retry, body)
}

/// Assert a `429 rate_limited` whose message names `limit`, with a positive `Retry-After`.
#[track_caller]
pub(super) fn assert_limited(got: &(u16, Option<u64>, serde_json::Value), limit: &str) {
    let (status, retry, body) = got;
    assert_eq!(*status, 429, "{body}");
    assert_error_body(body, "rate_limited");
    assert!(
        body["error"].as_str().is_some_and(|m| m.contains(limit)),
        "{body}"
    );
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
}

pub(super) fn login_body(username: &str, password: &str) -> LoginRequest {
    LoginRequest {
        username: username.into(),
        password: password.into(),
        public_key: dialtone::crypto::e2e::DeviceKeypair::generate().public_key_b64(),
        invite_token: None,
    }
}

pub(super) async fn login_from(
    server: &TestServer,
    forwarded_for: Option<&str>,
    body: &LoginRequest,
) -> (u16, Option<u64>, serde_json::Value) {
    let mut req = server
        .rest()
        .request(Method::POST, "/auth/login")
        .json(body);
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    send(req).await
}

pub(super) fn register_body(username: &str) -> RegisterRequest {
    RegisterRequest {
        username: username.into(),
        password: "a-long-password-1".into(),
        public_key: dialtone::crypto::e2e::DeviceKeypair::generate().public_key_b64(),
        invite_token: "no-such-invite".into(),
    }
}

pub(super) async fn register(
    server: &TestServer,
    body: &RegisterRequest,
) -> (u16, Option<u64>, serde_json::Value) {
    send(
        server
            .rest()
            .request(Method::POST, "/auth/register")
            .json(body),
    )
    .await
}

pub(super) async fn answers(
    ws: &mut WsClient,
    prefix: &str,
    n: usize,
) -> (Vec<String>, Vec<dialtone::protocol::ws::Event>) {
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    while accepted.len() + refused.len() < n {
        match ws.next_within(WAIT).await.unwrap() {
            Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                let id = e.client_message_id.unwrap_or_default();
                if id.starts_with(prefix) {
                    accepted.push(id);
                }
            }
            Some(Incoming::Event(e)) if e.kind == event_type::ERROR => refused.push(*e),
            Some(Incoming::Event(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (accepted, refused)
}
