//! `dialtone-cli identity …` (trust v2): the first list, pairing a second device with its short
//! code, a contact pinning the identity, safety numbers (`verify`), and a reset that a contact
//! who had verified must verify again.

use dialtone::client::KeyStore;

use super::PASSPHRASE;
use super::cli::Cli;
use crate::support::*;

pub(super) fn user_id_of(cli: &Cli, profile: &str) -> String {
    let path = cli.home.path().join(format!("{profile}.keystore"));
    let store = KeyStore::open(&path, PASSPHRASE).unwrap();
    store.profile().unwrap().user_id.clone()
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} in {out}"))
        .trim()
}

#[tokio::test]
async fn e2e_cli_identity_init_pair_show_reset_and_accept() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let invite = server.invite().await;
    let user = "cli-id-alice";
    // The account's first device makes the identity by itself at registration.
    let registered = cli
        .run(
            "a1",
            user,
            &["register", "--username", user, "--invite", &invite],
        )
        .await;
    assert_eq!(registered.code, 0, "{}", registered.stderr);
    assert!(
        registered
            .stderr
            .contains("identity created: device list version 1 names this device"),
        "{}",
        registered.stderr
    );
    let err = cli.fails("a1", user, &["identity", "init"]).await;
    assert!(err.contains("already has an identity"), "{err}");
    // Logging in again on the same device changes nothing and says nothing about it.
    let again = cli.run("a1", user, &["login", "--username", user]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("identity"), "{}", again.stderr);

    // A second device is told it is not listed; it offers, the first approves with the code.
    let second = cli.run("a2", user, &["login", "--username", user]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("this device is not on your signed device list (version 1)"),
        "{}",
        second.stderr
    );
    let err = cli
        .fails("a2", user, &["identity", "approve", "x", "--code", "1"])
        .await;
    assert!(
        err.contains("code does not match") || err.contains("identity key"),
        "{err}"
    );
    let out = cli.ok("a2", user, &["identity", "pair"]).await;
    let (code, offer) = (
        field(&out, "code:").to_owned(),
        field(&out, "offer:").to_owned(),
    );
    let err = cli
        .fails(
            "a1",
            user,
            &["identity", "approve", &offer, "--code", "0000 0000 0000"],
        )
        .await;
    assert!(err.contains("code does not match"), "{err}");
    let out = cli
        .ok(
            "a1",
            user,
            &["identity", "approve", &offer, "--code", &code],
        )
        .await;
    assert!(out.contains("version 2 names 2 devices"), "{out}");
    let err = cli.fails("a2", user, &["identity", "pair"]).await;
    assert!(
        err.contains("already on the account's device list"),
        "{err}"
    );

    // A contact pins alice on first use and sees both devices.
    let invite = cli.ok("a1", user, &["invite", "--max-uses", "1"]).await;
    let bob = "cli-id-bob";
    cli.ok(
        "bob",
        bob,
        &["register", "--username", bob, "--invite", invite.trim()],
    )
    .await;
    let alice_id = user_id_of(&cli, "a1");
    let shown = cli.run("bob", bob, &["identity", "show", &alice_id]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stderr.contains("identity pinned"), "{}", shown.stderr);
    assert_eq!(
        shown.stdout.matches("  device ").count(),
        2,
        "{}",
        shown.stdout
    );

    // Safety numbers: the same 60 digits on both sides; bob marks alice verified.
    let bob_id = user_id_of(&cli, "bob");
    // A user whose client never published a list (a v1 client) has no safety number.
    let v1_user = super::register(&server, "cli-id-v1-carol").await;
    let err = cli.fails("a1", user, &["verify", v1_user.user_id()]).await;
    assert!(
        err.contains("has not published a signed device list"),
        "{err}"
    );
    // Its user's next device does not take the identity by itself: the first one would then be
    // off the list.
    let carol = cli
        .run(
            "c2",
            "cli-id-v1-carol",
            &["login", "--username", "cli-id-v1-carol"],
        )
        .await;
    assert_eq!(carol.code, 0, "{}", carol.stderr);
    assert!(
        carol
            .stderr
            .contains("you have 1 other device(s) and no signed device list yet"),
        "{}",
        carol.stderr
    );
    let err = cli.fails("a1", user, &["verify", v1_user.user_id()]).await;
    assert!(err.contains("has not published"), "{err}");
    let digits = |out: &str| -> String {
        out.lines()
            .skip_while(|l| !l.starts_with("safety number with"))
            .skip(1)
            .take(2)
            .flat_map(|l| l.split_whitespace())
            .collect::<Vec<_>>()
            .join("")
    };
    let from_alice = cli.ok("a1", user, &["verify", &bob_id]).await;
    let from_bob = cli.ok("bob", bob, &["verify", &alice_id]).await;
    assert_eq!(digits(&from_alice).len(), 60, "{from_alice}");
    assert_eq!(digits(&from_alice), digits(&from_bob));
    assert!(
        from_bob.contains('█') || from_bob.contains('▀'),
        "a QR code: {from_bob}"
    );
    // A number other than the one the identity gives is refused, and marks nothing.
    let mut wrong = digits(&from_bob);
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    let err = cli
        .fails("bob", bob, &["verify", &alice_id, "--mark", &wrong])
        .await;
    assert!(err.contains("not the one you compared"), "{err}");
    let shown = cli.run("bob", bob, &["verify", &alice_id]).await;
    assert!(!shown.stderr.contains("is verified"), "{}", shown.stderr);
    cli.ok(
        "bob",
        bob,
        &["verify", &alice_id, "--mark", &digits(&from_bob)],
    )
    .await;
    let shown = cli.run("bob", bob, &["verify", &alice_id]).await;
    assert!(shown.stderr.contains("is verified"), "{}", shown.stderr);

    // alice resets on her second device: bob is stopped, and must verify her again.
    let out = cli.ok("a2", user, &["identity", "reset"]).await;
    assert!(out.contains("version 3 names this device alone"), "{out}");
    let err = cli
        .fails("bob", bob, &["identity", "show", &alice_id])
        .await;
    assert!(
        err.contains("identity key changed") && err.contains("you had verified it"),
        "{err}"
    );
    let err = cli
        .fails("bob", bob, &["identity", "accept", &alice_id])
        .await;
    assert!(err.contains("compare safety numbers"), "{err}");
    let after = cli.run("bob", bob, &["verify", &alice_id]).await;
    assert!(
        after.stderr.contains("identity key changed"),
        "{}",
        after.stderr
    );
    assert_ne!(
        digits(&after.stdout),
        digits(&from_bob),
        "a new identity, new numbers"
    );
    // The number compared before the reset no longer marks her.
    let err = cli
        .fails(
            "bob",
            bob,
            &["verify", &alice_id, "--mark", &digits(&from_bob)],
        )
        .await;
    assert!(err.contains("not the one you compared"), "{err}");
    cli.ok(
        "bob",
        bob,
        &["verify", &alice_id, "--mark", &digits(&after.stdout)],
    )
    .await;
    let out = cli.ok("bob", bob, &["identity", "show", &alice_id]).await;
    assert_eq!(out.matches("  device ").count(), 1, "{out}");
    // The first device, which pinned the old identity, is warned too.
    let err = cli.fails("a1", user, &["identity", "show"]).await;
    assert!(err.contains("your account's identity key changed"), "{err}");
}
