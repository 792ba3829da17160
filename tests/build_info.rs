//! `statsd_exporter_build_info` names the checkout the gateway was built from, and the
//! `process_*` families are client_golang's, names and types.

mod common;

use std::process::Command;

use common::{Gateway, Samples};

/// `git <args>` in this checkout; git is required (the tests run from a checkout).
fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git not found: these tests run from a git checkout");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The labels of the one `statsd_exporter_build_info` series, as `(name, value)` pairs.
fn build_info_labels(s: &Samples) -> Vec<(String, String)> {
    let series: Vec<&String> = s
        .values
        .keys()
        .filter(|k| k.starts_with("statsd_exporter_build_info{"))
        .collect();
    assert_eq!(series.len(), 1, "{}", s.text);
    assert_eq!(s.get(series[0]), Some(1.0));
    let inner = series[0]
        .strip_prefix("statsd_exporter_build_info{")
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap();
    // No value here holds `,` or `"`.
    inner
        .split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

#[test]
fn build_info_carries_the_git_revision_and_branch() {
    let gw = Gateway::start(&[]);
    let labels = build_info_labels(&Samples::parse(&gw.scrape()));
    let label = |name: &str| {
        labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} label: {labels:?}"))
    };
    let revision = label("revision");
    assert_eq!(revision.len(), 40, "{revision}");
    assert!(
        revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "{revision}"
    );
    assert_eq!(revision, git(&["rev-parse", "HEAD"]));
    // `HEAD` on a detached checkout, as `git rev-parse --abbrev-ref` says.
    let branch = label("branch");
    assert!(!branch.is_empty());
    assert_eq!(branch, git(&["rev-parse", "--abbrev-ref", "HEAD"]));
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    // The compiler that built it, in Go's `go1.22.5` shape.
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .unwrap();
    let rustc = String::from_utf8(rustc.stdout).unwrap();
    let version = rustc.split_whitespace().nth(1).unwrap();
    assert_eq!(label("goversion"), format!("rustc{version}"));
}

#[test]
fn process_families_are_client_golangs() {
    let gw = Gateway::start(&[]);
    let s = Samples::parse(&gw.scrape());
    // client_golang's process collector on Linux (process_collector.go and
    // process_collector_procfsenabled.go), with its types.
    let expected = [
        ("process_cpu_seconds_total", "counter"),
        ("process_max_fds", "gauge"),
        ("process_network_receive_bytes_total", "counter"),
        ("process_network_transmit_bytes_total", "counter"),
        ("process_open_fds", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_virtual_memory_max_bytes", "gauge"),
    ];
    let written: Vec<&str> = s
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE process_"))
        .collect();
    assert_eq!(written.len(), expected.len(), "{written:?}");
    for (name, kind) in expected {
        assert_eq!(s.type_of(name).as_deref(), Some(kind), "{name}");
        let value = s
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no sample"));
        assert!(value >= 0.0, "{name} {value}");
    }
}
