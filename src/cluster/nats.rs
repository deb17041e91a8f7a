//! The NATS bus (`async-nats`, core pub/sub: no JetStream, no queue groups).
//!
//! Owns: the NATS client, a publish queue and the task that drains it into the client.
//! Bounds: the publish queue holds `DIALTONE_CLUSTER_PUBLISH_QUEUE` messages; [`Bus::publish`]
//! never waits, and a full queue (NATS down or slow) refuses the message with `Full`, which the
//! caller counts: the peers repair it from the database. Inbound, NATS buffers
//! `DIALTONE_CLUSTER_INBOUND_CAPACITY` messages per subscription and drops beyond that (a slow
//! consumer), which the reader finds as a `seq` gap.
//! The client reconnects on its own, forever, and resubscribes; each (re)connect raises
//! [`BusStatus::connects`], so the node knows to run a repair.
//! Thread: the client, its connection and both pumps run on a thread of their own (`dialtone-bus`,
//! one current-thread runtime), not on the hub's: socket I/O to NATS never competes with the
//! hub and the channel actors. The thread ends when the [`NatsBus`] is dropped.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::bus::{Bus, BusError, BusStatus, Inbound};
use crate::config::{ClusterConfig, NatsAuth};

pub struct NatsBus {
    client: async_nats::Client,
    queue: mpsc::Sender<(String, Bytes)>,
    status: watch::Receiver<BusStatus>,
    /// The bus thread's runtime, where subscriptions are made.
    runtime: tokio::runtime::Handle,
    /// Dropped with the bus: ends the bus thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl NatsBus {
    /// Configure the client and start connecting in the background: a NATS that is down at start
    /// delays clustering (and `/ready`), it does not stop the node.
    pub async fn connect(cfg: &ClusterConfig) -> Result<Self, BusError> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("dialtone-bus".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(BusError::Transport(format!(
                            "cannot start the bus thread's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                    let bus = Self::connect_here(&cfg, stop_tx).await;
                    let ok = bus.is_ok();
                    let _ = ready_tx.send(bus);
                    if ok {
                        // Serve the client and the pumps until the bus is dropped.
                        let _ = stop_rx.await;
                    }
                });
            })
            .map_err(|e| BusError::Transport(format!("cannot start the bus thread: {e}")))?;
        ready_rx
            .await
            .unwrap_or_else(|_| Err(BusError::Transport("the bus thread ended".into())))
    }

    async fn connect_here(
        cfg: &ClusterConfig,
        stop: tokio::sync::oneshot::Sender<()>,
    ) -> Result<Self, BusError> {
        let (status_tx, status) = watch::channel(BusStatus::default());
        let status_tx = Arc::new(status_tx);
        let events = status_tx.clone();
        let mut opts = match &cfg.auth {
            NatsAuth::None => ConnectOptions::new(),
            NatsAuth::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    BusError::Transport(format!(
                        "DIALTONE_NATS_CREDS: cannot read {}: {e}",
                        path.display()
                    ))
                })?,
            NatsAuth::Token(t) => ConnectOptions::with_token(t.expose().clone()),
            NatsAuth::UserPassword(u, p) => {
                ConnectOptions::with_user_and_password(u.clone(), p.expose().clone())
            }
            NatsAuth::Nkey(seed) => ConnectOptions::with_nkey(seed.expose().clone()),
        };
        if let Some(ca) = &cfg.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &cfg.tls_client {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        opts = opts
            .require_tls(cfg.tls_required)
            .name(format!("dialtone {}", cfg.node_id))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            // A peer that stops answering is noticed within a few pings, not at TCP's timeout.
            .ping_interval(Duration::from_secs(5))
            .subscription_capacity(cfg.inbound_capacity)
            // Capped, jittered backoff: a restarted NATS gets the cluster back within seconds.
            .reconnect_delay_callback(|attempts| {
                let base = Duration::from_millis(100) * (attempts.min(20) as u32);
                base.min(Duration::from_secs(2))
            })
            .event_callback(move |event| {
                let status = events.clone();
                async move {
                    match event {
                        Event::Connected => {
                            tracing::info!("cluster bus connected");
                            status.send_modify(|s| {
                                s.connected = true;
                                s.connects += 1;
                            });
                        }
                        Event::Disconnected | Event::Closed => {
                            tracing::warn!("cluster bus disconnected; reconnecting");
                            status.send_modify(|s| s.connected = false);
                        }
                        Event::SlowConsumer(_) => {
                            tracing::warn!("cluster bus: inbound messages dropped (slow consumer); repair fills the gap");
                        }
                        other => tracing::info!(event = %other, "cluster bus event"),
                    }
                }
            });
        let servers: Vec<String> = cfg
            .nats_url
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let client = opts
            .connect(servers.as_slice())
            .await
            .map_err(|e| BusError::Transport(format!("DIALTONE_NATS_URL: {e}")))?;
        let (queue, mut pending) = mpsc::channel::<(String, Bytes)>(cfg.publish_queue);
        let publisher = client.clone();
        tokio::spawn(async move {
            let mut failures = 0u64;
            // Ends only when the bus is dropped (the queue closes). A failed publish loses that
            // one message for the peers (repair heals messages); it never stops the ones after.
            while let Some((subject, payload)) = pending.recv().await {
                if let Err(e) = publisher.publish(subject, payload).await {
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, "cluster publish failed");
                    }
                }
            }
        });
        Ok(Self {
            client,
            queue,
            status,
            runtime: tokio::runtime::Handle::current(),
            _stop: stop,
        })
    }
}

impl Bus for NatsBus {
    fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        self.queue
            .try_send((subject, payload))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BusError::Full,
                mpsc::error::TrySendError::Closed(_) => BusError::Closed,
            })
    }

    fn subscribe(
        &self,
        filter: String,
    ) -> BoxFuture<'static, Result<mpsc::Receiver<Inbound>, BusError>> {
        let client = self.client.clone();
        let (made_tx, made_rx) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            let mut sub = match client.subscribe(filter).await {
                Ok(sub) => sub,
                Err(e) => {
                    let _ = made_tx.send(Err(BusError::Transport(e.to_string())));
                    return;
                }
            };
            // The SUB reaches the server before the caller reads the database (subscribe, then
            // catch up). Bounded: with NATS down at start, the subscription is made on connect
            // and the first repair covers what came before.
            let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
            // Small: NATS itself buffers `inbound_capacity` per subscription.
            let (tx, rx) = mpsc::channel(1024);
            if made_tx.send(Ok(rx)).is_err() {
                return;
            }
            while let Some(msg) = sub.next().await {
                let inbound = Inbound {
                    subject: msg.subject.to_string(),
                    payload: msg.payload,
                };
                // Waiting here is the backpressure: NATS then drops (a gap) instead of this
                // node queueing without bound.
                if tx.send(inbound).await.is_err() {
                    break;
                }
            }
        });
        Box::pin(async move {
            made_rx
                .await
                .unwrap_or_else(|_| Err(BusError::Transport("the bus thread ended".into())))
        })
    }

    fn status(&self) -> watch::Receiver<BusStatus> {
        self.status.clone()
    }
}
