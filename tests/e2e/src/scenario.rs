//! The pinned subset of Chainsaw's `Test` format (`chainsaw.kyverno.io/v1alpha1`) this runner
//! executes. Unknown fields and operations are errors, so a scenario never silently does less
//! than it says.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;
use serde_json::Value;

/// A scenario that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a valid Test.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the field.
        message: String,
    },
}

/// `metadata`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Test name.
    pub name: String,
    /// Labels (informational).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (informational).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.timeouts`: Go duration strings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// For `apply` / `create` / `patch`.
    pub apply: Option<String>,
    /// For `assert`.
    pub assert: Option<String>,
    /// For cleanup at the end.
    pub cleanup: Option<String>,
    /// For `delete`.
    pub delete: Option<String>,
    /// For `error`.
    pub error: Option<String>,
    /// For `script`.
    pub exec: Option<String>,
}

/// A Test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Test {
    /// Must be `chainsaw.kyverno.io/v1alpha1`.
    pub api_version: String,
    /// Must be `Test`.
    pub kind: String,
    /// Name.
    pub metadata: Metadata,
    /// The steps.
    pub spec: Spec,
}

/// `spec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Skip this test.
    #[serde(default)]
    pub skip: bool,
    /// `false` runs the test alone, not beside others.
    #[serde(default)]
    pub concurrent: Option<bool>,
    /// Per-operation timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One step: `try` operations, `catch` ones run on failure, `finally` ones always.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Operations.
    #[serde(rename = "try", default)]
    pub try_: Vec<Operation>,
    /// Run when a `try` operation fails.
    #[serde(default)]
    pub catch: Vec<Operation>,
    /// Run always.
    #[serde(default)]
    pub finally: Vec<Operation>,
}

/// A file or inline resource operation (`apply`, `create`, `assert`, `error`, `patch`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOp {
    /// A file relative to the test directory.
    #[serde(default)]
    pub file: Option<String>,
    /// An inline resource.
    #[serde(default)]
    pub resource: Option<Value>,
    /// Overrides the spec timeout.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// An object reference for `delete`, `wait` and catch operations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectRef {
    /// apiVersion.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Name (all objects of the kind in the namespace when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace (the test's namespace when absent).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `delete`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteOp {
    /// By reference.
    #[serde(rename = "ref", default)]
    pub reference: Option<ObjectRef>,
    /// By file.
    #[serde(default)]
    pub file: Option<String>,
    /// Overrides the spec timeout.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `wait.for.condition`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitCondition {
    /// Condition type.
    pub name: String,
    /// Expected status (default `true`).
    #[serde(default)]
    pub value: Option<String>,
}

/// `wait.for.jsonPath`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitJsonPath {
    /// kubectl JSONPath, e.g. `{.status.phase}`.
    pub path: String,
    /// Expected value.
    pub value: String,
}

/// `wait.for`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaitFor {
    /// A condition.
    #[serde(default)]
    pub condition: Option<WaitCondition>,
    /// A JSONPath value.
    #[serde(default)]
    pub json_path: Option<WaitJsonPath>,
    /// Deletion.
    #[serde(default)]
    pub deletion: Option<Value>,
}

/// `wait`, as `kubectl wait`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaitOp {
    /// apiVersion.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Name (every object of the kind when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// What to wait for.
    #[serde(rename = "for")]
    pub for_: WaitFor,
}

/// An environment variable of a script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// `script`: bash with `$NAMESPACE` and `$KUBECONFIG` set; fails on a non-zero exit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScriptOp {
    /// The script.
    pub content: String,
    /// Extra environment.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Do not print the output.
    #[serde(default)]
    pub skip_log_output: bool,
}

/// `sleep`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepOp {
    /// Go duration.
    pub duration: String,
}

/// One operation; exactly one field is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// `kubectl apply`.
    pub apply: Option<FileOp>,
    /// `kubectl create`.
    pub create: Option<FileOp>,
    /// Poll until the objects match.
    pub assert: Option<FileOp>,
    /// Poll until the objects are absent or do not match.
    pub error: Option<FileOp>,
    /// `kubectl delete`, waiting until gone.
    pub delete: Option<DeleteOp>,
    /// `kubectl patch --type merge`.
    pub patch: Option<FileOp>,
    /// `kubectl wait`.
    pub wait: Option<WaitOp>,
    /// A bash script.
    pub script: Option<ScriptOp>,
    /// A pause.
    pub sleep: Option<SleepOp>,
    /// Catch only: `kubectl get -o yaml`.
    pub get: Option<ObjectRef>,
    /// Catch only: `kubectl describe`.
    pub describe: Option<ObjectRef>,
    /// Catch only: the namespace's events.
    pub events: Option<Value>,
    /// Catch only: pod logs (no pods run here: skipped with a note).
    pub pod_logs: Option<Value>,
}

impl Operation {
    /// The operation's name, for messages.
    pub fn name(&self) -> &'static str {
        let named: [(&'static str, bool); 13] = [
            ("apply", self.apply.is_some()),
            ("create", self.create.is_some()),
            ("assert", self.assert.is_some()),
            ("error", self.error.is_some()),
            ("delete", self.delete.is_some()),
            ("patch", self.patch.is_some()),
            ("wait", self.wait.is_some()),
            ("script", self.script.is_some()),
            ("sleep", self.sleep.is_some()),
            ("get", self.get.is_some()),
            ("describe", self.describe.is_some()),
            ("events", self.events.is_some()),
            ("podLogs", self.pod_logs.is_some()),
        ];
        named
            .iter()
            .find(|(_, set)| *set)
            .map(|(n, _)| *n)
            .unwrap_or("(none)")
    }

    fn count(&self) -> usize {
        [
            self.apply.is_some(),
            self.create.is_some(),
            self.assert.is_some(),
            self.error.is_some(),
            self.delete.is_some(),
            self.patch.is_some(),
            self.wait.is_some(),
            self.script.is_some(),
            self.sleep.is_some(),
            self.get.is_some(),
            self.describe.is_some(),
            self.events.is_some(),
            self.pod_logs.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count()
    }
}

/// Parses a Go duration: `30s`, `1m30s`, `500ms`, `2h`.
pub fn duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let value: f64 = n.parse().ok()?;
        rest = &rest[n.len()..];
        let unit: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        rest = &rest[unit.len()..];
        let factor = match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * factor;
    }
    Some(Duration::from_secs_f64(total))
}

fn check_op(op: &Operation, place: &str, catch: bool) -> Result<(), String> {
    match op.count() {
        1 => {}
        0 => return Err(format!("{place}: no operation set")),
        _ => return Err(format!("{place}: more than one operation set")),
    }
    let name = op.name();
    if !catch && matches!(name, "get" | "describe" | "events" | "podLogs") {
        return Err(format!(
            "{place}: `{name}` is only supported in `catch` and `finally`"
        ));
    }
    for (field, file_op) in [
        ("apply", &op.apply),
        ("create", &op.create),
        ("assert", &op.assert),
        ("error", &op.error),
        ("patch", &op.patch),
    ] {
        if let Some(f) = file_op
            && f.file.is_some() == f.resource.is_some()
        {
            return Err(format!(
                "{place}.{field}: exactly one of `file` and `resource` is required"
            ));
        }
    }
    if let Some(d) = &op.delete
        && d.file.is_some() == d.reference.is_some()
    {
        return Err(format!(
            "{place}.delete: exactly one of `ref` and `file` is required"
        ));
    }
    if let Some(w) = &op.wait {
        let set = [
            w.for_.condition.is_some(),
            w.for_.json_path.is_some(),
            w.for_.deletion.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(format!(
                "{place}.wait.for: exactly one of `condition`, `jsonPath`, `deletion` is required"
            ));
        }
    }
    for t in [
        op.apply.as_ref().and_then(|o| o.timeout.as_deref()),
        op.assert.as_ref().and_then(|o| o.timeout.as_deref()),
        op.error.as_ref().and_then(|o| o.timeout.as_deref()),
        op.wait.as_ref().and_then(|o| o.timeout.as_deref()),
        op.sleep.as_ref().map(|o| o.duration.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        if duration(t).is_none() {
            return Err(format!("{place}.{name}: invalid duration {t:?}"));
        }
    }
    Ok(())
}

impl Test {
    /// Reads and checks `chainsaw-test.yaml` in `dir`.
    ///
    /// # Errors
    /// An unreadable file, YAML that is not a Test, an unknown field or operation, or an
    /// operation missing what it needs.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("chainsaw-test.yaml");
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        let invalid = |message: String| Error::Invalid {
            path: shown.clone(),
            message,
        };
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let test: Test = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        if test.api_version != "chainsaw.kyverno.io/v1alpha1" || test.kind != "Test" {
            return Err(invalid(format!(
                "expected apiVersion chainsaw.kyverno.io/v1alpha1 and kind Test, got {}/{}",
                test.api_version, test.kind
            )));
        }
        let t = &test.spec.timeouts;
        for (name, v) in [
            ("apply", &t.apply),
            ("assert", &t.assert),
            ("cleanup", &t.cleanup),
            ("delete", &t.delete),
            ("error", &t.error),
            ("exec", &t.exec),
        ] {
            if let Some(v) = v
                && duration(v).is_none()
            {
                return Err(invalid(format!("spec.timeouts.{name}: invalid duration {v:?}")));
            }
        }
        for (i, step) in test.spec.steps.iter().enumerate() {
            for (kind, ops, catch) in [
                ("try", &step.try_, false),
                ("catch", &step.catch, true),
                ("finally", &step.finally, true),
            ] {
                for (j, op) in ops.iter().enumerate() {
                    check_op(op, &format!("spec.steps[{i}].{kind}[{j}]"), catch).map_err(invalid)?;
                }
            }
        }
        Ok(test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("2x"), None);
        assert_eq!(duration(""), None);
    }

    fn load(yaml: &str) -> Result<Test, Error> {
        let dir =
            std::env::temp_dir().join(format!("kroxide-scenario-{}-{}", std::process::id(), yaml.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("chainsaw-test.yaml"), yaml).unwrap();
        let r = Test::load(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn a_valid_test_loads() {
        let t = load("apiVersion: chainsaw.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\nspec:\n  steps:\n  - try:\n    - apply: {file: a.yaml}\n    - assert: {file: b.yaml, timeout: 10s}\n    catch:\n    - podLogs: {}\n").unwrap();
        assert_eq!(t.spec.steps[0].try_[1].name(), "assert");
    }

    #[test]
    fn unknown_fields_and_operations_are_errors() {
        let unknown_op = load("apiVersion: chainsaw.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\nspec:\n  steps:\n  - try:\n    - command: {entrypoint: ls}\n").unwrap_err();
        assert!(
            unknown_op.to_string().contains("unknown field `command`"),
            "{unknown_op}"
        );
        let unknown_field = load("apiVersion: chainsaw.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\nspec:\n  steps:\n  - try:\n    - apply: {file: a.yaml, expect: []}\n").unwrap_err();
        assert!(
            unknown_field.to_string().contains("unknown field `expect`"),
            "{unknown_field}"
        );
        let two = load("apiVersion: chainsaw.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\nspec:\n  steps:\n  - try:\n    - apply: {file: a.yaml}\n      assert: {file: a.yaml}\n").unwrap_err();
        assert!(
            two.to_string()
                .contains("spec.steps[0].try[0]: more than one operation set"),
            "{two}"
        );
        let catch_only = load("apiVersion: chainsaw.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\nspec:\n  steps:\n  - try:\n    - events: {}\n").unwrap_err();
        assert!(
            catch_only.to_string().contains("only supported in `catch`"),
            "{catch_only}"
        );
    }
}
