//! Trust v2 private channels (docs/TRUST.md §6): `GET|POST|DELETE /channels/members`,
//! `POST /channels/rotate`, `POST /channels/direct`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::Json;
use crate::actors::db::{AddMember, ListMembers, OpenDirect, RemoveMember, RotateKey};
use crate::actors::hub::Notice;
use crate::error::AppError;
use crate::limits::rest::{Membership, Reads, Throttled};
use crate::protocol::members::{
    AddMemberRequest, KeyRotated, MembersResponse, OpenDirectRequest, RotateKeyRequest,
};
use crate::protocol::rest::{ChannelResponse, ErrorBody, StatusOk};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// The private channel's id.
    #[serde(default)]
    #[param(format = Uuid, required = true)]
    channel_id: String,
}

#[utoipa::path(
    get,
    path = "/channels/members",
    tag = "members",
    summary = "A private channel's members, key generation, and the devices a rotation must reach (trust v2).",
    params(MembersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active and removed members; `device_ids` are the active members' devices", body = MembersResponse),
        (status = 400, description = "`invalid_request`: `channel_id` missing", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 404, description = "`not_found`: no such private channel, or the caller is not a member (nor a global admin)", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn list(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Reads>,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, AppError> {
    let members = state
        .db
        .call(ListMembers {
            ctx,
            channel_id: query.into_inner().channel_id,
        })
        .await?;
    Ok(HttpResponse::Ok().json(members))
}

#[utoipa::path(
    post,
    path = "/channels/members",
    tag = "members",
    summary = "Add a member to a private channel, or change a member's role (channel admins; trust v2).",
    request_body = AddMemberRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Added; `member.added` is sent to the members, the new one included. A channel admin's client then shares the current key generation with the new member's devices (`POST /channels/keys`)", body = StatusOk),
        (status = 400, description = "`invalid_request`: a field fails validation; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is not a channel admin, or the channel is direct", body = ErrorBody),
        (status = 404, description = "`not_found`: no such private channel (or the caller is not a member), or no such active user", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn add(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Membership>,
    Json(req): Json<AddMemberRequest>,
) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    state
        .db
        .call_then(AddMember { ctx, req }, move |added| {
            notify(Notice::MemberAdded {
                channel_id: added.channel_id.clone(),
                user_id: added.user_id.clone(),
                role: added.role.clone(),
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(StatusOk::ok()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemberQuery {
    /// The private channel's id.
    #[serde(default)]
    #[param(format = Uuid, required = true)]
    channel_id: String,
    /// The member to remove (the caller's own id: leave).
    #[serde(default)]
    #[param(format = Uuid, required = true)]
    user_id: String,
}

#[utoipa::path(
    delete,
    path = "/channels/members",
    tag = "members",
    summary = "Remove a member from a private channel, or leave it (trust v2).",
    params(MemberQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed: unsubscribed at once, `member.removed` is sent to the members and to the removed user, and sends are refused (`rotation_required`) until generation n+1 is posted"),
        (status = 400, description = "`invalid_request`: a query parameter fails validation", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: removing someone else needs a channel admin; a direct channel keeps its two members", body = ErrorBody),
        (status = 404, description = "`not_found`: no such private channel (or the caller is not a member), or that user is not a member", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn remove(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Membership>,
    query: web::Query<MemberQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let notify = state.notifier();
    let op = RemoveMember {
        ctx,
        channel_id: q.channel_id,
        user_id: q.user_id,
    };
    state
        .db
        .call_then(op, move |removed| {
            notify(Notice::MemberRemoved {
                channel_id: removed.channel_id.clone(),
                user_id: removed.user_id.clone(),
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/channels/rotate",
    tag = "members",
    summary = "Post the next key generation of a private channel (any active member; trust v2).",
    request_body = RotateKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Generation `generation` is current; sends may go on; `key.rotated` is sent to the members", body = KeyRotated),
        (status = 400, description = "`invalid_request`: a field fails validation, or a device listed twice; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 403, description = "`forbidden`: `sender_device_id` is not the caller's device or `sender_public_key` not its key", body = ErrorBody),
        (status = 404, description = "`not_found`: no such private channel, or the caller is not a member", body = ErrorBody),
        (status = 409, description = "Nothing stored. `generation_conflict`: `generation` is not the current one + 1 (another rotation won: fetch the members and rotate again if still needed); `envelope_coverage`: the envelopes do not cover exactly the active members' devices (`missing`, `extra`)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (or a per-user cap reached); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn rotate(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Membership>,
    Json(req): Json<RotateKeyRequest>,
) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    let rotated = state
        .db
        .call_then(RotateKey { ctx, req }, move |rotated| {
            notify(Notice::KeyRotated {
                channel_id: rotated.channel_id.clone(),
                generation: rotated.generation,
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(rotated))
}

#[utoipa::path(
    post,
    path = "/channels/direct",
    tag = "members",
    summary = "Open the direct channel with another user: created on the first open, found again after (trust v2).",
    request_body = OpenDirectRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The existing direct channel of the pair", body = ChannelResponse),
        (status = 201, description = "Created: both users are its admins; it waits for key generation 1; `channel.updated` is sent to the two", body = ChannelResponse),
        (status = 400, description = "`invalid_request`: a field fails validation, or the other user is the caller; `invalid_json`: malformed or missing body, unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bearer token missing or unknown; `token_expired`: the session expired", body = ErrorBody),
        (status = 404, description = "`not_found`: no such active user", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "`unavailable`: database unavailable or a queue full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn open_direct(
    state: web::Data<AppState>,
    Throttled(ctx, _): Throttled<Membership>,
    Json(req): Json<OpenDirectRequest>,
) -> Result<HttpResponse, AppError> {
    let notify = state.notifier();
    let (channel, created) = state
        .db
        .call_then(OpenDirect { ctx, req }, move |(channel, members)| {
            if let Some(members) = members {
                notify(Notice::PrivateChannelCreated {
                    channel: channel.clone(),
                    members: members.clone(),
                })
            }
        })
        .await?;
    if created.is_none() {
        return Ok(HttpResponse::Ok().json(ChannelResponse { channel }));
    }
    Ok(HttpResponse::Created().json(ChannelResponse { channel }))
}
