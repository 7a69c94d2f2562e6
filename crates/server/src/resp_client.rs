//! A client of servers that speak RESP: Redis, and ditto's keyspace once it is on a port.
//!
//! Requests go out as arrays of bulk strings ([`ditto_core::resp::encode_request`]); replies
//! are read by the core's incremental [`ReplyParser`], so a reply split over many reads is gone
//! over once and a server cannot make the client hold more than [`ReplyLimits`] allow. Requests
//! can be pipelined: [`RespClient::queue`] as many as wanted, [`RespClient::flush`] them in one
//! write, and [`RespClient::recv`] the replies, which come back in request order. Every wait
//! (the connect, a write, a reply) is bounded by the client's timeout.
//!
//! A reply that is a RESP error (`-ERR ...`) is a reply like any other, [`Reply::Error`]; a
//! [`RespClientError`] means the connection itself failed.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ditto_core::resp::{self, Reply, ReplyError, ReplyLimits, ReplyParser};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How much room is made in the read buffer before each read: enough for a pipeline of small
/// replies in one system call.
const READ_CHUNK: usize = 16 * 1024;

/// Why a request got no reply. After any of these but [`RespClientError::Timeout`] (where the
/// reply may still come, and is read by the next [`RespClient::recv`]) and the two misuses
/// ([`RespClientError::NothingInFlight`], [`RespClientError::Busy`]), the connection is of no
/// further use: drop the client.
#[derive(Debug, Error)]
pub enum RespClientError {
    // `cause` is in the message and deliberately not a `source`: error reporters that print
    // the chain of sources would otherwise say it twice.
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: io::Error },
    #[error("no connection to {addr} within {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("could not send the requests within {0:?}")]
    SendTimeout(Duration),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server's reply is not RESP: {0}")]
    Protocol(#[from] ReplyError),
    #[error("a reply was awaited with no request in flight")]
    NothingInFlight,
    #[error("a request awaiting its own reply was made with {0} replies still owed")]
    Busy(usize),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A connection to one RESP server.
#[derive(Debug)]
pub struct RespClient<S = TcpStream> {
    stream: S,
    /// Bytes read and not yet parsed: at most the unfinished part of one reply element, plus
    /// whole replies not yet asked for.
    read: BytesMut,
    /// Requests queued and not yet written.
    write: Vec<u8>,
    parser: ReplyParser,
    timeout: Duration,
    /// Requests queued or sent whose replies have not been returned.
    in_flight: usize,
}

impl RespClient<TcpStream> {
    /// Connects to `addr` (the host resolved by the system); `timeout` bounds the connect, and
    /// then every write and every reply.
    pub async fn connect(
        addr: &ditto_core::Addr,
        timeout: Duration,
    ) -> Result<Self, RespClientError> {
        let name = addr.to_string();
        let stream = tokio::time::timeout(timeout, TcpStream::connect((addr.host(), addr.port())))
            .await
            .map_err(|_| RespClientError::ConnectTimeout {
                addr: name.clone(),
                timeout,
            })?
            .map_err(|cause| RespClientError::Connect { addr: name, cause })?;
        // Requests are small and each is waited for; Nagle's algorithm would hold them back.
        stream.set_nodelay(true)?;
        Ok(RespClient::new(stream, timeout))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RespClient<S> {
    /// Wraps a connected stream, with the default [`ReplyLimits`].
    pub fn new(stream: S, timeout: Duration) -> Self {
        RespClient {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::new(),
            parser: ReplyParser::default(),
            timeout,
            in_flight: 0,
        }
    }

    /// Replaces the limits replies are held to (before any reply has begun).
    pub fn with_limits(mut self, limits: ReplyLimits) -> Self {
        self.parser = ReplyParser::new(limits);
        self
    }

    /// Requests queued or sent whose replies have not been returned yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues one request (`args[0]` the command) to be written by the next
    /// [`RespClient::flush`]; nothing is sent yet, so a pipeline goes out in one write.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_request(args, &mut self.write);
        self.in_flight += 1;
    }

    /// Writes every queued request.
    pub async fn flush(&mut self) -> Result<(), RespClientError> {
        if self.write.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(self.timeout, self.stream.write_all(&self.write))
            .await
            .map_err(|_| RespClientError::SendTimeout(self.timeout))??;
        self.write.clear();
        Ok(())
    }

    /// Queues one request and writes it, with any queued before it.
    pub async fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), RespClientError> {
        self.queue(args);
        self.flush().await
    }

    /// Sends one request and waits for its reply. Refused with [`RespClientError::Busy`] when
    /// earlier replies are still owed, since the next reply would be theirs.
    pub async fn request<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RespClientError> {
        if self.in_flight > 0 {
            return Err(RespClientError::Busy(self.in_flight));
        }
        self.send(args).await?;
        self.recv().await
    }

    /// The reply to the oldest request in flight, from what has already been read, without
    /// waiting; `None` if it has not all arrived. Lets a pipelining caller take every reply a
    /// read brought before it writes again.
    pub fn try_recv(&mut self) -> Result<Option<Reply>, RespClientError> {
        if self.in_flight == 0 {
            return Err(RespClientError::NothingInFlight);
        }
        let (used, reply) = self.parser.parse(&self.read)?;
        self.read.advance(used);
        if reply.is_some() {
            self.in_flight -= 1;
        }
        Ok(reply)
    }

    /// Waits for the reply to the oldest request in flight. Queued requests are written first,
    /// since their replies cannot come otherwise.
    pub async fn recv(&mut self) -> Result<Reply, RespClientError> {
        self.flush().await?;
        if let Some(reply) = self.try_recv()? {
            return Ok(reply);
        }
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            loop {
                self.read.reserve(READ_CHUNK);
                if self.stream.read_buf(&mut self.read).await? == 0 {
                    return Err(RespClientError::Closed);
                }
                if let Some(reply) = self.try_recv()? {
                    return Ok(reply);
                }
            }
        })
        .await
        .map_err(|_| RespClientError::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    const WAIT: Duration = Duration::from_secs(5);

    fn pair(timeout: Duration) -> (RespClient<DuplexStream>, DuplexStream) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        (RespClient::new(a, timeout), b)
    }

    /// Reads requests from the server's end until `n` have come, with a bounded wait.
    async fn requests(server: &mut DuplexStream, n: usize) -> Vec<resp::Args> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, async {
            while out.len() < n {
                let mut chunk = [0u8; 4096];
                let got = server.read(&mut chunk).await.unwrap();
                assert!(got > 0, "the client closed");
                buf.extend_from_slice(&chunk[..got]);
                while let Some((args, used)) = resp::parse_request(&buf).unwrap() {
                    buf.drain(..used);
                    out.push(args);
                }
            }
        })
        .await
        .expect("the requests arrive");
        out
    }

    #[tokio::test]
    async fn pipelined_requests_go_out_as_arrays_and_replies_are_matched_in_order() {
        let (mut client, mut server) = pair(WAIT);
        client.queue(&["SET", "key:1", "xxx"]);
        client.queue(&[b"GET".as_slice(), b"key:1"]);
        client.queue(&["LRANGE", "l", "0", "-1"]);
        assert_eq!(client.in_flight(), 3);
        client.flush().await.unwrap();
        let got = requests(&mut server, 3).await;
        let words = |w: &[&str]| w.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                words(&["SET", "key:1", "xxx"]),
                words(&["GET", "key:1"]),
                words(&["LRANGE", "l", "0", "-1"]),
            ]
        );
        // The replies arrive in pieces that cut through them anywhere.
        let replies: &[u8] = b"+OK\r\n$3\r\nxxx\r\n*2\r\n$1\r\na\r\n$-1\r\n";
        let writer = tokio::spawn(async move {
            for piece in replies.chunks(3) {
                server.write_all(piece).await.unwrap();
                server.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        assert_eq!(client.recv().await.unwrap(), Reply::ok());
        assert_eq!(client.recv().await.unwrap(), Reply::Bulk(b"xxx".to_vec()));
        assert_eq!(
            client.recv().await.unwrap(),
            Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Null])
        );
        assert_eq!(client.in_flight(), 0);
        let _server = writer.await.unwrap();
    }

    #[tokio::test]
    async fn replies_already_read_are_taken_without_waiting() {
        let (mut client, mut server) = pair(WAIT);
        for _ in 0..3 {
            client.queue(&["INCR", "counter:0"]);
        }
        client.flush().await.unwrap();
        requests(&mut server, 3).await;
        server.write_all(b":1\r\n:2\r\n:3\r\n").await.unwrap();
        assert_eq!(client.recv().await.unwrap(), Reply::Integer(1));
        // The read that brought the first reply brought the others too (a duplex hands over
        // everything written so far).
        assert_eq!(client.try_recv().unwrap(), Some(Reply::Integer(2)));
        assert_eq!(client.try_recv().unwrap(), Some(Reply::Integer(3)));
        assert!(matches!(
            client.try_recv(),
            Err(RespClientError::NothingInFlight)
        ));
    }

    #[tokio::test]
    async fn an_error_reply_is_a_reply_and_the_connection_goes_on() {
        let (mut client, mut server) = pair(WAIT);
        let answer = tokio::spawn(async move {
            requests(&mut server, 1).await;
            server
                .write_all(b"-ERR value is not an integer or out of range\r\n")
                .await
                .unwrap();
            requests(&mut server, 1).await;
            server.write_all(b"+PONG\r\n").await.unwrap();
            server
        });
        assert_eq!(
            client.request(&["INCR", "key:0"]).await.unwrap(),
            Reply::Error("ERR value is not an integer or out of range".into())
        );
        assert_eq!(
            client.request(&["PING"]).await.unwrap(),
            Reply::Simple("PONG".into())
        );
        let _server = answer.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_and_a_late_reply_is_still_read() {
        let timeout = Duration::from_millis(50);
        let (mut client, mut server) = pair(timeout);
        client.send(&["PING"]).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(
            client.recv().await,
            Err(RespClientError::Timeout(t)) if t == timeout
        ));
        assert!(started.elapsed() < WAIT);
        server.write_all(b"+PONG\r\n").await.unwrap();
        assert_eq!(client.recv().await.unwrap(), Reply::Simple("PONG".into()));
    }

    #[tokio::test]
    async fn a_close_in_the_middle_of_a_reply_is_reported() {
        let (mut client, mut server) = pair(WAIT);
        client.send(&["GET", "k"]).await.unwrap();
        server.write_all(b"$10\r\nabc").await.unwrap();
        drop(server);
        assert!(matches!(client.recv().await, Err(RespClientError::Closed)));
    }

    #[tokio::test]
    async fn bytes_that_are_not_resp_are_a_protocol_error() {
        let (mut client, mut server) = pair(WAIT);
        client.send(&["PING"]).await.unwrap();
        server
            .write_all(b"HTTP/1.1 400 Bad Request\r\n")
            .await
            .unwrap();
        assert!(matches!(
            client.recv().await,
            Err(RespClientError::Protocol(ReplyError::UnknownType(b'H')))
        ));
    }

    #[tokio::test]
    async fn a_reply_beyond_the_limits_is_refused() {
        let (a, mut server) = tokio::io::duplex(1024);
        let limits = ReplyLimits {
            max_bulk: 4,
            ..ReplyLimits::default()
        };
        let mut client = RespClient::new(a, WAIT).with_limits(limits);
        client.send(&["GET", "k"]).await.unwrap();
        server.write_all(b"$5\r\n").await.unwrap();
        assert!(matches!(
            client.recv().await,
            Err(RespClientError::Protocol(ReplyError::BulkTooLong {
                len: 5,
                max: 4
            }))
        ));
    }

    #[tokio::test]
    async fn misuses_are_refused_at_once() {
        let (mut client, _server) = pair(WAIT);
        assert!(matches!(
            client.recv().await,
            Err(RespClientError::NothingInFlight)
        ));
        client.queue(&["PING"]);
        assert!(matches!(
            client.request(&["PING"]).await,
            Err(RespClientError::Busy(1))
        ));
    }

    #[tokio::test]
    async fn talks_to_a_server_over_tcp_and_names_a_port_nobody_listens_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"*1\r\n$6\r\nDBSIZE\r\n");
            stream.write_all(b":0\r\n").await.unwrap();
            stream
        });
        let addr = ditto_core::Addr::local(port);
        let mut client = RespClient::connect(&addr, WAIT).await.unwrap();
        assert_eq!(
            client.request(&["DBSIZE"]).await.unwrap(),
            Reply::Integer(0)
        );
        drop(server.await.unwrap());

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let err = RespClient::connect(&ditto_core::Addr::local(port), WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RespClientError::Connect { addr, .. } if addr.ends_with(&format!(":{port}"))),
            "{err}"
        );
    }
}
