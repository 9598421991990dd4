//! The rule pack: parsing, validation, and the operator's overrides.
//!
//! The shipped pack (`shared/rules/us.toml`) is compiled in and validated when a role starts
//! ([`Pack::load`]). An operator may name a file of their own (the caller reads the path from
//! [`RULES_FILE_ENV`]); its rules are merged in by id: a rule whose id the pack has replaces
//! it, a new id adds a rule. The result is validated as a whole, so an operator's rule that
//! defines again what another rule already defines is refused rather than silently combined.
//!
//! Every release is named (`version`); with an operator file the pack's version is
//! `<shipped>+<operator's version>`, so a decision's event says exactly which rules made it.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Duration, NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use super::holiday::{Holiday, RawHoliday, parse_weekday};
use super::state::Jurisdiction;
use crate::domain::{DaySchedule, LocalTime, Schedule, TimeSlot, Timezone};
use crate::schedule::Window;

/// The environment variable naming the operator's rule file.
pub const RULES_FILE_ENV: &str = "COMPLIANCE_RULES_FILE";

/// The shipped pack, compiled in.
pub const SHIPPED: &str = include_str!("../../../rules/us.toml");

/// Why a pack cannot be used. Each names the file and, where there is one, the rule.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The file could not be read.
    #[error("compliance rules file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML of the pack's shape (unknown fields included).
    #[error("{file}: not a rule pack: {message}")]
    Syntax {
        /// Which file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// The pack has no release name.
    #[error("{file}: the pack needs a `version` (its release name)")]
    NoVersion {
        /// Which file.
        file: String,
    },
    /// One rule is invalid.
    #[error("{file}: rule {id:?}: {message}")]
    Rule {
        /// Which file.
        file: String,
        /// The rule's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// Two rules of one file share an id.
    #[error("{file}: rule id {id:?} is defined twice")]
    DuplicateId {
        /// Which file.
        file: String,
        /// The id.
        id: String,
    },
    /// Two rules define the same thing for the same jurisdiction.
    #[error(
        "rules {first:?} and {second:?} both define the {what} of {jurisdiction}; \
         override the existing rule by its id instead"
    )]
    Overlap {
        /// One rule.
        first: String,
        /// The other.
        second: String,
        /// What both define.
        what: String,
        /// Where.
        jurisdiction: String,
    },
}

/// One day's allowed range of local time, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayHours {
    /// First allowed minute.
    pub from: LocalTime,
    /// First minute no longer allowed.
    pub to: LocalTime,
}

/// Allowed local hours per weekday; a weekday without hours is closed all day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyHours {
    /// Indexed by days from Sunday (0 = Sunday … 6 = Saturday), as the window engine counts.
    pub days: [Option<DayHours>; 7],
    /// When set, the hours are read in this zone rather than the recipient's (a statute that
    /// names a fixed clock, such as "Central Standard Time").
    pub zone: Option<Tz>,
}

impl WeeklyHours {
    /// These hours as a window read in `zone` (the window engine handles DST).
    pub fn window(&self, zone: Tz) -> Window {
        let days = self
            .days
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let h = (*h)?;
                Some(DaySchedule {
                    day_of_week: crate::domain::Weekday::new(i as i64).ok()?,
                    time_slots: vec![TimeSlot {
                        start_time: h.from,
                        end_time: h.to,
                    }],
                })
            })
            .collect();
        Window::new(
            Some(Schedule {
                days,
                timezone: Timezone(zone),
                disable_schedule: None,
            }),
            None,
        )
    }
}

/// Days on which no call may be made at all: weekdays and named holidays (local dates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCallDays {
    /// Whole weekdays, e.g. Sunday.
    pub weekdays: Vec<Weekday>,
    /// Holidays, computed per year.
    pub holidays: Vec<Holiday>,
}

impl NoCallDays {
    /// The weekday part as a window in `zone`: every other weekday open all day. `None` when
    /// no weekday is closed.
    pub fn weekday_window(&self, zone: Tz) -> Option<Window> {
        if self.weekdays.is_empty() {
            return None;
        }
        let all_day = TimeSlot {
            start_time: LocalTime::from_minutes_const(0),
            end_time: LocalTime::from_minutes_const(24 * 60),
        };
        let days = (0..7i64)
            .filter(|d| {
                !self
                    .weekdays
                    .iter()
                    .any(|w| i64::from(w.num_days_from_sunday()) == *d)
            })
            .filter_map(|d| {
                Some(DaySchedule {
                    day_of_week: crate::domain::Weekday::new(d).ok()?,
                    time_slots: vec![all_day],
                })
            })
            .collect();
        Some(Window::new(
            Some(Schedule {
                days,
                timezone: Timezone(zone),
                disable_schedule: None,
            }),
            None,
        ))
    }

    /// Whether the local date `d` is one of the holidays.
    pub fn is_holiday(&self, d: NaiveDate) -> bool {
        self.holidays.iter().any(|h| h.falls_on(d))
    }
}

/// At most `max_calls` calls to one number in any rolling `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Calls allowed in the window (at least 1).
    pub max_calls: u32,
    /// The rolling window.
    pub window: Duration,
}

/// What a rule restricts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// Allowed local hours per weekday.
    Hours(WeeklyHours),
    /// Days without calls.
    NoCallDays(NoCallDays),
    /// A rolling cap of calls per number.
    Cap(Cap),
}

impl RuleKind {
    /// The name used in the pack's `kind` field.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Hours(_) => "hours",
            RuleKind::NoCallDays(_) => "no_call_days",
            RuleKind::Cap(_) => "cap",
        }
    }
}

/// One rule of the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, e.g. `US-FL-hours`; the key operators override by.
    pub id: String,
    /// Where it applies.
    pub jurisdiction: Jurisdiction,
    /// What it restricts.
    pub kind: RuleKind,
    /// Statute and section.
    pub citation: String,
    /// The day it takes effect; `None` when it has long been in force and the pack does not
    /// record its adoption date.
    pub effective: Option<NaiveDate>,
    /// Where its text was read.
    pub source_url: String,
    /// A short quote of the text.
    pub quote: Option<String>,
}

impl Rule {
    /// Whether the rule is in force on local date `d`.
    pub fn in_force_on(&self, d: NaiveDate) -> bool {
        self.effective.is_none_or(|e| d >= e)
    }
}

/// A validated, named set of rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    version: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    version: Option<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    jurisdiction: String,
    kind: String,
    citation: String,
    effective: Option<String>,
    source_url: String,
    quote: Option<String>,
    /// Free text for the reader of the file (what was not confirmed, how it is read).
    #[allow(dead_code)]
    note: Option<String>,
    hours: Option<Vec<RawSpan>>,
    zone: Option<String>,
    weekdays: Option<Vec<String>>,
    holidays: Option<Vec<RawHoliday>>,
    max_calls: Option<u32>,
    window_hours: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpan {
    days: Vec<String>,
    from: String,
    to: String,
}

impl RawRule {
    fn into_rule(self) -> Result<Rule, String> {
        let id = self.id.trim().to_string();
        let jurisdiction: Jurisdiction = self.jurisdiction.parse()?;
        if self.citation.trim().is_empty() {
            return Err("a rule needs its `citation` (statute and section)".into());
        }
        if !(self.source_url.starts_with("https://") || self.source_url.starts_with("http://")) {
            return Err(format!(
                "source_url {:?} is not an http(s) address",
                self.source_url
            ));
        }
        let effective = self
            .effective
            .as_deref()
            .map(|e| {
                NaiveDate::parse_from_str(e, "%Y-%m-%d")
                    .map_err(|_| format!("effective {e:?} is not a date (YYYY-MM-DD)"))
            })
            .transpose()?;
        let unexpected = |field: &str, present: bool| -> Result<(), String> {
            if present {
                Err(format!(
                    "`{field}` does not belong to a rule of kind {:?}",
                    self.kind
                ))
            } else {
                Ok(())
            }
        };
        let kind = match self.kind.as_str() {
            "hours" => {
                unexpected("weekdays", self.weekdays.is_some())?;
                unexpected("holidays", self.holidays.is_some())?;
                unexpected("max_calls", self.max_calls.is_some())?;
                unexpected("window_hours", self.window_hours.is_some())?;
                let spans = self.hours.ok_or("a rule of kind \"hours\" needs `hours`")?;
                let zone = self
                    .zone
                    .as_deref()
                    .map(|z| {
                        z.parse::<Tz>()
                            .map_err(|_| format!("zone {z:?} is not an IANA timezone"))
                    })
                    .transpose()?;
                RuleKind::Hours(weekly_hours(&spans, zone)?)
            }
            "no_call_days" => {
                unexpected("hours", self.hours.is_some())?;
                unexpected("zone", self.zone.is_some())?;
                unexpected("max_calls", self.max_calls.is_some())?;
                unexpected("window_hours", self.window_hours.is_some())?;
                let mut weekdays = Vec::new();
                for w in self.weekdays.unwrap_or_default() {
                    let w = parse_weekday(&w)?;
                    if weekdays.contains(&w) {
                        return Err(format!("weekday {w} is listed twice"));
                    }
                    weekdays.push(w);
                }
                let mut holidays: Vec<Holiday> = Vec::new();
                for h in self.holidays.unwrap_or_default() {
                    let h = Holiday::try_from(h)?;
                    if holidays
                        .iter()
                        .any(|o| o.name == h.name || o.date == h.date)
                    {
                        return Err(format!("holiday {:?} is defined twice", h.name));
                    }
                    holidays.push(h);
                }
                if weekdays.is_empty() && holidays.is_empty() {
                    return Err(
                        "a rule of kind \"no_call_days\" needs `weekdays` or `holidays`".into(),
                    );
                }
                RuleKind::NoCallDays(NoCallDays { weekdays, holidays })
            }
            "cap" => {
                unexpected("hours", self.hours.is_some())?;
                unexpected("zone", self.zone.is_some())?;
                unexpected("weekdays", self.weekdays.is_some())?;
                unexpected("holidays", self.holidays.is_some())?;
                let max_calls = self.max_calls.ok_or("a cap needs `max_calls`")?;
                let hours = self.window_hours.ok_or("a cap needs `window_hours`")?;
                if max_calls == 0 {
                    return Err("max_calls must be at least 1 (a number never to be called belongs on a do-not-call list)".into());
                }
                if hours == 0 || hours > 24 * 366 {
                    return Err(format!("window_hours {hours} is not 1 to 8784"));
                }
                RuleKind::Cap(Cap {
                    max_calls,
                    window: Duration::hours(i64::from(hours)),
                })
            }
            other => {
                return Err(format!(
                    "kind {other:?} is not one of \"hours\", \"no_call_days\", \"cap\""
                ));
            }
        };
        Ok(Rule {
            id,
            jurisdiction,
            kind,
            citation: self.citation.trim().to_string(),
            effective,
            source_url: self.source_url,
            quote: self.quote,
        })
    }
}

fn weekly_hours(spans: &[RawSpan], zone: Option<Tz>) -> Result<WeeklyHours, String> {
    let mut days: [Option<DayHours>; 7] = [None; 7];
    if spans.is_empty() {
        return Err("`hours` is empty".into());
    }
    for s in spans {
        let from: LocalTime = s.from.parse()?;
        let to: LocalTime = s.to.parse()?;
        if from >= to {
            return Err(format!(
                "hours {}-{}: the start must be before the end (ranges do not wrap past midnight)",
                s.from, s.to
            ));
        }
        if s.days.is_empty() {
            return Err(format!("hours {}-{} name no day", s.from, s.to));
        }
        for d in &s.days {
            let w = parse_weekday(d)?;
            let slot = &mut days[w.num_days_from_sunday() as usize];
            if slot.is_some() {
                return Err(format!("{w} has hours twice"));
            }
            *slot = Some(DayHours { from, to });
        }
    }
    Ok(WeeklyHours { days, zone })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses one file into its version and rules, checking each rule and the ids; overlaps are
/// checked on the merged pack.
fn parse_file(src: &str, file: &str) -> Result<(Option<String>, Vec<Rule>), PackError> {
    let raw: RawPack = toml::from_str(src).map_err(|e| PackError::Syntax {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    for r in raw.rules {
        let id = r.id.trim().to_string();
        if !valid_id(&id) {
            return Err(PackError::Rule {
                file: file.into(),
                id,
                message: "an id is 1 to 64 letters, digits, '-', '_' or '.'".into(),
            });
        }
        if rules.iter().any(|o| o.id == id) {
            return Err(PackError::DuplicateId {
                file: file.into(),
                id,
            });
        }
        let rule = r.into_rule().map_err(|message| PackError::Rule {
            file: file.into(),
            id: id.clone(),
            message,
        })?;
        rules.push(rule);
    }
    let version = raw
        .version
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    Ok((version, rules))
}

/// What a rule defines, for the overlap check: two rules with the same key would be two
/// answers to one question.
fn overlap_key(r: &Rule) -> (Jurisdiction, &'static str, Option<&'static str>) {
    let zone = match &r.kind {
        RuleKind::Hours(h) => h.zone.map(|z| z.name()),
        _ => None,
    };
    (r.jurisdiction, r.kind.name(), zone)
}

fn check_overlaps(rules: &[Rule]) -> Result<(), PackError> {
    let mut seen: BTreeMap<(Jurisdiction, &'static str, Option<&'static str>), &str> =
        BTreeMap::new();
    for r in rules {
        let key = overlap_key(r);
        if let Some(first) = seen.insert(key, &r.id) {
            let what = match key.2 {
                Some(z) => format!("{} (read in {z})", key.1),
                None => key.1.to_string(),
            };
            return Err(PackError::Overlap {
                first: first.to_string(),
                second: r.id.clone(),
                what,
                jurisdiction: key.0.to_string(),
            });
        }
    }
    Ok(())
}

impl Pack {
    /// Parses and validates a whole pack from its text; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Pack, PackError> {
        let (version, mut rules) = parse_file(src, file)?;
        let version = version.ok_or_else(|| PackError::NoVersion { file: file.into() })?;
        check_overlaps(&rules)?;
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Pack { version, rules })
    }

    /// The shipped pack.
    pub fn shipped() -> Result<Pack, PackError> {
        Pack::parse(SHIPPED, "shared/rules/us.toml")
    }

    /// Merges an operator's rules in by id (replace or add) and validates the result. The
    /// operator's file needs its own `version`, appended to the pack's.
    pub fn with_overrides(mut self, src: &str, file: &str) -> Result<Pack, PackError> {
        let (version, rules) = parse_file(src, file)?;
        let version = version.ok_or_else(|| PackError::NoVersion { file: file.into() })?;
        for r in rules {
            match self.rules.iter_mut().find(|o| o.id == r.id) {
                Some(old) => *old = r,
                None => self.rules.push(r),
            }
        }
        check_overlaps(&self.rules)?;
        self.rules.sort_by(|a, b| a.id.cmp(&b.id));
        self.version = format!("{}+{}", self.version, version);
        Ok(self)
    }

    /// The shipped pack with the operator's file at `operator_file` (if any) merged in: what a
    /// role loads at start (`COMPLIANCE_RULES_FILE`, read by the caller).
    pub fn load(operator_file: Option<&Path>) -> Result<Pack, PackError> {
        let pack = Pack::shipped()?;
        let Some(path) = operator_file else {
            return Ok(pack);
        };
        let src = std::fs::read_to_string(path).map_err(|source| PackError::Read {
            path: path.display().to_string(),
            source,
        })?;
        pack.with_overrides(&src, &path.display().to_string())
    }

    /// The release name, e.g. `2026.12.1` (`2026.12.1+acme.3` with an operator file).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every rule, by id.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// One rule by id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "version = \"t.1\"\n";

    fn rule(body: &str) -> String {
        format!("[[rule]]\ncitation = \"c\"\nsource_url = \"https://example.test/\"\n{body}\n")
    }

    fn err(src: &str) -> String {
        Pack::parse(src, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn shipped_pack_loads_and_names_its_release() {
        let p = Pack::shipped().unwrap();
        assert_eq!(p.version(), "2026.12.1");
        assert_eq!(Pack::load(None).unwrap(), p);
        let fl = p.rule("US-FL-hours").unwrap();
        assert_eq!(fl.effective, NaiveDate::from_ymd_opt(2021, 7, 1));
        assert!(fl.in_force_on(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()));
        assert!(!fl.in_force_on(NaiveDate::from_ymd_opt(2021, 6, 30).unwrap()));
        let RuleKind::Cap(cap) = &p.rule("US-FL-cap").unwrap().kind else {
            panic!("US-FL-cap is a cap")
        };
        assert_eq!((cap.max_calls, cap.window), (3, Duration::hours(24)));
        let RuleKind::Hours(us) = &p.rule("US-hours").unwrap().kind else {
            panic!("US-hours is hours")
        };
        assert!(us.days.iter().all(|d| *d
            == Some(DayHours {
                from: "08:00".parse().unwrap(),
                to: "21:00".parse().unwrap()
            })));
        for r in p.rules() {
            assert!(r.quote.is_some(), "{} has its quote", r.id);
        }
        // Texas: 09:00-21:00 Monday to Saturday, 12:00-21:00 on Sunday (days[0] is Sunday).
        let RuleKind::Hours(tx) = &p.rule("US-TX-hours").unwrap().kind else {
            panic!("US-TX-hours is hours")
        };
        let at = |h: &str| h.parse().unwrap();
        assert_eq!(
            tx.days[0],
            Some(DayHours {
                from: at("12:00"),
                to: at("21:00")
            })
        );
        assert!(tx.days[1..].iter().all(|d| *d
            == Some(DayHours {
                from: at("09:00"),
                to: at("21:00")
            })));
        // The statutes read and found to add nothing are not cited.
        assert!(
            p.rules()
                .iter()
                .all(|r| !r.citation.contains("310.4") && !r.citation.contains("80.36.390"))
        );
    }

    #[test]
    fn per_weekday_hours() {
        let src = format!(
            "{HEAD}{}",
            rule(
                "id = \"US-TX-hours\"\njurisdiction = \"US-TX\"\nkind = \"hours\"\n\
                 hours = [{days = [\"Mon\",\"Tue\",\"Wed\",\"Thu\",\"Fri\",\"Sat\"], from = \"09:00\", to = \"21:00\"},\n\
                          {days = [\"Sun\"], from = \"12:00\", to = \"21:00\"}]"
            )
        );
        let p = Pack::parse(&src, "t").unwrap();
        let RuleKind::Hours(h) = &p.rules()[0].kind else {
            panic!()
        };
        assert_eq!(h.days[0].unwrap().from, "12:00".parse().unwrap());
        assert_eq!(h.days[1].unwrap().from, "09:00".parse().unwrap());
    }

    #[test]
    fn invalid_packs_are_refused_with_the_reason() {
        let hours = |id: &str, j: &str, from: &str, to: &str| {
            rule(&format!(
                "id = \"{id}\"\njurisdiction = \"{j}\"\nkind = \"hours\"\nhours = [{{days = [\"Mon\"], from = \"{from}\", to = \"{to}\"}}]"
            ))
        };
        assert!(err(&hours("a", "US", "08:00", "21:00")).contains("needs a `version`"));
        assert!(
            err(&format!("{HEAD}{}", hours("a", "US", "21:00", "08:00")))
                .contains("start must be before the end")
        );
        assert!(err(&format!("{HEAD}{}", hours("a", "US", "8", "21:00"))).contains("HH:MM"));
        assert!(err(&format!("{HEAD}{}", hours("a", "US-ZZ", "08:00", "21:00"))).contains("US-ZZ"));
        assert!(
            err(&format!(
                "{HEAD}{}{}",
                hours("a", "US", "08:00", "21:00"),
                hours("a", "US-FL", "08:00", "20:00")
            ))
            .contains("defined twice")
        );
        let overlap = err(&format!(
            "{HEAD}{}{}",
            hours("a", "US-FL", "08:00", "21:00"),
            hours("b", "US-FL", "08:00", "20:00")
        ));
        assert!(
            overlap.contains("both define the hours of US-FL"),
            "{overlap}"
        );
        assert!(
            err(&format!(
                "{HEAD}{}",
                rule("id = \"a\"\njurisdiction = \"US\"\nkind = \"curfew\"")
            ))
            .contains("kind \"curfew\" is not one of")
        );
        assert!(
            err(&format!("{HEAD}{}", rule("id = \"a\"\njurisdiction = \"US\"\nkind = \"cap\"\nmax_calls = 0\nwindow_hours = 24")))
                .contains("at least 1")
        );
        assert!(
            err(&format!("{HEAD}{}", rule("id = \"a\"\njurisdiction = \"US\"\nkind = \"cap\"\nmax_calls = 3\nwindow_hours = 24\nweekdays = [\"Sun\"]")))
                .contains("`weekdays` does not belong")
        );
        assert!(
            err(&format!("{HEAD}{}", rule("id = \"a\"\njurisdiction = \"US\"\nkind = \"no_call_days\"\nweekdays = [\"Sun\", \"Sun\"]")))
                .contains("twice")
        );
        assert!(
            err(&format!("{HEAD}{}", rule("id = \"a\"\njurisdiction = \"US\"\nkind = \"cap\"\nmax_calls = 3\nwindow_hours = 24\ncolour = \"red\"")))
                .contains("unknown field")
        );
        assert!(
            err(&format!("{HEAD}{}", rule("id = \"a b\"\njurisdiction = \"US\"\nkind = \"cap\"\nmax_calls = 3\nwindow_hours = 24")))
                .contains("an id is")
        );
        assert!(
            err(&format!("{HEAD}{}", rule("id = \"a\"\njurisdiction = \"US\"\nkind = \"cap\"\nmax_calls = 3\nwindow_hours = 24\neffective = \"July 2021\"")))
                .contains("not a date")
        );
    }

    #[test]
    fn operator_overrides_by_id_and_adds() {
        let base = Pack::shipped().unwrap();
        let n = base.rules().len();
        let ops = format!(
            "version = \"acme.3\"\n{}{}",
            rule(
                "id = \"US-FL-cap\"\njurisdiction = \"US-FL\"\nkind = \"cap\"\nmax_calls = 2\nwindow_hours = 24"
            ),
            rule(
                "id = \"US-OK-cap\"\njurisdiction = \"US-OK\"\nkind = \"cap\"\nmax_calls = 3\nwindow_hours = 24\neffective = \"2022-11-01\""
            )
        );
        let p = base.clone().with_overrides(&ops, "ops.toml").unwrap();
        assert_eq!(p.version(), format!("{}+acme.3", base.version()));
        assert_eq!(p.rules().len(), n + 1);
        let RuleKind::Cap(c) = p.rule("US-FL-cap").unwrap().kind else {
            panic!()
        };
        assert_eq!(c.max_calls, 2);
        assert!(p.rule("US-OK-cap").is_some());
        // A new id defining what an existing rule defines is an overlap, not a silent merge.
        let clash = rule(
            "id = \"my-fl-cap\"\njurisdiction = \"US-FL\"\nkind = \"cap\"\nmax_calls = 2\nwindow_hours = 24",
        );
        let e = base
            .clone()
            .with_overrides(&format!("version = \"x\"\n{clash}"), "ops.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("US-FL-cap") && e.contains("my-fl-cap"), "{e}");
        // Through a file, and a missing file names its path.
        let dir = std::env::temp_dir().join(format!("rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ops.toml");
        std::fs::write(&f, &ops).unwrap();
        assert_eq!(Pack::load(Some(&f)).unwrap(), p);
        let missing = dir.join("nope.toml");
        let e = Pack::load(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("nope.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
