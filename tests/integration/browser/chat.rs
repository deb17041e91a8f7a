//! Two people in browsers and one on the Rust client library chat on a public channel: each reads
//! the others, keys are shared through the trust screen both ways (the browser's signed device
//! list verifies in Rust), a reload keeps the device with non-extractable keys, the pages pass an
//! accessibility check, and neither the database nor the server log holds what was typed.

use dialtone::client::trust::{identity, verified_devices};
use dialtone::client::{ChatEvent, FollowOptions};
use serde_json::json;

use crate::e2e::{follow, register};
use crate::support::*;

const ALICE: &str = "kea-alice";
const BOB: &str = "tui-bob";
const ADMIN: &str = "weka-admin";
const LOUNGE: &str = "kiwi lounge of secrets";
const SECOND: &str = "second room";
const FROM_RUST: &str = "hello from the terminal, pavlova at six";
const FROM_ALICE: &str = "hello from alice's browser, lamingtons too";
const FROM_BOB: &str = "bob here on a phone-sized window";

#[tokio::test]
async fn browsers_and_the_rust_client_chat_end_to_end() {
    let logs = LogCapture::start();
    let server = TestServer::start().await;
    let Some(mut b) = Browser::start(&server).await else {
        return;
    };
    // The admin is on the Rust client, with `tail` running: it shares keys with devices that join.
    let mut admin = register(&server, ADMIN).await;
    {
        // As `dialtone-cli register` does: the account's first device makes its identity.
        let (rest, store) = admin.rest_and_store();
        identity::init(rest, store).await.unwrap();
    }
    // Someone on the Rust client who checks what the browsers publish.
    let mut observer = register(&server, "kakapo-observer").await;
    let (lounge, _) = admin.create_channel(LOUNGE).await.unwrap();
    let (second, _) = admin.create_channel(SECOND).await.unwrap();
    admin.send(&lounge.id, FROM_RUST).await.unwrap();
    let mut tail = follow(admin.chat, FollowOptions::default());
    tail.wait_for("connected", |e| matches!(e, ChatEvent::Connected { .. }))
        .await;

    b.cmd(json!({"op": "newContext", "ctx": "alice"})).await;
    b.cmd(json!({"op": "screenshot", "ctx": "alice", "name": "sign-in"}))
        .await;
    let axe = b.cmd(json!({"op": "axe", "ctx": "alice"})).await;
    assert_eq!(axe["violations"], json!([]), "sign-in page: {axe}");
    let invite = server.invite().await;
    let registered = b
        .cmd(json!({"op": "register", "ctx": "alice", "username": ALICE,
                    "password": password(ALICE), "invite": invite}))
        .await;
    assert!(
        registered["status"]
            .as_str()
            .unwrap()
            .contains("made your identity key"),
        "{registered}"
    );
    // alice's browser published a signed device list; the Rust client verified it and shared.
    let joined = tail
        .wait_for("alice's device joined", |e| {
            matches!(e, ChatEvent::DeviceJoined { shared: Some(Ok(r)), .. } if !r.shared.is_empty())
        })
        .await;
    if let ChatEvent::DeviceJoined {
        shared: Some(Ok(report)),
        ..
    } = &joined
    {
        assert!(report.skipped.is_empty(), "{report:?}");
    }
    // Once the directory key reached her, alice's page published her signed profile.
    b.cmd(json!({"op": "waitPerson", "ctx": "alice", "name": ALICE}))
        .await;
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": LOUNGE}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": FROM_RUST}))
        .await;
    b.cmd(json!({"op": "send", "ctx": "alice", "text": FROM_ALICE}))
        .await;
    let heard = tail
        .wait_for(
            "alice's message",
            |e| matches!(e, ChatEvent::Message { message: Ok(m), .. } if m.text == FROM_ALICE),
        )
        .await;
    let ChatEvent::Message { message: Ok(m), .. } = heard else {
        unreachable!()
    };
    assert_eq!(m.sender_name, ALICE);
    assert!(m.name_verified, "alice's browser signed her profile: {m:?}");
    // The list her browser signed verifies in Rust and names the browser's device.
    let (list, _) = verified_devices(observer.rest(), &m.sender_id, None)
        .await
        .unwrap();
    assert_eq!(list.statement.version, 1);
    assert_eq!(list.statement.devices.len(), 1);

    // bob, at phone width.
    b.cmd(json!({"op": "newContext", "ctx": "bob", "width": 390, "height": 800}))
        .await;
    let invite = server.invite().await;
    b.cmd(json!({"op": "register", "ctx": "bob", "username": BOB,
                 "password": password(BOB), "invite": invite}))
        .await;
    b.cmd(json!({"op": "waitPerson", "ctx": "bob", "name": BOB}))
        .await;
    b.cmd(json!({"op": "openChannel", "ctx": "bob", "name": LOUNGE}))
        .await;
    for text in [FROM_RUST, FROM_ALICE] {
        b.cmd(json!({"op": "waitMessage", "ctx": "bob", "text": text}))
            .await;
    }
    b.cmd(json!({"op": "send", "ctx": "bob", "text": FROM_BOB}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": FROM_BOB}))
        .await;
    let shown = b.cmd(json!({"op": "messages", "ctx": "alice"})).await;
    let names: Vec<(&str, bool)> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["verified"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [(ADMIN, true), (ALICE, true), (BOB, true)],
        "names from signed profiles: {shown}"
    );
    // A public channel's texts are v1, signed by nobody: each is marked, whatever its name.
    assert!(
        shown["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["unverified"] == json!(true)),
        "every v1 text is marked unverified: {shown}"
    );
    b.cmd(json!({"op": "screenshot", "ctx": "alice", "name": "chat"}))
        .await;
    b.cmd(json!({"op": "screenshot", "ctx": "bob", "name": "chat-phone"}))
        .await;
    let axe = b.cmd(json!({"op": "axe", "ctx": "alice"})).await;
    assert_eq!(axe["violations"], json!([]), "chat page: {axe}");

    // Unread markers: a message in another channel while alice reads the lounge.
    observer.send(&second.id, "over here").await.unwrap();
    b.cmd(json!({"op": "waitUnread", "ctx": "alice", "name": SECOND, "n": 1}))
        .await;
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": SECOND}))
        .await;
    let seen = b.cmd(json!({"op": "count", "ctx": "alice"})).await;
    assert_eq!(
        (seen["messages"].as_u64(), seen["dividers"].as_u64()),
        (Some(1), Some(1)),
        "{seen}"
    );
    let unread = b
        .cmd(json!({"op": "unread", "ctx": "alice", "name": SECOND}))
        .await;
    assert_eq!(unread["unread"], 0, "opening a channel clears its marker");

    // History pages: the newest page first, older ones on request.
    for i in 0..55 {
        observer
            .send(&lounge.id, &format!("backlog line {i}"))
            .await
            .unwrap();
    }
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": LOUNGE}))
        .await;
    let page = b.cmd(json!({"op": "count", "ctx": "alice"})).await;
    assert_eq!(
        (page["messages"].as_u64(), page["more"].as_bool()),
        (Some(50), Some(true)),
        "{page}"
    );
    let older = b.cmd(json!({"op": "loadOlder", "ctx": "alice"})).await;
    assert_eq!(
        (older["after"].as_u64(), older["more"].as_bool()),
        (Some(58), Some(false)),
        "3 + 55 messages: {older}"
    );

    // A reload keeps the device: still signed in, same history, keys that cannot leave.
    let reloaded = b.cmd(json!({"op": "reload", "ctx": "alice"})).await;
    assert_eq!(reloaded["signedIn"], true);
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": LOUNGE}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": "backlog line 54"}))
        .await;
    let keys = b.cmd(json!({"op": "keysCheck", "ctx": "alice"})).await;
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "x25519, signing and identity: {keys:?}");
    for k in keys {
        assert_eq!(
            (&k["type"], &k["extractable"], &k["exported"]),
            (&json!("private"), &json!(false), &json!(false)),
            "{k}"
        );
    }
    // Signing out ends the session on the server; the keys stay for the next sign-in.
    b.cmd(json!({"op": "logout", "ctx": "alice"})).await;
    b.cmd(json!({"op": "login", "ctx": "alice", "username": ALICE,
                 "password": password(ALICE)}))
        .await;
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": LOUNGE}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": "backlog line 54"}))
        .await;
    let errors = b.cmd(json!({"op": "consoleErrors"})).await;
    assert_eq!(errors["errors"], json!([]), "{errors}");
    b.close().await;
    let _ = tail.stop().await;

    // Nothing typed into the pages reached the server in the clear.
    assert_nothing_in_clear(
        &server,
        &logs,
        &[
            LOUNGE.to_owned(),
            FROM_RUST.to_owned(),
            FROM_ALICE.to_owned(),
            FROM_BOB.to_owned(),
            password(ALICE),
            password(BOB),
        ],
    )
    .await;
}
