//! What reaches the terminal: lines, local times, and other people's text made harmless.

use std::io::Write;

use dialtone::client::ChatMessage;

/// Print one line of chat content; a closed stdout (`| head`) ends the program quietly.
pub(crate) fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{s}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// `[time] name: text`, with a tag (`#channel`, `(broadcast)`) before the name when given, and
/// `(unverified)` before the name unless the sender's device signed the text and the name comes
/// from the sender's signed profile (docs/TRUST.md §6.4): without both, anyone holding the
/// channel key, or the server, could have written the line or chosen the name it shows.
pub(crate) fn line(m: &ChatMessage, tag: Option<&str>, with_date: bool) -> String {
    let time = local_time(&m.sent_at, with_date);
    let tag = tag.map(|t| format!("{t} ")).unwrap_or_default();
    let mark = if m.authenticity.is_verified() && m.name_verified {
        ""
    } else {
        "(unverified) "
    };
    let text = clean(&m.text).replace('\n', "\n    ");
    format!("[{time}] {tag}{mark}{}: {text}", clean(&m.sender_name))
}

pub(crate) fn local_time(rfc3339: &str, with_date: bool) -> String {
    let format = if with_date {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%H:%M:%S"
    };
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Local).format(format).to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// Other people's text must not drive the terminal: control characters (escape sequences) are
/// shown escaped. Newlines are kept (indented by the caller).
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' || !c.is_control() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;
    use crate::session::resolve_home;
    use crate::{Cli, Command};
    use dialtone::client::Authenticity;

    #[test]
    fn other_peoples_text_cannot_drive_the_terminal() {
        assert_eq!(clean("hi\u{1b}[2Jthere"), "hi\\u{1b}[2Jthere");
        assert_eq!(clean("two\nlines\ttab"), "two\nlines\\ttab");
        let m = ChatMessage {
            id: "m".into(),
            channel_id: None,
            sender_id: "u".into(),
            sender_name: "bob\u{7}".into(),
            name_verified: true,
            text: "a\nb".into(),
            sent_at: "not a time".into(),
            client_message_id: None,
            authenticity: Authenticity::Verified {
                device_id: "d".into(),
            },
        };
        assert_eq!(
            line(&m, Some("#general"), true),
            "[not a time] #general bob\\u{7}: a\n    b"
        );
        let unsigned = ChatMessage {
            authenticity: Authenticity::Unverified("v1".into()),
            ..m.clone()
        };
        assert_eq!(
            line(&unsigned, None, true),
            "[not a time] (unverified) bob\\u{7}: a\n    b"
        );
        let claimed = ChatMessage {
            name_verified: false,
            ..m
        };
        assert!(line(&claimed, None, true).contains("(unverified) bob"));
    }

    #[test]
    fn invite_tokens_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from([
            "dialtone-cli",
            "register",
            "--username",
            "bob",
            "--invite",
            "-a3rjLN5i9tz6-d1fJvc48",
        ])
        .unwrap();
        match cli.command {
            Command::Register { invite, .. } => assert_eq!(invite, "-a3rjLN5i9tz6-d1fJvc48"),
            _ => panic!("not register"),
        }
    }

    #[test]
    fn home_prefers_the_flag() {
        let flag = PathBuf::from("/some/where");
        assert_eq!(resolve_home(Some(flag.clone())).unwrap(), flag);
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "dialtone-cli",
            "--profile",
            "bob",
            "send",
            "general",
            "-1",
            "is",
            "odd",
        ])
        .unwrap();
        match cli.command {
            Command::Send { channel, text } => {
                assert_eq!(channel, "general");
                assert_eq!(text.join(" "), "-1 is odd");
            }
            _ => panic!("not send"),
        }
        assert!(
            Cli::try_parse_from([
                "dialtone-cli",
                "--fingerprint",
                "aa",
                "--ca-file",
                "x",
                "devices"
            ])
            .is_err()
        );
    }
}
