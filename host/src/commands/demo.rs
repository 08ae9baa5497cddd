//! `kroxide demo`: the whole system in one process with no cluster. It starts the in-memory
//! API server, installs the RGD CRD, runs the controller, applies two example graphs (one of
//! templates, one whose plugin loads from a ConfigMap), creates an instance of each, waits until
//! both are ACTIVE and prints what `kubectl get` shows. Then it keeps serving, with a
//! kubeconfig for kubectl, until Ctrl-C; `--once` exits after printing.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kroxide_apiserver::{ApiServer, Config};
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    discovery::oneshot,
};
use serde_json::{Value, json};

use super::{
    error::{DemoError, Error},
    outcome::Outcome,
};
use crate::{
    config::{ControllerArgs, ControllerConfig},
    controller,
    graph::crd::rgd_crd,
    yaml,
};

const WEB_SERVICE_RGD: &str = include_str!("../../../examples/web-service/rgd.yaml");
const WEB_SERVICE_INSTANCE: &str = include_str!("../../../examples/web-service/instance.yaml");
const WEBAPP_RGD: &str = include_str!("../../../plugins/webapp/example/rgd.yaml");
const WEBAPP_INSTANCE: &str = include_str!("../../../plugins/webapp/example/instance.yaml");
const WEBAPP_WASM: &[u8] = include_bytes!(concat!(env!("KROXIDE_PLUGIN_DIR"), "/webapp.wasm"));

const NAMESPACE: &str = "kroxide-system";

/// The controller's flags in the demo: the embedded server's kubeconfig, no endpoints.
fn controller_flags(kubeconfig: &std::path::Path) -> ControllerFlags {
    let args = [
        "kroxide".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--namespace={NAMESPACE}"),
        "--metrics-bind-address=0".into(),
        "--health-probe-bind-address=0".into(),
    ];
    <ControllerFlags as clap::Parser>::try_parse_from(args).expect("demo flags are valid")
}

/// `kroxide controller`'s flags, parsed as the command line would.
#[derive(Debug, clap::Parser)]
struct ControllerFlags {
    #[command(flatten)]
    args: ControllerArgs,
}

fn step(text: &str) {
    eprint!("  {text} ... ");
    let _ = std::io::stderr().flush();
}

fn done(started: Instant) {
    eprintln!("done ({:.1} s)", started.elapsed().as_secs_f64());
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| {
        Error::Demo(DemoError::Api {
            what,
            message: controller::describe(&source),
        })
    }
}

fn doc(text: &str) -> Value {
    yaml::parse_documents(text, std::path::Path::new("(embedded example)"))
        .ok()
        .and_then(|mut d| d.pop())
        .unwrap_or(Value::Null)
}

async fn apply(client: &Client, group: &str, version: &str, kind: &str, object: &Value) -> Result<(), Error> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (ar, caps) = oneshot::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
        .await
        .map_err(api_err(format!("finding {kind}")))?;
    let api: Api<DynamicObject> = match object.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &name,
        &PatchParams::apply("kroxide-demo").force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(api_err(format!("applying {kind} {name}")))?;
    Ok(())
}

async fn wait_for(
    client: &Client,
    (group, version, kind): (&str, &str, &str),
    namespace: Option<&str>,
    name: &str,
    want: &'static str,
    timeout: Duration,
) -> Result<Value, Error> {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        if let Ok((ar, _)) = oneshot::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await
        {
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            if let Ok(Some(o)) = api.get_opt(name).await {
                last = o.data.get("status").cloned().unwrap_or(Value::Null);
                if last.get("state").and_then(Value::as_str) == Some(want) {
                    return Ok(serde_json::to_value(&o).unwrap_or(Value::Null));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Demo(DemoError::Timeout {
                what: format!("{kind} {name}"),
                want,
                seconds: timeout.as_secs(),
                status: last.to_string(),
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lays out rows as kubectl does: columns padded to their widest cell, three spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// What `kubectl get` shows for `path`: the server's Table (its printer columns, AGE included),
/// header and rows, the columns kubectl shows by default (priority 0). With `prefix`, names are
/// written `prefix/name`, as kubectl does when it gets several kinds at once.
async fn get_table(client: &Client, path: &str, prefix: Option<&str>) -> Result<Vec<Vec<String>>, Error> {
    let request = http::Request::get(path)
        .header(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .body(Vec::new())
        .expect("a valid request");
    let text = client
        .request_text(request)
        .await
        .map_err(api_err(format!("GET {path}")))?;
    let table: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let columns = table["columnDefinitions"].as_array().cloned().unwrap_or_default();
    let shown: Vec<usize> = (0..columns.len())
        .filter(|&i| columns[i]["priority"].as_i64().unwrap_or(0) == 0)
        .collect();
    let mut rows = vec![
        shown
            .iter()
            .map(|&i| columns[i]["name"].as_str().unwrap_or_default().to_uppercase())
            .collect::<Vec<_>>(),
    ];
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells = row["cells"].as_array().cloned().unwrap_or_default();
        rows.push(
            shown
                .iter()
                .enumerate()
                .map(|(n, &i)| {
                    let cell = match cells.get(i) {
                        Some(Value::String(s)) => s.clone(),
                        None | Some(Value::Null) => "<none>".to_string(),
                        Some(other) => other.to_string(),
                    };
                    match (n, prefix) {
                        (0, Some(p)) => format!("{p}/{cell}"),
                        _ => cell,
                    }
                })
                .collect(),
        );
    }
    Ok(rows)
}

/// What the demo prints: `kubectl get` of the graphs, each instance and its children, as the
/// real kubectl prints them (the server's printer columns and ages).
async fn report(client: &Client, instances: &[(Value, &str)]) -> Result<String, Error> {
    let mut out = String::from("$ kubectl get resourcegraphdefinitions\n");
    out.push_str(&table(
        &get_table(client, "/apis/kro.run/v1alpha1/resourcegraphdefinitions", None).await?,
    ));
    for (instance, plural) in instances {
        let s = |p: &str| instance.pointer(p).and_then(Value::as_str).unwrap_or("");
        let (ns, name, api_version) = (s("/metadata/namespace"), s("/metadata/name"), s("/apiVersion"));
        out.push_str(&format!("\n$ kubectl get {plural} -n {ns}\n"));
        out.push_str(&table(
            &get_table(
                client,
                &format!("/apis/{api_version}/namespaces/{ns}/{plural}"),
                None,
            )
            .await?,
        ));
        out.push_str(&format!(
            "\n$ kubectl get deployments,services,ingresses,configmaps -n {ns} -l kro.run/instance-name={name}\n"
        ));
        let mut first = true;
        for (path, resource, prefix) in [
            ("/apis/apps/v1", "deployments", "deployment.apps"),
            ("/api/v1", "services", "service"),
            (
                "/apis/networking.k8s.io/v1",
                "ingresses",
                "ingress.networking.k8s.io",
            ),
            ("/api/v1", "configmaps", "configmap"),
        ] {
            let url =
                format!("{path}/namespaces/{ns}/{resource}?labelSelector=kro.run%2Finstance-name%3D{name}");
            let rows = get_table(client, &url, Some(prefix)).await?;
            if rows.len() > 1 {
                if !first {
                    out.push('\n');
                }
                first = false;
                out.push_str(&table(&rows));
            }
        }
        let mut fields = instance["status"].clone();
        if let Some(m) = fields.as_object_mut() {
            m.remove("conditions");
        }
        out.push_str(&format!("\nits status: {fields}\n"));
    }
    Ok(out)
}

/// Runs the demo. With `once`, returns after printing; otherwise serves until Ctrl-C.
///
/// # Errors
/// The API server cannot start, a request fails, or an example does not become ACTIVE.
pub(crate) fn run(once: bool, kubeconfig_out: &std::path::Path) -> Result<Outcome, Error> {
    super::controller::init_logging("warn", crate::config::LogFormat::Console);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(demo(once, kubeconfig_out))
}

async fn demo(once: bool, kubeconfig_out: &std::path::Path) -> Result<Outcome, Error> {
    let total = Instant::now();
    eprintln!("kroxide demo: an in-memory Kubernetes API server, the controller, and two example graphs\n");
    let t = Instant::now();
    step("starting the embedded API server");
    let server = ApiServer::start(Config {
        workload_delay: Duration::from_millis(800),
        ..Config::default()
    })
    .await
    .map_err(|e| Error::Demo(DemoError::Server(e)))?;
    let kubeconfig: PathBuf =
        std::path::absolute(kubeconfig_out).unwrap_or_else(|_| kubeconfig_out.to_path_buf());
    std::fs::write(&kubeconfig, server.kubeconfig()).map_err(|source| Error::Read {
        path: kubeconfig.clone(),
        source,
    })?;
    let client = Client::try_from(kube::Config::new(
        server.url().parse().expect("the server's URL parses"),
    ))
    .map_err(api_err("connecting"))?;
    done(t);

    let t = Instant::now();
    step("installing the ResourceGraphDefinition and GraphRevision CRDs and namespaces");
    for (what, crd) in [
        ("the RGD CRD", rgd_crd()),
        ("the GraphRevision CRD", crate::graph::crd::graph_revision_crd()),
    ] {
        let crd: CustomResourceDefinition = serde_json::from_value(crd).expect("a CRD");
        Api::<CustomResourceDefinition>::all(client.clone())
            .create(&PostParams::default(), &crd)
            .await
            .map_err(api_err(format!("creating {what}")))?;
    }
    for ns in [NAMESPACE, "shop"] {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("valid");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &n)
            .await
            .map_err(api_err(format!("creating namespace {ns}")))?;
    }
    done(t);

    let t = Instant::now();
    step("starting the controller");
    let flags = controller_flags(&kubeconfig);
    let config = ControllerConfig::from_args(&flags.args)?;
    let metrics = std::sync::Arc::default();
    let controller_client = controller::client(&config, &metrics).await?;
    let (ctx, notices) = controller::context(config, controller_client, metrics).await?;
    let running = controller::start(ctx, notices).await;
    done(t);

    let t = Instant::now();
    step("packing the webapp plugin into ConfigMap kroxide-system/webapp-plugin");
    let packed = crate::plugin::source::gzip(WEBAPP_WASM);
    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "webapp-plugin", "namespace": NAMESPACE},
        "binaryData": {"plugin.wasm": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &packed)}}))
    .expect("valid");
    Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &cm)
        .await
        .map_err(api_err("creating the plugin ConfigMap"))?;
    eprintln!(
        "{} bytes, {} gzipped; done ({:.1} s)",
        WEBAPP_WASM.len(),
        packed.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    step("applying the web-service (templates) and webapp (plugin) graphs");
    for rgd in [WEB_SERVICE_RGD, WEBAPP_RGD] {
        apply(
            &client,
            "kro.run",
            "v1alpha1",
            "ResourceGraphDefinition",
            &doc(rgd),
        )
        .await?;
    }
    for (rgd, kind) in [
        ("webservices.examples.kroxide.dev", "web-service"),
        ("webapps.kroxide.dev", "webapp"),
    ] {
        wait_for(
            &client,
            ("kro.run", "v1alpha1", "ResourceGraphDefinition"),
            None,
            rgd,
            "Active",
            Duration::from_secs(60),
        )
        .await
        .inspect_err(|_| eprintln!("the {kind} graph is not Active"))?;
    }
    done(t);

    let t = Instant::now();
    step("creating a WebService and a WebApp, waiting until both are ACTIVE");
    let web = doc(WEB_SERVICE_INSTANCE);
    let app = doc(WEBAPP_INSTANCE);
    let mut live = Vec::new();
    for instance in [&web, &app] {
        let s = |p: &str| {
            instance
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let api_version = s("/apiVersion");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let kind = s("/kind");
        apply(&client, group, version, &kind, instance).await?;
        let ns = instance.pointer("/metadata/namespace").and_then(Value::as_str);
        live.push(
            wait_for(
                &client,
                (group, version, &kind),
                ns,
                &s("/metadata/name"),
                "ACTIVE",
                Duration::from_secs(120),
            )
            .await?,
        );
    }
    let (web_live, app_live) = (live.remove(0), live.remove(0));
    done(t);
    eprintln!(
        "\nevery example instance is ACTIVE after {:.1} s\n",
        total.elapsed().as_secs_f64()
    );

    let mut out = report(&client, &[(web_live, "webservices"), (app_live, "webapps")]).await?;
    out.push_str(
        "\nThe controller runs in this process and logs warnings to stderr; RUST_LOG=kroxide=info shows every reconcile.\n",
    );
    if once {
        running.stop(Duration::from_secs(5)).await;
        server.shutdown().await;
        let _ = std::fs::remove_file(&kubeconfig);
        return Ok(Outcome {
            stdout: out,
            stderr: String::new(),
            code: 0,
        });
    }
    out.push_str(&format!(
        "\nThe API server keeps running at {} until Ctrl-C. In another terminal:\n  export KUBECONFIG={}\n  kubectl get rgd\n  kubectl get webservices,webapps -A\n",
        server.url(),
        kubeconfig.display()
    ));
    print!("{out}");
    let _ = std::io::stdout().flush();
    super::controller::shutdown_signal().await;
    running.stop(Duration::from_secs(10)).await;
    server.shutdown().await;
    let _ = std::fs::remove_file(&kubeconfig);
    Ok(Outcome {
        stdout: String::new(),
        stderr: String::new(),
        code: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demos_controller_flags_parse_into_a_valid_configuration() {
        let flags = controller_flags(std::path::Path::new("/tmp/kubeconfig"));
        let config = ControllerConfig::from_args(&flags.args).unwrap();
        assert_eq!(config.namespace, NAMESPACE);
        assert!(config.metrics_addr.is_none() && config.health_addr.is_none());
    }
}
