//! Unix datagram listener: one socket file, one receive thread, one [`Sink`].
//!
//! The socket file never exists with a mode wider than the one asked for: the socket's inode
//! is given mode 0 before `bind` (Linux creates the file with the socket inode's mode less the
//! umask), then the asked-for mode with `chmod`. Two alternatives were rejected: changing the
//! umask around `bind` is process-wide, so a file another thread creates meanwhile would get
//! the wrong mode; binding a temporary name and renaming it into place still leaves a window
//! at the temporary name, and can exceed the 107-byte limit of socket paths when the final
//! path fits.
//!
//! A socket file left behind by a process that died (a crash, a `kill -9`, a restarted
//! container) is replaced, so a restart does not fail in a loop; a socket that a live process
//! is bound to, or a file of another kind, fails the start.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use super::batch::ReceiveThreads;
use super::socket::{bind_error, option_error, set_read_buffer, set_receive_timeout};
use super::sys::set_socket_inode_mode;
use super::{IngestError, Listener, SinkFactory};
use crate::telemetry::catalog;

const LISTENER: &str = "unixgram";

/// Datagrams taken per `recvmmsg` call on the unixgram socket.
const UNIXGRAM_BATCH: usize = 32;

/// How to run the unixgram listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixgramOptions {
    /// The socket file to create. If it exists, it must be a socket no process is bound to
    /// (it is then replaced).
    pub path: PathBuf,
    /// Permission bits for the socket file, e.g. `0o755` (statsd_exporter's default).
    pub mode: u32,
    /// `SO_RCVBUF` in bytes; 0 leaves the system default.
    pub read_buffer: usize,
}

/// Creates the socket file `opts.path`, sets its mode and starts the `statsgate-unixgram`
/// receive thread with a sink from `factory`.
///
/// An existing socket file that no process is bound to (a connect is refused) is removed
/// first. Fails with [`IngestError::SocketInUse`] if a process is bound to it, and with
/// [`IngestError::PathExists`] if the path is anything else (a file, a directory, a symbolic
/// link, a socket that cannot be probed), which is left alone. Counts
/// `statsd_exporter_unixgram_packets_total`. Shutting the [`Listener`] down removes the file.
pub fn start_unixgram<F: SinkFactory>(
    opts: &UnixgramOptions,
    factory: Arc<F>,
) -> Result<Listener, IngestError> {
    let path = opts.path.clone();
    let shown = path.display().to_string();
    remove_stale_socket(&path)?;
    let socket =
        Socket::new(Domain::UNIX, Type::DGRAM, None).map_err(|source| IngestError::Socket {
            listener: LISTENER,
            address: shown.clone(),
            source,
        })?;
    // The file is created at `bind` with this mode less the umask: none, until the chmod below.
    set_socket_inode_mode(&socket, 0).map_err(option_error(LISTENER, &shown, "mode 0"))?;
    let address = SockAddr::unix(&path).map_err(bind_error(LISTENER, &shown))?;
    socket
        .bind(&address)
        .map_err(bind_error(LISTENER, &shown))?;
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
        // A unixgram sender blocks while the receive buffer is full instead of losing
        // datagrams, so there is nothing to set aside.
        queue: 0,
    };
    let name = "statsgate-unixgram".to_owned();
    let sink = factory.make_sink();
    let handle = threads.spawn(name, &shown, socket, sink, Arc::clone(&stop), None)?;
    guard.disarm();
    tracing::info!(listener = "unixgram", path = %shown, mode = format_args!("{:o}", opts.mode), read_buffer, "accepting statsd over unixgram");
    Ok(Listener {
        transport: LISTENER,
        local_addr: None,
        stop,
        threads: vec![handle],
        task: None,
        socket_path: Some(path),
        read_buffers: read_buffer.into_iter().collect(),
    })
}

/// Removes `path` if it is a socket file that no process is bound to; does nothing if it does
/// not exist.
fn remove_stale_socket(path: &Path) -> Result<(), IngestError> {
    let exists = || IngestError::PathExists {
        path: path.to_owned(),
    };
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => return Err(exists()),
    };
    if !metadata.file_type().is_socket() {
        return Err(exists());
    }
    let probe = UnixDatagram::unbound().map_err(|_| exists())?;
    match probe.connect(path) {
        // Linux refuses a connect to a socket file no socket is bound to before it looks at
        // the socket type, so this is the only answer that means "stale".
        Err(err) if err.raw_os_error() == Some(libc::ECONNREFUSED) => {}
        // Connected, or a live socket of another type (EPROTOTYPE).
        Ok(()) => {
            return Err(IngestError::SocketInUse {
                path: path.to_owned(),
            });
        }
        Err(err) if err.raw_os_error() == Some(libc::EPROTOTYPE) => {
            return Err(IngestError::SocketInUse {
                path: path.to_owned(),
            });
        }
        // No permission to probe, and the like: leave it alone.
        Err(_) => return Err(exists()),
    }
    std::fs::remove_file(path).map_err(|_| exists())?;
    tracing::info!(path = %path.display(), "removed a stale unixgram socket file no process was bound to");
    Ok(())
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

    #[test]
    fn a_socket_given_mode_0_before_bind_is_born_with_no_permissions() {
        // What start_unixgram relies on: whatever the umask, the file appears with mode 0.
        let path = temp_socket_path("born");
        let socket = Socket::new(Domain::UNIX, Type::DGRAM, None).unwrap();
        set_socket_inode_mode(&socket, 0).unwrap();
        socket.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        let mode = std::fs::symlink_metadata(&path)
            .unwrap()
            .permissions()
            .mode();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(mode & 0o7777, 0);
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let path = temp_socket_path("stale");
        // A socket file whose process is gone: bound, then closed without removing it.
        drop(UnixDatagram::bind(&path).unwrap());
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let opts = UnixgramOptions {
            path: path.clone(),
            mode: 0o622,
            read_buffer: 0,
        };
        let listener = start_unixgram(&opts, Arc::new(Factory(Arc::clone(&received)))).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o622);
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"after:1|c", &path)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        listener.shutdown();
        assert_eq!(*received.lock().unwrap(), vec![b"after:1|c".to_vec()]);
    }

    #[test]
    fn a_socket_a_live_process_is_bound_to_is_refused_and_kept() {
        let path = temp_socket_path("live");
        let live = UnixDatagram::bind(&path).unwrap();
        let opts = UnixgramOptions {
            path: path.clone(),
            mode: 0o755,
            read_buffer: 0,
        };
        let err = start_unixgram(&opts, Arc::new(Factory(Arc::default()))).unwrap_err();
        assert!(matches!(err, IngestError::SocketInUse { .. }), "{err}");
        // The live socket still has its file and still receives.
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"still:1|c", &path)
            .unwrap();
        let mut buf = [0u8; 64];
        live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = live.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"still:1|c");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_live_stream_socket_is_refused_too() {
        let path = temp_socket_path("stream");
        let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let opts = UnixgramOptions {
            path: path.clone(),
            mode: 0o755,
            read_buffer: 0,
        };
        let err = start_unixgram(&opts, Arc::new(Factory(Arc::default()))).unwrap_err();
        assert!(matches!(err, IngestError::SocketInUse { .. }), "{err}");
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_symlink_is_left_alone() {
        let target = temp_socket_path("target");
        let stale = UnixDatagram::bind(&target).unwrap();
        drop(stale);
        let link = temp_socket_path("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let opts = UnixgramOptions {
            path: link.clone(),
            mode: 0o755,
            read_buffer: 0,
        };
        let err = start_unixgram(&opts, Arc::new(Factory(Arc::default()))).unwrap_err();
        assert!(matches!(err, IngestError::PathExists { .. }), "{err}");
        assert!(std::fs::symlink_metadata(&link).is_ok() && target.exists());
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&target).unwrap();
    }
}
