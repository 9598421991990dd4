//! A role's real binary as a child process, for the few end-to-end tests that need one (SIGTERM
//! drain, OTLP flush at exit): started on a free health port with a test's environment, waited
//! for until `/readyz` answers, signalled, and killed if the test drops it early.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::TestEnv;

/// A running role process; killed on drop if still running.
pub struct RoleProcess {
    child: Child,
    /// Where it serves `/healthz`, `/readyz` and `/metrics`.
    pub health_addr: SocketAddr,
}

impl RoleProcess {
    /// Starts `binary` (e.g. `env!("CARGO_BIN_EXE_ingest-worker")`) with `env`'s services, a free
    /// `HEALTH_ADDR` (and `GATEWAY_ADDR`, for the gateway), and `extra` variables.
    pub fn spawn(binary: &str, env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let health_addr = free_addr();
        let mut command = Command::new(binary);
        command
            .envs(env.env_vars())
            .env("HEALTH_ADDR", health_addr.to_string())
            .env("GATEWAY_ADDR", health_addr.to_string())
            .env("SHUTDOWN_GRACE_SECS", "5")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        Self { child, health_addr }
    }

    /// Waits until `/readyz` answers 200 (panics after `timeout`).
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.health_addr);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the role exited before it was ready: {status}");
            }
            if let Ok(response) = http_get(&url).await
                && response.starts_with("HTTP/1.1 200")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} not ready after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The body of `GET path` on the health port (for example `/metrics`).
    pub async fn get(&self, path: &str) -> String {
        let response = http_get(&format!("http://{}{path}", self.health_addr))
            .await
            .expect("the role answers");
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// Sends SIGTERM, as Kubernetes does before it stops a pod.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (panics after `timeout`) and returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the role did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Ports [`free_addr`] picks from: below Linux's ephemeral range (32768–60999 by default).
/// A port the kernel hands out for `bind(0)` is also one it hands out as the local port of the
/// next outgoing connection, and the suite makes thousands of those (to PostgreSQL, RabbitMQ,
/// Redis): one of them taking the port between the probe and the server's own bind made a role
/// exit with "address in use". Ports below the range are never taken that way.
const PICKED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback address with a port free right now (for a server whose address must be known
/// before it starts, such as a gateway whose `PUBLIC_URL` the callbacks are signed for).
pub fn free_addr() -> SocketAddr {
    let span = u128::from(PICKED_PORTS.end - PICKED_PORTS.start);
    for _ in 0..64 {
        // A random start, so tests running side by side rarely probe the same port.
        let offset = u16::try_from(uuid::Uuid::new_v4().as_u128() % span).expect("below the span");
        let port = PICKED_PORTS.start + offset;
        if let Ok(addr) = TcpListener::bind(("127.0.0.1", port)).and_then(|l| l.local_addr()) {
            return addr;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A minimal HTTP/1.1 GET (no client dependency in the test kit): the raw response.
async fn http_get(url: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(
            format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// The idle drain every worker must pass: started with an OTLP receiver, it becomes ready,
/// names itself in `/metrics`, exits 0 within the grace period after SIGTERM, and its `shutdown`
/// span reaches the collector before it exits.
pub async fn assert_idle_drain(binary: &str, role: &str) {
    let env = TestEnv::new().await;
    let otlp = crate::otlp::OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let mut process = RoleProcess::spawn(
        binary,
        &env,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    process.wait_ready(Duration::from_secs(30)).await;
    let metrics = process.get("/metrics").await;
    assert!(
        metrics.contains(&format!("dialfleet_build_info{{role=\"{role}\"")),
        "{metrics}"
    );

    process.sigterm();
    // SHUTDOWN_GRACE_SECS is 5 for the process; allow start-up noise on a loaded machine.
    let status = process.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    let spans = otlp.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "shutdown" && s.service == role),
        "the drain's span was exported before exit: {spans:?}"
    );
}
