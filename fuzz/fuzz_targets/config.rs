//! The configuration parser: `Config::load` on arbitrary variable maps, biased towards the real
//! variable names. `DIALTONE_DATA_DIR` is pinned to a scratch directory (a generated first-run
//! `secrets.env` lands there). Run it without a network (`unshare -n`): listen addresses may name
//! hosts, and resolving them must not leave the machine.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use dialtone::config::Config;
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "DIALTONE_ADMIN_TOKEN",
    "DIALTONE_CHANNEL_ARBITERS",
    "DIALTONE_CHANNEL_KEY",
    "DIALTONE_CHANNEL_KEY_PREVIOUS",
    "DIALTONE_CHANNEL_MAILBOX",
    "DIALTONE_DB_BATCH_MAX",
    "DIALTONE_DB_MAILBOX",
    "DIALTONE_DB_MAX_INFLIGHT",
    "DIALTONE_DB_MAX_PENDING",
    "DIALTONE_DB_POOL_SIZE",
    "DIALTONE_DB_STATEMENT_TIMEOUT_MS",
    "DIALTONE_DB_TIMEOUT_MS",
    "DIALTONE_DB_URL",
    "DIALTONE_HUB_MAILBOX",
    "DIALTONE_INSECURE_HTTP",
    "DIALTONE_INVITE_TTL_SECS",
    "DIALTONE_LIMIT_DEVICES",
    "DIALTONE_LIMIT_ENVELOPES",
    "DIALTONE_LIMIT_HISTORY",
    "DIALTONE_LIMIT_LOGIN_ACCOUNT",
    "DIALTONE_LIMIT_LOGIN_IP",
    "DIALTONE_LIMIT_PROFILES",
    "DIALTONE_LIMIT_REGISTER_ACCOUNT",
    "DIALTONE_LIMIT_REGISTER_IP",
    "DIALTONE_LIMIT_SUBSCRIBE",
    "DIALTONE_LIMIT_USER_BYTES",
    "DIALTONE_LIMIT_USER_MESSAGES",
    "DIALTONE_LIMIT_WS_UPGRADE_IP",
    "DIALTONE_LISTEN_ADDR",
    "DIALTONE_MAX_CONNECTIONS",
    "DIALTONE_MAX_DEVICES_PER_USER",
    "DIALTONE_MAX_ENVELOPES_PER_REQUEST",
    "DIALTONE_MAX_QUEUED_SYNCS",
    "DIALTONE_MAX_SESSIONS_PER_USER",
    "DIALTONE_MAX_SOCKETS_PER_USER",
    "DIALTONE_METRICS_ADDR",
    "DIALTONE_METRICS_PUBLIC",
    "DIALTONE_NATS_CREDS",
    "DIALTONE_NATS_NKEY_SEED",
    "DIALTONE_NATS_PASSWORD",
    "DIALTONE_NATS_TLS_CA",
    "DIALTONE_NATS_TLS_CERT",
    "DIALTONE_NATS_TLS_KEY",
    "DIALTONE_NATS_TLS_REQUIRED",
    "DIALTONE_NATS_TOKEN",
    "DIALTONE_NATS_URL",
    "DIALTONE_NATS_USER",
    "DIALTONE_NODE_ID",
    "DIALTONE_PASSWORD_QUEUE",
    "DIALTONE_PASSWORD_WORKERS",
    "DIALTONE_SESSION_TTL_SECS",
    "DIALTONE_SHUTDOWN_TIMEOUT_SECS",
    "DIALTONE_TLS_CERT",
    "DIALTONE_TLS_KEY",
    "DIALTONE_TRUSTED_PROXIES",
    "DIALTONE_USERNAME_PEPPER",
    "DIALTONE_WORKERS",
    "DIALTONE_WS_CLOSE_TIMEOUT_SECS",
    "DIALTONE_WS_IDLE_SECS",
    "DIALTONE_WS_MAILBOX",
    "DIALTONE_WS_MAX_FRAME",
    "DIALTONE_WS_MAX_SESSIONS",
    "DIALTONE_WS_OUTBOX_BYTES",
    "DIALTONE_WS_OUTBOX_GRACE_MS",
    "DIALTONE_WS_OUTBOX_HARD_BYTES",
    "DIALTONE_WS_PING_SECS",
    "DIALTONE_WS_SEND_BURST",
    "DIALTONE_WS_SEND_RATE",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Other(String),
}

fn dir() -> String {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
        .display()
        .to_string()
}

fuzz_target!(|vars: Vec<(Name, String)>| {
    let mut map: HashMap<String, String> = vars
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Known(i) => NAMES[usize::from(i) % NAMES.len()].to_owned(),
                Name::Other(s) => s,
            };
            (name, value)
        })
        .collect();
    map.insert("DIALTONE_DATA_DIR".into(), dir());
    let _ = Config::load(map);
});
