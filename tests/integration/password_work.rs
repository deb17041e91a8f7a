//! Password work (argon2/bcrypt) under load: it runs in its own bounded queue, never inside a
//! database slot; a full queue answers 503 with `Retry-After`; every login path costs exactly one
//! password computation and a junk invite costs none; refusals are counted.

use dialtone::crypto::e2e::DeviceKeypair;
use serde_json::json;

use crate::support::*;

/// The value of an unlabelled metric, scraped now.
async fn metric(server: &TestServer, name: &str) -> f64 {
    Scrape::of(server)
        .await
        .value(name)
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

fn login_body(username: &str, password: &str) -> serde_json::Value {
    json!({
        "username": username,
        "password": password,
        "public_key": DeviceKeypair::generate().public_key_b64(),
    })
}

#[tokio::test]
async fn each_login_costs_one_computation_and_a_junk_invite_none() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let computations = "dialtone_password_computations_total";
    let failures = "dialtone_login_failures_total";
    let anon = server.rest();
    let before = metric(&server, computations).await;

    // A junk invite is refused before any hashing.
    let register = json!({
        "username": "mallory", "password": password("mallory"),
        "public_key": DeviceKeypair::generate().public_key_b64(), "invite_token": "junk-invite",
    });
    let (status, body) = post_json(&anon, "/auth/register", &register).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert_eq!(metric(&server, computations).await, before);

    // Wrong password, unknown user, malformed username: one computation each, one 401 alike.
    for (who, pw) in [
        (alice.name.as_str(), "wrong-password-1"),
        ("nobody-here", "wrong-password-1"),
        ("x", "wrong-password-1"),
    ] {
        let (status, body) = post_json(&anon, "/auth/login", &login_body(who, pw)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{body}"
        );
    }
    assert_eq!(metric(&server, computations).await, before + 3.0);
    assert_eq!(metric(&server, failures).await, 3.0);

    // The right password: one computation too, and no failure counted.
    let (status, body) = post_json(
        &anon,
        "/auth/login",
        &login_body(&alice.name, &password(&alice.name)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric(&server, computations).await, before + 4.0);
    assert_eq!(metric(&server, failures).await, 3.0);
}

#[tokio::test]
async fn a_login_flood_holds_no_database_slot() {
    // One database slot and one connection: a login that hashed inside its slot would make every
    // other request wait behind the whole flood.
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_DB_MAX_INFLIGHT", "1")
            .set("DIALTONE_DB_POOL_SIZE", "1")
            .set("DIALTONE_PASSWORD_WORKERS", "1")
            .set("DIALTONE_PASSWORD_QUEUE", "64");
    })
    .await;
    let alice = server.user("alice").await;
    const FLOOD: usize = 24;
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let anon = server.rest();
            tokio::spawn(async move {
                let body = login_body(&format!("flooder-{i}"), "wrong-password-1");
                post_json(&anon, "/auth/login", &body).await
            })
        })
        .collect();
    eventually("the flood fills the password queue", || async {
        metric(&server, "dialtone_password_queue_depth").await >= 4.0
    })
    .await;
    alice
        .rest
        .channels()
        .await
        .expect("served during the flood");
    assert!(
        metric(&server, "dialtone_password_queue_depth").await >= 1.0,
        "the request was served only after the flood had drained"
    );
    for f in flood {
        let (status, body) = f.await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_full_password_queue_answers_503_with_retry_after() {
    // The rate limits would refuse this many logins from one address first: off here.
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_PASSWORD_WORKERS", "1")
            .set("DIALTONE_PASSWORD_QUEUE", "0")
            .set("DIALTONE_LIMIT_LOGIN_IP", "off")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "off");
    })
    .await;
    let alice = server.user("alice").await;
    let mut refused = 0u32;
    for _round in 0..20 {
        let burst: Vec<_> = (0..8)
            .map(|_| {
                let req = server
                    .rest()
                    .request(reqwest::Method::POST, "/auth/login")
                    .json(&login_body("nobody-here", "wrong-password-1"));
                tokio::spawn(async move { req.send().await.expect("login") })
            })
            .collect();
        for b in burst {
            let res = b.await.unwrap();
            let status = res.status().as_u16();
            let retry = res.headers().get("retry-after").cloned();
            let body: serde_json::Value = res.json().await.unwrap();
            match status {
                401 => assert_eq!(body["code"], "unauthorized", "{body}"),
                503 => {
                    assert_eq!(body["code"], "unavailable", "{body}");
                    assert_eq!(retry.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
                    refused += 1;
                }
                other => panic!("login answered {other}: {body}"),
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(
        refused > 0,
        "8 logins at once never overflowed a queue of one"
    );
    assert_eq!(
        metric(&server, "dialtone_password_queue_refused_total").await,
        f64::from(refused)
    );
    // Once the burst is over, logins work again.
    let (status, body) = post_json(
        &server.rest(),
        "/auth/login",
        &login_body(&alice.name, &password(&alice.name)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
