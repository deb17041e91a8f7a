//! `GET|POST|DELETE /channels/keys`, `GET|POST|DELETE /directory/keys`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Auth, Json};
use crate::actors::db::{
    DeleteChannelKey, DeleteDirectoryKey, GetChannelKey, GetDirectoryKey, UploadChannelKeys,
    UploadDirectoryKeys,
};
use crate::error::AppError;
use crate::limits::rest::{EnvelopeUpload, Reads, Throttled};
use crate::protocol::rest::{
    ChannelKeyEnvelope, ChannelKeysUpload, DirectoryKeyEnvelope, DirectoryKeysUpload, ErrorBody,
    StatusOk,
};
use crate::service::ServiceError;

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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChannelKeyQuery {
    /// The channel's id.
    #[serde(default)]
    #[param(format = Uuid, required = true)]
    channel_id: String,
    /// [v2] A private channel's key generation (default: the current one).
    #[param(minimum = 1)]
    generation: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/channels/keys",
    tag = "keys",
    summary = "The channel key envelope for the caller's device.",
    params(ChannelKeyQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The envelope addressed to the caller's device", body = ChannelKeyEnvelope),
        (status = 400, description = "`invalid_request`: a query parameter fails validation", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 404, description = "`not_found`: no such channel (or a private channel the caller is not a member of), or no envelope for this device (of that generation)", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn get_channel_key(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
    query: web::Query<ChannelKeyQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let envelope = state
        .db
        .call(GetChannelKey {
            ctx,
            channel_id: q.channel_id,
            generation: q.generation,
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope))
}

#[utoipa::path(
    post,
    path = "/channels/keys",
    tag = "keys",
    summary = "Upload channel key envelopes.",
    request_body = ChannelKeysUpload,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored (all or nothing); a target whose stored envelope is byte-identical counts as stored", body = StatusOk),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: `sender_device_id` is not the caller's device or `sender_public_key` not its key", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown channel or target device", body = ErrorBody),
        (status = 409, description = "Nothing stored. `not_key_holder`: this device neither holds nor has wrapped the channel key (of that generation, for a private channel), and the caller is neither an admin nor the channel's creator writing its first envelopes (public channels only); for a private channel, `envelope_conflict` also lists targets that are not an active member's device or whose user joined after that generation; `envelope_conflict`: the targets in `device_ids` already hold a different envelope this caller may not replace (README \"Key authority\")", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn upload_channel_keys(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<EnvelopeUpload>,
    Json(req): Json<ChannelKeysUpload>,
) -> Result<HttpResponse, AppError> {
    state.db.call(UploadChannelKeys { ctx, req }).await?;
    Ok(HttpResponse::Created().json(StatusOk::ok()))
}

#[utoipa::path(
    get,
    path = "/directory/keys",
    tag = "keys",
    summary = "The directory key envelope for the caller's device.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The envelope addressed to the caller's device", body = DirectoryKeyEnvelope),
        (status = 204, description = "No envelope for this device"),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn get_directory_key(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
) -> Result<HttpResponse, AppError> {
    Ok(match state.db.call(GetDirectoryKey { ctx }).await? {
        Some(envelope) => HttpResponse::Ok().json(envelope),
        None => HttpResponse::NoContent().finish(),
    })
}

#[utoipa::path(
    post,
    path = "/directory/keys",
    tag = "keys",
    summary = "Upload directory key envelopes.",
    request_body = DirectoryKeysUpload,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored (all or nothing); a target whose stored envelope is byte-identical counts as stored", body = StatusOk),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: `sender_device_id` is not the caller's device or `sender_public_key` not its key", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown target device", body = ErrorBody),
        (status = 409, description = "Nothing stored. `not_key_holder`: this device neither holds nor has wrapped the directory key, and the caller is not an admin; `envelope_conflict`: the targets in `device_ids` already hold a different envelope this caller may not replace (README \"Key authority\")", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn upload_directory_keys(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<EnvelopeUpload>,
    Json(req): Json<DirectoryKeysUpload>,
) -> Result<HttpResponse, AppError> {
    state.db.call(UploadDirectoryKeys { ctx, req }).await?;
    Ok(HttpResponse::Created().json(StatusOk::ok()))
}

#[utoipa::path(
    delete,
    path = "/channels/keys",
    tag = "keys",
    summary = "Delete the channel key envelope addressed to the caller's device.",
    params(ChannelQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; a holder can now wrap the key for this device again"),
        (status = 400, description = "`invalid_request`: a query parameter fails validation", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 404, description = "`not_found`: no envelope for this device in that channel", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn delete_channel_key(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, AppError> {
    let deleted = state
        .db
        .call(DeleteChannelKey {
            ctx,
            channel_id: query.into_inner().channel_id,
        })
        .await?;
    if !deleted {
        return Err(ServiceError::NotFound("channel key envelope").into());
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    delete,
    path = "/directory/keys",
    tag = "keys",
    summary = "Delete the directory key envelope addressed to the caller's device.",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; a holder can now wrap the key for this device again"),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 404, description = "`not_found`: no directory envelope for this device", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn delete_directory_key(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
) -> Result<HttpResponse, AppError> {
    if !state.db.call(DeleteDirectoryKey { ctx }).await? {
        return Err(ServiceError::NotFound("directory key envelope").into());
    }
    Ok(HttpResponse::NoContent().finish())
}
