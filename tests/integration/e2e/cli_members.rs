//! `dialtone-cli` on trust v2 private channels: `channels create --private`, `members
//! add|list|remove`, `dm`, and signed lines printed without the `(unverified)` mark, through the
//! real binary.

use super::cli::Cli;
use super::cli_identity::user_id_of;
use crate::support::*;

#[tokio::test]
async fn e2e_cli_private_channel_members_and_dm() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let (admin, ann, bob) = ("cli-pm-admin", "cli-pm-ann", "cli-pm-bob");
    let invite = server.invite().await;
    cli.ok(
        admin,
        admin,
        &["register", "--username", admin, "--invite", &invite],
    )
    .await;
    for user in [ann, bob] {
        let invite = cli.ok(admin, admin, &["invite", "--max-uses", "1"]).await;
        let invite = invite.split_whitespace().next().unwrap().to_owned();
        cli.ok(
            user,
            user,
            &["register", "--username", user, "--invite", &invite],
        )
        .await;
    }
    // The directory key reaches ann and bob; their next command publishes their signed profile.
    cli.ok(admin, admin, &["share"]).await;
    for user in [ann, bob] {
        cli.ok(user, user, &["users"]).await;
    }
    let bob_id = user_id_of(&cli, bob);

    let out = cli
        .ok(ann, ann, &["channels", "create", "--private", "plans"])
        .await;
    assert!(out.contains("plans"), "{out}");
    let out = cli.ok(ann, ann, &["members", "add", "plans", bob]).await;
    assert!(out.contains("added"), "{out}");
    let out = cli.ok(ann, ann, &["members", "list", "plans"]).await;
    assert!(
        out.contains("key generation 1") && out.contains(&bob_id) && out.contains("member"),
        "{out}"
    );
    cli.ok(bob, bob, &["send", "plans", "hello", "plans"]).await;
    let out = cli.ok(ann, ann, &["history", "plans"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].ends_with(&format!("] {bob}: hello plans")),
        "signed by bob's listed device, under his signed profile name: {out}"
    );

    let out = cli.ok(ann, ann, &["members", "remove", "plans", bob]).await;
    assert!(out.contains("generation 2"), "{out}");
    let err = cli.fails(bob, bob, &["history", "plans"]).await;
    assert!(err.contains("plans") || err.contains("channel"), "{err}");

    // A direct channel: found again, not duplicated, from either side.
    let out = cli.ok(ann, ann, &["dm", bob]).await;
    assert!(out.contains("opened a new direct channel"), "{out}");
    let id = out
        .split_whitespace()
        .find(|w| w.len() == 36 && w.matches('-').count() == 4)
        .unwrap()
        .to_owned();
    let out = cli.ok(bob, bob, &["dm", ann]).await;
    assert!(
        out.contains("your direct channel") && out.contains(&id),
        "{out}"
    );
    cli.ok(bob, bob, &["send", &id, "just", "us"]).await;
    let out = cli.ok(ann, ann, &["history", &id]).await;
    assert!(
        out.trim_end().ends_with(&format!("] {bob}: just us")),
        "{out}"
    );
}
