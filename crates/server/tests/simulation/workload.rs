//! The simulated clients: each is a sequential process that sticks to one server, issues a
//! bounded number of reads and writes, and records what it saw with simulated timestamps.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ditto_check::{Op, OpKind, Outcome};

use ditto_server::{Client, Conclusion};
use turmoil::net::TcpStream;

use crate::faults::Rng;
use crate::net::host_name;

/// How a client paces itself and how long it waits.
#[derive(Clone, Debug)]
pub struct ClientTiming {
    /// Longest wait for a connection; a connect to a crashed host never completes.
    pub connect_timeout: Duration,
    /// Longest wait for a reply; a stream through a healed partition may have stalled for good.
    pub reply_timeout: Duration,
    /// When the client starts, after the servers (backups refuse reads until they joined).
    pub start: std::ops::Range<u64>,
    /// Pause between two operations, in milliseconds.
    pub think: std::ops::Range<u64>,
    /// Extra pause after an operation that did not succeed.
    pub backoff: Duration,
}

/// One client of the workload.
#[derive(Clone, Copy, Debug)]
pub struct ClientSpec {
    pub id: u64,
    pub server: u16,
    pub ops: u64,
    pub seed: u64,
}

/// Nanoseconds of simulated time since the simulation started: the same clock on every host.
pub fn now_ns() -> u64 {
    turmoil::sim_elapsed()
        .expect("called outside a simulated host")
        .as_nanos() as u64
}

/// Runs one client to completion, appending each finished operation to `ops`.
pub async fn client(
    spec: ClientSpec,
    timing: ClientTiming,
    ops: Rc<RefCell<Vec<Op>>>,
) -> turmoil::Result {
    let mut rng = Rng::new(spec.seed ^ spec.id.wrapping_mul(0xD1B5_4A32_D192_ED03));
    tokio::time::sleep(rng.millis(timing.start.clone())).await;
    let mut conn = None;
    for k in 1..=spec.ops {
        let write = rng.chance(0.5);
        // Unique and non-zero: the checkers identify a write by its value.
        let value = ((spec.id as i64) << 32) | k as i64;
        let invoke_ns = now_ns();
        let linearizable = !write && spec.server == crate::PRIMARY;
        let (outcome, read) =
            attempt(&mut conn, spec.server, write, linearizable, value, &timing).await;
        let (kind, value) = if write {
            (OpKind::Write, Some(value))
        } else {
            (OpKind::Read, read)
        };
        ops.borrow_mut().push(Op {
            client: spec.id,
            server: Some(spec.server),
            kind,
            value,
            invoke_ns,
            return_ns: Some(now_ns()),
            outcome,
            // Answered under the primary's lease: only a primary answers READ:linearizable.
            linearizable: linearizable && outcome == Outcome::Ok,
            ..Op::default()
        });
        if outcome != Outcome::Ok {
            // A late reply must never be taken for the next request's: start afresh.
            conn = None;
            tokio::time::sleep(timing.backoff).await;
        }
        tokio::time::sleep(rng.millis(timing.think.clone())).await;
    }
    Ok(())
}

/// Makes one request on the client's connection (opening one if needed) and classifies the
/// answer as `ditto check`'s workload does. A `linearizable` read is `READ:linearizable`,
/// which only a primary under its lease answers.
async fn attempt(
    conn: &mut Option<Client<TcpStream>>,
    server: u16,
    write: bool,
    linearizable: bool,
    value: i64,
    timing: &ClientTiming,
) -> (Outcome, Option<i64>) {
    let client = match conn {
        Some(client) => client,
        None => {
            let dial = TcpStream::connect((host_name(server), server));
            match tokio::time::timeout(timing.connect_timeout, dial).await {
                Ok(Ok(stream)) => conn.insert(Client::new(stream, timing.reply_timeout)),
                // Nothing was sent: the operation definitely did not happen.
                _ => return (Outcome::Fail, None),
            }
        }
    };
    let line = if write {
        format!("WRITE:{value}")
    } else if linearizable {
        "READ:linearizable".to_owned()
    } else {
        "READ".to_owned()
    };
    let answer = client.request(&line).await;
    if answer.is_err() {
        // Timed out or disconnected: the connection's state is unknown; start afresh.
        *conn = None;
    }
    match Conclusion::of(write, &answer) {
        Conclusion::Done(read) => (Outcome::Ok, read),
        Conclusion::NotApplied => (Outcome::Fail, None),
        Conclusion::Unknown => (Outcome::Unknown, None),
    }
}

/// Asks every server in `ports` for its `STATUS` line once the network has been quiet for a
/// while: waits until `done` reaches `clients` and the simulated clock reaches `quiet_from`,
/// then waits `quiet` more, then asks.
pub async fn probe(
    ports: Vec<u16>,
    clients: u64,
    done: Rc<RefCell<u64>>,
    quiet_from: Duration,
    quiet: Duration,
    timing: ClientTiming,
    statuses: Rc<RefCell<Vec<(u16, String)>>>,
) -> turmoil::Result {
    while *done.borrow() < clients || now_ns() < quiet_from.as_nanos() as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(quiet).await;
    for port in ports {
        let status = match status(port, &timing).await {
            Ok(line) => line,
            Err(e) => format!("no STATUS: {e}"),
        };
        statuses.borrow_mut().push((port, status));
    }
    Ok(())
}

async fn status(port: u16, timing: &ClientTiming) -> Result<String, String> {
    let dial = TcpStream::connect((host_name(port), port));
    let stream = tokio::time::timeout(timing.connect_timeout, dial)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut client = Client::new(stream, timing.reply_timeout);
    client.request("STATUS").await.map_err(|e| e.to_string())
}
