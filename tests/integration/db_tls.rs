//! Database TLS (PostgreSQL only): what `sslmode` and `sslrootcert` in `DIALTONE_DB_URL` promise
//! (README, src/db/tls.rs) — `require`, `verify-ca` and `verify-full` connect over TLS and always
//! verify the certificate and the host name — against a private PostgreSQL that accepts TCP only
//! over TLS (see `pg_tls.rs`).

use crate::pg_tls::{TlsPostgres, instance};
use crate::procs::{self, Outcome};
use crate::support::{TestDb, TestServer};

/// `dialtone migrate` with `DIALTONE_DB_URL = url`.
async fn migrate(url: &str) -> Outcome {
    let data = tempfile::tempdir().unwrap();
    procs::run(&["migrate"], &procs::base_env(url, data.path())).await
}

/// `dialtone migrate` on `url` failed with `needle` in its error, and left `db` empty.
async fn assert_refused(pg: &TlsPostgres, db: &str, url: &str, needle: &str) {
    let out = migrate(url).await;
    assert_eq!(out.code, 1, "{url} was accepted: {out:?}");
    assert!(
        out.stderr.contains(needle),
        "{url}: the error does not say {needle:?}: {}",
        out.stderr
    );
    let tables = pg
        .strings(
            db,
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .await;
    assert!(tables.is_empty(), "{url} created tables: {tables:?}");
}

async fn migration_versions(pg: &TlsPostgres, db: &str) -> Vec<String> {
    pg.strings(
        db,
        "SELECT version::text FROM __diesel_schema_migrations ORDER BY version",
    )
    .await
}

#[tokio::test]
async fn sslmode_require_with_the_ca_serves_over_tls() {
    let Some(pg) = instance("db_tls::sslmode_require_with_the_ca_serves_over_tls") else {
        return;
    };
    let db = pg.create_db().await;
    // The instance refuses plain text, so a server that works below talks TLS.
    assert_refused(
        pg,
        &db,
        &pg.url("localhost", &db, "sslmode=disable"),
        "no encryption",
    )
    .await;

    let url = pg.url(
        "localhost",
        &db,
        &format!("sslmode=require&sslrootcert={}", pg.ca.display()),
    );
    let server = TestServer::start_on(TestDb::existing_postgres(url), |_| {}).await;
    let alice = server.user("alice").await;
    alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let users = pg.strings(&db, "SELECT count(*)::text FROM users").await;
    assert_eq!(users, ["1"]);
    let (tls, plain) = pg.connections(&db).await;
    assert!(tls > 0, "the server holds no TLS connection");
    assert_eq!(plain, 0, "the server holds plain-text connections");
}

#[tokio::test]
async fn sslmode_require_still_verifies_the_certificate() {
    let Some(pg) = instance("db_tls::sslmode_require_still_verifies_the_certificate") else {
        return;
    };
    let db = pg.create_db().await;
    // Unlike libpq's `require`, dialtone never accepts an unverified certificate: without the
    // throwaway CA (not a system root) the connection is refused.
    assert_refused(
        pg,
        &db,
        &pg.url("localhost", &db, "sslmode=require"),
        "invalid peer certificate: UnknownIssuer",
    )
    .await;
}

#[tokio::test]
async fn verify_full_with_the_signing_ca_and_host_localhost_migrates() {
    let Some(pg) = instance("db_tls::verify_full_with_the_signing_ca_and_host_localhost_migrates")
    else {
        return;
    };
    let db = pg.create_db().await;
    for mode in ["verify-full", "verify-ca"] {
        let url = pg.url(
            "localhost",
            &db,
            &format!("sslmode={mode}&sslrootcert={}", pg.ca.display()),
        );
        let out = migrate(&url).await;
        assert_eq!(out.code, 0, "{mode}: {out:?}");
        assert!(out.stdout.contains("migrations applied"), "{out:?}");
    }
    let expected = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(migration_versions(pg, &db).await.len(), expected);
    let users = pg.strings(&db, "SELECT count(*)::text FROM users").await;
    assert_eq!(users, ["0"]);
}

/// `url` options `sslmode=<each mode>&sslrootcert=<ca>` on `host` are all refused with `needle`.
async fn assert_refused_in_every_mode(
    pg: &TlsPostgres,
    db: &str,
    host: &str,
    ca: &std::path::Path,
    needle: &str,
) {
    for mode in ["verify-full", "verify-ca", "require"] {
        let options = format!("sslmode={mode}&sslrootcert={}", ca.display());
        assert_refused(pg, db, &pg.url(host, db, &options), needle).await;
    }
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_name_is_refused() {
    let Some(pg) = instance("db_tls::a_host_name_the_certificate_does_not_name_is_refused") else {
        return;
    };
    let db = pg.create_db().await;
    // The certificate names only `localhost`; 127.0.0.1 reaches the same server. dialtone checks
    // the host name in every TLS mode (verify-ca included).
    assert_refused_in_every_mode(
        pg,
        &db,
        "127.0.0.1",
        &pg.ca,
        "certificate not valid for name \"127.0.0.1\"",
    )
    .await;
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_certificate_is_refused() {
    let Some(pg) = instance("db_tls::a_ca_that_did_not_sign_the_certificate_is_refused") else {
        return;
    };
    let db = pg.create_db().await;
    assert_refused_in_every_mode(
        pg,
        &db,
        "localhost",
        &pg.stranger_ca,
        "invalid peer certificate: UnknownIssuer",
    )
    .await;
}
