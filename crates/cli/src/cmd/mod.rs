//! One module per subcommand.

pub mod bench;
pub mod check;
pub mod client;
pub mod serve;
pub mod up;

/// Parses a TCP port: a whole number from 1 to 65535.
pub fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("'{s}' is not a port (expected 1-65535)")),
    }
}
