//! The real helm (v3.17, fetched by `scripts/fetch-helm`) installs, lists, upgrades and
//! uninstalls a small chart against the test API server, with its default Secret storage.

mod common;

use std::{path::Path, process::Command};

use common::{Kubectl, server};

fn helm() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-helm");
    let out = Command::new(script).output().expect("scripts/fetch-helm runs");
    assert!(
        out.status.success(),
        "fetching helm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const CHART: &[(&str, &str)] = &[
    ("Chart.yaml", "apiVersion: v2\nname: tiny\nversion: 0.1.0\n"),
    ("values.yaml", "replicas: 1\nmessage: hello\n"),
    (
        "templates/all.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  message: {{ .Values.message | quote }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-svc
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#,
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn helm_installs_upgrades_and_uninstalls_a_chart() {
    let helm = helm();
    let s = server().await;
    let k = Kubectl::new(&s);
    let chart = k.home.0.join("chart");
    for (path, content) in CHART {
        let p = chart.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let chart = chart.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let r = k.other(&helm, args);
        assert!(r.ok, "helm {} failed:\n{}{}", args.join(" "), r.stdout, r.stderr);
        r.stdout
    };
    let installed = run(&[
        "install",
        "tiny",
        &chart,
        "-n",
        "apps",
        "--create-namespace",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(
        s.get("v1", "ConfigMap", "apps", "tiny-config").unwrap()["data"]["message"],
        "hello"
    );
    let list = run(&["list", "-n", "apps"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("tiny") && l.contains("deployed")),
        "{list}"
    );

    let upgraded = run(&[
        "upgrade",
        "tiny",
        &chart,
        "-n",
        "apps",
        "--set",
        "replicas=2,message=bye",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    assert_eq!(
        s.get("v1", "ConfigMap", "apps", "tiny-config").unwrap()["data"]["message"],
        "bye"
    );
    assert_eq!(
        s.get("apps/v1", "Deployment", "apps", "tiny-web").unwrap()["spec"]["replicas"],
        2
    );
    let secrets = s.names("v1", "Secret", Some("apps"));
    assert_eq!(
        secrets,
        ["sh.helm.release.v1.tiny.v1", "sh.helm.release.v1.tiny.v2"]
    );

    run(&["uninstall", "tiny", "-n", "apps", "--wait", "--timeout", "60s"]);
    assert!(
        run(&["list", "-n", "apps"]).lines().count() <= 1,
        "no release left"
    );
    for (v, kind) in [
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "Secret"),
    ] {
        // kube-root-ca.crt and the default ServiceAccount come with every namespace.
        let left: Vec<String> = s
            .names(v, kind, Some("apps"))
            .into_iter()
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        assert!(left.is_empty(), "{kind}s left after uninstall: {left:?}");
    }
    let terminating: Vec<String> = s
        .names("v1", "Namespace", None)
        .into_iter()
        .filter(|n| s.get("v1", "Namespace", "", n).unwrap()["status"]["phase"] != "Active")
        .collect();
    assert!(
        terminating.is_empty(),
        "nothing stuck terminating: {terminating:?}"
    );
    s.shutdown().await;
}
