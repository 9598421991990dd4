//! A TCP proxy a test can cut, to give one process a service outage (a broker restart, a
//! database gone) without disturbing the other tests that share the real service.
//!
//! Point the process at [`TcpProxy::url`] (or [`TcpProxy::addr`]) instead of the service;
//! [`TcpProxy::cut`] drops every open connection and refuses new ones (each is accepted and
//! closed at once: the client sees the peer go away), [`TcpProxy::restore`] lets them through
//! again.
//!
//! [`TcpProxy::start_throttled`] makes the service *slow* instead: every byte the clients send
//! through the proxy (all connections together) passes at a fixed rate, so requests queue in
//! front of the service as they do in front of a Redis or a database short of CPU.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

/// A running proxy to one upstream address; stops when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        Self::start_with(upstream, None).await
    }

    /// Like [`TcpProxy::start`], but what clients send reaches `upstream` at no more than
    /// `bytes_per_sec`, shared by every connection (answers flow freely).
    pub async fn start_throttled(upstream: &str, bytes_per_sec: u32) -> Self {
        Self::start_with(upstream, Some(Arc::new(Pacer::new(bytes_per_sec)))).await
    }

    async fn start_with(upstream: &str, pacer: Option<Arc<Pacer>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let upstream = upstream.to_owned();
        let (gate, cut_rx) = (open.clone(), cuts.subscribe());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !gate.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    match pacer {
                        None => {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.changed() => {}
                            }
                        }
                        Some(pacer) => {
                            let (mut client_rx, mut client_tx) = client.split();
                            let (mut server_rx, mut server_tx) = server.split();
                            tokio::select! {
                                _ = pacer.pump(&mut client_rx, &mut server_tx) => {}
                                _ = tokio::io::copy(&mut server_rx, &mut client_tx) => {}
                                _ = cut.changed() => {}
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            open,
            cuts,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its `host:port` replaced by the proxy's (e.g. an `amqp://` or
    /// `postgres://` URL pointing at the real service).
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}{path}", self.addr)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// The shared byte rate of a throttled proxy.
struct Pacer {
    /// When the link is free again (every connection's bytes queue on it).
    free_at: Mutex<Instant>,
    per_byte: Duration,
}

impl Pacer {
    fn new(bytes_per_sec: u32) -> Self {
        Self {
            free_at: Mutex::new(Instant::now()),
            per_byte: Duration::from_secs(1) / bytes_per_sec.max(1),
        }
    }

    /// Copies `from` to `to`, each chunk only once the link has carried everything before it.
    async fn pump(
        &self,
        from: &mut (impl AsyncReadExt + Unpin),
        to: &mut (impl AsyncWriteExt + Unpin),
    ) -> std::io::Result<()> {
        let mut buf = [0u8; 512];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let done = {
                let mut free_at = self.free_at.lock().await;
                let start = (*free_at).max(Instant::now());
                *free_at = start + self.per_byte * n as u32;
                *free_at
            };
            tokio::time::sleep_until(done).await;
            to.write_all(&buf[..n]).await?;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_point_at_the_proxy() {
        let proxy = TcpProxy::start("127.0.0.1:5672").await;
        let port = proxy.addr().port();
        assert_eq!(
            proxy.url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
        );
        assert_eq!(
            proxy.url("postgres://postgres@127.0.0.1:5432/db"),
            format!("postgres://postgres@127.0.0.1:{port}/db")
        );
    }
}
