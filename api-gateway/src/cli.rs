//! The operator's commands beyond `migrate`, `workspace create` and `api-key`: workspaces'
//! settings (every one, the limits included), batches across workspaces, and the whole webhook
//! secret. Each prints text for a person, or one JSON document with `--json`; a failure is one
//! `error: …` line and a non-zero exit (see `shared::role::main`). They read the same
//! environment as the server.

use chrono::Utc;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use shared::compliance::{FrequencyCap, RecipientHours};
use shared::db::Pool;
use shared::domain::JobState;
use shared::domain::timing::{api_time, api_time_opt};

use crate::batches::control::{self, Scope};
use crate::batches::model::{Batch, COLUMNS, VISIBLE};
use crate::batches::stats::{Counts, statistics};
use crate::config::Config;
use crate::workspace::{self, OperatorUpdate, Settings};
use crate::workspace_checks::ChecksPatch;

/// `workspace update`'s flags: any setting, the limits included.
#[derive(Debug, Args)]
pub struct WorkspaceUpdateArgs {
    /// The workspace's id.
    pub id: Uuid,
    #[arg(long)]
    pub name: Option<String>,
    /// Calls in flight across all the workspace's batches.
    #[arg(long)]
    pub max_concurrent_dials: Option<i32>,
    /// Call starts per second across its batches, or `none` for no workspace-wide limit.
    #[arg(long)]
    pub max_calls_per_second: Option<String>,
    /// The largest `maxCallsPerSecond` a batch may ask for.
    #[arg(long)]
    pub cps_ceiling: Option<i32>,
    /// The largest `retryStrategy.maxAttempts` a batch may ask for.
    #[arg(long)]
    pub max_attempts_ceiling: Option<i32>,
    /// API requests per second the workspace may send (all gateway replicas together).
    #[arg(long)]
    pub requests_per_second: Option<i32>,
    /// API requests it may send at once after a quiet spell.
    #[arg(long)]
    pub request_burst: Option<i32>,
    /// Retry defaults for batches that name none.
    #[arg(long)]
    pub default_max_attempts: Option<i32>,
    #[arg(long)]
    pub default_busy_delay_ms: Option<i64>,
    #[arg(long)]
    pub default_no_answer_delay_ms: Option<i64>,
    /// Region for numbers written without a country code (two letters, e.g. US).
    #[arg(long)]
    pub default_region: Option<String>,
    /// Recipient-local calling hours, `HH:MM-HH:MM` in each recipient's own timezone, every
    /// day, or `off`.
    // Taken as text and parsed by `workspace_update`, so a bad value is one `error:` line
    // naming the flag, like every other failure of the operator's commands.
    #[arg(long)]
    pub recipient_hours: Option<String>,
    /// `true`: dial numbers whose timezone cannot be determined; `false`: hold them.
    #[arg(long)]
    pub allow_unknown_timezone: Option<String>,
    /// Frequency cap across the workspace's batches: `COUNT/DAYS` (Regulation F: `7/7`), or
    /// `off`.
    #[arg(long)]
    pub max_calls_per_number: Option<String>,
    /// Which calling rules apply: `strictest` (every candidate state's rules, the default) or
    /// `federal` (federal rules only: the user is responsible for state law).
    #[arg(long)]
    pub jurisdiction_rules: Option<String>,
    /// The pre-dial check's URL (POSTed before each call, signed like the webhooks), or `off`.
    #[arg(long)]
    pub predial_url: Option<String>,
    /// How long the pre-dial check may take, 1 … 10000 ms (default 2000).
    #[arg(long)]
    pub predial_timeout_ms: Option<i64>,
    /// `true`: rely on the national do-not-call registry (no release while the newest copy is
    /// older than 31 days); `false`: do not.
    #[arg(long)]
    pub dnc_registry_required: Option<String>,
}

/// The pre-dial and registry flags of `workspace update`, checked as `PATCH` checks them.
fn checks_patch(
    args: &WorkspaceUpdateArgs,
    allowed: &shared::destination::AllowedNetworks,
) -> anyhow::Result<ChecksPatch> {
    let patch = ChecksPatch {
        predial_url: args
            .predial_url
            .as_deref()
            .map(|u| (u != "off").then(|| u.to_owned())),
        predial_timeout_ms: args.predial_timeout_ms,
        dnc_registry_required: match args.dnc_registry_required.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                anyhow::bail!("--dnc-registry-required must be true or false, not {other:?}")
            }
        },
    };
    if let Some((field, why)) = patch.problems(allowed).into_iter().next() {
        let flag = match field {
            "predialUrl" => "--predial-url",
            _ => "--predial-timeout-ms",
        };
        anyhow::bail!("{flag} {why}");
    }
    Ok(patch)
}

/// `--recipient-hours` as parsed (`None` = off).
#[derive(Debug, Clone, Copy)]
pub struct HoursArg(pub Option<RecipientHours>);

/// `--max-calls-per-number` as parsed (`None` = off).
#[derive(Debug, Clone, Copy)]
pub struct CapArg(pub Option<FrequencyCap>);

/// Parses `--recipient-hours`.
pub fn parse_recipient_hours(s: &str) -> Result<HoursArg, String> {
    RecipientHours::parse_policy(s).map(HoursArg)
}

/// Parses `--max-calls-per-number`.
pub fn parse_cap(s: &str) -> Result<CapArg, String> {
    FrequencyCap::parse_policy(s).map(CapArg)
}

/// `api-gateway batch …`.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Batches of every workspace (or one), newest first.
    List {
        #[arg(long)]
        workspace: Option<Uuid>,
        /// created, active, paused, completed, cancelled or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One batch, with its counts and its monitor link.
    Show { id: Uuid },
    /// Pause a batch (calls already connected finish).
    Pause { id: Uuid },
    /// Resume (or start) a batch.
    Resume { id: Uuid },
    /// Cancel a batch; its queued contacts are cancelled.
    Cancel { id: Uuid },
    /// A fresh monitor link of a batch: read-only (7 days), or with `--control` a control link
    /// (1 hour) whose page can pause, resume and cancel it.
    DashboardLink {
        id: Uuid,
        #[arg(long)]
        control: bool,
    },
}

/// `api-gateway webhook-secret …`.
#[derive(Debug, Subcommand)]
pub enum WebhookSecretCommand {
    /// The workspace's whole webhook secret (and the replaced one while it still signs).
    Show { id: Uuid },
}

/// Writes one line to stdout. Unlike `println!`, a reader that went away (`… | head -1`) is an
/// error the command returns, not a panic; [`quiet_on_broken_pipe`] then ends it quietly.
pub fn out(line: std::fmt::Arguments) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(line)?;
    stdout.write_all(b"\n")
}

/// A command whose output's reader went away has done what it could: success, nothing said
/// (as `cat` and `ls` behave under `| head`).
pub fn quiet_on_broken_pipe(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    out(format_args!("{}", serde_json::to_string_pretty(value)?))?;
    Ok(())
}

fn settings_text(s: &Settings) -> String {
    let cps = s
        .max_calls_per_second
        .map_or_else(|| "none".to_owned(), |n| n.to_string());
    format!(
        "workspace {id}\n  name: {name}\n  created: {created}\n  max concurrent dials: {dials}\n  max calls per second: {cps}\n  ceilings: maxCallsPerSecond {cc}, maxAttempts {ac}\n  API requests: {rps} per second, burst {burst}\n  retry defaults: {ma} attempts, busy {busy} ms, no-answer {na} ms\n  default region: {region}\n  recipient calling hours: {hours}\n  unknown timezones: {unknown}\n  max calls per number: {cap}\n  jurisdiction rules: {rules} (rule pack {pack})\n  pre-dial check: {predial}\n  do-not-call registry: {registry}\n  webhook secret: {prefix}… (rotated {rotated}{overlap})",
        id = s.id,
        name = s.name,
        created = s.created_at,
        dials = s.max_concurrent_dials,
        cc = s.ceilings.max_calls_per_second,
        ac = s.ceilings.max_attempts,
        rps = s.requests_per_second,
        burst = s.request_burst,
        ma = s.retry_defaults.max_attempts,
        busy = s.retry_defaults.busy_delay,
        na = s.retry_defaults.no_answer_delay,
        region = s.default_region,
        hours = s.recipient_calling_hours,
        unknown = if s.allow_unknown_timezone {
            "dialed"
        } else {
            "held"
        },
        cap = s.max_calls_per_number.map_or_else(
            || "off".to_owned(),
            |c| format!("{} in {} days", c.count, c.days)
        ),
        rules = s.jurisdiction_rules,
        pack = s.rules_version,
        predial = s.checks.predial_url.as_deref().map_or_else(
            || "off".to_owned(),
            |u| format!("{u} (timeout {} ms)", s.checks.predial_timeout_ms)
        ),
        registry = registry_text(&s.checks),
        prefix = s.webhook_secret.prefix,
        rotated = s.webhook_secret.rotated_at.as_deref().unwrap_or("never"),
        overlap = s
            .webhook_secret
            .previous_valid_until
            .as_deref()
            .map(|t| format!("; the previous secret signs too until {t}"))
            .unwrap_or_default(),
    )
}

/// The registry line of `workspace show`.
fn registry_text(c: &crate::workspace_checks::Checks) -> String {
    let newest = c.dnc_registry.newest_as_of.as_deref().unwrap_or("none");
    match (c.dnc_registry_required, c.dnc_registry.hold_reason) {
        (false, _) => format!("not relied on (newest copy: {newest})"),
        (true, Some(hold)) => format!("required; newest copy {newest}: {hold}, nothing released"),
        (true, None) => format!("required; newest copy {newest}, fresh"),
    }
}

/// `workspace create`: the workspace with its compliance policy and jurisdiction rules, and its
/// first key, printed as JSON.
pub async fn workspace_create(
    db: &Pool,
    name: &str,
    max_concurrent_dials: i32,
    compliance: &crate::admin::Compliance,
    rules: shared::compliance::jurisdiction::RuleMode,
) -> anyhow::Result<()> {
    let created =
        crate::admin::create_workspace_with(db, name, max_concurrent_dials, compliance).await?;
    if rules != shared::compliance::jurisdiction::RuleMode::default() {
        let client = db.get().await?;
        crate::jurisdiction::write(&client, created.workspace_id, rules).await?;
    }
    out(format_args!("{}", serde_json::to_string(&created)?))?;
    Ok(())
}

/// `workspace list`.
pub async fn workspace_list(db: &Pool, as_json: bool) -> anyhow::Result<()> {
    let client = db.get().await?;
    let all = Settings::list(&client).await?;
    if as_json {
        return print_json(&all);
    }
    out(format_args!(
        "{:<36}  {:>5}  {:>4}  {:<24}  NAME",
        "ID", "DIALS", "CPS", "CREATED"
    ))?;
    for s in &all {
        let cps = s
            .max_calls_per_second
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        out(format_args!(
            "{:<36}  {:>5}  {:>4}  {:<24}  {}",
            s.id, s.max_concurrent_dials, cps, s.created_at, s.name
        ))?;
    }
    Ok(())
}

/// `workspace show ID`.
pub async fn workspace_show(db: &Pool, id: Uuid, as_json: bool) -> anyhow::Result<()> {
    let client = db.get().await?;
    let s = Settings::load(&client, id)
        .await
        .map_err(|_| anyhow::anyhow!("no workspace with id {id}"))?;
    if as_json {
        return print_json(&s);
    }
    out(format_args!("{}", settings_text(&s)))?;
    Ok(())
}

/// `workspace dashboard-link ID [--control]`: a signed link to the workspace's Batch Dials
/// page (a control link with `--control`), valid `expires_in` seconds (the API's default when
/// `None`).
pub async fn workspace_dashboard_link(
    db: &Pool,
    config: &Config,
    id: Uuid,
    expires_in: Option<i64>,
    control: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = db.get().await?;
    Settings::load(&client, id)
        .await
        .map_err(|_| anyhow::anyhow!("no workspace with id {id}"))?;
    let mint = match control {
        true => crate::monitor::dials::link::mint_control,
        false => crate::monitor::dials::link::mint,
    };
    let link = mint(config, id, chrono::Utc::now(), expires_in)
        .map_err(|e| anyhow::anyhow!("--expires-in {e}"))?;
    if as_json {
        return print_json(&link);
    }
    out(format_args!("{}\nexpires {}", link.url, link.expires_at))?;
    Ok(())
}

/// `workspace update ID …`.
pub async fn workspace_update(
    db: &Pool,
    args: WorkspaceUpdateArgs,
    allowed: &shared::destination::AllowedNetworks,
    as_json: bool,
) -> anyhow::Result<()> {
    let checks = checks_patch(&args, allowed)?;
    let max_calls_per_second = match args.max_calls_per_second.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(n) => Some(Some(n.parse::<i32>().map_err(|_| {
            anyhow::anyhow!("--max-calls-per-second must be a number or \"none\", not {n:?}")
        })?)),
    };
    let update = OperatorUpdate {
        name: args.name,
        max_concurrent_dials: args.max_concurrent_dials,
        max_calls_per_second,
        cps_ceiling: args.cps_ceiling,
        max_attempts_ceiling: args.max_attempts_ceiling,
        default_max_attempts: args.default_max_attempts,
        default_busy_delay_ms: args.default_busy_delay_ms,
        default_no_answer_delay_ms: args.default_no_answer_delay_ms,
        default_region: args.default_region,
        requests_per_second: args.requests_per_second,
        request_burst: args.request_burst,
        compliance: workspace::Compliance {
            hours: args
                .recipient_hours
                .as_deref()
                .map(RecipientHours::parse_policy)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--recipient-hours: {e}"))?,
            allow_unknown_timezone: match args.allow_unknown_timezone.as_deref() {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(other) => {
                    anyhow::bail!("--allow-unknown-timezone must be true or false, not {other:?}")
                }
            },
            cap: args
                .max_calls_per_number
                .as_deref()
                .map(FrequencyCap::parse_policy)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--max-calls-per-number: {e}"))?,
        },
        jurisdiction_rules: args
            .jurisdiction_rules
            .as_deref()
            .map(crate::jurisdiction::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--jurisdiction-rules: {e}"))?,
        checks,
    };
    anyhow::ensure!(
        !update.is_empty(),
        "nothing to change: give at least one setting (see api-gateway workspace update --help)"
    );
    let client = db.get().await?;
    let s = workspace::apply_operator_update(&client, args.id, &update).await?;
    if as_json {
        return print_json(&s);
    }
    out(format_args!("{}", settings_text(&s)))?;
    Ok(())
}

/// `webhook-secret show ID`.
pub async fn webhook_secret_show(db: &Pool, id: Uuid, as_json: bool) -> anyhow::Result<()> {
    let client = db.get().await?;
    let s = workspace::operator_secret(&client, id).await?;
    if as_json {
        return print_json(&s);
    }
    out(format_args!("{}", s.secret))?;
    if let (Some(previous), Some(until)) = (&s.previous_secret, &s.previous_valid_until) {
        out(format_args!(
            "{previous} (replaced; still signs until {until})"
        ))?;
    }
    Ok(())
}

/// A batch as the CLI shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchSummary {
    id: Uuid,
    workspace_id: Uuid,
    name: String,
    surface: &'static str,
    state: JobState,
    vogent_status: shared::domain::VogentStatus,
    dialgen_status: shared::domain::DialgenStatus,
    statistics: shared::domain::Statistics,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
}

fn summary(b: &Batch, counts: &shared::domain::ContactCounts) -> BatchSummary {
    BatchSummary {
        id: b.id,
        workspace_id: b.workspace_id,
        name: b.name.clone(),
        surface: b.surface.as_str(),
        state: b.state,
        vogent_status: b.vogent_status(),
        dialgen_status: b.dialgen_status(Utc::now()),
        statistics: statistics(b, counts),
        created_at: api_time(b.created_at),
        started_at: api_time_opt(b.started_at),
        completed_at: api_time_opt(b.completed_at),
    }
}

fn summary_line(s: &BatchSummary) -> String {
    format!(
        "{}  {:<9}  {:>7}/{:<7}  {}  {}",
        s.id,
        s.state.as_str(),
        s.statistics.processed,
        s.statistics.total,
        s.workspace_id,
        s.name
    )
}

/// `batch …`.
pub async fn batch(
    db: &Pool,
    config: &Config,
    command: BatchCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    match command {
        BatchCommand::List {
            workspace,
            status,
            limit,
        } => batch_list(db, workspace, status.as_deref(), limit, as_json).await,
        BatchCommand::Show { id } => batch_show(db, config, id, as_json).await,
        BatchCommand::Pause { id } | BatchCommand::Resume { id } | BatchCommand::Cancel { id } => {
            batch_control(db, command, id, as_json).await
        }
        BatchCommand::DashboardLink { id, control } => {
            batch_dashboard_link(db, config, id, control).await
        }
    }
}

/// `batch dashboard-link`: one JSON object, `{"url", "expiresAt", "control"}`, as the mint
/// routes answer.
async fn batch_dashboard_link(
    db: &Pool,
    config: &Config,
    id: Uuid,
    control: bool,
) -> anyhow::Result<()> {
    let client = db.get().await?;
    control::load(&client, id)
        .await
        .map_err(|_| anyhow::anyhow!("no batch with id {id}"))?;
    let grant = match control {
        true => crate::monitor::token::Grant::Control,
        false => crate::monitor::token::Grant::View,
    };
    let (url, expires) = crate::monitor::link::minted(config, grant, id, Utc::now());
    print_json(
        &json!({"url": url, "expiresAt": shared::domain::timing::api_time(expires), "control": control}),
    )
}

/// `batch list`: the newest batches, of one workspace and state if given.
async fn batch_list(
    db: &Pool,
    workspace: Option<Uuid>,
    status: Option<&str>,
    limit: i64,
    as_json: bool,
) -> anyhow::Result<()> {
    let state = status
        .map(|s| {
            JobState::parse(s).ok_or_else(|| {
                anyhow::anyhow!(
                    "--status must be one of created, active, paused, completed, cancelled, failed, not {s:?}"
                )
            })
        })
        .transpose()?
        .map(JobState::as_str);
    anyhow::ensure!(limit >= 1, "--limit must be at least 1");
    let client = db.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM batches
         WHERE ($1::uuid IS NULL OR workspace_id = $1) AND ($2::text IS NULL OR state = $2)
           AND {VISIBLE}
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    let batches = client
        .query(&sql, &[&workspace, &state, &limit])
        .await?
        .iter()
        .map(Batch::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<Uuid> = batches.iter().map(|b| b.id).collect();
    let counts = Counts::load_many(&client, &ids).await?;
    let all: Vec<BatchSummary> = batches
        .iter()
        .map(|b| summary(b, &counts.get(&b.id).copied().unwrap_or_default()))
        .collect();
    if as_json {
        return print_json(&all);
    }
    out(format_args!(
        "{:<36}  {:<9}  {:>15}  {:<36}  NAME",
        "ID", "STATE", "FINAL/TOTAL", "WORKSPACE"
    ))?;
    for s in &all {
        out(format_args!("{}", summary_line(s)))?;
    }
    Ok(())
}

/// `batch show`: one batch's settings, counts and monitor link.
async fn batch_show(db: &Pool, config: &Config, id: Uuid, as_json: bool) -> anyhow::Result<()> {
    let client = db.get().await?;
    let b = control::load(&client, id)
        .await
        .map_err(|_| anyhow::anyhow!("no batch with id {id}"))?;
    let counts = Counts::load(&client, id).await?;
    let s = summary(&b, &counts.contacts);
    let dashboard = crate::monitor::dashboard_link(config, id, Utc::now());
    if as_json {
        let mut v = serde_json::to_value(&s)?;
        v["maxConcurrentDials"] = json!(b.max_concurrent_dials);
        v["maxCallsPerSecond"] = json!(b.max_calls_per_second);
        v["retryStrategy"] = json!(b.retry);
        v["attempts"] = json!(counts.attempts);
        v["rows"] = json!({"submitted": b.total_rows, "accepted": b.accepted_rows, "rejected": b.rejected_rows});
        v["links"] = json!({"dashboard": dashboard});
        return print_json(&v);
    }
    let st = &s.statistics;
    out(format_args!(
        "batch {id}\n  name: {}\n  workspace: {}\n  surface: {}\n  state: {} (Vogent {}, Dialgen {})\n  created: {}\n  started: {}\n  completed: {}\n  contacts: {} total, {} final ({}%), {} succeeded, {} voicemail, {} failed, {} cancelled\n  attempts: {}\n  limits: {} in flight, {} calls/s\n  dashboard: {dashboard}",
        s.name,
        s.workspace_id,
        s.surface,
        s.state.as_str(),
        s.vogent_status,
        serde_json::to_value(s.dialgen_status)?
            .as_str()
            .unwrap_or_default(),
        s.created_at,
        s.started_at.as_deref().unwrap_or("—"),
        s.completed_at.as_deref().unwrap_or("—"),
        st.total,
        st.processed,
        st.percent_complete,
        st.succeeded,
        st.voicemail,
        st.failed,
        st.cancelled,
        counts.attempts,
        b.max_concurrent_dials,
        b.max_calls_per_second,
    ))?;
    Ok(())
}

/// `batch pause|resume|cancel` (`command`) on batch `id`, in any workspace.
async fn batch_control(
    db: &Pool,
    command: BatchCommand,
    id: Uuid,
    as_json: bool,
) -> anyhow::Result<()> {
    let (b, cancelled) = match command {
        BatchCommand::Pause { .. } => (control::set_paused(db, Scope::Any, id, true).await, None),
        BatchCommand::Resume { .. } => (control::set_paused(db, Scope::Any, id, false).await, None),
        _ => match control::cancel(db, Scope::Any, id).await {
            Ok(b) => match control::cancel_queued(db, id).await {
                Ok(n) => (Ok(b), Some(n)),
                Err(e) => (Err(e), None),
            },
            Err(e) => (Err(e), None),
        },
    };
    let b = b.map_err(|e| match e {
        crate::error::ApiError::NotFound(_) => anyhow::anyhow!("no batch with id {id}"),
        other => anyhow::anyhow!("batch {id}: {other}"),
    })?;
    if as_json {
        let mut v = json!({"id": b.id, "state": b.state, "vogentStatus": b.vogent_status()});
        if let Some(n) = cancelled {
            v["cancelledContacts"] = json!(n);
        }
        return print_json(&v);
    }
    match cancelled {
        Some(n) => out(format_args!(
            "batch {id} is cancelled ({n} queued contacts cancelled)"
        ))?,
        None => out(format_args!("batch {id} is {}", b.state.as_str()))?,
    }
    Ok(())
}
