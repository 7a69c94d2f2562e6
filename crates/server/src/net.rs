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

/// Real TCP: this node listens on `host` (by default 127.0.0.1) at its port, and reaches
/// others at their `host:port`, names resolved by the system.
#[derive(Clone, Copy, Debug)]
pub struct TokioNet {
    pub host: IpAddr,
}

impl Default for TokioNet {
    fn default() -> Self {
        TokioNet {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
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
        let stream = tokio::net::TcpStream::connect((addr.host(), addr.port())).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
