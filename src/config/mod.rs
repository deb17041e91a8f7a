//! Typed configuration, parsed once from the environment at start and passed down.
//!
//! Every variable is documented in `.env.example` and the README. Parsing never panics: a bad value
//! is a [`ConfigError`] whose message names the variable. Nothing below this module reads the
//! environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod cluster;
mod limits;
mod secrets;
#[cfg(test)]
mod tests;
mod vars;

pub use cluster::{ClusterConfig, NatsAuth};
pub use limits::{LimitsConfig, Rate};
pub(crate) use secrets::write_private_file;
pub use secrets::{ConfigError, Secret};
use secrets::{RawSecrets, load_or_generate_secrets, missing, parse_key};
use vars::{Vars, default_max_connections, parse_addr, parse_db_url, parse_listen_addr};

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `postgres://…` or `postgresql://…`, passed to the PostgreSQL driver (sslmode honoured).
    Postgres(String),
    /// The embedded SQLite store at this path.
    Sqlite(PathBuf),
}

impl DbUrl {
    pub fn is_embedded(&self) -> bool {
        matches!(self, DbUrl::Sqlite(_))
    }
}

/// How the HTTPS listener gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetup {
    /// PEM certificate chain and private key from these files.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed development certificate generated into (and reused from) this directory.
    SelfSigned { dir: PathBuf },
    /// Plain HTTP: explicit opt-in, loopback listener only (TLS terminated by a local proxy).
    Disabled,
}

/// Database tunables.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: DbUrl,
    /// Maximum pooled connections.
    pub pool_size: usize,
    /// How long a request waits for a pooled connection (or a new one) before `503`.
    pub timeout: Duration,
    /// PostgreSQL: the server-side statement and idle-in-transaction timeouts and the TCP user
    /// timeout of every pooled connection, and the bound on one group commit. SQLite: how long a
    /// writer waits for the write lock (`busy_timeout`).
    pub statement_timeout: Duration,
    /// Database actor mailbox capacity; senders wait (HTTP) or are refused (WebSocket) when full.
    pub mailbox: usize,
    /// Storage operations the database actor runs at once; beyond it the mailbox stops draining.
    pub max_inflight: usize,
    /// Largest group-committed batch of channel messages.
    pub batch_max: usize,
    /// Group commits in flight at once, each on its own connection, channels split between them
    /// by hash (PostgreSQL; SQLite has one writer and always uses one).
    pub commit_lanes: usize,
    /// Channel messages waiting for a group commit before new ones are refused with `rate_limited`.
    pub max_pending: usize,
}

/// WebSocket tunables.
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// Largest inbound frame (and reassembled message); larger → close 1009.
    pub max_frame: usize,
    /// Soft bound of one socket's outbound queue: a socket whose queue stays above it for
    /// `outbox_grace` is closed as a slow consumer (1008).
    pub outbox_bytes: usize,
    /// Hard bound: a queue above it closes the socket at once.
    pub outbox_hard_bytes: usize,
    /// How long a queue may stay above the soft bound (a burst is fine, a stalled reader is not).
    pub outbox_grace: Duration,
    /// How long a closing socket waits for the peer's close frame before the connection is dropped.
    pub close_timeout: Duration,
    /// Session actor mailbox capacity; a channel that finds it full closes the socket (1008).
    pub mailbox: usize,
    /// Sustained `channel.message.send`/`message.broadcast` per socket per second (0 = unlimited).
    pub send_rate: u32,
    /// Burst allowance above `send_rate`.
    pub send_burst: u32,
    /// Concurrent WebSocket sessions; more → `503 too_many_connections` before the upgrade.
    pub max_sessions: usize,
    /// How long a socket may hold a data frame back to write it with the ones that follow
    /// (`ws::conn`); zero writes each as soon as it is queued.
    pub write_delay: Duration,
}

/// The password queue (argon2/bcrypt work, see `actors::hashing`).
#[derive(Debug, Clone)]
pub struct PasswordConfig {
    /// Computations at once (`DIALTONE_PASSWORD_WORKERS`, default: one per core).
    pub workers: usize,
    /// Computations waiting beyond those; more are refused with 503 (`DIALTONE_PASSWORD_QUEUE`).
    pub queue: usize,
}

/// Actor mailbox sizes for the broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub hub_mailbox: usize,
    pub channel_mailbox: usize,
    /// Arbiters (threads) the channel actors are spread over; 0 = on the hub's thread.
    pub channel_arbiters: usize,
}

/// The whole server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub db: DbConfig,
    pub username_pepper: Secret<Vec<u8>>,
    pub admin_token: Secret<String>,
    /// Current at-rest key (32 bytes).
    pub channel_key: Secret<Vec<u8>>,
    /// Older at-rest keys still accepted for decryption.
    pub channel_keys_previous: Vec<Secret<Vec<u8>>>,
    pub tls: TlsSetup,
    pub data_dir: PathBuf,
    pub session_ttl: Duration,
    pub invite_ttl: Duration,
    pub workers: usize,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    pub ws: WsConfig,
    pub broker: BrokerConfig,
    pub passwords: PasswordConfig,
    /// Rate limits and caps (see `crate::limits`).
    pub limits: LimitsConfig,
    /// Optional separate plain-HTTP listener for `/metrics` (loopback or a private network).
    pub metrics_addr: Option<SocketAddr>,
    /// True when the secrets came from a generated `secrets.env` (zero-config first run).
    pub generated_secrets: bool,
    /// Several nodes on NATS (`DIALTONE_NATS_URL`); `None` is one process with no bus.
    pub cluster: Option<ClusterConfig>,
}

/// Outcome of [`Config::load`]: the config plus what a first run generated.
pub struct Loaded {
    pub config: Config,
    /// Set when this start generated `secrets.env` (first zero-config run).
    pub first_run: bool,
}

impl Config {
    /// Parse the process environment. Zero-config bootstrap included (see [`Config::load`]).
    pub fn from_env() -> Result<Loaded, ConfigError> {
        Self::load(std::env::vars().collect())
    }

    /// Parse a variable map.
    ///
    /// With the embedded store and none of the three secrets set, the secrets are read from
    /// `$DIALTONE_DATA_DIR/secrets.env`, generating it (mode 0600) on the first run. With a
    /// PostgreSQL URL, or with any secret set explicitly, every secret must be given: nothing is
    /// generated silently.
    pub fn load(vars: HashMap<String, String>) -> Result<Loaded, ConfigError> {
        let env = Vars(vars);
        let data_dir = PathBuf::from(env.get("DIALTONE_DATA_DIR").unwrap_or("./dialtone-data"));
        let db_url = parse_db_url(env.get("DIALTONE_DB_URL"), &data_dir)?;

        let raw = RawSecrets {
            pepper: env.get("DIALTONE_USERNAME_PEPPER").map(str::to_owned),
            admin_token: env.get("DIALTONE_ADMIN_TOKEN").map(str::to_owned),
            channel_key: env.get("DIALTONE_CHANNEL_KEY").map(str::to_owned),
        };
        let none_set =
            raw.pepper.is_none() && raw.admin_token.is_none() && raw.channel_key.is_none();
        let (raw, generated, first_run) = if db_url.is_embedded() && none_set {
            let (raw, first_run) = load_or_generate_secrets(&data_dir)?;
            (raw, true, first_run)
        } else {
            (raw, false, false)
        };
        let config = Self::from_parts(&env, data_dir, db_url, raw, generated)?;
        Ok(Loaded { config, first_run })
    }

    fn from_parts(
        env: &Vars,
        data_dir: PathBuf,
        db_url: DbUrl,
        raw: RawSecrets,
        generated_secrets: bool,
    ) -> Result<Self, ConfigError> {
        let pepper = raw
            .pepper
            .ok_or_else(|| missing("DIALTONE_USERNAME_PEPPER"))?;
        if pepper.len() < 16 {
            return Err(ConfigError::new(
                "DIALTONE_USERNAME_PEPPER",
                "must be at least 16 bytes (use `openssl rand -base64 32`)",
            ));
        }
        let admin_token = raw
            .admin_token
            .ok_or_else(|| missing("DIALTONE_ADMIN_TOKEN"))?;
        if admin_token.len() < 16 {
            return Err(ConfigError::new(
                "DIALTONE_ADMIN_TOKEN",
                "must be at least 16 characters (use `openssl rand -base64 32`)",
            ));
        }
        let channel_key = raw
            .channel_key
            .ok_or_else(|| missing("DIALTONE_CHANNEL_KEY"))
            .and_then(|v| parse_key("DIALTONE_CHANNEL_KEY", &v))?;
        let channel_keys_previous = match env.get("DIALTONE_CHANNEL_KEY_PREVIOUS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|k| parse_key("DIALTONE_CHANNEL_KEY_PREVIOUS", k))
                .collect::<Result<_, _>>()?,
        };

        let listen_addr = parse_listen_addr(env.get("DIALTONE_LISTEN_ADDR").unwrap_or(":8080"))?;
        let tls = match (env.get("DIALTONE_TLS_CERT"), env.get("DIALTONE_TLS_KEY")) {
            (Some(cert), Some(key)) => TlsSetup::Files {
                cert: cert.into(),
                key: key.into(),
            },
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "DIALTONE_TLS_KEY",
                    "must be set together with DIALTONE_TLS_CERT",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "DIALTONE_TLS_CERT",
                    "must be set together with DIALTONE_TLS_KEY",
                ));
            }
            (None, None) if env.flag("DIALTONE_INSECURE_HTTP")? => {
                if !listen_addr.ip().is_loopback() {
                    return Err(ConfigError::new(
                        "DIALTONE_INSECURE_HTTP",
                        format!(
                            "plain HTTP is only allowed on a loopback listener, and DIALTONE_LISTEN_ADDR is {listen_addr}"
                        ),
                    ));
                }
                TlsSetup::Disabled
            }
            (None, None) => TlsSetup::SelfSigned {
                dir: data_dir.clone(),
            },
        };

        let pool_size = env.num("DIALTONE_DB_POOL_SIZE", 16, 1, 1000)?;
        let db = DbConfig {
            url: db_url,
            pool_size,
            timeout: Duration::from_millis(env.num("DIALTONE_DB_TIMEOUT_MS", 5000, 10, 600_000)?),
            statement_timeout: Duration::from_millis(env.num(
                "DIALTONE_DB_STATEMENT_TIMEOUT_MS",
                10_000,
                100,
                3_600_000,
            )?),
            mailbox: env.num("DIALTONE_DB_MAILBOX", 4096, 16, 1 << 20)?,
            max_inflight: env.num("DIALTONE_DB_MAX_INFLIGHT", pool_size * 4, 1, 1 << 16)?,
            batch_max: env.num("DIALTONE_DB_BATCH_MAX", 1024, 1, 10_000)?,
            commit_lanes: env.num("DIALTONE_DB_COMMIT_LANES", 2, 1, 16)?,
            max_pending: env.num("DIALTONE_DB_MAX_PENDING", 50_000, 1, 10_000_000)?,
        };

        // One core is left to the hub, channel actors and database actor threads: on small
        // machines that measured better than one worker per core (BENCHMARKS.md).
        let workers = env.num(
            "DIALTONE_WORKERS",
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            1,
            256,
        )?;
        let default_max_conn = default_max_connections();
        let max_connections =
            env.num("DIALTONE_MAX_CONNECTIONS", default_max_conn, 1, 10_000_000)?;
        let ws = WsConfig {
            ping_interval: Duration::from_secs(env.num("DIALTONE_WS_PING_SECS", 25, 1, 3600)?),
            idle_timeout: Duration::from_secs(env.num("DIALTONE_WS_IDLE_SECS", 60, 2, 86_400)?),
            max_frame: env.num("DIALTONE_WS_MAX_FRAME", 64 * 1024, 1024, 16 << 20)?,
            outbox_bytes: env.num("DIALTONE_WS_OUTBOX_BYTES", 1 << 20, 1024, 1 << 30)?,
            outbox_hard_bytes: env.num("DIALTONE_WS_OUTBOX_HARD_BYTES", 16 << 20, 1024, 1 << 31)?,
            outbox_grace: Duration::from_millis(env.num(
                "DIALTONE_WS_OUTBOX_GRACE_MS",
                2000,
                1,
                600_000,
            )?),
            close_timeout: Duration::from_secs(env.num(
                "DIALTONE_WS_CLOSE_TIMEOUT_SECS",
                10,
                1,
                600,
            )?),
            mailbox: env.num("DIALTONE_WS_MAILBOX", 1024, 16, 1 << 20)?,
            send_rate: env.num("DIALTONE_WS_SEND_RATE", 100, 0, 1_000_000)?,
            send_burst: env.num("DIALTONE_WS_SEND_BURST", 200, 1, 1_000_000)?,
            max_sessions: env.num("DIALTONE_WS_MAX_SESSIONS", max_connections, 1, 10_000_000)?,
            write_delay: Duration::from_millis(env.num(
                "DIALTONE_WS_WRITE_DELAY_MS",
                0,
                0,
                1000,
            )?),
        };
        if ws.outbox_hard_bytes < ws.outbox_bytes {
            return Err(ConfigError::new(
                "DIALTONE_WS_OUTBOX_HARD_BYTES",
                "must not be smaller than DIALTONE_WS_OUTBOX_BYTES",
            ));
        }
        if ws.idle_timeout <= ws.ping_interval {
            return Err(ConfigError::new(
                "DIALTONE_WS_IDLE_SECS",
                "must be longer than DIALTONE_WS_PING_SECS",
            ));
        }
        let broker = BrokerConfig {
            hub_mailbox: env.num("DIALTONE_HUB_MAILBOX", 65_536, 16, 1 << 24)?,
            channel_mailbox: env.num("DIALTONE_CHANNEL_MAILBOX", 16_384, 16, 1 << 24)?,
            channel_arbiters: env.num("DIALTONE_CHANNEL_ARBITERS", 0, 0, 64)?,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let passwords = PasswordConfig {
            workers: env.num("DIALTONE_PASSWORD_WORKERS", cores, 1, 1024)?,
            queue: env.num("DIALTONE_PASSWORD_QUEUE", cores, 0, 1 << 16)?,
        };
        let limits = LimitsConfig::parse(env)?;
        let metrics_addr = env
            .get("DIALTONE_METRICS_ADDR")
            .map(|v| parse_addr("DIALTONE_METRICS_ADDR", v))
            .transpose()?;
        // The metrics listener has no authentication: off loopback only when asked for by name.
        let metrics_public = env.flag("DIALTONE_METRICS_PUBLIC")?;
        if let Some(addr) = metrics_addr
            && !addr.ip().is_loopback()
            && !metrics_public
        {
            return Err(ConfigError::new(
                "DIALTONE_METRICS_ADDR",
                format!(
                    "{addr} is not a loopback address; the metrics listener is unauthenticated, \
                     set DIALTONE_METRICS_PUBLIC=1 to serve it there anyway"
                ),
            ));
        }

        let cluster = ClusterConfig::parse(env)?;
        if cluster.is_some() && db.url.is_embedded() {
            return Err(ConfigError::new(
                "DIALTONE_NATS_URL",
                "clustering needs a shared PostgreSQL database (DIALTONE_DB_URL=postgres://...); the embedded store serves one node",
            ));
        }

        Ok(Config {
            listen_addr,
            db,
            username_pepper: Secret::new(pepper.into_bytes()),
            admin_token: Secret::new(admin_token),
            channel_key,
            channel_keys_previous,
            tls,
            data_dir,
            session_ttl: Duration::from_secs(env.num(
                "DIALTONE_SESSION_TTL_SECS",
                86_400,
                1,
                365 * 86_400,
            )?),
            invite_ttl: Duration::from_secs(env.num(
                "DIALTONE_INVITE_TTL_SECS",
                7 * 86_400,
                60,
                365 * 86_400,
            )?),
            workers,
            max_connections,
            shutdown_timeout: Duration::from_secs(env.num(
                "DIALTONE_SHUTDOWN_TIMEOUT_SECS",
                10,
                1,
                3600,
            )?),
            ws,
            broker,
            passwords,
            limits,
            metrics_addr,
            generated_secrets,
            cluster,
        })
    }
}
