//! The high-availability stack of the HA scenarios: `deploy/local/ha.sh` run with a state
//! directory of the suite's own and ports of its own, only the parts a scenario needs (a
//! RabbitMQ cluster, a PostgreSQL primary and standby, Redis with Sentinels), and the faults on
//! it: a node's processes killed with SIGKILL, a standby promoted, WAL shipping paused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::Command;

/// A running HA stack; stopped (by `ha-down.sh`, by its pids) when dropped.
pub struct Ha {
    pub state: PathBuf,
    /// `endpoints.env`, as written by `ha.sh`.
    pub env: HashMap<String, String>,
    pub parts: Vec<String>,
    script_dir: PathBuf,
}

/// `deploy/local` of this checkout (or `CHAOS_HA_DIR`).
fn script_dir() -> PathBuf {
    std::env::var_os("CHAOS_HA_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local"),
        PathBuf::from,
    )
}

/// Runs `program args` as the postgres user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

async fn run(mut c: std::process::Command) -> anyhow::Result<String> {
    c.stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || c.output()).await??;
    if !out.status.success() {
        bail!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Ha {
    /// Starts the `parts` ("rabbitmq", "postgres", "redis") under `state`; PostgreSQL with
    /// synchronous replication when `sync`.
    pub async fn start(state: &Path, parts: &[&str], sync: bool) -> anyhow::Result<Self> {
        let skip: Vec<&str> = ["rabbitmq", "postgres", "redis"]
            .into_iter()
            .filter(|p| !parts.contains(p))
            .collect();
        // Ports of this run's own: BASE+10 … BASE+52.
        let base = 20_000 + (std::process::id() % 200) * 60;
        let dir = script_dir();
        let out = Command::new(dir.join("ha.sh"))
            .env("HA_STATE", state)
            .env("HA_PORT_BASE", base.to_string())
            .env("HA_PG_SYNC", if sync { "on" } else { "off" })
            .env("HA_SKIP", skip.join(","))
            .stdin(Stdio::null())
            .output()
            .await
            .context("running deploy/local/ha.sh")?;
        let mut ha = Self {
            state: state.to_owned(),
            env: HashMap::new(),
            parts: parts.iter().map(|s| s.to_string()).collect(),
            script_dir: dir,
        };
        if !out.status.success() {
            bail!(
                "deploy/local/ha.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = std::fs::read_to_string(state.join("endpoints.env"))?;
        ha.env = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(ha)
    }

    pub fn has(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }

    pub fn var(&self, name: &str) -> anyhow::Result<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("{name} missing from endpoints.env"))
    }

    fn pid(&self, name: &str) -> anyhow::Result<i32> {
        let text = std::fs::read_to_string(self.state.join("pids").join(format!("{name}.pid")))
            .with_context(|| format!("pid of {name}"))?;
        Ok(text.trim().parse()?)
    }

    /// SIGKILL to the process of pid file `name` and every process under it: the node is lost.
    pub async fn kill9(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.pid(name)?;
        let mut all = vec![pid];
        let mut i = 0;
        while i < all.len() {
            let out = run({
                let mut c = std::process::Command::new("pgrep");
                c.args(["-P", &all[i].to_string()]);
                c
            })
            .await
            .unwrap_or_default();
            all.extend(out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            i += 1;
        }
        let mut c = std::process::Command::new("kill");
        c.arg("-9").args(all.iter().map(|p| p.to_string()));
        run(c).await.map(|_| ())
    }

    // --- RabbitMQ ---------------------------------------------------------------------------

    fn rabbitmqctl(&self, node: u32) -> std::process::Command {
        let mut c = std::process::Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl");
        c.env("HOME", self.state.join("rabbitmq/home"))
            .env(
                "RABBITMQ_CONF_ENV_FILE",
                self.state.join("rabbitmq/rabbitmq-env.conf"),
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .args(["-q", "-n", &format!("dfha{node}@localhost")]);
        c
    }

    /// The node (1–3) holding the leader of quorum queue `queue`, asked of `via`.
    pub async fn rabbit_leader(&self, queue: &str, via: u32) -> anyhow::Result<u32> {
        let mut c = self.rabbitmqctl(via);
        c.args(["list_queues", "name", "leader", "--no-table-headers"]);
        let out = run(c).await?;
        let leader = out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(name, _)| name.trim() == queue)
            .map(|(_, leader)| leader.trim().to_owned())
            .with_context(|| format!("queue {queue} not listed"))?;
        leader
            .strip_prefix("dfha")
            .and_then(|r| r.split('@').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("leader {leader}"))
    }

    // --- PostgreSQL -------------------------------------------------------------------------

    fn pg_tool(&self, tool: &str) -> anyhow::Result<std::process::Command> {
        Ok(as_postgres(&Path::new(self.var("HA_PG_BIN")?).join(tool)))
    }

    /// `pg_ctl promote` of the standby, as an operator (or Patroni) would, waiting for it.
    pub async fn pg_promote(&self) -> anyhow::Result<()> {
        let mut c = self.pg_tool("pg_ctl")?;
        c.arg("-D")
            .arg(self.state.join("postgres/standby"))
            .args(["-w", "-t", "60", "promote"]);
        run(c).await.map(|_| ())
    }

    /// Runs `sql` on the primary (by its own port) and returns the output of `psql -At`.
    pub async fn pg_primary(&self, sql: &str) -> anyhow::Result<String> {
        let mut c = self.pg_tool("psql")?;
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            self.var("HA_PG_PRIMARY_PORT")?,
            "-U",
            "postgres",
            "-Atc",
            sql,
        ]);
        run(c).await
    }

    /// SIGSTOP to the primary's WAL senders: commits go on (asynchronous replication) while
    /// nothing more reaches the standby, which makes the loss window deterministic.
    pub async fn pg_pause_wal_senders(&self) -> anyhow::Result<usize> {
        let pids = self
            .pg_primary("SELECT pid FROM pg_stat_replication")
            .await?;
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            bail!("no WAL sender on the primary");
        }
        let mut c = std::process::Command::new("kill");
        c.arg("-STOP").args(&pids);
        run(c).await?;
        Ok(pids.len())
    }

    // --- Redis ------------------------------------------------------------------------------

    /// The primary the Sentinels name now, as a URL.
    pub async fn sentinel_primary(&self) -> anyhow::Result<String> {
        let mut last = None;
        for s in self.var("REDIS_SENTINELS")?.split(',') {
            let client = redis::Client::open(s)?;
            let asked = async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg("dialfleet")
                    .query_async::<(String, u16)>(&mut conn)
                    .await
            };
            match tokio::time::timeout(std::time::Duration::from_secs(1), asked).await {
                Ok(Ok((host, port))) => return Ok(format!("redis://{host}:{port}/")),
                Ok(Err(e)) => last = Some(anyhow::anyhow!(e)),
                Err(_) => last = Some(anyhow::anyhow!("Sentinel {s} timed out")),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no Sentinel")))
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.script_dir.join("ha-down.sh"))
            .env("HA_STATE", &self.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
