//! Integration tests: the real server over TLS on a fresh database per test, driven through the
//! client library (black box) and checked with SQL.
//!
//! `cargo test` runs them on PostgreSQL (`DIALTONE_TEST_DB_URL`, default the local server);
//! `DIALTONE_TEST_BACKEND=sqlite cargo test` runs the same suite on the embedded store.

mod support;

mod smoke;
