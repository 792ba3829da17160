//! statsgate: a statsd-to-Prometheus gateway, a drop-in replacement for statsd_exporter.
//!
//! The modules follow a datagram's path: [`ingest`] (sockets) → [`line`](mod@crate::line) (grammar) →
//! [`mapping`] (names and labels) → [`store`] (aggregation) → [`expose`] (HTTP exposition).
//! [`pipeline`] is the hot path that joins the line grammar, mapping and store for one receive thread;
//! [`remote_write`] pushes what [`expose`] shows to Prometheus remote_write receivers.
//! [`config`], [`telemetry`] and [`logging`] serve the binary.

pub mod config;
pub mod expose;
pub mod ingest;
pub mod line;
pub mod logging;
pub mod mapping;
pub mod naming;
pub mod pipeline;
pub mod relay;
pub mod remote_write;
pub mod store;
pub mod telemetry;
