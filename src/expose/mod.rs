//! The HTTP side: `/metrics` in Prometheus text 0.0.4, OpenMetrics 1.0 text or protobuf as
//! the scraper's `Accept` header asks (`negotiate`), the status page, health and
//! readiness, and the lifecycle endpoints (reload, quit); served by statsgate's own bounded
//! server, with TLS and basic auth from `--web.config.file`.

mod auth;
mod gzip;
mod http;
mod limits;
pub mod negotiate;
mod nice;
mod openmetrics;
pub mod protobuf;
pub mod samples;
mod server;
pub mod status;
pub mod text;
mod web_config;

pub use http::{HttpOptions, Lifecycle, default_render_threads, router};
pub use limits::SCRAPE_STALL_EVICT;
pub use server::{ServerOptions, bind, serve};
pub use status::{StatusPage, StatusSetup};
pub use web_config::{RateLimit, WebConfig, WebConfigError, WebConfigHandle};
