//! Rate limits and caps (`DIALTONE_LIMIT_*`, `DIALTONE_MAX_*_PER_*`, `DIALTONE_TRUSTED_PROXIES`):
//! their syntax, defaults and parsing. Enforcement lives in `crate::limits`.

use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;

use super::ConfigError;
use super::vars::Vars;

/// "`count` per `period`": a bucket of `count` tokens, refilled one every `period / count`.
/// So a burst of `count` passes at once, and the sustained rate is `count / period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

/// Every limit; `None` is "off" (the variable set to `off` or `0`).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `POST /auth/login` per client address.
    pub login_ip: Option<Rate>,
    /// `POST /auth/login` per account (keyed hash of the normalized username) and client address.
    pub login_account: Option<Rate>,
    /// `POST /auth/login` per account, all addresses together.
    pub login_account_all: Option<Rate>,
    pub register_ip: Option<Rate>,
    pub register_account: Option<Rate>,
    /// `GET /ws` upgrades per client address.
    pub ws_upgrade_ip: Option<Rate>,
    /// Refused credentials (an unknown or revoked bearer token, a wrong `X-Admin-Token`) per client
    /// address; once spent, that address's credentials are refused unchecked until it refills.
    pub auth_failures_ip: Option<Rate>,
    /// Sends (`channel.message.send`, `message.broadcast`) per user, all sockets together.
    pub user_messages: Option<Rate>,
    /// Body bytes of those sends per user, all sockets together.
    pub user_bytes: Option<Rate>,
    /// `GET /channels/messages` and WebSocket `sync` per user.
    pub history: Option<Rate>,
    /// WebSocket `subscribe`/`unsubscribe` per user.
    pub subscribe: Option<Rate>,
    /// `POST /devices` per user.
    pub devices: Option<Rate>,
    /// `POST /users/profiles` per user.
    pub profiles: Option<Rate>,
    /// `POST /channels/keys` and `POST /directory/keys` per user.
    pub envelopes: Option<Rate>,
    /// Reads whose cost grows with the deployment (channel, member, key, device, device-list and
    /// profile listings) per user.
    pub reads: Option<Rate>,
    /// Open WebSockets per user (0 = no cap).
    pub sockets_per_user: usize,
    /// Devices per user (0 = no cap).
    pub devices_per_user: usize,
    /// Live sessions per user (0 = no cap).
    pub sessions_per_user: usize,
    /// Private and direct channels one user has created (0 = no cap).
    pub channels_per_user: usize,
    /// `sync` frames one socket may have waiting behind the one in flight.
    pub queued_syncs: usize,
    /// Envelopes in one key upload (0 = no cap).
    pub envelopes_per_request: usize,
    /// Peers whose `X-Forwarded-For` is believed; everyone else is the client themselves.
    pub trusted_proxies: Vec<IpNet>,
}

impl LimitsConfig {
    pub(super) fn parse(env: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            login_ip: rate(env, "DIALTONE_LIMIT_LOGIN_IP", "60/min")?,
            login_account: rate(env, "DIALTONE_LIMIT_LOGIN_ACCOUNT", "20/min")?,
            login_account_all: rate(env, "DIALTONE_LIMIT_LOGIN_ACCOUNT_ALL", "200/min")?,
            register_ip: rate(env, "DIALTONE_LIMIT_REGISTER_IP", "300/hour")?,
            register_account: rate(env, "DIALTONE_LIMIT_REGISTER_ACCOUNT", "20/min")?,
            ws_upgrade_ip: rate(env, "DIALTONE_LIMIT_WS_UPGRADE_IP", "600/min")?,
            auth_failures_ip: rate(env, "DIALTONE_LIMIT_AUTH_FAILURES_IP", "120/min")?,
            user_messages: rate(env, "DIALTONE_LIMIT_USER_MESSAGES", "5000/10s")?,
            user_bytes: rate(env, "DIALTONE_LIMIT_USER_BYTES", "64MiB/10s")?,
            history: rate(env, "DIALTONE_LIMIT_HISTORY", "1200/min")?,
            subscribe: rate(env, "DIALTONE_LIMIT_SUBSCRIBE", "1200/min")?,
            devices: rate(env, "DIALTONE_LIMIT_DEVICES", "60/hour")?,
            profiles: rate(env, "DIALTONE_LIMIT_PROFILES", "120/min")?,
            envelopes: rate(env, "DIALTONE_LIMIT_ENVELOPES", "600/min")?,
            reads: rate(env, "DIALTONE_LIMIT_READS", "3000/min")?,
            sockets_per_user: env.num("DIALTONE_MAX_SOCKETS_PER_USER", 100, 0, 10_000_000)?,
            devices_per_user: env.num("DIALTONE_MAX_DEVICES_PER_USER", 100, 0, 1_000_000)?,
            sessions_per_user: env.num("DIALTONE_MAX_SESSIONS_PER_USER", 1000, 0, 10_000_000)?,
            channels_per_user: env.num("DIALTONE_MAX_CHANNELS_PER_USER", 10_000, 0, 10_000_000)?,
            queued_syncs: env.num("DIALTONE_MAX_QUEUED_SYNCS", 1024, 0, 1 << 20)?,
            envelopes_per_request: env.num(
                "DIALTONE_MAX_ENVELOPES_PER_REQUEST",
                10_000,
                0,
                10_000_000,
            )?,
            trusted_proxies: proxies(env.get("DIALTONE_TRUSTED_PROXIES").unwrap_or(""))?,
        })
    }
}

fn rate(env: &Vars, var: &'static str, default: &str) -> Result<Option<Rate>, ConfigError> {
    parse_rate(env.get(var).unwrap_or(default)).map_err(|why| ConfigError::new(var, why))
}

/// `off` | `0` | `<count>[k|K|KiB|M|MiB]/<period>`, the period `s`, `min`, `hour` or a number of
/// seconds such as `10s`.
pub(super) fn parse_rate(value: &str) -> Result<Option<Rate>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") || value == "0" {
        return Ok(None);
    }
    let bad = || format!("`{value}` is not a rate like 60/min, 200/s, 8MiB/s, 5/10s or off");
    let (count, period) = value.split_once('/').ok_or_else(bad)?;
    let count = count.trim();
    let digits = count.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale: u64 = match &count[digits.len()..] {
        "" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        _ => return Err(bad()),
    };
    let count = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new)
        .ok_or_else(bad)?;
    let period = match period.trim() {
        "s" | "sec" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => other
            .strip_suffix('s')
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| (1..=86_400).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(bad)?,
    };
    Ok(Some(Rate { count, period }))
}

/// A comma-separated list of CIDRs or single addresses.
fn proxies(value: &str) -> Result<Vec<IpNet>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        "DIALTONE_TRUSTED_PROXIES",
                        format!("`{s}` is not a CIDR like 10.0.0.0/8 or an address"),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r = parse_rate("60/min").unwrap().unwrap();
        assert_eq!((r.count.get(), r.period), (60, Duration::from_secs(60)));
        let r = parse_rate("8MiB/s").unwrap().unwrap();
        assert_eq!(r.count.get(), 8 << 20);
        let r = parse_rate("5/10s").unwrap().unwrap();
        assert_eq!(r.period, Duration::from_secs(10));
        assert_eq!(parse_rate("off").unwrap(), None);
        assert_eq!(parse_rate("0").unwrap(), None);
        for bad in ["", "60", "x/min", "60/week", "0/s", "5GiB/s", "1/0s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxies_parse() {
        let p = proxies("10.0.0.0/8, 127.0.0.1,::1").unwrap();
        assert_eq!(p.len(), 3);
        assert!(proxies("10.0.0.0/33").is_err());
        assert!(proxies("").unwrap().is_empty());
    }
}
