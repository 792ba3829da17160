//! The embedded tag-extraction rule sets, verbatim from Envoy and Istio.
//!
//! They are compiled into the binary so that the gateway reads no data file at run time: the
//! rows below are `tests/data/envoy-tag-regexes.tsv` row by row (checked by
//! `tests/envoy_names.rs`), with each regex exactly as Envoy compiled it. Translation to
//! the Rust regex dialect happens once, in `compile_pattern`.
//!
//! Sources:
//! * `envoy-2018`: envoyproxy/envoy `source/common/config/well_known_names.cc` @
//!   `f2a470624a146012d472963fd4fc12a8f7326281` (`getRegexMapping()`, Envoy ~1.6-1.8).
//! * `envoy-2021`: the same file @ `00a0ba12beee82c38fa728876af49e0ef02c5877`
//!   (`TagNameValues` constructor with `addRegex`/`addRe2` and substring prefilters).
//! * `istio-1.0-bootstrap`: istio/istio `tools/deb/envoy_bootstrap_v2.json` @
//!   `386d95d60f0b744926c46f834acee1ee1f17b49c` (`stats_config.stats_tags`,
//!   `use_all_default_tags: false`).

/// The regex engine Envoy used for a rule; both give leftmost-first (Perl priority) captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegexEngine {
    /// `std::regex` in ECMAScript mode (backtracking).
    StdRegex,
    /// Google RE2 (`addRe2` in newer Envoy).
    Re2,
}

/// One tag-extraction rule as Envoy declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagRule {
    /// Tag name as emitted, e.g. `envoy.cluster_name`.
    pub tag_name: &'static str,
    /// Envoy's C++ constant name (`CLUSTER_NAME`), or `-` for Istio's bootstrap rules.
    pub constant: &'static str,
    /// The regex exactly as Envoy compiles it (ECMAScript or RE2 syntax).
    pub regex: &'static str,
    /// Envoy skips the rule when the name lacks this substring; empty means always tried.
    pub substr_prefilter: &'static str,
    /// The engine Envoy compiled the regex with.
    pub engine: RegexEngine,
}

impl TagRule {
    const fn std(
        tag_name: &'static str,
        constant: &'static str,
        regex: &'static str,
        substr_prefilter: &'static str,
    ) -> TagRule {
        TagRule {
            tag_name,
            constant,
            regex,
            substr_prefilter,
            engine: RegexEngine::StdRegex,
        }
    }

    const fn re2(
        tag_name: &'static str,
        constant: &'static str,
        regex: &'static str,
        substr_prefilter: &'static str,
    ) -> TagRule {
        TagRule {
            tag_name,
            constant,
            regex,
            substr_prefilter,
            engine: RegexEngine::Re2,
        }
    }
}

/// Source of [`ENVOY_2018`].
pub(super) const ENVOY_2018_SOURCE: &str = "envoyproxy/envoy source/common/config/well_known_names.cc @ f2a470624a146012d472963fd4fc12a8f7326281 (getRegexMapping(); Envoy ~1.6-1.8, the Istio 0.8/1.0 era)";

/// Era `envoy-2018`, in Envoy's declared evaluation order.
pub(super) const ENVOY_2018: &[TagRule] = &[
    TagRule::std(
        "envoy.response_code",
        "RESPONSE_CODE",
        r"_rq(_(\d{3}))$",
        "",
    ),
    TagRule::std(
        "envoy.response_code_class",
        "RESPONSE_CODE_CLASS",
        r"_rq_(\d)xx$",
        "",
    ),
    TagRule::std(
        "envoy.dynamo_partition_id",
        "DYNAMO_PARTITION_ID",
        r"^http(?=\.).*?\.dynamodb\.table(?=\.).*?\.capacity(?=\.).*?(\.__partition_id=(\w{7}))$",
        "",
    ),
    TagRule::std(
        "envoy.dynamo_operation",
        "DYNAMO_OPERATION",
        r"^http(?=\.).*?\.dynamodb.(?:operation|table(?=\.).*?\.capacity)(\.(.*?))(?:\.|$)",
        "",
    ),
    TagRule::std(
        "envoy.mongo_callsite",
        "MONGO_CALLSITE",
        r"^mongo(?=\.).*?\.collection(?=\.).*?\.callsite\.((.*?)\.).*?query.\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.dynamo_table",
        "DYNAMO_TABLE",
        r"^http(?=\.).*?\.dynamodb.(?:table|error)\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.mongo_collection",
        "MONGO_COLLECTION",
        r"^mongo(?=\.).*?\.collection\.((.*?)\.).*?query.\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.mongo_cmd",
        "MONGO_CMD",
        r"^mongo(?=\.).*?\.cmd\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.grpc_bridge_method",
        "GRPC_BRIDGE_METHOD",
        r"^cluster(?=\.).*?\.grpc(?=\.).*\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.http_user_agent",
        "HTTP_USER_AGENT",
        r"^http(?=\.).*?\.user_agent\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.virtual_cluster",
        "VIRTUAL_CLUSTER",
        r"^vhost(?=\.).*?\.vcluster\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.fault_downstream_cluster",
        "FAULT_DOWNSTREAM_CLUSTER",
        r"^http(?=\.).*?\.fault\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.ssl_cipher",
        "SSL_CIPHER",
        r"^listener(?=\.).*?\.ssl\.cipher(\.(.*?))$",
        "",
    ),
    TagRule::std(
        "cipher_suite",
        "SSL_CIPHER_SUITE",
        r"^cluster(?=\.).*?\.ssl\.ciphers(\.(.*?))$",
        "",
    ),
    TagRule::std(
        "envoy.grpc_bridge_service",
        "GRPC_BRIDGE_SERVICE",
        r"^cluster(?=\.).*?\.grpc\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.tcp_prefix",
        "TCP_PREFIX",
        r"^tcp\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.clientssl_prefix",
        "CLIENTSSL_PREFIX",
        r"^auth\.clientssl\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.ratelimit_prefix",
        "RATELIMIT_PREFIX",
        r"^ratelimit\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.cluster_name",
        "CLUSTER_NAME",
        r"^cluster\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.http_conn_manager_prefix",
        "HTTP_CONN_MANAGER_PREFIX",
        r"^(?:|listener(?=\.).*?\.)http\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.listener_address",
        "LISTENER_ADDRESS",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        "",
    ),
    TagRule::std(
        "envoy.virtual_host",
        "VIRTUAL_HOST",
        r"^vhost\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.mongo_prefix",
        "MONGO_PREFIX",
        r"^mongo\.((.*?)\.)",
        "",
    ),
];

/// Source of [`ENVOY_2021`].
pub(super) const ENVOY_2021_SOURCE: &str = "envoyproxy/envoy source/common/config/well_known_names.cc @ 00a0ba12beee82c38fa728876af49e0ef02c5877 (TagNameValues ctor with addRegex/addRe2 + substr prefilter)";

/// Era `envoy-2021`, in Envoy's declared evaluation order.
pub(super) const ENVOY_2021: &[TagRule] = &[
    TagRule::std(
        "envoy.response_code",
        "RESPONSE_CODE",
        r"_rq(_(\d{3}))$",
        "_rq_",
    ),
    TagRule::std(
        "envoy.response_code_class",
        "RESPONSE_CODE_CLASS",
        r"_rq_(\d)xx$",
        "_rq_",
    ),
    TagRule::std(
        "envoy.dynamo_partition_id",
        "DYNAMO_PARTITION_ID",
        r"^http(?=\.).*?\.dynamodb\.table(?=\.).*?\.capacity(?=\.).*?(\.__partition_id=(\w{7}))$",
        ".dynamodb.table.",
    ),
    TagRule::std(
        "envoy.dynamo_operation",
        "DYNAMO_OPERATION",
        r"^http(?=\.).*?\.dynamodb.(?:operation|table(?=\.).*?\.capacity)(\.(.*?))(?:\.|$)",
        ".dynamodb.",
    ),
    TagRule::std(
        "envoy.mongo_callsite",
        "MONGO_CALLSITE",
        r"^mongo(?=\.).*?\.collection(?=\.).*?\.callsite\.((.*?)\.).*?query.\w+?$",
        ".collection.",
    ),
    TagRule::std(
        "envoy.dynamo_table",
        "DYNAMO_TABLE",
        r"^http(?=\.).*?\.dynamodb.(?:table|error)\.((.*?)\.)",
        ".dynamodb.",
    ),
    TagRule::std(
        "envoy.mongo_collection",
        "MONGO_COLLECTION",
        r"^mongo(?=\.).*?\.collection\.((.*?)\.).*?query.\w+?$",
        ".collection.",
    ),
    TagRule::std(
        "envoy.mongo_cmd",
        "MONGO_CMD",
        r"^mongo(?=\.).*?\.cmd\.((.*?)\.)\w+?$",
        ".cmd.",
    ),
    TagRule::std(
        "envoy.grpc_bridge_method",
        "GRPC_BRIDGE_METHOD",
        r"^cluster(?=\.).*?\.grpc(?=\.).*\.((.*?)\.)\w+?$",
        ".grpc.",
    ),
    TagRule::std(
        "envoy.http_user_agent",
        "HTTP_USER_AGENT",
        r"^http(?=\.).*?\.user_agent\.((.*?)\.)\w+?$",
        ".user_agent.",
    ),
    TagRule::std(
        "envoy.virtual_cluster",
        "VIRTUAL_CLUSTER",
        r"^vhost(?=\.).*?\.vcluster\.((.*?)\.)\w+?$",
        ".vcluster.",
    ),
    TagRule::std(
        "envoy.fault_downstream_cluster",
        "FAULT_DOWNSTREAM_CLUSTER",
        r"^http(?=\.).*?\.fault\.((.*?)\.)\w+?$",
        ".fault.",
    ),
    TagRule::std(
        "envoy.ssl_cipher",
        "SSL_CIPHER",
        r"^listener(?=\.).*?\.ssl\.cipher(\.(.*?))$",
        "",
    ),
    TagRule::std(
        "cipher_suite",
        "SSL_CIPHER_SUITE",
        r"^cluster(?=\.).*?\.ssl\.ciphers(\.(.*?))$",
        ".ssl.ciphers.",
    ),
    TagRule::std(
        "envoy.grpc_bridge_service",
        "GRPC_BRIDGE_SERVICE",
        r"^cluster(?=\.).*?\.grpc\.((.*?)\.)",
        ".grpc.",
    ),
    TagRule::std(
        "envoy.tcp_prefix",
        "TCP_PREFIX",
        r"^tcp\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.udp_prefix",
        "UDP_PREFIX",
        r"^udp\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.clientssl_prefix",
        "CLIENTSSL_PREFIX",
        r"^auth\.clientssl\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::std(
        "envoy.ratelimit_prefix",
        "RATELIMIT_PREFIX",
        r"^ratelimit\.((.*?)\.)\w+?$",
        "",
    ),
    TagRule::re2(
        "envoy.cluster_name",
        "CLUSTER_NAME",
        r"^cluster\.(([^\.]+)\.).*",
        "",
    ),
    TagRule::std(
        "envoy.http_conn_manager_prefix",
        "HTTP_CONN_MANAGER_PREFIX",
        r"^listener(?=\.).*?\.http\.((.*?)\.)",
        ".http.",
    ),
    TagRule::std(
        "envoy.http_conn_manager_prefix",
        "HTTP_CONN_MANAGER_PREFIX",
        r"^http\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.listener_address",
        "LISTENER_ADDRESS",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        "",
    ),
    TagRule::std(
        "envoy.virtual_host",
        "VIRTUAL_HOST",
        r"^vhost\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.mongo_prefix",
        "MONGO_PREFIX",
        r"^mongo\.((.*?)\.)",
        "",
    ),
    TagRule::std(
        "envoy.rds_route_config",
        "RDS_ROUTE_CONFIG",
        r"^http(?=\.).*?\.rds\.((.*?)\.)\w+?$",
        ".rds.",
    ),
    TagRule::std(
        "envoy.worker_id",
        "WORKER_ID",
        r"^listener_manager\.((worker_\d+)\.)",
        "listener_manager.worker_",
    ),
];

/// Source of [`ISTIO_1_0`].
pub(super) const ISTIO_1_0_SOURCE: &str = "istio/istio tools/deb/envoy_bootstrap_v2.json @ 386d95d60f0b744926c46f834acee1ee1f17b49c (stats_config.stats_tags, use_all_default_tags=false; only affects tagged sinks / prometheus endpoint, NOT the plain statsd sink)";

/// Era `istio-1.0-bootstrap`, in Envoy's declared evaluation order.
pub(super) const ISTIO_1_0: &[TagRule] = &[
    TagRule::std(
        "cluster_name",
        "-",
        r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
        "",
    ),
    TagRule::std("tcp_prefix", "-", r"^tcp\.((.*?)\.)\w+?$", ""),
    TagRule::std("response_code", "-", r"_rq(_(\d{3}))$", ""),
    TagRule::std("response_code_class", "-", r"_rq(_(\dxx))$", ""),
    TagRule::std(
        "http_conn_manager_listener_prefix",
        "-",
        r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        "",
    ),
    TagRule::std(
        "http_conn_manager_prefix",
        "-",
        r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        "",
    ),
    TagRule::std(
        "listener_address",
        "-",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        "",
    ),
];
