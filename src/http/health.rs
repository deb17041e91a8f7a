//! `GET /health` (liveness), `GET /ready` (database answers), `GET /metrics` (Prometheus, admin).

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::Admin;
use crate::actors::db::Ping;
use crate::error::AppError;
use crate::protocol::rest::ErrorBody;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.db.call(Ping {}).await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        // Whatever the failure (down, hung, refused query), the answer is "not ready": always a
        // 503 with the error body every other endpoint uses, never a 500.
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(ErrorBody {
                error: "database unavailable; retry later".into(),
                code: "unavailable".into(),
            })
        }
    }
}

pub async fn metrics(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render()))
}
