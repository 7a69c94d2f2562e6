//! `ditto primary` and `ditto backup`: run one server until interrupted.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use ditto_core::{Addr, NodeConfig, ReplicaConfig};
use ditto_server::{DriverConfig, Net, TokioNet};
use tokio::io::AsyncReadExt;

/// Where a server listens and how the others reach it.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Address to listen on: 127.0.0.1 (this computer only, as the seed runs), or an address of
    /// this host that the other members can reach (0.0.0.0 or :: for all of them).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    bind: IpAddr,
    /// The host (name or IP) the other members and clients reach this server at, if not the
    /// bind address. Needed with a wildcard bind address.
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
}

impl NetArgs {
    /// The address this server is known by.
    fn advertised(&self, port: u16) -> anyhow::Result<Addr> {
        let host = match &self.advertise {
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

#[derive(Debug, Args)]
pub struct PrimaryArgs {
    /// Port to listen on.
    #[arg(value_parser = super::port)]
    port: u16,
    #[command(flatten)]
    net: NetArgs,
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
}

async fn bind(net: &TokioNet, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    net.bind(port)
        .await
        .with_context(|| format!("cannot listen on {}:{port}", net.host))
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
    run("primary", args.port, &args.net, me, None, exit_on_eof).await
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
    me: Addr,
    contact: Option<Addr>,
    exit_on_eof: bool,
) -> anyhow::Result<ExitCode> {
    let net = TokioNet {
        host: net_args.bind,
    };
    let listener = bind(&net, port).await?;
    match &contact {
        None => tracing::info!("{role} listening on {}:{port} as {me}", net.host),
        Some(c) => tracing::info!(
            "{role} listening on {}:{port} as {me}, joining {c}",
            net.host
        ),
    }
    let cfg = NodeConfig::new(ReplicaConfig::new(me, contact, group_seed()));
    ditto_server::run_node(
        net,
        listener,
        cfg,
        DriverConfig::default(),
        stop(exit_on_eof),
    )
    .await?;
    tracing::info!("{role} stopped");
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
