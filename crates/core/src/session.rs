//! Per-connection reply ordering.
//!
//! A client may pipeline requests on one connection; the replies must come back in the order the
//! requests were sent, even though a write waits for the backups while a read could be answered at
//! once. More than ordering is at stake: a `READ` pipelined behind the same client's `WRITE` must
//! observe that write (a client reads its own writes), so a read that queues behind a pending
//! write takes its value only when it reaches the head of the queue, after the write completed.

use std::collections::{BTreeMap, VecDeque};

use crate::event::{ConnId, Output};
use crate::keyspace::Query;
use crate::resp::Version;
use crate::wire;

/// A reply in the form its connection speaks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Wire {
    /// A line of the line protocol, without its `\n`.
    Line(String),
    /// An encoded RESP reply.
    Resp(Vec<u8>),
}

impl From<String> for Wire {
    fn from(line: String) -> Wire {
        Wire::Line(line)
    }
}

/// One request's place in a connection's reply queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Slot {
    /// The reply is known.
    Done(Wire),
    /// A `READ` (or `READ:linearizable`), answered by the role's read function once it reaches
    /// the head of the queue.
    Read(ReadKind),
    /// Waiting for the role to [`Sessions::resolve`] token `id`.
    Pending(u64),
    /// A read that may not be answered before the role [`Sessions::release`]s token `id`
    /// (a backup waiting to learn that what it holds is committed); then a plain `Read`.
    Barrier(u64, ReadKind),
    /// Close the connection once every earlier reply is out.
    Close,
}

/// Which read a queued read is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReadKind {
    /// `READ`: whatever the role may serve (at a backup, its own committed value).
    Local,
    /// `READ:linearizable`: only a primary under its lease answers with a value. The role
    /// decides when the read reaches the head of its queue, since the node may have stopped
    /// being the primary while earlier requests of the connection were pending.
    Linearizable,
    /// A RESP read of the keyspace, answered in the connection's protocol version: at a
    /// backup, from its own committed state, as `READ` is.
    Query(Box<Query>, Version),
}

/// How a queued read is answered: the reply line for the replica's state at that moment.
pub type Read<'a> = &'a dyn Fn(&ReadKind) -> Wire;

/// The reply queues of every client connection of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sessions {
    queues: BTreeMap<ConnId, VecDeque<Slot>>,
}

impl Sessions {
    /// Queues a known reply. `read` answers the `READ`s this lets through (see
    /// [`Sessions::read`]).
    pub fn reply(
        &mut self,
        conn: ConnId,
        reply: impl Into<Wire>,
        read: Read<'_>,
        out: &mut VecDeque<Output>,
    ) {
        self.push(conn, Slot::Done(reply.into()), read, out);
    }

    /// Queues a `READ`. It is answered by calling `read` (here, or in a later call that lets it
    /// through) when it reaches the head of its queue: that is when its value must be taken.
    pub fn read(&mut self, conn: ConnId, read: Read<'_>, out: &mut VecDeque<Output>) {
        self.push(conn, Slot::Read(ReadKind::Local), read, out);
    }

    /// Queues a `READ:linearizable`, answered like [`Sessions::read`] with
    /// [`ReadKind::Linearizable`].
    pub fn read_linearizable(&mut self, conn: ConnId, read: Read<'_>, out: &mut VecDeque<Output>) {
        self.push(conn, Slot::Read(ReadKind::Linearizable), read, out);
    }

    /// Queues a read of any kind, answered like [`Sessions::read`].
    pub fn read_kind(
        &mut self,
        conn: ConnId,
        kind: ReadKind,
        read: Read<'_>,
        out: &mut VecDeque<Output>,
    ) {
        self.push(conn, Slot::Read(kind), read, out);
    }

    /// Queues a request whose reply the role will give later through [`Sessions::resolve`].
    pub fn pending(&mut self, conn: ConnId, id: u64) {
        self.queues
            .entry(conn)
            .or_default()
            .push_back(Slot::Pending(id));
    }

    /// Queues a read that waits for [`Sessions::release`] of `id` before it may be answered.
    pub fn read_after(&mut self, conn: ConnId, id: u64, kind: ReadKind) {
        self.queues
            .entry(conn)
            .or_default()
            .push_back(Slot::Barrier(id, kind));
    }

    /// Lets the `READ` queued with [`Sessions::read_after`] as `id` be answered once it reaches
    /// the head of its queue.
    pub fn release(&mut self, conn: ConnId, id: u64, read: Read<'_>, out: &mut VecDeque<Output>) {
        let Some(queue) = self.queues.get_mut(&conn) else {
            return;
        };
        if let Some(slot) = queue
            .iter_mut()
            .find(|s| matches!(s, Slot::Barrier(b, _) if *b == id))
        {
            let Slot::Barrier(_, kind) = std::mem::replace(slot, Slot::Close) else {
                return;
            };
            *slot = Slot::Read(kind);
            self.drain(conn, read, out);
        }
    }

    /// Queues closing the connection after the replies before it.
    pub fn close(&mut self, conn: ConnId, read: Read<'_>, out: &mut VecDeque<Output>) {
        self.push(conn, Slot::Close, read, out);
    }

    /// Answers a line over [`wire::MAX_LINE`] with an error, then closes the connection once the
    /// earlier replies are out: the rest of the stream can no longer be framed.
    pub fn refuse_overlong(&mut self, conn: ConnId, read: Read<'_>, out: &mut VecDeque<Output>) {
        let err = wire::err_reply(format!(
            "line too long (limit {} bytes); closing",
            wire::MAX_LINE
        ));
        self.reply(conn, err, read, out);
        self.close(conn, read, out);
    }

    /// Answers a broken RESP stream with `reply`, then closes the connection once the earlier
    /// replies are out, as Redis does after a protocol error.
    pub fn refuse_frame(
        &mut self,
        conn: ConnId,
        reply: Vec<u8>,
        read: Read<'_>,
        out: &mut VecDeque<Output>,
    ) {
        self.reply(conn, Wire::Resp(reply), read, out);
        self.close(conn, read, out);
    }

    /// Gives pending request `id` of `conn` its reply and sends whatever is now at the head.
    /// Unknown connections (closed meanwhile) and ids are ignored.
    pub fn resolve(
        &mut self,
        conn: ConnId,
        id: u64,
        reply: impl Into<Wire>,
        read: Read<'_>,
        out: &mut VecDeque<Output>,
    ) {
        let Some(queue) = self.queues.get_mut(&conn) else {
            return;
        };
        if let Some(slot) = queue.iter_mut().find(|s| **s == Slot::Pending(id)) {
            *slot = Slot::Done(reply.into());
            self.drain(conn, read, out);
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
                .any(|s| matches!(s, Slot::Read(_) | Slot::Barrier(..)))
        })
    }

    /// Whether `conn` has requests still waiting for replies.
    pub fn is_busy(&self, conn: ConnId) -> bool {
        self.queues.get(&conn).is_some_and(|q| !q.is_empty())
    }

    fn push(&mut self, conn: ConnId, slot: Slot, read: Read<'_>, out: &mut VecDeque<Output>) {
        self.queues.entry(conn).or_default().push_back(slot);
        self.drain(conn, read, out);
    }

    fn drain(&mut self, conn: ConnId, read: Read<'_>, out: &mut VecDeque<Output>) {
        let Some(queue) = self.queues.get_mut(&conn) else {
            return;
        };
        while let Some(slot) = queue.front() {
            match slot {
                Slot::Pending(_) | Slot::Barrier(..) => return,
                Slot::Done(_) | Slot::Read(_) => {
                    let reply = match queue.pop_front() {
                        Some(Slot::Done(reply)) => reply,
                        Some(Slot::Read(kind)) => read(&kind),
                        _ => continue,
                    };
                    out.push_back(match reply {
                        Wire::Line(line) => Output::Send { conn, line },
                        Wire::Resp(bytes) => Output::Write { conn, bytes },
                    });
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
                Output::Write { bytes, .. } => String::from_utf8_lossy(&bytes).into_owned(),
                Output::Close { .. } => "<close>".into(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_queued_linearizable_read_is_judged_when_it_leaves() {
        // Behind a pending write, the read is answered only once the write is resolved, by
        // the role as it is then (it may no longer be the primary).
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        let answer = |kind: &ReadKind| -> Wire {
            match kind {
                ReadKind::Linearizable => "ERR:not the primary".to_owned(),
                _ => wire::value_reply(1),
            }
            .into()
        };
        s.pending(c, 10);
        s.read_linearizable(c, &|_| wire::value_reply(0).into(), &mut out);
        s.read(c, &|_| wire::value_reply(0).into(), &mut out);
        assert!(out.is_empty());
        s.resolve(c, 10, "ACK".to_owned(), &answer, &mut out);
        assert_eq!(sent(&mut out), ["ACK", "ERR:not the primary", "VALUE:1"]);
    }

    #[test]
    fn replies_leave_in_request_order() {
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        s.pending(c, 10);
        s.read(c, &|_| wire::value_reply(0).into(), &mut out);
        s.reply(
            c,
            "ERR:x".to_owned(),
            &|_| wire::value_reply(0).into(),
            &mut out,
        );
        assert!(out.is_empty(), "nothing may overtake the pending write");
        s.resolve(
            c,
            10,
            "ACK".to_owned(),
            &|_| wire::value_reply(5).into(),
            &mut out,
        );
        assert_eq!(sent(&mut out), ["ACK", "VALUE:5", "ERR:x"]);
        assert!(!s.is_busy(c));
    }

    #[test]
    fn a_read_behind_a_write_sees_the_value_at_its_turn() {
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        s.pending(c, 1);
        s.read(c, &|_| wire::value_reply(0).into(), &mut out);
        s.resolve(
            c,
            1,
            "ACK".to_owned(),
            &|_| wire::value_reply(9).into(),
            &mut out,
        );
        assert_eq!(sent(&mut out), ["ACK", "VALUE:9"]);
    }

    #[test]
    fn a_read_behind_a_barrier_waits_and_then_takes_the_value_of_its_turn() {
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        s.read_after(c, 1, ReadKind::Local);
        s.reply(
            c,
            "ACK".to_owned(),
            &|_| wire::value_reply(0).into(),
            &mut out,
        );
        assert!(out.is_empty(), "nothing overtakes the read");
        assert!(s.has_read_before(c, 99));
        s.release(c, 1, &|_| wire::value_reply(4).into(), &mut out);
        assert_eq!(sent(&mut out), ["VALUE:4", "ACK"]);
    }

    #[test]
    fn close_waits_for_earlier_replies_and_unknown_ids_are_ignored() {
        let c = ConnId::Inbound(1);
        let (mut s, mut out) = (Sessions::default(), VecDeque::new());
        s.pending(c, 1);
        s.close(c, &|_| wire::value_reply(0).into(), &mut out);
        s.resolve(
            c,
            2,
            "ACK".to_owned(),
            &|_| wire::value_reply(0).into(),
            &mut out,
        );
        assert!(out.is_empty());
        s.resolve(
            c,
            1,
            "ACK".to_owned(),
            &|_| wire::value_reply(0).into(),
            &mut out,
        );
        assert_eq!(sent(&mut out), ["ACK", "<close>"]);
        s.resolve(
            ConnId::Inbound(7),
            1,
            "ACK".to_owned(),
            &|_| wire::value_reply(0).into(),
            &mut out,
        );
        assert!(out.is_empty());
    }
}
