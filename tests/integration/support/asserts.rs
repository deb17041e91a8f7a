//! Assertions, polling and raw requests shared by the suites.

use std::time::Duration;

use dialtone::client::RestClient;

use super::WAIT;

/// Assert an API error's status (and code).
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    r: Result<T, dialtone::client::ClientError>,
    status: u16,
) -> dialtone::client::ClientError {
    match r {
        Ok(v) => panic!("expected HTTP {status}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.status(), Some(status), "unexpected error: {e}");
            e
        }
    }
}

/// hex HMAC-SHA256(pepper, username): the `users.username_hash` of dialtone v1 (SPEC §6), computed
/// independently of the server.
pub fn username_hash(pepper: &str, normalized_username: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(pepper.as_bytes()).expect("HMAC takes any key length");
    mac.update(normalized_username.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `<key id>` of a stored `enc:v1:<key id>:<b64>` value; `None` for anything else.
pub fn enc_key_id(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix("enc:v1:")?;
    let (id, body) = rest.split_once(':')?;
    (!id.is_empty() && !body.is_empty()).then_some(id)
}

/// Assert an API error's status and `code`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    r: Result<T, dialtone::client::ClientError>,
    status: u16,
    code: &str,
) -> dialtone::client::ClientError {
    let e = assert_status(r, status);
    assert_eq!(e.code(), Some(code), "unexpected error code: {e}");
    e
}

/// Send a raw request: the status and the body as JSON (`Null` when empty, a JSON string holding
/// the text when the body is not JSON).
pub async fn send_raw(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("response body");
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, body)
}

/// The keys of a JSON object, sorted (panics if `v` is not an object).
#[track_caller]
pub fn json_keys(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Assert that a JSON error body is exactly `{"error": <non-empty>, "code": <code>}`.
#[track_caller]
pub fn assert_error_body(body: &serde_json::Value, code: &str) {
    assert_eq!(json_keys(body), ["code", "error"], "error body: {body}");
    assert_eq!(body["code"], code, "error body: {body}");
    assert!(
        body["error"].as_str().is_some_and(|s| !s.is_empty()),
        "error message must be a non-empty string: {body}"
    );
}

/// Assert `s` is a UUID string (canonical hyphenated form).
#[track_caller]
pub fn assert_uuid(s: &str) {
    let parsed = uuid::Uuid::parse_str(s).unwrap_or_else(|e| panic!("{s:?} is not a UUID: {e}"));
    assert_eq!(
        parsed.hyphenated().to_string(),
        s.to_ascii_lowercase(),
        "{s:?} is not a hyphenated UUID"
    );
}

/// Assert `s` is an RFC 3339 UTC time ending in `Z`; returns it parsed.
#[track_caller]
pub fn assert_utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    assert!(s.ends_with('Z'), "{s:?} does not end in Z");
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert_eq!(t.offset().local_minus_utc(), 0, "{s:?} is not UTC");
    t.with_timezone(&chrono::Utc)
}

/// Poll `check` until it returns true; panic with `what` after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// POST a JSON body with `rest`'s credentials; the exact status and the body as JSON (a non-JSON
/// body becomes a JSON string).
pub async fn post_json(
    rest: &RestClient,
    path: &str,
    body: &impl serde::Serialize,
) -> (u16, serde_json::Value) {
    let res = rest
        .request(reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("response body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// Say on the terminal (not the captured test output) that a test did not run its checks, and why.
pub fn skip(why: &str) {
    use std::io::Write;
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    let _ = writeln!(std::io::stderr(), "SKIPPED {name}: {why}");
}
