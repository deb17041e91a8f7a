//! WebSocket framing between the socket and a session actor.
//!
//! [`Inbound`] turns the request payload into whole messages (reassembling fragments, enforcing the
//! size limit on each frame's *declared* length, so an oversized frame is refused from its header
//! before any of its payload is buffered). [`Outbox`] is the socket's bounded outbound queue: the
//! session actor and its delivery shard encode frames into it and the connection
//! ([`super::conn`]) drains it, so everything queued between two socket writes goes out in one
//! write (write coalescing).
//!
//! The outbox is polled by the connection, never by the actor: a peer that stops reading stalls only
//! its own connection, while the actor keeps running (heartbeats, mailbox) and closes the socket
//! as a slow consumer once the outbox passes its bound. That is why sessions use a plain actix
//! `Context` with this outbox instead of `actix-web-actors`' `WebsocketContext`, whose actor is
//! only driven while the socket accepts writes and whose outbound buffer is unbounded.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix::prelude::*;
use actix_codec::{Decoder, Encoder};
use actix_web::error::PayloadError;
use actix_web_actors::ws::{CloseReason, Frame, Message as WsMessage, ProtocolError};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// A whole inbound message.
#[derive(Debug)]
pub enum InMessage {
    Text(Bytes),
    Binary,
    Ping(Bytes),
    Pong,
    Close(Option<CloseReason>),
}

/// Decodes a request payload into whole WebSocket messages.
pub struct Inbound<S> {
    stream: S,
    codec: actix_http::ws::Codec,
    buf: BytesMut,
    eof: bool,
    /// A fragmented message being reassembled: (is text, bytes so far).
    partial: Option<(bool, BytesMut)>,
    max: usize,
}

impl<S> Inbound<S> {
    pub fn new(stream: S, max: usize) -> Self {
        Self {
            stream,
            codec: actix_http::ws::Codec::new().max_size(max),
            buf: BytesMut::new(),
            eof: false,
            partial: None,
            max,
        }
    }

    fn frame(&mut self, frame: Frame) -> Result<Option<InMessage>, ProtocolError> {
        use actix_http::ws::Item;
        Ok(match frame {
            Frame::Text(b) => Some(InMessage::Text(b)),
            Frame::Binary(_) => Some(InMessage::Binary),
            Frame::Ping(b) => Some(InMessage::Ping(b)),
            Frame::Pong(_) => Some(InMessage::Pong),
            Frame::Close(reason) => Some(InMessage::Close(reason)),
            Frame::Continuation(item) => match item {
                Item::FirstText(b) => {
                    self.partial = Some((true, BytesMut::from(&b[..])));
                    None
                }
                Item::FirstBinary(b) => {
                    self.partial = Some((false, BytesMut::from(&b[..])));
                    None
                }
                Item::Continue(b) => {
                    let (_, acc) = self
                        .partial
                        .as_mut()
                        .ok_or(ProtocolError::ContinuationNotStarted)?;
                    acc.extend_from_slice(&b);
                    if acc.len() > self.max {
                        return Err(ProtocolError::Overflow);
                    }
                    None
                }
                Item::Last(b) => {
                    let (text, mut acc) = self
                        .partial
                        .take()
                        .ok_or(ProtocolError::ContinuationNotStarted)?;
                    acc.extend_from_slice(&b);
                    if acc.len() > self.max {
                        return Err(ProtocolError::Overflow);
                    }
                    Some(if text {
                        InMessage::Text(acc.freeze())
                    } else {
                        InMessage::Binary
                    })
                }
            },
        })
    }
}

impl<S> Stream for Inbound<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<InMessage, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // actix-http's codec checks its `max_size` only once the whole frame is buffered, so
            // a header declaring 2^63-1 bytes would have it buffer for ever: refuse on the header.
            if let Some((opcode, declared)) = declared_frame(&this.buf) {
                let so_far = match (opcode, &this.partial) {
                    (OPCODE_CONTINUATION, Some((_, acc))) => acc.len() as u64,
                    _ => 0,
                };
                if declared.saturating_add(so_far) > this.max as u64 {
                    this.buf.clear();
                    return Poll::Ready(Some(Err(ProtocolError::Overflow)));
                }
            }
            match this.codec.decode(&mut this.buf) {
                Ok(Some(frame)) => match this.frame(frame) {
                    Ok(Some(msg)) => return Poll::Ready(Some(Ok(msg))),
                    Ok(None) => continue,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
                Ok(None) if this.eof => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            match Pin::new(&mut this.stream).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(
                        e.to_string(),
                    )))));
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => {
                    if this.buf.is_empty() {
                        // A quiet socket keeps no read buffer.
                        this.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Opcode of a continuation frame (RFC 6455 §5.2).
const OPCODE_CONTINUATION: u8 = 0x0;

/// The opcode and declared payload length of the frame at the start of `buf`, once its header's
/// length bytes have arrived (RFC 6455 §5.2: 7-bit length, or 126 + 16-bit, or 127 + 64-bit).
fn declared_frame(buf: &[u8]) -> Option<(u8, u64)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let opcode = first & 0x0F;
    let declared = match second & 0x7F {
        126 => u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        127 => u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?),
        n => u64::from(n),
    };
    Some((opcode, declared))
}

/// Sent to the session when the connection drops its response body (peer gone).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct PeerGone;

/// A socket's outbound queue, shared (same thread) by the session actor and the response body.
pub struct Outbox {
    buf: BytesMut,
    /// Length of each frame in `buf`, in order: the connection is handed whole frames only, so
    /// discarding the queue never cuts a frame in half.
    frame_lens: VecDeque<usize>,
    codec: actix_http::ws::Codec,
    waker: Option<Waker>,
    /// A close frame is queued: nothing may follow it.
    sealed: bool,
    /// Backlog already reported to the session: 1 = soft bound, 2 = hard bound.
    backlog_reported: u8,
    /// Passed its hard bound: the socket is being closed as a slow consumer, so data frames are
    /// refused until the close frame (which still goes out).
    overflowed: bool,
    /// No more frames: the body ends once `buf` is written.
    closing: bool,
    /// Drop the connection now, without writing what is queued.
    abort: bool,
    /// The connection is holding frames back to coalesce them (`DIALTONE_WS_WRITE_DELAY_MS`):
    /// a data frame does not wake it, unless the queue reaches `hold_max`.
    holding: bool,
    /// The most the connection may hold back: a chunk, or less if the soft bound is smaller, so
    /// held frames never make a socket that keeps up look like a slow consumer.
    hold_max: usize,
    peer_gone: Option<Recipient<PeerGone>>,
}

/// The shared handle.
pub type SharedOutbox = Rc<RefCell<Outbox>>;

impl Outbox {
    pub fn new() -> SharedOutbox {
        Rc::new(RefCell::new(Outbox {
            buf: BytesMut::new(),
            frame_lens: VecDeque::new(),
            codec: actix_http::ws::Codec::new(),
            waker: None,
            sealed: false,
            backlog_reported: 0,
            overflowed: false,
            closing: false,
            abort: false,
            holding: false,
            hold_max: MAX_CHUNK,
            peer_gone: None,
        }))
    }

    /// Queue one frame. Returns the bytes now queued.
    pub fn push(&mut self, msg: WsMessage) -> usize {
        if self.sealed || self.overflowed || self.closing || self.abort {
            return self.buf.len();
        }
        if self.buf.capacity() == 0 {
            // One allocation per write: grown frame by frame from empty, the buffer would be
            // reallocated and copied at every doubling (profiled at 200 k deliveries/s: ~7 % of
            // the server's samples in those copies and the fresh pages behind them).
            self.buf.reserve(FIRST_RESERVE);
        }
        let before = self.buf.len();
        if let Err(e) = self.codec.encode(msg, &mut self.buf) {
            tracing::warn!(error = %e, "websocket frame encoding failed");
            self.buf.truncate(before);
            return before;
        }
        self.frame_lens.push_back(self.buf.len() - before);
        if !self.holding || self.buf.len() >= self.hold_max {
            self.wake();
        }
        self.buf.len()
    }

    /// Record that the backlog passed the soft (`hard: false`) or hard bound; `true` the first
    /// time at that level, so the session is told once.
    pub fn report_backlog(&mut self, hard: bool) -> bool {
        let level = if hard { 2 } else { 1 };
        if self.backlog_reported >= level {
            return false;
        }
        self.backlog_reported = level;
        true
    }

    /// The session has looked at the backlog: report again when it grows past a bound.
    pub fn clear_backlog_report(&mut self) {
        self.backlog_reported = 0;
    }

    /// Bytes queued and not yet handed to the connection.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Queue a close frame after everything already queued. The stream stays open (the closing
    /// handshake is the session's business); nothing can be queued after it.
    pub fn push_close(&mut self, reason: CloseReason) {
        if self.closing || self.abort {
            return;
        }
        let before = self.buf.len();
        match self
            .codec
            .encode(WsMessage::Close(Some(reason)), &mut self.buf)
        {
            Ok(()) => self.frame_lens.push_back(self.buf.len() - before),
            Err(_) => self.buf.truncate(before),
        }
        self.sealed = true;
        self.wake();
    }

    /// The queue passed its hard bound: drop what is queued and refuse further data frames, at
    /// once, so the bound holds even before the session gets to close the socket.
    pub fn overflow(&mut self) {
        self.overflowed = true;
        self.discard();
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Throw away what is queued and not yet handed to the connection.
    pub fn discard(&mut self) {
        self.buf.clear();
        self.frame_lens.clear();
    }

    /// Take whole frames, up to `MAX_CHUNK` bytes (at least one frame), for the connection.
    fn take_chunk(&mut self) -> Bytes {
        let mut n = 0;
        while let Some(&len) = self.frame_lens.front() {
            if n > 0 && n + len > MAX_CHUNK {
                break;
            }
            n += len;
            self.frame_lens.pop_front();
        }
        let chunk = self.buf.split_to(n).freeze();
        if self.buf.is_empty() {
            // Let the allocation go with the chunk once it is written: an idle socket keeps no
            // buffer (what a busy one gains by reusing it, the next push re-allocates anyway, as
            // the chunk still shares it).
            self.buf = BytesMut::new();
            // A burst (a join announced to every socket) grows this to its depth: keep only
            // what steady traffic needs.
            if self.frame_lens.capacity() > 16 {
                self.frame_lens = VecDeque::new();
            }
        }
        chunk
    }

    /// The next chunk for the connection: whole frames only, so what the connection has not
    /// taken can still be discarded without cutting a frame. Hands the connection one chunk at a
    /// time: what the socket has not accepted stays here, where the session can see the backlog.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        (!self.frame_lens.is_empty()).then(|| self.take_chunk())
    }

    /// Whether the connection may keep what is queued back a little longer to write it together
    /// with what follows: only data frames, and less than `hold_max` of them. A close, a finish
    /// or a full chunk goes out at once.
    pub fn may_hold(&self) -> bool {
        !self.frame_lens.is_empty()
            && !self.sealed
            && !self.closing
            && !self.abort
            && self.buf.len() < self.hold_max
    }

    /// Hold back at most `bytes` (the socket's soft bound), and never more than a chunk.
    pub fn limit_hold(&mut self, bytes: usize) {
        self.hold_max = bytes.min(MAX_CHUNK);
    }

    /// While `on`, a queued data frame does not wake the connection (its timer will).
    pub fn hold(&mut self, on: bool) {
        self.holding = on;
    }

    /// Everything is handed over and no more frames will come.
    pub fn finished(&self) -> bool {
        self.closing && self.frame_lens.is_empty()
    }

    /// The session gave up on the peer (see [`Outbox::abort`]).
    pub fn aborted(&self) -> bool {
        self.abort
    }

    /// Wake the connection's task when a frame is queued, or on a finish or an abort.
    pub fn register(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }

    /// The connection is gone: the session must hear it (once) and stop.
    pub fn detach(&mut self) {
        self.waker = None;
        // why `do_send`: once per connection (`take`), and the session must hear it.
        if let Some(r) = self.peer_gone.take() {
            r.do_send(PeerGone);
        }
    }

    /// End the stream once what is queued is handed over.
    pub fn finish(&mut self) {
        self.closing = true;
        self.wake();
    }

    /// Drop the connection at once (the peer stopped answering).
    pub fn abort(&mut self) {
        self.abort = true;
        self.wake();
    }

    pub fn set_peer_gone(&mut self, recipient: Recipient<PeerGone>) {
        self.peer_gone = Some(recipient);
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What an empty outbox reserves when a frame is queued: room for the frames a busy socket
/// gathers between two writes (a few hundred bytes each), so it is allocated once per write.
const FIRST_RESERVE: usize = 4096;

/// Largest piece of the outbox handed to the connection per poll.
pub(super) const MAX_CHUNK: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    fn text(n: usize) -> WsMessage {
        WsMessage::Text(ByteString::from("x".repeat(n)))
    }

    #[test]
    fn declared_lengths_are_read_from_the_header() {
        assert_eq!(declared_frame(&[0x81]), None);
        assert_eq!(declared_frame(&[0x81, 0x85]), Some((1, 5)));
        assert_eq!(declared_frame(&[0x80, 0xFE, 0x01]), None);
        assert_eq!(declared_frame(&[0x80, 0xFE, 0x01, 0x00]), Some((0, 256)));
        let mut huge = vec![0x81, 0xFF];
        huge.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
        assert_eq!(declared_frame(&huge[..9]), None);
        assert_eq!(declared_frame(&huge), Some((1, i64::MAX as u64)));
    }

    #[test]
    fn chunks_are_whole_frames_and_drain_everything() {
        let outbox = Outbox::new();
        let mut o = outbox.borrow_mut();
        let mut total = 0;
        for n in [10, 40_000, 30_000, 70_000, 5] {
            total = o.push(text(n));
        }
        let mut handed = 0;
        let mut chunks = 0;
        while !o.buf.is_empty() {
            let c = o.take_chunk();
            assert!(!c.is_empty());
            handed += c.len();
            chunks += 1;
        }
        assert_eq!(handed, total);
        assert!(o.frame_lens.is_empty());
        assert_eq!(chunks, 4);
    }

    #[test]
    fn an_overflowed_outbox_takes_only_its_close_frame() {
        let outbox = Outbox::new();
        let mut o = outbox.borrow_mut();
        o.push(text(1000));
        o.overflow();
        assert_eq!(o.queued(), 0);
        assert_eq!(o.push(text(1000)), 0, "no data frame after the overflow");
        o.push_close(CloseReason {
            code: actix_web_actors::ws::CloseCode::Policy,
            description: None,
        });
        let close = o.take_chunk();
        assert_eq!(&close[..2], &[0x88, 0x02]);
        assert!(o.buf.is_empty());
    }

    #[test]
    fn discard_keeps_frames_whole() {
        let outbox = Outbox::new();
        let mut o = outbox.borrow_mut();
        o.push(text(50_000));
        o.push(text(50_000));
        let first = o.take_chunk();
        assert_eq!(first.len(), 50_000 + 4);
        o.discard();
        o.push_close(CloseReason {
            code: actix_web_actors::ws::CloseCode::Policy,
            description: None,
        });
        let close = o.take_chunk();
        assert_eq!(&close[..2], &[0x88, 0x02], "a whole close frame, unmasked");
        assert!(o.buf.is_empty());
    }
}
