//! Small value types shared by transform and derive-status: keys, readiness, conditions, events.

use std::fmt;

use crate::bindings;

/// Names one child of an instance: the graph node `id` and, for a node expanded by `forEach`,
/// the item's `index`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The graph node id (`^[a-z][a-zA-Z0-9]*$`).
    pub id: String,
    /// `None` for a plain node, `Some(i)` for item `i` of a collection.
    pub index: Option<u32>,
}

impl Key {
    /// The key of a plain (non-collection) node.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            index: None,
        }
    }

    /// The key of item `index` of collection node `id`.
    pub fn item(id: impl Into<String>, index: u32) -> Self {
        Self {
            id: id.into(),
            index: Some(index),
        }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn from_wit(key: bindings::ChildKey) -> Self {
        Self {
            id: key.id,
            index: key.index,
        }
    }

    pub(crate) fn to_wit(&self) -> bindings::ChildKey {
        bindings::ChildKey {
            id: self.id.clone(),
            index: self.index,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// Checks a node id against `^[a-z][a-zA-Z0-9]*$`, the rule for RGD resource ids (shared with
/// the host through `kroxide-contract`).
pub use kroxide_contract::is_valid_id;

/// Whether a child, or the instance's resources as a whole, are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readiness {
    /// The plugin does not say; the host applies its own rule (the child exists).
    #[default]
    Unknown,
    /// Ready.
    Ready,
    /// Not ready yet.
    NotReady,
}

impl From<bool> for Readiness {
    fn from(ready: bool) -> Self {
        if ready { Self::Ready } else { Self::NotReady }
    }
}

impl Readiness {
    pub(crate) fn to_wit(self) -> bindings::Readiness {
        match self {
            Self::Unknown => bindings::Readiness::Unknown,
            Self::Ready => bindings::Readiness::Ready,
            Self::NotReady => bindings::Readiness::NotReady,
        }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn from_wit(r: bindings::Readiness) -> Self {
        match r {
            bindings::Readiness::Unknown => Self::Unknown,
            bindings::Readiness::Ready => Self::Ready,
            bindings::Readiness::NotReady => Self::NotReady,
        }
    }
}

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// `"Unknown"`.
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition the plugin adds to the instance's `status.conditions`.
///
/// The kro condition types (`Ready`, `InstanceManaged`, `GraphResolved`, `ResourcesReady`)
/// belong to the host; a plugin condition of one of those types is refused as invalid output.
/// The host stamps `lastTransitionTime` and `observedGeneration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// UpperCamelCase type, e.g. `Available`.
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// UpperCamelCase reason, e.g. `MinimumReplicasAvailable`.
    pub reason: String,
    /// A sentence for humans.
    pub message: String,
}

impl Condition {
    /// A condition of type `type_` with `status` (a `bool` or a [`ConditionStatus`]); the reason
    /// defaults to the status word (`True`/`False`/`Unknown`) until [`Condition::reason`] sets it.
    pub fn new(type_: impl Into<String>, status: impl Into<ConditionStatus>) -> Self {
        let status = status.into();
        let reason = match status {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        };
        Self {
            type_: type_.into(),
            status,
            reason: reason.to_string(),
            message: String::new(),
        }
    }

    /// Sets the reason.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Sets the message.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub(crate) fn to_wit(&self) -> bindings::Condition {
        bindings::Condition {
            type_: self.type_.clone(),
            status: match self.status {
                ConditionStatus::True => bindings::ConditionStatus::True,
                ConditionStatus::False => bindings::ConditionStatus::False,
                ConditionStatus::Unknown => bindings::ConditionStatus::Unknown,
            },
            reason: self.reason.clone(),
            message: self.message.clone(),
        }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn from_wit(c: bindings::Condition) -> Self {
        Self {
            type_: c.type_,
            status: match c.status {
                bindings::ConditionStatus::True => ConditionStatus::True,
                bindings::ConditionStatus::False => ConditionStatus::False,
                bindings::ConditionStatus::Unknown => ConditionStatus::Unknown,
            },
            reason: c.reason,
            message: c.message,
        }
    }
}

/// The severity of an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A `Normal` Kubernetes Event.
    Normal,
    /// A `Warning` Kubernetes Event.
    Warning,
}

/// A Kubernetes Event the host records on the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub severity: Severity,
    /// UpperCamelCase reason.
    pub reason: String,
    /// A sentence for humans.
    pub message: String,
    /// The child the event is about, if any.
    pub target: Option<Key>,
}

impl Event {
    /// A `Normal` event.
    pub fn normal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Normal,
            reason: reason.into(),
            message: message.into(),
            target: None,
        }
    }

    /// A `Warning` event.
    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            reason: reason.into(),
            message: message.into(),
            target: None,
        }
    }

    /// Names the child the event is about.
    #[must_use]
    pub fn about(mut self, key: Key) -> Self {
        self.target = Some(key);
        self
    }

    pub(crate) fn to_wit(&self) -> bindings::Event {
        bindings::Event {
            severity: match self.severity {
                Severity::Normal => bindings::Severity::Normal,
                Severity::Warning => bindings::Severity::Warning,
            },
            reason: self.reason.clone(),
            message: self.message.clone(),
            target: self.target.as_ref().map(Key::to_wit),
        }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn from_wit(e: bindings::Event) -> Self {
        Self {
            severity: match e.severity {
                bindings::Severity::Normal => Severity::Normal,
                bindings::Severity::Warning => Severity::Warning,
            },
            reason: e.reason,
            message: e.message,
            target: e.target.map(Key::from_wit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_rgd_resource_id_rule() {
        assert!(is_valid_id("deployment"));
        assert!(is_valid_id("pdb2"));
        assert!(is_valid_id("configMap"));
        assert!(!is_valid_id("Deployment"));
        assert!(!is_valid_id("my-service"));
        assert!(!is_valid_id("2pdb"));
        assert!(!is_valid_id(""));
    }

    #[test]
    fn keys_print_the_index_of_collection_items() {
        assert_eq!(Key::new("svc").to_string(), "svc");
        assert_eq!(Key::item("svc", 3).to_string(), "svc[3]");
    }

    #[test]
    fn a_condition_reason_defaults_to_its_status_word() {
        let c = Condition::new("Available", false);
        assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::False, "False"));
    }
}
