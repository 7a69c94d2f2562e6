//! Deterministic simulation of a ditto cluster: the real servers under a seeded, faulty network.
//!
//! # What runs
//!
//! Each test runs many *seeds*; a seed is one complete simulation under
//! [turmoil](https://docs.rs/turmoil/0.7). The unchanged driver and core (`run_node`, the
//! node with its view-based replica) run on simulated hosts: the primary on `n7000`, backups on `n7001` and `n7002`,
//! reaching each other through [`ditto_server::Net`] implemented over turmoil's TCP (a port
//! names a host). The client host `c7000` runs the two clients of the primary, `c7001` and
//! `c7002` those of the backups; each client sticks to its server and makes 30 requests through
//! [`ditto_server::Client`], reads and writes of unique non-zero values (`client << 32 | k`), a
//! few tens of milliseconds apart. Each operation is recorded with its simulated invoke and
//! return times and the outcome the client saw: `ok`; `fail` when nothing can have happened (a
//! read that failed, a refused write, no connection); `unknown` for a write that timed out, lost
//! its connection, or was refused with a reason saying "unknown". After anything but `ok` a
//! client reconnects.
//!
//! Every run's history is checked with the checkers `ditto check` uses: it must be sequentially
//! consistent (`seqcst::check`), and the writes together with the reads a primary answered
//! under its lease (the clients of `n7000` read with `READ:linearizable`, answered by no one
//! else) must not violate linearizability (`linearizable::check`), through every fault.
//!
//! # Fault model
//!
//! Everything random comes from the seed: turmoil's choices (each segment's latency, 5 to 40 ms
//! from an exponential distribution, so segments of different connections overtake each other;
//! the order in which hosts run in each 5 ms step) and this file's (client pacing and operation
//! mix, fault schedule). Faults start between 0.2 s and 3.5 s of simulated time.
//!
//! - A *partition* drops every segment on a link; a *hold* queues them and delivers them on
//!   release. Each lasts 50 ms to 1.5 s and cuts one server–server link, one client host's link
//!   to its server, or every link of one server. turmoil does not retransmit, so a TCP stream
//!   through a partition may stall for good after the repair; unless the servers detect dead
//!   streams (by heartbeats), a run may then stay blocked until its clients give up. Only
//!   consistency is required.
//! - A *crash* stops a host dead, as a machine losing power: it answers nothing, and what it had
//!   in flight is lost, including the FIN or RST its sockets would send (turmoil sends those in
//!   an order that depends on tokio's process-wide task ids, which would make replays inexact).
//!   A *restart* runs the host's software afresh with nothing but its configuration, like a
//!   restarted process without durable state.
//!
//! The tests:
//!
//! - `no_faults_converges`: latency only. Every operation must succeed, and once the clients are
//!   done and the network has been quiet for two seconds, every backup must have applied exactly
//!   the primary's entries and hold its value.
//! - `partitions_and_holds`: 1–6 partitions or holds.
//! - `backup_crashes_and_restarts`: 1–4 backup faults, each an instant restart, a crash with a
//!   restart 50 ms to 1.5 s later, or a crash for good.
//! - `partitions_holds_and_backup_crashes`: both of the above in one run.
//! - `primary_crash`: one crash of the primary, never restarted; backups keep serving reads,
//!   writes fail or time out.
//! - `same_seed_same_history`: a seed run twice gives the identical history.
//! - `primary_restart_loses_acknowledged_writes` (ignored, a known gap): the primary crashes and
//!   restarts; with no durability it comes back with value 0 in a new epoch, so acknowledged
//!   writes are lost (it answers reads with 0, and backups that rejoin it resync to 0). It
//!   asserts that the checker catches this.
//! - `slow_links_while_backups_rejoin`: slow primary–backup links (140–260 ms per segment) while
//!   backups restart and join again over them; the replicas must converge at the end.
//! - `backup_settled_for_seed_serves_an_empty_replica` and
//!   `backup_settled_for_seed_acks_writes_it_never_applies`: single seeds that showed how a
//!   backup settling for the seed protocol broke consistency, kept as regression tests for the
//!   fixes; see those tests.
//!
//! # Replaying a seed
//!
//! A failure names its seed and the command that replays it, e.g.
//!
//! ```text
//! DITTO_SIM_SEED=17 cargo test -p ditto-server --test simulation partitions_and_holds -- --exact
//! ```
//!
//! With `DITTO_SIM_SEED` set a test runs only that seed and prints the fault schedule, the
//! verdicts and the whole history (add `--nocapture` to see them when it passes). The history
//! is also written as JSON lines to `target/tmp/simulation/<test>-<seed>.jsonl`, next to an
//! HTML timeline; `cargo run -p ditto -- check --history <file>` re-checks it.
//! `DITTO_SIM_LOG=info` (any `tracing` filter) adds the servers' logs, stamped with the host
//! and the simulated time. Simulated time and every random choice come from the seed, so the
//! replay is exact.
//!
//! # More seeds, longer runs
//!
//! `DITTO_SIM_SEEDS=<n>` makes any test run seeds `0..n`. The `long_*` variants (ignored by
//! default) run 2,000 seeds of workloads four times longer (120 requests per client), with
//! four rounds of faults over a window four times as long:
//!
//! ```text
//! DITTO_SIM_SEEDS=10000 cargo test -p ditto-server --test simulation --release -- --ignored long_
//! ```

#[path = "simulation/faults.rs"]
mod faults;
#[path = "simulation/harness.rs"]
mod harness;
#[path = "simulation/net.rs"]
mod net;
#[path = "simulation/workload.rs"]
mod workload;

use faults::FaultMix;
use harness::{Scenario, run_seeds, simulate};

/// The primary's port; its host is `n7000`.
pub const PRIMARY: u16 = 7000;
/// The backups' ports.
pub const BACKUPS: [u16; 2] = [7001, 7002];
/// Every server, primary first.
pub const SERVERS: [u16; 3] = [PRIMARY, BACKUPS[0], BACKUPS[1]];

/// Random latencies and concurrent clients, no fault: consistent, every operation succeeds,
/// and the replicas end identical.
#[test]
fn no_faults_converges() {
    let mut sc = Scenario::new("no_faults_converges", FaultMix::None, 0..30);
    sc.converge = true;
    sc.all_ok = true;
    run_seeds(&sc);
}

/// Partitions and holds between servers and between clients and servers never break
/// consistency (they may cost availability).
#[test]
fn partitions_and_holds() {
    run_seeds(&Scenario::new(
        "partitions_and_holds",
        FaultMix::Network,
        0..80,
    ));
}

/// Backups that crash, restart empty, or stay down never break consistency.
#[test]
fn backup_crashes_and_restarts() {
    run_seeds(&Scenario::new(
        "backup_crashes_and_restarts",
        FaultMix::BackupCrashes,
        0..80,
    ));
}

/// Network faults and backup crashes together: backups rejoin over a faulty network.
#[test]
fn partitions_holds_and_backup_crashes() {
    run_seeds(&Scenario::new(
        "partitions_holds_and_backup_crashes",
        FaultMix::NetworkAndBackupCrashes,
        0..50,
    ));
}

/// A primary that crashes for good: the backups elect a new primary and writes go on; never
/// inconsistent.
#[test]
fn primary_crash() {
    run_seeds(&Scenario::new(
        "primary_crash",
        FaultMix::PrimaryCrash,
        0..40,
    ));
}

/// The same seed gives the same history, operation for operation and nanosecond for
/// nanosecond, whatever ran before it in the process: this is what makes a printed seed replay
/// exactly.
#[test]
fn same_seed_same_history() {
    let mixes = [
        FaultMix::Network,
        FaultMix::BackupCrashes,
        FaultMix::NetworkAndBackupCrashes,
        FaultMix::PrimaryCrash,
        FaultMix::SlowLinks,
    ];
    for mix in mixes {
        let sc = Scenario::new("same_seed_same_history", mix, 0..0);
        for seed in [3, 4] {
            let (first, second) = (simulate(&sc, seed), simulate(&sc, seed));
            assert!(!first.history.is_empty() && !first.faults.is_empty());
            if first != second {
                let diverged = (first.history.ops.iter().zip(&second.history.ops))
                    .position(|(a, b)| a != b)
                    .unwrap_or(first.history.len().min(second.history.len()));
                panic!(
                    "{mix:?} seed {seed} ran differently the second time: histories of {} and {} \
                     ops first differ at #{diverged}: {:?} vs {:?}",
                    first.history.len(),
                    second.history.len(),
                    first.history.ops.get(diverged),
                    second.history.ops.get(diverged),
                );
            }
        }
    }
}

/// The primary crashes and restarts 50 to 500 ms later with nothing (no durability): the
/// backups fail over, the restarted node is claimed by its group and recovers as a backup, and
/// no acknowledged write is lost.
#[test]
fn primary_restart_keeps_acknowledged_writes() {
    run_seeds(&Scenario::new(
        "primary_restart_keeps_acknowledged_writes",
        FaultMix::PrimaryRestart,
        0..40,
    ));
}

/// Slow links between the primary and a backup while backups restart and join again over
/// them: some `JOIN`s and `SYNC`s are answered in time and some are not. Never inconsistent,
/// and the replicas converge once the links are fast again.
///
/// This caught a bug at commit 11b0dd7 (seeds 0, 6, 8, 10, 13 and 15–19 of `0..20` failed; it
/// is fixed in 18fff59). A backup gave up on a slow `SYNC`, closed it and joined again; the
/// primary had taken each `SYNC` (registered a stream, sent the snapshot) and dropped the
/// backup when that stream closed. After `sync_attempts` (3) such failures the backup
/// concluded that its primary spoke only the seed protocol, counted itself joined and waited
/// for `UPDATE` pushes that never came: it served reads from a frozen replica and answered
/// `ACK` to writes it forwarded as `UPDATE:v`, which the primary committed without it, so its
/// client's next read returned an older value. Nothing made it join again.
#[test]
fn slow_links_while_backups_rejoin() {
    let mut sc = Scenario::new(
        "slow_links_while_backups_rejoin",
        FaultMix::SlowLinks,
        0..20,
    );
    sc.converge = true;
    run_seeds(&sc);
}

/// A restarted backup that settles for the seed protocol serves reads from its empty replica.
///
/// Seed 125 of `partitions_holds_and_backup_crashes`, at commit 18fff59: backup `n7001`
/// restarts empty (2.095 s), its `JOIN` is answered, and it is then cut off from everyone
/// (2.156 s to 3.395 s), so neither the `SNAPSHOT` nor the primary's first `UPDATE` push
/// reaches it. When its `SYNC` deadline passes (2.645 s) it settles for the seed protocol
/// (in the pre-view backup, since removed), which marked it joined although its replica has never received
/// the store's value. Once the cut heals its client reads 0 (3.43 s), after having read a
/// written value from the same server before the restart: not sequentially consistent. A
/// backup refuses reads until it has joined precisely because its initial 0 is not the
/// store's value; settling for the seed protocol should wait for the first push.
///
/// Fixed: a backup that settles for the seed protocol because its primary went silent serves
/// reads only once the primary has pushed it a value (or a late snapshot arrived).
///
/// ```text
/// DITTO_SIM_SEED=125 DITTO_SIM_LOG=info cargo test -p ditto-server --test simulation backup_settled_for_seed_serves_an_empty_replica -- --exact --nocapture
/// ```
#[test]
fn backup_settled_for_seed_serves_an_empty_replica() {
    let sc = Scenario::new(
        "backup_settled_for_seed_serves_an_empty_replica",
        FaultMix::NetworkAndBackupCrashes,
        125..126,
    );
    run_seeds(&sc);
}

/// A backup that settles for the seed protocol while its primary has it as a stream backup
/// acknowledges writes it never applies.
///
/// Seed 58 of `long_partitions_holds_and_backup_crashes`, at commit 18fff59: backup `n7001`
/// rejoins after a stalled stream (12.12 s); the primary takes its `SYNC`, registers a stream
/// and sends the snapshot (12.265 s), but `n7001` is then cut off (12.28 s to 12.923 s) and the
/// snapshot is lost with the stream. At its `SYNC` deadline (12.72 s) the backup settles for
/// the seed protocol, keeping the silent `SYNC` connection in case a snapshot still comes. The
/// primary, which never heard the snapshot acknowledged, drops the backup (15.265 s); the
/// close it sends never gets through the stalled stream, so the backup stays in seed mode for
/// good, unregistered, and nothing makes it join again. It forwards its clients' writes as
/// `UPDATE:v`; the primary commits them without it and acknowledges, and the backup answers
/// `ACK` (the seed period has not changed) although its replica does not hold the write: its
/// client wrote 8589934647 and then read the older 17179869258. Over real TCP the snapshot
/// would be retransmitted once the cut heals, but not before the retransmission back-off runs
/// out, which after a cut of more than the primary's 3 s backup timeout can be seconds after a
/// client's write has gone through a fresh connection.
///
/// Fixed: a late `SYNC` that brings no snapshot within the stream timeout is closed and the
/// backup joins again; and a forwarded `UPDATE` is acknowledged to the client only if the
/// primary pushed that value to this backup after it was sent (the seed primary's own proof
/// that it counted this backup), otherwise the outcome is reported unknown.
///
/// ```text
/// DITTO_SIM_SEED=58 DITTO_SIM_LOG=info cargo test -p ditto-server --test simulation backup_settled_for_seed_acks_writes_it_never_applies -- --exact --nocapture
/// ```
#[test]
fn backup_settled_for_seed_acks_writes_it_never_applies() {
    let mut sc = long(
        "backup_settled_for_seed_acks_writes_it_never_applies",
        FaultMix::NetworkAndBackupCrashes,
    );
    sc.seeds = 58..59;
    run_seeds(&sc);
}

/// A long variant of a scenario: more seeds and four times as many operations per client.
fn long(test: &'static str, mix: FaultMix) -> Scenario {
    let mut sc = Scenario::new(test, mix, 0..2_000);
    sc.ops_per_client *= 4;
    sc
}

/// `DITTO_SIM_SEEDS=10000 cargo test -p ditto-server --test simulation --release -- --ignored long_no_faults_converges`
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn long_no_faults_converges() {
    let mut sc = long("long_no_faults_converges", FaultMix::None);
    sc.converge = true;
    sc.all_ok = true;
    run_seeds(&sc);
}

/// `DITTO_SIM_SEEDS=10000 cargo test -p ditto-server --test simulation --release -- --ignored long_partitions_and_holds`
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn long_partitions_and_holds() {
    run_seeds(&long("long_partitions_and_holds", FaultMix::Network));
}

/// `DITTO_SIM_SEEDS=10000 cargo test -p ditto-server --test simulation --release -- --ignored long_backup_crashes_and_restarts`
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn long_backup_crashes_and_restarts() {
    run_seeds(&long(
        "long_backup_crashes_and_restarts",
        FaultMix::BackupCrashes,
    ));
}

/// `DITTO_SIM_SEEDS=10000 cargo test -p ditto-server --test simulation --release -- --ignored long_partitions_holds_and_backup_crashes`
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn long_partitions_holds_and_backup_crashes() {
    run_seeds(&long(
        "long_partitions_holds_and_backup_crashes",
        FaultMix::NetworkAndBackupCrashes,
    ));
}

/// `DITTO_SIM_SEEDS=10000 cargo test -p ditto-server --test simulation --release -- --ignored long_primary_crash`
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn long_primary_crash() {
    run_seeds(&long("long_primary_crash", FaultMix::PrimaryCrash));
}
