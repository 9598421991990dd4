//! The monitor page's control (issue 27): links minted with `?control=true` on both APIs'
//! mint routes (and the CLI's `batch dashboard-link`), the buttons only a control link's page
//! has, and `POST /batch/monitor/{id}/control/{action}`: refused (403) to a read-only link, to
//! a control link without its CSRF header, to another site's `Origin` and to another batch's
//! control link; through `batches::control` otherwise.

mod common;

use chrono::{DateTime, Utc};
use serde_json::Value;
use testkit::fixtures::{Batch, Contacts, WorkspaceIds};
use testkit::http::SendJson;
use uuid::Uuid;

use common::{TestApp, spawn_app};

async fn batch(app: &TestApp) -> Uuid {
    let ws = WorkspaceIds {
        id: app.workspace_id,
        agent_id: app.create_agent().await.parse().unwrap(),
    };
    let client = app.env.db.get().await.unwrap();
    let id = Batch::new(ws).name("spring").insert(&client).await;
    Contacts::new(["+12015550001", "+12015550002"])
        .insert(&client, id, ws.id)
        .await;
    id
}

/// A minted link's path and query on this test's gateway (the configured public URL is not it).
fn local(app: &TestApp, url: &str) -> String {
    let at = url.find("/batch/monitor/").unwrap();
    app.url(&url[at..])
}

async fn mint(app: &TestApp, path: &str) -> Value {
    app.post(path).send_json().await
}

/// The CSRF token the control page carries.
async fn csrf_of(app: &TestApp, page_url: &str) -> String {
    let html = app
        .http
        .get(page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find("data-csrf=\"").expect("a control page") + 11;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

fn action_url(page_url: &str, action: &str) -> String {
    let (path, query) = page_url.split_once('?').unwrap();
    format!("{path}/control/{action}?{query}")
}

async fn state_of(app: &TestApp, id: Uuid) -> String {
    let client = app.env.db.get().await.unwrap();
    client
        .query_one("SELECT state FROM batches WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn both_apis_mint_read_only_and_control_links() {
    let app = spawn_app().await;
    let id = batch(&app).await;
    let now = Utc::now();
    for path in [
        format!("/api/v1/batch/{id}/dashboard_link"),
        format!("/api/batch_dial_jobs/{id}/dashboard_link"),
    ] {
        let view = mint(&app, &path).await;
        assert_eq!(view["control"], false);
        assert!(
            view["url"]
                .as_str()
                .unwrap()
                .contains(&format!("/batch/monitor/{id}?token="))
        );
        let expires: DateTime<Utc> = view["expiresAt"].as_str().unwrap().parse().unwrap();
        assert_eq!((expires - now).num_days(), 6, "7 days: {expires}");

        let control = mint(&app, &format!("{path}?control=true")).await;
        assert_eq!(control["control"], true);
        let url = control["url"].as_str().unwrap();
        assert!(
            url.contains(&format!("/batch/monitor/{id}?control=")),
            "{url}"
        );
        let expires: DateTime<Utc> = control["expiresAt"].as_str().unwrap().parse().unwrap();
        assert!((expires - now).num_minutes() <= 60, "an hour: {expires}");
        assert_eq!(
            mint(&app, &format!("{path}?control=false")).await["control"],
            false
        );

        // A bad value or an unknown parameter is named; another workspace's batch is 404.
        for bad in ["?control=yes", "?contrl=true"] {
            let r = app.post(&format!("{path}{bad}")).send().await.unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }
        let other = app.other_workspace_key().await;
        let r = app
            .request_as(
                &other,
                reqwest::Method::POST,
                &format!("{path}?control=true"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = app.http.post(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "an API key is required");
    }
}

#[tokio::test]
async fn a_read_only_link_never_acts_and_a_control_link_acts_only_with_its_csrf_header() {
    let app = spawn_app().await;
    let id = batch(&app).await;
    let other = batch(&app).await;
    let view = mint(&app, &format!("/api/v1/batch/{id}/dashboard_link")).await;
    let view = local(&app, view["url"].as_str().unwrap());
    let control = mint(
        &app,
        &format!("/api/v1/batch/{id}/dashboard_link?control=true"),
    )
    .await;
    let control = local(&app, control["url"].as_str().unwrap());

    // The read-only page has no buttons; the control page has them.
    let html = app
        .http
        .get(&view)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("id=\"controls\"") && !html.contains("btn-pause"));
    let html = app
        .http
        .get(&control)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for b in ["btn-pause", "btn-resume", "btn-cancel", "data-csrf="] {
        assert!(html.contains(b), "{b}");
    }
    // Its event stream opens too.
    let r = app
        .http
        .get(control.replace('?', "/events?"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let csrf = csrf_of(&app, &control).await;

    let post = |url: String, csrf: Option<&str>, origin: Option<&str>| {
        let mut req = app.http.post(url);
        if let Some(c) = csrf {
            req = req.header("X-Dialfleet-Csrf", c);
        }
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        req.send()
    };
    let refused = async |r: reqwest::Response, why: &str| {
        assert_eq!(r.status(), 403, "{why}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{why}: {body}");
        body["error"]["message"].as_str().unwrap().to_owned()
    };
    for action in ["pause", "resume", "cancel"] {
        // A read-only link, even with a control link's CSRF token.
        let m = refused(
            post(action_url(&view, action), Some(&csrf), None)
                .await
                .unwrap(),
            "read-only",
        )
        .await;
        assert!(m.contains("read-only"), "{m}");
        // No CSRF header, a wrong one, another site.
        refused(
            post(action_url(&control, action), None, None)
                .await
                .unwrap(),
            "no csrf",
        )
        .await;
        refused(
            post(action_url(&control, action), Some("AAAA"), None)
                .await
                .unwrap(),
            "wrong csrf",
        )
        .await;
        refused(
            post(
                action_url(&control, action),
                Some(&csrf),
                Some("https://evil.example"),
            )
            .await
            .unwrap(),
            "another site",
        )
        .await;
        // This batch's control link on another batch.
        let elsewhere = action_url(&control, action).replace(&id.to_string(), &other.to_string());
        refused(
            post(elsewhere, Some(&csrf), None).await.unwrap(),
            "another batch",
        )
        .await;
    }
    assert_eq!(state_of(&app, id).await, "active", "nothing changed");
    assert_eq!(state_of(&app, other).await, "active");
    // A tampered control token is refused, not taken for a read-only one.
    let r = app
        .http
        .get(control.replace("control=", "control=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The control link acts, through the same code as the API (its states, its 409).
    let same_origin = app.url("");
    for (action, state, text) in [
        ("pause", "paused", "paused · PAUSED"),
        ("resume", "active", "processing · ACTIVE"),
        ("cancel", "cancelled", "cancelled · CANCELLED"),
    ] {
        let r = post(
            action_url(&control, action),
            Some(&csrf),
            Some(&same_origin),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{action}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["action"], action);
        assert_eq!(body["statusText"], text);
        assert_eq!(state_of(&app, id).await, state);
    }
    let r = post(action_url(&control, "pause"), Some(&csrf), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a cancelled batch cannot be paused");
    let r = post(action_url(&control, "explode"), Some(&csrf), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(state_of(&app, other).await, "active");
}

/// The workspace's Batch Dials page: `?control=true` on its mint route gives a control link
/// whose rows get buttons; its actions take the CSRF header and touch only its own batches.
#[tokio::test]
async fn the_batch_dials_control_link_acts_on_its_own_batches_only() {
    let app = spawn_app().await;
    let id = batch(&app).await;
    let now = Utc::now();
    let view: Value = app.post("/api/workspace/dashboard_link").send_json().await;
    assert!(view.get("control").is_none(), "{view}");
    let control: Value = app
        .post("/api/workspace/dashboard_link?control=true")
        .send_json()
        .await;
    assert_eq!(control["control"], true);
    let expires: DateTime<Utc> = control["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!((expires - now).num_minutes() <= 60, "an hour: {expires}");
    let r = app
        .post("/api/workspace/dashboard_link?control=true")
        .json(&serde_json::json!({"expiresInSeconds": 7200}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "a control link lives an hour at most");

    let on_app = |url: &str| {
        let at = url.find("/workspace/").unwrap();
        app.url(&url[at..])
    };
    let view = on_app(view["url"].as_str().unwrap());
    let control = on_app(control["url"].as_str().unwrap());
    let html = app
        .http
        .get(&view)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("dials-controls"),
        "no buttons on a read-only link"
    );
    let html = app
        .http
        .get(&control)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"dials-controls\""));
    assert!(
        html.contains("?control="),
        "the filter links keep the control token"
    );
    let at = html.find("data-csrf=\"").unwrap() + 11;
    let csrf = html[at..at + html[at..].find('"').unwrap()].to_owned();

    let act = |page: &str, batch: Uuid, action: &str| {
        let (path, query) = page.split_once('?').unwrap();
        format!("{path}/control/{batch}/{action}?{query}")
    };
    let r = app
        .http
        .post(act(&view, id, "pause"))
        .header("X-Dialfleet-Csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a read-only link never acts");
    let r = app
        .http
        .post(act(&control, id, "pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF header");
    // A batch control link is not a workspace one.
    let batch_control: Value = app
        .post(&format!("/api/v1/batch/{id}/dashboard_link?control=true"))
        .send_json()
        .await;
    let token = batch_control["url"]
        .as_str()
        .unwrap()
        .split("control=")
        .nth(1)
        .unwrap();
    let ws_path = control.split_once('?').unwrap().0;
    let r = app
        .http
        .post(format!("{ws_path}/control/{id}/pause?control={token}"))
        .header("X-Dialfleet-Csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(state_of(&app, id).await, "active");

    let r = app
        .http
        .post(act(&control, id, "pause"))
        .header("X-Dialfleet-Csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(state_of(&app, id).await, "paused");

    // Another workspace's batch, through this workspace's link: not found, unchanged.
    let other_key = app.other_workspace_key().await;
    let other = app
        .request_as(&other_key, reqwest::Method::POST, "/api/agents")
        .json(&serde_json::json!({"name": "b", "answerUrl": "https://a.example/answer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let client = app.env.db.get().await.unwrap();
    let other_ws: Uuid = client
        .query_one("SELECT id FROM workspaces WHERE name = 'other'", &[])
        .await
        .unwrap()
        .get(0);
    let agent: Uuid = other.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let foreign = Batch::new(WorkspaceIds {
        id: other_ws,
        agent_id: agent,
    })
    .insert(&client)
    .await;
    let r = app
        .http
        .post(act(&control, foreign, "cancel"))
        .header("X-Dialfleet-Csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(state_of(&app, foreign).await, "active");
}
