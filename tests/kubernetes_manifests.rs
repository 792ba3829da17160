//! The Kubernetes manifests under `deploy/kubernetes/` agree with the binary they run:
//! every flag exists in `--help` and is accepted (`--check-config` with the ConfigMap's
//! mapping file), the image tag is the crate version, container ports match the listen
//! flags, Services point at ports the pods declare, probes name endpoints that answer 200
//! on a running gateway started with the manifest's own flags, and the Envoy/Istio sink
//! examples send to the Service's statsd port.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Gateway, TempDir};
use serde_yaml_ng::Value;

const BIN: &str = env!("CARGO_BIN_EXE_statsgate");

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of every manifest, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir())
        .expect("deploy/kubernetes exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the five manifests, found {files:?}"
    );
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("manifest readable");
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{name}: not valid YAML: {e}"));
            docs.push((name.clone(), v));
        }
    }
    docs
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn text(v: &Value, path: &[&str]) -> String {
    s(v, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string at {path:?}"))
        .to_string()
}

fn kind(v: &Value) -> String {
    text(v, &["kind"])
}

fn help_text() -> String {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// Port of a listen address flag value (`:9125`, `127.0.0.1:9125`).
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

struct Container {
    file: String,
    workload: String,
    labels: BTreeMap<String, String>,
    spec: Value,
}

fn statsgate_containers(docs: &[(String, Value)]) -> Vec<Container> {
    let mut out = Vec::new();
    for (file, d) in docs {
        if !matches!(kind(d).as_str(), "Deployment" | "DaemonSet") {
            continue;
        }
        let labels: BTreeMap<String, String> = s(d, &["spec", "template", "metadata", "labels"])
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().unwrap().to_string(),
                            v.as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let containers = s(d, &["spec", "template", "spec", "containers"])
            .and_then(Value::as_sequence)
            .expect("containers");
        for c in containers {
            if text(c, &["name"]) == "statsgate" {
                out.push(Container {
                    file: file.clone(),
                    workload: text(d, &["metadata", "name"]),
                    labels: labels.clone(),
                    spec: c.clone(),
                });
            }
        }
    }
    out
}

fn args(c: &Container) -> Vec<String> {
    s(&c.spec, &["args"])
        .and_then(Value::as_sequence)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().expect("string arg").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn flag_value(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")).map(str::to_string))
        .unwrap_or_else(|| default.to_string())
}

/// The mapping file of the manifests' ConfigMap, written to `dir`, keyed by mount path.
fn mapping_files(docs: &[(String, Value)], dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for (_, d) in docs {
        if kind(d) != "ConfigMap" || text(d, &["metadata", "name"]) != "statsgate-mapping" {
            continue;
        }
        for (k, v) in d.get("data").and_then(Value::as_mapping).expect("data") {
            let k = k.as_str().unwrap();
            let p = dir.join(k);
            std::fs::write(&p, v.as_str().unwrap()).unwrap();
            out.insert(format!("/etc/statsgate/{k}"), p);
        }
    }
    out
}

#[test]
fn every_workload_runs_the_binary_it_names() {
    let docs = documents();
    let containers = statsgate_containers(&docs);
    assert!(
        containers.len() >= 3,
        "Deployment, DaemonSet and sidecar each run statsgate"
    );
    let help = help_text();
    let version =
        String::from_utf8(Command::new(BIN).arg("--version").output().unwrap().stdout).unwrap();
    let tmp = TempDir::new("k8s");
    let mappings = mapping_files(&docs, &tmp.0);

    for c in &containers {
        let who = format!("{}:{}", c.file, c.workload);
        // Image: statsgate at the crate's version.
        let image = text(&c.spec, &["image"]);
        assert_eq!(
            image,
            format!("statsgate:{}", env!("CARGO_PKG_VERSION")),
            "{who}"
        );
        assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

        // Every flag is one the binary documents.
        let args = args(c);
        for a in &args {
            let name = a.split('=').next().unwrap();
            assert!(name.starts_with("--"), "{who}: {a}");
            assert!(
                help.contains(&format!("{name} ")) || help.contains(&format!("{name}\n")),
                "{who}: {name} is not in --help"
            );
        }

        // The binary accepts them all, mapping file included.
        let mut real: Vec<String> = args
            .iter()
            .map(|a| match a.split_once('=') {
                Some(("--statsd.mapping-config", p)) => {
                    let local = mappings
                        .get(p)
                        .unwrap_or_else(|| panic!("{who}: {p} is not from the ConfigMap"));
                    format!("--statsd.mapping-config={}", local.display())
                }
                _ => a.clone(),
            })
            .collect();
        real.push("--check-config".into());
        let out = Command::new(BIN).args(&real).output().unwrap();
        assert!(
            out.status.success(),
            "{who}: {real:?} refused: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // Declared ports are the ones the flags listen on.
        let ports: Vec<(String, u16, String)> = s(&c.spec, &["ports"])
            .and_then(Value::as_sequence)
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    text(p, &["name"]),
                    p.get("containerPort").and_then(Value::as_u64).unwrap() as u16,
                    text(p, &["protocol"]),
                )
            })
            .collect();
        let web = port_of(&flag_value(&args, "--web.listen-address", ":9102"));
        assert!(
            ports.contains(&("http".into(), web, "TCP".into())),
            "{who}: {ports:?}"
        );
        let udp = flag_value(&args, "--statsd.listen-udp", ":9125");
        if udp.starts_with("127.0.0.1") {
            // Loopback-only sidecar listener: nothing to declare to the cluster.
        } else {
            assert!(
                ports.contains(&("statsd-udp".into(), port_of(&udp), "UDP".into())),
                "{who}: {ports:?}"
            );
        }
        let tcp = flag_value(&args, "--statsd.listen-tcp", ":9125");
        if !tcp.is_empty() && !tcp.starts_with("127.0.0.1") {
            assert!(
                ports.contains(&("statsd-tcp".into(), port_of(&tcp), "TCP".into())),
                "{who}: {ports:?}"
            );
        }

        // Probes: the health endpoints, on the HTTP port.
        assert_eq!(
            text(&c.spec, &["livenessProbe", "httpGet", "path"]),
            "/-/healthy",
            "{who}"
        );
        assert_eq!(
            text(&c.spec, &["readinessProbe", "httpGet", "path"]),
            "/-/ready",
            "{who}"
        );
        assert_eq!(
            text(&c.spec, &["livenessProbe", "httpGet", "port"]),
            "http",
            "{who}"
        );
        assert_eq!(
            text(&c.spec, &["readinessProbe", "httpGet", "port"]),
            "http",
            "{who}"
        );

        // Hardened: non-root, read-only root filesystem.
        assert_eq!(
            s(&c.spec, &["securityContext", "readOnlyRootFilesystem"]).and_then(Value::as_bool),
            Some(true),
            "{who}"
        );
        assert_eq!(
            s(&c.spec, &["securityContext", "allowPrivilegeEscalation"]).and_then(Value::as_bool),
            Some(false),
            "{who}"
        );
        assert!(
            s(&c.spec, &["resources", "requests", "memory"]).is_some(),
            "{who}: memory request"
        );
    }
    for (file, d) in &docs {
        if matches!(kind(d).as_str(), "Deployment" | "DaemonSet") {
            let pod = s(d, &["spec", "template", "spec", "securityContext"])
                .expect("pod securityContext");
            assert_eq!(
                pod.get("runAsNonRoot").and_then(Value::as_bool),
                Some(true),
                "{file}"
            );
        }
    }
}

#[test]
fn probes_answer_on_a_gateway_started_with_each_manifests_flags() {
    let docs = documents();
    let tmp = TempDir::new("k8s-probes");
    let mappings = mapping_files(&docs, &tmp.0);
    for c in statsgate_containers(&docs) {
        // The harness chooses loopback listeners; keep every other flag as written.
        let kept: Vec<String> = args(&c)
            .into_iter()
            .filter(|a| {
                !a.starts_with("--web.listen-address")
                    && !a.starts_with("--statsd.listen-udp")
                    && !a.starts_with("--statsd.listen-tcp")
                    && !a.starts_with("--statsd.udp-sockets")
            })
            .map(|a| match a.split_once('=') {
                Some(("--statsd.mapping-config", p)) => {
                    format!("--statsd.mapping-config={}", mappings[p].display())
                }
                _ => a,
            })
            .collect();
        let refs: Vec<&str> = kept.iter().map(String::as_str).collect();
        let gw = Gateway::start(&refs);
        for probe in ["livenessProbe", "readinessProbe"] {
            let path = text(&c.spec, &[probe, "httpGet", "path"]);
            let (status, _) = gw.get(&path);
            assert_eq!(status, 200, "{}:{} {probe} {path}", c.file, c.workload);
        }
        gw.send_udp(b"k8s.probe.check:1|c\n");
        gw.wait_for("the line arrives", |s| {
            s.get("k8s_probe_check") == Some(1.0)
        });
    }
}

#[test]
fn services_point_at_declared_container_ports() {
    let docs = documents();
    let containers = statsgate_containers(&docs);
    let mut checked = 0;
    for (file, d) in &docs {
        if kind(d) != "Service" {
            continue;
        }
        let selector: BTreeMap<String, String> = s(d, &["spec", "selector"])
            .and_then(Value::as_mapping)
            .expect("selector")
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_string(),
                    v.as_str().unwrap().to_string(),
                )
            })
            .collect();
        let pods: Vec<&Container> = containers
            .iter()
            .filter(|c| selector.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .collect();
        assert_eq!(
            pods.len(),
            1,
            "{file}: the Service selects exactly one statsgate workload"
        );
        let declared: Vec<(String, String)> = s(&pods[0].spec, &["ports"])
            .and_then(Value::as_sequence)
            .unwrap()
            .iter()
            .map(|p| (text(p, &["name"]), text(p, &["protocol"])))
            .collect();
        for p in s(d, &["spec", "ports"])
            .and_then(Value::as_sequence)
            .unwrap()
        {
            let target = (text(p, &["targetPort"]), text(p, &["protocol"]));
            assert!(
                declared.contains(&target),
                "{file}: {target:?} not declared by the pod: {declared:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "both Services checked");
    // The ServiceMonitor selects the central Service's labels and scrapes its http port.
    let sm = docs
        .iter()
        .find(|(_, d)| kind(d) == "ServiceMonitor")
        .expect("a ServiceMonitor");
    let svc = docs
        .iter()
        .find(|(_, d)| kind(d) == "Service" && text(d, &["metadata", "name"]) == "statsgate")
        .expect("the central Service");
    let want = s(&sm.1, &["spec", "selector", "matchLabels"]).unwrap();
    let have = s(&svc.1, &["metadata", "labels"]).unwrap();
    for (k, v) in want.as_mapping().unwrap() {
        assert_eq!(have.get(k.as_str().unwrap()), Some(v));
    }
    let ep = &s(&sm.1, &["spec", "endpoints"])
        .and_then(Value::as_sequence)
        .unwrap()[0];
    assert_eq!(text(ep, &["port"]), "http");
    assert_eq!(text(ep, &["path"]), "/metrics");
}

#[test]
fn envoy_and_istio_sinks_send_to_the_statsd_port() {
    let docs = documents();
    let maps: Vec<&Value> = docs
        .iter()
        .filter(|(f, d)| f == "istio-envoy.yaml" && kind(d) == "ConfigMap")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(maps.len(), 2);
    let mut sinks = Vec::new();
    for m in maps {
        let data = m.get("data").and_then(Value::as_mapping).unwrap();
        for (k, v) in data {
            let body = v.as_str().unwrap();
            let parsed: Value = if k.as_str() == Some("custom_bootstrap.json") {
                serde_yaml_ng::from_str(body).expect("valid JSON (a YAML subset)")
            } else {
                serde_yaml_ng::from_str(body).expect("valid YAML bootstrap")
            };
            for sink in parsed
                .get("stats_sinks")
                .and_then(Value::as_sequence)
                .expect("stats_sinks")
            {
                sinks.push(sink.clone());
            }
        }
    }
    assert_eq!(sinks.len(), 2);
    for sink in sinks {
        assert_eq!(text(&sink, &["name"]), "envoy.stat_sinks.statsd");
        let addr = s(&sink, &["typed_config", "address", "socket_address"]).unwrap();
        assert_eq!(addr.get("port_value").and_then(Value::as_u64), Some(9125));
        assert_eq!(text(addr, &["protocol"]), "UDP");
        assert!(text(addr, &["address"]).starts_with("statsgate."));
        // The envoy profile strips this prefix by default.
        assert_eq!(text(&sink, &["typed_config", "prefix"]), "envoy");
    }
}
