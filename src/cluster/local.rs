//! The in-process bus: every clone is one node on the same wire. Used by tests, and wherever
//! several nodes share a process.
//!
//! Owns: the subscriber list. Bound: each subscriber's queue holds `capacity` messages; a message
//! for a full queue is dropped for that subscriber (as NATS drops for a slow consumer), and the
//! reader finds the gap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::bus::{Bus, BusError, BusStatus, Inbound, subject_matches};

type Subscribers = Vec<(String, mpsc::Sender<Inbound>)>;

#[derive(Clone)]
pub struct LocalBus {
    subscribers: Arc<Mutex<Subscribers>>,
    capacity: usize,
    /// While set, published messages reach nobody (a partitioned bus, for fault tests).
    partitioned: Arc<AtomicBool>,
    status: Arc<watch::Sender<BusStatus>>,
}

impl LocalBus {
    pub fn new(capacity: usize) -> Self {
        let (status, _) = watch::channel(BusStatus {
            connected: true,
            connects: 1,
        });
        Self {
            subscribers: Arc::default(),
            capacity: capacity.max(1),
            partitioned: Arc::default(),
            status: Arc::new(status),
        }
    }

    /// Lose everything published while `on` (every node on this bus).
    pub fn partition(&self, on: bool) {
        self.partitioned.store(on, Ordering::Relaxed);
        self.status.send_modify(|s| {
            s.connected = !on;
            if !on {
                s.connects += 1;
            }
        });
    }
}

impl Bus for LocalBus {
    fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        if self.partitioned.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut subs = self.subscribers.lock().map_err(|_| BusError::Closed)?;
        subs.retain(|(_, tx)| !tx.is_closed());
        for (filter, tx) in subs.iter() {
            if subject_matches(filter, &subject) {
                // A full queue loses this message for that reader only (slow consumer).
                let _ = tx.try_send(Inbound {
                    subject: subject.clone(),
                    payload: payload.clone(),
                });
            }
        }
        Ok(())
    }

    fn subscribe(
        &self,
        filter: String,
    ) -> BoxFuture<'static, Result<mpsc::Receiver<Inbound>, BusError>> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let added = self
            .subscribers
            .lock()
            .map(|mut subs| subs.push((filter, tx)))
            .map_err(|_| BusError::Closed);
        Box::pin(async move { added.map(|()| rx) })
    }

    fn status(&self) -> watch::Receiver<BusStatus> {
        self.status.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_node_hears_matching_subjects_and_a_partition_loses_messages() {
        let bus = LocalBus::new(8);
        let other = bus.clone();
        let mut all = bus.subscribe("d.>".into()).await.unwrap();
        let mut ev = other.subscribe("d.ev".into()).await.unwrap();
        bus.publish("d.ch.1".into(), Bytes::from_static(b"m"))
            .unwrap();
        other
            .publish("d.ev".into(), Bytes::from_static(b"e"))
            .unwrap();
        assert_eq!(all.recv().await.unwrap().payload, "m");
        assert_eq!(all.recv().await.unwrap().payload, "e");
        assert_eq!(ev.recv().await.unwrap().payload, "e");
        assert!(ev.try_recv().is_err(), "d.ch.1 does not match d.ev");

        bus.partition(true);
        bus.publish("d.ev".into(), Bytes::from_static(b"lost"))
            .unwrap();
        bus.partition(false);
        assert!(all.try_recv().is_err());
        assert_eq!(bus.status().borrow().connects, 2);
    }

    #[tokio::test]
    async fn a_full_reader_loses_messages_but_never_blocks_the_publisher() {
        let bus = LocalBus::new(2);
        let mut rx = bus.subscribe("d.>".into()).await.unwrap();
        for i in 0..5u8 {
            bus.publish("d.ev".into(), Bytes::from(vec![i])).unwrap();
        }
        assert_eq!(rx.recv().await.unwrap().payload[0], 0);
        assert_eq!(rx.recv().await.unwrap().payload[0], 1);
        assert!(rx.try_recv().is_err());
    }
}
