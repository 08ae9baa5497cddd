//! Runs a plugin natively under `cargo test`, through the same code the component runs.
//!
//! A [`Call`] builds the input the host would send (instance, config, observed children,
//! rendered templates), runs your plugin through the SDK's export glue (JSON encoding and output
//! checks included) and returns the decoded output with the lines the plugin logged. Imports are
//! served natively: `log` lines are captured, not sent to a wasm stub.
//!
//! ```
//! use kroxide_plugin::{testing::Call, Context, Desired, Plugin, Result};
//! use serde_json::json;
//!
//! struct Echo;
//! impl Plugin for Echo {
//!     type Config = ();
//!     const NAME: &'static str = "echo";
//!     const VERSION: &'static str = "0.1.0";
//!     fn transform(cx: &Context<'_, ()>, desired: &mut Desired) -> Result<()> {
//!         let name = cx.instance().name();
//!         desired.put("config", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}));
//!         Ok(())
//!     }
//! }
//!
//! let out = Call::new(json!({"metadata": {"name": "demo", "namespace": "default"}}))
//!     .transform::<Echo>()
//!     .unwrap();
//! assert_eq!(out.get("config").unwrap()["metadata"]["name"], "demo");
//! ```

use serde_json::{Value, json};

use crate::{
    bindings,
    error::Error,
    glue,
    log::{Level, level_name},
    plugin::Plugin,
    types::{Condition, Event, Key, Readiness},
};

/// The input of one call, built up by the test.
#[derive(Debug, Clone)]
pub struct Call {
    graph: String,
    revision: u64,
    config: Value,
    instance: Value,
    observed: Vec<(Key, Value)>,
    rendered: Vec<(Key, Value)>,
    pending: Vec<(String, String)>,
}

/// A desired child as the host would receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Its key.
    pub key: Key,
    /// The partial object.
    pub object: Value,
    /// Its readiness.
    pub ready: Readiness,
}

/// What `transform` returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Transformed {
    /// The desired set, sorted by key.
    pub desired: Vec<Child>,
    /// Events to record.
    pub events: Vec<Event>,
    /// The requeue hint in milliseconds.
    pub requeue_after_ms: Option<u32>,
    /// Lines logged during the call, as `level: message`.
    pub logs: Vec<String>,
}

impl Transformed {
    /// The object of plain node `id`.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.desired
            .iter()
            .find(|c| c.key == Key::new(id))
            .map(|c| &c.object)
    }

    /// The keys of the desired set, printed (`svc[0]` for collection items).
    pub fn keys(&self) -> Vec<String> {
        self.desired.iter().map(|c| c.key.to_string()).collect()
    }
}

/// What `derive-status` returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// The status fields as a JSON object.
    pub status: Value,
    /// Conditions added by the plugin.
    pub conditions: Vec<Condition>,
    /// Readiness of the instance's resources.
    pub ready: Readiness,
    /// Events to record.
    pub events: Vec<Event>,
    /// Lines logged during the call, as `level: message`.
    pub logs: Vec<String>,
}

impl Derived {
    /// The condition of type `type_`, if the plugin set one.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

fn object_ref(object: &Value) -> bindings::ObjectRef {
    let s = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let ns = s("/metadata/namespace");
    bindings::ObjectRef {
        api_version: s("/apiVersion"),
        kind: s("/kind"),
        namespace: (!ns.is_empty()).then_some(ns),
        name: s("/metadata/name"),
    }
}

fn logs() -> Vec<String> {
    crate::log::native::take()
        .into_iter()
        .map(|(l, m): (Level, String)| format!("{}: {m}", level_name(l)))
        .collect()
}

impl Call {
    /// A call about `instance` (a full object; `metadata.name` at least), with config `{}`.
    pub fn new(instance: Value) -> Self {
        Self {
            graph: "test-graph".to_string(),
            revision: 1,
            config: json!({}),
            instance,
            observed: Vec::new(),
            rendered: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Sets the plugin config (`spec.plugin.config` of the RGD).
    #[must_use]
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Sets the graph name and revision the call reports.
    #[must_use]
    pub fn graph(mut self, name: &str, revision: u64) -> Self {
        self.graph = name.to_string();
        self.revision = revision;
        self
    }

    /// Adds a live child of plain node `id`.
    #[must_use]
    pub fn observe(mut self, id: &str, object: Value) -> Self {
        self.observed.push((Key::new(id), object));
        self
    }

    /// Adds live item `index` of collection node `id`.
    #[must_use]
    pub fn observe_item(mut self, id: &str, index: u32, object: Value) -> Self {
        self.observed.push((Key::item(id, index), object));
        self
    }

    /// Adds a child the graph's templates rendered.
    #[must_use]
    pub fn rendered(mut self, id: &str, object: Value) -> Self {
        self.rendered.push((Key::new(id), object));
        self
    }

    /// Marks template node `id` as pending.
    #[must_use]
    pub fn pending(mut self, id: &str, reason: &str) -> Self {
        self.pending.push((id.to_string(), reason.to_string()));
        self
    }

    fn meta(&self) -> bindings::RequestMeta {
        bindings::RequestMeta {
            graph: self.graph.clone(),
            revision: self.revision,
            config: self.config.to_string(),
        }
    }

    fn observed_wit(&self) -> Vec<bindings::Observed> {
        self.observed
            .iter()
            .map(|(k, o)| bindings::Observed {
                key: k.to_wit(),
                ref_: object_ref(o),
                object: o.to_string(),
            })
            .collect()
    }

    /// Runs `validate-config`.
    ///
    /// # Errors
    /// What the plugin returns.
    pub fn validate_config<P: Plugin>(&self) -> Result<(), Error> {
        crate::log::native::take();
        glue::validate_config::<P>(self.config.to_string()).map_err(Error::from_wit)
    }

    /// Runs `transform`.
    ///
    /// # Errors
    /// What the plugin returns, or a contract violation the SDK caught.
    pub fn transform<P: Plugin>(&self) -> Result<Transformed, Error> {
        crate::log::native::take();
        let input = bindings::TransformInput {
            meta: self.meta(),
            instance: self.instance.to_string(),
            observed: self.observed_wit(),
            rendered: self
                .rendered
                .iter()
                .map(|(k, o)| bindings::Desired {
                    key: k.to_wit(),
                    object: o.to_string(),
                    ready: bindings::Readiness::Unknown,
                })
                .collect(),
            pending: self
                .pending
                .iter()
                .map(|(id, reason)| bindings::Pending {
                    id: id.clone(),
                    reason: reason.clone(),
                })
                .collect(),
        };
        let out = glue::transform::<P>(input).map_err(Error::from_wit)?;
        let desired = out
            .desired
            .into_iter()
            .map(|d| Child {
                key: Key::from_wit(d.key),
                object: serde_json::from_str(&d.object).unwrap_or(Value::Null),
                ready: Readiness::from_wit(d.ready),
            })
            .collect();
        Ok(Transformed {
            desired,
            events: out.events.into_iter().map(Event::from_wit).collect(),
            requeue_after_ms: out.requeue_after_ms,
            logs: logs(),
        })
    }

    /// Runs `derive-status`.
    ///
    /// # Errors
    /// What the plugin returns, or a contract violation the SDK caught.
    pub fn derive_status<P: Plugin>(&self) -> Result<Derived, Error> {
        crate::log::native::take();
        let input = bindings::StatusInput {
            meta: self.meta(),
            instance: self.instance.to_string(),
            observed: self.observed_wit(),
        };
        let out = glue::derive_status::<P>(input).map_err(Error::from_wit)?;
        Ok(Derived {
            status: serde_json::from_str(&out.status).unwrap_or(Value::Null),
            conditions: out.conditions.into_iter().map(Condition::from_wit).collect(),
            ready: Readiness::from_wit(out.ready),
            events: out.events.into_iter().map(Event::from_wit).collect(),
            logs: logs(),
        })
    }
}
