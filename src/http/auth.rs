//! `POST /auth/register`, `/auth/login`, `/auth/logout`.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::Auth;
use crate::actors::auth as flows;
use crate::actors::db::Logout;
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::Attempt;
use crate::protocol::rest::{AuthResponse, ErrorBody, LoginRequest, RegisterRequest};
use crate::service::auth::SignedIn;

fn announce(state: &AppState, signed_in: &SignedIn) {
    if signed_in.new_device {
        state.notify(Notice::DeviceJoined {
            user_id: signed_in.response.user_id.clone(),
            device_id: signed_in.response.device_id.clone(),
        });
    }
}

#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    summary = "Register with an invite; the first user becomes admin.",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered and signed in", body = AuthResponse),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown invite", body = ErrorBody),
        (status = 409, description = "`conflict`: username already taken (the invite is not consumed)", body = ErrorBody),
        (status = 410, description = "`invite_used`, `invite_expired` or `invite_revoked`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    Attempt(req): Attempt<RegisterRequest>,
) -> Result<HttpResponse, AppError> {
    let signed_in = flows::register(&state.db, &state.passwords, req).await?;
    announce(&state, &signed_in);
    Ok(HttpResponse::Created().json(signed_in.response))
}

#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    summary = "Sign in; reuses or creates the device with `public_key`.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: wrong username or password, or a disabled account", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn login(
    state: web::Data<AppState>,
    Attempt(req): Attempt<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let signed_in = flows::login(&state.db, &state.passwords, &state.metrics, req).await?;
    announce(&state, &signed_in);
    Ok(HttpResponse::Ok().json(signed_in.response))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    summary = "Revoke the calling session.",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Session revoked; its WebSockets are closed"),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn logout(state: web::Data<AppState>, Auth(ctx): Auth) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    let session_id = ctx.session_id.clone();
    state
        .db
        .call_then(Logout { session_id }, move |_| {
            notify(Notice::SessionsRevoked {
                session_ids: vec![ctx.session_id],
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
