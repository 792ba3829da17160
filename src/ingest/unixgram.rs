//! Unix datagram listener: one socket file, one receive thread, one [`Sink`].

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use socket2::SockRef;

use super::batch::ReceiveThreads;
use super::socket::{bind_error, set_read_buffer, set_receive_timeout};
use super::{IngestError, Listener, SinkFactory};
use crate::telemetry::catalog;

const LISTENER: &str = "unixgram";

/// Datagrams taken per `recvmmsg` call on the unixgram socket.
const UNIXGRAM_BATCH: usize = 32;

/// How to run the unixgram listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixgramOptions {
    /// The socket file to create. It must not exist yet.
    pub path: PathBuf,
    /// Permission bits for the socket file, e.g. `0o755` (statsd_exporter's default).
    pub mode: u32,
    /// `SO_RCVBUF` in bytes; 0 leaves the system default.
    pub read_buffer: usize,
}

/// Creates the socket file `opts.path`, sets its mode and starts the `statsgate-unixgram`
/// receive thread with a sink from `factory`.
///
/// Fails with [`IngestError::PathExists`] if the path exists, as statsd_exporter does, rather
/// than deleting what might be another process's socket. Counts
/// `statsd_exporter_unixgram_packets_total`. Shutting the [`Listener`] down removes the file.
pub fn start_unixgram<F: SinkFactory>(
    opts: &UnixgramOptions,
    factory: Arc<F>,
) -> Result<Listener, IngestError> {
    let path = opts.path.clone();
    let shown = path.display().to_string();
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(IngestError::PathExists { path });
    }
    let socket = UnixDatagram::bind(&path).map_err(bind_error(LISTENER, &shown))?;
    // From here on the file exists; remove it on every error path.
    let guard = RemoveOnError(Some(path.clone()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(opts.mode)).map_err(
        |source| IngestError::Chmod {
            path: path.clone(),
            mode: opts.mode,
            source,
        },
    )?;
    let read_buffer = set_read_buffer(SockRef::from(&socket), LISTENER, &shown, opts.read_buffer)?;
    set_receive_timeout(SockRef::from(&socket), LISTENER, &shown)?;

    let stop = Arc::new(AtomicBool::new(false));
    let threads = ReceiveThreads {
        listener: LISTENER,
        batch: UNIXGRAM_BATCH,
        packets: &catalog::UNIXGRAM_PACKETS,
        drops: None,
    };
    let name = "statsgate-unixgram".to_owned();
    let sink = factory.make_sink();
    let handle = threads.spawn(name, &shown, socket, sink, Arc::clone(&stop))?;
    guard.disarm();
    tracing::info!(listener = "unixgram", path = %shown, mode = format_args!("{:o}", opts.mode), "accepting statsd over unixgram");
    Ok(Listener {
        local_addr: None,
        stop,
        threads: vec![handle],
        task: None,
        socket_path: Some(path),
        read_buffers: read_buffer.into_iter().collect(),
    })
}

/// Removes a just-created socket file if setup fails after `bind`.
struct RemoveOnError(Option<PathBuf>);

impl RemoveOnError {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            remove_quietly(&path);
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %err, "cannot remove unixgram socket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Sink;
    use crate::ingest::socket::granted_read_buffer;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    struct RecordingSink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Sink for RecordingSink {
        fn datagram(&mut self, payload: &[u8]) {
            self.0.lock().unwrap().push(payload.to_vec());
        }
        fn line(&mut self, _line: &[u8]) {}
        fn flush(&mut self) {}
    }

    struct Factory(Arc<Mutex<Vec<Vec<u8>>>>);

    impl SinkFactory for Factory {
        type Sink = RecordingSink;
        fn make_sink(&self) -> RecordingSink {
            RecordingSink(Arc::clone(&self.0))
        }
    }

    fn temp_socket_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "statsgate-ingest-{tag}-{}-{}.sock",
            std::process::id(),
            fastrand::u64(..)
        ))
    }

    #[test]
    fn delivers_datagrams_applies_mode_and_cleans_up() {
        let received = Arc::new(Mutex::new(Vec::new()));
        let opts = UnixgramOptions {
            path: temp_socket_path("unit"),
            mode: 0o600,
            read_buffer: 1 << 16,
        };
        let listener = start_unixgram(&opts, Arc::new(Factory(Arc::clone(&received)))).unwrap();
        let mode = std::fs::metadata(&opts.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            listener.read_buffers(),
            [granted_read_buffer(opts.read_buffer)]
        );
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"a:1|c\nb:2|c", &opts.path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        listener.shutdown();
        assert_eq!(*received.lock().unwrap(), vec![b"a:1|c\nb:2|c".to_vec()]);
        assert!(!opts.path.exists());
    }

    #[test]
    fn existing_path_is_refused_and_left_alone() {
        let path = temp_socket_path("exists");
        std::fs::write(&path, b"not a socket").unwrap();
        let opts = UnixgramOptions {
            path: path.clone(),
            mode: 0o755,
            read_buffer: 0,
        };
        let err = start_unixgram(&opts, Arc::new(Factory(Arc::default()))).unwrap_err();
        assert!(matches!(err, IngestError::PathExists { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
        std::fs::remove_file(&path).unwrap();
    }
}
