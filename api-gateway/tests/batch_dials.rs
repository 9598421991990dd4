//! The Batch Dials page (issue 27): the mint route (`POST /api/workspace/dashboard_link`) and
//! the CLI, the page's access (expiry, forgery, one workspace only), its filter and pages, its
//! event stream, and what a refresh costs with 30 or 1,000 past batches.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use testkit::fixtures::{self, WorkspaceIds};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use api_gateway::monitor::dials::snapshot::{self, PageKey};
use common::running::running_batch;
use common::{TestApp, spawn_app};
use shared::domain::JobState;

async fn mint(app: &TestApp, key: &str, body: Option<Value>) -> reqwest::Response {
    let mut r = app.request_as(key, reqwest::Method::POST, "/api/workspace/dashboard_link");
    if let Some(body) = body {
        r = r.json(&body);
    }
    r.send().await.unwrap()
}

async fn link(app: &TestApp) -> String {
    let r = mint(app, &app.key, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["url"].as_str().unwrap().to_owned()
}

/// `url` on the test's gateway (the links name `PUBLIC_URL`, which the test app leaves at
/// its port 0).
fn local(app: &TestApp, url: &str) -> String {
    url.find("/workspace/")
        .map_or_else(|| url.to_owned(), |i| app.url(&url[i..]))
}

async fn get_page(app: &TestApp, url: &str) -> (u16, String) {
    let r = app.http.get(local(app, url)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn listed(html: &str) -> Vec<Uuid> {
    html.split("<tr id=\"row-")
        .skip(1)
        .map(|s| Uuid::parse_str(&s[..36]).unwrap())
        .collect()
}

async fn agent_ids(app: &TestApp) -> WorkspaceIds {
    WorkspaceIds {
        id: app.workspace_id,
        agent_id: app.create_agent().await.parse().unwrap(),
    }
}

async fn monitor_secret(app: &TestApp) -> String {
    let client = app.env.db.get().await.unwrap();
    client
        .query_one("SELECT secret FROM monitor_secret", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mint_route_checks_its_key_and_body_and_bounds_the_expiry() {
    let app = spawn_app().await;
    // No key, a wrong key.
    let r = app
        .http
        .post(app.url("/api/workspace/dashboard_link"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(mint(&app, "nope", None).await.status(), 401);

    // The default: 24 hours, for this workspace's page.
    let before = Utc::now();
    let r = mint(&app, &app.key, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(
        local(&app, url)
            .starts_with(&app.url(&format!("/workspace/{}/dials?token=", app.workspace_id))),
        "{url}"
    );
    let expires = chrono::DateTime::parse_from_rfc3339(v["expiresAt"].as_str().unwrap()).unwrap();
    let hours = (expires.with_timezone(&Utc) - before).num_minutes();
    assert!((24 * 60 - 1..=24 * 60).contains(&hours), "{v}");

    // A chosen validity, within bounds.
    let r = mint(&app, &app.key, Some(json!({"expiresInSeconds": 120}))).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(v["expiresAt"].as_str().unwrap()).unwrap();
    assert!((expires.with_timezone(&Utc) - Utc::now()).num_seconds() <= 120);
    for bad in [json!(59), json!(604_801), json!(-1), json!(0)] {
        let r = mint(&app, &app.key, Some(json!({ "expiresInSeconds": bad }))).await;
        let fields = common::error_fields(r, 422).await;
        assert_eq!(fields, ["expiresInSeconds"], "{bad}");
    }
    let r = mint(&app, &app.key, Some(json!({"expiresIn": 600}))).await;
    assert_eq!(common::error_fields(r, 422).await, ["expiresIn"]);
    let r = mint(&app, &app.key, Some(json!({"expiresInSeconds": "600"}))).await;
    assert_eq!(r.status(), 400);
    let r = mint(&app, &app.key, Some(json!({}))).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_opens_its_own_workspace_only_until_it_expires() {
    let app = spawn_app().await;
    let ws = agent_ids(&app).await;
    let client = app.env.db.get().await.unwrap();
    let mine = fixtures::Batch::new(ws).name("Mine").insert(&client).await;
    let other_key = app.other_workspace_key().await;
    let other_link = {
        let r = mint(&app, &other_key, None).await;
        let v: Value = r.json().await.unwrap();
        v["url"].as_str().unwrap().to_owned()
    };
    let other_ws: Uuid = other_link.split('/').nth(4).unwrap().parse().unwrap();
    let other_agent: Value = app
        .request_as(&other_key, reqwest::Method::POST, "/api/agents")
        .json(&json!({"name": "b", "answerUrl": "https://agent.example.com/a"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let theirs = fixtures::Batch::new(WorkspaceIds {
        id: other_ws,
        agent_id: other_agent["id"].as_str().unwrap().parse().unwrap(),
    })
    .name("Theirs")
    .insert(&client)
    .await;

    let url = link(&app).await;
    let (status, html) = get_page(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&html), [mine]);
    assert!(html.contains(&format!(r#"<td class="actions" data-batch="{mine}"></td>"#)));
    assert!(!html.contains("Theirs"));
    let (_, theirs_html) = get_page(&app, &other_link).await;
    assert_eq!(listed(&theirs_html), [theirs]);

    // This workspace's token on the other's path, and the other way round: refused.
    let token = url.split_once("token=").unwrap().1;
    let swapped = app.url(&format!("/workspace/{other_ws}/dials?token={token}"));
    let (status, html) = get_page(&app, &swapped).await;
    assert_eq!(status, 403);
    assert!(html.contains("not valid for this workspace"), "{html}");
    assert!(!html.contains("Theirs"));
    let (status, _) = get_page(&app, &swapped.replace("/dials?", "/dials/events?")).await;
    assert_eq!(status, 403);

    // Forged, missing, a batch page's token, expired.
    let (exp, _) = token.split_once('.').unwrap();
    for bad in [
        url.replace("token=", "token=1"),
        format!("{exp}.AAAA"),
        url[..url.find('?').unwrap()].to_owned(),
    ] {
        let bad = if bad.starts_with("http") {
            bad
        } else {
            app.url(&format!(
                "/workspace/{}/dials?token={bad}",
                app.workspace_id
            ))
        };
        assert_eq!(get_page(&app, &bad).await.0, 403, "{bad}");
    }
    let secret = monitor_secret(&app).await;
    let batch_token =
        api_gateway::monitor::token::issue(secret.as_bytes(), app.workspace_id, Utc::now());
    let as_batch = app.url(&format!(
        "/workspace/{}/dials?token={batch_token}",
        app.workspace_id
    ));
    assert_eq!(get_page(&app, &as_batch).await.0, 403);
    let expired = api_gateway::monitor::dials::token::issue(
        secret.as_bytes(),
        app.workspace_id,
        Utc::now() - chrono::Duration::seconds(1),
    )
    .unwrap();
    let (status, html) = get_page(
        &app,
        &app.url(&format!(
            "/workspace/{}/dials?token={expired}",
            app.workspace_id
        )),
    )
    .await;
    assert_eq!(status, 403);
    assert!(html.contains("expired"), "{html}");
    // The page's token opens no API route.
    let r = app
        .http
        .get(app.url("/api/workspace"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_both_apis_newest_first_filters_and_pages() {
    let app = spawn_app().await;
    let ws = agent_ids(&app).await;
    let client = app.env.db.get().await.unwrap();
    let t0 = Utc::now() - chrono::Duration::hours(1);
    let mut ids = Vec::new();
    for i in 0..25 {
        let b = fixtures::Batch::new(ws)
            .name(&format!("batch {i:02}"))
            .surface(if i % 2 == 0 { "dialgen" } else { "vogent" })
            .state(if i % 5 == 0 { "paused" } else { "active" })
            .created_at(t0 + chrono::Duration::seconds(i))
            .insert(&client)
            .await;
        ids.push(b);
    }
    let url = link(&app).await;
    let (status, html) = get_page(&app, &url).await;
    assert_eq!(status, 200);
    let first = listed(&html);
    let newest: Vec<Uuid> = ids.iter().rev().take(20).copied().collect();
    assert_eq!(first, newest, "newest first, 20 a page");
    assert!(html.contains("<td>Vogent</td>") && html.contains("<td>Dialgen</td>"));
    // The next page starts after the last row.
    let older = format!("&amp;before={}", first[19]);
    assert!(html.contains(&older), "an older link");
    let (_, page2) = get_page(&app, &format!("{url}&before={}", first[19])).await;
    let second: Vec<Uuid> = ids.iter().rev().skip(20).copied().collect();
    assert_eq!(listed(&page2), second);
    assert!(page2.contains(r#"<a id="older" hidden>"#));

    let (_, paused) = get_page(&app, &format!("{url}&status=paused")).await;
    let want: Vec<Uuid> = ids
        .iter()
        .enumerate()
        .rev()
        .filter(|(i, _)| i % 5 == 0)
        .map(|(_, b)| *b)
        .collect();
    assert_eq!(listed(&paused), want);
    assert!(paused.contains("paused · PAUSED"));
    let (status, _) = get_page(&app, &format!("{url}&status=PAUSED")).await;
    assert_eq!(status, 400);
    let (status, _) = get_page(&app, &format!("{url}&before=x")).await;
    assert_eq!(status, 400);

    // Made-up cursors cannot start feeds without end: a workspace has at most 32 pages
    // watched at once (3 are: newest, page 2, paused).
    let mut refused = 0;
    for _ in 0..40 {
        let (status, _) = get_page(&app, &format!("{url}&before={}", Uuid::now_v7())).await;
        if status == 429 {
            refused += 1;
        } else {
            assert_eq!(status, 200);
        }
    }
    assert_eq!(refused, 40 - (32 - 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compliance_card_shows_the_rules_and_the_registrys_freshness() {
    let app = spawn_app().await;
    let url = link(&app).await;
    let (_, html) = get_page(&app, &url).await;
    assert!(
        html.contains(r#"id="ws-rules">strictest"#),
        "the V22 default"
    );
    assert!(html.contains(">not required<"));
    let client = app.env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE workspaces SET dnc_registry_required = true, jurisdiction_rules = 'federal' WHERE id = $1",
            &[&app.workspace_id],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO dnc_registry_copies (workspace_id, source, as_of)
             VALUES ($1, 'national_registry', current_date - 40), ($1, 'national_registry', current_date - 3)",
            &[&app.workspace_id],
        )
        .await
        .unwrap();
    let newest: chrono::NaiveDate = client
        .query_one("SELECT current_date - 3", &[])
        .await
        .unwrap()
        .get(0);
    // The feed's last read is older than a second by now, or is re-read within one refresh.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, html) = get_page(&app, &url).await;
    assert!(html.contains(r#"id="ws-rules">federal"#), "{html}");
    assert!(html.contains(&format!("required, newest copy as of {newest} (fresh)")));
}

/// Reads server-sent `update` events' data from `stream`, until `done` says so.
async fn until(
    stream: &mut reqwest::Response,
    buf: &mut String,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                if done(&v) {
                    return v;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .expect("the update in time")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_the_workspace_live() {
    let app = spawn_app().await;
    let run = running_batch(&app, 30).await;
    let url = link(&app).await;
    let mut stream = app
        .http
        .get(local(&app, &url).replace("/dials?", "/dials/events?"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut buf = String::new();
    let first = until(&mut stream, &mut buf, Duration::from_secs(5), |_| true).await;
    assert_eq!(first["t"]["ws-in-flight"], "2");
    let rows = first["h"]["rows"].as_str().unwrap();
    assert!(rows.contains(&run.batch_id.to_string()));
    assert!(
        rows.contains(">2</span> / 8<"),
        "lines against the effective limit: {rows}"
    );
    assert!(
        rows.contains("6 completed · 2 voicemail · 2 busy"),
        "{rows}"
    );
    // A call ends: the figures follow within a second.
    let ended = Instant::now();
    run.end_call(&app, 12, "completed").await;
    let v = until(&mut stream, &mut buf, Duration::from_secs(2), |v| {
        v["t"]["ws-in-flight"] == "1"
    })
    .await;
    assert!(
        ended.elapsed() < Duration::from_secs(1),
        "{:?}",
        ended.elapsed()
    );
    assert!(v["h"]["rows"].as_str().unwrap().contains("7 completed"));
    // A new batch through the Dialgen API appears; a pause through it shows.
    let agent = app.create_agent().await;
    let created: Value = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u",
                      "contacts": [{"phoneNumber": "+12015550123"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["batchId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    until(&mut stream, &mut buf, Duration::from_secs(2), |v| {
        v["h"]["rows"].as_str().unwrap().contains(&id)
    })
    .await;
    let sent = Instant::now();
    let r = app
        .post(&format!("/api/v1/batch/{}/pause", run.batch_id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let marker = format!(
        r#"id="row-{}" data-batch="{}" data-state="paused""#,
        run.batch_id, run.batch_id
    );
    until(&mut stream, &mut buf, Duration::from_secs(2), |v| {
        v["h"]["rows"].as_str().unwrap().contains(&marker)
    })
    .await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_mints_a_link_that_opens_the_page() {
    let app = spawn_app().await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_api-gateway"))
            .args(args)
            .envs(app.env.env_vars())
            .env("PUBLIC_URL", app.url(""))
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let ws = app.workspace_id.to_string();
    let out = run(&["workspace", "dashboard-link", &ws, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(v["expiresAt"].is_string());
    assert_eq!(get_page(&app, url).await.0, 200);
    let out = run(&["workspace", "dashboard-link", &ws, "--expires-in", "600"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .contains(&format!("/workspace/{ws}/dials?token="))
    );
    assert!(lines.next().unwrap().starts_with("expires "));
    // A control link (h-control): `?control=`, an hour at most.
    let out = run(&["workspace", "dashboard-link", &ws, "--control", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["control"], true);
    let url = v["url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/workspace/{ws}/dials?control=")),
        "{url}"
    );
    assert_eq!(get_page(&app, url).await.0, 200);
    let out = run(&[
        "workspace",
        "dashboard-link",
        &ws,
        "--control",
        "--expires-in",
        "7200",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 60 and 3600"));
    for (args, says) in [
        (
            vec!["workspace", "dashboard-link", &ws, "--expires-in", "5"],
            "--expires-in must be between 60 and 604800 seconds",
        ),
        (
            vec![
                "workspace",
                "dashboard-link",
                "00000000-0000-0000-0000-000000000000",
            ],
            "no workspace with id",
        ),
    ] {
        let out = run(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{stderr}"
        );
    }
}

/// Rows the plan's nodes read (produced and filtered out, times their loops) and the buffers
/// it touched.
async fn work(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> (i64, i64) {
    let plan: Value = client
        .query_one(
            &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"),
            params,
        )
        .await
        .unwrap()
        .get(0);
    fn rows(node: &Value) -> i64 {
        let f = |k: &str| node.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let read =
            f("Actual Rows") + f("Rows Removed by Filter") + f("Rows Removed by Index Recheck");
        let own = (read * f("Actual Loops").max(1.0)) as i64;
        own + node
            .get("Plans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(rows)
            .sum::<i64>()
    }
    let root = &plan[0]["Plan"];
    let blocks = root["Shared Hit Blocks"].as_i64().unwrap_or(0)
        + root["Shared Read Blocks"].as_i64().unwrap_or(0);
    (rows(root), blocks)
}

async fn weigh(client: &tokio_postgres::Client, key: &PageKey) -> (i64, i64) {
    let params = snapshot::page_params(key);
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    work(client, &snapshot::page_sql(key), &refs).await
}

/// Adds `n` finished batches a day old to the workspace of batch `pattern`, each with one
/// final contact and five ended attempts.
async fn add_past_batches(client: &tokio_postgres::Client, pattern: Uuid, n: i64) {
    client
        .execute(
            "INSERT INTO batches (id, workspace_id, surface, name, agent_id, state, ingest_state,
                 max_concurrent_dials, max_calls_per_second, priority, schedule, retry_max_attempts,
                 retry_busy_delay_ms, retry_no_answer_delay_ms, default_region, webhooks, tags,
                 created_at, started_at, completed_at)
             SELECT gen_random_uuid(), workspace_id, surface, 'past', agent_id, 'completed', ingest_state,
                 max_concurrent_dials, max_calls_per_second, priority, schedule, retry_max_attempts,
                 retry_busy_delay_ms, retry_no_answer_delay_ms, default_region, webhooks, tags,
                 now() - interval '1 day' - g * interval '1 minute', now() - interval '1 day' - g * interval '1 minute',
                 now() - interval '1 day'
             FROM batches, generate_series(1, $2::bigint) g WHERE id = $1",
            &[&pattern, &n],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO contacts (id, batch_id, workspace_id, row_index, phone_number, state, last_outcome,
                 next_attempt_at)
             SELECT gen_random_uuid(), b.id, b.workspace_id, 0, '+12015550999', 'completed', 'completed', '-infinity'
             FROM batches b JOIN batches p ON p.id = $1
             WHERE b.workspace_id = p.workspace_id AND b.name = 'past'
               AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.batch_id = b.id)",
            &[&pattern],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number,
                 state, outcome, created_at, started_at, answered_at, ended_at)
             SELECT gen_random_uuid(), c.id, c.batch_id, c.workspace_id, k, c.phone_number, 'ended',
                 CASE WHEN k < 5 THEN 'busy' ELSE 'completed' END,
                 b.created_at + k * interval '5 minutes', b.created_at + k * interval '5 minutes',
                 NULL, b.created_at + k * interval '5 minutes' + interval '20 seconds'
             FROM contacts c JOIN batches b ON b.id = c.batch_id, generate_series(1, 5) k
             WHERE b.workspace_id = (SELECT workspace_id FROM batches WHERE id = $1) AND b.name = 'past'
               AND NOT EXISTS (SELECT 1 FROM dial_attempts a WHERE a.batch_id = b.id)",
            &[&pattern],
        )
        .await
        .unwrap();
    client
        .batch_execute("ANALYZE batches; ANALYZE contacts; ANALYZE dial_attempts")
        .await
        .unwrap();
}

/// The work of a refresh: the workspace's statement, then the page's for each page an
/// operator may watch.
async fn weigh_pages(
    client: &tokio_postgres::Client,
    ws: Uuid,
    live: Uuid,
) -> Vec<(&'static str, (i64, i64))> {
    // The plans a busy database runs: a tiny table would otherwise be scanned whole, which
    // says nothing about what the statements cost once there is history.
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let mut out = vec![(
        "the workspace's figures",
        work(client, snapshot::WORKSPACE_SQL, &[&ws]).await,
    )];
    for (name, key) in [
        (
            "page: newest",
            PageKey {
                workspace: ws,
                state: None,
                before: None,
            },
        ),
        (
            "page: active",
            PageKey {
                workspace: ws,
                state: Some(JobState::Active),
                before: None,
            },
        ),
        (
            "page: paused",
            PageKey {
                workspace: ws,
                state: Some(JobState::Paused),
                before: None,
            },
        ),
        (
            "page: older than the live batch",
            PageKey {
                workspace: ws,
                state: None,
                before: Some(live),
            },
        ),
    ] {
        out.push((name, weigh(client, &key).await));
    }
    client.batch_execute("RESET enable_seqscan").await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_costs_the_same_with_30_or_1000_past_batches() {
    let app = spawn_app().await;
    let run = running_batch(&app, 30).await;
    let client = app.env.db.get().await.unwrap();
    // One paused batch, older than every past one: the paused filter must not walk them.
    fixtures::Batch::new(agent_ids(&app).await)
        .name("paused long ago")
        .state("paused")
        .created_at(Utc::now() - chrono::Duration::days(30))
        .insert(&client)
        .await;
    add_past_batches(&client, run.batch_id, 30).await;
    let small = weigh_pages(&client, app.workspace_id, run.batch_id).await;
    add_past_batches(&client, run.batch_id, 970).await;
    let past: i64 = client
        .query_one("SELECT count(*) FROM batches WHERE name = 'past'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(past, 1000);
    let large = weigh_pages(&client, app.workspace_id, run.batch_id).await;
    for ((name, (rows_s, blocks_s)), (_, (rows_l, blocks_l))) in small.iter().zip(&large) {
        println!(
            "{name}: 30 past batches: {rows_s} rows read, {blocks_s} buffers; \
             1,000: {rows_l} rows, {blocks_l} buffers"
        );
        // The same rows (the workspace, the page, its batches' counters and attempts),
        // whatever the history; an index one level deeper touches one more buffer per descent
        // (the page's statement makes five per batch).
        assert!(
            *rows_l <= rows_s + rows_s / 10 + 5,
            "{name}: rows read grew from {rows_s} to {rows_l}"
        );
        let slack = if name.starts_with("page") {
            blocks_s / 2 + 10
        } else {
            5
        };
        assert!(
            *blocks_l <= blocks_s + slack,
            "{name}: buffers grew from {blocks_s} to {blocks_l}"
        );
    }

    // The feed through HTTP: each read returns the workspace and at most a page of batches.
    let url = link(&app).await;
    let (status, html) = get_page(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&html).len(), snapshot::PAGE_SIZE);
    assert_eq!(listed(&html)[0], run.batch_id);
}
