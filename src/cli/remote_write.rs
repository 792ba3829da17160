//! `--remote-write.*` flags, flattened into the gateway's flag set.
//!
//! Names follow vmagent's `-remoteWrite.*` in statsgate's `--section.flag` style, and
//! defaults follow Prometheus's `remote_write` `queue_config`. As in vmagent, a per-receiver
//! flag given once applies to every URL, or is given once per URL, in the URLs' order (an
//! empty value leaves that URL without it).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use super::{parse_positive, parse_positive_duration as parse_duration};
use crate::remote_write::{BasicAuth, RemoteWriteError, RemoteWriteOptions, Target, TlsOptions};

/// The remote_write flags.
#[derive(Debug, Clone, Args)]
pub struct RemoteWriteFlags {
    /// Push every series /metrics shows to this Prometheus remote_write endpoint
    /// (repeatable: one queue per URL).
    #[arg(long = "remote-write.url", value_name = "URL")]
    pub url: Vec<String>,

    /// Time between two pushes; each push is one snapshot stamped with one timestamp.
    #[arg(long = "remote-write.interval", default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Most samples in one request (Prometheus's max_samples_per_send).
    #[arg(long = "remote-write.batch-size", default_value = "2000", value_parser = parse_positive, value_name = "N")]
    pub batch_size: usize,

    /// Most samples a URL's queue holds, waiting or in flight; past it the oldest are
    /// dropped.
    #[arg(long = "remote-write.queue-capacity", default_value = "1000000", value_parser = parse_positive, value_name = "N")]
    pub queue_capacity: usize,

    /// Requests of one push in flight at once, per URL.
    #[arg(long = "remote-write.concurrency", default_value = "4", value_parser = parse_positive, value_name = "N")]
    pub concurrency: usize,

    /// Deadline of one request (Prometheus's remote_timeout).
    #[arg(long = "remote-write.timeout", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// First retry delay after a 5xx, a 429 or a connection error; doubles up to the maximum.
    #[arg(long = "remote-write.min-backoff", default_value = "30ms", value_parser = parse_duration, value_name = "DURATION")]
    pub min_backoff: Duration,

    /// Longest retry delay.
    #[arg(long = "remote-write.max-backoff", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_backoff: Duration,

    /// How long the last push at shutdown may take.
    #[arg(long = "remote-write.flush-timeout", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub flush_timeout: Duration,

    /// Extra request header `Name: value`, sent to every URL (repeatable).
    #[arg(long = "remote-write.header", value_name = "HEADER")]
    pub header: Vec<String>,

    /// Basic auth user name (once, or once per URL).
    #[arg(long = "remote-write.basic-auth.username", value_name = "NAME")]
    pub basic_auth_username: Vec<String>,

    /// File holding the basic auth password, read again every minute (once, or once per URL).
    #[arg(long = "remote-write.basic-auth.password-file", value_name = "FILE")]
    pub basic_auth_password_file: Vec<String>,

    /// File holding a bearer token, read again every minute (once, or once per URL).
    #[arg(long = "remote-write.bearer-token-file", value_name = "FILE")]
    pub bearer_token_file: Vec<String>,

    /// PEM CA certificates to verify the receiver with, instead of the system's (once, or
    /// once per URL).
    #[arg(long = "remote-write.tls.ca-file", value_name = "FILE")]
    pub tls_ca_file: Vec<String>,

    /// PEM client certificate for mutual TLS (once, or once per URL).
    #[arg(long = "remote-write.tls.cert-file", value_name = "FILE")]
    pub tls_cert_file: Vec<String>,

    /// PEM private key of the client certificate (once, or once per URL).
    #[arg(long = "remote-write.tls.key-file", value_name = "FILE")]
    pub tls_key_file: Vec<String>,

    /// Name the receiver's certificate must carry, instead of the URL's host (once, or once
    /// per URL).
    #[arg(long = "remote-write.tls.server-name", value_name = "NAME")]
    pub tls_server_name: Vec<String>,

    /// Accept any certificate from the receiver (once, or once per URL).
    #[arg(long = "remote-write.tls.insecure-skip-verify", action = ArgAction::Append, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub tls_insecure_skip_verify: Vec<bool>,
}

/// Spreads a per-receiver flag over the URLs: none, one for all, or one each.
fn per_url<T: Clone>(
    flag: &'static str,
    values: &[T],
    urls: usize,
) -> Result<Vec<Option<T>>, RemoteWriteError> {
    match values.len() {
        0 => Ok(vec![None; urls]),
        1 => Ok(vec![Some(values[0].clone()); urls]),
        n if n == urls => Ok(values.iter().cloned().map(Some).collect()),
        n => Err(RemoteWriteError::Flag {
            flag,
            reason: format!("given {n} times for {urls} URLs: give it once, or once per URL"),
        }),
    }
}

/// [`per_url`] for text values, where an empty value means "not for this URL".
fn per_url_text(
    flag: &'static str,
    values: &[String],
    urls: usize,
) -> Result<Vec<Option<String>>, RemoteWriteError> {
    Ok(per_url(flag, values, urls)?
        .into_iter()
        .map(|v| v.filter(|s| !s.is_empty()))
        .collect())
}

fn parse_header(h: &str) -> Result<(String, String), RemoteWriteError> {
    let (name, value) = h.split_once(':').ok_or_else(|| RemoteWriteError::Flag {
        flag: "--remote-write.header",
        reason: format!("{h:?} is not `Name: value`"),
    })?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

impl RemoteWriteFlags {
    /// The options these flags ask for; `None` when no URL is given. Files are not read
    /// here but when the push starts.
    pub fn options(&self) -> Result<Option<RemoteWriteOptions>, RemoteWriteError> {
        let n = self.url.len();
        if n == 0 {
            return Ok(None);
        }
        if self.min_backoff > self.max_backoff {
            return Err(RemoteWriteError::Flag {
                flag: "--remote-write.min-backoff",
                reason: "longer than --remote-write.max-backoff".into(),
            });
        }
        let headers = self
            .header
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let usernames = per_url_text(
            "--remote-write.basic-auth.username",
            &self.basic_auth_username,
            n,
        )?;
        let passwords = per_url_text(
            "--remote-write.basic-auth.password-file",
            &self.basic_auth_password_file,
            n,
        )?;
        let bearers = per_url_text(
            "--remote-write.bearer-token-file",
            &self.bearer_token_file,
            n,
        )?;
        let cas = per_url_text("--remote-write.tls.ca-file", &self.tls_ca_file, n)?;
        let certs = per_url_text("--remote-write.tls.cert-file", &self.tls_cert_file, n)?;
        let keys = per_url_text("--remote-write.tls.key-file", &self.tls_key_file, n)?;
        let names = per_url_text("--remote-write.tls.server-name", &self.tls_server_name, n)?;
        let skips = per_url(
            "--remote-write.tls.insecure-skip-verify",
            &self.tls_insecure_skip_verify,
            n,
        )?;
        let mut targets = Vec::with_capacity(n);
        for (i, url) in self.url.iter().enumerate() {
            let password_file = passwords[i].clone().map(PathBuf::from);
            let basic_auth = match (&usernames[i], &password_file) {
                (Some(u), _) => Some(BasicAuth {
                    username: u.clone(),
                    password_file,
                }),
                (None, Some(_)) => {
                    return Err(RemoteWriteError::Flag {
                        flag: "--remote-write.basic-auth.password-file",
                        reason: format!("no --remote-write.basic-auth.username for {url}"),
                    });
                }
                (None, None) => None,
            };
            targets.push(Target {
                url: url.clone(),
                headers: headers.clone(),
                basic_auth,
                bearer_token_file: bearers[i].clone().map(PathBuf::from),
                tls: TlsOptions {
                    ca_file: cas[i].clone().map(PathBuf::from),
                    cert_file: certs[i].clone().map(PathBuf::from),
                    key_file: keys[i].clone().map(PathBuf::from),
                    server_name: names[i].clone(),
                    insecure_skip_verify: skips[i].unwrap_or(false),
                },
            });
        }
        Ok(Some(RemoteWriteOptions {
            targets,
            interval: self.interval,
            batch_size: self.batch_size,
            queue_capacity: self.queue_capacity.max(self.batch_size),
            concurrency: self.concurrency,
            timeout: self.timeout,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            flush_timeout: self.flush_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        rw: RemoteWriteFlags,
    }

    fn options(args: &[&str]) -> Result<Option<RemoteWriteOptions>, String> {
        let cli = Cli::try_parse_from(std::iter::once("statsgate").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.rw.options().map_err(|e| e.to_string())
    }

    #[test]
    fn no_url_no_push() {
        assert!(options(&[]).unwrap().is_none());
    }

    #[test]
    fn defaults_follow_prometheus_queue_config() {
        let o = options(&["--remote-write.url=http://127.0.0.1:9090/api/v1/write"])
            .unwrap()
            .unwrap();
        assert_eq!(o.interval, Duration::from_secs(15));
        assert_eq!(o.batch_size, 2000);
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(o.min_backoff, Duration::from_millis(30));
        assert_eq!(o.max_backoff, Duration::from_secs(5));
        assert_eq!(o.targets.len(), 1);
        assert!(o.targets[0].basic_auth.is_none());
        assert!(!o.targets[0].tls.insecure_skip_verify);
    }

    #[test]
    fn per_url_flags_apply_to_all_or_one_each() {
        let o = options(&[
            "--remote-write.url=http://a/w",
            "--remote-write.url=https://b/w",
            "--remote-write.bearer-token-file=/t",
            "--remote-write.tls.ca-file=",
            "--remote-write.tls.ca-file=/ca.pem",
            "--remote-write.tls.insecure-skip-verify",
            "--remote-write.header=X-Scope-OrgID: tenant 1",
        ])
        .unwrap()
        .unwrap();
        let t = &o.targets;
        assert_eq!(t[0].bearer_token_file, Some(PathBuf::from("/t")));
        assert_eq!(t[1].bearer_token_file, Some(PathBuf::from("/t")));
        assert_eq!(t[0].tls.ca_file, None);
        assert_eq!(t[1].tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert!(t[0].tls.insecure_skip_verify && t[1].tls.insecure_skip_verify);
        assert_eq!(
            t[1].headers,
            vec![("X-Scope-OrgID".to_string(), "tenant 1".to_string())]
        );
    }

    #[test]
    fn bad_flags_are_errors() {
        let url = "--remote-write.url=http://a/w";
        for bad in [
            vec![url, "--remote-write.interval=0s"],
            vec![url, "--remote-write.batch-size=0"],
            vec![url, "--remote-write.header=no-colon"],
            vec![url, "--remote-write.min-backoff=10s"],
            vec![url, "--remote-write.basic-auth.password-file=/p"],
            vec![
                url,
                "--remote-write.url=http://b/w",
                "--remote-write.url=http://c/w",
                "--remote-write.tls.server-name=a",
                "--remote-write.tls.server-name=b",
            ],
        ] {
            assert!(options(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}
