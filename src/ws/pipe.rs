//! The inbound pipe of one WebSocket: bytes the connection read ([`super::conn`]), waiting for the
//! session's frame decoder ([`super::frames::Inbound`]). Both ends live on the session's thread.
//!
//! Bound: [`HIGH_WATER`] bytes. Past it [`PipeWriter::poll_ready`] is pending until the session
//! takes some, so the connection stops reading and TCP holds a flooding peer back.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// Bytes the pipe holds before the connection stops reading (a 64 KiB frame still fits in
/// two steps: the decoder takes what is here, then the rest arrives).
pub const HIGH_WATER: usize = 32 * 1024;

#[derive(Default)]
struct Shared {
    chunks: VecDeque<Bytes>,
    len: usize,
    /// How the byte stream ended, once it did (`Ok`: the peer's EOF).
    end: Option<io::Result<()>>,
    reader: Option<Waker>,
    writer: Option<Waker>,
    reader_gone: bool,
}

/// A new pipe.
pub fn pipe() -> (PipeWriter, PipeReader) {
    let shared = Rc::new(RefCell::new(Shared::default()));
    (PipeWriter(shared.clone()), PipeReader(shared))
}

/// The connection's end.
pub struct PipeWriter(Rc<RefCell<Shared>>);

impl PipeWriter {
    /// `Ready(true)`: room for more; `Ready(false)`: the session dropped its end, nothing more is
    /// wanted; `Pending`: full, the task is woken when the session takes some.
    pub fn poll_ready(&self, cx: &Context<'_>) -> Poll<bool> {
        let mut s = self.0.borrow_mut();
        if s.reader_gone {
            return Poll::Ready(false);
        }
        if s.len < HIGH_WATER {
            return Poll::Ready(true);
        }
        if !s.writer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.writer = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    pub fn send(&self, data: Bytes) {
        let mut s = self.0.borrow_mut();
        s.len += data.len();
        s.chunks.push_back(data);
        wake(&mut s.reader);
    }

    /// The byte stream ended: at the peer's EOF (`Ok`) or with a read error.
    pub fn end(&self, how: io::Result<()>) {
        let mut s = self.0.borrow_mut();
        s.end.get_or_insert(how);
        wake(&mut s.reader);
    }
}

impl Drop for PipeWriter {
    /// A connection dropped without an end (a server shutdown) ends the stream too.
    fn drop(&mut self) {
        self.end(Err(io::ErrorKind::ConnectionAborted.into()));
    }
}

/// The session's end: a stream of what was read, in order.
pub struct PipeReader(Rc<RefCell<Shared>>);

impl Stream for PipeReader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut s = self.0.borrow_mut();
        if let Some(chunk) = s.chunks.pop_front() {
            let was_full = s.len >= HIGH_WATER;
            s.len -= chunk.len();
            if was_full && s.len < HIGH_WATER {
                wake(&mut s.writer);
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        match s.end.take() {
            Some(Ok(())) => {
                s.end = Some(Ok(()));
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                // Reported once; the stream ends after it.
                s.end = Some(Ok(()));
                Poll::Ready(Some(Err(PayloadError::Io(e))))
            }
            None => {
                if !s.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.reader = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut s = self.0.borrow_mut();
        s.reader_gone = true;
        s.chunks.clear();
        wake(&mut s.writer);
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use futures_util::task::noop_waker;

    #[test]
    fn fills_to_its_bound_then_drains_in_order() {
        let (tx, mut rx) = pipe();
        let waker = noop_waker();
        let cx = Context::from_waker(&waker);
        let mut sent = 0;
        while tx.poll_ready(&cx) == Poll::Ready(true) {
            tx.send(Bytes::from(vec![sent as u8; 1000]));
            sent += 1;
        }
        assert!(
            tx.poll_ready(&cx).is_pending(),
            "full at the high-water mark"
        );
        assert_eq!(sent, HIGH_WATER.div_ceil(1000));
        tx.end(Ok(()));
        drop(tx);
        let got: Vec<_> = poll_to_end(rx.by_ref().collect::<Vec<_>>());
        assert_eq!(got.len(), sent);
        for (i, chunk) in got.into_iter().enumerate() {
            assert_eq!(chunk.expect("data")[0], i as u8);
        }
    }

    #[test]
    fn a_read_error_is_reported_once_then_the_stream_ends() {
        let (tx, rx) = pipe();
        tx.send(Bytes::from_static(b"ab"));
        tx.end(Err(io::ErrorKind::ConnectionReset.into()));
        let got = poll_to_end(rx.collect::<Vec<_>>());
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[1], Err(PayloadError::Io(_))));
    }

    #[test]
    fn the_writer_learns_when_the_session_is_gone() {
        let (tx, rx) = pipe();
        drop(rx);
        let waker = noop_waker();
        assert_eq!(
            tx.poll_ready(&Context::from_waker(&waker)),
            Poll::Ready(false)
        );
    }

    /// Once ended, the pipe is never pending: one poll finishes it.
    fn poll_to_end<F: std::future::Future>(f: F) -> F::Output {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        match std::pin::pin!(f).poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("an ended pipe was pending"),
        }
    }
}
