//! CustomResourceDefinitions: the one generated for each graph's kind, in the shape kro
//! generates, and kroxide's own ResourceGraphDefinition CRD, generated from code.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{
    metadata,
    rgd::{ResourceGraphDefinition, Scope},
};

/// Names of a generated kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KindNames {
    /// API group.
    pub(crate) group: String,
    /// Version.
    pub(crate) version: String,
    /// Kind.
    pub(crate) kind: String,
    /// Plural resource name.
    pub(crate) plural: String,
    /// Singular resource name (lower-case kind).
    pub(crate) singular: String,
    /// Whether instances live in namespaces.
    pub(crate) namespaced: bool,
}

impl KindNames {
    /// The names of the kind an RGD defines.
    pub(crate) fn of(rgd: &ResourceGraphDefinition) -> Self {
        let schema = &rgd.spec.schema;
        Self {
            group: schema.group().to_string(),
            version: schema.api_version.clone(),
            kind: schema.kind.clone(),
            plural: super::pluralize::plural_of_kind(&schema.kind),
            singular: schema.kind.to_lowercase(),
            namespaced: schema.scope() == Scope::Namespaced,
        }
    }

    /// `<plural>.<group>`, the CRD's name.
    pub(crate) fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// `group/version` of instances.
    pub(crate) fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// kro's default printer columns: State, Ready, Age.
pub(crate) fn default_printer_columns() -> Value {
    json!([
        { "name": "State", "description": "The state of a ResourceGraphDefinition instance", "type": "string", "jsonPath": ".status.state" },
        { "name": "Ready", "description": "Whether a ResourceGraphDefinition instance is ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status" },
        { "name": "Age", "description": "Age of the resource", "type": "date", "jsonPath": ".metadata.creationTimestamp" }
    ])
}

/// The schema of `status.state` and `status.conditions`, injected into every instance CRD.
fn state_and_conditions() -> (Value, Value) {
    let conditions = json!({
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "type": { "type": "string" },
                "status": { "type": "string" },
                "reason": { "type": "string" },
                "message": { "type": "string" },
                "lastTransitionTime": { "type": "string" },
                "observedGeneration": { "type": "integer" }
            }
        }
    });
    (json!({ "type": "string" }), conditions)
}

/// The instance CRD of `rgd`: `spec` from its SimpleSchema, `status` from its status fields
/// (with `state` and `conditions` added), printer columns, names, scope and labels as kro
/// writes them.
pub(crate) fn instance_crd(
    rgd: &ResourceGraphDefinition,
    names: &KindNames,
    spec: Value,
    mut status: Value,
) -> Value {
    let (state, conditions) = state_and_conditions();
    if let Some(props) = status.get_mut("properties").and_then(Value::as_object_mut) {
        props.entry("state").or_insert(state);
        props.entry("conditions").or_insert(conditions);
    }
    let schema = &rgd.spec.schema;
    let mut labels: BTreeMap<String, String> = schema
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(metadata::OWNED.to_string(), "true".to_string());
    labels.insert(
        metadata::KRO_VERSION.to_string(),
        metadata::CONTROLLER_VERSION.to_string(),
    );
    labels.insert(metadata::RGD_NAME.to_string(), rgd.name().to_string());
    if !rgd.metadata.uid.is_empty() {
        labels.insert(metadata::RGD_ID.to_string(), rgd.metadata.uid.clone());
    }
    let annotations = schema
        .metadata
        .as_ref()
        .map(|m| m.annotations.clone())
        .unwrap_or_default();
    let mut crd_names = json!({
        "kind": names.kind,
        "listKind": format!("{}List", names.kind),
        "plural": names.plural,
        "singular": names.singular,
    });
    if !schema.short_names.is_empty() {
        crd_names["shortNames"] = json!(schema.short_names);
    }
    if !schema.categories.is_empty() {
        crd_names["categories"] = json!(schema.categories);
    }
    let columns = match &schema.additional_printer_columns {
        Some(cols) if !cols.is_empty() => Value::Array(cols.clone()),
        _ => default_printer_columns(),
    };
    let mut metadata = json!({ "name": names.crd_name(), "labels": labels });
    if !annotations.is_empty() {
        metadata["annotations"] = json!(annotations);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": names.group,
            "names": crd_names,
            "scope": if names.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": names.version,
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "apiVersion": { "type": "string" },
                        "kind": { "type": "string" },
                        "metadata": { "type": "object" },
                        "spec": spec,
                        "status": status
                    }
                }},
                "subresources": { "status": {} },
                "additionalPrinterColumns": columns
            }]
        }
    })
}

fn immutable(message: &str) -> Value {
    json!([{ "rule": "self == oldSelf", "message": message }])
}

fn string_list() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

/// The schema of one status condition, as the RGD and GraphRevision CRDs have it.
fn condition_schema() -> Value {
    json!({
        "type": "object",
        "required": ["status", "type"],
        "properties": {
            "type": { "type": "string", "description": "Type of the condition." },
            "status": { "type": "string", "description": "True, False or Unknown." },
            "reason": { "type": "string", "description": "Why the condition last changed, in UpperCamelCase." },
            "message": { "type": "string", "description": "Details for humans." },
            "lastTransitionTime": { "type": "string", "format": "date-time", "description": "When the status last changed." },
            "observedGeneration": { "type": "integer", "format": "int64", "minimum": 0, "description": "The generation the condition describes." }
        }
    })
}

/// The GraphRevision CRD (`internal.kro.run/v1alpha1`, cluster-scoped, short name `gr`): kro's
/// kind, names, printer columns and immutable spec; the snapshot of the graph's spec is kept
/// whole (kroxide's `spec.plugin` included). The chart ships this; a test keeps its copy current.
pub fn graph_revision_crd() -> Value {
    let condition = condition_schema();
    let snapshot = json!({
        "type": "object",
        "required": ["name", "spec"],
        "properties": {
            "name": { "type": "string", "description": "The ResourceGraphDefinition's name." },
            "generation": { "type": "integer", "format": "int64",
                "description": "Its metadata.generation when the revision was issued." },
            "spec": { "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "description": "Its spec, as it was." }
        }
    });
    let spec = json!({
        "type": "object",
        "required": ["revision", "snapshot"],
        "x-kubernetes-validations": immutable("spec is immutable"),
        "properties": {
            "revision": { "type": "integer", "format": "int64", "minimum": 1,
                "description": "The revision number, from 1, per ResourceGraphDefinition name." },
            "snapshot": snapshot
        }
    });
    let resources = json!({ "type": "array", "items": { "type": "object", "properties": {
        "id": { "type": "string" },
        "dependencies": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "string" } } } }
    }}});
    let status = json!({
        "type": "object",
        "properties": {
            "conditions": { "type": "array", "items": condition },
            "topologicalOrder": string_list(),
            "resources": resources
        }
    });
    let schema = json!({
        "type": "object",
        "description": "An immutable snapshot of one revision of a ResourceGraphDefinition.",
        "required": ["spec"],
        "properties": {
            "apiVersion": { "type": "string" },
            "kind": { "type": "string" },
            "metadata": { "type": "object" },
            "spec": spec,
            "status": status
        }
    });
    let columns = json!([
        { "name": "RGD", "type": "string", "jsonPath": ".spec.snapshot.name", "priority": 1 },
        { "name": "REVISION", "type": "integer", "jsonPath": ".spec.revision" },
        { "name": "HASH", "type": "string", "jsonPath": ".metadata.labels.kro\\.run/graph-revision-hash", "priority": 1 },
        { "name": "READY", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status" },
        { "name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp" }
    ]);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "graphrevisions.internal.kro.run" },
        "spec": {
            "group": "internal.kro.run",
            "names": { "kind": "GraphRevision", "listKind": "GraphRevisionList", "plural": "graphrevisions",
                "singular": "graphrevision", "shortNames": ["gr"] },
            "scope": "Cluster",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": { "status": {} },
                "additionalPrinterColumns": columns,
                "schema": { "openAPIV3Schema": schema }
            }]
        }
    })
}

/// kroxide's ResourceGraphDefinition CRD: kro's `kro.run/v1alpha1` schema, printer columns and
/// validation rules, plus the additive `spec.plugin`. This function is the source of truth;
/// `kroxide generate crd` prints it and a test keeps the chart's copy current.
pub fn rgd_crd() -> Value {
    let name_rules = json!({
        "type": "array",
        "maxItems": 32,
        "x-kubernetes-list-type": "set",
        "items": { "type": "string", "maxLength": 63, "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$" }
    });
    let condition = condition_schema();
    let schema = json!({
        "type": "object",
        "description": "The kind this graph defines: its identity, its spec in SimpleSchema, and its status as expressions.",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": { "type": "string", "pattern": "^v[0-9]+(alpha[0-9]+|beta[0-9]+)?$", "x-kubernetes-validations": immutable("apiVersion is immutable"),
                "description": "Version of the generated kind, e.g. v1alpha1. Immutable." },
            "kind": { "type": "string", "pattern": "^[A-Z][a-zA-Z0-9]{0,62}$", "x-kubernetes-validations": immutable("kind is immutable"),
                "description": "The generated kind, UpperCamelCase. Immutable." },
            "group": { "type": "string", "default": "kro.run", "x-kubernetes-validations": immutable("group is immutable"),
                "description": "API group of the generated kind; kro.run when omitted. Immutable." },
            "scope": { "type": "string", "enum": ["Namespaced", "Cluster"], "default": "Namespaced", "x-kubernetes-validations": immutable("scope is immutable"),
                "description": "Whether instances are namespaced (default) or cluster-scoped. Immutable." },
            "spec": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "The instance spec in SimpleSchema." },
            "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "Status fields as ${...} expressions over the graph's resources." },
            "types": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "Named SimpleSchema types used by spec." },
            "additionalPrinterColumns": { "type": "array", "description": "Printer columns replacing State, Ready and Age.",
                "items": { "type": "object", "required": ["jsonPath", "name", "type"], "properties": {
                    "name": { "type": "string" }, "type": { "type": "string" }, "format": { "type": "string" },
                    "description": { "type": "string" }, "priority": { "type": "integer", "format": "int32" }, "jsonPath": { "type": "string" }
                }}},
            "shortNames": name_rules.clone(),
            "categories": name_rules,
            "metadata": { "type": "object", "description": "Labels and annotations of the generated CRD.", "properties": {
                "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                "annotations": { "type": "object", "additionalProperties": { "type": "string" } }
            }}
        }
    });
    let resource = json!({
        "type": "object",
        "required": ["id"],
        "x-kubernetes-validations": [{
            "rule": "(has(self.template) && !has(self.externalRef)) || (!has(self.template) && has(self.externalRef))",
            "message": "exactly one of template or externalRef must be provided"
        }],
        "properties": {
            "id": { "type": "string", "description": "Unique id of the resource, referenced from expressions." },
            "template": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "The object to create, with ${...} expressions." },
            "externalRef": { "type": "object", "required": ["apiVersion", "kind", "metadata"], "description": "An existing object to read; never written.",
                "properties": {
                    "apiVersion": { "type": "string" }, "kind": { "type": "string" },
                    "metadata": { "type": "object", "properties": {
                        "name": { "type": "string" }, "namespace": { "type": "string" },
                        "selector": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                    }}
                }},
            "readyWhen": { "type": "array", "items": { "type": "string" }, "description": "Expressions that must all hold for the resource to be ready." },
            "includeWhen": { "type": "array", "items": { "type": "string" }, "description": "Expressions that must all hold for the resource to exist." },
            "forEach": { "type": "array", "description": "Dimensions to expand the resource over, each one {iterator: expression}.",
                "items": { "type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": { "type": "string" } } }
        }
    });
    let plugin = json!({
        "type": "object",
        "required": ["configMapRef"],
        "description": "kroxide only: a WebAssembly plugin, loaded from a ConfigMap, that transforms the desired children and derives status. Graphs using it do not run on kro.",
        "properties": {
            "configMapRef": { "type": "object", "required": ["name"], "properties": {
                "name": { "type": "string" }, "namespace": { "type": "string" }, "key": { "type": "string", "default": "plugin.wasm" }
            }},
            "sha256": { "type": "string", "pattern": "^(sha256:)?[0-9a-fA-F]{64}$", "description": "Pin: the sha256 of the decompressed .wasm." },
            "config": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "Configuration handed to the plugin." },
            "timeoutMs": { "type": "integer", "minimum": 1, "description": "Deadline of each call in milliseconds." },
            "memoryMiB": { "type": "integer", "minimum": 1, "description": "Memory limit of each call in MiB." },
            "allowedKinds": { "type": "array", "items": { "type": "string" }, "description": "Kinds (Kind or Kind.group) the plugin may add; any when empty." }
        }
    });
    let status = json!({
        "type": "object",
        "properties": {
            "state": { "type": "string", "description": "Active or Inactive." },
            "conditions": { "type": "array", "items": condition },
            "topologicalOrder": string_list(),
            "resources": { "type": "array", "items": { "type": "object", "properties": {
                "id": { "type": "string" },
                "dependencies": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "string" } } } }
            }}},
            "lastIssuedRevision": { "type": "integer", "format": "int64" },
            "plugin": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "The plugin in use: name, version, sha256, WIT version." }
        }
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "resourcegraphdefinitions.kro.run" },
        "spec": {
            "group": "kro.run",
            "names": {
                "kind": "ResourceGraphDefinition",
                "listKind": "ResourceGraphDefinitionList",
                "plural": "resourcegraphdefinitions",
                "singular": "resourcegraphdefinition",
                "shortNames": ["rgd"]
            },
            "scope": "Cluster",
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "additionalPrinterColumns": [
                    { "name": "APIVERSION", "type": "string", "jsonPath": ".spec.schema.apiVersion" },
                    { "name": "KIND", "type": "string", "jsonPath": ".spec.schema.kind" },
                    { "name": "STATE", "type": "string", "jsonPath": ".status.state" },
                    { "name": "READY", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status" },
                    { "name": "TOPOLOGICALORDER", "type": "string", "priority": 1, "jsonPath": ".status.topologicalOrder" },
                    { "name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp" }
                ],
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "description": "A ResourceGraphDefinition defines a new kind and the resources each of its instances gets.",
                    "properties": {
                        "apiVersion": { "type": "string" },
                        "kind": { "type": "string" },
                        "metadata": { "type": "object" },
                        "spec": {
                            "type": "object",
                            "required": ["schema"],
                            "properties": {
                                "schema": schema,
                                "resources": { "type": "array", "items": resource },
                                "plugin": plugin
                            }
                        },
                        "status": status
                    }
                }}
            }]
        }
    })
}
