//! The HTTP server: statsgate's own accept loop over hyper, so that no client can hold the
//! gateway hostage and shutdown always ends.
//!
//! Every connection has a watchdog with one deadline at a time:
//! - waiting for a request with no byte of it yet: `idle_timeout` (the first request of a
//!   new connection gets `read_header_timeout` from accept instead);
//! - a request header (or, over TLS, the handshake) started: `read_header_timeout` from its
//!   first byte, however slowly the rest drips in (slowloris);
//! - a response under way: `write_timeout` since the client last took data. Time spent by
//!   the gateway itself (rendering, a bcrypt check) is not counted against the client.
//!
//! Open connections are capped at `max_connections`. When the cap is reached a new
//! connection evicts the connection that has waited longest for a request (an idle
//! keep-alive connection or one still dribbling its header); if every connection is busy
//! serving a request, the new one is closed at once. So a flood of idle or slow connections
//! can neither exhaust file descriptors nor lock a scraper out.
//!
//! Scrapes in flight are capped at `max_concurrent_scrapes` (each holds a rendering thread
//! and up to a few chunks of buffered text). Beyond it a scrape gets 503 at once, unless a
//! scrape in flight has been stalled, its client taking no data, for [`SCRAPE_STALL_EVICT`]:
//! that one is dropped and its slot goes to the newcomer. Clients that read get served;
//! clients that stop reading cannot pin threads or memory.
//!
//! On shutdown the listener closes, connections waiting for a request close at once, and
//! in-flight responses get `shutdown_grace` to finish before their connections are cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use metrics::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower_service::Service as _;

use super::auth::{AuthOutcome, Authenticator, RateLimiter};
use super::web_config::WebConfigHandle;
use crate::ingest::LogLimiter;

/// How long a scrape must have been stalled by its client before a new scrape may take its
/// slot. A reading client never stalls this long between two chunks; one that does while
/// others are turned away is the one to drop.
pub const SCRAPE_STALL_EVICT: Duration = Duration::from_secs(1);

/// Largest request head, and the most response bytes hyper queues before it stops asking
/// the body for more. Scrape requests are a few hundred bytes; Go allows 1 MiB of headers,
/// but 64 KiB per connection times `max_connections` is what bounds memory here.
const MAX_BUF: usize = 64 * 1024;

/// Descriptors kept for everything but HTTP connections when `max_connections` is fitted
/// to `RLIMIT_NOFILE`: statsd sockets and connections, files read on reload, the runtime.
const FD_RESERVE_FRACTION: u64 = 2;

static ACCEPT_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static TLS_ERROR_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
static REFUSED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Limits and timeouts of the HTTP server (flags `--web.*`, `--shutdown.grace-period`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Open connections allowed (`--web.max-connections`).
    pub max_connections: usize,
    /// Scrapes in flight allowed (`--web.max-concurrent-scrapes`).
    pub max_concurrent_scrapes: usize,
    /// Time allowed for a request header, from its first byte (`--web.read-header-timeout`).
    pub read_header_timeout: Duration,
    /// Time a connection may wait for its next request (`--web.idle-timeout`).
    pub idle_timeout: Duration,
    /// Time a response may wait for the client to take data (`--web.write-timeout`).
    pub write_timeout: Duration,
    /// Time in-flight responses get to finish on shutdown (`--shutdown.grace-period`).
    pub shutdown_grace: Duration,
    /// The path scrapes are served on (`--web.telemetry-path`; "" means `/`).
    pub scrape_path: String,
}

impl Default for ServerOptions {
    /// The flags' defaults.
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            max_concurrent_scrapes: 16,
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            scrape_path: "/metrics".into(),
        }
    }
}

/// Why the server closed a connection (the `reason` label of
/// `statsgate_http_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum CloseReason {
    ReadHeaderTimeout = 1,
    IdleTimeout = 2,
    WriteTimeout = 3,
    Evicted = 4,
    ScrapeEvicted = 5,
    Shutdown = 6,
}

impl CloseReason {
    const ALL: [CloseReason; 6] = [
        CloseReason::ReadHeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::WriteTimeout,
        CloseReason::Evicted,
        CloseReason::ScrapeEvicted,
        CloseReason::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            CloseReason::ReadHeaderTimeout => "read_header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::ScrapeEvicted => "stalled_scrape_evicted",
            CloseReason::Shutdown => "shutdown",
        }
    }

    fn from_code(c: u8) -> Option<CloseReason> {
        CloseReason::ALL.into_iter().find(|r| *r as u8 == c)
    }
}

/// Milliseconds since the server started, plus one, so that 0 can mean "not set".
#[derive(Clone, Copy, Debug)]
struct Clock {
    epoch: Instant,
}

impl Clock {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn instant(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_millis(ms.saturating_sub(1)))
    }
}

/// What the watchdog, the connection cap and the scrape slots know of one connection.
/// Written by the connection's own task and read by others, so plain atomics: every field
/// is a hint for a deadline, and a stale read only moves a deadline by one check.
#[derive(Debug)]
struct Conn {
    /// A request is being served (from its head being parsed until its body is done).
    busy: AtomicBool,
    /// When `busy` last changed.
    since: AtomicU64,
    /// First byte of the request being waited for; 0 while none arrived.
    first_byte: AtomicU64,
    /// When hyper last asked the response body for data.
    polled: AtomicU64,
    /// The gateway, not the client, is what the response waits for.
    awaiting_us: AtomicBool,
    /// Set (once) to a [`CloseReason`] when something else decides to close it.
    closing: AtomicU8,
    wake: Notify,
}

impl Conn {
    fn new(now: u64) -> Conn {
        Conn {
            busy: AtomicBool::new(false),
            since: AtomicU64::new(now),
            // The first request's header is timed from accept.
            first_byte: AtomicU64::new(now),
            polled: AtomicU64::new(now),
            awaiting_us: AtomicBool::new(false),
            closing: AtomicU8::new(0),
            wake: Notify::new(),
        }
    }

    fn close(&self, reason: CloseReason) {
        if self
            .closing
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_code(self.closing.load(Ordering::Acquire))
    }

    fn begin_request(&self, now: u64) {
        self.busy.store(true, Ordering::Release);
        self.since.store(now, Ordering::Release);
        self.polled.store(now, Ordering::Release);
        self.awaiting_us.store(true, Ordering::Release);
    }

    fn end_request(&self, now: u64) {
        self.first_byte.store(0, Ordering::Release);
        self.since.store(now, Ordering::Release);
        self.awaiting_us.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
    }

    fn saw_bytes(&self, now: u64) {
        if !self.busy.load(Ordering::Acquire) && self.first_byte.load(Ordering::Acquire) == 0 {
            self.first_byte.store(now, Ordering::Release);
        }
    }

    /// How long the client has left a response waiting (0 when not stalled).
    fn stalled_for(&self, now: u64) -> u64 {
        if self.busy.load(Ordering::Acquire) && !self.awaiting_us.load(Ordering::Acquire) {
            now.saturating_sub(self.polled.load(Ordering::Acquire))
        } else {
            0
        }
    }

    /// The next deadline and what passing it means; `None` means "check again then".
    fn deadline(&self, opts: &ServerOptions) -> (u64, Option<CloseReason>) {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.busy.load(Ordering::Acquire) {
            let polled = self.polled.load(Ordering::Acquire);
            if self.awaiting_us.load(Ordering::Acquire) {
                (polled + ms(opts.write_timeout), None)
            } else {
                (
                    polled + ms(opts.write_timeout),
                    Some(CloseReason::WriteTimeout),
                )
            }
        } else {
            match self.first_byte.load(Ordering::Acquire) {
                0 => (
                    self.since.load(Ordering::Acquire) + ms(opts.idle_timeout),
                    Some(CloseReason::IdleTimeout),
                ),
                first => (
                    first + ms(opts.read_header_timeout),
                    Some(CloseReason::ReadHeaderTimeout),
                ),
            }
        }
    }
}

/// Resolves when the connection has outlived its current deadline.
async fn watchdog(conn: &Conn, clock: Clock, opts: &ServerOptions) -> CloseReason {
    loop {
        let (deadline, reason) = conn.deadline(opts);
        if let Some(reason) = reason
            && clock.now() >= deadline
        {
            return reason;
        }
        // State may have moved the deadline while sleeping; it is recomputed on waking.
        let at = deadline.max(clock.now() + 1);
        tokio::time::sleep_until(clock.instant(at)).await;
    }
}

/// The open connections, for the cap.
struct ConnTable {
    max: usize,
    inner: Mutex<(u64, HashMap<u64, Arc<Conn>>)>,
}

impl ConnTable {
    /// Registers a new connection, evicting the one that has waited longest for a request
    /// when the table is full. `None`: every connection is busy; refuse the new one.
    fn admit(&self, now: u64) -> Option<(u64, Arc<Conn>)> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (next_id, conns) = &mut *guard;
        if conns.len() >= self.max {
            let victim = conns
                .iter()
                .filter(|(_, c)| !c.busy.load(Ordering::Acquire))
                .min_by_key(|(_, c)| c.since.load(Ordering::Acquire))
                .map(|(id, _)| *id)?;
            // Removed now, so the table counts only connections that stay; the victim's
            // descriptor closes as soon as its task sees the notification.
            if let Some(c) = conns.remove(&victim) {
                c.close(CloseReason::Evicted);
            }
        }
        *next_id += 1;
        let conn = Arc::new(Conn::new(now));
        conns.insert(*next_id, conn.clone());
        Some((*next_id, conn))
    }

    fn remove(&self, id: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.remove(&id);
    }
}

/// A taken scrape slot: the generation that took it, and the scrape's connection.
type Slot = Option<(u64, Arc<Conn>)>;

/// Slots for scrapes in flight, and the next generation number.
struct ScrapeSlots {
    inner: Mutex<(u64, Vec<Slot>)>,
}

/// A scrape's slot, freed on drop unless a newcomer has taken it over.
struct ScrapePermit {
    slots: Arc<ScrapeSlots>,
    index: usize,
    generation: u64,
}

impl Drop for ScrapePermit {
    fn drop(&mut self) {
        let mut guard = self.slots.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = guard.1.get_mut(self.index)
            && slot.as_ref().is_some_and(|(g, _)| *g == self.generation)
        {
            *slot = None;
        }
    }
}

impl ScrapeSlots {
    fn new(n: usize) -> Arc<ScrapeSlots> {
        Arc::new(ScrapeSlots {
            inner: Mutex::new((0, vec![None; n.max(1)])),
        })
    }

    /// A slot for `conn`'s scrape: a free one, or the one of the scrape stalled longest
    /// (at least [`SCRAPE_STALL_EVICT`]), whose connection is then closed.
    fn admit(self: &Arc<Self>, conn: &Arc<Conn>, now: u64) -> Option<ScrapePermit> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (next_gen, slots) = &mut *guard;
        let index = match slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                let min_stall = SCRAPE_STALL_EVICT.as_millis() as u64;
                let (i, stall) = slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.as_ref().map(|(_, c)| (i, c.stalled_for(now))))
                    .max_by_key(|(_, stall)| *stall)?;
                if stall < min_stall {
                    return None;
                }
                if let Some((_, victim)) = &slots[i] {
                    victim.close(CloseReason::ScrapeEvicted);
                }
                i
            }
        };
        *next_gen += 1;
        slots[index] = Some((*next_gen, conn.clone()));
        Some(ScrapePermit {
            slots: self.clone(),
            index,
            generation: *next_gen,
        })
    }
}

/// A response body that reports to its connection when the client takes data and when the
/// response is done, and holds the scrape slot until then.
struct Tracked {
    inner: Body,
    conn: Arc<Conn>,
    clock: Clock,
    done: bool,
    _permit: Option<ScrapePermit>,
}

impl Tracked {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.conn.end_request(self.clock.now());
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // hyper asks for more only once what it holds has gone to the socket: being asked
        // is the client's progress.
        this.conn.polled.store(this.clock.now(), Ordering::Release);
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        this.conn
            .awaiting_us
            .store(r.is_pending(), Ordering::Release);
        if let Poll::Ready(None) = r {
            this.finish();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting the first byte of each request for the header timeout.
struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
    clock: Clock,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.saw_bytes(this.clock.now());
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

struct Counters {
    refused: Counter,
    scrapes_rejected: Counter,
    auth_failures: Counter,
    rate_limited: Counter,
    tls_errors: Counter,
}

struct Shared {
    router: Router,
    web: Option<Arc<WebConfigHandle>>,
    auth: Authenticator,
    limiter: RateLimiter,
    slots: Arc<ScrapeSlots>,
    conns: ConnTable,
    opts: ServerOptions,
    clock: Clock,
    counters: Counters,
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Shared {
    async fn handle(&self, req: Request<Incoming>, conn: &Arc<Conn>) -> Response<Tracked> {
        conn.begin_request(self.clock.now());
        let cfg = self.web.as_ref().map(|w| w.current());
        let mut permit = None;
        let mut resp = 'resp: {
            if let Some(cfg) = &cfg {
                if let Some(limit) = cfg.rate_limit
                    && !self.limiter.allow(limit)
                {
                    self.counters.rate_limited.increment(1);
                    break 'resp plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
                }
                if cfg.auth_enabled() {
                    let given = req.headers().get(header::AUTHORIZATION);
                    match self.auth.check(&cfg.users, given).await {
                        AuthOutcome::Allowed => {}
                        AuthOutcome::Denied => {
                            self.counters.auth_failures.increment(1);
                            let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                            r.headers_mut().insert(
                                header::WWW_AUTHENTICATE,
                                HeaderValue::from_static("Basic"),
                            );
                            break 'resp r;
                        }
                        AuthOutcome::Busy => {
                            break 'resp plain(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "Too many authentication checks in progress\n",
                            );
                        }
                    }
                }
            }
            if req.uri().path() == self.opts.scrape_path {
                match self.slots.admit(conn, self.clock.now()) {
                    Some(p) => permit = Some(p),
                    None => {
                        self.counters.scrapes_rejected.increment(1);
                        break 'resp plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Too many concurrent scrapes\n",
                        );
                    }
                }
            }
            let mut router = self.router.clone();
            match router.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        };
        if let Some(cfg) = &cfg {
            for (name, value) in &cfg.headers {
                resp.headers_mut().insert(name.clone(), value.clone());
            }
        }
        resp.map(|inner| Tracked {
            inner,
            conn: conn.clone(),
            clock: self.clock,
            done: false,
            _permit: permit,
        })
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains as described in
/// the module docs and returns.
///
/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does for
/// statsd_exporter, and lowers `max_connections` to half the limit if it is above it, so
/// HTTP alone can never exhaust descriptors.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Option<Arc<WebConfigHandle>>,
    mut opts: ServerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if let Some(limit) = raise_open_files_limit() {
        let fit = usize::try_from(limit / FD_RESERVE_FRACTION).unwrap_or(usize::MAX);
        if opts.max_connections > fit {
            tracing::warn!(
                requested = opts.max_connections,
                used = fit,
                open_files_limit = limit,
                "--web.max-connections is above half the open-files limit; lowering it"
            );
            opts.max_connections = fit;
        }
    }
    opts.max_connections = opts.max_connections.max(1);
    if opts.scrape_path.is_empty() {
        opts.scrape_path = "/".into();
    }
    let closed: Vec<(CloseReason, Counter)> = CloseReason::ALL
        .into_iter()
        .map(|r| {
            (
                r,
                metrics::counter!("statsgate_http_connections_closed_total", "reason" => r.label()),
            )
        })
        .collect();
    let shared = Arc::new(Shared {
        router,
        web,
        auth: Authenticator::new(),
        limiter: RateLimiter::new(),
        slots: ScrapeSlots::new(opts.max_concurrent_scrapes),
        conns: ConnTable {
            max: opts.max_connections,
            inner: Mutex::new((0, HashMap::new())),
        },
        clock: Clock {
            epoch: Instant::now(),
        },
        counters: Counters {
            refused: metrics::counter!("statsgate_http_connections_refused_total"),
            scrapes_rejected: metrics::counter!("statsgate_http_scrapes_rejected_total"),
            auth_failures: metrics::counter!("statsgate_http_auth_failures_total"),
            rate_limited: metrics::counter!("statsgate_http_rate_limited_total"),
            tls_errors: metrics::counter!("statsgate_http_tls_handshake_errors_total"),
        },
        opts,
    });
    let closed = Arc::new(closed);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => match shared.conns.admit(shared.clock.now()) {
                    Some((id, conn)) => {
                        tasks.spawn(run_connection(
                            stream,
                            id,
                            conn,
                            shared.clone(),
                            closed.clone(),
                            stop_rx.clone(),
                        ));
                    }
                    None => {
                        shared.counters.refused.increment(1);
                        if REFUSED_LOG.allow() {
                            tracing::warn!(
                                max = shared.opts.max_connections,
                                "HTTP connection refused: every connection is busy serving a request"
                            );
                        }
                        drop(stream);
                    }
                },
                Err(err) => {
                    if ACCEPT_ERROR_LOG.allow() {
                        tracing::warn!(error = %err, "HTTP accept failed");
                    }
                    // EMFILE and friends last until something closes; do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = shared.opts.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            grace = ?grace,
            "shutdown grace period over; closing the HTTP connections still open"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

async fn run_connection(
    stream: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    closed: Arc<Vec<(CloseReason, Counter)>>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = Watched {
        inner: stream,
        conn: conn.clone(),
        clock: shared.clock,
    };
    let tls = shared.web.as_ref().and_then(|w| w.current().tls.clone());
    let reason = match tls {
        None => drive(TokioIo::new(io), &conn, &shared, stop).await,
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let mut stop_hs = stop.clone();
            let handshake = tokio::select! {
                r = acceptor.accept(io) => Ok(r),
                reason = watchdog(&conn, shared.clock, &shared.opts) => Err(Some(reason)),
                _ = conn.wake.notified() => Err(conn.close_reason()),
                _ = stop_hs.wait_for(|s| *s) => Err(Some(CloseReason::Shutdown)),
            };
            match handshake {
                Ok(Ok(tls_stream)) => drive(TokioIo::new(tls_stream), &conn, &shared, stop).await,
                Ok(Err(err)) => {
                    shared.counters.tls_errors.increment(1);
                    if TLS_ERROR_LOG.allow() {
                        tracing::debug!(error = %err, "TLS handshake failed");
                    }
                    None
                }
                Err(reason) => reason,
            }
        }
    };
    if let Some(reason) = reason
        && let Some((_, c)) = closed.iter().find(|(r, _)| *r == reason)
    {
        c.increment(1);
    }
    shared.conns.remove(id);
}

/// Serves HTTP/1.1 on `io` until the client leaves, a deadline passes, the connection is
/// evicted, or shutdown ends it. Returns why the server closed it, if it did.
async fn drive<I>(
    io: I,
    conn: &Arc<Conn>,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Option<CloseReason>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = {
        let shared = shared.clone();
        let conn = conn.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let shared = shared.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(shared.handle(req, &conn).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(MAX_BUF)
        // The watchdog times headers, with its own notion of when a header starts.
        .header_read_timeout(None::<Duration>)
        .keep_alive(true);
    let http = builder.serve_connection(io, svc);
    tokio::pin!(http);
    let mut draining = false;
    loop {
        tokio::select! {
            r = http.as_mut() => {
                if let Err(err) = r {
                    tracing::debug!(error = %err, "HTTP connection ended with an error");
                }
                return None;
            }
            reason = watchdog(conn, shared.clock, &shared.opts) => return Some(reason),
            _ = conn.wake.notified() => return conn.close_reason(),
            _ = stop.wait_for(|s| *s), if !draining => {
                if !conn.busy.load(Ordering::Acquire) {
                    return Some(CloseReason::Shutdown);
                }
                // Finish the response in flight, then close.
                draining = true;
                http.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Connections the kernel queues before `accept`, as Go asks (`somaxconn`, capped there by
/// the kernel): a burst of new connections must not be dropped while the accept loop is busy.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the web listener (dual-stack for `[::]`, `SO_REUSEADDR` so a restart can bind while
/// old connections sit in TIME_WAIT) with a backlog of [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let SocketAddr::V6(v6) = addr
        && v6.ip().is_unspecified()
    {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Raises the soft open-files limit to the hard one; returns the soft limit now in force
/// (`None` when unlimited or unknown).
fn raise_open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_table_evicts_the_longest_waiting_idle_connection() {
        let t = ConnTable {
            max: 2,
            inner: Mutex::new((0, HashMap::new())),
        };
        let (_, a) = t.admit(10).unwrap();
        let (_, b) = t.admit(20).unwrap();
        b.begin_request(25);
        let (_, _c) = t.admit(30).unwrap();
        assert_eq!(a.close_reason(), Some(CloseReason::Evicted));
        assert_eq!(b.close_reason(), None);
    }

    #[test]
    fn full_table_of_busy_connections_refuses() {
        let t = ConnTable {
            max: 1,
            inner: Mutex::new((0, HashMap::new())),
        };
        let (_, a) = t.admit(1).unwrap();
        a.begin_request(2);
        assert!(t.admit(3).is_none());
        assert_eq!(a.close_reason(), None);
    }

    #[test]
    fn scrape_slots_go_to_stalled_scrapes_only_after_the_stall_bound() {
        let slots = ScrapeSlots::new(1);
        let a = Arc::new(Conn::new(1));
        a.begin_request(1);
        let pa = slots.admit(&a, 1).unwrap();
        // The gateway is still rendering: not the client's fault, never evicted.
        let b = Arc::new(Conn::new(1));
        assert!(slots.admit(&b, 10_000).is_none());
        // The client stopped taking data at t=100.
        a.polled.store(100, Ordering::Release);
        a.awaiting_us.store(false, Ordering::Release);
        assert!(slots.admit(&b, 500).is_none());
        let pb = slots
            .admit(&b, 100 + SCRAPE_STALL_EVICT.as_millis() as u64)
            .unwrap();
        assert_eq!(a.close_reason(), Some(CloseReason::ScrapeEvicted));
        // The evicted scrape's permit no longer frees the slot it lost.
        drop(pa);
        let c = Arc::new(Conn::new(1));
        assert!(slots.admit(&c, 2_000).is_none());
        drop(pb);
        assert!(slots.admit(&c, 2_000).is_some());
    }

    #[test]
    fn deadlines_follow_the_connection_phase() {
        let opts = ServerOptions::default();
        let c = Conn::new(1);
        // A new connection: its first header is due read_header_timeout after accept.
        assert_eq!(
            c.deadline(&opts),
            (10_001, Some(CloseReason::ReadHeaderTimeout))
        );
        c.begin_request(50);
        assert_eq!(c.deadline(&opts).1, None);
        c.awaiting_us.store(false, Ordering::Release);
        assert_eq!(c.deadline(&opts), (30_050, Some(CloseReason::WriteTimeout)));
        c.end_request(100);
        assert_eq!(c.deadline(&opts), (300_100, Some(CloseReason::IdleTimeout)));
        c.saw_bytes(200);
        assert_eq!(
            c.deadline(&opts),
            (10_200, Some(CloseReason::ReadHeaderTimeout))
        );
    }
}
