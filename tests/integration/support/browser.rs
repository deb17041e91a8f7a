//! A real headless Chromium driving the web client (`web/tests/driver.mjs` over playwright-core):
//! the browser tests' fixture.
//!
//! Needs Node.js, Chromium (`DIALTONE_TEST_CHROMIUM`, default `/usr/bin/chromium`) and the
//! driver's pinned packages (`npm ci --prefix web/tests`). When one is missing, browser tests say
//! so and skip — unless `DIALTONE_TEST_REQUIRE_BROWSER` is set (CI sets it), where it fails them.
//! They run on the PostgreSQL pass only: the page is the same whatever the store.
//! Screenshots go to `target/browser-artifacts/<test>/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::asserts::skip;
use super::db::{Backend, backend};
use super::logs::LogCapture;
use super::server::{TestServer, password};

/// How long one driver command may take (a page load, a wait for a message).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pub artifacts: PathBuf,
}

fn web_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web/tests")
}

/// Why browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        return Some("no `node` on PATH (install Node.js)".into());
    }
    let chromium = chromium();
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (`apt-get install chromium`, or set DIALTONE_TEST_CHROMIUM)"
        ));
    }
    if !web_tests_dir()
        .join("node_modules/playwright-core")
        .exists()
    {
        return Some(
            "the driver's packages are not installed (`npm ci --prefix web/tests`)".into(),
        );
    }
    None
}

fn chromium() -> String {
    std::env::var("DIALTONE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

impl Browser {
    /// A browser for `server`, or `None` (after saying why) when browser tests cannot run here.
    pub async fn start(server: &TestServer) -> Option<Browser> {
        Self::start_at(&server.base_url).await
    }

    /// [`Browser::start`] with pages opened at `base_url` (e.g. a proxy in front of the server).
    pub async fn start_at(base_url: &str) -> Option<Browser> {
        if backend() != Backend::Postgres {
            skip("browser tests run on the PostgreSQL pass only");
            return None;
        }
        if let Some(why) = missing() {
            if std::env::var_os("DIALTONE_TEST_REQUIRE_BROWSER").is_some() {
                panic!("browser tests cannot run: {why}; DIALTONE_TEST_REQUIRE_BROWSER is set");
            }
            skip(&why);
            return None;
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("browser")
            .replace("::", "-");
        let artifacts = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/browser-artifacts")
            .join(test);
        std::fs::create_dir_all(&artifacts).expect("artifacts dir");
        let mut child = tokio::process::Command::new("node")
            .arg(web_tests_dir().join("driver.mjs"))
            .env("DIALTONE_URL", base_url)
            .env("CHROMIUM", chromium())
            .env("ARTIFACTS", &artifacts)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node web/tests/driver.mjs");
        let stdin = child.stdin.take().expect("driver stdin");
        let stdout = BufReader::new(child.stdout.take().expect("driver stdout")).lines();
        Some(Browser {
            child,
            stdin,
            stdout,
            artifacts,
        })
    }

    /// Run one driver command; its answer, or the driver's error.
    pub async fn try_cmd(&mut self, command: Value) -> Result<Value, String> {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("driver gone: {e}"))?;
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, self.stdout.next_line())
            .await
            .map_err(|_| format!("driver did not answer {command} within {COMMAND_TIMEOUT:?}"))?
            .map_err(|e| format!("driver output: {e}"))?
            .ok_or_else(|| format!("driver exited during {command}"))?;
        let v: Value =
            serde_json::from_str(&answer).map_err(|e| format!("driver said {answer:?}: {e}"))?;
        if v["ok"] == json!(true) {
            Ok(v)
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    /// [`Browser::try_cmd`], which must succeed (a screenshot of `ctx` is kept when it fails).
    pub async fn cmd(&mut self, command: Value) -> Value {
        match self.try_cmd(command.clone()).await {
            Ok(v) => v,
            Err(e) => {
                if let Some(ctx) = command["ctx"].as_str() {
                    let _ = self
                        .try_cmd(json!({"op": "screenshot", "ctx": ctx, "name": "failure"}))
                        .await;
                }
                let console = self.try_cmd(json!({"op": "consoleErrors"})).await;
                panic!("browser command {command} failed: {e}\npage errors: {console:?}");
            }
        }
    }

    /// A fresh browser context `ctx` that registers `username` with a new invite (password as
    /// [`password`] gives it).
    pub async fn sign_up(&mut self, server: &TestServer, ctx: &str, username: &str) -> Value {
        self.cmd(json!({"op": "newContext", "ctx": ctx})).await;
        let invite = server.invite().await;
        self.cmd(json!({"op": "register", "ctx": ctx, "username": username,
                        "password": password(username), "invite": invite}))
            .await
    }

    pub async fn close(mut self) {
        let _ = self.try_cmd(json!({"op": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Nothing of `secrets` (what was typed into the pages) is in the database dump or the log.
pub async fn assert_nothing_in_clear(server: &TestServer, logs: &LogCapture, secrets: &[String]) {
    let dump = server.db.dump().await;
    let log = logs.text();
    for secret in secrets {
        let hits: Vec<_> = dump
            .iter()
            .filter(|(_, _, v)| v.contains(secret.as_str()))
            .map(|(t, c, _)| (t, c))
            .collect();
        assert!(
            hits.is_empty(),
            "{secret:?} stored in plaintext in {hits:?}"
        );
        assert!(
            !log.contains(secret.as_str()),
            "{secret:?} in the server log"
        );
    }
}
