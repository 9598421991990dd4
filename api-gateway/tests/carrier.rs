//! The carrier status callback route: signature checked, event forwarded to the dial workers.

use api_gateway::config::Config;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use shared::config::Env;
use shared::queue::Stream;
use shared::queue::messages::{CallEventV1, CarrierCallStatus};
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

const PUBLIC: &str = "https://gw.example";

#[tokio::test]
async fn signed_callbacks_become_call_events_and_forged_ones_are_refused() {
    let env = TestEnv::new().await;
    let mut pairs = env.env_vars();
    pairs.push(("GATEWAY_ADDR".into(), "127.0.0.1:0".into()));
    pairs.push(("PUBLIC_URL".into(), PUBLIC.into()));
    pairs.push(("CARRIER_AUTH_TOKEN".into(), "tok".into()));
    let config = Config::from_env(&Env::from_pairs(pairs)).unwrap();
    let shutdown = CancellationToken::new();
    let (addr, _server) = api_gateway::spawn(config, shutdown.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let attempt = uuid::Uuid::new_v4();
    let path = format!("/carrier/status/{attempt}");
    let params: Vec<(String, String)> = [
        ("CallSid", "CA123"),
        ("CallStatus", "busy"),
        ("CallDuration", "0"),
        ("To", "+12015550100"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let signature = shared::twilio::sign("tok", &format!("{PUBLIC}{path}"), &params);
    let post = |sig: String| {
        http.post(format!("http://{addr}{path}"))
            .header("X-Twilio-Signature", sig)
            .form(&params)
            .send()
    };

    assert_eq!(post("forged".into()).await.unwrap().status(), 403);
    assert_eq!(post(signature).await.unwrap().status(), 204);

    let channel = env.broker.channel().await.unwrap();
    let queue = env.broker.topology().queue(Stream::CallEvents);
    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("one event forwarded");
    let event: CallEventV1 = serde_json::from_slice(&message.delivery.data).unwrap();
    message
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(event.attempt_id, attempt);
    assert_eq!(event.call_sid, "CA123");
    assert_eq!(event.status, CarrierCallStatus::Busy);
    assert_eq!(event.duration_secs, Some(0));
    let more = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap();
    assert!(more.is_none(), "the forged callback published nothing");
    shutdown.cancel();
}

/// The broker unavailable while callbacks arrive (it restarts, or the network to it breaks):
/// each callback is stored in PostgreSQL and answered 204 — not 503, after which the carrier
/// would give up on it and the call's slot would stay pinned until the reconciler noticed —
/// and relayed to the call-events queue once the broker is back.
#[tokio::test]
async fn callbacks_the_broker_cannot_take_are_stored_and_relayed() {
    let env = TestEnv::new().await;
    let broker = testkit::proxy::TcpProxy::start("127.0.0.1:5672").await;
    let mut pairs = env.env_vars();
    pairs.retain(|(k, _)| k != "AMQP_URL");
    pairs.push(("AMQP_URL".into(), broker.url(&env.config.amqp_url)));
    pairs.push(("GATEWAY_ADDR".into(), "127.0.0.1:0".into()));
    pairs.push(("PUBLIC_URL".into(), PUBLIC.into()));
    pairs.push(("CARRIER_AUTH_TOKEN".into(), "tok".into()));
    let config = Config::from_env(&Env::from_pairs(pairs)).unwrap();
    let shutdown = CancellationToken::new();
    let (addr, _server) = api_gateway::spawn(config, shutdown.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let send = |attempt: uuid::Uuid, status: &str| {
        let path = format!("/carrier/status/{attempt}");
        let params: Vec<(String, String)> = [
            ("CallSid", format!("CA{}", attempt.simple())),
            ("CallStatus", status.to_owned()),
            ("CallDuration", "3".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let signature = shared::twilio::sign("tok", &format!("{PUBLIC}{path}"), &params);
        http.post(format!("http://{addr}{path}"))
            .header("X-Twilio-Signature", signature)
            .form(&params)
            .send()
    };
    let channel = env.broker.channel().await.unwrap();
    let queue = env.broker.topology().queue(Stream::CallEvents);
    let take = async || {
        let mut got = Vec::new();
        while let Some(m) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            let event: CallEventV1 = serde_json::from_slice(&m.delivery.data).unwrap();
            m.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
            got.push(event);
        }
        got
    };

    // Healthy: straight to the queue.
    let first = uuid::Uuid::new_v4();
    assert_eq!(send(first, "completed").await.unwrap().status(), 204);
    assert_eq!(take().await.len(), 1);

    broker.cut();
    let attempts: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    for a in &attempts {
        let started = std::time::Instant::now();
        let r = send(*a, "completed").await.unwrap();
        assert_eq!(r.status(), 204, "stored, so acknowledged");
        eprintln!(
            "callback answered in {:?} with the broker cut",
            started.elapsed()
        );
    }
    // The same callback again (a carrier retry) is kept once.
    assert_eq!(send(attempts[0], "completed").await.unwrap().status(), 204);
    let stored: i64 = env
        .db
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) AS n FROM carrier_callback_outbox", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(stored, 3);
    assert!(
        take().await.is_empty(),
        "nothing reached the queue meanwhile"
    );

    broker.restore();
    let mut relayed = Vec::new();
    for _ in 0..300 {
        relayed.extend(take().await);
        if relayed.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut got: Vec<uuid::Uuid> = relayed.iter().map(|e| e.attempt_id).collect();
    got.sort();
    let mut want = attempts.clone();
    want.sort();
    assert_eq!(got, want, "every stored callback relayed once");
    assert!(
        relayed
            .iter()
            .all(|e| e.status == CarrierCallStatus::Completed && e.duration_secs == Some(3))
    );
    // Deleted in the relay's transaction, which commits just after the broker's confirm.
    let mut left: i64 = -1;
    for _ in 0..100 {
        left = env
            .db
            .get()
            .await
            .unwrap()
            .query_one("SELECT count(*) AS n FROM carrier_callback_outbox", &[])
            .await
            .unwrap()
            .get("n");
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "relayed rows are deleted");
    assert!(take().await.is_empty(), "and published once");
    shutdown.cancel();
}
