//! Private channels and direct messages between two browsers and `dialtone-cli`: members read
//! each other (signatures made in the browser verify in the CLI and the other way round), a
//! removed member's page stops receiving, and the browser shows the same safety number as
//! `dialtone-cli verify`.

use serde_json::json;

use crate::e2e::cli::Cli;
use crate::support::*;

const ALICE: &str = "hoiho-alice";
const BOB: &str = "pukeko-bob";
const ADMIN: &str = "kereru-admin";
const PLANS: &str = "moa migration plans";
const HELLO: &str = "alice opens the private channel";
const FROM_BOB: &str = "bob answers in private";
const FROM_CLI: &str = "the terminal signs its words too";
const DM: &str = "a direct word from bob to alice";
const CLI_DM: &str = "the terminal writes to bob directly";
const AFTER: &str = "said after bob was removed";

/// The 60 digits `dialtone-cli verify` printed.
fn cli_digits(out: &str) -> String {
    out.lines()
        .skip_while(|l| !l.starts_with("safety number with"))
        .skip(1)
        .take(2)
        .flat_map(|l| l.split_whitespace())
        .collect()
}

#[tokio::test]
async fn private_channels_dms_removal_and_safety_numbers_across_browsers_and_the_cli() {
    let logs = LogCapture::start();
    let server = TestServer::start().await;
    let Some(mut b) = Browser::start(&server).await else {
        return;
    };
    // The first user is on the CLI: the admin, with the directory key and an identity.
    let cli = Cli::new(&server);
    let invite = server.invite().await;
    cli.ok(
        "admin",
        ADMIN,
        &["register", "--username", ADMIN, "--invite", &invite],
    )
    .await;
    for (ctx, name) in [("alice", ALICE), ("bob", BOB)] {
        b.sign_up(&server, ctx, name).await;
    }
    // The CLI checks the browsers' signed device lists and gives them the directory key.
    cli.ok("admin", ADMIN, &["share"]).await;
    for (ctx, name) in [("alice", BOB), ("bob", ALICE), ("alice", ADMIN)] {
        b.cmd(json!({"op": "waitPerson", "ctx": ctx, "name": name}))
            .await;
    }

    // alice makes a private channel and adds bob, then the CLI user.
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
    let history = cli.ok("admin", ADMIN, &["history", PLANS]).await;
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].ends_with(&format!("] {ALICE}: {HELLO}"))
            && lines[1].ends_with(&format!("] {BOB}: {FROM_BOB}")),
        "the browsers' signatures and signed profiles verify in the CLI (no `(unverified)`): {history}"
    );
    cli.ok("admin", ADMIN, &["send", PLANS, FROM_CLI]).await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": FROM_CLI}))
        .await;
    let shown = b.cmd(json!({"op": "messages", "ctx": "alice"})).await;
    let last = shown["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (
            last["name"].as_str(),
            last["verified"].as_bool(),
            last["unverified"].as_bool()
        ),
        (Some(ADMIN), Some(true), Some(false)),
        "a signed text from a listed device carries no unverified mark: {shown}"
    );

    // Direct messages: bob opens one from his people list; the CLI opens one with bob.
    b.cmd(json!({"op": "messagePerson", "ctx": "bob", "name": ALICE}))
        .await;
    b.cmd(json!({"op": "send", "ctx": "bob", "text": DM})).await;
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": BOB}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "alice", "text": DM}))
        .await;
    b.cmd(json!({"op": "screenshot", "ctx": "alice", "name": "direct"}))
        .await;
    let opened = cli.ok("admin", ADMIN, &["dm", BOB]).await;
    let dm_id = opened
        .split_whitespace()
        .find(|w| w.len() == 36 && w.matches('-').count() == 4)
        .expect("the DM's id")
        .to_owned();
    cli.ok("admin", ADMIN, &["send", &dm_id, CLI_DM]).await;
    b.cmd(json!({"op": "openChannel", "ctx": "bob", "name": ADMIN}))
        .await;
    b.cmd(json!({"op": "waitMessage", "ctx": "bob", "text": CLI_DM}))
        .await;

    // alice removes bob: her page posts a new key generation; bob's page loses the channel and
    // sees nothing said after; the CLI, still a member, reads it.
    b.cmd(json!({"op": "openChannel", "ctx": "bob", "name": PLANS}))
        .await;
    b.cmd(json!({"op": "openChannel", "ctx": "alice", "name": PLANS}))
        .await;
    b.cmd(json!({"op": "removeMember", "ctx": "alice", "name": BOB}))
        .await;
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
    let history = cli.ok("admin", ADMIN, &["history", PLANS]).await;
    assert!(
        history
            .lines()
            .last()
            .unwrap()
            .ends_with(&format!("] {ALICE}: {AFTER}")),
        "{history}"
    );
    b.cmd(json!({"op": "screenshot", "ctx": "alice", "name": "private"}))
        .await;
    let axe = b.cmd(json!({"op": "axe", "ctx": "alice"})).await;
    assert_eq!(axe["violations"], json!([]), "private channel page: {axe}");

    // The safety number alice's page shows for the CLI user is the one the CLI prints.
    let shown = b
        .cmd(json!({"op": "safetyNumber", "ctx": "alice", "name": ADMIN}))
        .await;
    let from_cli = cli.ok("admin", ADMIN, &["verify", ALICE]).await;
    assert_eq!(shown["digits"].as_str().unwrap(), cli_digits(&from_cli));
    assert_eq!(cli_digits(&from_cli).len(), 60);
    assert_eq!(shown["shown"].as_str().unwrap().split(' ').count(), 12);
    let marked = b.cmd(json!({"op": "markVerified", "ctx": "alice"})).await;
    assert!(marked["state"].as_str().unwrap().contains("is verified"));
    // The CLI user resets their identity: alice's page warns, and she must compare again.
    cli.ok("admin", ADMIN, &["identity", "reset"]).await;
    let changed = b
        .cmd(json!({"op": "safetyNumber", "ctx": "alice", "name": ADMIN}))
        .await;
    assert!(
        changed["state"]
            .as_str()
            .unwrap()
            .contains("identity key changed since you verified it"),
        "{changed}"
    );
    assert_ne!(changed["digits"], shown["digits"]);
    let from_cli = cli.ok("admin", ADMIN, &["verify", ALICE]).await;
    assert_eq!(changed["digits"].as_str().unwrap(), cli_digits(&from_cli));
    b.cmd(json!({"op": "markVerified", "ctx": "alice"})).await;
    let errors = b.cmd(json!({"op": "consoleErrors"})).await;
    assert_eq!(errors["errors"], json!([]), "{errors}");
    b.close().await;

    let typed = [PLANS, HELLO, FROM_BOB, FROM_CLI, DM, CLI_DM, AFTER].map(str::to_owned);
    assert_nothing_in_clear(&server, &logs, &typed).await;
}
