//! The fault schedules, drawn from a seeded random stream before a simulation starts.
//!
//! A schedule is a list of timed [`Fault`]s that the simulation loop applies when the simulated
//! clock reaches them. Every fault that breaks something is paired with the one that heals it
//! (partition/repair, hold/release, crash/restart) unless the scenario says the damage is
//! permanent, and two faults never overlap on the same link or host, so that turmoil's
//! link states (a `release` would also heal a partition) never interfere.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use crate::harness::LATENCY;
use crate::net::host_name;
use crate::{BACKUPS, PRIMARY, SERVERS};

/// A small deterministic random stream (splitmix64): the same seed gives the same choices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration in `ms` milliseconds.
    pub fn millis(&mut self, ms: Range<u64>) -> Duration {
        Duration::from_millis(ms.start + self.below(ms.end - ms.start))
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Two hosts whose link a network fault affects, in both directions.
pub type Link = (String, String);

/// One thing done to the simulated world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Drop every segment sent on these links (TCP streams over them stall for good).
    Partition(Vec<Link>),
    /// Let segments through these links again.
    Repair(Vec<Link>),
    /// Queue every segment on these links.
    Hold(Vec<Link>),
    /// Deliver what was held and let segments through again.
    Release(Vec<Link>),
    /// Stop the host dead, as a machine that loses power: it answers nothing, and what it had
    /// in flight and the FIN or RST its sockets would send are lost (see [`Fault::apply`]).
    Crash(String),
    /// Start the host's software afresh, as a restarted process (its state is lost); a host
    /// still running is stopped dead first, as by [`Fault::Crash`].
    Restart(String),
    /// Make every segment on these links take between the two latencies.
    Slow(Vec<Link>, Range<Duration>),
}

impl Fault {
    /// Carries the fault out on `sim`, whose hosts are `hosts`.
    ///
    /// A crash is silent on purpose. When turmoil stops a host it drops the host's tasks, whose
    /// sockets then send FIN or RST segments, in an order set by tokio's task ids, which are
    /// numbered process-wide: the same seed would then draw segment latencies in another order
    /// in another process (or in a second run), and a printed seed would no longer replay. So
    /// the host is cut off from everyone while it stops, and those segments are dropped, which
    /// draws nothing from the seeded generator.
    pub fn apply(&self, sim: &mut turmoil::Sim<'_>, hosts: &[String]) {
        let silently =
            |sim: &mut turmoil::Sim<'_>, host: &str, stop: fn(&mut turmoil::Sim<'_>, &str)| {
                let others: Vec<&str> = hosts.iter().map(|h| &**h).filter(|h| *h != host).collect();
                for other in &others {
                    sim.partition(host, *other);
                }
                stop(sim, host);
                for other in &others {
                    sim.repair(host, *other);
                }
            };
        match self {
            Fault::Partition(links) => links.iter().for_each(|(a, b)| sim.partition(&**a, &**b)),
            Fault::Repair(links) => links.iter().for_each(|(a, b)| sim.repair(&**a, &**b)),
            Fault::Hold(links) => links.iter().for_each(|(a, b)| sim.hold(&**a, &**b)),
            Fault::Release(links) => links.iter().for_each(|(a, b)| sim.release(&**a, &**b)),
            Fault::Crash(host) => silently(sim, host, |sim, h| sim.crash(h)),
            Fault::Restart(host) if sim.is_host_running(&**host) => {
                silently(sim, host, |sim, h| sim.bounce(h))
            }
            Fault::Restart(host) => sim.bounce(&**host),
            Fault::Slow(links, latency) => {
                for (a, b) in links {
                    sim.set_link_latency(&**a, &**b, latency.start);
                    sim.set_link_max_message_latency(&**a, &**b, latency.end);
                }
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, links) = match self {
            Fault::Partition(l) => ("partition", l),
            Fault::Repair(l) => ("repair", l),
            Fault::Hold(l) => ("hold", l),
            Fault::Release(l) => ("release", l),
            Fault::Crash(h) => return write!(f, "crash {h}"),
            Fault::Restart(h) => return write!(f, "restart {h}"),
            Fault::Slow(l, latency) => {
                let links: Vec<String> = l.iter().map(|(a, b)| format!("{a}<->{b}")).collect();
                return write!(f, "latency {latency:?} on {}", links.join(", "));
            }
        };
        let links: Vec<String> = links.iter().map(|(a, b)| format!("{a}<->{b}")).collect();
        write!(f, "{verb} {}", links.join(", "))
    }
}

/// A fault and when to apply it, in simulated time since the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    pub at: Duration,
    pub fault: Fault,
}

impl fmt::Display for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8.3} s  {}", self.at.as_secs_f64(), self.fault)
    }
}

/// Which faults a scenario injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMix {
    /// Only the random latency of every segment.
    None,
    /// Partitions and holds of links between servers and between clients and their server.
    Network,
    /// Crashes (with or without a later restart) and instant restarts of backups.
    BackupCrashes,
    /// Both of the above in one run.
    NetworkAndBackupCrashes,
    /// One crash of the primary, never restarted.
    PrimaryCrash,
    /// One crash of the primary followed by a restart (which loses its state).
    PrimaryRestart,
    /// Links between the primary and a backup that become slow (hundreds of milliseconds per
    /// segment) for seconds, while backups restart and so must join again over them.
    SlowLinks,
}

/// Draws the schedule of `mix` for a run whose client hosts are `clients` (host name and the
/// port of their server). Faults start within `window`, which is cut into `rounds` equal parts
/// that each get a full draw of the mix (except the primary's single crash, drawn once over
/// the whole window), so longer runs get as dense a schedule as short ones.
pub fn schedule(
    mix: FaultMix,
    rng: &mut Rng,
    clients: &[(String, u16)],
    window: Range<Duration>,
    rounds: u32,
) -> Vec<Timed> {
    let mut hosts: Vec<String> = SERVERS.iter().map(|&p| host_name(p)).collect();
    hosts.extend(clients.iter().map(|(c, _)| c.clone()));
    let mut plan = Plan::new(hosts);
    let ms = |w: &Range<Duration>| w.start.as_millis() as u64..w.end.as_millis() as u64;
    let part = (window.end - window.start) / rounds;
    let parts: Vec<Range<u64>> = (0..rounds)
        .map(|r| ms(&(window.start + part * r..window.start + part * (r + 1))))
        .collect();
    match mix {
        FaultMix::None => {}
        FaultMix::Network => {
            for ms in parts {
                network(&mut plan, rng, clients, ms);
            }
        }
        FaultMix::BackupCrashes => {
            for ms in parts {
                backup_crashes(&mut plan, rng, ms);
            }
        }
        FaultMix::NetworkAndBackupCrashes => {
            for ms in parts {
                network(&mut plan, rng, clients, ms.clone());
                backup_crashes(&mut plan, rng, ms);
            }
        }
        FaultMix::PrimaryCrash => {
            let at = rng.millis(ms(&window));
            let host = host_name(PRIMARY);
            plan.add_forever(plan.host(&host), at, Fault::Crash(host));
        }
        FaultMix::PrimaryRestart => {
            let host = host_name(PRIMARY);
            let at = rng.millis(ms(&window));
            let back = at + rng.millis(50..500);
            let restart = Some((back, Fault::Restart(host.clone())));
            plan.add(plan.host(&host), at, Fault::Crash(host), restart);
        }
        FaultMix::SlowLinks => {
            for ms in parts {
                slow_links(&mut plan, rng, ms);
            }
        }
    }
    plan.events.sort_by_key(|t| t.at);
    plan.events
}

/// 1–6 partitions or holds, each of 50 ms to 1.5 s.
fn network(plan: &mut Plan, rng: &mut Rng, clients: &[(String, u16)], ms: Range<u64>) {
    for _ in 0..1 + rng.below(6) {
        let links = network_target(rng, clients);
        let at = rng.millis(ms.clone());
        let heal_at = at + rng.millis(50..1_500);
        let (cut, heal) = if rng.chance(0.5) {
            (
                Fault::Partition(links.clone()),
                Fault::Repair(links.clone()),
            )
        } else {
            (Fault::Hold(links.clone()), Fault::Release(links.clone()))
        };
        let claims = links.iter().map(|(a, b)| Claim::link(a, b)).collect();
        plan.add(claims, at, cut, Some((heal_at, heal)));
    }
}

/// 1–4 backup faults: an instant restart, a crash and a restart 50 ms to 1.5 s later, or a
/// crash for good.
fn backup_crashes(plan: &mut Plan, rng: &mut Rng, ms: Range<u64>) {
    for _ in 0..1 + rng.below(4) {
        let host = host_name(*rng.pick(&BACKUPS));
        let at = rng.millis(ms.clone());
        let claims = plan.host(&host);
        match rng.below(6) {
            0 | 1 => plan.add(claims, at, Fault::Restart(host), None),
            2..=4 => {
                let back = at + rng.millis(50..1_500);
                let restart = Some((back, Fault::Restart(host.clone())));
                plan.add(claims, at, Fault::Crash(host), restart);
            }
            _ => plan.add_forever(claims, at, Fault::Crash(host)),
        }
    }
}

/// 1–2 slow spells of 2–8 s on primary–backup links, starting in the first half of the
/// window (or up to 0.2 s before it), and 1–3 instant backup restarts, which make the backups
/// join again, possibly over a slow link. A slow link takes 140–260 ms per segment, so that
/// three trips (connecting, sending `JOIN` or `SYNC`, receiving the answer) take about as
/// long as the backup waits for an answer (`sync_timeout_ms`, 500 ms here): some attempts make
/// it and some do not, while a connect alone always fits in the driver's connect timeout.
fn slow_links(plan: &mut Plan, rng: &mut Rng, ms: Range<u64>) {
    for _ in 0..1 + rng.below(2) {
        let backup = host_name(*rng.pick(&BACKUPS));
        let links = vec![(host_name(PRIMARY), backup.clone())];
        let at = rng.millis(ms.start.saturating_sub(200)..ms.start.midpoint(ms.end));
        let lo = rng.millis(140..200);
        let slow = lo..lo + Duration::from_millis(60);
        let heal = Some((
            at + rng.millis(2_000..8_000),
            Fault::Slow(links.clone(), LATENCY),
        ));
        // Partitions and crashes leave a link's latency alone, so a slow spell claims only
        // the link's latency.
        let claim = Claim::exclusive(format!("latency of {backup}"));
        plan.add(vec![claim], at, Fault::Slow(links, slow), heal);
    }
    for _ in 0..1 + rng.below(3) {
        let host = host_name(*rng.pick(&BACKUPS));
        let claims = plan.host(&host);
        plan.add(claims, rng.millis(ms.clone()), Fault::Restart(host), None);
    }
}

/// The links a network fault cuts: one server–server link, one client–server link, or every
/// link of one server (an isolated node).
fn network_target(rng: &mut Rng, clients: &[(String, u16)]) -> Vec<Link> {
    let servers: Vec<String> = SERVERS.iter().map(|&p| host_name(p)).collect();
    match rng.below(3) {
        0 => {
            let a = rng.below(3) as usize;
            let b = (a + 1 + rng.below(2) as usize) % 3;
            vec![(servers[a].clone(), servers[b].clone())]
        }
        1 => {
            let (client, port) = rng.pick(clients);
            vec![(client.clone(), host_name(*port))]
        }
        _ => {
            let port = *rng.pick(&SERVERS);
            let me = host_name(port);
            let peers = servers.iter().filter(|s| **s != me).cloned();
            let own_clients = clients
                .iter()
                .filter(|(_, p)| *p == port)
                .map(|(c, _)| c.clone());
            peers
                .chain(own_clients)
                .map(|other| (me.clone(), other))
                .collect()
        }
    }
}

/// Something a fault uses for a while: a host or a link, alone or shared with other faults.
struct Claim {
    key: String,
    exclusive: bool,
}

impl Claim {
    fn exclusive(key: String) -> Claim {
        Claim {
            key,
            exclusive: true,
        }
    }

    /// The link between `a` and `b`, whichever way round they are named.
    fn link(a: &str, b: &str) -> Claim {
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        Claim::exclusive(format!("{a}<->{b}"))
    }
}

/// Builds a schedule in which no two faults get in each other's way.
///
/// A partition or hold takes its links for itself. A crash or restart takes its host, and
/// shares every link of that host with other crashes: it cuts and then repairs them all (see
/// [`Fault::apply`]), which would end a partition or a hold on one of them early and unseen.
struct Plan {
    hosts: Vec<String>,
    events: Vec<Timed>,
    /// For each claimed key, the intervals it is claimed for and whether exclusively.
    busy: BTreeMap<String, Vec<(Range<Duration>, bool)>>,
}

impl Plan {
    fn new(hosts: Vec<String>) -> Plan {
        Plan {
            hosts,
            events: Vec::new(),
            busy: BTreeMap::new(),
        }
    }

    /// What crashing or restarting `host` claims.
    fn host(&self, host: &str) -> Vec<Claim> {
        let links = (self.hosts.iter().filter(|h| *h != host)).map(|other| Claim {
            exclusive: false,
            ..Claim::link(host, other)
        });
        std::iter::once(Claim::exclusive(host.to_owned()))
            .chain(links)
            .collect()
    }

    /// Adds `cut` at `at` and its `heal`, unless a claim conflicts with one made for some time
    /// in between.
    fn add(
        &mut self,
        claims: Vec<Claim>,
        at: Duration,
        cut: Fault,
        heal: Option<(Duration, Fault)>,
    ) {
        let end = heal.as_ref().map_or(at, |(t, _)| *t);
        // A little slack so a heal and the next cut never land in the same instant.
        if self.claim(claims, at..end + Duration::from_millis(1)) {
            self.events.push(Timed { at, fault: cut });
            if let Some((at, fault)) = heal {
                self.events.push(Timed { at, fault });
            }
        }
    }

    /// Adds a fault that is never healed.
    fn add_forever(&mut self, claims: Vec<Claim>, at: Duration, cut: Fault) {
        if self.claim(claims, at..Duration::MAX) {
            self.events.push(Timed { at, fault: cut });
        }
    }

    /// Records `claims` for `span` and returns true, or returns false if one conflicts.
    fn claim(&mut self, claims: Vec<Claim>, span: Range<Duration>) -> bool {
        let conflicts = |c: &Claim| {
            self.busy.get(&c.key).is_some_and(|taken| {
                taken.iter().any(|(r, exclusive)| {
                    (c.exclusive || *exclusive) && r.start < span.end && span.start < r.end
                })
            })
        };
        if claims.iter().any(conflicts) {
            return false;
        }
        for c in claims {
            self.busy
                .entry(c.key)
                .or_default()
                .push((span.clone(), c.exclusive));
        }
        true
    }
}
