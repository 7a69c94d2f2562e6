//! The nemesis: injects one fault at a time into a cluster that `ditto check` manages.
//!
//! Faults are chosen by a seeded random generator among the kinds asked for:
//!
//! * `kill`, `kill-primary`: SIGKILL a backup (or the server that is primary now), restart it
//!   when the fault ends; it recovers from the group.
//! * `pause`, `pause-primary`: SIGSTOP a server (or the primary), SIGCONT when the fault ends: a
//!   hung process whose sockets stay open.
//! * `isolate-primary`: cut the primary off from every other member, while its clients still
//!   reach it: the old primary must stop acknowledging, the others elect a new one.
//! * `partition`: cut a minority of the members off from the majority (clients reach everyone).
//! * `clients`: cut a server off from its clients alone.
//!
//! Links are broken by the proxies in front of the servers (see [`super::proxy`]). A partition
//! *holds* the traffic (connections stay open, nothing flows) or *cuts* it (connections reset,
//! new ones refused); a server's link to its clients may also have its connections *dropped*
//! once (new ones go through), or every chunk *delayed* by 5-50 ms. Every fault is healed before the next one starts, so at most one node (or one
//! minority) is affected at a time.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::proxy::{Fault, Proxy};
use crate::cluster::LocalCluster;
use crate::rng::Rng;

/// A kind of fault the nemesis may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    Kill,
    KillPrimary,
    Pause,
    PausePrimary,
    IsolatePrimary,
    Partition,
    Clients,
    /// Every kind above.
    All,
}

impl FaultKind {
    /// Every kind `All` stands for.
    const EVERY: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::KillPrimary,
        FaultKind::Pause,
        FaultKind::PausePrimary,
        FaultKind::IsolatePrimary,
        FaultKind::Partition,
        FaultKind::Clients,
    ];

    /// The kinds asked for, with `all` spelled out and each kind once.
    pub fn expand(kinds: &[FaultKind]) -> Vec<FaultKind> {
        let mut out: Vec<FaultKind> = kinds
            .iter()
            .flat_map(|&k| match k {
                FaultKind::All => FaultKind::EVERY.to_vec(),
                k => vec![k],
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kill" => Ok(FaultKind::Kill),
            "kill-primary" => Ok(FaultKind::KillPrimary),
            "pause" => Ok(FaultKind::Pause),
            "pause-primary" => Ok(FaultKind::PausePrimary),
            "isolate-primary" => Ok(FaultKind::IsolatePrimary),
            "partition" => Ok(FaultKind::Partition),
            "clients" => Ok(FaultKind::Clients),
            "all" => Ok(FaultKind::All),
            _ => Err(format!(
                "unknown fault '{s}' (expected kill, kill-primary, pause, pause-primary, \
                 isolate-primary, partition, clients or all)"
            )),
        }
    }
}

/// One fault that was injected, for the summary.
#[derive(Clone, Debug)]
pub struct FaultEvent {
    pub what: String,
    pub at: Duration,
    pub lasted: Duration,
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.2}s  {} for {} ms",
            self.at.as_secs_f64(),
            self.what,
            self.lasted.as_millis()
        )
    }
}

/// The address clients connect from: every member connects from an address of its own.
pub const CLIENTS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// One server of the cluster as the nemesis sees it.
#[derive(Debug)]
pub struct Member {
    /// The port it listens on (to kill, pause and ask it).
    pub port: u16,
    /// The proxy in front of it, whose port the group and the clients know it by.
    pub proxy: Proxy,
    /// The address it connects to the other members from.
    pub source: IpAddr,
}

/// The links the nemesis can cut: a proxy in front of each server.
#[derive(Debug, Default)]
pub struct Links {
    pub members: Vec<Member>,
}

impl Links {
    /// Heals every link.
    pub fn heal(&self) {
        for m in &self.members {
            m.proxy.set(Fault::None);
        }
    }

    fn index_of(&self, port: u16) -> Option<usize> {
        self.members.iter().position(|m| m.port == port)
    }

    /// The name the group knows member `i` by: its proxy's port.
    fn name(&self, i: usize) -> String {
        format!(":{}", self.members[i].proxy.port())
    }

    /// Sets `fault` on the links between every member of `side` and every other member, both
    /// ways.
    fn split(&self, side: &[usize], fault: Fault) {
        for &a in side {
            for b in (0..self.members.len()).filter(|b| !side.contains(b)) {
                self.members[a]
                    .proxy
                    .set_from(self.members[b].source, fault);
                self.members[b]
                    .proxy
                    .set_from(self.members[a].source, fault);
            }
        }
    }
}

/// Settings of the nemesis.
#[derive(Clone, Debug)]
pub struct Nemesis {
    pub kinds: Vec<FaultKind>,
    /// Mean time between the end of one fault and the start of the next.
    pub interval: Duration,
    /// Mean duration of a fault.
    pub fault_duration: Duration,
    pub seed: u64,
}

/// Between half and one and a half times `d`.
fn around(rng: &mut Rng, d: Duration) -> Duration {
    d.mul_f64(0.5 + rng.next_f64())
}

/// How long the nemesis looks for the primary before it gives a primary fault up: longer than
/// a failover takes.
const FIND_PRIMARY: Duration = Duration::from_secs(5);

/// The port of the server that is primary now, waiting out a view change.
async fn primary(cluster: &LocalCluster) -> Option<u16> {
    let deadline = Instant::now() + FIND_PRIMARY;
    loop {
        if let Some((port, _)) = cluster.primary_now().await {
            return Some(port);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A random way to partition members, and its name: a partition stops the traffic.
fn partition_fault(rng: &mut Rng) -> (Fault, String) {
    if rng.below(2) == 0 {
        (Fault::Hold, "hold".to_owned())
    } else {
        (Fault::Cut, "cut".to_owned())
    }
}

/// A random way to break a link, and its name: a partition, or connections dropped once, or
/// every chunk delayed.
fn link_fault(rng: &mut Rng) -> (Fault, String) {
    match rng.below(4) {
        0 => (Fault::Hold, "hold".to_owned()),
        1 => (Fault::Cut, "cut".to_owned()),
        2 => (Fault::Drop, "drop connections".to_owned()),
        _ => {
            let ms = 5 + rng.below(46) as u64;
            (
                Fault::Delay(Duration::from_millis(ms)),
                format!("delay {ms} ms"),
            )
        }
    }
}

impl Nemesis {
    /// Injects faults until `until`, then heals everything. Returns what it did.
    pub async fn run(
        &self,
        cluster: &mut LocalCluster,
        links: &Links,
        start: Instant,
        until: Instant,
    ) -> anyhow::Result<Vec<FaultEvent>> {
        let mut rng = Rng::new(self.seed ^ 0x5EED);
        let mut events = Vec::new();
        let kinds = FaultKind::expand(&self.kinds);
        if kinds.is_empty() || links.members.is_empty() {
            return Ok(events);
        }
        loop {
            tokio::time::sleep(around(&mut rng, self.interval)).await;
            let lasting = around(&mut rng, self.fault_duration);
            if Instant::now() + lasting >= until {
                break;
            }
            let kind = kinds[rng.below(kinds.len())];
            let primary = match kind {
                FaultKind::Kill
                | FaultKind::KillPrimary
                | FaultKind::PausePrimary
                | FaultKind::IsolatePrimary => match primary(cluster).await {
                    Some(port) => links.index_of(port),
                    None => None,
                },
                _ => None,
            };
            let n = links.members.len();
            let at = start.elapsed();
            let what = match kind {
                FaultKind::Kill => {
                    let others: Vec<usize> = (0..n).filter(|&i| Some(i) != primary).collect();
                    if others.is_empty() || primary.is_none() {
                        continue;
                    }
                    let i = others[rng.below(others.len())];
                    let port = links.members[i].port;
                    cluster.kill(port).await?;
                    tokio::time::sleep(lasting).await;
                    cluster.restart(port).await?;
                    format!("kill -9 backup {}, restart", links.name(i))
                }
                FaultKind::KillPrimary => {
                    let Some(i) = primary else { continue };
                    let port = links.members[i].port;
                    cluster.kill(port).await?;
                    tokio::time::sleep(lasting).await;
                    cluster.restart(port).await?;
                    format!("kill -9 primary {}, restart", links.name(i))
                }
                FaultKind::Pause | FaultKind::PausePrimary => {
                    let i = match (kind, primary) {
                        (FaultKind::PausePrimary, Some(i)) => i,
                        (FaultKind::PausePrimary, None) => continue,
                        _ => rng.below(n),
                    };
                    let port = links.members[i].port;
                    cluster.pause(port)?;
                    tokio::time::sleep(lasting).await;
                    cluster.resume(port)?;
                    let who = if Some(i) == primary { "primary " } else { "" };
                    format!("pause {who}{} (SIGSTOP), resume", links.name(i))
                }
                FaultKind::IsolatePrimary => {
                    let Some(i) = primary else { continue };
                    let (fault, mode) = partition_fault(&mut rng);
                    links.split(&[i], fault);
                    tokio::time::sleep(lasting).await;
                    links.heal();
                    format!(
                        "isolate primary {} from the other members ({mode})",
                        links.name(i)
                    )
                }
                FaultKind::Partition => {
                    // A minority: fewer than half of the members, at least one.
                    let size = 1 + rng.below(((n - 1) / 2).max(1));
                    let mut side: Vec<usize> = (0..n).collect();
                    for k in 0..n {
                        side.swap(k, k + rng.below(n - k));
                    }
                    side.truncate(size);
                    side.sort();
                    let (fault, mode) = partition_fault(&mut rng);
                    links.split(&side, fault);
                    tokio::time::sleep(lasting).await;
                    links.heal();
                    let names: Vec<String> = side.iter().map(|&i| links.name(i)).collect();
                    format!("partition {} from the majority ({mode})", names.join(" "))
                }
                FaultKind::Clients => {
                    let i = rng.below(n);
                    let (fault, mode) = link_fault(&mut rng);
                    links.members[i].proxy.set_from(CLIENTS, fault);
                    tokio::time::sleep(lasting).await;
                    links.heal();
                    format!("partition clients <-> {} ({mode})", links.name(i))
                }
                FaultKind::All => unreachable!("expanded above"),
            };
            events.push(FaultEvent {
                what,
                at,
                lasted: lasting,
            });
        }
        links.heal();
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_stands_for_every_kind_once() {
        let kinds = FaultKind::expand(&[FaultKind::Kill, FaultKind::All, FaultKind::Pause]);
        assert_eq!(kinds, FaultKind::EVERY.to_vec());
        assert_eq!(
            FaultKind::expand(&[FaultKind::Pause, FaultKind::Pause]),
            vec![FaultKind::Pause]
        );
        assert_eq!("all".parse::<FaultKind>(), Ok(FaultKind::All));
        assert!("explode".parse::<FaultKind>().is_err());
    }
}
