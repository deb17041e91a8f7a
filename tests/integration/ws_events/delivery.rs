//! Who receives what: broadcasts (each device only its envelope), `unsubscribe` and
//! `subscribe=none`, and `sync` after a reconnect.

use super::*;

#[tokio::test]
async fn broadcast_delivers_each_device_only_its_envelope() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let mut a = server.ws(&alice).await;
    let mut b = server.ws(&bob).await;
    let mut c = server.ws(&carol).await;

    let envelopes: BTreeMap<String, String> = [
        (alice.device().to_owned(), "ZW52LWFsaWNl".to_owned()),
        (bob.device().to_owned(), "ZW52LWJvYg==".to_owned()),
    ]
    .into();
    a.send(&ClientFrame::broadcast(
        "Ym9keQ==",
        "YWxpY2U=",
        alice.keys.public_key_b64(),
        envelopes,
    ))
    .await
    .unwrap();

    let ea = a
        .expect_event(event_type::MESSAGE_BROADCAST, WAIT)
        .await
        .unwrap();
    let eb = b
        .expect_event(event_type::MESSAGE_BROADCAST, WAIT)
        .await
        .unwrap();
    let ec = c
        .expect_event(event_type::MESSAGE_BROADCAST, WAIT)
        .await
        .unwrap();
    assert_eq!(ea.key_envelope.as_deref(), Some("ZW52LWFsaWNl"));
    assert_eq!(eb.key_envelope.as_deref(), Some("ZW52LWJvYg=="));
    assert_eq!(
        ec.key_envelope.as_deref(),
        Some(""),
        "a device without an envelope gets none of the others'"
    );
    for e in [&ea, &eb, &ec] {
        assert_eq!(e.body, "Ym9keQ==");
        assert_eq!(e.sender, alice.id());
        assert_eq!(e.sender_name_enc.as_deref(), Some("YWxpY2U="));
        assert_eq!(
            e.sender_public_key.as_deref(),
            Some(alice.keys.public_key_b64().as_str())
        );
        assert_eq!(e.message_id, ea.message_id);
    }
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM broadcast_messages")
            .await,
        1
    );

    // A broadcast claiming someone else's key is refused.
    let forged: BTreeMap<String, String> = [(bob.device().to_owned(), "eA==".to_owned())].into();
    a.send(&ClientFrame::broadcast(
        "Ym9keQ==",
        "YWxpY2U=",
        bob.keys.public_key_b64(),
        forged,
    ))
    .await
    .unwrap();
    expect_error(&mut a, error_code::INVALID_MESSAGE).await;
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM broadcast_messages")
            .await,
        1
    );
}

#[tokio::test]
async fn unsubscribe_and_subscribe_none() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let a_chan = alice.rest.create_channel("YQ==").await.unwrap();
    let b_chan = alice.rest.create_channel("Yg==").await.unwrap();
    let mut sender = server.ws(&alice).await;

    let mut opts = server.ws_options(bob.token());
    opts.subscribe_none = true;
    let mut quiet = WsClient::connect(&opts).await.unwrap();
    quiet
        .send(&ClientFrame::subscribe(&b_chan.id))
        .await
        .unwrap();
    let mut listener = server.ws(&bob).await;
    listener
        .send(&ClientFrame::unsubscribe(&a_chan.id))
        .await
        .unwrap();

    // Unsubscribe/subscribe are applied in order with later frames: a sync round trip proves
    // both sockets' requests have been processed.
    for ws in [&mut quiet, &mut listener] {
        ws.send(&ClientFrame::sync(&b_chan.id, None)).await.unwrap();
        ws.expect_event(event_type::SYNC_COMPLETE, WAIT)
            .await
            .unwrap();
    }

    sender
        .send(&ClientFrame::channel_message(
            &a_chan.id, "aW4gYQ==", "bg==", None,
        ))
        .await
        .unwrap();
    sender
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    sender
        .send(&ClientFrame::channel_message(
            &b_chan.id, "aW4gYg==", "bg==", None,
        ))
        .await
        .unwrap();
    for ws in [&mut quiet, &mut listener] {
        let e = ws
            .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
            .await
            .unwrap();
        assert_eq!(
            e.channel_id.as_deref(),
            Some(b_chan.id.as_str()),
            "only channel b arrives"
        );
        // Nothing from channel a follows either.
        match ws.next_within(Duration::from_millis(500)).await {
            Err(_) => {}
            Ok(Some(Incoming::Event(e))) if e.kind != event_type::CHANNEL_MESSAGE_NEW => {}
            other => panic!("unexpected after unsubscribe: {other:?}"),
        }
    }

    // Unsubscribing from an unknown channel is an error; the socket stays usable.
    listener
        .send(&ClientFrame::unsubscribe(uuid::Uuid::new_v4().to_string()))
        .await
        .unwrap();
    expect_error(&mut listener, error_code::CHANNEL_NOT_FOUND).await;
}

#[tokio::test]
async fn sync_catches_up_after_a_reconnect() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Yw==").await.unwrap();
    let mut a = server.ws(&alice).await;

    let mut b = server.ws(&bob).await;
    a.send(&ClientFrame::channel_message(
        &channel.id,
        "Zmlyc3Q=",
        "bg==",
        None,
    ))
    .await
    .unwrap();
    let last_seen = b
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    let own_echo = a
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(own_echo.message_id, last_seen.message_id);
    b.close().await.unwrap();
    drop(b);

    let mut missed = Vec::new();
    for i in 0..5 {
        a.send(&ClientFrame::channel_message(
            &channel.id,
            format!("bWlzc2Vk{i}"),
            "bg==",
            None,
        ))
        .await
        .unwrap();
        missed.push(
            a.expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
                .await
                .unwrap()
                .message_id,
        );
    }

    let mut opts = server.ws_options(bob.token());
    opts.subscribe_none = true;
    let mut b = WsClient::connect(&opts).await.unwrap();
    b.send(&ClientFrame::sync(
        &channel.id,
        Some(last_seen.message_id.clone()),
    ))
    .await
    .unwrap();
    let mut replayed = Vec::new();
    loop {
        match b.next_within(WAIT).await.unwrap() {
            Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                replayed.push(e.message_id)
            }
            Some(Incoming::Event(e)) if e.kind == event_type::SYNC_COMPLETE => {
                assert_eq!(e.has_more, Some(false));
                break;
            }
            Some(Incoming::Event(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replayed, missed);

    b.send(&ClientFrame::sync(
        &channel.id,
        Some("not-a-message".into()),
    ))
    .await
    .unwrap();
    expect_error(&mut b, error_code::INVALID_MESSAGE).await;
    b.send(&ClientFrame::sync(uuid::Uuid::new_v4().to_string(), None))
        .await
        .unwrap();
    expect_error(&mut b, error_code::CHANNEL_NOT_FOUND).await;
}
