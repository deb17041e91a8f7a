//! The TLS handshake of each accepted connection, as the first service of the listener's chain.
//!
//! Owns: the connections of one worker that are in their handshake.
//! Bounds: [`MAX_HANDSHAKES`] at once per worker (more wait in the listener's backlog: the
//! service is not ready until one finishes), each given [`HANDSHAKE_TIMEOUT`], after which the
//! connection is dropped. Both are actix-tls's defaults, which this replaces.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::Protocol;
use actix_http::error::DispatchError;
use actix_service::{Service, ServiceFactory};
use actix_utils::counter::Counter;
use actix_web::rt::net::TcpStream;
use futures_util::future::{LocalBoxFuture, Ready, ready};

use super::TlsStream;

/// Handshakes in progress per worker.
pub const MAX_HANDSHAKES: usize = 256;

/// How long a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The factory: one [`AcceptorService`] per worker.
#[derive(Clone)]
pub struct Acceptor {
    config: Arc<rustls::ServerConfig>,
}

impl Acceptor {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self { config }
    }
}

/// What the HTTP service takes: the stream, its protocol (HTTP/1.1 only: the listener offers no
/// other by ALPN) and the peer's address.
pub type Accepted = (TlsStream<TcpStream>, Protocol, Option<SocketAddr>);

impl ServiceFactory<TcpStream> for Acceptor {
    type Response = Accepted;
    type Error = DispatchError;
    type Config = ();
    type Service = AcceptorService;
    type InitError = ();
    type Future = Ready<Result<AcceptorService, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        ready(Ok(AcceptorService {
            config: self.config.clone(),
            handshakes: Counter::new(MAX_HANDSHAKES),
        }))
    }
}

pub struct AcceptorService {
    config: Arc<rustls::ServerConfig>,
    handshakes: Counter,
}

impl Service<TcpStream> for AcceptorService {
    type Response = Accepted;
    type Error = DispatchError;
    type Future = LocalBoxFuture<'static, Result<Accepted, DispatchError>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.handshakes.available(cx) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&self, io: TcpStream) -> Self::Future {
        let guard = self.handshakes.get();
        let config = self.config.clone();
        // Boxed: the handshake's state is needed only until it ends, not for the connection's life.
        Box::pin(async move {
            // Events are small and latency-sensitive, and the outbox already coalesces what is
            // queued into one write: Nagle would only add delayed-ACK stalls.
            let _ = io.set_nodelay(true);
            let peer = io.peer_addr().ok();
            let mut tls = TlsStream::new(io, config).map_err(DispatchError::Io)?;
            let handshake = std::future::poll_fn(|cx| tls.poll_handshake(cx));
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(DispatchError::Io(e)),
                Err(_) => return Err(DispatchError::Io(io::ErrorKind::TimedOut.into())),
            }
            drop(guard);
            Ok((tls, Protocol::Http1, peer))
        })
    }
}
