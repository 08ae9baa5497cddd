//! The Helm chart with the real helm (v3.17, fetched by `scripts/fetch-helm`): lint and
//! template in both RBAC modes, and, on the embedded API server and on the real control plane,
//! a server-side dry run of the rendered manifests and install / list / upgrade / uninstall.

mod support;

use std::{process::Command, time::Duration};

use support::{Env, Server, helm, repo};

async fn start(server: Server) -> Env {
    Env::start_on(server, "kroxide-chart", Duration::from_millis(500), false).await
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

async fn rendered_manifests_pass_a_server_side_dry_run(server: Server) {
    let helm = helm();
    let c = start(server).await;
    let kubectl = c.kubectl();
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
            &kubectl,
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
        c.names("apps/v1", "Deployment", Some("kroxide-system"))
            .await
            .is_empty(),
        "a dry run stores nothing"
    );
    c.shutdown().await;
}

async fn helm_installs_upgrades_and_uninstalls_kroxide(server: Server) {
    let helm = helm();
    let c = start(server).await;
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
            c.get(api_version, kind, ns, name).await.is_some(),
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
        .get("apps/v1", "Deployment", "kroxide-system", "kroxide")
        .await
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
        c.get("rbac.authorization.k8s.io/v1", "ClusterRole", "", "kroxide-core")
            .await
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
        c.get("apps/v1", "Deployment", "kroxide-system", "kroxide")
            .await
            .is_none()
    );
    assert!(
        c.names("rbac.authorization.k8s.io/v1", "ClusterRole", None)
            .await
            .iter()
            .all(|n| !n.starts_with("kroxide"))
    );
    assert!(
        c.names("v1", "Secret", Some("kroxide-system")).await.is_empty(),
        "release records gone"
    );
    // Helm leaves CRDs it installed from crds/ in place (documented in docs/operations.md).
    assert!(
        c.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "",
            "resourcegraphdefinitions.kro.run"
        )
        .await
        .is_some()
    );
    for ns in c.names("v1", "Namespace", None).await {
        let phase = c.get("v1", "Namespace", "", &ns).await.unwrap()["status"]["phase"].clone();
        assert_eq!(phase, "Active", "{ns} stuck");
    }
    c.shutdown().await;
}

/// A values file written for kro's chart (its defaults, in `charts/kroxide/ci/kro-values.yaml`)
/// lints strictly, installs, and configures the controller as it says: kro's `deployment.*` and
/// `config.*` keys reach the Deployment, and every argument the chart then passes is one
/// `kroxide controller` accepts.
async fn a_values_file_written_for_kros_chart_installs_and_configures_the_controller(server: Server) {
    let helm = helm();
    let values = "charts/kroxide/ci/kro-values.yaml";
    let lint = Command::new(&helm)
        .current_dir(repo())
        .args(["lint", "--strict", "charts/kroxide", "-f", values])
        .output()
        .unwrap();
    assert!(lint.status.success(), "{}", String::from_utf8_lossy(&lint.stdout));
    let c = start(server).await;
    let installed = c.ok(
        &helm,
        &[
            "install",
            "kroxide",
            "charts/kroxide",
            "-n",
            "kroxide-system",
            "--create-namespace",
            "-f",
            values,
        ],
        None,
    );
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let d = c
        .get("apps/v1", "Deployment", "kroxide-system", "kroxide")
        .await
        .unwrap();
    let pod = &d["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // The server stores the quantity in canonical form.
    assert_eq!(
        container["resources"]["limits"]["memory"], "1Gi",
        "deployment.resources"
    );
    assert_eq!(
        container["securityContext"]["runAsUser"], 1000,
        "deployment.securityContext"
    );
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    for want in [
        "--dynamic-controller-concurrent-reconciles=1",
        "--instance-requeue-interval=3s",
        "--log-format=console",
        "--rgd-max-graph-revisions=5",
        "--leader-elect",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} missing from {args:?}");
    }
    // The controller accepts them all (the Pod's own namespace stands in for $(POD_NAMESPACE)).
    let flags: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "controller" && !a.starts_with("--namespace="))
        .collect();
    let config = c.controller_config(&flags);
    assert!(format!("{config:?}").contains("kroxide-system"));
    c.ok(&helm, &["uninstall", "kroxide", "-n", "kroxide-system"], None);
    c.shutdown().await;
}

on_both_servers!(
    rendered_manifests_pass_a_server_side_dry_run,
    helm_installs_upgrades_and_uninstalls_kroxide,
    a_values_file_written_for_kros_chart_installs_and_configures_the_controller,
);
