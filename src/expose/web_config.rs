//! `--web.config.file`: TLS, basic auth and response headers in the Prometheus
//! exporter-toolkit format, so a statsd_exporter deployment's file works unchanged.
//!
//! The file is read at startup (a bad file stops the gateway) and again on `SIGHUP` or
//! `/-/reload` (a bad file is refused and the previous configuration stays). Certificates
//! and keys are read with it: a renewed certificate is picked up by a reload, and each new
//! connection uses the configuration current when it was accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::Deserialize;

/// Why a web configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file (or a file it names) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not match the schema (unknown keys are refused, as exporter-toolkit does).
    #[error("{path}: {source}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_yaml_ng::Error,
    },
    /// TLS is configured without a certificate.
    #[error("tls_server_config: missing one of cert or cert_file")]
    MissingCert,
    /// TLS is configured without a key.
    #[error("tls_server_config: missing one of key or key_file")]
    MissingKey,
    /// Both the inline and the file form of one item are set.
    #[error("tls_server_config: set only one of {0} and {0}_file")]
    Ambiguous(&'static str),
    /// The certificate PEM holds no certificate.
    #[error("tls_server_config: no certificate found in {0}")]
    NoCertificate(String),
    /// The key PEM holds no private key, or one that cannot be read.
    #[error("tls_server_config: no usable private key in {what}: {reason}")]
    BadKey {
        /// Where the key came from.
        what: String,
        /// Why it was refused.
        reason: String,
    },
    /// The client CA PEM holds no usable certificate.
    #[error("tls_server_config: no usable CA certificate in {what}: {reason}")]
    BadClientCa {
        /// Where the CAs came from.
        what: String,
        /// Why.
        reason: String,
    },
    /// `client_auth_type` is not one of Go's names.
    #[error("tls_server_config: invalid client_auth_type {0:?}")]
    ClientAuthType(String),
    /// Client CAs without a policy that asks for a client certificate.
    #[error("tls_server_config: client CA's have been configured without a Client Auth Policy")]
    CaWithoutClientAuth,
    /// A verifying policy without CAs to verify against.
    #[error("tls_server_config: client_auth_type {0} needs client_ca_file or client_ca")]
    ClientAuthWithoutCa(String),
    /// An unknown TLS version name.
    #[error("tls_server_config: unknown TLS version {0:?}")]
    UnknownVersion(String),
    /// No TLS version statsgate speaks (1.2 and 1.3) is in the allowed range.
    #[error(
        "tls_server_config: min_version {min} / max_version {max} leave no version statsgate supports (TLS12, TLS13)"
    )]
    NoVersion {
        /// `min_version` as written.
        min: String,
        /// `max_version` as written.
        max: String,
    },
    /// An unknown or unsupported cipher suite name.
    #[error("tls_server_config: unknown or unsupported cipher suite {0:?}")]
    CipherSuite(String),
    /// An unknown or unsupported curve name.
    #[error("tls_server_config: unknown or unsupported curve {0:?}")]
    Curve(String),
    /// A setting statsgate does not implement; refused rather than ignored, since each
    /// narrows who may connect.
    #[error("{0} is not supported by statsgate")]
    Unsupported(&'static str),
    /// A response header exporter-toolkit does not allow, or a value it does not allow.
    #[error("http_server_config.headers: {0}")]
    Header(String),
    /// A `basic_auth_users` entry whose password is not a bcrypt hash.
    #[error("basic_auth_users: the password of user {user:?} is not a bcrypt hash: {reason}")]
    BadHash {
        /// The user.
        user: String,
        /// What bcrypt said.
        reason: String,
    },
    /// `rate_limit.interval` is not a duration.
    #[error("rate_limit: interval {0:?} is not a duration like 100ms or 1s")]
    RateLimitInterval(String),
    /// rustls refused the assembled configuration (e.g. a key that does not match the cert).
    #[error("tls_server_config: {0}")]
    Tls(#[from] rustls::Error),
    /// A reload may change everything except whether TLS is on: the listener is one or the
    /// other for the life of the process.
    #[error("a reload cannot turn TLS {0}; restart statsgate to do that")]
    TlsToggle(&'static str),
}

/// The file's schema (exporter-toolkit `web.Config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    #[serde(default)]
    tls_server_config: Option<TlsSchema>,
    #[serde(default)]
    http_server_config: Option<HttpSchema>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<RateLimitSchema>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSchema {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSchema {
    /// Accepted for compatibility: statsgate serves HTTP/1.1 only, which every scraper speaks.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitSchema {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    burst: Option<u32>,
}

/// Headers exporter-toolkit lets a file set, with the values it allows (empty = any).
/// Kept to its list so a file means the same to both.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Requests let through per `interval`, with bursts of `burst` (exporter-toolkit's
/// `rate_limit`, Go's `rate.Limiter`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Time between two requests at the sustained rate.
    pub interval: Duration,
    /// Bucket size.
    pub burst: u32,
}

/// One loaded web configuration.
#[derive(Debug, Default)]
pub struct WebConfig {
    pub(crate) tls: Option<Arc<ServerConfig>>,
    pub(crate) users: BTreeMap<String, String>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) rate_limit: Option<RateLimit>,
}

impl WebConfig {
    /// Reads and validates `path` and every file it names (relative names are relative to
    /// the file's directory, as in exporter-toolkit).
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        // An empty file is a valid, empty configuration (plain HTTP, no auth).
        let schema: FileSchema = if text.trim().is_empty() {
            FileSchema::default()
        } else {
            serde_yaml_ng::from_str::<Option<FileSchema>>(text)
                .map_err(|source| WebConfigError::Syntax {
                    path: path.to_path_buf(),
                    source,
                })?
                .unwrap_or_default()
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let headers = validate_headers(
            schema
                .http_server_config
                .and_then(|h| h.headers)
                .unwrap_or_default(),
        )?;
        let users = schema.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| WebConfigError::BadHash {
                    user: user.clone(),
                    reason: e.to_string(),
                })?;
        }
        let rate_limit = match schema.rate_limit {
            None => None,
            Some(r) => {
                let interval = match r.interval.as_deref() {
                    None => Duration::ZERO,
                    Some(s) => crate::mapping::parse_go_duration(s)
                        .ok_or_else(|| WebConfigError::RateLimitInterval(s.to_string()))?,
                };
                // Go: an interval of 0 disables the limiter.
                (!interval.is_zero()).then_some(RateLimit {
                    interval,
                    burst: r.burst.unwrap_or(0),
                })
            }
        };
        let tls = match schema.tls_server_config {
            Some(t) if tls_enabled(&t) => Some(Arc::new(build_tls(t, dir)?)),
            _ => None,
        };
        Ok(WebConfig {
            tls,
            users,
            headers,
            rate_limit,
        })
    }

    /// True when connections are served over TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// True when requests need basic auth.
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }
}

/// The web configuration in force, swapped whole by [`reload`](Self::reload).
#[derive(Debug)]
pub struct WebConfigHandle {
    path: PathBuf,
    current: ArcSwap<WebConfig>,
}

impl WebConfigHandle {
    /// Loads `path`; an error here should stop the gateway.
    pub fn load(path: &Path) -> Result<WebConfigHandle, WebConfigError> {
        let cfg = WebConfig::load(path)?;
        Ok(WebConfigHandle {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(cfg),
        })
    }

    /// The file this handle reloads from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<WebConfig> {
        self.current.load_full()
    }

    /// Re-reads the file. On error the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let new = WebConfig::load(&self.path)?;
        match (self.current.load().tls_enabled(), new.tls_enabled()) {
            (true, false) => return Err(WebConfigError::TlsToggle("off")),
            (false, true) => return Err(WebConfigError::TlsToggle("on")),
            _ => {}
        }
        self.current.store(Arc::new(new));
        Ok(())
    }
}

/// exporter-toolkit's `TLSConfig.IsEnabled`: any TLS-related field set turns TLS on, so a
/// half-written section is an error rather than a silent fall back to plain HTTP.
fn tls_enabled(t: &TlsSchema) -> bool {
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    set(&t.cert)
        || set(&t.key)
        || set(&t.cert_file)
        || set(&t.key_file)
        || set(&t.client_ca)
        || set(&t.client_ca_file)
        || set(&t.client_auth_type)
}

fn validate_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            return Err(WebConfigError::Header(format!(
                "HTTP header {name:?} can not be configured"
            )));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(WebConfigError::Header(format!(
                "invalid value for {name}: expected one of {allowed:?}, got {value:?}"
            )));
        }
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| WebConfigError::Header(format!("{name:?}: {e}")))?;
        let header_value = HeaderValue::from_str(&value)
            .map_err(|e| WebConfigError::Header(format!("value of {name}: {e}")))?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

/// PEM text from the inline field or the named file, and a description for errors.
fn pem_source(
    inline: Option<String>,
    file: Option<String>,
    dir: &Path,
    name: &'static str,
) -> Result<Option<(Vec<u8>, String)>, WebConfigError> {
    let inline = inline.filter(|s| !s.is_empty());
    let file = file.filter(|s| !s.is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(WebConfigError::Ambiguous(name)),
        (Some(text), None) => Ok(Some((text.into_bytes(), format!("inline {name}")))),
        (None, Some(f)) => {
            let path = dir.join(f);
            let bytes = std::fs::read(&path).map_err(|source| WebConfigError::Read {
                path: path.clone(),
                source,
            })?;
            Ok(Some((bytes, path.display().to_string())))
        }
        (None, None) => Ok(None),
    }
}

/// Go's client authentication policies (`crypto/tls.ClientAuthType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(s: &str) -> Result<ClientAuth, WebConfigError> {
        Ok(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // exporter-toolkit keeps the old spelling working.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => return Err(WebConfigError::ClientAuthType(other.to_string())),
        })
    }
}

/// Go's version names, ordered.
fn tls_version(name: &str) -> Result<u8, WebConfigError> {
    match name {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(WebConfigError::UnknownVersion(other.to_string())),
    }
}

fn build_tls(t: TlsSchema, dir: &Path) -> Result<ServerConfig, WebConfigError> {
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        return Err(WebConfigError::Unsupported(
            "tls_server_config.client_allowed_sans",
        ));
    }
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    if !set(&t.cert) && !set(&t.cert_file) {
        return Err(WebConfigError::MissingCert);
    }
    if !set(&t.key) && !set(&t.key_file) {
        return Err(WebConfigError::MissingKey);
    }
    let (cert_pem, cert_what) =
        pem_source(t.cert, t.cert_file, dir, "cert")?.ok_or(WebConfigError::MissingCert)?;
    let (key_pem, key_what) =
        pem_source(t.key, t.key_file, dir, "key")?.ok_or(WebConfigError::MissingKey)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| WebConfigError::NoCertificate(cert_what.clone()))?;
    if certs.is_empty() {
        return Err(WebConfigError::NoCertificate(cert_what));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| WebConfigError::BadKey {
        what: key_what,
        reason: e.to_string(),
    })?;

    let min_name = t.min_version.unwrap_or_else(|| "TLS12".into());
    let max_name = t.max_version.unwrap_or_else(|| "TLS13".into());
    let (min, max) = (tls_version(&min_name)?, tls_version(&max_name)?);
    // rustls speaks TLS 1.2 and 1.3 only; older minimums just mean "1.2 and up".
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    if versions.is_empty() {
        return Err(WebConfigError::NoVersion {
            min: min_name,
            max: max_name,
        });
    }

    let provider = Arc::new(crypto_provider(
        t.cipher_suites.unwrap_or_default(),
        t.curve_preferences.unwrap_or_default(),
    )?);

    let client_auth = ClientAuth::parse(t.client_auth_type.as_deref().unwrap_or(""))?;
    let ca = pem_source(t.client_ca, t.client_ca_file, dir, "client_ca")?;
    if ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(WebConfigError::CaWithoutClientAuth);
    }
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match client_auth {
        ClientAuth::NoClientCert => None,
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Some(Arc::new(AnyClientCert {
                mandatory: client_auth == ClientAuth::RequireAnyClientCert,
                algorithms: provider.signature_verification_algorithms,
            }))
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some((ca_pem, ca_what)) = ca else {
                return Err(WebConfigError::ClientAuthWithoutCa(format!(
                    "{client_auth:?}"
                )));
            };
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca_pem) {
                let c = c.map_err(|e| WebConfigError::BadClientCa {
                    what: ca_what.clone(),
                    reason: e.to_string(),
                })?;
                roots.add(c).map_err(|e| WebConfigError::BadClientCa {
                    what: ca_what.clone(),
                    reason: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(WebConfigError::BadClientCa {
                    what: ca_what,
                    reason: "no certificate".into(),
                });
            }
            let mut b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if client_auth == ClientAuth::VerifyClientCertIfGiven {
                b = b.allow_unauthenticated();
            }
            Some(b.build().map_err(|e| WebConfigError::BadClientCa {
                what: ca_what,
                reason: e.to_string(),
            })?)
        }
    };

    let builder =
        ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions)?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let mut cfg = builder.with_single_cert(certs, key)?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    Ok(cfg)
}

/// ring's provider narrowed to the configured TLS 1.2 cipher suites and curves. TLS 1.3
/// suites are not configurable, in Go or here.
fn crypto_provider(
    suites: Vec<String>,
    curves: Vec<String>,
) -> Result<CryptoProvider, WebConfigError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !suites.is_empty() {
        let all = provider.cipher_suites.clone();
        let mut chosen: Vec<rustls::SupportedCipherSuite> = Vec::new();
        for name in &suites {
            let found = all
                .iter()
                .find(|s| s.suite().as_str() == Some(name.as_str()))
                .ok_or_else(|| WebConfigError::CipherSuite(name.clone()))?;
            if found.tls13().is_none() && !chosen.contains(found) {
                chosen.push(*found);
            }
        }
        chosen.extend(all.iter().filter(|s| s.tls13().is_some()).copied());
        provider.cipher_suites = chosen;
    }
    if !curves.is_empty() {
        let all = provider.kx_groups.clone();
        let mut chosen = Vec::new();
        for name in &curves {
            let group = match name.as_str() {
                "CurveP256" => NamedGroup::secp256r1,
                "CurveP384" => NamedGroup::secp384r1,
                "X25519" => NamedGroup::X25519,
                _ => return Err(WebConfigError::Curve(name.clone())),
            };
            let found = all
                .iter()
                .find(|g| g.name() == group)
                .ok_or_else(|| WebConfigError::Curve(name.clone()))?;
            chosen.push(*found);
        }
        provider.kx_groups = chosen;
    }
    Ok(provider)
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a certificate is asked for (and
/// for the latter required), its signature over the handshake is checked, but its chain is
/// not; exporter-toolkit warns these are insecure, and so do we in the README.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, Path::new("/nonexistent/web.yml"))
    }

    // bcrypt of "secret" at cost 4.
    fn hash() -> String {
        bcrypt::hash("secret", 4).unwrap()
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = parse("").unwrap();
        assert!(!c.tls_enabled() && !c.auth_enabled());
        let c = parse("tls_server_config: {}\nbasic_auth_users: {}\n").unwrap();
        assert!(!c.tls_enabled() && !c.auth_enabled());
    }

    #[test]
    fn users_need_bcrypt_hashes() {
        let c = parse(&format!("basic_auth_users:\n  alice: '{}'\n", hash())).unwrap();
        assert!(c.auth_enabled());
        let e = parse("basic_auth_users:\n  alice: plaintext\n").unwrap_err();
        assert!(matches!(e, WebConfigError::BadHash { .. }), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(matches!(
            parse("basic_auth_user: {}\n"),
            Err(WebConfigError::Syntax { .. })
        ));
        assert!(matches!(
            parse("tls_server_config:\n  certfile: x\n"),
            Err(WebConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn half_configured_tls_is_an_error_not_plain_http() {
        assert!(matches!(
            parse("tls_server_config:\n  key_file: k.pem\n"),
            Err(WebConfigError::MissingCert)
        ));
        assert!(matches!(
            parse("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n"),
            Err(WebConfigError::MissingCert)
        ));
        let e = parse("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n").unwrap_err();
        assert!(matches!(e, WebConfigError::Read { .. }), "{e}");
    }

    #[test]
    fn headers_follow_exporter_toolkit_rules() {
        let c = parse(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n",
        )
        .unwrap();
        assert_eq!(c.headers.len(), 2);
        assert!(matches!(
            parse("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            Err(WebConfigError::Header(_))
        ));
        assert!(matches!(
            parse("http_server_config:\n  headers:\n    Server: statsgate\n"),
            Err(WebConfigError::Header(_))
        ));
        assert!(parse("http_server_config:\n  http2: false\n").is_ok());
    }

    #[test]
    fn rate_limit_parses_go_durations() {
        let c = parse("rate_limit:\n  interval: 100ms\n  burst: 5\n").unwrap();
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                interval: Duration::from_millis(100),
                burst: 5
            })
        );
        assert_eq!(
            parse("rate_limit:\n  interval: 0\n").unwrap().rate_limit,
            None
        );
        assert!(parse("rate_limit:\n  interval: soon\n").is_err());
    }

    #[test]
    fn client_auth_names() {
        assert_eq!(
            ClientAuth::parse("RequireClientCert").unwrap(),
            ClientAuth::RequireAnyClientCert
        );
        assert!(ClientAuth::parse("Always").is_err());
    }

    #[test]
    fn versions_and_suites() {
        assert!(tls_version("TLS14").is_err());
        assert!(crypto_provider(vec!["TLS_NOPE".into()], vec![]).is_err());
        assert!(crypto_provider(vec![], vec!["CurveP521".into()]).is_err());
        let p = crypto_provider(
            vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
            vec!["X25519".into()],
        )
        .unwrap();
        assert_eq!(p.kx_groups.len(), 1);
        assert_eq!(
            p.cipher_suites
                .iter()
                .filter(|s| s.tls13().is_none())
                .count(),
            1
        );
    }
}
