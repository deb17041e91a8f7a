//! Typed configuration, parsed once from the environment at start and passed down.
//!
//! Every variable is documented in `.env.example` and the README. Parsing never panics: a bad value
//! is a [`ConfigError`] whose message names the variable. Nothing below this module reads the
//! environment.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// A secret value whose `Debug` never prints it and whose memory is wiped on drop.
#[derive(Clone)]
pub struct Secret<T: zeroize::Zeroize>(Zeroizing<T>);

impl<T: zeroize::Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(Zeroizing::new(value))
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: zeroize::Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

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
    /// Database actor mailbox capacity; senders wait (HTTP) or are refused (WebSocket) when full.
    pub mailbox: usize,
    /// Storage operations the database actor runs at once; beyond it the mailbox stops draining.
    pub max_inflight: usize,
    /// Largest group-committed batch of channel messages.
    pub batch_max: usize,
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
    /// Optional separate plain-HTTP listener for `/metrics` (loopback or a private network).
    pub metrics_addr: Option<SocketAddr>,
    /// True when the secrets came from a generated `secrets.env` (zero-config first run).
    pub generated_secrets: bool,
}

/// The three server secrets as read from the environment or `secrets.env`.
struct RawSecrets {
    pepper: Option<String>,
    admin_token: Option<String>,
    channel_key: Option<String>,
}

const SECRET_VARS: [&str; 3] = [
    "DIALTONE_USERNAME_PEPPER",
    "DIALTONE_ADMIN_TOKEN",
    "DIALTONE_CHANNEL_KEY",
];

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
            mailbox: env.num("DIALTONE_DB_MAILBOX", 4096, 16, 1 << 20)?,
            max_inflight: env.num("DIALTONE_DB_MAX_INFLIGHT", pool_size * 4, 1, 1 << 16)?,
            batch_max: env.num("DIALTONE_DB_BATCH_MAX", 512, 1, 10_000)?,
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
        let metrics_addr = env
            .get("DIALTONE_METRICS_ADDR")
            .map(|v| parse_addr("DIALTONE_METRICS_ADDR", v))
            .transpose()?;

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
            metrics_addr,
            generated_secrets,
        })
    }
}

/// Sockets the server may hold: the open-file limit minus a reserve for the pool, files and logs.
fn default_max_connections() -> usize {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    // The server raises its soft limit to the hard one at start.
    let limit = hard.max(soft).min(10_000_000) as usize;
    limit.saturating_sub(200).max(64)
}

fn missing(var: &'static str) -> ConfigError {
    ConfigError::new(
        var,
        "is required with a PostgreSQL database or when any other secret is set \
         (only the zero-config embedded store generates secrets)",
    )
}

fn parse_key(var: &'static str, value: &str) -> Result<Secret<Vec<u8>>, ConfigError> {
    let bytes = STANDARD
        .decode(value.trim())
        .map_err(|_| ConfigError::new(var, "must be base64 (use `openssl rand -base64 32`)"))?;
    if bytes.len() != 32 {
        return Err(ConfigError::new(
            var,
            format!("must decode to exactly 32 bytes, got {}", bytes.len()),
        ));
    }
    Ok(Secret::new(bytes))
}

fn parse_db_url(value: Option<&str>, data_dir: &Path) -> Result<DbUrl, ConfigError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DbUrl::Sqlite(data_dir.join("dialtone.db")));
    };
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(DbUrl::Postgres(value.to_owned()))
    } else if let Some(path) = value.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(ConfigError::new(
                "DIALTONE_DB_URL",
                "sqlite:// needs a file path, e.g. sqlite://./dialtone-data/dialtone.db",
            ));
        }
        Ok(DbUrl::Sqlite(PathBuf::from(path)))
    } else {
        Err(ConfigError::new(
            "DIALTONE_DB_URL",
            "must start with postgres://, postgresql:// or sqlite:// (or be unset for the embedded store)",
        ))
    }
}

/// `:8080` means every interface; otherwise `host:port` or `[v6]:port`.
fn parse_listen_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    parse_addr("DIALTONE_LISTEN_ADDR", value)
}

fn parse_addr(var: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let value = value.trim();
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_owned()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            ConfigError::new(
                var,
                format!("`{value}` is not an address like :8080, 127.0.0.1:8443 or [::1]:8443"),
            )
        })
}

const SECRETS_FILE: &str = "secrets.env";

/// Read `secrets.env`, or generate it on the first run. Returns the secrets and whether they were
/// generated now.
fn load_or_generate_secrets(data_dir: &Path) -> Result<(RawSecrets, bool), ConfigError> {
    let path = data_dir.join(SECRETS_FILE);
    let io_err = |e: std::io::Error| {
        ConfigError::new(
            "DIALTONE_DATA_DIR",
            format!("cannot use {}: {e}", path.display()),
        )
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let map: HashMap<String, String> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            for var in SECRET_VARS {
                if !map.contains_key(var) {
                    return Err(ConfigError::new(
                        var,
                        format!("missing from {}", path.display()),
                    ));
                }
            }
            Ok((
                RawSecrets {
                    pepper: map.get(SECRET_VARS[0]).cloned(),
                    admin_token: map.get(SECRET_VARS[1]).cloned(),
                    channel_key: map.get(SECRET_VARS[2]).cloned(),
                },
                false,
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io_err)?;
            let secrets = RawSecrets {
                pepper: Some(random_b64(32)),
                admin_token: Some(crate::crypto::token::generate_token()),
                channel_key: Some(random_b64(32)),
            };
            let text = format!(
                "# Generated by dialtone on first start. Keep this file secret and backed up:\n\
                 # without DIALTONE_CHANNEL_KEY the encrypted columns cannot be read.\n\
                 DIALTONE_USERNAME_PEPPER={}\nDIALTONE_ADMIN_TOKEN={}\nDIALTONE_CHANNEL_KEY={}\n",
                secrets.pepper.as_deref().unwrap_or_default(),
                secrets.admin_token.as_deref().unwrap_or_default(),
                secrets.channel_key.as_deref().unwrap_or_default(),
            );
            write_private_file(&path, text.as_bytes()).map_err(io_err)?;
            Ok((secrets, true))
        }
        Err(e) => Err(io_err(e)),
    }
}

fn random_b64(len: usize) -> String {
    STANDARD.encode(crate::crypto::random_bytes(len))
}

/// Create a file readable by its owner only.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Variable lookup with typed parsers that name the variable on error.
struct Vars(HashMap<String, String>);

impl Vars {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn num<T>(&self, key: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        let value: T = raw
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(key, format!("`{raw}` is not a whole number")))?;
        if value < min || value > max {
            return Err(ConfigError::new(
                key,
                format!("{value} is out of range ({min}..={max})"),
            ));
        }
        Ok(value)
    }

    fn flag(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::new(
                key,
                format!("`{v}` is not a boolean (use 1 or 0)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn prod_vars() -> HashMap<String, String> {
        [
            ("DIALTONE_DB_URL", "postgres://localhost/dialtone"),
            ("DIALTONE_USERNAME_PEPPER", "pepper-pepper-pepper"),
            ("DIALTONE_ADMIN_TOKEN", "admin-token-0123456789"),
            ("DIALTONE_CHANNEL_KEY", KEY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn err_of(vars: HashMap<String, String>) -> ConfigError {
        match Config::load(vars) {
            Ok(_) => panic!("config unexpectedly valid"),
            Err(e) => e,
        }
    }

    #[test]
    fn valid_production_config_parses() {
        let loaded = Config::load(prod_vars()).unwrap();
        let c = loaded.config;
        assert_eq!(c.listen_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.channel_key.expose().len(), 32);
        assert!(!c.generated_secrets);
        assert!(matches!(c.tls, TlsSetup::SelfSigned { .. }));
        assert!(!format!("{c:?}").contains("admin-token"));
    }

    #[test]
    fn each_missing_secret_is_named() {
        for var in SECRET_VARS {
            let mut vars = prod_vars();
            vars.remove(var);
            let e = err_of(vars);
            assert_eq!(e.var, var);
            assert!(e.to_string().starts_with(var));
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("DIALTONE_CHANNEL_KEY", "not base64!"),
            ("DIALTONE_CHANNEL_KEY", "AAEC"),
            ("DIALTONE_CHANNEL_KEY_PREVIOUS", "AAEC"),
            ("DIALTONE_USERNAME_PEPPER", "short"),
            ("DIALTONE_ADMIN_TOKEN", "short"),
            ("DIALTONE_LISTEN_ADDR", "nonsense"),
            ("DIALTONE_DB_URL", "mysql://x"),
            ("DIALTONE_DB_POOL_SIZE", "many"),
            ("DIALTONE_DB_POOL_SIZE", "0"),
            ("DIALTONE_SESSION_TTL_SECS", "-5"),
            ("DIALTONE_WS_IDLE_SECS", "10"),
            ("DIALTONE_INSECURE_HTTP", "maybe"),
            ("DIALTONE_METRICS_ADDR", "x"),
        ];
        for (var, value) in cases {
            let mut vars = prod_vars();
            vars.insert(var.to_owned(), value.to_owned());
            let e = err_of(vars);
            assert_eq!(e.var, var, "{var}={value} gave {e}");
        }
    }

    #[test]
    fn tls_files_must_come_in_pairs() {
        let mut vars = prod_vars();
        vars.insert("DIALTONE_TLS_CERT".into(), "/tmp/c.pem".into());
        assert_eq!(err_of(vars).var, "DIALTONE_TLS_KEY");
        let mut vars = prod_vars();
        vars.insert("DIALTONE_TLS_KEY".into(), "/tmp/k.pem".into());
        assert_eq!(err_of(vars).var, "DIALTONE_TLS_CERT");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let mut vars = prod_vars();
        vars.insert("DIALTONE_INSECURE_HTTP".into(), "1".into());
        assert_eq!(err_of(vars.clone()).var, "DIALTONE_INSECURE_HTTP");
        vars.insert("DIALTONE_LISTEN_ADDR".into(), "127.0.0.1:8080".into());
        let c = Config::load(vars).unwrap().config;
        assert_eq!(c.tls, TlsSetup::Disabled);
    }

    #[test]
    fn previous_keys_parse_as_list() {
        let mut vars = prod_vars();
        vars.insert(
            "DIALTONE_CHANNEL_KEY_PREVIOUS".into(),
            format!("{KEY}, {KEY}"),
        );
        let c = Config::load(vars).unwrap().config;
        assert_eq!(c.channel_keys_previous.len(), 2);
    }

    #[test]
    fn embedded_store_generates_and_reuses_secrets() {
        let dir = std::env::temp_dir().join(format!("dialtone-cfg-{}", uuid::Uuid::new_v4()));
        let vars: HashMap<String, String> =
            [("DIALTONE_DATA_DIR".to_owned(), dir.display().to_string())].into();
        let first = Config::load(vars.clone()).unwrap();
        assert!(first.first_run);
        assert!(first.config.generated_secrets);
        assert_eq!(first.config.db.url, DbUrl::Sqlite(dir.join("dialtone.db")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SECRETS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = Config::load(vars).unwrap();
        assert!(!second.first_run);
        assert_eq!(
            second.config.admin_token.expose(),
            first.config.admin_token.expose()
        );
        assert_eq!(
            second.config.channel_key.expose(),
            first.config.channel_key.expose()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn explicit_secret_disables_generation() {
        let dir = std::env::temp_dir().join(format!("dialtone-cfg-{}", uuid::Uuid::new_v4()));
        let vars: HashMap<String, String> = [
            ("DIALTONE_DATA_DIR".to_owned(), dir.display().to_string()),
            (
                "DIALTONE_ADMIN_TOKEN".to_owned(),
                "admin-token-0123456789".to_owned(),
            ),
        ]
        .into();
        assert_eq!(err_of(vars).var, "DIALTONE_USERNAME_PEPPER");
        assert!(!dir.exists());
    }
}
