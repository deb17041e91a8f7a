//! `/admin/stats` and `/metrics` are for admins only.

use reqwest::Method;

use crate::support::*;

#[tokio::test]
async fn admin_stats_shape() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let _ws = server.ws(&alice).await;
    let admin = server.admin();
    let admin_ref = &admin;
    eventually("the socket is counted", || async move {
        admin_ref.admin_stats().await.unwrap()["connections"] == 1
    })
    .await;
    let stats = admin.admin_stats().await.unwrap();
    assert!(stats["connections"].is_u64(), "{stats}");
    let mailboxes = stats["mailboxes"].as_object().expect("mailboxes object");
    for kind in ["db", "hub", "channel", "shard", "admin"] {
        let m = mailboxes
            .get(kind)
            .unwrap_or_else(|| panic!("mailbox {kind} missing: {stats}"));
        assert!(m.is_object() || m.is_number(), "mailbox {kind}: {m}");
    }
    assert!(
        stats.get("channels").is_some_and(|c| c.is_number()),
        "{stats}"
    );
    assert!(
        stats
            .get("messages_per_second")
            .is_some_and(|c| c.is_number()),
        "{stats}"
    );
    // An admin bearer may read them; others may not.
    alice.rest.admin_stats().await.unwrap();
    assert_error(bob.rest.admin_stats().await, 403, "forbidden");
    assert_error(server.rest().admin_stats().await, 401, "unauthorized");
}

#[tokio::test]
async fn metrics_are_admin_only() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    send_messages(&server, &alice, &channel.id, 3).await;

    let res = server
        .admin()
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("dialtone_messages_persisted"), "{text}");
    let persisted: f64 = text
        .lines()
        .find(|l| l.starts_with("dialtone_messages_persisted") && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("a dialtone_messages_persisted sample");
    assert!(persisted >= 3.0, "3 messages were persisted: {persisted}");

    let by_bearer = alice.rest.metrics_text().await.unwrap();
    assert!(by_bearer.contains("dialtone_messages_persisted"));
    assert_error(bob.rest.metrics_text().await, 403, "forbidden");
    assert_error(server.rest().metrics_text().await, 401, "unauthorized");
}
