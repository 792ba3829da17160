//! TLS client configuration for an `https://` receiver (rustls with the ring provider), with
//! Prometheus's `tls_config` options: CA file, client certificate, server name, skip verify.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{RemoteWriteError, TlsOptions};

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> RemoteWriteError {
    RemoteWriteError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, RemoteWriteError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The roots: the CA file's certificates if given (they replace the system's, as in
/// Prometheus), else the system store.
fn roots(opts: &TlsOptions, url: &str) -> Result<RootCertStore, RemoteWriteError> {
    let mut roots = RootCertStore::empty();
    let certs = match &opts.ca_file {
        Some(path) => read_certs("--remote-write.tls.ca-file", path)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system's CA certificates");
            }
            found.certs
        }
    };
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 && !opts.insecure_skip_verify {
        return Err(RemoteWriteError::Tls {
            url: url.to_string(),
            reason: "no usable CA certificate (set --remote-write.tls.ca-file)".into(),
        });
    }
    Ok(roots)
}

/// Builds the client configuration for one URL.
pub(crate) fn client_config(
    opts: &TlsOptions,
    url: &str,
) -> Result<ClientConfig, RemoteWriteError> {
    let tls_error = |e: rustls::Error| RemoteWriteError::Tls {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots(opts, url)?);
    let mut config = match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("--remote-write.tls.cert-file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| file_error("--remote-write.tls.key-file", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(tls_error)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(RemoteWriteError::Tls {
                url: url.to_string(),
                reason: "--remote-write.tls.cert-file and --remote-write.tls.key-file go together"
                    .into(),
            });
        }
    };
    if opts.insecure_skip_verify {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )));
    }
    Ok(config)
}

/// `--remote-write.tls.insecure-skip-verify`: any certificate is accepted, but the
/// handshake's signatures are still checked (so the connection is encrypted to whoever
/// holds the key of the certificate shown).
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
