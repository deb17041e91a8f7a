//! One upgraded WebSocket connection, driven without actix-http's HTTP/1 dispatcher.
//!
//! Kept alive after the 101, the dispatcher would hold two 8 KiB buffers per socket for the
//! connection's whole life and copy every outbound chunk into one of them before TLS copies it
//! again. [`drive`] owns the socket instead: it writes the outbox's whole frames straight to it and
//! feeds what it reads to the session's inbound payload from a stack buffer; TLS keeps no buffer
//! either between records ([`crate::http::tls`]), so an idle socket holds no I/O buffer at all
//! (see BENCHMARKS.md, "Memory per idle session").
//!
//! Owns: the socket (after the 101) and the sending half of the session's inbound payload.
//! Bounds: reads pause while the inbound pipe holds what the session has not taken
//! ([`super::pipe::HIGH_WATER`]), so a peer that floods is held back by TCP; writes take one outbox
//! chunk at a time and take the next only once the socket accepted the last, so a peer that stops
//! reading leaves the backlog in the outbox, where the session sees and bounds it.
//!
//! Write delay (`DIALTONE_WS_WRITE_DELAY_MS`, off by default): the first data frame queued on a
//! quiet socket starts a timer, and what is queued when it fires goes out in one write. A socket
//! write costs microseconds of syscall and TCP work however little it carries, so a busy socket's
//! deliveries get cheaper (40 ms took 12–23 % off the server's CPU under fan-out load), at the
//! price of up to that delay of added latency (BENCHMARKS.md, "Write delay"). A close frame, a
//! finish, an abort or a full chunk is never held.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::frames::SharedOutbox;
use super::pipe::PipeWriter;

/// What the upgrade handler hands to the connection: put into the 101 response's extensions and
/// taken by the upgrade service ([`super::upgrade`]), which then calls [`drive`].
pub struct Takeover {
    pub feed: PipeWriter,
    pub outbox: SharedOutbox,
    /// How long a data frame may wait to be written with the ones after it (zero: not at all).
    pub write_delay: Duration,
}

/// Put into a request's extensions by the upgrade service: the handler upgrades only a request
/// whose connection will be taken over (any other would answer 101 and then hang).
#[derive(Clone, Copy)]
pub struct CanUpgrade;

/// The upgraded connections still running, so a shutdown can wait for their close frames.
///
/// Each runs as a task of its own ([`super::upgrade`] spawns [`drive`]), not inside the HTTP/1
/// dispatcher's connection task: that task and the upgrade future it awaits are sized for the
/// whole HTTP exchange (together about 10 KiB) and would stay allocated for the socket's life.
/// Detached, they are no longer counted by the listener's connection limit
/// (`DIALTONE_MAX_CONNECTIONS`), so the server's graceful stop would not wait for them: it waits
/// here instead ([`Connections::drained`]).
#[derive(Default)]
pub struct Connections {
    live: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One running connection of [`Connections`]; counted until dropped.
pub struct Live(std::sync::Arc<Connections>);

impl Connections {
    pub fn enter(self: &std::sync::Arc<Self>) -> Live {
        self.live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Live(self.clone())
    }

    /// How many are running.
    pub fn count(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once none is running.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self
            .0
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// How long a finished connection may take to close: our close_notify and FIN, then the peer's.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 4096;

/// Reads per poll before other tasks get a turn (a fast sender cannot starve its thread).
const READS_PER_POLL: usize = 16;

/// Tells the session when the connection is gone, however [`drive`] ends (its future may be
/// dropped by a server shutdown).
pub struct Detach(pub SharedOutbox);

impl Drop for Detach {
    fn drop(&mut self) {
        if let Ok(mut o) = self.0.try_borrow_mut() {
            o.detach();
        }
    }
}

/// Run the connection until the session finishes it (close frame written), aborts it (the peer
/// stopped answering) or the peer goes away. `early` is what the client sent right after its
/// upgrade request, read along with it.
pub async fn drive<T>(mut io: T, early: Bytes, takeover: Takeover, detach: Detach)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Takeover {
        feed,
        outbox,
        write_delay,
    } = takeover;
    if !early.is_empty() {
        feed.send(early);
    }
    let mut conn = Conn {
        io: &mut io,
        feed: Some(feed),
        outbox,
        pending: None,
        unflushed: false,
        write_delay,
        timer: None,
        due: false,
    };
    match poll_fn(|cx| conn.poll(cx)).await {
        Ok(End::Finished) => {
            drop(conn);
            // A peer that stops reading exactly now must not hold the task: bounded.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, linger(&mut io)).await;
        }
        Ok(End::Aborted) => {
            tracing::debug!("websocket peer stopped answering; connection dropped");
        }
        Err(e) => tracing::debug!(error = %e, "websocket connection ended"),
    }
    drop(detach);
}

/// Send our close (TLS close_notify and FIN), then read and discard until the peer closes too.
/// Closing with unread bytes in the socket would make the kernel answer with a reset, which can
/// destroy our close frame at the peer before it is read: a client still writing an oversized
/// frame would never see its 1009.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T) -> io::Result<()> {
    io.shutdown().await?;
    // On the heap, only while lingering: an array here would be part of `drive`'s future, which
    // every connection holds for its whole life.
    let mut discard = vec![0u8; READ_CHUNK];
    while io.read(&mut discard).await? > 0 {}
    Ok(())
}

enum End {
    /// The session finished the stream and everything queued was written.
    Finished,
    /// The session gave up on the peer: drop the connection without writing what is queued.
    Aborted,
}

struct Conn<'a, T> {
    io: &'a mut T,
    /// `None` once the read side ended (EOF, error, or the session dropped its stream).
    feed: Option<PipeWriter>,
    outbox: SharedOutbox,
    /// The chunk being written; the next is taken from the outbox only once this one is.
    pending: Option<Bytes>,
    /// Written since the last successful flush.
    unflushed: bool,
    write_delay: Duration,
    /// Armed while frames are held back; boxed and dropped once fired, so a quiet socket keeps
    /// no timer.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The delay has run out: write until the outbox is empty.
    due: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Conn<'_, T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<End>> {
        loop {
            let chunk = match self.pending.as_mut() {
                Some(chunk) => chunk,
                None => {
                    let mut o = self.outbox.borrow_mut();
                    if o.aborted() {
                        return Poll::Ready(Ok(End::Aborted));
                    }
                    if !self.due && !self.write_delay.is_zero() && o.may_hold() {
                        let delay = self.write_delay;
                        let timer = self
                            .timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
                        if timer.as_mut().poll(cx).is_pending() {
                            o.hold(true);
                            break;
                        }
                        self.timer = None;
                        self.due = true;
                    }
                    o.hold(false);
                    match o.next_chunk() {
                        Some(chunk) => self.pending.insert(chunk),
                        None => {
                            // A full chunk can go out before the timer fires: a timer left
                            // armed would let the next quiet frame out early.
                            self.due = false;
                            self.timer = None;
                            break;
                        }
                    }
                }
            };
            match Pin::new(&mut *self.io).poll_write(cx, chunk) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    chunk.advance(n);
                    self.unflushed = true;
                    if chunk.is_empty() {
                        self.pending = None;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        if self.unflushed {
            match Pin::new(&mut *self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        {
            let mut o = self.outbox.borrow_mut();
            if o.aborted() {
                return Poll::Ready(Ok(End::Aborted));
            }
            if self.pending.is_none() && !self.unflushed && o.finished() {
                return Poll::Ready(Ok(End::Finished));
            }
            // Woken by the next frame queued, a finish or an abort.
            o.register(cx.waker());
        }
        self.poll_read(cx);
        Poll::Pending
    }

    /// Feed what the peer sent to the session, until the socket has nothing more, the session's
    /// pipe is full (it wakes this task when it takes some) or this poll's share is used.
    fn poll_read(&mut self, cx: &mut Context<'_>) {
        let Some(feed) = self.feed.as_ref() else {
            return;
        };
        for _ in 0..READS_PER_POLL {
            match feed.poll_ready(cx) {
                Poll::Ready(true) => {}
                Poll::Pending => return,
                Poll::Ready(false) => {
                    self.feed = None;
                    return;
                }
            }
            let mut space = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut space);
            match Pin::new(&mut *self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    feed.end(Ok(()));
                    self.feed = None;
                    return;
                }
                Poll::Ready(Ok(())) => feed.send(Bytes::copy_from_slice(buf.filled())),
                Poll::Ready(Err(e)) => {
                    feed.end(Err(e));
                    self.feed = None;
                    return;
                }
                Poll::Pending => return,
            }
        }
        cx.waker().wake_by_ref();
    }
}

#[cfg(test)]
mod tests;
