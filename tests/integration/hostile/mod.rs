//! Hostile input (issue 9): frames whose header declares more than the limit, values the store
//! cannot hold (NUL) on every field that reaches the database, and error events that name the
//! request they answer. Each case also checks that another user's traffic in the same moment is
//! unaffected.

mod error_correlation;
mod frames;
mod log_floods;
mod nul_rest;
mod nul_ws;
mod tls;

use dialtone::client::WsClient;
use dialtone::protocol::ws::{ClientFrame, event_type};

use crate::support::WAIT;

/// A well-formed channel message (base64 body and name).
pub fn good_message(channel_id: &str, client_message_id: &str) -> ClientFrame {
    ClientFrame::channel_message(
        channel_id,
        "aGVsbG8=",
        "bmFtZQ==",
        Some(client_message_id.to_owned()),
    )
}

/// Send a well-formed message on `ws` and wait for its echo (other events are skipped): proves
/// this socket and the group commit still serve a legitimate user.
pub async fn still_chatting(ws: &mut WsClient, channel_id: &str, client_message_id: &str) {
    ws.send(&good_message(channel_id, client_message_id))
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = ws
            .expect_event(event_type::CHANNEL_MESSAGE_NEW, left)
            .await
            .unwrap_or_else(|e| panic!("no echo of {client_message_id}: {e}"));
        if e.client_message_id.as_deref() == Some(client_message_id) {
            return;
        }
    }
}
