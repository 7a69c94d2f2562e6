//! The nemesis: injects one fault at a time into a cluster that `ditto check` manages.
//!
//! Faults are chosen by a seeded random generator: SIGKILL then restart of a backup (or, with
//! `kill-primary`, of the primary), SIGSTOP/SIGCONT of any server (a hung process whose sockets
//! stay open), and partitions made by the proxies on each link: a backup cut off from the primary,
//! a server cut off from its clients, or both. A partition holds the traffic (connections stay
//! open, nothing flows), cuts it (connections reset, new ones refused), drops the connections
//! once (new ones go through), or delays every chunk by 5-50 ms. Every fault is
//! healed before the next one starts, so at most one node is affected at a time.

use std::collections::BTreeMap;
use std::fmt;
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
    Partition,
}

impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kill" => Ok(FaultKind::Kill),
            "kill-primary" => Ok(FaultKind::KillPrimary),
            "pause" => Ok(FaultKind::Pause),
            "partition" => Ok(FaultKind::Partition),
            _ => Err(format!(
                "unknown fault '{s}' (expected kill, kill-primary, pause, partition)"
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

/// The links the nemesis can cut.
#[derive(Debug, Default)]
pub struct Links {
    /// Backup port -> the proxy it joins the primary through.
    pub to_primary: BTreeMap<u16, Proxy>,
    /// Server port -> the proxy its clients dial.
    pub from_clients: BTreeMap<u16, Proxy>,
}

impl Links {
    /// Heals every link.
    pub fn heal(&self) {
        for p in self.to_primary.values().chain(self.from_clients.values()) {
            p.set(Fault::None);
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
        if self.kinds.is_empty() {
            return Ok(events);
        }
        loop {
            tokio::time::sleep(around(&mut rng, self.interval)).await;
            let lasting = around(&mut rng, self.fault_duration);
            if Instant::now() + lasting >= until {
                break;
            }
            let at = start.elapsed();
            let kind = self.kinds[rng.below(self.kinds.len())];
            let what = match kind {
                FaultKind::Kill => {
                    let port = cluster.backups[rng.below(cluster.backups.len().max(1))];
                    cluster.kill(port).await?;
                    tokio::time::sleep(lasting).await;
                    cluster.restart(port).await?;
                    format!("kill -9 backup :{port}, restart")
                }
                FaultKind::KillPrimary => {
                    let port = cluster.primary;
                    cluster.kill(port).await?;
                    tokio::time::sleep(lasting).await;
                    cluster.restart(port).await?;
                    format!("kill -9 primary :{port}, restart")
                }
                FaultKind::Pause => {
                    let mut ports = vec![cluster.primary];
                    ports.extend(&cluster.backups);
                    let port = ports[rng.below(ports.len())];
                    cluster.pause(port)?;
                    tokio::time::sleep(lasting).await;
                    cluster.resume(port)?;
                    format!("pause :{port} (SIGSTOP), resume")
                }
                FaultKind::Partition => {
                    let (mode, mode_name) = match rng.below(4) {
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
                    };
                    let mut choices: Vec<(String, Vec<&Proxy>)> = Vec::new();
                    for (port, proxy) in &links.to_primary {
                        choices.push((format!("backup :{port} <-> primary"), vec![proxy]));
                    }
                    for (port, proxy) in &links.from_clients {
                        let mut both = vec![proxy];
                        both.extend(links.to_primary.get(port));
                        choices.push((format!("clients <-> :{port}"), vec![proxy]));
                        if both.len() == 2 {
                            choices.push((format!(":{port} isolated"), both));
                        }
                    }
                    if choices.is_empty() {
                        continue;
                    }
                    let (name, proxies) = &choices[rng.below(choices.len())];
                    for p in proxies {
                        p.set(mode);
                    }
                    tokio::time::sleep(lasting).await;
                    for p in proxies {
                        p.set(Fault::None);
                    }
                    format!("partition {name} ({mode_name})")
                }
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
