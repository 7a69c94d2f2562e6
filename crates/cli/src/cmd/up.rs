//! `ditto up`: a local cluster to play with, and a prompt on its primary.

use clap::Args;
use std::io::IsTerminal;
use std::process::ExitCode;

use super::client::{REPLY_TIMEOUT, Session, prompt};
use crate::cluster::LocalCluster;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of backups.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    backups: u16,
    /// Port of the primary; backups take the ports after it.
    #[arg(long, default_value_t = 7000, value_parser = super::port)]
    base_port: u16,
    /// Log level of the servers (their logs go to this terminal's stderr).
    #[arg(long, default_value = "warn")]
    server_log_level: String,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut cluster = LocalCluster::start(
        args.base_port,
        args.backups as usize,
        &args.server_log_level,
        false,
    )
    .await?;
    let mut banner = String::from("ditto is up:\n");
    for server in &cluster.servers {
        banner.push_str(&format!(
            "  {:<8} 127.0.0.1:{:<5}  pid {}\n",
            server.role,
            server.port,
            server.pid().unwrap_or(0)
        ));
    }
    banner.push_str("Leave with `quit`, Ctrl-D or Ctrl-C; that stops the cluster.");
    let session = Session::new(cluster.primary, REPLY_TIMEOUT);
    let result = if std::io::stdin().is_terminal() {
        tokio::select! {
            r = prompt(session, Some(banner)) => r,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    } else {
        println!("{banner}");
        tokio::select! {
            r = super::client::piped_session(session) => r,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    };
    cluster.stop().await;
    println!("ditto stopped.");
    result
}
