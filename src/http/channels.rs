//! `GET|POST|PATCH|DELETE /channels`, `GET /channels/messages`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Auth, Json};
use crate::actors::db::{CreateChannel, DeleteChannel, History, ListChannels, RenameChannel};
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::{History as HistoryLimit, NewChannel, Reads, Throttled};
use crate::protocol::rest::{
    ChannelResponse, ChannelsResponse, CreateChannelRequest, ErrorBody, MessagesResponse,
    UpdateChannelRequest,
};
use crate::service::channels::PageRequest;

#[utoipa::path(
    get,
    path = "/channels",
    tag = "channels",
    summary = "List channels.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every public channel and the caller's private and direct ones, newest first", body = ChannelsResponse),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn list(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
) -> Result<HttpResponse, AppError> {
    let channels = state.db.call(ListChannels { ctx }).await?;
    Ok(HttpResponse::Ok().json(ChannelsResponse { channels }))
}

#[utoipa::path(
    post,
    path = "/channels",
    tag = "channels",
    summary = "Create a channel: public (admin users), or private (any user; trust v2).",
    request_body = CreateChannelRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `channel.updated` is sent to everyone (a private channel: to its members). A private channel waits for key generation 1 (`POST /channels/rotate`)", body = ChannelResponse),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: admin only (a public channel)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many private channels created (the envelope bucket); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    NewChannel(ctx, req): NewChannel,
) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    let op = CreateChannel {
        ctx,
        name_enc: req.name_enc,
        private: req.private,
    };
    let channel = state
        .db
        .call_then(op, move |channel| {
            notify(if req.private {
                Notice::PrivateChannelCreated {
                    channel: channel.clone(),
                    members: vec![channel.created_by.clone()],
                }
            } else {
                Notice::ChannelCreated(channel.clone())
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(ChannelResponse { channel }))
}

#[utoipa::path(
    patch,
    path = "/channels",
    tag = "channels",
    summary = "Rename a channel (admin users; a private channel: its channel admins).",
    request_body = UpdateChannelRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Renamed; `channel.updated` is sent to everyone (a private channel: to its members)", body = ChannelResponse),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: admin only (a private channel: channel admins only)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such channel, or a private channel the caller is not a member of", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn rename(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    Json(req): Json<UpdateChannelRequest>,
) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    let op = RenameChannel {
        ctx,
        channel_id: req.channel_id,
        name_enc: req.name_enc,
    };
    let channel = state
        .db
        .call_then(op, move |channel| {
            notify(Notice::ChannelUpdated(channel.clone()))
        })
        .await?;
    Ok(HttpResponse::Ok().json(ChannelResponse { channel }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChannelQuery {
    /// The channel's id.
    // `default` so that a missing id gets the service's own 400; the description still says
    // the parameter is required, as the server treats it.
    #[serde(default)]
    #[param(format = Uuid, required = true)]
    channel_id: String,
}

#[utoipa::path(
    delete,
    path = "/channels",
    tag = "channels",
    summary = "Delete a channel (admin users; a private channel: also its channel admins).",
    params(ChannelQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted with its messages and envelopes; `channel.deleted` is sent"),
        (status = 400, description = "`invalid_request`: a query parameter fails validation", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: admin only (a private channel: channel admins only)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such channel, or a private channel the caller is not a member of", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn delete(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    let op = DeleteChannel {
        ctx,
        channel_id: query.into_inner().channel_id,
    };
    state
        .db
        .call_then(op, move |id| notify(Notice::ChannelDeleted(id.clone())))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The channel's id.
    // `default` so that a missing id gets the service's own 400; the description still says
    // the parameter is required, as the server treats it.
    #[serde(default)]
    #[param(format = Uuid, required = true)]
    channel_id: String,
    /// Page size: 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Messages older than this message id.
    #[param(format = Uuid)]
    before: Option<String>,
    /// Messages newer than this message id.
    #[param(format = Uuid)]
    after: Option<String>,
    /// [ext] Messages with a `seq` below this one (the page nearest to it).
    #[param(minimum = 0)]
    before_seq: Option<i64>,
    /// [ext] Messages with a `seq` above this one, in seq order.
    #[param(minimum = 0)]
    after_seq: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/channels/messages",
    tag = "channels",
    summary = "Channel history: the newest `limit`, or a page before/after a message id or a seq.",
    params(HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, ascending time order", body = MessagesResponse),
        (status = 400, description = "`invalid_request`: bad `limit`, more than one cursor, a negative seq, or a cursor not in this channel", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 404, description = "`not_found`: no such channel, or a private channel the caller is not a member of", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn history(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<HistoryLimit>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let page = state
        .db
        .call(History {
            user_id: ctx.user_id,
            channel_id: q.channel_id,
            page: PageRequest {
                limit: q.limit,
                before: q.before.filter(|s| !s.is_empty()),
                after: q.after.filter(|s| !s.is_empty()),
                before_seq: q.before_seq,
                after_seq: q.after_seq,
            },
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}
