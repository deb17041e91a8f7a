//! `dialtone`: the server binary (thin: everything lives in the library).
//!
//! Subcommands: `serve` (default), `migrate`, `invite`, `rekey`, `openapi`.

use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dialtone::config::{Config, Loaded};
use dialtone::protocol::rest::CreateInviteRequest;
use dialtone::server::{self, Storage};

#[derive(Parser)]
#[command(
    name = "dialtone",
    version,
    about = "Self-hosted end-to-end encrypted chat server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Mint an invite straight through the database and print its token.
    Invite {
        /// Lifetime in seconds (default DIALTONE_INVITE_TTL_SECS).
        #[arg(long)]
        expires_in: Option<u64>,
        /// How many registrations it allows.
        #[arg(long, default_value_t = 1)]
        max_uses: u32,
    },
    /// Re-encrypt every encrypted column under DIALTONE_CHANNEL_KEY (old keys in
    /// DIALTONE_CHANNEL_KEY_PREVIOUS) and print the counts.
    Rekey,
    /// Print the OpenAPI description that `GET /openapi.json` serves (needs no configuration).
    Openapi,
}

/// mimalloc returns freed memory to the system: with glibc's allocator, every blocking thread that
/// ever hashed a password (argon2id, 19 MiB) kept that much resident for good.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    init_tracing();
    exit_on_panic();
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Openapi)) {
        print!("{}", dialtone::http::openapi::document());
        return ExitCode::SUCCESS;
    }
    let loaded = match Config::from_env() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dialtone: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(loaded).await,
            Command::Migrate => {
                Storage::open(&loaded.config).await?.close().await;
                println!("migrations applied");
                Ok(())
            }
            Command::Invite {
                expires_in,
                max_uses,
            } => {
                let storage = Storage::open(&loaded.config).await?;
                let invite = storage
                    .mint_invite(CreateInviteRequest {
                        expires_in_seconds: expires_in,
                        max_uses: Some(max_uses),
                    })
                    .await?;
                storage.close().await;
                println!("{}", invite.token);
                eprintln!("expires {}; {} use(s)", invite.expires_at, invite.max_uses);
                Ok(())
            }
            Command::Rekey => {
                let storage = Storage::open(&loaded.config).await?;
                let report = storage.db.call(dialtone::actors::db::Rekey {}).await;
                storage.close().await;
                let report = report?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                if report.failed() > 0 {
                    anyhow::bail!(
                        "{} value(s) could not be decrypted; see the log",
                        report.failed()
                    );
                }
                Ok(())
            }
            Command::Openapi => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    let Loaded { config, first_run } = loaded;
    let listener = TcpListener::bind(config.listen_addr).with_context(|| {
        format!(
            "DIALTONE_LISTEN_ADDR: cannot listen on {}",
            config.listen_addr
        )
    })?;
    let data_dir = config.data_dir.clone();
    let admin_token = config.admin_token.expose().clone();
    let generated = config.generated_secrets;
    let running = server::start(config, listener).await?;
    let shutdown = shutdown_signal();
    let scheme = if running.tls_fingerprint.is_some() {
        "https"
    } else {
        "http"
    };
    let port = running.local_addr.port();
    println!(
        "dialtone is running at {scheme}://localhost:{port} (listening on {})",
        running.local_addr
    );
    if let Some(addr) = running.metrics_addr {
        println!("metrics listening on {addr}");
    }
    if let Some(fp) = &running.tls_fingerprint {
        println!("TLS certificate SHA-256 fingerprint: {fp}");
    }
    if generated {
        println!("secrets: {}", data_dir.join("secrets.env").display());
    }
    // Until someone registers, a zero-config server shows its first invite on every start (the
    // same one), and the admin token on the first start only.
    if generated
        && let Some(welcome) = dialtone::bootstrap::welcome(&running.storage, &data_dir).await?
    {
        println!();
        if first_run {
            println!("First run: secrets generated into {}", data_dir.display());
            println!("  admin token : {admin_token}");
        } else {
            println!(
                "No user has registered yet (the admin token is in {}).",
                data_dir.join("secrets.env").display()
            );
        }
        let again = if welcome.reused { ", as before" } else { "" };
        println!(
            "  first invite: {}   (expires {}{again})",
            welcome.invite_token, welcome.expires_at
        );
        println!("The first user to register becomes the admin.");
    }
    println!("Press Ctrl-C to stop.");
    running.serve_until(shutdown).await
}

/// SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives right after the banner must stop the server gracefully,
/// not kill it with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Exit code after a panic.
const PANIC_EXIT: i32 = 70;

/// Exit policy: a panic anywhere (an actor's handler included) is logged at ERROR and ends the
/// process with code 70. An actor that died would otherwise leave a zombie: a listener that
/// accepts requests nobody will answer. A supervisor (systemd, docker `restart:`) starts it again;
/// acknowledged messages are committed before their echo, so nothing acknowledged is lost.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, exit_code = PANIC_EXIT, "panic: exiting");
        default(info);
        std::process::exit(PANIC_EXIT);
    }));
}

fn init_tracing() {
    let spec = std::env::var("RUST_LOG").ok();
    let filter = dialtone::logging::env_filter(spec.as_deref());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}
