//! Each service given as several endpoints (docs/high-availability.md): the roles find the live
//! one. The failovers themselves (a node killed, a standby promoted, a Sentinel promotion) are
//! judged across the real binaries by the chaos suite's HA scenarios.

use std::process::Stdio;
use std::time::Duration;

use shared::config::{Env, ServiceConfig};
use shared::queue::Broker;
use shared::redis_conn::Redis;

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    testkit::process::free_addr().port()
}

#[tokio::test]
async fn a_list_of_amqp_nodes_skips_a_dead_one() {
    let env = testkit::TestEnv::new().await;
    let mut cfg = env.config.clone();
    cfg.amqp_url = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f,{}",
        dead_port(),
        env.config.amqp_url
    );
    let broker = Broker::connect(&cfg, "several-nodes")
        .await
        .expect("the live node is found");
    assert!(broker.channel().await.is_ok());
    assert!(broker.is_connected().await);
}

#[tokio::test]
async fn the_redis_primary_is_found_through_a_sentinel() {
    let Ok(dir) = tempdir() else { return };
    let (primary, sentinel) = (dead_port(), dead_port());
    let Ok(redis) = tokio::process::Command::new("redis-server")
        .args(["--port", &primary.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    else {
        eprintln!("SKIPPED: redis-server is not installed");
        return;
    };
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel}\nbind 127.0.0.1\ndir {}\nsentinel monitor dialfleet 127.0.0.1 {primary} 1\n",
            dir.display()
        ),
    )
    .unwrap();
    let sentinel_process = tokio::process::Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let env = Env::from_pairs([
        // Nothing listens here: only the Sentinel's answer can lead to the primary.
        ("REDIS_URL", format!("redis://127.0.0.1:{}/", dead_port())),
        (
            "REDIS_SENTINELS",
            format!(
                "redis://127.0.0.1:{},redis://127.0.0.1:{sentinel}",
                dead_port()
            ),
        ),
        ("REDIS_SENTINEL_MASTER", "dialfleet".to_owned()),
        ("REDIS_PREFIX", "several-nodes:".to_owned()),
        ("CONNECT_TIMEOUT_SECS", "20".to_owned()),
    ]);
    let cfg = ServiceConfig::from_env(&env).unwrap();
    let r = Redis::connect(&cfg)
        .await
        .expect("found through the Sentinel");
    assert_eq!(
        r.target().primary_url().await.unwrap(),
        format!("redis://127.0.0.1:{primary}/")
    );
    let mut conn = r.conn.clone();
    let _: () = redis::cmd("SET")
        .arg(r.key("k"))
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(r.key("k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, "v");
    drop((redis, sentinel_process));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "dialfleet-sentinel-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
