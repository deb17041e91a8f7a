//! The per-test server: real TLS on port 0, its own actix System in its own thread, and the
//! clients and users tests drive it with.

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

use super::db::TestDb;
use super::incidents::take_incidents;
use super::logs::init_logging;

/// Settings of one test server.
#[derive(Clone)]
pub struct ServerSettings {
    pub vars: HashMap<String, String>,
    /// Cluster fault: commit channel messages but never publish them (a node that dies between
    /// commit and publish, as the peers see it). Not reachable from the environment.
    pub skip_message_publish: bool,
    /// Cluster fault: publish channel messages this long after their commit (a slow link).
    pub publish_delay: Option<Duration>,
    /// Cluster fault: apply notices locally but never publish them (the bus lost them all).
    pub skip_notice_publish: bool,
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
        Self {
            vars,
            skip_message_publish: false,
            publish_delay: None,
            skip_notice_publish: false,
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    /// Room for races on signing in: neither the per-account and per-address login buckets, the
    /// device-creation bucket nor the password queue refuse a burst of them (each of those has
    /// its own tests in `rate_limits` and `password_work`).
    pub fn sign_in_unthrottled(&mut self) -> &mut Self {
        self.set("DIALTONE_LIMIT_DEVICES", "1000/min")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "1000/min")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT_ALL", "1000/min")
            .set("DIALTONE_LIMIT_LOGIN_IP", "1000/min")
            .set("DIALTONE_PASSWORD_QUEUE", "64")
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
    /// The actix Systems this server has run as (one per boot): its incidents are theirs.
    systems: Vec<usize>,
    /// `ERROR` lines the test provokes on purpose (substrings).
    expected_errors: Vec<String>,
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
            systems: Vec::new(),
            expected_errors: Vec::new(),
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let mut config = Config::load(self.settings.vars.clone())
            .expect("test configuration")
            .config;
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.fault_skip_message_publish = self.settings.skip_message_publish;
            cluster.fault_publish_delay = self.settings.publish_delay;
            cluster.fault_skip_notice_publish = self.settings.skip_notice_publish;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let system = actix_web::rt::System::current().id();
                let running = match dialtone::server::start(config, listener).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send((system, Err(format!("{e:#}"))));
                        return Err(e);
                    }
                };
                let fingerprint = running.tls_fingerprint.clone().unwrap_or_default();
                let _ = ready_tx.send((system, Ok(fingerprint)));
                running
                    .serve_until(async {
                        let _ = stop_rx.await;
                    })
                    .await
            })
        });
        let (system, started) =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap()
                .expect("server did not start in time");
        self.systems.push(system);
        let fingerprint = started.unwrap_or_else(|e| panic!("server failed to start: {e}"));
        self.base_url = format!("https://localhost:{port}");
        self.fingerprint = fingerprint;
        self.shutdown = Some(stop_tx);
        self.thread = Some(thread);
    }

    /// Declare an `ERROR` log line this test provokes on purpose (matched as a substring of the
    /// target, message and fields); any other `ERROR` of this server fails the test.
    pub fn expect_error(&mut self, pattern: &str) -> &mut Self {
        self.expected_errors.push(pattern.to_owned());
        self
    }

    /// Graceful shutdown; returns the server's result. Panics (fails the test) if a server thread
    /// panicked or logged an `ERROR` the test did not declare.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match self.thread.take() {
            Some(t) => tokio::task::spawn_blocking(move || t.join())
                .await
                .unwrap()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("server thread panicked"))),
            None => Ok(()),
        };
        self.check_incidents();
        result
    }

    /// Fail on this server's panics and undeclared `ERROR`s so far.
    #[track_caller]
    pub fn check_incidents(&self) {
        let unexpected: Vec<String> = take_incidents(&self.systems)
            .into_iter()
            .filter(|i| i.panic || !self.expected_errors.iter().any(|p| i.text.contains(p)))
            .map(|i| i.text)
            .collect();
        if !unexpected.is_empty() && !std::thread::panicking() {
            panic!(
                "the server logged errors or panicked (declare provoked ERRORs with \
                 TestServer::expect_error):\n{}",
                unexpected.join("\n")
            );
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
    /// A raw TLS connection to this server (no HTTP client), for tests that write bytes by hand.
    pub async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let port: u16 = self.base_url.rsplit(':').next().unwrap().parse().unwrap();
        let config = dialtone::client::tls::client_config(&self.trust()).unwrap();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap()
    }

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
        let ended = self.thread.take().map(|t| t.join());
        if std::thread::panicking() {
            return;
        }
        match ended {
            Some(Ok(Err(e))) => panic!("the server ended with an error: {e:#}"),
            Some(Err(_)) => panic!("the server thread panicked"),
            _ => {}
        }
        self.check_incidents();
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
