//! Shared by the integration tests: the repository root, scratch directories, polling with a
//! deadline, the real helm, and a test API server prepared for the controller.

// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod chainsaw;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use clap::Parser;
use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kroxide::{
    cli::{Cli, Command as Sub},
    config::ControllerConfig,
    graph::crd::rgd_crd,
};
use kroxide_apiserver::{ApiServer, Config};
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::json;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>`.
    pub fn new(prefix: &str) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` every 25 ms until it returns `Some`; panics naming `what` after `timeout`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` every 100 ms until it returns `Some`; panics naming `what` after `timeout`.
pub fn eventually_blocking<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The helm binary, fetched once by `scripts/fetch-helm`.
pub fn helm() -> String {
    let out = Command::new(repo().join("scripts/fetch-helm"))
        .output()
        .expect("scripts/fetch-helm runs");
    assert!(
        out.status.success(),
        "fetching helm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test API server with the namespaces `kroxide-system` and `apps`, a client, and a
/// kubeconfig file for controller processes.
pub struct Env {
    pub server: ApiServer,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub scratch: Scratch,
}

impl Env {
    /// Starts the server (simulated workloads become available after `workload_delay`) and,
    /// with `with_crd`, installs the ResourceGraphDefinition CRD.
    pub async fn start(prefix: &str, workload_delay: Duration, with_crd: bool) -> Self {
        let server = ApiServer::start(Config {
            workload_delay,
            ..Config::default()
        })
        .await
        .unwrap();
        let scratch = Scratch::new(prefix);
        let kubeconfig = scratch.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
        let client = Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        if with_crd {
            install_crd(&client).await;
        }
        let nss: Api<Namespace> = Api::all(client.clone());
        for ns in ["kroxide-system", "apps"] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        }
        Self {
            server,
            client,
            kubeconfig,
            scratch,
        }
    }

    /// `kroxide controller --kubeconfig=… --namespace=kroxide-system <extra>`, validated.
    pub fn controller_config(&self, extra: &[&str]) -> ControllerConfig {
        let mut argv = vec![
            "kroxide".to_string(),
            "controller".into(),
            format!("--kubeconfig={}", self.kubeconfig.display()),
            "--namespace=kroxide-system".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let Sub::Controller(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        ControllerConfig::from_args(&args).unwrap()
    }
}

/// Installs the ResourceGraphDefinition CRD.
pub async fn install_crd(client: &Client) {
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(rgd_crd()).unwrap(),
        )
        .await
        .unwrap();
}

/// ResourceGraphDefinitions, dynamically typed.
pub fn rgd_api(client: &Client) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kro.run", "v1alpha1", "ResourceGraphDefinition"),
        "resourcegraphdefinitions",
    );
    Api::all_with(client.clone(), &ar)
}
