//! The real client library on private channels: members chat, a removed member (old session,
//! cached keys) reads nothing sent after, the server cannot move or re-attribute a v2 message,
//! and `tail` rotates the key when a member leaves.

use dialtone::client::{ChatError, ChatEvent, FollowOptions};

use super::*;
use crate::e2e::{ADMIN, ANN, BOB, follow, register};

async fn texts(chat: &mut dialtone::client::Chat, channel: &str) -> Vec<Result<String, String>> {
    chat.history(channel, &Default::default())
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| {
            m.map(|m| format!("{}: {}", m.sender_name, m.text))
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[tokio::test]
async fn members_chat_and_a_removed_member_reads_nothing_sent_after() {
    let server = TestServer::start().await;
    let _admin = register(&server, ADMIN).await;
    let mut ann = register_listed(&server, ANN).await;
    let mut bob = register_listed(&server, BOB).await;
    let c = ann.create_private_channel("plans").await.unwrap();
    assert_eq!(c.key_generation, Some(1));
    let report = ann.add_member(&c.id, bob.user_id(), false).await.unwrap();
    assert_eq!(report.envelopes(), 1, "{report:?}");
    bob.send(&c.id, "hello from bob").await.unwrap();
    assert_eq!(
        texts(&mut ann, &c.id).await,
        vec![Ok(format!("{BOB}: hello from bob"))]
    );
    let listed = bob.channels().await.unwrap();
    let info = listed.iter().find(|i| i.id == c.id).unwrap();
    assert_eq!(info.name.as_deref().ok(), Some("plans"));

    assert_eq!(
        ann.remove_member(&c.id, bob.user_id()).await.unwrap(),
        Some(2)
    );
    ann.send(&c.id, "after bob left").await.unwrap();
    // Bob, with his old session and every key he ever got: refused over the wire...
    assert!(matches!(
        bob.history(&c.id, &Default::default()).await,
        Err(ChatError::Client(ClientError::Api { status: 404, .. }))
    ));
    let refused = bob.send(&c.id, "still here?").await.unwrap_err();
    assert!(
        refused.to_string().contains("not found") || refused.to_string().contains("channel"),
        "{refused}"
    );
    // ...and from a database dump: the new message is sealed under generation 2, which his
    // devices never received.
    assert_eq!(bob.store().generations(&c.id), vec![1]);
    let bodies = server
        .db
        .strings(&format!(
            "SELECT body AS v FROM channel_messages WHERE channel_id = '{}' ORDER BY seq",
            c.id
        ))
        .await;
    assert!(
        bodies[1].as_deref().unwrap().starts_with("v2.2."),
        "{bodies:?}"
    );
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT count(*) AS v FROM channel_generation_envelopes WHERE channel_id = '{}' \
                 AND generation = 2 AND device_id = '{}'",
                c.id,
                bob.device_id()
            ))
            .await,
        0
    );
}

#[tokio::test]
async fn the_server_cannot_move_or_reattribute_a_private_message() {
    let server = TestServer::start().await;
    let _admin = register(&server, ADMIN).await;
    let mut ann = register_listed(&server, ANN).await;
    let mut bob = register_listed(&server, BOB).await;
    let a = ann.create_private_channel("a").await.unwrap();
    let b = ann.create_private_channel("b").await.unwrap();
    for c in [&a, &b] {
        ann.add_member(&c.id, bob.user_id(), false).await.unwrap();
    }
    let moved = bob.send(&a.id, "meant for a").await.unwrap();
    let reattributed = bob.send(&b.id, "said by bob").await.unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE channel_messages SET channel_id = '{}', seq = 1000 WHERE id = '{}'",
            b.id, moved.id
        ))
        .await;
    server
        .db
        .execute(&format!(
            "UPDATE channel_messages SET sender_id = '{}' WHERE id = '{}'",
            ann.user_id(),
            reattributed.id
        ))
        .await;
    let shown = texts(&mut ann, &b.id).await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    // The moved one no longer authenticates; the re-attributed one is signed by bob, not by the
    // sender the server now names.
    let errors: Vec<&String> = shown.iter().map(|s| s.as_ref().unwrap_err()).collect();
    assert!(
        errors.iter().any(|e| e.contains("authentication failed")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("re-attributed, refused")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn tail_rotates_the_key_when_a_member_leaves() {
    let server = TestServer::start().await;
    let _admin = register(&server, ADMIN).await;
    let mut ann = register_listed(&server, ANN).await;
    let bob = register_listed(&server, BOB).await;
    let c = ann.create_private_channel("rotating").await.unwrap();
    ann.add_member(&c.id, bob.user_id(), false).await.unwrap();
    let mut follower = follow(ann.chat, FollowOptions::default());
    follower
        .wait_for("connected", |e| matches!(e, ChatEvent::Connected { .. }))
        .await;
    // Bob leaves on his own: nobody rotates for him, ann's tail must.
    bob.rest()
        .remove_member(&c.id, bob.user_id())
        .await
        .unwrap();
    follower
        .wait_for(
            "member.removed",
            |e| matches!(e, ChatEvent::MemberRemoved { user_id, .. } if user_id == bob.user_id()),
        )
        .await;
    follower
        .wait_for("key.rotated", |e| {
            matches!(e, ChatEvent::KeyRotated { generation: 2, .. })
        })
        .await;
    let mut ann = follower.stop().await;
    let m = ann.members(&c.id).await.unwrap();
    assert_eq!((m.key_generation, m.rotation_required), (2, false));
    ann.send(&c.id, "only ann now").await.unwrap();
    assert!(bob.store().generation_key(&c.id, 2).is_none());
}

#[tokio::test]
async fn a_direct_channel_whose_first_generation_the_other_side_posts_has_a_readable_name() {
    let server = TestServer::start().await;
    let _admin = register(&server, ADMIN).await;
    let mut ann = register_listed(&server, ANN).await;
    let mut bob = register_listed(&server, BOB).await;
    // ann's client opened the channel and stopped before posting generation 1.
    let opened = ann
        .rest()
        .open_direct(bob.user_id(), NAME_ENC)
        .await
        .unwrap();
    assert_eq!(opened.key_generation, Some(0));
    let (dm, created) = bob.open_direct(ann.user_id()).await.unwrap();
    assert!(!created);
    assert_eq!(
        (dm.id.as_str(), dm.key_generation),
        (opened.id.as_str(), Some(1))
    );
    for chat in [&mut ann.chat, &mut bob.chat] {
        let listed = chat.channels().await.unwrap();
        let info = listed.iter().find(|i| i.id == dm.id).unwrap();
        assert_eq!(info.name.as_deref().ok(), Some("direct"), "{info:?}");
    }
    bob.send(&dm.id, "hi ann").await.unwrap();
    assert_eq!(
        texts(&mut ann, &dm.id).await,
        vec![Ok(format!("{BOB}: hi ann"))]
    );
    // Opening it again from ann's side finds it with its generation, and changes nothing.
    let (again, created) = ann.open_direct(bob.user_id()).await.unwrap();
    assert_eq!(
        (again.id, again.key_generation, created),
        (dm.id, Some(1), false)
    );
}

#[tokio::test]
async fn two_admins_rotating_at_once_end_with_one_key_per_generation() {
    let server = TestServer::start().await;
    let _admin = register(&server, ADMIN).await;
    let mut ann = register_listed(&server, ANN).await;
    let mut bob = register_listed(&server, BOB).await;
    let c = ann.create_private_channel("race").await.unwrap();
    ann.add_member(&c.id, bob.user_id(), true).await.unwrap();
    let mut conflicts = 0;
    for round in 0..3 {
        let (a, b) = tokio::join!(ann.rotate_channel(&c.id), bob.rotate_channel(&c.id));
        for r in [&a, &b] {
            match r {
                Ok(_) => {}
                Err(ChatError::Client(ClientError::Api { code, .. }))
                    if code == "generation_conflict" =>
                {
                    conflicts += 1;
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(a.is_ok() || b.is_ok(), "round {round}: one rotation wins");
        // Whoever lost holds no key of its own for the generation the other won: both seal
        // under the winner's key, and each reads the other.
        ann.send(&c.id, &format!("ann {round}")).await.unwrap();
        bob.send(&c.id, &format!("bob {round}")).await.unwrap();
        for (reader, name) in [(&mut ann, "ann"), (&mut bob, "bob")] {
            let shown = texts(reader, &c.id).await;
            assert!(
                shown.iter().all(Result::is_ok),
                "round {round}, {name} reads: {shown:?}"
            );
            assert_eq!(shown.len(), 2 * (round + 1), "{shown:?}");
        }
    }
    eprintln!("rotation races lost: {conflicts} of 6 rotations");
}
