//! Where a node listens: `host:port`, with the host an IPv4 address, a bracketed IPv6 address or
//! a name. The core never resolves or dials an address; it only names peers by it, and the shell
//! turns it into a socket.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The host a node listens on when none is given: the seed runs every process on one computer.
pub const LOCALHOST: &str = "127.0.0.1";

/// A `host:port` a node listens on. Ordered and hashable so that it can key deterministic maps.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Addr {
    host: String,
    port: u16,
}

/// Why a text is not an address. The `Display` text is shown to users as it is.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AddrError {
    #[error("bad port: expected a whole number from 1 to 65535")]
    BadPort,
    #[error("bad host {0:?}: expected an IPv4 address, [IPv6] address or host name")]
    BadHost(String),
}

impl Addr {
    /// `host:port`; the host is checked as [`Addr::from_str`] would.
    pub fn new(host: &str, port: u16) -> Result<Addr, AddrError> {
        if port == 0 {
            return Err(AddrError::BadPort);
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
        if !ok {
            return Err(AddrError::BadHost(host.to_owned()));
        }
        Ok(Addr {
            host: host.to_owned(),
            port,
        })
    }

    /// A port on the seed's one computer.
    pub fn local(port: u16) -> Addr {
        Addr {
            host: LOCALHOST.to_owned(),
            port,
        }
    }

    /// The host, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Parses `host:port`, `[v6]:port`, or a bare port (on [`LOCALHOST`]), as command lines take.
    pub fn parse_or_port(text: &str) -> Result<Addr, AddrError> {
        match text.parse::<u16>() {
            Ok(port) => Addr::new(LOCALHOST, port),
            Err(_) if text.chars().all(|c| c.is_ascii_digit()) => Err(AddrError::BadPort),
            Err(_) => text.parse(),
        }
    }
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Addr, AddrError> {
        let text = text.trim();
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (host, port) = rest
                    .split_once("]:")
                    .ok_or_else(|| AddrError::BadHost(text.to_owned()))?;
                (host, port)
            }
            None => text
                .rsplit_once(':')
                .filter(|(host, _)| !host.contains(':'))
                .ok_or_else(|| AddrError::BadHost(text.to_owned()))?,
        };
        let port = port.parse::<u16>().map_err(|_| AddrError::BadPort)?;
        Addr::new(host, port)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl TryFrom<String> for Addr {
    type Error = AddrError;
    fn try_from(text: String) -> Result<Addr, AddrError> {
        text.parse()
    }
}

impl From<Addr> for String {
    fn from(addr: Addr) -> String {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_host_form() {
        let a: Addr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("127.0.0.1", 7000));
        let a: Addr = "[::1]:7001".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("::1", 7001));
        assert_eq!(a.to_string(), "[::1]:7001");
        let a: Addr = "node-2.example:7002".parse().unwrap();
        assert_eq!(a.to_string(), "node-2.example:7002");
        assert_eq!(Addr::parse_or_port("7003"), Ok(Addr::local(7003)));
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        assert_eq!("h:0".parse::<Addr>(), Err(AddrError::BadPort));
        assert_eq!("h:65536".parse::<Addr>(), Err(AddrError::BadPort));
        assert!("::1:7000".parse::<Addr>().is_err(), "IPv6 needs brackets");
        assert!("no port".parse::<Addr>().is_err());
        assert!("a b:1".parse::<Addr>().is_err());
        assert_eq!(Addr::parse_or_port("0"), Err(AddrError::BadPort));
        assert_eq!(Addr::parse_or_port("99999"), Err(AddrError::BadPort));
    }

    #[test]
    fn round_trips_through_text_and_json() {
        for text in ["127.0.0.1:1", "[fe80::1%eth0]:65535", "db:7000"] {
            let a: Addr = text.parse().unwrap();
            assert_eq!(a.to_string().parse::<Addr>().unwrap(), a);
        }
    }
}
