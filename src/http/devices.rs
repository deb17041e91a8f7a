//! `GET|POST /devices`, `GET /devices/keys`, `DELETE /devices/{id}`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, Json};
use crate::actors::db::{CreateDevice, DeleteDevice, DeviceKeys, ListOwnDevices};
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::{DeviceCreation, Throttled};
use crate::protocol::rest::{CreateDeviceRequest, DevicesResponse};

pub async fn create(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<DeviceCreation>,
    Json(req): Json<CreateDeviceRequest>,
) -> Result<HttpResponse, AppError> {
    let user_id = ctx.user_id.clone();
    let (device, new) = state.db.call(CreateDevice { ctx, req }).await?;
    if new {
        state.notify(Notice::DeviceJoined {
            user_id,
            device_id: device.id.clone(),
        });
    }
    // v1 clients expect 201 whether the key was new or already registered.
    Ok(HttpResponse::Created().json(device))
}

pub async fn list_own(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
) -> Result<HttpResponse, AppError> {
    let devices = state.db.call(ListOwnDevices { ctx }).await?;
    Ok(HttpResponse::Ok().json(DevicesResponse { devices }))
}

#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    user_id: Option<String>,
    all: Option<String>,
}

pub async fn keys(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
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

pub async fn delete(
    state: web::Data<AppState>,
    Auth(ctx): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let revoked = state
        .db
        .call(DeleteDevice {
            ctx,
            device_id: path.into_inner(),
        })
        .await?;
    state.notify(Notice::SessionsRevoked {
        session_ids: revoked,
    });
    Ok(HttpResponse::NoContent().finish())
}
