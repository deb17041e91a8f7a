//! Private channels and direct messages between browsers and the Rust client: members read each
//! other (signatures made in the browser verify in Rust and the other way round), a removed
//! member's page stops receiving, and the browser shows the same safety number the CLI does.

use dialtone::client::trust::{identity, verified_devices};
use dialtone::crypto::safety;
use serde_json::json;

use crate::e2e::register;
use crate::support::*;

const ALICE: &str = "hoiho-alice";
const BOB: &str = "pukeko-bob";
const ADMIN: &str = "kereru-admin";
const PLANS: &str = "moa migration plans";
const HELLO: &str = "alice opens the private channel";
const FROM_BOB: &str = "bob answers in private";
const FROM_RUST: &str = "the terminal signs its words too";
const DM: &str = "a direct word from bob to alice";
const AFTER: &str = "said after bob was removed";

#[tokio::test]
async fn private_channels_dms_removal_and_safety_numbers_across_browser_and_rust() {
    let logs = LogCapture::start();
    let server = TestServer::start().await;
    let Some(mut b) = Browser::start(&server).await else {
        return;
    };
    let mut admin = register(&server, ADMIN).await;
    {
        let (rest, store) = admin.rest_and_store();
        identity::init(rest, store).await.unwrap();
    }
    for (ctx, name) in [("alice", ALICE), ("bob", BOB)] {
        b.cmd(json!({"op": "newContext", "ctx": ctx})).await;
        let invite = server.invite().await;
        b.cmd(json!({"op": "register", "ctx": ctx, "username": name,
                     "password": password(name), "invite": invite}))
            .await;
    }
    // The directory key reaches the browsers from the admin's device; then names resolve.
    admin.share_keys(None, None).await.unwrap();
    for (ctx, name) in [("alice", BOB), ("bob", ALICE)] {
        b.cmd(json!({"op": "waitPerson", "ctx": ctx, "name": name}))
            .await;
    }
    admin.refresh().await.unwrap();

    // alice makes a private channel and adds bob, then the Rust user.
    b.cmd(json!({"op": "createChannel", "ctx": "alice", "name": PLANS}))
        .await;
    b.cmd(json!({"op": "send", "ctx": "alice", "text": HELLO}))
        .await;
    b.cmd(json!({"op": "addMember", "ctx": "alice", "name": BOB}))
        .await;
    b.cmd(json!({"op": "openChannel", "ctx": "bob", "name": PLANS}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "bob", "text": HELLO}))
        .await;
    b.cmd(json!({"op": "send", "ctx": "bob", "text": FROM_BOB}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": FROM_BOB}))
        .await;
    b.cmd(json!({"op": "addMember", "ctx": "alice", "name": ADMIN}))
        .await;
    let plans = admin.resolve_channel(PLANS).await.unwrap();
    let history = admin.history(&plans.id, &Default::default()).await.unwrap();
    let read: Vec<(String, String, bool)> = history
        .messages
        .into_iter()
        .map(|m| {
            let m = m.unwrap();
            (m.sender_name, m.text, m.authenticity.is_verified())
        })
        .collect();
    assert_eq!(
        read,
        [
            (ALICE.to_owned(), HELLO.to_owned(), true),
            (BOB.to_owned(), FROM_BOB.to_owned(), true)
        ],
        "the browsers' signatures verify in Rust"
    );
    admin.send(&plans.id, FROM_RUST).await.unwrap();
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": FROM_RUST}))
        .await;
    let shown = b.cmd(json!({"op": "messages", "ctx": "alice"})).await;
    let last = shown["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["name"].as_str(), last["verified"].as_bool()),
        (Some(ADMIN), Some(true)),
        "{shown}"
    );

    // A direct message, opened from bob's people list.
    b.cmd(json!({"op": "messagePerson", "ctx": "bob", "name": ALICE}))
        .await;
    b.cmd(json!({"op": "send", "ctx": "bob", "text": DM})).await;
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": BOB}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": DM}))
        .await;
    b.cmd(json!({"op": "screenshot", "ctx": "alice", "name": "direct"}))
        .await;

    // alice removes bob: her page posts a new key generation; bob's page loses the channel and
    // sees nothing said after.
    b.cmd(json!({"op": "openChannel", "ctx": "bob", "name": PLANS}))
        .await;
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": PLANS}))
        .await;
    b.cmd(json!({"op": "removeMember", "ctx": "alice", "name": BOB}))
        .await;
    let members = admin.members(&plans.id).await.unwrap();
    assert_eq!(
        (members.key_generation, members.rotation_required),
        (2, false)
    );
    b.cmd(json!({"op": "send", "ctx": "alice", "text": AFTER}))
        .await;
    b.cmd(json!({"op": "channelGone", "ctx": "bob", "name": PLANS}))
        .await;
    let seen = b
        .cmd(json!({"op": "seesWithin", "ctx": "bob", "text": AFTER, "timeout": 1500}))
        .await;
    assert_eq!(
        seen["seen"], false,
        "a removed member's page stops receiving"
    );
    let history = admin.history(&plans.id, &Default::default()).await.unwrap();
    assert_eq!(
        history.messages.last().unwrap().as_ref().unwrap().text,
        AFTER
    );
    b.cmd(json!({"op": "screenshot", "ctx": "alice", "name": "private"}))
        .await;
    let axe = b.cmd(json!({"op": "axe", "ctx": "alice"})).await;
    assert_eq!(axe["violations"], json!([]), "private channel page: {axe}");

    // The safety number alice's page shows for bob is the one the CLI computes.
    let shown = b
        .cmd(json!({"op": "safetyNumber", "ctx": "alice", "name": BOB}))
        .await;
    let digits = shown["digits"].as_str().unwrap().to_owned();
    let alice_id = read_sender(&mut admin, &plans.id, HELLO).await;
    let bob_id = read_sender(&mut admin, &plans.id, FROM_BOB).await;
    let key_of = async |user: &str| {
        let (list, _) = verified_devices(admin.rest(), user, None).await.unwrap();
        dialtone::crypto::sign::parse_public(&list.statement.identity_key)
            .unwrap()
            .to_bytes()
    };
    let expected = safety::dialtone_safety_number(
        &key_of(&alice_id).await,
        &alice_id,
        &key_of(&bob_id).await,
        &bob_id,
    );
    assert_eq!(digits, expected);
    assert_eq!(shown["shown"].as_str().unwrap().split(' ').count(), 12);
    let marked = b.cmd(json!({"op": "markVerified", "ctx": "alice"})).await;
    assert!(marked["state"].as_str().unwrap().contains("is verified"));
    let errors = b.cmd(json!({"op": "consoleErrors"})).await;
    assert_eq!(errors["errors"], json!([]), "{errors}");
    b.close().await;

    let dump = server.db.dump().await;
    let log = logs.text();
    for secret in [PLANS, HELLO, FROM_BOB, FROM_RUST, DM, AFTER] {
        assert!(
            !dump.iter().any(|(_, _, v)| v.contains(secret)),
            "{secret:?} stored in plaintext"
        );
        assert!(!log.contains(secret), "{secret:?} in the server log");
    }
}

/// The sender id of the message with `text` in `channel`'s history, as the Rust client reads it.
async fn read_sender(chat: &mut dialtone::client::Chat, channel: &str, text: &str) -> String {
    chat.history(channel, &Default::default())
        .await
        .unwrap()
        .messages
        .into_iter()
        .filter_map(Result::ok)
        .find(|m| m.text == text)
        .map(|m| m.sender_id)
        .unwrap()
}
