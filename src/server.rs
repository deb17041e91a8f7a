//! Server assembly: migrations, the actors, the HTTPS listener, graceful shutdown.
//!
//! [`run`] is the whole server on a bound listener until `shutdown` resolves; `dialtone serve` and
//! the integration tests both call it. It must run inside an actix `System`.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::actors::admin::AdminActor;
use crate::actors::db::{
    ChannelIds, ChannelSeqs, CommittedBatch, DbActor, DbActorConfig, DbHandle, MintInvite,
    PrivateMembers, PurgeExpiredSessions,
};
use crate::actors::hashing::PasswordQueue;
use crate::actors::hub::{ClusterLink, Hub, HubHandle, Quiesce, Shutdown};
use crate::cluster::nats::NatsBus;
use crate::cluster::{Bus, BusStatus};
use crate::config::{ClusterConfig, Config, DbUrl};
use crate::crypto::bus_mac::BusMac;
use crate::crypto::field::FieldCipher;
use crate::crypto::keyed_hash::KeyedHasher;
use crate::data_dir;
use crate::db::{Pool, migrate};
use crate::http::{self, AppState};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::protocol::rest::{CreateInviteRequest, InviteResponse};
use crate::service::{Caps, ServiceResult, Settings, Store};
use crate::tls;
use crate::ws;

/// How often expired sessions are deleted.
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The storage half of the server: migrations applied, database actor running.
pub struct Storage {
    pub db: DbHandle,
    pub metrics: Arc<Metrics>,
    arbiter: Option<actix::Arbiter>,
}

impl Storage {
    /// Apply migrations and start the database actor. Used by `serve` and by the `invite`,
    /// `rekey` and `migrate` commands.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        if let DbUrl::Sqlite(path) = &config.db.url {
            data_dir::secure_sqlite(path)
                .with_context(|| format!("securing the embedded store {}", path.display()))?;
        }
        if config.data_dir.exists() {
            data_dir::secure_dir(&config.data_dir).with_context(|| {
                format!("DIALTONE_DATA_DIR: securing {}", config.data_dir.display())
            })?;
        }
        let applied = migrate::run(&config.db.url)
            .await
            .context("applying database migrations")?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "migrations applied");
        }
        let pool = Pool::new(&config.db).context("DIALTONE_DB_URL")?;
        // SQLite has one writer: a second lane would only wait for the first.
        let commit_lanes = match pool.backend() {
            crate::db::Backend::Postgres => config.db.commit_lanes,
            crate::db::Backend::Sqlite => 1,
        };
        let commit_pool = Pool::dedicated(&config.db, commit_lanes).context("DIALTONE_DB_URL")?;
        let previous: Vec<&[u8]> = config
            .channel_keys_previous
            .iter()
            .map(|k| k.expose().as_slice())
            .collect();
        let cipher = FieldCipher::new(config.channel_key.expose(), &previous);
        let hasher = KeyedHasher::new(
            config.username_pepper.expose(),
            config.channel_key.expose(),
            &previous,
        );
        tracing::info!(key_id = cipher.current_key_id(), backend = ?pool.backend(), "storage ready");
        let metrics = Metrics::new();
        let probed = pool.clone();
        metrics.set_pool_probe(Box::new(move || probed.status()));
        let store = Store::new(
            pool,
            commit_pool,
            cipher,
            hasher,
            Settings {
                session_ttl: config.session_ttl,
                invite_ttl: config.invite_ttl,
                caps: Caps {
                    devices_per_user: config.limits.devices_per_user,
                    sessions_per_user: config.limits.sessions_per_user,
                    channels_per_user: config.limits.channels_per_user,
                    envelopes_per_request: config.limits.envelopes_per_request,
                },
            },
        );
        let (db, arbiter) = DbActor::start(
            store,
            DbActorConfig {
                mailbox: config.db.mailbox,
                max_inflight: config.db.max_inflight,
                batch_max: config.db.batch_max,
                commit_lanes,
                max_pending: config.db.max_pending,
                call_timeout: config.db.timeout * 4,
                commit_timeout: config.db.statement_timeout,
            },
            metrics.clone(),
        );
        Ok(Self {
            db,
            metrics,
            arbiter: Some(arbiter),
        })
    }

    /// Stop the database actor and wait until its thread (and so its pool) is gone.
    pub async fn close(mut self) {
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
            let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
        }
    }

    /// Mint an invite through the database actor (first run, `dialtone invite`).
    pub async fn mint_invite(&self, req: CreateInviteRequest) -> ServiceResult<InviteResponse> {
        self.db
            .call(MintInvite {
                req,
                created_by: None,
            })
            .await
    }
}

/// A started server.
pub struct Running {
    pub local_addr: SocketAddr,
    pub tls_fingerprint: Option<String>,
    pub storage: Storage,
    hub: HubHandle,
    server: actix_web::dev::Server,
    metrics_server: Option<actix_web::dev::Server>,
    /// Where the metrics listener is bound (`DIALTONE_METRICS_ADDR`, its port resolved).
    pub metrics_addr: Option<SocketAddr>,
    /// `DIALTONE_SHUTDOWN_TIMEOUT_SECS`: the bound on draining the group-commit queue.
    shutdown_timeout: Duration,
    /// Upgraded WebSockets still writing or closing.
    connections: Arc<ws::conn::Connections>,
}

/// Start everything on `listener`; serve with [`Running::serve_until`].
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    tls::install_crypto_provider();
    raise_fd_limit();
    let storage = Storage::open(&config).await?;
    let db = storage.db.clone();
    let metrics = storage.metrics.clone();

    let (cluster, bus_status) = match &config.cluster {
        Some(cluster) => {
            let previous: Vec<&[u8]> = config
                .channel_keys_previous
                .iter()
                .map(|k| k.expose().as_slice())
                .collect();
            let mac = BusMac::new(config.channel_key.expose(), &previous);
            let (link, status) = join_cluster(cluster, mac, &db).await?;
            (Some(link), Some(status))
        }
        None => (None, None),
    };
    let channel_ids = match &cluster {
        Some(link) => link.seqs.iter().map(|(id, _)| id.clone()).collect(),
        None => db
            .call(ChannelIds {})
            .await
            .context("loading channels (is the database reachable?)")?,
    };
    let private = db
        .call(PrivateMembers {})
        .await
        .context("loading private channel members (is the database reachable?)")?;
    let hub = Hub::start(
        channel_ids,
        private,
        config.broker.channel_arbiters,
        config.broker.channel_mailbox,
        config.broker.hub_mailbox,
        metrics.clone(),
        cluster,
    );
    db.attach_fanout(hub.recipient::<CommittedBatch>(), hub.meter());
    let admin = AdminActor::start(db.clone(), hub.clone(), metrics.clone());

    let purge_db = db.clone();
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(SESSION_PURGE_EVERY).await;
            match purge_db.call(PurgeExpiredSessions {}).await {
                Ok(n) if n > 0 => tracing::info!(sessions = n, "expired sessions purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "session purge failed"),
            }
        }
    });

    let tls = tls::load(&config.tls)?;
    let local_addr = listener.local_addr()?;
    let passwords = PasswordQueue::new(
        config.passwords.workers,
        config.passwords.queue,
        metrics.clone(),
    );
    let previous: Vec<&[u8]> = config
        .channel_keys_previous
        .iter()
        .map(|k| k.expose().as_slice())
        .collect();
    let limits = Limits::new(
        &config.limits,
        config.ws.send_rate,
        config.ws.send_burst,
        KeyedHasher::new(
            config.username_pepper.expose(),
            config.channel_key.expose(),
            &previous,
        ),
        metrics.clone(),
    );
    limits.spawn_pruner();
    let state = web::Data::new(AppState {
        db,
        passwords,
        hub: hub.clone(),
        admin,
        metrics: metrics.clone(),
        admin_token: config.admin_token.clone(),
        ws: Arc::new(config.ws.clone()),
        limits,
        cluster: bus_status,
    });
    let app_metrics = metrics.clone();
    let workers = config.workers.max(1);
    // HSTS only with a real certificate: never pin a browser to the development certificate.
    let hsts = matches!(config.tls, crate::config::TlsSetup::Files { .. });
    let app = move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(http::count_status(app_metrics.clone()))
            .configure(|cfg| http::webapp::configure(cfg, hsts))
            .configure(http::configure)
    };
    let connections = Arc::new(ws::conn::Connections::default());
    let options = http::listen::ListenOptions {
        workers,
        max_connections: config.max_connections,
        shutdown_timeout: config.shutdown_timeout,
        connections: connections.clone(),
    };
    let (server, tls_fingerprint) = match tls {
        Some(tls) => {
            if tls.self_signed {
                tracing::warn!(
                    fingerprint = %tls.fingerprint,
                    "serving a self-signed development certificate; set DIALTONE_TLS_CERT and DIALTONE_TLS_KEY for production"
                );
            }
            (
                http::listen::serve(listener, Some(tls.config), options, app)?,
                Some(tls.fingerprint),
            )
        }
        None => {
            tracing::warn!("TLS disabled (DIALTONE_INSECURE_HTTP): serving plain HTTP on loopback");
            (http::listen::serve(listener, None, options, app)?, None)
        }
    };

    let (metrics_server, metrics_addr) = match config.metrics_addr {
        Some(addr) => {
            let m = metrics.clone();
            let server = HttpServer::new(move || {
                let m = m.clone();
                App::new().route(
                    "/metrics",
                    web::get().to(move || {
                        let m = m.clone();
                        async move {
                            actix_web::HttpResponse::Ok()
                                .content_type(
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(m.render())
                        }
                    }),
                )
            })
            .workers(1)
            .disable_signals()
            .bind(addr)
            .with_context(|| format!("DIALTONE_METRICS_ADDR: cannot bind {addr}"))?;
            // The bound address, not the configured one: port 0 picks a free port.
            let bound = server.addrs().first().copied().unwrap_or(addr);
            tracing::info!(addr = %bound, "metrics listener");
            (Some(server.run()), Some(bound))
        }
        None => (None, None),
    };

    tracing::info!(%local_addr, tls = tls_fingerprint.is_some(), workers, "dialtone listening");
    Ok(Running {
        local_addr,
        tls_fingerprint,
        storage,
        hub,
        server,
        metrics_server,
        metrics_addr,
        shutdown_timeout: config.shutdown_timeout,
        connections,
    })
}

impl Running {
    /// Serve until `shutdown` resolves (or the server fails), then shut down gracefully: refuse new
    /// sends, commit what is queued and fan it out, close every socket with 1001, stop.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let metrics_handle = self.metrics_server.as_ref().map(|s| s.handle());
        if let Some(ms) = self.metrics_server {
            actix_web::rt::spawn(ms);
        }
        // The server future runs the accept loop's command queue: it must keep being polled
        // while the shutdown steps below talk to it.
        let mut server = actix_web::rt::spawn(self.server);
        tokio::select! {
            result = &mut server => {
                return result.context("HTTP server task failed")?.context("HTTP server failed");
            }
            () = shutdown => {}
        }
        tracing::info!("shutting down: draining in-flight messages");
        handle.pause().await;
        // The hub's steps wait on every session and channel actor: one wedged arbiter (what the
        // liveness probe exists for) must not hang the shutdown either.
        if tokio::time::timeout(self.shutdown_timeout, self.hub.ask(Quiesce))
            .await
            .is_err()
        {
            tracing::warn!("shutdown: the hub did not quiesce in time; going on");
        }
        // A database that hangs must not hold the shutdown: what has not committed by then was
        // never acknowledged, so giving up loses nothing a client was told is saved.
        if tokio::time::timeout(self.shutdown_timeout, self.storage.db.drain())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_secs = self.shutdown_timeout.as_secs(),
                "shutdown: the database did not drain in time; unacknowledged messages dropped"
            );
        }
        if tokio::time::timeout(self.shutdown_timeout, self.hub.ask(Shutdown))
            .await
            .is_err()
        {
            tracing::warn!("shutdown: the hub did not flush its channels in time; going on");
        }
        // Every session now has its 1001 queued: let the connections write it and close
        // (each bounded by its own close grace), within the shutdown bound.
        if tokio::time::timeout(self.shutdown_timeout, self.connections.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.connections.count(),
                "shutdown: WebSocket connections still open; dropping them"
            );
        }
        if let Some(m) = metrics_handle {
            m.stop(true).await;
        }
        handle.stop(true).await;
        server
            .await
            .context("HTTP server task failed")?
            .context("HTTP server failed")?;
        self.hub.stop_arbiters();
        self.storage.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Start and serve until `shutdown` (mini-redis style entry point).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    start(config, listener).await?.serve_until(shutdown).await
}

/// Connect to NATS (in the background), subscribe, then read where every channel stands: in that
/// order, so nothing committed meanwhile is missed.
async fn join_cluster(
    cluster: &ClusterConfig,
    mac: BusMac,
    db: &DbHandle,
) -> anyhow::Result<(ClusterLink, tokio::sync::watch::Receiver<BusStatus>)> {
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(cluster).await?);
    let inbound = bus
        .subscribe(format!("{}.>", cluster.subject_prefix))
        .await
        .context("subscribing to the cluster bus")?;
    let seqs = db
        .call(ChannelSeqs {})
        .await
        .context("loading channels (is the database reachable?)")?;
    tracing::info!(node = %cluster.node_id, prefix = %cluster.subject_prefix, "clustering on NATS");
    let status = bus.status();
    Ok((
        ClusterLink {
            bus,
            config: cluster.clone(),
            mac,
            db: db.clone(),
            seqs,
            inbound,
        },
        status,
    ))
}

/// Sockets are files: lift the soft open-file limit to the hard one.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}
