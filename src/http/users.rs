//! `POST /users` (admin), `GET|POST /users/profiles`, `POST /presence`.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::{Admin, Auth, Json};
use crate::actors::db::{AdminFlags, CreatePlaceholderUser, ListProfiles, UpsertProfile};
use crate::actors::hub::{Notice, Presence};
use crate::error::AppError;
use crate::limits::rest::{ProfileUpload, Throttled};
use crate::protocol::rest::{
    CreateUserRequest, PresenceRequest, PresenceResponse, ProfileRequest, ProfilesResponse,
    StatusOk,
};
use crate::service::ServiceError;
use crate::service::users::MAX_PRESENCE_IDS;

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

pub async fn profiles(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
) -> Result<HttpResponse, AppError> {
    let profiles = state.db.call(ListProfiles { ctx }).await?;
    Ok(HttpResponse::Ok().json(ProfilesResponse { profiles }))
}

pub async fn upsert_profile(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<ProfileUpload>,
    Json(req): Json<ProfileRequest>,
) -> Result<HttpResponse, AppError> {
    let user_id = ctx.user_id.clone();
    state
        .db
        .call(UpsertProfile {
            ctx,
            name_enc: req.name_enc,
        })
        .await?;
    state.notify(Notice::ProfileUpdated { user_id });
    Ok(HttpResponse::Created().json(StatusOk::ok()))
}

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
