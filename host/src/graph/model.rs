//! The compiled graph: nodes in topological order with their expressions, status fields, the
//! instance kind's names and CRD, and the limits it was built with.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::{cel::Program, metadata, rgd::PluginSpec};

use super::{crd::KindNames, dag, simpleschema};
use crate::object::str_at;

/// What a graph may use: the limits of collections (`forEach`) and the feature gates that
/// change what a graph may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most items one collection may expand to (kro's `--rgd-max-collection-size`).
    pub max_collection_size: usize,
    /// Most `forEach` dimensions of one resource (kro's `--rgd-max-collection-dimension-size`).
    pub max_collection_dimensions: usize,
    /// `omit()` in template fields (the `CELOmitFunction` feature gate; off by default, as in kro).
    pub omit: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_collection_size: 1000,
            max_collection_dimensions: 10,
            omit: false,
        }
    }
}

/// Why an RGD is not a valid graph. The message follows kro's wording and names the resource,
/// the field path and the expression where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The RGD's own fields are wrong.
    #[error("failed to validate resourcegraphdefinition: {0}")]
    Validation(String),
    /// The instance schema is not valid SimpleSchema.
    #[error("failed to build OpenAPI schema for instance: {0}")]
    Schema(#[from] simpleschema::Error),
    /// A resource is wrong.
    #[error("failed to build resource {id:?}: {message}")]
    Resource {
        /// The resource id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// A resource's kind is not served (kro's wording: its schema is not found).
    #[error("failed to build resource {id:?}: {message}")]
    KindNotFound {
        /// The resource id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The dependency graph has a cycle.
    #[error("failed to build dependency graph: {0}")]
    Cycle(#[from] dag::CycleError),
    /// A status field is wrong.
    #[error("failed to build instance status schema: {0}")]
    Status(String),
    /// An expression does not type-check, or its type does not fit where it is used.
    #[error("{0}")]
    Type(String),
}

/// A step of a field path: an object key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    /// Object key.
    Key(String),
    /// List index.
    Index(usize),
}

/// Prints a path as kro does: `spec.template.spec.containers[0].image`.
pub(crate) fn path_string(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A compiled `${...}` string.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// The whole string is one expression: any type.
    Standalone(Program),
    /// Text and expressions, each expression yielding a string.
    Interpolated(Vec<Part>),
}

/// A piece of an interpolated string.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// Literal text.
    Text(String),
    /// An expression.
    Expr(Program),
}

impl Expr {
    /// The compiled expressions.
    pub(crate) fn programs(&self) -> Vec<&Program> {
        match self {
            Self::Standalone(p) => vec![p],
            Self::Interpolated(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Expr(e) => Some(e),
                    Part::Text(_) => None,
                })
                .collect(),
        }
    }
}

/// A field of a template holding expressions.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// Where in the object.
    pub(crate) path: Vec<Step>,
    /// What to put there.
    pub(crate) expr: Expr,
    /// Whether it calls `omit()`: only such fields are looked at for omitted values when
    /// an object is filled.
    pub(crate) omits: bool,
}

/// What a node is.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// A resource kroxide creates.
    Template,
    /// An existing object kroxide only reads.
    External {
        /// Whether it selects by label (a list) rather than by name.
        selector: bool,
    },
}

/// A resource of the graph.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Its id.
    pub(crate) id: String,
    /// Template or external reference.
    pub(crate) kind: NodeKind,
    /// The object (template or externalRef) with expressions still in place.
    pub(crate) object: Value,
    /// The fields holding expressions.
    pub(crate) fields: Vec<Field>,
    /// `includeWhen`, all must hold.
    pub(crate) include_when: Vec<Program>,
    /// `readyWhen`, all must hold.
    pub(crate) ready_when: Vec<Program>,
    /// `forEach` dimensions in order.
    pub(crate) for_each: Vec<(String, Program)>,
    /// Ids of the resources it depends on.
    pub(crate) dependencies: BTreeSet<String>,
}

impl Node {
    /// Whether `forEach` expands it into a collection.
    pub(crate) fn is_collection(&self) -> bool {
        !self.for_each.is_empty()
    }

    /// Whether it is an external reference.
    pub(crate) fn is_external(&self) -> bool {
        matches!(self.kind, NodeKind::External { .. })
    }

    /// The `apiVersion` and `kind` it names, unless either is an expression (then they are
    /// known per instance only).
    pub(crate) fn static_kind(&self) -> Option<(&str, &str)> {
        static_kind(&self.object)
    }
}

/// The `apiVersion` and `kind` a template or externalRef names, unless either is an expression.
pub(crate) fn static_kind(object: &Value) -> Option<(&str, &str)> {
    let (api_version, kind) = (str_at(object, "/apiVersion"), str_at(object, "/kind"));
    (!api_version.contains("${") && !kind.contains("${")).then_some((api_version, kind))
}

/// A status field computed from an expression.
#[derive(Debug, Clone)]
pub(crate) struct StatusField {
    /// Path under `status`.
    pub(crate) path: Vec<String>,
    /// The expression.
    pub(crate) expr: Expr,
}

/// A compiled graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// RGD name.
    pub(crate) name: String,
    /// Names of the generated kind.
    pub(crate) names: KindNames,
    /// The generated CRD.
    pub(crate) crd: Value,
    /// OpenAPI schema of the instance's `spec`.
    pub(crate) spec_schema: Value,
    /// Nodes in topological order.
    pub(crate) nodes: Vec<Node>,
    /// CEL status fields.
    pub(crate) status: Vec<StatusField>,
    /// The author's conditions (`status.conditions`), each returning a condition or a list of
    /// them. When there are any, they alone are written to `status.conditions`.
    pub(crate) conditions: Vec<Program>,
    /// The plugin, if any.
    pub(crate) plugin: Option<PluginSpec>,
    /// Copy the instance's labels to children.
    pub(crate) propagate_labels: metadata::Propagation,
    /// Collection limits.
    pub(crate) limits: Limits,
    /// What the programs resolution evaluates read of each variable (see
    /// [`Graph::resolve_reads`]).
    pub(crate) reads: std::sync::Arc<crate::cel::Reads>,
}

impl Graph {
    /// The CustomResourceDefinition of the graph's kind.
    pub fn crd(&self) -> &Value {
        &self.crd
    }

    /// The RGD's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many CEL programs the graph compiled: template fields, `readyWhen`, `includeWhen`
    /// and status fields.
    pub fn expression_count(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                n.fields.iter().map(|f| f.expr.programs().len()).sum::<usize>()
                    + n.ready_when.len()
                    + n.include_when.len()
            })
            .sum::<usize>()
            + self.status.iter().map(|f| f.expr.programs().len()).sum::<usize>()
    }

    /// What resolution's programs read: template and externalRef fields, `includeWhen`,
    /// `readyWhen`, `forEach` and status fields (the author's conditions are evaluated in a
    /// scope of their own).
    pub(crate) fn resolve_reads(nodes: &[Node], status: &[StatusField]) -> crate::cel::Reads {
        let fields = nodes
            .iter()
            .flat_map(|n| &n.fields)
            .map(|f| &f.expr)
            .chain(status.iter().map(|f| &f.expr))
            .flat_map(Expr::programs);
        let conditions = nodes.iter().flat_map(|n| {
            n.include_when
                .iter()
                .chain(&n.ready_when)
                .chain(n.for_each.iter().map(|(_, p)| p))
        });
        crate::cel::Reads::of(fields.chain(conditions).map(crate::cel::Program::references))
    }

    /// Node ids in topological order.
    pub fn topological_order(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// The `internal.kro.run/apply-order` of each node, as kro numbers it: nodes are grouped into
    /// layers, dependents before their dependencies (a node is in the layer after the last of
    /// its dependents), and the layers are numbered from the last, which is 1. A child's order
    /// is its deletion wave: the highest goes first. externalRefs take part (they are layers
    /// too) although nothing of theirs is ever deleted.
    pub fn apply_orders(&self) -> BTreeMap<String, usize> {
        // Height: how many layers of dependents stand above a node. Nodes are in topological
        // order, so every dependent of a node comes after it.
        let mut height: BTreeMap<&str, usize> = BTreeMap::new();
        for node in self.nodes.iter().rev() {
            let above = self
                .nodes
                .iter()
                .filter(|m| m.dependencies.contains(&node.id))
                .filter_map(|m| height.get(m.id.as_str()))
                .map(|h| h + 1)
                .max()
                .unwrap_or(0);
            height.insert(&node.id, above);
        }
        let layers = height.values().max().map_or(0, |h| h + 1);
        height
            .into_iter()
            .map(|(id, h)| (id.to_string(), layers - h))
            .collect()
    }

    /// `status.resources` of the RGD: resources with dependencies, as kro lists them.
    pub(crate) fn resources_status(&self) -> Value {
        Value::Array(
            self.nodes
                .iter()
                .filter(|n| !n.dependencies.is_empty())
                .map(|n| json!({ "id": n.id, "dependencies": n.dependencies.iter().map(|d| json!({ "id": d })).collect::<Vec<_>>() }))
                .collect(),
        )
    }

    /// The node with this id.
    pub(crate) fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}
