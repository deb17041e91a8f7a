//! Requests raced against each other: every one started at once, none with a head start.

use std::sync::Arc;

use tokio::sync::Barrier;

/// Spawn every one of `requests` on its own task, lined up on a barrier so that they start
/// together, and return a future of their answers in order. They run from this call on, whether
/// or not the future is awaited yet (a test can hold a lock meanwhile and watch them queue).
pub fn all_at_once<F>(requests: Vec<F>) -> impl Future<Output = Vec<F::Output>> + 'static
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                request.await
            })
        })
        .collect();
    async move {
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await.expect("a raced request panicked"));
        }
        out
    }
}
