//! The page against a hostile server (docs/TRUST.md §2.6, §6): the server edits its database, or
//! answers the page's requests itself, to get a key of its own into a private channel, a key out
//! to someone who is not a member, or a text sealed under a key a removed member holds. Each test
//! checks that the page refuses, and that nothing was stored or sealed.

use dialtone::crypto::e2e::generate_key;
use serde_json::{Value, json};

use crate::support::*;

const ALICE: &str = "karearea-alice";
const BOB: &str = "kotuku-bob";
const PLANS: &str = "plans the server wants to read";
const OTHER: &str = "a second private room";

/// A browser where alice (the first user: the admin, who makes the directory key) and bob have
/// signed up and see each other's signed profiles.
async fn alice_and_bob(server: &TestServer) -> Option<Browser> {
    let mut b = Browser::start(server).await?;
    b.sign_up(server, "alice", ALICE).await;
    b.sign_up(server, "bob", BOB).await;
    for (ctx, name) in [("alice", BOB), ("bob", ALICE)] {
        b.cmd(json!({"op": "waitPerson", "ctx": ctx, "name": name}))
            .await;
    }
    Some(b)
}

/// alice makes the private channel `name` and adds bob (her page wraps generation 1 for him).
async fn channel_with_bob(b: &mut Browser, name: &str) -> String {
    let made = b
        .cmd(json!({"op": "createChannel", "ctx": "alice", "name": name}))
        .await;
    b.cmd(json!({"op": "addMember", "ctx": "alice", "name": BOB}))
        .await;
    made["id"].as_str().unwrap().to_owned()
}

async fn key_state(b: &mut Browser, ctx: &str) -> Value {
    b.cmd(json!({"op": "keyState", "ctx": ctx})).await
}

/// The names in the list `field` of a `keyState` answer.
fn names(state: &Value, field: &str) -> Vec<String> {
    state[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {state}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn id_of(state: &Value, field: &str) -> String {
    state[field].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_generation_envelope_signed_by_a_user_with_no_list_is_refused() {
    let server = TestServer::start().await;
    let Some(mut b) = alice_and_bob(&server).await else {
        return;
    };
    // bob is signed out while the server prepares: his page fetches nothing meanwhile.
    let bob = key_state(&mut b, "bob").await;
    b.cmd(json!({"op": "logout", "ctx": "bob"})).await;
    let c = channel_with_bob(&mut b, PLANS).await;
    // An account of the server's own that never publishes a device list wraps a key of the
    // server's for bob's device, and the server serves that as bob's envelope of generation 1.
    let puppet = server.user("listless-puppet").await;
    let wrap = puppet
        .keys
        .wrap_for(&id_of(&bob, "publicKey"), &generate_key())
        .unwrap();
    let row = format!(
        "channel_id = '{c}' AND generation = 1 AND device_id = '{}'",
        id_of(&bob, "deviceId")
    );
    let held = format!("SELECT count(*) AS v FROM channel_generation_envelopes WHERE {row}");
    assert_eq!(server.db.count(&held).await, 1, "alice shared generation 1");
    server
        .db
        .execute(&format!(
            "UPDATE channel_generation_envelopes SET envelope = 'v2.{}.{wrap}.{}==', \
             sender_device_id = '{}', sender_public_key = '{}' WHERE {row}",
            puppet.id(),
            "A".repeat(86),
            puppet.device(),
            puppet.keys.public_key_b64(),
        ))
        .await;

    b.cmd(json!({"op": "login", "ctx": "bob", "username": BOB, "password": password(BOB)}))
        .await;
    let locked = b
        .cmd(json!({"op": "waitChannel", "ctx": "bob",
                    "text": "a v2 envelope must be signed by a device of its sender"}))
        .await;
    assert!(
        locked["text"].as_str().unwrap().contains("refused"),
        "{locked}"
    );
    let after = key_state(&mut b, "bob").await;
    assert!(
        !names(&after, "generations").contains(&format!("{c}/1")),
        "the planted key was not stored: {after}"
    );
    b.close().await;
}

#[tokio::test]
async fn another_channels_envelope_served_for_this_one_is_refused() {
    let server = TestServer::start().await;
    let Some(mut b) = alice_and_bob(&server).await else {
        return;
    };
    let first = channel_with_bob(&mut b, PLANS).await;
    let made = b
        .cmd(json!({"op": "createChannel", "ctx": "alice", "name": OTHER}))
        .await;
    let second = made["id"].as_str().unwrap().to_owned();
    // bob's genuine, correctly signed envelope of the first channel, served as the second's.
    b.cmd(
        json!({"op": "serveFrom", "ctx": "bob", "path": "/channels/keys",
                 "where": {"channel_id": second}, "swap": {"channel_id": first}}),
    )
    .await;
    b.cmd(json!({"op": "addMember", "ctx": "alice", "name": BOB}))
        .await;

    b.cmd(json!({"op": "waitChannel", "ctx": "bob", "text": "not the one asked for"}))
        .await;
    let state = key_state(&mut b, "bob").await;
    let generations = names(&state, "generations");
    assert!(
        !generations.contains(&format!("{second}/1")),
        "the first channel's key was not stored as the second's: {state}"
    );
    assert!(
        generations.contains(&format!("{first}/1")),
        "the first channel's own key still opens: {state}"
    );
    b.close().await;
}

#[tokio::test]
async fn a_pinned_user_whose_list_the_server_denies_gets_no_key() {
    let server = TestServer::start().await;
    let Some(mut b) = alice_and_bob(&server).await else {
        return;
    };
    let bob = key_state(&mut b, "bob").await;
    let (bob_id, bob_device) = (id_of(&bob, "userId"), id_of(&bob, "deviceId"));
    let alice = key_state(&mut b, "alice").await;
    assert!(
        names(&alice, "pins").contains(&bob_id),
        "alice's page pinned bob when it checked his signed profile: {alice}"
    );
    // From now on the server says it knows no list of bob's (as a server without trust v2 would).
    b.cmd(
        json!({"op": "serve", "ctx": "alice", "path": "/devices/list",
                 "where": {"user_id": bob_id}, "status": 404,
                 "body": {"error": "user not found", "code": "not_found"}}),
    )
    .await;
    let c = channel_with_bob(&mut b, PLANS).await;
    let shared = server
        .db
        .count(&format!(
            "SELECT count(*) AS v FROM channel_generation_envelopes WHERE channel_id = '{c}' \
             AND device_id = '{bob_device}'"
        ))
        .await;
    assert_eq!(shared, 0, "a rollback to 'no list' withholds the key");
    b.close().await;
}

#[tokio::test]
async fn a_generation_taken_back_by_the_server_is_not_sealed_under() {
    let server = TestServer::start().await;
    let Some(mut b) = alice_and_bob(&server).await else {
        return;
    };
    let c = channel_with_bob(&mut b, PLANS).await;
    // Removing bob rotates to generation 2; the server then announces generation 1 again, whose
    // key bob still holds.
    b.cmd(json!({"op": "removeMember", "ctx": "alice", "name": BOB}))
        .await;
    let state = key_state(&mut b, "alice").await;
    assert!(
        names(&state, "generations").contains(&format!("{c}/2")),
        "{state}"
    );
    server
        .db
        .execute(&format!(
            "UPDATE channels SET key_generation = 1 WHERE id = '{c}'"
        ))
        .await;

    let refused = b
        .cmd(json!({"op": "sendRefused", "ctx": "alice", "text": "for members only"}))
        .await;
    assert!(
        refused["status"]
            .as_str()
            .unwrap()
            .contains("older than generation 2 this browser already holds"),
        "{refused}"
    );
    assert_eq!(
        server.db.messages_in(&c).await,
        0,
        "nothing was sealed or sent"
    );
    b.close().await;
}

#[tokio::test]
async fn a_private_channel_the_server_lists_as_public_gets_no_v1_key() {
    let server = TestServer::start().await;
    let Some(mut b) = alice_and_bob(&server).await else {
        return;
    };
    let c = channel_with_bob(&mut b, PLANS).await;
    b.cmd(json!({"op": "openChannel", "ctx": "bob", "name": PLANS}))
        .await;
    let bob = key_state(&mut b, "bob").await;
    // The server turns the channel public and serves bob a v1 key of its own, wrapped by an
    // account with no list (whose envelopes the v1 sender check lets through).
    let puppet = server.user("listless-puppet").await;
    let wrap = puppet
        .keys
        .wrap_for(&id_of(&bob, "publicKey"), &generate_key())
        .unwrap();
    server
        .db
        .execute(&format!(
            "UPDATE channels SET kind = 'public' WHERE id = '{c}'; \
             INSERT INTO channel_key_envelopes (channel_id, device_id, sender_device_id, \
             sender_public_key, envelope) VALUES ('{c}', '{}', '{}', '{}', '{wrap}')",
            id_of(&bob, "deviceId"),
            puppet.device(),
            puppet.keys.public_key_b64(),
        ))
        .await;

    let refused = b
        .cmd(json!({"op": "sendRefused", "ctx": "bob", "text": "sealed for the server"}))
        .await;
    assert!(
        refused["status"]
            .as_str()
            .unwrap()
            .contains("without its key generation"),
        "{refused}"
    );
    let after = key_state(&mut b, "bob").await;
    assert_eq!(
        names(&after, "channelKeys"),
        Vec::<String>::new(),
        "{after}"
    );
    assert_eq!(
        server.db.messages_in(&c).await,
        0,
        "nothing was sealed or sent"
    );
    b.close().await;
}

#[tokio::test]
async fn a_removed_member_the_server_still_lists_gets_no_new_generation() {
    let server = TestServer::start().await;
    let Some(mut b) = alice_and_bob(&server).await else {
        return;
    };
    let c = channel_with_bob(&mut b, PLANS).await;
    let bob = key_state(&mut b, "bob").await;
    // The server's database quietly keeps bob a member: his removal never sticks, and he and his
    // devices stay in every member list the server serves.
    server
        .db
        .execute(&format!(
            "CREATE FUNCTION keep_member() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN NEW.removed_at := NULL; RETURN NEW; END $$; \
             CREATE TRIGGER keep_member BEFORE UPDATE ON channel_members FOR EACH ROW \
             WHEN (NEW.user_id = '{}') EXECUTE PROCEDURE keep_member()",
            id_of(&bob, "userId")
        ))
        .await;

    // alice's page leaves bob out of the next generation; the server (which counts him in) then
    // refuses it as incomplete.
    let e = b
        .try_cmd(json!({"op": "removeMember", "ctx": "alice", "name": BOB}))
        .await
        .expect_err("the rotation leaves out the user removed");
    assert!(e.contains("exactly the active members"), "{e}");
    let given = server
        .db
        .count(&format!(
            "SELECT count(*) AS v FROM channel_generation_envelopes WHERE channel_id = '{c}' \
             AND generation = 2 AND device_id = '{}'",
            id_of(&bob, "deviceId")
        ))
        .await;
    assert_eq!(
        given, 0,
        "no envelope of generation 2 for the removed member"
    );
    b.close().await;
}
