//! A do-not-call list of 1,000,000 numbers goes in with one `text/csv` request, read as it
//! arrives: the body is generated as it is sent, so the peak resident memory this process adds
//! is the gateway's, and it stays far below the body's size. Its own test binary: the peak is
//! process-wide.

mod common;

use std::time::Instant;

use common::spawn_app;
use serde_json::Value;

const NUMBERS: usize = 1_000_000;

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_million_numbers_go_in_with_one_csv_request() {
    let app = spawn_app().await;
    // 10,000 lines a piece, each piece made only when the connection wants it.
    let pieces = (0..NUMBERS / 10_000).map(|p| {
        let mut s = if p == 0 {
            "number\n".to_owned()
        } else {
            String::new()
        };
        for i in p * 10_000..(p + 1) * 10_000 {
            s.push_str(&format!("+1415{:07}\n", i));
        }
        Ok::<_, std::io::Error>(s)
    });
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let before = peak_rss();
    let started = Instant::now();
    let r = app
        .post("/api/dnc")
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let took = started.elapsed();
    let added: Value = r.json().await.unwrap();
    assert_eq!(added["added"], NUMBERS, "{added}");
    let grew = peak_rss().saturating_sub(before);
    eprintln!(
        "1,000,000 numbers ({} MB of CSV) imported in {:.2} s; peak RSS grew {:.1} MB",
        NUMBERS * 13 / 1_000_000,
        took.as_secs_f64(),
        grew as f64 / 1e6
    );
    // A body read whole would be 13 MB, and its numbers as strings several times that.
    assert!(
        grew < 48 * 1024 * 1024,
        "the import held {grew} bytes more at its peak"
    );
    let client = app.env.db.get().await.unwrap();
    let n: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM dnc_numbers WHERE workspace_id = $1",
            &[&app.workspace_id],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, NUMBERS as i64);
}
