//! Client TLS trust: which server certificates the client library (REST and WebSocket) and the
//! real `dialtone-cli` accept — a pinned fingerprint, a CA file, the system roots — against servers
//! with the development certificate or a certificate from a throwaway CA.

use std::path::Path;

use dialtone::client::{RestClient, Trust, WsClient, WsOptions};

use crate::certs::{Ca, Leaf};
use crate::support::{TestServer, WAIT, password};

/// A server serving `leaf` (from `DIALTONE_TLS_CERT`/`DIALTONE_TLS_KEY` files in `dir`).
async fn server_with(leaf: &Leaf, dir: &Path) -> TestServer {
    let (cert, key) = leaf.write(dir, "server");
    TestServer::start_with(|s| {
        s.set("DIALTONE_TLS_CERT", cert.display().to_string());
        s.set("DIALTONE_TLS_KEY", key.display().to_string());
    })
    .await
}

/// `r` failed, in the TLS handshake, with a message containing `needle`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, dialtone::client::ClientError>,
    needle: &str,
) {
    match r {
        Ok(v) => panic!("{what}: the connection was accepted ({v:?})"),
        Err(e) => {
            let text = e.to_string();
            assert!(
                matches!(e, dialtone::client::ClientError::Transport(_)),
                "{what}: not a transport error: {text}"
            );
            assert!(text.contains(needle), "{what}: {text:?} lacks {needle:?}");
        }
    }
}

/// REST and WebSocket to `base_url` under `trust`, both refused with `needle` in the error.
async fn assert_both_refused(base_url: &str, trust: &Trust, needle: &str) {
    let rest = RestClient::new(base_url, trust).unwrap();
    assert_refused("REST", rest.health().await, needle);
    let ws = tokio::time::timeout(
        WAIT,
        WsClient::connect(&WsOptions::new(base_url, "not-a-token", trust.clone())),
    )
    .await
    .expect("WebSocket attempt finished in time");
    assert_refused("WebSocket", ws.map(|_| ()), needle);
}

#[tokio::test]
async fn a_wrong_pinned_fingerprint_is_refused_over_rest_and_websocket() {
    let server = TestServer::start().await;
    // The right pin works (so the refusal below is about the pin, not the server).
    server.rest().health().await.unwrap();

    // A well-formed fingerprint of another certificate.
    let other = Ca::new("other").issue(&["localhost"]);
    assert_ne!(other.fingerprint, server.fingerprint);
    let wrong = Trust::Fingerprint(other.fingerprint.clone());
    assert_both_refused(&server.base_url, &wrong, "pinned fingerprint").await;

    // One flipped byte of the real fingerprint is just as wrong.
    let mut flipped = server.fingerprint.clone();
    let last = if flipped.ends_with('0') { "1" } else { "0" };
    flipped.replace_range(flipped.len() - 1.., last);
    assert_both_refused(
        &server.base_url,
        &Trust::Fingerprint(flipped),
        "pinned fingerprint",
    )
    .await;
}

#[tokio::test]
async fn a_ca_file_is_trusted_only_for_certificates_that_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("dialtone test CA");
    let stranger = Ca::new("some other CA");
    let leaf = ca.issue(&["localhost"]);
    let server = server_with(&leaf, dir.path()).await;
    // The server serves that certificate, not a generated one.
    assert_eq!(server.fingerprint, leaf.fingerprint);

    // The signing CA: REST and WebSocket accepted.
    let trusted = Trust::CaFile(ca.write(dir.path(), "ca.pem"));
    RestClient::new(&server.base_url, &trusted)
        .unwrap()
        .health()
        .await
        .unwrap();
    let alice = server.user("alice").await;
    let mut ws = WsClient::connect(&WsOptions::new(
        &server.base_url,
        alice.token(),
        trusted.clone(),
    ))
    .await
    .expect("WebSocket under the signing CA");
    crate::support::ws_ready(&mut ws).await;

    // Another CA: refused.
    let untrusted = Trust::CaFile(stranger.write(dir.path(), "stranger.pem"));
    assert_both_refused(
        &server.base_url,
        &untrusted,
        "invalid peer certificate: UnknownIssuer",
    )
    .await;
}

#[tokio::test]
async fn a_ca_file_does_not_excuse_a_certificate_for_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("dialtone test CA");
    let leaf = ca.issue(&["elsewhere.invalid"]);
    let server = server_with(&leaf, dir.path()).await;
    let trusted = Trust::CaFile(ca.write(dir.path(), "ca.pem"));
    // Signed by the trusted CA, but for another name than `localhost`.
    assert_both_refused(
        &server.base_url,
        &trusted,
        "certificate not valid for name \"localhost\"",
    )
    .await;
}

#[tokio::test]
async fn system_roots_refuse_the_self_signed_development_certificate() {
    let server = TestServer::start().await;
    assert!(!server.fingerprint.is_empty());
    assert_both_refused(
        &server.base_url,
        &Trust::SystemRoots,
        "invalid peer certificate: UnknownIssuer",
    )
    .await;
}

/// `dialtone-cli register` against `server` with `trust_args`; (exit code, stdout, stderr).
async fn cli_register(
    server: &TestServer,
    home: &Path,
    profile: &str,
    invite: &str,
    trust_args: &[&str],
) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dialtone-cli"));
    cmd.args(["--server", &server.base_url])
        .args(trust_args)
        .args(["--profile", profile])
        .arg("--home")
        .arg(home)
        .args(["register", "--username", profile, "--invite", invite])
        .env("DIALTONE_PASSPHRASE", "cli test passphrase")
        .env("DIALTONE_PASSWORD", password(profile))
        .env_remove("DIALTONE_CLI_HOME")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT * 3, cmd.output())
        .await
        .expect("dialtone-cli finished in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_refuses_a_wrong_fingerprint_or_ca_file_and_accepts_the_signing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let ca = Ca::new("dialtone test CA");
    let stranger = Ca::new("some other CA");
    let leaf = ca.issue(&["localhost"]);
    let server = server_with(&leaf, dir.path()).await;
    let invite = server.invite().await;
    let ca_path = ca.write(dir.path(), "ca.pem").display().to_string();
    let stranger_path = stranger
        .write(dir.path(), "stranger.pem")
        .display()
        .to_string();
    let wrong_fp = stranger.issue(&["localhost"]).fingerprint;

    let cases: [(&str, Vec<&str>, &str); 2] = [
        (
            "pinned",
            vec!["--fingerprint", &wrong_fp],
            "pinned fingerprint",
        ),
        (
            "stranger",
            vec!["--ca-file", &stranger_path],
            "invalid peer certificate: UnknownIssuer",
        ),
    ];
    for (profile, args, needle) in cases {
        let (code, stdout, stderr) =
            cli_register(&server, home.path(), profile, &invite, &args).await;
        assert_ne!(code, 0, "{args:?} accepted: {stdout}\n{stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr does not say why: {stderr}"
        );
        assert!(!stdout.contains("registered"), "{args:?}: {stdout}");
    }

    // Nothing reached the server and no key store was left behind: the same profile registers
    // with the same invite, under the signing CA.
    let (code, stdout, stderr) = cli_register(
        &server,
        home.path(),
        "pinned",
        &invite,
        &["--ca-file", &ca_path],
    )
    .await;
    assert_eq!(code, 0, "signing CA refused: {stdout}\n{stderr}");
    assert!(stdout.contains("registered pinned"), "{stdout}");
}
