//! Sharded series storage: counters, gauges, histograms and summaries; TTL; conflicts.

pub mod options;
pub mod summary;
