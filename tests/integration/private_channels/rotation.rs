//! Key generations: a rotation covers exactly the active member devices, exactly one of two
//! rotations from the same generation wins, sends follow the current generation, a revoked
//! device forces a rotation, and a new member is given generations from their join on.

use dialtone::protocol::rest::ChannelKeysUpload;

use super::*;

fn api_code(e: &ClientError) -> &str {
    match e {
        ClientError::Api { code, .. } => code,
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn a_rotation_must_cover_exactly_the_active_member_devices() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let bob = server.user("bob").await;
    let bob2 = server.new_device(&bob).await;
    let carol = server.user("carol").await;
    let c = private_channel(&owner).await;
    owner.rest.add_member(&c.id, bob.id(), None).await.unwrap();

    match rotate(&owner, &c.id, 1, &[&owner, &bob]).await {
        Err(ClientError::Coverage { missing, extra, .. }) => {
            assert_eq!((missing, extra), (vec![bob2.device().to_owned()], vec![]));
        }
        other => panic!("a missing device must be refused: {other:?}"),
    }
    match rotate(&owner, &c.id, 1, &[&owner, &bob, &bob2, &carol]).await {
        Err(ClientError::Coverage { missing, extra, .. }) => {
            assert_eq!((missing, extra), (vec![], vec![carol.device().to_owned()]));
        }
        other => panic!("a non-member device must be refused: {other:?}"),
    }
    let skipping = rotate(&owner, &c.id, 2, &[&owner, &bob, &bob2])
        .await
        .unwrap_err();
    assert_eq!(api_code(&skipping), "generation_conflict", "{skipping}");
    let twice = rotate(&owner, &c.id, 1, &[&owner, &bob, &bob, &bob2])
        .await
        .unwrap_err();
    assert!(
        matches!(twice, ClientError::Api { status: 400, .. }),
        "{twice}"
    );
    // Nothing of the refused ones was stored.
    let stored = server
        .db
        .count(&format!(
            "SELECT count(*) AS v FROM channel_generation_envelopes WHERE channel_id = '{}'",
            c.id
        ))
        .await;
    assert_eq!(stored, 0);

    let done = rotate(&owner, &c.id, 1, &[&owner, &bob, &bob2])
        .await
        .unwrap();
    assert_eq!(done.generation, 1);
    let m = owner.rest.members(&c.id).await.unwrap();
    assert_eq!((m.key_generation, m.rotation_required), (1, false));
    // Any active member may rotate, not only admins.
    rotate(&bob, &c.id, 2, &[&owner, &bob, &bob2])
        .await
        .unwrap();
}

#[tokio::test]
async fn of_two_rotations_at_once_exactly_one_wins() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let alice = server.user("alice").await;
    let c = private_channel(&owner).await;
    owner
        .rest
        .add_member(&c.id, alice.id(), Some("admin"))
        .await
        .unwrap();
    rotate(&owner, &c.id, 1, &[&owner, &alice]).await.unwrap();
    for round in 2..6 {
        let both = [&owner, &alice];
        let (a, b) = tokio::join!(
            rotate(&owner, &c.id, round, &both),
            rotate(&alice, &c.id, round, &both),
        );
        let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {a:?} {b:?}");
        let lost = if a.is_err() { a } else { b }.unwrap_err();
        assert_eq!(api_code(&lost), "generation_conflict", "{lost}");
        // No split: every envelope of the generation comes from the winner's device.
        let senders = server
            .db
            .count(&format!(
                "SELECT count(DISTINCT sender_device_id) AS v FROM channel_generation_envelopes \
                 WHERE channel_id = '{}' AND generation = {round}",
                c.id
            ))
            .await;
        assert_eq!(senders, 1, "round {round}");
    }
}

#[tokio::test]
async fn sends_follow_the_current_generation() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let bob = server.user("bob").await;
    let c = private_channel(&owner).await;
    owner.rest.add_member(&c.id, bob.id(), None).await.unwrap();
    let mut ws = server.ws(&owner).await;
    ws_ready(&mut ws).await;
    let early = send(&mut ws, &c.id, body(1)).await;
    assert_eq!(refusal(&early), Some("rotation_required"), "no key yet");
    rotate(&owner, &c.id, 1, &[&owner, &bob]).await.unwrap();
    rotate(&owner, &c.id, 2, &[&owner, &bob]).await.unwrap();
    for stale in [
        body(1),
        body(3),
        "djEgYm9keQ==".to_owned(),
        "v2.x.Ym9keQ==".to_owned(),
    ] {
        let e = send(&mut ws, &c.id, stale.clone()).await;
        assert_eq!(refusal(&e), Some("stale_key_generation"), "{stale}: {e:?}");
        assert!(
            e.message
                .as_deref()
                .unwrap_or_default()
                .contains("generation"),
            "{e:?}"
        );
    }
    let ok = send(&mut ws, &c.id, body(2)).await;
    assert_eq!(refusal(&ok), None, "{ok:?}");
    assert_eq!(ok.seq, Some(1), "refused sends take no seq");

    // Revoking one of bob's devices: his old device still holds generation 2.
    let bob2 = server.new_device(&bob).await;
    owner
        .rest
        .upload_channel_keys(&ChannelKeysUpload {
            channel_id: c.id.clone(),
            envelopes: vec![wrap(&owner, &bob2)],
            generation: Some(2),
        })
        .await
        .unwrap();
    bob.rest.delete_device(bob2.device()).await.unwrap();
    let updated = expect_for(&mut ws, event_type::CHANNEL_UPDATED, &c.id).await;
    assert_eq!(updated.channel_id.as_deref(), Some(c.id.as_str()));
    let m = owner.rest.members(&c.id).await.unwrap();
    assert!(m.rotation_required, "{m:?}");
    assert_eq!(m.device_ids.len(), 2, "the revoked device is gone: {m:?}");
    let e = send(&mut ws, &c.id, body(2)).await;
    assert_eq!(refusal(&e), Some("rotation_required"), "{e:?}");
    rotate(&owner, &c.id, 3, &[&owner, &bob]).await.unwrap();
    let e = send(&mut ws, &c.id, body(3)).await;
    assert_eq!(refusal(&e), None, "{e:?}");
}

#[tokio::test]
async fn a_new_member_is_given_generations_from_their_join_on() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let bob = server.user("bob").await;
    let dave = server.user("dave").await;
    let outsider = server.user("outsider").await;
    let c = private_channel(&owner).await;
    owner.rest.add_member(&c.id, bob.id(), None).await.unwrap();
    rotate(&owner, &c.id, 1, &[&owner, &bob]).await.unwrap();
    rotate(&owner, &c.id, 2, &[&owner, &bob]).await.unwrap();
    owner.rest.add_member(&c.id, dave.id(), None).await.unwrap();
    let m = owner.rest.members(&c.id).await.unwrap();
    let joined = m.members.iter().find(|x| x.user_id == dave.id()).unwrap();
    assert_eq!(joined.joined_generation, 2);

    let share = |generation, to: &TestUser| ChannelKeysUpload {
        channel_id: c.id.clone(),
        envelopes: vec![wrap(&owner, to)],
        generation: Some(generation),
    };
    for (generation, to) in [(1, &dave), (2, &outsider)] {
        match owner.rest.upload_channel_keys(&share(generation, to)).await {
            Err(ClientError::EnvelopeRefused { device_ids, .. }) => {
                assert_eq!(device_ids, vec![to.device().to_owned()]);
            }
            other => panic!("generation {generation} for {}: {other:?}", to.name),
        }
    }
    owner
        .rest
        .upload_channel_keys(&share(2, &dave))
        .await
        .unwrap();
    let env = dave.rest.channel_key(&c.id).await.unwrap().unwrap();
    assert_eq!(env.generation, Some(2));
    assert!(dave.rest.generation_key(&c.id, 1).await.unwrap().is_none());
    // Old generations stay readable to those who held them.
    let old = bob.rest.generation_key(&c.id, 1).await.unwrap().unwrap();
    assert_eq!(old.generation, Some(1));
    // A device that does not hold a generation cannot hand it out.
    match dave
        .rest
        .upload_channel_keys(&ChannelKeysUpload {
            channel_id: c.id.clone(),
            envelopes: vec![wrap(&dave, &bob)],
            generation: Some(1),
        })
        .await
    {
        Err(ClientError::EnvelopeRefused { .. }) => {}
        other => panic!("dave never held generation 1: {other:?}"),
    }
}
