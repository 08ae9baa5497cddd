//! The real kubectl against the test API server (the machine's dispatcher picks 1.32 from
//! `/version`) and against the real control plane (its own kubectl, 1.36), with a throw-away
//! HOME per server and default client-side validation.

mod common;

use std::time::Duration;

use common::{Kubectl, Server, Target, eventually};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, default: blue}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

fn widget(size: u32) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{size: {size}}}\n")
}

fn deployment(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, labels: {{app: web}}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n        ports: [{{containerPort: 80}}]\n"
    )
}

async fn apply_creates_and_updates_custom_resources_and_deployments(server: Server) {
    let s = Target::start(server).await;
    let k = Kubectl::for_target(&s);
    let crd = k.file("crd.yaml", CRD.as_bytes());
    assert!(
        k.ok(&["apply", "-f", &crd])
            .contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created")
    );
    let w = k.file("w.yaml", widget(3).as_bytes());
    assert_eq!(k.ok(&["apply", "-f", &w]).trim(), "widget.example.com/w1 created");
    let w = k.file("w.yaml", widget(4).as_bytes());
    assert_eq!(
        k.ok(&["apply", "-f", &w]).trim(),
        "widget.example.com/w1 configured"
    );
    assert_eq!(
        k.ok(&["apply", "-f", &w]).trim(),
        "widget.example.com/w1 unchanged"
    );
    assert_eq!(
        k.ok(&["get", "wd", "w1", "-o", "jsonpath={.spec.size} {.spec.color}"]),
        "4 blue"
    );

    let d = k.file("d.yaml", deployment(2, "nginx:1.27").as_bytes());
    assert_eq!(k.ok(&["apply", "-f", &d]).trim(), "deployment.apps/web created");
    let d = k.file("d.yaml", deployment(3, "nginx:1.28").as_bytes());
    assert_eq!(
        k.ok(&["apply", "-f", &d]).trim(),
        "deployment.apps/web configured"
    );
    let image = k.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.replicas}",
    ]);
    assert_eq!(image, "nginx:1.28 3");
    // The strategic merge patch kept server defaults.
    let pull = k.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(pull, "IfNotPresent");
    let invalid = k.run_stdin(&["apply", "-f", "-"], &widget(0));
    assert!(!invalid.ok);
    assert!(
        invalid
            .stderr
            .contains("spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"),
        "{}",
        invalid.stderr
    );
    s.shutdown().await;
}

async fn server_side_apply_reports_conflicts_until_forced(server: Server) {
    let s = Target::start(server).await;
    let k = Kubectl::for_target(&s);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: a}\n";
    let f = k.file("cm.yaml", cm.as_bytes());
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", &f]).trim(),
        "configmap/settings serverside-applied"
    );
    let other = k.file("cm2.yaml", cm.replace("mode: a", "mode: b").as_bytes());
    let conflict = k.run(&["apply", "--server-side", "--field-manager=ops", "-f", &other]);
    assert!(!conflict.ok);
    assert!(
        conflict
            .stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\": .data.mode"),
        "{}",
        conflict.stderr
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert_eq!(
        k.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]),
        "b"
    );
    let managers = k.ok(&[
        "get",
        "cm",
        "settings",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("ops"), "{managers}");
    s.shutdown().await;
}

async fn get_prints_columns_yaml_and_watches(server: Server) {
    let s = Target::start(server).await;
    let k = Kubectl::for_target(&s);
    k.ok(&["apply", "-f", &k.file("crd.yaml", CRD.as_bytes())]);
    k.ok(&["apply", "-f", &k.file("w.yaml", widget(3).as_bytes())]);
    let table = k.ok(&["get", "widgets"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "READY", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("w1"));
    let yaml = k.ok(&["get", "wd", "w1", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Widget") && yaml.contains("color: blue") && yaml.contains("resourceVersion:")
    );
    let ns = k.ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-public"] {
        assert!(ns.contains(n));
    }

    // get -w prints the existing row, then the change.
    let mut watch = k.stream(&["get", "wd", "-w", "--request-timeout=4s"]);
    // The first row is printed once the list is done; the watch starts from it.
    watch.wait_for_line("w1", Duration::from_secs(10));
    k.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":7}}"#,
    ]);
    let out = watch.finish().stdout;
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("w1")).collect();
    assert!(rows.len() >= 2 && rows.last().unwrap().contains(" 7 "), "{out}");
    s.shutdown().await;
}

async fn delete_waits_for_finalizers_and_wait_sees_conditions(server: Server) {
    let s = Target::start(server).await;
    let k = Kubectl::for_target(&s);
    k.ok(&["apply", "-f", &k.file("crd.yaml", CRD.as_bytes())]);
    k.ok(&["apply", "-f", &k.file("w.yaml", widget(3).as_bytes())]);
    assert_eq!(
        k.ok(&["label", "wd", "w1", "team=blue"]).trim(),
        "widget.example.com/w1 labeled"
    );
    k.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
    assert_eq!(
        k.ok(&[
            "patch",
            "wd",
            "w1",
            "--type=merge",
            "--subresource=status",
            "-p",
            status
        ])
        .trim(),
        "widget.example.com/w1 patched"
    );
    assert_eq!(
        k.ok(&["wait", "--for=condition=Ready", "wd/w1", "--timeout=10s"])
            .trim(),
        "widget.example.com/w1 condition met"
    );
    assert_eq!(
        k.ok(&[
            "wait",
            "--for=jsonpath={.metadata.labels.team}=blue",
            "wd/w1",
            "--timeout=10s"
        ])
        .trim(),
        "widget.example.com/w1 condition met"
    );

    let blocked = k.run(&["delete", "wd", "w1", "--timeout=2s"]);
    assert!(!blocked.ok, "held by the finalizer: {blocked:?}");
    assert!(
        !k.ok(&["get", "wd", "w1", "-o", "jsonpath={.metadata.deletionTimestamp}"])
            .is_empty()
    );
    let mut deleting = k.stream(&["delete", "wd", "w1", "--timeout=20s"]);
    // kubectl prints `deleted` when the server has taken the delete, then waits for the
    // finalizer.
    deleting.wait_for_line("deleted", Duration::from_secs(10));
    k.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = deleting.finish();
    assert!(out.ok, "{}", out.stderr);
    // kubectl 1.36 adds " from default namespace".
    assert!(
        out.stdout.trim().starts_with("widget.example.com \"w1\" deleted"),
        "{}",
        out.stdout
    );
    let after = k.run(&["get", "wd", "w1"]);
    assert!(
        after.stderr.contains("NotFound") || after.stderr.contains("not found"),
        "{after:?}"
    );
    s.shutdown().await;
}

async fn scale_create_and_discovery_commands_work(server: Server) {
    let s = Target::start(server).await;
    let k = Kubectl::for_target(&s);
    k.ok(&[
        "apply",
        "-f",
        &k.file("d.yaml", deployment(1, "nginx:1.27").as_bytes()),
    ]);
    assert_eq!(
        k.ok(&["scale", "deployment", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    k.ok(&["wait", "--for=condition=Available", "deploy/web", "--timeout=10s"]);
    let ready = eventually(Duration::from_secs(30), async || {
        let r = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}"]);
        (r == "3").then_some(())
    })
    .await;
    assert!(ready.is_some(), "the simulated deployment becomes ready");
    let row = k.ok(&["get", "deploy", "web", "--no-headers"]);
    assert!(row.starts_with("web") && row.contains("3/3"), "{row}");

    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let file = k.file("plugin.wasm", &binary);
    assert_eq!(
        k.ok(&[
            "create",
            "configmap",
            "plugin",
            &format!("--from-file=plugin.wasm={file}")
        ])
        .trim(),
        "configmap/plugin created"
    );
    let stored: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "configmap", "plugin", "-o", "json"])).unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(stored["binaryData"]["plugin.wasm"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, binary, "binary data survives the protobuf body");
    assert_eq!(
        k.ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin"
        ])
        .trim(),
        "secret/creds created"
    );
    assert_eq!(
        k.ok(&["get", "secret", "creds", "-o", "jsonpath={.type}"]),
        "Opaque"
    );
    assert_eq!(
        k.ok(&["create", "namespace", "shop"]).trim(),
        "namespace/shop created"
    );
    assert_eq!(
        k.ok(&["get", "ns", "shop", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );

    let resources = k.ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "customresourcedefinitions",
        "leases",
    ] {
        assert!(resources.contains(line), "{line} missing from:\n{resources}");
    }
    // Built-in kinds' OpenAPI v3 schemas: both servers publish the real server's.
    let explain = k.ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        explain.contains("replicas") && explain.contains("<integer>"),
        "{explain}"
    );
    assert!(explain.contains("Number of desired pods"), "{explain}");
    // Access reviews, and RBAC names that are path segments rather than DNS names.
    assert_eq!(k.ok(&["auth", "can-i", "create", "deployments"]).trim(), "yes");
    assert_eq!(
        k.ok(&[
            "create",
            "clusterrole",
            "kro:controller:demo",
            "--verb=get",
            "--resource=configmaps"
        ])
        .trim(),
        "clusterrole.rbac.authorization.k8s.io/kro:controller:demo created"
    );
    assert_eq!(
        k.ok(&["create", "role", "a:b", "--verb=get", "--resource=pods"])
            .trim(),
        "role.rbac.authorization.k8s.io/a:b created"
    );
    // An Event recorded through events.k8s.io (as kube-rs records them) shows in describe.
    let uid = k.ok(&["get", "configmap", "plugin", "-o", "jsonpath={.metadata.uid}"]);
    let event = format!(
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: plugin.1}}\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: example.com/ctl\nreportingInstance: ctl-1\naction: Reconcile\nreason: Checked\nnote: looked at it\ntype: Normal\nregarding: {{apiVersion: v1, kind: ConfigMap, name: plugin, namespace: default, uid: {uid}}}\n"
    );
    let e = k.file("event.yaml", event.as_bytes());
    k.ok(&["create", "-f", &e]);
    let described = k.ok(&["describe", "configmap", "plugin"]);
    assert!(
        described.contains("Checked") && described.contains("looked at it"),
        "{described}"
    );
    s.shutdown().await;
}

/// `kubectl apply --validate` with an unknown field and a mistyped one on a built-in kind: both
/// servers refuse, warn or drop alike.
async fn validation_modes_treat_unknown_fields_alike(server: Server) {
    let s = Target::start(server).await;
    let k = Kubectl::for_target(&s);
    let deployment = |name: &str, replicas: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  bogus: 1\n  selector: {{matchLabels: {{app: w}}}}\n  template:\n    metadata: {{labels: {{app: w}}}}\n    spec: {{containers: [{{name: c, image: nginx}}]}}\n"
        )
    };
    let strict = k.file("strict.yaml", deployment("strict", "1").as_bytes());
    let refused = k.run(&["apply", "--validate=strict", "-f", &strict]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        refused.stderr
    );
    let warn = k.file("warn.yaml", deployment("warn", "1").as_bytes());
    let warned = k.run(&["apply", "--validate=warn", "-f", &warn]);
    assert!(warned.ok, "{}", warned.stderr);
    assert!(
        warned.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        warned.stderr
    );
    let ignore = k.file("ignore.yaml", deployment("ignore", "1").as_bytes());
    let ignored = k.run(&["apply", "--validate=ignore", "-f", &ignore]);
    assert!(
        ignored.ok && !ignored.stderr.contains("bogus"),
        "{}",
        ignored.stderr
    );
    for name in ["warn", "ignore"] {
        let spec = k.ok(&["get", "deployment", name, "-o", "jsonpath={.spec}"]);
        assert!(!spec.contains("bogus"), "pruned: {spec}");
    }
    let mistyped = k.file(
        "abc.yaml",
        deployment("abc", "\"abc\"")
            .replace("  bogus: 1\n", "")
            .as_bytes(),
    );
    let bad = k.run(&["apply", "-f", &mistyped]);
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains(
            "cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        ),
        "{}",
        bad.stderr
    );
    s.shutdown().await;
}

on_both_servers!(
    validation_modes_treat_unknown_fields_alike,
    apply_creates_and_updates_custom_resources_and_deployments,
    server_side_apply_reports_conflicts_until_forced,
    get_prints_columns_yaml_and_watches,
    delete_waits_for_finalizers_and_wait_sees_conditions,
    scale_create_and_discovery_commands_work,
);
