//! The Kubernetes manifests (`deploy/kubernetes/`), checked offline: both overlays rendered with
//! kustomize and every object validated against the Kubernetes API's JSON schemas, strictly (an
//! unknown field fails), plus the rules the schemas cannot hold (resources and probes on every
//! container, images at the pinned versions, no credentials), and each collector's configs as
//! rendered validated by the collector itself (`otelcol validate`, the stack's build).
//!
//! The tools come from the registries, once, into the stack's cache, keyed by version:
//! - kustomize from its Go module (`go install`);
//! - the schemas and their validator from PyPI: `kubernetes-validate` bundles the strict JSON
//!   schemas of Kubernetes 1.25 to 1.37 (kubeconform would download its schemas, which cannot be
//!   done here), with its dependencies pinned whole (`pip install --no-deps --target`).
//!
//! The tests below need no tool: every config file the manifests mount is the repository's own
//! (the one the native stack or compose reads), image tags are the versions of `compose/.env`,
//! the Kubernetes-only files stay in step with the native ones, and every collector that listens
//! beyond loopback takes TLS and a token from Secrets, as do the exports sent to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::stack::{self, Ctx};

/// Where the manifests live, from the repository root.
const DIR: &str = "deploy/kubernetes";
/// The overlays that are rendered and validated.
const OVERLAYS: [&str; 2] = ["single-node", "fleet"];
/// The namespace everything is in.
pub(crate) const NAMESPACE: &str = "inventory-otel";

/// kustomize's Go module and version: v5.8.2 is the newest that Go 1.26 builds (v5.8.3 needs
/// Go 1.27).
const KUSTOMIZE_PACKAGE: &str = "sigs.k8s.io/kustomize/kustomize/v5";
const KUSTOMIZE_VERSION: &str = "v5.8.2";

/// The schema validator from PyPI, with every dependency pinned (installed with `--no-deps`, so
/// nothing else is resolved): kubernetes-validate's strict schemas, jsonschema to apply them.
const VALIDATOR_VERSION: &str = "1.37.0";
const VALIDATOR_PACKAGES: [&str; 10] = [
    "kubernetes-validate==1.37.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "attrs==26.1.0",
    "PyYAML==6.0.4",
    "typing-extensions==4.16.0",
    "importlib-resources==7.1.0",
    "packaging==26.4",
];

/// The Kubernetes versions every object must be valid for: the oldest the manifests support
/// (the bot's Job uses podFailurePolicy, GA in 1.31, and backoffLimitPerIndex, on by default
/// since 1.29) and the newest the schemas cover.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.31.0", "1.37.0"];

/// Validates the objects read as JSON on stdin (`{"versions": [...], "objects": [...]}`) with
/// kubernetes-validate's strict schemas, and prints the problems as a JSON list of strings. A
/// kind without a schema (a CRD) is a problem too. Schemas are read once per version.
const VALIDATE_PY: &str = r#"
import functools, json, sys
sys.path.insert(0, sys.argv[1])
import kubernetes_validate.utils as kv
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)
request = json.load(sys.stdin)
problems = []
for version in request["versions"]:
    for obj in request["objects"]:
        meta = obj.get("metadata") or {}
        what = "%s %s %s" % (obj.get("apiVersion"), obj.get("kind"), meta.get("name"))
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(the object)"
            problems.append("%s (Kubernetes %s): %s: %s" % (what, e.version, path, e.message))
        except kv.SchemaNotFoundError:
            problems.append("%s: Kubernetes %s has no schema for it (built-in kinds only, no CRDs)" % (what, version))
json.dump(problems, sys.stdout)
"#;

/// Renders both overlays and validates every object; fails naming each object and its problem.
pub(crate) fn check(ctx: &Ctx) -> Result<()> {
    let kustomize = install_kustomize(ctx)?;
    let validator = install_validator(ctx)?;
    let expected = expected_images(&ctx.root, |key| ctx.version(key).map(str::to_owned))?;

    // The validator must refuse an unknown field, or "valid" would mean little.
    let refused = schema_problems(&validator, &[strictness_canary()])?;
    if refused.len() != KUBERNETES_VERSIONS.len() {
        bail!(
            "the schema check is not strict: an unknown container field gave {refused:?}, expected one problem per Kubernetes version"
        );
    }

    let collector = stack::installed_collector(ctx)?;

    let mut problems = Vec::new();
    for overlay in OVERLAYS {
        let dir = ctx.root.join(DIR).join("overlays").join(overlay);
        let objects = render(&kustomize, &dir)?;
        let scratch = ctx.state.join("k8s-check").join(overlay);
        let found: Vec<String> = schema_problems(&validator, &objects)?
            .into_iter()
            .chain(lint(&objects, true))
            .chain(image_problems(&objects, &expected))
            .chain(collector_config_problems(&collector, &objects, &scratch)?)
            .map(|p| format!("overlays/{overlay}: {p}"))
            .collect();
        eprintln!(
            "xtask: overlays/{overlay}: {} objects rendered, {} problems (schemas of Kubernetes {}, each collector's merged config by otelcol validate)",
            objects.len(),
            found.len(),
            KUBERNETES_VERSIONS.join(" and ")
        );
        problems.extend(found);
    }
    if !problems.is_empty() {
        bail!(
            "the Kubernetes manifests have {} problems:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    eprintln!(
        "xtask: Kubernetes manifests valid: {} rendered with kustomize {KUSTOMIZE_VERSION}, every object valid against the strict schemas (kubernetes-validate {VALIDATOR_VERSION}), resources, probes and pinned images in place, each collector's configs valid for the collector {}",
        OVERLAYS.join(" and "),
        ctx.version("OTELCOL_VERSION")?
    );
    Ok(())
}

/// kustomize, built once from its Go module into the cache.
fn install_kustomize(ctx: &Ctx) -> Result<PathBuf> {
    let dir = ctx.cache.join(format!(
        "kustomize-{}",
        KUSTOMIZE_VERSION.trim_start_matches('v')
    ));
    let binary = dir.join("kustomize");
    if binary.exists() {
        return Ok(binary);
    }
    stack::need_go(ctx, "kustomize")?;
    fs::create_dir_all(&dir)?;
    stack::run(
        Command::new("go")
            .args(["install", "-trimpath", "-ldflags=-s -w"])
            .arg(format!("{KUSTOMIZE_PACKAGE}@{KUSTOMIZE_VERSION}"))
            .env("GOBIN", &dir)
            .env("CGO_ENABLED", "0"),
        &format!("go install {KUSTOMIZE_PACKAGE}@{KUSTOMIZE_VERSION}"),
    )?;
    if !binary.exists() {
        bail!("go install did not produce {}", binary.display());
    }
    stack::check_licences(&binary)?;
    Ok(binary)
}

/// The validator's packages, installed once into the cache (for this Python's minor version:
/// rpds-py is a compiled wheel), with a record of the pins they were installed from.
fn install_validator(ctx: &Ctx) -> Result<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .context("the Kubernetes schema check needs python3 (3.8 or newer) with pip")?;
    let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || python.is_empty() {
        bail!("python3 did not say its version");
    }
    let dir = ctx.cache.join(format!(
        "kubernetes-validate-{VALIDATOR_VERSION}-py{python}"
    ));
    let pins = VALIDATOR_PACKAGES.join("\n");
    let record = dir.join("pins.txt");
    if fs::read_to_string(&record).is_ok_and(|installed| installed == pins) {
        return Ok(dir);
    }
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(&dir);
    stack::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "--no-deps",
                "--only-binary=:all:",
                "--target",
            ])
            .arg(&partial)
            .args(VALIDATOR_PACKAGES),
        &format!("pip install kubernetes-validate {VALIDATOR_VERSION} and its pinned dependencies"),
    )?;
    fs::write(partial.join("pins.txt"), &pins)?;
    fs::rename(&partial, &dir)?;
    Ok(dir)
}

/// `kustomize build` of one overlay, as objects.
fn render(kustomize: &Path, overlay: &Path) -> Result<Vec<Value>> {
    let out = Command::new(kustomize)
        .args(["build", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(overlay)
        .output()
        .with_context(|| format!("cannot run {}", kustomize.display()))?;
    if !out.status.success() {
        bail!(
            "kustomize build {} failed:\n{}",
            overlay.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    documents(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("kustomize build {}", overlay.display()))
}

/// The problems the schemas find in `objects`, for every version of [`KUBERNETES_VERSIONS`].
fn schema_problems(validator: &Path, objects: &[Value]) -> Result<Vec<String>> {
    let request = json!({ "versions": KUBERNETES_VERSIONS, "objects": objects });
    let mut child = Command::new("python3")
        .arg("-I")
        .arg("-c")
        .arg(VALIDATE_PY)
        .arg(validator)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run python3 for the schema check")?;
    child
        .stdin
        .take()
        .context("the validator's stdin")?
        .write_all(request.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the schema validator failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("the schema validator's answer")
}

/// The collector image the manifests run.
const COLLECTOR_IMAGE: &str = "otel/opentelemetry-collector-contrib";

/// Whether a container runs the collector image (whatever its tag).
fn is_collector(container: &Value) -> bool {
    let image = container["image"].as_str().unwrap_or("");
    image.split(':').next() == Some(COLLECTOR_IMAGE)
}

/// Each collector container's configs as rendered (the `--config` files, from the ConfigMaps
/// mounted where they point), validated as the container would load them: `otelcol validate`
/// of the stack's collector (the same version and components as the image) with the container's
/// environment only (a Secret's value replaced by a placeholder). Schemas see a ConfigMap as
/// strings; this sees the collector's merge of them (e.g. an extension listed but not defined).
fn collector_config_problems(
    collector: &Path,
    objects: &[Value],
    scratch: &Path,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for object in objects {
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        for c in containers(pod).filter(|c| is_collector(c)) {
            let who = format!(
                "{} container {}",
                name_of(object),
                c["name"].as_str().unwrap_or("?")
            );
            let dir = scratch.join(object["metadata"]["name"].as_str().unwrap_or("collector"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir)?;
            let mut cmd = Command::new(collector);
            cmd.arg("validate").env_clear();
            for arg in c["args"].as_array().into_iter().flatten() {
                let Some(path) = arg.as_str().and_then(|a| a.strip_prefix("--config=")) else {
                    continue;
                };
                match mounted_config(objects, pod, c, path) {
                    Some(text) => {
                        let file = dir.join(path.trim_start_matches('/').replace('/', "_"));
                        fs::write(&file, text)?;
                        cmd.arg(format!("--config={}", file.display()));
                    }
                    None => problems.push(format!(
                        "{who}: --config={path} is no file of a ConfigMap it mounts"
                    )),
                }
            }
            for var in c["env"].as_array().into_iter().flatten() {
                let value = var["value"].as_str().unwrap_or("placeholder-of-valueFrom");
                cmd.env(var["name"].as_str().unwrap_or(""), value);
            }
            let out = cmd
                .output()
                .with_context(|| format!("cannot run {}", collector.display()))?;
            if !out.status.success() {
                problems.push(format!(
                    "{who}: otelcol validate of its configs failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    Ok(problems)
}

/// The text of the file at `path` in container `c` of `pod`: a key of a rendered ConfigMap that
/// a volume mounts at its directory (or, with subPath, at `path` itself).
fn mounted_config<'a>(objects: &'a [Value], pod: &Value, c: &Value, path: &str) -> Option<&'a str> {
    let (dir, file) = path.rsplit_once('/')?;
    c["volumeMounts"].as_array()?.iter().find_map(|mount| {
        let key = match mount["subPath"].as_str() {
            Some(sub) if mount["mountPath"] == path => sub,
            None if mount["mountPath"] == dir => file,
            _ => return None,
        };
        let map = pod["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == mount["name"])?["configMap"]["name"]
            .as_str()?;
        objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == map)?["data"][key]
            .as_str()
    })
}

/// A Deployment with one unknown container field: a strict schema refuses it.
fn strictness_canary() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "strictness-canary" },
        "spec": {
            "selector": { "matchLabels": { "app": "canary" } },
            "template": {
                "metadata": { "labels": { "app": "canary" } },
                "spec": { "containers": [{ "name": "c", "image": "c:1", "imagePullPolicyy": "Always" }] }
            }
        }
    })
}

/// The YAML documents of a multi-document text (documents split on `---` lines), as JSON.
fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |chunk: &str| -> Result<()> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(chunk)?;
        if !v.is_null() {
            docs.push(serde_json::to_value(v)?);
        }
        Ok(())
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&current)?;
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&current)?;
    Ok(docs)
}

/// The pod spec of a workload, if it is one.
fn pod_spec(object: &Value) -> Option<&Value> {
    match object["kind"].as_str()? {
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => object.pointer("/spec/template/spec"),
        _ => None,
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |list| pod[list].as_array().into_iter().flatten())
}

fn name_of(object: &Value) -> String {
    format!(
        "{} {}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// What the schemas cannot check: requests and limits on every container; liveness and
/// readiness probes on every long-running one; non-root, no privilege escalation, a read-only
/// root, no capabilities; no credentials written in (no Secret, no password-like variable with
/// a value, no bearer token but a reference to a Secret's variable); a default-deny
/// NetworkPolicy; references that resolve ([`reference_problems`]); and, once rendered, every
/// object in the namespace.
fn lint(objects: &[Value], rendered: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for object in objects {
        let what = name_of(object);
        let kind = object["kind"].as_str().unwrap_or("");
        if kind == "Secret" {
            problems.push(format!(
                "{what}: no Secret in the manifests (the user creates them; no default credentials)"
            ));
        }
        if rendered
            && kind != "Namespace"
            && object["metadata"]["namespace"].as_str() != Some(NAMESPACE)
        {
            problems.push(format!("{what}: not in the namespace {NAMESPACE}"));
        }
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        if pod["securityContext"]["runAsNonRoot"] != json!(true) {
            problems.push(format!("{what}: the pod must set runAsNonRoot: true"));
        }
        for c in containers(pod) {
            let who = format!("{what} container {}", c["name"].as_str().unwrap_or("?"));
            for side in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    if c["resources"][side][resource].is_null() {
                        problems.push(format!("{who}: no resources.{side}.{resource}"));
                    }
                }
            }
            if kind != "Job" {
                for probe in ["livenessProbe", "readinessProbe"] {
                    if c[probe].is_null() {
                        problems.push(format!("{who}: no {probe}"));
                    }
                }
            }
            let security = &c["securityContext"];
            if security["allowPrivilegeEscalation"] != json!(false)
                || security["readOnlyRootFilesystem"] != json!(true)
                || !security["capabilities"]["drop"]
                    .as_array()
                    .is_some_and(|d| d.contains(&json!("ALL")))
            {
                problems.push(format!(
                    "{who}: securityContext must set allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities.drop: [ALL]"
                ));
            }
            // Variables from a Secret so far: a value may refer to them as $(NAME).
            let mut from_secrets = BTreeSet::new();
            for var in c["env"].as_array().into_iter().flatten() {
                let name = var["name"].as_str().unwrap_or("").to_ascii_uppercase();
                let secret_like = ["PASSWORD", "SECRET", "TOKEN", "API_KEY", "CREDENTIAL"]
                    .iter()
                    .any(|w| name.contains(w));
                if secret_like && !var["value"].is_null() {
                    problems.push(format!(
                        "{who}: {name} is written in; take it from a Secret the user creates (valueFrom.secretKeyRef)"
                    ));
                }
                let value = var["value"].as_str().unwrap_or("");
                if let Some(at) = value.to_ascii_lowercase().find("bearer") {
                    let token = value[at + "bearer".len()..].trim_start_matches("%20");
                    let refers_to = token
                        .strip_prefix("$(")
                        .and_then(|t| t.split_once(')'))
                        .map(|(v, _)| v);
                    if !refers_to.is_some_and(|v| from_secrets.contains(v)) {
                        problems.push(format!(
                            "{who}: {name} holds a bearer token that is not $(NAME) of a variable from a Secret defined before it"
                        ));
                    }
                }
                if !var["valueFrom"]["secretKeyRef"].is_null() {
                    from_secrets.insert(var["name"].as_str().unwrap_or(""));
                }
            }
        }
    }
    let default_deny = objects.iter().any(|o| {
        o["kind"] == "NetworkPolicy"
            && o["spec"]["podSelector"] == json!({})
            && o["spec"]["ingress"].is_null()
            && o["spec"]["egress"].is_null()
            && o["spec"]["policyTypes"] == json!(["Ingress", "Egress"])
    });
    if !default_deny {
        problems.push(
            "no default-deny NetworkPolicy (podSelector {}, policyTypes [Ingress, Egress], no rules)"
                .into(),
        );
    }
    problems.extend(reference_problems(objects, rendered));
    problems
}

/// The label that marks the user's own pods allowed to the query ports: no manifest carries it.
const QUERY_CLIENT_LABEL: &str = "inventory-otel/query-client";

/// A pod template's labels and its containers' ports (name, number).
struct Pod<'a> {
    labels: &'a Value,
    ports: Vec<(&'a str, u64)>,
}

fn pods(objects: &[Value]) -> Vec<Pod<'_>> {
    objects
        .iter()
        .filter_map(|o| {
            let pod = pod_spec(o)?;
            Some(Pod {
                labels: &o["spec"]["template"]["metadata"]["labels"],
                ports: containers(pod)
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap_or(""),
                            p["containerPort"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Whether `labels` carry every pair of `match_labels` (an empty or missing selector matches all).
fn selects(match_labels: &Value, labels: &Value) -> bool {
    match_labels
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| &labels[k] == v))
}

/// Selectors and names that point at nothing: a NetworkPolicy, Service, PodDisruptionBudget or
/// peer selector that selects no pod, a Service or policy port that no selected container
/// opens, an autoscaler without its Deployment, a claim or (rendered) ConfigMap that is missing.
/// A typo there is valid against every schema and silently does nothing.
fn reference_problems(objects: &[Value], rendered: bool) -> Vec<String> {
    let pods = pods(objects);
    let selected = |selector: &Value| -> Vec<&Pod<'_>> {
        pods.iter()
            .filter(|p| selects(selector, p.labels))
            .collect()
    };
    let named = |kind: &str, name: &Value| {
        objects
            .iter()
            .any(|o| o["kind"] == kind && &o["metadata"]["name"] == name)
    };
    let mut problems = Vec::new();
    for object in objects {
        let what = name_of(object);
        let spec = &object["spec"];
        match object["kind"].as_str().unwrap_or("") {
            "Service" => {
                let chosen = selected(&spec["selector"]);
                if chosen.is_empty() {
                    problems.push(format!("{what}: its selector matches no pod"));
                }
                for port in spec["ports"].as_array().into_iter().flatten() {
                    let target = &port["targetPort"];
                    let opens = |(name, number): &(&str, u64)| match target {
                        Value::String(t) => t == name,
                        Value::Number(t) => t.as_u64() == Some(*number),
                        _ => port["port"].as_u64() == Some(*number),
                    };
                    let opened = chosen.iter().all(|p| p.ports.iter().any(opens));
                    if !opened {
                        problems.push(format!(
                            "{what}: port {} targets {target}, which its pods do not open",
                            port["port"]
                        ));
                    }
                }
            }
            "PodDisruptionBudget" if selected(&spec["selector"]["matchLabels"]).is_empty() => {
                problems.push(format!("{what}: its selector matches no pod"));
            }
            "HorizontalPodAutoscaler" => {
                let target = &spec["scaleTargetRef"];
                if !named(target["kind"].as_str().unwrap_or(""), &target["name"]) {
                    problems.push(format!("{what}: scales {target}, which is not here"));
                }
            }
            "NetworkPolicy" => {
                let own = selected(&spec["podSelector"]["matchLabels"]);
                if own.is_empty() {
                    problems.push(format!("{what}: its podSelector matches no pod"));
                }
                for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
                    for rule in spec[rules].as_array().into_iter().flatten() {
                        for peer in rule[peers].as_array().into_iter().flatten() {
                            let labels = &peer["podSelector"]["matchLabels"];
                            let users = labels.get(QUERY_CLIENT_LABEL).is_some();
                            if peer["namespaceSelector"].is_null()
                                && !peer["podSelector"].is_null()
                                && !users
                                && selected(labels).is_empty()
                            {
                                problems
                                    .push(format!("{what}: {rules} peer {labels} matches no pod"));
                            }
                        }
                        if rules == "ingress" {
                            for port in rule["ports"].as_array().into_iter().flatten() {
                                let number = port["port"].as_u64();
                                if !own
                                    .iter()
                                    .all(|p| p.ports.iter().any(|(_, n)| Some(*n) == number))
                                {
                                    problems.push(format!(
                                        "{what}: admits port {}, which its pods do not open",
                                        port["port"]
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            let claim = &volume["persistentVolumeClaim"]["claimName"];
            if !claim.is_null() && !named("PersistentVolumeClaim", claim) {
                problems.push(format!("{what}: claim {claim} is not here"));
            }
            let map = &volume["configMap"]["name"];
            if rendered && !map.is_null() && !named("ConfigMap", map) {
                problems.push(format!("{what}: ConfigMap {map} is not here"));
            }
        }
    }
    problems
}

/// Every image the manifests run, name to tag: compose's images at the versions of
/// compose/.env (`image: <name>:${VERSION_KEY...}`), and the bot's at the workspace version.
fn expected_images(
    root: &Path,
    version: impl Fn(&str) -> Result<String>,
) -> Result<BTreeMap<String, String>> {
    let compose = fs::read_to_string(root.join("compose/docker-compose.yml"))?;
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(&compose)?;
    let compose = serde_json::to_value(compose)?;
    let mut images = BTreeMap::new();
    for service in compose["services"]
        .as_object()
        .into_iter()
        .flat_map(|s| s.values())
    {
        let Some((name, tag)) = service["image"].as_str().and_then(|i| i.split_once(':')) else {
            continue;
        };
        let key = tag
            .strip_prefix("${")
            .and_then(|t| t.split([':', '}']).next())
            .with_context(|| format!("compose image {name}:{tag} is not pinned in compose/.env"))?;
        images.insert(name.to_owned(), version(key)?);
    }
    images.insert(BOT_IMAGE.to_owned(), workspace_version(root)?);
    Ok(images)
}

/// The bot's image, built by the user (deploy/kubernetes/README.md).
const BOT_IMAGE: &str = "inventory-otel/invbot";

/// `[workspace.package] version` of the root Cargo.toml.
fn workspace_version(root: &Path) -> Result<String> {
    let text = fs::read_to_string(root.join("Cargo.toml"))?;
    text.lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "version").then(|| value.trim().trim_matches('"').to_owned())
        })
        .context("no [workspace.package] version in Cargo.toml")
}

/// Images of the rendered objects that are not at their pinned version.
fn image_problems(objects: &[Value], expected: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for object in objects {
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        for c in containers(pod) {
            let image = c["image"].as_str().unwrap_or("");
            let (name, tag) = image.rsplit_once(':').unwrap_or((image, ""));
            match expected.get(name) {
                Some(pinned) if pinned == tag => {}
                Some(pinned) => problems.push(format!(
                    "{}: image {image}, but the pinned version is {name}:{pinned}",
                    name_of(object)
                )),
                None => problems.push(format!(
                    "{}: image {image} is not one compose/.env pins (nor the bot's)",
                    name_of(object)
                )),
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    fn yaml(path: &Path) -> Value {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text(path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::to_value(v).expect("YAML as JSON")
    }

    /// Every kustomization.yaml under deploy/kubernetes, with its directory.
    fn kustomizations() -> Vec<(PathBuf, Value)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Value)>) {
            for entry in fs::read_dir(dir).expect("a readable directory").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                    out.push((dir.to_owned(), yaml(&path)));
                }
            }
        }
        let mut out = Vec::new();
        walk(&crate::root().join(DIR), &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn base() -> (PathBuf, Value) {
        let dir = crate::root().join(DIR).join("base");
        let k = yaml(&dir.join("kustomization.yaml"));
        (dir, k)
    }

    /// The objects of the base's resource files, as written (before kustomize).
    fn base_objects() -> Vec<Value> {
        let (dir, k) = base();
        k["resources"]
            .as_array()
            .expect("the base's resources")
            .iter()
            .flat_map(|r| {
                let path = dir.join(r.as_str().expect("a resource path"));
                documents(&text(&path)).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
            })
            .collect()
    }

    fn workload<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the base"))
    }

    fn container<'a>(object: &'a Value, name: &str) -> &'a Value {
        containers(pod_spec(object).expect("a workload"))
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name} in {}", name_of(object)))
    }

    /// A repository path, relative to the root, with `..` resolved.
    fn relative(path: &Path) -> String {
        let mut parts: Vec<String> = Vec::new();
        for part in path.components() {
            match part {
                std::path::Component::ParentDir => {
                    parts.pop();
                }
                std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                _ => {}
            }
        }
        let root: Vec<String> = crate::root()
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        assert!(
            parts.starts_with(&root),
            "{} is outside the repository",
            path.display()
        );
        parts[root.len()..].join("/")
    }

    /// The files of every configMapGenerator: (kustomization dir, ConfigMap, key, repository path).
    fn generated_files() -> Vec<(PathBuf, String, String, String)> {
        let mut out = Vec::new();
        for (dir, k) in kustomizations() {
            for generator in k["configMapGenerator"].as_array().into_iter().flatten() {
                let map = generator["name"]
                    .as_str()
                    .expect("a generator name")
                    .to_owned();
                for entry in generator["files"].as_array().into_iter().flatten() {
                    let entry = entry.as_str().expect("a files entry");
                    let (key, file) = match entry.split_once('=') {
                        Some((key, file)) => (key.to_owned(), file),
                        None => (
                            Path::new(entry)
                                .file_name()
                                .expect("a file name")
                                .to_string_lossy()
                                .into_owned(),
                            entry,
                        ),
                    };
                    out.push((dir.clone(), map.clone(), key, relative(&dir.join(file))));
                }
            }
        }
        out
    }

    /// The files only Kubernetes reads, each for a reason: everything else mounted is a file of
    /// the native stack or compose.
    const KUBERNETES_ONLY: [(&str, &str); 3] = [
        (
            "deploy/kubernetes/base/agent-k8s-resolver.yaml",
            "the collector cannot switch resolver type by environment: DNS discovery of the gateways, merged over agent.yaml",
        ),
        (
            "deploy/kubernetes/base/prometheus-k8s.yml",
            "Prometheus expands no variables and discovers pods here: checked against prometheus/prometheus.yml below",
        ),
        (
            "deploy/kubernetes/base/agent-k8s-auth.yaml",
            "only Kubernetes runs an agent beyond loopback: auth.yaml completed for the agent (its extension list, TLS and the token to the gateways), checked below",
        ),
    ];

    /// The repository's config files that may be mounted, as the native stack and compose read them.
    fn shared_config(path: &str) -> bool {
        let in_dir = |dir: &str, ext: &str| {
            path.strip_prefix(dir)
                .is_some_and(|rest| !rest.contains('/') && rest.ends_with(ext))
        };
        matches!(
            path,
            "otel-collector/config.yaml"
                | "otel-collector/agent.yaml"
                | "otel-collector/gateway.yaml"
                | "otel-collector/auth.yaml"
                | "jaeger/config.yaml"
        ) || in_dir("prometheus/rules/", ".yml")
            || in_dir("alertmanager/", ".yml")
    }

    /// Whether the native stack (xtask/src/stack.rs) or compose reads `path`.
    fn used_natively_or_in_compose(path: &str) -> bool {
        let root = crate::root();
        let stack = text(&root.join("xtask/src/stack.rs"));
        let compose =
            text(&root.join("compose/docker-compose.yml")) + &text(&root.join("compose/loki.yml"));
        if path.starts_with("prometheus/rules/") {
            // Both Prometheus configs load rules/*.yml, relative to themselves.
            return yaml(&root.join("prometheus/prometheus.yml"))["rule_files"]
                == json!(["rules/*.yml"]);
        }
        if stack.contains(path) || compose.contains(path) {
            return true;
        }
        // stack.rs starts the collectors with otel-collector/<file> for a list of file names.
        let (dir, file) = path.rsplit_once('/').expect("a path in a directory");
        dir == "otel-collector" && stack.contains(&format!("\"{file}\""))
    }

    #[test]
    fn every_mounted_config_is_a_repository_file_the_native_stack_or_compose_uses() {
        let files = generated_files();
        assert!(files.len() >= 8, "{files:?}");
        let mut problems = Vec::new();
        for (dir, map, key, path) in &files {
            let origin = format!("{} {map} {key}", relative(&dir.join("kustomization.yaml")));
            if !crate::root().join(path).is_file() {
                problems.push(format!("{origin}: {path} does not exist"));
            } else if KUBERNETES_ONLY.iter().any(|(p, _)| p == path) {
            } else if !shared_config(path) {
                problems.push(format!(
                    "{origin}: {path} is neither a config file of the native stack and compose nor a Kubernetes-only file"
                ));
            } else if !used_natively_or_in_compose(path) {
                problems.push(format!(
                    "{origin}: {path} is read by neither the native stack nor compose"
                ));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn the_rules_configmap_holds_every_rule_file() {
        let mounted: BTreeSet<String> = generated_files()
            .into_iter()
            .filter(|(_, map, _, _)| map == "prometheus-rules")
            .map(|(_, _, _, path)| path)
            .collect();
        let rules: BTreeSet<String> = fs::read_dir(crate::root().join("prometheus/rules"))
            .expect("prometheus/rules")
            .flatten()
            .map(|e| format!("prometheus/rules/{}", e.file_name().to_string_lossy()))
            .filter(|p| p.ends_with(".yml"))
            .collect();
        assert!(!rules.is_empty());
        assert_eq!(
            mounted, rules,
            "prometheus-rules must hold exactly prometheus/rules/*.yml"
        );
    }

    /// The files a container has under its ConfigMap mounts: path in the container -> repository path.
    fn mounted(object: &Value, container_name: &str) -> BTreeMap<String, String> {
        let pod = pod_spec(object).expect("a workload");
        let c = container(object, container_name);
        let files = generated_files();
        let mut out = BTreeMap::new();
        for mount in c["volumeMounts"].as_array().into_iter().flatten() {
            // Not among the pod's volumes: a StatefulSet's volumeClaimTemplate.
            let Some(map) = pod["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == mount["name"])
                .and_then(|v| v["configMap"]["name"].as_str())
            else {
                continue;
            };
            let at = mount["mountPath"].as_str().expect("a mountPath");
            let in_base = files
                .iter()
                .filter(|(dir, m, _, _)| m == map && dir.ends_with("base"));
            for (_, _, key, path) in in_base {
                match mount["subPath"].as_str() {
                    Some(sub) if sub == key => {
                        out.insert(at.to_owned(), path.clone());
                    }
                    Some(_) => {}
                    None => {
                        out.insert(format!("{at}/{key}"), path.clone());
                    }
                }
            }
        }
        out
    }

    /// The config files a collector or Jaeger container is started with (`--config=<path>`),
    /// as repository paths.
    fn started_with(object: &Value, container_name: &str) -> Vec<String> {
        let files = mounted(object, container_name);
        container(object, container_name)["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str()?.strip_prefix("--config="))
            .map(|p| {
                files
                    .get(p)
                    .unwrap_or_else(|| panic!("{}: {p} is not a mounted file", name_of(object)))
                    .clone()
            })
            .collect()
    }

    /// The gateways run config.yaml + gateway.yaml, as the native gateway topology does, and
    /// auth.yaml, as compose and the e2e step's secured collector do; the agent runs agent.yaml,
    /// the Kubernetes resolver override, auth.yaml and its completion for the agent; Jaeger its
    /// one config.
    #[test]
    fn the_collectors_and_jaeger_start_with_the_native_config_files() {
        let objects = base_objects();
        assert_eq!(
            started_with(
                workload(&objects, "Deployment", "otel-gateway"),
                "otel-collector"
            ),
            [
                "otel-collector/config.yaml",
                "otel-collector/gateway.yaml",
                AUTH
            ]
        );
        assert_eq!(
            started_with(
                workload(&objects, "DaemonSet", "otel-agent"),
                "otel-collector"
            ),
            [
                "otel-collector/agent.yaml",
                KUBERNETES_ONLY[0].0,
                AUTH,
                KUBERNETES_ONLY[2].0
            ]
        );
        assert_eq!(
            started_with(workload(&objects, "Deployment", "jaeger"), "jaeger"),
            ["jaeger/config.yaml"]
        );
        let prometheus = mounted(
            workload(&objects, "StatefulSet", "prometheus"),
            "prometheus",
        );
        assert_eq!(
            prometheus
                .get("/etc/prometheus/prometheus.yml")
                .map(String::as_str),
            Some(KUBERNETES_ONLY[1].0)
        );
        assert!(
            prometheus.contains_key("/etc/prometheus/rules/inventory.yml"),
            "{prometheus:?}"
        );
        let alertmanager = mounted(
            workload(&objects, "StatefulSet", "alertmanager"),
            "alertmanager",
        );
        assert_eq!(
            alertmanager
                .get("/etc/alertmanager/alertmanager.yml")
                .map(String::as_str),
            Some("alertmanager/alertmanager.yml")
        );
    }

    /// `${env:NAME}` references in a config (comment lines skipped): name -> has a default.
    fn env_references(config: &str) -> BTreeMap<String, bool> {
        let mut refs = BTreeMap::new();
        for line in config.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for (i, _) in line.match_indices("${env:") {
                let rest = &line[i + "${env:".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let has_default = rest[name.len()..].starts_with(":-");
                *refs.entry(name).or_insert(true) &= has_default;
            }
        }
        refs
    }

    /// Every variable a mounted config reads without a default is set on its container, and
    /// every server of those configs listens on all interfaces (INV_BIND_HOST=0.0.0.0).
    #[test]
    fn the_containers_set_what_their_configs_read() {
        let objects = base_objects();
        for (kind, name, container_name) in [
            ("DaemonSet", "otel-agent", "otel-collector"),
            ("Deployment", "otel-gateway", "otel-collector"),
            ("Deployment", "jaeger", "jaeger"),
        ] {
            let object = workload(&objects, kind, name);
            let env: BTreeMap<String, Value> = container(object, container_name)["env"]
                .as_array()
                .expect("env")
                .iter()
                .map(|v| {
                    (
                        v["name"].as_str().expect("a name").to_owned(),
                        v["value"].clone(),
                    )
                })
                .collect();
            let mut refs = BTreeMap::new();
            for path in started_with(object, container_name) {
                for (var, has_default) in env_references(&text(&crate::root().join(&path))) {
                    *refs.entry(var).or_insert(true) &= has_default;
                }
            }
            assert_eq!(env.get("INV_BIND_HOST"), Some(&json!("0.0.0.0")), "{name}");
            for (var, has_default) in refs {
                if !has_default {
                    assert!(
                        env.contains_key(&var),
                        "{name} does not set {var}, which its config needs"
                    );
                }
            }
        }
    }

    /// The overlay that puts TLS and a bearer token on a collector's OTLP receivers.
    const AUTH: &str = "otel-collector/auth.yaml";

    /// The collector's merge of its config files, in order: maps merged key by key, anything
    /// else (a list, a scalar) replaced whole.
    fn merge(into: &mut Value, over: &Value) {
        match (into, over) {
            (Value::Object(into), Value::Object(over)) => {
                for (key, value) in over {
                    merge(into.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
            (into, over) => *into = over.clone(),
        }
    }

    fn merged<S: AsRef<str>>(paths: &[S]) -> Value {
        let mut config = json!({});
        for path in paths {
            merge(&mut config, &yaml(&crate::root().join(path.as_ref())));
        }
        config
    }

    /// The string values of `key` anywhere under `value`.
    fn strings_under<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match v.as_str() {
                        Some(s) if k == key => out.push(s),
                        _ => strings_under(v, key, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
            _ => {}
        }
    }

    /// What a merged collector config gets wrong about its extensions: one the service starts
    /// but no file defines, one defined but not started, or an authenticator or a queue's
    /// storage that the service does not start (which `otelcol validate` lets pass, and which
    /// fails only when the collector starts).
    fn extension_problems(config: &Value) -> Vec<String> {
        let defined: BTreeSet<&str> = config["extensions"]
            .as_object()
            .into_iter()
            .flat_map(|e| e.keys().map(String::as_str))
            .collect();
        let started: BTreeSet<&str> = config["service"]["extensions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut problems: Vec<String> = started
            .difference(&defined)
            .map(|e| format!("service.extensions starts {e}, which no file defines"))
            .chain(
                defined
                    .difference(&started)
                    .map(|e| format!("{e} is defined, not in service.extensions")),
            )
            .collect();
        for key in ["authenticator", "storage"] {
            let mut used = Vec::new();
            for section in ["receivers", "exporters", "processors", "connectors"] {
                strings_under(&config[section], key, &mut used);
            }
            for e in used.into_iter().filter(|e| !started.contains(e)) {
                problems.push(format!("{key} {e} is not in service.extensions"));
            }
        }
        problems
    }

    /// The collectors of the base (workload, container) with their config files.
    fn collectors(objects: &[Value]) -> Vec<(&Value, &Value, Vec<String>)> {
        objects
            .iter()
            .filter_map(|o| Some((o, pod_spec(o)?)))
            .flat_map(|(o, pod)| containers(pod).map(move |c| (o, c)))
            .filter(|(_, c)| is_collector(c))
            .map(|(o, c)| {
                let name = c["name"].as_str().expect("a container name");
                (o, c, started_with(o, name))
            })
            .collect()
    }

    /// Every collector the manifests, compose or the native stack run starts exactly the
    /// extensions its files define, and every one its components use.
    #[test]
    fn every_collectors_merged_config_starts_the_extensions_it_uses() {
        let mut roles: Vec<(String, Vec<String>)> = collectors(&base_objects())
            .into_iter()
            .map(|(o, _, files)| (name_of(o), files))
            .collect();
        for files in [
            &["otel-collector/config.yaml"][..],
            &["otel-collector/config.yaml", "otel-collector/gateway.yaml"],
            &["otel-collector/agent.yaml"],
            // Compose and the e2e step's secured collector.
            &["otel-collector/config.yaml", AUTH],
            &[
                "otel-collector/config.yaml",
                AUTH,
                "otel-collector/logs-loki.yaml",
            ],
        ] {
            roles.push((
                files.join(" + "),
                files.iter().map(|f| f.to_string()).collect(),
            ));
        }
        assert!(roles.len() >= 7, "{roles:?}");
        for (role, files) in roles {
            let problems = extension_problems(&merged(&files));
            assert!(problems.is_empty(), "{role}: {problems:#?}");
        }
    }

    /// The check above finds auth.yaml's list on an agent (it names config.yaml's queue), the
    /// agent's list without auth.yaml, and an authenticator the service does not start.
    #[test]
    fn the_extension_check_finds_a_list_replaced_by_the_wrong_one() {
        let agent = ["otel-collector/agent.yaml", KUBERNETES_ONLY[0].0, AUTH];
        let problems = extension_problems(&merged(&agent));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("starts file_storage/queue")),
            "{problems:#?}"
        );
        let no_auth = ["otel-collector/agent.yaml", KUBERNETES_ONLY[2].0];
        let problems = extension_problems(&merged(&no_auth));
        assert!(
            problems
                .iter()
                .any(|p| p
                    == "service.extensions starts bearertokenauth/otlp, which no file defines"),
            "{problems:#?}"
        );
        let unlisted = json!({
            "extensions": { "health_check": {} },
            "exporters": { "otlp_grpc": { "auth": { "authenticator": "bearertokenauth/otlp" } } },
            "service": { "extensions": ["health_check"] },
        });
        assert_eq!(
            extension_problems(&unlisted),
            ["authenticator bearertokenauth/otlp is not in service.extensions"]
        );
    }

    /// The Secret and key a container's file at `path` comes from, if a secret volume mounts it.
    fn secret_file(object: &Value, c: &Value, path: &str) -> Option<(String, String)> {
        let (dir, file) = path.rsplit_once('/')?;
        let mount = c["volumeMounts"]
            .as_array()?
            .iter()
            .find(|m| m["mountPath"] == dir && m["subPath"].is_null())?;
        let secret = &pod_spec(object)?["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == mount["name"])?["secret"];
        let key = match secret["items"].as_array() {
            Some(items) => items.iter().find(|i| i["path"] == file)?["key"].as_str()?,
            None => file,
        };
        Some((secret["secretName"].as_str()?.to_owned(), key.to_owned()))
    }

    fn env_var<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
        c["env"].as_array()?.iter().find(|v| v["name"] == name)
    }

    /// The Secret and key a variable comes from (valueFrom.secretKeyRef, and no value).
    fn secret_env(c: &Value, name: &str) -> Option<(String, String)> {
        let var = env_var(c, name)?;
        let from = &var["valueFrom"]["secretKeyRef"];
        if !var["value"].is_null() {
            return None;
        }
        Some((
            from["name"].as_str()?.to_owned(),
            from["key"].as_str()?.to_owned(),
        ))
    }

    /// What lets a collector listen beyond loopback without TLS or the token: each collector
    /// whose servers bind all interfaces (INV_BIND_HOST) or a hostPort must load auth.yaml, keep
    /// TLS and the authenticator on both OTLP protocols once its files are merged, take
    /// INV_OTLP_TOKEN from a Secret (never a value) and its certificate and key from a mounted
    /// Secret.
    fn auth_problems(objects: &[Value]) -> Vec<String> {
        let mut problems = Vec::new();
        for (object, c, files) in collectors(objects) {
            let who = name_of(object);
            let bind = env_var(c, "INV_BIND_HOST").and_then(|v| v["value"].as_str());
            let host_port = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| !p["hostPort"].is_null());
            if bind.is_none_or(|b| b == "127.0.0.1") && !host_port {
                continue;
            }
            if !files.iter().any(|f| f == AUTH) {
                problems.push(format!("{who}: listens beyond loopback without {AUTH}"));
            }
            let config = merged(&files);
            for protocol in ["grpc", "http"] {
                let server = &config["receivers"]["otlp"]["protocols"][protocol];
                for setting in ["/tls/cert_file", "/tls/key_file", "/auth/authenticator"] {
                    if server.pointer(setting).is_none_or(Value::is_null) {
                        problems.push(format!("{who}: OTLP {protocol} has no {setting}"));
                    }
                }
            }
            if secret_env(c, "INV_OTLP_TOKEN").is_none() {
                problems.push(format!(
                    "{who}: INV_OTLP_TOKEN is not taken from a Secret (valueFrom.secretKeyRef, no value)"
                ));
            }
            for var in ["INV_TLS_CERT_FILE", "INV_TLS_KEY_FILE"] {
                let path = env_var(c, var)
                    .and_then(|v| v["value"].as_str())
                    .unwrap_or("");
                if secret_file(object, c, path).is_none() {
                    problems.push(format!(
                        "{who}: {var} {path:?} is not a file of a mounted Secret"
                    ));
                }
            }
        }
        problems
    }

    #[test]
    fn every_collector_listening_beyond_loopback_takes_tls_and_a_token_from_a_secret() {
        let objects = base_objects();
        let problems = auth_problems(&objects);
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(collectors(&objects).len(), 2, "the agent and the gateways");
    }

    #[test]
    fn the_auth_check_finds_a_collector_without_auth_yaml_a_literal_token_or_an_unmounted_key() {
        let mut objects = base_objects();
        let agent = objects
            .iter_mut()
            .find(|o| o["kind"] == "DaemonSet" && o["metadata"]["name"] == "otel-agent")
            .expect("the agent");
        let c = &mut agent["spec"]["template"]["spec"]["containers"][0];
        let args = c["args"].as_array_mut().expect("args");
        args.retain(|a| a != "--config=/etc/otelcol/auth.yaml");
        let gateway = objects
            .iter_mut()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "otel-gateway")
            .expect("the gateways");
        let pod = &mut gateway["spec"]["template"]["spec"];
        for var in pod["containers"][0]["env"].as_array_mut().expect("env") {
            if var["name"] == "INV_OTLP_TOKEN" {
                *var = json!({ "name": "INV_OTLP_TOKEN", "value": "a-literal-token" });
            }
        }
        for volume in pod["volumes"].as_array_mut().expect("volumes") {
            if !volume["secret"].is_null() {
                *volume = json!({ "name": volume["name"], "emptyDir": {} });
            }
        }
        assert_finds(
            &auth_problems(&objects),
            &[
                "DaemonSet otel-agent: listens beyond loopback without otel-collector/auth.yaml",
                "DaemonSet otel-agent: OTLP grpc has no /tls/cert_file",
                "Deployment otel-gateway: INV_OTLP_TOKEN is not taken from a Secret",
                "Deployment otel-gateway: INV_TLS_KEY_FILE \"/etc/otelcol-tls/tls.key\" is not a file of a mounted Secret",
            ],
        );
    }

    /// Each of `needles` is in one of `problems`.
    fn assert_finds(problems: &[String], needles: &[&str]) {
        for needle in needles {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle}: {problems:#?}"
            );
        }
    }

    /// The agent sends to the gateways over TLS, trusting the CA of a mounted Secret and
    /// checking the name the gateways' certificate carries (one `dev-certs` writes), with the
    /// token.
    #[test]
    fn the_agent_exports_to_the_gateways_over_tls_with_the_token() {
        let objects = base_objects();
        let agent = workload(&objects, "DaemonSet", "otel-agent");
        let c = container(agent, "otel-collector");
        let config = merged(&started_with(agent, "otel-collector"));
        let balancers: Vec<(&String, &Value)> = config["exporters"]
            .as_object()
            .expect("exporters")
            .iter()
            .filter(|(id, _)| id.starts_with("load_balancing"))
            .collect();
        assert_eq!(balancers.len(), 2, "{balancers:?}");
        for (id, exporter) in balancers {
            let otlp = &exporter["protocol"]["otlp"];
            assert_eq!(otlp["tls"]["insecure"], false, "{id}");
            assert_eq!(otlp["tls"]["ca_file"], "${env:INV_TLS_CA_FILE}", "{id}");
            assert_eq!(
                otlp["tls"]["server_name_override"], "${env:INV_GATEWAY_DNS}",
                "{id}"
            );
            assert_eq!(
                otlp["auth"]["authenticator"], "bearertokenauth/otlp",
                "{id}"
            );
        }
        let ca = env_value(agent, "otel-collector", "INV_TLS_CA_FILE");
        assert_eq!(
            secret_file(agent, c, &ca),
            Some(("otlp-auth".to_owned(), "ca.crt".to_owned()))
        );
        let gateways = env_value(agent, "otel-collector", "INV_GATEWAY_DNS");
        assert!(
            crate::certs::server_names().contains(&gateways),
            "{gateways} is not a name of the dev certificate"
        );
    }

    /// The bot sends to its node's agent by a name the agent's certificate carries, trusting the
    /// CA the agent trusts, with the token the collectors take, referred to, never written in.
    #[test]
    fn the_bot_exports_to_its_nodes_agent_over_tls_with_the_token() {
        let objects = base_objects();
        let job = workload(&objects, "Job", "invbot");
        let bot = container(job, "invbot");
        let agent = workload(&objects, "DaemonSet", "otel-agent");
        let collector = container(agent, "otel-collector");

        let endpoint = env_value(job, "invbot", "OTEL_EXPORTER_OTLP_ENDPOINT");
        let host_port = endpoint
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("{endpoint} is not https"));
        let (host, port) = host_port.split_once(':').expect("host:port");
        assert!(
            crate::certs::server_names().iter().any(|n| n == host),
            "{host} is not a name of the dev certificate"
        );
        let service = workload(&objects, "Service", host.split('.').next().expect("a name"));
        assert_eq!(service["spec"]["internalTrafficPolicy"], "Local");
        assert!(selects(
            &service["spec"]["selector"],
            &agent["spec"]["template"]["metadata"]["labels"]
        ));
        assert!(service_ports(&objects, "otel-agent").contains(&port.parse().expect("a port")));

        let ca = env_value(job, "invbot", "OTEL_EXPORTER_OTLP_CERTIFICATE");
        let agent_ca = env_value(agent, "otel-collector", "INV_TLS_CA_FILE");
        assert!(
            secret_file(job, bot, &ca).is_some(),
            "{ca} is not from a Secret"
        );
        assert_eq!(
            secret_file(job, bot, &ca),
            secret_file(agent, collector, &agent_ca)
        );

        assert_eq!(
            env_value(job, "invbot", "OTEL_EXPORTER_OTLP_HEADERS"),
            "Authorization=Bearer%20$(INV_OTLP_TOKEN)"
        );
        assert!(secret_env(bot, "INV_OTLP_TOKEN").is_some());
        assert_eq!(
            secret_env(bot, "INV_OTLP_TOKEN"),
            secret_env(collector, "INV_OTLP_TOKEN")
        );
        let order: Vec<&str> = bot["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        let at = |n: &str| order.iter().position(|v| *v == n);
        assert!(
            at("INV_OTLP_TOKEN") < at("OTEL_EXPORTER_OTLP_HEADERS"),
            "Kubernetes expands $(INV_OTLP_TOKEN) only from a variable defined before: {order:?}"
        );
    }

    /// The port after the last `:` of an endpoint string.
    fn port(endpoint: &str) -> u16 {
        endpoint
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {endpoint}"))
    }

    fn service_ports(objects: &[Value], name: &str) -> Vec<u16> {
        workload(objects, "Service", name)["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["port"].as_u64().expect("a port") as u16)
            .collect()
    }

    fn env_value(object: &Value, container_name: &str, var: &str) -> String {
        container(object, container_name)["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|v| v["name"] == var)
            .and_then(|v| v["value"].as_str())
            .unwrap_or_else(|| panic!("{} does not set {var}", name_of(object)))
            .to_owned()
    }

    /// The gateways reach Jaeger and VictoriaLogs on the ports those listen on.
    #[test]
    fn the_gateways_export_to_the_ports_the_backends_listen_on() {
        let objects = base_objects();
        let gateway = workload(&objects, "Deployment", "otel-gateway");
        let jaeger = yaml(&crate::root().join("jaeger/config.yaml"));
        let listens = port(
            jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
                .as_str()
                .expect("Jaeger's OTLP gRPC endpoint"),
        );
        let endpoint = env_value(gateway, "otel-collector", "INV_JAEGER_OTLP_ENDPOINT");
        assert_eq!(endpoint, format!("jaeger:{listens}"));
        assert!(service_ports(&objects, "jaeger").contains(&listens));
        let logs = env_value(gateway, "otel-collector", "INV_VICTORIALOGS_ENDPOINT");
        assert_eq!(
            logs,
            "http://victorialogs:9428/insert/opentelemetry/v1/logs"
        );
        assert!(service_ports(&objects, "victorialogs").contains(&9428));
        let agent = workload(&objects, "DaemonSet", "otel-agent");
        let dns = env_value(agent, "otel-collector", "INV_GATEWAY_DNS");
        assert_eq!(
            dns,
            format!("otel-gateway-headless.{NAMESPACE}.svc.cluster.local")
        );
        let headless = workload(&objects, "Service", "otel-gateway-headless");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(service_ports(&objects, "otel-gateway-headless"), [4317]);
    }

    /// agent-k8s-resolver.yaml overrides exactly agent.yaml's load-balancing exporters: the
    /// static resolver off, DNS on the gateways' OTLP port.
    #[test]
    fn the_kubernetes_resolver_overrides_the_agents_load_balancing_exporters() {
        let agent = yaml(&crate::root().join("otel-collector/agent.yaml"));
        let overlay = yaml(&crate::root().join(KUBERNETES_ONLY[0].0));
        let balancers: BTreeSet<&String> = agent["exporters"]
            .as_object()
            .expect("agent.yaml's exporters")
            .iter()
            .filter(|(id, e)| {
                id.split('/')
                    .next()
                    .is_some_and(|t| t == "load_balancing" || t == "loadbalancing")
                    && e["resolver"]["static"].is_object()
            })
            .map(|(id, _)| id)
            .collect();
        let overridden: BTreeSet<&String> = overlay["exporters"]
            .as_object()
            .expect("exporters")
            .keys()
            .collect();
        assert!(!balancers.is_empty());
        assert_eq!(overridden, balancers);
        for id in overridden {
            let resolver = &overlay["exporters"][id]["resolver"];
            assert_eq!(resolver["static"], json!({ "enabled": false }), "{id}");
            assert_eq!(
                resolver["dns"]["hostname"], "${env:INV_GATEWAY_DNS}",
                "{id}"
            );
            assert_eq!(resolver["dns"]["port"], "4317", "{id}");
        }
    }

    /// The Kubernetes Prometheus config is prometheus/prometheus.yml with discovery instead of
    /// targets: the same global settings, storage and rule files, and every native job scraped
    /// under its name, on its port and path.
    #[test]
    fn the_prometheus_config_scrapes_the_native_jobs_on_the_native_ports() {
        let native = yaml(&crate::root().join("prometheus/prometheus.yml"));
        let k8s = yaml(&crate::root().join(KUBERNETES_ONLY[1].0));
        assert_eq!(native["global"], k8s["global"]);
        assert_eq!(native["storage"], k8s["storage"]);
        assert_eq!(native["rule_files"], k8s["rule_files"]);
        let objects = base_objects();
        let k8s_jobs = k8s["scrape_configs"].as_array().expect("scrape_configs");
        let relabels_job_from_name = k8s_jobs.iter().any(|j| {
            j["relabel_configs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| {
                    r["source_labels"]
                        == json!(["__meta_kubernetes_pod_label_app_kubernetes_io_name"])
                        && r["target_label"] == "job"
                })
        });
        assert!(relabels_job_from_name);
        let alertmanager = port(
            k8s["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
                .as_str()
                .expect("the Alertmanager target"),
        );
        assert!(service_ports(&objects, "alertmanager").contains(&alertmanager));
        for job in native["scrape_configs"].as_array().expect("scrape_configs") {
            let name = job["job_name"].as_str().expect("a job name");
            let target = job["static_configs"][0]["targets"][0]
                .as_str()
                .expect("a target");
            let native_port = port(target);
            let path = job["metrics_path"].as_str().unwrap_or("/metrics");
            let scraped: Vec<&Value> = objects
                .iter()
                .filter(|o| pod_spec(o).is_some())
                .filter(|o| {
                    o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name
                })
                .collect();
            assert!(
                !scraped.is_empty(),
                "native job {name}: no pod labelled app.kubernetes.io/name={name}"
            );
            for o in scraped {
                let a = &o["spec"]["template"]["metadata"]["annotations"];
                assert_eq!(a["prometheus.io/scrape"], "true", "{}", name_of(o));
                assert_eq!(
                    a["prometheus.io/port"],
                    native_port.to_string(),
                    "{}",
                    name_of(o)
                );
                assert_eq!(a["prometheus.io/path"], path, "{}", name_of(o));
            }
        }
    }

    /// VictoriaLogs takes only flags: the same as compose's (which stack.rs's test holds to the
    /// native ones), but for where it listens and stores.
    #[test]
    fn victorialogs_runs_with_the_flags_of_compose() {
        let compose = yaml(&crate::root().join("compose/docker-compose.yml"));
        let objects = base_objects();
        let k8s = container(
            workload(&objects, "StatefulSet", "victorialogs"),
            "victorialogs",
        );
        let settings = |flags: &Value| -> Vec<String> {
            let mut kept: Vec<String> = flags
                .as_array()
                .expect("flags")
                .iter()
                .filter_map(|f| f.as_str())
                .filter(|f| {
                    !f.starts_with("-httpListenAddr=") && !f.starts_with("-storageDataPath=")
                })
                .map(str::to_owned)
                .collect();
            kept.sort();
            kept
        };
        assert!(
            settings(&k8s["args"])
                .iter()
                .any(|f| f.starts_with("-retentionPeriod="))
        );
        assert_eq!(
            settings(&k8s["args"]),
            settings(&compose["services"]["victorialogs"]["command"])
        );
        let data = k8s["args"]
            .as_array()
            .expect("args")
            .iter()
            .find_map(|f| f.as_str()?.strip_prefix("-storageDataPath="))
            .expect("a storage path");
        assert!(
            k8s["volumeMounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .any(|m| m["mountPath"] == data),
            "VictoriaLogs stores outside its volume"
        );
    }

    /// The tags the manifests set (kustomize `images:` and any tagged `image:`) are the versions
    /// of compose/.env (the bot's: the workspace version), and every image run gets one.
    #[test]
    fn image_tags_are_the_pinned_versions() {
        let ctx = Ctx::new(&crate::root()).expect("compose/.env");
        let expected = expected_images(&crate::root(), |key| ctx.version(key).map(str::to_owned))
            .expect("images");
        let mut set = BTreeMap::new();
        for (dir, k) in kustomizations() {
            for image in k["images"].as_array().into_iter().flatten() {
                let name = image["name"].as_str().expect("an image name");
                assert!(
                    image["newName"].is_null(),
                    "{}: {name} renamed",
                    dir.display()
                );
                let tag = image["newTag"].as_str().expect("a newTag");
                assert_eq!(
                    expected.get(name).map(String::as_str),
                    Some(tag),
                    "{}: {name}:{tag} is not the pinned version",
                    dir.display()
                );
                set.insert(name.to_owned(), tag.to_owned());
            }
        }
        let objects = base_objects();
        for object in &objects {
            for c in pod_spec(object).into_iter().flat_map(containers) {
                let image = c["image"].as_str().expect("an image");
                let (name, tag) = match image.rsplit_once(':') {
                    Some((name, tag)) => (name, Some(tag)),
                    None => (image, None),
                };
                match tag {
                    Some(tag) => {
                        assert_eq!(expected.get(name).map(String::as_str), Some(tag), "{image}")
                    }
                    None => assert!(
                        set.contains_key(name),
                        "{image} gets no tag from kustomization.yaml"
                    ),
                }
            }
        }
        assert!(set.contains_key(BOT_IMAGE), "the bot's image gets no tag");
    }

    #[test]
    fn the_base_manifests_pass_the_checks_schemas_cannot_make() {
        let problems = lint(&base_objects(), false);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn the_checks_find_a_container_without_limits_probes_or_security() {
        let mut objects = base_objects();
        let job = objects
            .iter_mut()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        let c = &mut job["spec"]["template"]["spec"]["containers"][0];
        c["resources"]["limits"] = Value::Null;
        c["readinessProbe"] = Value::Null;
        c["securityContext"]["readOnlyRootFilesystem"] = json!(false);
        c["env"] = json!([
            { "name": "ADMIN_PASSWORD", "value": "admin" },
            { "name": "LITERAL_HEADERS", "value": "Authorization=Bearer%20abc" },
            { "name": "EARLY_HEADERS", "value": "Authorization=Bearer%20$(LATE_TOKEN)" },
            { "name": "LATE_TOKEN", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } },
        ]);
        objects.retain(|o| o["metadata"]["name"] != "default-deny");
        let policy = objects
            .iter_mut()
            .find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "jaeger")
            .expect("Jaeger's policy");
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] =
            json!("otel-colector");
        policy["spec"]["ingress"][0]["ports"][0]["port"] = json!(4317);
        let service = objects
            .iter_mut()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "victorialogs")
            .expect("VictoriaLogs' Service");
        service["spec"]["ports"][0]["targetPort"] = json!("htp");
        assert_finds(
            &lint(&objects, false),
            &[
                "peer {\"app.kubernetes.io/component\":\"gateway\",\"app.kubernetes.io/name\":\"otel-colector\"} matches no pod",
                "admits port 4317",
                "targets \"htp\"",
                "resources.limits.cpu",
                "no readinessProbe",
                "readOnlyRootFilesystem",
                "ADMIN_PASSWORD",
                "LITERAL_HEADERS holds a bearer token",
                "EARLY_HEADERS holds a bearer token",
                "default-deny",
            ],
        );
    }

    #[test]
    fn the_validator_pins_name_its_version() {
        assert_eq!(
            VALIDATOR_PACKAGES[0],
            format!("kubernetes-validate=={VALIDATOR_VERSION}")
        );
        assert!(VALIDATOR_PACKAGES.iter().all(|p| p.contains("==")));
    }

    #[test]
    fn documents_are_split_on_separator_lines() {
        let docs = documents("# c\n---\na: 1\n---\n---\nb: [x]\n").expect("YAML");
        assert_eq!(docs, [json!({ "a": 1 }), json!({ "b": ["x"] })]);
    }

    #[test]
    fn env_references_know_their_defaults() {
        let refs = env_references("# ${env:IN_COMMENT}\na: ${env:A:-1}:${env:B}\nc: ${env:A}\n");
        assert_eq!(
            refs,
            BTreeMap::from([("A".to_owned(), false), ("B".to_owned(), false)])
        );
    }
}
