//! Driving rustls's unbuffered connection: process what was read until it needs more or may
//! write, putting decrypted data and the records it wants sent into the stream's buffers.

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

/// Where the connection stands after processing what it was given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Stage {
    /// The handshake needs more from the peer.
    Handshaking,
    /// Application data may flow.
    Open,
    /// Both sides sent close_notify.
    Closed,
}

/// Append what `write` produces to `out`: first in `guess` bytes, then in as many as rustls asks
/// for if those were too few.
pub(super) fn encode_with<E: RequiredSize>(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<(), E> {
    let start = out.len();
    let mut size = guess;
    loop {
        out.resize(start + size, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => match e.required_size() {
                Some(required) if required > size => size = required,
                _ => {
                    out.truncate(start);
                    return Err(e);
                }
            },
        }
    }
}

/// What `len` plaintext bytes take as TLS 1.3 records (header, content type and tag per 16 KiB
/// record): the usual case in one pass. TLS 1.2 needs a little more and takes a second pass.
pub(super) fn sealed_len(len: usize) -> usize {
    len + len.div_ceil(16 * 1024).max(1) * (5 + 1 + 16)
}

pub(super) trait RequiredSize {
    fn required_size(&self) -> Option<usize>;
}

impl RequiredSize for EncryptError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Some(*required_size)
            }
            _ => None,
        }
    }
}

impl RequiredSize for EncodeError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Some(*required_size)
            }
            EncodeError::AlreadyEncoded => None,
        }
    }
}

pub(super) struct Outcome {
    pub(super) stage: Stage,
    pub(super) peer_closed: bool,
}

pub(super) enum Step {
    Continue,
    PeerClosed,
    Stop(Stage),
}

/// Process the records in `incoming` until rustls needs more, or may write. Returns how much of
/// `incoming` was used up (the rest is an incomplete record) and where the connection stands.
pub(super) fn process(
    conn: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    plaintext: &mut Vec<u8>,
    outgoing: &mut Vec<u8>,
) -> (usize, Result<Outcome, rustls::Error>) {
    let mut used = 0;
    let mut peer_closed = false;
    loop {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut incoming[used..]);
        let step = match state {
            Ok(ConnectionState::WriteTraffic(_)) => Ok(Step::Stop(Stage::Open)),
            Ok(state) => handle(state, plaintext, outgoing),
            Err(e) => Err(e),
        };
        used += discard;
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::PeerClosed) => peer_closed = true,
            Ok(Step::Stop(stage)) => return (used, Ok(Outcome { stage, peer_closed })),
            Err(e) => return (used, Err(e)),
        }
    }
}

/// One state other than `WriteTraffic`: decrypted data to `plaintext`, records to send to
/// `outgoing` (in order, so marking them sent at once is safe: nothing overtakes them).
pub(super) fn handle(
    state: ConnectionState<'_, '_, ServerConnectionData>,
    plaintext: &mut Vec<u8>,
    outgoing: &mut Vec<u8>,
) -> Result<Step, rustls::Error> {
    match state {
        ConnectionState::ReadTraffic(mut records) => {
            while let Some(record) = records.next_record() {
                plaintext.extend_from_slice(record?.payload);
            }
            Ok(Step::Continue)
        }
        ConnectionState::EncodeTlsData(mut data) => {
            encode_with(outgoing, 0, |space| data.encode(space))
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            Ok(Step::Continue)
        }
        ConnectionState::TransmitTlsData(data) => {
            data.done();
            Ok(Step::Continue)
        }
        ConnectionState::PeerClosed => Ok(Step::PeerClosed),
        ConnectionState::Closed => Ok(Step::Stop(Stage::Closed)),
        ConnectionState::BlockedHandshake => Ok(Step::Stop(Stage::Handshaking)),
        // The server config accepts no early data; rustls would refuse it before this.
        ConnectionState::ReadEarlyData(_) => Err(rustls::Error::General(
            "tls: early data is not accepted".into(),
        )),
        ConnectionState::WriteTraffic(_) => Ok(Step::Stop(Stage::Open)),
        _ => Err(rustls::Error::General("tls: unexpected state".into())),
    }
}
