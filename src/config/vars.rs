//! Reading variables: typed parsers that name the variable on error, and the address, URL and
//! limit defaults.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::{ConfigError, DbUrl};

/// Sockets the server may hold: the open-file limit minus a reserve for the pool, files and logs.
pub(super) fn default_max_connections() -> usize {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    // The server raises its soft limit to the hard one at start.
    let limit = hard.max(soft).min(10_000_000) as usize;
    limit.saturating_sub(200).max(64)
}

pub(super) fn parse_db_url(value: Option<&str>, data_dir: &Path) -> Result<DbUrl, ConfigError> {
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
pub(super) fn parse_listen_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    parse_addr("DIALTONE_LISTEN_ADDR", value)
}

pub(super) fn parse_addr(var: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
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

/// Variable lookup with typed parsers that name the variable on error.
pub(super) struct Vars(pub(super) HashMap<String, String>);

impl Vars {
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn num<T>(
        &self,
        key: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError>
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

    pub(super) fn flag(&self, key: &'static str) -> Result<bool, ConfigError> {
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
