//! `ditto primary` and `ditto backup`: run one server until interrupted.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use ditto_core::peer_auth::Secret;
use ditto_core::{Addr, NodeConfig, ReplicaConfig};
use ditto_server::{DriverConfig, MetricsEndpoint, Net, TokioNet};
use tokio::io::AsyncReadExt;
use tracing::Instrument;

/// Where a server listens and how the others reach it.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Address to listen on: 127.0.0.1 (this computer only, as the seed runs), or an address of
    /// this host that the other members can reach (0.0.0.0 or :: for all of them).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    bind: IpAddr,
    /// The host (name or IP) the other members and clients reach this server at, if not the
    /// bind address, and its port there if not the one it listens on (`HOST:PORT`, for a
    /// forwarded port). Needed with a wildcard bind address.
    #[arg(long, value_name = "HOST[:PORT]")]
    advertise: Option<String>,
    /// The address this server connects to the other members from, if not the one the system
    /// picks (as Redis's bind-source-addr): on a host with several addresses, the one the
    /// others expect.
    #[arg(long, value_name = "IP")]
    source_addr: Option<IpAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9100). Off by default.
    #[arg(long, value_name = "IP:PORT", value_parser = metrics_addr)]
    metrics: Option<SocketAddr>,
}

/// Parses the `--metrics` address: a literal `IP:PORT`, which binds at once (see `main`'s
/// `serve`), with a port of its own.
fn metrics_addr(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(format!(
            "'{s}' is not an address to serve metrics on (expected IP:PORT, e.g. 127.0.0.1:9100)"
        )),
    }
}

impl NetArgs {
    /// The address this server is known by.
    fn advertised(&self, port: u16) -> anyhow::Result<Addr> {
        let host = match &self.advertise {
            Some(text) if has_port(text) => {
                return text
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--advertise {text}: {e}"));
            }
            Some(host) => host.clone(),
            None if self.bind.is_unspecified() => anyhow::bail!(
                "--bind {} listens on every address; say which one the others reach with --advertise HOST",
                self.bind
            ),
            None => self.bind.to_string(),
        };
        Addr::new(&host, port).map_err(|e| anyhow::anyhow!("--advertise {host}: {e}"))
    }
}

/// Whether an `--advertise` text names a port: `host:port` or `[v6]:port`, but not a bare
/// IPv6 address, whose colons are its own.
fn has_port(text: &str) -> bool {
    text.starts_with('[') && text.contains("]:") || text.matches(':').count() == 1
}

/// What a server stores and whom it answers.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Refuse writes that would take the keys and values past this size (e.g. 100mb, 2gb;
    /// `OOM` errors, as Redis's noeviction policy). Nothing is evicted and nothing acknowledged
    /// is lost. Unlimited by default.
    #[arg(long, value_name = "BYTES", value_parser = bytes_size)]
    maxmemory: Option<usize>,
    /// Longest key a request may carry.
    #[arg(long, value_name = "BYTES", default_value = "512", value_parser = bytes_size)]
    max_key_bytes: usize,
    /// Longest value a request may carry.
    #[arg(long, value_name = "BYTES", default_value = "1mb", value_parser = bytes_size)]
    max_value_bytes: usize,
    /// A file whose first line is the client password (clients then `AUTH` first; the line
    /// protocol's form is `AUTH:<password>`). The environment variable DITTO_PASSWORD works
    /// too; there is no flag for the password itself, since `ps` shows flags to everyone.
    #[arg(long, value_name = "PATH")]
    requirepass_file: Option<std::path::PathBuf>,
    /// The name Sentinel clients know the group by (`SENTINEL get-master-addr-by-name NAME`).
    #[arg(long, default_value = "ditto")]
    name: String,
    /// A file holding the cluster secret (at least 16 bytes; e.g. `openssl rand -hex 32 >
    /// FILE`), the same on every member: replication streams then prove they know it, so
    /// strangers cannot join, vote or pose as a primary, and seed-only peers are refused. The
    /// environment variable DITTO_SECRET works too; see docs/security.md.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<std::path::PathBuf>,
}

impl StoreArgs {
    /// Puts these settings into `cfg`.
    fn apply(&self, cfg: &mut NodeConfig) -> anyhow::Result<()> {
        cfg.replica.max_memory = self.maxmemory;
        cfg.limits.max_key = self.max_key_bytes;
        cfg.limits.max_value = self.max_value_bytes;
        cfg.name = self.name.clone();
        let secret = match (&self.secret_file, std::env::var("DITTO_SECRET")) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --secret-file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, Ok(s)) if !s.is_empty() => Some(s.trim().to_owned()),
            (None, _) => None,
        };
        cfg.secret = match secret {
            Some(s) => Some(Secret::new(s.into_bytes()).map_err(|e| anyhow::anyhow!(e))?),
            None => None,
        };
        cfg.nonce_seed = rand::random();
        cfg.password = match (&self.requirepass_file, std::env::var("DITTO_PASSWORD")) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read --requirepass-file {}", path.display())
                })?;
                let first = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned();
                anyhow::ensure!(
                    !first.is_empty(),
                    "--requirepass-file {} is empty",
                    path.display()
                );
                Some(first)
            }
            (None, Ok(pw)) if !pw.is_empty() => Some(pw),
            (None, _) => None,
        };
        Ok(())
    }
}

/// A size in bytes: a number, optionally followed by k, kb, m, mb, g or gb (powers of 1024,
/// as Redis reads `maxmemory`).
fn bytes_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 512, 64kb, 100mb, 2gb)"))?;
    let scale: usize = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use kb, mb or gb)"
            ));
        }
    };
    n.checked_mul(scale)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("'{text}' is out of range"))
}

#[derive(Debug, Args)]
pub struct PrimaryArgs {
    /// Port to listen on.
    #[arg(value_parser = super::port)]
    port: u16,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Port this backup listens on.
    #[arg(value_parser = super::port)]
    backup_port: u16,
    /// The primary to join: its port on this computer, or HOST:PORT (any member will do: a
    /// backup redirects to its primary).
    #[arg(value_parser = super::addr, value_name = "PRIMARY_PORT")]
    primary: Addr,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    store: StoreArgs,
}

async fn bind(net: &TokioNet, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    net.bind(port)
        .await
        .with_context(|| format!("cannot listen on {}:{port}", net.host))
}

/// The wall clock in milliseconds since the UNIX epoch.
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A group id nobody else draws: the time and the process id.
fn group_seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (t ^ (u64::from(std::process::id()) << 40)).max(1)
}

pub async fn primary(args: PrimaryArgs, exit_on_eof: bool) -> anyhow::Result<ExitCode> {
    let me = args.net.advertised(args.port)?;
    run(
        "primary",
        args.port,
        &args.net,
        &args.store,
        me,
        None,
        exit_on_eof,
    )
    .await
}

pub async fn backup(args: BackupArgs, exit_on_eof: bool) -> anyhow::Result<ExitCode> {
    let me = args.net.advertised(args.backup_port)?;
    if args.primary == me || args.primary == Addr::local(args.backup_port) {
        anyhow::bail!("the backup port and the primary port must differ");
    }
    let contact = Some(args.primary.clone());
    run(
        "backup",
        args.backup_port,
        &args.net,
        &args.store,
        me,
        contact,
        exit_on_eof,
    )
    .await
}

async fn run(
    role: &str,
    port: u16,
    net_args: &NetArgs,
    store: &StoreArgs,
    me: Addr,
    contact: Option<Addr>,
    exit_on_eof: bool,
) -> anyhow::Result<ExitCode> {
    // The settings are read (and refused, if bad) before anything listens or logs.
    let mut replica = ReplicaConfig::new(me.clone(), contact.clone(), group_seed());
    // The driver's time 0 is about now: entries are stamped from the wall clock from here on.
    replica.epoch = Some(unix_millis());
    let mut cfg = NodeConfig::new(replica);
    store.apply(&mut cfg)?;
    let net = TokioNet {
        host: net_args.bind,
        source: net_args.source_addr,
    };
    let listener = bind(&net, port).await?;
    let endpoint = match net_args.metrics {
        Some(addr) => Some(
            MetricsEndpoint::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        ),
        None => None,
    };
    // Everything this server logs names it and its view: these lines before the driver starts,
    // and the metrics endpoint's beside it, are in the span the driver keeps up to date.
    let span = ditto_server::driver::node_span(&me, 0);
    span.in_scope(|| {
        match &contact {
            None => tracing::info!("{role} listening on {}:{port} as {me}", net.host),
            Some(c) => tracing::info!(
                "{role} listening on {}:{port} as {me}, joining {c}",
                net.host
            ),
        }
        if let Some(addr) = net_args.metrics {
            tracing::info!("metrics at http://{addr}/metrics");
        }
    });
    let driver = DriverConfig {
        metrics: endpoint.is_some(),
        ..DriverConfig::default()
    };
    if let Some(endpoint) = endpoint {
        tokio::spawn(endpoint.serve().instrument(span.clone()));
    }
    ditto_server::run_node(net, listener, cfg, driver, stop(exit_on_eof))
        .instrument(span)
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C, on SIGTERM, or (when asked) when standard input closes.
async fn stop(exit_on_eof: bool) {
    let stdin_closed = async {
        if !exit_on_eof {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
        () = stdin_closed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(bind: &str, advertise: Option<&str>) -> NetArgs {
        NetArgs {
            bind: bind.parse().unwrap(),
            advertise: advertise.map(str::to_owned),
            source_addr: None,
            metrics: None,
        }
    }

    #[test]
    fn sizes_take_redis_units() {
        assert_eq!(bytes_size("512"), Ok(512));
        assert_eq!(bytes_size("64kb"), Ok(64 << 10));
        assert_eq!(bytes_size("100MB"), Ok(100 << 20));
        assert_eq!(bytes_size("2g"), Ok(2 << 30));
        assert!(bytes_size("0").is_err());
        assert!(bytes_size("5 parsecs").is_err());
        assert!(bytes_size("mb").is_err());
    }

    #[test]
    fn the_advertised_address_takes_a_host_and_maybe_a_port() {
        let at = |bind, advertise| net(bind, advertise).advertised(7000).map(|a| a.to_string());
        assert_eq!(at("127.0.0.1", None).unwrap(), "127.0.0.1:7000");
        assert_eq!(at("0.0.0.0", Some("db1")).unwrap(), "db1:7000");
        assert_eq!(at("0.0.0.0", Some("db1:17000")).unwrap(), "db1:17000");
        assert_eq!(at("::", Some("::1")).unwrap(), "[::1]:7000");
        assert_eq!(at("::", Some("[::1]:17000")).unwrap(), "[::1]:17000");
        assert!(at("0.0.0.0", None).is_err(), "a wildcard needs --advertise");
        assert!(at("0.0.0.0", Some("db1:0")).is_err());
        assert!(at("0.0.0.0", Some("db1:x")).is_err());
    }

    #[test]
    fn the_metrics_address_is_a_literal_ip_and_port() {
        assert_eq!(
            metrics_addr("127.0.0.1:9100").unwrap().to_string(),
            "127.0.0.1:9100"
        );
        assert_eq!(
            metrics_addr("[::1]:9100").unwrap().to_string(),
            "[::1]:9100"
        );
        for bad in [
            "9100",
            "localhost:9100",
            "127.0.0.1",
            "127.0.0.1:0",
            "1.2.3.4:99999",
            "",
        ] {
            assert!(metrics_addr(bad).is_err(), "{bad}");
        }
    }
}
