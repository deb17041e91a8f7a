//! The rate-limit layer: every token bucket and per-user cap the server enforces at its edge.
//!
//! Buckets are `governor` GCRA limiters keyed by client address (IPv6 by its /64, see
//! [`client_ip`]), by account (the keyed hash of the normalized username, never the name) or by
//! user id. REST applies them through [`rest`] (a per-resource middleware for addresses, extractors
//! for accounts and users); WebSocket frames through the per-socket [`ws::SessionBudget`], whose
//! user-keyed buckets are shared by all of that user's sockets, so N sockets do not get N budgets.
//!
//! Owns: the keyed bucket maps and the open-socket count per user. Bound: a bucket whose key has
//! been idle for its refill time is indistinguishable from a fresh one and is dropped by the
//! pruner every [`PRUNE_EVERY`]; so the maps hold at most the keys seen within one refill time
//! plus one prune interval. The socket map holds one entry per user with an open socket; the
//! map of addresses whose credentials are refused unchecked holds those that spent their failure
//! bucket, each until it refills (expired entries go with the same pruner).
//! Overflow policy: a request over a limit is refused (REST `429 rate_limited` with
//! `Retry-After`, WebSocket a `rate_limited` error event naming the frame) and counted in
//! `dialtone_rate_limited_total{limit}`; nothing is queued.

pub mod client_ip;
pub mod rest;
pub mod ws;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{LimitsConfig, Rate};
use crate::crypto::keyed_hash::KeyedHasher;
use crate::metrics::Metrics;

/// How often idle buckets are dropped.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What a caller asking again too soon is told to wait when a cap (not a bucket) refused it: the
/// count falls when the user closes a socket, deletes a device or a session expires.
pub const CAP_RETRY_AFTER_SECS: u64 = 60;

/// The `limit` label of `dialtone_rate_limited_total`, and the name in refusal messages.
pub mod label {
    pub const LOGIN_IP: &str = "login_ip";
    pub const LOGIN_ACCOUNT: &str = "login_account";
    pub const LOGIN_ACCOUNT_ALL: &str = "login_account_all";
    pub const REGISTER_IP: &str = "register_ip";
    pub const REGISTER_ACCOUNT: &str = "register_account";
    pub const WS_UPGRADE_IP: &str = "ws_upgrade_ip";
    pub const AUTH_FAILURES_IP: &str = "auth_failures_ip";
    pub const SOCKETS_PER_USER: &str = "sockets_per_user";
    pub const SOCKET_MESSAGES: &str = "socket_messages";
    pub const USER_MESSAGES: &str = "user_messages";
    pub const USER_BYTES: &str = "user_bytes";
    pub const SYNC_QUEUE: &str = "sync_queue";
    pub const HISTORY: &str = "history";
    pub const SUBSCRIBE: &str = "subscribe";
    pub const DEVICES: &str = "devices";
    pub const PROFILES: &str = "profiles";
    pub const ENVELOPES: &str = "envelopes";
    pub const READS: &str = "reads";
    pub const DEVICES_PER_USER: &str = "devices_per_user";
    pub const SESSIONS_PER_USER: &str = "sessions_per_user";
    pub const CHANNELS_PER_USER: &str = "channels_per_user";
    pub const ENVELOPES_PER_REQUEST: &str = "envelopes_per_request";
}

/// A request refused by a limit: which one, and how long until a retry can pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limited ({limit}); retry in {retry_after_secs} s")]
pub struct Refused {
    pub limit: &'static str,
    pub retry_after_secs: u64,
}

/// The address-keyed buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpLimit {
    Login,
    Register,
    WsUpgrade,
}

/// The account-keyed buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountLimit {
    Login,
    Register,
}

/// The user-keyed buckets of REST requests and WebSocket frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserLimit {
    Messages,
    Bytes,
    History,
    Subscribe,
    Devices,
    Profiles,
    Envelopes,
    Reads,
}

/// One keyed bucket map (`None`: that limit is off).
struct Keyed<K: Hash + Eq + Clone> {
    label: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(label: &'static str, rate: Option<Rate>) -> Self {
        Self {
            label,
            limiter: rate.map(|r| RateLimiter::keyed(quota(r))),
        }
    }

    fn check_n(&self, key: &K, n: u32, clock: &DefaultClock) -> Result<(), Refused> {
        let (Some(limiter), Some(n)) = (&self.limiter, NonZeroU32::new(n)) else {
            return Ok(());
        };
        match limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(self.refused(not_until.wait_time_from(clock.now()))),
            // More than the whole bucket: it can never pass; say when the bucket is full again.
            Err(_) => Err(self.refused(Duration::from_secs(CAP_RETRY_AFTER_SECS))),
        }
    }

    fn refused(&self, wait: Duration) -> Refused {
        Refused {
            limit: self.label,
            retry_after_secs: retry_secs(wait),
        }
    }

    fn prune(&self) -> usize {
        let Some(limiter) = &self.limiter else {
            return 0;
        };
        limiter.retain_recent();
        limiter.shrink_to_fit();
        limiter.len()
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` has no fractions).
fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `count` per `period`: a burst of `count`, refilled one every `period / count`.
pub(crate) fn quota(rate: Rate) -> Quota {
    Quota::with_period(rate.period / rate.count.get())
        .unwrap_or_else(|| Quota::per_second(rate.count))
        .allow_burst(rate.count)
}

/// Every limiter of one server.
pub struct Limits {
    clock: DefaultClock,
    hasher: KeyedHasher,
    metrics: Arc<Metrics>,
    config: LimitsConfig,
    login_ip: Keyed<IpAddr>,
    register_ip: Keyed<IpAddr>,
    ws_upgrade_ip: Keyed<IpAddr>,
    /// Refused credentials per address; `refusing` holds the addresses that spent it, until when.
    auth_failures_ip: Keyed<IpAddr>,
    refusing: Mutex<HashMap<IpAddr, Instant>>,
    /// Per account *and* client address: a stranger spending it cannot lock the owner out.
    login_account: Keyed<String>,
    /// Per account, every address together: the ceiling on guesses spread over many addresses.
    login_account_all: Keyed<String>,
    register_account: Keyed<String>,
    user_messages: Keyed<String>,
    user_bytes: Keyed<String>,
    history: Keyed<String>,
    subscribe: Keyed<String>,
    devices: Keyed<String>,
    profiles: Keyed<String>,
    envelopes: Keyed<String>,
    reads: Keyed<String>,
    /// Per-socket send bucket (`DIALTONE_WS_SEND_RATE`/`_BURST`), one limiter per socket.
    socket_sends: Option<Quota>,
    /// Open sockets per user id; an entry goes when its count reaches 0.
    sockets: Mutex<HashMap<String, usize>>,
}

impl Limits {
    /// `hasher` keys account buckets by the same keyed username hash the database uses, so no
    /// username is ever held in memory by this layer.
    pub fn new(
        config: &LimitsConfig,
        socket_send_rate: u32,
        socket_send_burst: u32,
        hasher: KeyedHasher,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        use label as l;
        let socket_sends = NonZeroU32::new(socket_send_rate).map(|rate| {
            Quota::per_second(rate).allow_burst(NonZeroU32::new(socket_send_burst).unwrap_or(rate))
        });
        Arc::new(Self {
            clock: DefaultClock::default(),
            hasher,
            metrics,
            login_ip: Keyed::new(l::LOGIN_IP, config.login_ip),
            register_ip: Keyed::new(l::REGISTER_IP, config.register_ip),
            ws_upgrade_ip: Keyed::new(l::WS_UPGRADE_IP, config.ws_upgrade_ip),
            auth_failures_ip: Keyed::new(l::AUTH_FAILURES_IP, config.auth_failures_ip),
            refusing: Mutex::new(HashMap::new()),
            login_account: Keyed::new(l::LOGIN_ACCOUNT, config.login_account),
            login_account_all: Keyed::new(l::LOGIN_ACCOUNT_ALL, config.login_account_all),
            register_account: Keyed::new(l::REGISTER_ACCOUNT, config.register_account),
            user_messages: Keyed::new(l::USER_MESSAGES, config.user_messages),
            user_bytes: Keyed::new(l::USER_BYTES, config.user_bytes),
            history: Keyed::new(l::HISTORY, config.history),
            subscribe: Keyed::new(l::SUBSCRIBE, config.subscribe),
            devices: Keyed::new(l::DEVICES, config.devices),
            profiles: Keyed::new(l::PROFILES, config.profiles),
            envelopes: Keyed::new(l::ENVELOPES, config.envelopes),
            reads: Keyed::new(l::READS, config.reads),
            config: config.clone(),
            socket_sends,
            sockets: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Count a refusal and hand it back.
    fn counted(&self, r: Result<(), Refused>) -> Result<(), Refused> {
        if let Err(refused) = &r {
            self.metrics.rate_limited(refused.limit);
        }
        r
    }

    /// Take one token from `ip`'s bucket of `limit`.
    pub fn check_ip(&self, limit: IpLimit, ip: IpAddr) -> Result<(), Refused> {
        let keyed = match limit {
            IpLimit::Login => &self.login_ip,
            IpLimit::Register => &self.register_ip,
            IpLimit::WsUpgrade => &self.ws_upgrade_ip,
        };
        self.counted(keyed.check_n(&client_ip::bucket_key(ip), 1, &self.clock))
    }

    /// Refuse `ip`'s credentials unchecked while it is over `DIALTONE_LIMIT_AUTH_FAILURES_IP`:
    /// a flood of junk tokens then costs no database lookup.
    pub fn check_credentials(&self, ip: IpAddr) -> Result<(), Refused> {
        let key = client_ip::bucket_key(ip);
        let refusing = self.refusing.lock().unwrap_or_else(|e| e.into_inner());
        match refusing.get(&key) {
            Some(until) => {
                let wait = until.saturating_duration_since(Instant::now());
                drop(refusing);
                if wait.is_zero() {
                    return Ok(());
                }
                self.counted(Err(self.auth_failures_ip.refused(wait)))
            }
            None => Ok(()),
        }
    }

    /// `ip` presented credentials that were refused: take a token from its failure bucket. One
    /// refused beyond the bucket (itself already answered 401) starts the refusal of everything
    /// `ip` presents, unchecked, until a token is back.
    pub fn credentials_refused(&self, ip: IpAddr) {
        let key = client_ip::bucket_key(ip);
        if let Err(refused) = self.auth_failures_ip.check_n(&key, 1, &self.clock) {
            let until = Instant::now() + Duration::from_secs(refused.retry_after_secs);
            self.refusing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, until);
        }
    }

    /// Take one token from the account's buckets; `normalized` is hashed here and dropped.
    ///
    /// A login takes from the account's bucket *for its client address* (`from`), then from the
    /// account's bucket across addresses: someone guessing from one address spends only their
    /// own, so the owner signing in from elsewhere is not locked out, while guesses spread over
    /// many addresses still meet the account-wide ceiling.
    pub fn check_account(
        &self,
        limit: AccountLimit,
        normalized: &str,
        from: Option<IpAddr>,
    ) -> Result<(), Refused> {
        let (keyed, all) = match limit {
            AccountLimit::Login => (&self.login_account, Some(&self.login_account_all)),
            AccountLimit::Register => (&self.register_account, None),
        };
        if keyed.limiter.is_none() && all.is_none_or(|a| a.limiter.is_none()) {
            return Ok(());
        }
        let account = self.hasher.username_hash(normalized);
        if keyed.limiter.is_some() {
            let key = match (limit, from) {
                (AccountLimit::Login, Some(ip)) => {
                    format!("{account}/{}", client_ip::bucket_key(ip))
                }
                _ => account.clone(),
            };
            self.counted(keyed.check_n(&key, 1, &self.clock))?;
        }
        match all {
            Some(all) if all.limiter.is_some() => {
                self.counted(all.check_n(&account, 1, &self.clock))
            }
            _ => Ok(()),
        }
    }

    /// Take `n` tokens from the user's bucket of `limit`.
    pub fn check_user(&self, limit: UserLimit, user_id: &str, n: u32) -> Result<(), Refused> {
        let keyed = match limit {
            UserLimit::Messages => &self.user_messages,
            UserLimit::Bytes => &self.user_bytes,
            UserLimit::History => &self.history,
            UserLimit::Subscribe => &self.subscribe,
            UserLimit::Devices => &self.devices,
            UserLimit::Profiles => &self.profiles,
            UserLimit::Envelopes => &self.envelopes,
            UserLimit::Reads => &self.reads,
        };
        if keyed.limiter.is_none() {
            return Ok(());
        }
        self.counted(keyed.check_n(&user_id.to_owned(), n, &self.clock))
    }

    /// A fresh per-socket send bucket (`None`: unlimited).
    fn socket_bucket(&self) -> Option<DefaultDirectRateLimiter> {
        self.socket_sends.map(RateLimiter::direct)
    }

    /// Refuse (counted) with a cap's label.
    pub fn cap_refused(&self, limit: &'static str) -> Refused {
        self.metrics.rate_limited(limit);
        Refused {
            limit,
            retry_after_secs: CAP_RETRY_AFTER_SECS,
        }
    }

    /// Hold one of the user's socket slots until the returned slot is dropped.
    pub fn acquire_socket(self: &Arc<Self>, user_id: &str) -> Result<SocketSlot, Refused> {
        let cap = self.config.sockets_per_user;
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let open = sockets.entry(user_id.to_owned()).or_insert(0);
        if cap > 0 && *open >= cap {
            drop(sockets);
            return Err(self.cap_refused(label::SOCKETS_PER_USER));
        }
        *open += 1;
        Ok(SocketSlot {
            limits: self.clone(),
            user_id: user_id.to_owned(),
        })
    }

    fn release_socket(&self, user_id: &str) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = sockets.get_mut(user_id) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                sockets.remove(user_id);
            }
        }
    }

    /// Drop idle buckets; returns how many keys are still held (for the log).
    pub fn prune(&self) -> usize {
        let now = Instant::now();
        self.refusing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, until| *until > now);
        let ips = [
            &self.login_ip,
            &self.register_ip,
            &self.ws_upgrade_ip,
            &self.auth_failures_ip,
        ];
        let users = [
            &self.login_account,
            &self.login_account_all,
            &self.register_account,
            &self.user_messages,
            &self.user_bytes,
            &self.history,
            &self.subscribe,
            &self.devices,
            &self.profiles,
            &self.envelopes,
            &self.reads,
        ];
        ips.iter().map(|k| k.prune()).sum::<usize>()
            + users.iter().map(|k| k.prune()).sum::<usize>()
    }

    /// Prune every [`PRUNE_EVERY`] for as long as the current actix system runs.
    pub fn spawn_pruner(self: &Arc<Self>) {
        let limits = Arc::downgrade(self);
        actix_web::rt::spawn(async move {
            loop {
                actix_web::rt::time::sleep(PRUNE_EVERY).await;
                let Some(limits) = limits.upgrade() else {
                    return;
                };
                let keys = limits.prune();
                tracing::debug!(keys, "rate-limit buckets pruned");
            }
        });
    }
}

/// One open socket of a user, counted against `DIALTONE_MAX_SOCKETS_PER_USER` while it lives.
pub struct SocketSlot {
    limits: Arc<Limits>,
    user_id: String,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.limits.release_socket(&self.user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_refilled() {
        let rate = Rate {
            count: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            period: Duration::from_secs(60),
        };
        let keyed: Keyed<String> = Keyed::new("t", Some(rate));
        let clock = DefaultClock::default();
        let a = "a".to_owned();
        assert!((0..3).all(|_| keyed.check_n(&a, 1, &clock).is_ok()));
        let refused = keyed.check_n(&a, 1, &clock).unwrap_err();
        assert_eq!(refused.limit, "t");
        assert!((19..=20).contains(&refused.retry_after_secs), "{refused:?}");
        // Another key has its own bucket; more than the bucket holds never passes.
        assert!(keyed.check_n(&"b".to_owned(), 1, &clock).is_ok());
        assert!(keyed.check_n(&"c".to_owned(), 4, &clock).is_err());
    }
}
