//! `POST /auth/register`, `/auth/login`, `/auth/logout`.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::Auth;
use crate::actors::auth as flows;
use crate::actors::db::Logout;
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::Attempt;
use crate::protocol::rest::{LoginRequest, RegisterRequest};
use crate::service::auth::SignedIn;

fn announce(state: &AppState, signed_in: &SignedIn) {
    if signed_in.new_device {
        state.notify(Notice::DeviceJoined {
            user_id: signed_in.response.user_id.clone(),
            device_id: signed_in.response.device_id.clone(),
        });
    }
}

pub async fn register(
    state: web::Data<AppState>,
    Attempt(req): Attempt<RegisterRequest>,
) -> Result<HttpResponse, AppError> {
    let signed_in = flows::register(&state.db, &state.passwords, req).await?;
    announce(&state, &signed_in);
    Ok(HttpResponse::Created().json(signed_in.response))
}

pub async fn login(
    state: web::Data<AppState>,
    Attempt(req): Attempt<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let signed_in = flows::login(&state.db, &state.passwords, &state.metrics, req).await?;
    announce(&state, &signed_in);
    Ok(HttpResponse::Ok().json(signed_in.response))
}

pub async fn logout(state: web::Data<AppState>, Auth(ctx): Auth) -> Result<HttpResponse, AppError> {
    state
        .db
        .call(Logout {
            session_id: ctx.session_id.clone(),
        })
        .await?;
    state.notify(Notice::SessionsRevoked {
        session_ids: vec![ctx.session_id],
    });
    Ok(HttpResponse::NoContent().finish())
}
