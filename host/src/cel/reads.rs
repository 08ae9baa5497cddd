//! What expressions read of their variables, merged into one tree of field paths per variable,
//! so a value is converted to CEL only as far as it is read.

use std::collections::{BTreeMap, HashMap};

use cel::common::{
    types::{CelMap, CelMapKey},
    value::Val,
};
use serde_json::Value as Json;

use super::{convert, inspect::References};

/// What a set of programs reads of each variable, as a tree of field paths: what a scope
/// converts to CEL values when it [reads](super::Scope::reading) only that.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reads(HashMap<String, Projection>);

/// The part of a value that is read: all of it, or some of its fields (each with the part of
/// it that is read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Projection {
    /// The whole value.
    Whole,
    /// These fields of an object.
    Fields(BTreeMap<String, Projection>),
}

impl Projection {
    /// Converts the part of `json` this names: an object keeps only the fields read (each
    /// converted as far as it is read); anything else is converted whole.
    pub(crate) fn to_val(&self, json: &Json) -> Box<dyn Val> {
        match (self, json) {
            (Self::Fields(fields), Json::Object(map)) => {
                let entries: HashMap<CelMapKey, Box<dyn Val>> = fields
                    .iter()
                    .filter_map(|(k, p)| map.get(k).map(|v| (CelMapKey::from(k.clone()), p.to_val(v))))
                    .collect();
                Box::new(CelMap::from(entries))
            }
            _ => convert::to_val(json),
        }
    }

    fn insert(&mut self, path: &[String]) {
        let Self::Fields(fields) = self else {
            return;
        };
        match path.split_first() {
            None => *self = Self::Whole,
            Some((head, rest)) => fields
                .entry(head.clone())
                .or_insert_with(|| Self::Fields(Default::default()))
                .insert(rest),
        }
    }
}

impl Reads {
    /// The union of what expressions with these references read. Every program evaluated in
    /// a scope [reading](super::Scope::reading) this must be among them: a field none of them
    /// reads is not there.
    pub(crate) fn of<'a>(references: impl IntoIterator<Item = &'a References>) -> Self {
        let mut reads = Self::default();
        for refs in references {
            for (variable, paths) in &refs.variables {
                let projection = reads
                    .0
                    .entry(variable.clone())
                    .or_insert_with(|| Projection::Fields(Default::default()));
                for path in paths {
                    projection.insert(path);
                }
            }
        }
        reads
    }

    /// What is read of `variable`; `None` when no program reads it.
    pub(crate) fn get(&self, variable: &str) -> Option<&Projection> {
        self.0.get(variable)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::cel::{Scope, engine};

    const EXPRESSIONS: &[&str] = &[
        "schema.spec.name",
        "has(schema.spec.tags) && !has(schema.spec.absent)",
        "schema.spec.?absent.orValue('fallback')",
        "size(schema.spec.tags)",
        "schema.spec.tags.map(t, t + '!')",
        "schema.spec.labels['a']",
        "schema.spec.labels.all(k, k != 'q')",
        "deployment.status.availableReplicas == schema.spec.replicas",
        "deployment.status.conditions.exists(c, c.type == 'Available')",
        "schema.metadata.name + '-' + schema.metadata.namespace",
    ];

    fn bind(scope: &mut Scope) {
        scope.set(
            "schema",
            json!({
                "metadata": {"name": "shop", "namespace": "prod", "uid": "u"},
                "spec": {"name": "web", "replicas": 3, "tags": ["b", "a"], "labels": {"a": "1", "z": "2"},
                         "unread": {"deep": [1, 2, 3]}}
            }),
        );
        scope.set(
            "deployment",
            json!({"spec": {"replicas": 3},
                   "status": {"availableReplicas": 3, "conditions": [{"type": "Available", "status": "True"}]}}),
        );
    }

    #[test]
    fn expressions_see_the_same_values_in_a_scope_that_converts_only_what_they_read() {
        let programs: Vec<_> = EXPRESSIONS.iter().map(|e| engine().compile(e).unwrap()).collect();
        let reads = Arc::new(Reads::of(programs.iter().map(|p| p.references())));
        let (mut full, mut projected) = (Scope::new(), Scope::reading(reads));
        bind(&mut full);
        bind(&mut projected);
        for p in &programs {
            let (want, got) = (p.eval(&full), p.eval(&projected));
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{}", p.source());
        }
        // A missing field is reported the same way.
        let missing = engine().compile("schema.spec.absent").unwrap();
        let reads = Arc::new(Reads::of([missing.references()]));
        let mut projected = Scope::reading(reads);
        bind(&mut projected);
        let mut full = Scope::new();
        bind(&mut full);
        assert_eq!(
            format!("{:?}", missing.eval(&projected)),
            format!("{:?}", missing.eval(&full))
        );
    }

    #[test]
    fn reads_keep_only_the_fields_on_a_read_path_and_the_whole_of_a_value_read_whole() {
        let programs: Vec<_> = ["schema.spec.name", "schema.spec.labels", "size(deployment)"]
            .iter()
            .map(|e| engine().compile(e).unwrap())
            .collect();
        let reads = Reads::of(programs.iter().map(|p| p.references()));
        let leaf = || Projection::Whole;
        assert_eq!(
            reads.get("schema"),
            Some(&Projection::Fields(BTreeMap::from([(
                "spec".to_string(),
                Projection::Fields(BTreeMap::from([
                    ("labels".to_string(), leaf()),
                    ("name".to_string(), leaf())
                ]))
            )])))
        );
        assert_eq!(reads.get("deployment"), Some(&Projection::Whole));
        assert_eq!(reads.get("service"), None);
    }
}
