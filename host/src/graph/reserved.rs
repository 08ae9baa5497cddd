//! kro's reserved words and naming rules: resource ids, instance metadata a graph may not set,
//! reserved label prefixes and API groups, kind and version names.

use serde_json::Value;

/// Ids kro reserves for itself (plus CEL's reserved words).
pub(super) const RESERVED_IDS: &[&str] = &[
    "apiVersion",
    "context",
    "dependency",
    "dependencies",
    "each",
    "externalRef",
    "externalReference",
    "externalRefs",
    "externalReferences",
    "graph",
    "instance",
    "item",
    "items",
    "kind",
    "kro",
    "metadata",
    "namespace",
    "object",
    "resource",
    "resourcegraphdefinition",
    "resourceGraphDefinition",
    "resources",
    "root",
    "runtime",
    "schema",
    "self",
    "serviceAccountName",
    "spec",
    "status",
    "this",
    "variables",
    "vars",
    "version",
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "return",
    "var",
    "void",
    "while",
];

/// Metadata fields of the instance an expression may read through `schema.metadata`.
pub(super) const INSTANCE_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "labels",
    "annotations",
    "generation",
    "resourceVersion",
    "generateName",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
    "ownerReferences",
];

/// Label and annotation prefixes reserved for kro.
pub(super) const RESERVED_PREFIXES: [&str; 2] = ["kro.run/", "internal.kro.run/"];

pub(super) fn is_valid_id(id: &str) -> bool {
    crate::child::is_valid_id(id)
}

pub(super) fn kind_ok(kind: &str) -> bool {
    let mut chars = kind.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && kind.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric())
}

pub(super) fn version_ok(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            tail.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
}

pub(super) fn reserved_keys(object: &Value, what: &str) -> Result<(), String> {
    if let Some(map) = object
        .pointer(&format!("/metadata/{what}"))
        .and_then(Value::as_object)
    {
        for key in map.keys() {
            if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| key.starts_with(**p)) {
                return Err(format!(
                    "{what} with prefix {prefix:?} are reserved for internal use (found {key:?})"
                ));
            }
        }
    }
    Ok(())
}

/// Validates and compiles `rgd`.
///
/// # Errors
/// The first problem found, in kro's wording.
/// Whether a group is one of Kubernetes' own: `k8s.io`, `kubernetes.io` or a subdomain. A
/// CRD there is refused or never becomes Established (it needs an API-review approval).
pub(crate) fn reserved_group(group: &str) -> bool {
    ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|r| group == *r || group.ends_with(&format!(".{r}")))
}
