//! The HTML timeline stands alone, shows the whole run (plots, faults, every operation), and
//! opens on the violation.
//!
//! The lanes are drawn by the page's script from an encoded list of the operations; these tests
//! decode that list independently and hold it to the history, and check the static parts (the
//! plots, fault shading, labels) directly. Set `DITTO_TIMELINE_DIR` to keep the pages to look
//! at.

use std::collections::HashMap;

use ditto_check::timeline::{Fault, Highlight, render_html, render_html_with_faults};
use ditto_check::{History, Op, OpKind, Outcome, linearizable, seqcst};
use serde_json::Value as Json;

use crate::support::{Rng, r, w};

fn classic_cycle() -> History {
    History::new(vec![
        w(1, 5, 0, 1_000_000).at(7001),
        r(1, 3, 2_000_000, 3_000_000).at(7001),
        w(2, 3, 500_000, 1_500_000).at(7002),
        r(2, 5, 2_500_000, 3_500_000).at(7002),
        r(3, 0, 100_000, 200_000).with_outcome(Outcome::Fail),
        w(3, 9, 300_000, 400_000).never_returned(),
    ])
}

fn keep(name: &str, html: &str) {
    if let Ok(dir) = std::env::var("DITTO_TIMELINE_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), html).unwrap();
    }
}

fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.ends_with("</html>\n"));
    for scheme in ["http://", "https://", "//cdn", "src=", "@import", "url("] {
        assert!(!html.contains(scheme), "the page refers to {scheme}");
    }
}

/// The text of the `<script id="...">` element.
fn script<'a>(html: &'a str, id: &str) -> &'a str {
    let open = html
        .find(&format!("<script id=\"{id}\""))
        .unwrap_or_else(|| panic!("no script {id}"));
    let body = &html[open..];
    let body = &body[body.find('>').unwrap() + 1..];
    &body[..body.find("</script>").unwrap()]
}

fn meta(html: &str) -> Json {
    serde_json::from_str(&script(html, "meta").replace("<\\/", "</")).expect("meta is JSON")
}

/// One operation as the page's script sees it.
#[derive(Debug, PartialEq)]
struct Drawn {
    index: usize,
    client: u64,
    invoke_us: u64,
    return_us: Option<u64>,
    kind: OpKind,
    outcome: Outcome,
    value: Option<i64>,
}

/// Decodes the page's operations (the format is in `timeline/data.rs`), independently of the
/// page's own decoder.
fn decode(html: &str) -> Vec<Drawn> {
    let meta = meta(html);
    let text = script(html, "ops").as_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut pos = 0;
    let mut next = || {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let d = alphabet
                .iter()
                .position(|&c| c == text[pos])
                .expect("a digit") as u64;
            pos += 1;
            v |= (d & 31) << shift;
            shift += 5;
            if d & 32 == 0 {
                return v;
            }
        }
    };
    let n = meta["n"].as_u64().unwrap() as usize;
    let permuted = meta["permuted"].as_bool().unwrap();
    let several_servers = !meta["servers"].is_null();
    let lanes = meta["lanes"].as_array().unwrap();
    let literals: Vec<i64> = meta["literals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().parse().unwrap())
        .collect();
    let mut last_write: HashMap<usize, i64> = HashMap::new();
    let mut values: Vec<Option<i64>> = Vec::new();
    let mut ops = Vec::new();
    let mut clock = 0;
    for p in 0..n {
        let lane = next() as usize;
        clock += next();
        let dur = next();
        let c = next();
        let (code, mode) = (c % 6, c / 6);
        let kind = if code >= 3 {
            OpKind::Write
        } else {
            OpKind::Read
        };
        let outcome = [Outcome::Ok, Outcome::Fail, Outcome::Unknown][(code % 3) as usize];
        let value = match mode {
            0 => None,
            1 => {
                let z = next() as i64;
                Some(last_write[&lane] + ((z >> 1) ^ -(z & 1)))
            }
            2 => Some(literals[next() as usize]),
            3 => values[p - next() as usize],
            _ => panic!("mode {mode}"),
        };
        if let (OpKind::Write, Some(v)) = (kind, value) {
            last_write.insert(lane, v);
        }
        values.push(value);
        let index = if permuted { next() as usize } else { p };
        if several_servers {
            next();
        }
        ops.push(Drawn {
            index,
            client: lanes[lane]["client"].as_u64().unwrap(),
            invoke_us: clock,
            return_us: (dur > 0).then(|| clock + dur - 1),
            kind,
            outcome,
            value,
        });
    }
    assert_eq!(pos, text.len(), "nothing left over");
    ops
}

/// Every operation of the history is in the page, with its client, times, kind, outcome and
/// value.
fn assert_all_drawn(history: &History, html: &str) {
    let drawn = decode(html);
    assert_eq!(drawn.len(), history.len());
    let mut seen = vec![false; history.len()];
    for d in &drawn {
        let op = &history.ops[d.index];
        assert!(
            !std::mem::replace(&mut seen[d.index], true),
            "#{} twice",
            d.index
        );
        let want = Drawn {
            index: d.index,
            client: op.client,
            invoke_us: op.invoke_ns / 1000,
            return_us: op.return_ns.map(|r| r / 1000),
            kind: op.kind,
            outcome: op.outcome,
            value: op.value,
        };
        assert_eq!(d, &want, "{op}");
    }
}

#[test]
fn a_violation_is_explained_and_the_page_opens_on_it() {
    let history = classic_cycle();
    let verdict = seqcst::check(&history).unwrap();
    let highlight = Highlight::from(&verdict);
    assert_eq!(highlight.ops, vec![0, 1, 2, 3]);
    let html = render_html(&history, &highlight, "ditto <seqcst>");
    keep("cycle.html", &html);
    assert_self_contained(&html);
    assert!(html.contains("<title>ditto &lt;seqcst&gt;</title>"));
    assert!(html.contains(
        "client 1 wrote 5 then read 3, so write 3 follows write 5; \
         client 2 wrote 3 then read 5, so write 5 follows write 3"
    ));
    assert!(html.contains("class=\"verdict bad\""));
    // The four operations of the cycle are listed, each a link that zooms to it.
    for i in 0..4 {
        assert!(
            html.contains(&format!("data-op=\"{i}\">#{i} client")),
            "op {i}"
        );
    }
    assert!(html.contains("#0 client 1 write 5 (ok) at :7001 [0..1 ms]"));
    // Every operation is in the lanes' data; exactly the four are outlined, by their positions
    // in invocation order, and the page opens on them.
    assert_all_drawn(&history, &html);
    let drawn = decode(&html);
    let meta = meta(&html);
    let outlined: Vec<usize> = meta["highlight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| drawn[p.as_u64().unwrap() as usize].index)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(outlined, vec![0, 1, 2, 3]);
    let window = (
        meta["window"][0].as_u64().unwrap(),
        meta["window"][1].as_u64().unwrap(),
    );
    assert!(
        window.0 == 0 && window.1 >= 3_500,
        "the window {window:?} holds the violation"
    );
    assert!(html.contains("id=\"violation\""));
    for part in [
        "id=\"throughput\"",
        "id=\"latency\"",
        "<canvas id=\"lanes\"",
    ] {
        assert!(html.contains(part), "missing {part}");
    }
    assert!(html.contains("class=\"legend\""));
}

#[test]
fn a_consistent_history_is_shown_as_such_and_whole() {
    let history = History::new(vec![w(1, 1, 0, 10_000), r(2, 1, 20_000, 30_000)]);
    let verdict = linearizable::check(&history, |_| true, &Default::default()).unwrap();
    let html = render_html(&history, &Highlight::from(&verdict), "ok run");
    assert_self_contained(&html);
    assert!(html.contains("class=\"verdict good\">linearizable: 2 ops"));
    assert!(!html.contains("class=\"involved\""));
    let meta = meta(&html);
    assert_eq!(meta["highlight"].as_array().unwrap().len(), 0);
    assert_eq!(meta["window"][0], meta["start"]);
    assert_eq!(meta["window"][1], meta["end"]);
    assert!(html.contains("All 2 operations of 2 clients"));
    assert_all_drawn(&history, &html);
}

#[test]
fn an_empty_history_makes_a_page_that_says_so() {
    let html = render_html(&History::default(), &Highlight::default(), "nothing");
    assert_self_contained(&html);
    assert!(html.contains("The history has no operations."));
}

/// Clients of three servers on one atomic register for `seconds`, each operation taking
/// 0.2 to 2 ms, with a few failed and unknown ones (longer, as a timeout is), and the faults
/// of a nemesis, one every two seconds.
fn long_run(seconds: u64, clients: u64) -> (History, Vec<Fault>) {
    let mut rng = Rng::new(7);
    let mut ops = Vec::new();
    let mut register = 0i64;
    let mut next = 1i64;
    for c in 0..clients {
        let server = 7000 + (c % 3) as u16;
        let mut t = c * 1000 + 1_000_000;
        while t < seconds * 1_000_000_000 {
            let latency = 200_000 + rng.below(1_800_000) as u64;
            let outcome = match rng.below(100) {
                0 => Outcome::Fail,
                1 => Outcome::Unknown,
                _ => Outcome::Ok,
            };
            let latency = if outcome == Outcome::Ok {
                latency
            } else {
                latency * 20
            };
            let op = if rng.chance(1, 2) {
                next += 1;
                if outcome != Outcome::Fail {
                    register = (c as i64 + 1) << 40 | next;
                }
                Op::write(c, (c as i64 + 1) << 40 | next, t, t + latency)
            } else {
                Op::read(c, register, t, t + latency)
            };
            ops.push(op.with_outcome(outcome).at(server));
            t += latency + 10_000;
        }
    }
    // Hand-made values: the reads above are not meant to be consistent, only plentiful.
    let faults = (1..seconds / 2)
        .map(|k| Fault {
            start_ns: k * 2_000_000_000,
            end_ns: k * 2_000_000_000 + 600_000_000,
            what: format!("pause :{} (SIGSTOP), resume", 7000 + k % 3),
            servers: vec![7000 + (k % 3) as u16],
        })
        .collect();
    (History::new(ops), faults)
}

#[test]
fn a_long_run_is_shown_whole_with_its_plots_and_faults() {
    let (mut history, faults) = long_run(20, 8);
    // Out of invocation order, as a history file may be.
    history.ops.reverse();
    let html = render_html_with_faults(&history, &Highlight::default(), "long", &faults);
    keep("long.html", &html);
    assert_self_contained(&html);
    println!(
        "{} operations over 20 s: a page of {} bytes, {:.1} bytes an operation",
        history.len(),
        html.len(),
        html.len() as f64 / history.len() as f64
    );
    assert!(history.len() > 100_000, "{}", history.len());
    // Both plots, each with its series, fault shading and time axis.
    for (id, series) in [
        ("throughput", &["s-ok", "s-fail", "s-unknown"][..]),
        ("latency", &["s-p50", "s-p99"][..]),
    ] {
        let start = html.find(&format!("<svg id=\"{id}\"")).expect("the plot");
        let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
        for class in series {
            assert!(
                svg.contains(&format!("<path class=\"{class}\" d=\"M")),
                "{id} lacks {class}"
            );
        }
        assert_eq!(
            svg.matches("class=\"fault\"").count(),
            faults.len(),
            "{id}: every fault shaded"
        );
        assert!(svg.contains("<title>pause :7001 (SIGSTOP), resume</title>"));
        assert_labels_apart(svg, "class=\"tick\" x=\"", 60.0);
        assert_labels_apart(svg, "class=\"flabel\" x=\"", 30.0);
        assert!(svg.contains("class=\"sel\""), "{id}: the zoom band");
    }
    // The faults are there for the lanes too, with the servers they hit.
    let meta = meta(&html);
    let shaded = meta["faults"].as_array().unwrap();
    assert_eq!(shaded.len(), faults.len());
    assert_eq!(shaded[0]["s"], 2_000_000);
    assert_eq!(shaded[0]["servers"][0], 7001);
    // Every operation is in the lanes, the whole run in view.
    assert_all_drawn(&history, &html);
    assert_eq!(meta["window"][0], meta["start"]);
    assert_eq!(meta["window"][1], meta["end"]);
    assert!(
        html.len() < history.len() * 12 + 100_000,
        "{} bytes for {} ops",
        html.len(),
        history.len()
    );
}

/// Labels with the given prefix (`... x="123.4"`) are at least `gap` pixels apart.
fn assert_labels_apart(svg: &str, prefix: &str, gap: f64) {
    let xs: Vec<f64> = svg
        .split(prefix)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect();
    for pair in xs.windows(2) {
        assert!(pair[1] - pair[0] >= gap, "labels at {pair:?} crowd");
    }
}

#[test]
fn in_a_long_run_the_page_opens_zoomed_on_the_violation() {
    let (history, faults) = long_run(20, 4);
    let mut ops = history.ops;
    // At 12 s a stale read at the primary after a completed write.
    ops.push(w(100, 1 << 50, 12_000_000_000, 12_000_500_000).at(7000));
    ops.push(r(101, 0, 12_001_000_000, 12_001_400_000).at(7000));
    let history = History::new(ops);
    let stale = history.len() - 1;
    let verdict = linearizable::check(&history, |op| op.client >= 100, &Default::default())
        .expect("valid history");
    let highlight = Highlight::from(&verdict);
    assert!(highlight.ops.contains(&stale), "{verdict}");
    let html = render_html_with_faults(&history, &highlight, "violation", &faults);
    keep("violation.html", &html);
    let meta = meta(&html);
    let window = (
        meta["window"][0].as_u64().unwrap(),
        meta["window"][1].as_u64().unwrap(),
    );
    assert!(
        window.0 <= 12_000_000 && window.1 >= 12_001_400 && window.1 - window.0 < 10_000,
        "the page opens on the violation, not on 20 s: {window:?}"
    );
    assert_eq!(
        meta["highlight"].as_array().unwrap().len(),
        highlight.ops.len()
    );
    assert!(html.contains("class=\"verdict bad\">not linearizable"));
    assert_all_drawn(&history, &html);
}

/// What a page of a million operations weighs (a tenth of that in a debug build), printed:
/// `cargo test -p ditto-check --release --test it page_of -- --nocapture`.
#[test]
fn a_page_of_a_million_operations_stays_small() {
    let clients = if cfg!(debug_assertions) { 8 } else { 76 };
    let (history, faults) = long_run(20, clients);
    let started = std::time::Instant::now();
    let html = render_html_with_faults(&history, &Highlight::default(), "a million", &faults);
    println!(
        "{} operations: a page of {:.1} MB ({:.1} bytes an operation) in {:?}",
        history.len(),
        html.len() as f64 / 1e6,
        html.len() as f64 / history.len() as f64,
        started.elapsed()
    );
    keep("million.html", &html);
    assert!(
        html.len() < history.len() * 13 + 100_000,
        "{} bytes",
        html.len()
    );
}
