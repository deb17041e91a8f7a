//! The `dialtone-cli` binary: register, create, send, history, tail and share.

use crate::support::*;

use super::*;

pub(crate) struct Cli {
    pub(super) home: tempfile::TempDir,
    server: String,
    fingerprint: String,
}

pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Cli {
    pub(crate) fn new(server: &TestServer) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            server: server.base_url.clone(),
            fingerprint: server.fingerprint.clone(),
        }
    }

    pub(super) fn command(
        &self,
        profile: &str,
        user: &str,
        args: &[&str],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dialtone-cli"));
        cmd.args([
            "--server",
            &self.server,
            "--fingerprint",
            &self.fingerprint,
            "--profile",
            profile,
        ])
        .arg("--home")
        .arg(self.home.path())
        .args(args)
        .env("DIALTONE_PASSPHRASE", PASSPHRASE)
        .env("DIALTONE_PASSWORD", password(user))
        .env_remove("DIALTONE_CLI_HOME")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        cmd
    }

    pub(crate) async fn run(&self, profile: &str, user: &str, args: &[&str]) -> Output {
        let out = tokio::time::timeout(WAIT * 3, self.command(profile, user, args).output())
            .await
            .expect("dialtone-cli finished in time")
            .unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and require success.
    pub(crate) async fn ok(&self, profile: &str, user: &str, args: &[&str]) -> String {
        let out = self.run(profile, user, args).await;
        assert_eq!(
            out.code, 0,
            "dialtone-cli {args:?} failed: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Run and require a failure reported as one line on stderr.
    pub(super) async fn fails(&self, profile: &str, user: &str, args: &[&str]) -> String {
        let out = self.run(profile, user, args).await;
        assert_ne!(
            out.code, 0,
            "dialtone-cli {args:?} succeeded: {}",
            out.stdout
        );
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "one line on stderr, got: {:?}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("dialtone-cli: error: "),
            "{}",
            out.stderr
        );
        out.stderr
    }
}

/// Lines of a child's pipe, read in the background.
fn lines_of(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::AsyncBufReadExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

async fn line_containing(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(l)) if l.contains(needle) => return l,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("output ended before a line with {needle:?}"),
            Err(_) => panic!("no line with {needle:?} in time"),
        }
    }
}

#[tokio::test]
async fn e2e_cli_register_create_send_history_tail_and_share() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let invite = server.invite().await;

    let out = cli
        .ok(
            "boss",
            "cli-admin-user",
            &[
                "register",
                "--username",
                "cli-admin-user",
                "--invite",
                &invite,
            ],
        )
        .await;
    assert!(out.contains("registered cli-admin-user"), "{out}");
    let store = cli.home.path().join("boss.keystore");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let on_disk = std::fs::read_to_string(&store).unwrap();
    assert!(!on_disk.contains("cli-admin-user") && !on_disk.contains(&server.base_url));

    let out = cli
        .ok(
            "boss",
            "cli-admin-user",
            &["channels", "create", "lounge", "two"],
        )
        .await;
    assert!(out.starts_with("created #lounge two ("), "{out}");
    let out = cli.ok("boss", "cli-admin-user", &["channels"]).await;
    assert!(out.contains("#lounge two"), "{out}");
    let out = cli
        .ok(
            "boss",
            "cli-admin-user",
            &["send", "lounge two", "hello", "from", "the", "terminal"],
        )
        .await;
    assert!(
        out.contains("] (unverified) cli-admin-user: hello from the terminal"),
        "{out}"
    );
    let out = cli
        .ok("boss", "cli-admin-user", &["history", "#lounge two"])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with('[')
            && lines[0].ends_with("] (unverified) cli-admin-user: hello from the terminal"),
        "{out}"
    );

    // The admin tails; a second person registers with an invite from the CLI and gets the keys
    // from the running tail.
    let mut tail = cli
        .command("boss", "cli-admin-user", &["tail"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut tail_out = lines_of(tail.stdout.take().unwrap());
    let mut tail_err = lines_of(tail.stderr.take().unwrap());
    line_containing(&mut tail_out, "hello from the terminal").await;
    let invite = cli
        .ok("boss", "cli-admin-user", &["invite", "--max-uses", "1"])
        .await;
    let invite = invite.trim();
    cli.ok(
        "guest",
        "cli-guest-user",
        &[
            "register",
            "--username",
            "cli-guest-user",
            "--invite",
            invite,
        ],
    )
    .await;
    line_containing(&mut tail_err, "shared 2 key(s)").await;
    let out = cli
        .ok("guest", "cli-guest-user", &["history", "lounge two"])
        .await;
    assert!(
        out.contains("cli-admin-user: hello from the terminal"),
        "{out}"
    );
    cli.ok(
        "guest",
        "cli-guest-user",
        &["send", "lounge two", "guest checking in"],
    )
    .await;
    let line = line_containing(&mut tail_out, "guest checking in").await;
    assert!(
        line.contains("#lounge two (unverified) cli-guest-user: guest checking in"),
        "{line}"
    );
    let out = cli.ok("guest", "cli-guest-user", &["users"]).await;
    assert!(
        out.contains("cli-admin-user") && out.contains("cli-guest-user"),
        "{out}"
    );

    // A device with a junk public key is skipped and shown; the share still happens.
    let broken = server.user("cli-broken-user").await;
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = 'junk', public_key_hash = NULL WHERE id = '{}'",
            broken.device()
        ))
        .await;
    let out = cli.run("boss", "cli-admin-user", &["share"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("shared 2 key(s)"), "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "warning: skipped device {} (user {})",
            broken.device(),
            broken.id()
        )),
        "{}",
        out.stderr
    );

    // Ctrl-C ends tail cleanly.
    let pid = tail.id().unwrap().to_string();
    let status = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("kill finished in time")
    .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(WAIT, tail.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "tail exits 0 on Ctrl-C: {status:?}");

    // Mistakes: one line on stderr, non-zero exit.
    cli.fails("boss", "cli-admin-user", &["frobnicate"]).await;
    let err = cli.fails("boss", "cli-admin-user", &["history"]).await;
    assert!(err.contains("<CHANNEL>"), "{err}");
    let err = cli
        .fails("boss", "cli-admin-user", &["send", "no-such-room", "hi"])
        .await;
    assert!(err.contains("no channel \"no-such-room\""), "{err}");
    let err = cli
        .fails(
            "guest",
            "cli-guest-user",
            &["channels", "create", "not-allowed"],
        )
        .await;
    assert!(err.contains("not allowed"), "{err}");
    let err = cli.fails("nobody", "nobody", &["channels"]).await;
    assert!(err.contains("no key store"), "{err}");
    let mut wrong = cli.command("boss", "cli-admin-user", &["channels"]);
    wrong.env("DIALTONE_PASSPHRASE", "not the passphrase");
    let out = tokio::time::timeout(WAIT * 3, wrong.output())
        .await
        .expect("dialtone-cli finished in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("wrong passphrase or corrupted key store"),
        "{stderr}"
    );

    // Logout ends the session; the profile then says how to get back in.
    cli.ok("guest", "cli-guest-user", &["logout"]).await;
    let err = cli.fails("guest", "cli-guest-user", &["channels"]).await;
    assert!(err.contains("login"), "{err}");
    let out = cli
        .ok(
            "guest",
            "cli-guest-user",
            &["login", "--username", "cli-guest-user"],
        )
        .await;
    assert!(out.contains("logged in as cli-guest-user"), "{out}");
    let out = cli
        .ok(
            "guest",
            "cli-guest-user",
            &["history", "lounge two", "--limit", "1"],
        )
        .await;
    assert!(out.contains("guest checking in"), "{out}");
}
