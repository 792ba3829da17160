//! Prometheus remote_write 1.0: pushes every series `/metrics` shows to one or more
//! receivers (Prometheus, VictoriaMetrics, Mimir, Thanos receive, ...).
//!
//! Data path: every `--remote-write.interval` a snapshot walks the store family by family,
//! as a scrape does, expands each series through [`crate::expose::samples`] (the text
//! exposition's own expansion) and appends the gateway's self-metrics; all its samples
//! carry one timestamp. The snapshot is encoded once into requests of at most
//! `--remote-write.batch-size` samples, snappy-compressed, and handed to every URL's
//! bounded queue. Each URL's sender posts the requests of one snapshot (a few in flight),
//! retrying 5xx, 429 and transport errors with jittered exponential backoff, and starts
//! the next snapshot only when the previous one is done, so a series' samples reach a
//! receiver in time order. A full queue drops its oldest requests.
//!
//! All of it runs on one thread of its own (a current-thread runtime plus a blocking
//! thread for the snapshot), 10 nice levels below the rest of the process: the receive threads never
//! wait for it, and under CPU contention it yields to them. A series that vanished (TTL
//! expiry) gets Prometheus's staleness marker in the next push.
//!
//! Self-metrics, by URL: `statsgate_remote_write_samples_total`,
//! `_failed_samples_total{reason}`, `_retries_total`, `_queue_length`, `_sent_bytes_total`,
//! `_last_success_timestamp_seconds`; and `statsgate_remote_write_snapshot_seconds`.

mod client;
pub mod proto;
mod queue;
mod snapshot;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::{Counter, Gauge};
use tokio::sync::watch;
use tracing::{info, warn};

use client::{Client, Outcome};
use queue::{Batch, Queue};
use snapshot::Snapshotter;

use crate::store::Store;
use crate::telemetry::{Telemetry, catalog};

/// How the push behaves; [`crate::cli::RemoteWriteFlags::options`] builds it from the command line.
#[derive(Clone, Debug)]
pub struct RemoteWriteOptions {
    /// One entry per receiver; each gets its own queue and sender.
    pub targets: Vec<Target>,
    /// Time between two snapshots.
    pub interval: Duration,
    /// Most samples in one request.
    pub batch_size: usize,
    /// Most samples a URL's queue holds (waiting or in flight) before it drops its oldest.
    pub queue_capacity: usize,
    /// Requests of one snapshot in flight at once, per URL.
    pub concurrency: usize,
    /// Deadline of one request, body included.
    pub timeout: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long the final push at shutdown may take.
    pub flush_timeout: Duration,
}

/// One receiver.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `http://` or `https://` URL of the receiver's write endpoint.
    pub url: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Basic auth user name; the password is read from `password_file`.
    pub basic_auth: Option<BasicAuth>,
    /// A file holding a bearer token, sent as `Authorization: Bearer ...`.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings for an `https://` URL.
    pub tls: TlsOptions,
}

/// Basic auth credentials.
#[derive(Clone, Debug)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// A file holding the password (surrounding whitespace trimmed).
    pub password_file: Option<PathBuf>,
}

/// TLS client settings, Prometheus's `tls_config`.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM CA certificates that replace the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// Name to verify the server's certificate against instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// Why remote_write could not start.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// A flag's value is not usable.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A URL does not parse or has an unsupported scheme.
    #[error("--remote-write.url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A credential, certificate or key file cannot be read or is not valid.
    #[error("{what} {path}: {reason}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS configuration is refused.
    #[error("TLS for {url}: {reason}")]
    Tls {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The push thread or its runtime could not start.
    #[error("starting the remote_write thread: {0}")]
    Thread(std::io::Error),
}

/// Why samples were dropped; the names are the `reason` label of
/// `statsgate_remote_write_failed_samples_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full: the oldest requests made room for a newer snapshot.
    QueueFull,
    /// The receiver answered a 4xx other than 429: retrying the same request cannot help.
    Rejected,
    /// The final push at shutdown ran out of time.
    Shutdown,
}

impl DropReason {
    const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::Shutdown,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// One URL's self-metrics, registered up front so they show as 0 before anything moves.
#[derive(Clone)]
struct UrlMetrics {
    samples: Counter,
    failed: [Counter; 3],
    retries: Counter,
    sent_bytes: Counter,
    queue_length: Gauge,
    last_success: Gauge,
}

impl UrlMetrics {
    fn new(url: &str) -> UrlMetrics {
        let url = url.to_string();
        UrlMetrics {
            samples: catalog::REMOTE_WRITE_SAMPLES.counter([url.clone().into()]),
            failed: DropReason::ALL.map(|r| {
                catalog::REMOTE_WRITE_FAILED_SAMPLES
                    .counter([r.as_str().into(), url.clone().into()])
            }),
            retries: catalog::REMOTE_WRITE_RETRIES.counter([url.clone().into()]),
            sent_bytes: catalog::REMOTE_WRITE_SENT_BYTES.counter([url.clone().into()]),
            queue_length: catalog::REMOTE_WRITE_QUEUE_LENGTH.gauge([url.clone().into()]),
            last_success: catalog::REMOTE_WRITE_LAST_SUCCESS.gauge([url.into()]),
        }
    }

    fn dropped(&self, reason: DropReason, samples: usize) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.failed[i].increment(samples as u64);
    }
}

/// A running push; [`shutdown`](RemoteWrite::shutdown) stops it after one last push.
#[derive(Debug)]
pub struct RemoteWrite {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RemoteWrite {
    /// Starts the push thread: a snapshot every `opts.interval` (the first one interval
    /// from now), sent to every target. `telemetry` adds the gateway's own metrics to
    /// each snapshot, as `/metrics` shows them.
    pub fn start(
        store: Arc<Store>,
        telemetry: Option<Telemetry>,
        opts: RemoteWriteOptions,
    ) -> Result<RemoteWrite, RemoteWriteError> {
        let mut senders = Vec::with_capacity(opts.targets.len());
        for target in &opts.targets {
            let client = Client::new(target, opts.timeout)?;
            let metrics = UrlMetrics::new(client.label());
            info!(url = %client.label(), interval = ?opts.interval, "pushing every series with remote_write");
            senders.push(Sender {
                queue: Arc::new(Queue::new(opts.queue_capacity)),
                client: Arc::new(client),
                metrics,
            });
        }
        let (stop, stopped) = watch::channel(false);
        let snapshotter = Snapshotter::new(store, telemetry, opts.batch_size);
        let thread = std::thread::Builder::new()
            .name("statsgate-rw".into())
            .spawn(move || {
                // Before the runtime exists: its blocking threads (the snapshot, DNS) are
                // started from this thread and inherit its priority.
                lower_priority();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("statsgate-rw-snap")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the remote_write runtime; not pushing");
                        return;
                    }
                };
                rt.block_on(run(snapshotter, senders, opts, stopped));
            })
            .map_err(RemoteWriteError::Thread)?;
        Ok(RemoteWrite {
            stop,
            thread: Some(thread),
        })
    }

    /// Takes one last snapshot, sends it and what is still queued, and returns once all is
    /// sent or `--remote-write.flush-timeout` ran out (what is left is counted as dropped,
    /// `reason="shutdown"`). Call after intake stopped, so the last push holds every event.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RemoteWrite {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Moves the calling thread 10 nice levels behind the rest of the process (the receive
/// threads) in the scheduler's eyes: a push may be late, ingestion must not be.
fn lower_priority() {
    // SAFETY: nice takes a plain integer and touches no memory of ours. On Linux it changes
    // the calling thread only (the nice value is per thread), and threads it starts
    // inherit it. A failure leaves the priority as it was, which is harmless.
    let _ = unsafe { libc::nice(10) };
}

/// One URL: its queue, client and self-metrics.
#[derive(Clone)]
struct Sender {
    queue: Arc<Queue>,
    client: Arc<Client>,
    metrics: UrlMetrics,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn run(
    mut snapshotter: Snapshotter,
    senders: Vec<Sender>,
    opts: RemoteWriteOptions,
    mut stopped: watch::Receiver<bool>,
) {
    let opts = Arc::new(opts);
    let mut tasks = tokio::task::JoinSet::new();
    for s in &senders {
        tasks.spawn(run_sender(s.clone(), opts.clone()));
    }
    let snapshot_seconds = catalog::REMOTE_WRITE_SNAPSHOT_SECONDS.gauge([]);
    let start = tokio::time::Instant::now() + opts.interval;
    let mut ticks = tokio::time::interval_at(start, opts.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_timestamp = i64::MIN;
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            r = stopped.changed() => { let _ = r; true }
        };
        let began = std::time::Instant::now();
        // Never backwards, even if the wall clock is stepped back: receivers refuse
        // samples older than a series' last one.
        let timestamp = unix_ms(SystemTime::now()).max(last_timestamp.saturating_add(1));
        last_timestamp = timestamp;
        // The walk and the encoding are CPU work: off this thread, so the senders keep
        // sending meanwhile.
        let job = tokio::task::spawn_blocking(move || {
            let batches = snapshotter.take(timestamp);
            (snapshotter, batches)
        });
        let batches = match job.await {
            Ok((s, b)) => {
                snapshotter = s;
                b
            }
            Err(e) => {
                tracing::error!(error = %e, "remote_write snapshot failed; stopping the push");
                break;
            }
        };
        snapshot_seconds.set(began.elapsed().as_secs_f64());
        for s in &senders {
            let dropped = s.queue.push(batches.clone());
            if dropped > 0 {
                s.metrics.dropped(DropReason::QueueFull, dropped);
            }
            s.metrics.queue_length.set(s.queue.held() as f64);
        }
        if last {
            break;
        }
    }
    for s in &senders {
        s.queue.close();
    }
    let flushed = tokio::time::timeout(opts.flush_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if flushed.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for s in &senders {
            let left = s.queue.held();
            if left > 0 {
                warn!(url = %s.client.label(), samples = left, "remote_write flush at shutdown ran out of time");
                s.metrics.dropped(DropReason::Shutdown, left);
            }
        }
    }
}

/// Sends one URL's snapshots in order until its queue is closed and empty.
async fn run_sender(s: Sender, opts: Arc<RemoteWriteOptions>) {
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(batches) = s.queue.next_snapshot().await {
        s.metrics.queue_length.set(s.queue.held() as f64);
        for batch in batches {
            while in_flight.len() >= opts.concurrency.max(1) {
                in_flight.join_next().await;
            }
            in_flight.spawn(send_batch(s.clone(), opts.clone(), batch));
        }
        // The next snapshot starts only when this one is done: a series' samples then
        // reach the receiver in time order, which Prometheus requires.
        while in_flight.join_next().await.is_some() {}
    }
}

/// Sends one request until it is accepted or refused for good.
async fn send_batch(s: Sender, opts: Arc<RemoteWriteOptions>, batch: Batch) {
    let mut backoff = Backoff::new(opts.min_backoff, opts.max_backoff);
    loop {
        match s.client.send(batch.body.clone()).await {
            Outcome::Sent => {
                s.metrics.samples.increment(batch.samples as u64);
                s.metrics.sent_bytes.increment(batch.body.len() as u64);
                s.metrics
                    .last_success
                    .set(unix_ms(SystemTime::now()) as f64 / 1000.0);
                break;
            }
            Outcome::Rejected(why) => {
                s.client.diagnose(&why, false);
                s.metrics.dropped(DropReason::Rejected, batch.samples);
                break;
            }
            Outcome::Retry { why, after } => {
                s.client.diagnose(&why, true);
                s.metrics.retries.increment(1);
                let wait = backoff
                    .next_delay()
                    .max(after.unwrap_or_default().min(opts.max_backoff));
                tokio::time::sleep(wait).await;
            }
        }
    }
    s.queue.done(batch.samples);
    s.metrics.queue_length.set(s.queue.held() as f64);
}

/// Exponential backoff with jitter: each delay doubles up to the cap, and is drawn from
/// its upper half so that many senders retrying together spread out.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min.max(Duration::from_millis(1)),
            max: max.max(min),
        }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = (d * 2).min(self.max);
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        let caps = [100, 200, 400, 500, 500, 500];
        for (d, cap) in delays.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(
                *d >= cap / 2 && *d <= cap,
                "{d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
    }

    #[test]
    fn reasons_are_distinct_label_values() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
