//! `GET /health` (liveness: the hub, database actor, admin actor and every channel arbiter thread
//! answer within [`PROBE_BOUND`]), `GET /ready` (that, and the database answers), `GET /metrics` (Prometheus,
//! admin). A dead or wedged actor is `503 {"code":"actor_unavailable"}`.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::Admin;
use crate::actors::db::Ping;
use crate::actors::hub::Stats;
use crate::actors::liveness::{Dead, PROBE_BOUND, Probe, answers};
use crate::error::AppError;
use crate::protocol::rest::ErrorBody;

/// Every long-lived actor answers its probe; the first that does not is named.
async fn actors_alive(state: &AppState) -> Result<(), Dead> {
    answers("hub", &state.hub.recipient::<Stats>(), Stats, PROBE_BOUND).await?;
    answers("database actor", &state.db.probe(), Probe, PROBE_BOUND).await?;
    answers("admin actor", &state.admin.probe(), Probe, PROBE_BOUND).await?;
    state.hub.arbiters_alive(PROBE_BOUND).await
}

fn actor_unavailable(dead: &Dead) -> HttpResponse {
    tracing::warn!(error = %dead, "liveness check failed");
    HttpResponse::ServiceUnavailable().json(ErrorBody::new(
        format!("{dead}; the server needs a restart"),
        "actor_unavailable",
    ))
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    summary = "Liveness: the process and its actors answer.",
    responses(
        (status = 200, description = "Alive: every long-lived actor answers", body = String, content_type = "text/plain"),
        (status = 503, description = "An actor stopped or does not answer (`actor_unavailable`)", body = ErrorBody),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    match actors_alive(&state).await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ok"),
        Err(dead) => actor_unavailable(&dead),
    }
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    summary = "Readiness: the database answers (and, when clustered, NATS is connected).",
    responses(
        (status = 200, description = "The database answers and, with `DIALTONE_NATS_URL`, the cluster bus is connected", body = String, content_type = "text/plain"),
        (status = 503, description = "`unavailable`: the database does not answer, or the cluster bus (NATS) is disconnected", body = ErrorBody),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if let Err(dead) = actors_alive(&state).await {
        return actor_unavailable(&dead);
    }
    // A node cut off from NATS still serves its own sockets, but others' messages reach them only
    // by repair: a load balancer should prefer the other nodes until it is back.
    if let Some(status) = &state.cluster
        && !status.borrow().connected
    {
        return HttpResponse::ServiceUnavailable().json(ErrorBody::new(
            "cluster bus (NATS) disconnected; reconnecting",
            "unavailable",
        ));
    }
    match state.db.call(Ping {}).await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        // Whatever the failure (down, hung, refused query), the answer is "not ready": always a
        // 503 with the error body every other endpoint uses, never a 500.
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(ErrorBody::new(
                "database unavailable; retry later",
                "unavailable",
            ))
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics (admin).",
    security(("admin_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus/OpenMetrics text exposition", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "`unauthorized`: neither a valid `X-Admin-Token` nor an admin bearer session; `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the bearer session is not an admin's", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn metrics(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render()))
}
