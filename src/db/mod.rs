//! Storage: the only module that speaks SQL.
//!
//! One logical schema ([`schema`]) on two backends: PostgreSQL (diesel-async, deadpool, optional
//! TLS) and the embedded SQLite store (diesel's SQLite through `SyncConnectionWrapper`). Every query
//! is written once and compiled per backend by [`dispatch!`]; the few statements that differ
//! (advisory locks) sit in explicit `match` arms on [`Db`]. Cross-backend column types live in
//! [`types`]. Migrations are diesel-CLI compatible, embedded, and applied at start ([`migrate`]).

pub mod broadcasts;
pub mod channels;
pub mod device_lists;
pub mod devices;
pub mod invites;
pub mod keys;
pub mod members;
pub mod messages;
pub mod migrate;
pub mod models;
pub mod profiles;
pub mod schema;
pub mod sessions;
pub mod tls;
pub mod types;
pub mod users;

use deadpool::Runtime;
use diesel::ConnectionError;
use diesel::SqliteConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::config::{DbConfig, DbUrl};

/// The SQLite connection type behind the async interface.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// Storage errors. Display text may contain SQL error details: it goes to logs, never to clients.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached (pool timeout, connect failure, closed connection).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("query failed: {0}")]
    Query(DieselError),
    #[error("database setup failed: {0}")]
    Setup(String),
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => DbError::Unavailable(e.to_string()),
            DieselError::DatabaseError(_, info) if is_transient(info.message()) => {
                DbError::Unavailable(e.to_string())
            }
            _ => DbError::Query(e),
        }
    }
}

/// Failures that say nothing about the statement itself: the database was too slow or too busy
/// (a timeout fired, a lock could not be had) or out of a resource (PostgreSQL's class 53: disk,
/// memory, connections; SQLite's full disk). Such an error fails a group commit as a whole
/// instead of sending it row by row in search of an offending row that does not exist. diesel
/// exposes no SQLSTATE, so this reads the server's message, which PostgreSQL sends in English
/// unless `lc_messages` says otherwise.
fn is_transient(message: &str) -> bool {
    const TRANSIENT: [&str; 11] = [
        "canceling statement due to",
        "lock timeout",
        "deadlock detected",
        "terminating connection",
        "database is locked",
        "No space left on device",
        "could not extend file",
        "out of memory",
        "too many clients",
        "remaining connection slots are reserved",
        "database or disk is full",
    ];
    TRANSIENT.iter().any(|t| message.contains(t))
}

/// How [`Pool::get`]'s failures begin: no connection was had, so nothing was sent.
const NO_CONNECTION: &str = "no connection";

impl DbError {
    /// Whether a transaction that failed with this error certainly did not commit: no connection
    /// was had, or the database answered with an error (a refusal, a cancelled statement, a
    /// deadlock, a full disk). `false` when no answer came (a timeout of the caller's, a
    /// connection lost or terminated mid-transaction): it may have committed after `COMMIT` was
    /// sent.
    pub fn certainly_rolled_back(&self) -> bool {
        match self {
            DbError::Unavailable(m) => {
                m.starts_with(NO_CONNECTION)
                    || (is_transient(m) && !m.contains("terminating connection"))
            }
            DbError::Query(_) | DbError::Setup(_) => true,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Which backend a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A connection pool on either backend.
#[derive(Clone)]
pub enum Pool {
    Postgres(DeadPool<AsyncPgConnection>),
    Sqlite(DeadPool<SqliteConn>),
}

/// A pooled connection, returned to the pool on drop.
// Lives for one operation inside its future; boxing would cost an allocation per checkout.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Postgres(Object<AsyncPgConnection>),
    Sqlite(Object<SqliteConn>),
}

/// A borrowed connection (pooled or inside a transaction): what every query function takes.
pub enum Db<'c> {
    Postgres(&'c mut AsyncPgConnection),
    Sqlite(&'c mut SqliteConn),
}

/// Run one query body against whichever backend `$db` is; the body is compiled once per backend.
///
/// ```ignore
/// dispatch!(db, |c| users::table.find(id).first::<UserRow>(c).await.optional())
/// ```
#[macro_export]
macro_rules! dispatch {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($c) => {
                let $c: &mut ::diesel_async::AsyncPgConnection = &mut **$c;
                $body
            }
            $crate::db::Db::Sqlite($c) => {
                let $c: &mut $crate::db::SqliteConn = &mut **$c;
                $body
            }
        }
    };
}

impl Db<'_> {
    /// Serialize this transaction against every other holder of `key` until it ends.
    ///
    /// PostgreSQL takes a transaction-scoped advisory lock; SQLite write transactions are already
    /// exclusive (`BEGIN IMMEDIATE`), so nothing is needed there.
    pub async fn lock_exclusive(&mut self, key: i64) -> DbResult<()> {
        match self {
            Db::Postgres(c) => {
                c.batch_execute(&format!("SELECT pg_advisory_xact_lock({key})"))
                    .await?;
            }
            Db::Sqlite(_) => {}
        }
        Ok(())
    }
}

/// Advisory lock keys (arbitrary constants, fixed forever).
pub mod locks {
    /// Held while migrations run, so two servers starting at once do not race.
    pub const MIGRATIONS: i64 = 0x6469_616c_746f_6e01;
    /// Held by registrations: the first user becomes admin exactly once; invite uses are counted
    /// exactly.
    pub const REGISTRATION: i64 = 0x6469_616c_746f_6e02;
    /// Held while an admin is demoted or disabled: two admins demoting each other at once must
    /// leave one admin, so the "another admin remains" check and the change are one step.
    pub const ADMINS: i64 = 0x6469_616c_746f_6e03;
}

impl Conn {
    pub fn db(&mut self) -> Db<'_> {
        match self {
            Conn::Postgres(c) => Db::Postgres(c),
            Conn::Sqlite(c) => Db::Sqlite(c),
        }
    }

    /// Run `f` in a write transaction. It answers `Ok(Ok(r))` to commit, `Ok(Err(refusal))` to
    /// decline — rolled back like an error, then handed back as `Ok(Err(refusal))` — or `Err` on a
    /// database error (rolled back). A refusal after some writes therefore leaves nothing behind.
    ///
    /// SQLite uses `BEGIN IMMEDIATE` so concurrent writers queue on the busy timeout instead of
    /// failing on a lock upgrade.
    pub async fn transaction<R, E, F>(&mut self, f: F) -> DbResult<Result<R, E>>
    where
        R: Send + 'static,
        E: Send + 'static,
        F: for<'c> FnOnce(Db<'c>) -> BoxFuture<'c, DbResult<Result<R, E>>> + Send + 'static,
    {
        let outcome = match self {
            Conn::Postgres(c) => {
                let c: &mut AsyncPgConnection = c;
                c.transaction(async move |c| TxFail::split(f(Db::Postgres(c)).await))
                    .await
            }
            Conn::Sqlite(c) => {
                let c: &mut SqliteConn = c;
                c.immediate_transaction(async move |c| TxFail::split(f(Db::Sqlite(c)).await))
                    .await
            }
        };
        match outcome {
            Ok(r) => Ok(Ok(r)),
            Err(TxFail::Refused(e)) => Ok(Err(e)),
            Err(TxFail::Db(e)) => Err(e),
        }
    }
}

/// Why a transaction closure did not commit: both roll back.
enum TxFail<E> {
    Db(DbError),
    Refused(E),
}

impl<E> TxFail<E> {
    fn split<R>(r: DbResult<Result<R, E>>) -> Result<R, TxFail<E>> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(TxFail::Refused(e)),
            Err(e) => Err(TxFail::Db(e)),
        }
    }
}

impl<E> From<DieselError> for TxFail<E> {
    fn from(e: DieselError) -> Self {
        TxFail::Db(e.into())
    }
}

impl Pool {
    /// Build the pool for `config.url`. Connections open lazily; use [`Pool::ping`] to check.
    pub fn new(config: &DbConfig) -> DbResult<Self> {
        Self::with_max(config, config.pool_size)
    }

    /// A pool for the group commit alone (one connection per commit lane), so that commits never
    /// wait behind requests for a connection.
    pub fn dedicated(config: &DbConfig, connections: usize) -> DbResult<Self> {
        Self::with_max(config, connections)
    }

    fn with_max(config: &DbConfig, max_size: usize) -> DbResult<Self> {
        match &config.url {
            DbUrl::Postgres(url) => {
                let target = tls::PgTarget::parse(url)?.with_limits(tls::PgLimits {
                    connect_timeout: config.timeout,
                    statement_timeout: Some(config.statement_timeout),
                });
                let mut mgr_config = ManagerConfig::<AsyncPgConnection>::default();
                // A connection that died while idle in the pool (database restarted, network cut)
                // is found on checkout and replaced, instead of failing the request that got it.
                mgr_config.recycling_method = RecyclingMethod::Verified;
                let setup_target = target.clone();
                mgr_config.custom_setup = Box::new(move |_url| {
                    let target = setup_target.clone();
                    async move { target.connect().await }.boxed()
                });
                let mgr = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                    target.url_for_driver(),
                    mgr_config,
                );
                let pool = DeadPool::builder(mgr)
                    .max_size(max_size)
                    .runtime(Runtime::Tokio1)
                    .wait_timeout(Some(config.timeout))
                    .create_timeout(Some(config.timeout))
                    .recycle_timeout(Some(config.timeout))
                    .build()
                    .map_err(|e| DbError::Setup(e.to_string()))?;
                Ok(Pool::Postgres(pool))
            }
            DbUrl::Sqlite(path) => {
                let path = path.display().to_string();
                let mut mgr_config = ManagerConfig::<SqliteConn>::default();
                mgr_config.recycling_method = RecyclingMethod::Fast;
                let busy = config.statement_timeout;
                mgr_config.custom_setup = Box::new(move |url| {
                    let url = url.to_owned();
                    async move { open_sqlite(&url, busy).await }.boxed()
                });
                let mgr =
                    AsyncDieselConnectionManager::<SqliteConn>::new_with_config(path, mgr_config);
                let pool = DeadPool::builder(mgr)
                    // SQLite has one writer at a time; a few connections serve concurrent reads.
                    .max_size(max_size.min(8))
                    .runtime(Runtime::Tokio1)
                    .wait_timeout(Some(config.timeout))
                    .create_timeout(Some(config.timeout))
                    .recycle_timeout(Some(config.timeout))
                    .build()
                    .map_err(|e| DbError::Setup(e.to_string()))?;
                Ok(Pool::Sqlite(pool))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Check out a connection, waiting at most the configured timeout.
    pub async fn get(&self) -> DbResult<Conn> {
        match self {
            Pool::Postgres(p) => p.get().await.map(Conn::Postgres),
            Pool::Sqlite(p) => p.get().await.map(Conn::Sqlite),
        }
        .map_err(|e| DbError::Unavailable(format!("{NO_CONNECTION}: {e}")))
    }

    /// `SELECT 1`: does the database answer?
    pub async fn ping(&self) -> DbResult<()> {
        let mut conn = self.get().await?;
        match conn.db() {
            Db::Postgres(c) => c.batch_execute("SELECT 1").await?,
            Db::Sqlite(c) => c.batch_execute("SELECT 1").await?,
        }
        Ok(())
    }

    /// (in use, idle) connection counts, for metrics.
    pub fn status(&self) -> (usize, usize) {
        let s = match self {
            Pool::Postgres(p) => p.status(),
            Pool::Sqlite(p) => p.status(),
        };
        (s.size.saturating_sub(s.available), s.available)
    }
}

/// SQLite pragmas applied to every connection: WAL for concurrent readers, enforced foreign keys,
/// and a busy timeout so writers queue instead of failing.
/// The busy timeout comes first: switching to WAL needs a lock another process may hold briefly.
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON;";

/// Open a pooled SQLite connection whose writers wait at most `busy` for the write lock (the
/// statement timeout's SQLite counterpart) instead of the migration default.
async fn open_sqlite(
    path: &str,
    busy: std::time::Duration,
) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(path).await?;
    conn.batch_execute(SQLITE_PRAGMAS)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    conn.batch_execute(&format!("PRAGMA busy_timeout = {}", busy.as_millis()))
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::{DbError, NO_CONNECTION, is_transient};

    #[test]
    fn resource_exhaustion_is_transient_and_a_bad_row_is_not() {
        for m in [
            "could not extend file \"base/16384/16500\": No space left on device",
            "out of memory",
            "sorry, too many clients already",
            "database or disk is full",
            "canceling statement due to statement timeout",
        ] {
            assert!(is_transient(m), "{m}");
        }
        for m in [
            "invalid byte sequence for encoding \"UTF8\": 0x00",
            "duplicate key value violates unique constraint \"channel_messages_pkey\"",
        ] {
            assert!(!is_transient(m), "{m}");
        }
    }

    #[test]
    fn only_a_failure_without_an_answer_may_have_committed() {
        let unavailable = |m: &str| DbError::Unavailable(m.to_owned());
        for settled in [
            unavailable(&format!(
                "{NO_CONNECTION}: Timeout occurred while creating a new object"
            )),
            unavailable("canceling statement due to statement timeout"),
            unavailable("deadlock detected"),
        ] {
            assert!(settled.certainly_rolled_back(), "{settled}");
        }
        for open in [
            unavailable("group commit took longer than 1000 ms"),
            unavailable("connection closed"),
            unavailable("terminating connection due to administrator command"),
        ] {
            assert!(!open.certainly_rolled_back(), "{open}");
        }
    }
}
