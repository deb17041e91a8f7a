//! The connection's write delay: held data frames go out together once it runs out; a close is
//! never held; with no delay every frame is written as soon as it is queued.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use actix_http::ws::Message as WsMessage;
use bytestring::ByteString;
use futures_util::task::noop_waker;

use super::*;
use crate::ws::frames::{MAX_CHUNK, Outbox};
use crate::ws::pipe;

/// A socket that records each write and never has anything to read.
#[derive(Default)]
struct Wire {
    writes: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.writes.borrow_mut().push(b.to_vec());
        Poll::Ready(Ok(b.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct Running {
    outbox: SharedOutbox,
    writes: Rc<RefCell<Vec<Vec<u8>>>>,
    drive: Pin<Box<dyn Future<Output = ()>>>,
    _read: pipe::PipeReader,
}

impl Running {
    fn new(write_delay: Duration) -> Self {
        let outbox = Outbox::new();
        let (feed, read) = pipe::pipe();
        let wire = Wire::default();
        let writes = wire.writes.clone();
        let takeover = Takeover {
            feed,
            outbox: outbox.clone(),
            write_delay,
        };
        let drive = Box::pin(drive(wire, Bytes::new(), takeover, Detach(outbox.clone())));
        let mut running = Running {
            outbox,
            writes,
            drive,
            _read: read,
        };
        running.poll();
        running
    }

    fn push(&self, text: &str) {
        self.outbox
            .borrow_mut()
            .push(WsMessage::Text(ByteString::from(text)));
    }

    fn poll(&mut self) {
        let waker = noop_waker();
        let polled = self.drive.as_mut().poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending(), "the connection ended");
    }

    /// Every write so far, as the frames' payloads (all short, unmasked text or close frames).
    fn written(&self) -> Vec<Vec<String>> {
        self.writes
            .borrow()
            .iter()
            .map(|w| {
                let mut frames = Vec::new();
                let mut at = 0;
                while at < w.len() {
                    let len = usize::from(w[at + 1] & 0x7f);
                    frames.push(String::from_utf8_lossy(&w[at + 2..at + 2 + len]).into_owned());
                    at += 2 + len;
                }
                frames
            })
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn held_frames_go_out_together_once_the_delay_runs_out() {
    let mut c = Running::new(Duration::from_millis(40));
    c.push("a");
    c.poll();
    c.push("b");
    tokio::time::advance(Duration::from_millis(39)).await;
    c.push("c");
    c.poll();
    assert!(c.written().is_empty(), "written before the delay ran out");
    tokio::time::advance(Duration::from_millis(2)).await;
    c.poll();
    assert_eq!(c.written(), vec![vec!["a", "b", "c"]]);
    // The next frame starts a new delay.
    c.push("d");
    c.poll();
    assert_eq!(c.written().len(), 1);
    tokio::time::advance(Duration::from_millis(41)).await;
    c.poll();
    assert_eq!(c.written()[1], vec!["d"]);
}

#[tokio::test(start_paused = true)]
async fn a_close_frame_is_never_held() {
    let mut c = Running::new(Duration::from_millis(40));
    c.push("a");
    c.poll();
    assert!(c.written().is_empty());
    c.outbox
        .borrow_mut()
        .push_close(actix_http::ws::CloseCode::Normal.into());
    c.poll();
    let written = c.written();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0][0], "a");
    assert_eq!(
        written[0].len(),
        2,
        "the close frame follows in the same write"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_chunk_is_not_held() {
    let mut c = Running::new(Duration::from_millis(40));
    let frame = "x".repeat(100);
    let mut pushed = 0;
    while c.outbox.borrow().queued() < MAX_CHUNK {
        c.push(&frame);
        pushed += 1;
    }
    c.poll();
    let written = c.written().concat().len();
    assert!(written > 0, "a full chunk waited for the timer");
    assert_eq!(
        written,
        MAX_CHUNK / (frame.len() + 2),
        "one chunk's whole frames"
    );
    assert!(written < pushed);
}

#[tokio::test(start_paused = true)]
async fn without_a_delay_each_frame_is_written_when_queued() {
    let mut c = Running::new(Duration::ZERO);
    c.push("a");
    c.poll();
    c.push("b");
    c.poll();
    assert_eq!(c.written(), vec![vec!["a"], vec!["b"]]);
}

#[tokio::test(start_paused = true)]
async fn a_delay_cut_short_by_a_full_chunk_starts_afresh_for_the_next_frame() {
    let mut c = Running::new(Duration::from_millis(40));
    // 64-byte frames (2-byte header): exactly one chunk's worth, written in one go.
    let frame = "x".repeat(62);
    c.push(&frame);
    c.poll();
    while c.outbox.borrow().queued() < MAX_CHUNK {
        c.push(&frame);
    }
    c.poll();
    assert_eq!(c.written().len(), 1, "the full chunk went out at once");
    assert_eq!(c.outbox.borrow().queued(), 0);
    // Past the first frame's deadline, a new frame still waits its own delay.
    tokio::time::advance(Duration::from_millis(41)).await;
    c.push("b");
    c.poll();
    assert_eq!(
        c.written().len(),
        1,
        "the next frame went out without its delay"
    );
    tokio::time::advance(Duration::from_millis(41)).await;
    c.poll();
    assert_eq!(c.written()[1], vec!["b"]);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_held_past_the_sockets_soft_bound() {
    let mut c = Running::new(Duration::from_millis(40));
    c.outbox.borrow_mut().limit_hold(1024);
    let frame = "x".repeat(100);
    c.push(&frame);
    c.poll();
    assert!(c.written().is_empty(), "held below the bound");
    while c.outbox.borrow().queued() < 1024 {
        c.push(&frame);
    }
    c.poll();
    assert_eq!(
        c.outbox.borrow().queued(),
        0,
        "written once the bound was reached"
    );
    assert_eq!(c.written().concat().len(), 1024usize.div_ceil(102));
}
