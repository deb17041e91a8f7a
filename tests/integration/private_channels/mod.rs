//! Trust v2 private and direct channels (docs/TRUST.md §6) against the real server: who may do
//! what (`access`), key generations and rotation races (`rotation`), direct channels (`direct`),
//! the real client library and CLI keeping a removed member out (`clients`), and sender-device
//! signatures and verified names against a hostile member and server (`signatures`).

use dialtone::client::{ClientError, WsClient};
use dialtone::protocol::members::{KeyRotated, RotateKeyRequest};
use dialtone::protocol::rest::{Channel, EnvelopeUpload};
use dialtone::protocol::ws::{ClientFrame, Event, event_type};

use crate::support::*;

mod access;
mod clients;
mod direct;
mod rotation;
mod signatures;
mod v1_next_door;

/// A name ciphertext (the server never reads it).
pub(super) const NAME_ENC: &str = "bmFtZQ==";

/// An envelope from `from`'s device to `to`'s, wrapping a fixed key.
pub(super) fn wrap(from: &TestUser, to: &TestUser) -> EnvelopeUpload {
    EnvelopeUpload {
        device_id: to.device().to_owned(),
        sender_device_id: from.device().to_owned(),
        sender_public_key: from.keys.public_key_b64(),
        envelope: from
            .keys
            .wrap_for(&to.keys.public_key_b64(), &[7u8; 32])
            .unwrap(),
        channel_id: None,
    }
}

/// A user of the real client library with a published identity (a signed device list): private
/// channels take generation keys only from such users.
pub(super) async fn register_listed(server: &TestServer, name: &str) -> crate::e2e::Device {
    let mut d = crate::e2e::register(server, name).await;
    let (rest, store) = d.rest_and_store();
    dialtone::client::trust::identity::init(rest, store)
        .await
        .unwrap();
    d
}

pub(super) async fn private_channel(owner: &TestUser) -> Channel {
    let c = owner.rest.create_channel_of(NAME_ENC, true).await.unwrap();
    assert_eq!(c.kind.as_deref(), Some("private"), "{c:?}");
    assert_eq!(
        (c.key_generation, c.rotation_required),
        (Some(0), Some(true))
    );
    c
}

/// Post generation `generation`, wrapped by `by` for exactly these devices.
pub(super) async fn rotate(
    by: &TestUser,
    channel_id: &str,
    generation: i64,
    to: &[&TestUser],
) -> Result<KeyRotated, ClientError> {
    by.rest
        .rotate(&RotateKeyRequest {
            channel_id: channel_id.to_owned(),
            generation,
            envelopes: to.iter().map(|t| wrap(by, t)).collect(),
        })
        .await
}

/// A v2 body sealed (as far as the server can tell) under `generation`.
pub(super) fn body(generation: i64) -> String {
    format!("v2.{generation}.Ym9keQ==")
}

/// Send one message and return what answers it: its echo or its refusal.
pub(super) async fn send(ws: &mut WsClient, channel_id: &str, body: String) -> Event {
    let cmid = uuid::Uuid::new_v4().to_string();
    ws.send(&ClientFrame::channel_message(
        channel_id,
        body,
        NAME_ENC,
        Some(cmid.clone()),
    ))
    .await
    .unwrap();
    loop {
        let e = ws.expect_any(WAIT).await;
        let ours = e.client_message_id.as_deref() == Some(cmid.as_str());
        if ours && (e.kind == event_type::CHANNEL_MESSAGE_NEW || e.kind == event_type::ERROR) {
            return e;
        }
    }
}

/// The error code of a refused send (`None`: it was stored).
pub(super) fn refusal(e: &Event) -> Option<&str> {
    (e.kind == event_type::ERROR).then(|| e.code.as_deref().unwrap_or_default())
}

/// Reading events one at a time, skipping nothing.
pub(super) trait ExpectAny {
    async fn expect_any(&mut self, within: std::time::Duration) -> Event;
}

impl ExpectAny for WsClient {
    async fn expect_any(&mut self, within: std::time::Duration) -> Event {
        match self.next_within(within).await.unwrap() {
            Some(dialtone::client::Incoming::Event(e)) => *e,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// The next event of `kind` for `channel_id`, skipping others.
pub(super) async fn expect_for(ws: &mut WsClient, kind: &str, channel_id: &str) -> Event {
    loop {
        let e = ws.expect_any(WAIT).await;
        if e.kind == kind && e.channel_id.as_deref() == Some(channel_id) {
            return e;
        }
    }
}

/// Nothing about `channel_id` is queued for this socket: a probe round trip, failing on any event
/// that names the channel (presence and device announcements pass).
pub(super) async fn assert_nothing_about(ws: &mut WsClient, channel_id: &str, what: &str) {
    send_probe(ws).await;
    loop {
        let e = ws.expect_any(WAIT).await;
        if e.kind == event_type::ERROR && e.code.as_deref() == Some("unsupported_type") {
            return;
        }
        assert_ne!(e.channel_id.as_deref(), Some(channel_id), "{what}: {e:?}");
    }
}
