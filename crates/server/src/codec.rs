//! Framing what a connection sends: lines, with a hard limit on their length, or RESP
//! requests, chosen by the connection's first byte.

use bytes::{Buf, Bytes, BytesMut};
use ditto_core::resp;
use tokio_util::codec::Decoder;

/// What the decoder found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A line without its `\n` or `\r\n`.
    Line(Bytes),
    /// More than the limit arrived without a line end. The bytes are dropped; the caller should
    /// answer with an error and close, since the rest of the stream can no longer be framed.
    TooLong,
}

/// A line decoder that never buffers more than `max` bytes of one line.
///
/// A final line without a terminator is still a line: a client may write `READ` and half-close.
#[derive(Clone, Debug)]
pub struct LineCodec {
    max: usize,
    /// How far the buffer has been searched for `\n` already, so each byte is scanned once.
    scanned: usize,
}

impl LineCodec {
    /// A decoder for lines of at most `max` bytes.
    pub fn new(max: usize) -> LineCodec {
        LineCodec { max, scanned: 0 }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        match buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = self.scanned + i;
                self.scanned = 0;
                // The limit is on the line's content: a `\r` before the `\n` does not count.
                let len = if end > 0 && buf[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                if len > self.max {
                    buf.clear();
                    return Ok(Some(Frame::TooLong));
                }
                let mut line = buf.split_to(end + 1);
                line.truncate(len);
                Ok(Some(Frame::Line(line.freeze())))
            }
            // One byte of slack for a `\r` whose `\n` has not arrived yet.
            None if buf.len() > self.max + 1 => {
                buf.clear();
                self.scanned = 0;
                Ok(Some(Frame::TooLong))
            }
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        self.scanned = 0;
        if buf.is_empty() {
            return Ok(None);
        }
        let mut line = buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max {
            return Ok(Some(Frame::TooLong));
        }
        Ok(Some(Frame::Line(line.freeze())))
    }
}

/// What a server reads from one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A line of the line protocol (or of a replication stream).
    Line(Bytes),
    /// A line over the limit, dropped (see [`Frame::TooLong`]).
    TooLong,
    /// A RESP request: the command and its arguments.
    Command(Vec<Vec<u8>>),
    /// The RESP stream broke its framing; nothing more is read from it.
    BadFrame(String),
}

/// Which protocol a connection speaks, decided by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Undecided,
    /// The line protocol; `first` until the first line is out.
    Lines {
        first: bool,
    },
    Resp,
    Broken,
}

/// The decoder of a server's connections: a connection whose first byte is `*` speaks RESP
/// (as every Redis client sends its first command), anything else the line protocol. A
/// connection whose first line is a replica's `PEER:` hello carries a replication stream,
/// whose lines (snapshots, batches of large values) may be up to `stream_max` long.
#[derive(Clone, Debug)]
pub struct ServerCodec {
    lines: LineCodec,
    proto: Proto,
    stream_max: usize,
}

impl ServerCodec {
    pub fn new(max_line: usize, stream_max: usize) -> ServerCodec {
        ServerCodec {
            lines: LineCodec::new(max_line),
            proto: Proto::Undecided,
            stream_max,
        }
    }

    fn line(&mut self, frame: Option<Frame>) -> Option<Request> {
        let frame = frame?;
        if let Proto::Lines { first: true } = self.proto {
            self.proto = Proto::Lines { first: false };
            if matches!(&frame, Frame::Line(l) if l.starts_with(b"PEER:")) {
                self.lines.max = self.stream_max;
            }
        }
        Some(match frame {
            Frame::Line(l) => Request::Line(l),
            Frame::TooLong => Request::TooLong,
        })
    }
}

impl Decoder for ServerCodec {
    type Item = Request;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, Self::Error> {
        if self.proto == Proto::Undecided {
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => self.proto = Proto::Resp,
                Some(_) => self.proto = Proto::Lines { first: true },
            }
        }
        match self.proto {
            Proto::Undecided | Proto::Lines { .. } => {
                let frame = self.lines.decode(buf)?;
                Ok(self.line(frame))
            }
            Proto::Resp => loop {
                match resp::parse_request(buf) {
                    // `*0`, `*-1` and a bare line end are no request: Redis answers nothing to
                    // them, and `redis-cli --pipe` sends a line end before its closing `ECHO`.
                    Ok(Some((args, used))) if args.is_empty() => buf.advance(used),
                    Ok(Some((args, used))) => {
                        buf.advance(used);
                        return Ok(Some(Request::Command(args)));
                    }
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        buf.clear();
                        self.proto = Proto::Broken;
                        return Ok(Some(Request::BadFrame(e.to_string())));
                    }
                }
            },
            Proto::Broken => {
                buf.clear();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, Self::Error> {
        match self.proto {
            Proto::Undecided | Proto::Lines { .. } => {
                let frame = self.lines.decode_eof(buf)?;
                Ok(self.line(frame))
            }
            // A request cut off by the end of the stream is dropped, as Redis drops it.
            Proto::Resp | Proto::Broken => {
                let request = self.decode(buf)?;
                if request.is_none() {
                    buf.clear();
                }
                Ok(request)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Frame> {
        let mut codec = LineCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time: framing must not depend on how reads are split.
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn splits_on_lf_and_crlf_and_keeps_a_final_unterminated_line() {
        assert_eq!(
            lines(b"READ\r\nWRITE:5\nREAD", 64),
            [line("READ"), line("WRITE:5"), line("READ")]
        );
        assert_eq!(lines(b"\n", 64), [line("")]);
    }

    fn requests(input: &[u8], max: usize, stream_max: usize) -> Vec<Request> {
        let mut codec = ServerCodec::new(max, stream_max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(r) = codec.decode(&mut buf).unwrap() {
                out.push(r);
            }
        }
        while let Some(r) = codec.decode_eof(&mut buf).unwrap() {
            out.push(r);
        }
        out
    }

    #[test]
    fn the_first_byte_chooses_the_protocol() {
        let get = Request::Command(vec![b"GET".to_vec(), b"k".to_vec()]);
        assert_eq!(
            requests(
                b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
                64,
                64
            ),
            [get.clone(), get]
        );
        assert_eq!(
            requests(b"READ\n*2\r\n", 64, 64),
            [
                Request::Line(Bytes::from_static(b"READ")),
                Request::Line(Bytes::from_static(b"*2"))
            ],
            "a line-protocol connection stays one"
        );
        let bad = requests(b"*x\r\nmore", 64, 64);
        assert!(matches!(&bad[..], [Request::BadFrame(_)]), "{bad:?}");
        assert_eq!(
            requests(b"*2\r\n$3\r\nGET", 64, 64),
            [],
            "a request cut off at the end is dropped"
        );
    }

    /// Empty requests are skipped, not handed on (the node would refuse them with an error
    /// reply that the client never asked for, and `redis-cli --pipe` would count it).
    #[test]
    fn empty_resp_requests_are_no_requests() {
        let ping = Request::Command(vec![b"PING".to_vec()]);
        assert_eq!(
            requests(
                b"*1\r\n$4\r\nPING\r\n\r\n*0\r\n*-1\r\n\n*1\r\n$4\r\nPING\r\n",
                64,
                64
            ),
            [ping.clone(), ping]
        );
    }

    #[test]
    fn a_replication_stream_may_carry_longer_lines() {
        let mut input = b"PEER:{}\n".to_vec();
        input.extend_from_slice(&[b'x'; 100]);
        input.push(b'\n');
        assert!(matches!(requests(&input, 16, 1000)[1], Request::Line(ref l) if l.len() == 100));
        let mut client = b"READ\n".to_vec();
        client.extend_from_slice(&[b'x'; 100]);
        client.push(b'\n');
        assert_eq!(requests(&client, 16, 1000)[1], Request::TooLong);
    }

    #[test]
    fn refuses_lines_over_the_limit_without_buffering_them() {
        assert_eq!(lines(b"12345678\n", 8), [line("12345678")]);
        assert_eq!(lines(b"12345678\r\n", 8), [line("12345678")]);
        assert_eq!(lines(b"12345678\r", 8), [line("12345678")]);
        assert_eq!(lines(b"123456789\r\n", 8)[0], Frame::TooLong);
        assert_eq!(lines(b"123456789", 8), [Frame::TooLong]);
        let long = [b'x'; 100];
        let frames = lines(&long, 8);
        assert_eq!(frames[0], Frame::TooLong);
        assert_eq!(lines(b"123456789\n", 8)[0], Frame::TooLong);
    }
}
