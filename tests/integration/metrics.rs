//! `GET /metrics` (Prometheus): counters move by exactly what the test caused. Each test has its
//! own server, and nothing else talks to it, so exact deltas hold; the WebSocket counters
//! (`slow_consumer_closes`) are checked where their cause is provoked (`ws_order.rs`).

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::json;

use crate::support::*;

/// Every `http_responses` series of a scrape: status → count.
fn by_status(scrape: &Scrape) -> BTreeMap<u16, u64> {
    (100..600)
        .filter_map(|s| {
            let series = http_status_series(s);
            scrape.value(&series).map(|_| (s, scrape.counter(&series)))
        })
        .collect()
}

#[tokio::test]
async fn http_responses_count_exactly_the_responses_by_status() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("bWV0cmljcw==").await.unwrap();
    let rest = server.rest();
    let before = Scrape::of(&server).await;

    let mut caused: BTreeMap<u16, u64> = BTreeMap::new();
    let mut expect = |status: u16, (got, body): (u16, serde_json::Value)| {
        assert_eq!(got, status, "{body}");
        *caused.entry(status).or_default() += 1;
    };
    // 200
    expect(200, send_raw(rest.request(Method::GET, "/health")).await);
    expect(200, send_raw(rest.request(Method::GET, "/ready")).await);
    expect(
        200,
        send_raw(alice.rest.request(Method::GET, "/channels")).await,
    );
    // 401: no token, an unknown token, no admin token
    expect(401, send_raw(rest.request(Method::GET, "/channels")).await);
    expect(
        401,
        send_raw(
            rest.request(Method::GET, "/channels")
                .bearer_auth("not-a-session-token"),
        )
        .await,
    );
    expect(401, send_raw(rest.request(Method::GET, "/metrics")).await);
    // 404: no such path, no such channel
    expect(404, send_raw(rest.request(Method::GET, "/nope")).await);
    expect(
        404,
        send_raw(alice.rest.request(
            Method::GET,
            &format!("/channels/messages?channel_id={}", uuid::Uuid::new_v4()),
        ))
        .await,
    );
    // 400: malformed JSON, an unknown field, a malformed query string
    expect(
        400,
        send_raw(rest.request(Method::POST, "/auth/login").body("{")).await,
    );
    expect(
        400,
        send_raw(
            alice
                .rest
                .request(Method::POST, "/channels")
                .json(&json!({"name_enc": "eA==", "extra": 1})),
        )
        .await,
    );
    expect(
        400,
        send_raw(alice.rest.request(
            Method::GET,
            &format!("/channels/messages?channel_id={}&limit=many", channel.id),
        ))
        .await,
    );
    // 405
    expect(405, send_raw(rest.request(Method::PUT, "/health")).await);

    let after = Scrape::of(&server).await;
    // The first scrape is itself a 200, counted once its response was rendered.
    *caused.entry(200).or_default() += 1;
    let (before, after) = (by_status(&before), by_status(&after));
    let statuses: std::collections::BTreeSet<u16> =
        before.keys().chain(after.keys()).copied().collect();
    let moved: BTreeMap<u16, u64> = statuses
        .into_iter()
        .map(|s| {
            let (b, a) = (before.get(&s).copied().unwrap_or(0), after[&s]);
            (s, a - b)
        })
        .filter(|&(_, d)| d > 0)
        .collect();
    assert_eq!(moved, caused, "http_responses moved by status");
}
