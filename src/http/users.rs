//! `POST /users` (admin), `GET|POST /users/profiles`, `POST /presence`.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::{Admin, Auth, Json};
use crate::actors::db::{AdminFlags, CreatePlaceholderUser, ListProfiles, UpsertProfile};
use crate::actors::hub::{Notice, Presence};
use crate::error::AppError;
use crate::limits::rest::{ProfileUpload, Reads, Throttled};
use crate::protocol::rest::{
    CreateUserRequest, ErrorBody, PresenceRequest, PresenceResponse, ProfileRequest,
    ProfilesResponse, StatusOk, User,
};
use crate::service::ServiceError;
use crate::service::users::MAX_PRESENCE_IDS;

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    summary = "Create a password-less placeholder user (admin).",
    request_body = CreateUserRequest,
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Placeholder user created", body = User),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 409, description = "`conflict`: username already taken", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    _: Admin,
    Json(req): Json<CreateUserRequest>,
) -> Result<HttpResponse, AppError> {
    let user = state
        .db
        .call(CreatePlaceholderUser {
            username: req.username,
        })
        .await?;
    Ok(HttpResponse::Created().json(user))
}

#[utoipa::path(
    get,
    path = "/users/profiles",
    tag = "users",
    summary = "List encrypted profiles.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every profile, newest first", body = ProfilesResponse),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: trusted users only", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn profiles(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
) -> Result<HttpResponse, AppError> {
    let profiles = state.db.call(ListProfiles { ctx }).await?;
    Ok(HttpResponse::Ok().json(ProfilesResponse { profiles }))
}

#[utoipa::path(
    post,
    path = "/users/profiles",
    tag = "users",
    summary = "Set the caller's encrypted profile.",
    request_body = ProfileRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored; `user.profile.updated` is sent to everyone", body = StatusOk),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: trusted users only", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn upsert_profile(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<ProfileUpload>,
    Json(req): Json<ProfileRequest>,
) -> Result<HttpResponse, AppError> {
    let user_id = ctx.user_id.clone();
    let notify = state.notifier();
    state
        .db
        .call_then(UpsertProfile { ctx, req }, move |_| {
            notify(Notice::ProfileUpdated { user_id })
        })
        .await?;
    Ok(HttpResponse::Created().json(StatusOk::ok()))
}

#[utoipa::path(
    post,
    path = "/presence",
    tag = "users",
    summary = "Presence of up to 1,000 users.",
    request_body = PresenceRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Online and admin flags of each id", body = PresenceResponse),
        (status = 400, description = "`invalid_request`: more than 1,000 ids or an invalid id; `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn presence(
    state: web::Data<AppState>,
    _: Auth,
    Json(req): Json<PresenceRequest>,
) -> Result<HttpResponse, AppError> {
    if req.user_ids.len() > MAX_PRESENCE_IDS {
        return Err(ServiceError::invalid(format!(
            "user_ids may hold at most {MAX_PRESENCE_IDS} ids"
        ))
        .into());
    }
    let statuses = state
        .hub
        .ask(Presence(req.user_ids.clone()))
        .await
        .map_err(|_| ServiceError::Busy("server shutting down"))?;
    let admins = state
        .db
        .call(AdminFlags {
            user_ids: req.user_ids,
        })
        .await?;
    Ok(HttpResponse::Ok().json(PresenceResponse { statuses, admins }))
}
