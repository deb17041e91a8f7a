//! Request extractors with dialtone's error policy: JSON bodies of at most 1 MiB (413 beyond),
//! unknown or malformed fields → 400, any `Content-Type` accepted (v1 clients omit it); bearer
//! sessions; admin identity (admin user or `X-Admin-Token`, compared in constant time).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::crypto::token::secrets_equal;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::auth::AuthContext;

/// Largest request body.
pub const MAX_BODY: usize = 1 << 20;

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, AppError>>>>;

async fn read_body(req: HttpRequest, mut payload: Payload) -> Result<web::Bytes, AppError> {
    web::Bytes::from_request(&req, &mut payload)
        .await
        .map_err(|e| match e.as_error::<PayloadError>() {
            Some(PayloadError::Overflow) => AppError::PayloadTooLarge,
            _ if e.as_response_error().status_code() == 413 => AppError::PayloadTooLarge,
            _ => AppError::bad_request(format!("could not read request body: {e}")),
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    // Every request body is an object (or, where optional, `null`). serde's derived structs also
    // take their fields as a positional array, so `[null, null]` would pass as `{}`: refuse it.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(AppError::BadRequest {
            code: "invalid_json",
            message: "invalid JSON body: expected an object".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| AppError::BadRequest {
        code: "invalid_json",
        message: format!("invalid JSON body: {e}"),
    })
}

/// A required JSON body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            let bytes = read_body(req, payload).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(AppError::BadRequest {
                    code: "invalid_json",
                    message: "a JSON body is required".into(),
                });
            }
            parse(&bytes).map(Json)
        })
    }
}

/// A JSON body that may be absent (empty).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            let bytes = read_body(req, payload).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(None));
            }
            // `null` is an absent body too: the API description allows it.
            parse::<Option<T>>(&bytes).map(OptionalJson)
        })
    }
}

pub use crate::app::bearer_token;

pub(crate) fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ServiceError::Internal("application state missing".into()).into())
}

/// An authenticated session.
pub struct Auth(pub AuthContext);

impl FromRequest for Auth {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = state(req);
        let from = client_from(req);
        Box::pin(async move {
            let token = token.ok_or(ServiceError::Unauthorized)?;
            Ok(Auth(state?.authenticate(from, token).await?))
        })
    }
}

/// The client address of `req` as the limits see it (`None` without a peer address).
fn client_from(req: &HttpRequest) -> Option<IpAddr> {
    let state = req.app_data::<web::Data<AppState>>()?;
    crate::limits::rest::client_addr(req, &state.limits)
}

/// Who is acting as admin.
pub enum AdminIdentity {
    /// The `X-Admin-Token` secret.
    Token,
    /// A signed-in admin user.
    User(AuthContext),
}

impl AdminIdentity {
    /// The admin user's id, if a user (not the token) is acting.
    pub fn user_id(&self) -> Option<String> {
        match self {
            AdminIdentity::Token => None,
            AdminIdentity::User(ctx) => Some(ctx.user_id.clone()),
        }
    }
}

/// An admin: `X-Admin-Token` or the bearer session of an admin user.
pub struct Admin(pub AdminIdentity);

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let admin_token = req
            .headers()
            .get("x-admin-token")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let token = bearer_token(req);
        let state = state(req);
        let from = client_from(req);
        Box::pin(async move {
            let state = state?;
            if let Some(given) = admin_token {
                if let Some(ip) = from {
                    state.limits.check_credentials(ip)?;
                }
                return if secrets_equal(&given, state.admin_token.expose()) {
                    Ok(Admin(AdminIdentity::Token))
                } else {
                    if let Some(ip) = from {
                        state.limits.credentials_refused(ip);
                    }
                    Err(ServiceError::Unauthorized.into())
                };
            }
            let token = token.ok_or(ServiceError::Unauthorized)?;
            let ctx = state.authenticate(from, token).await?;
            if !ctx.is_admin {
                return Err(ServiceError::Forbidden("admin only").into());
            }
            Ok(Admin(AdminIdentity::User(ctx)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::error::AppError;
    use crate::protocol::rest::CreateInviteRequest;

    fn refused<T: serde::de::DeserializeOwned>(body: &str) -> bool {
        matches!(
            parse::<T>(body.as_bytes()),
            Err(AppError::BadRequest {
                code: "invalid_json",
                ..
            })
        )
    }

    #[test]
    fn a_positional_array_is_not_a_body() {
        // schemathesis found `[null, null]` minting an invite as if it were `{}`.
        assert!(refused::<Option<CreateInviteRequest>>("[null, null]"));
        assert!(refused::<Option<CreateInviteRequest>>(" \n[]"));
        assert!(refused::<Option<CreateInviteRequest>>("[60]"));
    }

    #[test]
    fn objects_and_null_still_parse() {
        assert!(matches!(
            parse::<Option<CreateInviteRequest>>(b"null"),
            Ok(None)
        ));
        assert!(matches!(
            parse::<Option<CreateInviteRequest>>(b" {}"),
            Ok(Some(_))
        ));
        let req = parse::<Option<CreateInviteRequest>>(br#"{"expires_in_seconds": 60}"#);
        assert!(matches!(req, Ok(Some(r)) if r.expires_in_seconds == Some(60)));
    }
}
