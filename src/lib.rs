//! statsgate: a statsd-to-Prometheus gateway, a drop-in replacement for statsd_exporter.
//!
//! The modules follow a datagram's path: [`ingest`] (sockets) → [`line`] (grammar) →
//! [`mapping`] (names and labels) → [`store`] (aggregation) → [`expose`] (HTTP exposition).

pub mod ingest;
pub mod line;
pub mod mapping;
pub mod naming;
pub mod store;
