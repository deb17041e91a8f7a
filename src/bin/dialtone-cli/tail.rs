//! `tail`: the live stream of a channel (or all), with catch-up, key sharing for joining devices
//! and reconnects.

use std::collections::HashMap;

use dialtone::client::{Chat, ChatError, ChatEvent, FollowOptions};

use crate::output::*;

pub(crate) async fn tail(
    chat: &mut Chat,
    channel: Option<&str>,
    last: u32,
) -> Result<(), ChatError> {
    let only = match channel {
        Some(c) => Some(chat.resolve_channel(c).await?),
        None => None,
    };
    let mut names: HashMap<String, String> = HashMap::new();
    for c in chat.channels().await? {
        names.insert(c.id.clone(), c.display_name());
    }
    let mut people: HashMap<String, String> = HashMap::new();
    if let Ok(profiles) = chat.profiles().await {
        for (id, name) in profiles {
            if let Ok(n) = name {
                people.insert(id, n);
            }
        }
    }
    let single = only.is_some();
    let opts = FollowOptions {
        channel: only.map(|c| c.id),
        backlog: last,
        ..FollowOptions::default()
    };
    eprintln!(
        "following {} (Ctrl-C to stop)",
        if single {
            "the channel"
        } else {
            "every channel"
        }
    );
    let on_event = move |event: ChatEvent| match event {
        ChatEvent::Message {
            channel_id,
            message,
            ..
        } => {
            let tag = (!single).then(|| {
                format!(
                    "#{}",
                    clean(names.get(&channel_id).map_or("?", String::as_str))
                )
            });
            match message {
                Ok(m) => out(&line(&m, tag.as_deref(), false)),
                Err(e) => out(&format!(
                    "{}! {e}",
                    tag.map(|t| t + " ").unwrap_or_default()
                )),
            }
        }
        ChatEvent::Broadcast(Ok(m)) => out(&line(&m, Some("(broadcast)"), false)),
        ChatEvent::Broadcast(Err(e)) => out(&format!("(broadcast) ! {e}")),
        ChatEvent::ChannelUpdated {
            channel_id,
            name,
            created,
        } => {
            let shown = match &name {
                Ok(n) => format!("#{}", clean(n)),
                Err(_) => format!("{channel_id} (no key on this device yet)"),
            };
            if let Ok(n) = name {
                names.insert(channel_id.clone(), n);
            }
            eprintln!(
                "* {} {shown}",
                if created {
                    "new channel"
                } else {
                    "channel renamed to"
                }
            );
        }
        ChatEvent::ChannelDeleted { channel_id } => {
            let name = names.remove(&channel_id).unwrap_or(channel_id);
            eprintln!("* channel #{} was deleted", clean(&name));
        }
        ChatEvent::DeviceJoined {
            user_id,
            user_name,
            device_id,
            shared,
        } => {
            if let Some(n) = user_name {
                people.insert(user_id.clone(), n);
            }
            let who = people
                .get(&user_id)
                .map_or_else(|| format!("a new user ({user_id})"), |n| clean(n));
            match shared {
                // `device.joined` comes on every connection (as in v1): say something only when
                // this device gave it keys or could not.
                Some(Ok(report)) if report.shared.is_empty() && report.failed.is_empty() => {}
                Some(Ok(report)) => {
                    eprintln!(
                        "* device {device_id} of {who}: shared {} key(s) with it",
                        report.shared.len()
                    );
                    for (key, why) in &report.failed {
                        eprintln!("warning: could not share the key of {key}: {why}");
                    }
                }
                Some(Err(e)) => {
                    eprintln!("warning: new device {device_id} of {who}: could not share keys: {e}")
                }
                None => {}
            }
        }
        ChatEvent::Connected { reconnect: true } => eprintln!("* reconnected; catching up"),
        ChatEvent::Connected { reconnect: false } => {}
        ChatEvent::Disconnected {
            reason, retry_in, ..
        } => eprintln!(
            "* disconnected ({reason}); retrying in {:.1}s",
            retry_in.as_secs_f64()
        ),
        ChatEvent::ServerError {
            code,
            message,
            retry_after,
        } => match retry_after {
            Some(secs) => eprintln!("warning: server: {message} ({code}); retry in {secs} s"),
            None => eprintln!("warning: server: {message} ({code})"),
        },
        ChatEvent::Notice(n) => eprintln!("* {n}"),
        ChatEvent::MemberAdded {
            channel_id,
            user_id,
            user_name,
            role,
        } => {
            let channel = names
                .get(&channel_id)
                .map_or(channel_id.clone(), |n| clean(n));
            let who = user_name.map_or(user_id, |n| clean(&n));
            eprintln!("* {who} joined #{channel} ({role})");
        }
        ChatEvent::MemberRemoved {
            channel_id,
            user_id,
            user_name,
            me,
        } => {
            let channel = names
                .get(&channel_id)
                .map_or(channel_id.clone(), |n| clean(n));
            if me {
                eprintln!(
                    "* you were removed from #{channel}: you will receive nothing more from it, and its new key will not reach you"
                );
            } else {
                let who = user_name.map_or(user_id, |n| clean(&n));
                eprintln!(
                    "* {who} left #{channel}; its key is being rotated so they cannot read what comes next"
                );
            }
        }
        ChatEvent::KeyRotated {
            channel_id,
            generation,
        } => {
            let channel = names
                .get(&channel_id)
                .map_or(channel_id.clone(), |n| clean(n));
            eprintln!("* #{channel} now uses key generation {generation}");
        }
        ChatEvent::ProfileUpdated {
            user_id,
            name: Some(name),
        } => {
            people.insert(user_id, name);
        }
        ChatEvent::ProfileUpdated { .. } | ChatEvent::Presence { .. } => {}
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    chat.follow(opts, on_event, stop).await
}
