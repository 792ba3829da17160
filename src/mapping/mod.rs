//! Maps statsd names to Prometheus names and labels: statsd_exporter's mapping file (glob
//! automaton, regex rules, templates, cache) and the built-in profiles.

pub mod envoy;
