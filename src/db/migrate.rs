//! Embedded migrations, applied at start (and by `dialtone migrate`).
//!
//! diesel's migration harness is synchronous. It runs on a dedicated thread with its own small
//! runtime, never on an actix (current-thread) runtime, where diesel-async's blocking wrapper
//! would deadlock. On PostgreSQL the run holds an advisory lock, so servers starting at once apply
//! each migration exactly once.

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::tls::PgTarget;
use super::{DbError, DbResult, SQLITE_PRAGMAS, locks};
use crate::config::DbUrl;

pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Apply every pending migration; returns the versions applied now.
pub async fn run(url: &DbUrl) -> DbResult<Vec<String>> {
    let url = url.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("dialtone-migrate".into())
        .spawn(move || {
            let _ = tx.send(run_blocking(&url));
        })
        .map_err(|e| DbError::Setup(format!("cannot start migration thread: {e}")))?;
    rx.await
        .map_err(|_| DbError::Setup("migration thread panicked".into()))?
}

fn run_blocking(url: &DbUrl) -> DbResult<Vec<String>> {
    match url {
        DbUrl::Postgres(url) => {
            let target = PgTarget::parse(url)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| DbError::Setup(e.to_string()))?;
            let conn = rt
                .block_on(target.connect())
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            let _entered = rt.enter();
            let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
            conn.batch_execute(&format!("SELECT pg_advisory_lock({})", locks::MIGRATIONS))?;
            let result = apply(&mut conn, POSTGRES);
            let unlock =
                conn.batch_execute(&format!("SELECT pg_advisory_unlock({})", locks::MIGRATIONS));
            let applied = result?;
            unlock?;
            Ok(applied)
        }
        DbUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbError::Setup(format!("cannot create {}: {e}", dir.display())))?;
            }
            let mut conn = SqliteConnection::establish(&path.display().to_string())
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            conn.batch_execute(SQLITE_PRAGMAS)?;
            apply(&mut conn, SQLITE)
        }
    }
}

fn apply<C>(conn: &mut C, migrations: EmbeddedMigrations) -> DbResult<Vec<String>>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| DbError::Setup(format!("migration failed: {e}")))
}
