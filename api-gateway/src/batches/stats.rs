//! Progress of a batch as Dialgen reports it: statistics, performance, recent calls.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::Batch;
use crate::error::ApiError;

/// How many of a batch's contacts are in each state, and how many dials were placed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub attempts: i64,
}

impl Counts {
    /// Contacts with a final result.
    pub fn processed(&self) -> i64 {
        self.completed + self.failed + self.cancelled
    }

    /// Reads the counts of one batch, with its dial attempts.
    pub async fn load(client: &impl GenericClient, batch_id: Uuid) -> Result<Self, ApiError> {
        let mut counts = Self::load_many(client, &[batch_id])
            .await?
            .remove(&batch_id)
            .unwrap_or_default();
        counts.attempts = client
            .query_one(
                "SELECT count(*) FROM dial_attempts WHERE batch_id = $1",
                &[&batch_id],
            )
            .await?
            .get(0);
        Ok(counts)
    }

    /// Reads the contact counts of several batches in one query (`attempts` left at 0); a batch
    /// with no contacts yet is absent from the map.
    pub async fn load_many(
        client: &impl GenericClient,
        batch_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Self>, ApiError> {
        let mut all: HashMap<Uuid, Self> = HashMap::new();
        let rows = client
            .query(
                "SELECT batch_id, state, count(*) FROM contacts WHERE batch_id = ANY($1) GROUP BY batch_id, state",
                &[&batch_ids],
            )
            .await?;
        for row in rows {
            let counts = all.entry(row.get(0)).or_default();
            let n: i64 = row.get(2);
            counts.total += n;
            match row.get::<_, &str>(1) {
                "completed" => counts.completed = n,
                "failed" => counts.failed = n,
                "cancelled" => counts.cancelled = n,
                _ => {}
            }
        }
        Ok(all)
    }
}

/// Dialgen's `statistics` object.
pub fn statistics(c: &Counts) -> Value {
    let processed = c.processed();
    let percent = if c.total > 0 {
        processed as f64 * 100.0 / c.total as f64
    } else {
        0.0
    };
    let success = if processed > 0 {
        c.completed as f64 * 100.0 / processed as f64
    } else {
        0.0
    };
    json!({
        "total": c.total,
        "processed": processed,
        "succeeded": c.completed,
        "failed": c.failed + c.cancelled,
        "pending": c.total - processed,
        "percentComplete": round2(percent),
        "successRate": round2(success),
    })
}

/// Dialgen's `timestamps` object.
pub fn timestamps(b: &Batch) -> Value {
    json!({"createdAt": b.created_at, "startedAt": b.started_at, "completedAt": b.completed_at})
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Dialgen's call status for a contact (`SCHEDULED`, `ONGOING`, `COMPLETED`, `MISSED`,
/// `FAILED`; `CANCELLED` as an extension).
pub fn call_status(contact_state: &str, last_outcome: Option<&str>) -> &'static str {
    match contact_state {
        "queued" | "released" => "SCHEDULED",
        "dialing" => "ONGOING",
        "completed" => "COMPLETED",
        "cancelled" => "CANCELLED",
        _ => match last_outcome {
            Some("busy" | "no-answer" | "voicemail") => "MISSED",
            _ => "FAILED",
        },
    }
}

/// Dialgen's status of one dial attempt.
pub fn attempt_status(outcome: Option<&str>) -> &'static str {
    match outcome {
        None => "ONGOING",
        Some("completed") => "COMPLETED",
        Some("busy" | "no-answer" | "voicemail") => "MISSED",
        Some(_) => "FAILED",
    }
}

/// The check-status shape (also served at the seed's `links.status`), extended with the
/// rejected rows counted by reason and the row counts.
pub async fn check_status(
    client: &impl GenericClient,
    b: &Batch,
    recent: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let counts = Counts::load(client, b.id).await?;
    let elapsed = b.started_at.map(|s| {
        (now.min(b.completed_at.unwrap_or(now)) - s)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0
    });
    let cps = match elapsed {
        Some(secs) if secs > 0.0 => counts.attempts as f64 / secs,
        _ => 0.0,
    };
    let pending = counts.total - counts.processed();
    let eta = (cps > 0.0 && pending > 0).then(|| (pending as f64 / cps).round());
    let limit = recent.unwrap_or(10);
    let recent_rows = client
        .query(
            "SELECT a.id, a.carrier_call_sid, a.outcome, a.answered_at, a.ended_at, a.created_at, a.to_number, c.name
             FROM dial_attempts a JOIN contacts c ON c.id = a.contact_id
             WHERE a.batch_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT $2",
            &[&b.id, &(if limit < 0 { i64::MAX } else { limit })],
        )
        .await?;
    let recent_calls: Vec<Value> = recent_rows
        .iter()
        .map(|r| {
            let outcome: Option<&str> = r.get(2);
            let answered: Option<DateTime<Utc>> = r.get(3);
            let ended: Option<DateTime<Utc>> = r.get(4);
            let duration = answered
                .zip(ended)
                .map(|(a, e)| (e - a).num_seconds().max(0));
            json!({
                "id": r.get::<_, Uuid>(0),
                "callSid": r.get::<_, Option<String>>(1),
                "status": attempt_status(outcome),
                "duration": duration,
                "createdAt": r.get::<_, DateTime<Utc>>(5),
                "phoneNumber": r.get::<_, String>(6),
                "contactName": r.get::<_, Option<String>>(7),
            })
        })
        .collect();
    let mut rejected = serde_json::Map::new();
    for r in client.query("SELECT reason, count(*) FROM rejected_rows WHERE batch_id = $1 GROUP BY reason ORDER BY reason", &[&b.id]).await? {
        rejected.insert(r.get::<_, String>(0), json!(r.get::<_, i64>(1)));
    }
    Ok(json!({
        "batchId": b.id,
        "status": b.dialgen_status(now),
        "priority": b.priority,
        "statistics": statistics(&counts),
        "performance": {"callsPerSecond": round2(cps), "estimatedTimeRemaining": eta, "elapsedTime": elapsed.map(|e| e.round())},
        "timestamps": timestamps(b),
        "recentCalls": recent_calls,
        "webhooks": b.webhooks,
        "agentId": b.agent_id,
        "userId": b.user_id,
        "rows": {"submitted": b.total_rows, "accepted": b.accepted_rows, "rejected": b.rejected_rows},
        "rejected": rejected,
        "error": b.error.as_ref().map(|m| json!({"code": b.error_code, "message": m})),
    }))
}
