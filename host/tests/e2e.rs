//! Every Chainsaw scenario under `tests/e2e/scenarios` (plain Kubernetes and kroxide), run by the
//! real Chainsaw with the real kubectl against a `kroxide controller` process:
//! - on the embedded API server (tests/apiserver), the controller with the server's kubeconfig;
//! - on the real control plane (scripts/cluster), once per RBAC mode of the chart: `helm install`
//!   of charts/kroxide creates the ServiceAccount and roles, and the controller runs as a process
//!   with a token of that ServiceAccount and the arguments of the chart's Deployment (whose own
//!   Pod KWOK runs without our binary). A rule the chart lacks is a 403 from real RBAC: every
//!   request the controller made is read back from the audit log and none may be forbidden.

mod support;

use std::{path::Path, process::Command, time::Duration};

use kroxide_cluster::Cluster;
use support::{
    Scratch,
    chainsaw::{self, ControllerProcess},
    eventually_blocking, helm, repo,
};

/// Test-speed overrides appended to the controller's arguments: no listening sockets (tests run
/// in parallel), retries capped at 5 s (scenarios wait 30 s), debug logs for failures.
const OVERRIDES: [&str; 4] = [
    "--metrics-bind-address=0",
    "--health-probe-bind-address=0",
    "--dynamic-controller-rate-limiter-max-delay=5s",
    "--log-level=info,kroxide=debug",
];

fn plugin_dir() -> &'static str {
    env!("KROXIDE_PLUGIN_DIR")
}

fn assert_passed(server: &str, report: &chainsaw::Report, controller: &ControllerProcess) {
    println!("{server}:\n{}", report.summary());
    let expected = chainsaw::scenarios(&repo().join("tests/e2e/scenarios")).len();
    assert!(expected >= 10, "scenarios found: {expected}");
    assert!(
        report.success && report.failed().is_empty() && report.outcomes.len() == expected,
        "{server}: {} of {expected} scenarios ran, failed: {:?}\n{}\n--- controller log (last 80 lines)\n{}",
        report.outcomes.len(),
        report.failed().iter().map(|o| &o.name).collect::<Vec<_>>(),
        report.output,
        controller.tail(80)
    );
}

#[test]
fn every_scenario_passes_on_the_embedded_api_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(kroxide_apiserver::ApiServer::start(
            kroxide_apiserver::Config::default(),
        ))
        .unwrap();
    let scratch = Scratch::new("e2e-embedded");
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    // The machine's kubectl: a dispatcher running the client that matches the server (1.32).
    let kubectl = |args: &[&str]| {
        run_ok(
            Command::new("kubectl").env("HOME", scratch.path()),
            &kubeconfig,
            args,
        )
    };
    setup(&kubectl);
    let mut args: Vec<String> = [
        "controller",
        "--namespace=kroxide-system",
        "--plugin-namespaces=kroxide-plugins",
        "--feature-gates=CELOmitFunction=true",
    ]
    .map(String::from)
    .to_vec();
    args.extend(OVERRIDES.map(String::from));
    let mut controller = ControllerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kroxide")),
        &args,
        &kubeconfig,
        scratch.path().join("controller.log"),
    );
    let report = chainsaw::run(
        &kubeconfig,
        &repo().join("tests/e2e/scenarios"),
        None,
        scratch.path(),
        &[("PLUGIN_DIR", plugin_dir())],
    );
    assert!(
        controller.running(),
        "the controller exited:\n{}",
        controller.tail(40)
    );
    assert_passed("embedded API server", &report, &controller);
    rt.block_on(server.shutdown());
}

#[test]
fn every_scenario_passes_on_the_real_control_plane_under_the_charts_unrestricted_rbac() {
    on_the_real_control_plane("unrestricted", &[r#"rbac.mode="unrestricted""#]);
}

#[test]
fn every_scenario_passes_on_the_real_control_plane_under_the_charts_aggregated_rbac() {
    // The kinds the scenarios' graphs manage, granted as the chart's aggregation mode documents.
    let kinds = r#"rbac.aggregation.rules=[
        {"apiGroups": [""], "resources": ["configmaps", "services", "namespaces", "resourcequotas", "limitranges"]},
        {"apiGroups": ["apps"], "resources": ["deployments"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"]},
        {"apiGroups": ["e2e.kroxide.dev", "examples.kroxide.dev"], "resources": ["*"]}]"#;
    on_the_real_control_plane("aggregation", &[r#"rbac.mode="aggregation""#, kinds]);
}

fn run_ok(cmd: &mut Command, kubeconfig: &Path, args: &[&str]) -> String {
    let out = cmd
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?} {args:?}: {}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a chart install provides besides the RGD CRD: the namespaces the controller uses.
fn setup(kubectl: &dyn Fn(&[&str]) -> String) {
    for file in [
        "charts/kroxide/crds/resourcegraphdefinitions.kro.run.yaml",
        "charts/kroxide/crds/graphrevisions.internal.kro.run.yaml",
        "tests/e2e/setup/namespaces.yaml",
    ] {
        kubectl(&["apply", "-f", &repo().join(file).display().to_string()]);
    }
}

fn on_the_real_control_plane(mode: &str, values: &[&str]) {
    let cluster = Cluster::start().unwrap();
    let scratch = Scratch::new(&format!("e2e-real-{mode}"));
    let admin = cluster.kubeconfig().to_path_buf();
    let kubectl = |args: &[&str]| run_ok(&mut Command::new(cluster.kubectl()), &admin, args);

    // The chart, as a user installs it (the RGD CRD comes from its crds/ directory).
    let mut install = Command::new(helm());
    install
        .args([
            "install",
            "kroxide",
            "charts/kroxide",
            "-n",
            "kroxide-system",
            "--create-namespace",
        ])
        .args(["--wait", "--timeout", "120s"])
        .args(["--set-json", r#"config.pluginNamespaces=["kroxide-plugins"]"#])
        // The scenarios use omit(), behind kro's feature gate: set as a kro user sets it.
        .args(["--set-json", r#"config.featureGates={"CELOmitFunction":true}"#])
        .args(values.iter().flat_map(|v| ["--set-json", v]))
        .env("HOME", scratch.path())
        .current_dir(repo());
    run_ok(&mut install, &admin, &[]);
    kubectl(&[
        "apply",
        "-f",
        &repo()
            .join("tests/e2e/setup/namespaces.yaml")
            .display()
            .to_string(),
    ]);

    // The controller as the chart's ServiceAccount, with the chart's arguments.
    let token = kubectl(&[
        "create",
        "token",
        "kroxide",
        "-n",
        "kroxide-system",
        "--duration=2h",
    ]);
    let sa_kubeconfig = scratch.path().join("kroxide.kubeconfig");
    std::fs::copy(&admin, &sa_kubeconfig).unwrap();
    let sa = |args: &[&str]| run_ok(&mut Command::new(cluster.kubectl()), &sa_kubeconfig, args);
    sa(&[
        "config",
        "set-credentials",
        "kroxide",
        &format!("--token={}", token.trim()),
    ]);
    sa(&["config", "set-context", "--current", "--user=kroxide"]);
    let user = "system:serviceaccount:kroxide-system:kroxide";
    assert_eq!(
        sa(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]),
        user
    );
    let chart_args: Vec<String> = serde_json::from_str(&kubectl(&[
        "get",
        "deployment",
        "kroxide",
        "-n",
        "kroxide-system",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]))
    .unwrap();
    let mut args: Vec<String> = chart_args
        .into_iter()
        .map(|a| a.replace("$(POD_NAMESPACE)", "kroxide-system"))
        .filter(|a| {
            !OVERRIDES
                .iter()
                .any(|o| a.starts_with(o.split('=').next().unwrap_or_default()))
        })
        .collect();
    args.extend(OVERRIDES.map(String::from));
    println!("controller arguments (from the chart's Deployment): {args:?}");
    cluster.reset_requests().unwrap();
    let mut controller = ControllerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kroxide")),
        &args,
        &sa_kubeconfig,
        scratch.path().join("controller.log"),
    );
    // With leader election on, it serves once it holds the chart's Lease.
    eventually_blocking(
        "the controller to hold the leader Lease",
        Duration::from_secs(30),
        || {
            let holder = kubectl(&[
                "get",
                "lease",
                "-n",
                "kroxide-system",
                "-o",
                "jsonpath={.items[*].spec.holderIdentity}",
            ]);
            holder.contains("kroxide-e2e").then_some(())
        },
    );

    let report = chainsaw::run(
        &admin,
        &repo().join("tests/e2e/scenarios"),
        Some(cluster.bin_dir()),
        scratch.path(),
        &[("PLUGIN_DIR", plugin_dir())],
    );
    assert!(
        controller.running(),
        "the controller exited:\n{}",
        controller.tail(40)
    );
    assert_passed(&format!("real control plane, RBAC {mode}"), &report, &controller);

    cluster.settle(Duration::from_millis(500), Duration::from_secs(5));
    let requests: Vec<_> = cluster
        .requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.user == user)
        .collect();
    let forbidden: Vec<String> = requests
        .iter()
        .filter(|r| r.code == 403)
        .map(|r| {
            format!(
                "{} {}/{} {}/{}",
                r.verb,
                r.group,
                r.resource_path(),
                r.namespace,
                r.name
            )
        })
        .collect();
    println!(
        "RBAC {mode}: {} requests by {user}, {} forbidden",
        requests.len(),
        forbidden.len()
    );
    assert!(
        requests.len() > 100,
        "the controller made requests: {}",
        requests.len()
    );
    assert!(
        forbidden.is_empty(),
        "in {mode} mode the chart does not allow:\n{}",
        forbidden.join("\n")
    );
    drop(controller);
    cluster.stop().unwrap();
}
