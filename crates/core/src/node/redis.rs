//! The Redis face of a node: what each RESP connection chose, and the answers to the commands
//! of `crate::command`.
//!
//! Data commands go where the line protocol's go: a write through the replica (forwarded by a
//! backup, answered once committed and applied here), a read from this replica's committed
//! state behind the same per-connection queue as `READ`. The rest are answered from what the
//! node knows, in the words and shapes Redis uses, since tools parse them: `INFO`'s
//! `key:value` lines, `ROLE`'s array, Sentinel's maps.

use crate::addr::Addr;
use crate::command::{self, Client, Command, Sentinel};
use crate::event::ConnId;
use crate::keyspace::{KeyOp, Output as KeyOutput, Query, Step};
use crate::replica::{Replica, Status, WriteOutcome};
use crate::resp::{Reply, Version};
use crate::session::{ReadKind, Wire};

use super::{Conn, Mode, Node};

mod docs;

/// The Redis version ditto answers as (in `INFO` and `HELLO`): the command set and replies
/// of the commands it serves are those of this version.
const REDIS_VERSION: &str = "7.2.0";

/// What a RESP connection chose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct RedisConn {
    pub version: Version,
    pub name: Option<Vec<u8>>,
    /// `CLIENT ID`: unique for the node's lifetime.
    pub id: u64,
    /// Inside `MULTI`: the commands queued, and whether one was refused (then `EXEC` discards
    /// them all, as Redis does).
    pub multi: Option<(Vec<Step>, bool)>,
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ.
pub(super) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, &b) in expected.iter().enumerate() {
        diff |= usize::from(b ^ given.get(i).copied().unwrap_or(!b));
    }
    diff == 0
}

/// The reply to a write that ended with `outcome`.
pub(super) fn write_reply(outcome: &WriteOutcome) -> Reply {
    match outcome {
        WriteOutcome::Done(out) => output_reply(out),
        WriteOutcome::Refused(why) if why.starts_with("OOM ") => Reply::Error(why.clone()),
        WriteOutcome::Refused(why) | WriteOutcome::Unknown(why) => Reply::err(why),
    }
}

/// The reply form of a keyspace answer.
fn output_reply(out: &KeyOutput) -> Reply {
    match out {
        KeyOutput::Ok => Reply::ok(),
        KeyOutput::Nil => Reply::Null,
        KeyOutput::Int(n) => Reply::Integer(*n),
        KeyOutput::Bulk(b) => Reply::Bulk(b.clone()),
        KeyOutput::Array(items) => Reply::Array(items.iter().map(output_reply).collect()),
        KeyOutput::Scan(cursor, keys) => Reply::Array(vec![
            Reply::Bulk(cursor.to_string().into_bytes()),
            Reply::Array(keys.iter().map(|k| Reply::Bulk(k.clone())).collect()),
        ]),
        KeyOutput::Err(e) => Reply::Error(e.to_string()),
    }
}

/// The answer to a read of the keyspace now.
pub(super) fn query_reply(mode: &Mode, query: &Query) -> Reply {
    match mode {
        Mode::Replica(r) => match r.read(query) {
            Ok(out) => output_reply(&out),
            Err(why) => Reply::err(why),
        },
        Mode::Seed(_) => Reply::err(
            "this server follows a seed-only primary, which holds only the seed's integer \
             (READ on the line protocol)",
        ),
    }
}

fn bulk(text: impl Into<String>) -> Reply {
    Reply::Bulk(text.into().into_bytes())
}

fn pairs(fields: Vec<(&str, String)>) -> Reply {
    Reply::Map(
        fields
            .into_iter()
            .map(|(k, v)| (bulk(k), bulk(v)))
            .collect(),
    )
}

impl Node {
    /// A RESP request on `conn`.
    pub(super) fn on_command(&mut self, conn: ConnId, args: &[Vec<u8>]) {
        self.conns.entry(conn).or_insert(Conn::Client);
        if !self.redis.contains_key(&conn) {
            self.next_client_id += 1;
            let rc = RedisConn {
                id: self.next_client_id,
                ..RedisConn::default()
            };
            self.redis.insert(conn, rc);
        }
        let version = self.redis[&conn].version;
        let cmd = command::parse(args, &self.cfg.limits);
        let open = matches!(
            cmd,
            Ok(Command::Auth { .. } | Command::Hello { .. } | Command::Quit | Command::Reset)
        );
        if self.cfg.password.is_some() && !self.authed.contains(&conn) && !open {
            return self.resp(conn, Reply::Error("NOAUTH Authentication required.".into()));
        }
        if self.redis[&conn].multi.is_some() {
            return self.in_multi(conn, cmd);
        }
        let reply = match cmd {
            Err(refusal) => Reply::Error(refusal),
            Ok(Command::Write(op)) => return self.write(conn, op, None),
            Ok(Command::Tagged { client, number, op }) => {
                let tag = crate::replica::log::Tag { client, number };
                return self.write(conn, op, Some(tag));
            }
            Ok(Command::Read(query)) => {
                return self.read_kind(conn, ReadKind::Query(Box::new(query), version));
            }
            Ok(Command::Ping(None)) => Reply::Simple("PONG".into()),
            Ok(Command::Ping(Some(msg)) | Command::Echo(msg)) => Reply::Bulk(msg),
            Ok(Command::Hello {
                version,
                auth,
                name,
            }) => return self.hello(conn, version, auth, name),
            Ok(Command::Auth { user, password }) => self.auth(conn, user.as_deref(), &password),
            Ok(Command::Select(0)) => Reply::ok(),
            Ok(Command::Select(_)) => Reply::err("DB index is out of range"),
            Ok(Command::Client(c)) => self.client(conn, c),
            Ok(Command::Command(sub, names)) => docs::command_reply(sub.as_deref(), &names),
            Ok(Command::Info(sections)) => bulk(self.info(&sections)),
            Ok(Command::Role) => self.role(),
            Ok(Command::Wait) => self.wait(),
            Ok(Command::ConfigGet(patterns)) => self.config_get(&patterns),
            Ok(Command::Quit) => {
                self.resp(conn, Reply::ok());
                let super::Node {
                    mode,
                    sessions,
                    out,
                    ..
                } = self;
                return sessions.close(conn, &|kind| super::read_reply(mode, kind), out);
            }
            Ok(Command::Reset) => {
                if let Some(rc) = self.redis.get_mut(&conn) {
                    rc.version = Version::Resp2;
                    rc.name = None;
                    rc.multi = None;
                }
                if self.cfg.password.is_some() {
                    self.authed.remove(&conn);
                }
                Reply::Simple("RESET".into())
            }
            Ok(Command::Time) => {
                let ms = self.replica().map_or(0, Replica::wall_clock);
                Reply::Array(vec![
                    bulk((ms / 1000).to_string()),
                    bulk((ms % 1000 * 1000).to_string()),
                ])
            }
            Ok(Command::Sentinel(s)) => self.sentinel(s),
            Ok(Command::Multi) => {
                if let Some(rc) = self.redis.get_mut(&conn) {
                    rc.multi = Some((Vec::new(), false));
                }
                Reply::ok()
            }
            Ok(Command::Exec) => Reply::err("EXEC without MULTI"),
            Ok(Command::Discard) => Reply::err("DISCARD without MULTI"),
        };
        self.resp(conn, reply);
    }

    /// A command on a connection inside `MULTI`: data commands are queued, to run as one log
    /// entry at `EXEC`.
    fn in_multi(&mut self, conn: ConnId, cmd: Result<Command, command::Refusal>) {
        let Some(rc) = self.redis.get_mut(&conn) else {
            return;
        };
        let Some((steps, aborted)) = rc.multi.as_mut() else {
            return;
        };
        let reply = match cmd {
            Ok(Command::Write(op)) => {
                steps.push(Step::Write(op));
                Reply::Simple("QUEUED".into())
            }
            Ok(Command::Read(q)) => {
                steps.push(Step::Read(q));
                Reply::Simple("QUEUED".into())
            }
            Ok(Command::Multi) => Reply::err("MULTI calls can not be nested"),
            Ok(Command::Discard) => {
                rc.multi = None;
                Reply::ok()
            }
            Ok(Command::Exec) => {
                let Some((steps, aborted)) = rc.multi.take() else {
                    return;
                };
                if aborted {
                    Reply::Error(
                        "EXECABORT Transaction discarded because of previous errors.".into(),
                    )
                } else if steps.is_empty() {
                    Reply::Array(Vec::new())
                } else {
                    return self.write(conn, KeyOp::Exec(steps), None);
                }
            }
            Ok(_) => {
                *aborted = true;
                Reply::err("inside MULTI ditto queues only data commands (GET, SET, INCR...)")
            }
            Err(refusal) => {
                *aborted = true;
                Reply::Error(refusal)
            }
        };
        self.resp(conn, reply);
    }

    /// Queues `reply` on `conn` in the connection's protocol version.
    fn resp(&mut self, conn: ConnId, reply: Reply) {
        let version = self.redis.get(&conn).map(|c| c.version).unwrap_or_default();
        self.reply(conn, Wire::Resp(reply.to_bytes(version)));
    }

    fn hello(
        &mut self,
        conn: ConnId,
        version: Option<i64>,
        auth: Option<(Vec<u8>, Vec<u8>)>,
        name: Option<Vec<u8>>,
    ) {
        let chosen = match version {
            None => None,
            Some(2) => Some(Version::Resp2),
            Some(3) => Some(Version::Resp3),
            Some(_) => {
                return self.resp(
                    conn,
                    Reply::Error("NOPROTO unsupported protocol version".into()),
                );
            }
        };
        if let Some((user, password)) = auth {
            let answer = self.auth(conn, Some(&user), &password);
            if matches!(answer, Reply::Error(_)) {
                return self.resp(conn, answer);
            }
        }
        if self.cfg.password.is_some() && !self.authed.contains(&conn) {
            return self.resp(
                conn,
                Reply::Error(
                    "NOAUTH HELLO must be called with the client already authenticated, \
                     otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
                     authenticate the client and select the RESP protocol version at the same \
                     time"
                        .into(),
                ),
            );
        }
        let role = match self.replica() {
            Some(r) if r.is_primary() => "master",
            _ => "replica",
        };
        let Some(rc) = self.redis.get_mut(&conn) else {
            return;
        };
        if let Some(v) = chosen {
            rc.version = v;
        }
        if let Some(name) = name {
            rc.name = Some(name);
        }
        let proto = if rc.version == Version::Resp3 { 3 } else { 2 };
        let reply = Reply::Map(vec![
            (bulk("server"), bulk("ditto")),
            (bulk("version"), bulk(REDIS_VERSION)),
            (bulk("proto"), Reply::Integer(proto)),
            (bulk("id"), Reply::Integer(rc.id as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk(role)),
            (bulk("modules"), Reply::Array(Vec::new())),
        ]);
        self.resp(conn, reply);
    }

    fn auth(&mut self, conn: ConnId, user: Option<&[u8]>, password: &[u8]) -> Reply {
        let Some(expected) = self.cfg.password.as_deref() else {
            return match user {
                // The default user has no password: naming it with any password is accepted.
                Some(b"default") => Reply::ok(),
                Some(_) => Reply::Error(
                    "WRONGPASS invalid username-password pair or user is disabled.".into(),
                ),
                None => Reply::err(
                    "AUTH <password> called without any password configured for the default \
                     user. Are you sure your configuration is correct?",
                ),
            };
        };
        let user_ok = user.is_none_or(|u| u == b"default");
        if user_ok && same_secret(password, expected.as_bytes()) {
            self.authed.insert(conn);
            Reply::ok()
        } else {
            Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
        }
    }

    fn client(&mut self, conn: ConnId, c: Client) -> Reply {
        let host = self.hosts.get(&conn).cloned().unwrap_or_default();
        let Some(rc) = self.redis.get_mut(&conn) else {
            return Reply::err("no such connection");
        };
        match c {
            Client::SetName(name) => {
                rc.name = (!name.is_empty()).then_some(name);
                Reply::ok()
            }
            Client::GetName => rc.name.clone().map_or(Reply::Null, Reply::Bulk),
            Client::Id => Reply::Integer(rc.id as i64),
            Client::Accepted => Reply::ok(),
            Client::Info => bulk(format!(
                "id={} addr={host} name={} db=0 resp={}\n",
                rc.id,
                String::from_utf8_lossy(rc.name.as_deref().unwrap_or_default()),
                if rc.version == Version::Resp3 { 3 } else { 2 }
            )),
        }
    }

    /// `INFO`: the sections asked for (all of ditto's when none, or `all`/`everything`/
    /// `default`), as Redis formats them.
    fn info(&self, sections: &[String]) -> String {
        let all = sections.is_empty()
            || sections
                .iter()
                .any(|s| matches!(s.as_str(), "all" | "everything" | "default"));
        let wants = |name: &str| all || sections.iter().any(|s| s == name);
        let mut text = String::new();
        let addr = &self.cfg.replica.addr;
        if wants("server") {
            text.push_str(&format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nditto_version:{}\r\nredis_mode:standalone\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                addr.port(),
                self.now.0 / 1000
            ));
        }
        if wants("clients") {
            let clients = self
                .conns
                .values()
                .filter(|c| matches!(c, Conn::Client))
                .count();
            text.push_str(&format!("# Clients\r\nconnected_clients:{clients}\r\n\r\n"));
        }
        if wants("replication") {
            text.push_str(&self.info_replication());
        }
        if wants("keyspace") {
            text.push_str("# Keyspace\r\n");
            if let Some(r) = self.replica() {
                let keys = r.state().keys.len();
                if keys > 0 {
                    text.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
                }
            }
            text.push_str("\r\n");
        }
        if wants("stats") {
            let (view, commit) = self.replica().map_or((0, 0), |r| (r.view(), r.commit()));
            let used = self.replica().map_or(0, |r| r.state().keys.used());
            text.push_str(&format!(
                "# Stats\r\nditto_view:{view}\r\nditto_commit_index:{commit}\r\nused_memory:{used}\r\n\r\n"
            ));
        }
        text
    }

    fn info_replication(&self) -> String {
        let mut text = String::from("# Replication\r\n");
        let Some(r) = self.replica() else {
            return text + "role:slave\r\nmaster_link_status:down\r\n\r\n";
        };
        if r.is_primary() {
            let links: Vec<_> = r.links().collect();
            text.push_str(&format!(
                "role:master\r\nconnected_slaves:{}\r\n",
                links.len()
            ));
            for (i, (a, held, heard)) in links.into_iter().enumerate() {
                let lag = self.now.0.saturating_sub(heard.0) / 1000;
                text.push_str(&format!(
                    "slave{i}:ip={},port={},state=online,offset={held},lag={lag}\r\n",
                    a.host(),
                    a.port()
                ));
            }
            text.push_str(&format!("master_repl_offset:{}\r\n\r\n", r.commit()));
        } else {
            let up = r.status() == Status::Normal && r.read_seed().is_ok();
            let (host, port) = r
                .primary()
                .map_or(("-".to_owned(), 0), |p| (p.host().to_owned(), p.port()));
            text.push_str(&format!(
                "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{}\r\nslave_repl_offset:{}\r\nslave_read_only:1\r\n\r\n",
                if up { "up" } else { "down" },
                r.applied().index
            ));
        }
        text
    }

    fn role(&self) -> Reply {
        let Some(r) = self.replica() else {
            return Reply::Array(vec![bulk("slave")]);
        };
        if r.is_primary() {
            let backups = r
                .links()
                .map(|(a, held, _)| {
                    Reply::Array(vec![
                        bulk(a.host()),
                        bulk(a.port().to_string()),
                        bulk(held.to_string()),
                    ])
                })
                .collect();
            return Reply::Array(vec![
                bulk("master"),
                Reply::Integer(r.commit() as i64),
                Reply::Array(backups),
            ]);
        }
        let (host, port) = r
            .primary()
            .map_or(("-".to_owned(), 0), |p| (p.host().to_owned(), p.port()));
        let state = if r.status() == Status::Normal {
            "connected"
        } else {
            "connecting"
        };
        Reply::Array(vec![
            bulk("slave"),
            bulk(host),
            Reply::Integer(i64::from(port)),
            bulk(state),
            Reply::Integer(r.applied().index as i64),
        ])
    }

    /// `WAIT`: every acknowledged write is on every backup of the active set already, so the
    /// answer is at once how many backups hold every committed write.
    fn wait(&self) -> Reply {
        let Some(r) = self.replica() else {
            return Reply::Integer(0);
        };
        if r.is_primary() {
            let commit = r.commit();
            return Reply::Integer(r.links().filter(|(_, held, _)| *held >= commit).count() as i64);
        }
        Reply::Integer(r.config().active().count().saturating_sub(1) as i64)
    }

    fn config_get(&self, patterns: &[Vec<u8>]) -> Reply {
        let max_memory = self.cfg.replica.max_memory.unwrap_or(0);
        let known = [
            ("appendonly", "no".to_owned()),
            ("bind", self.cfg.replica.addr.host().to_owned()),
            ("databases", "1".to_owned()),
            ("maxmemory", max_memory.to_string()),
            ("maxmemory-policy", "noeviction".to_owned()),
            ("port", self.cfg.replica.addr.port().to_string()),
            ("proto-max-bulk-len", self.cfg.limits.max_value.to_string()),
            ("save", String::new()),
            ("timeout", "0".to_owned()),
        ];
        let fields = known
            .into_iter()
            .filter(|(k, _)| {
                patterns
                    .iter()
                    .any(|p| crate::keyspace::glob(&p.to_ascii_lowercase(), k.as_bytes()))
            })
            .collect();
        pairs(fields)
    }

    fn sentinel(&self, s: Sentinel) -> Reply {
        let Some(r) = self.replica() else {
            return Reply::err("this server follows a seed-only primary; no Sentinel answers");
        };
        let named = |name: &[u8]| name == self.cfg.name.as_bytes();
        match s {
            Sentinel::GetMasterAddrByName(name) => match r.primary() {
                Some(p) if named(&name) => {
                    Reply::Array(vec![bulk(p.host()), bulk(p.port().to_string())])
                }
                _ => Reply::Null,
            },
            Sentinel::Masters => Reply::Array(self.master_state(r).into_iter().collect()),
            Sentinel::Master(name) if named(&name) => self
                .master_state(r)
                .unwrap_or_else(|| Reply::err("No such master with that name")),
            Sentinel::Replicas(name) | Sentinel::Sentinels(name) if !named(&name) => {
                Reply::err("No such master with that name")
            }
            Sentinel::Master(_) => Reply::err("No such master with that name"),
            Sentinel::Replicas(_) => {
                let primary = r.primary();
                let replicas = r
                    .config()
                    .active()
                    .filter(|(_, m)| Some(&m.addr) != primary)
                    .map(|(_, m)| {
                        let mut f = instance_fields(&m.addr, "slave");
                        if let Some(p) = primary {
                            f.push(("master-host", p.host().to_owned()));
                            f.push(("master-port", p.port().to_string()));
                            f.push(("master-link-status", "ok".to_owned()));
                        }
                        pairs(f)
                    })
                    .collect();
                Reply::Array(replicas)
            }
            Sentinel::Sentinels(_) => {
                let me = &self.cfg.replica.addr;
                let others = r
                    .config()
                    .members
                    .values()
                    .filter(|m| &m.addr != me)
                    .map(|m| pairs(instance_fields(&m.addr, "sentinel")))
                    .collect();
                Reply::Array(others)
            }
        }
    }

    /// The group's primary as `SENTINEL MASTERS` describes a master, if there is one.
    fn master_state(&self, r: &Replica) -> Option<Reply> {
        let p = r.primary()?;
        let config = r.config();
        let mut f = vec![("name", self.cfg.name.clone())];
        f.extend(instance_fields(p, "master"));
        f.extend([
            ("role-reported", "master".to_owned()),
            ("config-epoch", r.view().to_string()),
            (
                "num-slaves",
                config.active().count().saturating_sub(1).to_string(),
            ),
            (
                "num-other-sentinels",
                config.members.len().saturating_sub(1).to_string(),
            ),
            ("quorum", config.quorum().to_string()),
            (
                "down-after-milliseconds",
                r.timeouts().election_timeout.to_string(),
            ),
            (
                "failover-timeout",
                r.timeouts().election_timeout.to_string(),
            ),
            ("parallel-syncs", "1".to_owned()),
        ]);
        Some(pairs(f))
    }
}

/// The fields every Sentinel instance description starts with.
fn instance_fields(addr: &Addr, flags: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ip", addr.host().to_owned()),
        ("port", addr.port().to_string()),
        ("runid", String::new()),
        ("flags", flags.to_owned()),
        ("link-pending-commands", "0".to_owned()),
        ("link-refcount", "1".to_owned()),
        ("last-ping-sent", "0".to_owned()),
        ("last-ok-ping-reply", "0".to_owned()),
        ("last-ping-reply", "0".to_owned()),
    ]
}
