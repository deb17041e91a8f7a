//! Clustering (`DIALTONE_NATS_*`, `DIALTONE_NODE_ID`, `DIALTONE_CLUSTER_*`): parsed only when
//! `DIALTONE_NATS_URL` is set. Without it the server is one process with no bus, as in v1.

use std::path::PathBuf;
use std::time::Duration;

use super::vars::Vars;
use super::{ConfigError, Secret};

/// How the node authenticates to NATS (at most one).
#[derive(Debug, Clone)]
pub enum NatsAuth {
    None,
    /// A `.creds` file (JWT and nkey seed), `DIALTONE_NATS_CREDS`.
    CredsFile(PathBuf),
    /// `DIALTONE_NATS_TOKEN`.
    Token(Secret<String>),
    /// `DIALTONE_NATS_USER` and `DIALTONE_NATS_PASSWORD`.
    UserPassword(String, Secret<String>),
    /// An nkey seed, `DIALTONE_NATS_NKEY_SEED`.
    Nkey(Secret<String>),
}

/// The cluster: where NATS is, who this node is, and the repair timers.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// One or more NATS server URLs, comma-separated (`nats://`, `tls://`).
    pub nats_url: String,
    pub auth: NatsAuth,
    /// PEM CA bundle trusted for the NATS servers' certificates (`DIALTONE_NATS_TLS_CA`).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for NATS mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Refuse a NATS connection without TLS (`DIALTONE_NATS_TLS_REQUIRED`; implied by a CA or a
    /// client certificate).
    pub tls_required: bool,
    /// This node's name on the bus and in logs; unique per process (default: random).
    pub node_id: String,
    /// Subjects are `<prefix>.ch.<channel>`, `<prefix>.ev` and `<prefix>.presence`; nodes that
    /// share a prefix form one cluster.
    pub subject_prefix: String,
    /// How long a message that arrived after a gap waits for the missing ones before the gap is
    /// filled from the database.
    pub gap_hold: Duration,
    /// How often every channel's last committed `seq` is compared with what this node delivered.
    pub repair_every: Duration,
    /// How often this node announces its online users; a peer silent for three of these is
    /// dropped from presence.
    pub heartbeat: Duration,
    /// How often this node re-checks its sockets' login sessions against the database.
    pub session_check_every: Duration,
    /// Bus messages waiting to be handed to NATS; beyond it they are dropped (and repaired).
    pub publish_queue: usize,
    /// Inbound bus messages buffered before NATS starts dropping them (a gap, repaired).
    pub inbound_capacity: usize,
    /// Test hook, never read from the environment: commit channel messages but do not publish
    /// them, as a node that crashed between commit and publish.
    pub fault_skip_message_publish: bool,
    /// Test hook, never read from the environment: publish channel messages this much later
    /// than their commit (a slow link), so peers see them after their own later commits.
    pub fault_publish_delay: Option<Duration>,
    /// Test hook, never read from the environment: apply notices (channel changes, revocations)
    /// locally but do not publish them, as if the bus lost every one.
    pub fault_skip_notice_publish: bool,
}

impl ClusterConfig {
    /// `None` when `DIALTONE_NATS_URL` is unset: no clustering.
    pub(super) fn parse(env: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.get("DIALTONE_NATS_URL").map(str::trim) else {
            for var in [
                "DIALTONE_NATS_CREDS",
                "DIALTONE_NATS_TOKEN",
                "DIALTONE_NATS_USER",
                "DIALTONE_NATS_NKEY_SEED",
                "DIALTONE_NATS_TLS_CA",
            ] {
                if env.get(var).is_some() {
                    return Err(ConfigError::new(
                        var,
                        "is set but DIALTONE_NATS_URL is not; clustering needs the NATS URL",
                    ));
                }
            }
            return Ok(None);
        };
        for part in url.split(',').map(str::trim) {
            let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|s| part.starts_with(s));
            if part.is_empty() || !scheme_ok {
                return Err(ConfigError::new(
                    "DIALTONE_NATS_URL",
                    format!(
                        "`{part}` is not a NATS URL like nats://127.0.0.1:4222 or tls://nats.internal:4222"
                    ),
                ));
            }
        }
        let auth = parse_auth(env)?;
        let tls_ca = env.get("DIALTONE_NATS_TLS_CA").map(PathBuf::from);
        let tls_client = match (
            env.get("DIALTONE_NATS_TLS_CERT"),
            env.get("DIALTONE_NATS_TLS_KEY"),
        ) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "DIALTONE_NATS_TLS_KEY",
                    "must be set together with DIALTONE_NATS_TLS_CERT",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "DIALTONE_NATS_TLS_CERT",
                    "must be set together with DIALTONE_NATS_TLS_KEY",
                ));
            }
        };
        let tls_required = env.flag("DIALTONE_NATS_TLS_REQUIRED")?
            || tls_ca.is_some()
            || tls_client.is_some()
            || url.starts_with("tls://");
        let node_id = match env.get("DIALTONE_NODE_ID").map(str::trim) {
            Some(id) => token("DIALTONE_NODE_ID", id)?,
            None => format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        let subject_prefix = token(
            "DIALTONE_CLUSTER_SUBJECT_PREFIX",
            env.get("DIALTONE_CLUSTER_SUBJECT_PREFIX")
                .unwrap_or("dialtone")
                .trim(),
        )?;
        let ms = |key, default, min, max| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(env.num(key, default, min, max)?))
        };
        Ok(Some(ClusterConfig {
            nats_url: url.to_owned(),
            auth,
            tls_ca,
            tls_client,
            tls_required,
            node_id,
            subject_prefix,
            gap_hold: ms("DIALTONE_CLUSTER_GAP_HOLD_MS", 200, 10, 60_000)?,
            repair_every: ms("DIALTONE_CLUSTER_REPAIR_MS", 5_000, 100, 3_600_000)?,
            heartbeat: ms("DIALTONE_CLUSTER_HEARTBEAT_MS", 2_000, 100, 600_000)?,
            session_check_every: ms("DIALTONE_CLUSTER_SESSION_CHECK_MS", 30_000, 100, 3_600_000)?,
            publish_queue: env.num("DIALTONE_CLUSTER_PUBLISH_QUEUE", 65_536, 16, 1 << 24)?,
            inbound_capacity: env.num("DIALTONE_CLUSTER_INBOUND_CAPACITY", 65_536, 16, 1 << 24)?,
            fault_skip_message_publish: false,
            fault_publish_delay: None,
            fault_skip_notice_publish: false,
        }))
    }
}

fn parse_auth(env: &Vars) -> Result<NatsAuth, ConfigError> {
    let creds = env.get("DIALTONE_NATS_CREDS");
    let token = env.get("DIALTONE_NATS_TOKEN");
    let user = env.get("DIALTONE_NATS_USER");
    let seed = env.get("DIALTONE_NATS_NKEY_SEED");
    let given = [
        creds.is_some(),
        token.is_some(),
        user.is_some(),
        seed.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ConfigError::new(
            "DIALTONE_NATS_CREDS",
            "set only one of DIALTONE_NATS_CREDS, DIALTONE_NATS_TOKEN, DIALTONE_NATS_USER or DIALTONE_NATS_NKEY_SEED",
        ));
    }
    Ok(if let Some(path) = creds {
        NatsAuth::CredsFile(PathBuf::from(path))
    } else if let Some(t) = token {
        NatsAuth::Token(Secret::new(t.to_owned()))
    } else if let Some(u) = user {
        let password = env.get("DIALTONE_NATS_PASSWORD").ok_or_else(|| {
            ConfigError::new(
                "DIALTONE_NATS_PASSWORD",
                "must be set together with DIALTONE_NATS_USER",
            )
        })?;
        NatsAuth::UserPassword(u.to_owned(), Secret::new(password.to_owned()))
    } else if let Some(s) = seed {
        NatsAuth::Nkey(Secret::new(s.to_owned()))
    } else {
        NatsAuth::None
    })
}

/// One NATS subject token: letters, digits, `-` and `_` (no `.`, `*`, `>` or spaces).
fn token(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::new(
            var,
            format!("`{value}` must be 1-64 letters, digits, `-` or `_`"),
        ))
    }
}
