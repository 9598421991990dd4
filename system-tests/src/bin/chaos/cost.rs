//! `replication-cost`: what synchronous replication costs, measured in one run on the HA
//! PostgreSQL pair. The same load twice — synchronous (`synchronous_standby_names =
//! 'standby1'`, `synchronous_commit = on`), then asynchronous (`synchronous_standby_names =
//! ''`), switched on the primary with `ALTER SYSTEM` and a reload — each time four batches
//! dialled at once (the workspace's lines are four jobs' worth) and a probe of single-row
//! commits. Reported: dials/s over the campaign, and the mean commit time.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::time::Instant;

use crate::check::{self, Figures};
use crate::plan::{Plan, number};
use crate::stack::Stack;

/// Batches dialled at once per mode.
const BATCHES: usize = 4;
/// Single-row commits in the probe.
const PROBE_COMMITS: u32 = 500;

/// What one mode measured.
struct Measured {
    calls: usize,
    span_s: f64,
    commit_ms: f64,
    completed: bool,
}

impl Measured {
    fn dials_per_s(&self) -> f64 {
        if self.span_s > 0.0 {
            self.calls as f64 / self.span_s
        } else {
            0.0
        }
    }
}

pub async fn replication_cost(
    stack: &mut Stack,
    index: usize,
    plan: &Plan,
    f: &mut Figures,
) -> anyhow::Result<()> {
    f.job_limit = plan.job_limit * BATCHES as u32;
    f.workspace_limit = f.job_limit;
    f.cps_limit = plan.cps * BATCHES as u32;
    f.counts_agree = true;
    f.completed = true;
    let mut all_calls = Vec::new();
    let mut figures = Vec::new();
    for (k, sync) in [(0usize, true), (1, false)] {
        set_sync(stack, sync).await?;
        let commit_ms = probe_commits(stack).await?;
        let (m, calls) = load(stack, index, k, plan, commit_ms).await?;
        f.completed &= m.completed;
        figures.push((sync, m));
        all_calls.extend(calls);
    }
    all_calls.sort_by_key(|c| c.requested_at);
    f.contacts = plan.contacts * 2;
    f.calls = all_calls.len();
    f.double_dialed = check::double_dialed(&all_calls);
    f.max_overlap = carrier_sim::record::max_overlap(&all_calls);
    (f.overshoot, f.overshoot_ms) = check::overshoot(&all_calls, f.job_limit as usize);
    f.max_starts_per_s = carrier_sim::record::max_starts_per_second(&all_calls);
    let text: Vec<String> = figures
        .iter()
        .map(|(sync, m)| {
            format!(
                "{}: {:.1} dials/s ({} calls in {:.1} s), commit {:.2} ms",
                if *sync { "synchronous" } else { "asynchronous" },
                m.dials_per_s(),
                m.calls,
                m.span_s,
                m.commit_ms
            )
        })
        .collect();
    f.notes.push(text.join("; "));
    if let [(_, s), (_, a)] = figures.as_slice()
        && a.dials_per_s() > 0.0
    {
        f.notes.push(format!(
            "synchronous replication: {:+.1} % dials/s, {:+.2} ms a commit",
            (s.dials_per_s() / a.dials_per_s() - 1.0) * 100.0,
            s.commit_ms - a.commit_ms
        ));
    }
    set_sync(stack, true).await?;
    Ok(())
}

/// Switches the primary between synchronous and asynchronous replication.
async fn set_sync(stack: &Stack, sync: bool) -> anyhow::Result<()> {
    let ha = stack.ha.as_ref().context("the HA stack")?;
    let names = if sync { "standby1" } else { "" };
    ha.pg_primary(&format!(
        "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
    ))
    .await?;
    ha.pg_primary("SELECT pg_reload_conf()").await?;
    // The walsender takes the new setting at its next loop; give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// The mean time of one single-row commit from the suite's connection (ms).
async fn probe_commits(stack: &Stack) -> anyhow::Result<f64> {
    stack
        .db
        .batch_execute("CREATE TABLE IF NOT EXISTS chaos_commit_probe (i int)")
        .await?;
    let t = Instant::now();
    for i in 0..PROBE_COMMITS as i32 {
        stack
            .db
            .execute("INSERT INTO chaos_commit_probe VALUES ($1)", &[&i])
            .await?;
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0 / f64::from(PROBE_COMMITS))
}

/// Four batches at once in a workspace of four jobs' lines, until all complete.
async fn load(
    stack: &Stack,
    index: usize,
    k: usize,
    plan: &Plan,
    commit_ms: f64,
) -> anyhow::Result<(Measured, Vec<carrier_sim::record::CallRecord>)> {
    let (key, agent) = stack
        .workspace(&format!("chaos-cost-{k}"), plan.job_limit * BATCHES as u32)
        .await?;
    let per = plan.contacts.div_ceil(BATCHES);
    let mut set = HashSet::new();
    let mut batches = Vec::new();
    for b in 0..BATCHES {
        let numbers: Vec<String> = (0..per)
            .map(|i| number(index, k * 5_000_000 + b * 1_000_000 + i))
            .collect();
        set.extend(numbers.iter().cloned());
        let body = json!({
            "agentId": agent, "userId": "chaos",
            "contacts": numbers.iter().map(|n| json!({"phoneNumber": n})).collect::<Vec<_>>(),
            "options": {"maxCallsPerSecond": plan.cps, "maxConcurrentDials": plan.job_limit,
                        "retryStrategy": {"maxAttempts": 2, "busyDelay": 500, "noAnswerDelay": 500}}
        });
        let (status, created) = stack.post(&key, "/api/v1/batch", &body, None).await?;
        batches.push(
            created["batchId"]
                .as_str()
                .with_context(|| format!("create answered {status}: {created}"))?
                .to_owned(),
        );
    }
    let deadline =
        Instant::now() + Duration::from_secs(60 + 3 * per as u64 / u64::from(plan.cps.max(1)));
    let mut completed = false;
    while Instant::now() < deadline && !completed {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut all = true;
        for b in &batches {
            let s = stack
                .get(&key, &format!("/api/v1/batch/{b}/status"))
                .await
                .unwrap_or_default();
            all &= s["status"] == "completed";
        }
        completed = all;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = check::calls_of(&carrier_sim::record::try_read(&stack.record)?, &set);
    let span_s = match (calls.first(), calls.last()) {
        (Some(a), Some(b)) => (b.requested_at - a.requested_at).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    Ok((
        Measured {
            calls: calls.len(),
            span_s,
            commit_ms,
            completed,
        },
        calls,
    ))
}
