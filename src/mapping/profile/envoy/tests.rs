//! Unit tests; the parent declares this module under #[cfg(test)].

use super::*;

/// Envoy's algorithm run literally: every rule in declared order, each regex verbatim on a
/// backtracking engine that has lookahead (fancy-regex), substring prefilter and tag-name
/// de-duplication as in `tag_producer_impl.cc`. Valid for ASCII names without `\r`, where
/// fancy-regex's Unicode `\d`/`\w`/`.` agree with std::regex.
struct Reference {
    rules: Vec<(TagRule, fancy_regex::Regex)>,
}

impl Reference {
    fn new(set: TagRuleSet) -> Reference {
        let rules = set
            .rules()
            .iter()
            .map(|rule| (*rule, fancy_regex::Regex::new(rule.regex).unwrap()))
            .collect();
        Reference { rules }
    }

    fn extract(&self, name: &str, use_substr: bool) -> Vec<(String, String, Range<usize>)> {
        let mut out: Vec<(String, String, Range<usize>)> = Vec::new();
        for (rule, regex) in &self.rules {
            if out.iter().any(|(t, _, _)| t == rule.tag_name) {
                continue;
            }
            if use_substr && !name.contains(rule.substr_prefilter) {
                continue;
            }
            let Some(caps) = regex.captures(name).unwrap() else {
                continue;
            };
            let removed = caps.get(1).unwrap();
            let value = if regex.captures_len() > 2 {
                caps.get(2).map_or("", |m| m.as_str())
            } else {
                removed.as_str()
            };
            out.push((rule.tag_name.to_owned(), value.to_owned(), removed.range()));
        }
        out
    }
}

fn owned(matches: &[TagMatch<'_>]) -> Vec<(String, String, Range<usize>)> {
    matches
        .iter()
        .map(|m| (m.tag_name.to_owned(), m.value.to_owned(), m.removed.clone()))
        .collect()
}

const FIRST_TOKENS: &[&str] = &[
    "cluster",
    "http",
    "listener",
    "vhost",
    "mongo",
    "tcp",
    "udp",
    "auth",
    "ratelimit",
    "listener_manager",
    "server",
    "clusterx",
    "",
];

const SEGMENTS: &[&str] = &[
    "xds-grpc",
    "outbound|9080|v1|reviews.default.svc.cluster.local",
    "out.reviews.default.svc.cluster.local|http",
    "0.0.0.0_15001",
    "[__]_15001",
    "[__1]_80",
    "admin",
    "grpc",
    "dynamodb",
    "dynamodbX",
    "table",
    "capacity",
    "operation",
    "error",
    "collection",
    "callsite",
    "cmd",
    "user_agent",
    "vcluster",
    "fault",
    "ssl",
    "cipher",
    "ciphers",
    "http",
    "rds",
    "worker_3",
    "clientssl",
    "__partition_id=abcdefg",
    "__partition_id=abc",
    "ingress",
    "query",
    "",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "a.b",
];

const LAST_SEGMENTS: &[&str] = &[
    "upstream_rq_200",
    "upstream_rq_2xx",
    "downstream_rq_5xx",
    "downstream_cx_total",
    "query_total",
    "reply_size",
    "total",
    "update_rejected",
    "downstream_rq_xx",
    "_rq_404",
    "rq_200",
    "",
];

/// Names built to hit every rule, its near misses, and the lazy/greedy choice points: all
/// `token.segment.last` names, plus seeded random `token.s1.s2[.s3].last` names.
fn corpus() -> Vec<String> {
    let mut names = Vec::new();
    for token in FIRST_TOKENS {
        for segment in SEGMENTS {
            for last in LAST_SEGMENTS {
                names.push(format!("{token}.{segment}.{last}"));
            }
        }
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed_e4f0);
    for _ in 0..6000 {
        let token = FIRST_TOKENS[rng.usize(..FIRST_TOKENS.len())];
        let mut name = token.to_owned();
        for _ in 0..rng.usize(1..=3) {
            name.push('.');
            name.push_str(SEGMENTS[rng.usize(..SEGMENTS.len())]);
        }
        name.push('.');
        name.push_str(LAST_SEGMENTS[rng.usize(..LAST_SEGMENTS.len())]);
        names.push(name);
    }
    names.extend(
        [
            "cluster",
            "cluster.",
            "cluster..x",
            "http",
            "listener.0.0.0.0_80.ssl.cipher",
            "listener.0.0.0.0_443.ssl.cipher.ECDHE-RSA-AES128-GCM-SHA256",
            "listener.[__]_443.ssl.cipher.",
            "cluster.a.b.ssl.ciphers.AES128-SHA",
            "cluster.a.ssl.ciphers.",
            "auth.clientssl.p.total",
            "ratelimit.p.ok",
            "udp.p.downstream_sess_total",
            "mongo.p.cmd.insert.total",
            "http.x.dynamodb.table.t.capacity.op.__partition_id=abcdefg",
            "mongo.p.collection.c.callsite.s.query.total",
            "listener_manager.worker_12.downstream_cx_total",
            "server.uptime",
        ]
        .map(str::to_owned),
    );
    names
}

#[test]
fn every_embedded_rule_compiles_without_lookahead() {
    for set in TagRuleSet::ALL {
        for rule in set.rules() {
            let rewritten = rewrite_lookahead(rule.regex).unwrap();
            assert!(!rewritten.contains("(?="), "{rewritten}");
            compile_pattern(rule.regex).unwrap();
        }
        assert_eq!(TagExtractor::new(set).rules.len(), set.rules().len());
    }
}

#[test]
fn rewrite_lookahead_forms() {
    assert_eq!(
        rewrite_lookahead(r"^http(?=\.).*?\.x").unwrap(),
        r"^http(?:\..*?)??\.x"
    );
    assert_eq!(
        rewrite_lookahead(r"\.grpc(?=\.).*\.(y)").unwrap(),
        r"\.grpc(?:\..*)?\.(y)"
    );
    assert_eq!(
        rewrite_lookahead(r"a(?=\.).*?((\.b))").unwrap(),
        r"a(?:\..*?)??((\.b))"
    );
    assert_eq!(
        rewrite_lookahead(r"^cluster\.(x)").unwrap(),
        r"^cluster\.(x)"
    );
}

#[test]
fn rewrite_lookahead_refuses_other_forms() {
    for pattern in [
        r"a(?=x).*\.",
        r"a(?=\.)b",
        r"a(?=\.).*?b",
        r"a(?=\.).*(?:\.)",
        r"(?!\.)",
    ] {
        // `(?!` is not rewritten, so the regex crate must then refuse it.
        assert!(compile_pattern(pattern).is_err(), "{pattern}");
    }
}

#[test]
fn character_model_is_std_regex_ecmascript() {
    // `.` stops at `\r` as in std::regex ECMAScript; `\d` and `\w` are ASCII only.
    let dot = compile_pattern(r"^a(.*)$").unwrap();
    assert!(dot.captures(b"a\rb").is_none());
    let digit = compile_pattern(r"_rq(_(\d{3}))$").unwrap();
    assert!(digit.is_match(b"x_rq_200"));
    assert!(!digit.is_match("x_rq_\u{0662}00".as_bytes()));
    let word = compile_pattern(r"^(\w+)$").unwrap();
    assert!(!word.is_match("é".as_bytes()));
    let class = compile_pattern(r"^([_.[:digit:]]*)$").unwrap();
    assert!(class.is_match(b"0.0.0.0_80"));
}

#[test]
fn rewritten_rules_match_verbatim_rules_on_backtracking_engine() {
    let names = corpus();
    let mut matches = Vec::new();
    for set in TagRuleSet::ALL {
        let extractor = TagExtractor::new(set);
        let reference = Reference::new(set);
        let mut produced = std::collections::HashSet::new();
        for name in &names {
            extractor.extract_matches(name, &mut matches);
            assert_eq!(
                owned(&matches),
                reference.extract(name, true),
                "{set} {name}"
            );
            produced.extend(matches.iter().map(|m| m.tag_name));
        }
        // Guards against a corpus that leaves some rule unexercised.
        for rule in set.rules() {
            assert!(
                produced.contains(rule.tag_name),
                "{set}: {} never matched",
                rule.tag_name
            );
        }
    }
}

#[test]
fn token_dispatch_equals_trying_every_rule() {
    let names = corpus();
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for set in TagRuleSet::ALL {
        let extractor = TagExtractor::new(set);
        for name in &names {
            extractor.extract_matches(name, &mut fast);
            extractor.extract_matches_every_rule(name, &mut slow);
            assert_eq!(fast, slow, "{set} {name}");
        }
    }
}

#[test]
fn substr_prefilter_is_envoys_not_only_an_optimisation() {
    // `\.dynamodb.` has an unescaped dot but Envoy's prefilter is the literal `.dynamodb.`,
    // so Envoy (and statsgate) skip the rule on `dynamodbX`; without it the regex would match.
    let name = "http.p.dynamodbXoperation.Get.upstream_rq_total";
    let reference = Reference::new(TagRuleSet::Envoy);
    let with_prefilter = TagExtractor::new(TagRuleSet::Envoy).extract(name);
    assert!(
        !with_prefilter
            .tags
            .iter()
            .any(|(t, _)| t == "envoy.dynamo_operation")
    );
    assert!(
        reference
            .extract(name, false)
            .iter()
            .any(|(t, _, _)| t == "envoy.dynamo_operation")
    );
    // The 2018 rules had no prefilter, so there it does match.
    let old = TagExtractor::new(TagRuleSet::Envoy2018).extract(name);
    assert!(
        old.tags
            .contains(&("envoy.dynamo_operation".to_owned(), "Get".to_owned()))
    );
}

#[test]
fn leading_tokens_follow_envoy_extract_regex_prefix() {
    assert_eq!(leading_token(r"^cluster\.((.*?)\.)"), Some("cluster"));
    assert_eq!(leading_token(r"^http(?=\.).*?\.rds"), Some("http"));
    assert_eq!(
        leading_token(r"^listener_manager\.((worker_\d+)\.)"),
        Some("listener_manager")
    );
    assert_eq!(leading_token(r"^auth\.clientssl\."), Some("auth"));
    assert_eq!(leading_token(r"^(?:|listener(?=\.).*?\.)http\."), None);
    assert_eq!(leading_token(r"_rq(_(\d{3}))$"), None);
    assert_eq!(leading_token(r"^cluster$"), None);
    assert_eq!(leading_token(r"^clusterx"), None);
}

#[test]
fn cluster_example_from_the_issue() {
    let extracted =
        TagExtractor::new(TagRuleSet::Envoy).extract("cluster.xds-grpc.upstream_rq_200");
    assert_eq!(extracted.name, "cluster.upstream_rq");
    assert_eq!(
        extracted.tags,
        [
            ("envoy.response_code", "200"),
            ("envoy.cluster_name", "xds-grpc")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(
        prometheus_metric_name(&extracted.name),
        "envoy_cluster_upstream_rq"
    );
    assert_eq!(
        prometheus_label_name("envoy.response_code"),
        "envoy_response_code"
    );
}

#[test]
fn istio_rules_keep_whole_cluster_name() {
    let name = "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_200";
    let envoy = TagExtractor::new(TagRuleSet::Envoy).extract(name);
    assert_eq!(envoy.name, "cluster.default.svc.cluster.local.upstream_rq");
    assert_eq!(
        envoy.tags[1],
        (
            "envoy.cluster_name".to_owned(),
            "outbound|9080|v1|reviews".to_owned()
        )
    );
    let istio = TagExtractor::new(TagRuleSet::Istio).extract(name);
    assert_eq!(istio.name, "cluster.upstream_rq");
    assert_eq!(
        istio.tags,
        [
            (
                "cluster_name",
                "outbound|9080|v1|reviews.default.svc.cluster.local"
            ),
            ("response_code", "200"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn listener_http_connection_manager() {
    // envoy-2021 declares http_conn_manager_prefix twice (`^listener…\.http\.` and
    // `^http\.`); under a listener only the first can match.
    let extracted = TagExtractor::new(TagRuleSet::Envoy)
        .extract("listener.0.0.0.0_80.http.ingress.downstream_rq_2xx");
    assert_eq!(extracted.name, "listener.http.downstream_rq_xx");
    assert_eq!(
        extracted.tags,
        [
            ("envoy.response_code_class", "2"),
            ("envoy.http_conn_manager_prefix", "ingress"),
            ("envoy.listener_address", "0.0.0.0_80"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn duplicate_tag_name_keeps_first_and_skips_the_later_rule() {
    // Envoy skips an extractor whose tag name was already produced, so its span stays.
    let rule = |tag_name, pattern| CompiledRule {
        tag_name,
        substr_prefilter: "",
        regex: compile_pattern(pattern).unwrap(),
        has_value_group: true,
    };
    let extractor = TagExtractor {
        set: TagRuleSet::Envoy,
        rules: vec![
            rule("t", r"^a\.((x)\.)"),
            rule("t", r"((y)\.)"),
            rule("u", r"((z)\.)"),
        ]
        .into_boxed_slice(),
        by_token: Box::new([]),
        untokened: Box::new([0, 1, 2]),
    };
    let extracted = extractor.extract("a.x.y.z.end");
    assert_eq!(extracted.name, "a.y.end");
    assert_eq!(
        extracted.tags,
        [("t", "x"), ("u", "z")].map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn untagged_names_pass_through() {
    for set in TagRuleSet::ALL {
        let extracted = TagExtractor::new(set).extract("server.memory_allocated");
        assert_eq!(extracted.name, "server.memory_allocated");
        assert!(extracted.tags.is_empty());
    }
}

#[test]
fn remove_spans_merges_overlaps() {
    let m = |removed: Range<usize>| TagMatch {
        tag_name: "t",
        value: "v",
        removed,
    };
    assert_eq!(
        remove_spans("abcdefgh", &[m(5..7), m(1..3), m(2..4)]),
        "aeh"
    );
    assert_eq!(remove_spans("abc", &[]), "abc");
    assert_eq!(remove_spans("abc", &[m(0..3)]), "");
}

#[test]
fn prometheus_names_sanitize_bytewise() {
    assert_eq!(
        prometheus_metric_name("vulture.eats-liver"),
        "envoy_vulture_eats_liver"
    );
    assert_eq!(prometheus_metric_name("1st"), "envoy_1st");
    assert_eq!(prometheus_metric_name("a|b:c"), "envoy_a_b_c");
    assert_eq!(prometheus_metric_name("é"), "envoy___");
    assert_eq!(
        prometheus_label_name("envoy.cluster_name"),
        "envoy_cluster_name"
    );
    assert_eq!(prometheus_label_name("cipher_suite"), "cipher_suite");
}

#[test]
fn sink_prefix() {
    assert_eq!(
        sink_prefix_strip("envoy.cluster.a.b", "envoy"),
        Some("cluster.a.b")
    );
    assert_eq!(sink_prefix_strip("envoyx.cluster", "envoy"), None);
    assert_eq!(sink_prefix_strip("envoy", "envoy"), None);
    assert_eq!(sink_prefix_strip("other.x", "envoy"), None);
    assert_eq!(sink_prefix_strip("my.app.x", "my.app"), Some("x"));
    assert_eq!(sink_prefix_strip("x.y", ""), Some("x.y"));
}

#[test]
fn rule_set_flag_values() {
    assert_eq!("envoy".parse(), Ok(TagRuleSet::Envoy));
    assert_eq!("envoy-2018".parse(), Ok(TagRuleSet::Envoy2018));
    assert_eq!("istio".parse(), Ok(TagRuleSet::Istio));
    assert_eq!(
        "Envoy".parse::<TagRuleSet>(),
        Err(UnknownTagRuleSet("Envoy".to_owned()))
    );
    for set in TagRuleSet::ALL {
        assert_eq!(set.to_string().parse(), Ok(set));
    }
}

#[test]
fn default_buckets() {
    assert_eq!(ENVOY_DEFAULT_BUCKETS_MS[0], 0.5);
    assert_eq!(ENVOY_DEFAULT_BUCKETS_MS[18], 3_600_000.0);
    assert!(ENVOY_DEFAULT_BUCKETS_MS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn extractor_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TagExtractor>();
}
