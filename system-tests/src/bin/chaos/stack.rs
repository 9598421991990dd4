//! The isolated stack: its own database (created from the migrations; on its own PostgreSQL
//! cluster when a scenario restarts PostgreSQL), queue prefix, Redis prefix, ports and call
//! record, the real binaries as child processes, and a proxy per role in front of every service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::proxy::{Mode, Proxy};

/// The services a role reaches through its proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Postgres,
    Redis,
    Amqp,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub own_postgres: bool,
    pub lease_secs: u64,
    pub keep: bool,
    /// The parts of the HA stack to run (`deploy/local/ha.sh`): "rabbitmq", "postgres",
    /// "redis"; the roles reach those through their several endpoints, with no proxy.
    pub ha_parts: Vec<&'static str>,
    /// PostgreSQL's standby synchronous (HA stack only).
    pub ha_sync: bool,
}

/// One role process, restartable with the same settings and ports.
pub struct Role {
    pub name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    health: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Role {
    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_RUST_LOG").unwrap_or("info".into()),
            )
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", self.binary.display()))?,
        );
        Ok(())
    }

    /// Waits for `/readyz` (the gateway: any HTTP answer on its port).
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let url = format!("http://{}/readyz", self.health);
        let http = reqwest::Client::new();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("{} exited before ready: {status}", self.name);
            }
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?} (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, and reap.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts it again (same ports, same settings) and waits until ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9().await;
        self.spawn().await?;
        self.wait_ready(Duration::from_secs(60)).await
    }
}

/// A PostgreSQL cluster of the suite's own (for the restart scenario).
pub struct OwnPostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl OwnPostgres {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .context("no PostgreSQL binaries under /usr/lib/postgresql")?;
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data)?;
        let port = free_port();
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_root {
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?;
        }
        let pg = Self {
            port,
            dir: dir.to_owned(),
            bin,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )
        .await?;
        pg.ctl("start").await?;
        Ok(pg)
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let path = self.bin.join(tool);
        if as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    async fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut c = self.command(tool);
        c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        let status = tokio::task::spawn_blocking(move || c.status()).await??;
        if !status.success() {
            bail!("{tool} {args:?}: {status}");
        }
        Ok(())
    }

    /// `pg_ctl start|stop|restart`, waiting for it.
    pub async fn ctl(&self, action: &str) -> anyhow::Result<()> {
        let data = self.dir.join("pgdata").to_string_lossy().into_owned();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").to_string_lossy().into_owned();
        let mut args = vec![
            "-D",
            data.as_str(),
            "-w",
            "-l",
            log.as_str(),
            "-o",
            opts.as_str(),
        ];
        if action != "start" {
            args.extend(["-m", "fast"]);
        }
        args.push(action);
        self.run("pg_ctl", &args).await
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("pgdata");
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub struct Stack {
    pub dir: PathBuf,
    pub record: PathBuf,
    pub db_url: String,
    admin_url: String,
    db_name: String,
    pub queue_prefix: String,
    pub redis_prefix: String,
    pub redis_url: String,
    pub amqp_url: String,
    pub gateway: String,
    pub roles: HashMap<String, Role>,
    /// (role, service) → proxy.
    pub proxies: HashMap<(String, Service), Proxy>,
    /// Between the dial workers and the carrier.
    pub carrier_proxy: Proxy,
    /// Between the carrier and the gateway (status callbacks).
    pub callback_proxy: Proxy,
    pub pg: Option<OwnPostgres>,
    pub ha: Option<crate::ha::Ha>,
    pub http: reqwest::Client,
    pub db: tokio_postgres::Client,
    pub opts: Options,
}

/// A free port outside the ephemeral range (see `testkit::process::free_addr`).
fn free_port() -> u16 {
    testkit::process::free_addr().port()
}

fn host_port(url: &str, default: u16) -> anyhow::Result<SocketAddr> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default}")
    };
    use std::net::ToSocketAddrs;
    hostport
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {url}"))
}

/// `url` with its `host:port` replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (user, hostrest) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let path = hostrest.find('/').map(|i| &hostrest[i..]).unwrap_or("");
    format!("{scheme}://{user}{addr}{path}")
}

async fn connect_db(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

pub const ROLES: [&str; 6] = [
    "gateway",
    "ingest",
    "scheduler",
    "dial-1",
    "dial-2",
    "scheduler-2",
];

impl Stack {
    pub async fn start(opts: Options) -> anyhow::Result<Self> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let dir = std::env::temp_dir().join(format!("dialfleet-chaos-{id}"));
        std::fs::create_dir_all(dir.join("logs"))?;
        let record = dir.join("calls.jsonl");
        let pg = if opts.own_postgres {
            Some(OwnPostgres::start(&dir.join("pg")).await?)
        } else {
            None
        };
        let ha = if opts.ha_parts.is_empty() {
            None
        } else {
            match crate::ha::Ha::start(&dir.join("ha"), &opts.ha_parts, opts.ha_sync).await {
                Ok(ha) => Some(ha),
                Err(e) => {
                    // Nothing of this run is left behind when the HA stack cannot start.
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        };
        let ha_pg = ha.as_ref().filter(|h| h.has("postgres"));
        let admin_url = match (&pg, ha_pg) {
            (_, Some(h)) => format!(
                "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
                h.var("HA_PG_PRIMARY_PORT")?,
                h.var("HA_PG_STANDBY_PORT")?
            ),
            (Some(pg), None) => format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port),
            (None, None) => std::env::var("CHAOS_DATABASE_URL")
                .unwrap_or("postgres://postgres@127.0.0.1:5432/postgres".into()),
        };
        let db_name = format!("dialfleet_chaos_{id}");
        {
            let admin = connect_db(&admin_url).await.context("PostgreSQL")?;
            admin
                .batch_execute(&format!("CREATE DATABASE {db_name}"))
                .await?;
        }
        let (server_db, query) = match admin_url.split_once('?') {
            Some((s, q)) => (s, format!("?{q}")),
            None => (admin_url.as_str(), String::new()),
        };
        let db_url = match server_db.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{db_name}{query}"),
            None => bail!("cannot read the database URL {admin_url}"),
        };
        shared::db::migrate::run(&db_url)
            .await
            .context("migrations")?;
        let db = connect_db(&db_url).await?;
        let ha_redis = ha.as_ref().filter(|h| h.has("redis"));
        let redis_url = match ha_redis {
            Some(h) => h.sentinel_primary().await?,
            None => std::env::var("CHAOS_REDIS_URL").unwrap_or("redis://127.0.0.1:6379/".into()),
        };
        let amqp_url = match ha.as_ref().filter(|h| h.has("rabbitmq")) {
            Some(h) => h.var("AMQP_URL")?.to_owned(),
            None => std::env::var("CHAOS_AMQP_URL")
                .unwrap_or(shared::config::DEFAULT_AMQP_URL.to_owned()),
        };
        let ha_services: Vec<Service> = ha
            .as_ref()
            .map(|h| {
                [
                    (Service::Postgres, "postgres"),
                    (Service::Redis, "redis"),
                    (Service::Amqp, "rabbitmq"),
                ]
                .into_iter()
                .filter(|(_, p)| h.has(p))
                .map(|(s, _)| s)
                .collect()
            })
            .unwrap_or_default();
        let sentinels = match ha_redis {
            Some(h) => Some(h.var("REDIS_SENTINELS")?.to_owned()),
            None => None,
        };

        // The carrier simulator, with its proxies.
        let carrier_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let carrier_proxy = Proxy::start(carrier_addr).await?;
        let gateway_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let callback_proxy = Proxy::start(gateway_addr).await?;
        let public_url = format!("http://{}", callback_proxy.addr);
        let queue_prefix = format!("chaos-{id}.");
        let redis_prefix = format!("chaos-{id}:");

        let mut stack = Self {
            dir: dir.clone(),
            record: record.clone(),
            db_url: db_url.clone(),
            admin_url,
            db_name,
            queue_prefix: queue_prefix.clone(),
            redis_prefix: redis_prefix.clone(),
            redis_url: redis_url.clone(),
            amqp_url: amqp_url.clone(),
            gateway: format!("http://{gateway_addr}"),
            roles: HashMap::new(),
            proxies: HashMap::new(),
            carrier_proxy,
            callback_proxy,
            pg,
            ha,
            http: reqwest::Client::new(),
            db,
            opts: opts.clone(),
        };
        let sim_env = vec![
            ("CARRIER_SIM_ADDR".to_owned(), carrier_addr.to_string()),
            (
                "CARRIER_SIM_RECORD".into(),
                record.to_string_lossy().into_owned(),
            ),
            ("CARRIER_SIM_RING_MS".into(), "100".into()),
            ("CARRIER_SIM_TALK_MS".into(), "1000".into()),
            ("CARRIER_SIM_SEED".into(), "7".into()),
        ];
        stack.add_role("carrier-sim", "carrier-sim", carrier_addr, sim_env);
        for name in ROLES {
            let binary = match name {
                "gateway" => "api-gateway",
                "ingest" => "ingest-worker",
                "scheduler" | "scheduler-2" => "scheduler",
                _ => "dial-worker",
            };
            let health: SocketAddr = if name == "gateway" {
                gateway_addr
            } else {
                format!("127.0.0.1:{}", free_port()).parse()?
            };
            let mut env = vec![
                ("QUEUE_PREFIX".to_owned(), queue_prefix.clone()),
                ("REDIS_PREFIX".into(), redis_prefix.clone()),
                ("PUBLIC_URL".into(), public_url.clone()),
                ("HEALTH_ADDR".into(), health.to_string()),
                ("GATEWAY_ADDR".into(), gateway_addr.to_string()),
                ("SHUTDOWN_GRACE_SECS".into(), "5".into()),
                ("CONNECT_TIMEOUT_SECS".into(), "5".into()),
                ("SLOT_LEASE_SECS".into(), opts.lease_secs.to_string()),
                (
                    "CARRIER_URL".into(),
                    format!("http://{}", stack.carrier_proxy.addr),
                ),
                ("DIAL_PREFETCH".into(), "16".into()),
                // Voicemail is an outcome of its own only with answering-machine detection.
                ("MACHINE_DETECTION".into(), "true".into()),
            ];
            for (service, url, default) in [
                (Service::Postgres, db_url.clone(), 5432),
                (Service::Redis, redis_url.clone(), 6379),
                (Service::Amqp, amqp_url.clone(), 5672),
            ] {
                let var = match service {
                    Service::Postgres => "DATABASE_URL",
                    Service::Redis => "REDIS_URL",
                    Service::Amqp => "AMQP_URL",
                };
                // An HA service is reached by its several endpoints directly: the role must
                // find the live node by itself.
                if ha_services.contains(&service) {
                    env.push((var.into(), url.clone()));
                    if let (Service::Redis, Some(s)) = (service, &sentinels) {
                        env.push(("REDIS_SENTINELS".into(), s.clone()));
                        env.push(("REDIS_SENTINEL_MASTER".into(), "dialfleet".into()));
                    }
                    continue;
                }
                let proxy = Proxy::start(host_port(&url, default)?).await?;
                env.push((var.into(), via(&url, proxy.addr)));
                stack.proxies.insert((name.to_owned(), service), proxy);
            }
            stack.add_role(name, binary, health, env);
        }
        let sim = stack.role("carrier-sim");
        sim.spawn().await?;
        sim.wait_ready(Duration::from_secs(30)).await?;
        for name in ["gateway", "ingest", "scheduler", "dial-1", "dial-2"] {
            stack.role(name).spawn().await?;
        }
        for name in ["gateway", "ingest", "scheduler", "dial-1", "dial-2"] {
            stack.role(name).wait_ready(Duration::from_secs(90)).await?;
        }
        Ok(stack)
    }

    fn add_role(
        &mut self,
        name: &str,
        binary: &str,
        health: SocketAddr,
        env: Vec<(String, String)>,
    ) {
        let role = Role {
            name: name.to_owned(),
            binary: self.opts.bin_dir.join(binary),
            env,
            health,
            log: self.dir.join("logs").join(format!("{name}.log")),
            child: None,
        };
        self.roles.insert(name.to_owned(), role);
    }

    pub fn role(&mut self, name: &str) -> &mut Role {
        self.roles.get_mut(name).expect("a known role")
    }

    /// Starts a role that is not running (the second scheduler).
    pub async fn start_role(&mut self, name: &str) -> anyhow::Result<()> {
        let role = self.role(name);
        role.spawn().await?;
        role.wait_ready(Duration::from_secs(60)).await
    }

    /// Sets every proxy of `service` (all roles) to `mode`.
    pub fn set_service(&self, service: Service, mode: Mode) {
        for ((_, s), p) in &self.proxies {
            if *s == service {
                p.set(mode);
            }
        }
    }

    /// Sets every proxy of `role` to `mode`.
    pub fn set_role_net(&self, role: &str, mode: Mode) {
        for ((r, _), p) in &self.proxies {
            if r == role {
                p.set(mode);
            }
        }
    }

    /// Reconnects the suite's own database client (after a PostgreSQL restart).
    pub async fn reconnect_db(&mut self) -> anyhow::Result<()> {
        self.db = connect_db(&self.db_url).await?;
        Ok(())
    }

    /// A workspace of `limit` lines with an agent and a caller ID: (api key, agent id).
    pub async fn workspace(&self, name: &str, limit: u32) -> anyhow::Result<(String, String)> {
        let out = Command::new(self.opts.bin_dir.join("api-gateway"))
            .args([
                "workspace",
                "create",
                "--name",
                name,
                // The suite judges delivery, not calling hours: its numbers are dialed at any
                // hour it runs.
                "--recipient-hours",
                "off",
                "--max-concurrent-dials",
            ])
            .arg(limit.to_string())
            .env("DATABASE_URL", &self.db_url)
            .env("QUEUE_PREFIX", &self.queue_prefix)
            .env("REDIS_PREFIX", &self.redis_prefix)
            .env("RUST_LOG", "warn")
            .output()
            .await?;
        if !out.status.success() {
            bail!("workspace create: {}", String::from_utf8_lossy(&out.stderr));
        }
        let created: Value = serde_json::from_slice(
            out.stdout
                .split(|b| *b == b'\n')
                .find(|l| l.starts_with(b"{"))
                .unwrap_or(&out.stdout),
        )?;
        let key = created["apiKey"].as_str().context("apiKey")?.to_owned();
        // No workspace-wide rate (a new workspace's default is 1 call a second, a new carrier
        // account's): the scenarios' batches set the rates they are about.
        let id: uuid::Uuid = created["workspaceId"]
            .as_str()
            .context("workspaceId")?
            .parse()?;
        self.db
            .execute(
                "UPDATE workspaces SET max_calls_per_second = NULL WHERE id = $1",
                &[&id],
            )
            .await?;
        self.post(
            &key,
            "/api/phone_numbers",
            &json!({"number": "+12015550100"}),
            None,
        )
        .await?;
        let agent = self
            .post(
                &key,
                "/api/agents",
                &json!({"name": "chaos", "answerUrl": "https://agent.example.com/answer"}),
                None,
            )
            .await?;
        let agent = agent.1["id"].as_str().context("agent id")?.to_owned();
        Ok((key, agent))
    }

    pub async fn post(
        &self,
        key: &str,
        path: &str,
        body: &Value,
        idempotency: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.gateway))
            .bearer_auth(key)
            .timeout(Duration::from_secs(120))
            .json(body);
        if let Some(k) = idempotency {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn get(&self, key: &str, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.gateway))
            .bearer_auth(key)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Deletes every Redis key of the stack's prefix (a flush as the stack sees it).
    pub async fn flush_redis_prefix(&self) -> anyhow::Result<usize> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.redis_prefix))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        Ok(keys.len())
    }

    /// A connection to the first node of `amqp_url` (a list on the HA stack) that answers.
    pub async fn amqp_connect(&self) -> anyhow::Result<lapin::Connection> {
        let mut last = None;
        for url in self.amqp_url.split(',') {
            match lapin::Connection::connect(url, Default::default()).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no AMQP URL"), anyhow::Error::from))
    }

    /// Messages waiting in the dead-letter queues.
    pub async fn dead_letters(&self) -> anyhow::Result<u32> {
        let conn = self.amqp_connect().await?;
        let topology = shared::queue::Topology::new(self.queue_prefix.clone());
        let mut total = 0;
        for stream in shared::queue::Stream::ALL {
            let channel = conn.create_channel().await?;
            let q = channel
                .queue_declare(
                    topology.dead_letter_queue(stream).as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    Default::default(),
                )
                .await;
            if let Ok(q) = q {
                total += q.message_count();
            }
        }
        let _ = conn.close(200, "chaos".into()).await;
        Ok(total)
    }

    /// Stops everything it started and removes what it created.
    pub async fn shutdown(mut self) {
        for role in self.roles.values_mut() {
            role.kill9().await;
        }
        if self.opts.keep {
            eprintln!("kept: {}", self.dir.display());
            return;
        }
        if let Ok(admin) = connect_db(&self.admin_url).await {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.db_name
                ))
                .await;
        }
        if let Ok(conn) = self.amqp_connect().await {
            if let Ok(channel) = conn.create_channel().await {
                let _ = shared::queue::Topology::new(self.queue_prefix.clone())
                    .delete(&channel)
                    .await;
            }
            let _ = conn.close(200, "chaos done".into()).await;
        }
        let _ = self.flush_redis_prefix().await;
        self.pg = None;
        self.ha = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
