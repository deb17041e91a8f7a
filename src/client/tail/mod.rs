//! Following the live stream ([`Chat::follow`]): decrypted messages and broadcasts, channel
//! changes, and key distribution to devices that join — across dropped connections.
//!
//! After every (re)connect each followed channel is caught up with `sync {channel_id, after: last
//! seen id}`. While a channel syncs, its live messages are held back; when `sync.complete` arrives
//! the held and replayed messages are delivered together in commit order (`sent_at` is strictly
//! increasing per server) without duplicates. A replay cut short (`has_more`) is completed from
//! REST history, which is read after the socket is subscribed, so nothing falls in between.
//!
//! Layout: this file holds the options, the events and the connection loop; `events` what each
//! server event does to the stream (catch-up, key sharing, delivery).

mod events;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use super::chat::{Chat, ChatError, ChatResult, ShareReport};
use super::rest::Page;
use super::sealing::ChatMessage;
use super::{ClientError, Incoming, WsClient};
use crate::protocol::rest::ChannelMessage;
use crate::protocol::ws::{ClientFrame, close_code};

/// Most messages a REST catch-up page asks for (the server's maximum).
const CATCH_UP_PAGE: u32 = 500;
/// Message ids remembered to drop duplicates (replays overlapping live delivery).
const DEDUP_WINDOW: usize = 10_000;

/// How to follow.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Follow one channel (by id) instead of every channel.
    pub channel: Option<String>,
    /// Messages of history delivered first, per channel (marked `replayed`).
    pub backlog: u32,
    /// Wrap held keys for devices announced by `device.joined`.
    pub share_on_join: bool,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            channel: None,
            backlog: 0,
            share_on_join: true,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What [`Chat::follow`] reports.
#[derive(Debug)]
pub enum ChatEvent {
    /// The socket is up (again) and catching up.
    Connected {
        reconnect: bool,
    },
    /// The connection dropped (or could not be made); the next attempt is in `retry_in`.
    Disconnected {
        reason: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// A channel message, decrypted or with the reason it could not be. `replayed`: delivered
    /// with the backlog or a catch-up batch (replays, plus live messages held back meanwhile)
    /// rather than as it arrived.
    Message {
        channel_id: String,
        message: Result<ChatMessage, ChatError>,
        replayed: bool,
    },
    Broadcast(Result<ChatMessage, ChatError>),
    /// A channel was created (`created`) or renamed.
    ChannelUpdated {
        channel_id: String,
        name: Result<String, ChatError>,
        created: bool,
    },
    ChannelDeleted {
        channel_id: String,
    },
    /// A device was added; `shared` is what this client did about it (None: sharing is off, or
    /// it is this very device).
    DeviceJoined {
        user_id: String,
        /// The user's decrypted profile name, when published and readable here.
        user_name: Option<String>,
        device_id: String,
        shared: Option<Result<ShareReport, ChatError>>,
    },
    ProfileUpdated {
        user_id: String,
        name: Option<String>,
    },
    Presence {
        user_id: String,
        online: bool,
    },
    /// [v2] A user joined a private channel (this user, when `user_id` is theirs).
    MemberAdded {
        channel_id: String,
        user_id: String,
        user_name: Option<String>,
        role: String,
    },
    /// [v2] A user left or was removed from a private channel; `me`: this user, who will get
    /// nothing more from it.
    MemberRemoved {
        channel_id: String,
        user_id: String,
        user_name: Option<String>,
        me: bool,
    },
    /// [v2] A private channel's key moved to a new generation.
    KeyRotated {
        channel_id: String,
        generation: i64,
    },
    /// An `error` event from the server; `retry_after` as in [`crate::client::ChatError::Refused`].
    ServerError {
        code: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// Something worth telling that is not an event (e.g. a channel this device cannot read).
    Notice(String),
}

/// Bounded memory of delivered message ids.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// `false` if `id` was delivered already.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        if self.order.len() > DEDUP_WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

#[derive(Default)]
struct State {
    /// Channels followed.
    channels: BTreeSet<String>,
    /// Newest message delivered per channel: the `sync` cursor.
    last_seen: HashMap<String, String>,
    /// Channels whose `sync` is in flight, with the cursor it was sent with.
    syncing: HashMap<String, Option<String>>,
    /// Live messages held back while their channel syncs.
    held: HashMap<String, Vec<ChannelMessage>>,
    seen: Seen,
}

/// Why the read loop ended.
enum End {
    Stopped,
    Dropped(String),
}

fn backoff(opts: &FollowOptions, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    let base = opts
        .backoff_initial
        .saturating_mul(factor)
        .min(opts.backoff_max);
    // ±20% jitter, so clients dropped together do not come back in lockstep.
    let r = crate::crypto::random_bytes(1)
        .first()
        .copied()
        .unwrap_or(128);
    let jitter = 0.8 + 0.4 * f64::from(r) / 255.0;
    base.mul_f64(jitter)
}

impl Chat {
    /// Follow the event stream until `stop` resolves (then `Ok`) or the server ends the session
    /// for good (logout, revocation, expiry: [`ChatError::SessionEnded`]). Dropped connections
    /// are retried with exponential backoff and caught up with `sync`.
    pub async fn follow<F, S>(
        &mut self,
        opts: FollowOptions,
        mut on_event: F,
        stop: S,
    ) -> ChatResult<()>
    where
        F: FnMut(ChatEvent) + Send,
        S: Future<Output = ()> + Send,
    {
        let mut stop = std::pin::pin!(stop);
        let mut state = State::default();
        tokio::select! {
            _ = &mut stop => return Ok(()),
            r = self.start_following(&opts, &mut state, &mut on_event) => r?,
        }
        let mut attempt = 0u32;
        let mut reconnect = false;
        loop {
            let connected = tokio::select! {
                _ = &mut stop => return Ok(()),
                r = self.connect(opts.channel.is_some()) => r,
            };
            let reason = match connected {
                Ok(mut ws) => {
                    attempt = 0;
                    on_event(ChatEvent::Connected { reconnect });
                    let end = tokio::select! {
                        _ = &mut stop => End::Stopped,
                        r = self.run_connection(&mut ws, &opts, &mut state, &mut on_event, reconnect) => r?,
                    };
                    match end {
                        End::Stopped => {
                            let _ = ws.close().await;
                            return Ok(());
                        }
                        End::Dropped(reason) => reason,
                    }
                }
                Err(ChatError::Client(ClientError::Api { status: 401, .. })) => {
                    return Err(ChatError::SessionEnded(
                        "the session was refused (expired or revoked)".into(),
                    ));
                }
                Err(e) => e.to_string(),
            };
            reconnect = true;
            attempt = attempt.saturating_add(1);
            let retry_in = backoff(&opts, attempt);
            on_event(ChatEvent::Disconnected {
                reason,
                attempt,
                retry_in,
            });
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    /// The channels to follow, the backlog, and the cursors the first `sync` starts from.
    async fn start_following<F: FnMut(ChatEvent) + Send>(
        &mut self,
        opts: &FollowOptions,
        state: &mut State,
        on_event: &mut F,
    ) -> ChatResult<()> {
        state.channels = match &opts.channel {
            Some(c) => [c.clone()].into(),
            None => self
                .rest()
                .channels()
                .await?
                .into_iter()
                .map(|c| c.id)
                .collect(),
        };
        let channels: Vec<String> = state.channels.iter().cloned().collect();
        for channel in channels {
            let page = Page {
                limit: Some(opts.backlog.max(1)),
                ..Page::default()
            };
            let res = self.rest().messages(&channel, &page).await?;
            if opts.backlog == 0 {
                if let Some(last) = res.messages.last() {
                    state.last_seen.insert(channel.clone(), last.id.clone());
                }
                continue;
            }
            if !res.messages.is_empty() && self.try_channel_key(&channel).await?.is_none() {
                on_event(ChatEvent::Notice(format!(
                    "channel {channel}: this device has no key yet; its messages cannot be shown"
                )));
            }
            for m in res.messages {
                self.deliver(state, m, true, on_event).await;
            }
        }
        Ok(())
    }

    /// Read one connection until it drops. Errors are fatal (the session ended).
    async fn run_connection<F: FnMut(ChatEvent) + Send>(
        &mut self,
        ws: &mut WsClient,
        opts: &FollowOptions,
        state: &mut State,
        on_event: &mut F,
        reconnect: bool,
    ) -> ChatResult<End> {
        if reconnect && opts.channel.is_none() {
            // Channels created while we were away: follow them from their start.
            if let Ok(channels) = self.rest().channels().await {
                state.channels.extend(channels.into_iter().map(|c| c.id));
            }
        }
        if let Some(c) = &opts.channel
            && let Err(e) = ws.send(&ClientFrame::subscribe(c)).await
        {
            return Ok(End::Dropped(e.to_string()));
        }
        state.held.clear();
        state.syncing.clear();
        for channel in state.channels.clone() {
            let after = state.last_seen.get(&channel).cloned();
            if let Err(e) = ws.send(&ClientFrame::sync(&channel, after.clone())).await {
                return Ok(End::Dropped(e.to_string()));
            }
            state.syncing.insert(channel, after);
        }
        loop {
            match ws.next().await {
                Ok(Some(Incoming::Event(e))) => {
                    self.on_server_event(*e, opts, state, on_event).await?
                }
                Ok(Some(Incoming::Closed { code, reason })) if code == close_code::NORMAL => {
                    let why = if reason.is_empty() {
                        "connection closed".to_owned()
                    } else {
                        reason
                    };
                    return Err(ChatError::SessionEnded(why));
                }
                Ok(Some(Incoming::Closed { code, reason })) => {
                    return Ok(End::Dropped(format!(
                        "closed by the server ({code} {reason})"
                    )));
                }
                Ok(None) => return Ok(End::Dropped("connection lost".into())),
                Err(e) => return Ok(End::Dropped(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let opts = FollowOptions::default();
        let first = backoff(&opts, 1);
        assert!(
            first >= Duration::from_millis(400) && first <= Duration::from_millis(600),
            "{first:?}"
        );
        let third = backoff(&opts, 3);
        assert!(
            third >= Duration::from_millis(1600) && third <= Duration::from_millis(2400),
            "{third:?}"
        );
        for attempt in [10, 40, u32::MAX] {
            assert!(backoff(&opts, attempt) <= Duration::from_secs(36));
        }
    }

    #[test]
    fn seen_drops_duplicates_within_its_window() {
        let mut s = Seen::default();
        assert!(s.insert("a"));
        assert!(!s.insert("a"));
        for i in 0..DEDUP_WINDOW {
            s.insert(&i.to_string());
        }
        assert!(s.insert("a"), "forgotten beyond the window");
        assert!(s.set.len() <= DEDUP_WINDOW + 1);
    }
}
