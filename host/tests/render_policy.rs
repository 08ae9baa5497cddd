//! What `kroxide render` (and the controller, which shares the stage) refuses or limits in a
//! graph's output: a plugin smuggling another kind under a template's id past
//! `spec.plugin.allowedKinds`, and instance labels reaching cluster-scoped children.
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
