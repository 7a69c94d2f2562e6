//! The sockets a node uses, behind a trait.
//!
//! Production binds and connects real TCP sockets on one host; tests can implement the same trait
//! over a simulated network, where a port names a simulated host, and run the unchanged driver.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ditto_core::Addr;
use tokio::io::{AsyncRead, AsyncWrite};

/// A listening socket.
pub trait Listener: Send + 'static {
    /// The stream type of accepted connections.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection, and names the host it came from. Must be cancel-safe:
    /// the driver polls it in a `select!`.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

/// How a node reaches other nodes, which are named by address.
pub trait Net: Clone + Send + Sync + 'static {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listener whose connections are [`Net::Stream`]s.
    type Listener: Listener<Stream = Self::Stream>;
    /// Listens on `port`.
    fn bind(&self, port: u16) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to the node listening at `addr`.
    fn connect(&self, addr: &Addr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// How long data a node sent on a connection of its own may go unacknowledged before the
/// connection is dropped.
///
/// A node sends to each peer on a connection it opened, and every stream carries a message at
/// least every heartbeat (100 ms), so a stream whose data goes unacknowledged this long leads to
/// a peer that is down or cut off. Left to the kernel, such a connection lives on for many
/// minutes while TCP retransmits with a backoff that doubles up to two minutes: after a cut
/// link is mended, nothing would flow until the next retransmission, so a cut-off node would
/// take as long to rejoin as the cut lasted, and longer. Dropped instead, the stream is opened
/// afresh by the next message, and flows again within about a second of the link's return.
/// Messages lost with the dropped connection are lost as the network may lose any.
pub const PEER_SILENCE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Makes the kernel drop `stream` once sent data has gone unacknowledged for
/// [`PEER_SILENCE_LIMIT`] (`TCP_USER_TIMEOUT`, where the system has it).
fn give_up_on_silence(stream: &tokio::net::TcpStream) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket2::SockRef::from(stream).set_tcp_user_timeout(Some(PEER_SILENCE_LIMIT))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
    Ok(())
}

/// Real TCP: this node listens on `host` (by default 127.0.0.1) at its port, and reaches
/// others at their `host:port`, names resolved by the system.
#[derive(Clone, Copy, Debug)]
pub struct TokioNet {
    pub host: IpAddr,
    /// The address outgoing connections are made from, if not the one the system picks for
    /// the route (as Redis's `bind-source-addr`): on a host with several addresses, the one the
    /// other members' firewalls expect.
    pub source: Option<IpAddr>,
}

impl Default for TokioNet {
    fn default() -> Self {
        TokioNet {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            source: None,
        }
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, String)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        // Replies are single short lines; waiting to coalesce them only adds latency.
        stream.set_nodelay(true)?;
        Ok((stream, peer.ip().to_canonical().to_string()))
    }
}

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, port: u16) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(SocketAddr::new(self.host, port)).await
    }

    async fn connect(&self, addr: &Addr) -> io::Result<Self::Stream> {
        let stream = match self.source {
            None => tokio::net::TcpStream::connect((addr.host(), addr.port())).await?,
            Some(source) => connect_from(source, addr).await?,
        };
        stream.set_nodelay(true)?;
        give_up_on_silence(&stream)?;
        Ok(stream)
    }
}

/// Connects to `addr` from `source` (any port), trying each of the name's addresses of
/// `source`'s family in turn.
async fn connect_from(source: IpAddr, addr: &Addr) -> io::Result<tokio::net::TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("{addr} has no address of the family of the source address {source}"),
    );
    for target in tokio::net::lookup_host((addr.host(), addr.port())).await? {
        if target.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if source.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        match socket.connect(target).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_from_the_source_address_it_is_given() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let net = TokioNet {
            source: Some(source),
            ..TokioNet::default()
        };
        let _stream = net.connect(&Addr::local(port)).await.unwrap();
        let (_, host) = Listener::accept(&mut { listener }).await.unwrap();
        assert_eq!(host, "127.0.0.7");
    }

    #[tokio::test]
    async fn a_source_of_the_wrong_family_is_a_clear_error() {
        let net = TokioNet {
            source: Some("::1".parse().unwrap()),
            ..TokioNet::default()
        };
        let err = net.connect(&Addr::local(1)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn streams_a_node_opens_give_up_on_a_silent_peer() {
        let net = TokioNet::default();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = net.connect(&Addr::local(port)).await.unwrap();
        let limit = socket2::SockRef::from(&stream).tcp_user_timeout().unwrap();
        assert_eq!(limit, Some(PEER_SILENCE_LIMIT));
    }
}
