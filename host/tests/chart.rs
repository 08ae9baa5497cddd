//! The Helm chart with the real helm (v3.17, fetched by `scripts/fetch-helm`): lint and
//! template in both RBAC modes, a server-side dry run of the rendered manifests against the test
//! API server, and install / list / upgrade / uninstall.

mod support;

use std::process::{Command, Output, Stdio};

use kroxide_apiserver::{ApiServer, Config};
use support::{Scratch, helm, repo};

struct Cluster {
    server: ApiServer,
    home: Scratch,
}

impl Cluster {
    async fn start() -> Self {
        let server = ApiServer::start(Config::default()).await.unwrap();
        let home = Scratch::new("kroxide-chart");
        std::fs::write(home.path().join("kubeconfig"), server.kubeconfig()).unwrap();
        Self { server, home }
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(program)
            .args(args)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", self.home.path().join("kubeconfig"))
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = stdin.unwrap_or("").to_string();
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        child.wait_with_output().unwrap()
    }

    fn ok(&self, program: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(program, args, stdin);
        assert!(
            out.status.success(),
            "{program} {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn the_chart_lints_strictly_and_renders_in_both_rbac_modes() {
    let helm = helm();
    let chart = repo().join("charts/kroxide");
    let chart = chart.to_str().unwrap();
    for mode in ["unrestricted", "aggregation"] {
        let set = format!("rbac.mode={mode}");
        let lint = Command::new(&helm)
            .args(["lint", "--strict", chart, "--set", &set])
            .output()
            .unwrap();
        assert!(lint.status.success(), "{}", String::from_utf8_lossy(&lint.stdout));
        let out = Command::new(&helm)
            .args([
                "template",
                "kroxide",
                chart,
                "-n",
                "kroxide-system",
                "--set",
                &set,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("kind: Deployment") && text.contains("--leader-elect"),
            "{text}"
        );
        if mode == "aggregation" {
            assert!(
                text.contains("aggregationRule:")
                    && text.contains("rbac.kroxide.dev/aggregate-to-controller")
            );
        }
    }
    // The values schema refuses a typo'd mode.
    let bad = Command::new(&helm)
        .args(["template", "x", chart, "--set", "rbac.mode=open"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("rbac.mode"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_manifests_pass_a_server_side_dry_run() {
    let helm = helm();
    let c = Cluster::start().await;
    c.ok("kubectl", &["create", "namespace", "kroxide-system"], None);
    for mode in ["unrestricted", "aggregation"] {
        let set = format!("rbac.mode={mode}");
        let rendered = c.ok(
            &helm,
            &[
                "template",
                "kroxide",
                "charts/kroxide",
                "-n",
                "kroxide-system",
                "--include-crds",
                "--set",
                &set,
            ],
            None,
        );
        let out = c.ok(
            "kubectl",
            &["apply", "--dry-run=server", "-n", "kroxide-system", "-f", "-"],
            Some(&rendered),
        );
        assert!(
            out.contains("deployment.apps/kroxide created (server dry run)"),
            "{out}"
        );
        assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/resourcegraphdefinitions.kro.run created (server dry run)"), "{out}");
    }
    assert!(
        c.server
            .names("apps/v1", "Deployment", Some("kroxide-system"))
            .is_empty(),
        "a dry run stores nothing"
    );
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_kroxide() {
    let helm = helm();
    let c = Cluster::start().await;
    let installed = c.ok(
        &helm,
        &[
            "install",
            "kroxide",
            "charts/kroxide",
            "-n",
            "kroxide-system",
            "--create-namespace",
        ],
        None,
    );
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert!(
        installed.contains("Plugins load from ConfigMaps in: kroxide-system"),
        "NOTES are shown: {installed}"
    );
    for (api_version, kind, ns, name) in [
        (
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "",
            "resourcegraphdefinitions.kro.run",
        ),
        ("apps/v1", "Deployment", "kroxide-system", "kroxide"),
        ("v1", "ServiceAccount", "kroxide-system", "kroxide"),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "",
            "kroxide",
        ),
        ("v1", "Service", "kroxide-system", "kroxide-metrics"),
    ] {
        assert!(
            c.server.get(api_version, kind, ns, name).is_some(),
            "{kind} {ns}/{name} not installed"
        );
    }
    let list = c.ok(&helm, &["list", "-n", "kroxide-system"], None);
    assert!(
        list.lines()
            .any(|l| l.starts_with("kroxide") && l.contains("deployed")),
        "{list}"
    );

    c.ok(
        &helm,
        &[
            "upgrade",
            "kroxide",
            "charts/kroxide",
            "-n",
            "kroxide-system",
            "--set",
            "config.workers=8",
            "--set",
            "rbac.mode=aggregation",
        ],
        None,
    );
    let d = c
        .server
        .get("apps/v1", "Deployment", "kroxide-system", "kroxide")
        .unwrap();
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        args.iter()
            .any(|a| a == "--dynamic-controller-concurrent-reconciles=8"),
        "{args:?}"
    );
    assert!(
        c.server
            .get("rbac.authorization.k8s.io/v1", "ClusterRole", "", "kroxide-core")
            .is_some()
    );

    c.ok(
        &helm,
        &[
            "uninstall",
            "kroxide",
            "-n",
            "kroxide-system",
            "--wait",
            "--timeout",
            "60s",
        ],
        None,
    );
    assert!(
        c.server
            .get("apps/v1", "Deployment", "kroxide-system", "kroxide")
            .is_none()
    );
    assert!(
        c.server
            .names("rbac.authorization.k8s.io/v1", "ClusterRole", None)
            .iter()
            .all(|n| !n.starts_with("kroxide"))
    );
    assert!(
        c.server.names("v1", "Secret", Some("kroxide-system")).is_empty(),
        "release records gone"
    );
    // Helm leaves CRDs it installed from crds/ in place (documented in docs/operations.md).
    assert!(
        c.server
            .get(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "",
                "resourcegraphdefinitions.kro.run"
            )
            .is_some()
    );
    for ns in c.server.names("v1", "Namespace", None) {
        let phase = c.server.get("v1", "Namespace", "", &ns).unwrap()["status"]["phase"].clone();
        assert_eq!(phase, "Active", "{ns} stuck");
    }
    c.server.shutdown().await;
}
