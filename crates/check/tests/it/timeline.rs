//! The HTML timeline shows the violation and stands alone.

use ditto_check::timeline::{Highlight, render_html, render_html_capped};
use ditto_check::{History, Outcome, linearizable, seqcst};

use crate::support::{r, w};

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

fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.ends_with("</html>\n"));
    for scheme in ["http://", "https://", "//cdn", "src="] {
        assert!(!html.contains(scheme), "the page refers to {scheme}");
    }
}

#[test]
fn a_violation_is_explained_and_its_operations_outlined() {
    let history = classic_cycle();
    let verdict = seqcst::check(&history).unwrap();
    let highlight = Highlight::from(&verdict);
    assert_eq!(highlight.ops, vec![0, 1, 2, 3]);
    let html = render_html(&history, &highlight, "ditto <seqcst>");
    assert_self_contained(&html);
    assert!(html.contains("<title>ditto &lt;seqcst&gt;</title>"));
    assert!(html.contains(
        "client 1 wrote 5 then read 3, so write 3 follows write 5; \
         client 2 wrote 3 then read 5, so write 5 follows write 3"
    ));
    assert!(html.contains("class=\"verdict bad\""));
    // Every operation is drawn once, and exactly the four of the cycle are outlined.
    assert_eq!(html.matches("<g data-op=").count(), 6);
    for i in 0..4 {
        let bar = html.split(&format!("<g data-op=\"{i}\">")).nth(1).unwrap();
        let bar = &bar[..bar.find("</g>").unwrap()];
        assert!(bar.contains(" hl\""), "op {i} is not outlined: {bar}");
    }
    assert_eq!(html.matches(" hl\"").count(), 4);
    // Lanes, labels, tooltips, colours and the time axis.
    for text in [
        "client 1</text>",
        "client 3</text>",
        ">W 5</text>",
        ">R 3</text>",
        "ms</text>",
    ] {
        assert!(html.contains(text), "missing {text}");
    }
    assert!(html.contains("<title>#0 client 1 write 5 (ok) at :7001 [0..1 ms]</title>"));
    assert!(html.contains("class=\"op fail\""));
    assert!(html.contains("class=\"op unknown\""));
    assert!(html.contains("class=\"legend\""));
}

#[test]
fn a_consistent_history_is_shown_as_such() {
    let history = History::new(vec![w(1, 1, 0, 10), r(2, 1, 20, 30)]);
    let verdict = linearizable::check(&history, |_| true, &Default::default()).unwrap();
    let html = render_html(&history, &Highlight::from(&verdict), "ok run");
    assert_self_contained(&html);
    assert!(html.contains("class=\"verdict good\">linearizable: 2 ops"));
    assert!(!html.contains(" hl\""));
    assert!(html.contains("All 2 operations are shown."));
}

#[test]
fn large_histories_are_capped_around_the_violation() {
    let mut ops = Vec::new();
    for i in 0..5_000u64 {
        ops.push(w(i % 4, i as i64 + 1, i * 10, i * 10 + 5));
    }
    // Halfway through, two more clients each see the other's write last.
    ops.extend([
        w(8, 10_001, 25_000, 25_001),
        r(8, 10_002, 25_002, 25_003),
        w(9, 10_002, 25_000, 25_001),
        r(9, 10_001, 25_002, 25_003),
    ]);
    let history = History::new(ops);
    let verdict = seqcst::check(&history).unwrap();
    let highlight = Highlight::from(&verdict);
    assert_eq!(highlight.ops, vec![5_000, 5_001, 5_002, 5_003], "{verdict}");
    let html = render_html_capped(&history, &highlight, "big", 300);
    assert_self_contained(&html);
    assert!(
        html.contains("Showing 300 of 5004 operations"),
        "missing the cap note"
    );
    assert_eq!(html.matches("<g data-op=").count(), 300);
    for i in &highlight.ops {
        assert!(
            html.contains(&format!("<g data-op=\"{i}\">")),
            "highlighted op {i} not drawn"
        );
    }
    assert_eq!(html.matches(" hl\"").count(), highlight.ops.len());
}
