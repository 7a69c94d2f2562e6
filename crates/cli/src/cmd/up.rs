//! `ditto up`: a local cluster to play with, and a prompt on its primary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::client::{REPLY_TIMEOUT, Session, prompt};
use crate::cluster::{LocalCluster, Logs};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of backups.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    backups: u16,
    /// Port of the primary; backups take the ports after it.
    #[arg(long, default_value_t = 7000, value_parser = super::port)]
    base_port: u16,
    /// Log level of the servers.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    server_log_level: String,
    /// Directory for the servers' logs, one file each (e.g. `primary-7000.log`). They go to a
    /// file rather than to this terminal so that they do not write across the prompt. The
    /// default is a new directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .log_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ditto-up-{}", std::process::id())));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
    println!("Server logs go to {}", dir.display());
    let mut cluster = LocalCluster::start(
        args.base_port,
        args.backups as usize,
        &args.server_log_level,
        Logs::Dir(dir),
    )
    .await?;
    let mut banner = String::from("ditto is up:\n");
    for server in &cluster.servers {
        let log = server
            .log
            .as_ref()
            .and_then(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        banner.push_str(&format!(
            "  {:<8} 127.0.0.1:{:<5}  pid {:<7}  log {log}\n",
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
