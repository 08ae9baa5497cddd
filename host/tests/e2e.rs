//! Every Chainsaw scenario under `tests/e2e/scenarios` (plain Kubernetes and kroxide), run with
//! the real kubectl against a fresh test API server and a `kroxide controller` process.

mod support;

use std::path::Path;

use kroxide_e2e::suite::{self, Controller, Options};
use support::{helm, repo};

#[test]
fn every_scenario_passes_against_the_controller() {
    let root = repo().join("tests/e2e/scenarios");
    let scenarios = suite::discover(&root);
    assert!(scenarios.len() >= 9, "{scenarios:?}");
    let options = Options {
        controller: Some(Controller {
            program: env!("CARGO_BIN_EXE_kroxide").into(),
            args: [
                "controller",
                "--namespace=kroxide-system",
                "--plugin-namespaces=kroxide-plugins",
                "--metrics-bind-address=0",
                "--health-probe-bind-address=0",
                "--dynamic-controller-rate-limiter-max-delay=5s",
                "--log-level=info,kroxide=debug",
            ]
            .map(String::from)
            .to_vec(),
        }),
        setup: vec![
            repo().join("charts/kroxide/crds/resourcegraphdefinitions.kro.run.yaml"),
            repo().join("tests/e2e/setup/namespaces.yaml"),
        ],
        script_env: vec![("PLUGIN_DIR".into(), env!("KROXIDE_PLUGIN_DIR").into())],
        ..Options::default()
    };
    let report = suite::run(&scenarios, &options);
    println!("{}", report.summary());
    assert!(report.failed.is_empty(), "{}", report.summary());
    // Every request the controller made is allowed by the chart's RBAC, in both modes.
    check_rbac(&report.controller_requests);
}

/// Whether `rules` allow `verb` on `group`/`resource` (a `resource/subresource` too).
fn allowed(rules: &[serde_json::Value], verb: &str, group: &str, resource: &str) -> bool {
    let has = |list: &serde_json::Value, want: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
    };
    rules.iter().any(|r| {
        has(&r["apiGroups"], group)
            && (has(&r["resources"], resource)
                || resource
                    .split_once('/')
                    .is_some_and(|(base, _)| has(&r["resources"], &format!("{base}/*"))))
            && has(&r["verbs"], verb)
    })
}

/// The rules the chart grants the controller's service account, as rendered with `values`.
fn granted_rules(values: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(helm())
        .args(["template", "kroxide", "charts/kroxide", "-n", "kroxide-system"])
        .args(values.iter().flat_map(|v| ["--set-json", v]))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs =
        kroxide::yaml::parse_documents(&String::from_utf8_lossy(&out.stdout), Path::new("rendered")).unwrap();
    let bound: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .filter(|d| {
            d["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "kroxide"))
        })
        .filter_map(|d| d["roleRef"]["name"].as_str().map(String::from))
        .collect();
    let roles: Vec<&serde_json::Value> = docs.iter().filter(|d| d["kind"] == "ClusterRole").collect();
    let mut rules = Vec::new();
    for role in &roles {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        if !bound.iter().any(|b| b == name) {
            continue;
        }
        rules.extend(role["rules"].as_array().cloned().unwrap_or_default());
        // An aggregated role's rules are those of every role its selectors match.
        for selector in role["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for other in &roles {
                let labels = &other["metadata"]["labels"];
                let matches = selector["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(k, v)| &labels[k] == v));
                if matches {
                    rules.extend(other["rules"].as_array().cloned().unwrap_or_default());
                }
            }
        }
    }
    rules
}

fn check_rbac(requests: &[kroxide_apiserver::Request]) {
    let resource_requests: Vec<_> = requests.iter().filter(|r| !r.resource.is_empty()).collect();
    assert!(
        resource_requests.len() > 100,
        "the suite made requests: {}",
        resource_requests.len()
    );
    let aggregation_kinds = r#"rbac.aggregation.rules=[
        {"apiGroups": [""], "resources": ["configmaps", "services", "namespaces", "resourcequotas"]},
        {"apiGroups": ["apps"], "resources": ["deployments"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"]},
        {"apiGroups": ["e2e.kroxide.dev", "examples.kroxide.dev"], "resources": ["*"]}]"#;
    for (mode, values) in [
        ("unrestricted", vec![r#"rbac.mode="unrestricted""#]),
        (
            "aggregation",
            vec![r#"rbac.mode="aggregation""#, aggregation_kinds],
        ),
    ] {
        let rules = granted_rules(&values);
        let denied: std::collections::BTreeSet<String> = resource_requests
            .iter()
            .filter(|r| {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                !allowed(&rules, &r.verb, &r.group, &resource)
            })
            .map(|r| {
                format!(
                    "{} {}/{}{}",
                    r.verb,
                    r.group,
                    r.resource,
                    if r.subresource.is_empty() {
                        String::new()
                    } else {
                        format!("/{}", r.subresource)
                    }
                )
            })
            .collect();
        assert!(
            denied.is_empty(),
            "in {mode} mode the chart does not allow: {denied:?}"
        );
        println!(
            "RBAC {mode}: all {} controller requests allowed",
            resource_requests.len()
        );
    }
}
