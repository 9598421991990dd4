//! The one decision path of invariant 11 that both deciding roles share: the scheduler at
//! release and the dial worker at its last look before the carrier request ask [`Policy::judge`]
//! the same question and get the same answer.
//!
//! - With the workspace's recipient hours on (the default), the rule pack's engine
//!   ([`jurisdiction::decide`]) decides: the federal and every candidate state's hours, no-call
//!   days and caps (`jurisdictionRules: "strictest"`, the default), or the federal rules only
//!   (`"federal"`), with the workspace's recipient hours and the job's window on top.
//! - With the recipient hours off, the workspace answers for the time of its calls itself: only
//!   the job's window applies, as before the pack (this is what `recipientCallingHours: "off"`
//!   has always meant, and what tests whose clock is real rely on).
//! - A contact whose zone is unknown is held (`unknown_timezone`) unless the workspace lets
//!   unknown zones through; then only the job's window applies, since no local time can be read.
//!
//! The pack is loaded once per process at start ([`load_pack`]), so a rule's reference lives as
//! long as the process and a hold can carry it anywhere.

use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::hours::{self, DeferReason, RECHECK_HELD, RecipientHours, Verdict};
use super::jurisdiction::engine::applicable;
use super::jurisdiction::pack::{Rule, RuleKind};
use super::jurisdiction::{
    Candidates, Decision, HoldReason, Pack, Query, RULES_FILE_ENV, RuleMode, UsState, decide,
};
use crate::config::{ConfigError, Env};
use crate::schedule::Window;

static SHIPPED: LazyLock<Pack> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Pack::shipped().expect("the shipped rule pack loads (pack.rs tests it)")
});

/// The shipped pack, parsed once per process.
pub fn shipped_pack() -> &'static Pack {
    &SHIPPED
}

/// The pack a role decides with: the shipped one, with the operator's file named by
/// `COMPLIANCE_RULES_FILE` merged in. A pack that does not load is a configuration error
/// naming the variable, so the role refuses to start. Loaded once per process (the operator's
/// pack is kept for the process's life).
pub fn load_pack(env: &Env) -> Result<&'static Pack, ConfigError> {
    let Some(path) = env.raw(RULES_FILE_ENV).filter(|p| !p.is_empty()) else {
        return Ok(shipped_pack());
    };
    match Pack::load(Some(Path::new(&path))) {
        Ok(pack) => Ok(Box::leak(Box::new(pack))),
        Err(e) => Err(ConfigError {
            name: RULES_FILE_ENV.into(),
            value: path,
            reason: e.to_string(),
        }),
    }
}

/// A workspace's `jurisdictionRules` as stored; an unreadable value is the safe side,
/// `strictest`.
pub fn rule_mode(stored: Option<&str>) -> RuleMode {
    stored
        .and_then(|s| RuleMode::parse(s).ok())
        .unwrap_or_default()
}

/// Why a contact waits, until when, and the rule behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The `holdReason`.
    pub reason: DeferReason,
    /// Its next allowed instant, or when to look again when none is known.
    pub until: DateTime<Utc>,
    /// The pack's rule that holds it (`None` for the job's window, the workspace's own hours
    /// or an unknown zone).
    pub rule: Option<&'static Rule>,
}

impl Hold {
    /// A hold with no rule of the pack behind it.
    pub fn plain(reason: DeferReason, until: DateTime<Utc>) -> Self {
        Self {
            reason,
            until,
            rule: None,
        }
    }

    /// The rule's id, e.g. `US-FL-hours`.
    pub fn rule_id(&self) -> Option<&'static str> {
        self.rule.map(|r| r.id.as_str())
    }

    /// The rule's citation, e.g. `Fla. Stat. 501.616(6)(a)`.
    pub fn citation(&self) -> Option<&'static str> {
        self.rule.map(|r| r.citation.as_str())
    }
}

/// A contact as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Contact<'a> {
    /// Its E.164 number.
    pub number: &'a str,
    /// Its candidate zones (stored, or derived from the number).
    pub zones: &'a [Tz],
    /// The `state` it declared.
    pub declared_state: Option<UsState>,
    /// The state of its postal code.
    pub postal_state: Option<UsState>,
}

impl Contact<'_> {
    /// Parses the stored state columns; a value that no longer parses is dropped (the area
    /// code still counts, and an unknown state brings every state rule in).
    pub fn state(stored: Option<&str>) -> Option<UsState> {
        stored.and_then(|s| s.parse().ok())
    }
}

/// A workspace's policy for one job.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The rule pack.
    pub pack: &'static Pack,
    /// `jurisdictionRules`.
    pub mode: RuleMode,
    /// The job's window.
    pub job: &'a Window,
    /// The workspace's recipient hours; `None` = off (the pack is not applied).
    pub hours: Option<RecipientHours>,
    /// Whether a contact whose zone is unknown is called anyway.
    pub allow_unknown_timezone: bool,
}

impl Policy<'_> {
    /// Whether the pack's engine decides for `c` (recipient hours on, zone known).
    fn engine_decides(&self, c: &Contact<'_>) -> bool {
        self.hours.is_some() && !c.zones.is_empty()
    }

    /// How far back the calls to `c`'s number must be read for the caps that apply to it at
    /// `t`; `None` when no cap applies (then no call history is needed).
    pub fn cap_lookback(&self, c: &Contact<'_>, t: DateTime<Utc>) -> Option<Duration> {
        if !self.engine_decides(c) {
            return None;
        }
        let cand = self.candidates(c);
        applicable(self.pack, &cand, self.mode, t)
            .into_iter()
            .filter_map(|r| match r.kind {
                RuleKind::Cap(cap) => Some(cap.window),
                _ => None,
            })
            .max()
    }

    fn candidates(&self, c: &Contact<'_>) -> Candidates {
        Candidates::for_contact(c.number, c.declared_state, c.postal_state, c.zones.to_vec())
    }

    /// Whether a call to `c` may start at `t`, given the instants of the calls already made
    /// to its number (any batch of the workspace, within [`Policy::cap_lookback`]); `None`
    /// means call it.
    pub fn judge(
        &self,
        c: &Contact<'_>,
        calls: &[DateTime<Utc>],
        t: DateTime<Utc>,
    ) -> Option<Hold> {
        if !self.engine_decides(c) {
            return match hours::verdict(
                self.job,
                self.hours,
                self.allow_unknown_timezone,
                c.zones,
                t,
            ) {
                Verdict::Allowed => None,
                Verdict::Defer { until, reason } => Some(Hold::plain(reason, until)),
            };
        }
        let cand = self.candidates(c);
        let q = Query {
            pack: self.pack,
            candidates: &cand,
            mode: self.mode,
            job: self.job,
            workspace_hours: self.hours,
            calls,
        };
        match decide(&q, t) {
            Decision::Allowed => None,
            Decision::Held {
                reason,
                rule,
                next_allowed,
            } => Some(Hold {
                reason: defer_reason(reason),
                until: next_allowed.unwrap_or(t + RECHECK_HELD),
                // The same rule, borrowed from the process's pack rather than the query.
                rule: rule.and_then(|r| self.pack.rule(&r.id)),
            }),
        }
    }
}

/// The stored name of the engine's reason.
fn defer_reason(r: HoldReason) -> DeferReason {
    match r {
        HoldReason::StateNoCallDay => DeferReason::StateNoCallDay,
        HoldReason::StateHours => DeferReason::StateHours,
        HoldReason::RecipientHours => DeferReason::RecipientHours,
        HoldReason::StateCallCap => DeferReason::StateCallCap,
        HoldReason::UnknownTimezone => DeferReason::UnknownTimezone,
    }
}

/// The instants of calls whose ages (milliseconds before the database's `now()`, as the
/// deciding statements read them) are `ages_ms`, seen from `t`: the roles decide at their
/// clock's instant, which a test may shift, while the attempts are stamped by the database.
pub fn calls_from_ages(ages_ms: &[i64], t: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    ages_ms
        .iter()
        .map(|a| t - Duration::milliseconds(*a))
        .collect()
}

/// The SQL expression of the ages ([`calls_from_ages`]) of the workspace's calls to a number
/// within a lookback of `secs` seconds (a float8 expression; NULL: none read), except the
/// attempt `except` (NULL: none); `ws`, `num`: the workspace and number expressions. Served by
/// the index `dial_attempts_by_number`.
pub fn call_ages_sql(ws: &str, num: &str, secs: &str, except: &str) -> String {
    format!(
        "CASE WHEN {secs} IS NULL THEN '{{}}'::int8[] ELSE ARRAY(
             SELECT (extract(epoch FROM now() - a.created_at) * 1000)::int8
             FROM dial_attempts a
             WHERE a.workspace_id = {ws} AND a.to_number = {num}
               AND a.created_at > now() - make_interval(secs => {secs})
               AND a.id IS DISTINCT FROM {except}) END"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::window::tests::utc;

    fn tz(s: &str) -> Tz {
        s.parse().unwrap()
    }

    fn policy(job: &Window, mode: RuleMode, hours: Option<RecipientHours>) -> Policy<'_> {
        Policy {
            pack: shipped_pack(),
            mode,
            job,
            hours,
            allow_unknown_timezone: false,
        }
    }

    fn contact<'a>(number: &'a str, zones: &'a [Tz]) -> Contact<'a> {
        Contact {
            number,
            zones,
            declared_state: None,
            postal_state: None,
        }
    }

    #[test]
    fn florida_at_half_past_eight_is_held_georgia_called() {
        // 2026-12-01 01:30Z = 20:30 EST.
        let t = utc("2026-12-02T01:30:00Z");
        let ny = [tz("America/New_York")];
        let job = Window::default();
        let p = policy(&job, RuleMode::Strictest, Some(RecipientHours::DEFAULT));
        let hold = p.judge(&contact("+13055550100", &ny), &[], t).unwrap();
        assert_eq!(hold.reason, DeferReason::StateHours);
        assert_eq!(hold.rule_id(), Some("US-FL-hours"));
        assert_eq!(hold.citation(), Some("Fla. Stat. 501.616(6)(a)"));
        assert_eq!(hold.until, utc("2026-12-02T13:00:00Z"));
        assert_eq!(p.judge(&contact("+14045550100", &ny), &[], t), None);
        // Federal mode: Florida too.
        let f = policy(&job, RuleMode::Federal, Some(RecipientHours::DEFAULT));
        assert_eq!(f.judge(&contact("+13055550100", &ny), &[], t), None);
        // A Georgia number that declares Florida gets Florida's hours.
        let mut declared = contact("+14045550100", &ny);
        declared.declared_state = Contact::state(Some("FL"));
        assert_eq!(
            p.judge(&declared, &[], t).map(|h| h.reason),
            Some(DeferReason::StateHours)
        );
    }

    #[test]
    fn the_fourth_call_in_a_day_waits_for_the_first_to_age_out() {
        let t = utc("2026-12-01T15:00:00Z");
        let ny = [tz("America/New_York")];
        let job = Window::default();
        let p = policy(&job, RuleMode::Strictest, Some(RecipientHours::DEFAULT));
        let fl = contact("+13055550106", &ny);
        assert_eq!(p.cap_lookback(&fl, t), Some(Duration::hours(24)));
        assert_eq!(p.cap_lookback(&contact("+14045550106", &ny), t), None);
        let calls = calls_from_ages(&[3_000, 2_000, 1_000], t);
        let hold = p.judge(&fl, &calls, t).unwrap();
        assert_eq!(hold.reason, DeferReason::StateCallCap);
        assert_eq!(hold.rule_id(), Some("US-FL-cap"));
        assert_eq!(hold.until, t - Duration::seconds(3) + Duration::hours(24));
        assert_eq!(p.judge(&fl, &calls[..2], t), None);
    }

    #[test]
    fn hours_off_and_unknown_zones_keep_their_meaning() {
        // 02:30Z: 21:30 in New York; with the hours off only the job's window counts.
        let t = utc("2026-12-02T02:30:00Z");
        let ny = [tz("America/New_York")];
        let job = Window::default();
        let off = policy(&job, RuleMode::Strictest, None);
        assert_eq!(off.judge(&contact("+13055550100", &ny), &[], t), None);
        assert_eq!(off.cap_lookback(&contact("+13055550100", &ny), t), None);
        let on = policy(&job, RuleMode::Strictest, Some(RecipientHours::DEFAULT));
        let unknown = on.judge(&contact("+18005550100", &[]), &[], t).unwrap();
        assert_eq!(unknown.reason, DeferReason::UnknownTimezone);
        assert_eq!(unknown.until, t + RECHECK_HELD);
        let mut let_through = on;
        let_through.allow_unknown_timezone = true;
        assert_eq!(
            let_through.judge(&contact("+18005550100", &[]), &[], t),
            None
        );
    }

    #[test]
    fn a_bad_rules_file_is_a_configuration_error_naming_the_variable() {
        let env = Env::from_pairs([(RULES_FILE_ENV, "/nonexistent/rules.toml")]);
        let e = load_pack(&env).unwrap_err();
        assert_eq!(e.name, RULES_FILE_ENV);
        assert!(e.reason.contains("/nonexistent/rules.toml"), "{e}");
        let none = Env::from_pairs::<_, String, String>([]);
        assert_eq!(
            load_pack(&none).unwrap().version(),
            shipped_pack().version()
        );
        assert_eq!(rule_mode(Some("federal")), RuleMode::Federal);
        assert_eq!(rule_mode(None), RuleMode::Strictest);
    }
}
