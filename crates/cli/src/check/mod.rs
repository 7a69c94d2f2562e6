//! The machinery of `ditto check`: a workload that records a history, a nemesis that injects
//! faults, and the proxies the nemesis uses to cut links.

pub mod nemesis;
pub mod proxy;
pub mod workload;
