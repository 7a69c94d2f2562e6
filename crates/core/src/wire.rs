//! The line protocol of clients and seed peers: parsing requests, formatting replies.
//!
//! Every message is one line. The seed defines four requests (`READ`, `WRITE:v`, `JOIN:port`,
//! `UPDATE:v`); ditto adds tagged writes `WRITE:v:client:n`, `READ:linearizable`, `STATUS` and
//! `FAILOVER`. Replicas speak to each other
//! in the typed messages of `replica::msg` after a `PEER:` hello. The pre-view verbs `SYNC`,
//! `ACKED` and `PROPOSE` are still recognised, so that a server of the pre-view protocol gets
//! a clear refusal rather than a parse error.
//! See `docs/protocol.md` for the whole grammar with examples.
//!
//! Parsing is liberal where the seed is vague (verbs in any case, blanks around fields) and strict
//! where a mistake would change state (a value must be a whole `i64`, a port must be 1–65535).

use thiserror::Error;

use crate::addr::Addr;
use crate::replica::log::Tag;

/// A sequence number of the pre-view stream protocol (`ACKED:seq`), still parsed so that such
/// a peer gets a clear refusal.
pub type Seq = u64;

/// The longest line a server accepts, terminator excluded. Longer lines get `ERR:` and the
/// connection is closed, so no peer can make a server buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// A request, as received by a server on a connection it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `READ`: reply with the replica's value.
    Read,
    /// `READ:linearizable` (ditto): reply with the value only at a primary of a normal view that
    /// holds its lease, so the value is linearizable; anyone else refuses with a hint of the
    /// primary. A client that means to read at the primary may reach a node that has just
    /// become a backup, which would answer `READ` locally (sequentially consistent only).
    ReadLinearizable,
    /// `WRITE:v` from a client.
    Write(i64),
    /// `UPDATE:v`: from a backup to the primary (forwarded write), or from the primary to a backup.
    Update(i64),
    /// `JOIN:port`: a backup listening on `port` joins the primary.
    Join(u16),
    /// `SYNC:port` (ditto): the backup at `port` asks for a snapshot and an ordered stream of
    /// entries on this connection instead of one `UPDATE` per connection.
    Sync(u16),
    /// `ACKED:seq` (ditto): on a stream, the backup has applied every entry up to `seq`.
    Acked(Seq),
    /// `PROPOSE:op` (ditto): a backup forwards a client's write and wants to know its sequence
    /// number, so that it can answer the client only once its own replica holds the write.
    Propose,
    /// `STATUS`: one line describing the node, for operators and tests.
    Status,
    /// `WRITE:v:client:number` (ditto): a write tagged for at-most-once application; a retry
    /// carries the same tag.
    TaggedWrite { value: i64, tag: Tag },
    /// `FAILOVER` or `FAILOVER:host:port` (ditto): ask the primary to hand over.
    Failover(Option<Addr>),
    /// `AUTH:password` (ditto): give the client password, where the server has one.
    Auth(String),
}

/// Why a line is not a valid request. The `Display` text is what follows `ERR:` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("empty request")]
    Empty,
    #[error("request is not valid UTF-8")]
    NotUtf8,
    #[error(
        "unknown command (try READ, WRITE:<n>, STATUS; servers also take UPDATE:<n>, JOIN:<port>)"
    )]
    UnknownVerb,
    #[error("{0} needs an argument, e.g. {0}:5")]
    MissingArgument(&'static str),
    #[error("{0} takes no argument")]
    UnexpectedArgument(&'static str),
    #[error("bad value: expected a whole number from -9223372036854775808 to 9223372036854775807")]
    BadValue,
    #[error("bad port: expected a whole number from 1 to 65535")]
    BadPort,
    #[error("bad sequence number")]
    BadSeq,
    #[error("bad write tag: expected WRITE:<value>:<client>:<number> with whole numbers")]
    BadTag,
    #[error("bad address: expected host:port")]
    BadAddr,
    #[error("READ takes no argument, or READ:linearizable")]
    BadReadMode,
}

/// Splits `line` into its verb (upper-cased) and optional argument, both trimmed.
fn split(line: &[u8]) -> Result<(String, Option<&str>), ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(match text.split_once(':') {
        Some((verb, arg)) => (verb.trim().to_ascii_uppercase(), Some(arg.trim())),
        None => (text.to_ascii_uppercase(), None),
    })
}

fn value(arg: &str) -> Result<i64, ParseError> {
    arg.parse().map_err(|_| ParseError::BadValue)
}

fn port(arg: &str) -> Result<u16, ParseError> {
    match arg.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ParseError::BadPort),
    }
}

/// Parses one request line.
pub fn parse_request(line: &[u8]) -> Result<Request, ParseError> {
    let (verb, arg) = split(line)?;
    let verb: &'static str = match verb.as_str() {
        "READ" => "READ",
        "WRITE" => "WRITE",
        "UPDATE" => "UPDATE",
        "JOIN" => "JOIN",
        "SYNC" => "SYNC",
        "ACKED" => "ACKED",
        "PROPOSE" => "PROPOSE",
        "STATUS" => "STATUS",
        "FAILOVER" => "FAILOVER",
        "AUTH" => "AUTH",
        _ => return Err(ParseError::UnknownVerb),
    };
    let needs = |arg: Option<&str>| match arg {
        Some(a) if !a.is_empty() => Ok(a.to_owned()),
        _ => Err(ParseError::MissingArgument(verb)),
    };
    match verb {
        "READ" => match arg {
            None => Ok(Request::Read),
            Some(a) if a.eq_ignore_ascii_case("linearizable") => Ok(Request::ReadLinearizable),
            Some(_) => Err(ParseError::BadReadMode),
        },
        "STATUS" => match arg {
            None => Ok(Request::Status),
            Some(_) => Err(ParseError::UnexpectedArgument(verb)),
        },
        "WRITE" => {
            let arg = needs(arg)?;
            let mut parts = arg.splitn(3, ':');
            let v = value(parts.next().unwrap_or_default().trim())?;
            match (parts.next(), parts.next()) {
                (None, _) => Ok(Request::Write(v)),
                (Some(client), Some(number)) => {
                    let (client, number) = (client.trim().parse(), number.trim().parse());
                    match (client, number) {
                        (Ok(client), Ok(number)) => Ok(Request::TaggedWrite {
                            value: v,
                            tag: Tag { client, number },
                        }),
                        _ => Err(ParseError::BadTag),
                    }
                }
                (Some(_), None) => Err(ParseError::BadTag),
            }
        }
        "FAILOVER" => match arg {
            None | Some("") => Ok(Request::Failover(None)),
            Some(a) => Addr::parse_or_port(a)
                .map(|a| Request::Failover(Some(a)))
                .map_err(|_| ParseError::BadAddr),
        },
        "AUTH" => Ok(Request::Auth(needs(arg)?)),
        "UPDATE" => Ok(Request::Update(value(&needs(arg)?)?)),
        "JOIN" => Ok(Request::Join(port(&needs(arg)?)?)),
        "SYNC" => Ok(Request::Sync(port(&needs(arg)?)?)),
        "ACKED" => needs(arg)?
            .parse()
            .map(Request::Acked)
            .map_err(|_| ParseError::BadSeq),
        _ => needs(arg).map(|_| Request::Propose),
    }
}

/// The acknowledgement of a write, update or join.
pub const ACK: &str = "ACK";

/// The reply to `READ`.
pub fn value_reply(value: i64) -> String {
    format!("VALUE:{value}")
}

/// An error reply. `reason` must not contain a newline.
pub fn err_reply(reason: impl std::fmt::Display) -> String {
    format!("ERR:{reason}")
}

/// Whether a reply line reports an error.
///
/// Seed-only peers acknowledge in their own words (`ACK`, `OK`, `COMPLETE_UPDATE`...), so anything
/// that does not start with `ERR` counts as an acknowledgement.
pub fn is_error_reply(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii_start();
    trimmed.len() >= 3 && trimmed[..3].eq_ignore_ascii_case(b"ERR")
}

/// Parses a `VALUE:n` reply.
pub fn parse_value_reply(line: &str) -> Option<i64> {
    line.trim().strip_prefix("VALUE:")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_seed_requests() {
        assert_eq!(parse_request(b"READ"), Ok(Request::Read));
        assert_eq!(parse_request(b"WRITE:5"), Ok(Request::Write(5)));
        assert_eq!(parse_request(b"WRITE:-12"), Ok(Request::Write(-12)));
        assert_eq!(parse_request(b"UPDATE:7"), Ok(Request::Update(7)));
        assert_eq!(parse_request(b"JOIN:7001"), Ok(Request::Join(7001)));
    }

    #[test]
    fn parses_ditto_requests() {
        assert_eq!(
            parse_request(b"WRITE:5:9:2"),
            Ok(Request::TaggedWrite {
                value: 5,
                tag: Tag {
                    client: 9,
                    number: 2
                }
            })
        );
        assert_eq!(parse_request(b"WRITE:5:9"), Err(ParseError::BadTag));
        assert_eq!(parse_request(b"WRITE:5:x:1"), Err(ParseError::BadTag));
        assert_eq!(
            parse_request(b"READ:linearizable"),
            Ok(Request::ReadLinearizable)
        );
        assert_eq!(
            parse_request(b" read : Linearizable "),
            Ok(Request::ReadLinearizable)
        );
        assert_eq!(parse_request(b"READ"), Ok(Request::Read));
        assert_eq!(parse_request(b"FAILOVER"), Ok(Request::Failover(None)));
        assert_eq!(
            parse_request(b"failover:127.0.0.1:7002"),
            Ok(Request::Failover(Some(Addr::local(7002))))
        );
        assert_eq!(
            parse_request(b"FAILOVER:7002"),
            Ok(Request::Failover(Some(Addr::local(7002))))
        );
        assert_eq!(parse_request(b"FAILOVER:h:0"), Err(ParseError::BadAddr));
    }

    #[test]
    fn is_liberal_in_case_and_blanks() {
        assert_eq!(parse_request(b" read \r"), Ok(Request::Read));
        assert_eq!(parse_request(b"write: 5 "), Ok(Request::Write(5)));
        assert_eq!(parse_request(b"Join:7001"), Ok(Request::Join(7001)));
    }

    #[test]
    fn rejects_malformed_requests_with_reasons() {
        assert_eq!(parse_request(b""), Err(ParseError::Empty));
        assert_eq!(parse_request(b"   "), Err(ParseError::Empty));
        assert_eq!(parse_request(b"FROB"), Err(ParseError::UnknownVerb));
        assert_eq!(parse_request(b"FROB:1"), Err(ParseError::UnknownVerb));
        assert_eq!(
            parse_request(b"WRITE"),
            Err(ParseError::MissingArgument("WRITE"))
        );
        assert_eq!(
            parse_request(b"WRITE:"),
            Err(ParseError::MissingArgument("WRITE"))
        );
        assert_eq!(parse_request(b"WRITE:abc"), Err(ParseError::BadValue));
        assert_eq!(parse_request(b"WRITE:1.5"), Err(ParseError::BadValue));
        assert_eq!(
            parse_request(b"WRITE:9223372036854775808"),
            Err(ParseError::BadValue)
        );
        assert_eq!(parse_request(b"READ:1"), Err(ParseError::BadReadMode));
        assert_eq!(parse_request(b"READ:x"), Err(ParseError::BadReadMode));
        assert_eq!(parse_request(b"READ:"), Err(ParseError::BadReadMode));
        assert_eq!(
            parse_request(b"STATUS:1"),
            Err(ParseError::UnexpectedArgument("STATUS"))
        );
        assert_eq!(parse_request(b"JOIN:0"), Err(ParseError::BadPort));
        assert_eq!(parse_request(b"JOIN:65536"), Err(ParseError::BadPort));
        assert_eq!(parse_request(b"JOIN:-1"), Err(ParseError::BadPort));
        assert_eq!(parse_request(b"WRITE:\xff"), Err(ParseError::NotUtf8));
        assert_eq!(
            parse_request(b"PROPOSE"),
            Err(ParseError::MissingArgument("PROPOSE"))
        );
        assert_eq!(parse_request(b"ACKED:x"), Err(ParseError::BadSeq));
    }

    #[test]
    fn classifies_foreign_acknowledgements() {
        for ok in [&b"ACK"[..], b"OK", b"COMPLETE_UPDATE", b"done"] {
            assert!(!is_error_reply(ok));
        }
        for err in [&b"ERR:x"[..], b"err", b"ERROR: nope"] {
            assert!(is_error_reply(err));
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_request(&line);
        }

        #[test]
        fn writes_round_trip(v in any::<i64>()) {
            prop_assert_eq!(parse_request(format!("WRITE:{v}").as_bytes()), Ok(Request::Write(v)));
            prop_assert_eq!(parse_value_reply(&value_reply(v)), Some(v));
        }
    }
}
