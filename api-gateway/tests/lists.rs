//! Issue 13 at the gateway alone: rejected rows by row (JSON, CSV, pages), the results export's
//! shape, paginated Dialgen reads with their `Link` headers, retry and append refusals (404
//! across workspaces, 409, 422), webhooks on Vogent jobs. Batches are written with the
//! fixtures; the cross-process behaviour (ingest, dialing) is in `system-tests/tests/lists.rs`.

mod common;

use chrono::{Duration, Utc};
use common::{error_fields, spawn_app};
use serde_json::{Value, json};
use testkit::fixtures::{self, WorkspaceIds};
use testkit::http::SendJson;
use uuid::Uuid;

async fn workspace(app: &common::TestApp) -> WorkspaceIds {
    WorkspaceIds {
        id: app.workspace_id,
        agent_id: Uuid::parse_str(&app.create_agent().await).unwrap(),
    }
}

/// A batch of `n` contacts with rejected rows at the given (0-based) indexes.
async fn batch_with_rejections(
    app: &common::TestApp,
    ws: WorkspaceIds,
    n: usize,
    rejected: &[(i32, &str)],
) -> Uuid {
    let client = app.env.db.get().await.unwrap();
    let id = fixtures::Batch::new(ws).insert(&client).await;
    let numbers: Vec<String> = (0..n).map(|i| format!("+1201555{i:04}")).collect();
    fixtures::Contacts::new(numbers)
        .insert(&client, id, ws.id)
        .await;
    for (row, reason) in rejected {
        client
            .execute(
                "INSERT INTO rejected_rows (batch_id, row_index, raw_number, reason, detail)
                 VALUES ($1, $2, $3, $4, 'because')",
                &[&id, &(n as i32 + row), &format!("bad,\"{row}\""), reason],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "UPDATE batches SET rejected_rows = $2::int, accepted_rows = $3::int, total_rows = $2::int + $3::int WHERE id = $1",
            &[&id, &(rejected.len() as i32), &(n as i32)],
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn rejected_rows_page_and_match_the_counts() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let reasons = [
        (0, "invalid_number"),
        (1, "duplicate"),
        (3, "missing_number"),
        (4, "invalid_number"),
        (7, "do_not_call"),
    ];
    let id = batch_with_rejections(&app, ws, 3, &reasons).await;

    // Pages of two, in row order, rows numbered from 1 as the user counts them.
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/batch/{id}/rejected?limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app.get(&path).send_json().await;
        rows.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let numbers: Vec<i64> = rows.iter().map(|r| r["row"].as_i64().unwrap()).collect();
    assert_eq!(numbers, vec![4, 5, 7, 8, 11]);
    assert_eq!(rows[0]["reason"], "invalid_number");
    assert_eq!(rows[0]["phoneNumber"], "bad,\"0\"");
    assert_eq!(rows[0]["detail"], "because");

    // The same list as the status endpoints count it.
    let status: Value = app
        .get(&format!("/api/v1/batch/check-status?batchId={id}"))
        .send_json()
        .await;
    assert_eq!(status["rows"]["rejected"], rows.len() as i64, "{status}");
    for reason in [
        "invalid_number",
        "duplicate",
        "missing_number",
        "do_not_call",
    ] {
        let listed = rows.iter().filter(|r| r["reason"] == reason).count() as i64;
        assert_eq!(status["rejected"][reason], listed, "{reason}: {status}");
    }

    // The Vogent surface lists the same rows.
    let vogent: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}/rejected?limit=1000"))
        .send_json()
        .await;
    assert_eq!(vogent["data"].as_array().unwrap(), &rows);

    // CSV: every row (streamed), quoted as CSV quotes.
    let r = app
        .get(&format!("/api/v1/batch/{id}/rejected"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.text().await.unwrap();
    let mut csv = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        csv.headers().unwrap(),
        vec!["row", "phoneNumber", "reason", "detail"]
    );
    let lines: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(lines.len(), rows.len());
    for (line, row) in lines.iter().zip(&rows) {
        assert_eq!(line[0], row["row"].to_string());
        assert_eq!(line[1], row["phoneNumber"].as_str().unwrap().to_owned());
        assert_eq!(line[2], row["reason"].as_str().unwrap().to_owned());
    }
    // A CSV page carries its next page in the headers.
    let r = app
        .get(&format!("/api/v1/batch/{id}/rejected?limit=3"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    let next = r.headers()["x-next-cursor"].to_str().unwrap().to_owned();
    assert!(r.headers()["link"].to_str().unwrap().contains(&next));
    assert_eq!(r.text().await.unwrap().lines().count(), 4, "header + 3");

    // Bad parameters name themselves; another workspace's batch is not found.
    let bad = app
        .get(&format!("/api/v1/batch/{id}/rejected?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(bad, 422).await, vec!["limit"]);
    let bad = app
        .get(&format!("/api/v1/batch/{id}/rejected?cursor=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(bad, 400).await, vec!["cursor"]);
    let other = app.other_workspace_key().await;
    for path in [
        format!("/api/v1/batch/{id}/rejected"),
        format!("/api/batch_dial_jobs/{id}/rejected"),
        format!("/api/v1/batch/{id}/results.csv"),
        format!("/api/batch_dial_jobs/{id}/results.csv"),
    ] {
        let r = app
            .request_as(&other, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn results_csv_has_one_line_per_contact_in_row_order() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    let id = fixtures::Batch::new(ws).insert(&client).await;
    let numbers: Vec<String> = (0..5).map(|i| format!("+1201555{i:04}")).collect();
    let contacts = fixtures::Contacts::new(numbers)
        .name("Ada, \"the\" Countess")
        .inputs(json!({"plan": "gold"}))
        .insert(&client, id, ws.id)
        .await;
    // Row 2 answered for 3.4 s from +12015550199; row 3 busy; the rest untouched.
    let t = Utc::now() - Duration::seconds(60);
    for (row, outcome, answered) in [(1usize, "completed", true), (2, "busy", false)] {
        client
            .execute(
                "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number,
                     from_number, state, outcome, created_at, started_at, answered_at, ended_at)
                 SELECT gen_random_uuid(), c.id, c.batch_id, c.workspace_id, 1, c.phone_number,
                     '+12015550199', 'ended', $2, $3, $3, $4, $5
                 FROM contacts c WHERE c.id = $1",
                &[
                    &contacts[row],
                    &outcome,
                    &t,
                    &answered.then_some(t),
                    &(t + Duration::milliseconds(3400)),
                ],
            )
            .await
            .unwrap();
        client
            .execute(
                "UPDATE contacts SET state = $2, last_outcome = $3, attempts = 1 WHERE id = $1",
                &[
                    &contacts[row],
                    &(if answered { "completed" } else { "failed" }),
                    &outcome,
                ],
            )
            .await
            .unwrap();
    }
    // Row 4 waits for Florida's hours (issue #25: holds anyone can see).
    client
        .execute(
            "UPDATE contacts SET hold_reason = 'state_hours',
                 next_attempt_at = '2026-12-02T13:00:00Z' WHERE id = $1",
            &[&contacts[3]],
        )
        .await
        .unwrap();
    let r = app
        .get(&format!("/api/v1/batch/{id}/results.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("results.csv")
    );
    let text = r.text().await.unwrap();
    let mut csv = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        csv.headers().unwrap(),
        vec![
            "row",
            "contactId",
            "id",
            "phoneNumber",
            "name",
            "status",
            "outcome",
            "attempts",
            "lastCallAt",
            "durationSeconds",
            "callerId",
            "state",
            "postalCode",
            "holdReason",
            "nextAttemptAt",
            "metadata"
        ]
    );
    let lines: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(lines.len(), 5);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line[0], (i + 1).to_string());
        assert_eq!(line[1], contacts[i].to_string());
        assert_eq!(line[3], format!("+1201555{i:04}"));
        assert_eq!(&line[4], "Ada, \"the\" Countess");
        assert_eq!(
            serde_json::from_str::<Value>(&line[15]).unwrap(),
            json!({"plan": "gold"})
        );
    }
    assert_eq!(
        (&lines[1][5], &lines[1][6], &lines[1][7]),
        ("COMPLETED", "completed", "1")
    );
    assert_eq!((&lines[1][9], &lines[1][10]), ("3", "+12015550199"));
    assert_eq!(
        (&lines[2][5], &lines[2][6], &lines[2][9]),
        ("MISSED", "busy", "0")
    );
    assert_eq!(
        (&lines[0][5], &lines[0][6], &lines[0][8]),
        ("SCHEDULED", "", "")
    );
    assert_eq!((&lines[0][13], &lines[0][14]), ("", ""));
    assert_eq!(
        (&lines[3][13], &lines[3][14]),
        ("state_hours", "2026-12-02T13:00:00.000Z")
    );
    assert_eq!(
        (&lines[2][13], &lines[2][14]),
        ("", ""),
        "a final contact waits for nothing"
    );

    // The same hold in each call of status/batch, each row of the queue, and check-status.
    let calls: Value = app
        .get(&format!("/api/v1/status/batch?batchId={id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = calls["calls"].as_array().unwrap();
    assert_eq!(calls[3]["holdReason"], "state_hours", "{calls:?}");
    assert_eq!(calls[3]["nextAttemptAt"], "2026-12-02T13:00:00.000Z");
    assert_eq!(calls[0]["holdReason"], Value::Null);
    assert_eq!(calls[0]["nextAttemptAt"], Value::Null);
    let queue: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}/queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let held: Vec<&Value> = queue["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["holdReason"] == "state_hours")
        .collect();
    assert_eq!(held.len(), 1, "{queue}");
    assert_eq!(held[0]["nextAttemptAt"], "2026-12-02T13:00:00.000Z");
    let status: Value = app
        .get(&format!("/api/v1/batch/{id}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["statistics"]["held"], 1, "{status}");
    assert_eq!(
        status["performance"]["deferred"]["stateHours"], 1,
        "{status}"
    );
}

#[tokio::test]
async fn dialgen_reads_are_paginated_with_link_headers() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = fixtures::Batch::new(ws)
            .name(&format!("b{i}"))
            .created_at(Utc::now() - Duration::minutes(10 - i))
            .insert(&client)
            .await;
        ids.push(id);
    }
    fixtures::Contacts::new((0..7).map(|i| format!("+1201555{i:04}")))
        .insert(&client, ids[4], ws.id)
        .await;

    // Without limit and cursor: every batch, newest first, and no next page.
    let r = app.get("/api/v1/batch/list").send().await.unwrap();
    assert!(r.headers().get("link").is_none());
    let all: Vec<Value> = r.json().await.unwrap();
    let all_ids: Vec<String> = all
        .iter()
        .map(|b| b["batchId"].as_str().unwrap().to_owned())
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().map(Uuid::to_string).collect();
    assert_eq!(all_ids, newest_first);
    assert_eq!(all[0]["total"], 7);

    // Pages of two, following the Link header as a client would.
    let mut seen = Vec::new();
    let mut next = Some(app.url("/api/v1/batch/list?limit=2"));
    while let Some(url) = next.take() {
        let r = app
            .http
            .get(&url)
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if let Some(link) = r.headers().get("link") {
            let link = link.to_str().unwrap();
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            let cursor = r.headers()["x-next-cursor"].to_str().unwrap();
            assert!(link.contains(&format!("cursor={cursor}")), "{link}");
            let target = &link[1..link.find('>').unwrap()];
            // PUBLIC_URL is not the test's port: keep the path and query.
            let path = &target[target.find("/api/").unwrap()..];
            assert!(path.contains("limit=2"), "{path}");
            next = Some(app.url(path));
        }
        let page: Vec<Value> = r.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.into_iter()
                .map(|b| b["batchId"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(seen, newest_first);

    // status/batch: every call streamed, or pages with nextCursor.
    let whole: Value = app
        .get(&format!("/api/v1/status/batch?batchId={}", ids[4]))
        .send_json()
        .await;
    assert_eq!(whole["calls"].as_array().unwrap().len(), 7);
    assert_eq!(whole["nextCursor"], Value::Null);
    let mut calls = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/status/batch?batchId={}&limit=3", ids[4]);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app.get(&path).send_json().await;
        assert_eq!(page["batchId"], ids[4].to_string());
        calls.extend(page["calls"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(&calls, whole["calls"].as_array().unwrap());

    for path in [
        "/api/v1/batch/list?limit=0".to_owned(),
        format!("/api/v1/status/batch?batchId={}&limit=5000", ids[4]),
    ] {
        let r = app.get(&path).send().await.unwrap();
        assert_eq!(error_fields(r, 422).await, vec!["limit"], "{path}");
    }
    let r = app
        .get("/api/v1/batch/list?cursor=zzz")
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, vec!["cursor"]);
    // Another workspace sees none of these.
    let other = app.other_workspace_key().await;
    let theirs: Vec<Value> = app
        .request_as(&other, reqwest::Method::GET, "/api/v1/batch/list")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty());
}

#[tokio::test]
async fn retry_and_append_refuse_what_they_cannot_do() {
    let app = spawn_app().await;
    let ws = workspace(&app).await;
    let client = app.env.db.get().await.unwrap();
    let running = fixtures::Batch::new(ws).insert(&client).await;
    fixtures::Contacts::new(["+12015550100"])
        .insert(&client, running, ws.id)
        .await;
    let done = fixtures::Batch::new(ws)
        .state("completed")
        .insert(&client)
        .await;
    fixtures::Contacts::new(["+12015550101"])
        .insert(&client, done, ws.id)
        .await;
    client
        .execute(
            "UPDATE contacts SET state = 'completed', last_outcome = 'completed' WHERE batch_id = $1",
            &[&done],
        )
        .await
        .unwrap();

    // Retry: only a finished batch, only known outcomes, only matching contacts.
    let r = app
        .post(&format!("/api/v1/batch/{running}/retry"))
        .json(&json!({"outcomes": ["busy"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .post(&format!("/api/v1/batch/{done}/retry"))
        .json(&json!({"outcomes": ["busy", "maybe"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["outcomes[1]"]);
    let r = app
        .post(&format!("/api/v1/batch/{done}/retry"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["outcomes"]);
    let r = app
        .post(&format!("/api/batch_dial_jobs/{done}/retry"))
        .json(&json!({"outcomes": ["no-answer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["outcomes"], "none match");
    let batches = client
        .query_one(
            "SELECT count(*) AS n FROM batches WHERE retry_of IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>("n");
    assert_eq!(batches, 0, "a refused retry creates nothing");

    // A retry of the completed contact: a Vogent job in INIT, linked both ways.
    let job: Value = app
        .post(&format!("/api/batch_dial_jobs/{done}/retry"))
        .json(&json!({"outcomes": ["completed"], "name": "again"}))
        .send_json()
        .await;
    assert_eq!(job["name"], "again");
    assert_eq!(job["status"], "INIT", "a Vogent retry waits for /paused");
    assert_eq!(job["retryOf"], done.to_string());
    let new_id = job["id"].as_str().unwrap();
    let fetched: Value = app
        .get(&format!("/api/batch_dial_jobs/{new_id}"))
        .send_json()
        .await;
    assert_eq!(fetched["retryOf"], done.to_string());

    // Append: final jobs refuse (409), bad rows are named (422), unknown fields too.
    let r = app
        .post(&format!("/api/batch_dial_jobs/{done}/rows"))
        .json(&json!({"rows": [{"toNumber": "+12015550102"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .post(&format!("/api/batch_dial_jobs/{running}/rows"))
        .json(&json!({"rows": [{"toNumber": "+12015550102", "inputs": {"n": 1}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["rows[0].inputs.n"]);
    let r = app
        .post(&format!("/api/v1/batch/{running}/contacts"))
        .json(&json!({"contacts": [], "name": "x"}))
        .send()
        .await
        .unwrap();
    let fields = error_fields(r, 422).await;
    assert!(fields.contains(&"contacts".to_owned()) && fields.contains(&"name".to_owned()));
    let r = app
        .post(&format!("/api/v1/batch/{running}/contacts"))
        .json(&json!({"rows": [{"phoneNumber": "+12015550102"}]}))
        .send()
        .await
        .unwrap();
    // Both problems: the missing `contacts` and the unknown `rows`.
    assert_eq!(error_fields(r, 422).await, vec!["contacts", "rows"]);
    let other = app.other_workspace_key().await;
    for (path, body) in [
        (
            format!("/api/v1/batch/{running}/contacts"),
            json!({"contacts": [{"phoneNumber": "+12015550102"}]}),
        ),
        (
            format!("/api/batch_dial_jobs/{running}/rows"),
            json!({"rows": [{"toNumber": "+12015550102"}]}),
        ),
        (
            format!("/api/v1/batch/{done}/retry"),
            json!({"outcomes": ["completed"]}),
        ),
        (
            format!("/api/batch_dial_jobs/{done}/retry"),
            json!({"outcomes": ["completed"]}),
        ),
    ] {
        let r = app
            .request_as(&other, reqwest::Method::POST, &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // A 100,001-row append is refused whole.
    let rows: Vec<Value> = (0..100_001)
        .map(|i| json!({"toNumber": format!("+1201{i:07}")}))
        .collect();
    let r = app
        .post(&format!("/api/batch_dial_jobs/{running}/rows"))
        .json(&json!({ "rows": rows }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(app.ingest_queue_depth().await, 0);
}

#[tokio::test]
async fn vogent_jobs_take_webhooks_and_put_refuses_rows() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let body = json!({
        "name": "hooks", "callAgentId": agent, "maxConcurrentDials": 2,
        "rows": [{"toNumber": "+12015550100"}],
        "webhooks": {"onCallComplete": "https://hooks.example.com/call"},
    });
    let job: Value = app
        .post("/api/batch_dial_jobs")
        .json(&body)
        .send_json()
        .await;
    assert_eq!(
        job["webhooks"]["onCallComplete"],
        "https://hooks.example.com/call"
    );
    let id = job["id"].as_str().unwrap();

    let r = app
        .post("/api/batch_dial_jobs")
        .json(&json!({"name": "x", "callAgentId": agent, "maxConcurrentDials": 1,
                      "rows": [{"toNumber": "+12015550100"}], "webhooks": {"onBatchComplete": "ftp://x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["webhooks.onBatchComplete"]);

    let r = app
        .put(&format!("/api/batch_dial_jobs/{id}"))
        .json(&json!({"name": "renamed", "rows": [{"toNumber": "+12015550101"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["details"][0]["field"], "rows");
    assert!(
        err["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("/api/batch_dial_jobs/{id}/rows")),
        "{err}"
    );
    let unchanged: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}"))
        .send_json()
        .await;
    assert_eq!(unchanged["name"], "hooks", "a refused PUT changes nothing");

    let updated: Value = app
        .put(&format!("/api/batch_dial_jobs/{id}"))
        .json(&json!({"webhooks": {"onBatchComplete": "https://hooks.example.com/done"}}))
        .send_json()
        .await;
    assert_eq!(
        updated["webhooks"],
        json!({"onBatchComplete": "https://hooks.example.com/done"})
    );
}

/// A paused Vogent job holding `numbers`, every row ingested and accepted.
async fn paused_vogent_job(
    app: &common::TestApp,
    numbers: &[&str],
) -> (deadpool_postgres::Object, Uuid) {
    let ws = workspace(app).await;
    let client = app.env.db.get().await.unwrap();
    let job = fixtures::Batch::new(ws)
        .surface("vogent")
        .state("paused")
        .insert(&client)
        .await;
    fixtures::Contacts::new(numbers.iter().copied())
        .insert(&client, job, ws.id)
        .await;
    let n = numbers.len() as i32;
    client
        .execute(
            "UPDATE batches SET total_rows = $2, accepted_rows = $2 WHERE id = $1",
            &[&job, &n],
        )
        .await
        .unwrap();
    (client, job)
}

#[tokio::test]
async fn an_append_queues_chunks_after_the_jobs_rows_and_survives_a_publish_failure() {
    let app = spawn_app().await;
    let (client, job) =
        paused_vogent_job(&app, &["+12015550100", "+12015550101", "+12015550102"]).await;
    client
        .execute(
            "UPDATE batches SET expected_chunks = 1 WHERE id = $1;",
            &[&job],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO ingest_chunks (batch_id, seq, rows, accepted, rejected) VALUES ($1, 0, 3, 3, 0)",
            &[&job],
        )
        .await
        .unwrap();

    // Accepted: one chunk, numbered after the job's, and the job waits for it (not completable).
    let rows: Vec<Value> = (0..2)
        .map(|i| json!({"toNumber": format!("+1201555020{i}")}))
        .collect();
    let added: Value = app
        .post(&format!("/api/batch_dial_jobs/{job}/rows"))
        .json(&json!({ "rows": rows }))
        .send_json()
        .await;
    assert_eq!(
        (added["rows"].as_i64(), added["firstRow"].as_i64()),
        (Some(2), Some(4))
    );
    assert_eq!(added["job"]["status"], "PAUSED");
    assert_eq!(app.ingest_queue_depth().await, 1);
    let row = client
        .query_one(
            "SELECT ingest_state, expected_chunks, total_rows FROM batches WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("ingest_state"), "ingesting");
    assert_eq!(row.get::<_, i32>("expected_chunks"), 2);
    assert_eq!(row.get::<_, i32>("total_rows"), 5);
    // A second append while those rows are in flight waits its turn.
    let r = app
        .post(&format!("/api/batch_dial_jobs/{job}/rows"))
        .json(&json!({"rows": [{"toNumber": "+12015550300"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // The chunk as an ingest worker would store it; then a publish failure.
    client
        .execute(
            "INSERT INTO ingest_chunks (batch_id, seq, rows, accepted, rejected) VALUES ($1, 1, 2, 2, 0)",
            &[&job],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE batches SET ingest_state = 'ready', accepted_rows = 5 WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    let channel = app.env.broker.channel().await.unwrap();
    let exchange = app
        .env
        .broker
        .topology()
        .exchange(shared::queue::Stream::Ingest);
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
    let r = app
        .post(&format!("/api/v1/batch/{job}/contacts"))
        .json(&json!({"contacts": [{"phoneNumber": "+12015550301"}]}))
        .send()
        .await
        .unwrap();
    error_fields(r, 503).await;
    let row = client
        .query_one(
            "SELECT state, ingest_state, expected_chunks, total_rows FROM batches WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>("state"),
        "paused",
        "the job itself is not failed"
    );
    assert_eq!(row.get::<_, String>("ingest_state"), "ready");
    assert_eq!(row.get::<_, i32>("expected_chunks"), 2);
    assert_eq!(
        row.get::<_, i32>("total_rows"),
        5,
        "only the rows that arrived count"
    );
}

/// An append is read as it arrives, but nothing of it is queued until the whole body proved
/// valid: a body that goes wrong after its rows (a field the route does not take, truncated
/// JSON, a 100,001st row) is answered as a create's would be, queues no chunk, and leaves the
/// job as it was, `ready` for the next append.
#[tokio::test]
async fn a_late_invalid_append_adds_nothing() {
    let app = spawn_app().await;
    let (client, job) = paused_vogent_job(&app, &["+12015550100"]).await;
    // More than one chunk of rows before the problem, so a streaming reader has packed some.
    let rows: Vec<String> = (0..5_000)
        .map(|i| format!(r#"{{"toNumber":"+1202{i:07}"}}"#))
        .collect();
    let rows = rows.join(",");
    let too_many: Vec<String> = (0..100_001)
        .map(|i| format!(r#"{{"toNumber":"+1203{i:07}"}}"#))
        .collect();
    let cases = [
        (
            format!(r#"{{"rows":[{rows}],"name":"late"}}"#),
            422,
            "a field after the rows",
        ),
        (format!(r#"{{"rows":[{rows}],"#), 400, "truncated JSON"),
        (
            format!(r#"{{"rows":[{}]}}"#, too_many.join(",")),
            413,
            "a 100,001st row",
        ),
    ];
    for (body, status, what) in cases {
        let r = app
            .post(&format!("/api/batch_dial_jobs/{job}/rows"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "{what}: {}",
            r.text().await.unwrap()
        );
        assert_eq!(
            app.ingest_queue_depth().await,
            0,
            "{what}: a chunk was queued"
        );
        let row = client
            .query_one(
                "SELECT ingest_state, total_rows FROM batches WHERE id = $1",
                &[&job],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, String>("ingest_state"),
                row.get::<_, i32>("total_rows")
            ),
            ("ready".to_owned(), 1),
            "{what}: the job changed"
        );
    }
    // Still open to a valid append, numbered after the job's own row.
    let added: Value = app
        .post(&format!("/api/batch_dial_jobs/{job}/rows"))
        .json(&json!({"rows": [{"toNumber": "+12015550999"}]}))
        .send_json()
        .await;
    assert_eq!(added["firstRow"], 2);
    assert_eq!(app.ingest_queue_depth().await, 1);
}

async fn ingest_state(client: &deadpool_postgres::Object, job: Uuid) -> String {
    client
        .query_one("SELECT ingest_state FROM batches WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get("ingest_state")
}

/// A slow append holds nothing while its body arrives: the job stays `ready` (so the ingest
/// timeout sweep, which fails a job left `ingesting` without progress, cannot take a slow
/// upload for a stall) and is taken only once the body is whole.
#[tokio::test]
async fn an_append_takes_the_job_only_once_its_body_is_whole() {
    let app = spawn_app().await;
    let (client, job) = paused_vogent_job(&app, &["+12015550100"]).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|piece| (piece, rx))
    }));
    let request = app
        .post(&format!("/api/batch_dial_jobs/{job}/rows"))
        .header("content-type", "application/json")
        .body(body)
        .send();
    let sent = tokio::spawn(request);
    tx.send(Ok(br#"{"rows":[{"toNumber":"+12015550201"},"#.to_vec()))
        .await
        .unwrap();
    // The first half has been read (the gateway answers nothing yet): the job is still free.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        ingest_state(&client, job).await,
        "ready",
        "taken while the body arrives"
    );
    tx.send(Ok(br#"{"toNumber":"+12015550202"}]}"#.to_vec()))
        .await
        .unwrap();
    drop(tx);
    let r = sent.await.unwrap().unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert_eq!(
        ingest_state(&client, job).await,
        "ingesting",
        "taken once whole"
    );
    assert_eq!(app.ingest_queue_depth().await, 1);
}
