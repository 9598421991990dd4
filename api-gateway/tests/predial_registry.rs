//! Issue #25's two fail-closed checks as the API sets them: the pre-dial check's settings
//! (`predialUrl`, `predialTimeoutMs`; a private destination refused at creation, as for
//! webhooks) and the registry reliance (`dncRegistryRequired`), whose hold shows in
//! `GET /api/workspace` until a do-not-call import marked as a fresh registry copy lands.

mod common;

use chrono::{Days, Utc};
use serde_json::{Value, json};
use testkit::http::SendJson;

use common::{TestApp, error_fields, spawn_app};

async fn patch(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .patch(app.url("/api/workspace"))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn day(days_ago: u64) -> String {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days_ago))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_predial_settings_are_strict_and_refuse_a_private_destination() {
    let app = spawn_app().await;
    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["predialUrl"], Value::Null, "off by default");
    assert_eq!(shown["predialTimeoutMs"], 2000);
    assert_eq!(shown["dncRegistryRequired"], false);
    assert_eq!(shown["dncRegistry"]["holdReason"], Value::Null);

    for (body, fields) in [
        (
            json!({"predialUrl": "http://10.0.0.5/check"}),
            vec!["predialUrl"],
        ),
        (
            json!({"predialUrl": "http://[::1]:9/check"}),
            vec!["predialUrl"],
        ),
        (
            json!({"predialUrl": "ftp://checks.example.com/x"}),
            vec!["predialUrl"],
        ),
        (json!({"predialTimeoutMs": 0}), vec!["predialTimeoutMs"]),
        (
            json!({"predialTimeoutMs": 10_001}),
            vec!["predialTimeoutMs"],
        ),
        (
            json!({"predialUrl": "http://192.168.1.1/", "predialTimeoutMs": 20_000}),
            vec!["predialUrl", "predialTimeoutMs"],
        ),
        (
            json!({"predialUrll": "https://checks.example.com"}),
            vec!["predialUrll"],
        ),
    ] {
        let r = patch(&app, body.clone()).await;
        assert_eq!(error_fields(r, 422).await, fields, "{body}");
    }
    // A value of the wrong type is a 400, as for every setting.
    let r = patch(&app, json!({"dncRegistryRequired": "yes"})).await;
    assert_eq!(r.status(), 400);
    let unchanged: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(unchanged["predialUrl"], Value::Null, "nothing changed");

    // 127.0.0.1 is in this test's WEBHOOK_ALLOWED_NETWORKS.
    let r = patch(
        &app,
        json!({"predialUrl": "http://127.0.0.1:9/check", "predialTimeoutMs": 500}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["predialUrl"], "http://127.0.0.1:9/check");
    assert_eq!(body["predialTimeoutMs"], 500);
    // What GET shows may be sent back as is.
    let r = patch(&app, body.clone()).await;
    assert_eq!(r.status(), 200);
    let r = patch(&app, json!({"predialUrl": null})).await;
    let off: Value = r.json().await.unwrap();
    assert_eq!(off["predialUrl"], Value::Null);
    assert_eq!(off["predialTimeoutMs"], 500, "the timeout stays");
}

#[tokio::test]
async fn a_required_registry_is_held_until_a_fresh_copy_is_imported() {
    let app = spawn_app().await;
    let r = patch(&app, json!({"dncRegistryRequired": true})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["dncRegistryRequired"], true);
    assert_eq!(
        body["dncRegistry"]["holdReason"], "dnc_registry_stale",
        "no copy yet"
    );

    // Bad marks: 422 naming the field, nothing added or recorded.
    for (mark, field) in [
        (
            json!({"source": "state_registry", "asOf": day(1)}),
            "source",
        ),
        (
            json!({"source": "national_registry", "asOf": day(0).replace('-', "/")}),
            "asOf",
        ),
        (
            json!({"source": "national_registry", "asOf": Utc::now().date_naive().checked_add_days(Days::new(5)).unwrap().to_string()}),
            "asOf",
        ),
        (json!({"source": "national_registry"}), "asOf"),
        (json!({"asOf": day(1)}), "source"),
    ] {
        let mut body = json!({"numbers": ["+12015550100"]});
        body.as_object_mut()
            .unwrap()
            .extend(mark.as_object().unwrap().clone());
        let r = app.post("/api/dnc").json(&body).send().await.unwrap();
        assert_eq!(error_fields(r, 422).await, [field], "{mark}");
    }

    // An old copy is recorded, and the workspace stays held.
    let r = app
        .post("/api/dnc")
        .json(&json!({"numbers": ["+12015550100", "+12015550101"], "source": "national_registry", "asOf": day(40)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let added: Value = r.json().await.unwrap();
    assert_eq!(added["added"], 2);
    assert_eq!(added["registryCopy"]["asOf"], day(40));
    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["dncRegistry"]["newestAsOf"], day(40));
    assert_eq!(shown["dncRegistry"]["holdReason"], "dnc_registry_stale");

    // A fresh copy uploaded as CSV lifts the hold.
    let r = app
        .post(&format!(
            "/api/dnc?source=national_registry&asOf={}",
            day(2)
        ))
        .header("content-type", "text/csv")
        .body("number\n+12015550102\n+12015550103\n+12015550100\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["dncRegistry"]["newestAsOf"], day(2));
    assert_eq!(shown["dncRegistry"]["holdReason"], Value::Null);

    let client = app.env.db.get().await.unwrap();
    let copies: Vec<(String, i64)> = client
        .query(
            "SELECT as_of::text AS as_of, numbers FROM dnc_registry_copies
             WHERE workspace_id = $1 ORDER BY id",
            &[&app.workspace_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("as_of"), r.get("numbers")))
        .collect();
    assert_eq!(copies, [(day(40), 2), (day(2), 3)]);
}

/// The registry hold is batch-wide: shown on check-status and the Vogent job (`holdReason`) and
/// on the monitor page, and gone once a fresh copy is imported.
#[tokio::test]
async fn the_registry_hold_shows_on_the_batch_and_its_monitor_page() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let created: Value = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12015550123"}]}))
        .send_json()
        .await;
    let id = created["batchId"].as_str().unwrap().to_owned();
    let dashboard = created["links"]["dashboard"].as_str().unwrap();
    let dashboard = app.url(&dashboard[dashboard.find("/batch/monitor/").unwrap()..]);
    let job = app.create_job(&agent, 1).await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let status = || async {
        let s: Value = app
            .get(&format!("/api/v1/batch/check-status?batchId={id}"))
            .send_json()
            .await;
        let j: Value = app
            .get(&format!("/api/batch_dial_jobs/{job_id}"))
            .send_json()
            .await;
        let page = app
            .http
            .get(&dashboard)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (
            s["holdReason"].clone(),
            j.get("holdReason").cloned(),
            page.contains("dnc_registry_stale"),
        )
    };
    assert_eq!(
        status().await,
        (Value::Null, None, false),
        "not relied on: no hold"
    );

    let r = patch(&app, json!({"dncRegistryRequired": true})).await;
    assert_eq!(r.status(), 200);
    // The page reuses a snapshot younger than a second (`monitor::hub::FRESH`).
    let fresh = || tokio::time::sleep(std::time::Duration::from_millis(1200));
    fresh().await;
    assert_eq!(
        status().await,
        (
            json!("dnc_registry_stale"),
            Some(json!("dnc_registry_stale")),
            true
        )
    );

    let r = app
        .post("/api/dnc")
        .json(&json!({"numbers": ["+12015550199"], "source": "national_registry", "asOf": day(0)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    fresh().await;
    assert_eq!(
        status().await,
        (Value::Null, None, false),
        "a fresh copy lifts it"
    );
}

/// A misspelled registry mark on a CSV upload (`?asof=`) is refused, not read as "no mark":
/// nothing is imported and no copy is recorded (invariant 14).
#[tokio::test]
async fn a_misspelled_registry_parameter_is_refused_and_imports_nothing() {
    let app = spawn_app().await;
    let r = app
        .post(&format!("/api/dnc?asof={}", day(1)))
        .header("content-type", "text/csv")
        .body("number\n+12015550100\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("asof"), "{body}");
    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["dncRegistry"]["newestAsOf"], Value::Null, "{shown}");
    let listed: Value = app.get("/api/dnc").send_json().await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{listed}");
}
