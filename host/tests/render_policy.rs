//! What `kroxide render` (and the controller, which shares the stage) refuses or limits in a
//! graph's output: a plugin smuggling another kind under a template's id past
//! `spec.plugin.allowedKinds`, and instance labels reaching cluster-scoped children; and how it
//! renders a whole graph with no cluster, listing what needs live data.
#![cfg(feature = "demo")]

mod support;

use std::path::{Path, PathBuf};

use kroxide::commands::render::{Format, Options, render};
use support::Scratch;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Regression: with `allowedKinds: [Service]` and a template whose id is `config`, a plugin
/// returning a ConfigMap under the id `config` had it applied: a child passed when its id
/// matched any template id, whatever its kind.
#[test]
fn a_plugin_cannot_return_another_kind_under_a_templates_id() {
    let dir = Scratch::new("kroxide-render-policy");
    let rgd = write(
        dir.path(),
        "rgd.yaml",
        r#"
apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata: {name: smuggles.test.kroxide.dev}
spec:
  schema: {apiVersion: v1alpha1, kind: Smuggle, group: test.kroxide.dev, spec: {}}
  plugin:
    configMapRef: {name: hostile}
    config: {mode: ok}
    allowedKinds: [Service]
  resources:
    - id: config
      template:
        apiVersion: v1
        kind: Service
        metadata: {name: "${schema.metadata.name}"}
        spec: {ports: [{port: 80}]}
"#,
    );
    let instance = write(
        dir.path(),
        "instance.yaml",
        "apiVersion: test.kroxide.dev/v1alpha1\nkind: Smuggle\nmetadata: {name: s, namespace: apps}\nspec: {}\n",
    );
    let err = render(&Options {
        rgd,
        instance,
        plugin: Some(PathBuf::from(format!(
            "{}/hostile.wasm",
            env!("KROXIDE_PLUGIN_DIR")
        ))),
        format: Format::Yaml,
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "plugin added resource config of kind ConfigMap, which spec.plugin.allowedKinds does not allow"
        ),
        "{err}"
    );
}

/// Regression: an instance label (`pod-security.kubernetes.io/warn: privileged`) was copied
/// onto a Namespace child, so a namespace user could set labels on cluster-scoped objects.
#[test]
fn instance_labels_reach_only_namespaced_children_in_the_instance_namespace() {
    let dir = Scratch::new("kroxide-render-policy");
    let graph = |annotation: &str| {
        format!(
            r#"
apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: spaces.test.kroxide.dev
  {annotation}
spec:
  schema: {{apiVersion: v1alpha1, kind: Space, group: test.kroxide.dev, spec: {{}}}}
  resources:
    - id: ns
      template:
        apiVersion: v1
        kind: Namespace
        metadata: {{name: "${{schema.metadata.name}}-ns"}}
    - id: here
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: "${{schema.metadata.name}}"}}
    - id: there
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: "${{schema.metadata.name}}", namespace: other}}
"#
        )
    };
    let instance = write(
        dir.path(),
        "instance.yaml",
        r#"
apiVersion: test.kroxide.dev/v1alpha1
kind: Space
metadata:
  name: s
  namespace: apps
  labels: {team: blue, pod-security.kubernetes.io/warn: privileged}
spec: {}
"#,
    );
    let labels_of = |out: &str, kind: &str, ns: Option<&str>| -> serde_json::Value {
        let docs = kroxide::yaml::parse_documents(out, Path::new("out")).unwrap();
        docs.into_iter()
            .find(|d| d["kind"] == kind && d["metadata"]["namespace"].as_str() == ns)
            .unwrap_or_else(|| panic!("no {kind} in {ns:?}:\n{out}"))["metadata"]["labels"]
            .clone()
    };
    let run = |annotation: &str| {
        let rgd = write(dir.path(), "rgd.yaml", &graph(annotation));
        render(&Options {
            rgd,
            instance: instance.clone(),
            format: Format::Yaml,
            ..Options::default()
        })
        .unwrap()
        .text
    };
    let out = run("");
    assert_eq!(labels_of(&out, "ConfigMap", Some("apps"))["team"], "blue");
    assert!(labels_of(&out, "Namespace", None).get("team").is_none(), "{out}");
    assert!(
        labels_of(&out, "ConfigMap", Some("other")).get("team").is_none(),
        "{out}"
    );
    for kind_ns in [("ConfigMap", Some("apps")), ("Namespace", None)] {
        assert!(
            labels_of(&out, kind_ns.0, kind_ns.1)
                .get("pod-security.kubernetes.io/warn")
                .is_none(),
            "{out}"
        );
    }
    // A graph may send them everywhere, still without the reserved keys.
    let out = run("annotations: {kroxide.dev/propagate-labels: all}");
    assert_eq!(labels_of(&out, "Namespace", None)["team"], "blue");
    assert!(
        labels_of(&out, "Namespace", None)
            .get("pod-security.kubernetes.io/warn")
            .is_none()
    );
    let out = run("annotations: {kroxide.dev/propagate-labels: \"false\"}");
    assert!(labels_of(&out, "ConfigMap", Some("apps")).get("team").is_none());
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/render")
        .join(name)
}

fn kinds_and_names(text: &str) -> Vec<(String, String)> {
    kroxide::yaml::parse_documents(text, Path::new("out"))
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Regression: for a graph shaped like kro's webapp example, `render` printed the Deployment
/// only and exited 0: the Service and Ingress read `deployment.metadata.name`, and with no
/// `--observed` file there was no Deployment to read. They now read it as it would be applied.
#[test]
fn a_graph_whose_resources_read_each_others_names_renders_whole_without_a_cluster() {
    let dir = fixture("webapp");
    let out = render(&Options {
        rgd: dir.join("rgd.yaml"),
        instance: dir.join("instance.yaml"),
        ..Options::default()
    })
    .unwrap();
    assert!(out.pending.is_empty(), "{:?}", out.pending);
    assert_eq!(
        kinds_and_names(&out.text),
        [
            ("Deployment".to_string(), "shop".to_string()),
            ("Service".to_string(), "shop-svc".to_string()),
            ("Ingress".to_string(), "shop-ingress".to_string()),
        ],
        "in the order they are applied:\n{}",
        out.text
    );
    assert!(
        out.text.contains("name: shop-svc\n            port:"),
        "{}",
        out.text
    );
}

#[test]
fn a_resource_reading_a_status_field_is_pending_until_an_observed_file_gives_it() {
    let dir = fixture("reads-status");
    let options = Options {
        rgd: dir.join("rgd.yaml"),
        instance: dir.join("instance.yaml"),
        ..Options::default()
    };
    let out = render(&options).unwrap();
    assert_eq!(
        kinds_and_names(&out.text),
        [("Deployment".to_string(), "shop".to_string())]
    );
    let [pending] = out.pending.as_slice() else {
        panic!("{:?}", out.pending)
    };
    assert_eq!(pending.resource, "report");
    assert!(
        pending.reason.contains("deployment.status.availableReplicas"),
        "{pending}"
    );
    assert_eq!(pending.needs, ["deployment (apps/v1 Deployment default/shop)"]);
    assert!(pending.to_string().contains("--observed"), "{pending}");

    let scratch = Scratch::new("kroxide-render-observed");
    let observed = write(
        scratch.path(),
        "deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop, namespace: default}\nspec: {replicas: 1}\nstatus: {availableReplicas: 1}\n",
    );
    let out = render(&Options {
        observed: Some(observed),
        ..options
    })
    .unwrap();
    assert!(out.pending.is_empty(), "{:?}", out.pending);
    assert!(out.text.contains("available: \"1\""), "{}", out.text);
}
