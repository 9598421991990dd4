use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared::compliance::RecipientHours;
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
        #[arg(long, default_value = "08:00-21:00", value_parser = parse_recipient_hours)]
        recipient_hours: RecipientHoursArg,
        /// Dial numbers whose timezone cannot be determined instead of holding them
        /// (`unknown_timezone`).
        #[arg(long)]
        allow_unknown_timezone: bool,
        /// Frequency cap across all the workspace's batches: `COUNT/DAYS` (Regulation F:
        /// `7/7`), or `off` (the default).
        #[arg(long, default_value = "off", value_parser = parse_cap)]
        max_calls_per_number: CapArg,
    },
    /// Every workspace.
    List,
    /// One workspace's settings.
    Show { id: Uuid },
    /// Change any of a workspace's settings, the limits included.
    Update(WorkspaceUpdateArgs),
}

/// `--max-calls-per-number` as parsed.
#[derive(Clone, Copy)]
struct CapArg(Option<(i32, i32)>);

fn parse_cap(s: &str) -> Result<CapArg, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(CapArg(None));
    }
    let bad = || format!("{s:?} is not \"off\" or COUNT/DAYS such as \"7/7\"");
    let (count, days) = s.split_once('/').ok_or_else(bad)?;
    let count: i32 = count.trim().parse().map_err(|_| bad())?;
    let days: i32 = days
        .trim()
        .trim_end_matches('d')
        .parse()
        .map_err(|_| bad())?;
    if count < 1 || days < 1 {
        return Err(bad());
    }
    Ok(CapArg(Some((count, days))))
}

/// `--recipient-hours` as parsed.
#[derive(Clone, Copy)]
struct RecipientHoursArg(Option<RecipientHours>);

fn parse_recipient_hours(s: &str) -> Result<RecipientHoursArg, String> {
    RecipientHours::parse_policy(s).map(RecipientHoursArg)
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
    let cli = Cli::parse();
    let json = cli.json;
    shared::role::main("api-gateway", async move {
        let config = Config::from_env(&Env::from_process())?;
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let shutdown = shared::shutdown::on_signal();
                api_gateway::run(config, shutdown)
                    .await
                    .context("api-gateway stopped")
            }
            Command::Migrate => {
                shared::db::ensure_database(&config.service.database_url)
                    .await
                    .context("cannot create the database")?;
                let applied = shared::db::migrate::run(&config.service.database_url)
                    .await
                    .context("migration failed")?;
                println!("{}", serde_json::json!({ "applied": applied }));
                Ok(())
            }
            Command::Workspace {
                command:
                    WorkspaceCommand::Create {
                        name,
                        max_concurrent_dials,
                        recipient_hours,
                        allow_unknown_timezone,
                        max_calls_per_number,
                    },
            } => {
                let db = shared::db::connect(&config.service).await?;
                let compliance = admin::Compliance {
                    recipient_hours: recipient_hours.0,
                    allow_unknown_timezone,
                    max_calls_per_number: max_calls_per_number.0,
                };
                let created =
                    admin::create_workspace_with(&db, &name, max_concurrent_dials, &compliance)
                        .await?;
                println!("{}", serde_json::to_string(&created)?);
                Ok(())
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
                cli::workspace_update(&shared::db::connect(&config.service).await?, args, json)
                    .await
            }
            Command::Batch { command } => {
                let db = shared::db::connect(&config.service).await?;
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
                println!("{}", serde_json::to_string(&created)?);
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
                println!("{}", serde_json::json!({ "revoked": key_prefix }));
                Ok(())
            }
        }
    })
    .await
}
