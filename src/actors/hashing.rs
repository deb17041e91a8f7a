//! The password queue: every argon2/bcrypt computation (login checks, registration hashes,
//! v1 re-hashes) runs here, on the blocking pool, never inside a database-actor slot and never
//! with a pool connection checked out. A flood of logins therefore costs CPU, not the database
//! capacity that message commits and other requests need.
//!
//! Bound and overflow policy: at most `workers` computations run at once and at most `queue` more
//! wait for a worker. A request beyond that is refused at once with [`ServiceError::Busy`] (HTTP
//! 503 with `Retry-After`), so the queue never grows without limit. A caller that gives up while
//! waiting (client gone, request dropped) frees its place; a computation that has started runs to
//! its end on the blocking pool.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::crypto::password::{self, Verdict};
use crate::metrics::Metrics;
use crate::service::{ServiceError, ServiceResult};

/// Cheap to clone; shared by every HTTP worker.
#[derive(Clone)]
pub struct PasswordQueue {
    /// Places: running plus waiting.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl PasswordQueue {
    pub fn new(workers: usize, queue: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            running: Arc::new(Semaphore::new(workers)),
            metrics,
        }
    }

    /// Check `password` against `stored`, or against the dummy hash when there is none: one full
    /// verification either way (see [`password::check`]).
    pub async fn check(&self, password: String, stored: Option<String>) -> ServiceResult<Verdict> {
        self.run(move || password::check(&password, stored.as_deref()))
            .await
    }

    /// A new argon2id hash of `password`.
    pub async fn hash(&self, password: String) -> ServiceResult<String> {
        self.run(move || password::hash_password(&password))
            .await?
            .map_err(ServiceError::from)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let Ok(_place) = self.admitted.clone().try_acquire_owned() else {
            self.metrics.password_queue_refused.inc();
            return Err(ServiceError::Busy(
                "too many sign-ins right now; retry shortly",
            ));
        };
        self.metrics.password_queue_depth.inc();
        let _depth = DepthGuard(&self.metrics);
        let _worker = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Busy("server shutting down"))?;
        self.metrics.password_computations.inc();
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ServiceError::Internal(format!("password task failed: {e}")))
    }
}

/// Keeps `password_queue_depth` right when a waiting caller is dropped.
struct DepthGuard<'a>(&'a Metrics);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.password_queue_depth.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_places() {
        let metrics = Metrics::new();
        let queue = PasswordQueue::new(1, 1, metrics.clone());
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = queue.clone();
        // One running (blocked until released), one waiting: the third is refused.
        let first = tokio::spawn(async move {
            busy.run(move || {
                let _ = wait.recv();
            })
            .await
        });
        while metrics.password_queue_depth.get() < 1 {
            tokio::task::yield_now().await;
        }
        let waiting = queue.clone();
        let second = tokio::spawn(async move { waiting.run(|| 2).await });
        while metrics.password_queue_depth.get() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(queue.run(|| 3).await, Err(ServiceError::Busy(_))));
        assert_eq!(metrics.password_queue_refused.get(), 1);
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(queue.run(|| 4).await.unwrap(), 4);
        assert_eq!(metrics.password_queue_depth.get(), 0);
    }
}
