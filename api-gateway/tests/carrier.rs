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
