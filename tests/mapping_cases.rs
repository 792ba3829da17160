//! statsd_exporter's mapper test tables (`pkg/mapper/mapper_test.go`: TestMetricMapperYAML,
//! TestAction, TestMultipleMatches), replayed against [`Mapper`] from
//! `tests/data/statsd_exporter_cases.json`.

mod common;

use common::{cases, data_path};
use serde_json::Value;
use statsgate::line::EventKind;
use statsgate::mapping::{Action, CacheKind, CacheOptions, Mapper};
use statsgate::store::options::ObserverOptions;

fn kind(name: Option<&str>) -> EventKind {
    match name.unwrap_or("counter") {
        "counter" => EventKind::Counter,
        "gauge" => EventKind::Gauge,
        "observer" => EventKind::Observer,
        other => panic!("unknown metric_type {other}"),
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn mapper_yaml_scenarios_in_order() {
    let cases = cases();
    let scenarios = cases["mapper_yaml"].as_array().unwrap();
    assert!(!scenarios.is_empty());
    // One mapper through all scenarios, as the Go test reuses one: a bad config keeps the
    // previous one.
    let mut mapper = Mapper::empty(CacheOptions {
        size: 1000,
        kind: CacheKind::Lru,
    });
    let mut checked = 0;
    for scenario in scenarios {
        let case = scenario["case"].as_str().unwrap();
        let config = scenario["config"].as_str().unwrap();
        let loaded = Mapper::from_yaml(config, CacheOptions::default());
        if scenario["config_bad"].as_bool().unwrap() {
            match loaded {
                Ok(_) => panic!("{case}: config should be rejected"),
                Err(e) => eprintln!("{case}: rejected: {e}"),
            }
        } else {
            mapper = loaded.unwrap_or_else(|e| panic!("{case}: {e}"));
        }
        for exp in scenario["expectations"].as_array().into_iter().flatten() {
            let metric = exp["statsd_metric"].as_str().unwrap();
            let what = format!("{case}: {metric}");
            let result = mapper.map(metric, kind(exp["metric_type"].as_str()));
            // Twice, so the second answer comes from the cache.
            let again = mapper.map(metric, kind(exp["metric_type"].as_str()));
            assert_eq!(result, again, "{what}: cached result differs");

            if let (Some(m), Some(name)) = (&result, exp["name"].as_str()) {
                assert_eq!(m.name, name, "{what}: name");
            }
            if exp["not_present"].as_bool() == Some(true) {
                assert!(result.is_none(), "{what}: should not be mapped");
            }
            let reference = &exp["reference_model"];
            if let Some(present) = reference["present"].as_bool() {
                assert_eq!(result.is_some(), present, "{what}: present");
            }
            if let (Some(m), Some(action)) = (&result, reference["action"].as_str()) {
                let want = if action == "drop" {
                    Action::Drop
                } else {
                    Action::Map
                };
                assert_eq!(m.action, want, "{what}: action");
            }
            let mut got: Vec<(String, String)> = result
                .as_ref()
                .map(|m| m.labels.clone())
                .unwrap_or_default();
            got.sort();
            let mut want: Vec<(String, String)> = exp["labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            want.sort();
            assert_eq!(got, want, "{what}: labels");

            if let Some(ttl) = exp["ttl_s"].as_f64() {
                let m = result.as_ref().unwrap();
                assert_eq!(m.ttl.as_secs_f64(), ttl, "{what}: ttl");
            }
            if let Some(scale) = exp.get("scale").filter(|s| !s.is_null()) {
                let m = result.as_ref().unwrap();
                let want = scale["set"]
                    .as_bool()
                    .unwrap()
                    .then(|| scale["val"].as_f64().unwrap());
                assert_eq!(m.scale, want, "{what}: scale");
            }
            if let Some(buckets) = exp.get("buckets").filter(|b| !b.is_null()) {
                let m = result.as_ref().unwrap();
                let ObserverOptions::Histogram(h) = &m.observer else {
                    panic!("{what}: histogram expected, got {:?}", m.observer);
                };
                assert_eq!(h.buckets, f64s(buckets), "{what}: buckets");
            }
            let summary_fields = ["quantiles", "max_age_s", "age_buckets", "buf_cap"];
            if summary_fields
                .iter()
                .any(|f| exp.get(*f).is_some_and(|v| !v.is_null()))
            {
                let m = result.as_ref().unwrap();
                let ObserverOptions::Summary(s) = &m.observer else {
                    panic!("{what}: summary expected, got {:?}", m.observer);
                };
                if let Some(q) = exp["quantiles"].as_array() {
                    let want: Vec<(f64, f64)> = q
                        .iter()
                        .map(|o| {
                            (
                                o["Quantile"].as_f64().unwrap(),
                                o["Error"].as_f64().unwrap(),
                            )
                        })
                        .collect();
                    let got: Vec<(f64, f64)> =
                        s.objectives.iter().map(|o| (o.quantile, o.error)).collect();
                    assert_eq!(got, want, "{what}: quantiles");
                }
                if let Some(max_age) = exp["max_age_s"].as_f64() {
                    assert_eq!(s.max_age.as_secs_f64(), max_age, "{what}: max_age");
                }
                if let Some(n) = exp["age_buckets"].as_u64() {
                    assert_eq!(u64::from(s.age_buckets), n, "{what}: age_buckets");
                }
                if let Some(n) = exp["buf_cap"].as_u64() {
                    assert_eq!(u64::from(s.buf_cap), n, "{what}: buf_cap");
                }
            }
            checked += 1;
        }
    }
    eprintln!(
        "mapper_yaml: {} scenarios, {checked} expectations passed",
        scenarios.len()
    );
}

#[test]
fn mapper_action_cases() {
    let cases = cases();
    for case in cases["mapper_action"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let loaded = Mapper::from_yaml(case["config"].as_str().unwrap(), CacheOptions::default());
        if case["config_bad"].as_bool().unwrap() {
            assert!(loaded.is_err(), "{name}: config should be rejected");
            continue;
        }
        let mapper = loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = match case["expected_action"].as_str() {
            Some("drop") => Action::Drop,
            _ => Action::Map,
        };
        // Every rule of these configs is a glob; a name built from it reaches that rule.
        for line in case["config"].as_str().unwrap().lines() {
            if let Some(pattern) = line.trim_start().strip_prefix("- match: ") {
                let metric = pattern.trim_matches('"').replace('*', "x");
                let m = mapper
                    .map(&metric, EventKind::Counter)
                    .unwrap_or_else(|| panic!("{name}: {metric} not mapped"));
                assert_eq!(m.action, want, "{name}");
            }
        }
    }
}

#[test]
fn mapper_multiple_matches_with_and_without_cache() {
    let cases = cases();
    let mm = &cases["mapper_multiple_matches"];
    let metric_kind = kind(mm["metric_type"].as_str());
    for options in [
        CacheOptions {
            size: 0,
            kind: CacheKind::Lru,
        },
        CacheOptions {
            size: 1000,
            kind: CacheKind::Lru,
        },
        CacheOptions {
            size: 1000,
            kind: CacheKind::Random,
        },
        CacheOptions {
            size: 1,
            kind: CacheKind::Lru,
        },
    ] {
        let mapper = Mapper::from_yaml(mm["config"].as_str().unwrap(), options).unwrap();
        for _round in 0..3 {
            for case in mm["cases"].as_array().unwrap() {
                let metric = case["statsd_metric"].as_str().unwrap();
                let m = mapper.map(metric, metric_kind).unwrap();
                assert_eq!(
                    m.name,
                    case["name"].as_str().unwrap(),
                    "{options:?} {metric}"
                );
            }
        }
    }
}

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

#[test]
fn cache_hits_do_not_allocate() {
    let config = "mappings:\n- match: a.*.*\n  name: \"a_${1}\"\n  labels:\n    app: \"$2\"\n- match: 'r\\.(\\w+)'\n  match_type: regex\n  name: r\n";
    for kind in [CacheKind::Lru, CacheKind::Random] {
        let mapper = Mapper::from_yaml(config, CacheOptions { size: 100, kind }).unwrap();
        let names = ["a.b.c", "r.x", "unmapped.name"];
        for name in names {
            let _ = mapper.map(name, EventKind::Counter);
        }
        let before = counting_alloc::count();
        for _ in 0..10 {
            for name in names {
                let _ = mapper.map(name, EventKind::Counter);
            }
        }
        let after = counting_alloc::count();
        assert_eq!(after - before, 0, "{kind:?}: cache hits allocated");
        // The counter works: an uncached lookup builds a result.
        let _ = mapper.map_uncached("a.b.c", EventKind::Counter);
        let uncached = counting_alloc::count();
        assert!(uncached > after, "the allocation counter counts nothing");
    }
}

#[test]
fn istio_mapping_file_loads_with_no_rules() {
    let path = data_path("istio-0.8-statsd-mapping.yml");
    let mapper = Mapper::load_file(&path, CacheOptions::default()).unwrap();
    assert_eq!(mapper.rule_count(), 0);
    assert!(
        mapper
            .map("cluster.outbound.upstream_rq_total", EventKind::Counter)
            .is_none()
    );
}
