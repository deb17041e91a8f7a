//! Invites (`POST /server/invites`) and the operators' `/admin/` endpoints, served by the admin
//! actor. All accept an admin bearer session or `X-Admin-Token`.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::{Admin, OptionalJson};
use crate::actors::admin::{
    ListInvites, ListUsers, MintInvite, RevokeInvite, ServerStats, SetUserAdmin, SetUserDisabled,
};
use crate::error::AppError;
use crate::protocol::rest::CreateInviteRequest;
use crate::service::{ServiceError, validate};

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

pub async fn list_invites(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, AppError> {
    let invites = state.admin.call(ListInvites).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "invites": invites })))
}

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

pub async fn list_users(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, AppError> {
    let users = state.admin.call(ListUsers).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "users": users })))
}

/// `POST /admin/users/{id}/{disable|enable|promote|demote}`.
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

pub async fn stats(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, AppError> {
    let stats = state.admin.call(ServerStats).await?;
    Ok(HttpResponse::Ok().json(stats))
}
