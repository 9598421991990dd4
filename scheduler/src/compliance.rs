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
use shared::compliance::hours::{DeferReason, Verdict, parse_zones, verdict};
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
        }
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
/// `suppressed` (never dialed, no attempt charged); closed contacts are deferred to their next
/// allowed minute. Returns how many it suppressed or deferred.
pub(crate) async fn screen_head(
    tx: &Transaction<'_>,
    job_id: Uuid,
    window: &Window,
    policy: &Policy,
    room: u32,
    now: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let head = read_head(tx, job_id, policy, room, now).await?;
    if head.is_empty() {
        return Ok(0);
    }
    let listed: Vec<Uuid> = head.iter().filter(|c| c.listed).map(|c| c.id).collect();
    let mut screened = 0;
    if !listed.is_empty() {
        screened += rules::suppress_contacts(tx, &listed, ContactState::Queued, Some(now))
            .await?
            .len() as u64;
    }
    let plan = plan_screen(&head, window, policy, now);
    store_zones(tx, &plan.resolved).await?;
    if plan.deferred.is_empty() {
        return Ok(screened);
    }
    let deferred = defer(tx, &plan.deferred, now).await?;
    tracing::debug!(%job_id, deferred, "deferred contacts outside their calling hours");
    Ok(screened + deferred)
}

/// A contact at the head of the due queue that some rule may stop now.
#[derive(Debug)]
struct HeadContact {
    id: Uuid,
    phone_number: String,
    /// `None`: ingested before migration V10, its zones not stored yet.
    timezones: Option<Vec<String>>,
    /// On the workspace's do-not-call list.
    listed: bool,
    /// Over the frequency cap: when one more call is allowed.
    cap_until: Option<DateTime<Utc>>,
}

/// The head of the job's due queue (at most a few times its room, in claim order), only the
/// contacts that a rule stops now: listed, over the cap, or outside the open zones.
async fn read_head(
    tx: &Transaction<'_>,
    job_id: Uuid,
    policy: &Policy,
    room: u32,
    now: DateTime<Utc>,
) -> Result<Vec<HeadContact>, tokio_postgres::Error> {
    let head = i64::from(room.saturating_mul(4).clamp(64, 2000));
    let rows = tx
        .query(
            "SELECT id, phone_number, timezones, listed, cap_until FROM (
                 SELECT c.id, c.phone_number, c.timezones,
                        EXISTS (SELECT 1 FROM dnc_numbers d
                                WHERE d.workspace_id = c.workspace_id
                                  AND d.number = c.phone_number) AS listed,
                        frequency_cap_frees_at(c.workspace_id, c.phone_number, $2::timestamptz,
                                               $6::int, $7::int) AS cap_until
                 FROM contacts c
                 WHERE c.batch_id = $1 AND c.state = $8 AND c.next_attempt_at <= $2
                 ORDER BY c.next_attempt_at, c.row_index
                 LIMIT $3) head
             WHERE listed OR cap_until IS NOT NULL OR ($4::text[] IS NOT NULL
                 AND (timezones IS NULL OR NOT (timezones <@ $4::text[])
                      OR (cardinality(timezones) = 0 AND NOT $5)))",
            &[
                &job_id,
                &now,
                &head,
                &policy.open_zones(),
                &policy.allow_unknown_timezone,
                &policy.cap_count(),
                &policy.cap_days(),
                &ContactState::Queued,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HeadContact {
                id: r.try_get("id")?,
                phone_number: r.try_get("phone_number")?,
                timezones: r.try_get("timezones")?,
                listed: r.try_get("listed")?,
                cap_until: r.try_get("cap_until")?,
            })
        })
        .collect()
}

/// What the screen writes besides suppressions.
#[derive(Debug, Default, PartialEq)]
struct ScreenPlan {
    /// Contacts whose zones were derived from their number now, to store (`&`-joined).
    resolved: Vec<(Uuid, String)>,
    /// Contacts to move to their next allowed minute, with the hold reason.
    deferred: Vec<(Uuid, DateTime<Utc>, &'static str)>,
}

/// Decides, for the head's contacts not listed, which wait and until when (no I/O): over the
/// cap, until the cap frees (at least a second from now); otherwise as the recipient's calling
/// hours with the job's window say, in the contact's zones (derived from its number when not
/// stored yet).
fn plan_screen(
    head: &[HeadContact],
    window: &Window,
    policy: &Policy,
    now: DateTime<Utc>,
) -> ScreenPlan {
    let mut plan = ScreenPlan::default();
    for c in head.iter().filter(|c| !c.listed) {
        if let Some(until) = c.cap_until {
            let until = until.max(now + chrono::Duration::seconds(1));
            plan.deferred
                .push((c.id, until, DeferReason::FrequencyCap.as_str()));
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
        let hours = (policy.hours, policy.allow_unknown_timezone);
        if let Verdict::Defer { until, reason } = verdict(window, hours.0, hours.1, &zones, now) {
            plan.deferred.push((c.id, until, reason.as_str()));
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
/// and records a `deferred` event; returns how many moved.
async fn defer(
    tx: &Transaction<'_>,
    deferred: &[(Uuid, DateTime<Utc>, &'static str)],
    now: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let ids: Vec<Uuid> = deferred.iter().map(|d| d.0).collect();
    let until: Vec<DateTime<Utc>> = deferred.iter().map(|d| d.1).collect();
    let reason: Vec<&str> = deferred.iter().map(|d| d.2).collect();
    tx.execute(
        "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[])
                    u(id, until, reason)),
              moved AS (
             UPDATE contacts c SET next_attempt_at = u.until, hold_reason = u.reason,
                 updated_at = $4
             FROM u WHERE c.id = u.id AND c.state = $5
             RETURNING c.id, u.until, u.reason)
         INSERT INTO contact_events (contact_id, at, kind, reason, detail)
         SELECT id, $4, 'deferred', reason, jsonb_build_object('until', until) FROM moved",
        &[&ids, &until, &reason, &now, &ContactState::Queued],
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
