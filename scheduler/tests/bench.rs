//! Release throughput, printed rather than asserted (ignored by default):
//!
//! ```text
//! cargo nextest run -p scheduler --run-ignored only -E 'binary(bench)' --no-capture
//! ```
//!
//! 10 workspaces × 2 jobs × 2,500 contacts (50,000), each job `maxConcurrentDials` 500 (bound
//! 1,000), each workspace limit 1,000 (bound 2,000); two schedulers race; a stand-in dial
//! worker finishes whatever it receives in bulk.

mod fixtures;

use std::time::{Duration, Instant};

use fixtures::*;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use scheduler::release_once;
use shared::queue::Stream;
use shared::queue::messages::DialV1;
use testkit::TestEnv;
use uuid::Uuid;

#[tokio::test]
#[ignore = "benchmark: prints figures"]
async fn release_throughput() {
    let env = TestEnv::new().await;
    let now = at("2025-06-09T15:00:00Z");
    let (workspaces, jobs_per, contacts) = (10, 2, 2_500);
    for _ in 0..workspaces {
        let ws = workspace(&env.db, 1_000).await;
        for _ in 0..jobs_per {
            job(
                &env.db,
                new_job(ws).max_concurrent_dials(500),
                contacts,
                now,
            )
            .await;
        }
    }
    let total = (workspaces * jobs_per * contacts) as usize;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut schedulers = Vec::new();
    for _ in 0..2 {
        let db = shared::db::connect(&env.config).await.unwrap();
        let publisher = publisher(&env);
        let stop = stop.clone();
        schedulers.push(tokio::spawn(async move {
            let (mut ticks, mut busy, mut released) = (0u32, Duration::ZERO, 0u64);
            while !stop.is_cancelled() {
                let started = Instant::now();
                released += release_once(&db, &publisher, &settings(), now)
                    .await
                    .unwrap()
                    .released;
                busy += started.elapsed();
                ticks += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ticks, busy, released)
        }));
    }

    let started = Instant::now();
    let channel = env.broker.channel().await.unwrap();
    channel
        .basic_qos(4_000, BasicQosOptions::default())
        .await
        .unwrap();
    let queue = env.broker.topology().queue(Stream::Dial);
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let client = env.db.get().await.unwrap();
    let mut received = 0usize;
    while received < total {
        let mut ids = Vec::new();
        // Take what has arrived (up to 2,000), waiting briefly for the first.
        while ids.len() < 2_000 {
            let wait = if ids.is_empty() { 50 } else { 1 };
            match tokio::time::timeout(Duration::from_millis(wait), consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    let m: DialV1 = serde_json::from_slice(&delivery.data).unwrap();
                    ids.push(m.contact_id);
                }
                _ => break,
            }
        }
        received += ids.len();
        if !ids.is_empty() {
            client
                .execute(
                    "UPDATE contacts SET state = 'completed', last_outcome = 'completed' WHERE id = ANY($1)",
                    &[&ids as &Vec<Uuid>],
                )
                .await
                .unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(600), "too slow");
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let mut tick_stats = Vec::new();
    for s in schedulers {
        tick_stats.push(s.await.unwrap());
    }
    println!(
        "released {total} contacts in {:.2} s: {:.0} releases/s (two schedulers, {} build)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for (i, (ticks, busy, released)) in tick_stats.iter().enumerate() {
        println!(
            "scheduler {i}: released {released} in {ticks} ticks, mean release_once {:.1} ms",
            busy.as_secs_f64() * 1000.0 / f64::from((*ticks).max(1))
        );
    }
}

#[tokio::test]
#[ignore = "benchmark: prints figures"]
async fn publish_only() {
    use shared::queue::publisher::Outgoing;
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    for n in [500usize, 5_000] {
        let messages: Vec<Outgoing> = (0..n)
            .map(|i| {
                Outgoing::json(&DialV1 {
                    batch_id: Uuid::nil(),
                    workspace_id: Uuid::nil(),
                    contact_id: Uuid::new_v4(),
                    attempt_no: i as u32,
                })
                .unwrap()
            })
            .collect();
        let started = Instant::now();
        publisher.publish_all(Stream::Dial, messages).await.unwrap();
        println!("publish_all {n}: {:?}", started.elapsed());
    }
}
