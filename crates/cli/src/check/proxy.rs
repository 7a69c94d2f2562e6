//! A fault-injecting TCP proxy, placed by `ditto check` on every link it wants to break.
//!
//! Each proxy listens on a loopback port and forwards every connection to one target port. Its
//! [`Fault`] can be changed at any time and applies to existing and new connections alike, to
//! all of them or to those from one source address: servers that `ditto check` starts connect
//! to each other from addresses of their own (`--source-addr`), so the proxy in front of a
//! server can cut it off from one peer and not from another, or from its clients alone.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the proxy waits to reach its target before giving up on a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the proxy does to the traffic through it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    #[default]
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

/// The fault of every source, with a generation per change so that setting `Drop` twice resets
/// connections twice, and a change for one source leaves the others' connections alone.
#[derive(Clone, Debug, Default)]
struct Faults {
    /// For connections from a source not in `by_source`.
    all: (Fault, u64),
    by_source: BTreeMap<IpAddr, (Fault, u64)>,
    generation: u64,
}

impl Faults {
    /// The fault, and its generation, of a connection from `source`.
    fn of(&self, source: IpAddr) -> (Fault, u64) {
        self.by_source.get(&source).copied().unwrap_or(self.all)
    }
}

/// A running proxy. Dropping it stops the proxy and closes its connections.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    faults: watch::Sender<Faults>,
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
        let (faults, watch) = watch::channel(Faults::default());
        let task = tokio::spawn(accept_loop(listener, target, watch));
        Ok(Proxy { port, faults, task })
    }

    /// The port clients of this proxy connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets the fault of every connection, whatever its source.
    pub fn set(&self, fault: Fault) {
        self.faults.send_modify(|f| {
            f.generation += 1;
            f.all = (fault, f.generation);
            f.by_source.clear();
        });
    }

    /// Sets the fault of the connections from `source` (the address they come from), leaving
    /// the others as they are.
    pub fn set_from(&self, source: IpAddr, fault: Fault) {
        self.faults.send_modify(|f| {
            f.generation += 1;
            let generation = f.generation;
            f.by_source.insert(source, (fault, generation));
        });
    }
}

async fn accept_loop(listener: TcpListener, target: u16, watch: watch::Receiver<Faults>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        while tasks.try_join_next().is_some() {}
        let link = Link {
            source: peer.ip().to_canonical(),
            watch: watch.clone(),
        };
        tasks.spawn(async move {
            let _ = connection(client, target, link).await;
        });
    }
}

/// What one connection sees of the proxy's faults: those of its source.
#[derive(Clone)]
struct Link {
    source: IpAddr,
    watch: watch::Receiver<Faults>,
}

impl Link {
    fn now(&self) -> (Fault, u64) {
        self.watch.borrow().of(self.source)
    }

    /// Waits for any change of the faults; false once the proxy is gone.
    async fn changed(&mut self) -> bool {
        self.watch.changed().await.is_ok()
    }

    /// Waits while the fault is `Hold`; returns the fault that ended the wait.
    async fn past_hold(&mut self) -> Fault {
        loop {
            let fault = self.watch.borrow_and_update().of(self.source).0;
            if fault != Fault::Hold {
                return fault;
            }
            if !self.changed().await {
                return Fault::Cut;
            }
        }
    }
}

async fn connection(client: TcpStream, target: u16, mut link: Link) -> io::Result<()> {
    if matches!(link.past_hold().await, Fault::Cut) {
        return Ok(());
    }
    let generation = link.now().1;
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
        _ = pump(cr, sw, link.clone(), generation) => {}
        _ = pump(sr, cw, link, generation) => {}
    }
    Ok(())
}

/// Copies one direction, applying the fault to every chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: Link,
    generation: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => read?,
            changed = link.changed() => {
                if !changed {
                    return Ok(());
                }
                let (fault, g) = link.now();
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
        match link.past_hold().await {
            Fault::Cut | Fault::Drop if link.now().1 != generation => return Ok(()),
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

    /// A client of the proxy connected from `source`.
    async fn client_from(source: &str, port: u16, t: Duration) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        let stream = socket
            .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .unwrap();
        Client::new(stream, t)
    }

    #[tokio::test]
    async fn a_fault_for_one_source_leaves_the_others_alone() {
        let target = echo_server().await;
        let proxy = Proxy::start(target).await.unwrap();
        let t = Duration::from_millis(300);
        let mut peer = client_from("127.0.0.7", proxy.port(), t).await;
        let mut other = client_from("127.0.0.1", proxy.port(), t).await;
        assert_eq!(peer.request("a").await.unwrap(), "ECHO:a");
        assert_eq!(other.request("b").await.unwrap(), "ECHO:b");

        proxy.set_from("127.0.0.7".parse().unwrap(), Fault::Cut);
        assert!(peer.request("c").await.is_err(), "the cut source is reset");
        assert_eq!(
            other.request("d").await.unwrap(),
            "ECHO:d",
            "another source's connection goes on"
        );
        let mut again = client_from("127.0.0.7", proxy.port(), t).await;
        assert!(
            again.request("e").await.is_err(),
            "and the cut source is refused"
        );
        let mut fresh = client_from("127.0.0.1", proxy.port(), t).await;
        assert_eq!(fresh.request("f").await.unwrap(), "ECHO:f");

        proxy.set(Fault::None);
        let mut healed = client_from("127.0.0.7", proxy.port(), t).await;
        assert_eq!(healed.request("g").await.unwrap(), "ECHO:g");
    }
}
