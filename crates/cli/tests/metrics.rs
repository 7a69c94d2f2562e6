//! What a running server tells its operator: Prometheus metrics on `--metrics ADDR`, and log
//! lines that name the node and its view.

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use support::*;

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /metrics` from the endpoint on `port`: the body of a 200 answer.
fn scrape(port: u16) -> io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => Ok(body.to_owned()),
        _ => Err(io::Error::other(format!("not a 200 answer: {answer}"))),
    }
}

/// The value of the series `series` (its name and labels, as rendered), if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `port` until `ready` holds of what it serves (gauges are sampled, not set at once);
/// panics after [`TIMEOUT`].
fn scrape_until(port: u16, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait_until(what, TIMEOUT, || match scrape(port) {
        Ok(text) => {
            last = text;
            ready(&last)
        }
        Err(_) => false,
    });
    last
}

fn server(role: &str, port: u16, args: &[String]) -> Server {
    Server::spawn(&format!("{role} :{port}"), port, args)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn a_primary_and_its_backup_serve_their_metrics() {
    let (p, pm, b, bm) = (free_port(), free_port(), free_port(), free_port());
    let (pa, ba) = (p.to_string(), b.to_string());
    let (pm_addr, bm_addr) = (format!("127.0.0.1:{pm}"), format!("127.0.0.1:{bm}"));
    let mut primary = server(
        "primary",
        p,
        &strings(&["primary", &pa, "--metrics", &pm_addr]),
    );
    primary.wait_answering();
    let backup = server(
        "backup",
        b,
        &strings(&["backup", &ba, &pa, "--metrics", &bm_addr]),
    );
    let mut cluster = Cluster {
        primary,
        backups: vec![backup],
    };
    cluster.wait_synced();

    let writes = 4;
    for v in 1..=writes {
        let out = run(&["client", &pa, &format!("WRITE:{v}")], b"", TIMEOUT);
        assert!(out.success() && out.stdout == "ACK\n", "{out:?}");
    }
    assert_eq!(read(p), writes);
    let refused = request(p, "FROB:1");
    assert!(refused.starts_with("ERR"), "{refused}");

    let backup_series = format!("ditto_replication_lag_entries{{backup=\"127.0.0.1:{b}\"}}");
    let text = scrape_until(pm, "the primary's metrics show its backup", |t| {
        value(t, &backup_series).is_some()
            && value(t, "ditto_commit_index").is_some_and(|c| c >= writes as f64)
    });
    let get = |series: &str| value(&text, series);
    let ok_writes = get("ditto_requests_total{command=\"WRITE\",outcome=\"ok\"}");
    assert!(ok_writes.is_some_and(|n| n >= writes as f64), "{text}");
    let ok_reads = get("ditto_requests_total{command=\"READ\",outcome=\"ok\"}");
    assert!(ok_reads.is_some_and(|n| n >= 1.0), "{text}");
    let errors = get("ditto_requests_total{command=\"other\",outcome=\"error\"}");
    assert_eq!(errors, Some(1.0), "{text}");
    let timed = get("ditto_request_duration_seconds_count{command=\"WRITE\"}");
    assert!(timed.is_some_and(|n| n >= writes as f64), "{text}");
    assert!(
        text.contains("ditto_request_duration_seconds_bucket{command=\"WRITE\",le=\"+Inf\"}"),
        "{text}"
    );
    assert_eq!(get("ditto_role{role=\"primary\"}"), Some(1.0), "{text}");
    assert_eq!(get("ditto_role{role=\"backup\"}"), Some(0.0), "{text}");
    assert!(get("ditto_view").is_some_and(|v| v >= 1.0), "{text}");
    assert!(
        get("ditto_last_index").is_some_and(|i| i >= writes as f64),
        "{text}"
    );
    let heard = format!("ditto_backup_last_heard_seconds{{backup=\"127.0.0.1:{b}\"}}");
    assert!(get(&heard).is_some_and(|s| s < 5.0), "{text}");
    assert!(get("ditto_connections_accepted_total").is_some_and(|n| n >= writes as f64));
    assert!(get("ditto_connections").is_some(), "{text}");
    assert!(text.contains("# HELP ditto_requests_total"), "{text}");

    let text = scrape_until(bm, "the backup's metrics show a backup", |t| {
        value(t, "ditto_role{role=\"backup\"}") == Some(1.0)
            && value(t, "ditto_commit_index").is_some_and(|c| c >= writes as f64)
    });
    assert_eq!(
        value(&text, "ditto_role{role=\"primary\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(
        !text.contains("ditto_replication_lag_entries{"),
        "a backup streams to nobody:\n{text}"
    );
    assert!(
        !text.contains("command=\"PEER\""),
        "the primary's stream is not requests:\n{text}"
    );
}

#[test]
fn every_log_line_names_the_node_and_its_current_view() {
    let cluster = start_cluster(1);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    // A switchover moves the group to a new view: the lines after it must say so.
    let reply = request(p, "FAILOVER");
    assert!(reply.starts_with("ACK"), "{reply}");
    wait_until("the backup takes over", TIMEOUT, || {
        status(b).is_some_and(|s| field(&s, "role") == Some("primary"))
    });
    let view: u64 = field(&status(b).unwrap(), "view")
        .and_then(|v| v.parse().ok())
        .expect("a view in STATUS");
    assert!(view >= 2, "a switchover starts a new view");
    let new_primary = &cluster.backups[0];
    let announced = format!("primary of view {view} (group");
    new_primary.wait_log(&announced);

    for (server, port) in [(&cluster.primary, p), (&cluster.backups[0], b)] {
        let log = server.log();
        assert!(!log.trim().is_empty(), "{} logged nothing", server.name);
        // Whole lines only: the last may still be arriving.
        for line in log.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            assert!(
                line.contains(&format!(" node=127.0.0.1:{port} view=")),
                "{}: a line without its node and view: {line}",
                server.name
            );
            assert_eq!(line.matches(" node=").count(), 1, "{}: {line}", server.name);
        }
    }
    let log = cluster.backups[0].log();
    let line = log
        .lines()
        .find(|l| l.contains(&announced))
        .expect("the announcement");
    assert!(
        line.contains(&format!(" view={view} ")),
        "the line announcing view {view} is logged in it: {line}"
    );
}

/// Asserts a failed start-up reported one line on stderr and did not panic.
fn assert_one_line_error(out: &Outcome, what: &str) {
    assert!(!out.success(), "{what}: exited successfully");
    let err = out.stderr.trim_end_matches('\n');
    assert!(!err.trim().is_empty(), "{what}: nothing on stderr");
    assert!(!err.contains("panicked"), "{what}: panicked:\n{err}");
    assert!(!err.contains('\n'), "{what}: more than one line:\n{err}");
}

#[test]
fn a_bad_metrics_address_is_a_one_line_error() {
    let port = free_port().to_string();
    for bad in [
        "nope",
        "9100",
        "localhost:9100",
        "127.0.0.1:0",
        "127.0.0.1:70000",
    ] {
        let out = run(&["primary", &port, "--metrics", bad], b"", TIMEOUT);
        assert_one_line_error(&out, &format!("--metrics {bad}"));
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(out.stderr.contains("--metrics"), "{out:?}");
    }
    // An address that parses but cannot be bound: the server gives up before serving.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let out = run(
        &[
            "backup",
            &port,
            "1",
            "--metrics",
            &taken,
            "--exit-on-stdin-eof",
        ],
        b"",
        TIMEOUT,
    );
    assert_one_line_error(&out, &format!("--metrics {taken}"));
    assert!(out.stderr.contains(&taken), "{out:?}");
    assert!(
        !is_listening(port.parse().unwrap()),
        "the server still listens"
    );
}

#[test]
fn up_gives_each_server_a_metrics_port() {
    let logs = TempDir::new("up-metrics");
    let (base, metrics) = (free_ports(2), free_ports(2));
    let mut up = Interactive::spawn(&[
        "up",
        "--base-port",
        &base.to_string(),
        "--backups",
        "1",
        "--metrics-port",
        &metrics.to_string(),
        "--log-dir",
        logs.arg(),
    ]);
    up.wait_stdout("Leave with");
    let banner = up.stdout.text();
    assert!(
        banner.contains(&format!("metrics 127.0.0.1:{}", metrics + 1)),
        "{banner}"
    );
    scrape_until(metrics, "the primary serves its metrics", |t| {
        value(t, "ditto_role{role=\"primary\"}") == Some(1.0)
    });
    scrape_until(metrics + 1, "the backup serves its metrics", |t| {
        value(t, "ditto_role{role=\"backup\"}") == Some(1.0)
    });
    up.finish_input(b"");
    let out = up.wait(TIMEOUT);
    assert!(out.success(), "{out:?}");

    let b = base.to_string();
    let overlapping = (base + 1).to_string();
    let args = [
        "up",
        "--base-port",
        &b,
        "--backups",
        "1",
        "--metrics-port",
        &overlapping,
    ];
    let out = run(&args, b"", TIMEOUT);
    assert_one_line_error(&out, "overlapping metrics ports");
    assert!(out.stderr.contains("overlap"), "{out:?}");
}
