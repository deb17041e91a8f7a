//! Invites (`POST /server/invites`) and the operators' `/admin/` endpoints, served by the admin
//! actor. All accept an admin bearer session or `X-Admin-Token`.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::{Admin, OptionalJson};
use super::openapi::{InviteList, UserAction, UserList};
use crate::actors::admin::StatsReport;
use crate::actors::admin::{
    ListInvites, ListUsers, MintInvite, RevokeInvite, ServerStats, SetUserAdmin, SetUserDisabled,
};
use crate::error::AppError;
use crate::protocol::rest::{CreateInviteRequest, ErrorBody, InviteResponse};
use crate::service::{ServiceError, validate};

#[utoipa::path(
    post,
    path = "/server/invites",
    tag = "admin",
    summary = "Mint an invite.",
    request_body(content = Option<CreateInviteRequest>, description = "Optional; an empty body takes the defaults"),
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "The new invite (its token is shown only here)", body = InviteResponse),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn mint_invite(
    state: web::Data<AppState>,
    Admin(who): Admin,
    OptionalJson(req): OptionalJson<CreateInviteRequest>,
) -> Result<HttpResponse, AppError> {
    let invite = state
        .admin
        .call(MintInvite {
            req: req.unwrap_or_default(),
            created_by: who.user_id(),
        })
        .await?;
    Ok(HttpResponse::Created().json(invite))
}

#[utoipa::path(
    get,
    path = "/admin/invites",
    tag = "admin",
    summary = "List invites.",
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Every invite (never the tokens)", body = InviteList),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn list_invites(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, AppError> {
    let invites = state.admin.call(ListInvites).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "invites": invites })))
}

#[utoipa::path(
    delete,
    path = "/admin/invites/{id}",
    tag = "admin",
    summary = "Revoke an invite.",
    params(("id" = String, Path, format = Uuid, description = "Invite id (not the token)")),
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 404, description = "`not_found`: no such invite", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn revoke_invite(
    state: web::Data<AppState>,
    _: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    // Path segments are checked here, before the admin actor: whatever it does first (e.g. a
    // lookup) never sees a value the store cannot hold.
    validate::storable("invite id", &id)?;
    state.admin.call(RevokeInvite(id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "admin",
    summary = "List users.",
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Every user, with decrypted usernames", body = UserList),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn list_users(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, AppError> {
    let users = state.admin.call(ListUsers).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "users": users })))
}

/// `POST /admin/users/{id}/{disable|enable|promote|demote}`.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/{action}",
    tag = "admin",
    summary = "Disable, enable, promote or demote a user.",
    params(("id" = String, Path, format = Uuid, description = "User id"), ("action" = UserAction, Path, description = "What to do")),
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Done; `disable` revokes every session and closes its sockets"),
        (status = 400, description = "`invalid_request`: unknown action", body = ErrorBody),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn user_action(
    state: web::Data<AppState>,
    _: Admin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (user_id, action) = path.into_inner();
    validate::storable("user id", &user_id)?;
    match action.as_str() {
        "disable" | "enable" => {
            state
                .admin
                .call(SetUserDisabled {
                    user_id,
                    disabled: action == "disable",
                })
                .await?
        }
        "promote" | "demote" => {
            state
                .admin
                .call(SetUserAdmin {
                    user_id,
                    is_admin: action == "promote",
                })
                .await?
        }
        _ => {
            return Err(
                ServiceError::invalid("action must be disable, enable, promote or demote").into(),
            );
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/admin/stats",
    tag = "admin",
    summary = "Server statistics.",
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Server counters", body = StatsReport),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn stats(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, AppError> {
    let stats = state.admin.call(ServerStats).await?;
    Ok(HttpResponse::Ok().json(stats))
}
