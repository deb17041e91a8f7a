//! Fault tools for the commit path, built from the database's own mechanisms (no product hooks),
//! the same on both backends:
//! - [`WriteGate`]: a separate connection holds the write lock on `channel_messages`, so the
//!   server's group commit blocks until the gate is released;
//! - [`install_commit_fault`]: a trigger makes inserts of marked bodies fail, so the commit errors;
//! - [`counter`]: a value of `GET /metrics`, to check the counters these paths move.
//!
//! The server waits behind a gate for `DIALTONE_DB_STATEMENT_TIMEOUT_MS` (10 s by default): on
//! PostgreSQL the statement timeout cancels the blocked `INSERT`, on SQLite `BEGIN IMMEDIATE`
//! gives up after the busy timeout; then the batch fails. Tests must release well within it, or
//! set it to test exactly that. `DIALTONE_DB_TIMEOUT_MS` does not bound a blocked statement: it
//! bounds waiting for a pooled connection, and (× 4) a caller's wait for the database actor.

use super::db::{Backend, TestDb};
use super::eventually;
use super::server::TestServer;

/// Holds the write lock on `channel_messages` from its own connection until [`release`]d (or
/// dropped). PostgreSQL: `LOCK TABLE … IN EXCLUSIVE MODE` (reads go on; every insert waits).
/// SQLite: `BEGIN IMMEDIATE` — the database has one writer, so every write of the server waits,
/// not only message inserts: set up users and channels before holding the gate.
///
/// [`release`]: WriteGate::release
pub struct WriteGate {
    /// The holding connection lives on a thread of its own, so the gate can be let go from
    /// `Drop` even while the test's runtime is blocked (e.g. in `TestServer::drop`, which waits
    /// for the server's drain — which waits for this gate).
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    backend: Backend,
}

impl WriteGate {
    /// Take the lock; returns once it is held.
    pub async fn hold(db: &TestDb) -> Self {
        Self::hold_with(
            db,
            "BEGIN; LOCK TABLE channel_messages IN EXCLUSIVE MODE".into(),
        )
        .await
    }

    /// PostgreSQL only: hold one channel's counter row, which the group commit locks before it
    /// numbers that channel's messages, so only a commit that includes the channel waits.
    pub async fn hold_channel(db: &TestDb, channel_id: &str) -> Self {
        Self::hold_row(db, "channels", channel_id).await
    }

    /// PostgreSQL only: hold one user's row as `db::users::lock` does, so logins, device
    /// additions and deletions of that user queue behind the gate.
    pub async fn hold_user(db: &TestDb, user_id: &str) -> Self {
        Self::hold_row(db, "users", user_id).await
    }

    /// The row `id` of `table`, locked `FOR NO KEY UPDATE` as the server's own row locks are.
    async fn hold_row(db: &TestDb, table: &str, id: &str) -> Self {
        assert_eq!(
            db.backend(),
            Backend::Postgres,
            "row locks are PostgreSQL's"
        );
        assert!(
            id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "the id is spliced into SQL"
        );
        let sql = format!("BEGIN; SELECT 1 FROM {table} WHERE id = '{id}' FOR NO KEY UPDATE");
        Self::hold_with(db, sql).await
    }

    /// Hold writes to one table (PostgreSQL: `EXCLUSIVE`, so plain reads still pass; SQLite: the
    /// database's one write lock, as [`WriteGate::hold`]).
    pub async fn hold_table(db: &TestDb, table: &str) -> Self {
        assert!(
            table.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "the name is spliced into SQL"
        );
        Self::hold_with(db, format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE")).await
    }

    async fn hold_with(db: &TestDb, sql: String) -> Self {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = match db.backend() {
            Backend::Postgres => {
                let db = TestDb::existing_postgres(db.url.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("gate runtime");
                    let client = rt.block_on(async {
                        let client = db.pg_connect().await;
                        client
                            .batch_execute(&sql)
                            .await
                            .expect("take the gate's lock");
                        client
                    });
                    let _ = held_tx.send(());
                    // A message or a dropped sender: either way, let go.
                    let _ = released.recv();
                    rt.block_on(async {
                        let _ = client.batch_execute("ROLLBACK").await;
                    });
                })
            }
            Backend::Sqlite => {
                let opener = db.sqlite_opener();
                std::thread::spawn(move || {
                    let mut c = opener.open();
                    diesel::connection::SimpleConnection::batch_execute(&mut c, "BEGIN IMMEDIATE")
                        .expect("take the SQLite write lock");
                    let _ = held_tx.send(());
                    let _ = released.recv();
                    let _ = diesel::connection::SimpleConnection::batch_execute(&mut c, "ROLLBACK");
                })
            }
        };
        held_rx.await.expect("the gate thread took the write lock");
        WriteGate {
            release: Some(release),
            thread: Some(thread),
            backend: db.backend(),
        }
    }

    /// On PostgreSQL, wait until a server statement is queued behind the gate (a commit has
    /// started and is blocked). SQLite shows no lock waiters to another connection: there this
    /// returns at once, and tests rely on their probe round trips instead.
    pub async fn wait_for_blocked_writer(&self, db: &TestDb) {
        self.wait_for_blocked_writers(db, 1).await;
    }

    /// [`wait_for_blocked_writer`](Self::wait_for_blocked_writer) for `n` server statements
    /// waiting on locks at once (behind the gate, or behind one another).
    pub async fn wait_for_blocked_writers(&self, db: &TestDb, n: i64) {
        if self.backend == Backend::Sqlite {
            return;
        }
        // Any lock wait in this test's database (a table or a row lock): only the server's
        // statements run there.
        eventually("server writes wait behind the gate", || async {
            db.count(
                "SELECT count(*) AS v FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await
                >= n
        })
        .await;
    }

    /// Let go of the lock; returns once it is released (blocked server writes proceed).
    pub async fn release(mut self) {
        let release = self.release.take();
        let thread = self.thread.take();
        tokio::task::spawn_blocking(move || let_go(release, thread))
            .await
            .unwrap();
    }
}

fn let_go(
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
) {
    if let Some(tx) = release {
        let _ = tx.send(());
    }
    if let Some(t) = thread
        && t.join().is_err()
        && !std::thread::panicking()
    {
        panic!("the write gate's thread panicked");
    }
}

impl Drop for WriteGate {
    fn drop(&mut self) {
        // A failing test drops the gate unreleased: let go before the server's own drop waits
        // for its drain (declare the gate after the server, so it drops first).
        let_go(self.release.take(), self.thread.take());
    }
}

/// The message the fault trigger raises; the server logs it inside its group-commit `ERROR`.
pub const COMMIT_FAULT: &str = "injected commit fault";

/// Make every insert into `channel_messages` whose body starts with `marker` fail (the whole
/// statement, hence the whole batch transaction, aborts). Installed while the server runs.
pub async fn install_commit_fault(db: &TestDb, marker: &str) {
    assert!(
        !marker.is_empty()
            && marker
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)),
        "the marker is spliced into SQL: base64 characters only"
    );
    let sql = match db.backend() {
        Backend::Postgres => format!(
            "CREATE FUNCTION dialtone_test_commit_fault() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF starts_with(NEW.body, '{marker}') THEN RAISE EXCEPTION '{COMMIT_FAULT}'; END IF; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER dialtone_test_commit_fault BEFORE INSERT ON channel_messages \
             FOR EACH ROW EXECUTE FUNCTION dialtone_test_commit_fault();"
        ),
        Backend::Sqlite => format!(
            "CREATE TRIGGER dialtone_test_commit_fault BEFORE INSERT ON channel_messages \
             WHEN substr(NEW.body, 1, {len}) = '{marker}' \
             BEGIN SELECT RAISE(ABORT, '{COMMIT_FAULT}'); END;",
            len = marker.len()
        ),
    };
    db.execute(&sql).await;
}

/// Remove the trigger of [`install_commit_fault`].
pub async fn remove_commit_fault(db: &TestDb) {
    let sql = match db.backend() {
        Backend::Postgres => {
            "DROP TRIGGER dialtone_test_commit_fault ON channel_messages; \
             DROP FUNCTION dialtone_test_commit_fault();"
        }
        Backend::Sqlite => "DROP TRIGGER dialtone_test_commit_fault;",
    };
    db.execute(sql).await;
}

/// One sample of the server's `GET /metrics` (admin token), e.g.
/// `dialtone_ws_errors_total{code="rate_limited"}`; 0 when the series does not exist yet.
pub async fn counter(server: &TestServer, series: &str) -> f64 {
    super::metrics::Scrape::of(server)
        .await
        .value(series)
        .unwrap_or(0.0)
}
