//! Placeholder: Envoy tag extraction is being written.
