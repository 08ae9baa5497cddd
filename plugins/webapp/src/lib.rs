//! kro's classic web application as a plugin: a Deployment, a Service when `service.enabled`,
//! an Ingress when `ingress.enabled`; status `availableReplicas` and `url`, readiness from the
//! Deployment's availability.

use std::collections::BTreeMap;

use kroxide_plugin::{Condition, Context, Desired, Error, Plugin, Result, Status};
use serde::Deserialize;
use serde_json::{Value, json};

/// `spec.plugin.config` of the RGD.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// `ingressClassName` of every Ingress.
    pub ingress_class_name: Option<String>,
    /// Name of the container in the pod template.
    pub container_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ingress_class_name: None,
            container_name: "app".to_string(),
        }
    }
}

/// The instance's spec; defaults mirror the example RGD's schema.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Spec {
    pub image: String,
    pub port: u16,
    pub replicas: u32,
    pub env: BTreeMap<String, String>,
    pub service: Toggle,
    pub ingress: IngressSpec,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            image: "nginx".to_string(),
            port: 80,
            replicas: 3,
            env: BTreeMap::new(),
            service: Toggle { enabled: true },
            ingress: IngressSpec::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Toggle {
    pub enabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IngressSpec {
    pub enabled: bool,
    /// Host name of the Ingress rule; none matches every host.
    pub host: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug)]
pub struct WebApp;

impl Plugin for WebApp {
    type Config = Config;
    const NAME: &'static str = "webapp";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Deployment + optional Service and Ingress for a web application";

    fn validate_config(config: &Config) -> Result<()> {
        if config.container_name.is_empty() {
            return Err(Error::invalid_config("containerName: must not be empty"));
        }
        Ok(())
    }

    fn transform(cx: &Context<'_, Config>, desired: &mut Desired) -> Result<()> {
        let spec: Spec = cx.instance().spec()?;
        let name = cx.instance().name();
        if spec.port == 0 {
            return Err(Error::invalid_input("spec.port: must be between 1 and 65535"));
        }
        if spec.ingress.enabled && !spec.service.enabled {
            return Err(Error::invalid_input(
                "spec.ingress.enabled: an Ingress needs spec.service.enabled",
            ));
        }
        let labels = json!({ "app.kubernetes.io/name": name });
        let env: Vec<Value> = spec
            .env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        let mut container = json!({
            "name": cx.config().container_name,
            "image": spec.image,
            "ports": [{ "containerPort": spec.port, "name": "http" }],
        });
        if !env.is_empty() {
            container["env"] = Value::Array(env);
        }
        desired.put(
            "deployment",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": { "name": name, "labels": labels },
                "spec": {
                    "replicas": spec.replicas,
                    "selector": { "matchLabels": labels },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": { "containers": [container] },
                    },
                },
            }),
        );
        if spec.service.enabled {
            desired.put(
                "service",
                json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": { "name": name, "labels": labels },
                    "spec": {
                        "selector": labels,
                        "ports": [{ "name": "http", "port": spec.port, "targetPort": "http" }],
                    },
                }),
            );
        } else {
            desired.remove("service");
        }
        if spec.ingress.enabled {
            let mut rule = json!({
                "http": { "paths": [{
                    "path": spec.ingress.path.as_deref().unwrap_or("/"),
                    "pathType": "Prefix",
                    "backend": { "service": { "name": name, "port": { "name": "http" } } },
                }]},
            });
            if let Some(host) = &spec.ingress.host {
                rule["host"] = json!(host);
            }
            let mut ingress = json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": { "name": name, "labels": labels },
                "spec": { "rules": [rule] },
            });
            if let Some(class) = &cx.config().ingress_class_name {
                ingress["spec"]["ingressClassName"] = json!(class);
            }
            desired.put("ingress", ingress);
        } else {
            desired.remove("ingress");
        }
        Ok(())
    }

    fn derive_status(cx: &Context<'_, Config>, status: &mut Status) -> Result<()> {
        let spec: Spec = cx.instance().spec()?;
        let observed = cx.observed();
        let available = observed
            .field("deployment", "/status/availableReplicas")
            .and_then(Value::as_u64);
        let deployment_available = observed
            .field("deployment", "/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        if let Some(n) = available {
            status.set("availableReplicas", n);
        }
        let url = if spec.ingress.enabled {
            let host = spec.ingress.host.clone().or_else(|| {
                let lb = observed.field("ingress", "/status/loadBalancer/ingress/0")?;
                lb.get("hostname")
                    .or_else(|| lb.get("ip"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            host.map(|h| format!("http://{h}{}", spec.ingress.path.as_deref().unwrap_or("/")))
        } else if spec.service.enabled && observed.get("service").is_some() {
            let ns = cx.instance().namespace().unwrap_or("default");
            Some(format!(
                "http://{}.{ns}.svc.cluster.local:{}",
                cx.instance().name(),
                spec.port
            ))
        } else {
            None
        };
        if let Some(url) = url {
            status.set("url", url);
        }
        let enough = available.unwrap_or(0) >= u64::from(spec.replicas);
        let ready = deployment_available && enough;
        let message = format!("{}/{} replicas available", available.unwrap_or(0), spec.replicas);
        status
            .condition(
                Condition::new("DeploymentAvailable", ready)
                    .reason(if ready {
                        "MinimumReplicasAvailable"
                    } else {
                        "WaitingForReplicas"
                    })
                    .message(message),
            )
            .ready(ready);
        Ok(())
    }
}

kroxide_plugin::export!(WebApp);

#[cfg(test)]
mod tests {
    use kroxide_plugin::{Readiness, testing::Call};

    use super::*;

    fn instance(spec: Value) -> Value {
        json!({
            "apiVersion": "kro.run/v1alpha1", "kind": "WebApp",
            "metadata": { "name": "shop", "namespace": "prod", "uid": "u1" },
            "spec": spec,
        })
    }

    #[test]
    fn defaults_give_a_deployment_and_a_service() {
        let out = Call::new(instance(json!({}))).transform::<WebApp>().unwrap();
        assert_eq!(out.keys(), ["deployment", "service"]);
        assert_eq!(out.get("deployment").unwrap()["spec"]["replicas"], 3);
    }

    #[test]
    fn ingress_is_added_when_enabled_and_dropped_with_the_service() {
        let out = Call::new(instance(
            json!({ "ingress": { "enabled": true, "host": "shop.example.com" } }),
        ))
        .transform::<WebApp>()
        .unwrap();
        assert_eq!(out.keys(), ["deployment", "ingress", "service"]);
        let err = Call::new(instance(
            json!({ "service": { "enabled": false }, "ingress": { "enabled": true } }),
        ))
        .transform::<WebApp>()
        .unwrap_err();
        assert!(err.message().starts_with("spec.ingress.enabled"), "{err}");
    }

    #[test]
    fn a_disabled_service_removes_the_rendered_one() {
        let out = Call::new(instance(json!({ "service": { "enabled": false } })))
            .rendered(
                "service",
                json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "x" } }),
            )
            .transform::<WebApp>()
            .unwrap();
        assert_eq!(out.keys(), ["deployment"]);
    }

    #[test]
    fn readiness_follows_the_deployment_availability() {
        let live = json!({ "status": { "availableReplicas": 2,
            "conditions": [{ "type": "Available", "status": "True" }] } });
        let call = Call::new(instance(json!({ "replicas": 2 }))).observe("deployment", live);
        let out = call.derive_status::<WebApp>().unwrap();
        assert_eq!(out.ready, Readiness::Ready);
        assert_eq!(out.status["availableReplicas"], 2);
        let short = Call::new(instance(json!({ "replicas": 3 })))
            .observe("deployment", json!({ "status": { "availableReplicas": 2 } }))
            .derive_status::<WebApp>()
            .unwrap();
        assert_eq!(short.ready, Readiness::NotReady);
        assert_eq!(
            short.condition("DeploymentAvailable").unwrap().message,
            "2/3 replicas available"
        );
    }

    #[test]
    fn a_wrongly_typed_spec_field_is_named() {
        let err = Call::new(instance(json!({ "replicas": "three" })))
            .transform::<WebApp>()
            .unwrap_err();
        assert!(err.message().starts_with("spec.replicas: invalid type"), "{err}");
    }
}
