//! The listener: actix-server workers, each running the TLS handshake ([`super::tls`]) and then
//! actix-http's HTTP/1 service with the app and the WebSocket upgrade hook
//! ([`crate::ws::upgrade`]).
//!
//! Assembled here rather than with `actix_web::HttpServer`, which offers no upgrade hook: without
//! it a WebSocket would stay inside the HTTP/1 dispatcher for its whole life, with the
//! dispatcher's buffers and an extra copy of every frame (`ws::conn`). The settings are those
//! `HttpServer` was given before.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_codec::{AsyncRead, AsyncWrite};
use actix_http::body::MessageBody;
use actix_http::h1::ExpectHandler;
use actix_http::{HttpService, KeepAlive, Request};
use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, ServiceResponse};
use futures_util::future::LocalBoxFuture;

use super::tls::Acceptor;
use crate::ws::conn::Connections;
use crate::ws::upgrade::Upgrade;

/// What an actix-web `App` is as a service factory, as both [`serve`] and [`http`] need it.
pub trait AppFactory<B>:
    ServiceFactory<
        Request,
        Config = AppConfig,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
        InitError = (),
        Future: 'static,
        Service: Service<Request, Future: 'static> + 'static,
    > + 'static
{
}

impl<S, B> AppFactory<B> for S where
    S: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
            Future: 'static,
            Service: Service<Request, Future: 'static> + 'static,
        > + 'static
{
}

/// How the listener is run.
pub struct ListenOptions {
    pub workers: usize,
    /// For the whole server (split evenly over the workers).
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    /// Upgraded WebSocket connections, which run outside the listener's own count.
    pub connections: Arc<Connections>,
}

/// Serve `app` on `listener`, over TLS when `tls` is given (plain HTTP otherwise).
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    options: ListenOptions,
    app: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: AppFactory<B>,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let workers = options.workers.max(1);
    let builder = Server::build()
        .workers(workers)
        .max_concurrent_connections(options.max_connections.div_ceil(workers))
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        .disable_signals();
    let signal = builder.graceful_shutdown_signal();
    let connections = options.connections;
    let builder = match tls {
        Some(tls) => {
            let acceptor = Acceptor::new(Arc::new(tls));
            builder.listen("dialtone-https", listener, move || {
                acceptor
                    .clone()
                    .and_then(http(&app, addr, &signal, &connections))
            })?
        }
        None => builder.listen("dialtone-http", listener, move || {
            http(&app, addr, &signal, &connections).tcp()
        })?,
    };
    Ok(builder.run())
}

/// One worker's HTTP service: two instances of the app, one for plain requests and one inside
/// the upgrade hook.
fn http<T, F, I, S, B>(
    app: &F,
    addr: SocketAddr,
    signal: &GracefulShutdownSignal,
    connections: &Arc<Connections>,
) -> HttpService<T, Configured<S>, B, ExpectHandler, Upgrade<Configured<S>>>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    F: Fn() -> I,
    I: IntoServiceFactory<S, Request>,
    S: AppFactory<B>,
    B: MessageBody + 'static,
{
    let signal = signal.clone();
    HttpService::build()
        .keep_alive(KeepAlive::default())
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(5))
        // Events are small and latency-sensitive; the outbox already coalesces what is queued
        // into one write, so Nagle would only add delayed-ACK stalls.
        .tcp_nodelay(true)
        .local_addr(addr)
        .graceful_shutdown_signal(move || {
            let signal = signal.clone();
            async move { signal.notified().await }
        })
        .upgrade(Upgrade(
            Configured(app().into_factory()),
            connections.clone(),
        ))
        .finish(Configured(app().into_factory()))
}

/// The app as actix-http's service factory (which takes no config): the app's `AppConfig` only
/// feeds `ConnectionInfo` and URL generation, which dialtone does not use (client addresses come
/// from the peer address and the trusted-proxy list).
pub struct Configured<S>(S);

impl<S: ServiceFactory<Request, Config = AppConfig>> ServiceFactory<Request> for Configured<S>
where
    S::Future: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Config = ();
    type Service = S::Service;
    type InitError = S::InitError;
    type Future = LocalBoxFuture<'static, Result<S::Service, S::InitError>>;

    fn new_service(&self, _: ()) -> Self::Future {
        Box::pin(self.0.new_service(AppConfig::default()))
    }
}
