//! `ditto up`: a local cluster to play with, and a prompt on its primary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus};

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

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
    /// Log level of the servers, in their log files (`--log-level` is this process's own).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    server_log_level: String,
    /// Directory for the servers' logs, one file each (e.g. `primary-7000.log`). They go to a
    /// file rather than to this terminal so that they do not write across the prompt. The
    /// default is a new directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Have each server serve Prometheus metrics on 127.0.0.1: the primary at
    /// http://127.0.0.1:PORT/metrics, the backups on the ports after it. Off by default.
    #[arg(long, value_name = "PORT", value_parser = super::port)]
    metrics_port: Option<u16>,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .log_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ditto-up-{}", std::process::id())));
    let mut cluster = LocalCluster::start(
        args.base_port,
        args.backups as usize,
        args.metrics_port,
        &args.server_log_level,
        Logs::Dir(dir.clone()),
    )
    .await?;
    let mut banner = format!("ditto is up (server logs in {}):\n", dir.display());
    for (i, server) in cluster.servers.iter().enumerate() {
        let metrics = match args.metrics_port {
            Some(first) => format!("  metrics 127.0.0.1:{}", first as usize + i),
            None => String::new(),
        };
        let log = server
            .log
            .as_ref()
            .and_then(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        banner.push_str(&format!(
            "  {:<8} 127.0.0.1:{:<5}  pid {:<7}  log {log}{metrics}\n",
            server.role,
            server.port,
            server.pid().unwrap_or(0)
        ));
    }
    banner.push_str("Leave with `quit`, Ctrl-D or Ctrl-C; that stops the cluster.");
    let session = Session::new(cluster.primary, REPLY_TIMEOUT);
    let interactive = std::io::stdin().is_terminal();
    let (notes, notes_rx) = tokio::sync::mpsc::unbounded_channel();
    let conversation = async {
        if interactive {
            prompt(session, Some(banner), Some(notes_rx)).await
        } else {
            println!("{banner}");
            super::client::piped_session(session).await
        }
    };
    let mut conversation = std::pin::pin!(conversation);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let result = loop {
        tokio::select! {
            r = &mut conversation => break r,
            _ = interrupt.recv() => break Ok(ExitCode::SUCCESS),
            (i, status) = cluster.next_exit() => {
                let note = what_happened(&cluster, i, status);
                if interactive {
                    let _ = notes.send(note);
                } else {
                    println!("{note}");
                }
            }
        }
    };
    cluster.stop().await;
    println!("ditto stopped.");
    result
}

/// What the prompt says when server `i` of the cluster exited: once, and not what its log says
/// every few seconds from then on.
fn what_happened(cluster: &LocalCluster, i: usize, status: std::io::Result<ExitStatus>) -> String {
    let server = &cluster.servers[i];
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            return format!(
                "Cannot tell whether the {} on port {} still runs: {e}",
                server.role, server.port
            );
        }
    };
    let what = sentence(server.exited(status));
    let next = if server.port == cluster.primary && cluster.servers.len() >= 3 {
        let others: Vec<String> = cluster.backups.iter().map(u16::to_string).collect();
        format!(
            "The backups elect a new primary within about 3 s and writes go on; `connect {}` \
             talks to one of them. Started again, port {} rejoins as a backup.",
            others.first().map_or("", String::as_str),
            server.port
        )
    } else if server.port == cluster.primary {
        format!(
            "A group of fewer than three has no automatic failover: writes fail until a primary \
             listens on port {} again.",
            server.port
        )
    } else {
        "The rest of the cluster carries on without it.".to_owned()
    };
    format!("{what}. {next}")
}

/// `text` with its first letter capitalized, to begin a sentence.
fn sentence(text: String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}
