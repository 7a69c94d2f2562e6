//! The `command` and `outcome` labels of a request.
//!
//! Every distinct label value is a time series the metrics keep forever, so a label taken from
//! what a client sent must come from a fixed set: a client sending random verbs would otherwise
//! make the server's memory, and every scrape, grow without bound. A command is therefore one
//! of [`KNOWN`] or [`OTHER`], never the client's text.

/// The label of every command not in [`KNOWN`].
pub const OTHER: &str = "other";

/// The commands that get a label of their own: the verbs of the line protocol, then the
/// commands of RESP clients. Upper case, as the label shows them.
pub const KNOWN: &[&str] = &[
    // Line protocol (docs/protocol.md).
    "READ", "WRITE", "UPDATE", "JOIN", "STATUS", "FAILOVER", "SYNC", "ACKED", "PROPOSE", "PEER",
    // RESP: the keyspace's commands and the connection housekeeping clients send.
    "GET", "SET", "DEL", "EXISTS", "INCR", "INCRBY", "DECR", "DECRBY", "APPEND", "MGET", "MSET",
    "GETDEL", "CAS", "STRLEN", "KEYS", "SCAN", "DBSIZE", "PTTL", "FLUSHALL", "PING", "ECHO",
    "HELLO", "CLIENT", "COMMAND", "INFO", "SELECT", "QUIT",
];

/// The label of a command named `name` (any case): its upper-case name if known, else
/// [`OTHER`]. For RESP, `name` is the request's first argument.
pub fn command(name: &[u8]) -> &'static str {
    let name = name.trim_ascii();
    KNOWN
        .iter()
        .find(|known| known.as_bytes().eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(OTHER)
}

/// The label of a line-protocol request: its verb, the part before the first `:`.
pub fn line_command(line: &[u8]) -> &'static str {
    let verb = line.split(|&b| b == b':').next().unwrap_or_default();
    command(verb)
}

/// The outcome of a request whose reply is `reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }

    /// A line-protocol reply is an error if it starts with `ERR`.
    pub fn of_line(reply: &[u8]) -> Outcome {
        if ditto_core::wire::is_error_reply(reply) {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }

    /// A RESP reply is an error if it is one: it starts with `-`.
    pub fn of_resp(reply: &[u8]) -> Outcome {
        if reply.first() == Some(&b'-') {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_labelled_by_its_verb_in_upper_case() {
        assert_eq!(line_command(b"WRITE:5"), "WRITE");
        assert_eq!(line_command(b"write:5"), "WRITE");
        assert_eq!(line_command(b"READ"), "READ");
        assert_eq!(line_command(b"read:linearizable"), "READ");
        assert_eq!(line_command(b" Status "), "STATUS");
        assert_eq!(line_command(b"FAILOVER:"), "FAILOVER");
        assert_eq!(line_command(b"PEER:1 127.0.0.1:7000"), "PEER");
    }

    #[test]
    fn anything_unknown_is_other() {
        assert_eq!(line_command(b""), OTHER);
        assert_eq!(line_command(b":5"), OTHER);
        assert_eq!(line_command(b"FROB:1"), OTHER);
        assert_eq!(line_command(b"WRITEX:1"), OTHER);
        assert_eq!(line_command(b"WRIT"), OTHER);
        assert_eq!(line_command(&[0xff, 0xfe, b':']), OTHER);
        assert_eq!(command(b"GET"), "GET");
        assert_eq!(command(b"get"), "GET");
        assert_eq!(command(b"GETX"), OTHER);
    }

    #[test]
    fn the_label_set_is_bounded_by_the_known_list() {
        // Whatever arrives, the labels are the known names and `other`: a client cannot mint
        // new series.
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..10_000u32 {
            seen.insert(line_command(format!("VERB{n}:1").as_bytes()));
            seen.insert(command(format!("cmd{n}").as_bytes()));
        }
        for known in KNOWN {
            seen.insert(command(known.as_bytes()));
        }
        assert_eq!(seen.len(), KNOWN.len() + 1);
        assert!(
            KNOWN
                .iter()
                .all(|k| k.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn errors_are_told_by_the_start_of_the_reply() {
        assert_eq!(Outcome::of_line(b"ACK"), Outcome::Ok);
        assert_eq!(Outcome::of_line(b"VALUE:5"), Outcome::Ok);
        assert_eq!(Outcome::of_line(b"ERR:not the primary"), Outcome::Error);
        assert_eq!(Outcome::of_resp(b"+OK\r\n"), Outcome::Ok);
        assert_eq!(Outcome::of_resp(b":1\r\n"), Outcome::Ok);
        assert_eq!(Outcome::of_resp(b"-ERR no\r\n"), Outcome::Error);
        assert_eq!(Outcome::of_resp(b""), Outcome::Ok);
    }
}
