//! PostgreSQL connection targets, with TLS when the URL asks for it, and the settings that keep a
//! connection from hanging forever on a database or network that stopped answering.
//!
//! `sslmode=require`, `verify-ca` and `verify-full` connect over rustls and always verify the
//! server certificate and host name (system roots plus `sslrootcert=PATH` when given): dialtone
//! never accepts an unverified database certificate. `disable`, `allow`, `prefer` or no `sslmode`
//! connect in plain text (a local socket or a trusted network).

use std::sync::Arc;
use std::time::Duration;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{DbError, DbResult};

/// Where and how to connect.
#[derive(Clone)]
pub struct PgTarget {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    limits: PgLimits,
}

/// Bounds on every connection.
#[derive(Debug, Clone, Copy)]
pub struct PgLimits {
    /// Connecting (TCP, TLS and authentication) gives up after this.
    pub connect_timeout: Duration,
    /// PostgreSQL cancels a statement, or ends a session idle inside a transaction, after this;
    /// the kernel also drops the connection when sent data stays unacknowledged this long (TCP
    /// user timeout). `None` (migrations, `rekey`): statements may take as long as they need.
    pub statement_timeout: Option<Duration>,
}

impl Default for PgLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            statement_timeout: None,
        }
    }
}

impl PgTarget {
    /// Parse a `postgres://` URL, taking out the TLS parameters the driver does not understand.
    pub fn parse(url: &str) -> DbResult<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut sslmode = None;
        let mut rootcert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => sslmode = Some(v.to_owned()),
                "sslrootcert" => rootcert = Some(percent_decode(v)),
                _ => rest.push(pair.to_owned()),
            }
        }
        let want_tls = match sslmode.as_deref() {
            None | Some("disable" | "allow" | "prefer") => false,
            Some("require" | "verify-ca" | "verify-full") => true,
            Some(other) => {
                return Err(DbError::Setup(format!(
                    "DIALTONE_DB_URL: unsupported sslmode `{other}` (use disable, require, verify-ca or verify-full)"
                )));
            }
        };
        rest.push(format!(
            "sslmode={}",
            if want_tls { "require" } else { "disable" }
        ));
        let url = format!("{base}?{}", rest.join("&"));
        let tls = if want_tls {
            Some(Arc::new(client_config(rootcert.as_deref())?))
        } else {
            None
        };
        Ok(Self {
            url,
            tls,
            limits: PgLimits::default(),
        })
    }

    pub fn with_limits(mut self, limits: PgLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The URL handed to tokio-postgres (TLS parameters normalized).
    pub fn url_for_driver(&self) -> &str {
        &self.url
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Open one connection: keepalives on, and the statement and TCP user timeouts when set.
    pub async fn connect(&self) -> ConnectionResult<AsyncPgConnection> {
        let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(with_causes(&e));
        let mut config: tokio_postgres::Config = self.url.parse().map_err(bad)?;
        // Keepalive probes find a dead peer on an idle connection.
        config
            .connect_timeout(self.limits.connect_timeout)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        if let Some(limit) = self.limits.statement_timeout {
            config.tcp_user_timeout(limit);
        }
        let mut conn = match &self.tls {
            None => {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await?
            }
            Some(cfg) => {
                let tls = MakeRustlsConnect::new((**cfg).clone());
                let (client, conn) = config.connect(tls).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await?
            }
        };
        if let Some(limit) = self.limits.statement_timeout {
            let ms = limit.as_millis();
            conn.batch_execute(&format!(
                "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}"
            ))
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        }
        Ok(conn)
    }
}

/// An idle connection is probed after this much silence…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// …then every this often…
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// …and dropped after this many unanswered probes.
const KEEPALIVE_RETRIES: u32 = 3;

/// An error with its causes: tokio-postgres' own text is only the kind ("error performing TLS
/// handshake", "db error"); why (an unknown CA, a wrong host name, a `pg_hba.conf` refusal) is in
/// the source chain.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

fn client_config(rootcert: Option<&str>) -> DbResult<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system store with a few unparsable entries should not stop the others from loading.
        let _ = roots.add(cert);
    }
    if let Some(path) = rootcert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| DbError::Setup(format!("DIALTONE_DB_URL: sslrootcert {path}: {e}")))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| DbError::Setup(format!("DIALTONE_DB_URL: sslrootcert {path}: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `%XX` escapes decoded byte-wise; anything else (a stray `%`, a short or non-hex escape, any
/// UTF-8) is kept as it is. Works on bytes only: slicing the `str` could split a multi-byte
/// character and panic on a hostile `DIALTONE_DB_URL`.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_stay_plain() {
        let t = PgTarget::parse("postgres://u@localhost/db").unwrap();
        assert!(!t.uses_tls());
        assert_eq!(
            t.url_for_driver(),
            "postgres://u@localhost/db?sslmode=disable"
        );
    }

    #[test]
    fn verify_full_requires_tls_and_keeps_other_params() {
        let t = PgTarget::parse("postgres://u@db.example/x?application_name=d&sslmode=verify-full")
            .unwrap();
        assert!(t.uses_tls());
        assert_eq!(
            t.url_for_driver(),
            "postgres://u@db.example/x?application_name=d&sslmode=require"
        );
    }

    #[test]
    fn bad_sslmode_and_missing_rootcert_are_errors() {
        assert!(PgTarget::parse("postgres://h/x?sslmode=sometimes").is_err());
        let e = PgTarget::parse("postgres://h/x?sslmode=require&sslrootcert=%2Fnope%2Fca.pem")
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nope/ca.pem"), "{e}");
    }

    #[test]
    fn percent_decoding_handles_edges() {
        assert_eq!(percent_decode("%2Fa%2f"), "/a/");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%2"), "%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        // A multi-byte character right after `%` once split the string mid-character.
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%é"), "%é");
    }

    /// Odd `DIALTONE_DB_URL` values never panic: each is parsed or refused with an error.
    #[test]
    fn odd_urls_never_panic() {
        let pieces = [
            "postgres://",
            "postgresql://",
            "?",
            "&",
            "=",
            "%",
            "%e",
            "%é",
            "é",
            "\u{0}",
            "@",
            ":",
            "/",
            "[",
            "]",
            "[::1",
            "sslmode",
            "sslmode=",
            "sslmode=require",
            "sslrootcert=",
            "sslrootcert=%",
            "sslrootcert=%zz",
            "sslrootcert=%C3",
            "??",
            "&&",
            "==",
            "#",
            " ",
            "\u{202e}",
            "💥",
            "localhost",
            "65536",
            "host=",
            "u:p@h:99999/db",
        ];
        let mut inputs: Vec<String> = pieces.iter().map(|p| (*p).to_owned()).collect();
        for a in pieces {
            for b in pieces {
                inputs.push(format!("postgres://{a}{b}"));
                inputs.push(format!("postgres://h/db?{a}{b}"));
                inputs.push(format!(
                    "postgres://h/db?sslmode=disable&sslrootcert={a}{b}"
                ));
            }
        }
        // Deterministic pseudo-random byte soup after the scheme.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut tail = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                tail.push(pieces[(x % pieces.len() as u64) as usize]);
            }
            inputs.push(format!("postgres://{}", tail.concat()));
        }
        for url in &inputs {
            let _ = PgTarget::parse(url);
            let _ = url.parse::<tokio_postgres::Config>();
        }
    }
}
