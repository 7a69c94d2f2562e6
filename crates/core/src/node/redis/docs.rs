//! What `COMMAND` tells clients about the commands ditto serves: for each, the fields of
//! Redis's `COMMAND INFO` (arity, flags, key positions) and of `COMMAND DOCS` (summary, group,
//! arguments), in the shapes Redis gives them. `redis-cli` builds its hints and its `help`
//! from `COMMAND DOCS`: a command missing there gets neither, and an argument without a `type`
//! would make it abort, so every argument has one.

use crate::resp::Reply;

/// One argument as `COMMAND DOCS` describes it.
#[derive(Clone, Copy, Debug)]
struct Arg {
    name: &'static str,
    /// `key`, `string`, `integer`, `pattern`, `pure-token`, `oneof` or `block`.
    kind: &'static str,
    /// The word that comes before it (`EX` before `seconds`), or that it is (a pure token).
    token: Option<&'static str>,
    optional: bool,
    multiple: bool,
    /// The choices of a `oneof`, the parts of a `block`.
    args: &'static [Arg],
}

const fn arg(name: &'static str, kind: &'static str) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
        args: &[],
    }
}

const fn key(name: &'static str) -> Arg {
    arg(name, "key")
}

const fn string(name: &'static str) -> Arg {
    arg(name, "string")
}

const fn integer(name: &'static str) -> Arg {
    arg(name, "integer")
}

const fn pattern(name: &'static str) -> Arg {
    arg(name, "pattern")
}

const fn token(name: &'static str, word: &'static str) -> Arg {
    arg(name, "pure-token").after(word)
}

const fn oneof(name: &'static str, args: &'static [Arg]) -> Arg {
    Arg {
        args,
        ..arg(name, "oneof")
    }
}

const fn block(name: &'static str, args: &'static [Arg]) -> Arg {
    Arg {
        args,
        ..arg(name, "block")
    }
}

impl Arg {
    const fn optional(self) -> Arg {
        Arg {
            optional: true,
            ..self
        }
    }

    const fn multiple(self) -> Arg {
        Arg {
            multiple: true,
            ..self
        }
    }

    const fn after(self, word: &'static str) -> Arg {
        Arg {
            token: Some(word),
            ..self
        }
    }

    fn reply(&self) -> Reply {
        let mut fields = vec![
            (bulk("name"), bulk(self.name)),
            (bulk("type"), bulk(self.kind)),
        ];
        if let Some(word) = self.token {
            fields.push((bulk("token"), bulk(word)));
        }
        let flags: Vec<Reply> = [(self.optional, "optional"), (self.multiple, "multiple")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, flag)| Reply::Simple(flag.to_owned()))
            .collect();
        if !flags.is_empty() {
            fields.push((bulk("flags"), Reply::Array(flags)));
        }
        if !self.args.is_empty() {
            fields.push((
                bulk("arguments"),
                Reply::Array(self.args.iter().map(Arg::reply).collect()),
            ));
        }
        Reply::Map(fields)
    }
}

/// One command: what `COMMAND INFO` and `COMMAND DOCS` say of it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Spec {
    pub name: &'static str,
    /// How many words it takes, its name included; negative: at least that many.
    arity: i64,
    flags: &'static [&'static str],
    /// First key, last key (-1: the last argument) and step between keys; 0s: no keys.
    keys: (i64, i64, i64),
    group: &'static str,
    /// The Redis version that introduced it (ditto's own commands: ditto's version).
    since: &'static str,
    summary: &'static str,
    args: &'static [Arg],
    subcommands: &'static [Spec],
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    since: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        group,
        since,
        summary,
        args: &[],
        subcommands: &[],
    }
}

/// A subcommand (`client|setname`): documented, not listed on its own by `COMMAND`.
const fn sub(name: &'static str, since: &'static str, summary: &'static str) -> Spec {
    spec(name, 0, &[], NO_KEYS, "", since, summary)
}

impl Spec {
    const fn args(self, args: &'static [Arg]) -> Spec {
        Spec { args, ..self }
    }

    const fn subcommands(self, subcommands: &'static [Spec]) -> Spec {
        Spec {
            subcommands,
            ..self
        }
    }

    /// The `COMMAND INFO` entry: name, arity, flags, first key, last key, step.
    fn info(&self) -> Reply {
        let (first, last, step) = self.keys;
        Reply::Array(vec![
            bulk(self.name),
            Reply::Integer(self.arity),
            Reply::Array(
                self.flags
                    .iter()
                    .map(|f| Reply::Simple((*f).to_owned()))
                    .collect(),
            ),
            Reply::Integer(first),
            Reply::Integer(last),
            Reply::Integer(step),
        ])
    }

    /// The `COMMAND DOCS` entry; a subcommand is in the group of its command.
    fn docs(&self, group: &str) -> Reply {
        let mut fields = vec![
            (bulk("summary"), bulk(self.summary)),
            (bulk("since"), bulk(self.since)),
            (bulk("group"), bulk(group)),
        ];
        if !self.args.is_empty() {
            fields.push((
                bulk("arguments"),
                Reply::Array(self.args.iter().map(Arg::reply).collect()),
            ));
        }
        if !self.subcommands.is_empty() {
            fields.push((
                bulk("subcommands"),
                Reply::Map(
                    self.subcommands
                        .iter()
                        .map(|s| (bulk(s.name), s.docs(group)))
                        .collect(),
                ),
            ));
        }
        Reply::Map(fields)
    }
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);
const DITTO: &str = concat!("ditto ", env!("CARGO_PKG_VERSION"));
const KEY: &[Arg] = &[key("key")];
const KEYS: &[Arg] = &[key("key").multiple()];
const KEY_VALUE: &[Arg] = &[key("key"), string("value")];
const MASTER_NAME: &[Arg] = &[string("master-name")];
const FLUSH: &[Arg] = &[oneof(
    "flush-type",
    &[token("async", "ASYNC"), token("sync", "SYNC")],
)
.optional()];
const COMMAND_NAMES: &[Arg] = &[string("command-name").optional().multiple()];

/// Every command ditto serves, in the order `COMMAND` lists them.
#[rustfmt::skip]
pub(super) const COMMANDS: &[Spec] = &[
    spec("get", 2, &["readonly", "fast"], ONE_KEY, "string", "1.0.0",
        "Returns the value of a key.").args(KEY),
    spec("set", -3, &["write", "denyoom"], ONE_KEY, "string", "1.0.0",
        "Sets the value of a key, with a condition and an expiry if given.").args(&[
        key("key"),
        string("value"),
        oneof("condition", &[token("nx", "NX"), token("xx", "XX")]).optional(),
        token("get", "GET").optional(),
        oneof("expiration", &[
            integer("seconds").after("EX"),
            integer("milliseconds").after("PX"),
        ]).optional(),
    ]),
    spec("setnx", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0",
        "Sets the value of a key only if the key does not exist: 1 if it did, 0 if not.")
        .args(KEY_VALUE),
    spec("del", -2, &["write"], ALL_KEYS, "generic", "1.0.0",
        "Deletes keys; answers how many existed.").args(KEYS),
    spec("unlink", -2, &["write", "fast"], ALL_KEYS, "generic", "4.0.0",
        "Deletes keys, as DEL does.").args(KEYS),
    spec("exists", -2, &["readonly", "fast"], ALL_KEYS, "generic", "3.0.3",
        "Counts how many of the keys exist.").args(KEYS),
    spec("incr", 2, &["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0",
        "Adds 1 to the integer value of a key (an absent key counts as 0).").args(KEY),
    spec("decr", 2, &["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0",
        "Subtracts 1 from the integer value of a key (an absent key counts as 0).").args(KEY),
    spec("incrby", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0",
        "Adds a number to the integer value of a key (an absent key counts as 0).")
        .args(&[key("key"), integer("increment")]),
    spec("decrby", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0",
        "Subtracts a number from the integer value of a key (an absent key counts as 0).")
        .args(&[key("key"), integer("decrement")]),
    spec("mget", -2, &["readonly", "fast"], ALL_KEYS, "string", "1.0.0",
        "Returns the values of the keys, at one moment.").args(KEYS),
    spec("mset", -3, &["write", "denyoom"], (1, -1, 2), "string", "1.0.1",
        "Sets several keys at once.")
        .args(&[block("data", &[key("key"), string("value")]).multiple()]),
    spec("getdel", 2, &["write", "fast"], ONE_KEY, "string", "6.2.0",
        "Returns the value of a key and deletes the key.").args(KEY),
    spec("append", 3, &["write", "denyoom", "fast"], ONE_KEY, "string", "2.0.0",
        "Appends to the value of a key (creating it); answers the new length.").args(KEY_VALUE),
    spec("strlen", 2, &["readonly", "fast"], ONE_KEY, "string", "2.2.0",
        "Returns the length of the value of a key.").args(KEY),
    spec("cas", 4, &["write", "denyoom", "fast"], ONE_KEY, "string", DITTO,
        "ditto's compare-and-set: sets the key to new if it holds expected; 1 if it did, 0 if not.")
        .args(&[key("key"), string("expected"), string("new")]),
    spec("keys", 2, &["readonly"], NO_KEYS, "generic", "1.0.0",
        "Returns the keys that match a glob pattern.").args(&[pattern("pattern")]),
    spec("scan", -2, &["readonly"], NO_KEYS, "generic", "2.8.0",
        "Walks the keys a few at a time from a cursor (0 starts and ends).").args(&[
        integer("cursor"),
        pattern("pattern").after("MATCH").optional(),
        integer("count").after("COUNT").optional(),
        string("type").after("TYPE").optional(),
    ]),
    spec("dbsize", 1, &["readonly", "fast"], NO_KEYS, "server", "1.0.0",
        "Returns the number of keys."),
    spec("ttl", 2, &["readonly", "fast"], ONE_KEY, "generic", "1.0.0",
        "Returns the seconds a key has left (-1: no expiry, -2: no such key).").args(KEY),
    spec("pttl", 2, &["readonly", "fast"], ONE_KEY, "generic", "2.6.0",
        "Returns the milliseconds a key has left (-1: no expiry, -2: no such key).").args(KEY),
    spec("flushall", -1, &["write"], NO_KEYS, "server", "1.0.0",
        "Deletes every key.").args(FLUSH),
    spec("flushdb", -1, &["write"], NO_KEYS, "server", "1.0.0",
        "Deletes every key (ditto has one database).").args(FLUSH),
    spec("ping", -1, &["fast"], NO_KEYS, "connection", "1.0.0",
        "Answers PONG, or the message.").args(&[string("message").optional()]),
    spec("echo", 2, &["fast"], NO_KEYS, "connection", "1.0.0",
        "Answers the message.").args(&[string("message")]),
    spec("hello", -1, &["noauth", "fast"], NO_KEYS, "connection", "6.0.0",
        "Chooses the protocol version (2 or 3), optionally authenticating and naming the connection.")
        .args(&[block("arguments", &[
            integer("protover"),
            block("username-password", &[string("username"), string("password")])
                .after("AUTH")
                .optional(),
            string("clientname").after("SETNAME").optional(),
        ]).optional()]),
    spec("auth", -2, &["noauth", "fast"], NO_KEYS, "connection", "1.0.0",
        "Gives the client password (the user, if named, is default).")
        .args(&[string("username").optional(), string("password")]),
    spec("select", 2, &["loading", "fast"], NO_KEYS, "connection", "1.0.0",
        "Selects a database; ditto has only database 0.").args(&[integer("index")]),
    spec("client", -2, &[], NO_KEYS, "connection", "2.4.0",
        "Commands about this connection.").subcommands(&[
        sub("client|setname", "2.6.9", "Names the connection.")
            .args(&[string("connection-name")]),
        sub("client|getname", "2.6.9", "Returns the connection's name."),
        sub("client|id", "5.0.0", "Returns the connection's id."),
        sub("client|info", "6.2.0", "Describes the connection."),
        sub("client|setinfo", "7.2.0", "Accepts a client library's name and version.")
            .args(&[oneof("attr", &[
                string("libname").after("LIB-NAME"),
                string("libver").after("LIB-VER"),
            ])]),
    ]),
    spec("command", -1, &["loading"], NO_KEYS, "server", "2.8.13",
        "Describes the commands this server serves.").subcommands(&[
        sub("command|count", "2.8.13", "Returns how many commands there are."),
        sub("command|docs", "7.0.0", "Documents the commands (all, or those named).")
            .args(COMMAND_NAMES),
        sub("command|info", "2.8.13", "Describes the commands (all, or those named).")
            .args(COMMAND_NAMES),
        sub("command|list", "7.0.0", "Lists the commands' names."),
    ]),
    spec("info", -1, &["loading"], NO_KEYS, "server", "1.0.0",
        "Describes the server: server, clients, replication, keyspace, stats.")
        .args(&[string("section").optional().multiple()]),
    spec("role", 1, &["noscript", "loading", "fast"], NO_KEYS, "server", "2.8.12",
        "Returns the replication role: master with its backups, or slave with its primary."),
    spec("wait", 3, &[], NO_KEYS, "generic", "3.0.0",
        "Returns at once how many backups hold every acknowledged write (replication is synchronous).")
        .args(&[integer("numreplicas"), integer("timeout")]),
    spec("config", -2, &[], NO_KEYS, "server", "2.0.0",
        "Reads the configuration (set by the server's flags).").subcommands(&[
        sub("config|get", "2.0.0", "Returns the parameters that match the patterns.")
            .args(&[pattern("parameter").multiple()]),
    ]),
    spec("quit", -1, &["noauth", "fast"], NO_KEYS, "connection", "1.0.0",
        "Closes the connection."),
    spec("reset", 1, &["noauth", "fast"], NO_KEYS, "connection", "6.2.0",
        "Resets the connection: protocol 2, no name, no transaction, not authenticated."),
    spec("time", 1, &["loading", "fast"], NO_KEYS, "server", "2.6.0",
        "Returns the primary's clock as this server knows it: seconds and microseconds."),
    spec("sentinel", -2, &[], NO_KEYS, "sentinel", "2.8.4",
        "Sentinel's discovery commands: where the group's primary and members are.")
        .subcommands(&[
        sub("sentinel|get-master-addr-by-name", "2.8.4", "Returns the primary's host and port.")
            .args(MASTER_NAME),
        sub("sentinel|masters", "2.8.4", "Describes the group's primary."),
        sub("sentinel|master", "2.8.4", "Describes the group's primary.").args(MASTER_NAME),
        sub("sentinel|replicas", "5.0.0", "Describes the backups.").args(MASTER_NAME),
        sub("sentinel|sentinels", "2.8.4", "Describes the other members.").args(MASTER_NAME),
    ]),
    spec("multi", 1, &["fast"], NO_KEYS, "transactions", "1.2.0",
        "Starts a transaction: the data commands that follow run at EXEC, as one write."),
    spec("exec", 1, &[], NO_KEYS, "transactions", "1.2.0",
        "Runs the transaction's commands, no other write between them."),
    spec("discard", 1, &["fast"], NO_KEYS, "transactions", "2.0.0",
        "Drops the transaction's commands."),
];

fn find(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// The answer to `COMMAND [sub [name...]]` (`sub` upper-cased).
pub(super) fn command_reply(sub: Option<&str>, names: &[Vec<u8>]) -> Reply {
    match sub {
        None => Reply::Array(COMMANDS.iter().map(Spec::info).collect()),
        Some("COUNT") => Reply::Integer(COMMANDS.len() as i64),
        Some("LIST") => Reply::Array(COMMANDS.iter().map(|c| bulk(c.name)).collect()),
        // All, or those named: an unknown name is left out of the map.
        Some("DOCS") if names.is_empty() => Reply::Map(
            COMMANDS
                .iter()
                .map(|c| (bulk(c.name), c.docs(c.group)))
                .collect(),
        ),
        Some("DOCS") => Reply::Map(
            names
                .iter()
                .filter_map(|n| find(n))
                .map(|c| (bulk(c.name), c.docs(c.group)))
                .collect(),
        ),
        // All, or those named: an unknown name is a null in its place.
        Some("INFO") if names.is_empty() => Reply::Array(COMMANDS.iter().map(Spec::info).collect()),
        Some("INFO") => Reply::Array(
            names
                .iter()
                .map(|n| find(n).map_or(Reply::Null, Spec::info))
                .collect(),
        ),
        Some(other) => Reply::err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            other.to_ascii_lowercase()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{self, Limits};
    use crate::resp::Version;

    fn text(r: &Reply) -> &str {
        match r {
            Reply::Bulk(b) => std::str::from_utf8(b).unwrap(),
            Reply::Simple(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn field<'a>(map: &'a Reply, name: &str) -> Option<&'a Reply> {
        let Reply::Map(fields) = map else {
            panic!("expected a map, got {map:?}")
        };
        fields.iter().find(|(k, _)| text(k) == name).map(|(_, v)| v)
    }

    /// An argument's part of a hint, built as `redis-cli` builds it from `COMMAND DOCS` (and
    /// failing where `redis-cli` would abort: an argument without a name or a type).
    fn hint_of(arg: &Reply) -> String {
        let name = text(field(arg, "name").expect("every argument has a name"));
        let kind = text(field(arg, "type").expect("every argument has a type"));
        let token = field(arg, "token").map(text);
        let flags: Vec<&str> = match field(arg, "flags") {
            Some(Reply::Array(f)) => f
                .iter()
                .map(|f| match f {
                    Reply::Simple(s) => s.as_str(),
                    other => panic!("a flag must be a simple string, got {other:?}"),
                })
                .collect(),
            Some(other) => panic!("flags must be an array, got {other:?}"),
            None => Vec::new(),
        };
        let subs = || match field(arg, "arguments") {
            Some(Reply::Array(a)) => a.iter().map(hint_of).collect::<Vec<_>>(),
            other => panic!("{name}: a {kind} needs arguments, got {other:?}"),
        };
        let repeat = match kind {
            "key" | "string" | "integer" | "pattern" => name.to_owned(),
            "oneof" => subs().join("|"),
            "block" => subs().join(" "),
            "pure-token" => String::new(),
            other => panic!("redis-cli knows no argument type {other:?}"),
        };
        let mut part = match (token, kind) {
            (Some(t), "pure-token") => t.to_owned(),
            (Some(t), _) => format!("{t} {repeat}"),
            (None, _) => repeat.clone(),
        };
        if flags.contains(&"multiple") {
            part = format!("{part} [{repeat} ...]");
        }
        if flags.contains(&"optional") {
            part = format!("[{part}]");
        }
        part
    }

    fn hint(docs: &Reply) -> String {
        match field(docs, "arguments") {
            Some(Reply::Array(args)) => args.iter().map(hint_of).collect::<Vec<_>>().join(" "),
            Some(other) => panic!("arguments must be an array, got {other:?}"),
            None => String::new(),
        }
    }

    /// `COMMAND DOCS` documents every command, with the fields `redis-cli` reads; it answered
    /// an empty map before, which left `redis-cli` without hints or `help`.
    #[test]
    fn command_docs_document_every_command_as_redis_cli_reads_them() {
        let Reply::Map(all) = command_reply(Some("DOCS"), &[]) else {
            panic!("COMMAND DOCS is a map")
        };
        assert_eq!(all.len(), COMMANDS.len());
        for (name, docs) in &all {
            for f in ["summary", "since", "group"] {
                assert!(
                    field(docs, f).is_some_and(|v| !text(v).is_empty()),
                    "{}: no {f}",
                    text(name)
                );
            }
            hint(docs);
            if let Some(Reply::Map(subs)) = field(docs, "subcommands") {
                for (sub, docs) in subs {
                    assert!(text(sub).starts_with(&format!("{}|", text(name))));
                    assert!(field(docs, "group").is_some(), "{}: no group", text(sub));
                    hint(docs);
                }
            }
        }
        let docs = |name: &str| {
            let Reply::Map(one) = command_reply(Some("DOCS"), &[name.as_bytes().to_vec()]) else {
                panic!()
            };
            one.into_iter().next().map(|(_, d)| d)
        };
        assert_eq!(
            hint(&docs("SET").unwrap()),
            "key value [NX|XX] [GET] [EX seconds|PX milliseconds]"
        );
        assert_eq!(hint(&docs("mset").unwrap()), "key value [key value ...]");
        assert_eq!(hint(&docs("cas").unwrap()), "key expected new");
        assert_eq!(
            hint(&docs("scan").unwrap()),
            "cursor [MATCH pattern] [COUNT count] [TYPE type]"
        );
        assert!(docs("nosuch").is_none(), "an unknown name is left out");
        // Both encodings are well formed: RESP2 flattens the maps.
        let all = command_reply(Some("DOCS"), &[]);
        assert!(all.to_bytes(Version::Resp2).starts_with(b"*"));
        assert!(all.to_bytes(Version::Resp3).starts_with(b"%"));
    }

    /// Every command `COMMAND` lists is one the parser takes, with the arity it gives, and
    /// `COMMAND INFO` answers a null for a name it does not know.
    #[test]
    fn command_info_matches_what_the_parser_serves() {
        for c in COMMANDS {
            let mut words: Vec<Vec<u8>> = vec![c.name.as_bytes().to_vec()];
            let n = c.arity.unsigned_abs() as usize;
            words.extend((1..n).map(|i| format!("{i}").into_bytes()));
            let parsed = command::parse(&words, &Limits::default());
            if let Err(e) = &parsed {
                assert!(!e.starts_with("ERR unknown command"), "{}: {e}", c.name);
            }
        }
        let Reply::Array(infos) =
            command_reply(Some("INFO"), &[b"GET".to_vec(), b"nosuch".to_vec()])
        else {
            panic!()
        };
        assert!(matches!(&infos[..], [Reply::Array(get), Reply::Null] if text(&get[0]) == "get"));
        assert_eq!(
            command_reply(Some("COUNT"), &[]),
            Reply::Integer(COMMANDS.len() as i64)
        );
    }
}
