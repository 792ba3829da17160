//! The gateway's own metrics, under statsd_exporter's names so existing dashboards and
//! alerts keep working, plus `process_*` and statsgate's own additions (`statsgate_*`).
//! [`catalog`] defines every one of them.
//!
//! Recorded through the `metrics` facade into `metrics-exporter-prometheus`, rendered after
//! the user's series on every scrape. Hot-path stages never look a counter up per event:
//! they hold [`metrics::Counter`] handles and add once per receive batch. A count kept
//! outside the process (the kernel's UDP drops) is read when rendering instead, by a
//! function registered with [`on_render`].

mod bounded;
pub mod catalog;
mod process;
pub mod rates;
mod values;

pub use bounded::{BoundedLabel, CONFLICT_NAMES, CONFLICT_NAMES_CAP, OTHER_LABEL_VALUE};
pub use values::SelfSample;

use std::sync::Mutex;

use metrics::{describe_counter, describe_gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use catalog::Kind;

/// Every family name the telemetry may write; the store refuses user series that would
/// collide with them, so a scrape never holds one name twice.
pub fn reserved_names() -> Vec<String> {
    catalog::RECORDED
        .iter()
        .chain(catalog::PROCESS)
        .map(|e| e.name.to_string())
        .collect()
}

/// The functions [`on_render`] registered.
static COLLECTORS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Has `collect` run each time the self-metrics are rendered (each scrape, each remote_write
/// snapshot), just before: it brings a self-metric whose count lives outside the process up
/// to date, so the value written is exact at that moment. Register each function once.
pub fn on_render(collect: fn()) {
    COLLECTORS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(collect);
}

/// The installed recorder, for rendering the self-metrics on a scrape.
#[derive(Clone, Debug)]
pub struct Telemetry {
    handle: PrometheusHandle,
}

/// Installing the global recorder failed (one is already installed).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the telemetry recorder: {0}")]
pub struct TelemetryError(String);

impl Telemetry {
    /// Installs the process-wide recorder, describes every self-metric and sets
    /// `statsd_exporter_build_info`.
    pub fn install() -> Result<Telemetry, TelemetryError> {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|e| TelemetryError(e.to_string()))?;
        for family in catalog::RECORDED {
            match family.kind {
                Kind::Counter => describe_counter!(family.name, family.help),
                Kind::Gauge => describe_gauge!(family.name, family.help),
            }
        }
        catalog::BUILD_INFO
            .gauge([
                env!("CARGO_PKG_VERSION").into(),
                // From `build.rs`: git's view of the checkout built, or `unknown`.
                env!("STATSGATE_GIT_REVISION").into(),
                env!("STATSGATE_GIT_BRANCH").into(),
                // statsd_exporter's `goversion`: the compiler, e.g. `rustc1.95.0`.
                env!("STATSGATE_RUSTC_VERSION").into(),
                std::env::consts::OS.into(),
                std::env::consts::ARCH.into(),
            ])
            .set(1.0);
        Ok(Telemetry { handle })
    }

    /// The self-metrics in text format, `process_*` included, after running every
    /// [`on_render`] function.
    pub fn render(&self) -> String {
        collect();
        let mut out = self.handle.render();
        process::render(&mut out);
        out
    }

    /// The recorded self-metrics' current values (`process_*` left out), for the status
    /// page, after running every [`on_render`] function (so the kernel's drops are exact
    /// there too). Costs a render of the recorder's few dozen series.
    pub fn samples(&self) -> Vec<SelfSample> {
        collect();
        values::parse_samples(&self.handle.render())
    }
}

/// Runs every [`on_render`] function.
fn collect() {
    // Copied out so a collector never runs under the lock.
    let collectors = COLLECTORS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for collect in collectors {
        collect();
    }
}
