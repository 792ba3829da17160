//! statsgate's binary: flags → configuration → stages → wait for shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::ValueEnum as _;
use statsgate::cli::{self, Flags};
use statsgate::expose::{
    self, HttpOptions, Lifecycle, ServerOptions, StatusPage, StatusSetup, WebConfigHandle,
};
use statsgate::ingest::{
    self, RelayTarget, Relayed, UdpOptions, UnixgramOptions, parse_listen_address,
};
use statsgate::mapping::LiveMapper;
use statsgate::remote_write::RemoteWrite;
use statsgate::store::{Maintenance, Store, StoreOptions};
use statsgate::telemetry::{self, Telemetry};
use statsgate::worker::Workers;
use tokio::sync::Notify;
use tracing::{error, info, warn};

fn main() {
    let flags = match cli::parse_args(std::env::args_os()) {
        Ok(f) => f,
        Err(e) => {
            // clap prints help/version to stdout with exit 0 and usage errors with exit 2.
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
    };
    statsgate::logging::init(flags.log_level, flags.log_format);
    if let Err(e) = run(flags) {
        // One line, on stderr like every log line, in the format asked for.
        error!("{}", describe(&e));
        std::process::exit(1);
    }
}

/// An error and its causes on one line, each cause once. The library's errors end their
/// message with their cause (`cannot bind tcp socket to ...: Address already in use`), so
/// a cause whose text ends the message so far is not written again.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// What the lifecycle endpoints and SIGHUP act on.
struct Control {
    mapper: Arc<LiveMapper>,
    web_config: Option<Arc<WebConfigHandle>>,
    quit: Arc<Notify>,
}

impl Lifecycle for Control {
    /// Reloads the mapping file and the web config; both are tried, and either error is
    /// reported.
    fn reload(&self) -> Result<(), String> {
        let web = self.reload_web_config();
        let mapping = self.mapper.reload().map(drop).map_err(|e| e.to_string());
        mapping.and(web)
    }

    fn quit(&self) {
        info!("termination requested over HTTP");
        self.quit.notify_one();
    }
}

impl Control {
    fn reload_web_config(&self) -> Result<(), String> {
        let Some(web) = &self.web_config else {
            return Ok(());
        };
        match web.reload() {
            Ok(()) => {
                info!(file = %web.path().display(), "web config reloaded");
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "web config reload failed; keeping the previous one");
                Err(format!("web config: {e}"))
            }
        }
    }
}

fn run(flags: Flags) -> Result<()> {
    let web_config = match &flags.web_config_file {
        Some(p) => {
            Some(Arc::new(WebConfigHandle::load(p).with_context(|| {
                format!("loading web config {}", p.display())
            })?))
        }
        None => None,
    };
    if !flags.debug_dump_fsm.is_empty() {
        warn!("--debug.dump-fsm is not supported; ignoring it");
    }
    let mapping_config = flags.statsd_mapping_config.as_deref();
    // The error names the file.
    let load_mapper = || {
        LiveMapper::load(mapping_config, flags.cache_options())
            .context("loading the mapping config")
    };
    if flags.check_config {
        let rules = load_mapper()?.current().rule_count();
        println!("Configuration check successful: {rules} mappings");
        return Ok(());
    }
    let udp = parse_listen_address(&flags.statsd_listen_udp).context("--statsd.listen-udp")?;
    let tcp = parse_listen_address(&flags.statsd_listen_tcp).context("--statsd.listen-tcp")?;
    let unixgram = (!flags.statsd_listen_unixgram.is_empty())
        .then(|| PathBuf::from(&flags.statsd_listen_unixgram));
    if udp.is_none() && tcp.is_none() && unixgram.is_none() {
        bail!("at least one of UDP/TCP/Unixgram listeners must be specified");
    }
    let web = parse_listen_address(&flags.web_listen_address).context("--web.listen-address")?;
    let remote_write_options = flags.remote_write.options()?;
    let relay_targets = RelayTarget::all(
        &flags.statsd_relay_address,
        flags.statsd_relay_packet_length,
    )
    .context("--statsd.relay.address")?;

    let telemetry = Telemetry::install()?;
    ingest::raise_descriptor_limit();
    if !ingest::pad_heap_growth() {
        tracing::debug!(
            step = ingest::HEAP_GROWTH_STEP,
            "heap growth step left to the C library"
        );
    }
    let mapper = Arc::new(load_mapper()?);
    let store = Arc::new(Store::new(StoreOptions {
        reserved_names: telemetry::reserved_names(),
        ..flags.store_options()
    }));
    let workers = Workers::new(
        store.clone(),
        mapper.clone(),
        flags.dialects(),
        flags.profile(),
    )
    .with_limits(flags.sample_limits())
    .with_sender_label(flags.statsd_sender_label.clone());
    if let Some(label) = &flags.statsd_sender_label {
        info!(
            label = label.name(),
            "labelling every series with the IP address of its sender"
        );
    }
    match relay_targets.as_slice() {
        [] => {}
        [target] => info!(target = %target.label, "relaying every received line"),
        targets => {
            let labels: Vec<&str> = targets.iter().map(|t| t.label.as_str()).collect();
            info!(targets = %labels.join(","), "sharding received lines over the relay targets by series");
        }
    }
    let dialects = workers.dialects();
    let sinks = Arc::new(Relayed::new(workers, relay_targets).with_dialects(dialects));
    let maintenance =
        Maintenance::start(store.clone()).context("starting the maintenance thread")?;
    let remote_write = remote_write_options
        .map(|o| RemoteWrite::start(store.clone(), Some(telemetry.clone()), o))
        .transpose()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("statsgate-io")
        .build()
        .context("starting the async runtime")?;
    let quit = Arc::new(Notify::new());
    let control = Arc::new(Control {
        mapper,
        web_config: web_config.clone(),
        quit: quit.clone(),
    });

    rt.block_on(async {
        let mut listeners = Vec::new();
        if let Some(addr) = udp {
            let opts = UdpOptions {
                addr,
                sockets: flags.udp_sockets(),
                read_buffer: flags.udp_read_buffer(),
                queue: flags.statsd_udp_packet_queue_size,
                ..Default::default()
            };
            listeners.push(ingest::start_udp(&opts, sinks.clone()).context("starting the UDP listener")?);
        }
        if let Some(addr) = tcp {
            let opts = flags.tcp_options(addr);
            listeners.push(ingest::start_tcp(&opts, sinks.clone()).await.context("starting the TCP listener")?);
        }
        if let Some(path) = unixgram {
            let opts = UnixgramOptions {
                path,
                mode: flags.statsd_unixsocket_mode,
                read_buffer: flags.unixgram_read_buffer(),
            };
            listeners.push(ingest::start_unixgram(&opts, sinks.clone()).context("starting the unixgram listener")?);
        }

        let hup_control = control.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                info!("SIGHUP received, reloading the mapping and web configs");
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

        let profile = flags.profile.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
        let setup = StatusSetup::new(&listeners, &profile, &flags.web_telemetry_path);
        let opts = HttpOptions {
            telemetry_path: flags.web_telemetry_path.clone(),
            enable_lifecycle: flags.web_enable_lifecycle,
            status: StatusPage::start(setup, store.clone(), Some(telemetry.clone()), Some(control.mapper.clone())),
            render_threads: match flags.web_render_threads {
                0 => expose::default_render_threads(),
                n => n,
            },
        };
        let app = expose::router(store.clone(), Some(telemetry), control.clone(), opts);
        match web {
            Some(addr) => {
                let listener = expose::bind(addr)
                    .with_context(|| format!("binding the web listener on {addr}"))?;
                let tls = web_config.as_ref().is_some_and(|w| w.current().tls_enabled());
                info!(listener = "http", address = %listener.local_addr().unwrap_or(addr), tls, "serving metrics over HTTP");
                let server = ServerOptions {
                    max_connections: flags.web_max_connections,
                    max_concurrent_scrapes: flags.web_max_concurrent_scrapes,
                    read_header_timeout: flags.web_read_header_timeout,
                    idle_timeout: flags.web_idle_timeout,
                    write_timeout: flags.web_write_timeout,
                    shutdown_grace: flags.shutdown_grace_period,
                    scrape_path: flags.web_telemetry_path.clone(),
                };
                expose::serve(listener, app, web_config.clone(), server, shutdown).await;
            }
            None => shutdown.await,
        }
        for l in listeners {
            l.shutdown();
        }
        Ok::<(), anyhow::Error>(())
    })?;
    // Blocking tasks (a render whose client left, a reload) must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // Intake has stopped: one last push of what was received, bounded by its flush timeout.
    if let Some(rw) = remote_write {
        rw.shutdown();
    }
    drop(maintenance);
    info!("stopped");
    Ok(())
}
