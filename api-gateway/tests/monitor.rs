//! The monitor page behind `links.dashboard`: its token, its figures, its event stream.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use testkit::http::SendJson;

use api_gateway::config::DEV_MONITOR_TOKEN_SECRET;
use api_gateway::monitor::token;
use common::hub_app::HubApp;
use common::running::running_batch;
use common::spawn_app;

/// The text of the element with `id` in `html`.
fn text_of(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let from = start + html[start..].find('>').unwrap() + 1;
    let to = from + html[from..].find('<').unwrap();
    html[from..to].to_owned()
}

#[tokio::test]
async fn the_links_carry_a_token_that_opens_that_batchs_page_only() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let created: Value = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12015550123"}]}))
        .send_json()
        .await;
    let dashboard = created["links"]["dashboard"].as_str().unwrap();
    let id = created["batchId"].as_str().unwrap();
    // The tests' PUBLIC_URL names port 0 (it is read before the port is bound): follow the path.
    assert!(
        dashboard.contains(&format!("/batch/monitor/{id}?token=")),
        "{dashboard}"
    );
    let job = app.create_job(&agent, 2).await;
    let job_id = job["id"].as_str().unwrap();
    let fetched: Value = app
        .get(&format!("/api/batch_dial_jobs/{job_id}"))
        .send_json()
        .await;
    let job_link = fetched["links"]["dashboard"].as_str().unwrap();
    let job_link = app.url(&job_link[job_link.find("/batch/monitor/").unwrap()..]);
    assert!(job_link.contains(&format!("/batch/monitor/{job_id}?token=")));

    // The Vogent job's page opens with its link, with no API key.
    let r = app.http.get(&job_link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains("<svg"), "the chart is inline SVG");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src="),
        "nothing is loaded from elsewhere"
    );
    // No ingest worker runs here: the rows wait on the queue, the page counts none yet.
    assert_eq!(text_of(&html, "n-total"), "0");

    let job_token = job_link.split("token=").nth(1).unwrap();
    let bad = [
        format!("/batch/monitor/{id}"),
        format!("/batch/monitor/{id}?token="),
        format!("/batch/monitor/{id}?token={job_token}"),
        format!("/batch/monitor/{id}?token=1.AAAA"),
        format!(
            "/batch/monitor/{id}?token={}",
            token::issue(
                DEV_MONITOR_TOKEN_SECRET.as_bytes(),
                id.parse().unwrap(),
                Utc::now() - chrono::Duration::days(8)
            )
        ),
        format!(
            "/batch/monitor/{id}?token={}",
            token::issue(b"another secret", id.parse().unwrap(), Utc::now())
        ),
        format!("/batch/monitor/{id}/events?token={job_token}"),
    ];
    for path in bad {
        let r = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(r.text().await.unwrap().contains("Access denied"), "{path}");
    }
    // The token grants nothing in the API.
    for (key, path) in [
        (job_token, format!("/api/batch_dial_jobs/{job_id}")),
        (job_token, "/api/workspace".to_owned()),
    ] {
        let r = app
            .request_as(key, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = app
            .http
            .get(app.url(&format!("{path}?token={key}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}?token=");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_counts_what_the_api_counts_and_the_stream_follows_a_call_ending() {
    let app = spawn_app().await;
    let run = running_batch(&app, 40).await;
    let id = run.batch_id;
    // Links are signed with the installation's own secret (V19), as the gateway's are.
    let config = api_gateway::config::Config::from_env(&shared::config::Env::from_pairs([(
        "PUBLIC_URL",
        app.url(""),
    )]))
    .unwrap();
    let config = api_gateway::monitor::secret::resolve(&app.env.db, config)
        .await
        .unwrap();
    let link = api_gateway::monitor::dashboard_link(&config, id, Utc::now());
    let html = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let api: Value = app
        .get(&format!("/api/v1/batch/check-status?batchId={id}"))
        .send_json()
        .await;
    let st = &api["statistics"];
    let n = |k: &str| text_of(&html, k).parse::<i64>().unwrap();
    assert_eq!(n("n-total"), st["total"].as_i64().unwrap());
    assert_eq!(n("n-succeeded"), st["succeeded"].as_i64().unwrap());
    assert_eq!(n("n-failed-all"), st["failed"].as_i64().unwrap());
    assert_eq!(n("n-pending"), st["pending"].as_i64().unwrap());
    assert_eq!(n("n-completed"), st["succeeded"].as_i64().unwrap());
    assert_eq!(n("n-voicemail"), st["voicemail"].as_i64().unwrap());
    assert_eq!(n("n-voicemail-all"), st["voicemail"].as_i64().unwrap());
    assert_eq!(
        n("n-busy") + n("n-no-answer") + n("n-failed"),
        st["failed"].as_i64().unwrap()
    );
    assert_eq!(
        (
            n("n-completed"),
            n("n-voicemail"),
            n("n-busy"),
            n("n-failed")
        ),
        (6, 2, 2, 1)
    );
    assert_eq!(
        (
            n("n-queued"),
            n("n-retry"),
            n("n-deferred"),
            n("n-in-progress")
        ),
        (27, 1, 0, 2)
    );
    assert_eq!(text_of(&html, "in-flight"), "2");
    let recent = &html[html.find("id=\"recent\"").unwrap()..];
    let recent = &recent[..recent.find("</tbody>").unwrap()];
    assert_eq!(recent.matches("<tr>").count(), 14, "14 recent calls");

    // The stream: the current figures at once, then a change within a second of a call ending.
    let events = link.replace('?', "/events?");
    let mut stream = app.http.get(&events).send().await.unwrap();
    let mut buf = String::new();
    let mut next_update = async || -> Value {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                .await
                .expect("an event within 5 s")
                .unwrap()
                .expect("the stream stays open");
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let first = next_update().await;
    assert_eq!(first["t"]["n-completed"], "6");
    let ended = Instant::now();
    run.end_call(&app, 12, "completed").await;
    let update = next_update().await;
    let took = ended.elapsed();
    assert_eq!(update["t"]["n-completed"], "7");
    assert_eq!(update["t"]["in-flight"], "1");
    assert!(took < Duration::from_secs(1), "update after {took:?}");
}

/// Open event streams end when the gateway stops, so they never hold up its graceful shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_do_not_hold_up_a_shutdown() {
    let env = testkit::TestEnv::new().await;
    let mut pairs = env.env_vars();
    pairs.push(("GATEWAY_ADDR".into(), "127.0.0.1:0".into()));
    let config =
        api_gateway::config::Config::from_env(&shared::config::Env::from_pairs(pairs)).unwrap();
    let config = api_gateway::monitor::secret::resolve(&env.db, config)
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (addr, server) = api_gateway::spawn(config.clone(), shutdown.clone())
        .await
        .unwrap();
    let client = env.db.get().await.unwrap();
    let ws = testkit::fixtures::Workspace::new().insert(&client).await;
    let batch = testkit::fixtures::Batch::new(ws).insert(&client).await;
    let link = api_gateway::monitor::dashboard_link(&config, batch, Utc::now());
    let events = format!(
        "http://{addr}{}",
        &link[link.find("/batch/monitor/").unwrap()..].replace('?', "/events?")
    );
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut r = http.get(&events).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.chunk().await.unwrap().expect("the first update");
        streams.push(r);
    }
    let t = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("the server stopped with streams open")
        .unwrap()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    for mut r in streams {
        assert!(
            r.chunk().await.map_or(true, |c| c.is_none()),
            "the stream ended"
        );
    }
}

/// A finished batch whose contacts are all final cannot change: once its per-second figures
/// have fallen to zero, its open pages cost no read at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_batch_costs_no_reads() {
    use std::sync::atomic::Ordering;
    let env = testkit::TestEnv::new().await;
    let app = HubApp::start(&env, env.db.clone(), Some(100)).await;
    let hub = &app.hub;

    let client = env.db.get().await.unwrap();
    let ws = testkit::fixtures::Workspace::new().insert(&client).await;
    let running = testkit::fixtures::Batch::new(ws).insert(&client).await;
    let done = testkit::fixtures::Batch::new(ws)
        .state("completed")
        .insert(&client)
        .await;
    for batch in [running, done] {
        testkit::fixtures::Contacts::new(["+12015550001", "+12015550002"])
            .insert(&client, batch, ws.id)
            .await;
    }
    client
        .execute(
            "UPDATE contacts SET state = 'completed', last_outcome = 'completed' WHERE batch_id = $1",
            &[&done],
        )
        .await
        .unwrap();
    let open = |batch| {
        let events = app.url(batch, true);
        async move { reqwest::get(events).await.unwrap() }
    };
    let _done_page = open(done).await;
    tokio::time::sleep(api_gateway::monitor::hub::SETTLE_AFTER + Duration::from_secs(1)).await;
    let before = hub.stats.reads.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hub.stats.reads.load(Ordering::Relaxed),
        before,
        "no read for a settled batch"
    );
    // A running batch's page goes on reading every refresh.
    let _running_page = open(running).await;
    let before = hub.stats.reads.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(hub.stats.reads.load(Ordering::Relaxed) - before >= 5);
}

/// Contacts deferred by the recipients' calling hours wait for their minute: the page's ETA and
/// check-status's `estimatedTimeRemaining` are not earlier, and both count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eta_waits_for_contacts_deferred_by_recipient_hours() {
    let app = spawn_app().await;
    let run = running_batch(&app, 30).await;
    let id = run.batch_id;
    let client = app.env.db.get().await.unwrap();
    let deferred = client
        .execute(
            "UPDATE contacts SET hold_reason = 'recipient_hours', next_attempt_at = now() + interval '5 hours'
             WHERE batch_id = $1 AND state = 'queued' AND last_outcome IS NULL",
            &[&id],
        )
        .await
        .unwrap() as i64;
    assert!(deferred > 10);
    let check: Value = app
        .get(&format!("/api/v1/batch/check-status?batchId={id}"))
        .send_json()
        .await;
    assert_eq!(check["performance"]["deferred"]["recipientHours"], deferred);
    let eta = check["performance"]["estimatedTimeRemaining"]
        .as_f64()
        .unwrap();
    assert!(eta >= 5.0 * 3600.0 - 60.0, "{eta}");
    let config = api_gateway::config::Config::from_env(&shared::config::Env::from_pairs([(
        "PUBLIC_URL",
        app.url(""),
    )]))
    .unwrap();
    let config = api_gateway::monitor::secret::resolve(&app.env.db, config)
        .await
        .unwrap();
    let link = api_gateway::monitor::dashboard_link(&config, id, Utc::now());
    let html = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text_of(&html, "n-deferred"), deferred.to_string());
    let page_eta = text_of(&html, "eta");
    assert!(
        page_eta.contains("calling hours")
            && (page_eta.contains("(in 4h 59m)") || page_eta.contains("(in 5h 00m)")),
        "{page_eta}"
    );
}

/// Twenty pages opened at once on a batch nobody watches yet cost one read of its figures: the
/// first request reads, the others wait for that read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_opened_at_once_share_one_first_read() {
    use std::sync::atomic::Ordering;
    let env = testkit::TestEnv::new().await;
    let app = HubApp::start(&env, env.db.clone(), Some(100)).await;
    let client = env.db.get().await.unwrap();
    let ws = testkit::fixtures::Workspace::new().insert(&client).await;
    let batch = testkit::fixtures::Batch::new(ws).insert(&client).await;
    testkit::fixtures::Contacts::new(["+12015550001", "+12015550002"])
        .insert(&client, batch, ws.id)
        .await;
    let url = app.url(batch, false);
    let pages = futures_util::future::join_all((0..20).map(|_| {
        let url = url.clone();
        async move { reqwest::get(url).await.unwrap() }
    }))
    .await;
    // Read before the first refresh (100 ms) adds its own.
    let reads = app.hub.stats.reads.load(Ordering::Relaxed);
    for page in pages {
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("id=\"progress-text\""));
    }
    assert!(reads <= 2, "{reads} reads for 20 pages opened at once");
    assert_eq!(app.hub.watched(), 1);
}

/// While the database cannot be reached, the page answers 503 with a page that says so and
/// tries again, not the API's JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gets_the_unavailable_page() {
    let env = testkit::TestEnv::new().await;
    // Nothing listens there: every connection is refused.
    let down = shared::db::build_pool(
        &format!("postgres://postgres@{}/none", testkit::process::free_addr()),
        2,
    )
    .unwrap();
    let app = HubApp::start(&env, down, Some(100)).await;
    let page = reqwest::get(app.url(uuid::Uuid::now_v7(), false))
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert!(
        page.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = page.text().await.unwrap();
    assert!(body.contains("Temporarily unavailable"), "{body}");
    assert!(body.contains(r#"http-equiv="refresh""#), "{body}");
    assert_eq!(app.hub.watched(), 0, "a failed first read starts no feed");
}
