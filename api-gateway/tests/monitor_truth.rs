//! The per-batch monitor page tells the truth (issue 27): the limits that apply, one
//! definition of a call in flight, no ratio of nothing, no window on a final batch, Vogent
//! contacts by name, long text cut, a chart whose bucket follows the campaign's length; and it
//! is never stale: its first paint and first event are read for it, and a pause through the
//! API reaches an open page within a second.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use testkit::fixtures::{Batch, Contacts, WorkspaceIds};
use uuid::Uuid;

use common::hub_app::HubApp;
use common::running::{Running, running_batch};
use common::{TestApp, spawn_app};

/// The text of the element with `id` in `html`.
fn text_of(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let from = start + html[start..].find('>').unwrap() + 1;
    let to = from + html[from..].find('<').unwrap();
    html[from..to]
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn page(app: &TestApp, batch: Uuid) -> String {
    let config = api_gateway::config::Config::from_env(&shared::config::Env::from_pairs([(
        "PUBLIC_URL",
        app.url(""),
    )]))
    .unwrap();
    // Links are signed with the installation's own secret (V19), as the gateway's are.
    let config = api_gateway::monitor::secret::resolve(&app.env.db, config)
        .await
        .unwrap();
    let link = api_gateway::monitor::dashboard_link(&config, batch, Utc::now());
    let r = app.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn workspace(app: &TestApp) -> WorkspaceIds {
    WorkspaceIds {
        id: app.workspace_id,
        agent_id: app.create_agent().await.parse().unwrap(),
    }
}

async fn sql(app: &TestApp, statement: &str, id: Uuid) {
    let client = app.env.db.get().await.unwrap();
    client.execute(statement, &[&id]).await.unwrap();
}

/// "0/10 maxConcurrentDials" on a workspace of 5 lines was a limit that did not apply: the
/// page shows the smaller of the batch's and the workspace's, and which one binds.
#[tokio::test]
async fn the_limits_shown_are_the_effective_ones_with_the_one_that_binds() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    // The workspace: 20 lines (spawn_app), 2 calls/s.
    client
        .execute(
            "UPDATE workspaces SET max_calls_per_second = 2 WHERE id = $1",
            &[&ws.id],
        )
        .await
        .unwrap();
    let wide = Batch::new(ws)
        .max_concurrent_dials(50)
        .max_calls_per_second(10)
        .insert(&client)
        .await;
    let html = page(&app, wide).await;
    assert_eq!(
        text_of(&html, "limit-lines"),
        "20 lines · the workspace's limit (batch asks 50)"
    );
    assert_eq!(
        text_of(&html, "limit-cps"),
        "2 calls/s · the workspace's limit (batch asks 10)"
    );
    assert!(
        !html.contains("/ 50"),
        "the batch's unreachable limit is not the scale"
    );

    let narrow = Batch::new(ws)
        .max_concurrent_dials(5)
        .max_calls_per_second(1)
        .insert(&client)
        .await;
    let html = page(&app, narrow).await;
    assert_eq!(
        text_of(&html, "limit-lines"),
        "5 lines · the batch's maxConcurrentDials (workspace: 20)"
    );
    assert_eq!(
        text_of(&html, "limit-cps"),
        "1 calls/s · the batch's maxCallsPerSecond (workspace: 2)"
    );

    // No rate of its own: the workspace's; neither has one: the workspace's ceiling.
    let own_none = Batch::new(ws).insert(&client).await;
    sql(
        &app,
        "UPDATE batches SET max_calls_per_second = NULL WHERE id = $1",
        own_none,
    )
    .await;
    let html = page(&app, own_none).await;
    assert_eq!(
        text_of(&html, "limit-cps"),
        "2 calls/s · the workspace's limit"
    );
    let neither = Batch::new(ws).insert(&client).await;
    sql(
        &app,
        "UPDATE batches SET max_calls_per_second = NULL WHERE id = $1",
        neither,
    )
    .await;
    client
        .execute(
            "UPDATE workspaces SET max_calls_per_second = NULL, cps_ceiling = 30 WHERE id = $1",
            &[&ws.id],
        )
        .await
        .unwrap();
    let html = page(&app, neither).await;
    assert_eq!(
        text_of(&html, "limit-cps"),
        "30 calls/s · the workspace's ceiling"
    );
    assert_eq!(text_of(&html, "ws-limit-cps"), "none (ceiling 30)");
}

/// "in progress 6" beside "calls in flight 3/3" read as a broken limit: one definition (an
/// attempt without an outcome), one label; contacts handed to a dialer without a call yet are
/// counted apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_have_one_definition_and_one_label() {
    let app = spawn_app().await;
    let run = running_batch(&app, 30).await;
    // Three more contacts handed to a dial worker, not called yet.
    for i in 14..17 {
        run.set_contact(&app, i, "released", None).await;
    }
    let html = page(&app, run.batch_id).await;
    assert_eq!(text_of(&html, "in-flight"), "2");
    assert_eq!(text_of(&html, "n-in-progress"), "2");
    assert_eq!(text_of(&html, "n-waiting"), "3");
    assert!(html.contains("<td>calls in flight</td>"));
    assert!(!html.contains("<td>in progress</td>"), "one label");
}

/// No "success rate 0.0%" before any call: a ratio shows "—" until it has a denominator.
#[tokio::test]
async fn ratios_show_a_dash_until_there_is_a_denominator() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    let fresh = Batch::new(ws).insert(&client).await;
    Contacts::new(["+12015550001", "+12015550002"])
        .insert(&client, fresh, ws.id)
        .await;
    let html = page(&app, fresh).await;
    assert_eq!(
        text_of(&html, "progress-text"),
        "0 of 2 contacts final (0.0%) · success rate —"
    );
    let empty = Batch::new(ws).insert(&client).await;
    let html = page(&app, empty).await;
    assert_eq!(
        text_of(&html, "progress-text"),
        "0 of 0 contacts final (—) · success rate —"
    );
    // With calls, the figures.
    let run = running_batch(&app, 20).await;
    let html = page(&app, run.batch_id).await;
    // 6 completed of 6 + 2 voicemail + 3 failed (busy ×2, failed).
    assert!(
        text_of(&html, "progress-text").ends_with("success rate 54.5%"),
        "{}",
        text_of(&html, "progress-text")
    );
}

/// "window open" on a cancelled batch: a final batch shows no window state.
#[tokio::test]
async fn a_final_batch_shows_no_window_state() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    let running = Batch::new(ws).insert(&client).await;
    assert!(text_of(&page(&app, running).await, "window").starts_with("open"));
    for state in ["cancelled", "completed", "failed"] {
        let done = Batch::new(ws).state(state).insert(&client).await;
        sql(
            &app,
            "UPDATE batches SET completed_at = now() WHERE id = $1",
            done,
        )
        .await;
        let html = page(&app, done).await;
        let window = text_of(&html, "window");
        assert_eq!(window, "— (the batch has ended)", "{state}");
        assert!(text_of(&html, "eta").starts_with("ended"), "{state}");
    }
}

/// The contact column was all "—" for Vogent jobs: a name from `inputs` when there is one, and
/// the number column in the job's API's words.
#[tokio::test]
async fn vogent_contacts_show_a_name_from_their_inputs() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    let job = Batch::new(ws).surface("vogent").insert(&client).await;
    let contacts = Contacts::new(["+12015550001", "+12015550002", "+12015550003"])
        .insert(&client, job, ws.id)
        .await;
    for (id, inputs) in contacts.iter().zip([
        json!({"firstName": "Grace", "lastName": "Hopper", "plan": "gold"}),
        json!({"name": "Ada <Lovelace>"}),
        json!({"plan": "basic"}),
    ]) {
        client
            .execute(
                "UPDATE contacts SET inputs = $2 WHERE id = $1",
                &[id, &inputs],
            )
            .await
            .unwrap();
    }
    let run = Running {
        batch_id: job,
        contacts,
    };
    for i in 0..3 {
        run.insert_attempt(
            &app,
            i,
            Utc::now() - chrono::Duration::seconds(10 - i as i64),
            Some("completed"),
        )
        .await;
    }
    let html = page(&app, job).await;
    assert!(html.contains("<th>toNumber</th>"), "the Vogent word");
    assert!(
        html.contains(r#"<td class="clip" title="Grace Hopper">Grace Hopper</td>"#),
        "{html}"
    );
    assert!(html.contains(r#"title="Ada &lt;Lovelace&gt;">Ada &lt;Lovelace&gt;</td>"#));
    // None in its inputs: no name, and its number as ever.
    assert!(html.contains(r#"<td class="clip" title="—">—</td><td>+1•••0003</td>"#));

    let dialgen = Batch::new(ws).insert(&client).await;
    assert!(page(&app, dialgen).await.contains("<th>phoneNumber</th>"));
}

/// A 5,000-character name no longer pushes the page sideways: it is cut with an ellipsis, its
/// full value in `title` on hover.
#[tokio::test]
async fn long_text_is_cut_with_an_ellipsis_and_kept_whole_on_hover() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    let name = "N".repeat(5_000);
    let batch = Batch::new(ws).name(&name).insert(&client).await;
    let long_contact = "C".repeat(2_000);
    let ids = Contacts::new(["+12015550001"])
        .name(&long_contact)
        .insert(&client, batch, ws.id)
        .await;
    let run = Running {
        batch_id: batch,
        contacts: ids,
    };
    run.insert_attempt(&app, 0, Utc::now(), Some("busy")).await;
    let html = page(&app, batch).await;
    assert!(html.contains(&format!(
        r#"<h1><span class="clip" title="{name}">{name}</span>"#
    )));
    assert!(html.contains(&format!(r#"<td class="clip" title="{long_contact}">"#)));
    // The style that cuts them: one line, hidden overflow, an ellipsis; the recent calls'
    // table lays out its columns by its own widths, not its contents'.
    assert!(html.contains(".clip{overflow:hidden;text-overflow:ellipsis;white-space:nowrap"));
    assert!(html.contains(r#"<table class="fixed">"#));
    assert!(html.contains("table.fixed{table-layout:fixed}"));
}

/// The bar of the chart of `html` whose caption says how long a bar is, and how many bars
/// (one `<rect>` per outcome per bar: here every bar holds one outcome).
fn chart_of(html: &str) -> (String, usize, Vec<f64>) {
    let chart = &html[html.find("id=\"chart\"").unwrap()..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    let bucket = text_of(chart, "chart-bucket");
    let widths: Vec<f64> = chart
        .match_indices("width=\"")
        .skip(1)
        .map(|(i, _)| {
            let rest = &chart[i + 7..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    (bucket, chart.matches("<rect").count(), widths)
}

/// A one-minute campaign was a single full-width block: the axis spans at least 15 minutes,
/// and the bucket grows with the campaign (minutes for an hour or two, then 5, 15, 60…).
#[tokio::test]
async fn the_charts_bucket_follows_the_campaigns_length() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();

    let short = Batch::new(ws).insert(&client).await;
    let ids = Contacts::new(["+12015550001", "+12015550002"])
        .insert(&client, short, ws.id)
        .await;
    let run = Running {
        batch_id: short,
        contacts: ids,
    };
    run.insert_attempt(&app, 0, Utc::now(), Some("completed"))
        .await;
    run.insert_attempt(&app, 1, Utc::now(), Some("completed"))
        .await;
    let (bucket, rects, widths) = chart_of(&page(&app, short).await);
    assert_eq!(bucket, "each bar: 1 minute");
    assert_eq!(rects, 1);
    assert!(
        widths[0] < 960.0 / 10.0,
        "a narrow bar, not a block: {widths:?}"
    );

    // Five hours of calls, one every 10 minutes: 5-minute bars.
    let long = Batch::new(ws).insert(&client).await;
    let numbers: Vec<String> = (0..30).map(|i| format!("+1201555{i:04}")).collect();
    let ids = Contacts::new(numbers).insert(&client, long, ws.id).await;
    let run = Running {
        batch_id: long,
        contacts: ids,
    };
    for i in 0..30 {
        let at = Utc::now() - chrono::Duration::minutes(10 * (30 - i as i64));
        run.insert_attempt(&app, i, at, Some("busy")).await;
    }
    let (bucket, rects, _) = chart_of(&page(&app, long).await);
    assert_eq!(bucket, "each bar: 5 minutes");
    assert_eq!(rects, 30);
}

/// The page opened after a change shows it at once, though the batch's feed was warm and not
/// read since (nobody watched it): a subscriber to a feed last read over a second ago waits
/// for a read made for it. The first event shows the same fresh figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_after_a_change_shows_it_at_once() {
    let env = testkit::TestEnv::new().await;
    let app = HubApp::start(&env, env.db.clone(), Some(100)).await;
    let client = env.db.get().await.unwrap();
    let ws = testkit::fixtures::Workspace::new().insert(&client).await;
    let batch = Batch::new(ws).insert(&client).await;
    let html = reqwest::get(app.url(batch, false))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text_of(&html, "status").starts_with("processing"));
    // The page is closed; its feed stays warm for a reload, unread.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .execute(
            "UPDATE batches SET state = 'paused' WHERE id = $1",
            &[&batch],
        )
        .await
        .unwrap();
    tokio::time::sleep(api_gateway::monitor::hub::FRESH + Duration::from_millis(100)).await;
    assert_eq!(app.hub.watched(), 1, "the feed is still warm");
    let opened = Instant::now();
    let html = reqwest::get(app.url(batch, false))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(opened.elapsed() < Duration::from_secs(1));
    assert!(
        text_of(&html, "status").starts_with("paused"),
        "{}",
        text_of(&html, "status")
    );

    // The same for the first event, after another unwatched change.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .execute(
            "UPDATE batches SET state = 'active' WHERE id = $1",
            &[&batch],
        )
        .await
        .unwrap();
    tokio::time::sleep(api_gateway::monitor::hub::FRESH + Duration::from_millis(100)).await;
    let mut events = reqwest::get(app.url(batch, true)).await.unwrap();
    let first = next_update(&mut events, &mut String::new()).await;
    assert!(
        first["t"]["status"]
            .as_str()
            .unwrap()
            .starts_with("processing"),
        "{first}"
    );
}

async fn next_update(stream: &mut reqwest::Response, buf: &mut String) -> Value {
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
}

/// A pause, resume or cancel through the API reaches an open page within a second, though the
/// page's refresh interval is 5 s: the control route has the batch's feed read at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_through_the_api_reaches_an_open_page_at_once() {
    let env = testkit::TestEnv::new().await;
    let app = HubApp::start(&env, env.db.clone(), Some(5_000)).await;
    let created = api_gateway::admin::create_workspace_with(
        &env.db,
        "ops",
        10,
        &api_gateway::admin::Compliance::off(),
    )
    .await
    .unwrap();
    let client = env.db.get().await.unwrap();
    let agent: Uuid = client
        .query_one(
            "INSERT INTO agents (id, workspace_id, name, answer_url)
             VALUES ($1, $2, 'bot', 'https://agent.example/answer') RETURNING id",
            &[&Uuid::now_v7(), &created.workspace_id],
        )
        .await
        .unwrap()
        .get(0);
    let ws = WorkspaceIds {
        id: created.workspace_id,
        agent_id: agent,
    };
    let batch = Batch::new(ws).insert(&client).await;
    let mut events = reqwest::get(app.url(batch, true)).await.unwrap();
    let mut buf = String::new();
    let first = next_update(&mut events, &mut buf).await;
    assert!(
        first["t"]["status"]
            .as_str()
            .unwrap()
            .starts_with("processing")
    );
    let http = reqwest::Client::new();
    for (action, status) in [
        ("pause", "paused"),
        ("resume", "processing"),
        ("cancel", "cancelled"),
    ] {
        let sent = Instant::now();
        let r = http
            .post(format!("http://{}/api/v1/batch/{batch}/{action}", app.addr))
            .bearer_auth(&created.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{action}");
        let update = next_update(&mut events, &mut buf).await;
        let took = sent.elapsed();
        assert!(
            update["t"]["status"].as_str().unwrap().starts_with(status),
            "{action}: {update}"
        );
        assert!(
            took < Duration::from_secs(1),
            "{action} reached the page after {took:?}"
        );
        println!("{action}: on the open page {took:?} after the request");
    }
}
