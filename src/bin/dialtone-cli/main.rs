//! `dialtone-cli`: chat from the terminal. A thin front end over [`dialtone::client::Chat`]: it
//! parses arguments, asks for the passphrase and password, and prints; every E2E rule lives in
//! the library.
//!
//! Each `--profile` is one device with its own key store (`<home>/<profile>.keystore`, mode 0600,
//! sealed under a passphrase). Output: chat content on stdout (`[time] name: text`), status and
//! warnings on stderr, and any error as one line on stderr with a non-zero exit code.
//!
//! Layout: this file holds the arguments and dispatch; `session` the key store, sign-in and
//! secrets; `commands` the one-shot commands; `identity` the trust v2 identity commands;
//! `members` private channels and direct messages; `tail` the live stream; `output` what reaches
//! the terminal.

mod commands;
mod identity;
mod members;
mod output;
mod session;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use dialtone::client::{Chat, ChatError, ClientError, KeyStore};

use commands::command;
use session::{explain, login, open_store, register, resolve_home};

#[derive(Parser)]
#[command(
    name = "dialtone-cli",
    version,
    about = "End-to-end encrypted chat from the terminal (a dialtone client)",
    after_help = "Environment: DIALTONE_PASSPHRASE (key store passphrase), DIALTONE_PASSWORD (account \
                  password), DIALTONE_CLI_HOME (key store folder). Without them you are prompted."
)]
struct Cli {
    /// Server URL, e.g. https://localhost:8080 (register and login; later commands use the profile's).
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (as a development server prints it).
    #[arg(long, global = true, value_name = "SHA256", conflicts_with = "ca_file")]
    fingerprint: Option<String>,
    /// Trust server certificates signed by the CA(s) in this PEM file.
    #[arg(long, global = true, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Which device/account to use: each profile has its own key store.
    #[arg(long, global = true, value_name = "NAME", default_value = "default")]
    profile: String,
    /// Key store folder [default: $DIALTONE_CLI_HOME, else $XDG_CONFIG_HOME/dialtone, else ~/.config/dialtone].
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an account with an invite; this profile becomes its first device.
    Register {
        #[arg(long)]
        username: String,
        // Tokens are base64url and may start with `-`.
        #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
        invite: String,
    },
    /// Log in: the same device again, or a new device when this profile has no key store yet.
    Login {
        #[arg(long)]
        username: String,
    },
    /// End the session on the server (the keys stay on this device).
    Logout,
    /// List channels with their decrypted names, or create, rename or delete one (admins).
    Channels {
        #[command(subcommand)]
        action: Option<ChannelAction>,
    },
    /// Send a message to a channel and wait until the server has saved it.
    Send {
        /// Channel id or name.
        channel: String,
        /// The message ("-" reads it from standard input).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        text: Vec<String>,
    },
    /// Send a message to every device on the server.
    Broadcast {
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        text: Vec<String>,
    },
    /// Show a channel's history, decrypted.
    History {
        /// Channel id or name.
        channel: String,
        /// Only messages older than this message id (paging back).
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
    },
    /// Follow channels live until Ctrl-C; shares keys with devices that join.
    Tail {
        /// Only this channel (id or name); default every channel.
        channel: Option<String>,
        /// Messages of history shown first, per channel.
        #[arg(long, value_name = "N", default_value_t = 10)]
        last: u32,
    },
    /// Mint an invite (admins) and print its token.
    Invite {
        #[arg(long, value_name = "N")]
        max_uses: Option<u32>,
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
    },
    /// List this account's devices.
    Devices,
    /// Give every device the keys this device holds (or only one channel's).
    Share {
        /// Channel id or name.
        channel: Option<String>,
    },
    /// List people (published profiles) and who is online.
    Users,
    /// Show the safety number you share with a user (60 digits and a QR code) to compare with
    /// them; `--mark NUMBER` once they matched.
    Verify {
        /// User id or published name.
        user: String,
        /// The 60 digits you compared (spaces allowed): they matched, so mark this contact
        /// verified (also accepts a changed identity). Refused unless the contact's identity
        /// still gives this number.
        #[arg(long, value_name = "SAFETY_NUMBER")]
        mark: Option<String>,
    },
    /// Trust v2: this account's identity and signed device list, and contacts' identities.
    Identity {
        #[command(subcommand)]
        action: IdentityAction,
    },
    /// Trust v2: a private channel's members and key (`channels create --private` makes one).
    Members {
        #[command(subcommand)]
        action: MembersAction,
    },
    /// Trust v2: open (or find again) your direct channel with a user.
    Dm {
        /// User id or published name.
        user: String,
    },
}

#[derive(Subcommand)]
enum MembersAction {
    /// Who is in a private channel, and its key generation.
    List { channel: String },
    /// Add a user (channel admins); the current key is shared with their verified devices.
    Add {
        channel: String,
        /// User id or published name.
        user: String,
        /// Make them a channel admin (may add and remove members).
        #[arg(long)]
        admin: bool,
    },
    /// Remove a user (channel admins), or leave (your own name); the key is rotated at once.
    Remove {
        channel: String,
        /// User id or published name.
        user: String,
    },
    /// Post a new key generation for exactly the current members' devices.
    Rotate { channel: String },
}

#[derive(Subcommand)]
enum IdentityAction {
    /// Create the identity key and publish the device list here. `register` and a first `login`
    /// do it by themselves on an account's only device; this is for an account that already has
    /// several devices and no list.
    Init,
    /// Show a user's verified devices (default: yours), pinning their identity on first use.
    Show {
        /// User id or published name.
        user: Option<String>,
    },
    /// On a new device: print the offer and code that a listed device approves.
    Pair,
    /// On the device holding the identity key: sign a new device in.
    Approve {
        /// The offer the new device printed.
        offer: String,
        /// The code the new device shows (it must match).
        #[arg(long)]
        code: String,
    },
    /// Accept a contact's changed identity (after checking with them that they reset it).
    Accept {
        /// User id or published name.
        user: String,
    },
    /// Start over with a new identity key, this device alone on the list (contacts are warned).
    Reset,
}

#[derive(Subcommand)]
enum ChannelAction {
    /// Create a channel (admins), or a private one (anyone; you become its admin).
    Create {
        /// Members only, with its own key generations (trust v2).
        #[arg(long)]
        private: bool,
        #[arg(required = true, num_args = 1..)]
        name: Vec<String>,
    },
    /// Rename a channel (admins).
    Rename {
        channel: String,
        #[arg(required = true, num_args = 1..)]
        name: Vec<String>,
    },
    /// Delete a channel with its history (admins).
    Delete { channel: String },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow!("cannot start the async runtime: {e}")),
    };
    let result = resolve_home(cli.home.clone()).and_then(|home| runtime.block_on(run(cli, home)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// clap's usage errors, as one line (help and version still print in full).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("dialtone-cli: error: a command is missing (see `dialtone-cli --help`)");
            ExitCode::from(2)
        }
        _ => {
            // clap's first paragraph, e.g. "the following required arguments were not
            // provided:" plus the indented names, joined into one line.
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.trim_start_matches("error: ");
            eprintln!("dialtone-cli: error: {first} (see `dialtone-cli --help`)");
            ExitCode::from(2)
        }
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let text = format!("{e:#}");
    eprintln!(
        "dialtone-cli: error: {}",
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    ExitCode::from(1)
}

async fn run(cli: Cli, home: PathBuf) -> anyhow::Result<()> {
    let path = KeyStore::path_for(&home, &cli.profile)?;
    match &cli.command {
        Command::Register { username, invite } => register(&cli, &path, username, invite).await,
        Command::Login { username } => login(&cli, &path, username).await,
        _ => {
            let store = open_store(&cli, &path)?;
            let mut chat = Chat::resume(store).map_err(|e| explain(e, &cli))?;
            if !matches!(cli.command, Command::Logout) {
                // Pick up a directory key shared since the last run (and publish our name).
                if let Err(e) = chat.refresh().await {
                    match e {
                        ChatError::Client(ClientError::Api { status: 401, .. }) => {
                            return Err(explain(e, &cli));
                        }
                        other => eprintln!("warning: could not fetch keys: {other}"),
                    }
                }
            }
            let result = command(&cli, &mut chat).await.map_err(|e| explain(e, &cli));
            for w in chat.take_warnings() {
                eprintln!("warning: {w}");
            }
            result
        }
    }
}
