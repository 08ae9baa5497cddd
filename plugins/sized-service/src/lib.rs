//! A service sized from a table: `size: small|medium|large` and a replica count select CPU and
//! memory requests and limits, a PodDisruptionBudget appears only when replicas > 1, a
//! HorizontalPodAutoscaler gets bounds computed from the size, and a ConfigMap holds a routing
//! file generated from `spec.routes`, whose hash rolls the pods when the routes change.
//!
//! Each of these is awkward in CEL templates: a lookup table with overrides, arithmetic on
//! quantities, a resource that exists only under a numeric condition, and a text file built from
//! a validated, sorted list.

use std::collections::BTreeMap;

use kroxide_plugin::{Condition, Context, Desired, Error, Plugin, Result, Status};
use serde::Deserialize;
use serde_json::{Value, json};

/// Resources of one size.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Size {
    /// CPU request in millicores.
    pub cpu_millis: u32,
    /// Memory request in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u32,
    /// Upper bound for the autoscaler.
    pub max_replicas: u32,
    /// Target average CPU utilisation for the autoscaler, in percent.
    pub target_cpu_percent: u32,
}

/// `spec.plugin.config` of the RGD: overrides of the size table and the limit factor.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Sizes by name; entries here replace the built-in ones and may add new sizes.
    pub sizes: BTreeMap<String, Size>,
    /// CPU limit = request × this factor (memory limit = request).
    pub cpu_limit_factor: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sizes: BTreeMap::new(),
            cpu_limit_factor: 2,
        }
    }
}

fn builtin_size(name: &str) -> Option<Size> {
    let (cpu_millis, memory_mib, max_replicas, target_cpu_percent) = match name {
        "small" => (100, 128, 3, 80),
        "medium" => (500, 512, 6, 70),
        "large" => (2000, 2048, 10, 60),
        _ => return None,
    };
    Some(Size {
        cpu_millis,
        memory_mib,
        max_replicas,
        target_cpu_percent,
    })
}

impl Config {
    fn size(&self, name: &str) -> Option<Size> {
        self.sizes.get(name).copied().or_else(|| builtin_size(name))
    }

    fn size_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["small", "medium", "large"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend(self.sizes.keys().filter(|k| builtin_size(k).is_none()).cloned());
        names
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub image: String,
    #[serde(default = "default_size")]
    pub size: String,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub autoscaling: Autoscaling,
}

fn default_size() -> String {
    "small".to_string()
}
fn one() -> u32 {
    1
}
fn default_port() -> u16 {
    8080
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub path: String,
    pub upstream: String,
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Autoscaling {
    pub enabled: bool,
    /// Overrides the size's upper bound (never below `replicas`).
    pub max_replicas: Option<u32>,
}

impl Default for Autoscaling {
    fn default() -> Self {
        Self {
            enabled: true,
            max_replicas: None,
        }
    }
}

/// CPU as Kubernetes prints it: whole cores as `"2"`, otherwise millicores (`"250m"`).
fn cpu_quantity(millis: u32) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Memory as Kubernetes prints it: whole GiB as `"2Gi"`, otherwise MiB.
fn memory_quantity(mib: u32) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// Pods that must stay up during voluntary disruptions: all but a quarter (at least one may go).
fn min_available(replicas: u32) -> u32 {
    replicas - (replicas / 4).max(1)
}

/// The autoscaler's upper bound: the size's bound or the override, never below `replicas`.
fn max_replicas(replicas: u32, size: &Size, override_max: Option<u32>) -> u32 {
    override_max.unwrap_or(size.max_replicas).max(replicas)
}

/// FNV-1a, 64 bits: stable across builds and machines, enough to notice a changed file.
fn fnv1a64(data: &str) -> u64 {
    data.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Validates the routes and renders them as a routing file, longest path first so that the
/// most specific prefix wins.
fn routes_file(routes: &[Route], port: u16) -> Result<String> {
    let mut seen = BTreeMap::new();
    for (i, route) in routes.iter().enumerate() {
        if !route.path.starts_with('/') {
            return Err(Error::invalid_input(format!(
                "spec.routes[{i}].path: must start with '/'"
            )));
        }
        if route.upstream.is_empty() {
            return Err(Error::invalid_input(format!(
                "spec.routes[{i}].upstream: must not be empty"
            )));
        }
        if let Some(first) = seen.insert(route.path.as_str(), i) {
            return Err(Error::invalid_input(format!(
                "spec.routes[{i}].path: {} is already routed by spec.routes[{first}]",
                route.path
            )));
        }
    }
    let mut sorted: Vec<&Route> = routes.iter().collect();
    sorted.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then_with(|| a.path.cmp(&b.path)));
    let mut file = format!("# generated by the sized-service plugin\nlisten {port};\n");
    for route in sorted {
        file.push_str(&format!("route {} -> {}", route.path, route.upstream));
        if let Some(t) = route.timeout_seconds {
            file.push_str(&format!(" timeout={t}s"));
        }
        file.push_str(";\n");
    }
    Ok(file)
}

#[derive(Debug)]
pub struct SizedService;

impl Plugin for SizedService {
    type Config = Config;
    const NAME: &'static str = "sized-service";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Service sized from a table, with PDB, HPA and a generated routing file";

    fn validate_config(config: &Config) -> Result<()> {
        if config.cpu_limit_factor == 0 {
            return Err(Error::invalid_config("cpuLimitFactor: must be at least 1"));
        }
        for (name, size) in &config.sizes {
            if size.cpu_millis == 0 || size.memory_mib == 0 {
                return Err(Error::invalid_config(format!(
                    "sizes.{name}: cpuMillis and memoryMiB must be positive"
                )));
            }
            if size.target_cpu_percent == 0 || size.target_cpu_percent > 100 {
                return Err(Error::invalid_config(format!(
                    "sizes.{name}.targetCpuPercent: must be 1-100"
                )));
            }
        }
        Ok(())
    }

    fn transform(cx: &Context<'_, Config>, desired: &mut Desired) -> Result<()> {
        let spec: Spec = cx.instance().spec()?;
        let config = cx.config();
        let size = config.size(&spec.size).ok_or_else(|| {
            Error::invalid_input(format!(
                "spec.size: must be one of {}",
                config.size_names().join(", ")
            ))
        })?;
        if spec.replicas == 0 {
            return Err(Error::invalid_input("spec.replicas: must be at least 1"));
        }
        let name = cx.instance().name();
        let labels = json!({ "app.kubernetes.io/name": name, "kroxide.dev/size": spec.size });
        let selector = json!({ "app.kubernetes.io/name": name });
        let routes = routes_file(&spec.routes, spec.port)?;
        let config_hash = format!("{:016x}", fnv1a64(&routes));
        let cpu_limit = size.cpu_millis.saturating_mul(config.cpu_limit_factor);

        desired.put(
            "routes",
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": format!("{name}-routes"), "labels": labels },
                "data": { "routes.conf": routes },
            }),
        );
        desired.put(
            "deployment",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": name, "labels": labels },
                "spec": {
                    "replicas": spec.replicas,
                    "selector": { "matchLabels": selector },
                    "template": {
                        "metadata": {
                            "labels": labels,
                            "annotations": { "kroxide.dev/routes-hash": config_hash },
                        },
                        "spec": {
                            "containers": [{
                                "name": "server",
                                "image": spec.image,
                                "ports": [{ "name": "http", "containerPort": spec.port }],
                                "resources": {
                                    "requests": { "cpu": cpu_quantity(size.cpu_millis), "memory": memory_quantity(size.memory_mib) },
                                    "limits": { "cpu": cpu_quantity(cpu_limit), "memory": memory_quantity(size.memory_mib) },
                                },
                                "volumeMounts": [{ "name": "routes", "mountPath": "/etc/routes", "readOnly": true }],
                            }],
                            "volumes": [{ "name": "routes", "configMap": { "name": format!("{name}-routes") } }],
                        },
                    },
                },
            }),
        );
        desired.put(
            "service",
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": name, "labels": labels },
                "spec": { "selector": selector, "ports": [{ "name": "http", "port": spec.port, "targetPort": "http" }] },
            }),
        );
        if spec.replicas > 1 {
            desired.put(
                "pdb",
                json!({
                    "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": { "name": name, "labels": labels },
                    "spec": { "minAvailable": min_available(spec.replicas), "selector": { "matchLabels": selector } },
                }),
            );
        } else {
            desired.remove("pdb");
        }
        if spec.autoscaling.enabled {
            let max = max_replicas(spec.replicas, &size, spec.autoscaling.max_replicas);
            desired.put(
                "hpa",
                json!({
                    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": { "name": name, "labels": labels },
                    "spec": {
                        "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
                        "minReplicas": spec.replicas,
                        "maxReplicas": max,
                        "metrics": [{
                            "type": "Resource",
                            "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": size.target_cpu_percent } },
                        }],
                    },
                }),
            );
        } else {
            desired.remove("hpa");
        }
        Ok(())
    }

    fn derive_status(cx: &Context<'_, Config>, status: &mut Status) -> Result<()> {
        let spec: Spec = cx.instance().spec()?;
        let observed = cx.observed();
        let ready_replicas = observed
            .field("deployment", "/status/readyReplicas")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let available = observed
            .field("deployment", "/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        status
            .set("size", spec.size.clone())
            .set("readyReplicas", ready_replicas)
            .set("routes", spec.routes.len());
        if let Some(size) = cx.config().size(&spec.size) {
            let max = max_replicas(spec.replicas, &size, spec.autoscaling.max_replicas);
            if spec.autoscaling.enabled {
                status.set(
                    "autoscaling",
                    json!({ "minReplicas": spec.replicas, "maxReplicas": max }),
                );
            }
        }
        let routes_published = observed.get("routes").is_some();
        let ready = available && routes_published && ready_replicas >= u64::from(spec.replicas);
        status
            .condition(
                Condition::new("RoutesPublished", routes_published).reason(if routes_published {
                    "ConfigMapExists"
                } else {
                    "WaitingForConfigMap"
                }),
            )
            .ready(ready);
        Ok(())
    }
}

kroxide_plugin::export!(SizedService);

#[cfg(test)]
mod tests {
    use kroxide_plugin::{Readiness, testing::Call};

    use super::*;

    fn call(spec: Value) -> Call {
        Call::new(json!({
            "apiVersion": "kro.run/v1alpha1", "kind": "SizedService",
            "metadata": { "name": "api", "namespace": "prod" },
            "spec": spec,
        }))
    }

    #[test]
    fn quantities_print_as_kubernetes_does() {
        assert_eq!(
            (cpu_quantity(250), cpu_quantity(2000)),
            ("250m".to_string(), "2".to_string())
        );
        assert_eq!(
            (memory_quantity(512), memory_quantity(2048)),
            ("512Mi".to_string(), "2Gi".to_string())
        );
    }

    #[test]
    fn a_single_replica_gets_no_disruption_budget() {
        let out = call(json!({ "image": "api:1" }))
            .transform::<SizedService>()
            .unwrap();
        assert_eq!(out.keys(), ["deployment", "hpa", "routes", "service"]);
    }

    #[test]
    fn the_budget_keeps_all_but_a_quarter() {
        assert_eq!([2, 3, 4, 8].map(min_available), [1, 2, 3, 6]);
        let out = call(json!({ "image": "api:1", "replicas": 4 }))
            .transform::<SizedService>()
            .unwrap();
        assert_eq!(out.get("pdb").unwrap()["spec"]["minAvailable"], 3);
    }

    #[test]
    fn size_selects_requests_limits_and_autoscaler_bounds() {
        let out = call(json!({ "image": "api:1", "size": "medium", "replicas": 8 }))
            .transform::<SizedService>()
            .unwrap();
        let resources =
            &out.get("deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(resources["requests"], json!({ "cpu": "500m", "memory": "512Mi" }));
        assert_eq!(resources["limits"], json!({ "cpu": "1", "memory": "512Mi" }));
        let hpa = &out.get("hpa").unwrap()["spec"];
        assert_eq!(
            (hpa["minReplicas"].clone(), hpa["maxReplicas"].clone()),
            (json!(8), json!(8))
        );
    }

    #[test]
    fn config_overrides_the_size_table() {
        let out = call(json!({ "image": "api:1", "size": "tiny" }))
            .config(json!({ "sizes": { "tiny": { "cpuMillis": 50, "memoryMiB": 64, "maxReplicas": 2, "targetCpuPercent": 90 } } }))
            .transform::<SizedService>()
            .unwrap();
        let requests = &out.get("deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]
            ["requests"];
        assert_eq!(requests["cpu"], "50m");
    }

    #[test]
    fn an_unknown_size_lists_the_valid_ones() {
        let err = call(json!({ "image": "api:1", "size": "huge" }))
            .transform::<SizedService>()
            .unwrap_err();
        assert_eq!(err.message(), "spec.size: must be one of small, medium, large");
    }

    #[test]
    fn routes_are_validated_and_rendered_longest_first() {
        let routes = json!([
            { "path": "/", "upstream": "web" },
            { "path": "/api/v2", "upstream": "api-v2", "timeoutSeconds": 5 },
            { "path": "/api", "upstream": "api" },
        ]);
        let out = call(json!({ "image": "api:1", "routes": routes }))
            .transform::<SizedService>()
            .unwrap();
        let file = out.get("routes").unwrap()["data"]["routes.conf"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            file,
            "# generated by the sized-service plugin\nlisten 8080;\nroute /api/v2 -> api-v2 timeout=5s;\nroute /api -> api;\nroute / -> web;\n"
        );
        let dup = json!([{ "path": "/a", "upstream": "x" }, { "path": "/a", "upstream": "y" }]);
        let err = call(json!({ "image": "api:1", "routes": dup }))
            .transform::<SizedService>()
            .unwrap_err();
        assert_eq!(
            err.message(),
            "spec.routes[1].path: /a is already routed by spec.routes[0]"
        );
    }

    #[test]
    fn changing_routes_changes_the_pod_template_hash() {
        let hash = |routes: Value| {
            let out = call(json!({ "image": "api:1", "routes": routes }))
                .transform::<SizedService>()
                .unwrap();
            out.get("deployment").unwrap()["spec"]["template"]["metadata"]["annotations"]["kroxide.dev/routes-hash"].clone()
        };
        assert_ne!(
            hash(json!([{ "path": "/", "upstream": "a" }])),
            hash(json!([{ "path": "/", "upstream": "b" }]))
        );
    }

    #[test]
    fn readiness_needs_the_deployment_and_the_routes() {
        let deployment = json!({ "status": { "readyReplicas": 1, "conditions": [{ "type": "Available", "status": "True" }] } });
        let status = call(json!({ "image": "api:1" }))
            .observe("deployment", deployment.clone())
            .derive_status::<SizedService>()
            .unwrap();
        assert_eq!(status.ready, Readiness::NotReady);
        let status = call(json!({ "image": "api:1" }))
            .observe("deployment", deployment)
            .observe("routes", json!({}))
            .derive_status::<SizedService>()
            .unwrap();
        assert_eq!(status.ready, Readiness::Ready);
        assert_eq!(
            status.status["autoscaling"],
            json!({ "minReplicas": 1, "maxReplicas": 3 })
        );
    }

    #[test]
    fn a_zero_limit_factor_is_refused() {
        let err = Call::new(json!({}))
            .config(json!({ "cpuLimitFactor": 0 }))
            .validate_config::<SizedService>()
            .unwrap_err();
        assert_eq!(err, Error::invalid_config("cpuLimitFactor: must be at least 1"));
    }
}
