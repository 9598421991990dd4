//! What the monitor costs on a running 100,000-contact batch: the page's time to first byte
//! (cold: the first page opened on the batch reads its whole chart; warm: a feed is live), and
//! the events' cost with 1 and with 20 pages open (snapshot reads per second, time per read,
//! events delivered). Run with:
//!
//! ```sh
//! cargo nextest run -p api-gateway --test monitor_bench --run-ignored only --no-capture
//! ```

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testkit::TestEnv;
use testkit::fixtures::{self, WorkspaceIds};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CONTACTS: usize = 100_000;
/// Calls already made when the benchmark starts (about 50 minutes at 10 calls/s).
const HISTORY: i64 = 30_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn monitor_cost_on_a_running_100k_batch() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    let ws = fixtures::Workspace::new()
        .max_concurrent_dials(40)
        .insert(&client)
        .await;
    let batch = fixtures::Batch::new(WorkspaceIds { ..ws })
        .name("benchmark")
        .max_concurrent_dials(30)
        .max_calls_per_second(30)
        .insert(&client)
        .await;
    let started = Instant::now();
    let numbers: Vec<String> = (0..CONTACTS).map(|i| format!("+1201{:07}", i)).collect();
    fixtures::Contacts::new(numbers)
        .name("Ada")
        .insert(&client, batch, ws.id)
        .await;
    // The history: HISTORY contacts called once over the last ~50 minutes, outcomes by the
    // carrier-sim's last-digit rule.
    client
        .batch_execute(&format!(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number, state, outcome, created_at, started_at, answered_at, ended_at)
             SELECT gen_random_uuid(), id, batch_id, workspace_id, 1, phone_number, 'ended', o, t, t,
                    CASE WHEN o IN ('completed', 'voicemail') THEN t + interval '1 s' END, t + interval '3 s'
             FROM (SELECT c.*, now() - ({HISTORY} - row_index) * interval '100 ms' AS t,
                          CASE WHEN row_index % 10 <= 5 THEN 'completed' WHEN row_index % 10 = 6 THEN 'busy'
                               WHEN row_index % 10 = 7 THEN 'no-answer' WHEN row_index % 10 = 8 THEN 'failed'
                               ELSE 'voicemail' END AS o
                   FROM contacts c WHERE batch_id = '{batch}' AND row_index < {HISTORY}) h;
             UPDATE contacts c SET state = CASE WHEN a.outcome IN ('completed', 'voicemail') THEN 'completed' ELSE 'failed' END,
                    last_outcome = a.outcome, attempts = 1
             FROM dial_attempts a WHERE a.contact_id = c.id AND c.batch_id = '{batch}';
             ANALYZE contacts; ANALYZE dial_attempts;"
        ))
        .await
        .unwrap();
    println!(
        "setup: {CONTACTS} contacts, {HISTORY} past calls in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The calls go on: every 100 ms three calls end and three start (30 calls/s).
    let stop = CancellationToken::new();
    let calls = {
        let (db, stop) = (env.db.clone(), stop.clone());
        tokio::spawn(async move {
            let client = db.get().await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.is_cancelled() {
                tick.tick().await;
                client
                    .batch_execute(&format!(
                        "WITH ended AS (
                             UPDATE dial_attempts SET outcome = 'completed', state = 'ended', answered_at = created_at, ended_at = now()
                             WHERE id IN (SELECT id FROM dial_attempts WHERE batch_id = '{batch}' AND outcome IS NULL
                                          ORDER BY created_at LIMIT 3)
                             RETURNING contact_id)
                         UPDATE contacts SET state = 'completed', last_outcome = 'completed' FROM ended WHERE id = ended.contact_id;
                         WITH started AS (
                             UPDATE contacts SET state = 'dialing'
                             WHERE id IN (SELECT id FROM contacts WHERE batch_id = '{batch}' AND state = 'queued'
                                          ORDER BY next_attempt_at, row_index LIMIT 3)
                             RETURNING id, batch_id, workspace_id, phone_number)
                         INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number, state, created_at, started_at)
                         SELECT gen_random_uuid(), id, batch_id, workspace_id, 1, phone_number, 'in-progress', now(), now() FROM started;"
                    ))
                    .await
                    .unwrap();
            }
        })
    };

    // The counters' deltas folded every second, as the gateway's own task does.
    tokio::spawn(shared::db::counters::fold_every(
        env.db.clone(),
        Duration::from_secs(1),
        stop.clone(),
    ));

    // The gateway, with a hub whose costs the benchmark can read.
    let app = common::hub_app::HubApp::start(&env, env.db.clone(), None).await;
    let hub = app.hub.clone();
    let link = app.url(batch, false);
    let events = link.replace('?', "/events?");
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Time to first byte: cold (no feed yet), then warm.
    let t = Instant::now();
    let r = http.get(&link).send().await.unwrap();
    let cold = t.elapsed();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let cold_total = t.elapsed();
    let mut warm = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let r = http.get(&link).send().await.unwrap();
        warm.push(t.elapsed());
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    warm.sort();
    println!(
        "page: {} bytes; TTFB cold {} (whole page {}), warm p50 {} p95 {} max {} (50 requests)",
        body.len(),
        ms(cold),
        ms(cold_total),
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.95)),
        ms(*warm.last().unwrap())
    );

    for pages in [1usize, 20] {
        let received = Arc::new(AtomicU64::new(0));
        let open = CancellationToken::new();
        let mut readers = Vec::new();
        for _ in 0..pages {
            let (http, events, received, open) =
                (http.clone(), events.clone(), received.clone(), open.clone());
            readers.push(tokio::spawn(async move {
                let mut r = http.get(&events).send().await.unwrap();
                loop {
                    tokio::select! {
                        _ = open.cancelled() => break,
                        chunk = r.chunk() => match chunk {
                            Ok(Some(c)) => {
                                let n = String::from_utf8_lossy(&c).matches("event: update").count();
                                received.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            _ => break,
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // A page opened while these are open (its feed live).
        let mut ttfb = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let r = http.get(&link).send().await.unwrap();
            ttfb.push(t.elapsed());
            r.text().await.unwrap();
        }
        ttfb.sort();
        println!(
            "{pages:>2} page(s) open: TTFB of another page p50 {} p95 {} max {} (20 requests)",
            ms(percentile(&ttfb, 0.5)),
            ms(percentile(&ttfb, 0.95)),
            ms(*ttfb.last().unwrap())
        );
        let (reads0, micros0, published0, got0) = (
            hub.stats.reads.load(Ordering::Relaxed),
            hub.stats.read_micros.load(Ordering::Relaxed),
            hub.stats.published.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed),
        );
        let window = Duration::from_secs(10);
        let cpu0 = process_cpu();
        let t = Instant::now();
        tokio::time::sleep(window).await;
        let secs = t.elapsed().as_secs_f64();
        let cpu = process_cpu() - cpu0;
        let reads = hub.stats.reads.load(Ordering::Relaxed) - reads0;
        let micros = hub.stats.read_micros.load(Ordering::Relaxed) - micros0;
        let published = hub.stats.published.load(Ordering::Relaxed) - published0;
        let got = received.load(Ordering::Relaxed) - got0;
        println!(
            "{pages:>2} page(s) open for {secs:.0} s: {reads} snapshot reads ({:.1}/s), {:.1} ms per read, \
             database busy {:.1}% of one connection; {published} updates published, {got} events delivered ({:.1}/s per page); \
             this process (gateway, the {pages} readers and the call simulator) {:.1}% of one core",
            reads as f64 / secs,
            micros as f64 / 1000.0 / reads.max(1) as f64,
            micros as f64 / 1e6 / secs * 100.0,
            got as f64 / secs / pages as f64,
            cpu / secs * 100.0,
        );
        open.cancel();
        for r in readers {
            let _ = r.await;
        }
    }
    // Where a read's time goes.
    for (what, sql) in [
        (
            "contacts by state (the batch counters)",
            shared::db::counters::groups_of(&format!("'{batch}'::uuid")),
        ),
        (
            "contacts by state (the scan the counters replace)",
            format!(
                "SELECT state, last_outcome, count(*) FROM contacts WHERE batch_id = '{batch}' GROUP BY 1, 2"
            ),
        ),
        (
            "chart, the whole life (the minute aggregate, V17)",
            shared::db::counters::minutes_of(&format!("'{batch}'::uuid"), "NULL::timestamptz"),
        ),
        (
            "chart, the whole life (the scan of the attempts it replaces)",
            format!(
                "SELECT date_trunc('minute', created_at), outcome, count(*) FROM dial_attempts WHERE batch_id = '{batch}' GROUP BY 1, 2"
            ),
        ),
        (
            "chart since a minute ago (the minute aggregate)",
            shared::db::counters::minutes_of(
                &format!("'{batch}'::uuid"),
                "now() - interval '1 minute'",
            ),
        ),
        (
            "20 recent calls",
            format!(
                "SELECT a.id FROM dial_attempts a JOIN contacts c ON c.id = a.contact_id WHERE a.batch_id = '{batch}' ORDER BY a.created_at DESC, a.id DESC LIMIT 20"
            ),
        ),
        (
            "in flight",
            format!(
                "SELECT count(*) FROM dial_attempts WHERE batch_id = '{batch}' AND outcome IS NULL"
            ),
        ),
    ] {
        let rows = client
            .query(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &[])
            .await
            .unwrap();
        let plan: serde_json::Value = rows[0].get("QUERY PLAN");
        println!("  {what}: {} ms", plan[0]["Execution Time"]);
    }
    stop.cancel();
    let _ = calls.await;
    let _ = Uuid::nil();
}

/// CPU seconds this process has used (user and system), from `/proc/self/stat`.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; Linux counts
    // them in USER_HZ, 100 a second on every architecture it runs on.
    (ticks(11) + ticks(12)) / 100.0
}
