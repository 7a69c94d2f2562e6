//! The group client against real nodes running in this process (over loopback TCP), and against
//! a fake seed-only server.

use std::time::Duration;

use ditto_core::{Addr, NodeConfig, ReplicaConfig};
use ditto_server::{Client, DriverConfig, GroupClient, GroupOptions, ReadPolicy, TokioNet};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Every wait of a test is bounded by this.
const BOUND: Duration = Duration::from_secs(15);

/// A node running in this process; dropping `stop` (or sending on it) ends it, as a crash would:
/// its connections close and it answers nothing more.
struct Node {
    addr: Addr,
    stop: Option<oneshot::Sender<()>>,
}

impl Node {
    async fn start(contact: Option<&Addr>) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = Addr::local(listener.local_addr().unwrap().port());
        let cfg = NodeConfig::new(ReplicaConfig::new(
            addr.clone(),
            contact.cloned(),
            addr.port().into(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(ditto_server::run_node(
            TokioNet::default(),
            listener,
            cfg,
            DriverConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Node {
            addr,
            stop: Some(stop),
        }
    }

    fn kill(&mut self) {
        self.stop.take();
    }
}

async fn status(addr: &Addr) -> String {
    match Client::connect(addr.port(), Duration::from_secs(2)).await {
        Ok(mut c) => c.request("STATUS").await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls `cond` every few milliseconds until it holds; panics after [`BOUND`].
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    let deadline = Instant::now() + BOUND;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A primary and two backups, every backup in the primary's active set.
async fn three() -> Vec<Node> {
    let primary = Node::start(None).await;
    let p = primary.addr.clone();
    wait_until("the primary serves", || async {
        status(&p).await.contains("role=primary")
    })
    .await;
    let b1 = Node::start(Some(&p)).await;
    let b2 = Node::start(Some(&p)).await;
    let ports = [b1.addr.port(), b2.addr.port()];
    wait_until("both backups are active", || async {
        let s = status(&p).await;
        ports
            .iter()
            .all(|port| s.contains(&format!(":{port}:ditto:active")))
    })
    .await;
    vec![primary, b1, b2]
}

fn options(policy: ReadPolicy) -> GroupOptions {
    GroupOptions::new(policy, Duration::from_secs(2), Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_linearizable_reads_follow_the_primary_through_a_failover() {
    let mut nodes = three().await;
    let addrs: Vec<Addr> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut group = GroupClient::new(vec![addrs[0].clone()], options(ReadPolicy::Primary));
    assert_eq!(group.write(5).await.unwrap(), "ACK");
    assert_eq!(group.is_ditto(), Some(true));
    assert_eq!(group.read().await.unwrap(), "VALUE:5");
    assert!(group.reads_linearizable());
    assert_eq!(group.members().len(), 3, "{:?}", group.members());

    nodes[0].kill();
    assert_eq!(
        group.write(6).await.unwrap(),
        "ACK",
        "the write after the failover"
    );
    assert_ne!(group.server(), &addrs[0]);
    assert_eq!(group.read().await.unwrap(), "VALUE:6");
    let moves = group.take_moves();
    assert!(
        moves.iter().any(|m| m.from == addrs[0] && m.gone),
        "{moves:?}"
    );
    let s = status(group.server()).await;
    assert!(
        s.contains("role=primary"),
        "it talks to the new primary: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_at_a_backup_is_redirected_to_the_primary() {
    let nodes = three().await;
    let backup = nodes[1].addr.clone();
    let mut group = GroupClient::new(vec![backup.clone()], options(ReadPolicy::Primary));
    assert_eq!(group.write(8).await.unwrap(), "ACK");
    assert_eq!(group.read().await.unwrap(), "VALUE:8");
    assert_eq!(group.server(), &nodes[0].addr, "it moved to the primary");
    let moves = group.take_moves();
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert!(moves[0].primary && !moves[0].gone, "{moves:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_client_reads_at_its_backup_and_writes_through_it() {
    let nodes = three().await;
    let backup = nodes[2].addr.clone();
    let mut opts = options(ReadPolicy::Sticky);
    opts.follow = false;
    let mut group = GroupClient::new(vec![backup.clone()], opts);
    assert_eq!(group.write(3).await.unwrap(), "ACK");
    assert_eq!(group.read().await.unwrap(), "VALUE:3");
    assert!(!group.reads_linearizable());
    assert_eq!(group.server(), &backup);
    assert!(group.take_moves().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_are_answered_in_order() {
    let nodes = three().await;
    let mut group = GroupClient::new(vec![nodes[0].addr.clone()], options(ReadPolicy::Sticky));
    let ids = [
        group.submit_write(1).await,
        group.submit_write(2).await,
        group.submit_read().await,
    ];
    for (i, want) in ids.iter().zip(["ACK", "ACK", "VALUE:2"]) {
        let (id, reply) = group.next_reply().await.unwrap();
        assert_eq!((id, reply.as_str()), (*i, want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_a_write_to_a_group_that_is_gone() {
    let mut nodes = three().await;
    let mut group = GroupClient::new(
        vec![nodes[0].addr.clone()],
        GroupOptions::new(
            ReadPolicy::Primary,
            Duration::from_millis(300),
            Duration::from_secs(2),
        ),
    );
    assert_eq!(group.write(1).await.unwrap(), "ACK");
    for n in &mut nodes {
        n.kill();
    }
    let started = Instant::now();
    let err = group.write(2).await.unwrap_err();
    assert!(err.maybe_applied(), "the write was sent: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A seed-only server: answers `READ` and `WRITE:v` on every connection and closes a
/// connection on anything else. Reports every line it read, with the connection's number.
async fn seed_server() -> (Addr, mpsc::UnboundedReceiver<(u32, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = Addr::local(listener.local_addr().unwrap().port());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let value = std::sync::Arc::new(std::sync::Mutex::new(0i64));
        for n in 0u32.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, value) = (tx.clone(), value.clone());
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send((n, line.clone()));
                    let reply = if line == "READ" {
                        format!("VALUE:{}", value.lock().unwrap())
                    } else if let Some(v) = line.strip_prefix("WRITE:").and_then(|v| v.parse().ok())
                    {
                        *value.lock().unwrap() = v;
                        "ACK".to_owned()
                    } else {
                        return;
                    };
                    if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_server_gets_only_seed_lines_on_the_session() {
    let (addr, mut lines) = seed_server().await;
    for policy in [ReadPolicy::Sticky, ReadPolicy::Primary] {
        let mut group = GroupClient::new(vec![addr.clone()], options(policy));
        assert_eq!(group.write(4).await.unwrap(), "ACK");
        assert_eq!(group.write(5).await.unwrap(), "ACK");
        assert_eq!(group.read().await.unwrap(), "VALUE:5");
        assert_eq!(group.is_ditto(), Some(false));
        assert!(!group.reads_linearizable());
    }
    let mut by_conn: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    while let Ok((n, line)) = lines.try_recv() {
        by_conn.entry(n).or_default().push(line);
    }
    let sessions: Vec<&Vec<String>> = by_conn.values().filter(|l| l[0] != "STATUS").collect();
    assert_eq!(sessions.len(), 2, "{by_conn:?}");
    for s in sessions {
        assert_eq!(s, &["WRITE:4", "WRITE:5", "READ"], "{by_conn:?}");
    }
    assert!(
        by_conn
            .values()
            .filter(|l| l[0] == "STATUS")
            .all(|l| l.len() == 1),
        "a probe is one STATUS on its own connection: {by_conn:?}"
    );
}
