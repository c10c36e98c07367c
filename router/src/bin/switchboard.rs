//! `switchboard`: run the media router; `switchboard token`: make issuer
//! keys and mint access tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use router::{Config, Router};

/// Switchboard media router: push-to-talk, voice, chat and meeting rooms.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (see docs/operations.md); optional.
    #[arg(short, long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Control-channel TCP address (overrides the file).
    #[arg(long, env = "SWITCHBOARD_CONTROL")]
    control: Option<SocketAddr>,
    /// Media UDP address (overrides the file).
    #[arg(long, env = "SWITCHBOARD_MEDIA")]
    media: Option<SocketAddr>,
    /// Media workers, one thread and UDP port each (overrides the file;
    /// default 1).
    #[arg(long, env = "SWITCHBOARD_MEDIA_WORKERS")]
    media_workers: Option<usize>,
    /// gRPC admin address (overrides the file; default 127.0.0.1:7072).
    #[arg(long, env = "SWITCHBOARD_ADMIN")]
    admin: Option<SocketAddr>,
    /// Bearer token for the admin API; required to bind it beyond
    /// loopback. A flag shows in `ps`: prefer the environment or
    /// --admin-token-file there.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file whose first line is the admin token.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Access tokens (docs/security.md).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Makes an issuer key: writes the private key (PKCS#8 PEM, readable by
    /// you alone) and prints the `[[auth.keys]]` table for the router.
    Keygen {
        /// Where the private key goes; an existing file is not overwritten.
        #[arg(long)]
        out: PathBuf,
        /// The key's id, which tokens name in their `kid`.
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Mints a signed access token and prints it.
    Mint {
        /// The issuer's private key (from `keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The key's id, as in `[[auth.keys]] id`.
        #[arg(long, default_value = "k1")]
        kid: String,
        /// The identity (`sub`): what revocations name.
        #[arg(long)]
        sub: String,
        /// The display name, the session's nickname (the identity when
        /// absent).
        #[arg(long)]
        name: Option<String>,
        /// How long it is valid: seconds, or with s, m, h or d.
        #[arg(long, default_value = "8h", value_parser = parse_ttl)]
        ttl: u64,
        /// Rooms it may join (name patterns, `*` for any characters);
        /// repeatable.
        #[arg(long)]
        join: Vec<String>,
        /// Rooms it may talk in (floor, publishing); repeatable.
        #[arg(long)]
        talk: Vec<String>,
        /// Rooms it may create (a meeting is `meeting-NNNNNN`); repeatable.
        #[arg(long)]
        create: Vec<String>,
        /// The highest floor priority it may ask for (0 to 7).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=7))]
        max_priority: u8,
        /// It may call the admin API.
        #[arg(long)]
        admin: bool,
        /// The issuer (`iss`), when the router checks one.
        #[arg(long)]
        issuer: Option<String>,
    },
}

/// `90`, `90s`, `30m`, `8h`, `7d` as seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}`: a number, then s, m, h or d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: the unit is s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|&t| t > 0)
        .ok_or_else(|| format!("`{s}`: above 0 and not absurdly long"))
}

fn token_command(cmd: TokenCommand) -> anyhow::Result<()> {
    use router::auth::{Claims, Grants, SigningKey, new_token_id};
    match cmd {
        TokenCommand::Keygen { out, id } => {
            let key = SigningKey::generate();
            let pem = key.to_pem().map_err(anyhow::Error::msg)?;
            write_private(&out, &pem)?;
            eprintln!("switchboard: private key written to {}", out.display());
            println!(
                "# Add to the router's config file ([auth] mode = \"token\" to require tokens):\n\
                 [[auth.keys]]\nid = \"{id}\"\npublic_key = \"{}\"",
                key.public_key()
            );
        }
        TokenCommand::Mint {
            key,
            kid,
            sub,
            name,
            ttl,
            join,
            talk,
            create,
            max_priority,
            admin,
            issuer,
        } => {
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let signing = SigningKey::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let claims = Claims {
                sub,
                name,
                exp: now.saturating_add(ttl),
                iat: Some(now),
                nbf: None,
                jti: Some(new_token_id()),
                iss: issuer,
                grants: Grants {
                    join,
                    talk,
                    create,
                    max_priority,
                    admin,
                },
            };
            let token = signing.mint(&kid, &claims).map_err(anyhow::Error::msg)?;
            println!("{token}");
        }
    }
    Ok(())
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(router::logging::filter(
            std::env::var("RUST_LOG").ok().as_deref(),
            "info",
        ))
        .init();
    let args = Args::parse();
    if let Some(Command::Token(cmd)) = args.command {
        return token_command(cmd);
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(a) = args.control {
        config.control = a;
    }
    if let Some(a) = args.media {
        config.media = a;
    }
    if let Some(n) = args.media_workers {
        config.media_workers = n;
    }
    if let Some(a) = args.admin {
        config.admin = a;
    }
    if args.admin_token.is_some() {
        config.admin_token = args.admin_token;
    }
    if args.admin_token_file.is_some() {
        config.admin_token_file = args.admin_token_file;
    }
    let runtime = router::driver::runtime().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let router = Router::start(config).await?;
        let media: Vec<String> = router.media_addrs().iter().map(|a| a.to_string()).collect();
        println!(
            "switchboard: control tcp {} media udp {} admin grpc {} (Ctrl-C to stop)",
            router.control_addr(),
            media.join(","),
            router.admin_addr()
        );
        if let Some(fp) = router.tls_fingerprint() {
            println!("switchboard: TLS certificate SHA-256 fingerprint {fp}");
        }
        wait_for_signal(|| async {
            // SIGHUP: read the file again and take what can change live.
            let Some(path) = &args.config else {
                tracing::info!("SIGHUP: no config file to reload");
                return;
            };
            match Config::load(path) {
                Ok(c) => {
                    if let Err(e) = router.reload(&c).await {
                        tracing::warn!(error = %e, "SIGHUP: reload refused; the old settings stay");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SIGHUP: reload refused; the old settings stay")
                }
            }
        })
        .await?;
        tracing::info!("signal received; closing sessions");
        // Exit within 2 s whatever happens.
        let _ = tokio::time::timeout(Duration::from_millis(1900), router.shutdown()).await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(50));
    Ok(())
}

/// Waits for SIGTERM or SIGINT, calling `on_hangup` at each SIGHUP.
async fn wait_for_signal<F, Fut>(on_hangup: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => on_hangup().await,
        }
    }
}
