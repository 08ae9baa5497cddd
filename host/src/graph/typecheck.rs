//! Type checking a graph, as kro's admission does: every expression checked against the schemas
//! of what it reads (`schema`, resource ids, forEach iterators, `each`), each template field's
//! result against the schema of the field it fills, `includeWhen`/`readyWhen` boolean, `forEach`
//! a list; and each status field given the CRD type of its expression. Messages are kro's.

use std::{collections::BTreeMap, sync::Arc};

use cel_core::types::CelType;
use serde_json::{Value, json};

use crate::cel::checker::{CheckFailure, Scope, Type, display};

use super::{
    catalog::{Catalog, KindSchema, nearest, object_root},
    model::{Error, Expr, Node, NodeKind, Part, StatusField, Step, path_string},
    types::{Registry, expected_at, schema_display},
};

/// What checking found: the CRD schema of each standalone status field, by its path.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Status field path (`a.b`) to its schema.
    pub(crate) status: BTreeMap<Vec<String>, Value>,
}

/// The `schema` variable: the instance without its status.
fn instance_root(spec_schema: &Value) -> Value {
    let mut root = object_root(json!({ "type": "object", "properties": {} }));
    root["properties"]["spec"] = spec_schema.clone();
    root
}

/// Checks every expression of `nodes` and `status`.
///
/// # Errors
/// The first expression that does not type-check or whose type does not fit where it is used,
/// or a resource whose kind is not served, with kro's wording.
pub(crate) fn check(
    nodes: &[Node],
    status: &[StatusField],
    conditions: &[crate::cel::Program],
    spec_schema: &Value,
    catalog: &Catalog,
) -> Result<Checked, Error> {
    let mut registry = Registry::default();
    registry.add_root("schema", Arc::new(instance_root(spec_schema)));
    let mut roots: BTreeMap<&str, Arc<Value>> = BTreeMap::new();
    for node in nodes {
        let Some((api_version, kind)) = node.static_kind() else {
            continue;
        };
        match catalog.lookup(api_version, kind) {
            KindSchema::Known(schema) => {
                registry.add_root(&node.id, schema.clone());
                roots.insert(&node.id, schema);
            }
            KindSchema::Unchecked => {}
            KindSchema::Unknown { near } => {
                let hint = near
                    .map(|n| format!(" (did you mean kind {n}?)"))
                    .unwrap_or_default();
                return Err(Error::KindNotFound {
                    id: node.id.clone(),
                    message: format!(
                        "failed to get schema for resource {}: cannot resolve group version kind \"{api_version}, Kind={kind}\": schema not found{hint}",
                        node.id
                    ),
                });
            }
        }
    }
    let registry = Arc::new(registry);
    let mut scope = Scope::new(registry.clone());
    scope.bind("schema", registry.root_type("schema"));
    for node in nodes {
        let ty = registry.root_type(&node.id);
        let listed = node.is_collection() || matches!(node.kind, NodeKind::External { selector: true });
        scope.bind(&node.id, if listed { CelType::list(ty) } else { ty });
    }
    let checker = Checker { registry: &registry };
    for node in nodes {
        checker.node(node, &scope, roots.get(node.id.as_str()).map(|r| r.as_ref()))?;
    }
    let mut checked = Checked::default();
    for field in status {
        let path = field.path.join(".");
        match &field.expr {
            Expr::Standalone(p) => {
                let ty = scope.check(p.source()).map_err(|f| {
                    Error::Type(format!("status {path:?}: {}", checker.explain(p.source(), &f)))
                })?;
                checked
                    .status
                    .insert(field.path.clone(), registry.status_schema(&ty));
            }
            Expr::Interpolated(parts) => {
                for p in programs(parts) {
                    let ty = scope.check(p.source()).map_err(|f| {
                        Error::Type(format!(
                            "status {path:?} {:?}: {}",
                            p.source(),
                            checker.explain(p.source(), &f)
                        ))
                    })?;
                    checker.string_part(&ty, p.source(), "status", &path)?;
                }
            }
        }
    }
    for (i, p) in conditions.iter().enumerate() {
        let ty = scope.check(p.source()).map_err(|f| {
            Error::Type(format!(
                "status.conditions[{i}]: {}",
                checker.explain(p.source(), &f)
            ))
        })?;
        let condition = CelType::map(CelType::String, CelType::String);
        let fits = ty == condition
            || ty == CelType::list(condition.clone())
            || matches!(ty, CelType::Dyn)
            || matches!(&ty, CelType::List(e) if matches!(**e, CelType::Dyn));
        if !fits {
            return Err(Error::Type(format!(
                "status.conditions[{i}]: expression {:?} must return a condition (runtime.newCondition) or a list of conditions, got {:?}",
                p.source(),
                display(&ty)
            )));
        }
    }
    Ok(checked)
}

fn programs(parts: &[Part]) -> impl Iterator<Item = &crate::cel::Program> {
    parts.iter().filter_map(|p| match p {
        Part::Expr(e) => Some(e),
        Part::Text(_) => None,
    })
}

struct Checker<'a> {
    registry: &'a Registry,
}

impl Checker<'_> {
    /// A check failure in words, naming the nearest field for a misspelled one.
    fn explain(&self, source: &str, failure: &CheckFailure) -> String {
        let hint = match failure {
            CheckFailure::UndefinedField { owner, field } => {
                let names = self.registry.field_names(owner);
                nearest(field, names.iter().map(String::as_str))
                    .map(|n| format!(" (did you mean '{n}'?)"))
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        format!("expression {source:?}: {failure}{hint}")
    }

    fn node(&self, node: &Node, scope: &Scope, root: Option<&Value>) -> Result<(), Error> {
        let id = &node.id;
        // forEach: lists; the iterators get their element types (in a scope of the node's own:
        // copying a scope costs, so only collections do).
        let mut iterators = None;
        for (name, program) in &node.for_each {
            let ty = scope.check(program.source()).map_err(|f| {
                Error::Type(format!(
                    "resource {id:?} forEach {name:?}: {}",
                    self.explain(program.source(), &f)
                ))
            })?;
            let elem = match &ty {
                CelType::List(e) => e.as_ref().clone(),
                CelType::Dyn => CelType::Dyn,
                other => {
                    return Err(Error::Type(format!(
                        "resource {id:?} forEach {name:?}: must return a list, got {:?}",
                        display(other)
                    )));
                }
            };
            iterators.get_or_insert_with(|| scope.clone()).bind(name, elem);
        }
        let fields_scope = iterators.as_ref().unwrap_or(scope);
        // Template fields: each result fits the field's schema.
        for field in &node.fields {
            let at = path_string(&field.path);
            match &field.expr {
                Expr::Standalone(p) => {
                    let ty = fields_scope.check(p.source()).map_err(|f| {
                        Error::Type(format!(
                            "resource {id:?} {at:?}: {}",
                            self.explain(p.source(), &f)
                        ))
                    })?;
                    let steps: Vec<Option<&str>> = field
                        .path
                        .iter()
                        .map(|s| match s {
                            Step::Key(k) => Some(k.as_str()),
                            Step::Index(_) => None,
                        })
                        .collect();
                    if let Some(expected) = root.and_then(|r| expected_at(r, &steps)) {
                        self.registry.fits(&ty, expected, 0).map_err(|reason| {
                            let reason = if reason.is_empty() { String::new() } else { format!(": {reason}") };
                            Error::Type(format!(
                                "type mismatch in resource {id:?} at path {at:?}: expression {:?} returns type {:?} but expected {:?}{reason}",
                                p.source(),
                                display(&ty),
                                schema_display(expected)
                            ))
                        })?;
                    }
                }
                Expr::Interpolated(parts) => {
                    for p in programs(parts) {
                        let ty = fields_scope.check(p.source()).map_err(|f| {
                            Error::Type(format!(
                                "resource {id:?} {at:?}: {}",
                                self.explain(p.source(), &f)
                            ))
                        })?;
                        self.string_part(&ty, p.source(), id, &at)?;
                    }
                }
            }
        }
        // includeWhen reads what the templates read; readyWhen the resource (`each` in a
        // collection).
        for p in &node.include_when {
            self.boolean(scope, p.source(), id, "includeWhen")?;
        }
        let each = (node.is_collection() && !node.ready_when.is_empty())
            .then(|| scope.with("each", self.registry.root_type(id)));
        for p in &node.ready_when {
            self.boolean(each.as_ref().unwrap_or(scope), p.source(), id, "readyWhen")?;
        }
        Ok(())
    }

    fn boolean(&self, scope: &Scope, source: &str, id: &str, what: &str) -> Result<(), Error> {
        let ty = scope.check(source).map_err(|f| {
            Error::Type(format!(
                "resource {id:?} {what} {source:?}: {}",
                self.explain(source, &f)
            ))
        })?;
        let ok = match &ty {
            CelType::Optional(inner) => matches!(inner.as_ref(), CelType::Bool | CelType::Dyn),
            t => matches!(t, CelType::Bool | CelType::Dyn),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Type(format!(
                "resource {id:?} {what} {source:?}: must return bool, got {:?}",
                display(&ty)
            )))
        }
    }

    /// An expression inside a string must return a string.
    fn string_part(&self, ty: &Type, source: &str, id: &str, at: &str) -> Result<(), Error> {
        match ty {
            CelType::String | CelType::Dyn | CelType::Null => Ok(()),
            CelType::Optional(inner) if matches!(inner.as_ref(), CelType::String | CelType::Dyn) => Ok(()),
            other => Err(Error::Type(format!(
                "type mismatch in resource {id:?} at path {at:?}: expression {source:?} returns type {:?} but expected \"string\"",
                display(other)
            ))),
        }
    }
}
