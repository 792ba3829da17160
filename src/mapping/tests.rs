//! Unit tests; the parent declares this module under #[cfg(test)].
//!
//! Mapper-level tests: rule precedence, templates end to end, the cache and the result fields.

use super::*;

fn mapper(yaml: &str) -> Mapper {
    Mapper::from_yaml(yaml, CacheOptions::default()).unwrap()
}

fn name_of(m: &Mapper, metric: &str, kind: EventKind) -> Option<String> {
    m.map(metric, kind).map(|r| r.name.clone())
}

#[test]
fn globs_are_tried_before_regexes_whatever_the_order() {
    let m = mapper(
        "mappings:\n- match: 'a\\.(.*)'\n  match_type: regex\n  name: from_regex\n- match: a.*\n  name: from_glob\n",
    );
    assert_eq!(
        name_of(&m, "a.b", EventKind::Counter).as_deref(),
        Some("from_glob")
    );
    assert_eq!(
        name_of(&m, "a.b.c", EventKind::Counter).as_deref(),
        Some("from_regex")
    );
}

#[test]
fn regexes_are_unanchored_and_in_file_order() {
    let m = mapper(
        "mappings:\n- match: 'foo_(\\w+)'\n  match_type: regex\n  name: first_$1\n- match: 'x'\n  match_type: regex\n  name: second\n",
    );
    let r = m.map("prefix.foo_bar.suffix", EventKind::Counter).unwrap();
    assert_eq!(r.name, "first_bar");
    assert_eq!(r.rule_index, 0);
    assert_eq!(
        name_of(&m, "xyz", EventKind::Counter).as_deref(),
        Some("second")
    );
}

#[test]
fn regex_match_metric_type_is_checked_after_the_match() {
    let m = mapper(
        "mappings:\n- match: 'req'\n  match_type: regex\n  match_metric_type: gauge\n  name: g\n- match: 'req'\n  match_type: regex\n  name: other\n",
    );
    assert_eq!(name_of(&m, "req", EventKind::Gauge).as_deref(), Some("g"));
    assert_eq!(
        name_of(&m, "req", EventKind::Counter).as_deref(),
        Some("other")
    );
}

#[test]
fn regex_labels_use_go_expand() {
    let m = mapper(
        "defaults:\n  match_type: regex\nmappings:\n- match: '(?P<svc>\\w+)\\.(\\w+)'\n  name: '${2}_total'\n  labels:\n    svc: $svc\n    whole: $0\n    odd: $1_foo\n",
    );
    let r = m.map("web.hits", EventKind::Counter).unwrap();
    assert_eq!(r.name, "hits_total");
    assert_eq!(
        r.labels,
        vec![
            ("svc".to_string(), "web".to_string()),
            ("whole".to_string(), "web.hits".to_string()),
            ("odd".to_string(), String::new()),
        ]
    );
}

#[test]
fn glob_match_metric_type_restricts_the_rule() {
    let m = mapper(
        "mappings:\n- match: t.*\n  match_metric_type: observer\n  name: timer_$1\n- match: t.*\n  name: any_$1\n",
    );
    assert_eq!(
        name_of(&m, "t.x", EventKind::Observer).as_deref(),
        Some("timer_x")
    );
    assert_eq!(
        name_of(&m, "t.x", EventKind::Counter).as_deref(),
        Some("any_x")
    );
}

#[test]
fn glob_disable_ordering_prefers_literals() {
    let m = mapper(
        "defaults:\n  glob_disable_ordering: true\nmappings:\n- match: a.*.*\n  name: star\n- match: a.b.c\n  name: literal\n",
    );
    assert_eq!(
        name_of(&m, "a.b.c", EventKind::Counter).as_deref(),
        Some("literal")
    );
    let ordered =
        mapper("mappings:\n- match: a.*.*\n  name: star\n- match: a.b.c\n  name: literal\n");
    assert_eq!(
        name_of(&ordered, "a.b.c", EventKind::Counter).as_deref(),
        Some("star")
    );
}

#[test]
fn result_fields_come_from_rule_or_defaults() {
    let m = mapper(
        "defaults:\n  ttl: 1m\n  observer_type: histogram\n  histogram_options:\n    buckets: [1, 2]\nmappings:\n- match: a.*\n  name: a\n  help: Some help\n  scale: 1\n  honor_labels: true\n- match: b.*\n  name: b\n  ttl: 2s\n  action: drop\n",
    );
    let a = m.map("a.x", EventKind::Observer).unwrap();
    assert_eq!(a.action, Action::Map);
    assert_eq!(a.ttl, Duration::from_secs(60));
    assert_eq!(a.scale, Some(1.0));
    assert_eq!(a.help.as_deref(), Some("Some help"));
    assert!(a.honor_labels);
    assert_eq!(
        a.observer,
        ObserverOptions::Histogram(crate::store::options::HistogramOptions {
            buckets: vec![1.0, 2.0],
            native: Some(crate::store::NativeHistogramOptions::default()),
        })
    );
    let b = m.map("b.x", EventKind::Counter).unwrap();
    assert_eq!(b.action, Action::Drop);
    assert_eq!(b.ttl, Duration::from_secs(2));
    assert_eq!(b.scale, None);
    assert_eq!(m.defaults().ttl, Duration::from_secs(60));
    assert_eq!(m.rule_count(), 2);
}

#[test]
fn misses_are_cached_and_keyed_by_kind() {
    let m = mapper("mappings:\n- match: a.*\n  match_metric_type: gauge\n  name: a\n");
    for _ in 0..3 {
        assert!(m.map("a.x", EventKind::Counter).is_none());
        assert_eq!(name_of(&m, "a.x", EventKind::Gauge).as_deref(), Some("a"));
    }
    assert_eq!(m.cache.as_ref().map(|c| c.len()), Some(2));
}

#[test]
fn a_mapper_without_rules_leaves_its_cache_alone() {
    for m in [
        Mapper::empty(CacheOptions::default()),
        mapper("defaults:\n  ttl: 1m\n"),
    ] {
        for i in 0..100 {
            assert!(m.map(&format!("envoy.n{i}"), EventKind::Counter).is_none());
        }
        assert_eq!(m.cache.as_ref().map(|c| c.len()), Some(0));
    }
}

#[test]
fn one_glob_yields_distinct_cached_names() {
    for kind in [CacheKind::Lru, CacheKind::Random] {
        for size in [0, 1, 1000] {
            let m = Mapper::from_yaml(
                "mappings:\n- match: aa.bb.*.*\n  name: \"aa_bb_${1}_total\"\n  labels:\n    app: \"$2\"\n",
                CacheOptions { size, kind },
            )
            .unwrap();
            for _ in 0..3 {
                for seg in ["aa", "bb", "cc", "dd"] {
                    let r = m
                        .map(&format!("aa.bb.{seg}.myapp"), EventKind::Counter)
                        .unwrap();
                    assert_eq!(r.name, format!("aa_bb_{seg}_total"));
                    assert_eq!(r.labels, vec![("app".into(), "myapp".into())]);
                }
            }
        }
    }
}

#[test]
fn fixed_results_are_shared() {
    let m = mapper("mappings:\n- match: a.*\n  name: fixed\n  labels:\n    job: x\n");
    let one = m.map_uncached("a.1", EventKind::Counter).unwrap();
    let two = m.map_uncached("a.2", EventKind::Counter).unwrap();
    assert!(Arc::ptr_eq(&one, &two));
}

#[test]
fn empty_mapper_maps_nothing() {
    let m = Mapper::empty(CacheOptions::default());
    assert!(m.map("a.b", EventKind::Counter).is_none());
    assert_eq!(m.rule_count(), 0);
    let istio = Mapper::from_yaml("{}", CacheOptions::default()).unwrap();
    assert_eq!(istio.rule_count(), 0);
}

#[test]
fn uncompilable_regex_is_located() {
    let e = Mapper::from_yaml(
        "mappings:\n- match: a.*\n  name: x\n- match: \"*\\\\.foo\"\n  match_type: regex\n  name: y\n",
        CacheOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, MappingError::InvalidRegex { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("line 4: mappings[1].match"),
        "{e}"
    );
}

#[test]
fn load_file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("statsgate-mapping-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mapping.yml");
    std::fs::write(
        &path,
        "mappings:\n- match: a.*\n  name: x\n  labels:\n    1x: v\n",
    )
    .unwrap();
    let e = Mapper::load_file(&path, CacheOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}: line ", path.display())),
        "{msg}"
    );
    assert!(
        msg.contains("mappings[0].labels: invalid label name \"1x\""),
        "{msg}"
    );
    let missing = Mapper::load_file(&dir.join("absent.yml"), CacheOptions::default());
    assert!(matches!(missing, Err(MappingError::Read { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mapper_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Mapper>();
}
