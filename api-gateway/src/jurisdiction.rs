//! Compliance by jurisdiction at the gateway (issue #25): the rule pack it loaded at start and
//! the workspace setting `jurisdictionRules` (docs/jurisdiction-rules.md).
//!
//! - The pack is the shipped `shared/rules/us.toml` merged with the operator's
//!   `COMPLIANCE_RULES_FILE`, loaded once by [`load`] when the configuration is read: a bad file
//!   stops the process with a message naming it, never a request. `GET /api/workspace` shows its
//!   release as `rulesVersion`.
//! - `jurisdictionRules` is `"strictest"` (the default: every candidate state's rules apply) or
//!   `"federal"` (the federal rules only; the user answers for state law). It is the tenant's
//!   own policy, like `recipientCallingHours`, so `PATCH /api/workspace` changes it; the
//!   operator sets it with `workspace create|update --jurisdiction-rules`.

use std::path::PathBuf;
use std::sync::OnceLock;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use shared::compliance::jurisdiction::{Pack, RULES_FILE_ENV, RuleMode};
use shared::config::{ConfigError, Env};

/// The pack this process loaded; set once by [`load`].
static LOADED: OnceLock<Pack> = OnceLock::new();

/// Loads the pack named by the environment (the shipped one, plus `COMPLIANCE_RULES_FILE` when
/// set) and keeps it for the process. A bad file is an error naming the variable, the file and
/// the rule, on one line. A process keeps the first pack it loads: the gateway loads one.
pub fn load(env: &Env) -> Result<&'static Pack, ConfigError> {
    let file = env.raw(RULES_FILE_ENV).filter(|f| !f.is_empty());
    let pack =
        Pack::load(file.as_ref().map(PathBuf::from).as_deref()).map_err(|e| ConfigError {
            name: RULES_FILE_ENV.to_owned(),
            value: file.clone().unwrap_or_default(),
            reason: one_line(&e.to_string()),
        })?;
    Ok(LOADED.get_or_init(|| pack))
}

/// A parser's message on one line, so a refused start is one `error:` line: its first line
/// (where) and its last (what), without the source excerpt between them.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

/// The pack loaded at start; the shipped pack if [`load`] was never called (a library user
/// that built no `Config`).
pub fn pack() -> &'static Pack {
    LOADED.get_or_init(|| {
        Pack::shipped().expect("the shipped rule pack is valid: shared's pack tests load it")
    })
}

/// The loaded pack's release name, e.g. `2026.12.1` (`2026.12.1+acme.3` with an operator file).
pub fn version() -> &'static str {
    pack().version()
}

/// The column holding the setting (migration V22), read with the other settings.
pub const COLUMN: &str = "jurisdiction_rules";

/// Why a `jurisdictionRules` value is refused.
pub fn message(value: &str) -> String {
    format!(
        "{value:?} is not \"strictest\" (every candidate state's rules, the default) or \"federal\" (federal rules only; you answer for state law)"
    )
}

/// Parses a `jurisdictionRules` value.
pub fn parse(value: &str) -> Result<RuleMode, String> {
    RuleMode::parse(value).map_err(|_| message(value))
}

/// Writes the setting. A contact already held keeps its allowed minute; the new mode applies
/// from each contact's next release or last look.
pub async fn write(
    client: &impl GenericClient,
    workspace: Uuid,
    mode: RuleMode,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE workspaces SET jurisdiction_rules = $2 WHERE id = $1",
            &[&workspace, &mode.as_str()],
        )
        .await?;
    // A switch to federal rules moves state law onto the user: the log keeps who and when.
    match mode {
        RuleMode::Federal => tracing::warn!(
            %workspace,
            "jurisdiction rules set to federal: state rules no longer apply to this workspace"
        ),
        RuleMode::Strictest => tracing::info!(%workspace, "jurisdiction rules set to strictest"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_modes_and_names_the_choices() {
        assert_eq!(parse("strictest"), Ok(RuleMode::Strictest));
        assert_eq!(parse("federal"), Ok(RuleMode::Federal));
        let why = parse("Federal").unwrap_err();
        assert!(
            why.contains("strictest") && why.contains("federal"),
            "{why}"
        );
    }

    #[test]
    fn a_parser_message_fits_one_line() {
        let toml = "f: TOML parse error at line 2, column 1\n  |\n2 | [[rule]]\n  | ^^^\nmissing field `jurisdiction`\n";
        assert_eq!(
            one_line(toml),
            "f: TOML parse error at line 2, column 1: missing field `jurisdiction`"
        );
        assert_eq!(one_line("no such file"), "no such file");
    }

    #[test]
    fn a_bad_operator_file_is_named() {
        let env = Env::from_pairs([(RULES_FILE_ENV, "/nonexistent/rules.toml")]);
        let e = load(&env).unwrap_err().to_string();
        assert!(e.contains("COMPLIANCE_RULES_FILE"), "{e}");
        assert!(e.contains("/nonexistent/rules.toml"), "{e}");
    }
}
