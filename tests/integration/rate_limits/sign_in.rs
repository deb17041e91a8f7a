//! Limits on signing in: login and registration per address and per account, WebSocket
//! upgrades per address, refused credentials per address, and `X-Forwarded-For` from trusted
//! proxies only.

use std::net::IpAddr;

use dialtone::client::{RestClient, WsClient};
use reqwest::Method;

use crate::support::*;

use super::*;

#[tokio::test]
async fn login_per_address_refuses_with_retry_after_and_spares_signed_in_users() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "3/hour");
    })
    .await;
    let alice = server.user("alice").await;
    for _ in 0..3 {
        let got = login_from(&server, None, &login_body("alice", "wrong-password-1")).await;
        assert_eq!(got.0, 401, "{:?}", got.2);
    }
    // The right password from the same address is refused too: the bucket is the address's.
    let got = login_from(&server, None, &login_body("alice", &password("alice"))).await;
    assert_limited(&got, "login_ip");
    // A signed-in user's requests from that address are not login attempts.
    alice.rest.channels().await.expect("GET /channels");
    let m = Scrape::of(&server).await;
    assert_eq!(m.counter(&limited("login_ip")), 1);
    assert!(m.counter("dialtone_login_failures_total") >= 3);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let trusted = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "2/hour")
            .set("DIALTONE_TRUSTED_PROXIES", "127.0.0.0/8");
    })
    .await;
    let wrong = login_body("nobody", "wrong-password-1");
    // Behind a trusted proxy, each forwarded client has its own bucket; a forged entry left of
    // the proxy's own does not make a new one.
    for xff in ["198.51.100.1", "6.6.6.6, 198.51.100.1"] {
        assert_eq!(login_from(&trusted, Some(xff), &wrong).await.0, 401);
    }
    assert_limited(
        &login_from(&trusted, Some("7.7.7.7, 198.51.100.1"), &wrong).await,
        "login_ip",
    );
    assert_eq!(
        login_from(&trusted, Some("198.51.100.2"), &wrong).await.0,
        401,
        "another client behind the proxy still gets through"
    );

    // Without trusted proxies the header is the client's word and changes nothing.
    let untrusted = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "2/hour");
    })
    .await;
    for xff in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(login_from(&untrusted, Some(xff), &wrong).await.0, 401);
    }
    assert_limited(
        &login_from(&untrusted, Some("198.51.100.3"), &wrong).await,
        "login_ip",
    );
}

#[tokio::test]
async fn login_per_account_is_keyed_by_the_normalized_username() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "off")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "2/hour");
    })
    .await;
    let _alice = server.user("alice").await;
    let _bob = server.user("bob").await;
    for name in ["alice", "ALICE"] {
        let got = login_from(&server, None, &login_body(name, "wrong-password-1")).await;
        assert_eq!(got.0, 401);
    }
    let got = login_from(&server, None, &login_body(" Alice ", &password("alice"))).await;
    assert_limited(&got, "login_account");
    // Another account is untouched.
    let got = login_from(&server, None, &login_body("bob", &password("bob"))).await;
    assert_eq!(got.0, 200, "{:?}", got.2);
    assert_eq!(
        Scrape::of(&server).await.counter(&limited("login_account")),
        1
    );
}

/// Someone guessing an account's password from one address spends that address's bucket of the
/// account, not the account's owner's: the owner still signs in from elsewhere. Guesses spread
/// over many addresses meet the account-wide ceiling.
#[tokio::test]
async fn wrong_guesses_from_one_address_do_not_lock_the_owner_out() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "off")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "2/hour")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT_ALL", "4/hour")
            .set("DIALTONE_TRUSTED_PROXIES", "127.0.0.0/8");
    })
    .await;
    let _alice = server.user("alice").await;
    let guess = login_body("alice", "wrong-password-1");
    let attacker = Some("203.0.113.9");
    for _ in 0..2 {
        assert_eq!(login_from(&server, attacker, &guess).await.0, 401);
    }
    assert_limited(
        &login_from(&server, attacker, &guess).await,
        "login_account",
    );
    let owner = login_body("alice", &password("alice"));
    let got = login_from(&server, Some("198.51.100.7"), &owner).await;
    assert_eq!(got.0, 200, "the owner, from another address: {:?}", got.2);
    // A second address's guesses reach the ceiling of the account across addresses (2 + 1 + 1).
    let other = Some("192.0.2.44");
    assert_eq!(login_from(&server, other, &guess).await.0, 401);
    assert_limited(
        &login_from(&server, other, &guess).await,
        "login_account_all",
    );
    let m = Scrape::of(&server).await;
    assert_eq!(m.counter(&limited("login_account")), 1);
    assert_eq!(m.counter(&limited("login_account_all")), 1);
}

#[tokio::test]
async fn registration_per_address_and_per_account() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_REGISTER_IP", "4/hour")
            .set("DIALTONE_LIMIT_REGISTER_ACCOUNT", "2/hour");
    })
    .await;
    // Junk invites: each attempt is answered (404) but costs a token.
    for name in ["carol", "carol"] {
        assert_eq!(register(&server, &register_body(name)).await.0, 404);
    }
    assert_limited(
        &register(&server, &register_body("Carol")).await,
        "register_account",
    );
    assert_eq!(register(&server, &register_body("dave")).await.0, 404);
    // The address has spent its four tokens (the account's refusal came after the address's).
    assert_limited(
        &register(&server, &register_body("erin")).await,
        "register_ip",
    );
    let m = Scrape::of(&server).await;
    assert_eq!(m.counter(&limited("register_account")), 1);
    assert_eq!(m.counter(&limited("register_ip")), 1);
}

#[tokio::test]
async fn websocket_upgrades_per_address() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_WS_UPGRADE_IP", "2/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let mut first = server.ws(&alice).await;
    let _second = server.ws(&alice).await;
    let refused = WsClient::connect(&server.ws_options(alice.token())).await;
    assert_error(refused.map(|_| ()), 429, "rate_limited");
    // Open sockets and REST are not upgrades.
    ws_ready(&mut first).await;
    alice.rest.channels().await.expect("GET /channels");
    assert_eq!(
        Scrape::of(&server).await.counter(&limited("ws_upgrade_ip")),
        1
    );
}

#[tokio::test]
async fn an_address_presenting_junk_credentials_is_refused_unchecked_and_others_are_not() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_AUTH_FAILURES_IP", "3/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let (bad, other) = (IpAddr::from([127, 0, 0, 7]), IpAddr::from([127, 0, 0, 8]));
    let from = |ip: IpAddr| RestClient::from_address(&server.base_url, &server.trust(), Some(ip));
    let junk = |ip| {
        from(ip)
            .unwrap()
            .with_token("not-a-session-token")
            .request(Method::GET, "/channels")
    };
    let wrong_admin = |ip| {
        from(ip)
            .unwrap()
            .request(Method::GET, "/admin/users")
            .header("x-admin-token", "not-the-admin-token")
    };
    // Three refused credentials (bearer or admin token) spend the address's bucket; the fourth
    // is still looked up (and refused as wrong), and exceeds it...
    for req in [junk(bad), wrong_admin(bad), junk(bad), junk(bad)] {
        let got = send(req).await;
        assert_eq!(got.0, 401, "{:?}", got.2);
    }
    // ...then its credentials are refused without being looked up, good ones included, on REST,
    // admin and upgrades alike.
    assert_limited(&send(junk(bad)).await, "auth_failures_ip");
    assert_limited(&send(wrong_admin(bad)).await, "auth_failures_ip");
    let good = from(bad)
        .unwrap()
        .with_token(alice.token())
        .request(Method::GET, "/channels");
    assert_limited(&send(good).await, "auth_failures_ip");
    let mut upgrade = server.ws_options(alice.token());
    upgrade.local_addr = Some(bad);
    assert_error(
        WsClient::connect(&upgrade).await.map(|_| ()),
        429,
        "rate_limited",
    );
    // Another address is untouched.
    let got = send(junk(other)).await;
    assert_eq!(got.0, 401, "{:?}", got.2);
    alice.rest.channels().await.expect("GET /channels");
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
    assert_eq!(
        Scrape::of(&server)
            .await
            .counter(&limited("auth_failures_ip")),
        4
    );
}
