//! A client of ditto (or of any server that speaks the seed's line protocol).
//!
//! One request, one reply line, every wait bounded by a timeout. Requests can also be pipelined
//! with [`Client::send`] and [`Client::recv`]: replies come back in request order.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::codec::{Frame, LineCodec};

/// Longest reply line a client accepts.
const MAX_REPLY: usize = ditto_core::wire::MAX_LINE;

/// Why a request got no reply.
#[derive(Debug, Error)]
pub enum ClientError {
    // `cause` is in the message and deliberately not a `source`: error reporters that print
    // the chain of sources would otherwise say it twice.
    #[error("cannot connect to port {port}: {cause}")]
    Connect { port: u16, cause: io::Error },
    #[error("no connection to port {port} within {timeout:?}")]
    ConnectTimeout { port: u16, timeout: Duration },
    #[error("cannot connect to {addr}: {cause}")]
    ConnectAddr { addr: String, cause: io::Error },
    #[error("no connection to {addr} within {timeout:?}")]
    ConnectAddrTimeout { addr: String, timeout: Duration },
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the connection")]
    Closed,
    #[error("reply longer than {MAX_REPLY} bytes")]
    ReplyTooLong,
    #[error("request contains a line break")]
    BadRequest,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A connection to one server.
#[derive(Debug)]
pub struct Client<S = TcpStream> {
    reader: FramedRead<ReadHalf<S>, LineCodec>,
    writer: WriteHalf<S>,
    timeout: Duration,
}

impl Client<TcpStream> {
    /// Connects to the server on 127.0.0.1:`port`; `timeout` bounds the connect and every reply.
    pub async fn connect(port: u16, timeout: Duration) -> Result<Self, ClientError> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::ConnectTimeout { port, timeout })?
            .map_err(|cause| ClientError::Connect { port, cause })?;
        stream.set_nodelay(true)?;
        Ok(Client::new(stream, timeout))
    }
}

impl Client<TcpStream> {
    /// Connects to the server at `addr` (`host:port`, the host resolved by the system);
    /// `timeout` bounds the connect and every reply.
    pub async fn connect_addr(
        addr: &ditto_core::Addr,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let name = addr.to_string();
        let stream = tokio::time::timeout(timeout, TcpStream::connect((addr.host(), addr.port())))
            .await
            .map_err(|_| ClientError::ConnectAddrTimeout {
                addr: name.clone(),
                timeout,
            })?
            .map_err(|cause| ClientError::ConnectAddr { addr: name, cause })?;
        stream.set_nodelay(true)?;
        Ok(Client::new(stream, timeout))
    }
}

impl<S: AsyncRead + AsyncWrite> Client<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S, timeout: Duration) -> Self {
        let (r, w) = tokio::io::split(stream);
        Client {
            reader: FramedRead::new(r, LineCodec::new(MAX_REPLY)),
            writer: w,
            timeout,
        }
    }

    /// Sends `line` and returns the reply line.
    pub async fn request(&mut self, line: &str) -> Result<String, ClientError> {
        self.send(line).await?;
        self.recv().await
    }

    /// Sends one request without waiting for its reply.
    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        if line.contains('\n') {
            return Err(ClientError::BadRequest);
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        tokio::time::timeout(self.timeout, self.writer.write_all(&buf))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        Ok(())
    }

    /// Waits for the next reply line.
    pub async fn recv(&mut self) -> Result<String, ClientError> {
        match tokio::time::timeout(self.timeout, self.reader.next()).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(None) => Err(ClientError::Closed),
            Ok(Some(Err(e))) => Err(ClientError::Io(e)),
            Ok(Some(Ok(Frame::TooLong))) => Err(ClientError::ReplyTooLong),
            Ok(Some(Ok(Frame::Line(line)))) => Ok(String::from_utf8_lossy(&line).into_owned()),
        }
    }
}

/// What a client may conclude from the answer to one `READ` or `WRITE:v`: the outcome a history
/// records. Shared by every workload so that they all judge answers alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conclusion {
    /// The request took effect: a write was applied, a read returned this value.
    Done(Option<i64>),
    /// Nothing happened: the server refused, or a read got no value.
    NotApplied,
    /// A write that may or may not have been applied (no answer, a lost connection, or a server
    /// saying it cannot know).
    Unknown,
}

impl Conclusion {
    /// Judges the answer to a write (`write`) or a read.
    pub fn of(write: bool, answer: &Result<String, ClientError>) -> Conclusion {
        use ditto_core::wire;
        match answer {
            Ok(reply) if wire::is_error_reply(reply.as_bytes()) => {
                if write && reply.contains("unknown") {
                    Conclusion::Unknown
                } else {
                    Conclusion::NotApplied
                }
            }
            Ok(reply) if write => {
                if reply == wire::ACK {
                    Conclusion::Done(None)
                } else {
                    Conclusion::Unknown
                }
            }
            Ok(reply) => match wire::parse_value_reply(reply) {
                Some(v) => Conclusion::Done(Some(v)),
                None => Conclusion::NotApplied,
            },
            Err(_) if write => Conclusion::Unknown,
            Err(_) => Conclusion::NotApplied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_as_a_history_needs() {
        let ok = |s: &str| Ok(s.to_owned());
        let lost = || Err(ClientError::Closed);
        assert_eq!(Conclusion::of(true, &ok("ACK")), Conclusion::Done(None));
        assert_eq!(
            Conclusion::of(false, &ok("VALUE:7")),
            Conclusion::Done(Some(7))
        );
        assert_eq!(
            Conclusion::of(true, &ok("ERR:bad value")),
            Conclusion::NotApplied
        );
        assert_eq!(
            Conclusion::of(true, &ok("ERR:primary unreachable; outcome unknown")),
            Conclusion::Unknown
        );
        assert_eq!(Conclusion::of(true, &lost()), Conclusion::Unknown);
        assert_eq!(Conclusion::of(false, &lost()), Conclusion::NotApplied);
        assert_eq!(
            Conclusion::of(false, &ok("ERR:not joined")),
            Conclusion::NotApplied
        );
        assert_eq!(Conclusion::of(true, &ok("OK")), Conclusion::Unknown);
    }
}
