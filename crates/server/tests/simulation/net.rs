//! [`ditto_server::Net`] over turmoil's simulated TCP.
//!
//! A port names a host: the node listening on port 7000 runs on the simulated host `n7000` and
//! is known by the address `n7000:7000`, which turmoil resolves. The driver uses nothing else,
//! which is why the real driver and core run here unchanged.

use std::io;
use std::net::Ipv4Addr;

use ditto_core::Addr;
use ditto_server::{Listener, Net};
use turmoil::net::{TcpListener, TcpStream};

/// The simulated host whose node listens on `port`.
pub fn host_name(port: u16) -> String {
    format!("n{port}")
}

/// The address of the node listening on `port`.
pub fn addr(port: u16) -> Addr {
    Addr::new(&host_name(port), port).expect("a simulated host name is an address")
}

/// Binds and connects over the simulated network of the turmoil host it runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimNet;

/// A listener on a simulated host.
pub struct SimListener(TcpListener);

impl Listener for SimListener {
    type Stream = TcpStream;

    /// Cancel-safe: turmoil's `accept` only awaits a notification before taking the connection.
    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((stream, peer.ip().to_string()))
    }
}

impl Net for SimNet {
    type Stream = TcpStream;
    type Listener = SimListener;

    async fn bind(&self, port: u16) -> io::Result<SimListener> {
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .await
            .map(SimListener)
    }

    async fn connect(&self, addr: &Addr) -> io::Result<TcpStream> {
        TcpStream::connect((addr.host(), addr.port())).await
    }
}
