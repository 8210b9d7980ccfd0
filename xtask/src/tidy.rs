//! Keep-in-step promises between files, as tests: two files that must agree are read and
//! compared, and a difference fails with what differs.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::Value;

    fn yaml(relative: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(relative);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
        serde_json::to_value(v).expect("YAML as JSON")
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
