//! Running the real `dialtone` binary: one-shot commands with a deadline, and `dialtone serve` up
//! to its banner (or its exit), with a clean environment built from a variable map.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long any one command may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What a finished command left behind.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A fresh base64 at-rest key (32 bytes).
pub fn new_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(dialtone::crypto::random_bytes(32))
}

/// The smallest complete configuration: a database, a data directory, the three secrets, a
/// loopback listener on port 0.
pub fn base_env(db_url: &str, data_dir: &std::path::Path) -> HashMap<String, String> {
    [
        ("DIALTONE_DB_URL", db_url.to_owned()),
        ("DIALTONE_DATA_DIR", data_dir.display().to_string()),
        ("DIALTONE_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "DIALTONE_USERNAME_PEPPER",
            "test-pepper-0123456789".to_owned(),
        ),
        (
            "DIALTONE_ADMIN_TOKEN",
            "test-admin-token-0123456789".to_owned(),
        ),
        ("DIALTONE_CHANNEL_KEY", new_key()),
        ("DIALTONE_DB_POOL_SIZE", "2".to_owned()),
        ("DIALTONE_WORKERS", "1".to_owned()),
        ("DIALTONE_SHUTDOWN_TIMEOUT_SECS", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn command(args: &[&str], vars: &HashMap<String, String>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialtone"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run `dialtone <args>` to completion (killed after [`DEADLINE`], which fails the test).
pub async fn run(args: &[&str], vars: &HashMap<String, String>) -> Outcome {
    let out = tokio::time::timeout(DEADLINE, command(args, vars).output())
        .await
        .unwrap_or_else(|_| panic!("dialtone {args:?} did not finish within {DEADLINE:?}"))
        .expect("run dialtone");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `dialtone serve` that printed its banner; killed when dropped.
pub struct Serving {
    child: Child,
    /// `http` or `https`, as the banner says.
    pub scheme: String,
    pub port: u16,
    /// The banner's fingerprint line, when it serves TLS.
    pub fingerprint: Option<String>,
    /// The metrics listener's port, when `DIALTONE_METRICS_ADDR` is set (the banner says which:
    /// port 0 binds a free one).
    pub metrics_port: Option<u16>,
    stderr: Arc<Mutex<String>>,
}

impl Serving {
    pub fn base_url(&self) -> String {
        format!("{}://localhost:{}", self.scheme, self.port)
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `dialtone serve` either serving or exited before its banner.
pub enum Started {
    Serving(Serving),
    Exited(Outcome),
}

impl Started {
    #[track_caller]
    pub fn serving(self) -> Serving {
        match self {
            Started::Serving(s) => s,
            Started::Exited(o) => panic!("dialtone serve exited: {o:?}"),
        }
    }

    #[track_caller]
    pub fn exited(self) -> Outcome {
        match self {
            Started::Exited(o) => o,
            Started::Serving(s) => panic!(
                "dialtone serve started on port {} but should have refused to (stderr: {})",
                s.port,
                s.stderr()
            ),
        }
    }
}

/// Start `dialtone serve` and wait (up to [`DEADLINE`]) until it prints `Press Ctrl-C to stop.`
/// or exits.
pub async fn serve(vars: &HashMap<String, String>) -> Started {
    let mut child = command(&["serve"], vars).spawn().expect("start dialtone");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let err_task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let ready = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line == "Press Ctrl-C to stop.";
            banner.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or_else(|_| panic!("dialtone serve neither started nor exited: {banner:?}"));
    if !ready {
        let status = tokio::time::timeout(DEADLINE, child.wait())
            .await
            .expect("dialtone serve exits after closing stdout")
            .unwrap();
        let _ = tokio::time::timeout(DEADLINE, err_task).await;
        let stderr = stderr.lock().unwrap().clone();
        return Started::Exited(Outcome {
            code: status.code().unwrap_or(-1),
            stdout: banner.join("\n"),
            stderr,
        });
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // "dialtone is running at https://localhost:PORT (listening on …)"
    let running = banner
        .iter()
        .find_map(|l| l.strip_prefix("dialtone is running at "))
        .unwrap_or_else(|| panic!("no address in the banner: {banner:?}"));
    let url = running.split_whitespace().next().unwrap();
    let (scheme, rest) = url.split_once("://").unwrap();
    let port = rest.rsplit(':').next().unwrap().parse().unwrap();
    let fingerprint = banner
        .iter()
        .find_map(|l| l.strip_prefix("TLS certificate SHA-256 fingerprint: "))
        .map(str::to_owned);
    let metrics_port = banner
        .iter()
        .find_map(|l| l.strip_prefix("metrics listening on "))
        .map(|addr| addr.rsplit(':').next().unwrap().parse().unwrap());
    Started::Serving(Serving {
        child,
        scheme: scheme.to_owned(),
        port,
        fingerprint,
        metrics_port,
        stderr,
    })
}
