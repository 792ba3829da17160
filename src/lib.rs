//! statsgate: a statsd-to-Prometheus gateway, a drop-in replacement for statsd_exporter.
//!
//! The modules follow a datagram's path: [`ingest`] (sockets, framing, relaying) →
//! [`worker`] (the per-thread hot loop) → [`line`](mod@crate::line) (grammar) → [`mapping`]
//! (names and labels: mapping files and profiles) → [`store`] (aggregation) → [`expose`]
//! (HTTP exposition); [`remote_write`] pushes what [`expose`] shows to Prometheus
//! remote_write receivers. [`cli`], [`telemetry`] and [`logging`] serve the binary.

pub mod cli;
pub mod expose;
pub mod ingest;
pub mod line;
pub mod logging;
pub mod mapping;
mod prefetch;
pub mod remote_write;
pub mod store;
pub mod telemetry;
pub mod worker;
