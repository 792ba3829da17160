//! The HTTP side: `/metrics` in Prometheus text format, the landing page, health and
//! readiness, and the lifecycle endpoints (reload, quit).

mod http;
pub mod samples;
pub mod text;

pub use http::{HttpOptions, Lifecycle, router};
