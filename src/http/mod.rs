//! HTTP edge: routes, shared state, and the mapping of every REST endpoint (SPEC §3–4) onto the
//! actors. Handlers validate nothing themselves beyond the wire shape: they send a message and
//! translate the answer.

pub mod admin;
pub mod auth;
pub mod channels;
pub mod device_lists;
pub mod devices;
pub mod extract;
pub mod health;
pub mod keys;
pub mod listen;
pub mod members;
pub mod openapi;
pub mod tls;
pub mod users;
pub mod webapp;

use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, Resource, ResponseError, web};

pub use crate::app::AppState;
use crate::error::{AppError, CapHit};
use crate::limits;
use crate::metrics::Metrics;

/// A resource whose unmatched methods answer 405 with the JSON error body.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// 405 with the `Allow` header RFC 9110 requires, listing the methods the API description gives
/// this resource.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut res = AppError::MethodNotAllowed.error_response();
    let allow = req
        .match_pattern()
        .and_then(|pattern| openapi::allowed_methods(&pattern))
        .and_then(|methods| HeaderValue::from_str(methods).ok());
    if let Some(allow) = allow {
        res.headers_mut().insert(header::ALLOW, allow);
    }
    res
}

async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}

/// Register every route, the body limit, the query-string error policy and the 404 fallback.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(extract::MAX_BODY))
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            AppError::bad_request(format!("invalid query string: {e}")).into()
        }))
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| AppError::bad_request(format!("invalid path: {e}")).into()),
        )
        .service(resource("/health").route(web::get().to(health::health)))
        .service(resource("/ready").route(web::get().to(health::ready)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(resource("/openapi.json").route(web::get().to(openapi::serve)))
        .service(
            resource("/auth/register")
                .route(web::post().to(auth::register))
                .wrap(from_fn(limits::rest::register_ip)),
        )
        .service(
            resource("/auth/login")
                .route(web::post().to(auth::login))
                .wrap(from_fn(limits::rest::login_ip)),
        )
        .service(resource("/auth/logout").route(web::post().to(auth::logout)))
        .service(resource("/users").route(web::post().to(users::create)))
        .service(
            resource("/users/profiles")
                .route(web::get().to(users::profiles))
                .route(web::post().to(users::upsert_profile)),
        )
        .service(
            resource("/devices")
                .route(web::get().to(devices::list_own))
                .route(web::post().to(devices::create)),
        )
        .service(resource("/devices/keys").route(web::get().to(devices::keys)))
        .service(
            resource("/devices/list")
                .route(web::get().to(device_lists::fetch))
                .route(web::post().to(device_lists::publish)),
        )
        .service(resource("/devices/{id}").route(web::delete().to(devices::delete)))
        .service(
            resource("/channels")
                .route(web::get().to(channels::list))
                .route(web::post().to(channels::create))
                .route(web::patch().to(channels::rename))
                .route(web::delete().to(channels::delete)),
        )
        .service(resource("/channels/messages").route(web::get().to(channels::history)))
        .service(
            resource("/channels/members")
                .route(web::get().to(members::list))
                .route(web::post().to(members::add))
                .route(web::delete().to(members::remove)),
        )
        .service(resource("/channels/rotate").route(web::post().to(members::rotate)))
        .service(resource("/channels/direct").route(web::post().to(members::open_direct)))
        .service(
            resource("/channels/keys")
                .route(web::get().to(keys::get_channel_key))
                .route(web::post().to(keys::upload_channel_keys))
                .route(web::delete().to(keys::delete_channel_key)),
        )
        .service(
            resource("/directory/keys")
                .route(web::get().to(keys::get_directory_key))
                .route(web::post().to(keys::upload_directory_keys))
                .route(web::delete().to(keys::delete_directory_key)),
        )
        .service(resource("/presence").route(web::post().to(users::presence)))
        .service(resource("/server/invites").route(web::post().to(admin::mint_invite)))
        .service(resource("/admin/invites").route(web::get().to(admin::list_invites)))
        .service(resource("/admin/invites/{id}").route(web::delete().to(admin::revoke_invite)))
        .service(resource("/admin/users").route(web::get().to(admin::list_users)))
        .service(resource("/admin/users/{id}/{action}").route(web::post().to(admin::user_action)))
        .service(resource("/admin/stats").route(web::get().to(admin::stats)))
        .service(
            resource("/ws")
                .route(web::get().to(crate::ws::upgrade))
                .wrap(from_fn(limits::rest::ws_upgrade_ip)),
        )
        .default_service(web::to(not_found));
}

/// Count every response by status (middleware body).
pub fn count_status<S, B>(
    metrics: Arc<Metrics>,
) -> impl Fn(
    actix_web::dev::ServiceRequest,
    &S,
) -> futures_util::future::LocalBoxFuture<
    'static,
    Result<ServiceResponse<B>, actix_web::Error>,
> + Clone
where
    S: Service<
            actix_web::dev::ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    S::Future: 'static,
    B: 'static,
{
    move |req, srv| {
        let fut = srv.call(req);
        let metrics = metrics.clone();
        Box::pin(async move {
            let res = fut.await?;
            metrics.http_response(res.status().as_u16());
            if let Some(CapHit(limit)) = res.response().extensions().get::<CapHit>().copied() {
                metrics.rate_limited(limit);
            }
            Ok(res)
        })
    }
}
