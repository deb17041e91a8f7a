//! `GET /ws`: authenticate before the upgrade, then hand the socket to a [`session::WsSession`].
//!
//! The token is checked twice: before the session starts, and again once the hub has registered
//! it (before the 101), so a revocation racing the upgrade cannot leave a socket open.

pub mod conn;
pub mod frames;
pub mod pipe;
pub mod session;
pub mod shard;
pub mod upgrade;

use actix::Actor;
use actix::AsyncContext;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;

use self::conn::{CanUpgrade, Takeover};
use self::frames::{Inbound, Outbox, PeerGone};
use self::session::WsSession;
use crate::actors::db::Authenticate;
use crate::actors::hub::Notice;
use crate::app::{AppState, bearer_token};
use crate::error::AppError;
use crate::limits::ws::SessionBudget;
use crate::protocol::ws::{BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL};
use crate::service::ServiceError;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// `none`: start with no channel subscriptions.
    #[serde(default)]
    pub subscribe: Option<String>,
}

/// The bearer token offered as a subprotocol (`dialtone.v1, bearer.<token>`), for browsers that
/// cannot set headers on a WebSocket.
fn subprotocol_token(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get("sec-websocket-protocol")?.to_str().ok()?;
    header
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix(BEARER_SUBPROTOCOL_PREFIX))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// The `subscribe` query parameter of `GET /ws`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeMode {
    /// Subscribed to every channel (the default, dialtone v1 behaviour).
    All,
    /// No subscriptions until the client sends `subscribe`.
    None,
}

#[utoipa::path(
    get,
    path = "/ws",
    tag = "websocket",
    summary = "Upgrade to the real-time WebSocket (SPEC §5).",
    description = "Authenticated before the upgrade: `Authorization: Bearer`, or for browsers the \
        subprotocol list `Sec-WebSocket-Protocol: dialtone.v1, bearer.<token>` (answered with \
        `dialtone.v1`). Each text frame holds one JSON object: the client sends `ClientFrame`s, the \
        server sends `Event`s (see components). Inbound frames over 64 KiB close the socket with \
        1009; a slow consumer is closed with 1008; shutdown closes with 1001.",
    params(
        ("subscribe" = Option<SubscribeMode>, Query, description = "`none`: start with no channel subscriptions"),
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Connection" = String, Header, description = "`Upgrade`"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "16 random bytes, base64"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching Protocols: the socket is open"),
        (status = 400, description = "`invalid_request`: not a WebSocket upgrade, or a bad `subscribe`", body = crate::protocol::rest::ErrorBody),
        (status = 401, description = "`unauthorized` or `token_expired`: no upgrade", body = crate::protocol::rest::ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = crate::protocol::rest::ErrorBody),
        (status = 503, description = "`too_many_connections`: the server is at its socket limit; `unavailable`: the database", body = crate::protocol::rest::ErrorBody),
    )
)]
pub async fn upgrade(
    req: HttpRequest,
    query: web::Query<WsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if state.metrics.ws_connections.get() >= state.ws.max_sessions as i64 {
        state.metrics.ws_refused_total.inc();
        return Err(AppError::TooManyConnections);
    }
    let subscribe_all = match query.subscribe.as_deref() {
        None | Some("all") => true,
        Some("none") => false,
        Some(_) => {
            return Err(AppError::bad_request("subscribe must be `all` or `none`"));
        }
    };
    let token = bearer_token(&req)
        .or_else(|| subprotocol_token(&req))
        .ok_or(ServiceError::Unauthorized)?;
    let from = crate::limits::rest::client_addr(&req, &state.limits);
    let auth = state.authenticate(from, token.clone()).await?;
    // Held by the session until it stops; refused here, before the upgrade, when the user already
    // has DIALTONE_MAX_SOCKETS_PER_USER open.
    let slot = state.limits.acquire_socket(&auth.user_id)?;
    let budget = SessionBudget::new(state.limits.clone(), auth.user_id.clone(), slot);
    let joined = Notice::DeviceJoined {
        user_id: auth.user_id.clone(),
        device_id: auth.device_id.clone(),
    };

    let mut response = actix_web_actors::ws::handshake_with_protocols(&req, &[SUBPROTOCOL])
        .map_err(|e| AppError::bad_request(format!("not a WebSocket upgrade: {e}")))?;
    // Only a connection the upgrade service will take over can be upgraded (`ws::upgrade`).
    if req.extensions().get::<CanUpgrade>().is_none() {
        return Err(AppError::bad_request(
            "not a WebSocket upgrade: send `Upgrade: websocket` over HTTP/1.1",
        ));
    }
    // Take the slot atomically (the check above only spares the database when obviously full):
    // concurrent upgrades cannot overshoot the limit. The session gives it back when it stops.
    if state.metrics.ws_connections.inc() >= state.ws.max_sessions as i64 {
        state.metrics.ws_connections.dec();
        state.metrics.ws_refused_total.inc();
        return Err(AppError::TooManyConnections);
    }
    let (registered, is_registered) = tokio::sync::oneshot::channel();
    let outbox = Outbox::new();
    outbox.borrow_mut().limit_hold(state.ws.outbox_bytes);
    // What the connection reads comes through this pipe (`ws::conn`).
    let (feed, read) = pipe::pipe();
    let inbound = Inbound::new(read, state.ws.max_frame);
    let session = WsSession::new(
        auth,
        subscribe_all,
        state.hub.clone(),
        state.db.clone(),
        outbox.clone(),
        state.ws.clone(),
        state.metrics.clone(),
        budget,
        registered,
    );
    let mailbox = state.ws.mailbox;
    let session = WsSession::create(move |ctx| {
        ctx.set_mailbox_capacity(mailbox);
        ctx.add_stream(inbound);
        session
    });
    // Answer 101 only once the hub has the session: what the client sends first, and what REST
    // changes after its upgrade (a logout, a new channel), find it registered.
    if is_registered.await != Ok(true) {
        return Err(ServiceError::Busy("server shutting down").into());
    }
    // Revocation race: a logout, disable or device deletion that committed after the check above
    // sent its notice to the hub before this session was registered, so the hub found nothing to
    // close. Checking again now closes that window: a revocation committed before this read is
    // seen here, and one committed after it notifies the hub after the registration, which
    // closes the socket like any other.
    if let Err(e) = state.db.call(Authenticate { token }).await {
        // One message per refused upgrade (bounded like the upgrades): `do_send` is fine here.
        session.do_send(PeerGone);
        return Err(e.into());
    }
    // SPEC §5, issue 10 item 7: v1 servers announce `device.joined` on every new connection, not
    // only when a device is created, and v1 clients re-share their keys when they see it. So a
    // v1 client's newly connected device gets its keys. Sent once the session is registered and
    // its token checked again, so the device's own socket receives it too.
    state.notify(joined);
    response.extensions_mut().insert(Takeover {
        feed,
        outbox,
        write_delay: state.ws.write_delay,
    });
    Ok(response.finish())
}
