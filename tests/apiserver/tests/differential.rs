//! The differential suite: every case under `tests/differential/` is a sequence of HTTP requests
//! sent to this crate's server and to the real control plane (`scripts/cluster`); the responses
//! (status code, `Warning` headers, body) are normalised — uids, timestamps, resourceVersions,
//! generated names, allocated IPs and ports, also where a message quotes an object — and
//! compared. A difference fails the test unless
//! the case names it as known, with its reason, and `tests/apiserver/README.md` lists it; a known
//! difference that has gone away fails too, so the list stays true.
//!
//! A case file is YAML: `group:` and `cases:`, each case a `name:`, an optional `known:` reason
//! and `steps:`. A step is one request:
//!
//! - `get|post|put|patch|delete: <path>`: `$NS` is the case's namespace (created first on both
//!   servers), `$name` a value saved by an earlier step, `$MEBIBYTE` 1 MiB and one byte of `a`;
//! - `body:` (YAML, sent as JSON) or `raw:` (sent as is); `type:` `apply`, `merge`, `json`,
//!   `strategic` or a content type; `accept:` `table` or a media type;
//! - `until:` poll (both servers, 60 s deadline) until `{code: N}`, `{at: /ptr, is: value}` or
//!   `{present: /ptr}` holds (the garbage collector and other controllers act asynchronously);
//! - `compare:` JSON pointers to compare instead of the whole body; `ignore:` pointers to drop;
//!   `metadata.managedFields` is compared only where a step says `managedFields: true` (the
//!   server-side apply cases), so that each case compares the behaviour it is about;
//! - `save: {name: /pointer}` for later steps (per server, so each server gets its own values);
//! - `pick: {at: /list, key: name, value: apps}` compares only that item of a list (`key` may be
//!   a JSON pointer into the item).
//!
//! Set `KROXIDE_DIFF_ONLY=<substring>` to run the cases whose name or group contains it.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{Server, Target};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
struct File {
    group: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    known: Option<String>,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Step {
    get: Option<String>,
    post: Option<String>,
    put: Option<String>,
    patch: Option<String>,
    delete: Option<String>,
    body: Option<Value>,
    raw: Option<String>,
    #[serde(rename = "type")]
    content_type: Option<String>,
    accept: Option<String>,
    until: Option<Until>,
    compare: Option<Vec<String>>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    save: BTreeMap<String, String>,
    #[serde(default, rename = "managedFields")]
    managed_fields: bool,
    pick: Option<Pick>,
}

/// Narrows a list in the body to the one item whose `key` is `value` (discovery lists the
/// real server's many more groups and resources).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pick {
    at: String,
    key: String,
    value: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Until {
    code: Option<u16>,
    at: Option<String>,
    is: Option<Value>,
    /// A pointer that must be set (not absent, not null), whatever its value.
    present: Option<String>,
}

impl Step {
    fn method_and_path(&self) -> (http::Method, &str) {
        let pick = [
            (http::Method::GET, &self.get),
            (http::Method::POST, &self.post),
            (http::Method::PUT, &self.put),
            (http::Method::PATCH, &self.patch),
            (http::Method::DELETE, &self.delete),
        ];
        let mut found = pick.into_iter().filter_map(|(m, p)| p.as_deref().map(|p| (m, p)));
        let one = found.next().expect("a step names one method");
        assert!(found.next().is_none(), "a step names one method");
        one
    }

    fn content_type(&self) -> &str {
        match self.content_type.as_deref() {
            Some("apply") => "application/apply-patch+yaml",
            Some("merge") => "application/merge-patch+json",
            Some("json") => "application/json-patch+json",
            Some("strategic") => "application/strategic-merge-patch+json",
            Some(other) => other,
            None => "application/json",
        }
    }
}

/// One server's answer, normalised.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    code: u16,
    warnings: Vec<String>,
    body: Value,
}

struct Side {
    client: kube::Client,
    vars: HashMap<String, String>,
}

fn substitute(text: &str, ns: &str, vars: &HashMap<String, String>) -> String {
    let mut out = text.replace("$NS", ns);
    if out.contains("$MEBIBYTE") {
        out = out.replace("$MEBIBYTE", &"a".repeat(1024 * 1024 + 1));
    }
    // Longest names first, so `$rv2` is not read as `$rv` followed by `2`.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        out = out.replace(&format!("${n}"), &vars[n]);
    }
    out
}

async fn send(side: &Side, step: &Step, ns: &str) -> Answer {
    let (method, path) = step.method_and_path();
    let path = substitute(path, ns, &side.vars);
    let body = match (&step.body, &step.raw) {
        (Some(b), _) => substitute(&b.to_string(), ns, &side.vars).into_bytes(),
        (None, Some(r)) => substitute(r, ns, &side.vars).into_bytes(),
        (None, None) => Vec::new(),
    };
    let accept = match step.accept.as_deref() {
        Some("table") => "application/json;as=Table;v=v1;g=meta.k8s.io",
        Some(other) => other,
        None => "application/json",
    };
    let request = http::Request::builder()
        .method(method)
        .uri(&path)
        .header("content-type", step.content_type())
        .header("accept", accept)
        .body(kube::client::Body::from(body))
        .expect("a valid request");
    let response = side.client.send(request).await.expect("the server answers");
    let code = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    let bytes = response.into_body().collect().await.expect("a body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        // Watches answer with one JSON object per line.
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_string())))
            .collect();
        if lines.len() == 1 {
            lines[0].clone()
        } else {
            Value::Array(lines)
        }
    });
    Answer { code, warnings, body }
}

fn holds(until: &Until, a: &Answer) -> bool {
    if let Some(code) = until.code
        && a.code != code
    {
        return false;
    }
    if let Some(p) = &until.present
        && a.body.pointer(p).is_none_or(Value::is_null)
    {
        return false;
    }
    if let Some(at) = &until.at {
        return a.body.pointer(at) == until.is.as_ref();
    }
    true
}

async fn answer(side: &Side, step: &Step, ns: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = send(side, step, ns).await;
        match &step.until {
            Some(u) if !holds(u, &a) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return a,
        }
    }
}

const TIMES: &[&str] = &[
    "creationTimestamp",
    "deletionTimestamp",
    "lastTransitionTime",
    "lastUpdateTime",
    "lastProbeTime",
    "eventTime",
    "firstTimestamp",
    "lastTimestamp",
    "renewTime",
    "acquireTime",
    "startTime",
    "time",
];
const GENERATED: &[&str] = &[
    "uid",
    "resourceVersion",
    "continue",
    "clusterIP",
    "nodePort",
    "remainingItemCount",
];

fn normalise(v: &mut Value, generate_name: Option<&str>) {
    static UUID: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap()
    });
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let set = !x.is_null() && x != "None" && x != "";
                // Each server has its own certificate authority.
                if k == "ca.crt" && x.is_string() {
                    *x = json!("<ca>");
                } else if set && (TIMES.contains(&k.as_str()) || GENERATED.contains(&k.as_str())) {
                    *x = json!("<set>");
                } else if k == "clusterIPs" && x.is_array() {
                    *x = json!(["<set>"]);
                } else if let (Some(g), "name", Some(s)) = (generate_name, k.as_str(), x.as_str())
                    && let Some(rest) = s.strip_prefix(g)
                    && rest.len() == 5
                {
                    *x = json!(format!("{g}<generated>"));
                } else {
                    normalise(x, generate_name);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| normalise(x, generate_name)),
        Value::String(s) => {
            if UUID.is_match(s) {
                *s = UUID.replace_all(s, "<uid>").into_owned();
            }
            // Objects quoted inside messages carry their own times and resourceVersions.
            static QUOTED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
                regex::Regex::new(r#"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z|resourceVersion\\":\\"\d+"#)
                    .unwrap()
            });
            if QUOTED.is_match(s) {
                *s = QUOTED.replace_all(s, "<set>").into_owned();
            }
            static TOKEN_VOLUME: std::sync::LazyLock<regex::Regex> =
                std::sync::LazyLock::new(|| regex::Regex::new(r"kube-api-access-[a-z0-9]{5}").unwrap());
            if TOKEN_VOLUME.is_match(s) {
                *s = TOKEN_VOLUME
                    .replace_all(s, "kube-api-access-<generated>")
                    .into_owned();
            }
            if let Some(g) = generate_name
                && s.contains(g)
            {
                let re = regex::Regex::new(&format!("{}[a-z0-9]{{5}}", regex::escape(g))).unwrap();
                *s = re.replace_all(s, format!("{g}<generated>").as_str()).into_owned();
            }
        }
        _ => {}
    }
}

/// A Table's Age cells and `object` metadata vary with the clock.
fn normalise_table(v: &mut Value) {
    if v["kind"] != "Table" {
        return;
    }
    let ages: Vec<usize> = v["columnDefinitions"]
        .as_array()
        .map(|c| {
            c.iter()
                .enumerate()
                .filter(|(_, c)| c["name"] == "Age")
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    if let Some(rows) = v["rows"].as_array_mut() {
        for row in rows {
            for &i in &ages {
                if let Some(cell) = row["cells"].get_mut(i) {
                    *cell = json!("<age>");
                }
            }
        }
    }
}

fn project(a: &Answer, step: &Step, generate_name: Option<&str>) -> Answer {
    let mut body = a.body.clone();
    if let Some(pick) = &step.pick {
        let found = body
            .pointer(&pick.at)
            .and_then(Value::as_array)
            .and_then(|items| {
                items.iter().find(|i| {
                    let v = if pick.key.starts_with('/') {
                        i.pointer(&pick.key)
                    } else {
                        i.get(&pick.key)
                    };
                    v == Some(&pick.value)
                })
            })
            .cloned();
        body = found.unwrap_or(Value::Null);
    }
    if !step.managed_fields {
        remove(&mut body, "/metadata/managedFields");
        remove(&mut body, "/object/metadata/managedFields");
        // Lists and watch events carry objects too.
        for list in ["/items", ""] {
            if let Some(items) = body.pointer_mut(list).and_then(Value::as_array_mut) {
                for item in items {
                    remove(item, "/metadata/managedFields");
                    remove(item, "/object/metadata/managedFields");
                }
            }
        }
    }
    for p in &step.ignore {
        remove(&mut body, p);
    }
    normalise_table(&mut body);
    normalise(&mut body, generate_name);
    if let Some(ptrs) = &step.compare {
        let mut picked = serde_json::Map::new();
        for p in ptrs {
            picked.insert(p.clone(), body.pointer(p).cloned().unwrap_or(Value::Null));
        }
        body = Value::Object(picked);
    }
    Answer {
        code: a.code,
        warnings: a.warnings.clone(),
        body,
    }
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(m)) => {
            m.remove(last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// Leaf-by-leaf differences between two values, as `pointer: embedded ≠ real` lines.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => differences(&p, l, r, out),
                    (l, r) => out.push(format!("{p}: {} ≠ {}", shown(l), shown(r))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                match (x.get(i), y.get(i)) {
                    (Some(l), Some(r)) => differences(&format!("{path}/{i}"), l, r, out),
                    (l, r) => out.push(format!("{path}/{i}: {} ≠ {}", shown(l), shown(r))),
                }
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {} ≠ {}", shown(Some(a)), shown(Some(b)))),
    }
}

fn shown(v: Option<&Value>) -> String {
    let s = v.map_or_else(|| "(absent)".to_string(), |v| v.to_string());
    if s.len() > 400 {
        format!("{}…", &s[..400])
    } else {
        s
    }
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/differential exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load() -> Vec<File> {
    case_files()
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

async fn create_namespace(side: &Side, ns: &str) {
    let step = Step {
        post: Some("/api/v1/namespaces".into()),
        body: Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})),
        ..Step::default()
    };
    let a = send(side, &step, ns).await;
    assert_eq!(a.code, 201, "namespace {ns}: {}", a.body);
    // The real control plane's controllers fill a new namespace a moment later: wait for what
    // they put there, so that no case races them.
    for path in [
        "/api/v1/namespaces/$NS/configmaps/kube-root-ca.crt",
        "/api/v1/namespaces/$NS/serviceaccounts/default",
    ] {
        let ready = Step {
            get: Some(path.into()),
            until: Some(Until {
                code: Some(200),
                at: None,
                is: None,
                present: None,
            }),
            ..Step::default()
        };
        let a = answer(side, &ready, ns).await;
        assert_eq!(a.code, 200, "namespace {ns} never got {path}: {}", a.body);
    }
}

/// Compares every case on both servers and prints a table per group.
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_server_answers_as_the_real_one_does() {
    let only = std::env::var("KROXIDE_DIFF_ONLY").ok();
    let files = load();
    // The shared helper's server sends bookmarks every 300 ms; the real server about once a
    // minute. This one keeps the default interval so that watches compare.
    let embedded = Target::Embedded(
        kroxide_apiserver::ApiServer::start(kroxide_apiserver::Config {
            workload_delay: Duration::from_millis(100),
            ..kroxide_apiserver::Config::default()
        })
        .await
        .expect("the API server starts"),
    );
    let real = Target::start(Server::Real).await;
    let mut sides = [
        Side {
            client: embedded.client().await,
            vars: HashMap::new(),
        },
        Side {
            client: real.client().await,
            vars: HashMap::new(),
        },
    ];
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap_or_default();
    let mut failures = Vec::new();
    let mut table = Vec::new();
    let mut n = 0;
    for file in &files {
        let (mut compared, mut differing, mut known) = (0, 0, 0);
        for case in &file.cases {
            if let Some(o) = &only
                && !case.name.contains(o.as_str())
                && !file.group.contains(o.as_str())
            {
                continue;
            }
            n += 1;
            compared += 1;
            let ns = format!("diff-{n}");
            for side in &mut sides {
                side.vars.clear();
                create_namespace(side, &ns).await;
            }
            let mut found = Vec::new();
            for (i, step) in case.steps.iter().enumerate() {
                let generate_name = step
                    .body
                    .as_ref()
                    .and_then(|b| b.pointer("/metadata/generateName"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let mut answers = Vec::new();
                for side in &mut sides {
                    let a = answer(side, step, &ns).await;
                    for (var, pointer) in &step.save {
                        let value = a.body.pointer(pointer).map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                        side.vars.insert(var.clone(), value.unwrap_or_default());
                    }
                    answers.push(project(&a, step, generate_name.as_deref()));
                }
                let (e, r) = (&answers[0], &answers[1]);
                let (m, p) = step.method_and_path();
                let mut lines = Vec::new();
                if e.code != r.code {
                    lines.push(format!("status code: {} ≠ {}", e.code, r.code));
                }
                if e.warnings != r.warnings {
                    lines.push(format!("warnings: {:?} ≠ {:?}", e.warnings, r.warnings));
                }
                differences("", &e.body, &r.body, &mut lines);
                if !lines.is_empty() {
                    found.push(format!(
                        "  step {} ({m} {p}):\n    {}",
                        i + 1,
                        lines.join("\n    ")
                    ));
                }
            }
            match (&case.known, found.is_empty()) {
                (None, true) => {}
                (None, false) => {
                    differing += 1;
                    failures.push(format!(
                        "[{}] {}: embedded ≠ real\n{}",
                        file.group,
                        case.name,
                        found.join("\n")
                    ));
                }
                (Some(reason), false) => {
                    known += 1;
                    differing += 1;
                    if !readme.contains(&case.name) {
                        failures.push(format!(
                            "[{}] {}: a known difference ({reason}) that README.md does not list",
                            file.group, case.name
                        ));
                    }
                }
                (Some(reason), true) => failures.push(format!(
                    "[{}] {}: marked known ({reason}) but both servers now agree: drop `known`",
                    file.group, case.name
                )),
            }
        }
        if compared > 0 {
            table.push(format!(
                "{:<28} {compared:>9} {differing:>11} {known:>6}",
                file.group
            ));
        }
    }
    let total: usize = files.iter().map(|f| f.cases.len()).sum();
    println!(
        "{:<28} {:>9} {:>11} {:>6}\n{}\n{n} of {total} behaviours compared, {} unexplained",
        "group",
        "compared",
        "differences",
        "known",
        table.join("\n"),
        failures.len()
    );
    embedded.shutdown().await;
    real.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
