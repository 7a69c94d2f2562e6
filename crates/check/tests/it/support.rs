//! Small helpers shared by the tests.

use ditto_check::{History, Op, linearizable, seqcst};

pub fn w(client: u64, value: i64, invoke_ns: u64, return_ns: u64) -> Op {
    Op::write(client, value, invoke_ns, return_ns)
}

pub fn r(client: u64, value: i64, invoke_ns: u64, return_ns: u64) -> Op {
    Op::read(client, value, invoke_ns, return_ns)
}

pub fn sc(ops: Vec<Op>) -> seqcst::Verdict {
    seqcst::check(&History::new(ops)).expect("valid history")
}

pub fn lin(ops: Vec<Op>) -> linearizable::Verdict {
    linearizable::check(
        &History::new(ops),
        |_| true,
        &linearizable::Config::default(),
    )
    .expect("valid history")
}

/// The same check by the search alone, to compare the algorithms.
pub fn lin_search(ops: Vec<Op>) -> linearizable::Verdict {
    linearizable::search(
        &History::new(ops),
        |_| true,
        &linearizable::Config::default(),
    )
    .expect("valid history")
}

/// SplitMix64: a tiny deterministic generator, so that seeded simulations replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), up to a negligible bias.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }
}
