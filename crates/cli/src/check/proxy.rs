//! A fault-injecting TCP proxy, placed by `ditto check` on every link it wants to break.
//!
//! Each proxy listens on a loopback port and forwards every connection to one target port. Its
//! [`Fault`] can be changed at any time and applies to existing and new connections alike.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the proxy waits to reach its target before giving up on a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the proxy does to the traffic through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    None,
    /// Hold every chunk this long before forwarding it.
    Delay(Duration),
    /// A partition: connections stay open but nothing flows either way until the fault changes
    /// (then what was held is delivered, as TCP would retransmit it). New connections stall too.
    Hold,
    /// Reset every connection now, and refuse new ones while the fault lasts.
    Cut,
    /// Reset every connection now; new ones go through.
    Drop,
}

/// A running proxy. Dropping it stops the proxy and closes its connections.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    fault: watch::Sender<(Fault, u64)>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy on a free loopback port that forwards to `target`.
    pub async fn start(target: u16) -> io::Result<Proxy> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let port = listener.local_addr()?.port();
        let (fault, watch) = watch::channel((Fault::None, 0));
        let task = tokio::spawn(accept_loop(listener, target, watch));
        Ok(Proxy { port, fault, task })
    }

    /// The port clients of this proxy connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes the fault. Each change gets a new generation, so that setting `Drop` twice resets
    /// connections twice.
    pub fn set(&self, fault: Fault) {
        self.fault.send_modify(|(f, generation)| {
            *f = fault;
            *generation += 1;
        });
    }
}

async fn accept_loop(listener: TcpListener, target: u16, watch: watch::Receiver<(Fault, u64)>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        while tasks.try_join_next().is_some() {}
        let watch = watch.clone();
        tasks.spawn(async move {
            let _ = connection(client, target, watch).await;
        });
    }
}

/// Waits while the fault is `Hold`; returns the fault that ended the wait.
async fn past_hold(watch: &mut watch::Receiver<(Fault, u64)>) -> Fault {
    loop {
        let fault = watch.borrow_and_update().0;
        if fault != Fault::Hold {
            return fault;
        }
        if watch.changed().await.is_err() {
            return Fault::Cut;
        }
    }
}

async fn connection(
    client: TcpStream,
    target: u16,
    mut watch: watch::Receiver<(Fault, u64)>,
) -> io::Result<()> {
    if matches!(past_hold(&mut watch).await, Fault::Cut) {
        return Ok(());
    }
    let generation = watch.borrow().1;
    let server = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, target))),
    )
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction ending (or a reset) ends both: dropping the halves closes the sockets.
    tokio::select! {
        _ = pump(cr, sw, watch.clone(), generation) => {}
        _ = pump(sr, cw, watch, generation) => {}
    }
    Ok(())
}

/// Copies one direction, applying the fault to every chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut watch: watch::Receiver<(Fault, u64)>,
    generation: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => read?,
            changed = watch.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let (fault, g) = *watch.borrow_and_update();
                if g != generation && matches!(fault, Fault::Cut | Fault::Drop) {
                    return Ok(());
                }
                continue;
            }
        };
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        match past_hold(&mut watch).await {
            Fault::Cut | Fault::Drop if watch.borrow().1 != generation => return Ok(()),
            Fault::Delay(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        to.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ditto_server::Client;

    /// An echo-ish line server: answers every line with `ECHO:<line>`.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = tokio::io::BufReader::new(r);
                    let mut line = String::new();
                    use tokio::io::AsyncBufReadExt;
                    while lines.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let reply = format!("ECHO:{}\n", line.trim_end());
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        line.clear();
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn forwards_holds_cuts_and_heals() {
        let target = echo_server().await;
        let proxy = Proxy::start(target).await.unwrap();
        let t = Duration::from_millis(300);
        let mut c = Client::connect(proxy.port(), t).await.unwrap();
        assert_eq!(c.request("a").await.unwrap(), "ECHO:a");

        proxy.set(Fault::Hold);
        c.send("b").await.unwrap();
        assert!(c.recv().await.is_err(), "a held link must not deliver");
        proxy.set(Fault::None);
        assert_eq!(
            c.recv().await.unwrap(),
            "ECHO:b",
            "held data arrives after healing"
        );

        proxy.set(Fault::Cut);
        assert!(
            c.request("c").await.is_err(),
            "a cut link resets connections"
        );
        let refused = match Client::connect(proxy.port(), t).await {
            Ok(mut c2) => c2.request("d").await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "a cut link refuses new connections");
        proxy.set(Fault::None);
        let mut c3 = Client::connect(proxy.port(), t).await.unwrap();
        assert_eq!(c3.request("e").await.unwrap(), "ECHO:e");

        proxy.set(Fault::Drop);
        assert!(
            c3.request("f").await.is_err(),
            "drop resets existing connections"
        );
        let mut c4 = Client::connect(proxy.port(), t).await.unwrap();
        assert_eq!(
            c4.request("g").await.unwrap(),
            "ECHO:g",
            "but lets new ones through"
        );
    }
}
