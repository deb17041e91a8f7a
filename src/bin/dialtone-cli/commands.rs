//! The commands other than sign-in and `tail`: channels, send, broadcast, history, invites,
//! devices, key sharing, users.

use dialtone::client::rest::Page;
use dialtone::client::{Chat, ChatError, ShareReport};
use dialtone::protocol::rest::CreateInviteRequest;

use crate::*;
use crate::{output::*, tail::*};

pub(crate) async fn command(cli: &Cli, chat: &mut Chat) -> Result<(), ChatError> {
    match &cli.command {
        Command::Register { .. } | Command::Login { .. } => Ok(()),
        Command::Logout => {
            chat.logout().await?;
            out(&format!(
                "logged out (the keys stay in {})",
                chat.store().path().display()
            ));
            Ok(())
        }
        Command::Channels { action } => channels(chat, action.as_ref()).await,
        Command::Send { channel, text } => {
            let text = message_text(text)?;
            let channel = chat.resolve_channel(channel).await?;
            let m = chat.send(&channel.id, &text).await?;
            out(&line(&m, None, true));
            Ok(())
        }
        Command::Broadcast { text } => {
            let text = message_text(text)?;
            let (m, skipped) = chat.broadcast(&text).await?;
            for s in skipped {
                eprintln!("warning: skipped {s}");
            }
            out(&line(&m, Some("(broadcast)"), true));
            Ok(())
        }
        Command::History {
            channel,
            before,
            limit,
        } => {
            let channel = chat.resolve_channel(channel).await?;
            let page = Page {
                limit: Some(*limit),
                before: before.clone(),
                after: None,
            };
            let history = chat.history(&channel.id, &page).await?;
            for m in &history.messages {
                match m {
                    Ok(m) => out(&line(m, None, true)),
                    Err(e) => out(&format!("! {e}")),
                }
            }
            if history.has_more
                && let Some(first) = &history.first_id
            {
                eprintln!("(older messages: --before {first})");
            }
            Ok(())
        }
        Command::Tail { channel, last } => tail(chat, channel.as_deref(), *last).await,
        Command::Invite {
            max_uses,
            expires_in,
        } => {
            let invite = chat
                .invite(&CreateInviteRequest {
                    expires_in_seconds: *expires_in,
                    max_uses: *max_uses,
                })
                .await?;
            out(&invite.token);
            eprintln!("expires {}", invite.expires_at);
            Ok(())
        }
        Command::Devices => {
            for d in chat.devices().await? {
                let me = if d.id == chat.device_id() {
                    "  (this device)"
                } else {
                    ""
                };
                let seen = d
                    .last_seen_at
                    .as_deref()
                    .map(|t| local_time(t, true))
                    .unwrap_or_else(|| "-".into());
                out(&format!(
                    "{}  added {}  last seen {seen}{me}",
                    d.id,
                    local_time(&d.created_at, true)
                ));
            }
            Ok(())
        }
        Command::Share { channel } => {
            let channel_id = match channel {
                Some(c) => Some(chat.resolve_channel(c).await?.id),
                None => None,
            };
            let report = chat.share_keys(channel_id.as_deref(), None).await?;
            if report.shared.is_empty() && report.failed.is_empty() && report.held.is_empty() {
                out("nothing to share: this device holds no keys, or there is no other device");
            } else {
                out(&format!(
                    "shared {} key(s) in {} envelope(s)",
                    report.shared.len(),
                    report.envelopes()
                ));
            }
            print_report(&report);
            Ok(())
        }
        Command::Identity { action } => crate::identity::identity(chat, action).await,
        Command::Verify { user, mark } => {
            crate::identity::verify(chat, user, mark.as_deref()).await
        }
        Command::Members { action } => crate::members::members(chat, action).await,
        Command::Dm { user } => crate::members::dm(chat, user).await,
        Command::Users => {
            let profiles = chat.profiles().await?;
            let ids: Vec<String> = profiles.iter().map(|(id, _)| id.clone()).collect();
            let presence = if ids.is_empty() {
                None
            } else {
                Some(chat.rest().presence(&ids).await?)
            };
            for (id, name) in profiles {
                let name = name.unwrap_or_else(|e| format!("({e})"));
                let online = presence
                    .as_ref()
                    .and_then(|p| p.statuses.get(&id).copied())
                    .unwrap_or(false);
                let admin = presence
                    .as_ref()
                    .and_then(|p| p.admins.get(&id).copied())
                    .unwrap_or(false);
                out(&format!(
                    "{:<24} {id}{}{}",
                    clean(&name),
                    if online { "  online" } else { "" },
                    if admin { "  admin" } else { "" }
                ));
            }
            Ok(())
        }
    }
}

pub(crate) async fn channels(
    chat: &mut Chat,
    action: Option<&ChannelAction>,
) -> Result<(), ChatError> {
    match action {
        None => {
            let list = chat.channels().await?;
            if list.is_empty() {
                eprintln!("no channels yet (an admin creates one with `channels create NAME`)");
            }
            for c in list {
                let kind = match c.kind.as_deref() {
                    Some(k) => format!("  ({k})"),
                    None => String::new(),
                };
                out(&format!("#{:<24} {}{kind}", clean(&c.display_name()), c.id));
            }
        }
        Some(ChannelAction::Create {
            name,
            private: true,
        }) => {
            let name = name.join(" ");
            let channel = chat.create_private_channel(&name).await?;
            out(&format!(
                "created private #{} ({}); add people with `members add {} USER`",
                clean(name.trim()),
                channel.id,
                channel.id
            ));
        }
        Some(ChannelAction::Create {
            name,
            private: false,
        }) => {
            let name = name.join(" ");
            let (channel, report) = chat.create_channel(&name).await?;
            out(&format!(
                "created #{} ({}); its key went to {} device(s)",
                clean(name.trim()),
                channel.id,
                report.envelopes()
            ));
            print_report(&report);
        }
        Some(ChannelAction::Rename { channel, name }) => {
            let name = name.join(" ");
            let c = chat.resolve_channel(channel).await?;
            chat.rename_channel(&c.id, &name).await?;
            out(&format!("renamed {} to #{}", c.id, clean(name.trim())));
        }
        Some(ChannelAction::Delete { channel }) => {
            let c = chat.resolve_channel(channel).await?;
            chat.delete_channel(&c.id).await?;
            out(&format!("deleted #{} ({})", clean(&c.display_name()), c.id));
        }
    }
    Ok(())
}

pub(crate) fn print_report(report: &ShareReport) {
    for s in &report.skipped {
        eprintln!("warning: skipped {s}");
    }
    for (key, why) in &report.failed {
        eprintln!("warning: could not share the key of {key}: {why}");
    }
    for (key, devices) in &report.held {
        eprintln!(
            "note: {} device(s) already hold a key for {key} from someone else, left as it is \
             (the server lets only that sender, an admin or the device itself replace it): {}",
            devices.len(),
            devices.join(", ")
        );
    }
}

pub(crate) fn message_text(words: &[String]) -> Result<String, ChatError> {
    let text = if words.len() == 1 && words[0] == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            ChatError::Invalid(format!("reading the message from standard input: {e}"))
        })?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        words.join(" ")
    };
    if text.trim().is_empty() {
        return Err(ChatError::Invalid("the message is empty".into()));
    }
    Ok(text)
}
