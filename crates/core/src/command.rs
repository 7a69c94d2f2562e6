//! Redis commands: the arguments of a RESP request, parsed into what the node does with them.
//!
//! Data commands become a [`KeyOp`] (a write, logged) or a [`Query`] (a read, answered from the
//! state); the rest are about the connection or the server and are answered by the node. Every
//! refusal is in Redis's own words (`ERR wrong number of arguments for 'get' command`, `ERR
//! syntax error`...), because client libraries match on them, and a refused command changes
//! nothing.

use crate::keyspace::{Bytes, KeyOp, Query, SetIf};

/// Sizes a request may not pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Longest key, in bytes.
    pub max_key: usize,
    /// Longest value, in bytes (an `APPEND` counts its argument; the stored value is bounded
    /// by `--maxmemory`).
    pub max_value: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_key: 512,
            max_value: 1 << 20,
        }
    }
}

/// A `CLIENT` subcommand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Client {
    SetName(Bytes),
    GetName,
    Id,
    /// `CLIENT SETINFO`, `CLIENT NO-EVICT`...: accepted and ignored, as they change nothing
    /// here.
    Accepted,
    Info,
}

/// A `SENTINEL` query: the part of Sentinel's interface that clients use to find the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sentinel {
    GetMasterAddrByName(Bytes),
    Masters,
    Master(Bytes),
    Replicas(Bytes),
    Sentinels(Bytes),
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Write(KeyOp),
    /// `DITTO.TAGGED client number command args...` (ditto's own): the write, applied at most
    /// once however often the client retries it with the same numbers, each retry answered
    /// with the first one's reply (see `replica::log::Tag`).
    Tagged {
        client: u64,
        number: u64,
        op: KeyOp,
    },
    Read(Query),
    Ping(Option<Bytes>),
    Echo(Bytes),
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    Hello {
        version: Option<i64>,
        auth: Option<(Bytes, Bytes)>,
        name: Option<Bytes>,
    },
    /// `AUTH [user] password`.
    Auth {
        user: Option<Bytes>,
        password: Bytes,
    },
    Select(i64),
    Client(Client),
    /// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS [name...]`, `COMMAND INFO [name...]`...: the
    /// subcommand, upper-cased, and the command names after it.
    Command(Option<String>, Vec<Bytes>),
    /// `INFO [section...]`, sections lower-cased.
    Info(Vec<String>),
    Role,
    /// `WAIT numreplicas timeout`.
    Wait,
    /// `CONFIG GET pattern...`.
    ConfigGet(Vec<Bytes>),
    Quit,
    Reset,
    Time,
    Sentinel(Sentinel),
    Multi,
    Exec,
    Discard,
}

/// Why a request is refused: the error reply's text (its first word the kind, e.g. `ERR`).
pub type Refusal = String;

fn arity(name: &str) -> Refusal {
    format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    )
}

const SYNTAX: &str = "ERR syntax error";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

fn int(arg: &[u8]) -> Result<i64, Refusal> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| NOT_INTEGER.to_owned())
}

fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

fn key(arg: &[u8], limits: &Limits) -> Result<Bytes, Refusal> {
    if arg.len() > limits.max_key {
        return Err(format!(
            "ERR key is {} bytes, over this server's limit of {} (--max-key-bytes)",
            arg.len(),
            limits.max_key
        ));
    }
    Ok(arg.to_vec())
}

fn value(arg: &[u8], limits: &Limits) -> Result<Bytes, Refusal> {
    if arg.len() > limits.max_value {
        return Err(format!(
            "ERR value is {} bytes, over this server's limit of {} (--max-value-bytes)",
            arg.len(),
            limits.max_value
        ));
    }
    Ok(arg.to_vec())
}

fn keys(args: &[Bytes], limits: &Limits) -> Result<Vec<Bytes>, Refusal> {
    args.iter().map(|a| key(a, limits)).collect()
}

/// The command `args` ask for (`args[0]` is its name, in any case).
pub fn parse(args: &[Bytes], limits: &Limits) -> Result<Command, Refusal> {
    let Some((name, rest)) = args.split_first() else {
        return Err("ERR empty command".to_owned());
    };
    let name = upper(name);
    let n = rest.len();
    let need = |ok: bool| if ok { Ok(()) } else { Err(arity(&name)) };
    let write = |op| Ok(Command::Write(op));
    let read = |q| Ok(Command::Read(q));
    match name.as_str() {
        "GET" => {
            need(n == 1)?;
            read(Query::Get(key(&rest[0], limits)?))
        }
        "SET" => {
            need(n >= 2)?;
            set(&rest[0], &rest[1], &rest[2..], limits)
        }
        "SETNX" => {
            // A compare-and-set against absence: it answers 1 or 0, as Redis's SETNX does.
            need(n == 2)?;
            write(KeyOp::Cas {
                key: key(&rest[0], limits)?,
                expected: None,
                new: value(&rest[1], limits)?,
            })
        }
        "DEL" | "UNLINK" => {
            need(n >= 1)?;
            write(KeyOp::Del(keys(rest, limits)?))
        }
        "EXISTS" => {
            need(n >= 1)?;
            read(Query::Exists(keys(rest, limits)?))
        }
        "INCR" | "DECR" => {
            need(n == 1)?;
            let by = if name == "INCR" { 1 } else { -1 };
            write(KeyOp::IncrBy {
                key: key(&rest[0], limits)?,
                by,
            })
        }
        "INCRBY" | "DECRBY" => {
            need(n == 2)?;
            let by = int(&rest[1])?;
            let by = if name == "INCRBY" {
                by
            } else {
                by.checked_neg().ok_or_else(|| NOT_INTEGER.to_owned())?
            };
            write(KeyOp::IncrBy {
                key: key(&rest[0], limits)?,
                by,
            })
        }
        "MGET" => {
            need(n >= 1)?;
            read(Query::MGet(keys(rest, limits)?))
        }
        "MSET" => {
            need(n >= 2 && n % 2 == 0)?;
            let pairs = rest
                .chunks(2)
                .map(|kv| Ok((key(&kv[0], limits)?, value(&kv[1], limits)?)))
                .collect::<Result<_, Refusal>>()?;
            write(KeyOp::MSet(pairs))
        }
        "GETDEL" => {
            need(n == 1)?;
            write(KeyOp::GetDel(key(&rest[0], limits)?))
        }
        "APPEND" => {
            need(n == 2)?;
            write(KeyOp::Append {
                key: key(&rest[0], limits)?,
                value: value(&rest[1], limits)?,
            })
        }
        "STRLEN" => {
            need(n == 1)?;
            read(Query::StrLen(key(&rest[0], limits)?))
        }
        "CAS" => {
            // ditto's own: `CAS key expected new` sets `new` if the value is `expected`, and
            // answers 1 if it did, 0 if not. (`SETNX key new` is the same against absence.)
            need(n == 3)?;
            write(KeyOp::Cas {
                key: key(&rest[0], limits)?,
                expected: Some(value(&rest[1], limits)?),
                new: value(&rest[2], limits)?,
            })
        }
        "KEYS" => {
            need(n == 1)?;
            read(Query::Keys(rest[0].clone()))
        }
        "SCAN" => {
            need(n >= 1)?;
            scan(rest)
        }
        "DBSIZE" => {
            need(n == 0)?;
            read(Query::DbSize)
        }
        "PTTL" => {
            need(n == 1)?;
            read(Query::PTtl(key(&rest[0], limits)?))
        }
        "TTL" => {
            need(n == 1)?;
            read(Query::Ttl(key(&rest[0], limits)?))
        }
        "FLUSHALL" | "FLUSHDB" => {
            // ASYNC and SYNC mean nothing here: the flush is one entry either way.
            match rest {
                [] => write(KeyOp::FlushAll),
                [mode] if matches!(upper(mode).as_str(), "ASYNC" | "SYNC") => {
                    write(KeyOp::FlushAll)
                }
                _ => Err(SYNTAX.to_owned()),
            }
        }
        "PING" => match rest {
            [] => Ok(Command::Ping(None)),
            [msg] => Ok(Command::Ping(Some(msg.clone()))),
            _ => Err(arity(&name)),
        },
        "ECHO" => {
            need(n == 1)?;
            Ok(Command::Echo(rest[0].clone()))
        }
        "HELLO" => hello(rest),
        "AUTH" => match rest {
            [password] => Ok(Command::Auth {
                user: None,
                password: password.clone(),
            }),
            [user, password] => Ok(Command::Auth {
                user: Some(user.clone()),
                password: password.clone(),
            }),
            _ => Err(arity(&name)),
        },
        "SELECT" => {
            need(n == 1)?;
            Ok(Command::Select(int(&rest[0])?))
        }
        "CLIENT" => client(rest),
        "COMMAND" => Ok(Command::Command(
            rest.first().map(|s| upper(s)),
            rest.iter().skip(1).cloned().collect(),
        )),
        "INFO" => Ok(Command::Info(
            rest.iter()
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                .collect(),
        )),
        "ROLE" => {
            need(n == 0)?;
            Ok(Command::Role)
        }
        "WAIT" => {
            need(n == 2)?;
            int(&rest[0])?;
            int(&rest[1])?;
            Ok(Command::Wait)
        }
        "CONFIG" => match rest.split_first() {
            Some((sub, patterns)) if upper(sub) == "GET" && !patterns.is_empty() => {
                Ok(Command::ConfigGet(patterns.to_vec()))
            }
            Some((sub, _)) if upper(sub) == "GET" => Err(arity("config|get")),
            Some((sub, _)) => Err(format!(
                "ERR CONFIG {} is not supported: ditto is configured by its command-line flags",
                upper(sub)
            )),
            None => Err(arity(&name)),
        },
        "MULTI" => {
            need(n == 0)?;
            Ok(Command::Multi)
        }
        "EXEC" => {
            need(n == 0)?;
            Ok(Command::Exec)
        }
        "DISCARD" => {
            need(n == 0)?;
            Ok(Command::Discard)
        }
        "DITTO.TAGGED" => {
            need(n >= 3)?;
            let id = |arg: &[u8]| {
                std::str::from_utf8(arg)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| "ERR client and number must be whole numbers".to_owned())
            };
            let (client, number) = (id(&rest[0])?, id(&rest[1])?);
            match parse(&rest[2..], limits)? {
                Command::Write(op) => Ok(Command::Tagged { client, number, op }),
                _ => Err("ERR DITTO.TAGGED takes a write command".to_owned()),
            }
        }
        "QUIT" => Ok(Command::Quit),
        "RESET" => Ok(Command::Reset),
        "TIME" => Ok(Command::Time),
        "SENTINEL" => sentinel(rest),
        _ => Err(unknown_command(&args[0], rest)),
    }
}

/// Redis's refusal of a command it does not know, which names the command and quotes its first
/// arguments, each followed by a blank, within 128 bytes: a request with long arguments gets a
/// short error, not its arguments back.
fn unknown_command(name: &[u8], rest: &[Bytes]) -> Refusal {
    const BUDGET: usize = 128;
    let mut quoted = Vec::new();
    for arg in rest {
        if quoted.len() >= BUDGET {
            break;
        }
        let room = BUDGET - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(&arg[..arg.len().min(room)]);
        quoted.extend_from_slice(b"' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(&name[..name.len().min(BUDGET)]),
        String::from_utf8_lossy(&quoted)
    )
}

fn set(k: &[u8], v: &[u8], opts: &[Bytes], limits: &Limits) -> Result<Command, Refusal> {
    let mut when = SetIf::Always;
    let mut get = false;
    let mut px = None;
    let mut i = 0;
    while i < opts.len() {
        match upper(&opts[i]).as_str() {
            "NX" if when == SetIf::Always => when = SetIf::Absent,
            "XX" if when == SetIf::Always => when = SetIf::Present,
            "GET" => get = true,
            unit @ ("EX" | "PX") if px.is_none() => {
                let n = opts.get(i + 1).ok_or_else(|| SYNTAX.to_owned())?;
                let n = int(n)?;
                let scale = if unit == "EX" { 1000 } else { 1 };
                match n.checked_mul(scale) {
                    Some(ms) if n > 0 => px = Some(ms as u64),
                    _ => return Err("ERR invalid expire time in 'set' command".to_owned()),
                }
                i += 1;
            }
            _ => return Err(SYNTAX.to_owned()),
        }
        i += 1;
    }
    Ok(Command::Write(KeyOp::Set {
        key: key(k, limits)?,
        value: value(v, limits)?,
        when,
        get,
        px,
    }))
}

fn scan(rest: &[Bytes]) -> Result<Command, Refusal> {
    let cursor = std::str::from_utf8(&rest[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| "ERR invalid cursor".to_owned())?;
    let mut pattern = None;
    let mut count = 10;
    let mut opts = rest[1..].chunks(2);
    for pair in opts.by_ref() {
        let [name, arg] = pair else {
            return Err(SYNTAX.to_owned());
        };
        match upper(name).as_str() {
            "MATCH" => pattern = Some(arg.clone()),
            "COUNT" => match int(arg)? {
                c if c >= 1 => count = c as usize,
                _ => return Err(SYNTAX.to_owned()),
            },
            // Every key is a string: TYPE string filters nothing, any other type everything.
            "TYPE" if upper(arg) == "STRING" => {}
            "TYPE" => pattern = Some(Vec::new()),
            _ => return Err(SYNTAX.to_owned()),
        }
    }
    Ok(Command::Read(Query::Scan {
        cursor,
        pattern,
        count,
    }))
}

fn hello(rest: &[Bytes]) -> Result<Command, Refusal> {
    let Some((version, mut opts)) = rest.split_first() else {
        return Ok(Command::Hello {
            version: None,
            auth: None,
            name: None,
        });
    };
    let version = int(version)
        .map_err(|_| "ERR Protocol version is not an integer or out of range".to_owned())?;
    let (mut auth, mut name) = (None, None);
    while let Some((opt, more)) = opts.split_first() {
        match (upper(opt).as_str(), more) {
            ("AUTH", [user, password, tail @ ..]) => {
                auth = Some((user.clone(), password.clone()));
                opts = tail;
            }
            ("SETNAME", [n, tail @ ..]) => {
                name = Some(n.clone());
                opts = tail;
            }
            _ => {
                return Err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(opt)
                ));
            }
        }
    }
    Ok(Command::Hello {
        version: Some(version),
        auth,
        name,
    })
}

fn client(rest: &[Bytes]) -> Result<Command, Refusal> {
    let Some((sub, args)) = rest.split_first() else {
        return Err(arity("client"));
    };
    let sub = upper(sub);
    let c = match (sub.as_str(), args) {
        ("SETNAME", [name]) => {
            if name.iter().any(|&b| b <= b' ' || b > b'~') {
                return Err(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                        .to_owned(),
                );
            }
            Client::SetName(name.clone())
        }
        ("GETNAME", []) => Client::GetName,
        ("ID", []) => Client::Id,
        ("INFO", []) => Client::Info,
        ("SETINFO" | "NO-EVICT" | "NO-TOUCH" | "REPLY", _) if !args.is_empty() => Client::Accepted,
        ("SETNAME" | "GETNAME" | "ID" | "INFO" | "SETINFO" | "NO-EVICT" | "NO-TOUCH", _) => {
            return Err(arity(&format!("client|{}", sub.to_ascii_lowercase())));
        }
        _ => {
            return Err(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                sub.to_ascii_lowercase()
            ));
        }
    };
    Ok(Command::Client(c))
}

fn sentinel(rest: &[Bytes]) -> Result<Command, Refusal> {
    let Some((sub, args)) = rest.split_first() else {
        return Err(arity("sentinel"));
    };
    let sub = upper(sub);
    let s = match (sub.as_str(), args) {
        ("GET-MASTER-ADDR-BY-NAME" | "GET-PRIMARY-ADDR-BY-NAME", [name]) => {
            Sentinel::GetMasterAddrByName(name.clone())
        }
        ("MASTERS" | "PRIMARIES", []) => Sentinel::Masters,
        ("MASTER" | "PRIMARY", [name]) => Sentinel::Master(name.clone()),
        ("REPLICAS" | "SLAVES", [name]) => Sentinel::Replicas(name.clone()),
        ("SENTINELS", [name]) => Sentinel::Sentinels(name.clone()),
        _ => {
            return Err(format!(
                "ERR unknown or unsupported SENTINEL subcommand '{}' (ditto answers \
                 get-master-addr-by-name, masters, master, replicas, sentinels)",
                sub.to_ascii_lowercase()
            ));
        }
    };
    Ok(Command::Sentinel(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Result<Command, Refusal> {
        let args: Vec<Bytes> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        parse(&args, &Limits::default())
    }

    fn b(s: &str) -> Bytes {
        s.as_bytes().to_vec()
    }

    #[test]
    fn set_takes_its_options_in_any_order() {
        assert_eq!(
            cmd(&["set", "k", "v", "px", "100", "nx", "get"]),
            Ok(Command::Write(KeyOp::Set {
                key: b("k"),
                value: b("v"),
                when: SetIf::Absent,
                get: true,
                px: Some(100),
            }))
        );
        assert_eq!(
            cmd(&["SET", "k", "v", "EX", "2"]),
            Ok(Command::Write(KeyOp::Set {
                key: b("k"),
                value: b("v"),
                when: SetIf::Always,
                get: false,
                px: Some(2000),
            }))
        );
        assert_eq!(cmd(&["SET", "k", "v", "NX", "XX"]), Err(SYNTAX.to_owned()));
        assert_eq!(cmd(&["SET", "k", "v", "EX"]), Err(SYNTAX.to_owned()));
        assert_eq!(
            cmd(&["SET", "k", "v", "EX", "0"]),
            Err("ERR invalid expire time in 'set' command".to_owned())
        );
        assert_eq!(
            cmd(&["SET", "k"]),
            Err("ERR wrong number of arguments for 'set' command".to_owned())
        );
    }

    #[test]
    fn counters_and_multi_key_commands() {
        assert_eq!(
            cmd(&["DECRBY", "n", "5"]),
            Ok(Command::Write(KeyOp::IncrBy {
                key: b("n"),
                by: -5
            }))
        );
        assert_eq!(
            cmd(&["DECRBY", "n", "-9223372036854775808"]),
            Err(NOT_INTEGER.to_owned()),
            "negating the least integer overflows"
        );
        assert_eq!(cmd(&["INCRBY", "n", "x"]), Err(NOT_INTEGER.to_owned()));
        assert_eq!(
            cmd(&["MSET", "a", "1", "b", "2"]),
            Ok(Command::Write(KeyOp::MSet(vec![
                (b("a"), b("1")),
                (b("b"), b("2"))
            ])))
        );
        assert!(cmd(&["MSET", "a", "1", "b"]).is_err());
        assert_eq!(
            cmd(&["CAS", "k", "old", "new"]),
            Ok(Command::Write(KeyOp::Cas {
                key: b("k"),
                expected: Some(b("old")),
                new: b("new"),
            }))
        );
        assert_eq!(
            cmd(&["SETNX", "k", "new"]),
            Ok(Command::Write(KeyOp::Cas {
                key: b("k"),
                expected: None,
                new: b("new"),
            }))
        );
    }

    /// The words and length Redis uses: every argument quoted and followed by a blank, within
    /// 128 bytes, so that a megabyte argument is not sent back in the error.
    #[test]
    fn an_unknown_command_is_refused_in_redis_words_and_briefly() {
        assert_eq!(
            cmd(&["nosuch"]),
            Err("ERR unknown command 'nosuch', with args beginning with: ".to_owned())
        );
        assert_eq!(
            cmd(&["nosuch", "a", "b", "c", "d"]),
            Err(
                "ERR unknown command 'nosuch', with args beginning with: 'a' 'b' 'c' 'd' "
                    .to_owned()
            )
        );
        let long = "x".repeat(1 << 20);
        let refusal = cmd(&["nosuch", &long, "b"]).unwrap_err();
        assert!(refusal.len() < 256, "{} bytes", refusal.len());
        assert!(
            refusal.ends_with(&format!("'{}' ", "x".repeat(128))),
            "{refusal}"
        );
    }

    #[test]
    fn ttl_asks_for_seconds_and_pttl_for_milliseconds() {
        assert_eq!(cmd(&["ttl", "k"]), Ok(Command::Read(Query::Ttl(b("k")))));
        assert_eq!(cmd(&["PTTL", "k"]), Ok(Command::Read(Query::PTtl(b("k")))));
        assert!(cmd(&["TTL"]).is_err());
    }

    #[test]
    fn a_tagged_write_wraps_any_write() {
        assert_eq!(
            cmd(&["ditto.tagged", "7", "3", "INCRBY", "n", "2"]),
            Ok(Command::Tagged {
                client: 7,
                number: 3,
                op: KeyOp::IncrBy { key: b("n"), by: 2 },
            })
        );
        assert!(cmd(&["DITTO.TAGGED", "7", "3", "GET", "n"]).is_err());
        assert!(cmd(&["DITTO.TAGGED", "x", "3", "INCR", "n"]).is_err());
        assert!(cmd(&["DITTO.TAGGED", "7", "3"]).is_err());
    }

    #[test]
    fn scan_options() {
        assert_eq!(
            cmd(&["SCAN", "0", "MATCH", "user:*", "COUNT", "100"]),
            Ok(Command::Read(Query::Scan {
                cursor: 0,
                pattern: Some(b("user:*")),
                count: 100,
            }))
        );
        assert_eq!(cmd(&["SCAN", "x"]), Err("ERR invalid cursor".to_owned()));
        assert_eq!(cmd(&["SCAN", "0", "COUNT"]), Err(SYNTAX.to_owned()));
        assert_eq!(cmd(&["SCAN", "0", "COUNT", "0"]), Err(SYNTAX.to_owned()));
    }

    #[test]
    fn limits_refuse_long_keys_and_values() {
        let limits = Limits {
            max_key: 3,
            max_value: 4,
        };
        let p = |w: &[&str]| {
            let a: Vec<Bytes> = w.iter().map(|s| b(s)).collect();
            parse(&a, &limits)
        };
        assert!(p(&["SET", "abc", "abcd"]).is_ok());
        assert!(
            p(&["SET", "abcd", "v"])
                .unwrap_err()
                .contains("--max-key-bytes")
        );
        assert!(
            p(&["SET", "k", "abcde"])
                .unwrap_err()
                .contains("--max-value-bytes")
        );
        assert!(p(&["MSET", "k", "v", "k2", "abcde"]).is_err());
        assert!(p(&["GET", "abcd"]).is_err());
    }

    #[test]
    fn connection_commands_and_errors_in_redis_words() {
        assert_eq!(cmd(&["ping"]), Ok(Command::Ping(None)));
        assert_eq!(
            cmd(&["HELLO", "3", "SETNAME", "me"]),
            Ok(Command::Hello {
                version: Some(3),
                auth: None,
                name: Some(b("me")),
            })
        );
        assert!(cmd(&["HELLO", "3", "AUTH", "u"]).is_err());
        assert_eq!(
            cmd(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
            Ok(Command::Client(Client::Accepted))
        );
        assert!(cmd(&["CLIENT", "SETNAME", "has space"]).is_err());
        assert_eq!(
            cmd(&["CONFIG", "GET", "save"]),
            Ok(Command::ConfigGet(vec![b("save")]))
        );
        assert!(
            cmd(&["CONFIG", "SET", "x", "y"])
                .unwrap_err()
                .contains("flags")
        );
        assert_eq!(
            cmd(&["SENTINEL", "get-master-addr-by-name", "ditto"]),
            Ok(Command::Sentinel(Sentinel::GetMasterAddrByName(b("ditto"))))
        );
        assert_eq!(
            cmd(&["NOPE", "a", "b"]),
            Err("ERR unknown command 'NOPE', with args beginning with: 'a' 'b' ".to_owned())
        );
        assert_eq!(cmd(&[]), Err("ERR empty command".to_owned()));
    }
}
