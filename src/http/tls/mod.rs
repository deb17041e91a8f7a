//! TLS for the listener: rustls's unbuffered API behind an `AsyncRead + AsyncWrite` stream
//! ([`stream`], driving rustls in [`records`]), and the service that runs each connection's
//! handshake ([`accept`]).
//!
//! In place of actix-tls's acceptor and tokio-rustls's stream, whose buffered rustls connection
//! keeps a read buffer for every idle socket; the limits are the same as actix-tls's defaults.

pub mod accept;
mod records;
pub mod stream;

pub use accept::Acceptor;
pub use stream::TlsStream;
