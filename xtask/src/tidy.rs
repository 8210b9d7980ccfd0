//! Keep-in-step promises between files, as tests: two files that must agree are read and
//! compared, and a difference fails with what differs.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn text(relative: &str) -> String {
        let path = repo().join(relative);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    fn yaml(relative: &str) -> Value {
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
        serde_json::to_value(v).expect("YAML as JSON")
    }

    /// Every `host:port` string under `v`, with the host replaced by what `host` returns.
    fn map_targets(v: &mut Value, host: &mut impl FnMut(&str) -> String) {
        match v {
            Value::String(s) => {
                if let Some((h, port)) = s.rsplit_once(':')
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                {
                    *s = format!("{}:{port}", host(h));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| map_targets(i, host)),
            Value::Object(map) => map.values_mut().for_each(|i| map_targets(i, host)),
            _ => {}
        }
    }

    /// Prometheus cannot expand variables, so compose mounts a twin of the native config: the
    /// same in everything but the targets' hosts, which must be compose services.
    #[test]
    fn the_compose_prometheus_config_differs_only_by_target_hosts() {
        let native = yaml("prometheus/prometheus.yml");
        let mut compose = yaml("prometheus/prometheus.compose.yml");
        let services: BTreeSet<String> = yaml("compose/docker-compose.yml")["services"]
            .as_object()
            .expect("compose services")
            .keys()
            .cloned()
            .collect();
        let mut hosts = BTreeSet::new();
        map_targets(&mut compose, &mut |h| {
            hosts.insert(h.to_owned());
            "127.0.0.1".to_owned()
        });
        assert_eq!(
            native, compose,
            "prometheus.compose.yml must be prometheus.yml with other target hosts"
        );
        let unknown: Vec<&String> = hosts
            .iter()
            .filter(|h| *h != "localhost" && !services.contains(*h))
            .collect();
        assert!(
            unknown.is_empty(),
            "targets that are not compose services: {unknown:?}"
        );
    }

    /// The Collector Builder manifest names a version per component; every one of them (and the
    /// distribution's) is the collector version pinned in compose/.env, and the stable modules
    /// (v1.x) share one version.
    #[test]
    fn the_collector_manifest_builds_the_pinned_version() {
        let env = text("compose/.env");
        let pinned = env
            .lines()
            .find_map(|l| l.strip_prefix("OTELCOL_VERSION="))
            .expect("OTELCOL_VERSION in compose/.env")
            .trim();
        let manifest = yaml("otel-collector/builder-config.yaml");
        assert_eq!(manifest["dist"]["version"], pinned);
        let mut stable = BTreeSet::new();
        let mut components = 0;
        for list in manifest.as_object().expect("a manifest").values() {
            for entry in list.as_array().into_iter().flatten() {
                let gomod = entry["gomod"].as_str().expect("a gomod line");
                let (module, version) = gomod.rsplit_once(' ').expect("module and version");
                components += 1;
                if version.starts_with("v1.") {
                    stable.insert(version.to_owned());
                } else {
                    assert_eq!(version, format!("v{pinned}"), "{module}");
                }
            }
        }
        assert!(components > 10, "{components} components read");
        assert_eq!(stable.len(), 1, "the stable modules' versions: {stable:?}");
    }

    /// ARCHITECTURE.md: crates/telemetry is the only crate that touches the OTel SDK, the OTLP
    /// exporter and tracing-subscriber; everything else uses `tracing` and the OTel API.
    #[test]
    fn only_the_telemetry_crate_depends_on_the_sdk() {
        const SDK: [&str; 6] = [
            "opentelemetry_sdk",
            "opentelemetry-otlp",
            "opentelemetry-appender-tracing",
            "opentelemetry-prometheus",
            "tracing-opentelemetry",
            "tracing-subscriber",
        ];
        let mut manifests: Vec<PathBuf> = std::fs::read_dir(repo().join("crates"))
            .expect("crates/")
            .flatten()
            .map(|e| e.path().join("Cargo.toml"))
            .collect();
        manifests.push(repo().join("xtask/Cargo.toml"));
        let mut offenders = Vec::new();
        for manifest in &manifests {
            if manifest.parent().is_some_and(|d| d.ends_with("telemetry")) {
                continue;
            }
            let toml = std::fs::read_to_string(manifest).expect("a Cargo.toml");
            for line in toml.lines() {
                let key = line.split(['=', '.', ' ']).next().unwrap_or_default();
                if SDK.contains(&key) {
                    offenders.push(format!("{}: {line}", manifest.display()));
                }
            }
        }
        assert!(manifests.len() > 4, "{manifests:?}");
        assert!(offenders.is_empty(), "{offenders:#?}");
    }

    /// Every PromQL expression the alert rules, the dashboards and the datasource links hold.
    fn promql_expressions() -> Vec<(String, String)> {
        let mut out = Vec::new();
        let rules_dir = repo().join("prometheus/rules");
        for entry in std::fs::read_dir(&rules_dir)
            .expect("prometheus/rules")
            .flatten()
        {
            let file = format!("prometheus/rules/{}", entry.file_name().to_string_lossy());
            for group in yaml(&file)["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    if let Some(expr) = rule["expr"].as_str() {
                        out.push((file.clone(), expr.to_owned()));
                    }
                }
            }
        }
        for entry in std::fs::read_dir(repo().join("grafana/dashboards"))
            .expect("grafana/dashboards")
            .flatten()
        {
            let file = format!("grafana/dashboards/{}", entry.file_name().to_string_lossy());
            let dash: Value = serde_json::from_str(&text(&file)).expect("a dashboard");
            for panel in crate::e2e::panels(&dash) {
                for t in panel["targets"].as_array().into_iter().flatten() {
                    if t["datasource"]["uid"] == "prometheus"
                        && let Some(expr) = t["expr"].as_str()
                    {
                        out.push((file.clone(), expr.to_owned()));
                    }
                }
            }
            for var in dash["templating"]["list"].as_array().into_iter().flatten() {
                if let Some(q) = var["query"].as_str().or(var["query"]["query"].as_str()) {
                    out.push((file.clone(), q.to_owned()));
                }
            }
        }
        let file = "grafana/provisioning/datasources/datasources.yaml";
        for ds in yaml(file)["datasources"].as_array().into_iter().flatten() {
            let queries = ds["jsonData"]["tracesToMetrics"]["queries"].as_array();
            for q in queries.into_iter().flatten() {
                if let Some(query) = q["query"].as_str() {
                    out.push((file.to_owned(), query.to_owned()));
                }
            }
        }
        out
    }

    /// The metric names an expression selects among those with the prefixes the bot and the API
    /// own, without label names (before a matcher, or in `by (...)`) and recording rules.
    fn our_metrics_in(expr: &str) -> Vec<String> {
        const OURS: [&str; 6] = [
            "invbot_",
            "http_server_",
            "http_client_",
            "db_client_",
            "process_",
            "system_",
        ];
        let grouped: BTreeSet<&str> = expr
            .split("by (")
            .skip(1)
            .chain(expr.split("by(").skip(1))
            .filter_map(|rest| rest.split(')').next())
            .flat_map(|labels| labels.split(',').map(str::trim))
            .collect();
        let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        let mut out = Vec::new();
        let mut rest = expr;
        while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let tail = &rest[start..];
            let len = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
            let (token, after) = tail.split_at(len);
            let matcher = after.trim_start().starts_with(['=', '!']);
            if OURS.iter().any(|p| token.starts_with(p))
                && !token.contains(':')
                && !matcher
                && !grouped.contains(token)
            {
                out.push(token.to_owned());
            }
            rest = after;
        }
        out
    }

    /// The one vocabulary holds: every metric the code emits is shown by a dashboard or used by
    /// a rule, in its Prometheus form; every PromQL expression names only metrics the code emits
    /// (among those with the code's prefixes); every alert of the bot is a Prometheus rule.
    #[test]
    fn rules_and_dashboards_use_the_metrics_the_code_emits() {
        let exprs = promql_expressions();
        assert!(exprs.len() > 50, "{} expressions read", exprs.len());
        let known: BTreeSet<&str> = names::metric::ALL.iter().map(|m| m.prometheus).collect();
        let mut used = BTreeSet::new();
        let mut unknown = Vec::new();
        for (file, expr) in &exprs {
            for token in our_metrics_in(expr) {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| token.strip_suffix(s))
                    .filter(|b| known.contains(b))
                    .unwrap_or(&token);
                if known.contains(base) {
                    used.insert(base.to_owned());
                } else {
                    unknown.push(format!("{file}: {token}"));
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "metrics no code emits (not in names::metric::ALL): {unknown:#?}"
        );
        let unused: Vec<&&str> = known.iter().filter(|m| !used.contains(**m)).collect();
        assert!(
            unused.is_empty(),
            "metrics no dashboard or rule shows: {unused:?}"
        );
        let rules: String = ["inventory", "backends", "telemetry-pipeline"]
            .iter()
            .map(|f| text(&format!("prometheus/rules/{f}.yml")))
            .collect();
        for alert in names::alert::ALL {
            assert!(
                rules.contains(&format!("- alert: {alert}\n")),
                "the bot's alert {alert} has no Prometheus rule"
            );
        }
    }

    #[test]
    fn label_names_and_recording_rules_are_not_metrics() {
        assert_eq!(
            our_metrics_in(
                r#"sum by (system_memory_state) (system_memory_usage_bytes{process_pid="1"}) / inventory:process_live:5m"#
            ),
            ["system_memory_usage_bytes"]
        );
    }

    /// The datasources with Jaeger's traces-to-logs link taken out, keyed by uid.
    fn without_logs_link(mut file: Value) -> (Vec<Value>, Value) {
        let mut link = Value::Null;
        let list = file["datasources"]
            .as_array_mut()
            .expect("a datasources list");
        for ds in list.iter_mut() {
            if ds["uid"] == "jaeger" {
                link = ds["jsonData"]["tracesToLogsV2"].take();
            }
        }
        (std::mem::take(list), link)
    }

    /// The compose loki setup's datasources are the default ones plus Loki, with Jaeger's
    /// traces-to-logs link going to Loki instead of VictoriaLogs; nothing else may differ.
    #[test]
    fn the_loki_setups_datasources_differ_only_by_loki() {
        let (default, default_link) =
            without_logs_link(yaml("grafana/provisioning/datasources/datasources.yaml"));
        let (mut loki, loki_link) = without_logs_link(yaml(
            "grafana/provisioning/loki/datasources/datasources.yaml",
        ));
        let before = loki.len();
        loki.retain(|ds| ds["uid"] != "loki");
        assert_eq!(
            before,
            loki.len() + 1,
            "the loki setup has one Loki datasource"
        );
        assert_eq!(
            default, loki,
            "datasources other than Loki must be the same"
        );
        assert_eq!(default_link["datasourceUid"], "victorialogs");
        assert_eq!(loki_link["datasourceUid"], "loki");
        let settings = |link: &Value| {
            let mut link = link.clone();
            link["datasourceUid"].take();
            link["query"].take();
            link
        };
        assert_eq!(settings(&default_link), settings(&loki_link));
    }
}
