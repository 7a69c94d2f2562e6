//! The configuration a log entry carries: who votes, and who every write waits for.
//!
//! See `docs/replication.md`: `members` (`M`) are the ditto replicas that vote; the active set
//! (`A`) holds the replicas, ditto or seed-only, that hold every committed entry. A ditto member
//! outside `A` (crashed, cut off, or still catching up) still votes once it is back in sync, which
//! is why `M` and `A` are apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::addr::Addr;

/// A member's number in its group, given when the group first admits the member and kept for
/// its address across restarts. Identity is not address: messages name their sender's address,
/// and the configuration maps it to the id that votes and acknowledges.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ReplicaId(pub u32);

/// What kind of replica a configuration lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A ditto replica: votes, may become primary.
    Ditto,
    /// A peer that speaks only the seed's messages: is pushed `UPDATE:v`, never votes.
    Seed,
}

/// One replica a configuration lists.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub addr: Addr,
    pub kind: Kind,
    /// In the active set: every write waits for it.
    pub active: bool,
}

/// The members and active set in force from the log entry that carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Config {
    pub members: BTreeMap<ReplicaId, Member>,
    /// The id the next new address gets.
    pub next_id: u32,
}

impl Config {
    /// A group of one: the founding primary at `addr`, id 1.
    pub fn founding(addr: Addr) -> Config {
        let mut members = BTreeMap::new();
        members.insert(
            ReplicaId(1),
            Member {
                addr,
                kind: Kind::Ditto,
                active: true,
            },
        );
        Config {
            members,
            next_id: 2,
        }
    }

    /// The id of the replica at `addr`, if the configuration lists it.
    pub fn id_of(&self, addr: &Addr) -> Option<ReplicaId> {
        self.members
            .iter()
            .find(|(_, m)| m.addr == *addr)
            .map(|(id, _)| *id)
    }

    pub fn member(&self, id: ReplicaId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The voting members (`M`).
    pub fn voters(&self) -> impl Iterator<Item = (ReplicaId, &Member)> {
        self.members
            .iter()
            .filter(|(_, m)| m.kind == Kind::Ditto)
            .map(|(id, m)| (*id, m))
    }

    /// The active set (`A`).
    pub fn active(&self) -> impl Iterator<Item = (ReplicaId, &Member)> {
        self.members
            .iter()
            .filter(|(_, m)| m.active)
            .map(|(id, m)| (*id, m))
    }

    pub fn is_voter(&self, id: ReplicaId) -> bool {
        self.member(id).is_some_and(|m| m.kind == Kind::Ditto)
    }

    pub fn is_active(&self, id: ReplicaId) -> bool {
        self.member(id).is_some_and(|m| m.active)
    }

    /// How many voters a quorum needs: a majority in a group of three or more; in a group of
    /// one or two, the primary alone (such a group has no automatic failover, so nobody else
    /// can take over behind the primary's back).
    pub fn quorum(&self) -> usize {
        let n = self.voters().count();
        if n >= 3 { n / 2 + 1 } else { 1 }
    }

    /// Whether view changes may start on their own: three or more voters.
    pub fn elects(&self) -> bool {
        self.voters().count() >= 3
    }

    /// Whether the active voters alone form a quorum, which every configuration must keep: a
    /// write that waits for all of the active set then also waits for a quorum.
    pub fn active_has_quorum(&self) -> bool {
        let active_voters = self
            .members
            .values()
            .filter(|m| m.active && m.kind == Kind::Ditto)
            .count();
        active_voters >= self.quorum()
    }

    /// This configuration with `id` out of the active set.
    pub fn deactivated(&self, id: ReplicaId) -> Config {
        let mut next = self.clone();
        if let Some(m) = next.members.get_mut(&id) {
            m.active = false;
        }
        next
    }

    /// This configuration with the replica at `addr` in the active set, admitted as a new
    /// member if it is not one yet.
    pub fn activated(&self, addr: &Addr, kind: Kind) -> Config {
        let mut next = self.clone();
        match next.id_of(addr) {
            Some(id) => {
                if let Some(m) = next.members.get_mut(&id) {
                    m.active = true;
                    m.kind = kind;
                }
            }
            None => {
                let id = ReplicaId(next.next_id);
                next.next_id += 1;
                next.members.insert(
                    id,
                    Member {
                        addr: addr.clone(),
                        kind,
                        active: true,
                    },
                );
            }
        }
        next
    }

    /// The highest index that every active replica and a quorum of voters hold, given what each
    /// holds (`held`, absent = nothing).
    pub fn committed_by(&self, held: impl Fn(ReplicaId) -> u64) -> u64 {
        let all_active = self.active().map(|(id, _)| held(id)).min().unwrap_or(0);
        let mut voters: Vec<u64> = self.voters().map(|(id, _)| held(id)).collect();
        voters.sort_unstable_by(|a, b| b.cmp(a));
        let quorum = voters.get(self.quorum() - 1).copied().unwrap_or(0);
        all_active.min(quorum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Config {
        let mut c = Config::founding(Addr::local(7000));
        c = c.activated(&Addr::local(7001), Kind::Ditto);
        c.activated(&Addr::local(7002), Kind::Ditto)
    }

    #[test]
    fn quorums_follow_the_number_of_voters() {
        let one = Config::founding(Addr::local(7000));
        assert_eq!((one.quorum(), one.elects()), (1, false));
        let two = one.activated(&Addr::local(7001), Kind::Ditto);
        assert_eq!((two.quorum(), two.elects()), (1, false));
        let with_seed = two.activated(&Addr::local(7009), Kind::Seed);
        assert_eq!(with_seed.quorum(), 1, "seed-only backups do not vote");
        let c = three();
        assert_eq!((c.quorum(), c.elects()), (2, true));
        assert_eq!(c.id_of(&Addr::local(7002)), Some(ReplicaId(3)));
    }

    #[test]
    fn commits_need_every_active_replica_and_a_quorum() {
        let c = three();
        let held = [(1, 9), (2, 7), (3, 5)];
        let at = |id: ReplicaId| held.iter().find(|h| h.0 == id.0).map_or(0, |h| h.1);
        assert_eq!(c.committed_by(at), 5, "all of A");
        let c = c.deactivated(ReplicaId(3));
        assert!(c.active_has_quorum());
        assert_eq!(c.committed_by(at), 7);
        let c = c.deactivated(ReplicaId(2));
        assert!(!c.active_has_quorum(), "one of three is no quorum");
    }

    #[test]
    fn a_returning_address_keeps_its_id() {
        let c = three().deactivated(ReplicaId(2));
        let back = c.activated(&Addr::local(7001), Kind::Ditto);
        assert_eq!(back.id_of(&Addr::local(7001)), Some(ReplicaId(2)));
        assert!(back.is_active(ReplicaId(2)));
        assert_eq!(back.next_id, c.next_id);
    }
}
