//! `scripts/cluster` as a user meets it: after `up`, kubectl of the same release as the server, a
//! Ready KWOK node, a Deployment that becomes Available through the real controllers and
//! scheduler, RBAC names that are path segments; after `down`, no process and no port left.

use std::{net::TcpStream, path::Path, process::Command, time::Duration};

use kroxide_cluster::Cluster;

fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(cluster.kubectl())
        .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn up_serves_a_real_cluster_and_down_leaves_nothing_behind() {
    let cluster = Cluster::start().unwrap();

    let version = kubectl(&cluster, &["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    let client = version["clientVersion"]["gitVersion"].as_str().unwrap();
    let server = version["serverVersion"]["gitVersion"].as_str().unwrap();
    println!("kubectl {client}, server {server}");
    assert_eq!(client, server);
    assert!(server.starts_with("v1.36."), "{server}");

    let nodes = kubectl(&cluster, &["get", "nodes"]);
    println!("{nodes}");
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("kwok-node-0") && l.contains(" Ready ")),
        "{nodes}"
    );

    kubectl(
        &cluster,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
            "-n",
            "default",
        ],
    );
    kubectl(
        &cluster,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "-n",
            "default",
            "--timeout=60s",
        ],
    );
    let pods = kubectl(&cluster, &["get", "pods", "-n", "default"]);
    assert_eq!(pods.matches(" Running ").count(), 2, "{pods}");

    // RBAC object names are path segments, not DNS subdomains.
    kubectl(
        &cluster,
        &[
            "create",
            "clusterrole",
            "kro:controller:demo",
            "--verb=get",
            "--resource=pods",
        ],
    );
    kubectl(
        &cluster,
        &[
            "create",
            "role",
            "a:b",
            "--verb=get",
            "--resource=pods",
            "-n",
            "default",
        ],
    );
    assert_eq!(
        kubectl(&cluster, &["auth", "can-i", "create", "deployments"]).trim(),
        "yes"
    );

    let processes = cluster.processes();
    let ports = cluster.ports();
    assert_eq!(processes.len(), 5, "{processes:?}");
    assert_eq!(ports.len(), 6, "{ports:?}");
    let dir = cluster.dir().to_path_buf();
    cluster.stop().unwrap();

    for (name, pid) in &processes {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")),
            "{name} (pid {pid}) still runs"
        );
    }
    for (name, port) in &ports {
        assert!(
            TcpStream::connect_timeout(&([127, 0, 0, 1], *port).into(), Duration::from_millis(200)).is_err(),
            "{name} still listens on 127.0.0.1:{port}"
        );
    }
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// Regression: a start that failed part-way (seen: kube-controller-manager's port taken
/// between its choice and its bind) left etcd, kube-apiserver, kube-scheduler and KWOK running
/// until someone killed them by hand.
#[test]
fn a_start_that_fails_part_way_leaves_no_process_behind() {
    let dir = std::env::temp_dir().join(format!("kroxide-cluster-failing-{}", std::process::id()));
    let out = Command::new(kroxide_cluster::repo().join("scripts/cluster"))
        .args(["up", "--dir", &dir.display().to_string()])
        .env("KROXIDE_CLUSTER_FAIL_AFTER", "kube-apiserver")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "up must fail: {stderr}");
    assert!(stderr.contains("up failed; stopping what it started"), "{stderr}");
    // No process still names the cluster's directory (etcd's --data-dir, the others' configs).
    let needle = dir.display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle) && !c.contains("scripts/cluster"))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:#?}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}
