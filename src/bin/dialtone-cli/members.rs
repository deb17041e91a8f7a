//! Trust v2 private channels from the terminal: `members list|add|remove|rotate` and `dm USER`.

use dialtone::client::{Chat, ChatError};

use crate::MembersAction;
use crate::commands::print_report;
use crate::identity::resolve_user;
use crate::output::{clean, out};

pub(crate) async fn members(chat: &mut Chat, action: &MembersAction) -> Result<(), ChatError> {
    match action {
        MembersAction::List { channel } => {
            let c = chat.resolve_channel(channel).await?;
            let members = chat.members(&c.id).await?;
            let names = chat.profiles().await.unwrap_or_default();
            let name_of = |id: &str| {
                names
                    .iter()
                    .find(|(u, _)| u == id)
                    .and_then(|(_, n)| n.as_ref().ok())
                    .map_or_else(|| id.to_owned(), |n| clean(n))
            };
            out(&format!(
                "#{} ({}): key generation {}{}",
                clean(&c.display_name()),
                c.id,
                members.key_generation,
                if members.rotation_required {
                    "; waiting for a new key (someone left): messages are refused until a member runs `members rotate`"
                } else {
                    ""
                }
            ));
            for m in members.members {
                let state = match &m.removed_at {
                    Some(at) => format!("removed {at}"),
                    None => format!("joined {}", m.joined_at),
                };
                out(&format!(
                    "{:<24} {:<7} {}  {state}",
                    name_of(&m.user_id),
                    m.role,
                    m.user_id
                ));
            }
        }
        MembersAction::Add {
            channel,
            user,
            admin,
        } => {
            let c = chat.resolve_channel(channel).await?;
            let (user_id, shown) = resolve_user(chat, Some(user)).await?;
            let report = chat.add_member(&c.id, &user_id, *admin).await?;
            out(&format!(
                "added {shown} to #{}; the current key went to {} of their device(s)",
                clean(&c.display_name()),
                report.envelopes()
            ));
            print_report(&report);
            if report.envelopes() == 0 {
                eprintln!(
                    "note: none of their devices got the key yet (none can be verified, or they have none); they can read the channel once a member's client shares it"
                );
            }
        }
        MembersAction::Remove { channel, user } => {
            let c = chat.resolve_channel(channel).await?;
            let (user_id, shown) = resolve_user(chat, Some(user)).await?;
            match chat.remove_member(&c.id, &user_id).await? {
                Some(generation) => out(&format!(
                    "removed {shown} from #{}; its key is now generation {generation}, which they never get",
                    clean(&c.display_name())
                )),
                None => out(&format!("you left #{}", clean(&c.display_name()))),
            }
        }
        MembersAction::Rotate { channel } => {
            let c = chat.resolve_channel(channel).await?;
            let generation = chat.rotate_channel(&c.id).await?;
            out(&format!(
                "#{} now uses key generation {generation}",
                clean(&c.display_name())
            ));
        }
    }
    Ok(())
}

pub(crate) async fn dm(chat: &mut Chat, user: &str) -> Result<(), ChatError> {
    let (user_id, shown) = resolve_user(chat, Some(user)).await?;
    let (channel, created) = chat.open_direct(&user_id).await?;
    out(&format!(
        "{} direct channel with {shown}: {} (send with `send {} TEXT`)",
        if created { "opened a new" } else { "your" },
        channel.id,
        channel.id
    ));
    Ok(())
}
