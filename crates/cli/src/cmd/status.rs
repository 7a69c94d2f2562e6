//! `ditto status` and `ditto failover`: what a server says of its group, and a switchover.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ditto_core::Addr;
use ditto_server::Client;
use serde_json::{Value, json};
use tokio::time::Instant;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The server to ask: PORT (on 127.0.0.1) or HOST:PORT.
    #[arg(value_parser = super::addr)]
    server: Addr,
    /// Print one JSON object, for tools.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5.0, value_parser = super::seconds)]
    timeout: f64,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Any member of the group: PORT (on 127.0.0.1) or HOST:PORT. Its primary is asked.
    #[arg(value_parser = super::addr)]
    server: Addr,
    /// The backup to hand over to (by default the most caught-up one).
    #[arg(long, value_parser = super::addr, value_name = "HOST:PORT")]
    to: Option<Addr>,
    /// Seconds to wait for the new primary.
    #[arg(long, default_value_t = 10.0, value_parser = super::seconds)]
    timeout: f64,
}

/// A parsed `STATUS` line: its fields, and its members.
#[derive(Debug)]
struct Status {
    fields: BTreeMap<String, String>,
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    id: String,
    addr: String,
    kind: String,
    state: String,
    held: Option<u64>,
}

fn parse(line: &str) -> Option<Status> {
    let rest = line.strip_prefix("STATUS:")?;
    let fields: BTreeMap<String, String> = rest
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let members = fields
        .get("members")
        .map(|list| {
            list.split(',')
                .filter(|e| !e.is_empty())
                .filter_map(|e| {
                    let (id, rest) = e.split_once('@')?;
                    let mut parts = rest.rsplitn(4, ':');
                    let held = parts.next()?.parse().ok();
                    let state = parts.next()?.to_owned();
                    let kind = parts.next()?.to_owned();
                    let addr = parts.next()?.to_owned();
                    Some(Member {
                        id: id.to_owned(),
                        addr,
                        kind,
                        state,
                        held,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Status { fields, members })
}

async fn ask(addr: &Addr, line: &str, timeout: Duration) -> anyhow::Result<String> {
    let mut client = Client::connect_addr(addr, timeout).await?;
    Ok(client.request(line).await?)
}

async fn status_of(addr: &Addr, timeout: Duration) -> anyhow::Result<Status> {
    let line = ask(addr, "STATUS", timeout).await?;
    parse(&line).with_context(|| format!("{addr} answered {line:?}, not a STATUS line"))
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let st = status_of(&args.server, timeout).await?;
    let f = |k: &str| st.fields.get(k).map_or("-", String::as_str);
    let last: Option<u64> = f("last").parse().ok();
    if args.json {
        let members: Vec<Value> = st
            .members
            .iter()
            .map(|m| {
                json!({
                    "id": m.id, "addr": m.addr, "kind": m.kind, "active": m.state == "active",
                    "held": m.held, "lag": last.zip(m.held).map(|(l, h)| l.saturating_sub(h)),
                })
            })
            .collect();
        let mut obj: serde_json::Map<String, Value> = st
            .fields
            .iter()
            .filter(|(k, _)| k.as_str() != "members")
            .map(|(k, v)| {
                let v = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
                (k.clone(), v)
            })
            .collect();
        obj.insert("members".into(), Value::Array(members));
        println!("{}", Value::Object(obj));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}  {}  view {}  status {}  group {}",
        f("addr"),
        f("role"),
        f("view"),
        f("status"),
        f("group")
    );
    println!("primary {}", f("primary"));
    println!(
        "commit {}  applied {}  last {}  value {}",
        f("commit"),
        f("applied"),
        f("last"),
        f("value")
    );
    if !st.members.is_empty() {
        println!("members:");
        for m in &st.members {
            let lag = match (last, m.held) {
                (Some(l), Some(h)) => format!("held {h}  lag {}", l.saturating_sub(h)),
                _ => String::new(),
            };
            println!(
                "  {:>3}  {:<24} {:<5} {:<9} {lag}",
                m.id, m.addr, m.kind, m.state
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn failover(args: FailoverArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let st = status_of(&args.server, timeout).await?;
    let primary: Addr = match st.fields.get("primary").map(String::as_str) {
        Some("-") | None => bail!("{} knows no primary at the moment", args.server),
        Some(p) => p.parse().with_context(|| format!("bad primary {p:?}"))?,
    };
    let view: u64 = st
        .fields
        .get("view")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let request = match &args.to {
        Some(to) => format!("FAILOVER:{to}"),
        None => "FAILOVER".to_owned(),
    };
    let reply = ask(&primary, &request, timeout).await?;
    if reply.starts_with("ERR") {
        bail!("the primary {primary} refused: {reply}");
    }
    let target: Addr = reply
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("the primary {primary} answered {reply:?}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(st) = status_of(&target, Duration::from_secs(1)).await {
            let newer = st.fields.get("view").and_then(|v| v.parse::<u64>().ok()) > Some(view);
            if newer && st.fields.get("role").map(String::as_str) == Some("primary") {
                println!(
                    "{target} is the primary of view {}",
                    st.fields.get("view").map_or("?", String::as_str)
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
        if Instant::now() >= deadline {
            bail!("{target} did not become primary within {timeout:?}; see the servers' logs");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
