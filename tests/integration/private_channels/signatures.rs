//! Sender-device signatures on private-channel texts and envelopes, and display names from
//! signed profiles (docs/TRUST.md §6.4), against a hostile member who holds the key and a server
//! that rewrites rows.

use std::time::Duration;

use dialtone::client::Authenticity;
use dialtone::client::trust::bound::{self, Binding, Kind, Signer};
use dialtone::client::trust::identity;
use dialtone::crypto::e2e::DeviceKeypair;

use super::*;
use crate::e2e::{ADMIN, ANN, BOB, Device, online, register};

/// Three users with published identities, each holding the directory key and a signed profile.
async fn three(server: &TestServer) -> (Device, Device, Device) {
    let mut admin = register(server, ADMIN).await;
    let mut ann = register(server, ANN).await;
    let mut bob = register(server, BOB).await;
    for d in [&mut admin, &mut ann, &mut bob] {
        let (rest, store) = d.rest_and_store();
        identity::init(rest, store).await.unwrap();
    }
    admin.share_keys(None, None).await.unwrap();
    for d in [&mut ann, &mut bob] {
        d.refresh().await.unwrap();
    }
    (admin, ann, bob)
}

/// Send a raw frame and wait until it is stored: its id.
async fn send_raw(
    server: &TestServer,
    by: &Device,
    channel: &str,
    body: &str,
    name: &str,
) -> String {
    let mut ws = online(by).await;
    let cmid = format!("raw-{}", body.len());
    ws.send(&ClientFrame::channel_message(
        channel,
        body,
        name,
        Some(cmid.clone()),
    ))
    .await
    .unwrap();
    let sql = format!(
        "SELECT id AS v FROM channel_messages WHERE client_message_id = '{cmid}' AND channel_id = '{channel}'"
    );
    for _ in 0..100 {
        if let Some(Some(id)) = server.db.strings(&sql).await.into_iter().next() {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the raw message was not stored");
}

#[tokio::test]
async fn a_member_cannot_write_as_another_and_names_come_from_signed_profiles() {
    let server = TestServer::start().await;
    let (mallory, mut ann, mut bob) = three(&server).await;
    let c = ann.create_private_channel("signed").await.unwrap();
    for u in [bob.user_id().to_owned(), mallory.user_id().to_owned()] {
        ann.add_member(&c.id, &u, false).await.unwrap();
    }

    // An honest message: verified, by bob's device, under his profile name.
    bob.send(&c.id, "from bob").await.unwrap();
    // Bob's own text, with a sender name that claims to be ann: shown under bob's profile name.
    let key = bob.generation_key(&c.id, 1).await.unwrap();
    let bind = |kind| Binding {
        kind,
        channel_id: &c.id,
        generation: 1,
    };
    let (body, name) = {
        let me = Signer {
            user_id: bob.user_id(),
            device_id: bob.device_id(),
            key: bob.store().signing_key(),
        };
        (
            bound::seal(&key, &bind(Kind::Body), &me, "a name that lies"),
            bound::seal(&key, &bind(Kind::SenderName), &me, ANN),
        )
    };
    send_raw(&server, &bob, &c.id, &body, &name).await;

    // Mallory, a member, holds the key: she seals texts that claim bob's device (signed with her
    // own key) and one that claims a device of bob's that never existed; the server then names
    // bob as their sender.
    let forge = |device: &str, text: &str| {
        let s = Signer {
            user_id: bob.user_id(),
            device_id: device,
            key: mallory.store().signing_key(),
        };
        (
            bound::seal(&key, &bind(Kind::Body), &s, text),
            bound::seal(&key, &bind(Kind::SenderName), &s, BOB),
        )
    };
    let (b1, n1) = forge(bob.device_id(), "forged with bob's device id");
    let (b2, n2) = forge(mallory.device_id(), "forged with an unlisted device");
    let f1 = send_raw(&server, &mallory, &c.id, &b1, &n1).await;
    let f2 = send_raw(&server, &mallory, &c.id, &b2, &n2).await;
    for id in [&f1, &f2] {
        server
            .db
            .execute(&format!(
                "UPDATE channel_messages SET sender_id = '{}' WHERE id = '{id}'",
                bob.user_id()
            ))
            .await;
    }

    let page = ann.history(&c.id, &Default::default()).await.unwrap();
    assert_eq!(page.messages.len(), 4);
    let honest = page.messages[0].as_ref().unwrap();
    assert_eq!(honest.text, "from bob");
    assert_eq!(
        honest.authenticity,
        Authenticity::Verified {
            device_id: bob.device_id().to_owned()
        }
    );
    assert!(honest.name_verified);
    assert_eq!(honest.sender_name, BOB);
    let lying = page.messages[1].as_ref().unwrap();
    assert_eq!(lying.text, "a name that lies");
    assert!(lying.authenticity.is_verified());
    assert_eq!(
        (lying.sender_name.as_str(), lying.name_verified),
        (BOB, true),
        "the name comes from bob's signed profile, not from the message"
    );
    let e = page.messages[2].as_ref().unwrap_err().to_string();
    assert!(e.contains("signature does not verify"), "{e}");
    let e = page.messages[3].as_ref().unwrap_err().to_string();
    assert!(e.contains("never on the signed device list"), "{e}");
}

#[tokio::test]
async fn an_envelope_whose_sender_key_the_server_replaced_is_refused() {
    let server = TestServer::start().await;
    let (_admin, mut ann, mut bob) = three(&server).await;
    let c = ann.create_private_channel("envelopes").await.unwrap();
    ann.add_member(&c.id, bob.user_id(), false).await.unwrap();
    plant_sender_key(
        &server,
        "channel_generation_envelopes",
        &c.id,
        bob.device_id(),
    )
    .await;
    let e = bob.generation_key(&c.id, 1).await.unwrap_err().to_string();
    assert!(e.contains("the server substituted it"), "{e}");
    assert!(bob.store().generation_key(&c.id, 1).is_none());

    // The signature binds the envelope to its channel, generation and target: a copy moved to
    // another device's row no longer verifies.
    let d = ann.rotate_channel(&c.id).await.unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE channel_generation_envelopes SET envelope = (SELECT envelope FROM \
             channel_generation_envelopes WHERE channel_id = '{c}' AND generation = {d} AND \
             device_id = '{ann_dev}') WHERE channel_id = '{c}' AND generation = {d} AND \
             device_id = '{bob_dev}'",
            c = c.id,
            ann_dev = ann.device_id(),
            bob_dev = bob.device_id()
        ))
        .await;
    let e = bob.generation_key(&c.id, d).await.unwrap_err().to_string();
    assert!(e.contains("signature does not verify"), "{e}");
}

#[tokio::test]
async fn a_public_channel_envelope_whose_sender_key_the_server_replaced_is_refused() {
    let server = TestServer::start().await;
    let (mut admin, mut ann, _bob) = three(&server).await;
    let (channel, _) = admin.create_channel("public").await.unwrap();
    plant_sender_key(
        &server,
        "channel_key_envelopes",
        &channel.id,
        ann.device_id(),
    )
    .await;
    let e = ann.channel_key(&channel.id).await.unwrap_err().to_string();
    assert!(e.contains("the server substituted it"), "{e}");
    assert!(ann.store().channel_key(&channel.id).is_none());
    // The same channel's untouched envelope still opens for its own sender.
    admin.store_mut().remove_channel_key(&channel.id);
    admin.channel_key(&channel.id).await.unwrap();
}

/// The hostile server: replace the sender key of `device`'s envelope in `table` with a key of
/// its own.
async fn plant_sender_key(server: &TestServer, table: &str, channel: &str, device: &str) {
    let planted = DeviceKeypair::generate();
    server
        .db
        .execute(&format!(
            "UPDATE {table} SET sender_public_key = '{}' WHERE channel_id = '{channel}' AND \
             device_id = '{device}'",
            planted.public_key_b64(),
        ))
        .await;
}

#[tokio::test]
async fn a_generation_key_wrapped_by_a_user_without_a_device_list_is_refused() {
    let server = TestServer::start().await;
    let (_admin, mut ann, mut bob) = three(&server).await;
    // An account that never published a device list: what the server can always make of its own.
    let eve = register(&server, "eve").await;
    let c = ann.create_private_channel("planted").await.unwrap();
    ann.add_member(&c.id, bob.user_id(), false).await.unwrap();
    // The hostile server swaps bob's envelope for a key of its own, wrapped by eve's device.
    let bob_key = bob.store().device().public_key_b64();
    let wrap = eve.store().device().wrap_for(&bob_key, &[9u8; 32]).unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE channel_generation_envelopes SET envelope = 'v2.{eve}.{wrap}.c2lnbmVk', \
             sender_device_id = '{eve_dev}', sender_public_key = '{eve_key}' \
             WHERE channel_id = '{c}' AND generation = 1 AND device_id = '{bob_dev}'",
            eve = eve.user_id(),
            eve_dev = eve.device_id(),
            eve_key = eve.store().device().public_key_b64(),
            c = c.id,
            bob_dev = bob.device_id(),
        ))
        .await;
    let e = bob.generation_key(&c.id, 1).await.unwrap_err().to_string();
    assert!(e.contains("has no signed device list"), "{e}");
    assert!(bob.store().generation_key(&c.id, 1).is_none());
    // Nothing is sealed under the planted key either.
    assert!(bob.send(&c.id, "for ann only").await.is_err());
    assert_eq!(server.db.messages_in(&c.id).await, 0);
}

#[tokio::test]
async fn a_key_generation_the_server_rolls_back_is_neither_sealed_under_nor_rotated_over() {
    let server = TestServer::start().await;
    let (_admin, mut ann, mut bob) = three(&server).await;
    let c = ann.create_private_channel("floor").await.unwrap();
    ann.add_member(&c.id, bob.user_id(), false).await.unwrap();
    let g = ann.rotate_channel(&c.id).await.unwrap();
    bob.send(&c.id, "under the newest").await.unwrap();
    // The server announces the previous generation again (one a removed member may hold).
    server
        .db
        .execute(&format!(
            "UPDATE channels SET key_generation = {} WHERE id = '{}'",
            g - 1,
            c.id
        ))
        .await;
    let e = bob.send(&c.id, "under the old one?").await.unwrap_err();
    assert!(e.to_string().contains("rolled back"), "{e}");
    // Rotating from it would overwrite the held generation `g`.
    let e = ann.rotate_channel(&c.id).await.unwrap_err();
    assert!(e.to_string().contains("rolled back"), "{e}");
    assert!(ann.store().generation_key(&c.id, g).is_some());
    assert_eq!(server.db.messages_in(&c.id).await, 1);
}
