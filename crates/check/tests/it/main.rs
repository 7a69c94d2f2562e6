//! The checkers' evidence: hand-written verdicts, agreement with stateright's exhaustive
//! testers, toy stores that are (and are not) sequentially consistent, scale, and timelines.
//! One test binary keeps linking cheap.

mod keyed_cases;
mod keyed_oracle;
mod linearizable_cases;
mod oracle;
mod scale;
mod seqcst_cases;
mod support;
mod timeline;
mod toy_store;
