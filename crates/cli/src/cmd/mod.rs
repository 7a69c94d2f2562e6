//! One module per subcommand.

pub mod bench;
pub mod check;
pub mod client;
pub mod serve;
pub mod status;
pub mod up;

/// Parses a number of seconds: positive, finite, at most a day. Every duration on the command
/// line goes through this, so none can reach `Duration::from_secs_f64` and panic it.
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 86_400.0 => Ok(t),
        _ => Err(format!(
            "'{s}' is not a number of seconds between 0 and 86400"
        )),
    }
}

/// Parses a fraction between 0 and 1.
pub fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{s}' is not a ratio between 0 and 1")),
    }
}

/// Parses a TCP port: a whole number from 1 to 65535.
pub fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("'{s}' is not a port (expected 1-65535)")),
    }
}

/// Parses `PORT` (on 127.0.0.1) or `HOST:PORT`.
pub fn addr(s: &str) -> Result<ditto_core::Addr, String> {
    ditto_core::Addr::parse_or_port(s).map_err(|e| format!("'{s}': {e}"))
}
