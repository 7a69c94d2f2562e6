//! A self-contained HTML timeline of a whole run, to see what happened rather than read about
//! it.
//!
//! The page is one file with inline CSS, SVG and script, so it can be attached to a bug report
//! and opened offline. From the top:
//!
//! - the verdict, and the operations of a violation in words;
//! - throughput and latency over the whole run (drawn here as SVG, see `plots`), with the
//!   faults shaded, as Jepsen's rate and latency plots do;
//! - one lane per client with its operations as bars from invocation to return, coloured by
//!   kind and outcome, faults shaded across the lanes and marked on the lanes of the servers
//!   they hit. The page's script draws the lanes on a canvas from every operation of the run,
//!   encoded compactly (see `data`); dragging across the plots or the lanes zooms in, buttons
//!   zoom out and pan. Operations too short to draw at the current zoom are drawn as the busy
//!   stretches they make up, bar labels are cut to fit or left out, and time labels are thinned
//!   so that none overlap.
//!
//! On a violation the page opens zoomed to the operations it names, outlined in red. A million
//! operations make a page of 7 to 12 MB (six to twelve characters an operation, depending on
//! how far apart a lane's written values are and how recent the writes reads return).

mod data;
mod plots;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::history::{History, IndexedOp};
use crate::{linearizable, seqcst};

/// Left margin of the plots and lanes (lane labels, axis labels), in pixels.
const LEFT: f64 = 150.0;
/// Width of the time axis, the same for the plots and the lanes.
const PLOT_WIDTH: f64 = 1150.0;
/// Right margin, room for half the last time label.
const RIGHT: f64 = 40.0;

/// What to point out on the timeline: usually built from a verdict with `From`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Highlight {
    /// Positions in the history of the operations to outline in red.
    pub ops: Vec<usize>,
    /// Text printed above the timeline (the verdicts, one a line); empty for none.
    pub explanation: String,
    /// True if the explanation reports a violation (it is then shown as an error).
    pub violation: bool,
    /// True if it reports no violation but a check that could not decide (shown as a warning).
    pub undecided: bool,
}

impl From<&seqcst::Verdict> for Highlight {
    fn from(verdict: &seqcst::Verdict) -> Self {
        Self {
            ops: verdict.violation().map(|v| v.ops()).unwrap_or_default(),
            explanation: verdict.to_string(),
            violation: verdict.violation().is_some(),
            undecided: verdict.is_undecided(),
        }
    }
}

impl From<&linearizable::Verdict> for Highlight {
    fn from(verdict: &linearizable::Verdict) -> Self {
        Self {
            ops: verdict.violation().map(|v| v.ops()).unwrap_or_default(),
            explanation: verdict.to_string(),
            violation: verdict.violation().is_some(),
            undecided: verdict.is_undecided(),
        }
    }
}

/// A fault injected during the run, to shade on the plots and lanes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    /// When it began, in nanoseconds on the history's clock.
    pub start_ns: u64,
    /// When it was healed.
    pub end_ns: u64,
    /// What it was, e.g. `pause :7001 (SIGSTOP), resume`; the first word names its kind.
    pub what: String,
    /// The servers it hit; the lanes of their clients are marked.
    pub servers: Vec<u16>,
}

impl Fault {
    /// The first word of [`Fault::what`]: `kill`, `pause`, `partition`...
    fn kind(&self) -> &str {
        self.what.split_whitespace().next().unwrap_or("fault")
    }
}

/// Renders `history` as a standalone HTML page.
pub fn render_html(history: &History, highlight: &Highlight, title: &str) -> String {
    render_html_with_faults(history, highlight, title, &[])
}

/// Like [`render_html`], with the faults of the run shaded on the plots and lanes.
pub fn render_html_with_faults(
    history: &History,
    highlight: &Highlight,
    title: &str,
    faults: &[Fault],
) -> String {
    let highlighted: BTreeSet<usize> = highlight
        .ops
        .iter()
        .copied()
        .filter(|&i| i < history.len())
        .collect();
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(page, "<title>{}</title>", escape(title));
    let _ = writeln!(
        page,
        "<style>\n{}</style>",
        include_str!("timeline/page.css")
    );
    page.push_str("</head>\n<body>\n");
    let _ = writeln!(page, "<h1>{}</h1>", escape(title));
    if !highlight.explanation.is_empty() {
        let class = match (highlight.violation, highlight.undecided) {
            (true, _) => "verdict bad",
            (false, true) => "verdict undecided",
            (false, false) => "verdict good",
        };
        let lines: Vec<String> = highlight.explanation.lines().map(escape).collect();
        let _ = writeln!(page, "<p class=\"{class}\">{}</p>", lines.join("<br>"));
    }
    if !highlighted.is_empty() {
        page.push_str("<ul class=\"involved\">\n");
        for &i in &highlighted {
            let _ = writeln!(
                page,
                "<li><a href=\"#lanes\" data-op=\"{i}\">{}</a></li>",
                escape(&IndexedOp::new(history, i).to_string())
            );
        }
        page.push_str("</ul>\n");
    }
    if history.is_empty() {
        page.push_str("<p class=\"note\">The history has no operations.</p>\n</body>\n</html>\n");
        return page;
    }
    let encoded = data::encode(history);
    let start = history
        .ops
        .iter()
        .map(|op| op.invoke_ns)
        .chain(faults.iter().map(|f| f.start_ns))
        .min()
        .unwrap_or(0);
    let end = history
        .ops
        .iter()
        .map(|op| op.end_ns())
        .chain(faults.iter().map(|f| f.end_ns))
        .max()
        .unwrap_or(0)
        .max(start + 1);
    let span = plots::Span { start, end };
    let _ = writeln!(
        page,
        "<p class=\"note\">All {} operations of {} clients, {} to {}. Drag across the plots or the \
         lanes to zoom in; hover over an operation for its details.</p>",
        history.len(),
        encoded.lanes.len(),
        plots::duration(start),
        plots::duration(end)
    );
    page.push_str(&legend(!highlighted.is_empty()));
    page.push_str(&plots::plots(history, span, faults));
    page.push_str(CONTROLS);
    page.push_str(
        "<div id=\"lanes-box\"><canvas id=\"lanes\"></canvas><div id=\"drag\"></div>\
         <div id=\"tip\"></div></div>\n<noscript><p class=\"note\">The lanes need JavaScript; the \
         plots above do not.</p></noscript>\n",
    );
    let _ = writeln!(
        page,
        "<script id=\"meta\" type=\"application/json\">{}</script>",
        meta(history, &encoded, &highlighted, faults, span).replace("</", "<\\/")
    );
    let _ = writeln!(
        page,
        "<script id=\"ops\" type=\"text/plain\">{}</script>",
        encoded.text
    );
    let _ = writeln!(
        page,
        "<script>\n{}</script>",
        include_str!("timeline/page.js")
    );
    page.push_str("</body>\n</html>\n");
    page
}

/// The page's description of the run, as JSON: everything but the operations themselves.
fn meta(
    history: &History,
    encoded: &data::Encoded,
    highlighted: &BTreeSet<usize>,
    faults: &[Fault],
    span: plots::Span,
) -> String {
    let mut position = vec![0; history.len()];
    for (p, &i) in encoded.order.iter().enumerate() {
        position[i] = p;
    }
    let highlight: Vec<usize> = highlighted.iter().map(|&i| position[i]).collect();
    let window = zoom_window(history, highlighted, span);
    let faults_json: Vec<String> = faults
        .iter()
        .map(|f| {
            format!(
                "{{\"s\":{},\"e\":{},\"what\":{},\"kind\":{},\"servers\":{:?}}}",
                data::us(f.start_ns),
                data::us(f.end_ns),
                json_string(&f.what),
                json_string(f.kind()),
                f.servers
            )
        })
        .collect();
    let literals: Vec<String> = encoded.literals.iter().map(|l| json_string(l)).collect();
    format!(
        "{{\"n\":{},\"left\":{LEFT},\"width\":{PLOT_WIDTH},\"right\":{RIGHT},\
         \"start\":{},\"end\":{},\"window\":[{},{}],\"lanes\":{},\"literals\":[{}],\
         \"permuted\":{},\"servers\":{},\"faults\":[{}],\"highlight\":{:?},\"initial\":{}}}",
        history.len(),
        data::us(span.start),
        data::us(span.end).max(data::us(span.start) + 1),
        data::us(window.0),
        data::us(window.1),
        data::lanes_json(&encoded.lanes),
        literals.join(","),
        encoded.permuted,
        encoded
            .servers
            .as_ref()
            .map_or("null".to_owned(), |s| format!("{s:?}")),
        faults_json.join(","),
        highlight,
        json_string(&history.initial.to_string()),
    )
}

/// Where the lanes open: around the highlighted operations with some room on either side, or
/// the whole run.
fn zoom_window(history: &History, highlighted: &BTreeSet<usize>, span: plots::Span) -> (u64, u64) {
    let ops = || highlighted.iter().map(|&i| &history.ops[i]);
    let (Some(first), Some(last)) = (
        ops().map(|op| op.invoke_ns).min(),
        ops().map(|op| op.end_ns()).max(),
    ) else {
        return (span.start, span.end);
    };
    let pad = ((last - first) / 2).max(200_000);
    (
        first.saturating_sub(pad).max(span.start),
        (last + pad).min(span.end),
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

/// What the colours mean.
fn legend(violation: bool) -> String {
    let mut out = String::from(
        "<p class=\"legend\">\
         <span><i class=\"k-write\"></i>write, ok</span>\
         <span><i class=\"k-read\"></i>read, ok</span>\
         <span><i class=\"k-fail\"></i>failed (not applied)</span>\
         <span><i class=\"k-unknown\"></i>unknown (may take effect until the end: dashed \
         line)</span>",
    );
    if violation {
        out.push_str("<span><i class=\"k-hl\"></i>involved in the violation</span>");
    }
    out.push_str(
        "<span><i class=\"k-fault\"></i>fault (marked on the lanes of the servers it \
         hit)</span><br><span class=\"series\"><b class=\"c-ok\">━</b> ok \
         <b class=\"c-fail\">━</b> failed <b class=\"c-unknown\">━</b> unknown \
         <b class=\"c-p50\">━</b> p50 <b class=\"c-p99\">━</b> p99</span>\
         <span class=\"note\">Operations too short to draw at the zoom shown are drawn as the \
         stretches they keep busy: writes in the upper half, reads in the lower, a strip below \
         where some failed or were unknown.</span></p>\n",
    );
    out
}

const CONTROLS: &str = "<p id=\"controls\">\
<button id=\"whole\" type=\"button\">whole run</button> \
<button id=\"out\" type=\"button\">zoom out</button> \
<button id=\"left\" type=\"button\">&larr;</button> \
<button id=\"right\" type=\"button\">&rarr;</button> \
<button id=\"violation\" type=\"button\" hidden>the violation</button> \
<span id=\"readout\"></span></p>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
