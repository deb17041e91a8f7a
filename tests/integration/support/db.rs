//! The per-test database: a fresh PostgreSQL database (or SQLite file) and SQL helpers to check it.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

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

    /// A PostgreSQL database the test set up elsewhere (e.g. on a private instance); this handle
    /// never drops it.
    pub fn existing_postgres(url: impl Into<String>) -> Self {
        TestDb {
            url: url.into(),
            backend: Backend::Postgres,
            pg_name: None,
            _dir: None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn sqlite_path(&self) -> String {
        self.url.trim_start_matches("sqlite://").to_owned()
    }

    /// A new connection of its own to this PostgreSQL database (its driver task runs on the
    /// current runtime; dropping the client closes it).
    pub(super) async fn pg_connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }

    /// Opens connections of their own to this SQLite file, from any thread.
    pub(super) fn sqlite_opener(&self) -> SqliteOpener {
        SqliteOpener(self.sqlite_path())
    }

    /// Run statements.
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                self.pg_connect().await.batch_execute(sql).await.unwrap();
            }
            Backend::Sqlite => {
                let db = self.sqlite_opener();
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    db.open().batch_execute(&sql).unwrap();
                })
                .await
                .unwrap();
            }
        }
    }

    /// A one-column query whose column is named `v`; every value as text (NULL → None).
    pub async fn strings(&self, sql: &str) -> Vec<Option<String>> {
        match self.backend {
            Backend::Postgres => self
                .pg_connect()
                .await
                .simple_query(sql)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                    _ => None,
                })
                .collect(),
            Backend::Sqlite => {
                #[derive(QueryableByName)]
                struct V {
                    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                    v: Option<String>,
                }
                let db = self.sqlite_opener();
                let sql = format!("SELECT CAST(v AS TEXT) AS v FROM ({sql})");
                tokio::task::spawn_blocking(move || {
                    let mut c = db.open();
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

    /// A count query's value. Panics when the query yields no number: a failed count must never
    /// pass for a small (or, cast to unsigned, a huge) one.
    pub async fn count(&self, sql: &str) -> i64 {
        let v = self.string(sql).await;
        v.as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("count query gave {v:?}, not a number: {sql}"))
    }

    /// How many messages of `channel_id` are stored.
    pub async fn messages_in(&self, channel_id: &str) -> i64 {
        assert!(
            channel_id
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-'),
            "the id is spliced into SQL"
        );
        self.count(&format!(
            "SELECT count(*) AS v FROM channel_messages WHERE channel_id = '{channel_id}'"
        ))
        .await
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

/// The path of a test SQLite file; [`SqliteOpener::open`] is blocking (call it off the runtime).
pub(super) struct SqliteOpener(String);

impl SqliteOpener {
    /// A connection that waits for locks as the server's do (same busy timeout).
    pub(super) fn open(&self) -> SqliteConnection {
        let mut c = SqliteConnection::establish(&self.0).expect("open the test SQLite file");
        c.batch_execute("PRAGMA busy_timeout = 10000;").unwrap();
        c
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
