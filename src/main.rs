//! statsgate's binary: flags → configuration → stages → wait for shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use statsgate::config::{self, CacheType, Flags, ProfileName};
use statsgate::expose::{self, HttpOptions, Lifecycle};
use statsgate::ingest::{self, TcpOptions, UdpOptions, UnixgramOptions};
use statsgate::line::Dialects;
use statsgate::mapping::{CacheKind, CacheOptions, Mapper};
use statsgate::pipeline::{Pipeline, Profile, Workers};
use statsgate::relay::RelayTarget;
use statsgate::remote_write::{self, RemoteWrite};
use statsgate::store::{Store, StoreOptions};
use statsgate::telemetry::{self, Telemetry};
use tokio::sync::Notify;
use tracing::{error, info, warn};

fn main() {
    let flags = match config::parse_args(std::env::args_os()) {
        Ok(f) => f,
        Err(e) => {
            // clap prints help/version to stdout with exit 0 and usage errors with exit 2.
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
    };
    statsgate::logging::init(flags.log_level, flags.log_format);
    if let Err(e) = run(flags) {
        error!("{e:#}");
        eprintln!("statsgate: {e:#}");
        std::process::exit(1);
    }
}

fn cache_options(flags: &Flags) -> CacheOptions {
    let kind = match flags.statsd_cache_type {
        CacheType::Lru => CacheKind::Lru,
        CacheType::Random => CacheKind::Random,
    };
    CacheOptions {
        size: flags.statsd_cache_size,
        kind,
    }
}

fn load_mapper(flags: &Flags) -> Result<Mapper> {
    let cache = cache_options(flags);
    match &flags.statsd_mapping_config {
        Some(p) => Mapper::load_file(p, cache)
            .with_context(|| format!("loading mapping config {}", p.display())),
        None => Ok(Mapper::empty(cache)),
    }
}

struct Control {
    pipeline: Arc<Pipeline>,
    mapping_path: Option<PathBuf>,
    cache: CacheOptions,
    quit: Arc<Notify>,
}

impl Lifecycle for Control {
    fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.mapping_path else {
            info!("reload requested, but no mapping config is set");
            return Ok(());
        };
        match self.pipeline.reload_from(path, self.cache) {
            Ok(n) => {
                info!(mappings = n, file = %path.display(), "mapping config reloaded");
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "mapping config reload failed; keeping the previous rules");
                Err(e.to_string())
            }
        }
    }

    fn quit(&self) {
        info!("termination requested over HTTP");
        self.quit.notify_one();
    }
}

fn run(flags: Flags) -> Result<()> {
    if flags.web_config_file.is_some() {
        bail!(
            "--web.config.file (TLS/basic auth) is not supported by statsgate yet; terminate TLS in front of it"
        );
    }
    if !flags.debug_dump_fsm.is_empty() {
        warn!("--debug.dump-fsm is not supported; ignoring it");
    }
    if flags.check_config {
        let m = load_mapper(&flags)?;
        println!(
            "Configuration check successful: {} mappings",
            m.rule_count()
        );
        return Ok(());
    }
    let udp =
        ingest::parse_listen_address(&flags.statsd_listen_udp).context("--statsd.listen-udp")?;
    let tcp =
        ingest::parse_listen_address(&flags.statsd_listen_tcp).context("--statsd.listen-tcp")?;
    let unixgram = (!flags.statsd_listen_unixgram.is_empty())
        .then(|| PathBuf::from(&flags.statsd_listen_unixgram));
    if udp.is_none() && tcp.is_none() && unixgram.is_none() {
        bail!("at least one of UDP/TCP/Unixgram listeners must be specified");
    }
    let web =
        ingest::parse_listen_address(&flags.web_listen_address).context("--web.listen-address")?;
    let remote_write_options = flags.remote_write.options()?;

    let telemetry = Telemetry::install()?;
    ingest::describe_metrics();
    let mapper = load_mapper(&flags)?;
    metrics::gauge!("statsd_exporter_loaded_mappings").set(mapper.rule_count() as f64);
    let store = Arc::new(Store::new(StoreOptions {
        reserved_names: [telemetry::reserved_names(), remote_write::metric_names()].concat(),
        ..Default::default()
    }));
    let dialects = Dialects {
        dogstatsd: flags.parse_dogstatsd_tags,
        influxdb: flags.parse_influxdb_tags,
        librato: flags.parse_librato_tags,
        signalfx: flags.parse_signalfx_tags,
        dogstatsd_tags_last: false,
    };
    let profile = match flags.profile {
        ProfileName::Statsd => Profile::Statsd,
        ProfileName::IstioMixer => Profile::IstioMixer,
        ProfileName::Envoy => Profile::envoy(&flags.envoy_prefix, &flags.envoy_tag_rules)?,
    };
    let mut pipeline = Pipeline::new(store.clone(), mapper, dialects, profile);
    if let Some(addr) = &flags.statsd_relay_address {
        let target = RelayTarget::new(addr, flags.statsd_relay_packet_length)
            .context("--statsd.relay.address")?;
        info!(target = %target.label, "relaying every received line");
        pipeline = pipeline.with_relay(target);
    }
    let pipeline = Arc::new(pipeline);
    let remote_write = remote_write_options
        .map(|o| RemoteWrite::start(store.clone(), Some(telemetry.clone()), o))
        .transpose()?;
    let workers = Arc::new(Workers(pipeline.clone()));

    let stop = Arc::new(AtomicBool::new(false));
    let maintenance = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::Builder::new()
            .name("statsgate-maint".into())
            .spawn(move || statsgate::store::run_maintenance(&store, &stop))
            .context("starting the maintenance thread")?
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("statsgate-io")
        .build()
        .context("starting the async runtime")?;
    let quit = Arc::new(Notify::new());
    let control = Arc::new(Control {
        pipeline: pipeline.clone(),
        mapping_path: flags.statsd_mapping_config.clone(),
        cache: cache_options(&flags),
        quit: quit.clone(),
    });

    rt.block_on(async {
        let mut listeners = Vec::new();
        if let Some(addr) = udp {
            let sockets = match flags.statsd_udp_sockets {
                0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                n => n,
            };
            let opts = UdpOptions { addr, sockets, read_buffer: flags.statsd_read_buffer, batch: 32 };
            let l = ingest::start_udp(&opts, workers.clone()).context("starting the UDP listener")?;
            info!(address = %l.local_addr().unwrap_or(addr), sockets, "accepting statsd over UDP");
            listeners.push(l);
        }
        if let Some(addr) = tcp {
            let l = ingest::start_tcp(&TcpOptions { addr }, workers.clone()).await.context("starting the TCP listener")?;
            info!(address = %l.local_addr().unwrap_or(addr), "accepting statsd over TCP");
            listeners.push(l);
        }
        if let Some(path) = unixgram {
            let opts = UnixgramOptions {
                path: path.clone(),
                mode: flags.statsd_unixsocket_mode,
                read_buffer: flags.statsd_read_buffer,
            };
            let l = ingest::start_unixgram(&opts, workers.clone()).context("starting the unixgram listener")?;
            info!(path = %path.display(), "accepting statsd over unixgram");
            listeners.push(l);
        }

        let hup_control = control.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                info!("SIGHUP received, reloading mapping config");
                let c = hup_control.clone();
                let _ = tokio::task::spawn_blocking(move || c.reload()).await;
            }
        });

        let shutdown = {
            let quit = quit.clone();
            async move {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "cannot install SIGTERM handler");
                        quit.notified().await;
                        return;
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => info!("interrupt received, shutting down"),
                    _ = term.recv() => info!("SIGTERM received, shutting down"),
                    _ = quit.notified() => {},
                }
            }
        };

        let opts = HttpOptions {
            telemetry_path: flags.web_telemetry_path.clone(),
            enable_lifecycle: flags.web_enable_lifecycle,
        };
        let app = expose::router(store.clone(), Some(telemetry), control.clone(), opts);
        match web {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the web listener on {addr}"))?;
                info!(address = %listener.local_addr().unwrap_or(addr), "serving metrics over HTTP");
                axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("HTTP server")?;
            }
            None => shutdown.await,
        }
        for l in listeners {
            l.shutdown();
        }
        Ok::<(), anyhow::Error>(())
    })?;
    if let Some(rw) = remote_write {
        rw.shutdown();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = maintenance.join();
    info!("stopped");
    Ok(())
}
