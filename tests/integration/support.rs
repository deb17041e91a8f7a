//! Test harness: a real server (real TLS, real database) per test.
//!
//! Each [`TestServer`] gets a fresh database — a new PostgreSQL database created from
//! `DIALTONE_TEST_DB_URL` (default: the local server), or a new SQLite file when
//! `DIALTONE_TEST_BACKEND=sqlite` — binds port 0, and serves its generated self-signed certificate,
//! which clients pin by fingerprint. The server runs in its own thread with its own actix System,
//! exactly as `dialtone serve` runs it; tests talk to it only through the client library and SQL.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use dialtone::client::rest::Credentials;
use dialtone::client::{RestClient, Trust, WsClient, WsOptions};
use dialtone::config::Config;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{AuthResponse, CreateInviteRequest, LoginRequest, RegisterRequest};
use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

pub const WAIT: Duration = Duration::from_secs(10);

/// Which backend the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// `DIALTONE_TEST_BACKEND=postgres|sqlite`; unset: PostgreSQL when the test server answers,
/// otherwise the embedded SQLite store (so `cargo test` works on a machine with only Rust).
pub fn backend() -> Backend {
    static CHOSEN: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| match std::env::var("DIALTONE_TEST_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("DIALTONE_TEST_BACKEND must be postgres or sqlite, not {other}"),
        Err(_) => {
            if postgres_reachable() {
                Backend::Postgres
            } else {
                // Straight to the stderr handle: the test harness captures `eprintln!`, and this
                // should be seen.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "note: no PostgreSQL at DIALTONE_TEST_DB_URL ({}); running the suite on SQLite",
                    admin_url()
                );
                Backend::Sqlite
            }
        }
    })
}

fn postgres_reachable() -> bool {
    let url = admin_url();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        rt.block_on(async {
            let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            matches!(
                tokio::time::timeout(Duration::from_secs(3), connect).await,
                Ok(Ok(_))
            )
        })
    })
    .join()
    .unwrap_or(false)
}

fn admin_url() -> String {
    std::env::var("DIALTONE_TEST_DB_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create() -> Self {
        match backend() {
            Backend::Postgres => {
                let name = format!("dialtone_test_{}", uuid::Uuid::new_v4().simple());
                let admin = admin_url();
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test PostgreSQL server (set DIALTONE_TEST_DB_URL)");
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let url = replace_db_name(&admin, &name);
                TestDb {
                    url,
                    backend: Backend::Postgres,
                    pg_name: Some(name),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("dialtone.db");
                TestDb {
                    url: format!("sqlite://{}", path.display()),
                    backend: Backend::Sqlite,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn sqlite_path(&self) -> String {
        self.url.trim_start_matches("sqlite://").to_owned()
    }

    /// Run statements.
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                client.batch_execute(sql).await.unwrap();
            }
            Backend::Sqlite => {
                let path = self.sqlite_path();
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    let mut c = SqliteConnection::establish(&path).unwrap();
                    c.batch_execute("PRAGMA busy_timeout = 10000;").unwrap();
                    c.batch_execute(&sql).unwrap();
                })
                .await
                .unwrap();
            }
        }
    }

    /// A one-column query whose column is named `v`; every value as text (NULL → None).
    pub async fn strings(&self, sql: &str) -> Vec<Option<String>> {
        match self.backend {
            Backend::Postgres => {
                let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                client
                    .simple_query(sql)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some(r.get(0).map(str::to_owned))
                        }
                        _ => None,
                    })
                    .collect()
            }
            Backend::Sqlite => {
                #[derive(QueryableByName)]
                struct V {
                    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                    v: Option<String>,
                }
                let path = self.sqlite_path();
                let sql = format!("SELECT CAST(v AS TEXT) AS v FROM ({sql})");
                tokio::task::spawn_blocking(move || {
                    let mut c = SqliteConnection::establish(&path).unwrap();
                    c.batch_execute("PRAGMA busy_timeout = 10000;").unwrap();
                    diesel::sql_query(sql)
                        .load::<V>(&mut c)
                        .unwrap()
                        .into_iter()
                        .map(|r| r.v)
                        .collect()
                })
                .await
                .unwrap()
            }
        }
    }

    /// First value of a one-column query.
    pub async fn string(&self, sql: &str) -> Option<String> {
        self.strings(sql).await.into_iter().next().flatten()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.string(sql)
            .await
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// Every value of every column of every table, as `(table, column, text)`.
    pub async fn dump(&self) -> Vec<(String, String, String)> {
        let columns: Vec<(String, String)> = match self.backend {
            Backend::Postgres => {
                let t = self
                    .strings(
                        "SELECT table_name || '.' || column_name AS v FROM information_schema.columns \
                         WHERE table_schema = 'public' ORDER BY 1",
                    )
                    .await;
                t.into_iter()
                    .flatten()
                    .filter_map(|s| s.split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())))
                    .collect()
            }
            Backend::Sqlite => {
                let tables = self
                    .strings("SELECT name AS v FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                    .await;
                let mut out = Vec::new();
                for t in tables.into_iter().flatten() {
                    for c in self
                        .strings(&format!("SELECT name AS v FROM pragma_table_info('{t}')"))
                        .await
                        .into_iter()
                        .flatten()
                    {
                        out.push((t.clone(), c));
                    }
                }
                out
            }
        };
        let mut rows = Vec::new();
        for (table, column) in columns {
            let sql = format!("SELECT CAST(\"{column}\" AS TEXT) AS v FROM \"{table}\"");
            for v in self.strings(&sql).await.into_iter().flatten() {
                rows.push((table.clone(), column.clone(), v));
            }
        }
        rows
    }

    async fn drop_pg(name: String) {
        if let Ok((client, conn)) =
            tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Dropped from a plain thread: the test's runtime may be shutting down.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(TestDb::drop_pg(name));
                }
            })
            .join();
        }
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let slash = base.rfind('/').expect("database URL has a path");
    let mut out = format!("{}/{name}", &base[..slash]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Settings of one test server.
#[derive(Clone)]
pub struct ServerSettings {
    pub vars: HashMap<String, String>,
}

impl ServerSettings {
    pub fn new(db: &TestDb, data_dir: &std::path::Path) -> Self {
        let key =
            base64::engine::general_purpose::STANDARD.encode(dialtone::crypto::random_bytes(32));
        let vars = [
            ("DIALTONE_DB_URL", db.url.as_str()),
            ("DIALTONE_DATA_DIR", &data_dir.display().to_string()),
            ("DIALTONE_LISTEN_ADDR", "127.0.0.1:0"),
            ("DIALTONE_USERNAME_PEPPER", "test-pepper-0123456789"),
            ("DIALTONE_ADMIN_TOKEN", "test-admin-token-0123456789"),
            ("DIALTONE_CHANNEL_KEY", &key),
            ("DIALTONE_DB_POOL_SIZE", "4"),
            ("DIALTONE_WORKERS", "1"),
            ("DIALTONE_WS_SEND_RATE", "0"),
            ("DIALTONE_SHUTDOWN_TIMEOUT_SECS", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self { vars }
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }
}

/// A running server plus its database and data directory.
pub struct TestServer {
    pub base_url: String,
    pub fingerprint: String,
    pub admin_token: String,
    pub db: TestDb,
    pub data_dir: PathBuf,
    pub settings: ServerSettings,
    _data: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Start with settings adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerSettings)) -> Self {
        let db = TestDb::create().await;
        Self::start_on(db, tweak).await
    }

    /// Start on an existing database (prepared by the test).
    pub async fn start_on(db: TestDb, tweak: impl FnOnce(&mut ServerSettings)) -> Self {
        init_logging();
        let data = tempfile::tempdir().expect("tempdir");
        let mut settings = ServerSettings::new(&db, data.path());
        tweak(&mut settings);
        let data_dir = data.path().to_owned();
        let mut server = TestServer {
            base_url: String::new(),
            fingerprint: String::new(),
            admin_token: settings.vars["DIALTONE_ADMIN_TOKEN"].clone(),
            db,
            data_dir,
            settings,
            _data: data,
            shutdown: None,
            thread: None,
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let config = Config::load(self.settings.vars.clone())
            .expect("test configuration")
            .config;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let running = match dialtone::server::start(config, listener).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(running.tls_fingerprint.clone().unwrap_or_default()));
                running
                    .serve_until(async {
                        let _ = stop_rx.await;
                    })
                    .await
            })
        });
        let fingerprint =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap()
                .expect("server did not start in time")
                .unwrap_or_else(|e| panic!("server failed to start: {e}"));
        self.base_url = format!("https://localhost:{port}");
        self.fingerprint = fingerprint;
        self.shutdown = Some(stop_tx);
        self.thread = Some(thread);
    }

    /// Graceful shutdown; returns the server's result.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => tokio::task::spawn_blocking(move || t.join())
                .await
                .unwrap()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("server thread panicked"))),
            None => Ok(()),
        }
    }

    /// Stop and start again on the same database and data directory (new port).
    pub async fn restart(&mut self) {
        self.stop().await.expect("clean shutdown");
        self.boot().await;
    }

    pub fn trust(&self) -> Trust {
        Trust::Fingerprint(self.fingerprint.clone())
    }

    /// An unauthenticated REST client.
    pub fn rest(&self) -> RestClient {
        RestClient::new(&self.base_url, &self.trust()).unwrap()
    }

    /// A REST client using the admin token.
    pub fn admin(&self) -> RestClient {
        self.rest()
            .with_credentials(Credentials::AdminToken(self.admin_token.clone()))
    }

    pub async fn invite(&self) -> String {
        self.admin()
            .mint_invite(&CreateInviteRequest::default())
            .await
            .expect("mint invite")
            .token
    }

    /// Register a new user (with a fresh device key) through a fresh invite.
    pub async fn user(&self, name: &str) -> TestUser {
        let keys = DeviceKeypair::generate();
        let invite = self.invite().await;
        let auth = self
            .rest()
            .register(&RegisterRequest {
                username: name.to_owned(),
                password: password(name),
                public_key: keys.public_key_b64(),
                invite_token: invite,
            })
            .await
            .expect("register");
        TestUser {
            rest: self.rest().with_token(&auth.token),
            auth,
            keys,
            name: name.to_owned(),
        }
    }

    /// Log `user` in again from a new device.
    pub async fn new_device(&self, user: &TestUser) -> TestUser {
        let keys = DeviceKeypair::generate();
        let auth = self
            .rest()
            .login(&LoginRequest {
                username: user.name.clone(),
                password: password(&user.name),
                public_key: keys.public_key_b64(),
                invite_token: None,
            })
            .await
            .expect("login");
        TestUser {
            rest: self.rest().with_token(&auth.token),
            auth,
            keys,
            name: user.name.clone(),
        }
    }

    pub fn ws_options(&self, token: &str) -> WsOptions {
        WsOptions::new(&self.base_url, token, self.trust())
    }

    pub async fn ws(&self, user: &TestUser) -> WsClient {
        WsClient::connect(&self.ws_options(&user.auth.token))
            .await
            .expect("ws connect")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `DIALTONE_TEST_LOG=<filter>` prints the servers' logs (e.g. `dialtone=debug`); a
/// [`LogCapture`] records them.
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_log_subscriber);
}

pub fn password(name: &str) -> String {
    format!("pw-{name}-12345")
}

/// A registered user with its device key and an authenticated client.
pub struct TestUser {
    pub auth: AuthResponse,
    pub keys: DeviceKeypair,
    pub rest: RestClient,
    pub name: String,
}

impl TestUser {
    pub fn id(&self) -> &str {
        &self.auth.user_id
    }

    pub fn device(&self) -> &str {
        &self.auth.device_id
    }

    pub fn token(&self) -> &str {
        &self.auth.token
    }
}

/// Assert an API error's status (and code).
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    r: Result<T, dialtone::client::ClientError>,
    status: u16,
) -> dialtone::client::ClientError {
    match r {
        Ok(v) => panic!("expected HTTP {status}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.status(), Some(status), "unexpected error: {e}");
            e
        }
    }
}

impl TestServer {
    /// Stop (if running), adjust the settings with `tweak`, and start again on the same database
    /// and data directory (new port) — e.g. with another `DIALTONE_CHANNEL_KEY` after a rekey.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut ServerSettings)) {
        self.stop().await.expect("clean shutdown");
        tweak(&mut self.settings);
        self.admin_token = self.settings.vars["DIALTONE_ADMIN_TOKEN"].clone();
        self.boot().await;
    }
}

/// hex HMAC-SHA256(pepper, username): the `users.username_hash` of dialtone v1 (SPEC §6), computed
/// independently of the server.
pub fn username_hash(pepper: &str, normalized_username: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(pepper.as_bytes()).expect("HMAC takes any key length");
    mac.update(normalized_username.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `<key id>` of a stored `enc:v1:<key id>:<b64>` value; `None` for anything else.
pub fn enc_key_id(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix("enc:v1:")?;
    let (id, body) = rest.split_once(':')?;
    (!id.is_empty() && !body.is_empty()).then_some(id)
}

/// Wait until the server has fully set up `ws`'s session (registered with the hub), by a round
/// trip: an unsupported frame type must come back as an `error` event.
pub async fn ws_ready(ws: &mut WsClient) {
    ws.send(&dialtone::protocol::ws::ClientFrame {
        kind: "test.ready.probe".into(),
        ..Default::default()
    })
    .await
    .expect("send probe");
    let e = ws
        .expect_event(dialtone::protocol::ws::event_type::ERROR, WAIT)
        .await
        .expect("probe answered");
    assert_eq!(e.code.as_deref(), Some("unsupported_type"), "{e:?}");
}

// ---- Helpers shared by the REST suites (rest_*, http_conventions) ----

/// Assert an API error's status and `code`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    r: Result<T, dialtone::client::ClientError>,
    status: u16,
    code: &str,
) -> dialtone::client::ClientError {
    let e = assert_status(r, status);
    assert_eq!(e.code(), Some(code), "unexpected error code: {e}");
    e
}

/// Send a raw request: the status and the body as JSON (`Null` when empty, a JSON string holding
/// the text when the body is not JSON).
pub async fn send_raw(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("response body");
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, body)
}

/// The keys of a JSON object, sorted (panics if `v` is not an object).
#[track_caller]
pub fn json_keys(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Assert that a JSON error body is exactly `{"error": <non-empty>, "code": <code>}`.
#[track_caller]
pub fn assert_error_body(body: &serde_json::Value, code: &str) {
    assert_eq!(json_keys(body), ["code", "error"], "error body: {body}");
    assert_eq!(body["code"], code, "error body: {body}");
    assert!(
        body["error"].as_str().is_some_and(|s| !s.is_empty()),
        "error message must be a non-empty string: {body}"
    );
}

/// Assert `s` is a UUID string (canonical hyphenated form).
#[track_caller]
pub fn assert_uuid(s: &str) {
    let parsed = uuid::Uuid::parse_str(s).unwrap_or_else(|e| panic!("{s:?} is not a UUID: {e}"));
    assert_eq!(
        parsed.hyphenated().to_string(),
        s.to_ascii_lowercase(),
        "{s:?} is not a hyphenated UUID"
    );
}

/// Assert `s` is an RFC 3339 UTC time ending in `Z`; returns it parsed.
#[track_caller]
pub fn assert_utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    assert!(s.ends_with('Z'), "{s:?} does not end in Z");
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert_eq!(t.offset().local_minus_utc(), 0, "{s:?} is not UTC");
    t.with_timezone(&chrono::Utc)
}

/// Poll `check` until it returns true; panic with `what` after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Read until the server closes the socket; returns the close code (`None`: the connection ended
/// without a close frame). Other events before the close are skipped. Panics after [`WAIT`].
pub async fn wait_closed(ws: &mut WsClient) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_within(left).await {
            Ok(Some(dialtone::client::Incoming::Closed { code, .. })) => return Some(code),
            Ok(Some(dialtone::client::Incoming::Event(_))) => continue,
            Ok(None) => return None,
            Err(dialtone::client::ClientError::Transport(_)) => return None,
            Err(e) => panic!("socket was not closed: {e}"),
        }
    }
}

/// Send `n` channel messages as `user` over one WebSocket (client_message_id `m0`, `m1`, …) and
/// wait for every echo; returns the echoes in arrival order.
pub async fn send_messages(
    server: &TestServer,
    user: &TestUser,
    channel_id: &str,
    n: usize,
) -> Vec<dialtone::protocol::ws::Event> {
    use dialtone::protocol::ws::{ClientFrame, event_type};
    let mut ws = server.ws(user).await;
    let mut echoes = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    for start in (0..n).step_by(100) {
        let end = (start + 100).min(n);
        for i in start..end {
            let body = base64::engine::general_purpose::STANDARD.encode(format!("message {i}"));
            ws.send(&ClientFrame::channel_message(
                channel_id,
                body,
                "bmFtZQ==",
                Some(format!("m{i}")),
            ))
            .await
            .expect("send channel message");
        }
        while echoes.len() < end {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match ws.next_within(left).await.expect("echo") {
                Some(dialtone::client::Incoming::Event(e))
                    if e.kind == event_type::CHANNEL_MESSAGE_NEW =>
                {
                    if e.channel_id.as_deref() == Some(channel_id) {
                        echoes.push(*e);
                    }
                }
                Some(dialtone::client::Incoming::Event(e)) if e.kind == event_type::ERROR => {
                    panic!("server refused a message: {e:?}")
                }
                Some(dialtone::client::Incoming::Event(_)) => {}
                other => panic!("socket ended while waiting for echoes: {other:?}"),
            }
        }
    }
    let _ = ws.close().await;
    echoes
}

/// Run the real `dialtone rekey` binary on a (stopped) server's database and data directory, with
/// the server's settings but `DIALTONE_CHANNEL_KEY = key` and `DIALTONE_CHANNEL_KEY_PREVIOUS =
/// previous`. Returns (exit code, stdout, stderr).
pub async fn run_rekey(
    server: &TestServer,
    key: &str,
    previous: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dialtone"));
    cmd.arg("rekey").env_clear();
    for (k, v) in &server.settings.vars {
        cmd.env(k, v);
    }
    cmd.env("DIALTONE_DB_URL", &server.db.url)
        .env("DIALTONE_DATA_DIR", &server.data_dir)
        .env("DIALTONE_CHANNEL_KEY", key)
        .env("RUST_LOG", "warn");
    match previous {
        Some(p) => cmd.env("DIALTONE_CHANNEL_KEY_PREVIOUS", p),
        None => cmd.env_remove("DIALTONE_CHANNEL_KEY_PREVIOUS"),
    };
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run dialtone rekey");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pretty-printed JSON report `dialtone rekey` prints on stdout (log lines may surround it).
pub fn rekey_report(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "{")
        .unwrap_or_else(|| panic!("no JSON report in: {stdout}"));
    let end = lines
        .iter()
        .rposition(|l| *l == "}")
        .unwrap_or_else(|| panic!("no JSON report in: {stdout}"));
    serde_json::from_str(&lines[start..=end].join("\n"))
        .unwrap_or_else(|e| panic!("bad report ({e}): {stdout}"))
}

/// One column's counts in a rekey report.
#[track_caller]
pub fn assert_rekey_counts(
    report: &serde_json::Value,
    column: &str,
    rewritten: u64,
    already_current: u64,
) {
    assert_eq!(
        report[column],
        serde_json::json!({"rewritten": rewritten, "already_current": already_current, "failed": 0}),
        "{column} in {report:#}"
    );
}

/// POST a JSON body with `rest`'s credentials; the exact status and the body as JSON (a non-JSON
/// body becomes a JSON string).
pub async fn post_json(
    rest: &RestClient,
    path: &str,
    body: &impl serde::Serialize,
) -> (u16, serde_json::Value) {
    let res = rest
        .request(reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("response body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

// ---- Capturing the servers' logs (e2e: no plaintext in the log) ----

/// Buffers that currently receive the servers' logs, see [`LogCapture`].
static LOG_CAPTURES: std::sync::Mutex<Vec<std::sync::Weak<std::sync::Mutex<Vec<u8>>>>> =
    std::sync::Mutex::new(Vec::new());
/// How many [`LogCapture`]s are live (the capture layer is idle at zero).
static LOG_CAPTURING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Records every `dialtone` log line at `debug` and above, from every thread, while alive.
///
/// A server's log comes from many threads (HTTP workers, the database actor's arbiter, the
/// channel arbiters), so a thread-local default subscriber would miss most of it: the process-wide
/// subscriber ([`install_log_subscriber`]) copies each line into every live capture. Servers of
/// tests running in parallel are recorded too — harmless for "this text never appears" checks.
pub struct LogCapture {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl LogCapture {
    pub fn start() -> Self {
        init_logging();
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        LOG_CAPTURES
            .lock()
            .unwrap()
            .push(std::sync::Arc::downgrade(&buf));
        LOG_CAPTURING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self { buf }
    }

    /// Everything recorded so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        LOG_CAPTURING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut all) = LOG_CAPTURES.lock() {
            all.retain(|w| {
                w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), std::sync::Arc::as_ptr(&self.buf))
            });
        }
    }
}

/// Writes one formatted line into every live capture.
struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(all) = LOG_CAPTURES.lock() {
            for buf in all.iter().filter_map(std::sync::Weak::upgrade) {
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(bytes);
                }
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One process-wide subscriber: prints per `DIALTONE_TEST_LOG`, and feeds [`LogCapture`]s.
fn install_log_subscriber() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let print = std::env::var("DIALTONE_TEST_LOG").ok().map(|filter| {
        tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(tracing_subscriber::EnvFilter::new(filter))
    });
    let capture = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| CaptureWriter)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            LOG_CAPTURING.load(std::sync::atomic::Ordering::Relaxed) > 0
                && meta.target().starts_with("dialtone")
                && *meta.level() <= tracing::Level::DEBUG
        }));
    let _ = tracing_subscriber::registry()
        .with(print)
        .with(capture)
        .try_init();
}
