//! One receiver's HTTP client: hyper's pooled HTTP/1.1 client, rustls for `https://`, the
//! remote_write 1.0 headers, optional credentials, and the classification of an answer
//! into sent, retry or drop.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::ServerName;
use tracing::warn;

use super::{RemoteWriteError, Target, tls};

/// How often credentials are read again from their files, so a rotated token (a
/// Kubernetes service account's, say) is picked up without a restart.
const CREDENTIALS_REREAD: Duration = Duration::from_secs(60);

/// At most one failure is logged per URL in this period; the rest are counted in the line.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Most bytes of an answer's body read (for the log); a longer one closes the connection.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Headers the protocol sets, which `--remote-write.header` may not replace.
const PROTOCOL_HEADERS: [&str; 3] = [
    "content-encoding",
    "content-type",
    "x-prometheus-remote-write-version",
];

/// Why a request did not go through.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The receiver answered with a non-2xx status.
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the answer's body.
        body: String,
    },
    /// No complete answer within `--remote-write.timeout`.
    Timeout,
    /// Connecting, TLS or the HTTP exchange failed.
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Transport(e) => f.write_str(e),
        }
    }
}

/// What became of a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Accepted (2xx).
    Sent,
    /// Worth retrying: 5xx, 429, a timeout or a transport error; `after` is the
    /// receiver's `Retry-After`, if it sent one in seconds.
    Retry {
        /// What went wrong.
        why: Failure,
        /// The receiver's requested delay.
        after: Option<Duration>,
    },
    /// Refused for good (a 4xx other than 429): the same request would be refused again.
    Rejected(Failure),
}

/// Where the `Authorization` header comes from.
#[derive(Debug)]
enum CredentialSource {
    Basic {
        username: String,
        password_file: Option<PathBuf>,
    },
    Bearer {
        token_file: PathBuf,
    },
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, RemoteWriteError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| RemoteWriteError::File {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

impl CredentialSource {
    fn header(&self) -> Result<HeaderValue, RemoteWriteError> {
        let (text, what, path) = match self {
            CredentialSource::Basic {
                username,
                password_file,
            } => {
                let password = match password_file {
                    Some(p) => read_secret("--remote-write.basic-auth.password-file", p)?,
                    None => String::new(),
                };
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                (
                    format!("Basic {token}"),
                    "--remote-write.basic-auth.password-file",
                    password_file.as_deref(),
                )
            }
            CredentialSource::Bearer { token_file } => (
                format!(
                    "Bearer {}",
                    read_secret("--remote-write.bearer-token-file", token_file)?
                ),
                "--remote-write.bearer-token-file",
                Some(token_file.as_path()),
            ),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| RemoteWriteError::File {
            what,
            path: path.map(|p| p.display().to_string()).unwrap_or_default(),
            reason: "not usable in an HTTP header (control characters)".into(),
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// An `Authorization` header, read again from its files now and then.
#[derive(Debug)]
struct Credentials {
    source: CredentialSource,
    current: Mutex<(HeaderValue, Instant)>,
}

impl Credentials {
    fn new(source: CredentialSource) -> Result<Credentials, RemoteWriteError> {
        let value = source.header()?;
        Ok(Credentials {
            source,
            current: Mutex::new((value, Instant::now())),
        })
    }

    fn header(&self, url: &str) -> HeaderValue {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.1.elapsed() >= CREDENTIALS_REREAD {
            cur.1 = Instant::now();
            match self.source.header() {
                Ok(v) => cur.0 = v,
                // Keep sending the last good value: a file being rewritten is not a
                // reason to stop pushing.
                Err(e) => {
                    warn!(url, error = %e, "cannot re-read remote_write credentials; keeping the previous ones")
                }
            }
        }
        cur.0.clone()
    }
}

/// Rate-limits failure logs.
#[derive(Debug)]
struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

/// One receiver.
pub(crate) struct Client {
    uri: Uri,
    label: String,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: HeaderMap,
    credentials: Option<Credentials>,
    timeout: Duration,
    log: Mutex<LogLimiter>,
}

fn url_error(url: &str, reason: impl Into<String>) -> RemoteWriteError {
    RemoteWriteError::Url {
        url: url.to_string(),
        reason: reason.into(),
    }
}

impl Client {
    /// Checks the target's settings and reads its credentials and certificates.
    pub(crate) fn new(target: &Target, timeout: Duration) -> Result<Client, RemoteWriteError> {
        let url = target.url.as_str();
        let uri: Uri = url.parse().map_err(|e| url_error(url, format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(url_error(url, "the scheme must be http or https")),
        };
        let Some(authority) = uri.authority() else {
            return Err(url_error(url, "no host"));
        };
        if authority.as_str().contains('@') {
            return Err(url_error(
                url,
                "credentials in the URL would show in logs and self-metrics; use --remote-write.basic-auth.*",
            ));
        }
        // Without the query string, which may carry a token.
        let label = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            authority,
            uri.path()
        );

        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static("0.1.0"),
        );
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("statsgate/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in &target.headers {
            let bad = |reason: &str| RemoteWriteError::Flag {
                flag: "--remote-write.header",
                reason: format!("{name:?}: {reason}"),
            };
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("not a header name"))?;
            if PROTOCOL_HEADERS.contains(&name.as_str()) {
                return Err(bad("set by the remote_write protocol"));
            }
            let value =
                HeaderValue::from_str(value).map_err(|_| bad("value not usable in a header"))?;
            headers.append(name, value);
        }

        let source = match (&target.basic_auth, &target.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(url_error(
                    url,
                    "basic auth and a bearer token exclude each other",
                ));
            }
            (Some(b), None) => Some(CredentialSource::Basic {
                username: b.username.clone(),
                password_file: b.password_file.clone(),
            }),
            (None, Some(f)) => Some(CredentialSource::Bearer {
                token_file: f.clone(),
            }),
            (None, None) => None,
        };
        if source.is_some() && headers.contains_key(header::AUTHORIZATION) {
            return Err(url_error(
                url,
                "an Authorization header and basic auth or a bearer token exclude each other",
            ));
        }
        let credentials = source.map(Credentials::new).transpose()?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let tls_config = if https {
            tls::client_config(&target.tls, url)?
        } else {
            // Never used: the connector only starts TLS for https:// URLs.
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| url_error(url, e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        };
        let mut builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        if let Some(name) = &target.tls.server_name {
            let name = ServerName::try_from(name.clone()).map_err(|e| RemoteWriteError::Tls {
                url: url.to_string(),
                reason: format!("--remote-write.tls.server-name {name:?}: {e}"),
            })?;
            builder = builder.with_server_name_resolver(FixedServerNameResolver::new(name));
        }
        let connector = builder.enable_http1().wrap_connector(http);
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Client {
            uri,
            label,
            http,
            headers,
            credentials,
            timeout,
            log: Mutex::new(LogLimiter {
                last: None,
                suppressed: 0,
            }),
        })
    }

    /// The URL without its query string: the `url` label and what logs show.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Posts one compressed `WriteRequest`.
    pub(crate) async fn send(&self, body: Bytes) -> Outcome {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        if let Some(c) = &self.credentials {
            req.headers_mut()
                .insert(header::AUTHORIZATION, c.header(&self.label));
        }
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| Failure::Transport(error_chain(&e)))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read the answer so the connection can be reused; a huge one is cut short.
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, Failure>((status, retry_after, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Outcome::Retry {
                why: Failure::Timeout,
                after: None,
            },
            Ok(Err(why)) => Outcome::Retry { why, after: None },
            Ok(Ok((status, after, body))) => {
                if status.is_success() {
                    return Outcome::Sent;
                }
                let why = Failure::Status {
                    status,
                    body: String::from_utf8_lossy(&body[..body.len().min(256)])
                        .trim()
                        .to_string(),
                };
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    Outcome::Retry { why, after }
                } else {
                    Outcome::Rejected(why)
                }
            }
        }
    }

    /// Logs a failure, at most once per [`LOG_EVERY`] per URL.
    pub(crate) fn diagnose(&self, why: &Failure, retrying: bool) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            log.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.suppressed);
        log.last = Some(Instant::now());
        drop(log);
        if retrying {
            warn!(url = %self.label, error = %why, suppressed, "remote_write request failed; retrying");
        } else {
            warn!(url = %self.label, error = %why, suppressed, "remote_write request refused; its samples are dropped");
        }
    }
}

/// An error and its causes, one after another (hyper's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
