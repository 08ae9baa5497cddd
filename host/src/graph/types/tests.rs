use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::graph::catalog::{Catalog, KindSchema};

fn deployment() -> Registry {
    let KindSchema::Known(schema) = Catalog::default().lookup("apps/v1", "Deployment") else {
        panic!("a built-in kind")
    };
    let mut r = Registry::default();
    r.add_root("deployment", schema);
    r
}

#[test]
fn a_builtin_kind_reads_as_object_types_named_after_their_paths() {
    let r = deployment();
    let ty = r.root_type("deployment");
    assert_eq!(ty, CelType::message("deployment"));
    let status = r.field_type("deployment", "status").unwrap();
    assert_eq!(status, CelType::message("deployment.status"));
    assert_eq!(
        r.field_type("deployment.status", "availableReplicas"),
        Some(CelType::Int)
    );
    assert_eq!(
        r.field_type("deployment.status", "conditions"),
        Some(CelType::list(CelType::message("deployment.status.conditions[]")))
    );
    assert_eq!(
        r.field_type("deployment.metadata", "labels"),
        None,
        "metadata is reached through its own path first"
    );
    r.field_type("deployment", "metadata").unwrap();
    assert_eq!(
        r.field_type("deployment.metadata", "labels"),
        Some(CelType::map(CelType::String, CelType::String))
    );
    assert_eq!(
        r.field_type("deployment.metadata", "creationTimestamp"),
        Some(CelType::Dyn),
        "date-time is text at runtime"
    );
}

#[test]
fn the_expected_type_of_a_template_field_follows_the_schema_and_is_open_where_it_is() {
    let KindSchema::Known(schema) = Catalog::default().lookup("apps/v1", "Deployment") else {
        panic!()
    };
    assert_eq!(
        schema_display(expected_at(&schema, &[Some("spec"), Some("replicas")]).unwrap()),
        "int"
    );
    assert_eq!(
        schema_display(
            expected_at(
                &schema,
                &[
                    Some("spec"),
                    Some("template"),
                    Some("spec"),
                    Some("containers"),
                    None,
                    Some("image")
                ]
            )
            .unwrap()
        ),
        "string"
    );
    assert!(
        expected_at(
            &schema,
            &[
                Some("spec"),
                Some("strategy"),
                Some("rollingUpdate"),
                Some("maxSurge")
            ]
        )
        .is_none(),
        "int-or-string"
    );
    assert!(expected_at(&schema, &[Some("spec"), Some("nosuch")]).is_none());
}

#[test]
fn a_type_fits_a_schema_structurally() {
    let r = deployment();
    r.root_type("deployment");
    let int = json!({ "type": "integer" });
    let labels = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    assert!(r.fits(&CelType::Int, &int, 0).is_ok());
    assert!(r.fits(&CelType::String, &int, 0).is_err());
    assert!(r.fits(&CelType::Dyn, &int, 0).is_ok());
    assert!(
        r.fits(&CelType::map(CelType::String, CelType::String), &labels, 0)
            .is_ok()
    );
    assert!(
        r.fits(&CelType::map(CelType::String, CelType::Int), &labels, 0)
            .is_err()
    );
    assert!(
        r.fits(
            &CelType::map(CelType::String, CelType::Dyn),
            &json!({ "type": "object", "properties": { "a": int } }),
            0
        )
        .is_ok()
    );
    let status = CelType::message("deployment.status");
    r.field_type("deployment", "status");
    let err = r
        .fits(
            &status,
            &json!({ "type": "object", "properties": { "replicas": { "type": "integer" } } }),
            0,
        )
        .unwrap_err();
    assert!(err.contains("does not exist in the expected type"), "{err}");
}

#[test]
fn a_status_schema_follows_the_expression_type() {
    let r = Registry::default();
    assert_eq!(r.status_schema(&CelType::Int), json!({ "type": "integer" }));
    assert_eq!(
        r.status_schema(&CelType::list(CelType::list(CelType::String))),
        json!({ "type": "array", "items": { "type": "array", "items": { "type": "string" } } })
    );
    assert_eq!(
        r.status_schema(&CelType::Dyn),
        json!({ "x-kubernetes-preserve-unknown-fields": true })
    );
    assert_eq!(
        r.status_schema(&CelType::map(CelType::String, CelType::Dyn)),
        json!({ "x-kubernetes-preserve-unknown-fields": true })
    );
    let _ = Arc::new(r);
}
