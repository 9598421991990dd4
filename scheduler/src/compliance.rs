//! Recipient calling hours at release (invariant 11; the dial worker checks again just before
//! the carrier request).
//!
//! A contact is released only when its job's window is open (the caller's check) **and** the
//! workspace's recipient hours are open in every one of its zones (`contacts.timezones`). Two
//! parts, both inside the workspace's release transaction:
//!
//! - the claim (and the due count) only takes contacts whose zones are all in [`Policy`]'s
//!   `open_zones` — the zones whose hours are open *now*, computed once per distinct policy per
//!   tick (most workspaces share the default, so one computation serves them all)
//!   — so a closed contact is never released, whatever else happens;
//! - [`screen_head`] looks at the head of the job's due queue (at most a few times the job's
//!   room, in claim order) and moves each closed contact to the first minute it may be called
//!   (`next_attempt_at`, from the pure intersection in `shared::compliance`), with
//!   `hold_reason` and a `deferred` event. Deferred contacts are then not due until their hour,
//!   so the scheduler does not spin on them: a 100,000-contact batch over four US zones is
//!   deferred once per zone (2,000 a tick at most) and each zone's contacts come back as its
//!   hours open. A contact whose zone is unknown is held (`unknown_timezone`, looked at again
//!   hourly) unless the workspace allows unknown zones. Rows ingested before migration V10
//!   (`timezones IS NULL`) get their zones from the number here.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use shared::compliance::enforce::{self, Contact, Hold, call_ages_sql, calls_from_ages};
use shared::compliance::hours::{DeferReason, parse_zones};
use shared::compliance::jurisdiction::{Pack, RuleMode};
use shared::compliance::{RecipientHours, zones_for_number};
use shared::db::rules;
use shared::domain::ContactState;
use shared::schedule::Window;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// The zones open at one tick's instant, by recipient-hours policy.
pub type OpenZones = HashMap<RecipientHours, Arc<Vec<&'static str>>>;

/// A workspace's compliance policy, evaluated for one tick.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Recipient-local calling hours; `None` = off.
    pub hours: Option<RecipientHours>,
    /// Whether a contact whose zone is unknown is called anyway.
    pub allow_unknown_timezone: bool,
    /// The zones whose hours are open at the tick's instant; `None` when the policy is off
    /// (every contact passes).
    pub open_zones: Option<Arc<Vec<&'static str>>>,
    /// The frequency cap: at most `.0` attempts to one number in any `.1` days, across the
    /// workspace's batches; `None` = off.
    pub cap: Option<(i32, i32)>,
    /// `jurisdictionRules`: which rules of the pack apply.
    pub mode: RuleMode,
}

impl Policy {
    /// The policy at `now`; `open` remembers the open-zone sets already computed this tick.
    pub fn new(
        hours: Option<RecipientHours>,
        allow_unknown_timezone: bool,
        now: DateTime<Utc>,
        open: &mut OpenZones,
    ) -> Self {
        let open_zones = hours.map(|h| {
            open.entry(h)
                .or_insert_with(|| {
                    Arc::new(
                        chrono_tz::TZ_VARIANTS
                            .iter()
                            .filter(|tz| h.window(**tz).is_open(now))
                            .map(|tz| tz.name())
                            .collect(),
                    )
                })
                .clone()
        });
        Self {
            hours,
            allow_unknown_timezone,
            open_zones,
            cap: None,
            mode: RuleMode::default(),
        }
    }

    /// With the workspace's `jurisdictionRules` as stored (unreadable: `strictest`).
    pub fn with_mode(mut self, stored: Option<&str>) -> Self {
        self.mode = enforce::rule_mode(stored);
        self
    }

    /// How far back the screen reads a number's calls for the pack's caps, in seconds, for SQL
    /// (`NULL` when no cap can apply: the hours off, or federal rules only with no federal cap).
    fn cap_lookback_secs(&self, pack: &Pack) -> Option<f64> {
        self.hours?;
        pack.rules()
            .iter()
            .filter(|r| self.mode == RuleMode::Strictest || r.jurisdiction.is_federal())
            .filter_map(|r| match r.kind {
                shared::compliance::jurisdiction::pack::RuleKind::Cap(cap) => Some(cap.window),
                _ => None,
            })
            .max()
            .map(|w| w.num_milliseconds() as f64 / 1000.0)
    }

    /// With a frequency cap (`count` attempts in `days` days), when both are set.
    pub fn with_cap(mut self, count: Option<i32>, days: Option<i32>) -> Self {
        self.cap = count.zip(days);
        self
    }

    /// The open zones, for SQL (`NULL` = the policy is off).
    pub fn open_zones(&self) -> Option<&[&'static str]> {
        self.open_zones.as_deref().map(Vec::as_slice)
    }

    /// The cap's count, for SQL (`NULL` = off).
    pub fn cap_count(&self) -> Option<i32> {
        self.cap.map(|c| c.0)
    }

    /// The cap's days, for SQL.
    pub fn cap_days(&self) -> Option<i32> {
        self.cap.map(|c| c.1)
    }
}

/// Screens the head of a job's due queue: contacts whose number is on the do-not-call list end
/// `suppressed` (never dialed, no attempt charged); every other head contact is judged by the
/// one decision path ([`enforce::Policy::judge`]: the rule pack, the workspace's hours, the
/// job's window) and the workspace's frequency cap, and each one held is moved to its next
/// allowed minute. Returns how many it suppressed or deferred, and the head contacts allowed
/// now: the claim takes only those, so a contact no rule was asked about is never released.
pub(crate) async fn screen_head(
    tx: &Transaction<'_>,
    job_id: Uuid,
    window: &Window,
    policy: &Policy,
    pack: &'static Pack,
    room: u32,
    now: DateTime<Utc>,
) -> Result<(u64, Vec<Uuid>), tokio_postgres::Error> {
    let head = read_head(tx, job_id, policy, pack, room, now).await?;
    if head.is_empty() {
        return Ok((0, Vec::new()));
    }
    let listed: Vec<Uuid> = head.iter().filter(|c| c.listed).map(|c| c.id).collect();
    let mut screened = 0;
    if !listed.is_empty() {
        screened += rules::suppress_contacts(tx, &listed, ContactState::Queued, Some(now))
            .await?
            .len() as u64;
    }
    let plan = plan_screen(&head, window, policy, pack, now);
    store_zones(tx, &plan.resolved).await?;
    if plan.deferred.is_empty() {
        return Ok((screened, plan.allowed));
    }
    let deferred = defer(tx, &plan.deferred, pack.version(), now).await?;
    tracing::debug!(%job_id, deferred, "deferred contacts a calling rule holds");
    Ok((screened + deferred, plan.allowed))
}

/// A contact at the head of the due queue.
#[derive(Debug)]
struct HeadContact {
    id: Uuid,
    phone_number: String,
    /// `None`: ingested before migration V10, its zones not stored yet.
    timezones: Option<Vec<String>>,
    /// Where it says it is (V22): its `state`, and its postal code's state.
    declared_state: Option<String>,
    postal_state: Option<String>,
    /// On the workspace's do-not-call list.
    listed: bool,
    /// Over the frequency cap: when one more call is allowed.
    cap_until: Option<DateTime<Utc>>,
    /// The ages (ms before the database's `now()`) of the workspace's calls to the number
    /// within the pack's longest cap window.
    call_ages_ms: Vec<i64>,
}

/// The head of the job's due queue: at most a few times its room, in claim order.
async fn read_head(
    tx: &Transaction<'_>,
    job_id: Uuid,
    policy: &Policy,
    pack: &Pack,
    room: u32,
    now: DateTime<Utc>,
) -> Result<Vec<HeadContact>, tokio_postgres::Error> {
    let head = i64::from(room.saturating_mul(4).clamp(64, 2000));
    let sql = format!(
        "SELECT c.id, c.phone_number, c.timezones, c.declared_state, c.postal_state,
                EXISTS (SELECT 1 FROM dnc_numbers d
                        WHERE d.workspace_id = c.workspace_id
                          AND d.number = c.phone_number) AS listed,
                frequency_cap_frees_at(c.workspace_id, c.phone_number, $2::timestamptz,
                                       $4::int, $5::int) AS cap_until,
                {ages} AS call_ages
         FROM contacts c
         WHERE c.batch_id = $1 AND c.state = $6 AND c.next_attempt_at <= $2
         ORDER BY c.next_attempt_at, c.row_index
         LIMIT $3",
        ages = call_ages_sql(
            "c.workspace_id",
            "c.phone_number",
            "$7::float8",
            "NULL::uuid"
        ),
    );
    let rows = tx
        .query(
            &sql,
            &[
                &job_id,
                &now,
                &head,
                &policy.cap_count(),
                &policy.cap_days(),
                &ContactState::Queued,
                &policy.cap_lookback_secs(pack),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HeadContact {
                id: r.try_get("id")?,
                phone_number: r.try_get("phone_number")?,
                timezones: r.try_get("timezones")?,
                declared_state: r.try_get("declared_state")?,
                postal_state: r.try_get("postal_state")?,
                listed: r.try_get("listed")?,
                cap_until: r.try_get("cap_until")?,
                call_ages_ms: r.try_get("call_ages")?,
            })
        })
        .collect()
}

/// What the screen writes besides suppressions, and what it lets go.
#[derive(Debug, Default, PartialEq)]
struct ScreenPlan {
    /// Contacts whose zones were derived from their number now, to store (`&`-joined).
    resolved: Vec<(Uuid, String)>,
    /// Contacts to move to their next allowed minute, with the hold.
    deferred: Vec<(Uuid, Hold)>,
    /// Contacts every rule lets go now.
    allowed: Vec<Uuid>,
}

/// Decides, for the head's contacts not listed, which wait and until when (no I/O): over the
/// workspace's cap, until it frees (at least a second from now); otherwise as the one decision
/// path says, in the contact's zones (derived from its number when not stored yet).
fn plan_screen(
    head: &[HeadContact],
    window: &Window,
    policy: &Policy,
    pack: &'static Pack,
    now: DateTime<Utc>,
) -> ScreenPlan {
    let mut plan = ScreenPlan::default();
    let rules = enforce::Policy {
        pack,
        mode: policy.mode,
        job: window,
        hours: policy.hours,
        allow_unknown_timezone: policy.allow_unknown_timezone,
    };
    for c in head.iter().filter(|c| !c.listed) {
        if let Some(until) = c.cap_until {
            let until = until.max(now + chrono::Duration::seconds(1));
            plan.deferred
                .push((c.id, Hold::plain(DeferReason::FrequencyCap, until)));
            continue;
        }
        let zones: Vec<Tz> = match &c.timezones {
            Some(names) => parse_zones(names),
            None => {
                let derived = zones_for_number(&c.phone_number);
                let joined = derived.iter().map(|t| t.name()).collect::<Vec<_>>();
                plan.resolved.push((c.id, joined.join("&")));
                derived
            }
        };
        let contact = Contact {
            number: &c.phone_number,
            zones: &zones,
            declared_state: Contact::state(c.declared_state.as_deref()),
            postal_state: Contact::state(c.postal_state.as_deref()),
        };
        let calls = calls_from_ages(&c.call_ages_ms, now);
        match rules.judge(&contact, &calls, now) {
            Some(hold) => plan.deferred.push((c.id, hold)),
            None => plan.allowed.push(c.id),
        }
    }
    plan
}

/// Stores the zones derived for contacts ingested before they were stored.
async fn store_zones(
    tx: &Transaction<'_>,
    resolved: &[(Uuid, String)],
) -> Result<(), tokio_postgres::Error> {
    if resolved.is_empty() {
        return Ok(());
    }
    let (ids, zones): (Vec<Uuid>, Vec<&str>) =
        resolved.iter().map(|(id, z)| (*id, z.as_str())).unzip();
    tx.execute(
        "UPDATE contacts c SET timezones = string_to_array(u.z, '&')
         FROM unnest($1::uuid[], $2::text[]) u(id, z)
         WHERE c.id = u.id AND c.timezones IS NULL",
        &[&ids, &zones],
    )
    .await?;
    Ok(())
}

/// Moves each deferred contact still queued to its next allowed minute with its hold reason,
/// and records a `deferred` event naming the rule, its citation and the pack's version;
/// returns how many moved.
async fn defer(
    tx: &Transaction<'_>,
    deferred: &[(Uuid, Hold)],
    version: &str,
    now: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let ids: Vec<Uuid> = deferred.iter().map(|d| d.0).collect();
    let until: Vec<DateTime<Utc>> = deferred.iter().map(|d| d.1.until).collect();
    let reason: Vec<&str> = deferred.iter().map(|d| d.1.reason.as_str()).collect();
    let rule: Vec<Option<&str>> = deferred.iter().map(|d| d.1.rule_id()).collect();
    let citation: Vec<Option<&str>> = deferred.iter().map(|d| d.1.citation()).collect();
    tx.execute(
        "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $6::text[],
                                         $7::text[])
                    u(id, until, reason, rule, citation)),
              moved AS (
             UPDATE contacts c SET next_attempt_at = u.until, hold_reason = u.reason,
                 updated_at = $4
             FROM u WHERE c.id = u.id AND c.state = $5
             RETURNING c.id, u.until, u.reason, u.rule, u.citation)
         INSERT INTO contact_events (contact_id, at, kind, reason, detail)
         SELECT id, $4, 'deferred', reason,
                jsonb_build_object('until', until, 'rule', rule, 'citation', citation,
                                   'version', $8::text)
         FROM moved",
        &[
            &ids,
            &until,
            &reason,
            &now,
            &ContactState::Queued,
            &rule,
            &citation,
            &version,
        ],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test -p scheduler --lib bench_open_zones -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark: prints figures"]
    fn bench_open_zones() {
        let now: DateTime<Utc> = "2026-12-01T15:00:00Z".parse().unwrap();
        let n = 50;
        let started = std::time::Instant::now();
        for _ in 0..n {
            let mut memo = OpenZones::new();
            std::hint::black_box(Policy::new(
                Some(RecipientHours::DEFAULT),
                false,
                now,
                &mut memo,
            ));
        }
        println!(
            "open-zone set of one policy over {} zones: {:?}",
            chrono_tz::TZ_VARIANTS.len(),
            started.elapsed() / n
        );
    }

    #[test]
    fn open_zones_at_an_instant() {
        // 15:00Z: 10:00 in New York, 07:00 in Los Angeles.
        let now: DateTime<Utc> = "2026-12-01T15:00:00Z".parse().unwrap();
        let mut memo = OpenZones::new();
        let p = Policy::new(Some(RecipientHours::DEFAULT), false, now, &mut memo);
        let open = p.open_zones().unwrap();
        assert!(open.contains(&"America/New_York"));
        assert!(!open.contains(&"America/Los_Angeles"));
        // The second workspace with the same hours reuses the set.
        let q = Policy::new(Some(RecipientHours::DEFAULT), true, now, &mut memo);
        assert!(Arc::ptr_eq(
            p.open_zones.as_ref().unwrap(),
            q.open_zones.as_ref().unwrap()
        ));
        assert_eq!(memo.len(), 1);
        assert!(
            Policy::new(None, false, now, &mut memo)
                .open_zones()
                .is_none()
        );
    }
}
