//! The first path through the server: register, channel, message over WebSocket.

use dialtone::protocol::ws::{ClientFrame, close_code, event_type};

use crate::support::*;

#[tokio::test]
async fn register_create_channel_and_chat() {
    let server = TestServer::start().await;
    server.rest().health().await.unwrap();
    server.rest().ready().await.unwrap();
    let alice = server.user("alice").await;
    assert!(alice.auth.is_admin, "first user is admin");
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws.send(&ClientFrame::channel_message(
        &channel.id,
        "Ym9keQ==",
        "bmFtZQ==",
        Some("c1".into()),
    ))
    .await
    .unwrap();
    let echo = ws
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(echo.body, "Ym9keQ==");
    assert_eq!(echo.client_message_id.as_deref(), Some("c1"));
    let history = alice
        .rest
        .messages(&channel.id, &Default::default())
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1);
    assert_eq!(history.messages[0].id, echo.message_id);
    ws.close().await.unwrap();
    // The server answers the client's close handshake.
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
}
