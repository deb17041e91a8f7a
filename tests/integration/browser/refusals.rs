//! What the page says when the server refuses: a send over the per-user message budget is marked
//! not sent, with how long to wait, in words.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_send_over_the_message_budget_is_marked_not_sent_in_words() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_USER_MESSAGES", "3/60s");
    })
    .await;
    let Some(mut b) = Browser::start(&server).await else {
        return;
    };
    b.cmd(json!({"op": "newContext", "ctx": "alice"})).await;
    let invite = server.invite().await;
    b.cmd(
        json!({"op": "register", "ctx": "alice", "username": "kokako-alice",
                 "password": password("kokako-alice"), "invite": invite}),
    )
    .await;
    // The first user is the admin: a public channel made on the page.
    b.cmd(json!({"op": "createChannel", "ctx": "alice", "name": "budget", "private": false}))
        .await;
    for i in 0..3 {
        b.cmd(json!({"op": "send", "ctx": "alice", "text": format!("within budget {i}")}))
            .await;
    }
    let refused = b
        .cmd(json!({"op": "sendRefused", "ctx": "alice", "text": "one too many"}))
        .await;
    let said = refused["status"].as_str().unwrap();
    assert!(
        said.starts_with("Sending too fast: wait ") && said.ends_with("This message was not sent."),
        "{refused}"
    );
    assert_eq!(refused["failed"], 1, "{refused}");
    let shown = b.cmd(json!({"op": "count", "ctx": "alice"})).await;
    assert_eq!(
        shown["messages"], 4,
        "the refused text stays on the page: {shown}"
    );
    b.close().await;
}
