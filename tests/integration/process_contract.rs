//! The `dialtone` binary's process contract: exit codes and messages of `serve` with a missing or
//! invalid secret, of `rekey` when stored values cannot be decrypted, of `migrate` and `invite`
//! when they cannot do their job, and concurrent `migrate` runs on one PostgreSQL database.

use futures_util::future::join_all;

use crate::certs::say_skipped;
use crate::procs::{self, base_env, new_key};
use crate::support::{Backend, TestDb, TestServer, backend, rekey_report, run_rekey};

/// Nothing listens on port 1: a command that gets as far as the database fails fast.
const UNREACHABLE_PG: &str = "postgres://postgres@127.0.0.1:1/dialtone_unreachable";

#[tokio::test]
async fn serve_with_a_postgres_url_refuses_a_missing_or_invalid_secret() {
    let data = tempfile::tempdir().unwrap();
    let short_key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([7u8; 16])
    };
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("DIALTONE_CHANNEL_KEY", None, "is required"),
        ("DIALTONE_USERNAME_PEPPER", None, "is required"),
        ("DIALTONE_ADMIN_TOKEN", None, "is required"),
        (
            "DIALTONE_CHANNEL_KEY",
            Some(&short_key),
            "must decode to exactly 32 bytes",
        ),
        (
            "DIALTONE_CHANNEL_KEY",
            Some("not base64 at all!"),
            "must be base64",
        ),
    ];
    for (var, value, reason) in cases {
        let mut env = base_env(UNREACHABLE_PG, data.path());
        match value {
            Some(v) => env.insert(var.to_owned(), v.to_owned()),
            None => env.remove(var),
        };
        let out = procs::serve(&env).await.exited();
        assert_eq!(out.code, 1, "{var}={value:?}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("dialtone: configuration error: {var}: {reason}")),
            "{var}={value:?}: stderr does not name the variable: {}",
            out.stderr
        );
    }
    // Nothing was generated in the data directory (no silent secrets with PostgreSQL).
    assert!(!data.path().join("secrets.env").exists());
}

#[tokio::test]
async fn rekey_exits_1_and_changes_nothing_when_stored_values_cannot_be_decrypted() {
    // A server under K1 writes encrypted rows (user names, device keys).
    let mut server = TestServer::start().await;
    server.user("alice").await;
    server.user("bob").await;
    server.stop().await.expect("clean shutdown");
    let before = server.db.dump().await;
    assert!(
        before.iter().any(|(_, _, v)| v.starts_with("enc:v1:")),
        "no encrypted values to test with"
    );

    // K2, and K1 not given as previous: nothing decrypts.
    let (code, stdout, stderr) = run_rekey(&server, &new_key(), None).await;
    assert_eq!(
        code, 1,
        "rekey with the wrong key succeeded\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("value(s) could not be decrypted"),
        "stderr does not say why: {stderr}"
    );
    let report = rekey_report(&stdout);
    assert_eq!(report["users_username"]["failed"], 2, "{report:#}");
    assert_eq!(report["devices_public_key"]["failed"], 2, "{report:#}");
    assert_eq!(report["users_username"]["rewritten"], 0, "{report:#}");
    assert_eq!(server.db.dump().await, before, "rekey changed stored data");
}

/// `migrate` and `invite` decrypt nothing (migrations are SQL; an invite is a random token stored
/// as a hash), so a wrong `DIALTONE_CHANNEL_KEY` cannot fail them. What they do have: they exit 1
/// with the reason when the database cannot be reached or the request is invalid.
#[tokio::test]
async fn migrate_and_invite_exit_1_when_the_database_is_unreachable() {
    let data = tempfile::tempdir().unwrap();
    let env = base_env(UNREACHABLE_PG, data.path());
    for args in [&["migrate"][..], &["invite"][..]] {
        let out = procs::run(args, &env).await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains("dialtone: applying database migrations: database unavailable"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.trim().is_empty(), "{args:?} printed: {out:?}");
    }
}

#[tokio::test]
async fn invite_exits_1_on_an_invalid_request_and_mints_nothing() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let env = base_env(&db.url, data.path());
    let out = procs::run(&["invite", "--max-uses", "0"], &env).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("max_uses must be between 1 and"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.trim().is_empty(), "a token was printed: {out:?}");
    assert_eq!(
        db.count("SELECT count(*) AS v FROM server_invites").await,
        0
    );

    // The same command with a valid request works (the refusal above is about the request).
    let out = procs::run(&["invite", "--max-uses", "2"], &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        db.count("SELECT count(*) AS v FROM server_invites").await,
        1
    );
}

#[tokio::test]
async fn concurrent_migrations_of_one_database_apply_each_version_once() {
    if backend() == Backend::Sqlite {
        say_skipped(
            "process_contract::concurrent_migrations_of_one_database_apply_each_version_once",
            "the migration advisory lock is PostgreSQL-only (DIALTONE_TEST_BACKEND=sqlite)",
        );
        return;
    }
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let env = base_env(&db.url, data.path());
    let runs = join_all((0..4).map(|_| procs::run(&["migrate"], &env))).await;
    for out in &runs {
        assert_eq!(out.code, 0, "a concurrent migrate failed: {out:?}");
    }
    let versions: Vec<String> = db
        .strings("SELECT version AS v FROM __diesel_schema_migrations ORDER BY version")
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut unique = versions.clone();
    unique.dedup();
    assert_eq!(unique, versions, "a version was recorded twice");
    let expected = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(versions.len(), expected, "{versions:?}");
    assert_eq!(db.count("SELECT count(*) AS v FROM users").await, 0);
}
