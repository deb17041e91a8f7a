//! A page whose connection drops tells the person, reconnects by itself with backoff, and
//! catches up (`sync`) with what was said meanwhile: nothing is lost.

use serde_json::json;

use crate::e2e::register;
use crate::support::*;

const ROOM: &str = "the flaky wifi room";
const BEFORE: &str = "said before the connection dropped";
const DURING: &str = "said while the page was cut off";
const AFTER: &str = "said once the page was back";

#[tokio::test]
async fn a_page_that_loses_its_connection_reconnects_and_catches_up() {
    let server = TestServer::start().await;
    // The browser reaches the server through a proxy the test can cut.
    let proxy = Proxy::to(server.base_url.trim_start_matches("https://"));
    let Some(mut b) = Browser::start_at(&format!("https://{}", proxy.addr())).await else {
        return;
    };
    let mut admin = register(&server, "kaka-admin").await;
    let (room, _) = admin.create_channel(ROOM).await.unwrap();
    admin.send(&room.id, BEFORE).await.unwrap();
    b.cmd(json!({"op": "newContext", "ctx": "alice"})).await;
    let invite = server.invite().await;
    b.cmd(
        json!({"op": "register", "ctx": "alice", "username": "kea-cutoff",
                 "password": password("kea-cutoff"), "invite": invite}),
    )
    .await;
    admin.share_keys(None, None).await.unwrap();
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": ROOM}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": BEFORE}))
        .await;

    proxy.set(ProxyMode::Refuse);
    b.cmd(json!({"op": "waitStatus", "ctx": "alice", "text": "Reconnecting"}))
        .await;
    admin.send(&room.id, DURING).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    proxy.set(ProxyMode::Forward);
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": DURING}))
        .await;
    admin.send(&room.id, AFTER).await.unwrap();
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": AFTER}))
        .await;
    let shown = b.cmd(json!({"op": "messages", "ctx": "alice"})).await;
    let texts: Vec<&str> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, [BEFORE, DURING, AFTER], "once each, in order");
    let errors = b.cmd(json!({"op": "consoleErrors"})).await;
    let errors: Vec<&str> = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .filter(|e| !e.contains("WebSocket connection") && !e.contains("ERR_CONNECTION"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    b.close().await;
}
