// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use api_gateway::cli::{self, BatchCommand, WebhookSecretCommand, WorkspaceUpdateArgs};
use api_gateway::{admin, config::Config};
use shared::config::Env;

/// dialfleet's HTTP API (Vogent Batch Dial Jobs and Dialgen Call Batches) and its administration.
#[derive(Parser)]
#[command(name = "api-gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Print one JSON document instead of text (the operator commands).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Batches of every workspace: list, show, pause, resume, cancel.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// A workspace's webhook signing secret.
    WebhookSecret {
        #[command(subcommand)]
        command: WebhookSecretCommand,
    },
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace and print its id and first API key as JSON.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        max_concurrent_dials: i32,
        /// Recipient-local calling hours, `HH:MM-HH:MM` in each recipient's own timezone, every
        /// day; `off` disables them.
        #[arg(long, default_value = "08:00-21:00", value_parser = cli::parse_recipient_hours)]
        recipient_hours: cli::HoursArg,
        /// Dial numbers whose timezone cannot be determined instead of holding them
        /// (`unknown_timezone`).
        #[arg(long)]
        allow_unknown_timezone: bool,
        /// Frequency cap across all the workspace's batches: `COUNT/DAYS` (Regulation F:
        /// `7/7`), or `off` (the default).
        #[arg(long, default_value = "off", value_parser = cli::parse_cap)]
        max_calls_per_number: cli::CapArg,
        /// Which calling rules apply: `strictest` (every candidate state's rules, the default)
        /// or `federal` (federal rules only: the user is responsible for state law).
        #[arg(long, default_value = "strictest", value_parser = api_gateway::jurisdiction::parse)]
        jurisdiction_rules: shared::compliance::jurisdiction::RuleMode,
    },
    /// Every workspace.
    List,
    /// One workspace's settings.
    Show { id: Uuid },
    /// Change any of a workspace's settings, the limits included.
    Update(Box<WorkspaceUpdateArgs>),
    /// A signed link to the workspace's Batch Dials page (read-only, expiring).
    DashboardLink {
        id: Uuid,
        /// Seconds the link stays valid: 60 to 604800 (7 days); 86400 by default (a control
        /// link: 60 to 3600, an hour by default).
        #[arg(long)]
        expires_in: Option<i64>,
        /// A control link: each row of its page can pause, resume and cancel its batch.
        #[arg(long)]
        control: bool,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Issue another key for a workspace.
    Create {
        #[arg(long)]
        workspace: Uuid,
    },
    /// Revoke the key that starts with KEY_PREFIX.
    Revoke { key_prefix: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let json = cli.json;
    shared::role::main("api-gateway", async move {
        cli::quiet_on_broken_pipe(command(cli, json).await)
    })
    .await
}

/// `migrate`: creates the database if needed and applies the migrations.
async fn migrate(config: &Config) -> anyhow::Result<()> {
    shared::db::ensure_database(&config.service.database_url)
        .await
        .context("cannot create the database")?;
    let applied = shared::db::migrate::run(&config.service.database_url)
        .await
        .context("migration failed")?;
    cli::out(format_args!(
        "{}",
        serde_json::json!({ "applied": applied })
    ))?;
    Ok(())
}

async fn command(cli: Cli, json: bool) -> anyhow::Result<()> {
    {
        let config = Config::from_env(&Env::from_process())?;
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let shutdown = shared::shutdown::on_signal();
                api_gateway::run(config, shutdown)
                    .await
                    .context("api-gateway stopped")
            }
            Command::Migrate => migrate(&config).await,
            Command::Workspace {
                command:
                    WorkspaceCommand::Create {
                        name,
                        max_concurrent_dials,
                        recipient_hours,
                        allow_unknown_timezone,
                        max_calls_per_number,
                        jurisdiction_rules,
                    },
            } => {
                let db = shared::db::connect(&config.service).await?;
                let compliance = admin::Compliance {
                    recipient_hours: recipient_hours.0,
                    allow_unknown_timezone,
                    max_calls_per_number: max_calls_per_number.0.map(|c| (c.count, c.days)),
                };
                cli::workspace_create(
                    &db,
                    &name,
                    max_concurrent_dials,
                    &compliance,
                    jurisdiction_rules,
                )
                .await
            }
            Command::Workspace {
                command: WorkspaceCommand::List,
            } => cli::workspace_list(&shared::db::connect(&config.service).await?, json).await,
            Command::Workspace {
                command: WorkspaceCommand::Show { id },
            } => cli::workspace_show(&shared::db::connect(&config.service).await?, id, json).await,
            Command::Workspace {
                command: WorkspaceCommand::Update(args),
            } => {
                let db = shared::db::connect(&config.service).await?;
                cli::workspace_update(&db, *args, &config.webhook_allowed_networks, json).await
            }
            Command::Workspace {
                command:
                    WorkspaceCommand::DashboardLink {
                        id,
                        expires_in,
                        control,
                    },
            } => {
                let db = shared::db::connect(&config.service).await?;
                let config = api_gateway::monitor::secret::resolve(&db, config).await?;
                cli::workspace_dashboard_link(&db, &config, id, expires_in, control, json).await
            }
            Command::Batch { command } => {
                let db = shared::db::connect(&config.service).await?;
                let config = api_gateway::monitor::secret::resolve(&db, config).await?;
                cli::batch(&db, &config, command, json).await
            }
            Command::WebhookSecret {
                command: WebhookSecretCommand::Show { id },
            } => {
                cli::webhook_secret_show(&shared::db::connect(&config.service).await?, id, json)
                    .await
            }
            Command::ApiKey {
                command: ApiKeyCommand::Create { workspace },
            } => {
                let db = shared::db::connect(&config.service).await?;
                let created = admin::create_api_key(&db, workspace).await?;
                cli::out(format_args!("{}", serde_json::to_string(&created)?))?;
                Ok(())
            }
            Command::ApiKey {
                command: ApiKeyCommand::Revoke { key_prefix },
            } => {
                let db = shared::db::connect(&config.service).await?;
                anyhow::ensure!(
                    admin::revoke_api_key(&db, &key_prefix).await?,
                    "no active key with prefix {key_prefix}"
                );
                cli::out(format_args!(
                    "{}",
                    serde_json::json!({ "revoked": key_prefix })
                ))?;
                Ok(())
            }
        }
    }
}

/// A command line clap refuses: one line naming what is wrong (an operator's script reads the
/// first line of stderr, as for every other failure), exit code 2. Help and version print
/// whole, as asked.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("error: invalid command line")
        .trim();
    eprintln!("{first} (see --help)");
    ExitCode::from(2)
}
