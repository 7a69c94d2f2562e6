//! The Redis serialization protocol (RESP2, and RESP3 after `HELLO 3`): requests in, replies out,
//! sans-IO.
//!
//! A request is an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), which is what every
//! client library and `redis-cli` send, or an inline command (`PING\r\n`), which is what a person
//! typing into `telnet` sends. [`parse_request`] takes bytes as they arrived and returns a whole
//! request and how many bytes it used, or `None` until more arrive; it never allocates more than
//! the limits allow, so a peer announcing a huge array or bulk string gets an error, not an
//! allocation. Replies are built as [`Reply`] values and written by [`Reply::encode`] in the
//! protocol version the connection chose.
//!
//! The driver frames a connection whose first byte is `*` with [`parse_request`]; the node
//! answers with [`Reply`]s (`crate::node`).

use std::fmt;

/// Most elements of one request array (Redis allows more; no command ditto serves needs them).
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest bulk string of a request (Redis's `proto-max-bulk-len` default is 512 MiB; ditto's
/// values are far smaller, see the keyspace design).
pub const MAX_BULK: usize = 8 * 1024 * 1024;
/// Longest inline command line, and longest header line (`*N`, `$N`).
pub const MAX_INLINE: usize = 64 * 1024;

/// Why bytes are not a RESP request. The connection answers with the `Display` text as an
/// error and closes, as Redis does: after a framing error the stream cannot be resynchronized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// `*` not followed by a count, a count out of range, or a negative one.
    BadArrayLength,
    /// An array element that is not a bulk string (`$`).
    ExpectedBulk(u8),
    /// `$` not followed by a length, or a length over [`MAX_BULK`].
    BadBulkLength,
    /// A bulk string not followed by `\r\n`.
    MissingCrlf,
    /// A header or inline line over [`MAX_INLINE`] bytes.
    LineTooLong,
    /// An inline command with an unbalanced quote.
    UnbalancedQuotes,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::BadArrayLength => write!(f, "Protocol error: invalid multibulk length"),
            RespError::ExpectedBulk(b) => {
                write!(f, "Protocol error: expected '$', got '{}'", char::from(*b))
            }
            RespError::BadBulkLength => write!(f, "Protocol error: invalid bulk length"),
            RespError::MissingCrlf => write!(f, "Protocol error: expected CRLF after bulk"),
            RespError::LineTooLong => write!(f, "Protocol error: too big inline request"),
            RespError::UnbalancedQuotes => {
                write!(f, "Protocol error: unbalanced quotes in request")
            }
        }
    }
}

impl std::error::Error for RespError {}

/// One request: the command name and its arguments, as byte strings.
pub type Args = Vec<Vec<u8>>;

/// Parses the first request in `buf`: `Ok(Some((args, used)))` once it is whole,
/// `Ok(None)` while more bytes are needed, `Err` if the bytes can never be a request. An empty
/// inline line (a bare `\r\n`) gives an empty request, which the caller ignores, as Redis does.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Args, usize)>, RespError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf),
        Some(_) => parse_inline(buf),
    }
}

/// The line starting at `at`, without its `\r\n` (or bare `\n`), and the offset after it.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buf[at..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(n) if n > MAX_INLINE => Err(RespError::LineTooLong),
        Some(n) => {
            let text = &rest[..n];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            Ok(Some((text, at + n + 1)))
        }
        None if rest.len() > MAX_INLINE => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

/// A non-negative decimal number of at most `max`.
fn number(text: &[u8], max: usize) -> Option<usize> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text)
        .ok()?
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= max)
}

fn parse_array(buf: &[u8]) -> Result<Option<(Args, usize)>, RespError> {
    let Some((header, mut at)) = line(buf, 1)? else {
        return Ok(None);
    };
    // `*-1` (a null array) and `*0` are no request at all; Redis ignores them too.
    if header == b"-1" || header == b"0" {
        return Ok(Some((Vec::new(), at)));
    }
    let count = number(header, MAX_ARGS).ok_or(RespError::BadArrayLength)?;
    // Reserve only what the bytes already there could hold, not what the header claims.
    let mut args = Vec::with_capacity(count.min(buf.len() / 4 + 1));
    for _ in 0..count {
        match buf.get(at) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&other) => return Err(RespError::ExpectedBulk(other)),
        }
        let Some((len, start)) = line(buf, at + 1)? else {
            return Ok(None);
        };
        let len = number(len, MAX_BULK).ok_or(RespError::BadBulkLength)?;
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf);
        }
        args.push(buf[start..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// An inline command: words separated by blanks, with `"..."` (backslash escapes) and `'...'`
/// quoting as `redis-cli` and Redis read them.
fn parse_inline(buf: &[u8]) -> Result<Option<(Args, usize)>, RespError> {
    let Some((text, used)) = line(buf, 0)? else {
        return Ok(None);
    };
    let mut args = Vec::new();
    let mut i = 0;
    while i < text.len() {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == text.len() {
            break;
        }
        let mut word = Vec::new();
        match text[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                loop {
                    match text.get(i) {
                        None => return Err(RespError::UnbalancedQuotes),
                        Some(&c) if c == q => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if q == b'"' => {
                            let escaped = *text.get(i + 1).ok_or(RespError::UnbalancedQuotes)?;
                            word.push(match escaped {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(&c) => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
                // A closing quote must end the word.
                if text.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    return Err(RespError::UnbalancedQuotes);
                }
            }
            _ => {
                while i < text.len() && !text[i].is_ascii_whitespace() {
                    word.push(text[i]);
                    i += 1;
                }
            }
        }
        args.push(word);
    }
    Ok(Some((args, used)))
}

/// Which protocol a connection speaks: RESP2 until a `HELLO 3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    #[default]
    Resp2,
    Resp3,
}

/// A reply, typed; [`Reply::encode`] writes it in either protocol version. RESP3's richer types
/// fall back to their RESP2 forms (a map becomes a flat array, a null the null bulk string, a
/// boolean an integer), as Redis does.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the text after the `-`, its first word the error's kind.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Boolean(bool),
    Double(f64),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// An error of kind `ERR`.
    pub fn err(text: impl fmt::Display) -> Reply {
        Reply::Error(format!("ERR {text}"))
    }

    /// Appends the encoding of this reply in protocol `v` to `out`.
    pub fn encode(&self, v: Version, out: &mut Vec<u8>) {
        fn header(out: &mut Vec<u8>, kind: u8, n: impl fmt::Display) {
            out.push(kind);
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // A simple string or error must stay on one line.
        fn one_line(text: &str) -> String {
            text.replace(['\r', '\n'], " ")
        }
        match self {
            Reply::Simple(s) => header(out, b'+', one_line(s)),
            Reply::Error(e) => header(out, b'-', one_line(e)),
            Reply::Integer(n) => header(out, b':', n),
            Reply::Bulk(b) => {
                header(out, b'$', b.len());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Null => match v {
                Version::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Version::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                header(out, b'*', items.len());
                for item in items {
                    item.encode(v, out);
                }
            }
            Reply::Map(pairs) => {
                match v {
                    Version::Resp2 => header(out, b'*', 2 * pairs.len()),
                    Version::Resp3 => header(out, b'%', pairs.len()),
                }
                for (k, val) in pairs {
                    k.encode(v, out);
                    val.encode(v, out);
                }
            }
            Reply::Boolean(b) => match v {
                Version::Resp2 => header(out, b':', i64::from(*b)),
                Version::Resp3 => header(out, b'#', if *b { 't' } else { 'f' }),
            },
            Reply::Double(d) => {
                let text = if d.is_nan() {
                    "nan".to_owned()
                } else if d.is_infinite() {
                    if *d > 0.0 { "inf" } else { "-inf" }.to_owned()
                } else {
                    d.to_string()
                };
                match v {
                    Version::Resp2 => Reply::Bulk(text.into_bytes()).encode(v, out),
                    Version::Resp3 => header(out, b',', text),
                }
            }
        }
    }

    /// The encoding of this reply in protocol `v`.
    pub fn to_bytes(&self, v: Version) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(v, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Args {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn encode_request(words: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", words.len()).into_bytes();
        for w in words {
            out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            out.extend_from_slice(w);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn parses_an_array_of_bulk_strings_as_clients_send_it() {
        let req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let (a, used) = parse_request(req).unwrap().unwrap();
        assert_eq!(a, args(&["SET", "k", "hello"]));
        assert_eq!(used, req.len());
    }

    #[test]
    fn waits_for_every_byte_of_a_request_split_anywhere() {
        let req = encode_request(&[b"SET", b"key", b"a value with\r\nbreaks"]);
        for cut in 0..req.len() {
            assert_eq!(parse_request(&req[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = req.clone();
        two.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let (a, used) = parse_request(&two).unwrap().unwrap();
        assert_eq!(a[2], b"a value with\r\nbreaks");
        assert_eq!(used, req.len(), "only the first request is taken");
        let (b, _) = parse_request(&two[used..]).unwrap().unwrap();
        assert_eq!(b, args(&["PING"]));
    }

    #[test]
    fn binary_values_round_trip() {
        let value: Vec<u8> = (0..=255).collect();
        let req = encode_request(&[b"SET", b"k", &value]);
        let (a, _) = parse_request(&req).unwrap().unwrap();
        assert_eq!(a[2], value);
    }

    #[test]
    fn inline_commands_split_on_blanks_and_honour_quotes() {
        let first = b"set k \"two words\\n\" 'it'\r\n";
        let mut two = first.to_vec();
        two.extend_from_slice(b"GET k\r\n");
        let (a, used) = parse_request(&two).unwrap().unwrap();
        assert_eq!(a, args(&["set", "k", "two words\n", "it"]));
        assert_eq!(used, first.len());
    }

    #[test]
    fn an_inline_line_is_taken_with_or_without_its_carriage_return() {
        assert_eq!(
            parse_request(b"PING\n").unwrap(),
            Some((args(&["PING"]), 5))
        );
        assert_eq!(
            parse_request(b"  PING   x \r\n").unwrap(),
            Some((args(&["PING", "x"]), 13))
        );
        assert_eq!(parse_request(b"\r\n").unwrap(), Some((Vec::new(), 2)));
        assert_eq!(parse_request(b"PIN").unwrap(), None);
    }

    #[test]
    fn malformed_requests_are_errors_not_waits() {
        assert_eq!(parse_request(b"*x\r\n"), Err(RespError::BadArrayLength));
        assert_eq!(parse_request(b"*-2\r\n"), Err(RespError::BadArrayLength));
        assert_eq!(
            parse_request(b"*1\r\n:5\r\n"),
            Err(RespError::ExpectedBulk(b':'))
        );
        assert_eq!(
            parse_request(b"*1\r\n$x\r\n"),
            Err(RespError::BadBulkLength)
        );
        assert_eq!(
            parse_request(b"*1\r\n$1\r\nab\r\n"),
            Err(RespError::MissingCrlf)
        );
        assert_eq!(
            parse_request(b"GET \"k\r\n"),
            Err(RespError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_request(b"GET \"k\"x\r\n"),
            Err(RespError::UnbalancedQuotes)
        );
    }

    #[test]
    fn announced_sizes_beyond_the_limits_are_refused_before_anything_is_allocated() {
        let huge = format!("*{}\r\n", MAX_ARGS + 1);
        assert_eq!(
            parse_request(huge.as_bytes()),
            Err(RespError::BadArrayLength)
        );
        let big = format!("*1\r\n${}\r\n", MAX_BULK + 1);
        assert_eq!(parse_request(big.as_bytes()), Err(RespError::BadBulkLength));
        // A count within the limit but with nothing behind it just waits.
        let many = format!("*{MAX_ARGS}\r\n");
        assert_eq!(parse_request(many.as_bytes()), Ok(None));
        let endless = vec![b'a'; MAX_INLINE + 2];
        assert_eq!(parse_request(&endless), Err(RespError::LineTooLong));
        let mut header = b"*".to_vec();
        header.extend(std::iter::repeat_n(b'1', MAX_INLINE + 2));
        assert_eq!(parse_request(&header), Err(RespError::LineTooLong));
    }

    #[test]
    fn empty_and_null_arrays_are_no_request() {
        assert_eq!(parse_request(b"*0\r\n").unwrap(), Some((Vec::new(), 4)));
        assert_eq!(parse_request(b"*-1\r\n").unwrap(), Some((Vec::new(), 5)));
    }

    #[test]
    fn replies_encode_in_both_versions() {
        use Version::*;
        let cases: Vec<(Reply, &[u8], &[u8])> = vec![
            (Reply::ok(), b"+OK\r\n", b"+OK\r\n"),
            (
                Reply::err("unknown command 'x'"),
                b"-ERR unknown command 'x'\r\n",
                b"-ERR unknown command 'x'\r\n",
            ),
            (Reply::Integer(-3), b":-3\r\n", b":-3\r\n"),
            (
                Reply::Bulk(b"a\r\nb".to_vec()),
                b"$4\r\na\r\nb\r\n",
                b"$4\r\na\r\nb\r\n",
            ),
            (Reply::Null, b"$-1\r\n", b"_\r\n"),
            (Reply::Boolean(true), b":1\r\n", b"#t\r\n"),
            (Reply::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
            (
                Reply::Map(vec![(Reply::Bulk(b"k".to_vec()), Reply::Integer(1))]),
                b"*2\r\n$1\r\nk\r\n:1\r\n",
                b"%1\r\n$1\r\nk\r\n:1\r\n",
            ),
            (
                Reply::Array(vec![Reply::Null, Reply::Integer(2)]),
                b"*2\r\n$-1\r\n:2\r\n",
                b"*2\r\n_\r\n:2\r\n",
            ),
        ];
        for (reply, two, three) in cases {
            assert_eq!(reply.to_bytes(Resp2), two, "{reply:?} in RESP2");
            assert_eq!(reply.to_bytes(Resp3), three, "{reply:?} in RESP3");
        }
    }

    #[test]
    fn a_simple_string_or_error_never_spans_lines() {
        assert_eq!(
            Reply::Error("ERR a\r\nb".into()).to_bytes(Version::Resp2),
            b"-ERR a  b\r\n"
        );
    }

    proptest::proptest! {
        /// Any request a client library can send comes back whole, from any split point.
        #[test]
        fn any_array_request_round_trips(
            words in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..8),
            cut in 0usize..400,
        ) {
            let refs: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
            let req = encode_request(&refs);
            let cut = cut.min(req.len());
            if cut < req.len() {
                proptest::prop_assert_eq!(parse_request(&req[..cut]), Ok(None));
            }
            proptest::prop_assert_eq!(parse_request(&req), Ok(Some((words.clone(), req.len()))));
        }

        /// Whatever arrives, the parser answers without panicking, and never claims more bytes
        /// than it was given.
        #[test]
        fn any_bytes_are_parsed_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(Some((_, used))) = parse_request(&bytes) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }
    }
}
