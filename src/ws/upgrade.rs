//! actix-http's upgrade hook: what lets a WebSocket leave the HTTP/1 dispatcher after its 101.
//!
//! A request that asks for a WebSocket (`Upgrade: websocket`) comes here instead of to the app,
//! with its connection. It still goes through the whole app — middleware, limits and the
//! `GET /ws` handler — like any other request: this service calls an instance of the same app.
//! When the app answers 101 with a [`Takeover`], this service writes the 101 and hands the socket
//! to a task of its own ([`conn::drive`]), so this future and the dispatcher's task end there. Any other answer (401, 429, a 404 for another path…) is written as it is,
//! and the connection closes, as after any refused upgrade.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::body::{self, BodySize, BoxBody, MessageBody};
use actix_http::h1::{self, Message};
use actix_http::{ConnectionType, HttpMessage, Request, Response, StatusCode};
use actix_service::{Service, ServiceFactory};
use actix_web::dev::ServiceResponse;
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::future::LocalBoxFuture;

use super::conn::{self, CanUpgrade, Connections, Detach, Takeover};

/// The largest refusal body written (they are short JSON errors).
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// How long writing a refusal may take before the connection is dropped.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The upgrade service's factory, around (one worker's instance of) the app's factory, with the
/// server's count of upgraded connections.
pub struct Upgrade<S>(pub S, pub Arc<Connections>);

impl<T, S, B> ServiceFactory<(Request, Framed<T, h1::Codec>)> for Upgrade<S>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: ServiceFactory<
            Request,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        >,
    S::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = actix_web::Error;
    type Config = ();
    type Service = UpgradeService<S::Service>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Service, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let app = self.0.new_service(());
        let connections = self.1.clone();
        Box::pin(async move { Ok(UpgradeService(Rc::new(app.await?), connections)) })
    }
}

/// One worker's upgrade service.
pub struct UpgradeService<S>(Rc<S>, Arc<Connections>);

impl<T, S, B> Service<(Request, Framed<T, h1::Codec>)> for UpgradeService<S>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<(), actix_web::Error>>;

    actix_service::always_ready!();

    fn call(&self, (req, framed): (Request, Framed<T, h1::Codec>)) -> Self::Future {
        Box::pin(serve(self.0.clone(), self.1.clone(), req, framed))
    }
}

/// Never fails: what goes wrong is the peer's doing (it left), and an error here would only
/// make actix-http log it at ERROR.
async fn serve<T, S, B>(
    app: Rc<S>,
    connections: Arc<Connections>,
    req: Request,
    mut framed: Framed<T, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    req.extensions_mut().insert(CanUpgrade);
    // Boxed, here and for the refusal below: the app's handler future is several KiB, and this
    // one is allocated for every upgrade; boxed, that memory goes as soon as the app has answered
    // (BENCHMARKS.md, "Where an idle session's memory goes").
    let mut res: Response<BoxBody> = match Box::pin(app.call(req)).await {
        Ok(res) => Response::from(res).map_into_boxed_body(),
        Err(e) => e.error_response().into(),
    };
    let takeover = res.extensions_mut().remove::<Takeover>();
    match takeover {
        Some(takeover) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            // From here on, however this ends, the session hears that its connection is gone.
            let detach = Detach(takeover.outbox.clone());
            let (head, _) = res.into_parts();
            if let Err(e) = framed.send(Message::Item((head, BodySize::None))).await {
                tracing::debug!(error = %e, "websocket 101 not written");
                return Ok(());
            }
            let parts = framed.into_parts();
            // Copied out so the dispatcher's buffers go now, not with the connection.
            let early = Bytes::copy_from_slice(&parts.read_buf);
            drop((parts.read_buf, parts.write_buf));
            // A task of its own, so the dispatcher's task and this future end now (`Connections`).
            let live = connections.enter();
            let io = parts.io;
            actix_web::rt::spawn(async move {
                conn::drive(io, early, takeover, detach).await;
                drop(live);
            });
        }
        _ => {
            if tokio::time::timeout(REFUSAL_TIMEOUT, Box::pin(refuse(res, &mut framed)))
                .await
                .is_err()
            {
                tracing::debug!("refused upgrade: peer did not take the answer");
            }
        }
    }
    Ok(())
}

/// Write a response that is not a 101, then close the connection.
async fn refuse<T>(mut res: Response<BoxBody>, framed: &mut Framed<T, h1::Codec>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    res.head_mut().set_connection_type(ConnectionType::Close);
    let (head, body) = res.into_parts();
    let bytes = body::to_bytes_limited(body, MAX_REFUSAL_BODY)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let size = BodySize::Sized(bytes.len() as u64);
    // Head and body in one write: a WebSocket client reads a refusal's body only from what
    // arrived with its head.
    let written = async {
        framed.feed(Message::Item((head, size))).await?;
        if !bytes.is_empty() {
            framed.feed(Message::Chunk(Some(bytes))).await?;
        }
        framed.feed(Message::Chunk(None)).await?;
        // actix-codec's `close` shuts the socket down without writing its buffer: flush first.
        framed.flush().await?;
        framed.close().await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, "refused upgrade: answer not written");
    }
}
