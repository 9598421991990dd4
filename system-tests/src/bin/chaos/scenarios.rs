//! The scenarios: one fresh campaign each, a fault injected mid-campaign, the figures checked.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::check::{self, Figures};
pub use crate::plan::{Plan, number};
use crate::proxy::Mode;
use crate::stack::{Service, Stack};

/// Every scenario, in the order of the full run.
pub const ALL: [&str; 21] = [
    "baseline",
    "dial-worker",
    "all-dial-workers",
    "scheduler",
    "two-schedulers",
    "ingest",
    "gateway",
    "redis-flush",
    "redis-down",
    "rabbitmq",
    "postgres",
    "carrier-500",
    "carrier-timeout",
    "carrier-callbacks",
    "network",
    "network-scheduler",
    "rabbitmq-node-loss",
    "postgres-failover",
    "postgres-failover-async",
    "redis-failover",
    "replication-cost",
];

/// The HA scenarios: the parts of the HA stack each runs on, and whether PostgreSQL's standby
/// is synchronous.
pub fn ha_parts(name: &str) -> Option<(Vec<&'static str>, bool)> {
    match name {
        "rabbitmq-node-loss" => Some((vec!["rabbitmq"], true)),
        "postgres-failover" => Some((vec!["postgres"], true)),
        "postgres-failover-async" => Some((vec!["postgres"], false)),
        "redis-failover" => Some((vec!["redis"], true)),
        "replication-cost" => Some((vec!["postgres"], true)),
        _ => None,
    }
}

/// How long a role may take after a failover to succeed again (issue #26).
const FAILOVER_RECOVERY_S: f64 = 30.0;

/// What each scenario would fail on until issue #17 lands (shown beside a failure).
fn known(name: &str) -> Option<&'static str> {
    Some(match name {
        "rabbitmq-node-loss"
        | "postgres-failover"
        | "postgres-failover-async"
        | "redis-failover"
        | "replication-cost" => return None,
        "dial-worker" | "all-dial-workers" => {
            "#17 §7: an attempt written but never placed stays ONGOING"
        }
        "gateway" | "rabbitmq" | "carrier-callbacks" => {
            "#17 §7: a lost callback pins its slot until the reconciler (300 s)"
        }
        "carrier-500" => "#29: an attempt answered 5xx is asked about after 2 s",
        "carrier-timeout" => {
            "an attempt whose request timed out waits send window + request timeout + ring timeout"
        }
        "postgres" | "redis-down" | "network" | "network-scheduler" => {
            "#17 §1–2: stranding, dead-letter budget"
        }
        _ => "#17 §1: release hand-off strands contacts",
    })
}

#[derive(Default)]
struct FaultWindow {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

pub async fn run(stack: &mut Stack, name: &str, index: usize, plan: &Plan) -> Figures {
    let started = Instant::now();
    let mut f = Figures {
        scenario: name.to_owned(),
        job_limit: plan.job_limit,
        workspace_limit: plan.workspace_limit,
        cps_limit: plan.cps,
        ..Default::default()
    };
    let result = if name == "ingest" {
        ingest(stack, index, plan, &mut f).await
    } else if name == "replication-cost" {
        crate::cost::replication_cost(stack, index, plan, &mut f).await
    } else {
        campaign(stack, name, index, plan, &mut f).await
    };
    if let Err(e) = result {
        f.violations.push(format!("error: {e:#}"));
    }
    f.duration_s = started.elapsed().as_secs_f64();
    check::judge(&mut f, plan.tolerate_17);
    if ha_parts(name).is_some() && name != "replication-cost" {
        judge_failover(name, &mut f);
    }
    if !f.violations.is_empty() {
        f.known = known(name).map(str::to_owned);
    }
    f
}

/// What a failover adds to the judgement: every role's next call within
/// [`FAILOVER_RECOVERY_S`] of the failover; and for `postgres-failover-async` the reverse of a
/// pass: it is there to show that an asynchronous standby loses committed attempts, so it
/// passes when the loss shows (calls without their attempt row, or numbers called twice) and
/// fails when it does not.
fn judge_failover(name: &str, f: &mut Figures) {
    if name == "postgres-failover-async" {
        if f.missing_attempts > 0 || f.double_dialed > 0 {
            f.notes.push(format!(
                "risk shown, as expected: {} calls placed whose attempt row the promoted standby lacks, {} numbers called twice (violations here: {})",
                f.missing_attempts,
                f.double_dialed,
                if f.violations.is_empty() { "none".to_owned() } else { f.violations.join("; ") }
            ));
            f.violations.clear();
        } else {
            f.violations
                .push("the asynchronous failover lost no attempt: the risk did not show".into());
        }
        return;
    }
    // The longest time without a call start from the fault on bounds every role's return
    // (the fault itself, kill to promotion, included).
    if f.max_gap_s > FAILOVER_RECOVERY_S {
        f.violations.push(format!(
            "no call for {:.1} s > {FAILOVER_RECOVERY_S} s after the fault",
            f.max_gap_s
        ));
    }
    match f.recovery_s {
        Some(r) if r > FAILOVER_RECOVERY_S => f
            .violations
            .push(format!("recovery {r:.1} s > {FAILOVER_RECOVERY_S} s")),
        None if f.calls < f.contacts => f.violations.push("no call after the failover".into()),
        _ => {}
    }
}

fn calls_so_far(stack: &Stack, numbers: &HashSet<String>) -> usize {
    carrier_sim::record::try_read(&stack.record)
        .map(|all| all.iter().filter(|c| numbers.contains(&c.to)).count())
        .unwrap_or(0)
}

async fn campaign(
    stack: &mut Stack,
    name: &str,
    index: usize,
    plan: &Plan,
    f: &mut Figures,
) -> anyhow::Result<()> {
    if name == "postgres" && stack.pg.is_none() {
        anyhow::bail!("needs the suite's own PostgreSQL cluster (run with it in --scenarios)");
    }
    let (key, agent) = stack
        .workspace(&format!("chaos-{name}"), plan.workspace_limit)
        .await?;
    if name == "two-schedulers" {
        stack.start_role("scheduler-2").await?;
    }
    let numbers: Vec<String> = (0..plan.contacts).map(|i| number(index, i)).collect();
    let set: HashSet<String> = numbers.iter().cloned().collect();
    f.contacts = numbers.len();
    let body = json!({
        "agentId": agent, "userId": "chaos",
        "contacts": numbers.iter().map(|n| json!({"phoneNumber": n})).collect::<Vec<_>>(),
        "options": {"maxCallsPerSecond": plan.cps, "maxConcurrentDials": plan.job_limit,
                    "retryStrategy": {"maxAttempts": 2, "busyDelay": 500, "noAnswerDelay": 500}}
    });
    let idem = uuid::Uuid::new_v4().to_string();
    let (status, created) = stack
        .post(&key, "/api/v1/batch", &body, Some(&idem))
        .await?;
    let batch = created["batchId"]
        .as_str()
        .with_context(|| format!("create answered {status}: {created}"))?
        .to_owned();
    let batch_id: uuid::Uuid = batch.parse()?;
    if name == "baseline" {
        idempotency(stack, &key, &agent, index, &body, &idem, &batch, f).await?;
    }

    // The stranded sampler: every 500 ms, contacts `released` for more than
    // `system_tests::STRANDED_AFTER_SECS` (counted from the end of the fault, not during it).
    let window = Arc::new(Mutex::new(FaultWindow::default()));
    let stranded = Arc::new(Mutex::new((HashSet::<uuid::Uuid>::new(), 0f64)));
    let sampler = tokio::spawn(sample_stranded(
        stack.db_url.clone(),
        batch_id,
        i64::from(plan.job_limit.min(plan.workspace_limit)),
        window.clone(),
        stranded.clone(),
    ));

    // The fault, once about a third of the calls have been placed.
    let trigger = (plan.contacts / 3).max(1);
    let wait_until = Instant::now() + Duration::from_secs(120);
    while name != "baseline" && calls_so_far(stack, &set) < trigger && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mark = |w: &Arc<Mutex<FaultWindow>>, start: bool| {
        let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
        if start {
            w.start = Some(Utc::now());
        } else {
            w.end = Some(Utc::now());
        }
    };
    if name != "baseline" {
        mark(&window, true);
        inject(stack, name, f).await?;
        mark(&window, false);
    }

    // Until completed or the deadline (the asynchronous failover is not expected to complete:
    // what it shows is there within a minute).
    let mut wait = plan.deadline.unwrap_or(Duration::from_secs(
        45 + 3 * plan.contacts as u64 / u64::from(plan.cps.max(1)),
    ));
    if name == "postgres-failover-async" {
        wait = wait.min(Duration::from_secs(60));
    }
    let deadline = Instant::now() + wait;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(s) = stack
            .get(&key, &format!("/api/v1/batch/{batch}/status"))
            .await
        {
            last = s;
            if last["status"] == "completed" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sampler.abort();
    let waited_until = Utc::now();
    if name == "two-schedulers" {
        stack.role("scheduler-2").kill9().await;
        stack.role("scheduler").restart().await?;
    }
    // Late callbacks and records settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    f.completed = last["status"] == "completed";
    // Answered contacts: by a person (`succeeded`) or by a machine (`voicemail`, counted apart).
    f.api_succeeded = match (
        last["statistics"]["succeeded"].as_i64(),
        last["statistics"]["voicemail"].as_i64(),
    ) {
        (Some(person), Some(machine)) => person + machine,
        _ => -1,
    };
    let calls = check::calls_of(&carrier_sim::record::try_read(&stack.record)?, &set);
    f.calls = calls.len();
    let mut final_outcome = std::collections::HashMap::new();
    for c in &calls {
        final_outcome.insert(c.to.clone(), c.outcome);
    }
    // A contact whose last call was answered (by a person or a machine) is `completed`.
    f.record_succeeded = final_outcome
        .values()
        .filter(|o| {
            matches!(
                o,
                shared::domain::CallOutcome::Completed | shared::domain::CallOutcome::Voicemail
            )
        })
        .count();
    // Each call's outcome as the database recorded it, against the record's.
    let rows = stack
        .db
        .query(
            "SELECT carrier_call_sid, outcome FROM dial_attempts
             WHERE batch_id = $1 AND carrier_call_sid IS NOT NULL",
            &[&batch_id],
        )
        .await?;
    let recorded: std::collections::HashMap<String, Option<String>> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    f.missing_attempts = calls
        .iter()
        .filter(|c| !recorded.contains_key(&c.call_sid))
        .count();
    let mismatched = calls
        .iter()
        .filter(|c| {
            recorded.get(&c.call_sid).and_then(|o| o.as_deref()) != Some(c.outcome.as_str())
        })
        .count();
    if mismatched > 0 {
        f.notes
            .push(format!("{mismatched} calls whose recorded outcome differs"));
    }
    let placed: i64 = stack
        .db
        .query_one(
            "SELECT count(*) FROM dial_attempts WHERE batch_id = $1 AND carrier_call_sid IS NOT NULL",
            &[&batch_id],
        )
        .await?
        .get(0);
    f.counts_agree = f.api_succeeded == f.record_succeeded as i64
        && placed == calls.len() as i64
        && mismatched == 0;
    if placed != calls.len() as i64 {
        f.notes.push(format!(
            "{placed} attempts with a call id, {} calls in the record",
            calls.len()
        ));
    }
    f.lost = stack
        .db
        .query_one(
            "SELECT count(*) FROM contacts WHERE batch_id = $1
               AND state NOT IN ('completed', 'failed', 'cancelled')",
            &[&batch_id],
        )
        .await?
        .get(0);
    if f.lost > 0 {
        let rows = stack
            .db
            .query(
                "SELECT state, count(*) FROM contacts WHERE batch_id = $1
                   AND state NOT IN ('completed', 'failed', 'cancelled') GROUP BY state",
                &[&batch_id],
            )
            .await?;
        let by: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.get::<_, i64>(1), r.get::<_, String>(0)))
            .collect();
        f.notes.push(format!("not final: {}", by.join(", ")));
    }
    {
        let s = stranded.lock().unwrap_or_else(|e| e.into_inner());
        f.stranded = s.0.len();
        f.stranded_max_s = s.1;
    }
    f.double_dialed = check::double_dialed(&calls);
    f.max_overlap = carrier_sim::record::max_overlap(&calls);
    let limit = plan.job_limit.min(plan.workspace_limit) as usize;
    (f.overshoot, f.overshoot_ms) = check::overshoot(&calls, limit);
    f.max_starts_per_s = carrier_sim::record::max_starts_per_second(&calls);
    let (start, end) = {
        let w = window.lock().unwrap_or_else(|e| e.into_inner());
        (w.start, w.end)
    };
    // A campaign whose calls stopped for good: its last gap runs to the end of the wait.
    let open_until = (!f.completed).then_some(waited_until);
    (f.max_gap_s, f.recovery_s) = check::gaps(&calls, start, end, open_until);
    f.dead_letters = stack.dead_letters().await.unwrap_or(0);
    Ok(())
}

/// The same create sent again with its `Idempotency-Key`, then a second create sent twice at
/// once with another key: each must give one batch (a replay racing the first may be told to
/// retry, 409, but never gets a second batch).
#[allow(clippy::too_many_arguments)]
async fn idempotency(
    stack: &Stack,
    key: &str,
    agent: &str,
    index: usize,
    body: &Value,
    idem: &str,
    batch: &str,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let (_, again) = stack.post(key, "/api/v1/batch", body, Some(idem)).await?;
    if again["batchId"].as_str() != Some(batch) {
        f.violations
            .push(format!("sequential replay gave another batch: {again}"));
    }
    let probe = json!({
        "agentId": agent, "userId": "chaos",
        "contacts": (0..4).map(|i| json!({"phoneNumber": number(index, 9_000_000 + i)})).collect::<Vec<_>>(),
        "options": {"maxCallsPerSecond": 2}
    });
    let key2 = uuid::Uuid::new_v4().to_string();
    let (a, b) = tokio::join!(
        stack.post(key, "/api/v1/batch", &probe, Some(&key2)),
        stack.post(key, "/api/v1/batch", &probe, Some(&key2))
    );
    let (a, b) = (a?.1, b?.1);
    // One batch: both answers name it, or one does and the other is the 409 a replay gets while
    // the first request's body is still being received (docs/ingest.md; as Stripe's keys do).
    let in_progress = |v: &Value| v["error"]["code"] == "conflict";
    let one_batch = if a["batchId"].is_null() {
        !b["batchId"].is_null() && in_progress(&a)
    } else {
        a["batchId"] == b["batchId"] || in_progress(&b)
    };
    if !one_batch {
        f.violations
            .push(format!("concurrent creates gave two batches: {a} / {b}"));
    }
    let batches: i64 = stack
        .db
        .query_one(
            "SELECT count(*) FROM batches WHERE idempotency_key = ANY($1)",
            &[&vec![idem.to_owned(), key2]],
        )
        .await?
        .get(0);
    if batches != 2 {
        f.violations
            .push(format!("{batches} batches for 2 idempotency keys"));
    }
    f.notes
        .push("idempotent create: sequential and concurrent ok".into());
    Ok(())
}

/// A contact counts as stranded when it has been `released` for more than 5 s (since the fault
/// healed, if later) while its job had a free slot (fewer than `limit` contacts `dialing`): a
/// released contact waiting behind full slots has its message, held by a worker.
async fn sample_stranded(
    db_url: String,
    batch: uuid::Uuid,
    limit: i64,
    window: Arc<Mutex<FaultWindow>>,
    out: Arc<Mutex<(HashSet<uuid::Uuid>, f64)>>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if client.as_ref().is_none_or(|c| c.is_closed())
            && let Ok((c, conn)) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            client = Some(c);
        }
        let Some(c) = client.as_ref() else { continue };
        let Ok(rows) = c
            .query(
                "SELECT id, released_at, (SELECT count(*) FROM contacts
                                           WHERE batch_id = $1 AND state = 'dialing')
                 FROM contacts WHERE batch_id = $1 AND state = 'released'
                   AND released_at < now() - make_interval(secs => $2)",
                &[&batch, &system_tests::STRANDED_AFTER_SECS],
            )
            .await
        else {
            continue;
        };
        if rows.first().is_some_and(|r| r.get::<_, i64>(2) >= limit) {
            continue;
        }
        let now = Utc::now();
        let (start, end) = {
            let w = window.lock().unwrap_or_else(|e| e.into_inner());
            (w.start, w.end)
        };
        if start.is_some() && end.is_none() {
            continue;
        }
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            let id: uuid::Uuid = row.get(0);
            let released: DateTime<Utc> = row.get(1);
            let since = end.map_or(released, |e| e.max(released));
            let age = (now - since).num_milliseconds() as f64 / 1000.0;
            if age > system_tests::STRANDED_AFTER_SECS {
                o.0.insert(id);
                o.1 = o.1.max((now - released).num_milliseconds() as f64 / 1000.0);
            }
        }
    }
}

async fn sleep_s(s: u64) {
    tokio::time::sleep(Duration::from_secs(s)).await;
}

/// Injects the scenario's fault and returns once it is healed (the process restarted, the
/// proxy back to passing).
async fn inject(stack: &mut Stack, name: &str, f: &mut Figures) -> anyhow::Result<()> {
    match name {
        "dial-worker" => {
            stack.role("dial-1").kill9().await;
            sleep_s(5).await;
            stack.role("dial-1").restart().await?;
        }
        "all-dial-workers" => {
            stack.role("dial-1").kill9().await;
            stack.role("dial-2").kill9().await;
            sleep_s(10).await;
            stack.role("dial-1").restart().await?;
            stack.role("dial-2").restart().await?;
        }
        "scheduler" => {
            stack.role("scheduler").kill9().await;
            sleep_s(5).await;
            stack.role("scheduler").restart().await?;
        }
        "two-schedulers" => {
            // The survivor carries on alone; the killed one comes back after the campaign.
            stack.role("scheduler").kill9().await;
        }
        "gateway" => {
            stack.role("gateway").kill9().await;
            sleep_s(5).await;
            stack.role("gateway").restart().await?;
        }
        "redis-flush" => {
            let n = stack.flush_redis_prefix().await?;
            f.notes.push(format!("{n} keys deleted"));
        }
        "redis-down" => {
            stack.set_service(Service::Redis, Mode::Cut);
            sleep_s(10).await;
            stack.set_service(Service::Redis, Mode::Pass);
        }
        "rabbitmq" => {
            // The shared broker is not restarted: every role's connection to it is reset and
            // refused for 5 s, as a broker restart looks to its clients.
            stack.set_service(Service::Amqp, Mode::Cut);
            sleep_s(5).await;
            stack.set_service(Service::Amqp, Mode::Pass);
        }
        "postgres" => {
            let pg = stack.pg.as_ref().context("own PostgreSQL")?;
            let t = Instant::now();
            pg.ctl("restart").await?;
            f.notes.push(format!(
                "PostgreSQL restarted in {:.1} s",
                t.elapsed().as_secs_f64()
            ));
            stack.reconnect_db().await?;
        }
        "carrier-500" => {
            stack.carrier_proxy.set(Mode::Http500);
            sleep_s(10).await;
            stack.carrier_proxy.set(Mode::Pass);
        }
        "carrier-timeout" => {
            stack.carrier_proxy.set(Mode::Blackhole);
            sleep_s(10).await;
            stack.carrier_proxy.set(Mode::Pass);
        }
        "carrier-callbacks" => {
            stack.callback_proxy.set(Mode::Cut);
            sleep_s(10).await;
            stack.callback_proxy.set(Mode::Pass);
        }
        "network" => {
            stack.set_role_net("dial-1", Mode::Cut);
            sleep_s(10).await;
            stack.set_role_net("dial-1", Mode::Pass);
        }
        "network-scheduler" => {
            stack.set_role_net("scheduler", Mode::Cut);
            sleep_s(10).await;
            stack.set_role_net("scheduler", Mode::Pass);
        }
        "rabbitmq-node-loss"
        | "postgres-failover"
        | "postgres-failover-async"
        | "redis-failover" => failover(stack, name, f).await?,
        other => anyhow::bail!("unknown scenario {other}"),
    }
    Ok(())
}

/// The HA faults, each for good (nothing is restarted): the fault window ends when the service
/// has moved (a new leader needs no action; a standby promoted; the Sentinels' new primary).
async fn failover(stack: &mut Stack, name: &str, f: &mut Figures) -> anyhow::Result<()> {
    let ha = stack.ha.as_ref().context("the HA stack")?;
    match name {
        "rabbitmq-node-loss" => {
            let queue = shared::queue::Topology::new(stack.queue_prefix.clone())
                .queue(shared::queue::Stream::Dial);
            let node = ha.rabbit_leader(&queue, 1).await?;
            ha.kill9(&format!("rabbitmq-{node}")).await?;
            f.notes.push(format!(
                "node dfha{node}, leader of the dial queue, killed (kill -9, not restarted)"
            ));
        }
        "postgres-failover" | "postgres-failover-async" => {
            if name == "postgres-failover-async" {
                // Commits go on on the primary; none reaches the standby from here on.
                let n = ha.pg_pause_wal_senders().await?;
                f.notes.push(format!(
                    "{n} WAL sender stopped (SIGSTOP) 3 s before the kill"
                ));
                sleep_s(3).await;
            }
            ha.kill9("postgres-primary").await?;
            // An operator (or Patroni) sees the primary gone, then promotes.
            sleep_s(1).await;
            let t = Instant::now();
            ha.pg_promote().await?;
            f.notes.push(format!(
                "primary killed (kill -9), standby promoted (pg_ctl promote) in {:.1} s",
                t.elapsed().as_secs_f64()
            ));
            let until = Instant::now() + Duration::from_secs(30);
            while let Err(e) = stack.reconnect_db().await {
                if Instant::now() > until {
                    return Err(e.context("the suite's own connection to the promoted standby"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        "redis-failover" => {
            let old = stack.redis_url.clone();
            ha.kill9("redis-primary").await?;
            let t = Instant::now();
            loop {
                if let Ok(url) = ha.sentinel_primary().await
                    && url != old
                {
                    f.notes.push(format!(
                        "primary killed (kill -9); the Sentinels promoted {url} after {:.1} s",
                        t.elapsed().as_secs_f64()
                    ));
                    stack.redis_url = url;
                    break;
                }
                if t.elapsed() > Duration::from_secs(60) {
                    anyhow::bail!("the Sentinels promoted no replica within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        other => anyhow::bail!("unknown HA scenario {other}"),
    }
    Ok(())
}

/// A large batch, the ingest worker killed one second after the 202 and restarted: every row
/// stored once, and how long the batch stays `ingesting`.
async fn ingest(
    stack: &mut Stack,
    index: usize,
    plan: &Plan,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let (key, agent) = stack
        .workspace("chaos-ingest", plan.workspace_limit)
        .await?;
    let n = plan.ingest_contacts;
    f.contacts = n;
    f.completed = false;
    f.counts_agree = true;
    let start_at = (Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let body = json!({
        "agentId": agent, "userId": "chaos",
        "contacts": (0..n).map(|i| json!({"phoneNumber": number(index, i)})).collect::<Vec<_>>(),
        "options": {"maxCallsPerSecond": plan.cps, "scheduledStartTime": start_at}
    });
    let (status, created) = stack.post(&key, "/api/v1/batch", &body, None).await?;
    let accepted = Instant::now();
    let batch = created["batchId"]
        .as_str()
        .with_context(|| format!("create answered {status}: {created}"))?
        .to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.role("ingest").kill9().await;
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.role("ingest").restart().await?;
    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(s) = stack
            .get(&key, &format!("/api/v1/batch/{batch}/status"))
            .await
        {
            last = s;
            if last["status"] != "ingesting" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = Instant::now();
    let batch_id: uuid::Uuid = batch.parse()?;
    let stored: i64 = stack
        .db
        .query_one(
            "SELECT count(*) FROM contacts WHERE batch_id = $1",
            &[&batch_id],
        )
        .await?
        .get(0);
    f.lost = n as i64 - stored;
    f.completed = last["status"] == "scheduled";
    f.job_limit = plan.job_limit;
    f.notes.push(format!(
        "{stored} of {n} rows stored once; status {} {:.1} s after the 202, {:.1} s after the kill, {:.1} s after the restart",
        last["status"],
        (done - accepted).as_secs_f64(),
        (done - killed).as_secs_f64(),
        (done - restarted).as_secs_f64()
    ));
    if stored > n as i64 {
        f.violations
            .push(format!("{} rows stored twice", stored - n as i64));
    }
    f.dead_letters = stack.dead_letters().await.unwrap_or(0);
    Ok(())
}
