//! `GET /openapi.json`: the OpenAPI 3.1 description of the REST API.
//!
//! Generated from the handlers' `#[utoipa::path]` attributes and the wire types' `ToSchema`
//! derives, so it follows the code. A test checks that every route registered in
//! [`super::configure`] is described and that `docs/openapi.json` equals what is served. The few
//! types here exist only to describe bodies the handlers build inline.

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::actors::admin::MailboxStats;
use crate::protocol::rest::User;
use crate::protocol::ws::{ClientFrame, Event};
use crate::service::invites::InviteInfo;

/// `GET /admin/invites`.
#[derive(Serialize, ToSchema)]
pub struct InviteList {
    pub invites: Vec<InviteInfo>,
}

/// `GET /admin/users`.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// The `{action}` of `POST /admin/users/{id}/{action}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserAction {
    Disable,
    Enable,
    Promote,
    Demote,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dialtone",
        description = "REST API of the dialtone end-to-end encrypted chat server (dialtone v1 wire \
            protocol with additive extensions). Every error body is `{\"error\", \"code\"}`. Any \
            endpoint answers 405 `method_not_allowed` to a method it does not list, an unknown path \
            gets 404 `not_found`, and every 503 carries `Retry-After`."
    ),
    paths(
        super::health::health,
        super::health::ready,
        super::health::metrics,
        serve,
        super::auth::register,
        super::auth::login,
        super::auth::logout,
        super::users::create,
        super::users::profiles,
        super::users::upsert_profile,
        super::devices::list_own,
        super::devices::create,
        super::devices::keys,
        super::devices::delete,
        super::device_lists::publish,
        super::device_lists::fetch,
        super::channels::list,
        super::channels::create,
        super::channels::rename,
        super::channels::delete,
        super::channels::history,
        super::members::list,
        super::members::add,
        super::members::remove,
        super::members::rotate,
        super::members::open_direct,
        super::keys::get_channel_key,
        super::keys::upload_channel_keys,
        super::keys::delete_channel_key,
        super::keys::get_directory_key,
        super::keys::upload_directory_keys,
        super::keys::delete_directory_key,
        super::users::presence,
        super::admin::mint_invite,
        super::admin::list_invites,
        super::admin::revoke_invite,
        super::admin::list_users,
        super::admin::user_action,
        super::admin::stats,
        crate::ws::upgrade,
    ),
    components(schemas(ClientFrame, Event, MailboxStats, UserAction, crate::ws::SubscribeMode)),
    modifiers(&SecuritySchemes, &CredentialLimit),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "auth", description = "Registration and sessions"),
        (name = "users", description = "Users, profiles and presence"),
        (name = "devices", description = "Devices and their public keys"),
        (name = "channels", description = "Channels and history"),
        (name = "keys", description = "Key envelopes"),
        (name = "members", description = "Private channels, key generations and direct messages (trust v2)"),
        (name = "admin", description = "Invites and operator endpoints"),
        (name = "websocket", description = "The real-time socket"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Session token from register or login (`Authorization: Bearer <token>`, \
                         scheme case-insensitive).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Admin-Token",
                "The server's admin token (DIALTONE_ADMIN_TOKEN), compared in constant time. Admin \
                 endpoints accept it or the bearer session of an admin user.",
            ))),
        );
    }
}

/// Every operation that can answer 401 can also answer 429 `auth_failures_ip` (the address
/// presented too many refused credentials, README "Rate limits"): added here, not by hand, so no
/// authenticated endpoint can leave it out.
struct CredentialLimit;

impl Modify for CredentialLimit {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const ADDED: &str = "`rate_limited`: too many requests, or (`auth_failures_ip`) this address \
                             presented too many refused credentials and its credentials are \
                             refused unchecked; retry after `Retry-After` seconds";
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                let Some(RefOr::T(unauthorized)) = responses.get("401") else {
                    continue;
                };
                let mut limited = unauthorized.clone();
                limited.description = ADDED.to_owned();
                responses
                    .entry("429".to_owned())
                    .or_insert(RefOr::T(limited));
            }
        }
    }
}

/// The document as served: pretty JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        // Serializing a tree of strings and maps cannot fail; an empty object beats a panic.
        let mut json = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_owned());
        json.push('\n');
        json
    })
}

/// The methods of `path` (a route pattern such as `/devices/{id}`), as an `Allow` header value.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    static ALLOW: OnceLock<HashMap<String, String>> = OnceLock::new();
    ALLOW
        .get_or_init(|| {
            let doc: serde_json::Value = serde_json::from_str(document()).unwrap_or_default();
            let mut map = HashMap::new();
            for (path, item) in doc["paths"].as_object().into_iter().flatten() {
                let methods: Vec<String> = item
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(m, _)| m.to_uppercase())
                    .filter(|m| ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()))
                    .collect();
                map.insert(path.clone(), methods.join(", "));
            }
            map
        })
        .get(path)
        .map(String::as_str)
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    summary = "This document.",
    responses((status = 200, description = "The OpenAPI 3.1 description", content_type = "application/json"))
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
