//! Routes, as statsd_exporter serves them (§3 of the reference notes).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use super::gzip::{Deflater, GzipFramer, accepts_gzip};
use super::negotiate::{Format, negotiate};
use super::protobuf;
use super::status::StatusPage;
use super::text::{RenderOptions, TextFormat, render_with, split_families};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// Chunk size of a streamed scrape.
const CHUNK_BYTES: usize = 256 * 1024;

/// What the lifecycle endpoints do.
pub trait Lifecycle: Send + Sync + 'static {
    /// Reloads the mapping configuration; the error says why it was refused.
    fn reload(&self) -> Result<(), String>;
    /// Starts a graceful shutdown.
    fn quit(&self);
}

/// HTTP options (flags `--web.*`).
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// `--web.telemetry-path`.
    pub telemetry_path: String,
    /// `--web.enable-lifecycle`.
    pub enable_lifecycle: bool,
    /// The status page at `/` (unless the metrics are served there) and `/api/v1/status`.
    pub status: StatusPage,
    /// How many threads render (and gzip) one scrape: [`default_render_threads`].
    pub render_threads: usize,
}

/// Threads per scrape by default: the machine's cores, up to four. They run at a lower
/// priority than ingest (`nice.rs`), so using every core costs the receive threads nothing.
pub fn default_render_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

#[derive(Clone)]
struct AppState {
    store: Arc<Store>,
    telemetry: Option<Telemetry>,
    lifecycle: Arc<dyn Lifecycle>,
    opts: Arc<HttpOptions>,
}

/// Builds the router.
pub fn router(
    store: Arc<Store>,
    telemetry: Option<Telemetry>,
    lifecycle: Arc<dyn Lifecycle>,
    opts: HttpOptions,
) -> Router {
    let path = if opts.telemetry_path.is_empty() {
        "/".to_string()
    } else {
        opts.telemetry_path.clone()
    };
    let state = AppState {
        store,
        telemetry,
        lifecycle,
        opts: Arc::new(opts),
    };
    let mut r = Router::new()
        .route(
            "/-/healthy",
            get(|| async { "Statsd Exporter is Healthy.\n" }),
        )
        .route("/-/ready", get(|| async { "Statsd Exporter is Ready.\n" }))
        .route("/api/v1/status", get(status_json))
        .route("/-/reload", axum::routing::put(reload).post(reload))
        .route("/-/quit", axum::routing::put(quit).post(quit))
        .route(&path, get(metrics));
    if path != "/" {
        r = r.route("/", get(status_page));
    }
    r.with_state(state)
}

async fn status_page(State(st): State<AppState>) -> Response {
    let page = st.opts.status.clone();
    match tokio::task::spawn_blocking(move || page.render_html()).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn status_json(State(st): State<AppState>) -> Response {
    let page = st.opts.status.clone();
    match tokio::task::spawn_blocking(move || page.render_json()).await {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn lifecycle_disabled() -> Response {
    (
        StatusCode::FORBIDDEN,
        "Lifecycle API is not enabled (start with --web.enable-lifecycle).\n",
    )
        .into_response()
}

async fn reload(State(st): State<AppState>) -> Response {
    if !st.opts.enable_lifecycle {
        return lifecycle_disabled();
    }
    let lc = st.lifecycle.clone();
    match tokio::task::spawn_blocking(move || lc.reload()).await {
        Ok(Ok(())) => "Requesting reload".into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Reload failed: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Reload failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn quit(State(st): State<AppState>) -> Response {
    if !st.opts.enable_lifecycle {
        return lifecycle_disabled();
    }
    st.lifecycle.quit();
    "Requesting termination... Goodbye!".into_response()
}

async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    // One chunk queued while the next renders: enough to keep the socket busy, and little
    // to hold (with the render threads) for a client that stops reading.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let store = st.store.clone();
    let telemetry = st.telemetry.clone();
    let threads = st.opts.render_threads;
    // Rendering walks locks and may take a while on a big store: keep it off the async
    // workers, and stream chunks as they are ready.
    tokio::task::spawn_blocking(move || {
        let extra = telemetry
            .map(|t| split_families(&t.render()))
            .unwrap_or_default();
        let emit = |chunk: Vec<u8>| tx.blocking_send(Bytes::from(chunk)).is_ok();
        let text = |format| RenderOptions {
            format,
            chunk_bytes: CHUNK_BYTES,
            threads,
            gzip,
        };
        match format {
            Format::Text => render_with(&store, &extra, &text(TextFormat::Prometheus), emit),
            Format::OpenMetrics { .. } => {
                render_with(&store, &extra, &text(TextFormat::OpenMetrics), emit)
            }
            Format::Protobuf if gzip => {
                let (mut deflater, mut framer) = (Deflater::default(), GzipFramer::default());
                protobuf::render(&store, &extra, CHUNK_BYTES, |chunk| {
                    emit(framer.frame(deflater.piece(&chunk)))
                }) && emit(framer.finish())
            }
            Format::Protobuf => protobuf::render(&store, &extra, CHUNK_BYTES, emit),
        };
    });
    // poll_fn over the receiver stays well-defined when polled again after the end, which
    // the compression layer does (an `unfold` stream panics then).
    let mut rx = rx;
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, Infallible>))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}
