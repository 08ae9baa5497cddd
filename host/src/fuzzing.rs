//! Entry points of the fuzz targets (`fuzz/`) and of the corpus replay test: untrusted input in, no panic out.
//!
//! Each function takes input the way the controller does at admission or after a plugin call and
//! drives it through the same code. An error is a correct outcome; a panic, a hang or unbounded
//! memory is a finding. Not an API: the names and signatures follow the fuzz targets.
#![doc(hidden)]

use std::path::Path;

use serde_json::json;

use crate::{
    cel::{self, Scope, template::Template},
    graph::{self, Limits, simpleschema::Transformer},
    plugin::{RuntimeConfig, bindings, output},
    rgd::ResourceGraphDefinition,
    yaml,
};

/// RGD admission as a whole: YAML documents, the typed RGD, the graph with its CRD.
pub fn rgd_admission(text: &str) {
    let Ok(docs) = yaml::parse_documents(text, Path::new("fuzz.yaml")) else {
        return;
    };
    for doc in docs {
        if let Ok(rgd) = ResourceGraphDefinition::from_value(&doc, "fuzz") {
            let _ = graph::build(&rgd, Limits::default(), &graph::Catalog::default());
        }
    }
}

/// SimpleSchema: a YAML map with optional `types` and `spec`, turned into OpenAPI schemas.
pub fn simple_schema(text: &str) {
    let Ok(docs) = yaml::parse_documents(text, Path::new("fuzz.yaml")) else {
        return;
    };
    for doc in docs {
        let Ok(transformer) = Transformer::with_types(doc.get("types")) else {
            continue;
        };
        let spec = doc.get("spec").unwrap_or(&doc);
        let _ = transformer.object("spec", spec, true);
        if let Some(status) = doc.get("status") {
            let _ = transformer.object("status", status, false);
        }
    }
}

/// A template string (`prefix-${expr}-suffix`): parsed, each expression compiled and, within
/// the cost budget, evaluated against a small instance.
pub fn template(text: &str) {
    let Ok(template) = Template::parse(text) else {
        return;
    };
    let scope = sample_scope();
    for segment in &template.segments {
        if let cel::template::Segment::Expr(source) = segment
            && let Ok(program) = cel::engine().compile(source)
        {
            let _ = program.eval(&scope);
        }
    }
}

fn sample_scope() -> Scope {
    let mut scope = Scope::new();
    scope.set(
        "schema",
        json!({
            "apiVersion": "kro.run/v1alpha1",
            "kind": "Fuzz",
            "metadata": {"name": "fuzz", "namespace": "default", "labels": {"a": "b"}},
            "spec": {
                "name": "web", "replicas": 3, "enabled": true, "ratio": 0.5,
                "ports": [80, 443], "tags": {"team": "x"},
                "items": [{"name": "a", "size": 1}, {"name": "b", "size": 2}]
            }
        }),
    );
    scope.set(
        "deployment",
        json!({"metadata": {"name": "web"}, "status": {"availableReplicas": 2, "conditions": []}}),
    );
    scope
}

/// A `transform` output as a plugin returns it, checked against the contract.
pub fn plugin_transform_output(out: bindings::TransformOutput) {
    let _ = output::transform(out, &RuntimeConfig::default());
}

/// A `derive-status` output as a plugin returns it, checked against the contract.
pub fn plugin_status_output(out: bindings::StatusOutput) {
    let _ = output::status(out, &RuntimeConfig::default());
}
