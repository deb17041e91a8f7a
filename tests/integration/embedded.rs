//! The zero-config embedded store, through the real `dialtone` binary: first run generates secrets,
//! a certificate and an invite; a second start reuses them with the data intact; a hard kill loses
//! no acknowledged message.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dialtone::client::rest::Page;
use dialtone::client::{RestClient, Trust, WsClient, WsOptions};
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{LoginRequest, RegisterRequest};
use dialtone::protocol::ws::ClientFrame;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `dialtone serve` process with no configuration but a data directory and a port.
struct Process {
    child: Child,
    base_url: String,
    fingerprint: String,
    /// What it printed before it was ready.
    banner: Vec<String>,
}

async fn spawn(data_dir: &Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DIALTONE_DATA_DIR", data_dir)
        // Port 0: the process binds a free port itself and prints it.
        .env("DIALTONE_LISTEN_ADDR", "127.0.0.1:0")
        .env("DIALTONE_WS_SEND_RATE", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start dialtone");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line == "Press Ctrl-C to stop.";
            banner.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ready,
        Ok(true),
        "server did not print its banner: {banner:?}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let fingerprint = banner
        .iter()
        .find_map(|l| l.strip_prefix("TLS certificate SHA-256 fingerprint: "))
        .expect("fingerprint printed")
        .to_owned();
    // "dialtone is running at https://localhost:PORT (listening on …)"
    let base_url = banner
        .iter()
        .find_map(|l| l.strip_prefix("dialtone is running at "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in the banner: {banner:?}"))
        .to_owned();
    Process {
        child,
        base_url,
        fingerprint,
        banner,
    }
}

impl Process {
    fn trust(&self) -> Trust {
        Trust::Fingerprint(self.fingerprint.clone())
    }

    fn rest(&self) -> RestClient {
        RestClient::new(&self.base_url, &self.trust()).unwrap()
    }

    fn printed(&self, prefix: &str) -> Option<String> {
        self.banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
    }

    async fn terminate(mut self) {
        let pid = self.child.id().unwrap();
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    }

    async fn kill_hard(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn secrets(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("secrets.env")).unwrap()
}

#[tokio::test]
async fn first_run_generates_then_second_start_reuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn(dir.path()).await;
    let admin_token = first
        .printed("admin token :")
        .expect("admin token printed on first run");
    let invite = first
        .printed("first invite:")
        .expect("invite printed on first run");
    assert!(secrets(dir.path()).contains(&admin_token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secrets.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(dir.path().join("dev-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("dialtone.db").exists());

    let keys = DeviceKeypair::generate();
    let auth = first
        .rest()
        .register(&RegisterRequest {
            username: "owner".into(),
            password: "owner-pass-1".into(),
            public_key: keys.public_key_b64(),
            invite_token: invite,
        })
        .await
        .unwrap();
    assert!(auth.is_admin);
    let user = first.rest().with_token(&auth.token);
    let channel = user.create_channel("Y2hhbm5lbA==").await.unwrap();
    let fingerprint = first.fingerprint.clone();
    let secrets_before = secrets(dir.path());
    first.terminate().await;

    let second = spawn(dir.path()).await;
    assert_eq!(second.fingerprint, fingerprint, "same certificate");
    assert_eq!(
        second.printed("admin token :"),
        None,
        "no first-run banner the second time"
    );
    assert_eq!(secrets(dir.path()), secrets_before, "same secrets");
    // The session, the admin token and the data survived.
    let user = second.rest().with_token(&auth.token);
    assert_eq!(user.channels().await.unwrap(), vec![channel]);
    let admin = second
        .rest()
        .with_credentials(dialtone::client::rest::Credentials::AdminToken(admin_token));
    admin.mint_invite(&Default::default()).await.unwrap();
    let again = second
        .rest()
        .login(&LoginRequest {
            username: "owner".into(),
            password: "owner-pass-1".into(),
            public_key: keys.public_key_b64(),
            invite_token: None,
        })
        .await
        .unwrap();
    assert_eq!(again.device_id, auth.device_id);
    second.terminate().await;
}

#[tokio::test]
async fn restarts_before_anyone_registers_show_one_invite_and_the_admin_token_once() {
    let tmp = tempfile::tempdir().unwrap();
    // A data directory made by hand with a permissive mode: the server tightens it.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dir = &data;
    let first = spawn(dir).await;
    assert!(first.printed("admin token :").is_some());
    let invite = first.printed("first invite:").expect("an invite");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700, "the data directory");
        for file in ["dialtone.db", "dialtone.db-wal", "dialtone.db-shm"] {
            assert_eq!(mode(file), 0o600, "{file}");
        }
    }
    first.terminate().await;

    let second = spawn(dir).await;
    assert_eq!(second.printed("admin token :"), None, "the token only once");
    assert_eq!(
        second.printed("first invite:").as_deref(),
        Some(invite.as_str()),
        "the same invite again, not a new one"
    );
    let kept = dir.join(dialtone::bootstrap::FIRST_INVITE_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    second
        .rest()
        .register(&RegisterRequest {
            username: "owner".into(),
            password: "owner-pass-1".into(),
            public_key: DeviceKeypair::generate().public_key_b64(),
            invite_token: invite,
        })
        .await
        .expect("the kept invite works");
    second.terminate().await;

    let third = spawn(dir).await;
    assert_eq!(third.printed("first invite:"), None, "someone registered");
    assert!(!kept.exists(), "the kept invite is deleted once used");
    third.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_kill_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(dir.path()).await;
    let invite = server.printed("first invite:").unwrap();
    let keys = DeviceKeypair::generate();
    let auth = server
        .rest()
        .register(&RegisterRequest {
            username: "writer".into(),
            password: "writer-pass-1".into(),
            public_key: keys.public_key_b64(),
            invite_token: invite,
        })
        .await
        .unwrap();
    let channel = server
        .rest()
        .with_token(&auth.token)
        .create_channel("ZHVyYWJsZQ==")
        .await
        .unwrap();
    let ws = WsClient::connect(&WsOptions::new(
        &server.base_url,
        &auth.token,
        server.trust(),
    ))
    .await
    .unwrap();
    let (mut tx, mut rx) = ws.split();
    let channel_id = channel.id.clone();
    let sender = tokio::spawn(async move {
        for i in 0..2000 {
            if tx
                .send(&ClientFrame::channel_message(
                    &channel_id,
                    "ZGF0YQ==",
                    "bg==",
                    Some(i.to_string()),
                ))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Kill the server mid-stream, as soon as a good number of messages were acknowledged.
    let mut acked = crate::support::acknowledged(&mut rx, 300).await;
    server.kill_hard().await;
    crate::support::acknowledged_until_the_end(&mut rx, &mut acked).await;
    sender.abort();

    let restarted = spawn(dir.path()).await;
    let user = restarted.rest().with_token(&auth.token);
    let mut stored = HashSet::new();
    let mut before = None;
    loop {
        let page = user
            .messages(
                &channel.id,
                &Page {
                    limit: Some(500),
                    before: before.clone(),
                    after: None,
                },
            )
            .await
            .unwrap();
        before = page.messages.first().map(|m| m.id.clone());
        stored.extend(page.messages.into_iter().map(|m| m.id));
        if !page.has_more {
            break;
        }
    }
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost after a hard kill",
        lost.len()
    );
    assert!(acked.len() >= 300);
    restarted.terminate().await;
}
