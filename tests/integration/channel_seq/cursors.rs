//! History and `sync` by message id follow the commit order (`seq`), not the `sent_at` times two
//! nodes' clocks stamped.

use super::*;

/// The ids of one history page.
async fn history_ids(
    user: &TestUser,
    channel: &str,
    before: Option<String>,
    after: Option<String>,
) -> Vec<String> {
    let page = dialtone::client::rest::Page {
        limit: None,
        before,
        after,
    };
    let res = user.rest.messages(channel, &page).await.unwrap();
    res.messages.into_iter().map(|m| m.id).collect()
}

/// Two nodes stamp `sent_at` on their own clocks when a batch forms, so a message committed later
/// (higher `seq`) can carry an earlier time. History and `sync` by message id page in commit
/// order: the cursor is resolved to its message's `seq`, so no such message is skipped.
#[tokio::test]
async fn message_id_cursors_page_by_seq_whatever_the_sent_at_times_say() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let echoes = send_messages(&server, &alice, &channel.id, 3).await;
    let ids: Vec<String> = echoes.iter().map(|e| e.message_id.clone()).collect();
    // seq 2 as a node with a slow clock would have stamped it: before seq 1.
    server
        .db
        .execute(&format!(
            "UPDATE channel_messages SET sent_at = '2000-01-01T00:00:00.000000Z' \
             WHERE channel_id = '{}' AND seq = 2",
            channel.id
        ))
        .await;
    let history = |before: Option<&String>, after: Option<&String>| {
        history_ids(&alice, &channel.id, before.cloned(), after.cloned())
    };
    assert_eq!(history(None, None).await, ids, "newest page");
    assert_eq!(history(None, Some(&ids[0])).await, ids[1..]);
    assert_eq!(history(Some(&ids[2]), None).await, ids[..2]);

    let mut ws = connected(&server, &alice).await;
    ws.send(&ClientFrame::sync(&channel.id, Some(ids[0].clone())))
        .await
        .unwrap();
    let (tail, _) = synced(&mut ws, &channel.id).await;
    assert_eq!(
        tail.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(),
        [2, 3]
    );
}
