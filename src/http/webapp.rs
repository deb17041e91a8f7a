//! The web client (`web/app`), embedded in the binary at build time and served under `/app/` on
//! the same listener, with strict security headers: a CSP with no inline script, no `eval` and
//! no framing, no referrer, and HSTS when the server has a real certificate. `/` sends browsers
//! to `/app/`.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// One embedded file: its path under `/app/`, its media type and its bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/app/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `web/app` (a test checks that none is missing).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/api.js", JS),
    asset!("js/b64.js", JS),
    asset!("js/bound.js", JS),
    asset!("js/chat.js", JS),
    asset!("js/crypto.js", JS),
    asset!("js/main.js", JS),
    asset!("js/ops.js", JS),
    asset!("js/private.js", JS),
    asset!("js/safety.js", JS),
    asset!("js/socket.js", JS),
    asset!("js/store.js", JS),
    asset!("js/trust.js", JS),
    asset!("js/ui.js", JS),
];

/// The page may load its own scripts, styles and images and talk to its own origin (REST and
/// the WebSocket), and nothing else: no inline script or style, no `eval`, no plugins, no
/// framing, no form posts.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
                       frame-ancestors 'none'";

/// A year, the usual HSTS lifetime.
const HSTS: &str = "max-age=31536000";

/// Register `/`, `/app` and `/app/{path}`. `hsts`: send `Strict-Transport-Security` (a real
/// certificate; not with the self-signed development certificate or plain HTTP).
pub fn configure(cfg: &mut web::ServiceConfig, hsts: bool) {
    let page = |path: &str| web::resource(path).default_service(web::to(get_only));
    cfg.app_data(web::Data::new(WebConfig { hsts }))
        .service(page("/").route(web::get().to(to_app)))
        .service(page("/app").route(web::get().to(to_app)))
        .service(page("/app/").route(web::get().to(index)))
        .service(page("/app/{path:.*}").route(web::get().to(file)));
}

/// The pages are read-only: any other method is 405 with the API's JSON error body.
async fn get_only() -> HttpResponse {
    let mut res = AppError::MethodNotAllowed.error_response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    res
}

struct WebConfig {
    hsts: bool,
}

async fn to_app() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/app/"))
        .finish()
}

async fn index(req: HttpRequest, conf: web::Data<WebConfig>) -> Result<HttpResponse, AppError> {
    serve(&req, "index.html", conf.hsts)
}

async fn file(
    req: HttpRequest,
    path: web::Path<String>,
    conf: web::Data<WebConfig>,
) -> Result<HttpResponse, AppError> {
    serve(&req, &path, conf.hsts)
}

/// A strong ETag per asset (SHA-256 of its bytes), computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    })
}

fn serve(req: &HttpRequest, path: &str, hsts: bool) -> Result<HttpResponse, AppError> {
    let (i, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.path == path)
        .ok_or(AppError::NotFound)?;
    let etag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CONTENT_TYPE, asset.content_type))
        .insert_header((header::ETAG, etag.as_str()))
        // Revalidate every load (cheap with the ETag): a new server version is picked up at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        .insert_header(("cross-origin-resource-policy", "same-origin"))
        .insert_header((
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=()",
        ));
    if hsts {
        res.insert_header((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ));
    }
    Ok(if fresh {
        res.finish()
    } else {
        res.body(asset.body)
    })
}
