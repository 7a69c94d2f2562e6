//! Per-connection reply ordering.
//!
//! A client may pipeline requests on one connection; the replies must come back in the order the
//! requests were sent, even though a write waits for the backups while a read could be answered at
//! once. More than ordering is at stake: a `READ` pipelined behind the same client's `WRITE` must
//! observe that write (a client reads its own writes), so a read that queues behind a pending
//! write takes its value only when it reaches the head of the queue, after the write completed.

use std::collections::{BTreeMap, VecDeque};

use crate::event::{ConnId, Output};
use crate::wire;

/// One request's place in a connection's reply queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Slot {
    /// The reply is known.
    Done(String),
    /// A `READ`, answered with the replica's value once it reaches the head of the queue.
    Read,
    /// Waiting for the role to [`Sessions::resolve`] token `id`.
    Pending(u64),
    /// Close the connection once every earlier reply is out.
    Close,
}

/// The reply queues of every client connection of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sessions {
    queues: BTreeMap<ConnId, VecDeque<Slot>>,
}

impl Sessions {
    /// Queues a known reply.
    pub fn reply(&mut self, conn: ConnId, line: String, value: i64, out: &mut VecDeque<Output>) {
        self.push(conn, Slot::Done(line), value, out);
    }

    /// Queues a `READ`.
    pub fn read(&mut self, conn: ConnId, value: i64, out: &mut VecDeque<Output>) {
        self.push(conn, Slot::Read, value, out);
    }

    /// Queues a request whose reply the role will give later through [`Sessions::resolve`].
    pub fn pending(&mut self, conn: ConnId, id: u64) {
        self.queues
            .entry(conn)
            .or_default()
            .push_back(Slot::Pending(id));
    }

    /// Queues closing the connection after the replies before it.
    pub fn close(&mut self, conn: ConnId, value: i64, out: &mut VecDeque<Output>) {
        self.push(conn, Slot::Close, value, out);
    }

    /// Answers a line over [`wire::MAX_LINE`] with an error, then closes the connection once the
    /// earlier replies are out: the rest of the stream can no longer be framed.
    pub fn refuse_overlong(&mut self, conn: ConnId, value: i64, out: &mut VecDeque<Output>) {
        let err = wire::err_reply(format!(
            "line too long (limit {} bytes); closing",
            wire::MAX_LINE
        ));
        self.reply(conn, err, value, out);
        self.close(conn, value, out);
    }

    /// Gives pending request `id` of `conn` its reply and sends whatever is now at the head.
    /// Unknown connections (closed meanwhile) and ids are ignored.
    pub fn resolve(
        &mut self,
        conn: ConnId,
        id: u64,
        line: String,
        value: i64,
        out: &mut VecDeque<Output>,
    ) {
        let Some(queue) = self.queues.get_mut(&conn) else {
            return;
        };
        if let Some(slot) = queue.iter_mut().find(|s| **s == Slot::Pending(id)) {
            *slot = Slot::Done(line);
            self.drain(conn, value, out);
        }
    }

    /// Forgets a connection that closed.
    pub fn forget(&mut self, conn: ConnId) {
        self.queues.remove(&conn);
    }

    /// Whether a `READ` of `conn` queued before pending request `id` is still unanswered. A
    /// backup must not forward a write past such a read: once applied, the write would show
    /// through in the read's reply.
    pub fn has_read_before(&self, conn: ConnId, id: u64) -> bool {
        self.queues.get(&conn).is_some_and(|q| {
            q.iter()
                .take_while(|s| **s != Slot::Pending(id))
                .any(|s| *s == Slot::Read)
        })
    }

    /// Whether `conn` has requests still waiting for replies.
    pub fn is_busy(&self, conn: ConnId) -> bool {
        self.queues.get(&conn).is_some_and(|q| !q.is_empty())
    }

    fn push(&mut self, conn: ConnId, slot: Slot, value: i64, out: &mut VecDeque<Output>) {
        self.queues.entry(conn).or_default().push_back(slot);
        self.drain(conn, value, out);
    }

    fn drain(&mut self, conn: ConnId, value: i64, out: &mut VecDeque<Output>) {
        let Some(queue) = self.queues.get_mut(&conn) else {
            return;
        };
        while let Some(slot) = queue.front() {
            match slot {
                Slot::Pending(_) => return,
                Slot::Done(_) | Slot::Read => {
                    let line = match queue.pop_front() {
                        Some(Slot::Done(line)) => line,
                        _ => wire::value_reply(value),
                    };
                    out.push_back(Output::Send { conn, line });
                }
                Slot::Close => {
                    out.push_back(Output::Close { conn });
                    self.queues.remove(&conn);
                    return;
                }
            }
        }
        if queue.is_empty() {
            self.queues.remove(&conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(out: &mut VecDeque<Output>) -> Vec<String> {
        out.drain(..)
            .map(|o| match o {
                Output::Send { line, .. } => line,
                Output::Close { .. } => "<close>".into(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn replies_leave_in_request_order() {
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        s.pending(c, 10);
        s.read(c, 0, &mut out);
        s.reply(c, "ERR:x".into(), 0, &mut out);
        assert!(out.is_empty(), "nothing may overtake the pending write");
        s.resolve(c, 10, "ACK".into(), 5, &mut out);
        assert_eq!(sent(&mut out), ["ACK", "VALUE:5", "ERR:x"]);
        assert!(!s.is_busy(c));
    }

    #[test]
    fn a_read_behind_a_write_sees_the_value_at_its_turn() {
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        s.pending(c, 1);
        s.read(c, 0, &mut out);
        s.resolve(c, 1, "ACK".into(), 9, &mut out);
        assert_eq!(sent(&mut out), ["ACK", "VALUE:9"]);
    }

    #[test]
    fn close_waits_for_earlier_replies_and_unknown_ids_are_ignored() {
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        s.pending(c, 1);
        s.close(c, 0, &mut out);
        s.resolve(c, 2, "ACK".into(), 0, &mut out);
        assert!(out.is_empty());
        s.resolve(c, 1, "ACK".into(), 0, &mut out);
        assert_eq!(sent(&mut out), ["ACK", "<close>"]);
        s.resolve(ConnId::Inbound(7), 1, "ACK".into(), 0, &mut out);
        assert!(out.is_empty());
    }
}
