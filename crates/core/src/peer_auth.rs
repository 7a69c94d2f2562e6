//! Authenticating replication streams with a cluster secret, by challenge and response.
//!
//! Every replica message travels on a stream its sender opens with a `PEER:` hello, so it is
//! the receiving side that must know who speaks: a stranger who could open such a stream could
//! vote, acknowledge entries it does not hold, or pose as a primary. With a secret set, the
//! receiver answers the hello with `CHALLENGE:<nonce>`, a value it never uses twice, and reads
//! nothing more until the sender answers `PROOF:<mac>`: HMAC-SHA256 keyed by the secret over
//! the nonce, the group, and both addresses. The secret never crosses the wire, a proof is good
//! for one connection only (the nonce is fresh), and it names the stream it was made for, so it
//! cannot be replayed elsewhere. Only the receiver checks: the sender's own messages come back
//! on streams that the other side opens and this side checks in turn.
//!
//! The wire form is in `docs/protocol.md`; what a secret changes for seed-only peers (they
//! cannot prove anything, so the seed adapters are off) is in `docs/security.md`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::addr::Addr;

/// The first word of the challenge line, and of the proof line.
pub const CHALLENGE: &str = "CHALLENGE:";
pub const PROOF: &str = "PROOF:";

/// A cluster secret: bytes every member is given out of band.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The fewest bytes a secret may have: 128 bits, if it is random.
pub const MIN_SECRET: usize = 16;

impl Secret {
    /// A secret, if it is long enough to be one.
    pub fn new(bytes: Vec<u8>) -> Result<Secret, String> {
        if bytes.len() < MIN_SECRET {
            return Err(format!(
                "the cluster secret has {} bytes; use at least {MIN_SECRET} bytes (e.g. `openssl rand -hex 32`)",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// What binds a proof to one stream.
    fn message(nonce: &str, group: u64, from: &Addr, to: &Addr) -> String {
        format!("ditto-peer-v1\n{group:x}\n{from}\n{to}\n{nonce}")
    }

    /// The proof that the sender of a stream from `from` to `to` of `group` knows the secret,
    /// for the challenge `nonce`.
    pub fn prove(&self, nonce: &str, group: u64, from: &Addr, to: &Addr) -> String {
        let mut mac = self.mac();
        mac.update(Self::message(nonce, group, from, to).as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `proof` is the proof for that stream; compared in constant time.
    pub fn verify(&self, proof: &str, nonce: &str, group: u64, from: &Addr, to: &Addr) -> bool {
        let Some(bytes) = unhex(proof) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(Self::message(nonce, group, from, to).as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }
}

/// Nonces that never repeat: a counter, scrambled from a seed the shell draws at random at
/// start-up, so that a restarted node does not begin the same sequence again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Nonces {
    seed: u64,
    next: u64,
}

impl Nonces {
    pub fn new(seed: u64) -> Nonces {
        Nonces { seed, next: 0 }
    }

    /// The next nonce: 128 bits as hex, the seed's half first, the counter's second (so no two
    /// of one node's nonces are equal whatever the seed).
    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!(
            "{:016x}{:016x}",
            splitmix(self.seed),
            splitmix(self.seed ^ self.next) ^ self.next
        )
    }
}

/// SplitMix64's output function: a bijection of `u64`, so distinct inputs stay distinct.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn a_proof_holds_for_its_stream_only() {
        let s = secret("0123456789abcdef0123");
        let (a, b) = (Addr::local(7000), Addr::local(7001));
        let proof = s.prove("n1", 5, &a, &b);
        assert!(s.verify(&proof, "n1", 5, &a, &b));
        assert!(!s.verify(&proof, "n2", 5, &a, &b), "another challenge");
        assert!(!s.verify(&proof, "n1", 6, &a, &b), "another group");
        assert!(!s.verify(&proof, "n1", 5, &b, &a), "the other direction");
        assert!(
            !s.verify(&proof, "n1", 5, &a, &Addr::local(7002)),
            "another receiver"
        );
        let other = secret("another secret of enough bytes");
        assert!(!other.verify(&proof, "n1", 5, &a, &b), "another secret");
        assert!(!s.verify("zz", "n1", 5, &a, &b));
        assert!(!s.verify("", "n1", 5, &a, &b));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secret::new(b"short".to_vec()).is_err());
        assert!(Secret::new(vec![0; MIN_SECRET]).is_ok());
    }

    #[test]
    fn nonces_do_not_repeat() {
        let mut n = Nonces::new(42);
        let seen: std::collections::BTreeSet<String> = (0..10_000).map(|_| n.fresh()).collect();
        assert_eq!(seen.len(), 10_000);
        assert_ne!(Nonces::new(1).fresh(), Nonces::new(2).fresh());
    }
}
