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
//!
//! The client's side is here too, so that one module holds both halves of the protocol and the
//! tests can run one into the other: [`encode_request`] writes a request, and a [`ReplyParser`]
//! reads replies from a stream as their bytes arrive, within [`ReplyLimits`].

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

/// Appends `args` to `out` as a request: an array of bulk strings, the form every client library
/// sends and the only one that carries any byte (an inline command cannot hold a line break).
pub fn encode_request<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a `Vec` cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let arg = arg.as_ref();
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// How much one reply may announce or hold before [`ReplyParser`] refuses it, so that a server
/// (or a corrupted stream) cannot make a client allocate without end. Only bytes that have
/// arrived are ever stored, so the limits bound the buffer a client must keep (one unfinished
/// element: a header line or a bulk string) and the size of the tree it builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest bulk string.
    pub max_bulk: usize,
    /// Most elements in one reply, counted over every level of nesting.
    pub max_elements: usize,
    /// Deepest nesting of arrays and maps.
    pub max_depth: usize,
    /// Longest line: a simple string, an error, a number, a header.
    pub max_line: usize,
}

impl Default for ReplyLimits {
    /// Room for anything a stock Redis sends for one value (its `proto-max-bulk-len` is 512 MiB)
    /// and for the replies of the commands a client of ditto uses; nesting far deeper than any
    /// command's reply.
    fn default() -> ReplyLimits {
        ReplyLimits {
            max_bulk: 512 * 1024 * 1024,
            max_elements: MAX_ARGS,
            max_depth: 32,
            max_line: MAX_INLINE,
        }
    }
}

/// Why bytes are not a reply. After one the stream cannot be resynchronized: the client drops
/// the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("unknown reply type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("malformed integer reply")]
    BadInteger,
    #[error("malformed double reply")]
    BadDouble,
    #[error("malformed boolean reply")]
    BadBoolean,
    #[error("malformed length in a reply header")]
    BadLength,
    #[error("bulk string of {len} bytes in a reply (at most {max})")]
    BulkTooLong { len: usize, max: usize },
    #[error("reply of more than {0} elements")]
    TooManyElements(usize),
    #[error("reply nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("reply line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("reply line or bulk string not ended by CRLF")]
    MissingCrlf,
}

/// An array or map whose elements are still arriving.
#[derive(Debug)]
struct Partial {
    map: bool,
    /// Elements still to come (a map's count is of keys and values both).
    left: usize,
    items: Vec<Reply>,
}

impl Partial {
    fn finish(self) -> Reply {
        if self.map {
            let mut it = self.items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Reply::Map(pairs)
        } else {
            Reply::Array(self.items)
        }
    }
}

/// What one element's header and body gave.
enum Element {
    Value(Reply),
    /// An array (`map` false) or map header with this many elements to follow (nonzero).
    Open {
        map: bool,
        count: usize,
    },
}

/// Parses replies as their bytes arrive: RESP2 (simple string, error, integer, bulk string, null
/// bulk string and null array, arrays nested to any depth within the limits) and the RESP3 types
/// [`Reply`] has (`_`, `#`, `,`, `%`).
///
/// It keeps the aggregates it has begun, so each call takes only the bytes that are new: the
/// whole elements at the front of `buf` are consumed even when the reply is not finished, and
/// a long array arriving in many reads costs one pass over its bytes, not one per read.
#[derive(Debug, Default)]
pub struct ReplyParser {
    limits: ReplyLimits,
    stack: Vec<Partial>,
    /// Elements of the current reply so far, for [`ReplyLimits::max_elements`].
    elements: usize,
}

impl ReplyParser {
    pub fn new(limits: ReplyLimits) -> ReplyParser {
        ReplyParser {
            limits,
            stack: Vec::new(),
            elements: 0,
        }
    }

    /// Whether a reply has begun and not ended: its first bytes were consumed by
    /// [`ReplyParser::parse`], the rest have not come.
    pub fn in_reply(&self) -> bool {
        !self.stack.is_empty()
    }

    /// Takes what it can from the front of `buf`: `Ok((used, Some(reply)))` when a reply is
    /// complete, `Ok((used, None))` when more bytes are needed. Either way the caller drops the
    /// first `used` bytes and passes the rest, with what arrives next, to the following call.
    /// Bytes after a complete reply are left alone (`used` ends at the reply's last byte).
    pub fn parse(&mut self, buf: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        let mut at = 0;
        loop {
            let Some((element, next)) = self.element(buf, at)? else {
                return Ok((at, None));
            };
            at = next;
            self.elements += 1;
            if self.elements > self.limits.max_elements {
                return Err(ReplyError::TooManyElements(self.limits.max_elements));
            }
            let mut value = match element {
                Element::Value(v) => v,
                Element::Open { map, count } => {
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(ReplyError::TooDeep(self.limits.max_depth));
                    }
                    self.stack.push(Partial {
                        map,
                        left: count,
                        // Only what the bytes could hold, not what the header claims.
                        items: Vec::with_capacity(count.min(buf.len() / 3 + 1)),
                    });
                    continue;
                }
            };
            // Fold the finished value into the aggregates it completes.
            loop {
                let Some(top) = self.stack.last_mut() else {
                    self.elements = 0;
                    return Ok((at, Some(value)));
                };
                top.items.push(value);
                top.left -= 1;
                if top.left > 0 {
                    break;
                }
                value = self.stack.pop().expect("a top").finish();
            }
        }
    }

    /// The element starting at `at` and the offset after it, or `None` if it has not all come.
    fn element(&self, buf: &[u8], at: usize) -> Result<Option<(Element, usize)>, ReplyError> {
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        let Some((text, next)) = self.line(buf, at + 1)? else {
            return Ok(None);
        };
        let value = match kind {
            b'+' => Reply::Simple(String::from_utf8_lossy(text).into_owned()),
            b'-' => Reply::Error(String::from_utf8_lossy(text).into_owned()),
            b':' => Reply::Integer(parse_text(text).ok_or(ReplyError::BadInteger)?),
            b'_' if text.is_empty() => Reply::Null,
            b'_' => return Err(ReplyError::BadLength),
            b'#' => match text {
                b"t" => Reply::Boolean(true),
                b"f" => Reply::Boolean(false),
                _ => return Err(ReplyError::BadBoolean),
            },
            b',' => Reply::Double(parse_text(text).ok_or(ReplyError::BadDouble)?),
            b'$' => {
                if text == b"-1" {
                    return Ok(Some((Element::Value(Reply::Null), next)));
                }
                let len = number(text, usize::MAX).ok_or(ReplyError::BadLength)?;
                if len > self.limits.max_bulk {
                    return Err(ReplyError::BulkTooLong {
                        len,
                        max: self.limits.max_bulk,
                    });
                }
                let end = next.checked_add(len).ok_or(ReplyError::BadLength)?;
                if buf.len() < end.saturating_add(2) {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ReplyError::MissingCrlf);
                }
                return Ok(Some((
                    Element::Value(Reply::Bulk(buf[next..end].to_vec())),
                    end + 2,
                )));
            }
            b'*' | b'%' => {
                let map = kind == b'%';
                if !map && text == b"-1" {
                    return Ok(Some((Element::Value(Reply::Null), next)));
                }
                let count = number(text, self.limits.max_elements).ok_or_else(|| {
                    if number(text, usize::MAX).is_some() {
                        ReplyError::TooManyElements(self.limits.max_elements)
                    } else {
                        ReplyError::BadLength
                    }
                })?;
                let count = if map { count * 2 } else { count };
                if count == 0 {
                    let empty = if map {
                        Reply::Map(Vec::new())
                    } else {
                        Reply::Array(Vec::new())
                    };
                    return Ok(Some((Element::Value(empty), next)));
                }
                return Ok(Some((Element::Open { map, count }, next)));
            }
            other => return Err(ReplyError::UnknownType(other)),
        };
        Ok(Some((Element::Value(value), next)))
    }

    /// The line starting at `at`, without its `\r\n`, and the offset after it.
    fn line<'b>(&self, buf: &'b [u8], at: usize) -> Result<Option<(&'b [u8], usize)>, ReplyError> {
        let max = self.limits.max_line;
        let rest = &buf[at.min(buf.len())..];
        let window = &rest[..rest.len().min(max + 2)];
        match window.iter().position(|&b| b == b'\n') {
            Some(n) => match window[..n].strip_suffix(b"\r") {
                Some(text) => Ok(Some((text, at + n + 1))),
                None => Err(ReplyError::MissingCrlf),
            },
            None if rest.len() > max + 1 => Err(ReplyError::LineTooLong(max)),
            None => Ok(None),
        }
    }
}

/// A number written in ASCII, as `str::parse` reads it.
fn parse_text<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Parses the first reply in `buf` with the default limits: `Ok(Some((reply, used)))` once it
/// is whole, `Ok(None)` while more bytes are needed. For a stream, keep a [`ReplyParser`], which
/// does not go over the same bytes again.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let (used, reply) = ReplyParser::default().parse(buf)?;
    Ok(reply.map(|r| (r, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Args {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn request(words: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(words, &mut out);
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
        let req = request(&[b"SET", b"key", b"a value with\r\nbreaks"]);
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
        let req = request(&[b"SET", b"k", &value]);
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

    #[test]
    fn requests_are_encoded_as_redis_cli_sends_them() {
        let mut out = Vec::new();
        encode_request(&["SET", "key:1", "xxx"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$3\r\nxxx\r\n");
        let (parsed, used) = parse_request(&out).unwrap().unwrap();
        assert_eq!(parsed, args(&["SET", "key:1", "xxx"]));
        assert_eq!(used, out.len());
    }

    #[test]
    fn parses_every_resp2_reply_as_redis_sends_it() {
        let cases: Vec<(&[u8], Reply)> = vec![
            (b"+OK\r\n", Reply::ok()),
            (
                b"-WRONGTYPE Operation against a key\r\n",
                Reply::Error("WRONGTYPE Operation against a key".into()),
            ),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$5\r\nhe\r\nl\r\n", Reply::Bulk(b"he\r\nl".to_vec())),
            (b"$0\r\n\r\n", Reply::Bulk(Vec::new())),
            (b"$-1\r\n", Reply::Null),
            (b"*-1\r\n", Reply::Null),
            (b"*0\r\n", Reply::Array(Vec::new())),
            (
                b"*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:1\r\n*1\r\n+x\r\n",
                Reply::Array(vec![
                    Reply::Bulk(b"a".to_vec()),
                    Reply::Null,
                    Reply::Array(vec![
                        Reply::Integer(1),
                        Reply::Array(vec![Reply::Simple("x".into())]),
                    ]),
                ]),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse_reply(bytes),
                Ok(Some((want.clone(), bytes.len()))),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn parses_the_resp3_types_a_reply_can_hold() {
        let cases: Vec<(&[u8], Reply)> = vec![
            (b"_\r\n", Reply::Null),
            (b"#t\r\n", Reply::Boolean(true)),
            (b"#f\r\n", Reply::Boolean(false)),
            (b",1.5\r\n", Reply::Double(1.5)),
            (b",-inf\r\n", Reply::Double(f64::NEG_INFINITY)),
            (
                b"%2\r\n+a\r\n:1\r\n+b\r\n%0\r\n",
                Reply::Map(vec![
                    (Reply::Simple("a".into()), Reply::Integer(1)),
                    (Reply::Simple("b".into()), Reply::Map(Vec::new())),
                ]),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse_reply(bytes), Ok(Some((want, bytes.len()))));
        }
        let Ok(Some((Reply::Double(d), _))) = parse_reply(b",nan\r\n") else {
            panic!("nan is a double");
        };
        assert!(d.is_nan());
    }

    #[test]
    fn a_reply_split_anywhere_waits_and_the_next_one_is_left_alone() {
        let first: &[u8] = b"*2\r\n$5\r\nhello\r\n*1\r\n:7\r\n";
        for cut in 0..first.len() {
            assert_eq!(parse_reply(&first[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = first.to_vec();
        two.extend_from_slice(b"+OK\r\n");
        let (_, used) = parse_reply(&two).unwrap().unwrap();
        assert_eq!(used, first.len());
        assert_eq!(parse_reply(&two[used..]), Ok(Some((Reply::ok(), 5))));
    }

    #[test]
    fn the_stream_parser_consumes_whole_elements_and_never_rereads_them() {
        let bytes: &[u8] = b"*3\r\n:1\r\n$3\r\nabc\r\n*1\r\n+x\r\n:9\r\n";
        let mut parser = ReplyParser::default();
        let mut pending = Vec::new();
        let mut replies = Vec::new();
        let mut fed = 0;
        for &b in bytes {
            pending.push(b);
            fed += 1;
            // A reply is taken as soon as its last byte is there, and only then.
            loop {
                let (used, reply) = parser.parse(&pending).unwrap();
                pending.drain(..used);
                match reply {
                    Some(r) => replies.push((r, fed)),
                    None => break,
                }
            }
            // What waits is at most one unfinished element (the longest is `$3\r\nabc\r\n`).
            assert!(
                pending.len() < 9,
                "an element is consumed once whole: {pending:?}"
            );
        }
        assert!(pending.is_empty() && !parser.in_reply());
        assert_eq!(
            replies,
            vec![
                (
                    Reply::Array(vec![
                        Reply::Integer(1),
                        Reply::Bulk(b"abc".to_vec()),
                        Reply::Array(vec![Reply::Simple("x".into())]),
                    ]),
                    bytes.len() - 4,
                ),
                (Reply::Integer(9), bytes.len()),
            ]
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_waits() {
        let cases: Vec<(&[u8], ReplyError)> = vec![
            (b"?x\r\n", ReplyError::UnknownType(b'?')),
            (b":12a\r\n", ReplyError::BadInteger),
            (b":99999999999999999999\r\n", ReplyError::BadInteger),
            (b"$x\r\n", ReplyError::BadLength),
            (b"$-2\r\n", ReplyError::BadLength),
            (b"*-2\r\n", ReplyError::BadLength),
            (b"%-1\r\n", ReplyError::BadLength),
            (b"$1\r\nab\r\n", ReplyError::MissingCrlf),
            (b"+OK\n", ReplyError::MissingCrlf),
            (b"#x\r\n", ReplyError::BadBoolean),
            (b",one\r\n", ReplyError::BadDouble),
            (b"_x\r\n", ReplyError::BadLength),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse_reply(bytes),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn reply_limits_are_enforced_before_the_bytes_arrive() {
        let limits = ReplyLimits {
            max_bulk: 10,
            max_elements: 5,
            max_depth: 2,
            max_line: 8,
        };
        let parse = |bytes: &[u8]| ReplyParser::new(limits).parse(bytes);
        assert_eq!(
            parse(b"$11\r\n"),
            Err(ReplyError::BulkTooLong { len: 11, max: 10 })
        );
        assert_eq!(
            parse(b"$10\r\n"),
            Ok((0, None)),
            "within the limit, it waits"
        );
        assert_eq!(parse(b"*6\r\n"), Err(ReplyError::TooManyElements(5)));
        assert_eq!(
            parse(b"*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n"),
            Err(ReplyError::TooManyElements(5)),
            "elements are counted over every level"
        );
        assert_eq!(parse(b"*1\r\n*1\r\n*1\r\n"), Err(ReplyError::TooDeep(2)));
        assert_eq!(parse(b"+123456789\r"), Err(ReplyError::LineTooLong(8)));
        assert_eq!(parse(b"+12345678"), Ok((0, None)));
        assert_eq!(
            parse(b"+12345678\r\n"),
            Ok((11, Some(Reply::Simple("12345678".into()))))
        );
        assert_eq!(
            parse(b"*2\r\n*1\r\n:1\r\n:2\r\n"),
            Ok((
                16,
                Some(Reply::Array(vec![
                    Reply::Array(vec![Reply::Integer(1)]),
                    Reply::Integer(2),
                ]))
            )),
            "the limits themselves are allowed"
        );
        // The count of a finished reply does not carry over to the next one.
        let mut parser = ReplyParser::new(limits);
        for _ in 0..10 {
            assert_eq!(parser.parse(b":1\r\n"), Ok((4, Some(Reply::Integer(1)))));
        }
    }

    proptest::proptest! {
        /// Any request a client library can send comes back whole, from any split point.
        #[test]
        fn any_array_request_round_trips(
            words in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..8),
            cut in 0usize..400,
        ) {
            let refs: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
            let req = request(&refs);
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
        /// Whatever arrives, the reply parser answers without panicking, and never claims more
        /// bytes than it was given.
        #[test]
        fn any_bytes_are_a_reply_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok((used, _)) = ReplyParser::default().parse(&bytes) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }

        /// Every RESP2 reply the encoder writes parses back to itself: whole, from every proper
        /// prefix (as a wait), and through the stream parser fed in chunks of any size.
        #[test]
        fn any_resp2_reply_round_trips(reply in resp2_reply(), chunk in 1usize..50) {
            let bytes = reply.to_bytes(Version::Resp2);
            for cut in 0..bytes.len() {
                proptest::prop_assert_eq!(parse_reply(&bytes[..cut]), Ok(None));
            }
            proptest::prop_assert_eq!(parse_reply(&bytes), Ok(Some((reply.clone(), bytes.len()))));
            proptest::prop_assert_eq!(feed(&bytes, chunk), vec![reply]);
        }

        /// So does every reply in RESP3, maps, booleans and doubles included.
        #[test]
        fn any_resp3_reply_round_trips(reply in resp3_reply(), chunk in 1usize..50) {
            let bytes = reply.to_bytes(Version::Resp3);
            proptest::prop_assert_eq!(parse_reply(&bytes), Ok(Some((reply.clone(), bytes.len()))));
            proptest::prop_assert_eq!(feed(&bytes, chunk), vec![reply]);
        }

        /// Pipelined replies come out of one stream in the order they went in.
        #[test]
        fn pipelined_replies_come_out_in_order(
            replies in proptest::collection::vec(resp2_reply(), 1..6),
            chunk in 1usize..64,
        ) {
            let mut bytes = Vec::new();
            for r in &replies {
                r.encode(Version::Resp2, &mut bytes);
            }
            proptest::prop_assert_eq!(feed(&bytes, chunk), replies);
        }
    }

    /// Every reply the stream parser gives for `bytes` arriving `chunk` bytes at a time; panics
    /// if bytes are left over or the parser refuses them.
    fn feed(bytes: &[u8], chunk: usize) -> Vec<Reply> {
        let mut parser = ReplyParser::default();
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            pending.extend_from_slice(piece);
            loop {
                let (used, reply) = parser.parse(&pending).expect("a valid stream");
                pending.drain(..used);
                match reply {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
        }
        assert!(pending.is_empty(), "left over: {pending:?}");
        assert!(!parser.in_reply(), "a reply left unfinished");
        out
    }

    fn leaves() -> Vec<proptest::strategy::BoxedStrategy<Reply>> {
        use proptest::prelude::*;
        vec![
            "[^\r\n]{0,12}".prop_map(Reply::Simple).boxed(),
            "[^\r\n]{0,12}".prop_map(Reply::Error).boxed(),
            any::<i64>().prop_map(Reply::Integer).boxed(),
            proptest::collection::vec(any::<u8>(), 0..24)
                .prop_map(Reply::Bulk)
                .boxed(),
            Just(Reply::Null).boxed(),
        ]
    }

    /// Replies of the types RESP2 has, nested.
    fn resp2_reply() -> impl proptest::strategy::Strategy<Value = Reply> {
        use proptest::prelude::*;
        proptest::strategy::Union::new(leaves()).prop_recursive(4, 48, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Reply::Array)
        })
    }

    /// Every type a [`Reply`] can be (a double, but not NaN, which equals nothing).
    fn resp3_reply() -> impl proptest::strategy::Strategy<Value = Reply> {
        use proptest::prelude::*;
        let mut leaves = leaves();
        leaves.push(any::<bool>().prop_map(Reply::Boolean).boxed());
        leaves.push(
            any::<f64>()
                .prop_filter("NaN equals nothing", |d| !d.is_nan())
                .prop_map(Reply::Double)
                .boxed(),
        );
        proptest::strategy::Union::new(leaves).prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Reply::Map),
            ]
        })
    }
}
