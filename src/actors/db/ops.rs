//! The request path of the database actor: one operation type per service call, each run as its
//! own future under the caller's slot (see the bounds in the module above).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::protocol::members::{
    AddMemberRequest, KeyRotated, MembersResponse, OpenDirectRequest, RotateKeyRequest,
};
use crate::protocol::rest::{
    Channel, ChannelKeyEnvelope, ChannelKeysUpload, CreateDeviceRequest, CreateInviteRequest,
    Device, DeviceKeysResponse, DirectoryKeyEnvelope, DirectoryKeysUpload, InviteResponse,
    LoginRequest, MessagesResponse, Profile, ProfileRequest, RegisterRequest, User,
};
use crate::protocol::trust::{DeviceListAccepted, DeviceListsResponse, SignedDeviceList};
use crate::service::auth::{self, AuthContext, LoginCandidate, LoginGrant, SignedIn};
use crate::service::channels::{self, PageRequest};
use crate::service::invites::{self, InviteInfo};
use crate::service::messages::{self, BroadcastRequest, StoredBroadcast};
use crate::service::rekey::{self, RekeyReport};
use crate::service::{
    ServiceError, ServiceResult, Store, device_lists, devices, generations, keys, members, users,
};

use super::DbActor;
use super::commit::abandoned;

/// One database operation: a service call on the [`Store`], run by the actor as its own future.
pub trait DbOp: Send + 'static {
    type Output: Send + 'static;
    fn run(self, store: Arc<Store>) -> BoxFuture<'static, ServiceResult<Self::Output>>;
}

/// What must follow an operation's success even when its caller is gone (see
/// [`super::DbHandle::call_then`]).
pub(super) type Then<Out> = Box<dyn FnOnce(&Out) + Send>;

/// An operation on its way to the actor, with the caller's slot and reply channel.
pub(super) struct Request<Op: DbOp> {
    pub(super) op: Op,
    pub(super) slot: OwnedSemaphorePermit,
    pub(super) reply: oneshot::Sender<ServiceResult<Op::Output>>,
    pub(super) then: Option<Then<Op::Output>>,
}

impl<Op: DbOp> Message for Request<Op> {
    type Result = ();
}

impl<Op: DbOp> Handler<Request<Op>> for DbActor {
    type Result = ();

    fn handle(&mut self, req: Request<Op>, ctx: &mut Context<Self>) {
        self.mailbox.handled();
        let Request {
            op,
            slot,
            reply,
            then,
        } = req;
        if reply.is_closed() {
            // The caller gave up while this waited in the mailbox: do not start it.
            return;
        }
        let store = self.store.clone();
        // A started operation runs to its end, holding its slot: the database really is busy
        // with it. Its statements are bounded by the statement timeout (PostgreSQL) or the busy
        // timeout (SQLite). Only a PostgreSQL that stopped answering altogether (no reset, so
        // neither that timeout nor TCP fires) gets it abandoned, well after the statement
        // timeout would have ended it: the pool then discards the connection on its next
        // checkout. SQLite cannot abandon (see [`DbActor::abandonable`]).
        let abandon_after = self
            .abandonable()
            .then(|| self.config.call_timeout + self.config.commit_timeout);
        ctx.spawn(
            async move {
                let result = match abandon_after {
                    None => op.run(store).await,
                    Some(limit) => tokio::time::timeout(limit, op.run(store))
                        .await
                        .unwrap_or_else(|_| Err(abandoned(limit))),
                };
                if let (Ok(out), Some(then)) = (&result, then) {
                    then(out);
                }
                let _ = reply.send(result);
                drop(slot);
            }
            .into_actor(self),
        );
    }
}

/// Declares one operation type per service call: its fields, output and body.
macro_rules! db_requests {
    ($(
        $(#[$doc:meta])*
        $name:ident { $($field:ident : $ty:ty),* $(,)? } -> $out:ty => |$store:ident, $msg:ident| $body:expr;
    )*) => {$(
        $(#[$doc])*
        pub struct $name { $(pub $field: $ty),* }

        impl DbOp for $name {
            type Output = $out;

            #[allow(unused_variables)]
            fn run(self, store: Arc<Store>) -> BoxFuture<'static, ServiceResult<$out>> {
                Box::pin(async move {
                    let $msg = self;
                    let $store: &Store = &store;
                    $body.await
                })
            }
        }
    )*};
}

db_requests! {
    /// `POST /auth/register`, before hashing: can this registration succeed?
    CheckRegistration { req: RegisterRequest } -> () => |s, m| async move { auth::check_registration(s, &m.req).await };
    /// `POST /auth/register`, with the password already hashed.
    Register { req: RegisterRequest, password_hash: String } -> SignedIn => |s, m| auth::register(s, m.req, m.password_hash);
    /// `POST /auth/login`, before the password check.
    FindLoginCandidate { req: LoginRequest } -> LoginCandidate => |s, m| async move { auth::login_candidate(s, &m.req).await };
    /// `POST /auth/login`, after the password check.
    CompleteLogin { grant: LoginGrant } -> SignedIn => |s, m| auth::complete_login(s, m.grant);
    /// Resolve a bearer token.
    Authenticate { token: String } -> AuthContext => |s, m| auth::authenticate(s, &m.token);
    /// `POST /auth/logout`.
    Logout { session_id: String } -> () => |s, m| auth::logout(s, &m.session_id);
    /// Periodic cleanup of expired sessions.
    PurgeExpiredSessions {} -> usize => |s, m| auth::purge_expired_sessions(s);
    /// `POST /users` (admin).
    CreatePlaceholderUser { username: String } -> User => |s, m| users::create_placeholder(s, &m.username);
    /// Whether any user exists.
    AnyUsers {} -> bool => |s, m| users::any_exist(s);
    /// Admin: every user, decrypted usernames.
    ListUsers {} -> Vec<User> => |s, m| users::list(s);
    /// Admin: disable/enable; returns revoked session ids.
    SetUserDisabled { user_id: String, disabled: bool } -> Vec<String> => |s, m| users::set_disabled(s, &m.user_id, m.disabled);
    /// Admin: promote/demote.
    SetUserAdmin { user_id: String, is_admin: bool } -> () => |s, m| users::set_admin(s, &m.user_id, m.is_admin);
    /// `POST /users/profiles`.
    UpsertProfile { ctx: AuthContext, req: ProfileRequest } -> () => |s, m| users::upsert_profile(s, &m.ctx, m.req);
    /// `GET /users/profiles`.
    ListProfiles { ctx: AuthContext } -> Vec<Profile> => |s, m| users::profiles(s, &m.ctx);
    /// The `admins` half of `POST /presence`.
    AdminFlags { user_ids: Vec<String> } -> BTreeMap<String, bool> => |s, m| users::admin_flags(s, m.user_ids);
    /// `POST /devices`: the device and whether it is new.
    CreateDevice { ctx: AuthContext, req: CreateDeviceRequest } -> (Device, bool) => |s, m| devices::create(s, &m.ctx, m.req);
    /// `GET /devices`.
    ListOwnDevices { ctx: AuthContext } -> Vec<Device> => |s, m| devices::list_own(s, &m.ctx);
    /// `GET /devices/keys`.
    DeviceKeys { ctx: AuthContext, user_id: Option<String>, all: bool } -> DeviceKeysResponse => |s, m| devices::keys(s, &m.ctx, m.user_id, m.all);
    /// `DELETE /devices/{id}`: returns revoked session ids.
    DeleteDevice { ctx: AuthContext, device_id: String } -> devices::Removed => |s, m| devices::delete(s, &m.ctx, &m.device_id);
    /// `POST /devices/list` (trust v2).
    PublishDeviceList { ctx: AuthContext, list: SignedDeviceList } -> DeviceListAccepted => |s, m| device_lists::upload(s, &m.ctx, m.list);
    /// `GET /devices/list` (trust v2).
    FetchDeviceLists { user_id: String, after_version: Option<u64> } -> DeviceListsResponse => |s, m| device_lists::fetch(s, &m.user_id, m.after_version);
    /// `GET /channels`.
    ListChannels { ctx: AuthContext } -> Vec<Channel> => |s, m| channels::list(s, &m.ctx);
    /// Every channel id (broker start).
    ChannelIds {} -> Vec<String> => |s, m| channels::ids(s);
    /// Every channel's last committed seq (cluster start and repair).
    ChannelSeqs {} -> Vec<(String, i64)> => |s, m| channels::seqs(s);
    /// Those of `ids` that exist (channels a cluster node learned of by repair, to announce).
    ChannelsByIds { ids: Vec<String> } -> Vec<crate::protocol::rest::Channel> => |s, m| channels::by_ids(s, m.ids);
    /// The cluster's gap fill: committed messages after a seq.
    MessagesAfterSeq { channel_id: String, after_seq: i64, limit: i64 } -> Vec<crate::db::models::MessageRow> => |s, m| channels::messages_after_seq(s, &m.channel_id, m.after_seq, m.limit);
    /// The cluster's session re-check: which of these login sessions are still valid.
    CheckSessions { session_ids: Vec<String>, user_ids: Vec<String> } -> auth::SessionCheck => |s, m| auth::check_sessions(s, m.session_ids, m.user_ids);
    /// `POST /channels`.
    CreateChannel { ctx: AuthContext, name_enc: String, private: bool } -> Channel => |s, m| channels::create(s, &m.ctx, m.name_enc, m.private);
    /// `PATCH /channels`.
    RenameChannel { ctx: AuthContext, channel_id: String, name_enc: String } -> Channel => |s, m| channels::rename(s, &m.ctx, &m.channel_id, m.name_enc);
    /// `DELETE /channels`: returns the deleted id.
    DeleteChannel { ctx: AuthContext, channel_id: String } -> String => |s, m| channels::delete(s, &m.ctx, &m.channel_id);
    /// `GET /channels/messages` and `sync`.
    History { user_id: String, channel_id: String, page: PageRequest } -> MessagesResponse => |s, m| channels::history(s, &m.user_id, &m.channel_id, m.page);
    /// `GET /channels/keys`.
    GetChannelKey { ctx: AuthContext, channel_id: String, generation: Option<i64> } -> ChannelKeyEnvelope => |s, m| keys::channel_key(s, &m.ctx, &m.channel_id, m.generation);
    /// `POST /channels/keys`.
    UploadChannelKeys { ctx: AuthContext, req: ChannelKeysUpload } -> () => |s, m| keys::upload_channel_keys(s, &m.ctx, m.req);
    /// `DELETE /channels/keys`: the caller's own envelope.
    DeleteChannelKey { ctx: AuthContext, channel_id: String } -> bool => |s, m| keys::delete_channel_key(s, &m.ctx, &m.channel_id);
    /// `DELETE /directory/keys`: the caller's own envelope.
    DeleteDirectoryKey { ctx: AuthContext } -> bool => |s, m| keys::delete_directory_key(s, &m.ctx);
    /// `GET /directory/keys`.
    GetDirectoryKey { ctx: AuthContext } -> Option<DirectoryKeyEnvelope> => |s, m| keys::directory_key(s, &m.ctx);
    /// `POST /directory/keys`.
    UploadDirectoryKeys { ctx: AuthContext, req: DirectoryKeysUpload } -> () => |s, m| keys::upload_directory_keys(s, &m.ctx, m.req);
    /// `GET /channels/members` (trust v2).
    ListMembers { ctx: AuthContext, channel_id: String } -> MembersResponse => |s, m| members::list(s, &m.ctx, &m.channel_id);
    /// `POST /channels/members` (trust v2).
    AddMember { ctx: AuthContext, req: AddMemberRequest } -> members::Changed => |s, m| members::add(s, &m.ctx, m.req);
    /// `DELETE /channels/members` (trust v2).
    RemoveMember { ctx: AuthContext, channel_id: String, user_id: String } -> members::Changed => |s, m| members::remove(s, &m.ctx, &m.channel_id, &m.user_id);
    /// `POST /channels/rotate` (trust v2).
    RotateKey { ctx: AuthContext, req: RotateKeyRequest } -> KeyRotated => |s, m| generations::rotate(s, &m.ctx, m.req);
    /// `POST /channels/direct` (trust v2): the channel, and whether it was created now.
    OpenDirect { ctx: AuthContext, req: OpenDirectRequest } -> (Channel, Option<Vec<String>>) => |s, m| members::open_direct(s, &m.ctx, &m.req.user_id, m.req.name_enc);
    /// Every private channel with its active members (the hub at start and on cluster repair).
    PrivateMembers {} -> Vec<(String, Vec<String>)> => |s, m| members::private_members(s);
    /// Mint an invite (sent by the admin actor).
    MintInvite { req: CreateInviteRequest, created_by: Option<String> } -> InviteResponse => |s, m| invites::mint(s, m.req, m.created_by);
    /// Admin: every invite.
    ListInvites {} -> Vec<InviteInfo> => |s, m| invites::list(s);
    /// The expiry of a still usable invite (the zero-config first invite, reused across starts).
    InviteUsableUntil { token: String } -> Option<String> => |s, m| async move { invites::usable_until(s, &m.token).await };
    /// Admin: revoke an invite.
    RevokeInvite { id: String } -> () => |s, m| invites::revoke(s, &m.id);
    /// `message.broadcast`: persist before fan-out.
    StoreBroadcast { req: BroadcastRequest } -> StoredBroadcast => |s, m| messages::store_broadcast(s, m.req);
    /// `dialtone rekey`.
    Rekey {} -> RekeyReport => |s, m| rekey::run(s);
    /// `GET /ready`: does the database answer?
    Ping {} -> () => |s, m| async move { s.pool.ping().await.map_err(ServiceError::from) };
}
