//! Splitting a byte stream into lines, with a hard limit on line length.

use bytes::{Bytes, BytesMut};
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
