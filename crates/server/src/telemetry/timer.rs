//! Matching replies to requests, to time them.
//!
//! The core answers the requests of a client connection in the order they arrived (see
//! `ditto_core::session`), one reply each, so the driver needs no request ids: the first reply
//! sent on a connection answers its oldest unanswered request. A replication stream breaks that
//! rule (its lines are not answered one for one), so a connection the core declares a stream is
//! no longer timed, and whatever was queued for it is dropped.

use std::collections::{HashMap, VecDeque};

use ditto_core::ConnId;
use tokio::time::Instant;

/// A request waiting for its reply: its command label and when it reached the driver.
pub type Pending = (&'static str, Instant);

#[derive(Debug)]
enum Tracked {
    Client(VecDeque<Pending>),
    Stream,
}

/// The unanswered requests of every client connection. See the module documentation.
#[derive(Debug, Default)]
pub struct RequestTimer {
    conns: HashMap<ConnId, Tracked>,
    clients: usize,
}

impl RequestTimer {
    /// A connection was accepted: a client until the core says otherwise.
    pub fn opened(&mut self, conn: ConnId) {
        if self
            .conns
            .insert(conn, Tracked::Client(VecDeque::new()))
            .is_none()
        {
            self.clients += 1;
        }
    }

    /// A request arrived on `conn`. Ignored unless `conn` is an accepted client connection:
    /// lines on a connection this node opened are answers to it, not requests.
    pub fn request(&mut self, conn: ConnId, command: &'static str, at: Instant) {
        if let Some(Tracked::Client(queue)) = self.conns.get_mut(&conn) {
            queue.push_back((command, at));
        }
    }

    /// A reply leaves on `conn`: the request it answers, if `conn` is a client connection with
    /// one unanswered.
    pub fn reply(&mut self, conn: ConnId) -> Option<Pending> {
        match self.conns.get_mut(&conn) {
            Some(Tracked::Client(queue)) => queue.pop_front(),
            _ => None,
        }
    }

    /// The core declared `conn` a replication stream: it is no longer timed or counted.
    pub fn stream(&mut self, conn: ConnId) {
        if let Some(tracked) = self.conns.get_mut(&conn) {
            if matches!(tracked, Tracked::Client(_)) {
                self.clients -= 1;
            }
            *tracked = Tracked::Stream;
        }
    }

    /// `conn` is closed (or being closed): its unanswered requests never will be.
    pub fn closed(&mut self, conn: ConnId) {
        if let Some(Tracked::Client(_)) = self.conns.remove(&conn) {
            self.clients -= 1;
        }
    }

    /// Open client connections, replication streams left out.
    pub fn clients(&self) -> usize {
        self.clients
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn replies_answer_the_requests_of_their_connection_in_order() {
        let t0 = Instant::now();
        let (a, b) = (ConnId::Inbound(1), ConnId::Inbound(2));
        let mut timer = RequestTimer::default();
        timer.opened(a);
        timer.opened(b);
        timer.request(a, "WRITE", at(t0, 1));
        timer.request(b, "READ", at(t0, 2));
        timer.request(a, "READ", at(t0, 3));
        timer.request(a, "STATUS", at(t0, 4));
        assert_eq!(timer.reply(b), Some(("READ", at(t0, 2))));
        assert_eq!(timer.reply(a), Some(("WRITE", at(t0, 1))));
        assert_eq!(timer.reply(a), Some(("READ", at(t0, 3))));
        assert_eq!(timer.reply(a), Some(("STATUS", at(t0, 4))));
        assert_eq!(
            timer.reply(a),
            None,
            "a reply with nothing asked is not timed"
        );
        assert_eq!(timer.reply(b), None);
        assert_eq!(timer.clients(), 2);
    }

    #[test]
    fn streams_and_connections_of_our_own_are_not_timed() {
        let t0 = Instant::now();
        let (peer, client, ours) = (ConnId::Inbound(1), ConnId::Inbound(2), ConnId::Outbound(1));
        let mut timer = RequestTimer::default();
        timer.opened(peer);
        timer.opened(client);
        // A peer's hello arrives as the first line of an accepted connection, and more lines
        // may follow before the core declares the stream.
        timer.request(peer, "PEER", t0);
        timer.request(peer, "other", t0);
        timer.stream(peer);
        timer.request(peer, "other", t0);
        assert_eq!(timer.reply(peer), None);
        assert_eq!(timer.clients(), 1, "a stream is not a client connection");
        timer.request(ours, "OTHER", t0);
        assert_eq!(
            timer.reply(ours),
            None,
            "answers to this node are not requests"
        );
        timer.request(client, "READ", t0);
        assert_eq!(timer.reply(client), Some(("READ", t0)));
    }

    #[test]
    fn closing_forgets_the_unanswered_and_counts_once() {
        let t0 = Instant::now();
        let (a, b) = (ConnId::Inbound(1), ConnId::Inbound(2));
        let mut timer = RequestTimer::default();
        timer.opened(a);
        timer.opened(b);
        timer.request(a, "WRITE", t0);
        timer.closed(a);
        // The core's `Close` and the connection task's report both arrive.
        timer.closed(a);
        assert_eq!(timer.reply(a), None);
        assert_eq!(timer.clients(), 1);
        timer.stream(b);
        timer.closed(b);
        assert_eq!(
            timer.clients(),
            0,
            "a stream closing is not a client leaving"
        );
    }
}
