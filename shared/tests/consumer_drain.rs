//! The drain every worker inherits from `consumer::run`: on shutdown it stops taking messages,
//! lets the handlers already running finish and ack, and hands every prefetched but unstarted
//! message back to the broker. Against the real RabbitMQ: nothing is lost, nothing is handled
//! twice, and the messages handed back are taken by the next consumer (another replica).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::queue::consumer::{self, ConsumerOptions, Disposition, Incoming};
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 30;

fn options(tag: &str) -> ConsumerOptions {
    ConsumerOptions {
        stream: Stream::Ingest,
        prefetch: 8,
        concurrency: 3,
        tag: tag.to_owned(),
        retry: Default::default(),
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

/// A handler that takes `work` per message and records each message it finished.
fn handler(
    seen: Seen,
    started: Arc<tokio::sync::Notify>,
    work: Duration,
) -> impl Fn(Incoming) -> std::pin::Pin<Box<dyn Future<Output = Disposition> + Send>> + Clone {
    move |incoming: Incoming| {
        let seen = seen.clone();
        let started = started.clone();
        Box::pin(async move {
            started.notify_one();
            tokio::time::sleep(work).await;
            let id = incoming.message_id.unwrap_or_default();
            seen.lock().unwrap().push(id);
            Disposition::Ack
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_consumer_loses_nothing_and_repeats_nothing() {
    let env = testkit::TestEnv::new().await;
    let publisher = Publisher::new(env.broker.clone());
    publisher
        .publish_all(
            Stream::Ingest,
            (0..MESSAGES).map(|i| Outgoing::default().with_id(format!("m{i:02}"))),
        )
        .await
        .unwrap();

    // The first replica works slowly and is stopped (as by SIGTERM) after it has started.
    let first: Seen = Arc::default();
    let started = Arc::new(tokio::sync::Notify::new());
    let stop_first = CancellationToken::new();
    let first_task = tokio::spawn(consumer::run(
        env.broker.clone(),
        options("first"),
        stop_first.clone(),
        handler(first.clone(), started.clone(), Duration::from_millis(300)),
    ));
    started.notified().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop_first.cancel();
    tokio::time::timeout(Duration::from_secs(10), first_task)
        .await
        .expect("the drain ends once running handlers finish")
        .unwrap();
    let first = first.lock().unwrap().clone();
    assert!(
        !first.is_empty(),
        "the first replica finished its running work"
    );
    assert!(first.len() < MESSAGES, "it was stopped mid-work");

    // The second replica takes everything else, including what the first had prefetched.
    let second: Seen = Arc::default();
    let stop_second = CancellationToken::new();
    let second_task = tokio::spawn(consumer::run(
        env.broker.clone(),
        options("second"),
        stop_second.clone(),
        handler(second.clone(), Arc::default(), Duration::from_millis(1)),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while first.len() + second.lock().unwrap().len() < MESSAGES
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer: a message handled twice would show up now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_second.cancel();
    second_task.await.unwrap();

    let second = second.lock().unwrap().clone();
    let all: Vec<&String> = first.iter().chain(second.iter()).collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        MESSAGES,
        "nothing lost: {first:?} + {second:?}"
    );
    assert_eq!(
        all.len(),
        MESSAGES,
        "nothing handled twice: {first:?} + {second:?}"
    );
}
