//! `ditto primary` and `ditto backup`: run one server until interrupted.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use ditto_core::{BackupConfig, PrimaryConfig};
use ditto_server::{DriverConfig, Net, TokioNet};
use tokio::io::AsyncReadExt;

#[derive(Debug, Args)]
pub struct PrimaryArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(value_parser = super::port)]
    port: u16,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Port this backup listens on (127.0.0.1).
    #[arg(value_parser = super::port)]
    backup_port: u16,
    /// Port of the primary to join.
    #[arg(value_parser = super::port)]
    primary_port: u16,
}

async fn bind(net: &TokioNet, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    net.bind(port)
        .await
        .with_context(|| format!("cannot listen on {}:{port}", net.host))
}

pub async fn primary(args: PrimaryArgs, exit_on_eof: bool) -> anyhow::Result<ExitCode> {
    let net = TokioNet::default();
    let listener = bind(&net, args.port).await?;
    // Epochs only need to grow across restarts of a primary; wall-clock milliseconds do.
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    tracing::info!(
        "primary listening on {}:{} (epoch {epoch})",
        net.host,
        args.port
    );
    let cfg = PrimaryConfig::new(args.port, epoch);
    ditto_server::run_primary(
        net,
        listener,
        cfg,
        DriverConfig::default(),
        stop(exit_on_eof),
    )
    .await?;
    tracing::info!("primary stopped");
    Ok(ExitCode::SUCCESS)
}

pub async fn backup(args: BackupArgs, exit_on_eof: bool) -> anyhow::Result<ExitCode> {
    if args.backup_port == args.primary_port {
        anyhow::bail!("the backup port and the primary port must differ");
    }
    let net = TokioNet::default();
    let listener = bind(&net, args.backup_port).await?;
    tracing::info!(
        "backup listening on {}:{}, joining primary :{}",
        net.host,
        args.backup_port,
        args.primary_port
    );
    let cfg = BackupConfig::new(args.backup_port, args.primary_port);
    ditto_server::run_backup(
        net,
        listener,
        cfg,
        DriverConfig::default(),
        stop(exit_on_eof),
    )
    .await?;
    tracing::info!("backup stopped");
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
