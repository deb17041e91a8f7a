//! The REST half of the layer: a per-resource middleware for the address-keyed buckets, and
//! extractors for the account-keyed ([`Attempt`]) and user-keyed ([`Throttled`]) ones. Handlers
//! name the limit in their signature and check nothing themselves.

use std::future::Future;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::{AccountLimit, IpLimit, Limits, UserLimit, client_ip};
use crate::app::AppState;
use crate::error::AppError;
use crate::http::extract::{Auth, Json, state};
use crate::protocol::rest::{LoginRequest, RegisterRequest};
use crate::service::auth::AuthContext;
use crate::service::validate::normalize_username;

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, AppError>>>>;

/// The client address of a request (see [`client_ip::resolve`]); `None` without a peer address
/// (a test request), which no address bucket then counts.
pub fn client_addr(req: &HttpRequest, limits: &Limits) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(client_ip::resolve(
        peer,
        forwarded.into_iter(),
        &limits.config().trusted_proxies,
    ))
}

async fn per_ip<B: MessageBody + 'static>(
    limit: IpLimit,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>()
        && let Some(ip) = client_addr(req.request(), &state.limits)
        && let Err(refused) = state.limits.check_ip(limit, ip)
    {
        return Ok(req.error_response(AppError::RateLimited(refused)));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Middleware of `POST /auth/login`: `DIALTONE_LIMIT_LOGIN_IP`, before the body is read.
pub async fn login_ip<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    per_ip(IpLimit::Login, req, next).await
}

/// Middleware of `POST /auth/register`: `DIALTONE_LIMIT_REGISTER_IP`.
pub async fn register_ip<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    per_ip(IpLimit::Register, req, next).await
}

/// Middleware of `GET /ws`: `DIALTONE_LIMIT_WS_UPGRADE_IP`, before the token is looked up.
pub async fn ws_upgrade_ip<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    per_ip(IpLimit::WsUpgrade, req, next).await
}

/// A request body that names an account.
pub trait AccountAttempt: DeserializeOwned + 'static {
    const LIMIT: AccountLimit;
    fn username(&self) -> &str;
}

impl AccountAttempt for LoginRequest {
    const LIMIT: AccountLimit = AccountLimit::Login;
    fn username(&self) -> &str {
        &self.username
    }
}

impl AccountAttempt for RegisterRequest {
    const LIMIT: AccountLimit = AccountLimit::Register;
    fn username(&self) -> &str {
        &self.username
    }
}

/// The JSON body of a login or registration, admitted by its account's bucket (before any
/// password work). The account is the keyed hash of the normalized username; a name that does
/// not normalize still gets a bucket (of its lowercased form), since a login with it still costs
/// a password check.
pub struct Attempt<T>(pub T);

impl<T: AccountAttempt> FromRequest for Attempt<T> {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = Json::<T>::from_request(req, payload);
        let state = state(req);
        let from = state
            .as_ref()
            .ok()
            .and_then(|s| client_addr(req, &s.limits));
        Box::pin(async move {
            let Json(body) = body.await?;
            let name = normalize_username(body.username())
                .unwrap_or_else(|_| body.username().trim().to_lowercase());
            let limits = &state?.limits;
            limits.check_account(T::LIMIT, &name, from)?;
            Ok(Attempt(body))
        })
    }
}

/// Which user-keyed bucket a [`Throttled`] request takes from.
pub trait Throttle: 'static {
    const LIMIT: UserLimit;
}

/// `GET /channels/messages` (shared with WebSocket `sync`).
pub struct History;
/// `POST /devices`.
pub struct DeviceCreation;
/// `POST /devices/list` (shares the device-creation bucket: both change a user's devices).
pub struct DeviceListUpload;
/// `POST /users/profiles`.
pub struct ProfileUpload;
/// `POST /channels/keys`, `POST /directory/keys`.
pub struct EnvelopeUpload;
/// Trust v2 channel changes: `POST|DELETE /channels/members`, `POST /channels/rotate`, `POST /channels/direct`. They share
/// the envelope bucket: each one hands out or withdraws keys.
pub struct Membership;
/// Listings whose cost grows with the deployment: `GET /channels`, `/channels/members`,
/// `/channels/keys`, `/directory/keys`, `/devices`, `/devices/keys`, `/devices/list`,
/// `/users/profiles`.
pub struct Reads;

impl Throttle for History {
    const LIMIT: UserLimit = UserLimit::History;
}
impl Throttle for DeviceCreation {
    const LIMIT: UserLimit = UserLimit::Devices;
}
impl Throttle for DeviceListUpload {
    const LIMIT: UserLimit = UserLimit::Devices;
}
impl Throttle for ProfileUpload {
    const LIMIT: UserLimit = UserLimit::Profiles;
}
impl Throttle for EnvelopeUpload {
    const LIMIT: UserLimit = UserLimit::Envelopes;
}
impl Throttle for Membership {
    const LIMIT: UserLimit = UserLimit::Envelopes;
}
impl Throttle for Reads {
    const LIMIT: UserLimit = UserLimit::Reads;
}

/// An authenticated session whose user had a token left in bucket `T`.
pub struct Throttled<T>(pub AuthContext, pub PhantomData<T>);

impl<T: Throttle> FromRequest for Throttled<T> {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Auth::from_request(req, payload);
        let state = state(req);
        Box::pin(async move {
            let Auth(ctx) = auth.await?;
            state?.limits.check_user(T::LIMIT, &ctx.user_id, 1)?;
            Ok(Throttled(ctx, PhantomData))
        })
    }
}

/// `POST /channels`: the caller and the body. A private channel (any user may create one) takes
/// a token of the envelope bucket, as the other trust v2 channel changes do ([`Membership`]); a
/// public one is admin-only and not throttled, as in v1.
pub struct NewChannel(
    pub AuthContext,
    pub crate::protocol::rest::CreateChannelRequest,
);

impl FromRequest for NewChannel {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Auth::from_request(req, payload);
        let body = Json::<crate::protocol::rest::CreateChannelRequest>::from_request(req, payload);
        let state = state(req);
        Box::pin(async move {
            let Auth(ctx) = auth.await?;
            let Json(body) = body.await?;
            if body.private {
                state?
                    .limits
                    .check_user(Membership::LIMIT, &ctx.user_id, 1)?;
            }
            Ok(NewChannel(ctx, body))
        })
    }
}
