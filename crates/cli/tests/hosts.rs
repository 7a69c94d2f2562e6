//! A group whose members sit on different hosts: three network namespaces joined by a bridge,
//! each with an address of its own and one `ditto` server, which the others reach only there.
//! It proves the multi-host start-up that the README describes (`--bind`, or `--bind 0.0.0.0 --advertise`,
//! then `ditto backup B HOST:P`), clients reaching servers by `HOST:PORT`, and failover and
//! rejoining when a host's link is cut and mended.
//!
//! Namespaces need root and `ip netns`. Without them the tests say loudly why and pass, so that
//! a developer's machine need not be root; with `DITTO_REQUIRE_NETNS=1` (which `.ci/run` sets)
//! they fail instead, so that CI cannot skip them unnoticed.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Every node listens on the same port: each has a network of its own, as on separate machines,
/// so members can only be told apart by host.
const PORT: u16 = 7000;

/// The nodes' subnet. It exists only inside the tests' namespaces, whose one link each leads
/// to a bridge in a namespace of its own, so no network of the machine can clash with it.
const SUBNET: &str = "10.77.0";

/// How soon the survivors must have a new primary once the old one is cut off: `protocol.md`
/// promises "a silent primary is replaced by a vote of the majority (within 3 s)".
const FAILOVER_BOUND: Duration = Duration::from_secs(3);

/// How soon a cut-off node must be a backup again once its link is back. Streams that went
/// silent with the link are dropped within a second and opened afresh; kept, they would flow
/// again only at TCP's next retransmission, seconds later for this test's cut of about 5 s,
/// and minutes later for a long one.
const REJOIN_BOUND: Duration = Duration::from_secs(2);

/// Seconds a client waits for the answer to a write at the cut-off node: longer than the 3 s a
/// server holds a write while it knows no primary to forward it to.
const ISOLATED_WRITE_WAIT: &str = "6";

/// The address node `i` (1, 2 or 3) listens on.
/// The lab group's cluster secret.
const LAB_SECRET: &str = "the lab group's cluster secret";

fn addr(i: usize) -> String {
    format!("{SUBNET}.{i}:{PORT}")
}

/// Whether this process runs as root (its effective user id is 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            uids.split_whitespace().nth(1).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Runs `ip ARGS...`, and says what it printed on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let mut command = Command::new("ip");
    command.args(args);
    let out = run_command(command, b"", TIMEOUT);
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            out.stderr.trim()
        ))
    }
}

/// Three namespaces, one per node, each with `lo` and an `eth0` at `10.77.0.i/24`, whose peer
/// is a port of a bridge in a fourth namespace. Dropping it kills the servers it started (by
/// their process ids) and then deletes the namespaces, which takes their links and the bridge
/// with them: also when a test fails half way.
struct Lab {
    /// The nodes' namespaces: node `i` is `nodes[i - 1]`.
    nodes: Vec<String>,
    /// The namespace holding the bridge.
    bridge: String,
    /// Every namespace made so far, deleted on drop.
    made: Vec<String>,
    /// Servers started in the namespaces, node `i` at `servers[i - 1]` once all have started.
    servers: Vec<Server>,
}

impl Lab {
    /// Builds the namespaces, or says why they cannot be built here.
    fn new() -> Result<Lab, String> {
        if !is_root() {
            return Err("not running as root".into());
        }
        if Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err("no `ip` command (iproute2)".into());
        }
        // The process id keeps test binaries running side by side apart; the counter, tests of
        // one binary.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let run = format!(
            "ditto-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            nodes: (1..=3).map(|i| format!("{run}-n{i}")).collect(),
            bridge: format!("{run}-br"),
            made: Vec::new(),
            servers: Vec::new(),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        let bridge = self.bridge.clone();
        ip(&["netns", "add", &bridge])?;
        self.made.push(bridge.clone());
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        for (i, ns) in self.nodes.clone().iter().enumerate() {
            let i = i + 1;
            let peer = format!("peer{i}");
            ip(&["netns", "add", ns])?;
            self.made.push(ns.clone());
            ip(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &peer, "netns",
                &bridge,
            ])?;
            ip(&["-n", &bridge, "link", "set", &peer, "master", "br0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{SUBNET}.{i}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// `ditto ARGS...` as a command that runs inside node `i`'s namespace. `ip netns exec`
    /// execs the program, so the process it starts is `ditto` itself. Every server of the lab
    /// shares a cluster secret, as a group on a network others reach must (docs/security.md).
    fn ditto_in(&self, i: usize, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.nodes[i - 1], bin()])
            .args(args)
            .env("DITTO_SECRET", LAB_SECRET);
        command
    }

    /// Runs `ditto ARGS...` to completion inside node `i`'s namespace.
    fn ditto(&self, i: usize, args: &[&str]) -> Outcome {
        run_command(self.ditto_in(i, args), b"", TIMEOUT)
    }

    /// Starts a server on node `i`: bound to its address alone, or to every address of its
    /// host and advertising its own (`wildcard`), the two ways the README gives.
    fn start(&mut self, i: usize, role_args: &[&str], wildcard: bool) {
        let own = format!("{SUBNET}.{i}");
        let mut args = vec!["--exit-on-stdin-eof"];
        args.extend_from_slice(role_args);
        if wildcard {
            args.extend_from_slice(&["--bind", "0.0.0.0", "--advertise", &own]);
        } else {
            args.extend_from_slice(&["--bind", &own]);
        }
        let name = format!("{} on {}", role_args[0], addr(i));
        let server = Server::spawn_command(&name, PORT, self.ditto_in(i, &args));
        self.servers.push(server);
    }

    /// Starts a primary on node 1 and backups on nodes 2 and 3 that join it by its address
    /// (node 3 on a wildcard address, advertising its own), and waits until the primary has
    /// both in its active set and both follow it.
    fn start_group(&mut self) {
        self.start(1, &["primary", &PORT.to_string()], false);
        for i in 2..=3 {
            self.start(i, &["backup", &PORT.to_string(), &addr(1)], i == 3);
        }
        wait_until("the primary has both backups active", TIMEOUT, || {
            self.assert_running();
            self.status(1, 1).is_some_and(|st| {
                is(&st, "role", "primary") && [2, 3].iter().all(|&b| active_member(&st, &addr(b)))
            })
        });
        for b in 2..=3 {
            wait_until(&format!("node {b} follows node 1"), TIMEOUT, || {
                self.status(b, b).is_some_and(|st| {
                    is(&st, "role", "backup")
                        && is(&st, "status", "normal")
                        && is(&st, "primary", &addr(1))
                })
            });
        }
        // Each member is known by the address it was bound to, everywhere.
        let st = self.status(2, 1).expect("node 1 answers node 2");
        let mut listed: Vec<&str> = st["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["addr"].as_str())
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, [addr(1), addr(2), addr(3)], "{st}");
        for i in 1..=3 {
            let st = self.status(i, i).expect("a member answers");
            assert!(is(&st, "addr", &addr(i)), "node {i} names itself: {st}");
        }
    }

    /// Panics, with its log, if a server has exited.
    fn assert_running(&mut self) {
        for s in &mut self.servers {
            s.assert_running();
        }
    }

    /// What `ditto status --json` run on node `from` says of node `of`, if it answers.
    fn status(&self, from: usize, of: usize) -> Option<Value> {
        let out = self.ditto(from, &["status", &addr(of), "--json", "--timeout", "1"]);
        if !out.success() {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// `ditto client ADDR COMMAND` run on node `from` against node `to`.
    fn client(&self, from: usize, to: usize, command: &str, timeout: &str) -> Outcome {
        self.ditto(from, &["client", &addr(to), command, "--timeout", timeout])
    }

    /// Writes `v` at node `to` from node `from`, asserting the acknowledgement.
    fn write(&self, from: usize, to: usize, v: i64) {
        let out = self.client(from, to, &format!("WRITE:{v}"), "5");
        assert!(
            out.success() && out.stdout == "ACK\n",
            "WRITE:{v} at node {to} from node {from}: {out:?}"
        );
    }

    /// Reads node `to` from node `from`, asserting a value.
    fn read(&self, from: usize, to: usize) -> i64 {
        let out = self.client(from, to, "READ", "5");
        assert!(out.success(), "READ at node {to} from node {from}: {out:?}");
        parse_value(out.stdout.trim()).unwrap_or_else(|| panic!("READ got {out:?}"))
    }

    /// Cuts node `i` off (`up` false) or mends its link, at the bridge's end: the node keeps
    /// its address and can still be reached from inside its own namespace.
    fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.bridge,
            "link",
            "set",
            &format!("peer{i}"),
            state,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The servers first: a namespace lives on while a process runs in it.
        self.servers.clear();
        for ns in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleaning up: {e}");
            }
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes; says which.
fn wait_for_or_last(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `key` of a status object is `value`.
fn is(st: &Value, key: &str, value: &str) -> bool {
    st[key].as_str() == Some(value)
}

/// Whether a status object lists the member at `addr` in the active set.
fn active_member(st: &Value, addr: &str) -> bool {
    st["members"].as_array().is_some_and(|members| {
        members
            .iter()
            .any(|m| m["addr"].as_str() == Some(addr) && m["active"] == Value::Bool(true))
    })
}

/// A lab, or `None` after saying loudly why the test is skipped. Skipping is refused when
/// `DITTO_REQUIRE_NETNS=1`: there the machine is meant to run these tests.
fn lab(test: &str) -> Option<Lab> {
    match Lab::new() {
        Ok(lab) => Some(lab),
        Err(why) if std::env::var("DITTO_REQUIRE_NETNS").is_ok_and(|v| v == "1") => {
            panic!("{test}: cannot build network namespaces ({why}), and DITTO_REQUIRE_NETNS=1")
        }
        Err(why) => {
            // Straight to the terminal, not through the test harness, which would swallow it.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test}: {why}. It needs root and `ip netns`; \
                 DITTO_REQUIRE_NETNS=1 makes this a failure. ***\n"
            );
            None
        }
    }
}

#[test]
fn a_group_on_three_hosts_serves_writes_and_reads_at_every_node() {
    let Some(mut lab) = lab("a_group_on_three_hosts_serves_writes_and_reads_at_every_node") else {
        return;
    };
    lab.start_group();

    // A write at the primary, from another host, is read at every node, from every host.
    lab.write(2, 1, 5);
    for to in 1..=3 {
        for from in 1..=3 {
            assert_eq!(lab.read(from, to), 5, "node {to} read from node {from}");
        }
    }
    // A write at each backup is forwarded to the primary and seen everywhere.
    for (b, v) in [(2, 6), (3, 7)] {
        lab.write(1, b, v);
        for to in 1..=3 {
            assert_eq!(lab.read(to, to), v, "node {to} after the write at node {b}");
        }
    }

    // Bound to its host's address alone, a server is not on that host's loopback.
    let out = lab.ditto(1, &["client", &PORT.to_string(), "READ", "--timeout", "2"]);
    assert!(
        !out.success(),
        "127.0.0.1 reached a server bound to {}: {out:?}",
        addr(1)
    );
}

#[test]
fn a_cut_off_primary_is_replaced_acknowledges_nothing_and_rejoins_as_a_backup() {
    let Some(mut lab) =
        lab("a_cut_off_primary_is_replaced_acknowledges_nothing_and_rejoins_as_a_backup")
    else {
        return;
    };
    let started = Instant::now();
    lab.start_group();
    lab.write(1, 1, 10);
    eprintln!("group up and written after {:?}", started.elapsed());

    // Cut the primary's link: the other two elect one of them within the bound.
    lab.link(1, false);
    let cut = Instant::now();
    let new = wait_for("nodes 2 and 3 elect a new primary", FAILOVER_BOUND, || {
        lab.assert_running();
        [2, 3].into_iter().find(|&i| {
            lab.status(i, i)
                .is_some_and(|st| is(&st, "role", "primary") && is(&st, "status", "normal"))
        })
    });
    eprintln!(
        "node {new} became primary {:?} after the cut",
        cut.elapsed()
    );
    let other = 5 - new;

    // The majority takes writes: at the new primary, and forwarded by the other backup.
    lab.write(other, new, 11);
    lab.write(new, other, 12);
    for i in [new, other] {
        assert_eq!(lab.read(i, i), 12, "node {i}");
    }

    // The cut-off node serves nothing: its reads stop once its lease has lapsed, and a write
    // sent there, from its own host, is refused once it has waited the 3 s `protocol.md` gives
    // for a primary to forward to ("no primary reachable; write not applied"). The client waits
    // longer than that, so the write's fate is settled before the link comes back: a write whose
    // client gave up earlier may still be forwarded and applied once a primary is reachable,
    // which is the unknown outcome that no answer means.
    wait_until(
        "the cut-off node stops answering reads",
        Duration::from_secs(2),
        || {
            let out = lab.client(1, 1, "READ", "1");
            !out.success() && out.stderr.starts_with("ERR:")
        },
    );
    let sent = Instant::now();
    // A tagged line goes out once, as typed: the client's own write would be retried at the
    // group until its deadline, and what is checked here is the cut-off node's own answer.
    let out = lab.client(1, 1, "WRITE:99:77:1", ISOLATED_WRITE_WAIT);
    assert!(
        !out.success() && out.stdout.is_empty() && out.stderr.starts_with("ERR:"),
        "a write at the cut-off node must be refused: {out:?}"
    );
    // Refused outright once it is no primary any more ("not applied"), or, if it still was
    // one without its lease when the write came, appended and then abandoned as it stepped
    // down ("outcome unknown"). Either way it is not acknowledged, and below it never appears:
    // the entry was never committed, and the old primary discards it when it rejoins.
    assert!(
        out.stderr.contains("not applied") || out.stderr.contains("outcome unknown"),
        "a refused write says it was not applied, or that its outcome is unknown: {out:?}"
    );
    eprintln!(
        "the cut-off node refused a write after {:?}",
        sent.elapsed()
    );

    // Mend the link: the old primary sees the newer view, steps down, and catches up as a
    // backup of the new primary, without its unacknowledged write.
    lab.link(1, true);
    let mended = Instant::now();
    let mut seen = (None, None);
    let rejoined = wait_for_or_last(TIMEOUT, || {
        lab.assert_running();
        seen = (lab.status(1, 1), lab.status(new, new));
        seen.0.as_ref().is_some_and(|st| {
            is(st, "role", "backup")
                && is(st, "status", "normal")
                && is(st, "primary", &addr(new))
                && st["value"] == 12
        }) && seen
            .1
            .as_ref()
            .is_some_and(|st| active_member(st, &addr(1)))
    });
    assert!(
        rejoined,
        "node 1 did not rejoin as a backup of node {new} within {TIMEOUT:?}; node 1 says {:?}, \
         node {new} says {:?}",
        seen.0, seen.1
    );
    let took = mended.elapsed();
    eprintln!("node 1 rejoined {took:?} after the link came back");
    assert!(
        took <= REJOIN_BOUND,
        "node 1 took {took:?} to rejoin after the link came back (at most {REJOIN_BOUND:?}): \
         streams cut with the link must be dropped and opened afresh, not left to TCP's \
         retransmission backoff"
    );
    assert_eq!(lab.read(1, 1), 12, "the old primary holds the latest value");

    // And it is a full member again: a write through it reaches every node.
    lab.write(1, 1, 13);
    for i in 1..=3 {
        assert_eq!(lab.read(i, i), 13, "node {i}");
    }
    eprintln!("done after {:?}", started.elapsed());
}
