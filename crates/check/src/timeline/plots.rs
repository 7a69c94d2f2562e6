//! The two plots above the lanes, drawn once for the whole run as inline SVG: throughput (ok,
//! failed and unknown operations per second, by the time they completed) and latency (p50 and
//! p99 of ok operations, on a log scale), in time buckets of a round width, with the faults
//! shaded, as in Jepsen's rate and latency plots.

use std::fmt::Write as _;

use super::{Fault, LEFT, PLOT_WIDTH, RIGHT, escape};
use crate::history::{History, Outcome};

/// Height of each plot's drawing area.
const HEIGHT: f64 = 120.0;
/// Room above a plot (its title and the fault labels) and below it (the time axis).
const TOP: f64 = 32.0;
const BOTTOM: f64 = 22.0;
/// About how many buckets span the run.
const BUCKETS: u64 = 160;
/// The fewest pixels between two time labels (a label is at most about 60 pixels wide).
pub(super) const LABEL_GAP: f64 = 80.0;

/// The time range the plots span, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn x(&self, t: u64) -> f64 {
        let t = t.clamp(self.start, self.end);
        LEFT + (t - self.start) as f64 / (self.end - self.start) as f64 * PLOT_WIDTH
    }
}

/// A round step (1, 2 or 5 times a power of ten) at least `raw`.
pub(super) fn round_step(raw: f64) -> f64 {
    let raw = raw.max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// Time ticks of a span, spaced so that their labels never overlap: positions (ns) and labels.
pub(super) fn time_ticks(span: Span) -> Vec<(u64, String)> {
    let width = (span.end - span.start) as f64;
    let step = round_step(width * LABEL_GAP / PLOT_WIDTH).max(1.0);
    let decimals = (9.0 - step.log10().floor()).clamp(0.0, 9.0) as usize;
    let mut ticks = Vec::new();
    let mut k = (span.start as f64 / step).ceil();
    while k * step <= span.end as f64 {
        let t = (k * step).round() as u64;
        ticks.push((t, seconds(t, decimals)));
        k += 1.0;
    }
    ticks
}

/// `t` in seconds with as many decimals as the tick step needs.
fn seconds(t: u64, decimals: usize) -> String {
    format!("{:.*} s", decimals, t as f64 / 1e9)
}

/// Operations completing in each bucket, and the latencies of the ok ones.
struct Buckets {
    width: u64,
    ok: Vec<u32>,
    fail: Vec<u32>,
    unknown: Vec<u32>,
    latencies: Vec<Vec<u64>>,
}

impl Buckets {
    fn new(history: &History, span: Span) -> Self {
        let width = round_step((span.end - span.start) as f64 / BUCKETS as f64).max(1.0) as u64;
        let n = (span.end - span.start).div_ceil(width).max(1) as usize;
        let mut b = Buckets {
            width,
            ok: vec![0; n],
            fail: vec![0; n],
            unknown: vec![0; n],
            latencies: vec![Vec::new(); n],
        };
        for op in &history.ops {
            let done = op.end_ns();
            let k = ((done.saturating_sub(span.start)) / width) as usize;
            let k = k.min(n - 1);
            match op.outcome {
                Outcome::Ok => {
                    b.ok[k] += 1;
                    b.latencies[k].push(done - op.invoke_ns);
                }
                Outcome::Fail => b.fail[k] += 1,
                Outcome::Unknown => b.unknown[k] += 1,
            }
        }
        b
    }

    fn center(&self, span: Span, k: usize) -> f64 {
        let from = span.start + k as u64 * self.width;
        span.x(from + (span.end.min(from + self.width) - from) / 2)
    }

    /// Operations per second from a count in bucket `k`; the last bucket may be cut short by
    /// the end of the run.
    fn rate(&self, span: Span, k: usize, count: u32) -> f64 {
        let from = span.start + k as u64 * self.width;
        let width = (span.end.min(from + self.width))
            .saturating_sub(from)
            .max(1);
        f64::from(count) * 1e9 / width as f64
    }
}

/// Both plots, each an `<svg>` with the given ids, and their shared fault shading.
pub(super) fn plots(history: &History, span: Span, faults: &[Fault]) -> String {
    let buckets = Buckets::new(history, span);
    let mut out = String::new();
    out.push_str(&throughput(&buckets, span, faults));
    out.push_str(&latency(&buckets, span, faults));
    out
}

fn frame(out: &mut String, id: &str, title: &str, span: Span, faults: &[Fault], labels: bool) {
    let width = LEFT + PLOT_WIDTH + RIGHT;
    let height = TOP + HEIGHT + BOTTOM;
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" class=\"plot\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{title}\">"
    );
    let _ = writeln!(
        out,
        "<text class=\"ptitle\" x=\"{LEFT}\" y=\"14\">{}</text>",
        escape(title)
    );
    let _ = writeln!(
        out,
        "<rect class=\"pbg\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{PLOT_WIDTH}\" height=\"{HEIGHT}\"/>"
    );
    // Fault shading, and (on the first plot) the kind of each fault where there is room.
    let mut free_from = f64::MIN;
    for (k, f) in faults.iter().enumerate() {
        let x1 = span.x(f.start_ns);
        let x2 = span.x(f.end_ns).max(x1 + 1.0);
        let _ = writeln!(
            out,
            "<rect class=\"fault\" data-fault=\"{k}\" x=\"{x1:.1}\" y=\"{TOP}\" width=\"{:.1}\" \
             height=\"{HEIGHT}\"><title>{}</title></rect>",
            x2 - x1,
            escape(&f.what)
        );
        let label = f.kind();
        let label_width = 6.0 * label.chars().count() as f64;
        if labels && x1 >= free_from {
            let _ = writeln!(
                out,
                "<text class=\"flabel\" x=\"{x1:.1}\" y=\"{:.1}\">{}</text>",
                TOP - 2.0,
                escape(label)
            );
            free_from = x1 + label_width + 8.0;
        }
    }
    for (t, label) in time_ticks(span) {
        let x = span.x(t);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\">{label}</text>",
            TOP + HEIGHT,
            TOP + HEIGHT + 14.0
        );
    }
}

fn y_label(out: &mut String, y: f64, text: &str) {
    let _ = writeln!(
        out,
        "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\
         <text class=\"ytick\" x=\"{:.1}\" y=\"{:.1}\">{text}</text>",
        LEFT + PLOT_WIDTH,
        LEFT - 6.0,
        y + 4.0
    );
}

/// A polyline through the given points; `None` breaks it, and a point alone between breaks
/// is drawn as a dot.
fn path(out: &mut String, class: &str, points: impl Iterator<Item = Option<(f64, f64)>>) {
    let points: Vec<Option<(f64, f64)>> = points.collect();
    let mut d = String::new();
    let mut dots = String::new();
    for (k, p) in points.iter().enumerate() {
        let Some((x, y)) = *p else { continue };
        let before = k > 0 && points[k - 1].is_some();
        let after = points.get(k + 1).is_some_and(Option::is_some);
        let _ = write!(d, "{}{x:.1},{y:.1}", if before { 'L' } else { 'M' });
        if !before && !after {
            let _ = write!(
                dots,
                "<circle class=\"{class}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\"/>"
            );
        }
    }
    if !d.is_empty() {
        let _ = writeln!(out, "<path class=\"{class}\" d=\"{d}\"/>{dots}");
    }
}

/// Selection band the page's script moves to show the lanes' window.
fn selection(out: &mut String, id: &str) {
    let _ = writeln!(
        out,
        "<rect id=\"{id}\" class=\"sel\" x=\"{LEFT}\" y=\"{TOP}\" width=\"0\" height=\"{HEIGHT}\"/>"
    );
}

fn throughput(b: &Buckets, span: Span, faults: &[Fault]) -> String {
    let mut out = String::new();
    let most = [&b.ok, &b.fail, &b.unknown]
        .iter()
        .flat_map(|counts| counts.iter().enumerate())
        .map(|(k, &c)| b.rate(span, k, c))
        .fold(0.0, f64::max);
    let step = round_step(most.max(1.0) / 4.0);
    let top = (most / step).ceil().max(1.0) * step;
    let y = |rate: f64| TOP + HEIGHT - rate / top * HEIGHT;
    let title = format!(
        "throughput: operations completed per second, in {} buckets",
        duration(b.width)
    );
    frame(&mut out, "throughput", &title, span, faults, true);
    let mut tick = 0.0;
    while tick <= top + step / 2.0 {
        y_label(&mut out, y(tick), &rate(tick));
        tick += step;
    }
    for (class, counts) in [
        ("s-fail", &b.fail),
        ("s-unknown", &b.unknown),
        ("s-ok", &b.ok),
    ] {
        path(
            &mut out,
            class,
            counts
                .iter()
                .enumerate()
                .map(|(k, &c)| Some((b.center(span, k), y(b.rate(span, k, c))))),
        );
    }
    selection(&mut out, "sel-throughput");
    out.push_str("</svg>\n");
    out
}

fn latency(b: &Buckets, span: Span, faults: &[Fault]) -> String {
    let mut out = String::new();
    let quantiles: Vec<Option<(u64, u64)>> = b
        .latencies
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.sort_unstable();
            let q = |f: f64| l[((l.len() - 1) as f64 * f).round() as usize];
            (!l.is_empty()).then(|| (q(0.5), q(0.99)))
        })
        .collect();
    let lo = quantiles
        .iter()
        .flatten()
        .map(|q| q.0)
        .min()
        .unwrap_or(1)
        .max(1);
    let hi = quantiles
        .iter()
        .flatten()
        .map(|q| q.1)
        .max()
        .unwrap_or(1)
        .max(lo + 1);
    // A little room below and above, so that no line runs along the frame.
    let lo_decade = ((lo as f64).log10() - 0.05).floor();
    let hi_decade = ((hi as f64).log10() + 0.05).ceil().max(lo_decade + 1.0);
    let y = |ns: u64| {
        let v = (ns.max(1) as f64).log10();
        TOP + HEIGHT - (v - lo_decade) / (hi_decade - lo_decade) * HEIGHT
    };
    let title = "latency of ok operations (log scale): p50 and p99 per bucket";
    frame(&mut out, "latency", title, span, faults, false);
    let mut decade = lo_decade;
    while decade <= hi_decade {
        let ns = 10f64.powf(decade) as u64;
        y_label(&mut out, y(ns), &duration(ns));
        decade += 1.0;
    }
    for (class, pick) in [("s-p99", 1), ("s-p50", 0)] {
        path(
            &mut out,
            class,
            quantiles.iter().enumerate().map(|(k, q)| {
                q.map(|(p50, p99)| (b.center(span, k), y(if pick == 0 { p50 } else { p99 })))
            }),
        );
    }
    selection(&mut out, "sel-latency");
    out.push_str("</svg>\n");
    out
}

/// A rate for an axis label: `950/s`, `12k/s`, `1.5k/s`.
fn rate(r: f64) -> String {
    if r >= 1000.0 {
        let k = r / 1000.0;
        if k.fract() == 0.0 {
            format!("{k:.0}k/s")
        } else {
            format!("{k:.1}k/s")
        }
    } else {
        format!("{r:.0}/s")
    }
}

/// A duration for a label: `100 µs`, `1 ms`, `2 s`.
pub(super) fn duration(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => (ns as f64, "ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "µs"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(round_step(8.0), 10.0);
        assert_eq!(round_step(10.0), 10.0);
        assert_eq!(round_step(1.5), 2.0);
        assert_eq!(round_step(30_000_000.0), 50_000_000.0);
    }

    #[test]
    fn time_labels_never_crowd() {
        for (start, end) in [
            (0, 20_000_000_000u64),
            (1_234_567, 1_334_567),
            (0, 7),
            (5, 5_000),
        ] {
            let span = Span { start, end };
            let ticks = time_ticks(span);
            assert!(!ticks.is_empty(), "{start}..{end}");
            for pair in ticks.windows(2) {
                let gap = span.x(pair[1].0) - span.x(pair[0].0);
                assert!(gap >= LABEL_GAP - 0.01, "{pair:?} {gap}");
                assert_ne!(pair[0].1, pair[1].1, "labels differ: {pair:?}");
            }
        }
    }

    #[test]
    fn durations_and_rates_read_well() {
        assert_eq!(duration(100_000), "100 µs");
        assert_eq!(duration(1_500_000), "1.5 ms");
        assert_eq!(duration(2_000_000_000), "2 s");
        assert_eq!(rate(950.0), "950/s");
        assert_eq!(rate(12_000.0), "12k/s");
        assert_eq!(rate(1_500.0), "1.5k/s");
    }
}
