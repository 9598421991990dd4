//! The rules that several roles apply to the same rows, each written once as an SQL function
//! (migration `V18__rules_once.sql`) and called from here or from a statement that names it:
//!
//! | SQL function | Rust twin / caller |
//! |---|---|
//! | `contact_state_for_job(job_state text) RETURNS text` | [`JobState::contact_state_when_handed_back`] |
//! | `frequency_cap_frees_at(ws_id uuid, to_num text, at_time timestamptz, cap_count int, cap_days int[, except_attempt uuid]) RETURNS timestamptz` | [`frequency_cap_frees_at`]; "under the cap" is `… IS NULL` |
//! | `suppress_contacts(ids uuid[], from_state text, at_time timestamptz) RETURNS SETOF uuid` | [`suppress_contacts`] |
//! | `suppress_contacts(ids uuid[], from_state text, at_time timestamptz, why text, why_detail jsonb) RETURNS SETOF uuid` (V25) | [`suppress_contacts_because`] |
//! | `suppress_unsent_attempt(attempt uuid, contact uuid, attempt_number int, at_time timestamptz) RETURNS SETOF uuid` | [`suppress_unsent_attempt`] |
//!
//! A state given to one of them is bound as a typed parameter (`ContactState`'s `ToSql`), so
//! its name comes from `shared::domain`, never from a literal in a statement.
//!
//! Inside a larger statement, call them by name: a claim filters its contacts with
//! `frequency_cap_frees_at(c.workspace_id, c.phone_number, $now, $count, $days) IS NULL`, and a
//! hand-back writes `state = contact_state_for_job(b.state)`.
//!
//! [`JobState::contact_state_when_handed_back`]: crate::domain::JobState::contact_state_when_handed_back

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::domain::ContactState;

/// `suppress_contacts`: each of `ids` still `from` ends `failed` with the outcome `suppressed`
/// (never dialed, nothing charged), with a `suppressed` event (reason `do_not_call`) at `$3`
/// (NULL: the transaction's `now()`).
pub const SUPPRESS_CONTACTS: &str =
    "SELECT suppress_contacts($1::uuid[], $2::text, COALESCE($3::timestamptz, now())) AS id";

/// `suppress_contacts` with the event's reason `$4` and detail `$5` (migration V25).
pub const SUPPRESS_CONTACTS_BECAUSE: &str = "SELECT suppress_contacts($1::uuid[], $2::text, \
     COALESCE($3::timestamptz, now()), $4::text, $5::jsonb) AS id";

/// `suppress_unsent_attempt`: a contact `dialing` attempt `$3` whose attempt `$1` was never
/// sent: the attempt goes (uncharged) and the contact is suppressed, in one call, at `$4`
/// (NULL: the transaction's `now()`).
pub const SUPPRESS_UNSENT_ATTEMPT: &str = "SELECT suppress_unsent_attempt($1::uuid, $2::uuid, \
     $3::int4, COALESCE($4::timestamptz, now())) AS id";

/// `frequency_cap_frees_at` for one number, not counting `$6` (the attempt just written).
pub const FREQUENCY_CAP_FREES_AT: &str = "SELECT frequency_cap_frees_at($1::uuid, $2::text, \
     $3::timestamptz, $4::int4, $5::int4, $6::uuid) AS frees_at";

/// Suppresses each of `ids` that is still in state `from`, at `at` (`None`: the transaction's
/// time); returns those it ended.
pub async fn suppress_contacts(
    client: &impl GenericClient,
    ids: &[Uuid],
    from: ContactState,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = client.query(SUPPRESS_CONTACTS, &[&ids, &from, &at]).await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Like [`suppress_contacts`], with the `suppressed` event's reason `why` and `detail` (the
/// pre-dial check's refusal: reason `predial_denied`, detail `{"reason": "…"}`).
pub async fn suppress_contacts_because(
    client: &impl GenericClient,
    ids: &[Uuid],
    from: ContactState,
    at: Option<DateTime<Utc>>,
    why: &str,
    detail: &serde_json::Value,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = client
        .query(SUPPRESS_CONTACTS_BECAUSE, &[&ids, &from, &at, &why, detail])
        .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Suppresses a contact whose attempt `attempt_no` (`attempt_id`) was written but never sent,
/// taking the attempt back, at `at` (`None`: the transaction's time); whether it did (not when
/// the contact had moved on or the call was sent).
pub async fn suppress_unsent_attempt(
    client: &impl GenericClient,
    attempt_id: Uuid,
    contact_id: Uuid,
    attempt_no: i32,
    at: Option<DateTime<Utc>>,
) -> Result<bool, tokio_postgres::Error> {
    let rows = client
        .query(
            SUPPRESS_UNSENT_ATTEMPT,
            &[&attempt_id, &contact_id, &attempt_no, &at],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// With the workspace's frequency cap of `count` attempts in `days` days: `None` while
/// `number` may be called at `at`; otherwise when one more call is allowed. `except` is an
/// attempt not to count (the one just written for the call being judged).
pub async fn frequency_cap_frees_at(
    client: &impl GenericClient,
    workspace_id: Uuid,
    number: &str,
    at: DateTime<Utc>,
    (count, days): (i32, i32),
    except: Option<Uuid>,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    client
        .query_one(
            FREQUENCY_CAP_FREES_AT,
            &[&workspace_id, &number, &at, &count, &days, &except],
        )
        .await?
        .try_get("frees_at")
}
