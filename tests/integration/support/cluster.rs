//! Several real nodes on one PostgreSQL database and one NATS: the cluster tests' fixture.
//!
//! NATS comes from `DIALTONE_TEST_NATS_URL` (default the machine's `nats://127.0.0.1:4222`).
//! When it does not answer, cluster tests say so and skip — unless `DIALTONE_TEST_REQUIRE_NATS`
//! is set (CI sets it), where a missing NATS fails them. Each cluster gets its own subject prefix,
//! so tests running at once never hear each other. [`NatsProcess`] is a private `nats-server` for
//! tests that restart it.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use super::asserts::skip;
use super::db::{Backend, TestDb, backend};
use super::server::{ServerSettings, TestServer};

/// The shared NATS, or `None` (after saying why) when cluster tests cannot run here.
pub fn shared_nats() -> Option<String> {
    if backend() != Backend::Postgres {
        skip("clustering needs PostgreSQL (the SQLite pass does not run cluster tests)");
        return None;
    }
    let url = std::env::var("DIALTONE_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let addr = url.trim_start_matches("nats://").to_owned();
    let up = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("DIALTONE_TEST_NATS_URL host:port"),
        Duration::from_secs(2),
    )
    .is_ok();
    if up {
        return Some(url);
    }
    if std::env::var_os("DIALTONE_TEST_REQUIRE_NATS").is_some() {
        panic!("NATS does not answer at {url}, and DIALTONE_TEST_REQUIRE_NATS is set");
    }
    skip(&format!(
        "no NATS at {url} (start `nats-server -a 127.0.0.1 -p 4222` or set DIALTONE_TEST_NATS_URL)"
    ));
    None
}

/// The variables that put a test server into the cluster `prefix` as `node`, with timers short
/// enough for tests (a gap is filled after 100 ms, a repair runs every 500 ms, a peer is dropped
/// after 3 × 200 ms of silence).
pub fn cluster_vars(s: &mut ServerSettings, nats: &str, prefix: &str, node: &str) {
    s.set("DIALTONE_NATS_URL", nats)
        .set("DIALTONE_NODE_ID", node)
        .set("DIALTONE_CLUSTER_SUBJECT_PREFIX", prefix)
        .set("DIALTONE_CLUSTER_GAP_HOLD_MS", "100")
        .set("DIALTONE_CLUSTER_REPAIR_MS", "500")
        .set("DIALTONE_CLUSTER_HEARTBEAT_MS", "200")
        .set("DIALTONE_CLUSTER_SESSION_CHECK_MS", "1000");
}

/// A fresh subject prefix for one test's cluster.
pub fn cluster_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Nodes sharing one database and one NATS.
pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    pub prefix: String,
    pub nats: String,
    /// Owns the database; dropped after every node (field order).
    pub db: TestDb,
}

impl TestCluster {
    /// `n` nodes on the shared NATS; `None` when cluster tests cannot run here.
    pub async fn start(n: usize) -> Option<Self> {
        let nats = shared_nats()?;
        Some(Self::start_on(n, &nats, |_, _| {}).await)
    }

    /// `n` nodes on `nats`, node `i`'s settings adjusted by `tweak(i, settings)`.
    pub async fn start_on(
        n: usize,
        nats: &str,
        tweak: impl Fn(usize, &mut ServerSettings),
    ) -> Self {
        let db = TestDb::create().await;
        let prefix = cluster_prefix();
        // Every node must hold the same at-rest key (and pepper and admin token, which are
        // fixed in the test settings): they read each other's rows.
        let key = crate::procs::new_key();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let node = TestServer::start_on(TestDb::existing_postgres(db.url.clone()), |s| {
                s.set("DIALTONE_CHANNEL_KEY", key.clone())
                    .set("DIALTONE_LIMIT_LOGIN_IP", "off")
                    .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "off")
                    .set("DIALTONE_LIMIT_REGISTER_IP", "off");
                cluster_vars(s, nats, &prefix, &format!("n{i}"));
                tweak(i, s);
            })
            .await;
            nodes.push(node);
        }
        Self {
            nodes,
            prefix,
            nats: nats.to_owned(),
            db,
        }
    }
}

/// A `nats-server` of the test's own, on a free loopback port, that the test may stop and start.
pub struct NatsProcess {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl NatsProcess {
    /// `None` (after saying why) when there is no `nats-server` binary.
    pub fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut p = Self { port, child: None };
        if !p.spawn() {
            if std::env::var_os("DIALTONE_TEST_REQUIRE_NATS").is_some() {
                panic!("nats-server is not installed, and DIALTONE_TEST_REQUIRE_NATS is set");
            }
            skip("nats-server is not installed (apt-get install nats-server)");
            return None;
        }
        Some(p)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> bool {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not start listening on port {}", self.port);
    }

    /// Kill it (SIGKILL): every client connection drops at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "nats-server restarts");
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
