//! The one mapping from errors to HTTP responses.
//!
//! Every error body is `{"error": "<human message>", "code": "<snake_case>"}`. 5xx bodies never
//! carry internal details: they say `internal error` (or that the database is unavailable) and the
//! details go to the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::crypto::device_list::ListError;
use crate::db::DbError;
use crate::limits::{CAP_RETRY_AFTER_SECS, Refused};
use crate::protocol::rest::ErrorBody;
use crate::service::ServiceError;
use crate::service::generations::RotationRefused;

/// What a `503` tells the client to wait before retrying.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Malformed request (JSON, query string, headers).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("request body too large (limit 1 MiB)")]
    PayloadTooLarge,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("server is at its connection limit; retry later")]
    TooManyConnections,
    /// Refused by the rate-limit layer (`crate::limits`).
    #[error(transparent)]
    RateLimited(#[from] Refused),
}

/// Set on a `429` response: which limit refused it, for `dialtone_rate_limited_total` (counted
/// by the status-counting middleware for refusals the limit layer did not count itself).
#[derive(Debug, Clone, Copy)]
pub struct CapHit(pub &'static str);

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest {
            code: "invalid_request",
            message: message.into(),
        }
    }

    /// Status, code and public message.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use ServiceError as S;
        match self {
            AppError::Service(e) => match e {
                S::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
                S::Unauthorized => (
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unauthorized".into(),
                ),
                S::TokenExpired => (
                    StatusCode::UNAUTHORIZED,
                    "token_expired",
                    "token expired".into(),
                ),
                S::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", (*m).into()),
                S::NotFound(what) => (
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("{what} not found"),
                ),
                S::Conflict(m) => (StatusCode::CONFLICT, "conflict", (*m).into()),
                S::EnvelopeRefused { reason, .. } => {
                    (StatusCode::CONFLICT, reason.code(), e.to_string())
                }
                S::Rotation(r) => (StatusCode::CONFLICT, r.code(), e.to_string()),
                // Behind the current version (another device published first): refetch, re-sign.
                S::DeviceList(ListError::Version { .. } | ListError::Chain) => {
                    (StatusCode::CONFLICT, "device_list_conflict", e.to_string())
                }
                S::DeviceList(_) => (
                    StatusCode::BAD_REQUEST,
                    "invalid_device_list",
                    e.to_string(),
                ),
                S::InviteUsed => (StatusCode::GONE, "invite_used", e.to_string()),
                S::InviteExpired => (StatusCode::GONE, "invite_expired", e.to_string()),
                S::InviteRevoked => (StatusCode::GONE, "invite_revoked", e.to_string()),
                S::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", (*m).into()),
                S::CapReached(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string()),
                S::Db(DbError::Unavailable(_)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "database unavailable; retry later".into(),
                ),
                S::Db(_) | S::Crypto(_) | S::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                ),
            },
            AppError::BadRequest { code, message } => {
                (StatusCode::BAD_REQUEST, code, message.clone())
            }
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                self.to_string(),
            ),
            AppError::NotFound => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            AppError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                self.to_string(),
            ),
            AppError::TooManyConnections => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                self.to_string(),
            ),
            AppError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                self.to_string(),
            ),
        }
    }
}

/// How often a 503 refusal is logged at WARN; the ones in between go to DEBUG and are counted in
/// the next warning. Every refusal is also in `dialtone_http_responses_total{status="503"}`; under a
/// flood (each refused login is a 503 from the password queue) a warning per request would drown
/// the log.
const REFUSAL_WARN_EVERY_SECS: u64 = 10;

fn refusal_logged(error: &AppError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_WARN: AtomicU64 = AtomicU64::new(0);
    static SINCE: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARN.load(Ordering::Relaxed);
    if now >= last + REFUSAL_WARN_EVERY_SECS
        && LAST_WARN
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let suppressed = SINCE.swap(0, Ordering::Relaxed);
        tracing::warn!(status = 503, error = %error, suppressed, "request refused");
    } else {
        SINCE.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(status = 503, error = %error, "request refused");
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, error) = self.parts();
        // The details (SQL errors, crypto failures) are for the log only. A 503 is a designed
        // refusal (a limit reached, a dependency down and retried): a warning, not a fault.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refusal_logged(self);
        } else if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        }
        let mut res = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 here is a transient refusal (a queue full, a dependency down).
            res.insert_header((actix_web::http::header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        match self {
            AppError::RateLimited(r) => {
                res.insert_header((
                    actix_web::http::header::RETRY_AFTER,
                    r.retry_after_secs.to_string(),
                ));
            }
            AppError::Service(ServiceError::CapReached(limit)) => {
                res.insert_header((
                    actix_web::http::header::RETRY_AFTER,
                    CAP_RETRY_AFTER_SECS.to_string(),
                ));
                res.extensions_mut().insert(CapHit(limit));
            }
            _ => {}
        }
        let device_ids = match self {
            AppError::Service(ServiceError::EnvelopeRefused { device_ids, .. }) => {
                Some(device_ids.clone())
            }
            _ => None,
        };
        let (missing, extra) = match self {
            AppError::Service(ServiceError::Rotation(RotationRefused::Coverage {
                missing,
                extra,
            })) => (Some(missing.clone()), Some(extra.clone())),
            _ => (None, None),
        };
        res.json(ErrorBody {
            error,
            code: code.to_owned(),
            device_ids,
            missing,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(e: AppError) -> (u16, serde_json::Value) {
        let res = e.error_response();
        let status = res.status().as_u16();
        let bytes = res.into_body().try_into_bytes().unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn error_json_shape() {
        let (status, json) = body_of(ServiceError::InviteUsed.into());
        assert_eq!(status, 410);
        assert_eq!(
            json,
            serde_json::json!({"error": "invite already used", "code": "invite_used"})
        );
        let (status, json) = body_of(ServiceError::TokenExpired.into());
        assert_eq!(status, 401);
        assert_eq!(json["error"], "token expired");
    }

    #[test]
    fn refused_envelopes_are_409_naming_the_devices() {
        let e = ServiceError::EnvelopeRefused {
            reason: crate::service::key_authority::Refusal::Conflict,
            device_ids: vec!["d1".into(), "d2".into()],
        };
        let (status, json) = body_of(e.into());
        assert_eq!(status, 409);
        assert_eq!(json["code"], "envelope_conflict");
        assert_eq!(json["device_ids"], serde_json::json!(["d1", "d2"]));
        // Other error bodies keep v1's two fields.
        let (_, json) = body_of(ServiceError::Conflict("taken").into());
        assert!(json.get("device_ids").is_none());
    }

    #[test]
    fn internal_errors_leak_nothing() {
        let e = ServiceError::Db(DbError::Setup(
            "SELECT secret FROM users; password=hunter2".into(),
        ));
        let (status, json) = body_of(e.into());
        assert_eq!(status, 500);
        assert_eq!(
            json,
            serde_json::json!({"error": "internal error", "code": "internal"})
        );
        let (status, json) = body_of(
            ServiceError::Db(DbError::Unavailable("connection refused 10.0.0.5".into())).into(),
        );
        assert_eq!(status, 503);
        assert!(!json["error"].as_str().unwrap().contains("10.0.0.5"));
        let res = AppError::from(ServiceError::Busy("queue full")).error_response();
        assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    }

    #[test]
    fn limits_answer_429_with_retry_after() {
        let refused = Refused {
            limit: "login_ip",
            retry_after_secs: 7,
        };
        let res = AppError::from(refused.clone()).error_response();
        assert_eq!(res.headers().get("retry-after").unwrap(), "7");
        let (status, json) = body_of(refused.into());
        assert_eq!(status, 429);
        assert_eq!(json["code"], "rate_limited");
        let res = AppError::from(ServiceError::CapReached("devices_per_user")).error_response();
        assert_eq!(res.status().as_u16(), 429);
        assert_eq!(
            res.extensions().get::<CapHit>().map(|c| c.0),
            Some("devices_per_user")
        );
    }
}
