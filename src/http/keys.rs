//! `GET|POST /channels/keys`, `GET|POST /directory/keys`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, Json};
use crate::actors::db::{GetChannelKey, GetDirectoryKey, UploadChannelKeys, UploadDirectoryKeys};
use crate::error::AppError;
use crate::limits::rest::{EnvelopeUpload, Throttled};
use crate::protocol::rest::{ChannelKeysUpload, DirectoryKeysUpload, StatusOk};

#[derive(Debug, Deserialize)]
pub struct ChannelQuery {
    #[serde(default)]
    channel_id: String,
}

pub async fn get_channel_key(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, AppError> {
    let envelope = state
        .db
        .call(GetChannelKey {
            ctx,
            channel_id: query.into_inner().channel_id,
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope))
}

pub async fn upload_channel_keys(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<EnvelopeUpload>,
    Json(req): Json<ChannelKeysUpload>,
) -> Result<HttpResponse, AppError> {
    state.db.call(UploadChannelKeys { ctx, req }).await?;
    Ok(HttpResponse::Created().json(StatusOk::ok()))
}

pub async fn get_directory_key(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
) -> Result<HttpResponse, AppError> {
    Ok(match state.db.call(GetDirectoryKey { ctx }).await? {
        Some(envelope) => HttpResponse::Ok().json(envelope),
        None => HttpResponse::NoContent().finish(),
    })
}

pub async fn upload_directory_keys(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<EnvelopeUpload>,
    Json(req): Json<DirectoryKeysUpload>,
) -> Result<HttpResponse, AppError> {
    state.db.call(UploadDirectoryKeys { ctx, req }).await?;
    Ok(HttpResponse::Created().json(StatusOk::ok()))
}
