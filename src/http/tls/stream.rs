//! A server TLS stream on rustls's unbuffered API, where this side owns the buffers.
//!
//! rustls's buffered connection keeps a 4 KiB read buffer for as long as a read is pending, which
//! for a WebSocket is its whole life, and queues every record it encrypts in a buffer of its own.
//! Here each read goes through a buffer on the stack: the records it holds are decrypted from
//! there, and only a record cut off at the end of the read is kept on the heap until the rest
//! arrives. Ciphertext is encrypted straight into one write buffer, released once the socket has
//! taken it. An idle connection therefore holds no buffer at all (BENCHMARKS.md, "Memory per idle
//! session").
//!
//! Owns: the socket and the TLS connection state.
//! Bounds: [`MAX_INCOMING`] of ciphertext waiting for the rest of its record or handshake message
//! (more is a protocol error: the connection fails); decrypted bytes the reader has not taken
//! (at most what one read decrypted, as the next read waits for them); and one write's ciphertext
//! (a write is accepted only once the previous one is on the socket).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncryptError, UnbufferedStatus, WriteTraffic};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::records::{Outcome, Stage, Step, encode_with, handle, process, sealed_len};

/// Bytes read from the socket per read call (one full TLS record and its header and tag).
const READ_SIZE: usize = 16 * 1024 + 512;

/// The most ciphertext kept while a record or a handshake message is incomplete. rustls's own
/// buffered connection allows handshake messages of up to 64 KiB; a record is at most 16 KiB and
/// its overhead.
const MAX_INCOMING: usize = 64 * 1024 + READ_SIZE;

/// The most plaintext encrypted per write call (the caller writes the rest next).
const MAX_WRITE: usize = 64 * 1024;

pub struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    stage: Stage,
    /// Ciphertext of a record (or handshake message) not yet complete; empty, with no
    /// allocation, between records.
    incoming: Vec<u8>,
    /// Decrypted bytes the reader has not taken yet, from `plain_at` on.
    plaintext: Vec<u8>,
    plain_at: usize,
    /// Ciphertext not yet on the socket, from `out_at` on.
    outgoing: Vec<u8>,
    out_at: usize,
    /// The peer sent close_notify, or closed the socket.
    read_closed: bool,
    /// Our close_notify is queued.
    write_closed: bool,
    /// What failed the connection; every later call reports it.
    failed: Option<io::ErrorKind>,
}

impl<IO> TlsStream<IO> {
    pub fn new(io: IO, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self {
            io,
            conn,
            stage: Stage::Handshaking,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            out_at: 0,
            read_closed: false,
            write_closed: false,
            failed: None,
        })
    }

    fn check(&self) -> io::Result<()> {
        match self.failed {
            Some(kind) => Err(kind.into()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: rustls::Error) -> io::Error {
        tracing::debug!(error = %e, "tls connection failed");
        self.failed = Some(io::ErrorKind::InvalidData);
        // The alert rustls queued to say why goes out with the ciphertext still unwritten, if
        // the socket takes it. One call only: rustls hands a queued alert over before it looks
        // at the input again, and looking again would fail (and alert) a second time. It is
        // given the bytes it kept, as it remembers positions in them; nothing is read after this.
        let mut incoming = std::mem::take(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut alert)) =
            self.conn.process_tls_records(&mut incoming).state
        {
            let _ = encode_with(&mut self.outgoing, 0, |space| alert.encode(space));
        }
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Hand what was read from the socket to rustls, keeping an incomplete record's tail.
    fn ingest(&mut self, data: &mut [u8]) -> io::Result<()> {
        if self.read_closed {
            // Nothing after close_notify is read; keeping it would only grow `incoming`.
            return Ok(());
        }
        let result = if self.incoming.is_empty() {
            let (used, result) = process(
                &mut self.conn,
                data,
                &mut self.plaintext,
                &mut self.outgoing,
            );
            self.incoming.extend_from_slice(&data[used..]);
            result
        } else {
            self.incoming.extend_from_slice(data);
            let (used, result) = process(
                &mut self.conn,
                &mut self.incoming,
                &mut self.plaintext,
                &mut self.outgoing,
            );
            self.incoming.drain(..used);
            if self.incoming.is_empty() {
                self.incoming = Vec::new();
            }
            result
        };
        self.settle(result)?;
        if self.incoming.len() > MAX_INCOMING {
            self.failed = Some(io::ErrorKind::InvalidData);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "tls: record or handshake message too large",
            ));
        }
        Ok(())
    }

    fn settle(&mut self, result: Result<Outcome, rustls::Error>) -> io::Result<()> {
        match result {
            Ok(outcome) => {
                self.stage = outcome.stage;
                self.read_closed |= outcome.peer_closed;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Run `f` with rustls in its write state (first processing anything it still holds, which
    /// never reads from the socket).
    fn with_writer<R>(
        &mut self,
        f: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> R,
    ) -> io::Result<Option<R>> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let mut f = Some(f);
        let mut out = None;
        let mut used = 0;
        let result = loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut incoming[used..]);
            let step = match state {
                Ok(ConnectionState::WriteTraffic(mut writer)) => {
                    if let Some(f) = f.take() {
                        out = Some(f(&mut writer, &mut self.outgoing));
                    }
                    used += discard;
                    break Ok(Outcome {
                        stage: Stage::Open,
                        peer_closed: false,
                    });
                }
                Ok(state) => handle(state, &mut self.plaintext, &mut self.outgoing),
                Err(e) => Err(e),
            };
            used += discard;
            match step {
                Ok(Step::Continue) => {}
                Ok(Step::PeerClosed) => self.read_closed = true,
                Ok(Step::Stop(stage)) => {
                    break Ok(Outcome {
                        stage,
                        peer_closed: false,
                    });
                }
                Err(e) => break Err(e),
            }
        };
        incoming.drain(..used);
        if !incoming.is_empty() {
            self.incoming = incoming;
        }
        self.settle(result)?;
        Ok(out)
    }

    /// Decrypted bytes are waiting for the reader.
    fn has_plaintext(&self) -> bool {
        self.plain_at < self.plaintext.len()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    /// Write the queued ciphertext to the socket.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        if self.outgoing.capacity() > 0 {
            self.outgoing = Vec::new();
            self.out_at = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Read once from the socket and process it. `false` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut space = [MaybeUninit::<u8>::uninit(); READ_SIZE];
        let mut buf = ReadBuf::uninit(&mut space);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            self.read_closed = true;
            return Poll::Ready(Ok(false));
        }
        self.ingest(buf.filled_mut())?;
        Poll::Ready(Ok(true))
    }

    /// Drive the handshake to its end.
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        if self.stage == Stage::Handshaking && self.incoming.is_empty() && self.outgoing.is_empty()
        {
            // Harmless when repeated: with nothing kept, rustls only says it is blocked again.
            // The server speaks second, but rustls must be asked before it is fed.
            let result = process(
                &mut self.conn,
                &mut [],
                &mut self.plaintext,
                &mut self.outgoing,
            )
            .1;
            self.settle(result)?;
        }
        loop {
            // Not waited for: the peer may be writing instead of reading, and once the handshake
            // is done what is left (session tickets) goes with the next read or write.
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
            match self.stage {
                Stage::Open => return Poll::Ready(Ok(())),
                Stage::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Stage::Handshaking => {}
            }
            if !ready!(self.poll_fill(cx))? {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.has_plaintext() {
                let available = &this.plaintext[this.plain_at..];
                let n = available.len().min(buf.remaining());
                buf.put_slice(&available[..n]);
                this.plain_at += n;
                if !this.has_plaintext() {
                    this.plaintext = Vec::new();
                    this.plain_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            this.check()?;
            // What reading made rustls say (a key update's answer, an alert) goes out even when
            // nothing is being written.
            if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_fill(cx))?;
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        // One write's ciphertext at a time: the socket's backpressure reaches the caller.
        ready!(this.poll_write_out(cx))?;
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &buf[..buf.len().min(MAX_WRITE)];
        let written = this.with_writer(|writer, out| {
            encode_with(out, sealed_len(data.len()), |space| {
                writer.encrypt(data, space)
            })
        })?;
        match written {
            Some(Ok(())) => {}
            Some(Err(EncryptError::EncryptExhausted)) => {
                this.failed = Some(io::ErrorKind::InvalidData);
                return Poll::Ready(Err(io::Error::other("tls: encrypter exhausted")));
            }
            Some(Err(EncryptError::InsufficientSize(_))) => {
                return Poll::Ready(Err(io::Error::other("tls: record did not fit")));
            }
            None => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
        // Accepted: a socket that takes only part of it now gets the rest on the next call.
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed && this.failed.is_none() && this.stage == Stage::Open {
            this.write_closed = true;
            let queued = this.with_writer(|writer, out| {
                encode_with(out, 0, |space| writer.queue_close_notify(space))
            })?;
            if let Some(Err(e)) = queued {
                tracing::debug!(error = %e, "tls close_notify not queued");
            }
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
