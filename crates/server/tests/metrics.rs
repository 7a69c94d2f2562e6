//! The driver's metrics, read from a recorder of the test's own: a node runs in this process on
//! a single-threaded runtime inside `metrics::with_local_recorder`, so everything the driver
//! records lands there, and no process-wide recorder is needed.

use std::time::Duration;

use ditto_core::replica::msg::Hello;
use ditto_core::{Addr, NodeConfig, ReplicaConfig};
use ditto_server::{Client, DriverConfig, TokioNet};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};

/// Every wait of the test is bounded by this.
const BOUND: Duration = Duration::from_secs(15);

/// The value of the series `series` (name and labels, as rendered), if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls the rendered metrics until `cond` holds; panics after [`BOUND`].
async fn wait_metrics(handle: &PrometheusHandle, what: &str, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + BOUND;
    loop {
        let text = handle.render();
        if cond(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn requests_are_counted_and_timed_and_streams_left_out() {
    let recorder = ditto_server::telemetry::endpoint::recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(scenario(handle));
    });
}

async fn scenario(handle: PrometheusHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = NodeConfig::new(ReplicaConfig::new(Addr::local(port), None, 7));
    let driver = DriverConfig {
        metrics: true,
        ..DriverConfig::default()
    };
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(ditto_server::run_node(
        TokioNet::default(),
        listener,
        cfg,
        driver,
        async {
            let _ = stopped.await;
        },
    ));

    let mut client = timeout(BOUND, async {
        loop {
            if let Ok(mut c) = Client::connect(port, Duration::from_secs(2)).await
                && c.request("STATUS")
                    .await
                    .is_ok_and(|s| s.contains("role=primary"))
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node never became primary");

    for v in 1..=3 {
        assert_eq!(client.request(&format!("WRITE:{v}")).await.unwrap(), "ACK");
    }
    assert_eq!(client.request("read").await.unwrap(), "VALUE:3");
    assert!(client.request("FROB:1").await.unwrap().starts_with("ERR"));

    // A peer's stream: its hello and what follows are not requests, even where the node
    // answers a line (here, refusing one it cannot parse).
    let mut peer = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    let hello = Hello {
        group: 0,
        from: Addr::local(1),
    };
    let lines = format!("{}\nnot a message\n", hello.to_line());
    peer.get_mut().write_all(lines.as_bytes()).await.unwrap();
    let mut refusal = String::new();
    timeout(BOUND, peer.read_line(&mut refusal))
        .await
        .unwrap()
        .unwrap();
    assert!(refusal.starts_with("ERR"), "{refusal}");

    // The client connections still open: `client`'s alone (the stream is not one, and the
    // polling clients have gone).
    wait_metrics(&handle, "one client connection is open", |t| {
        value(t, "ditto_connections") == Some(1.0)
    })
    .await;
    wait_metrics(&handle, "the gauges show a primary", |t| {
        value(t, "ditto_role{role=\"primary\"}") == Some(1.0)
            && value(t, "ditto_commit_index").is_some_and(|c| c >= 3.0)
    })
    .await;

    let text = handle.render();
    let get = |series: &str| value(&text, series);
    assert_eq!(
        get("ditto_requests_total{command=\"WRITE\",outcome=\"ok\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        get("ditto_requests_total{command=\"READ\",outcome=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get("ditto_requests_total{command=\"other\",outcome=\"error\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        get("ditto_requests_total{command=\"STATUS\",outcome=\"ok\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        !text.contains("command=\"PEER\""),
        "a stream's lines are not requests:\n{text}"
    );
    assert_eq!(
        get("ditto_request_duration_seconds_count{command=\"WRITE\"}"),
        Some(3.0),
        "{text}"
    );
    assert!(
        get("ditto_connections_accepted_total").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(get("ditto_role{role=\"backup\"}"), Some(0.0), "{text}");
    assert!(get("ditto_view").is_some_and(|v| v >= 1.0), "{text}");
    assert!(
        get("ditto_view_changes_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(get("ditto_keys"), Some(1.0), "the seed's key: {text}");
    let memory = "ditto:seed".len() + 1 + ditto_core::keyspace::ENTRY_OVERHEAD;
    assert!(
        get("ditto_memory_bytes").is_some_and(|m| m >= memory as f64),
        "{text}"
    );
}
