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

pub fn backend() -> Backend {
    match std::env::var("DIALTONE_TEST_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        _ => Backend::Postgres,
    }
}

fn admin_url() -> String {
    std::env::var("DIALTONE_TEST_DB_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
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
                let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
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
                let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client
                    .simple_query(sql)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
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
        self.string(sql).await.and_then(|s| s.parse().ok()).unwrap_or(-1)
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
                    for c in self.strings(&format!("SELECT name AS v FROM pragma_table_info('{t}')")).await.into_iter().flatten() {
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
        if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await {
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
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(TestDb::drop_pg(name));
                }
            })
            .join();
        }
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
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
        let key = base64::engine::general_purpose::STANDARD.encode(dialtone::crypto::random_bytes(32));
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
        let fingerprint = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
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
        WsClient::connect(&self.ws_options(&user.auth.token)).await.expect("ws connect")
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
pub fn assert_status<T: std::fmt::Debug>(r: Result<T, dialtone::client::ClientError>, status: u16) -> dialtone::client::ClientError {
    match r {
        Ok(v) => panic!("expected HTTP {status}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.status(), Some(status), "unexpected error: {e}");
            e
        }
    }
}
