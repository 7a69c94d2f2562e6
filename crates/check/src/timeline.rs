//! A self-contained HTML timeline of a history, to see a violation rather than read about it.
//!
//! The page is one file with inline CSS and inline SVG, so it can be attached to a bug report
//! and opened offline. Each client gets a horizontal lane; each operation is a bar from
//! invocation to return, coloured by kind and outcome, with its details in a tooltip. The
//! operations of a violation are outlined in red under the verdict's explanation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::history::{History, IndexedOp, OpKind, Outcome, ms};
use crate::{linearizable, seqcst};

/// How many operations [`render_html`] draws at most: beyond a few thousand bars a browser
/// slows down and nobody can read them anyway.
pub const DEFAULT_MAX_OPS: usize = 2000;

/// What to point out on the timeline: usually built from a verdict with `From`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Highlight {
    /// Positions in the history of the operations to outline in red.
    pub ops: Vec<usize>,
    /// Text printed above the timeline (the verdict); empty for none.
    pub explanation: String,
    /// True if the explanation reports a violation (it is then shown as an error).
    pub violation: bool,
}

impl From<&seqcst::Verdict> for Highlight {
    fn from(verdict: &seqcst::Verdict) -> Self {
        Self {
            ops: verdict.violation().map(|v| v.ops()).unwrap_or_default(),
            explanation: verdict.to_string(),
            violation: !verdict.is_ok(),
        }
    }
}

impl From<&linearizable::Verdict> for Highlight {
    fn from(verdict: &linearizable::Verdict) -> Self {
        Self {
            ops: verdict.violation().map(|v| v.ops()).unwrap_or_default(),
            explanation: verdict.to_string(),
            violation: verdict.violation().is_some(),
        }
    }
}

/// Renders `history` as a standalone HTML page, drawing at most [`DEFAULT_MAX_OPS`] operations.
pub fn render_html(history: &History, highlight: &Highlight, title: &str) -> String {
    render_html_capped(history, highlight, title, DEFAULT_MAX_OPS)
}

/// Like [`render_html`], drawing at most `max_ops` operations (chosen around the highlighted
/// ones when there are any, else the earliest), and saying so on the page.
pub fn render_html_capped(
    history: &History,
    highlight: &Highlight,
    title: &str,
    max_ops: usize,
) -> String {
    let highlighted: BTreeSet<usize> = highlight
        .ops
        .iter()
        .copied()
        .filter(|&i| i < history.len())
        .collect();
    let (drawn, note) = choose_ops(history, &highlighted, max_ops);
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(page, "<title>{}</title>", escape(title));
    page.push_str(STYLE);
    page.push_str("</head>\n<body>\n");
    let _ = writeln!(page, "<h1>{}</h1>", escape(title));
    if !highlight.explanation.is_empty() {
        let class = if highlight.violation {
            "verdict bad"
        } else {
            "verdict good"
        };
        let _ = writeln!(
            page,
            "<p class=\"{class}\">{}</p>",
            escape(&highlight.explanation)
        );
    }
    if !highlighted.is_empty() {
        page.push_str("<ul class=\"involved\">\n");
        for &i in &highlighted {
            let _ = writeln!(
                page,
                "<li>{}</li>",
                escape(&IndexedOp::new(history, i).to_string())
            );
        }
        page.push_str("</ul>\n");
    }
    let _ = writeln!(page, "<p class=\"note\">{}</p>", escape(&note));
    page.push_str(LEGEND);
    page.push_str(&svg(history, &drawn, &highlighted));
    page.push_str("</body>\n</html>\n");
    page
}

/// The operations to draw, in invocation order, and a sentence saying which they are.
fn choose_ops(
    history: &History,
    highlighted: &BTreeSet<usize>,
    max_ops: usize,
) -> (Vec<usize>, String) {
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
    let total = order.len();
    if total <= max_ops {
        return (order, format!("All {total} operations are shown."));
    }
    let positions: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, i)| highlighted.contains(i))
        .map(|(pos, _)| pos)
        .collect();
    let keep: Vec<usize> = match (positions.first(), positions.last()) {
        (Some(&first), Some(&last)) if last - first < max_ops => {
            let spare = max_ops - (last - first + 1);
            let start = first.saturating_sub(spare / 2).min(total - max_ops);
            order[start..start + max_ops].to_vec()
        }
        (Some(_), Some(_)) if positions.len() >= max_ops => {
            positions[..max_ops].iter().map(|&pos| order[pos]).collect()
        }
        (Some(_), Some(_)) => {
            let radius = max_ops.saturating_sub(positions.len()) / (2 * positions.len());
            let mut window = BTreeSet::new();
            for &pos in &positions {
                window.extend(pos.saturating_sub(radius)..=(pos + radius).min(total - 1));
            }
            window.into_iter().map(|pos| order[pos]).collect()
        }
        _ => order[..max_ops].to_vec(),
    };
    let how = if positions.is_empty() {
        "the earliest ones"
    } else {
        "those around the highlighted ones"
    };
    let note = format!(
        "Showing {} of {total} operations ({how}); the rest are not drawn.",
        keep.len()
    );
    (keep, note)
}

const LEFT: f64 = 110.0;
const PLOT_WIDTH: f64 = 1100.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 34.0;
const LANE: f64 = 26.0;
const BAR: f64 = 16.0;
/// Approximate width of one label character at the bar font size, to skip labels that do not fit.
const CHAR_WIDTH: f64 = 6.5;

fn svg(history: &History, drawn: &[usize], highlighted: &BTreeSet<usize>) -> String {
    let lanes: BTreeMap<u64, usize> = drawn
        .iter()
        .map(|&i| history.ops[i].client)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(lane, client)| (client, lane))
        .collect();
    let start = drawn
        .iter()
        .map(|&i| history.ops[i].invoke_ns)
        .min()
        .unwrap_or(0);
    let end = drawn
        .iter()
        .map(|&i| history.ops[i].end_ns())
        .max()
        .unwrap_or(0)
        .max(start + 1);
    let x = |t: u64| LEFT + (t - start) as f64 / (end - start) as f64 * PLOT_WIDTH;
    let height = TOP + lanes.len() as f64 * LANE + 10.0;
    let width = LEFT + PLOT_WIDTH + RIGHT;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">"
    );
    for (&client, &lane) in &lanes {
        let y = TOP + lane as f64 * LANE;
        let shade = if lane % 2 == 0 {
            "lane even"
        } else {
            "lane odd"
        };
        let _ = writeln!(
            out,
            "<rect class=\"{shade}\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{LANE}\"/>\
             <text class=\"client\" x=\"6\" y=\"{}\">client {client}</text>",
            y + LANE / 2.0 + 4.0
        );
    }
    let step = tick_step(end - start);
    let mut tick = start.div_ceil(step) * step;
    while tick <= end {
        let tx = x(tick);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{tx:.1}\" y1=\"{}\" x2=\"{tx:.1}\" y2=\"{}\"/>\
             <text class=\"tick\" x=\"{tx:.1}\" y=\"{}\">{} ms</text>",
            TOP - 6.0,
            height - 10.0,
            TOP - 10.0,
            ms(tick)
        );
        tick += step;
    }
    for &i in drawn {
        let op = &history.ops[i];
        let y = TOP + lanes[&op.client] as f64 * LANE + (LANE - BAR) / 2.0;
        let x1 = x(op.invoke_ns);
        let x2 = match op.outcome {
            Outcome::Unknown => x(end),
            _ => x(op.end_ns()),
        };
        let w = (x2 - x1).max(2.0);
        let class = match (op.outcome, op.kind) {
            (Outcome::Ok, OpKind::Write) => "op write",
            (Outcome::Ok, OpKind::Read) => "op read",
            (Outcome::Fail, _) => "op fail",
            (Outcome::Unknown, _) => "op unknown",
        };
        let hl = if highlighted.contains(&i) { " hl" } else { "" };
        let label = match (op.kind, op.value, op.outcome) {
            (OpKind::Write, Some(v), _) => format!("W {v}"),
            (OpKind::Read, Some(v), Outcome::Ok) => format!("R {v}"),
            (OpKind::Read, ..) => "R".to_string(),
            (OpKind::Write, None, _) => "W".to_string(),
        };
        let _ = write!(
            out,
            "<g data-op=\"{i}\"><title>{}</title><rect class=\"{class}{hl}\" x=\"{x1:.1}\" y=\"{y:.1}\" \
             width=\"{w:.1}\" height=\"{BAR}\" rx=\"2\"/>",
            escape(&IndexedOp::new(history, i).to_string())
        );
        if w >= CHAR_WIDTH * label.len() as f64 + 4.0 {
            let _ = write!(
                out,
                "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\">{label}</text>",
                x1 + 3.0,
                y + BAR - 4.0
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

/// A round tick spacing (1, 2 or 5 times a power of ten nanoseconds) giving about eight ticks.
fn tick_step(span: u64) -> u64 {
    let raw = (span / 8).max(1);
    let mut magnitude = 1u64;
    while magnitude <= raw / 10 {
        magnitude *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10 * magnitude)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
.verdict { padding: .6em .8em; border-radius: 4px; max-width: 75em; }
.verdict.bad { background: #fde8e8; border: 1px solid #d33; }
.verdict.good { background: #e8f6e8; border: 1px solid #3a3; }
.involved { font-family: ui-monospace, monospace; font-size: .85em; }
.note { color: #555; font-size: .9em; }
.legend span { display: inline-block; margin-right: 1.2em; font-size: .9em; }
.legend i { display: inline-block; width: 1.6em; height: .9em; margin-right: .3em; vertical-align: middle; border-radius: 2px; }
svg { font-family: ui-monospace, monospace; display: block; margin-top: .5em; }
.lane.even { fill: #fafafa; } .lane.odd { fill: #f0f0f0; }
.client { font-size: 12px; fill: #333; }
.grid { stroke: #ccc; stroke-width: 1; }
.tick { font-size: 10px; fill: #666; text-anchor: middle; }
.op { stroke: #444; stroke-width: .5; }
.op:hover { stroke: #000; stroke-width: 2; }
.write { fill: #5b8def; } .read { fill: #4caf6a; } .fail { fill: #b0b0b0; }
.unknown { fill: #f0a030; fill-opacity: .45; stroke-dasharray: 4 2; }
.hl { stroke: #e00000; stroke-width: 3; }
.label { font-size: 11px; fill: #000; pointer-events: none; }
</style>
";

const LEGEND: &str = "<p class=\"legend\">\
<span><i style=\"background:#5b8def\"></i>write, ok</span>\
<span><i style=\"background:#4caf6a\"></i>read, ok</span>\
<span><i style=\"background:#b0b0b0\"></i>failed (not applied)</span>\
<span><i style=\"background:#f0a030;opacity:.6\"></i>unknown (may take effect until the end)</span>\
<span><i style=\"border:3px solid #e00000\"></i>involved in the violation</span>\
</p>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(8), 1);
        assert_eq!(tick_step(80), 10);
        assert_eq!(tick_step(1_000_000), 200_000);
        assert_eq!(tick_step(30_000_000), 5_000_000);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
