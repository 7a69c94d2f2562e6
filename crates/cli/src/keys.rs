//! Which key a workload's next request goes to: uniform over `0..n`, or Zipf-distributed, where
//! key 0 is the hottest and key `k` is asked for in proportion to `1 / (k + 1)^s`.
//!
//! Real key spaces are skewed, and a skewed load is what exposes hot-key contention, so the
//! bench offers Zipf as YCSB does, with its exponent 0.99 by default. Draws go through the
//! seeded [`Rng`], so a run replays from its seed.

use std::fmt;
use std::str::FromStr;

use crate::rng::Rng;

/// The Zipf exponent `--dist zipf` means: YCSB's, under which about a fifth of the requests of
/// a hundred keys go to the first.
pub const DEFAULT_ZIPF_EXPONENT: f64 = 0.99;

/// How keys are drawn, as `--dist` names it: `uniform`, `zipf` or `zipf:EXPONENT`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    Uniform,
    /// Zipf with this exponent (0 < s ≤ 10).
    Zipf(f64),
}

impl FromStr for Dist {
    type Err = String;

    fn from_str(s: &str) -> Result<Dist, String> {
        let bad = || format!("'{s}' is not a distribution (uniform, zipf or zipf:EXPONENT)");
        match s {
            "uniform" => Ok(Dist::Uniform),
            "zipf" => Ok(Dist::Zipf(DEFAULT_ZIPF_EXPONENT)),
            _ => {
                let exponent: f64 = s
                    .strip_prefix("zipf:")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                // Beyond 10 nearly every draw is key 0; NaN and infinities mean nothing.
                if exponent > 0.0 && exponent <= 10.0 {
                    Ok(Dist::Zipf(exponent))
                } else {
                    Err(format!(
                        "'{s}': the Zipf exponent must be above 0 and at most 10"
                    ))
                }
            }
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Uniform => write!(f, "uniform"),
            Dist::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Draws key numbers in `0..n` by a [`Dist`].
#[derive(Clone, Debug)]
pub struct Keys {
    n: u64,
    zipf: Option<Zipf>,
}

impl Keys {
    /// Keys `0..n` (n ≥ 1). Takes constant time and memory whatever `n` is.
    pub fn new(n: u64, dist: Dist) -> Keys {
        assert!(n >= 1, "at least one key");
        let zipf = match dist {
            Dist::Uniform => None,
            Dist::Zipf(s) => Some(Zipf::new(n, s)),
        };
        Keys { n, zipf }
    }

    /// The next key number.
    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        match &self.zipf {
            None => rng.next_u64() % self.n,
            Some(z) => z.sample(rng) - 1,
        }
    }
}

/// Zipf sampling by rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to
/// generate variates from monotone discrete distributions", 1996), as Apache Commons Math does:
/// exact, constant memory (a table of `n` probabilities would not fit for a billion keys), and
/// about one uniform draw per sample, since almost none are rejected.
///
/// It inverts the integral `H` of the hat `h(x) = x^-s`, which lies above the probabilities
/// of ranks `1..=n`; a draw is kept when it falls under the probability of its rank.
#[derive(Clone, Debug)]
struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    /// Draws this close to their rank are under its probability without evaluating it.
    squeeze: f64,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut z = Zipf {
            n: n as f64,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            squeeze: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.squeeze = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A rank in `1..=n`, rank `k` with probability `k^-s / Σ j^-s`.
    fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            // Uniform in (H(1.5) - 1, H(n + 0.5)].
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.squeeze || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    /// `h(x) = x^-s`.
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// `H(x) = (x^(1-s) - 1) / (1 - s)`, or `ln x` when `s` is 1, computed without the loss of
    /// precision the formula has near `s = 1`.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    /// The inverse of [`Zipf::h_integral`].
    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, also for `x` near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, also for `x` near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(n: u64, dist: Dist, draws: usize, seed: u64) -> Vec<u64> {
        let mut keys = Keys::new(n, dist);
        let mut rng = Rng::new(seed);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            let k = keys.next(&mut rng);
            assert!(k < n, "key {k} out of 0..{n}");
            counts[k as usize] += 1;
        }
        counts
    }

    /// Asserts every key's count is within five standard deviations of what `p` expects.
    fn assert_close(counts: &[u64], p: &[f64], what: &str) {
        let draws: u64 = counts.iter().sum();
        for (k, (&got, &pk)) in counts.iter().zip(p).enumerate() {
            let want = pk * draws as f64;
            let sd = (want * (1.0 - pk)).sqrt();
            assert!(
                (got as f64 - want).abs() <= 5.0 * sd + 1.0,
                "{what}: key {k} drawn {got} times, expected {want:.0} ± {sd:.0}"
            );
        }
    }

    #[test]
    fn zipf_draws_follow_the_exact_probabilities() {
        for s in [0.5, DEFAULT_ZIPF_EXPONENT, 1.0, 1.5, 3.0] {
            for n in [2u64, 10, 100] {
                let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
                let total: f64 = weights.iter().sum();
                let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
                let c = counts(n, Dist::Zipf(s), 200_000, 7);
                assert_close(&c, &p, &format!("zipf:{s} over {n} keys"));
                let hottest = (0..c.len()).max_by_key(|&k| c[k]).unwrap();
                assert_eq!(hottest, 0, "zipf:{s} over {n} keys: {c:?}");
            }
        }
    }

    #[test]
    fn uniform_draws_are_even() {
        let c = counts(50, Dist::Uniform, 100_000, 3);
        assert_close(&c, &[1.0 / 50.0; 50], "uniform over 50 keys");
    }

    #[test]
    fn draws_replay_from_the_seed_and_one_key_is_always_key_0() {
        for dist in [Dist::Uniform, Dist::Zipf(DEFAULT_ZIPF_EXPONENT)] {
            assert_eq!(counts(1, dist, 1000, 1), vec![1000]);
            let draw = |seed| {
                let mut keys = Keys::new(1000, dist);
                let mut rng = Rng::new(seed);
                (0..100).map(|_| keys.next(&mut rng)).collect::<Vec<_>>()
            };
            assert_eq!(draw(5), draw(5), "{dist}");
            assert_ne!(draw(5), draw(6), "{dist}");
        }
    }

    #[test]
    fn a_billion_keys_take_no_table_and_stay_in_range() {
        let n = 1_000_000_000;
        let mut keys = Keys::new(n, Dist::Zipf(DEFAULT_ZIPF_EXPONENT));
        let mut rng = Rng::new(11);
        let draws: Vec<u64> = (0..20_000).map(|_| keys.next(&mut rng)).collect();
        assert!(draws.iter().all(|&k| k < n));
        // Under s = 0.99 key 0 takes 1/H(n) ≈ 4.2% of the draws (about 850), and the tail is long.
        let zeros = draws.iter().filter(|&&k| k == 0).count();
        assert!((600..1400).contains(&zeros), "{zeros} draws of key 0");
        assert!(
            draws.iter().any(|&k| k > 1_000_000),
            "no draw from the tail"
        );
    }

    #[test]
    fn distributions_parse_as_the_command_line_gives_them() {
        assert_eq!("uniform".parse(), Ok(Dist::Uniform));
        assert_eq!("zipf".parse(), Ok(Dist::Zipf(DEFAULT_ZIPF_EXPONENT)));
        assert_eq!("zipf:1.2".parse(), Ok(Dist::Zipf(1.2)));
        for bad in [
            "zipf:0", "zipf:-1", "zipf:nan", "zipf:inf", "zipf:11", "zipf:", "pareto",
        ] {
            assert!(bad.parse::<Dist>().is_err(), "{bad}");
        }
        assert_eq!(Dist::Zipf(0.99).to_string(), "zipf:0.99");
    }
}
