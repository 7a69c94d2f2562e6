//! The scrape endpoint: `GET /metrics` in Prometheus's text format, over plain HTTP/1.x.
//!
//! Not the exporter crate's own listener, which spawns a task per connection with no limit and
//! no timeout, and retries a failing `accept` at once (spinning when file descriptors run out).
//! This one answers one request per connection and closes it; at most [`MAX_SCRAPERS`] are
//! served at a time (more are closed unanswered), each must be done within [`SCRAPE_TIMEOUT`],
//! and a request head over [`MAX_HEAD`] bytes is refused. A scraper asks a few times a minute:
//! nothing more is needed, and nothing a client does can make the endpoint hold more.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{DURATION_BUCKETS, names};

/// Scrapes answered at once; a connection beyond them is closed at once.
pub const MAX_SCRAPERS: usize = 8;
/// How long one connection may take, from accept to the last byte of the answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// How long accepting pauses after `accept` fails.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often histogram samples are folded in, so that they do not pile up between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A bound listening socket and the process's metrics recorder, ready to [`serve`](Self::serve).
#[derive(Debug)]
pub struct MetricsEndpoint {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl MetricsEndpoint {
    /// Listens on `addr` and installs the process-wide recorder that every `metrics` macro of
    /// the process then records to. Binding a literal address completes at once (the caller
    /// relies on it: see `ditto`'s `serve`). Fails if `addr` cannot be bound, or if a recorder
    /// is installed already.
    pub async fn bind(addr: SocketAddr) -> io::Result<MetricsEndpoint> {
        let listener = TcpListener::bind(addr).await?;
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|_| io::Error::other("a metrics recorder is already installed"))?;
        super::describe();
        Ok(MetricsEndpoint { listener, handle })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers scrapes until the task running it is dropped.
    pub async fn serve(self) {
        let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
        let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = upkeep.tick() => self.handle.run_upkeep(),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            continue;
                        };
                        let handle = self.handle.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, &handle)).await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("metrics endpoint: accept failed: {e}; pausing briefly");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
    }
}

/// The recorder `bind` installs: Prometheus's text format, with real histogram buckets for the
/// request durations (the exporter's default would be a summary, which cannot be aggregated
/// across servers).
pub fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::REQUEST_DURATION.to_owned()),
            DURATION_BUCKETS,
        )
        .expect("the bucket list is not empty")
        .build_recorder()
}

/// What a request head asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (`HEAD` leaves out the body).
    Metrics {
        body: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
}

fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.trim_ascii().split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if parts.next().is_some() || !version.starts_with(b"HTTP/1.") {
        return Route::BadRequest;
    }
    let body = match method {
        b"GET" => true,
        b"HEAD" => false,
        _ => return Route::MethodNotAllowed,
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path == b"/metrics" {
        Route::Metrics { body }
    } else {
        Route::NotFound
    }
}

/// Reads the request head: up to the blank line that ends it, [`MAX_HEAD`] bytes at most.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Route> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Route::BadRequest);
        }
        head.extend_from_slice(&chunk[..n]);
        let ended =
            head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n");
        if ended {
            return Ok(route(&head));
        }
        if head.len() > MAX_HEAD {
            return Ok(Route::TooLarge);
        }
    }
}

/// Answers the one request of `stream`, then closes it.
async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    handle: &PrometheusHandle,
) -> io::Result<()> {
    let route = read_head(&mut stream).await?;
    let (status, body, send_body, extra) = match route {
        Route::Metrics { body } => {
            handle.run_upkeep();
            ("200 OK", handle.render(), body, "")
        }
        Route::NotFound => (
            "404 Not Found",
            "metrics are at /metrics\n".to_owned(),
            true,
            "",
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "GET or HEAD /metrics\n".to_owned(),
            true,
            "Allow: GET, HEAD\r\n",
        ),
        Route::BadRequest => ("400 Bad Request", "bad request\n".to_owned(), true, ""),
        Route::TooLarge => (
            "431 Request Header Fields Too Large",
            "request head too large\n".to_owned(),
            true,
            "",
        ),
    };
    let content_type = match route {
        Route::Metrics { .. } => "text/plain; version=0.0.4; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_metrics_are_served() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { body: true }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { body: true }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { body: false }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\r\n\r\n"), Route::BadRequest);
    }

    async fn exchange(request: &[u8]) -> String {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(names::REQUESTS, "command" => "WRITE", "outcome" => "ok")
                .increment(3);
            metrics::histogram!(names::REQUEST_DURATION, "command" => "WRITE").record(0.002);
        });
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = tokio::spawn(async move { answer(server, &handle).await });
        client.write_all(request).await.unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        let _ = serving.await.unwrap();
        reply
    }

    #[tokio::test]
    async fn a_scrape_gets_the_text_format_with_histogram_buckets() {
        let reply = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(
            reply.contains("Content-Type: text/plain; version=0.0.4"),
            "{reply}"
        );
        assert!(
            reply.contains("ditto_requests_total{command=\"WRITE\",outcome=\"ok\"} 3"),
            "{reply}"
        );
        assert!(
            reply.contains(
                "ditto_request_duration_seconds_bucket{command=\"WRITE\",le=\"0.0025\"} 1"
            ),
            "{reply}"
        );
        assert!(
            reply.contains("ditto_request_duration_seconds_count{command=\"WRITE\"} 1"),
            "{reply}"
        );
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
    }

    #[tokio::test]
    async fn other_requests_get_an_error_status() {
        let reply = exchange(b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
        assert!(reply.contains("Allow: GET, HEAD\r\n"), "{reply}");
        let reply = exchange(b"GET /other HTTP/1.1\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 404 "), "{reply}");
        let reply = exchange(b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            reply.starts_with("HTTP/1.1 200 ") && reply.ends_with("\r\n\r\n"),
            "{reply}"
        );
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'x', MAX_HEAD + 10));
        let reply = exchange(&huge).await;
        assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    }
}
