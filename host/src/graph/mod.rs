//! The graph revision: a ResourceGraphDefinition validated and compiled once (schema, CRD,
//! nodes in topological order with their expressions), ready to resolve instances.
//!
//! Everything that can be known without a cluster is checked here, with kro's wording: ids and
//! reserved words, templates, reserved labels, every expression (syntax, functions, variables,
//! `schema.*` paths), `forEach` identity, dependencies and cycles, status fields.

pub(crate) mod compat;
pub mod crd;
pub mod dag;
pub(crate) mod pluralize;
pub mod runtime;
pub mod simpleschema;

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::{
    cel::{self, Program, template::Template},
    metadata,
    rgd::{PluginSpec, ResourceGraphDefinition},
};

/// Limits of collections (`forEach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most items one collection may expand to (kro's `--rgd-max-collection-size`).
    pub max_collection_size: usize,
    /// Most `forEach` dimensions of one resource (kro's `--rgd-max-collection-dimension-size`).
    pub max_collection_dimensions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_collection_size: 1000,
            max_collection_dimensions: 10,
        }
    }
}

/// Ids kro reserves for itself (plus CEL's reserved words).
const RESERVED_IDS: &[&str] = &[
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
const INSTANCE_METADATA: &[&str] = &[
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
const RESERVED_PREFIXES: [&str; 2] = ["kro.run/", "internal.kro.run/"];

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
    /// The dependency graph has a cycle.
    #[error("failed to build dependency graph: {0}")]
    Cycle(#[from] dag::CycleError),
    /// A status field is wrong.
    #[error("failed to build instance status schema: {0}")]
    Status(String),
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
    pub(crate) names: crd::KindNames,
    /// The generated CRD.
    pub(crate) crd: Value,
    /// OpenAPI schema of the instance's `spec`.
    pub(crate) spec_schema: Value,
    /// Nodes in topological order.
    pub(crate) nodes: Vec<Node>,
    /// CEL status fields.
    pub(crate) status: Vec<StatusField>,
    /// The plugin, if any.
    pub(crate) plugin: Option<PluginSpec>,
    /// Copy the instance's labels to children.
    pub(crate) propagate_labels: metadata::Propagation,
    /// Collection limits.
    pub(crate) limits: Limits,
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

    /// Node ids in topological order.
    pub fn topological_order(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
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

fn is_valid_id(id: &str) -> bool {
    crate::child::is_valid_id(id)
}

fn kind_ok(kind: &str) -> bool {
    let mut chars = kind.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && kind.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric())
}

fn version_ok(version: &str) -> bool {
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

/// Collects every string holding `${` in a template, with its path.
fn collect_fields(
    value: &Value,
    path: &mut Vec<Step>,
    out: &mut Vec<(Vec<Step>, String)>,
) -> Result<(), String> {
    match value {
        Value::String(s) if s.contains("${") => out.push((path.clone(), s.clone())),
        Value::Object(map) => {
            for (k, v) in map {
                if k.contains("${") {
                    return Err(format!(
                        "expressions in map keys are not supported: {:?} at {}",
                        k,
                        path_string(path)
                    ));
                }
                path.push(Step::Key(k.clone()));
                collect_fields(v, path, out)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Step::Index(i));
                collect_fields(v, path, out)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn compile_expr(text: &str) -> Result<Expr, String> {
    let template = Template::parse(text).map_err(|e| e.to_string())?;
    let compile = |src: &str| {
        cel::engine()
            .compile(src)
            .map_err(|e| format!("expression {src:?}: {e}"))
    };
    if let Some(src) = template.standalone() {
        return Ok(Expr::Standalone(compile(src)?));
    }
    let parts = template
        .segments
        .iter()
        .map(|s| match s {
            cel::template::Segment::Text(t) => Ok(Part::Text(t.clone())),
            cel::template::Segment::Expr(e) => compile(e).map(Part::Expr),
        })
        .collect::<Result<_, String>>()?;
    Ok(Expr::Interpolated(parts))
}

/// A condition entry (`includeWhen`, `readyWhen`, `forEach`): exactly one standalone expression.
fn compile_condition(text: &str, what: &str) -> Result<Program, String> {
    let template = Template::parse(text).map_err(|e| format!("{what}: {e}"))?;
    let Some(src) = template.standalone() else {
        return Err(format!(
            "{what} {text:?} must be a single standalone expression ${{...}}"
        ));
    };
    cel::engine()
        .compile(src)
        .map_err(|e| format!("{what} expression {src:?}: {e}"))
}

/// What an expression may refer to.
struct Allowed<'a> {
    schema: bool,
    resources: &'a BTreeSet<String>,
    extra: &'a [&'a str],
    myself: Option<&'a str>,
}

/// Checks the variables and `schema.*` paths of `program`; returns the resource ids it uses.
fn check_references(
    program: &Program,
    allowed: &Allowed<'_>,
    spec_schema: &Value,
) -> Result<BTreeSet<String>, String> {
    let mut deps = BTreeSet::new();
    let mut unknown = Vec::new();
    for (var, paths) in &program.references().variables {
        if var == "schema" && allowed.schema {
            for path in paths {
                check_schema_path(path, spec_schema)
                    .map_err(|m| format!("expression {:?}: {m}", program.source()))?;
            }
        } else if allowed.extra.contains(&var.as_str()) {
        } else if allowed.myself == Some(var.as_str()) {
            return Err(format!(
                "expression {:?}: self references are not allowed",
                program.source()
            ));
        } else if allowed.resources.contains(var) {
            deps.insert(var.clone());
        } else {
            unknown.push(var.clone());
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "expression {:?}: references unknown identifiers: [{}]",
            program.source(),
            unknown.join(" ")
        ));
    }
    Ok(deps)
}

/// Checks that `schema.<path>` exists in the instance schema.
fn check_schema_path(path: &[String], spec_schema: &Value) -> Result<(), String> {
    let printed = || format!("schema.{}", path.join("."));
    let Some(first) = path.first() else { return Ok(()) };
    match first.as_str() {
        "apiVersion" | "kind" => Ok(()),
        "metadata" => match path.get(1) {
            None => Ok(()),
            Some(f) if INSTANCE_METADATA.contains(&f.as_str()) => Ok(()),
            Some(_) => Err(format!(
                "references {}, which instance metadata does not have",
                printed()
            )),
        },
        "spec" => {
            let mut node = spec_schema;
            for (i, seg) in path[1..].iter().enumerate() {
                if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                    return Ok(());
                }
                if let Some(props) = node.get("properties").and_then(Value::as_object) {
                    match props.get(seg) {
                        Some(next) => node = next,
                        None => {
                            return Err(format!(
                                "references {}, which the instance schema does not define",
                                printed()
                            ));
                        }
                    }
                } else if let Some(ap) = node.get("additionalProperties") {
                    node = ap;
                } else if node.get("type").and_then(Value::as_str) == Some("array") {
                    let at = path[..i + 2].join(".");
                    return Err(format!(
                        "references schema.{at}: schema.{} is a list; select an item first",
                        path[..i + 1].join(".")
                    ));
                } else {
                    return Err(format!(
                        "references {}, which the instance schema does not define",
                        printed()
                    ));
                }
            }
            Ok(())
        }
        "status" => Err(format!(
            "references {}: the instance status is not readable from expressions",
            printed()
        )),
        _ => Err(format!(
            "references {}, which the instance does not have",
            printed()
        )),
    }
}

fn reserved_keys(object: &Value, what: &str) -> Result<(), String> {
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

pub fn build(rgd: &ResourceGraphDefinition, limits: Limits) -> Result<Graph, Error> {
    let schema = &rgd.spec.schema;
    if !kind_ok(&schema.kind) {
        return Err(Error::Validation(format!(
            "kind {:?} is not a valid kind name: must be UpperCamelCase and match ^[A-Z][a-zA-Z0-9]{{0,62}}$",
            schema.kind
        )));
    }
    if reserved_group(schema.group()) {
        return Err(Error::Validation(format!(
            "spec.schema.group {:?} is reserved for Kubernetes (k8s.io, kubernetes.io and their subdomains): \
             kube-apiserver serves no CustomResourceDefinition there; choose a group of your own",
            schema.group()
        )));
    }
    if !version_ok(&schema.api_version) {
        return Err(Error::Validation(format!(
            "apiVersion {:?} is not valid: must match ^v[0-9]+(alpha[0-9]+|beta[0-9]+)?$",
            schema.api_version
        )));
    }

    // Instance schema.
    let transformer = simpleschema::Transformer::with_types(schema.types.as_ref())?;
    let spec_schema = match &schema.spec {
        Some(spec) if !spec.is_null() => transformer.object("spec", spec, true)?,
        _ => json!({ "type": "object", "properties": {} }),
    };

    // Resource ids.
    let mut ids = BTreeSet::new();
    for r in &rgd.spec.resources {
        if !is_valid_id(&r.id) {
            return Err(Error::Validation(format!(
                "id {} is not a valid KRO resource id: must be lower camelCase",
                r.id
            )));
        }
        if RESERVED_IDS.contains(&r.id.as_str()) {
            return Err(Error::Validation(format!(
                "id {} is a reserved keyword in KRO",
                r.id
            )));
        }
        if !ids.insert(r.id.clone()) {
            return Err(Error::Validation(format!(
                "found resources with duplicate id {:?}",
                r.id
            )));
        }
    }

    let mut nodes = Vec::new();
    for r in &rgd.spec.resources {
        let node = build_node(r, &ids, &spec_schema, limits).map_err(|message| Error::Resource {
            id: r.id.clone(),
            message,
        })?;
        nodes.push(node);
    }

    // Order.
    let id_list: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let deps: Vec<BTreeSet<usize>> = nodes
        .iter()
        .map(|n| {
            n.dependencies
                .iter()
                .filter_map(|d| id_list.iter().position(|x| x == d))
                .collect()
        })
        .collect();
    let order = dag::topological_order(&id_list, &deps)?;
    let mut ordered: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let nodes: Vec<Node> = order
        .iter()
        .map(|&i| ordered[i].take().expect("each index once"))
        .collect();

    // Status.
    let (status, status_schema) = build_status(rgd, &ids, &spec_schema, &transformer)?;
    let names = crd::KindNames::of(rgd);
    let crd = crd::instance_crd(rgd, &names, spec_schema.clone(), status_schema);
    Ok(Graph {
        name: rgd.name().to_string(),
        names,
        crd,
        spec_schema,
        nodes,
        status,
        plugin: rgd.spec.plugin.clone(),
        propagate_labels: metadata::Propagation::parse(
            rgd.metadata
                .annotations
                .get(metadata::PROPAGATE_LABELS)
                .map(String::as_str),
        )
        .map_err(Error::Validation)?,
        limits,
    })
}

fn build_node(
    r: &crate::rgd::Resource,
    ids: &BTreeSet<String>,
    spec_schema: &Value,
    limits: Limits,
) -> Result<Node, String> {
    let (object, kind) = match (&r.template, &r.external_ref) {
        (Some(t), None) => (t.clone(), NodeKind::Template),
        (None, Some(e)) => {
            let selector = e.pointer("/metadata/selector").is_some();
            let has_name = e.pointer("/metadata/name").is_some();
            if selector == has_name {
                return Err("externalRef.metadata must set exactly one of name or selector".to_string());
            }
            (e.clone(), NodeKind::External { selector })
        }
        _ => return Err("exactly one of template or externalRef must be provided".to_string()),
    };
    if !r.for_each.is_empty() && r.external_ref.is_some() {
        return Err("forEach and externalRef cannot be used together".to_string());
    }
    if !object.is_object() {
        return Err("template must be an object".to_string());
    }
    for field in ["apiVersion", "kind"] {
        match object.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => return Err(format!("template must have a non-empty string {field}")),
        }
    }
    if !object.get("metadata").is_some_and(Value::is_object) {
        return Err("template must have metadata".to_string());
    }
    reserved_keys(&object, "labels")?;
    reserved_keys(&object, "annotations")?;

    // forEach dimensions.
    if r.for_each.len() > limits.max_collection_dimensions {
        return Err(format!(
            "forEach has {} dimensions, more than the maximum of {}",
            r.for_each.len(),
            limits.max_collection_dimensions
        ));
    }
    let mut iterators: Vec<String> = Vec::new();
    let mut for_each = Vec::new();
    let mut dependencies = BTreeSet::new();
    let allowed_upstream = Allowed {
        schema: true,
        resources: ids,
        extra: &[],
        myself: Some(&r.id),
    };
    for dim in &r.for_each {
        if dim.len() != 1 {
            return Err("each forEach entry must have exactly one iterator".to_string());
        }
        let (name, expr) = dim.iter().next().expect("one entry");
        if !is_valid_id(name) {
            return Err(format!("forEach iterator {name:?} must be lower camelCase"));
        }
        if RESERVED_IDS.contains(&name.as_str()) || ids.contains(name) || iterators.contains(name) {
            return Err(format!(
                "forEach iterator {name:?} clashes with a reserved word, a resource id or another iterator"
            ));
        }
        let program = compile_condition(expr, &format!("forEach dimension {name:?}"))?;
        if let Some(other) = program
            .references()
            .variables
            .keys()
            .find(|v| iterators.contains(v))
        {
            return Err(format!(
                "forEach dimension {name:?} may not reference iterator {other:?}"
            ));
        }
        dependencies.extend(check_references(&program, &allowed_upstream, spec_schema)?);
        iterators.push(name.clone());
        for_each.push((name.clone(), program));
    }

    // Template fields.
    let mut raw = Vec::new();
    collect_fields(&object, &mut Vec::new(), &mut raw)?;
    let iterator_refs: Vec<&str> = iterators.iter().map(String::as_str).collect();
    let allowed_fields = Allowed {
        schema: true,
        resources: ids,
        extra: &iterator_refs,
        myself: Some(&r.id),
    };
    let mut fields = Vec::new();
    let mut identity_refs: BTreeSet<String> = BTreeSet::new();
    for (path, text) in raw {
        let at = path_string(&path);
        let expr = compile_expr(&text).map_err(|m| format!("field {at}: {m}"))?;
        for program in expr.programs() {
            dependencies.extend(
                check_references(program, &allowed_fields, spec_schema)
                    .map_err(|m| format!("field {at}: {m}"))?,
            );
            if at == "metadata.name" || at == "metadata.namespace" {
                identity_refs.extend(program.references().variables.keys().cloned());
            }
        }
        fields.push(Field { path, expr });
    }
    if let Some(missing) = iterators.iter().find(|i| !identity_refs.contains(*i)) {
        return Err(format!(
            "all forEach dimensions must be used to produce a unique resource identity: iterator {missing:?} appears in neither metadata.name nor metadata.namespace"
        ));
    }

    // includeWhen: schema and upstream resources.
    let mut include_when = Vec::new();
    for expr in &r.include_when {
        let program = compile_condition(expr, "includeWhen")?;
        dependencies.extend(check_references(&program, &allowed_upstream, spec_schema)?);
        include_when.push(program);
    }
    // readyWhen: the resource itself (or `each` for collections) only.
    let mut ready_when = Vec::new();
    let selfish: Vec<&str> = if r.for_each.is_empty() {
        vec![r.id.as_str()]
    } else {
        vec![r.id.as_str(), "each"]
    };
    for expr in &r.ready_when {
        let program = compile_condition(expr, "readyWhen")?;
        let others: Vec<&String> = program
            .references()
            .variables
            .keys()
            .filter(|v| !selfish.contains(&v.as_str()))
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "readyWhen expression {:?} may only reference {}: found {}",
                program.source(),
                selfish.join(" or "),
                others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        ready_when.push(program);
    }
    Ok(Node {
        id: r.id.clone(),
        kind,
        object,
        fields,
        include_when,
        ready_when,
        for_each,
        dependencies,
    })
}

/// The schema a status expression yields, where the expression's shape tells.
fn status_type(expr: &Expr) -> Value {
    match expr {
        Expr::Interpolated(_) => json!({ "type": "string" }),
        Expr::Standalone(p) => match p.result_hint() {
            cel::TypeHint::Bool => json!({ "type": "boolean" }),
            cel::TypeHint::Int => json!({ "type": "integer" }),
            cel::TypeHint::Double => json!({ "type": "number" }),
            cel::TypeHint::String => json!({ "type": "string" }),
            cel::TypeHint::List => {
                json!({ "type": "array", "items": { "x-kubernetes-preserve-unknown-fields": true } })
            }
            cel::TypeHint::Map => json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
            cel::TypeHint::Unknown => json!({ "x-kubernetes-preserve-unknown-fields": true }),
        },
    }
}

fn build_status(
    rgd: &ResourceGraphDefinition,
    ids: &BTreeSet<String>,
    spec_schema: &Value,
    transformer: &simpleschema::Transformer,
) -> Result<(Vec<StatusField>, Value), Error> {
    let has_plugin = rgd.spec.plugin.is_some();
    let mut fields = Vec::new();
    let mut without_expressions = Vec::new();
    let allowed = Allowed {
        schema: true,
        resources: ids,
        extra: &[],
        myself: None,
    };
    fn walk(
        value: &Value,
        path: &mut Vec<String>,
        out: &mut Map<String, Value>,
        ctx: &mut (
            Vec<StatusField>,
            Vec<String>,
            bool,
            &Allowed<'_>,
            &Value,
            &simpleschema::Transformer,
        ),
    ) -> Result<(), Error> {
        let Value::Object(map) = value else { return Ok(()) };
        for (key, v) in map {
            path.push(key.clone());
            let dotted = path.join(".");
            if matches!(key.as_str(), "state" | "conditions") && path.len() == 1 {
                return Err(Error::Status(format!(
                    "status.{key} is reserved: kroxide writes it"
                )));
            }
            match v {
                Value::Object(_) => {
                    let mut props = Map::new();
                    walk(v, path, &mut props, ctx)?;
                    out.insert(key.clone(), json!({ "type": "object", "properties": props }));
                }
                Value::String(s) if s.contains("${") => {
                    let expr = compile_expr(s).map_err(|m| Error::Status(format!("field {dotted}: {m}")))?;
                    for program in expr.programs() {
                        check_references(program, ctx.3, ctx.4)
                            .map_err(|m| Error::Status(format!("field {dotted}: {m}")))?;
                    }
                    out.insert(key.clone(), status_type(&expr));
                    ctx.0.push(StatusField {
                        path: path.clone(),
                        expr,
                    });
                }
                Value::String(s) if ctx.2 => {
                    // A plugin graph may declare the types of the fields its plugin writes.
                    let schema = ctx
                        .5
                        .object("status", &json!({ key.clone(): s }), false)
                        .map_err(Error::Schema)?;
                    out.insert(key.clone(), schema["properties"][key].clone());
                }
                _ => ctx.1.push(dotted),
            }
            path.pop();
        }
        Ok(())
    }
    let mut props = Map::new();
    if let Some(status) = &rgd.spec.schema.status {
        let mut ctx = (
            Vec::new(),
            Vec::new(),
            has_plugin,
            &allowed,
            spec_schema,
            transformer,
        );
        walk(status, &mut Vec::new(), &mut props, &mut ctx)?;
        fields = std::mem::take(&mut ctx.0);
        without_expressions = std::mem::take(&mut ctx.1);
    }
    if !without_expressions.is_empty() {
        return Err(Error::Status(format!(
            "status fields without expressions are not supported: [{}]",
            without_expressions.join(" ")
        )));
    }
    let mut schema = json!({ "type": "object", "properties": props });
    if has_plugin {
        // Room for the status fields the plugin writes without declaring them.
        schema["x-kubernetes-preserve-unknown-fields"] = json!(true);
    }
    Ok((fields, schema))
}

#[cfg(test)]
mod tests;
