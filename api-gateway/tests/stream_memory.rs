//! Memory follows the work in progress, not the size of a body: the bytes the create path holds
//! (body frames waiting for the parser, the chunk being packed, chunks queued, published and
//! unconfirmed: `api_gateway::batches::held`) stay a few chunks' worth for an 18 MB body, sent
//! at full speed or trickled, JSON or CSV, created or added to a running job. Its own test binary: the account is process-wide, and
//! no other test may create batches while this one reads it.

mod common;

use std::time::Duration;

use api_gateway::batches::held;
use common::{TestApp, spawn_app};

/// What one request may hold, whatever its size: about ten encoded chunks of 2,000 rows
/// (in packing, queued, held back, in flight) and a few body frames.
const BOUND: usize = 8 * 1024 * 1024;

fn contact(i: usize) -> String {
    format!(
        r#"{{"phoneNumber":"+1201{i:07}","name":"Contact number {i}","email":"contact{i}@example.com","company":"Example Incorporated","metadata":{{"account":"ACC-{i:09}","plan":"gold","note":"a line of metadata"}}}}"#
    )
}

fn json_body(agent: &str, n: usize) -> String {
    let rows: Vec<String> = (0..n).map(contact).collect();
    format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{}]}}"#,
        rows.join(",")
    )
}

fn csv_body(n: usize) -> String {
    let mut out = String::from("phoneNumber,name,email,company,account,plan,note\n");
    for i in 0..n {
        out.push_str(&format!(
            "+1201{i:07},Contact number {i},contact{i}@example.com,Example Incorporated,ACC-{i:09},gold,\"a line, of metadata\"\n"
        ));
    }
    out
}

async fn post_json(app: &TestApp, body: reqwest::Body) -> u16 {
    let r = app
        .post("/api/v1/batch")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 202, "{}", r.text().await.unwrap());
    status
}

/// Sends `body` in 16 KiB pieces, pausing between them (a slow client).
fn trickled(body: String, pause: Duration) -> reqwest::Body {
    let pieces: Vec<Vec<u8>> = body
        .into_bytes()
        .chunks(16 * 1024)
        .map(<[u8]>::to_vec)
        .collect();
    let stream = futures_util::stream::unfold(pieces.into_iter(), move |mut it| async move {
        let piece = it.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, std::io::Error>(piece), it))
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test]
async fn bytes_held_stay_a_few_chunks_whatever_the_body() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;

    let body = json_body(&agent, 100_000);
    let size = body.len();
    assert!(size > 18_000_000, "an 18 MB body ({size} bytes)");
    held::reset_peak();
    post_json(&app, reqwest::Body::from(body)).await;
    let fast = held::peak();
    eprintln!("JSON, {size} bytes at full speed: peak held {fast} bytes");
    assert!(fast < BOUND, "held {fast} bytes for a {size}-byte body");

    // A slow client: 3 MB in 16 KiB pieces, 5 ms apart (about 3 MB/s).
    let body = json_body(&agent, 15_000);
    let size = body.len();
    held::reset_peak();
    post_json(&app, trickled(body, Duration::from_millis(5))).await;
    let slow = held::peak();
    eprintln!("JSON, {size} bytes trickled: peak held {slow} bytes");
    assert!(slow < BOUND, "held {slow} bytes while trickled");

    // CSV upload of 100,000 rows.
    let csv = csv_body(100_000);
    let size = csv.len();
    held::reset_peak();
    let form = reqwest::multipart::Form::new()
        .text("batch", format!(r#"{{"agentId":"{agent}","userId":"u"}}"#))
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.into_bytes())
                .file_name("contacts.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let r = app
        .post("/api/v1/batch")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let csv_peak = held::peak();
    eprintln!("CSV, {size} bytes: peak held {csv_peak} bytes");
    assert!(
        csv_peak < BOUND,
        "held {csv_peak} bytes for a {size}-byte CSV"
    );

    // 100,000 rows added to a running job: read as they arrive and spooled until valid.
    let client = app.env.db.get().await.unwrap();
    let ws = testkit::fixtures::WorkspaceIds {
        id: app.workspace_id,
        agent_id: uuid::Uuid::parse_str(&agent).unwrap(),
    };
    let job = testkit::fixtures::Batch::new(ws).insert(&client).await;
    let rows: Vec<String> = (0..100_000).map(contact).collect();
    let body = format!(r#"{{"contacts":[{}]}}"#, rows.join(","));
    let size = body.len();
    held::reset_peak();
    let r = app
        .post(&format!("/api/v1/batch/{job}/contacts"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let appended = held::peak();
    eprintln!("append, {size} bytes: peak held {appended} bytes");
    assert!(
        appended < BOUND,
        "held {appended} bytes for a {size}-byte append"
    );

    // Every byte counted was released once the requests were answered.
    assert_eq!(held::current(), 0);
}
