//! Adapters for peers that speak only the seed's four messages, kept at the edge of the node
//! so the replica never sees the seed's looser rules.
//!
//! * [`Pusher`]: a ditto primary's seed-only backups. Each is pushed `UPDATE:v` (the value
//!   after the last entry) on a connection of its own, one push at a time; an acknowledgement
//!   (any line not starting with `ERR`) tells the replica the backup holds that entry. A push
//!   unanswered for [`SeedTimeouts::push_timeout`] has the replica remove the backup from the
//!   active set, so one stuck seed backup stalls writes by about that much; the current value
//!   keeps being pushed to it, and the replica re-admits it once it answers.
//! * [`SeedFollower`]: a ditto backup whose primary speaks only the seed. It fetches the current
//!   value with a `READ` when it joins, applies the pushes, and forwards its clients' writes as
//!   `UPDATE:v`. A seed primary pushes a write to every backup it counts before it acknowledges
//!   it, so an acknowledged forward counts as done only once its value has been pushed here
//!   after it was sent; the push may trail the acknowledgement (another connection), so the
//!   follower waits [`SeedTimeouts::push_grace`] for it before answering "outcome unknown".

use std::collections::{BTreeMap, VecDeque};

use crate::addr::Addr;
use crate::event::{ConnId, LogLevel, Millis, Output};
use crate::replica::log::Index;
use crate::replica::{Replica, WriteOutcome};
use crate::wire;

/// Timeouts of the seed adapters, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeedTimeouts {
    /// How long a `JOIN` waits for a ditto hello from the same host and port before the joiner
    /// is taken for a seed-only backup.
    pub join_grace: u64,
    /// A push unanswered this long has failed.
    pub push_timeout: u64,
    /// How soon a failed push is tried again.
    pub push_retry: u64,
    /// A joiner never admitted whose pushes have failed this long is forgotten.
    pub join_give_up: u64,
    /// How long a write forwarded to a seed primary may wait for its answer.
    pub forward_timeout: u64,
    /// How long, after the seed primary acknowledged a forwarded write, to wait for the push
    /// of its value.
    pub push_grace: u64,
}

impl Default for SeedTimeouts {
    fn default() -> SeedTimeouts {
        SeedTimeouts {
            join_grace: 1_000,
            push_timeout: 500,
            push_retry: 200,
            join_give_up: 10_000,
            forward_timeout: 3_000,
            push_grace: 1_000,
        }
    }
}

/// What a pusher event means for the replica.
#[derive(Debug, Default)]
pub struct PushOutcome {
    /// This backup acknowledged the state after this entry.
    pub held: Option<(Addr, Index)>,
    /// This backup failed a push, for this reason.
    pub failed: Option<(Addr, String)>,
    /// Outputs to carry out (closes, logs).
    pub logs: Vec<Output>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Target {
    /// A fresh `JOIN` waits for a ditto hello until then.
    grace_until: Option<Millis>,
    /// The push in flight: connection, entry, value, deadline.
    inflight: Option<(ConnId, Index, i64, Millis)>,
    retry_at: Millis,
    held: Option<Index>,
    /// Whether it ever acknowledged a push (a joiner that never did is given up on).
    answered: bool,
    /// Since when pushes have failed in a row.
    failing_since: Option<Millis>,
}

/// The seed-only backups of a ditto primary. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pusher {
    cfg: SeedTimeouts,
    targets: BTreeMap<Addr, Target>,
    by_conn: BTreeMap<ConnId, Addr>,
}

impl Pusher {
    pub fn new(cfg: SeedTimeouts) -> Pusher {
        Pusher {
            cfg,
            targets: BTreeMap::new(),
            by_conn: BTreeMap::new(),
        }
    }

    /// A `JOIN` from `addr`: a seed-only backup, unless a ditto hello follows in time. A
    /// repeated `JOIN` (a retry) changes nothing.
    pub fn joined(&mut self, addr: Addr, now: Millis) {
        if self.targets.contains_key(&addr) {
            return;
        }
        self.targets.insert(
            addr,
            Target {
                grace_until: Some(now.after(self.cfg.join_grace)),
                inflight: None,
                retry_at: now,
                held: None,
                answered: false,
                failing_since: None,
            },
        );
    }

    /// A ditto hello from `host` advertising `port`: that joiner is a ditto replica.
    pub fn cancel_join(&mut self, host: &str, port: u16) {
        self.targets
            .retain(|a, t| !(t.grace_until.is_some() && a.host() == host && a.port() == port));
    }

    /// Starts the pushes that are due: the value after the last entry, to every seed-only
    /// backup that has not acknowledged it and has no push in flight.
    pub fn push(
        &mut self,
        r: &mut Replica,
        now: Millis,
        next_conn: &mut u64,
    ) -> Vec<(Option<ConnId>, Output)> {
        let mut out = Vec::new();
        if !r.is_primary() {
            return out;
        }
        for (addr, _) in r.seed_backups() {
            self.targets.entry(addr).or_insert(Target {
                grace_until: None,
                inflight: None,
                retry_at: now,
                held: None,
                answered: false,
                failing_since: None,
            });
        }
        let last = r.last().index;
        let active: Vec<Addr> = r
            .seed_backups()
            .into_iter()
            .filter(|(_, a)| *a)
            .map(|(a, _)| a)
            .collect();
        let mut logs = Vec::new();
        for (addr, t) in self.targets.iter_mut() {
            if t.grace_until.is_some_and(|g| g > now) {
                continue;
            }
            if t.grace_until.take().is_some() {
                logs.push((
                    None,
                    Output::Log {
                        level: LogLevel::Info,
                        message: format!(
                            "{addr} joined with the seed's JOIN and no ditto hello followed: pushing it UPDATEs as a seed-only backup"
                        ),
                    },
                ));
            }
            if t.inflight.is_some() || t.retry_at > now {
                continue;
            }
            // The first push is the current value (the seed backup's state transfer); then
            // every write in order, one push each, as the seed's primary pushes them.
            let next = match t.held {
                None => Some((last, r.value_after(last))),
                Some(h) if h >= last => None,
                Some(h) => match r.next_write_after(h) {
                    Some(w) => Some(w),
                    None => {
                        // Only configurations since: it holds the state after them too.
                        t.held = Some(last);
                        r.seed_held(addr, last);
                        None
                    }
                },
            };
            let Some((index, v)) = next else {
                // Up to date: nothing is failing, and no retry is due.
                t.failing_since = None;
                if !active.contains(addr) && t.held.is_some_and(|h| h >= last) {
                    r.seed_held(addr, last);
                }
                continue;
            };
            *next_conn += 1;
            let conn = ConnId::Outbound(*next_conn);
            out.push((
                Some(conn),
                Output::Connect {
                    conn,
                    addr: addr.clone(),
                },
            ));
            out.push((
                None,
                Output::Send {
                    conn,
                    line: format!("UPDATE:{v}"),
                },
            ));
            t.inflight = Some((conn, index, v, now.after(self.cfg.push_timeout)));
            self.by_conn.insert(conn, addr.clone());
        }
        logs.extend(out);
        logs
    }

    /// The answer to a push.
    pub fn on_reply(&mut self, conn: ConnId, line: &[u8], now: Millis) -> PushOutcome {
        let Some(addr) = self.by_conn.remove(&conn) else {
            return PushOutcome::default();
        };
        let Some(t) = self.targets.get_mut(&addr) else {
            return PushOutcome::default();
        };
        let Some((_, index, v, _)) = t.inflight.take() else {
            return PushOutcome::default();
        };
        if wire::is_error_reply(line) {
            let why = format!("refused UPDATE:{v} ({})", String::from_utf8_lossy(line));
            return self.fail(addr, v, why, now);
        }
        t.held = Some(t.held.map_or(index, |h| h.max(index)));
        t.answered = true;
        t.failing_since = None;
        PushOutcome {
            held: Some((addr, index)),
            ..PushOutcome::default()
        }
    }

    /// A push connection closed before its answer.
    pub fn on_closed(&mut self, conn: ConnId, now: Millis) -> PushOutcome {
        let Some(addr) = self.by_conn.remove(&conn) else {
            return PushOutcome::default();
        };
        let Some((_, _, v, _)) = self.targets.get_mut(&addr).and_then(|t| t.inflight.take()) else {
            return PushOutcome::default();
        };
        self.fail(
            addr,
            v,
            format!("did not answer UPDATE:{v} (connection closed)"),
            now,
        )
    }

    /// Pushes past their deadline have failed.
    pub fn tick(&mut self, now: Millis) -> PushOutcome {
        let due = self.targets.iter().find_map(|(a, t)| {
            t.inflight
                .filter(|(_, _, _, deadline)| *deadline <= now)
                .map(|(conn, _, v, _)| (a.clone(), conn, v))
        });
        let Some((addr, conn, v)) = due else {
            return PushOutcome::default();
        };
        self.by_conn.remove(&conn);
        let sent = now.0.saturating_sub(self.cfg.push_timeout);
        if let Some(t) = self.targets.get_mut(&addr) {
            t.inflight = None;
            t.failing_since = Some(
                t.failing_since
                    .map_or(Millis(sent), |f| f.min(Millis(sent))),
            );
        }
        let why = format!(
            "did not answer UPDATE:{v} within {} ms",
            self.cfg.push_timeout
        );
        let mut outcome = self.fail(addr, v, why, now);
        outcome.logs.insert(0, Output::Close { conn });
        outcome
    }

    /// A push failed. Refusals and hang-ups are retried until pushes have failed for
    /// `push_timeout`; then the backup leaves the active set (the replica says so), and when it
    /// answers again it is re-admitted with the current value rather than every write it
    /// missed. A joiner that never answered a push is forgotten after `join_give_up`.
    fn fail(&mut self, addr: Addr, v: i64, why: String, now: Millis) -> PushOutcome {
        let Some(t) = self.targets.get_mut(&addr) else {
            return PushOutcome::default();
        };
        t.retry_at = now.after(self.cfg.push_retry);
        let since = *t.failing_since.get_or_insert(now);
        let failing_for = now.0.saturating_sub(since.0);
        if !t.answered && failing_for >= self.cfg.join_give_up {
            self.targets.remove(&addr);
            let message = format!(
                "forgetting {addr}: it joined but has not answered a push for {failing_for} ms"
            );
            return PushOutcome {
                logs: vec![Output::Log {
                    level: LogLevel::Warn,
                    message,
                }],
                ..PushOutcome::default()
            };
        }
        if failing_for < self.cfg.push_timeout || t.held.is_none() {
            return PushOutcome::default();
        }
        t.held = None;
        let hint = if i32::try_from(v).is_err() {
            "; the value does not fit in 32 bits, which a peer storing 32-bit integers cannot take"
        } else {
            ""
        };
        PushOutcome {
            held: None,
            failed: Some((addr, format!("{why}{hint}"))),
            logs: Vec::new(),
        }
    }

    pub fn next_timeout(&self) -> Option<Millis> {
        self.targets
            .values()
            .flat_map(|t| {
                let inflight = t.inflight.map(|(_, _, _, d)| d);
                // A retry is due only after a failure; otherwise pushes start when the replica
                // appends (the node asks for them whenever it is idle).
                let retry =
                    (t.inflight.is_none() && t.failing_since.is_some()).then_some(t.retry_at);
                [inflight, t.grace_until, retry]
            })
            .flatten()
            .min()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Forward {
    token: u64,
    value: i64,
    /// Pushes seen when it was sent.
    pushes_at: u64,
    deadline: Millis,
}

/// How many recent pushes the follower remembers as evidence for its forwarded writes.
const RECENT_PUSHES: usize = 4096;

/// A ditto backup under a seed-only primary. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeedFollower {
    primary: Addr,
    cfg: SeedTimeouts,
    value: i64,
    joined: bool,
    pushes: u64,
    recent: VecDeque<(u64, i64)>,
    read_conn: Option<ConnId>,
    forwards: BTreeMap<ConnId, Forward>,
    /// Forwards the primary acknowledged, waiting for the push of their value.
    answered: Vec<Forward>,
}

impl SeedFollower {
    pub fn new(primary: Addr, cfg: SeedTimeouts, _now: Millis) -> SeedFollower {
        SeedFollower {
            primary,
            cfg,
            value: 0,
            joined: false,
            pushes: 0,
            recent: VecDeque::new(),
            read_conn: None,
            forwards: BTreeMap::new(),
            answered: Vec::new(),
        }
    }

    /// Asks the primary for its current value on `conn`: a seed primary pushes nothing until
    /// the next write.
    pub fn start(&mut self, conn: ConnId) -> Vec<Output> {
        self.read_conn = Some(conn);
        self.request(conn, "READ".to_owned())
    }

    /// One request to the primary on a connection of its own, as the seed's peers expect.
    fn request(&self, conn: ConnId, line: String) -> Vec<Output> {
        vec![
            Output::Connect {
                conn,
                addr: self.primary.clone(),
            },
            Output::Send { conn, line },
        ]
    }

    pub fn value(&self) -> i64 {
        self.value
    }
    pub fn joined(&self) -> bool {
        self.joined
    }
    pub fn primary(&self) -> &Addr {
        &self.primary
    }

    pub fn read(&self) -> Result<i64, String> {
        if self.joined {
            Ok(self.value)
        } else {
            Err("not joined to the primary yet; try again shortly".to_owned())
        }
    }

    /// `UPDATE:v` pushed by the primary.
    pub fn on_push(&mut self, v: i64, now: Millis) -> Vec<(u64, WriteOutcome)> {
        self.value = v;
        self.joined = true;
        self.pushes += 1;
        self.recent.push_back((self.pushes, v));
        if self.recent.len() > RECENT_PUSHES {
            self.recent.pop_front();
        }
        let _ = now;
        let (done, waiting): (Vec<Forward>, Vec<Forward>) = std::mem::take(&mut self.answered)
            .into_iter()
            .partition(|f| self.pushed_since(f));
        self.answered = waiting;
        done.into_iter()
            .map(|f| (f.token, WriteOutcome::Done(crate::keyspace::Output::Ok)))
            .collect()
    }

    fn pushed_since(&self, f: &Forward) -> bool {
        self.recent
            .iter()
            .any(|&(n, v)| n > f.pushes_at && v == f.value)
    }

    /// Forwards a client's write as `UPDATE:v` on `conn`.
    pub fn forward(&mut self, token: u64, value: i64, conn: ConnId, now: Millis) -> Vec<Output> {
        self.forwards.insert(
            conn,
            Forward {
                token,
                value,
                pushes_at: self.pushes,
                deadline: now.after(self.cfg.forward_timeout),
            },
        );
        self.request(conn, format!("UPDATE:{value}"))
    }

    /// A reply on one of the follower's connections.
    pub fn on_reply(&mut self, conn: ConnId, line: &[u8], now: Millis) -> Vec<(u64, WriteOutcome)> {
        if self.read_conn == Some(conn) {
            self.read_conn = None;
            // Any reply ending in a whole number is the value; a push that came first is newer.
            let text = String::from_utf8_lossy(line);
            let digits = text.trim_end();
            let start = digits
                .rfind(|c: char| !(c.is_ascii_digit() || c == '-'))
                .map_or(0, |i| i + 1);
            if self.pushes == 0
                && let Ok(v) = digits[start..].parse::<i64>()
            {
                self.value = v;
            }
            self.joined = true;
            return Vec::new();
        }
        let Some(mut f) = self.forwards.remove(&conn) else {
            return Vec::new();
        };
        if wire::is_error_reply(line) {
            let why = String::from_utf8_lossy(line).into_owned();
            return vec![(f.token, WriteOutcome::Refused(why))];
        }
        if self.pushed_since(&f) {
            return vec![(f.token, WriteOutcome::Done(crate::keyspace::Output::Ok))];
        }
        f.deadline = now.after(self.cfg.push_grace);
        self.answered.push(f);
        Vec::new()
    }

    pub fn on_closed(&mut self, conn: ConnId, _now: Millis) -> Vec<(u64, WriteOutcome)> {
        if self.read_conn == Some(conn) {
            // The primary did not say: serve the seed's initial state, as a seed backup would.
            self.read_conn = None;
            self.joined = true;
            return Vec::new();
        }
        match self.forwards.remove(&conn) {
            Some(f) => vec![(
                f.token,
                WriteOutcome::Unknown("lost the connection to the primary; outcome unknown".into()),
            )],
            None => Vec::new(),
        }
    }

    pub fn tick(&mut self, now: Millis) -> Vec<(u64, WriteOutcome)> {
        let mut done = Vec::new();
        let due: Vec<ConnId> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in due {
            if let Some(f) = self.forwards.remove(&conn) {
                done.push((
                    f.token,
                    WriteOutcome::Unknown("no answer from the primary; outcome unknown".into()),
                ));
            }
        }
        let (late, waiting): (Vec<Forward>, Vec<Forward>) = std::mem::take(&mut self.answered)
            .into_iter()
            .partition(|f| f.deadline <= now);
        self.answered = waiting;
        done.extend(late.into_iter().map(|f| {
            (
                f.token,
                WriteOutcome::Unknown(
                    "the primary acknowledged, but did not push the value here; outcome unknown"
                        .into(),
                ),
            )
        }));
        done
    }

    pub fn next_timeout(&self) -> Option<Millis> {
        self.forwards
            .values()
            .chain(&self.answered)
            .map(|f| f.deadline)
            .min()
    }
}
