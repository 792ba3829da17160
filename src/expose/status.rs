//! The status page at `/` and its data at `/api/v1/status`: what an operator asks first
//! ("is the bridge receiving, and is it losing data?") on one screen. Build and config,
//! ingest rates over the last minute, errors and drops by reason, series against the limit,
//! and the metrics holding the most series.
//!
//! The page is server-rendered HTML with inline CSS and needs no JavaScript; a short inline
//! script refreshes its numbers from the JSON every few seconds. Every name shown is
//! HTML-escaped, as names and error texts can come from the network or a file.
//!
//! Cost: rates come from a ring of counter samples taken every [`SAMPLE_INTERVAL`]; a
//! request walks the families (never the series) once and the result is reused for
//! [`STATUS_REUSE`], however many clients ask.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::ingest::Listener;
use crate::mapping::LiveMapper;
use crate::store::{FamilyType, Store, SummaryEstimator};
use crate::telemetry::catalog::{self, Family};
use crate::telemetry::rates::{RATE_WINDOW, RateWindow, SAMPLE_INTERVAL};
use crate::telemetry::{SelfSample, Telemetry};

/// How many metric names the "top metrics" table lists.
pub const TOP_METRICS: usize = 20;

/// How long one collected [`Status`] is served again before the next is collected, so a
/// page left open in many browsers costs one family walk per period.
pub const STATUS_REUSE: Duration = Duration::from_secs(1);

/// Seconds between two refreshes of an open page.
const REFRESH_SECONDS: u64 = 5;

/// What the status page knows from the start: the parts of the configuration it shows.
#[derive(Clone, Debug, Default)]
pub struct StatusSetup {
    /// The statsd listeners: transport (`udp`, `tcp`, `unixgram`) and address or path.
    pub listeners: Vec<(String, String)>,
    /// The naming profile (`--profile`).
    pub profile: String,
    /// `--web.telemetry-path`, linked from the page.
    pub telemetry_path: String,
}

impl StatusSetup {
    /// The setup of a gateway serving `listeners` under `profile`, with its metrics at
    /// `telemetry_path`.
    pub fn new(listeners: &[Listener], profile: &str, telemetry_path: &str) -> StatusSetup {
        StatusSetup {
            listeners: listeners
                .iter()
                .map(|l| (l.transport().to_string(), l.endpoint()))
                .collect(),
            profile: profile.to_string(),
            telemetry_path: telemetry_path.to_string(),
        }
    }
}

/// The status page's data source: cheap to clone, shared by the two routes.
#[derive(Clone)]
pub struct StatusPage {
    inner: Arc<Inner>,
}

struct Inner {
    setup: StatusSetup,
    store: Arc<Store>,
    telemetry: Option<Telemetry>,
    mapper: Option<Arc<LiveMapper>>,
    /// When the page was made: as the gateway starts serving, which is what "uptime" means
    /// to whoever reads it.
    started: SystemTime,
    /// Lines, datagrams, bytes: see [`ingest_totals`].
    window: Mutex<RateWindow<3>>,
    last: Mutex<Option<(Instant, Arc<Status>)>>,
}

impl std::fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPage")
            .field("setup", &self.inner.setup)
            .finish_non_exhaustive()
    }
}

impl StatusPage {
    /// A status page over `store`, the self-metrics of `telemetry` (no rates, errors or drops
    /// without) and the mapping in force. With telemetry, starts a thread that samples the
    /// ingest counters every [`SAMPLE_INTERVAL`] and ends once the page is dropped.
    pub fn start(
        setup: StatusSetup,
        store: Arc<Store>,
        telemetry: Option<Telemetry>,
        mapper: Option<Arc<LiveMapper>>,
    ) -> StatusPage {
        let inner = Arc::new(Inner {
            setup,
            store,
            telemetry,
            mapper,
            started: SystemTime::now(),
            window: Mutex::new(RateWindow::new(RATE_WINDOW, SAMPLE_INTERVAL)),
            last: Mutex::new(None),
        });
        if inner.telemetry.is_some() {
            inner.sample();
            let weak = Arc::downgrade(&inner);
            let spawned = std::thread::Builder::new()
                .name("statsgate-status".into())
                .spawn(move || sample_until_dropped(&weak));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the status sampler; the status page shows no rates");
            }
        }
        StatusPage { inner }
    }

    /// The status now, or the one collected less than [`STATUS_REUSE`] ago. Walks every
    /// family once (taking each one's read lock briefly): call it off the async workers.
    pub fn status(&self) -> Arc<Status> {
        // Held while collecting: concurrent requests wait for this walk and share it rather
        // than walking the families side by side.
        let mut last = lock(&self.inner.last);
        if let Some((at, status)) = &*last
            && at.elapsed() < STATUS_REUSE
        {
            return status.clone();
        }
        let status = Arc::new(self.inner.collect());
        *last = Some((Instant::now(), status.clone()));
        status
    }

    /// The status as an HTML page.
    pub fn render_html(&self) -> String {
        render_html(&self.status(), &self.inner.setup.telemetry_path)
    }

    /// The status as JSON, as `/api/v1/status` serves it.
    pub fn render_json(&self) -> String {
        // Plain data (strings, numbers, options): serialising it cannot fail.
        serde_json::to_string_pretty(&*self.status()).unwrap_or_default()
    }
}

fn sample_until_dropped(page: &Weak<Inner>) {
    loop {
        std::thread::sleep(SAMPLE_INTERVAL);
        let Some(inner) = page.upgrade() else {
            return;
        };
        inner.sample();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything the page shows, as `/api/v1/status` serves it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// When this was collected, Unix seconds.
    pub generated_at: f64,
    /// Version and git checkout.
    pub build: BuildInfo,
    /// The configuration in force.
    pub config: ConfigInfo,
    /// What arrives.
    pub ingest: IngestInfo,
    /// Series held against the limit.
    pub series: SeriesInfo,
    /// Input refused or cut as malformed, by counter and reason (zeros included).
    pub errors: Vec<CounterRow>,
    /// Data lost to full buffers and limits, by counter and reason (zeros included).
    pub drops: Vec<CounterRow>,
    /// The metric names with the most series, most first (ties by name).
    pub top_metrics: Vec<TopMetric>,
}

/// Version and the git checkout built.
#[derive(Clone, Debug, Serialize)]
pub struct BuildInfo {
    /// The crate version.
    pub version: String,
    /// The git revision, or `unknown`.
    pub revision: String,
    /// The git branch, or `unknown`.
    pub branch: String,
    /// Operating system and CPU architecture built for, `linux/x86_64`.
    pub platform: String,
    /// Process start, Unix seconds.
    pub started_at: f64,
    /// Seconds since start.
    pub uptime_seconds: f64,
}

/// The configuration in force.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigInfo {
    /// `--profile`.
    pub profile: String,
    /// The statsd listeners.
    pub listeners: Vec<ListenerInfo>,
    /// The mapping file, if any.
    pub mapping_file: Option<String>,
    /// Rules of the mapping in force.
    pub mapping_rules: usize,
    /// The last reload of the mapping file; `None` before the first.
    pub last_reload: Option<ReloadInfo>,
    /// `--statsd.summary-estimator`: `ckms` or `ddsketch`.
    pub summary_estimator: String,
    /// `--statsd.summary-relative-accuracy` with `ddsketch`; `None` with `ckms`.
    pub summary_relative_accuracy: Option<f64>,
}

/// One statsd listener.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerInfo {
    /// `udp`, `tcp` or `unixgram`.
    pub transport: String,
    /// The bound address, or the socket's path.
    pub address: String,
}

/// The last mapping reload.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadInfo {
    /// When it finished, Unix seconds.
    pub at: f64,
    /// Whether the new file was taken.
    pub success: bool,
    /// The new rule count, on success.
    pub rules: Option<usize>,
    /// Why the file was refused (the previous rules stayed), on failure.
    pub error: Option<String>,
}

/// Ingest totals and rates.
#[derive(Clone, Debug, Serialize)]
pub struct IngestInfo {
    /// Seconds the rates were measured over (up to a minute); `None` until measurable.
    pub window_seconds: Option<f64>,
    /// Statsd lines per second.
    pub lines_per_second: Option<f64>,
    /// UDP and unixgram datagrams per second.
    pub datagrams_per_second: Option<f64>,
    /// Payload bytes per second, all transports.
    pub bytes_per_second: Option<f64>,
    /// Statsd lines since start.
    pub lines_total: u64,
    /// UDP and unixgram datagrams since start.
    pub datagrams_total: u64,
    /// Payload bytes since start, all transports.
    pub bytes_total: u64,
    /// Datagrams the kernel dropped plus events a limit dropped, since start: data lost.
    pub dropped_total: u64,
}

/// Series held against the limit.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesInfo {
    /// Series held now.
    pub count: usize,
    /// `--statsd.max-series`; 0 means no limit.
    pub limit: usize,
    /// Metric families held now.
    pub families: usize,
}

/// One self-metric counter series.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CounterRow {
    /// The self-metric's name.
    pub metric: String,
    /// The `reason` (or other) label's value, empty for an unlabelled counter or a sum.
    pub reason: String,
    /// Its value.
    pub value: f64,
}

/// One metric name and its series.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopMetric {
    /// The metric name as exposed.
    pub name: String,
    /// counter, gauge, summary or histogram.
    #[serde(rename = "type")]
    pub family_type: String,
    /// Series it holds.
    pub series: usize,
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The three ingest counters a rate is taken of: lines, datagrams, bytes.
fn ingest_totals(samples: &[SelfSample]) -> [f64; 3] {
    [
        sum(samples, &catalog::LINES),
        sum(samples, &catalog::UDP_PACKETS) + sum(samples, &catalog::UNIXGRAM_PACKETS),
        sum(samples, &catalog::RECEIVED_BYTES),
    ]
}

/// The sum of every series of `family`.
fn sum<const N: usize>(samples: &[SelfSample], family: &Family<N>) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == family.name)
        .map(|s| s.value)
        .sum()
}

/// One row per value of `label` of `family` (one row for an unlabelled family, or for a
/// family with no series yet), in label order.
fn rows<const N: usize>(
    out: &mut Vec<CounterRow>,
    samples: &[SelfSample],
    family: &Family<N>,
    label: Option<&str>,
) {
    let mut found: Vec<CounterRow> = Vec::new();
    for s in samples.iter().filter(|s| s.name == family.name) {
        let reason = label.and_then(|l| s.label(l)).unwrap_or_default();
        match found.iter_mut().find(|r| r.reason == reason) {
            Some(row) => row.value += s.value,
            None => found.push(CounterRow {
                metric: family.name.to_string(),
                reason: reason.to_string(),
                value: s.value,
            }),
        }
    }
    if found.is_empty() {
        found.push(CounterRow {
            metric: family.name.to_string(),
            reason: String::new(),
            value: 0.0,
        });
    }
    found.sort_by(|a, b| a.reason.cmp(&b.reason));
    out.extend(found);
}

fn error_rows(samples: &[SelfSample]) -> Vec<CounterRow> {
    let mut out = Vec::new();
    rows(&mut out, samples, &catalog::SAMPLE_ERRORS, Some("reason"));
    rows(&mut out, samples, &catalog::TAG_ERRORS, None);
    rows(&mut out, samples, &catalog::EVENTS_ERROR, Some("reason"));
    // By type only: the metric_name label is for dashboards, a thousand rows here help no one.
    rows(&mut out, samples, &catalog::EVENTS_CONFLICT, Some("type"));
    rows(&mut out, samples, &catalog::LABELS_DROPPED, None);
    rows(&mut out, samples, &catalog::TCP_CONNECTION_ERRORS, None);
    rows(&mut out, samples, &catalog::TCP_TOO_LONG_LINES, None);
    out
}

fn drop_rows(samples: &[SelfSample]) -> Vec<CounterRow> {
    let mut out = Vec::new();
    rows(&mut out, samples, &catalog::UDP_PACKET_DROPS, None);
    rows(&mut out, samples, &catalog::EVENTS_DROPPED, Some("reason"));
    rows(&mut out, samples, &catalog::TCP_CONNECTIONS_REFUSED, None);
    out
}

/// The `n` families with the most series, most first, ties by name. One pass over the
/// families with a heap of `n`: O(families · log n), no allocation per family.
fn top_metrics(store: &Store, n: usize) -> Vec<TopMetric> {
    let families = store.families();
    // Min-heap on (series, later name first): its top is the entry to evict. The list is
    // sorted by name, so a smaller index is an earlier name.
    let mut heap: BinaryHeap<Reverse<(usize, Reverse<usize>)>> = BinaryHeap::with_capacity(n + 1);
    for (i, f) in families.iter().enumerate() {
        let len = f.len();
        if len == 0 {
            continue;
        }
        heap.push(Reverse((len, Reverse(i))));
        if heap.len() > n {
            heap.pop();
        }
    }
    let mut top: Vec<(usize, usize)> = heap
        .into_iter()
        .map(|Reverse((len, Reverse(i)))| (len, i))
        .collect();
    top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    top.into_iter()
        .map(|(series, i)| TopMetric {
            name: families[i].name().to_string(),
            family_type: families[i].family_type().as_str().to_string(),
            series,
        })
        .collect()
}

impl Inner {
    fn sample(&self) {
        if let Some(t) = &self.telemetry {
            let totals = ingest_totals(&t.samples());
            lock(&self.window).record(Instant::now(), totals);
        }
    }

    fn collect(&self) -> Status {
        let now = SystemTime::now();
        let samples = self
            .telemetry
            .as_ref()
            .map(Telemetry::samples)
            .unwrap_or_default();
        let totals = ingest_totals(&samples);
        let rates = self
            .telemetry
            .as_ref()
            .and_then(|_| lock(&self.window).rates(Instant::now(), totals));
        let rate = |i: usize| rates.map(|r| r.per_second[i]);
        let mapper = self.mapper.as_deref();
        let store = &self.store;
        Status {
            generated_at: unix_seconds(now),
            build: BuildInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                revision: env!("STATSGATE_GIT_REVISION").to_string(),
                branch: env!("STATSGATE_GIT_BRANCH").to_string(),
                platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
                started_at: unix_seconds(self.started),
                uptime_seconds: now
                    .duration_since(self.started)
                    .map_or(0.0, |d| d.as_secs_f64()),
            },
            config: ConfigInfo {
                profile: self.setup.profile.clone(),
                listeners: self
                    .setup
                    .listeners
                    .iter()
                    .map(|(transport, address)| ListenerInfo {
                        transport: transport.clone(),
                        address: address.clone(),
                    })
                    .collect(),
                mapping_file: mapper
                    .and_then(LiveMapper::source)
                    .map(|p| p.display().to_string()),
                mapping_rules: mapper.map_or(0, |m| m.current().rule_count()),
                last_reload: mapper
                    .and_then(LiveMapper::last_reload)
                    .map(|r| ReloadInfo {
                        at: unix_seconds(r.at),
                        success: r.outcome.is_ok(),
                        rules: r.outcome.as_ref().ok().copied(),
                        error: r.outcome.err(),
                    }),
                summary_estimator: match store.summary_estimator() {
                    SummaryEstimator::Ckms => "ckms",
                    SummaryEstimator::DdSketch { .. } => "ddsketch",
                }
                .to_string(),
                summary_relative_accuracy: match store.summary_estimator() {
                    SummaryEstimator::Ckms => None,
                    SummaryEstimator::DdSketch { relative_accuracy } => Some(relative_accuracy),
                },
            },
            ingest: IngestInfo {
                window_seconds: rates.map(|r| r.span.as_secs_f64()),
                lines_per_second: rate(0),
                datagrams_per_second: rate(1),
                bytes_per_second: rate(2),
                lines_total: totals[0] as u64,
                datagrams_total: totals[1] as u64,
                bytes_total: totals[2] as u64,
                dropped_total: (sum(&samples, &catalog::UDP_PACKET_DROPS)
                    + sum(&samples, &catalog::EVENTS_DROPPED))
                    as u64,
            },
            series: SeriesInfo {
                count: store.series_count(),
                limit: store.max_series(),
                families: [
                    FamilyType::Counter,
                    FamilyType::Gauge,
                    FamilyType::Summary,
                    FamilyType::Histogram,
                ]
                .into_iter()
                .map(|t| store.family_count(t))
                .sum(),
            },
            errors: error_rows(&samples),
            drops: drop_rows(&samples),
            top_metrics: top_metrics(store, TOP_METRICS),
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1234567` as `1,234,567`, as the page's script writes it (`toLocaleString("en-US")`).
fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with one decimal and grouped digits, or `–` while not measurable.
fn format_rate(r: Option<f64>) -> String {
    match r {
        Some(v) if v.is_finite() && v >= 0.0 => {
            let tenths = (v * 10.0).round() as u64;
            format!("{}.{}", group_digits(tenths / 10), tenths % 10)
        }
        _ => "–".to_string(),
    }
}

fn format_count(v: f64) -> String {
    if v.is_finite() && v >= 0.0 {
        group_digits(v.round() as u64)
    } else {
        v.to_string()
    }
}

/// `2026-12-02 07:00:00 UTC` from Unix seconds (proleptic Gregorian calendar).
fn format_time(unix: f64) -> String {
    let (year, month, day, sod) = crate::logging::civil_from_unix(unix.max(0.0) as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `3d 4h 5m`, `4h 5m 6s` or `5m 6s`.
fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h) {
        (0, 0) => format!("{m}m {s}s"),
        (0, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#212529;background:#f5f6f8}
nav{background:#24292f;color:#fff;padding:0 24px;display:flex;align-items:center;gap:20px;height:48px}
nav .brand{font-weight:600;font-size:17px;color:#fff;text-decoration:none;margin-right:12px}
nav a{color:#c9d1d9;text-decoration:none}nav a:hover{color:#fff}
main{max-width:1400px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;font-weight:500;margin:0 0 14px}
h2{font-size:16px;font-weight:600;margin:0;padding:10px 14px;border-bottom:1px solid #e1e4e8;background:#fafbfc;border-radius:6px 6px 0 0}
h2 small{font-weight:400;color:#6a737d;margin-left:6px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:6px;margin-bottom:18px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:18px}.grid section{margin-bottom:0}
.row{margin-bottom:18px}
table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:4px 12px;border-top:1px solid #eef0f2;vertical-align:baseline;overflow-wrap:anywhere}
thead th{border-top:0;color:#6a737d;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
tbody tr:nth-child(even){background:#fafbfc}
th[scope=row]{width:34%;font-weight:600;color:#444d56}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;overflow-wrap:normal}
code,.mono{font-family:SFMono-Regular,Consolas,"Liberation Mono",Menlo,monospace;font-size:11.5px}
td.z{color:#8b949e}
.rank{width:56px}
.tiles{display:grid;grid-template-columns:repeat(5,minmax(0,1fr))}
.tile{padding:12px 14px;border-right:1px solid #eef0f2}.tile:last-child{border-right:0}
.tile .v.nz{color:#cf222e}
.tile .v{font-size:26px;font-weight:500;font-variant-numeric:tabular-nums}
.tile .l{color:#6a737d;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.tile .t{color:#6a737d;font-size:12px}
.bar{height:8px;background:#eef0f2;border-radius:4px;overflow:hidden;margin-top:8px}
.bar span{display:block;height:100%;background:#2f81f7}
.bar.warn span{background:#d29922}.bar.full span{background:#cf222e}
.share{display:inline-block;height:8px;background:#2f81f7;border-radius:2px;vertical-align:middle;opacity:.7}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.nz{color:#cf222e;font-weight:600}
.muted{color:#6a737d}
footer{color:#6a737d;font-size:12px;text-align:center;margin-top:10px}
@media(max-width:900px){.grid{grid-template-columns:1fr}.tiles{grid-template-columns:1fr 1fr}}
"#;

/// Refreshes every element carrying `data-k` (a path into the JSON) and the three tables
/// from `/api/v1/status`, at load and every few seconds; builds rows with `textContent`, so
/// names are never parsed as HTML. Marks `<body data-live="1">` after a refresh.
const SCRIPT: &str = r#"
(function(){
var fmt=function(v,d){return v==null?"\u2013":Number(v).toLocaleString("en-US",{minimumFractionDigits:d,maximumFractionDigits:d})};
var get=function(o,p){return p.split(".").reduce(function(a,k){return a==null?a:a[k]},o)};
function rows(id,list,cols){var b=document.getElementById(id);if(!b)return;var none=b.dataset.none;b.textContent="";
if(none)list=list.filter(function(r){return r.value>0});
if(!list.length&&none){var td=b.insertRow().insertCell();td.colSpan=cols.length;td.className="muted";td.textContent=none}
list.forEach(function(r){var tr=b.insertRow();cols.forEach(function(c){var td=tr.insertCell();c(td,r)})})}
function cnt(td,r){td.className="num "+(r.value>0?"nz":"z");td.textContent=fmt(r.value,0)}
function txt(k,cls){return function(td,r){td.className=cls||"";td.textContent=r[k]}}
function tick(){fetch("api/v1/status",{cache:"no-store"}).then(function(r){return r.json()}).then(function(s){
document.querySelectorAll("[data-k]").forEach(function(e){var v=get(s,e.dataset.k);e.textContent=fmt(v,+(e.dataset.d||0))});
rows("errors",s.errors,[txt("metric","mono"),txt("reason","mono"),cnt]);
rows("drops",s.drops,[txt("metric","mono"),txt("reason","mono"),cnt]);
var max=s.top_metrics.length?s.top_metrics[0].series:1;
rows("top",s.top_metrics,[function(td,r){td.className="num muted";td.textContent=s.top_metrics.indexOf(r)+1},txt("name","mono"),txt("type","muted"),
function(td,r){td.className="num";td.textContent=fmt(r.series,0)},
function(td,r){var b=document.createElement("span");b.className="share";b.style.width=Math.max(1,Math.round(120*r.series/max))+"px";td.appendChild(b)}]);
var d=document.getElementById("dropped");d.className="v"+(s.ingest.dropped_total>0?" nz":"");
var p=document.getElementById("series-bar");if(p&&s.series.limit>0){var f=Math.min(1,s.series.count/s.series.limit);p.firstChild.style.width=(100*f).toFixed(1)+"%";p.className="bar"+(f>=1?" full":f>=.8?" warn":"")}
var u=Math.floor(s.build.uptime_seconds),dd=Math.floor(u/86400),hh=Math.floor(u%86400/3600),mm=Math.floor(u%3600/60);
document.getElementById("uptime").textContent=dd?dd+"d "+hh+"h "+mm+"m":hh?hh+"h "+mm+"m "+u%60+"s":mm+"m "+u%60+"s";
document.getElementById("updated").textContent=new Date(s.generated_at*1000).toISOString().replace("T"," ").replace(/\.\d+Z$/," UTC");
document.body.dataset.live="1"
}).catch(function(){})}
tick();setInterval(tick,REFRESH_MS);
})();
"#;

/// A table of counters; with `only_nonzero`, zero rows are left out and `none` is shown
/// when nothing is left (the script does the same on refresh).
fn counter_table(out: &mut String, id: &str, rows: &[CounterRow], only_nonzero: Option<&str>) {
    out.push_str("<table><thead><tr><th>Counter</th><th>Reason</th><th class=\"num\">Total</th></tr></thead>");
    match only_nonzero {
        Some(none) => {
            let _ = write!(out, "<tbody id=\"{id}\" data-none=\"{}\">", escape(none));
        }
        None => {
            let _ = write!(out, "<tbody id=\"{id}\">");
        }
    }
    let shown: Vec<&CounterRow> = rows
        .iter()
        .filter(|r| only_nonzero.is_none() || r.value > 0.0)
        .collect();
    if let (Some(none), true) = (only_nonzero, shown.is_empty()) {
        let _ = write!(
            out,
            "<tr><td colspan=\"3\" class=\"muted\">{}</td></tr>",
            escape(none)
        );
    }
    for r in shown {
        let class = if r.value > 0.0 { "num nz" } else { "num z" };
        let _ = write!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"{class}\">{}</td></tr>",
            escape(&r.metric),
            escape(&r.reason),
            format_count(r.value)
        );
    }
    out.push_str("</tbody></table>");
}

fn info_row(out: &mut String, name: &str, value_html: &str) {
    let _ = write!(
        out,
        "<tr><th scope=\"row\">{name}</th><td>{value_html}</td></tr>"
    );
}

fn tile(out: &mut String, label: &str, key: &str, rate: Option<f64>, total_key: &str, total: u64) {
    let _ = write!(
        out,
        "<div class=\"tile\"><div class=\"l\">{label}</div><div class=\"v\" data-k=\"{key}\" data-d=\"1\">{}</div>\
         <div class=\"t\"><span data-k=\"{total_key}\">{}</span> since start</div></div>",
        format_rate(rate),
        group_digits(total)
    );
}

/// The page for `status`; `telemetry_path` is where `/metrics` is served.
pub fn render_html(status: &Status, telemetry_path: &str) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let metrics = escape(if telemetry_path.is_empty() {
        "/metrics"
    } else {
        telemetry_path
    });
    let b = &status.build;
    let c = &status.config;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>statsgate status</title><style>{STYLE}</style></head><body>\n\
         <nav><a class=\"brand\" href=\"/\">statsgate</a><a href=\"{metrics}\">Metrics</a>\
         <a href=\"/api/v1/status\">Status API</a><a href=\"/-/healthy\">Health</a>\
         <a href=\"/-/ready\">Readiness</a>\
         <a href=\"https://github.com/prometheus/statsd_exporter#readme\">Docs</a></nav>\n<main>\n\
         <h1>Status</h1>\n"
    );

    // Build and configuration.
    out.push_str("<div class=\"grid row\"><section><h2>Runtime and build information</h2><table>");
    info_row(&mut out, "Version", &escape(&b.version));
    info_row(
        &mut out,
        "Revision",
        &format!("<span class=\"mono\">{}</span>", escape(&b.revision)),
    );
    info_row(&mut out, "Branch", &escape(&b.branch));
    info_row(&mut out, "Platform", &escape(&b.platform));
    info_row(&mut out, "Start time", &format_time(b.started_at));
    info_row(
        &mut out,
        "Uptime",
        &format!(
            "<span id=\"uptime\">{}</span>",
            format_duration(b.uptime_seconds)
        ),
    );
    let _ = write!(
        out,
        "</table></section><section><h2>Configuration</h2><table>"
    );
    info_row(&mut out, "Profile", &escape(&c.profile));
    let estimator = match c.summary_relative_accuracy {
        Some(a) => format!("{} (relative accuracy {a})", c.summary_estimator),
        None => c.summary_estimator.clone(),
    };
    info_row(&mut out, "Summary estimator", &escape(&estimator));
    for l in &c.listeners {
        info_row(
            &mut out,
            &format!("Listener ({})", escape(&l.transport)),
            &format!("<span class=\"mono\">{}</span>", escape(&l.address)),
        );
    }
    let mapping = c.mapping_file.as_deref().map_or_else(
        || "<span class=\"muted\">none</span>".to_string(),
        |f| format!("<span class=\"mono\">{}</span>", escape(f)),
    );
    info_row(&mut out, "Mapping file", &mapping);
    info_row(
        &mut out,
        "Mapping rules",
        &group_digits(c.mapping_rules as u64),
    );
    let reload = match &c.last_reload {
        None => "<span class=\"muted\">none since start</span>".to_string(),
        Some(r) if r.success => format!(
            "<span class=\"ok\">success</span> at {} ({} rules)",
            format_time(r.at),
            r.rules.unwrap_or_default()
        ),
        Some(r) => format!(
            "<span class=\"bad\">failed</span> at {}: <span class=\"mono\">{}</span>",
            format_time(r.at),
            escape(r.error.as_deref().unwrap_or_default())
        ),
    };
    info_row(&mut out, "Last reload", &reload);
    out.push_str("</table></section></div>\n");

    // Ingest and series.
    let i = &status.ingest;
    let window = i
        .window_seconds
        .map_or_else(|| "measuring".to_string(), |w| format!("last {w:.0} s"));
    let _ = write!(
        out,
        "<section><h2>Ingest <small>per second, {}</small></h2><div class=\"tiles\">",
        escape(&window)
    );
    tile(
        &mut out,
        "Lines / s",
        "ingest.lines_per_second",
        i.lines_per_second,
        "ingest.lines_total",
        i.lines_total,
    );
    tile(
        &mut out,
        "Datagrams / s",
        "ingest.datagrams_per_second",
        i.datagrams_per_second,
        "ingest.datagrams_total",
        i.datagrams_total,
    );
    tile(
        &mut out,
        "Bytes / s",
        "ingest.bytes_per_second",
        i.bytes_per_second,
        "ingest.bytes_total",
        i.bytes_total,
    );
    let _ = write!(
        out,
        "<div class=\"tile\"><div class=\"l\">Dropped</div><div class=\"v{}\" id=\"dropped\" data-k=\"ingest.dropped_total\">{}</div>\
         <div class=\"t\">datagrams and events since start (see Drops)</div></div>",
        if i.dropped_total > 0 { " nz" } else { "" },
        group_digits(i.dropped_total)
    );
    let s = &status.series;
    let (limit, fill) = if s.limit == 0 {
        ("no limit".to_string(), 0.0)
    } else {
        (
            format!(
                "of <span data-k=\"series.limit\">{}</span> (--statsd.max-series)",
                group_digits(s.limit as u64)
            ),
            (s.count as f64 / s.limit as f64).min(1.0),
        )
    };
    let bar_class = if fill >= 1.0 {
        "bar full"
    } else if fill >= 0.8 {
        "bar warn"
    } else {
        "bar"
    };
    let _ = writeln!(
        out,
        "<div class=\"tile\"><div class=\"l\">Series</div><div class=\"v\" data-k=\"series.count\">{}</div>\
         <div class=\"t\">{limit}, in <span data-k=\"series.families\">{}</span> metrics</div>\
         <div class=\"{bar_class}\" id=\"series-bar\"><span style=\"width:{:.1}%\"></span></div></div></div></section>",
        group_digits(s.count as u64),
        group_digits(s.families as u64),
        fill * 100.0
    );

    // Errors and drops.
    out.push_str(
        "<div class=\"grid row\"><section><h2>Drops <small>data lost to full buffers and limits</small></h2>",
    );
    counter_table(&mut out, "drops", &status.drops, None);
    out.push_str("</section><section><h2>Errors <small>malformed or refused input</small></h2>");
    counter_table(
        &mut out,
        "errors",
        &status.errors,
        Some("No errors since start."),
    );
    out.push_str("</section></div>\n");

    // Top metrics.
    let _ = write!(
        out,
        "<section><h2>Top {TOP_METRICS} metrics <small>by series count</small></h2><table><thead><tr>\
         <th class=\"num rank\">#</th><th>Metric</th><th>Type</th><th class=\"num\">Series</th><th></th></tr></thead><tbody id=\"top\">"
    );
    let max = status.top_metrics.first().map_or(1, |t| t.series.max(1));
    for (n, t) in status.top_metrics.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td class=\"num muted\">{}</td><td class=\"mono\">{}</td><td class=\"muted\">{}</td>\
             <td class=\"num\">{}</td><td><span class=\"share\" style=\"width:{}px\"></span></td></tr>",
            n + 1,
            escape(&t.name),
            escape(&t.family_type),
            group_digits(t.series as u64),
            (120 * t.series / max).max(1)
        );
    }
    out.push_str("</tbody></table></section>\n");

    let _ = write!(
        out,
        "<footer>Updated <span id=\"updated\">{}</span>; refreshed every {REFRESH_SECONDS} s with JavaScript \
         (reload the page without it).</footer>\n</main>\n<script>{}</script>\n</body></html>\n",
        format_time(status.generated_at),
        SCRIPT.replace("REFRESH_MS", &(REFRESH_SECONDS * 1000).to_string())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SeriesKind, SeriesSpec, StoreOptions};

    #[test]
    fn formats_numbers_and_times_as_the_script_does() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(format_rate(Some(1234.56)), "1,234.6");
        assert_eq!(format_rate(None), "–");
        assert_eq!(format_time(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_796_198_400.0), "2026-12-02 08:00:00 UTC");
        assert_eq!(format_time(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_duration(3_725.0), "1h 2m 5s");
    }

    #[test]
    fn every_name_is_escaped() {
        let store = Arc::new(Store::new(StoreOptions::default()));
        let page = StatusPage::start(StatusSetup::default(), store, None, None);
        let mut status = (*page.status()).clone();
        status.top_metrics.push(TopMetric {
            name: "<script>alert(1)</script>".into(),
            family_type: "counter".into(),
            series: 1,
        });
        status.errors.push(CounterRow {
            metric: "x".into(),
            reason: "\"><img src=x onerror=alert(1)>".into(),
            value: 1.0,
        });
        status.config.mapping_file = Some("/etc/<b>.yml".into());
        let html = render_html(&status, "/metrics\"><script>");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>"));
        assert_eq!(
            html.matches("<script>").count(),
            1,
            "only the page's own script"
        );
    }

    fn add_series(store: &Store, name: &str, n: usize) {
        for i in 0..n {
            store
                .resolve(&SeriesSpec {
                    name,
                    help: None,
                    kind: SeriesKind::Counter,
                    labels: vec![("l".into(), i.to_string())],
                    ttl: Duration::ZERO,
                    style: Default::default(),
                })
                .unwrap();
        }
    }

    #[test]
    fn top_metrics_are_by_series_then_name_and_bounded() {
        let store = Store::new(StoreOptions::default());
        for (i, name) in ["d", "c", "b", "a", "e"].iter().enumerate() {
            add_series(&store, name, 1 + i % 3);
        }
        // d:1 c:2 b:3 a:1 e:2
        let top = top_metrics(&store, 3);
        let got: Vec<(&str, usize)> = top.iter().map(|t| (t.name.as_str(), t.series)).collect();
        assert_eq!(got, [("b", 3), ("c", 2), ("e", 2)]);
        assert_eq!(top_metrics(&store, 20).len(), 5);
    }
}
