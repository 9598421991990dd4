//! Private instances of PostgreSQL and Redis for the tests that stop or restart a service:
//! each on its own port and data directory, so the machine's shared services, and every other
//! test running beside it, are never disturbed. Dropping one stops it and removes its data.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the cluster is initialised
//! and run as the `postgres` user (the Debian package's), with its data under a fresh
//! directory that user owns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::free_addr;

/// A PostgreSQL cluster of its own (trust auth, `127.0.0.1`, a free port).
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    /// Initialises and starts a cluster. Panics with the reason when it cannot.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!("dialfleet-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("data directory");
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap_or_default()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot hand {dir:?} to the postgres user");
        }
        let data = dir.join("data");
        let initdb = bin.join("initdb");
        let out = as_postgres(&[
            initdb.to_str().unwrap_or_default(),
            "-D",
            data.to_str().unwrap_or_default(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Self {
            dir,
            port: free_addr().port(),
            bin,
        };
        pg.pg_ctl("start");
        pg
    }

    /// The URL of its `postgres` database, as [`crate::Services::database_admin_url`].
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it (fast: open connections are cut, as in a crash seen from the clients).
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts it again on the same port and data.
    pub fn resume(&self) {
        self.pg_ctl("start");
    }

    fn pg_ctl(&self, action: &str) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let mut args = vec![
            pg_ctl.to_str().unwrap_or_default(),
            "-D",
            data.to_str().unwrap_or_default(),
            "-l",
            log.to_str().unwrap_or_default(),
            "-w",
            "-t",
            "30",
        ];
        if action == "start" {
            args.extend(["-o", options.as_str()]);
        } else {
            args.extend(["-m", "fast"]);
        }
        args.push(action);
        let out = as_postgres(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl {action} failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let _ = as_postgres(&[
            pg_ctl.to_str().unwrap_or_default(),
            "-D",
            data.to_str().unwrap_or_default(),
            "-m",
            "immediate",
            "stop",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server of its own (no persistence, a free port).
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server and waits until it answers.
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_addr().port(),
            child: None,
        };
        redis.resume();
        redis
    }

    /// Its URL, as [`crate::Services::redis_url`].
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it: every key is gone, and connections are refused until [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn resume(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                port.as_str(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        wait_for_port(self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// The newest installed PostgreSQL's binaries (Debian's layout), or the ones on `PATH`.
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root).ok().and_then(|dirs| {
        dirs.filter_map(|d| d.ok())
            .filter_map(|d| d.file_name().to_str()?.parse::<u32>().ok())
            .max()
    });
    match newest {
        Some(v) => root.join(v.to_string()).join("bin"),
        None => PathBuf::new(),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `args` as a command, run as the `postgres` user when we are root.
fn as_postgres(args: &[&str]) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).args(args);
        cmd
    } else {
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..]);
        cmd
    }
}
