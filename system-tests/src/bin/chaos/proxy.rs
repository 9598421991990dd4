//! A TCP proxy in front of one service, for one role: the suite's network faults.
//!
//! Modes: `Pass` forwards; `Cut` closes every open connection and refuses new ones (accepted and
//! closed at once: a network partition as the client sees it, or a broker restarting);
//! `Http500` answers every request with `500` and closes; `Blackhole` accepts and never
//! answers (a carrier timing out). Switching back to `Pass` ends the blackholed connections.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Drop every connection, refuse new ones.
    Cut,
    /// Answer every HTTP request `500 Internal Server Error`.
    Http500,
    /// Accept, read, never answer.
    Blackhole,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(Mode::Pass);
        let rx = Arc::new(rx);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let rx = (*rx).clone();
                tokio::spawn(handle(client, upstream, rx));
            }
        });
        Ok(Self { addr, mode, task })
    }

    /// Switches the mode (at once, for open connections too).
    pub fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.mode.send(Mode::Cut);
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Cut => drop(client),
        Mode::Http500 => {
            let mut buf = [0u8; 8192];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.read(&mut buf))
                .await;
            let body = r#"{"code":20500,"message":"injected fault","status":500}"#;
            let _ = client
                .write_all(
                    format!(
                        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = client.shutdown().await;
        }
        Mode::Blackhole => {
            let mut buf = [0u8; 8192];
            loop {
                tokio::select! {
                    r = client.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
                    changed = mode.changed() => {
                        if changed.is_err() || *mode.borrow() != Mode::Blackhole { return }
                    }
                }
            }
        }
        Mode::Pass => {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = async { tokio::io::copy(&mut cr, &mut sw).await };
            let down = async { tokio::io::copy(&mut sr, &mut cw).await };
            // Any mode other than Pass ends an open connection (a reset, as a cut cable or a
            // restarting server gives).
            let cut = async {
                loop {
                    if mode.changed().await.is_err() || *mode.borrow() != Mode::Pass {
                        return;
                    }
                }
            };
            // When either side goes (a killed process's socket closes), both do: a half-open
            // upstream would keep, say, a dead consumer's messages until the broker's
            // heartbeat timeout, which no real network does when a process dies.
            tokio::select! {
                _ = up => {}
                _ = down => {}
                () = cut => {}
            }
        }
    }
}
