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
//! scrape in flight has been stalled, its client taking no data, for
//! [`SCRAPE_STALL_EVICT`](super::SCRAPE_STALL_EVICT):
//! that one is dropped and its slot goes to the newcomer. Clients that read get served;
//! clients that stop reading cannot pin threads or memory.
//!
//! On shutdown the listener closes, connections waiting for a request close at once, and
//! in-flight responses get `shutdown_grace` to finish before their connections are cut.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_service::Service as _;

use super::auth::{AuthOutcome, Authenticator, RateLimiter};
use super::limits::{Clock, CloseReason, Conn, ConnTable, ScrapePermit, ScrapeSlots, watchdog};
use super::web_config::WebConfigHandle;
use crate::logging::LogLimiter;
use crate::telemetry::catalog;

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
        let now = this.clock.now();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        this.conn.record_poll(now, r.is_pending());
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
/// Lowers `max_connections` to half the open-files limit if it is above it, so HTTP alone
/// can never exhaust descriptors.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Option<Arc<WebConfigHandle>>,
    mut opts: ServerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if let Some(limit) = open_files_limit() {
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
                catalog::HTTP_CONNECTIONS_CLOSED.counter([r.label().into()]),
            )
        })
        .collect();
    let shared = Arc::new(Shared {
        router,
        web,
        auth: Authenticator::new(),
        limiter: RateLimiter::new(),
        slots: ScrapeSlots::new(opts.max_concurrent_scrapes),
        conns: ConnTable::new(opts.max_connections),
        clock: Clock {
            epoch: Instant::now(),
        },
        counters: Counters {
            refused: catalog::HTTP_CONNECTIONS_REFUSED.counter([]),
            scrapes_rejected: catalog::HTTP_SCRAPES_REJECTED.counter([]),
            auth_failures: catalog::HTTP_AUTH_FAILURES.counter([]),
            rate_limited: catalog::HTTP_RATE_LIMITED.counter([]),
            tls_errors: catalog::HTTP_TLS_HANDSHAKE_ERRORS.counter([]),
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
                        if let Some(suppressed) = REFUSED_LOG.allow() {
                            tracing::warn!(
                                max = shared.opts.max_connections,
                                suppressed,
                                "HTTP connection refused: every connection is busy serving a request"
                            );
                        }
                        drop(stream);
                    }
                },
                Err(err) => {
                    if let Some(suppressed) = ACCEPT_ERROR_LOG.allow() {
                        tracing::warn!(error = %err, suppressed, "HTTP accept failed");
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
                reason = conn.closed() => Err(reason),
                _ = stop_hs.wait_for(|s| *s) => Err(Some(CloseReason::Shutdown)),
            };
            match handshake {
                Ok(Ok(tls_stream)) => drive(TokioIo::new(tls_stream), &conn, &shared, stop).await,
                Ok(Err(err)) => {
                    shared.counters.tls_errors.increment(1);
                    if let Some(suppressed) = TLS_ERROR_LOG.allow() {
                        tracing::debug!(error = %err, suppressed, "TLS handshake failed");
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
            reason = conn.closed() => return reason,
            _ = stop.wait_for(|s| *s), if !draining => {
                if !conn.is_busy() {
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
/// old connections sit in TIME_WAIT) with a backlog of 4096.
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

/// The soft open-files limit in force (`None` when unlimited or unknown). `main` raised it
/// to the hard limit at startup ([`crate::ingest::raise_descriptor_limit`]).
fn open_files_limit() -> Option<u64> {
    crate::ingest::descriptor_limit()
        .ok()
        .map(|l| l.soft)
        .filter(|&soft| soft != libc::RLIM_INFINITY)
}
