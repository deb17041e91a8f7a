//! `GET|POST /devices`, `GET /devices/keys`, `DELETE /devices/{id}`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Auth, Json};
use crate::actors::db::{CreateDevice, DeleteDevice, DeviceKeys, ListOwnDevices};
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::{DeviceCreation, Reads, Throttled};
use crate::protocol::rest::{
    CreateDeviceRequest, Device, DeviceKeysResponse, DevicesResponse, ErrorBody,
};

#[utoipa::path(
    post,
    path = "/devices",
    tag = "devices",
    summary = "Register a device key.",
    request_body = CreateDeviceRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The device (the existing one if the key is already registered)", body = Device),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: another user's id", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<DeviceCreation>,
    Json(req): Json<CreateDeviceRequest>,
) -> Result<HttpResponse, AppError> {
    let user_id = ctx.user_id.clone();
    let notify = state.notifier();
    let (device, _) = state
        .db
        .call_then(CreateDevice { ctx, req }, move |(device, new)| {
            if *new {
                notify(Notice::DeviceJoined {
                    user_id,
                    device_id: device.id.clone(),
                })
            }
        })
        .await?;
    // v1 clients expect 201 whether the key was new or already registered.
    Ok(HttpResponse::Created().json(device))
}

#[utoipa::path(
    get,
    path = "/devices",
    tag = "devices",
    summary = "List the caller's devices.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's devices", body = DevicesResponse),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn list_own(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
) -> Result<HttpResponse, AppError> {
    let devices = state.db.call(ListOwnDevices { ctx }).await?;
    Ok(HttpResponse::Ok().json(DevicesResponse { devices }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysQuery {
    /// Whose keys: only the caller's own id is allowed (the default).
    user_id: Option<String>,
    /// `1` or `true`: every device of every user.
    all: Option<String>,
}

#[utoipa::path(
    get,
    path = "/devices/keys",
    tag = "devices",
    summary = "Device public keys: the caller's, or every device with `?all=1`.",
    params(KeysQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Device keys", body = DeviceKeysResponse),
        (status = 400, description = "`invalid_request`: a query parameter fails validation", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: someone else's `user_id` without `all`", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn keys(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
    query: web::Query<KeysQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let all = matches!(q.all.as_deref(), Some("1" | "true"));
    let keys = state
        .db
        .call(DeviceKeys {
            ctx,
            user_id: q.user_id,
            all,
        })
        .await?;
    Ok(HttpResponse::Ok().json(keys))
}

#[utoipa::path(
    delete,
    path = "/devices/{id}",
    tag = "devices",
    summary = "Delete one of the caller's devices.",
    params(("id" = String, Path, format = Uuid, description = "Device id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; its sessions are revoked and its envelopes removed; each private channel of its user now requires a key rotation (`channel.updated` to its members)"),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: not your device", body = ErrorBody),
        (status = 404, description = "`not_found`: no such device", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn delete(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    let op = DeleteDevice {
        ctx,
        device_id: path.into_inner(),
    };
    state
        .db
        .call_then(op, move |removed| {
            notify(Notice::SessionsRevoked {
                session_ids: removed.session_ids.clone(),
            });
            notify(Notice::DeviceRemoved {
                device_id: removed.device_id.clone(),
            });
            // Its user's private channels now wait for a new key generation: their members
            // hear it.
            for channel in &removed.channels {
                notify(Notice::ChannelUpdated(channel.clone()));
            }
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
