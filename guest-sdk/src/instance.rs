//! Read access to the instance the call is about.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result, decode};

/// The instance: the full object as the API server stores it (schema defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    object: Value,
}

impl Instance {
    /// Wraps a JSON object. Any JSON value is accepted; accessors return empty values for
    /// missing fields.
    pub fn from_value(object: Value) -> Self {
        Self { object }
    }

    /// The whole object.
    pub fn value(&self) -> &Value {
        &self.object
    }

    /// A value by JSON pointer (RFC 6901), e.g. `/spec/service/port`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.object.pointer(pointer)
    }

    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer).and_then(Value::as_str)
    }

    /// `metadata.name`, or `""`.
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or_default()
    }

    /// `metadata.namespace`; `None` for cluster-scoped instances.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace").filter(|ns| !ns.is_empty())
    }

    /// `metadata.uid`, or `""` (offline renders use a fixed placeholder).
    pub fn uid(&self) -> &str {
        self.str_at("/metadata/uid").unwrap_or_default()
    }

    /// `metadata.generation`, or 0.
    pub fn generation(&self) -> i64 {
        self.object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or_default()
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or_default()
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or_default()
    }

    /// `metadata.labels` (string values only).
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(self.object.pointer("/metadata/labels"))
    }

    /// `metadata.annotations` (string values only).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        string_map(self.object.pointer("/metadata/annotations"))
    }

    /// `spec` as JSON (`null` when absent).
    pub fn spec_value(&self) -> &Value {
        self.object.get("spec").unwrap_or(&Value::Null)
    }

    /// `spec` decoded into your type.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first field that does not fit, e.g.
    /// `spec.size: unknown variant "huge", expected one of "small", "medium", "large"`.
    pub fn spec<T: DeserializeOwned>(&self) -> Result<T> {
        let empty = crate::de::empty_object();
        decode(self.object.get("spec").unwrap_or(&empty), "spec").map_err(Error::InvalidInput)
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn instance() -> Instance {
        Instance::from_value(json!({
            "apiVersion": "kro.run/v1alpha1", "kind": "WebApp",
            "metadata": {"name": "shop", "namespace": "prod", "uid": "u-1", "generation": 3,
                         "labels": {"team": "a", "n": 1}},
            "spec": {"replicas": 2}
        }))
    }

    #[test]
    fn metadata_accessors_read_the_object() {
        let i = instance();
        assert_eq!(
            (i.name(), i.namespace(), i.uid(), i.generation()),
            ("shop", Some("prod"), "u-1", 3)
        );
        assert_eq!(
            i.labels(),
            BTreeMap::from([("team".to_string(), "a".to_string())])
        );
        assert_eq!(i.kind(), "WebApp");
    }

    #[test]
    fn spec_decoding_names_the_field_at_fault() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Spec {
            replicas: String,
        }
        let err = instance().spec::<Spec>().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.starts_with("spec.replicas: invalid type")),
            "{err}"
        );
    }
}
