//! The `kro.run/v1alpha1` ResourceGraphDefinition API, plus kroxide's additive `spec.plugin`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The API group of RGDs and, by default, of the kinds they define.
pub(crate) const GROUP: &str = "kro.run";
/// The RGD API version.
pub(crate) const API_VERSION: &str = "kro.run/v1alpha1";
/// The RGD kind.
pub(crate) const KIND: &str = "ResourceGraphDefinition";
/// Default ConfigMap key holding a plugin.
pub(crate) const DEFAULT_PLUGIN_KEY: &str = "plugin.wasm";

/// The API resource of ResourceGraphDefinitions, for requests.
pub(crate) fn api_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(GROUP, "v1alpha1", KIND),
        "resourcegraphdefinitions",
    )
}

/// A ResourceGraphDefinition: a schema for a new kind, and the resources each instance gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGraphDefinition {
    /// `kro.run/v1alpha1`.
    pub(crate) api_version: String,
    /// `ResourceGraphDefinition`.
    pub(crate) kind: String,
    /// Object metadata (only what kroxide reads is typed).
    #[serde(default)]
    pub(crate) metadata: Metadata,
    /// The graph.
    pub(crate) spec: RgdSpec,
    /// Status as last written (kroxide writes it; files usually have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<Value>,
}

/// The metadata fields kroxide reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Metadata {
    /// Name.
    #[serde(default)]
    pub(crate) name: String,
    /// UID (empty offline).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) uid: String,
    /// Generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) generation: Option<i64>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
    /// Everything else (resourceVersion, managedFields, ...).
    #[serde(flatten)]
    pub(crate) other: Map<String, Value>,
}

/// `spec` of an RGD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RgdSpec {
    /// The new kind's schema.
    pub(crate) schema: Schema,
    /// The resources of every instance.
    #[serde(default)]
    pub(crate) resources: Vec<Resource>,
    /// kroxide only: a WebAssembly plugin that transforms the desired set and derives status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plugin: Option<PluginSpec>,
}

/// Scope of the generated kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Scope {
    /// Instances live in namespaces (the default).
    #[default]
    Namespaced,
    /// Instances are cluster-scoped.
    Cluster,
}

/// `spec.schema`: the new kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Schema {
    /// Version of the new kind, e.g. `v1alpha1`.
    pub(crate) api_version: String,
    /// The new kind, e.g. `WebApp`.
    pub(crate) kind: String,
    /// API group; `kro.run` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// Namespaced (default) or Cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<Scope>,
    /// SimpleSchema of `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spec: Option<Value>,
    /// Status fields as CEL expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<Value>,
    /// Custom SimpleSchema types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) types: Option<Value>,
    /// Printer columns replacing the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) additional_printer_columns: Option<Vec<Value>>,
    /// Short names of the new kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) short_names: Vec<String>,
    /// Categories of the new kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) categories: Vec<String>,
    /// Labels and annotations of the generated CRD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<SchemaMetadata>,
}

impl Schema {
    /// The group (`kro.run` when unset or empty).
    pub(crate) fn group(&self) -> &str {
        self.group.as_deref().filter(|g| !g.is_empty()).unwrap_or(GROUP)
    }

    #[cfg(test)]
    /// `group/version` of instances.
    pub(crate) fn instance_api_version(&self) -> String {
        format!("{}/{}", self.group(), self.api_version)
    }

    /// The scope (Namespaced when unset).
    pub(crate) fn scope(&self) -> Scope {
        self.scope.unwrap_or_default()
    }
}

/// `spec.schema.metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SchemaMetadata {
    /// Labels of the CRD.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// Annotations of the CRD.
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

/// One entry of `spec.resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Resource {
    /// Node id, `^[a-z][a-zA-Z0-9]*$`.
    pub(crate) id: String,
    /// The object to create (with `${...}` expressions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) template: Option<Value>,
    /// An existing object to read (never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) external_ref: Option<Value>,
    /// Conditions for the resource to count as ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ready_when: Vec<String>,
    /// Conditions for the resource to exist at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) include_when: Vec<String>,
    /// Dimensions to expand the resource over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) for_each: Vec<BTreeMap<String, String>>,
}

/// `spec.plugin` (kroxide only): the WebAssembly plugin of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PluginSpec {
    /// Where the plugin's bytes are.
    pub(crate) config_map_ref: ConfigMapRef,
    /// Pin: the sha256 of the decompressed `.wasm`. When set, other bytes are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sha256: Option<String>,
    /// Configuration handed to the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) config: Option<Value>,
    /// Deadline of each call, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
    /// Memory limit of each call, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "memoryMiB")]
    pub(crate) memory_mib: Option<u64>,
    /// Kinds the plugin may add beyond the templates' (`Kind` or `Kind.group`); any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) allowed_kinds: Vec<String>,
}

impl PluginSpec {
    /// The configuration as a JSON object (`{}` when unset).
    pub(crate) fn config_value(&self) -> Value {
        match &self.config {
            Some(v @ Value::Object(_)) => v.clone(),
            _ => Value::Object(Map::new()),
        }
    }
}

/// A ConfigMap key holding a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConfigMapRef {
    /// ConfigMap name.
    pub(crate) name: String,
    /// Namespace; the controller's own namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
    /// Key in `binaryData` (or `data`); `plugin.wasm` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
}

impl ConfigMapRef {
    /// The key, defaulted.
    pub(crate) fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_PLUGIN_KEY)
    }
}

/// Why an RGD document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not an RGD at all.
    #[error("{what}: apiVersion/kind is {api_version}/{kind}, expected {API_VERSION}/{KIND}")]
    NotAnRgd {
        /// Where it came from.
        what: String,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// A field does not fit the RGD schema.
    #[error("{what}: {path}: {message}")]
    Field {
        /// Where it came from.
        what: String,
        /// The path of the field, e.g. `spec.resources[1].template`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ResourceGraphDefinition {
    /// Decodes an RGD from JSON (e.g. parsed YAML); `what` names the source in errors.
    ///
    /// # Errors
    /// [`Error::NotAnRgd`] for another kind, [`Error::Field`] naming the first field that
    /// does not fit.
    pub fn from_value(value: &Value, what: &str) -> Result<Self, Error> {
        let s = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if s("apiVersion") != API_VERSION || s("kind") != KIND {
            return Err(Error::NotAnRgd {
                what: what.to_string(),
                api_version: s("apiVersion"),
                kind: s("kind"),
            });
        }
        serde_path_to_error::deserialize(value).map_err(|e| Error::Field {
            what: what.to_string(),
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    }

    /// The name.
    pub(crate) fn name(&self) -> &str {
        &self.metadata.name
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rgd(spec: Value) -> Value {
        json!({ "apiVersion": API_VERSION, "kind": KIND, "metadata": { "name": "web" }, "spec": spec })
    }

    #[test]
    fn a_plugin_graph_decodes_with_defaults() {
        let value = rgd(json!({
            "schema": { "apiVersion": "v1alpha1", "kind": "WebApp" },
            "plugin": { "configMapRef": { "name": "webapp" }, "memoryMiB": 32 }
        }));
        let rgd = ResourceGraphDefinition::from_value(&value, "rgd.yaml").unwrap();
        assert_eq!(rgd.spec.schema.instance_api_version(), "kro.run/v1alpha1");
        let plugin = rgd.spec.plugin.unwrap();
        assert_eq!(
            (plugin.config_map_ref.key(), plugin.memory_mib),
            ("plugin.wasm", Some(32))
        );
        assert_eq!(plugin.config_value(), json!({}));
    }

    #[test]
    fn an_unknown_field_is_named_by_its_path() {
        let value = rgd(
            json!({ "schema": { "apiVersion": "v1", "kind": "A" }, "resources": [{ "id": "a", "tempalte": {} }] }),
        );
        let err = ResourceGraphDefinition::from_value(&value, "rgd.yaml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rgd.yaml: spec.resources[0].tempalte: unknown field `tempalte`"),
            "{err}"
        );
    }

    #[test]
    fn another_kind_is_refused() {
        let err =
            ResourceGraphDefinition::from_value(&json!({ "apiVersion": "v1", "kind": "ConfigMap" }), "x")
                .unwrap_err();
        assert!(matches!(err, Error::NotAnRgd { .. }));
    }
}
