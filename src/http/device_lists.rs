//! `GET|POST /devices/list`: trust v2 signed device lists (docs/TRUST.md §2).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::Json;
use crate::actors::db::{FetchDeviceLists, PublishDeviceList};
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::{DeviceListUpload, Reads, Throttled};
use crate::protocol::rest::ErrorBody;
use crate::protocol::trust::{DeviceListAccepted, DeviceListsResponse, SignedDeviceList};
use crate::service::validate;

#[utoipa::path(
    post,
    path = "/devices/list",
    tag = "devices",
    summary = "Publish the next version of the caller's signed device list (trust v2).",
    request_body = SignedDeviceList,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored; every connected client gets `device_list.updated`", body = DeviceListAccepted),
        (status = 400, description = "`invalid_device_list`: malformed statement, another user's list, a bad identity signature or countersignature, or an identity change without a reset; `invalid_request`: a listed device is not one of the caller's registered devices with that key; `invalid_json`: malformed body", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: the publishing device is not on the current list (a new device is signed in by an existing one)", body = ErrorBody),
        (status = 409, description = "`device_list_conflict`: the version or `prev_hash` does not follow the newest stored list (another device published first): fetch it and sign again", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn publish(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<DeviceListUpload>,
    Json(list): Json<SignedDeviceList>,
) -> Result<HttpResponse, AppError> {
    let user_id = ctx.user_id.clone();
    let notify = state.notifier();
    let accepted = state
        .db
        .call_then(PublishDeviceList { ctx, list }, move |accepted| {
            notify(Notice::DeviceListUpdated {
                user_id,
                version: accepted.version,
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(accepted))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Whose lists (any user; default: the caller).
    #[param(format = Uuid)]
    user_id: Option<String>,
    /// Every list after this version, ascending, at most 100 (to check the chain from a pinned
    /// version); without it, the newest list alone.
    after_version: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/devices/list",
    tag = "devices",
    summary = "A user's signed device lists (trust v2), exactly as their identity key signed them.",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The newest list, or the lists after `after_version`; empty when the user has published none", body = DeviceListsResponse),
        (status = 400, description = "`invalid_request`: a query parameter fails validation", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn fetch(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let user_id = match q.user_id {
        Some(u) => validate::id("user_id", &u)?,
        None => ctx.user_id,
    };
    let lists = state
        .db
        .call(FetchDeviceLists {
            user_id,
            after_version: q.after_version,
        })
        .await?;
    Ok(HttpResponse::Ok().json(lists))
}
