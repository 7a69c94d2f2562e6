//! One task per connection: reads requests (lines or RESP) for the driver, writes the replies
//! the driver sends back.

use bytes::Bytes;
use ditto_core::ConnId;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::codec::{Request, ServerCodec};

/// What a connection task tells the driver.
#[derive(Debug)]
pub(crate) enum Event {
    Line(ConnId, Bytes),
    TooLong(ConnId),
    Command(ConnId, Vec<Vec<u8>>),
    BadFrame(ConnId, String),
    Closed(ConnId),
}

/// What the driver tells a connection task.
#[derive(Debug)]
pub(crate) enum Cmd {
    Line(String),
    /// Bytes to write as they are (a RESP reply).
    Bytes(Vec<u8>),
    Close,
    /// The connection carries a replication stream: read it whatever is owed.
    Stream,
}

/// Limits of one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    pub max_line: usize,
    /// Longest line of a replication stream (a connection that opened with `PEER:`).
    pub max_stream_line: usize,
    /// How many more lines may be read than written before reading pauses: a client that
    /// pipelines without reading replies cannot make the server queue without bound.
    pub max_in_flight: i64,
}

/// Runs a connection until either side closes it, then reports [`Event::Closed`].
///
/// After the peer half-closes, the replies still owed are written before the socket is closed, so
/// `printf READ | nc` gets its answer.
pub(crate) async fn run<S>(
    stream: S,
    id: ConnId,
    events: mpsc::UnboundedSender<Event>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    limits: ConnLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, writer) = tokio::io::split(stream);
    let codec = ServerCodec::new(limits.max_line, limits.max_stream_line);
    let mut reader = FramedRead::new(reader, codec);
    let mut writer = BufWriter::new(writer);
    // Lines read minus lines written. Requests make it grow and replies shrink it; on a
    // replication stream the two directions balance the same way.
    let mut in_flight: i64 = 0;
    let mut reading = true;
    let mut stream_mode = false;
    loop {
        tokio::select! {
            // A fixed order rather than a random one: runs under a simulated network then
            // depend on nothing but their seed. Reading cannot starve writing, because reading
            // pauses once `max_in_flight` replies are owed.
            biased;
            frame = reader.next(), if reading && (stream_mode || in_flight < limits.max_in_flight) => match frame {
                Some(Ok(Request::Line(line))) => {
                    in_flight += 1;
                    let _ = events.send(Event::Line(id, line));
                }
                Some(Ok(Request::Command(args))) => {
                    in_flight += 1;
                    let _ = events.send(Event::Command(id, args));
                }
                Some(Ok(Request::TooLong)) => {
                    in_flight += 1;
                    reading = false;
                    let _ = events.send(Event::TooLong(id));
                }
                Some(Ok(Request::BadFrame(why))) => {
                    in_flight += 1;
                    reading = false;
                    let _ = events.send(Event::BadFrame(id, why));
                }
                Some(Err(_)) | None => {
                    reading = false;
                    if stream_mode || in_flight <= 0 {
                        break;
                    }
                }
            },
            cmd = cmds.recv() => {
                let mut next = cmd;
                // Write everything already queued, then flush once.
                let ok = loop {
                    let ok = match next {
                        Some(Cmd::Line(line)) => {
                            in_flight -= 1;
                            writer.write_all(line.as_bytes()).await.is_ok()
                                && writer.write_all(b"\n").await.is_ok()
                        }
                        Some(Cmd::Bytes(bytes)) => {
                            in_flight -= 1;
                            writer.write_all(&bytes).await.is_ok()
                        }
                        Some(Cmd::Stream) => {
                            stream_mode = true;
                            true
                        }
                        Some(Cmd::Close) | None => false,
                    };
                    if !ok {
                        break false;
                    }
                    match cmds.try_recv() {
                        Ok(cmd) => next = Some(cmd),
                        Err(_) => break true,
                    }
                };
                let drained = !reading && (stream_mode || in_flight <= 0);
                if writer.flush().await.is_err() || !ok || drained {
                    break;
                }
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    let _ = events.send(Event::Closed(id));
}
