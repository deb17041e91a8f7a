//! `GET|POST|PATCH|DELETE /channels`, `GET /channels/messages`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, Json};
use crate::actors::db::{CreateChannel, DeleteChannel, History, ListChannels, RenameChannel};
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::{History as HistoryLimit, Throttled};
use crate::protocol::rest::{
    ChannelResponse, ChannelsResponse, CreateChannelRequest, UpdateChannelRequest,
};
use crate::service::channels::PageRequest;

pub async fn list(state: web::Data<AppState>, _: Auth) -> Result<HttpResponse, AppError> {
    let channels = state.db.call(ListChannels {}).await?;
    Ok(HttpResponse::Ok().json(ChannelsResponse { channels }))
}

pub async fn create(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    Json(req): Json<CreateChannelRequest>,
) -> Result<HttpResponse, AppError> {
    let channel = state
        .db
        .call(CreateChannel {
            ctx,
            name_enc: req.name_enc,
        })
        .await?;
    state.notify(Notice::ChannelCreated(channel.clone()));
    Ok(HttpResponse::Created().json(ChannelResponse { channel }))
}

pub async fn rename(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    Json(req): Json<UpdateChannelRequest>,
) -> Result<HttpResponse, AppError> {
    let channel = state
        .db
        .call(RenameChannel {
            ctx,
            channel_id: req.channel_id,
            name_enc: req.name_enc,
        })
        .await?;
    state.notify(Notice::ChannelUpdated(channel.clone()));
    Ok(HttpResponse::Ok().json(ChannelResponse { channel }))
}

#[derive(Debug, Deserialize)]
pub struct ChannelQuery {
    #[serde(default)]
    channel_id: String,
}

pub async fn delete(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, AppError> {
    let id = state
        .db
        .call(DeleteChannel {
            ctx,
            channel_id: query.into_inner().channel_id,
        })
        .await?;
    state.notify(Notice::ChannelDeleted(id));
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    channel_id: String,
    limit: Option<i64>,
    before: Option<String>,
    after: Option<String>,
}

pub async fn history(
    state: web::Data<AppState>,
    _: Throttled<HistoryLimit>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let page = state
        .db
        .call(History {
            channel_id: q.channel_id,
            page: PageRequest {
                limit: q.limit,
                before: q.before.filter(|s| !s.is_empty()),
                after: q.after.filter(|s| !s.is_empty()),
            },
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}
