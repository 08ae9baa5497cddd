//! Resolving one instance against its graph: walk the nodes in topological order, gate each
//! on its dependencies and `includeWhen`, expand `forEach`, render templates, read external
//! references, judge readiness (`readyWhen`), then project status fields softly (a field whose
//! inputs are not available yet is left out). Pure: live objects come in as arguments.

use crate::object::Pointer as _;
use std::{collections::BTreeMap, sync::Arc};

use serde_json::{Map, Value};

use super::model::{Expr, Field, Graph, Node, NodeKind, Part, Step, path_string};
use crate::{
    cel::{EvalError, Program, Scope, json_type},
    child::{ChildKey, DesiredChild, ObservedChild, Readiness},
    cluster::Cluster,
};

/// Where a node stands for this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Rendered, exists and ready.
    Ready,
    /// Rendered (or read), but not ready yet: the message says why.
    NotReady(String),
    /// Could not be rendered yet: an input is missing.
    Pending(String),
    /// Left out by `includeWhen` (or because a dependency was).
    Skipped,
    /// Rendering failed.
    Error(String),
}

impl NodeState {
    /// Whether dependents may proceed.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

/// An external object kroxide reads for a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExternalTarget {
    /// The node.
    pub(crate) id: String,
    /// apiVersion.
    pub(crate) api_version: String,
    /// Kind.
    pub(crate) kind: String,
    /// Namespace (`None`: cluster-scoped or all namespaces).
    pub(crate) namespace: Option<String>,
    /// Name, for a single object.
    pub(crate) name: Option<String>,
    /// Label selector, for a list.
    pub(crate) selector: Option<Value>,
}

/// The outcome of resolving one instance.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Children rendered from templates (not yet namespaced or stamped).
    pub rendered: Vec<DesiredChild>,
    /// Template nodes not rendered yet, with why. Their children must not be pruned.
    pub pending: Vec<(String, String)>,
    /// Template nodes left out by `includeWhen`: their children are pruned.
    pub(crate) skipped: Vec<String>,
    /// Every node's state, in topological order.
    pub(crate) states: Vec<(String, NodeState)>,
    /// External objects read.
    pub(crate) externals: Vec<ExternalTarget>,
    /// Status fields from the graph's expressions.
    pub(crate) status: Map<String, Value>,
    /// Status fields that failed for a reason other than missing data.
    pub(crate) status_errors: Vec<String>,
    /// What the author's conditions read (`schema`, resources, externals), when the graph has
    /// any: they are evaluated with the status, once kro's own conditions are known.
    pub(crate) bindings: Vec<(String, std::sync::Arc<Value>)>,
}

impl Resolution {
    /// The first node in error, with its message.
    pub(crate) fn first_error(&self) -> Option<(&str, &str)> {
        self.states.iter().find_map(|(id, s)| match s {
            NodeState::Error(m) => Some((id.as_str(), m.as_str())),
            _ => None,
        })
    }

    /// What the instance waits for, in kro's words: the first resource whose data is not there
    /// yet (`waiting for unresolved resource "id": why`), else every resource not ready
    /// (`awaiting resource readiness: waiting for node "id": why; ...`).
    pub(crate) fn waiting_message(&self) -> Option<String> {
        let unresolved = self.states.iter().find_map(|(id, s)| match s {
            NodeState::Pending(m) => Some(format!("waiting for unresolved resource {id:?}: {m}")),
            _ => None,
        });
        if unresolved.is_some() {
            return unresolved;
        }
        let not_ready: Vec<String> = self
            .states
            .iter()
            .filter_map(|(id, s)| match s {
                NodeState::NotReady(m) => Some(format!("waiting for node {id:?}: {m}")),
                _ => None,
            })
            .collect();
        (!not_ready.is_empty()).then(|| format!("awaiting resource readiness: {}", not_ready.join("; ")))
    }

    #[cfg(test)]
    /// Whether every node is ready or skipped.
    pub(crate) fn all_ready(&self) -> bool {
        self.states
            .iter()
            .all(|(_, s)| matches!(s, NodeState::Ready | NodeState::Skipped))
    }
}

/// Why a field could not be rendered.
enum Failure {
    Pending(String),
    Error(String),
}

/// Whether data missing for `program` can never arrive by waiting: it reads nothing but the
/// instance (`schema`), which only its author changes.
fn reads_only_the_instance(program: &Program) -> bool {
    let vars = &program.references().variables;
    !vars.is_empty() && vars.keys().all(|v| v == "schema")
}

/// What the status says of an instance field an expression needs and the instance lacks.
const UNSET_HINT: &str = "the instance does not set this field and the schema gives it no default";

fn failure(at: &str, program: &Program, e: EvalError) -> Failure {
    let source = program.source();
    if !e.is_pending() {
        Failure::Error(format!("field {at}: expression {source:?}: {e}"))
    } else if reads_only_the_instance(program) {
        // Waiting would never end: report it (GraphResolved=False ResolutionFailed).
        Failure::Error(format!(
            "field {at}: expression {source:?} is unresolved: {e}: {UNSET_HINT}"
        ))
    } else {
        Failure::Pending(format!("field {at}: expression {source:?} is unresolved: {e}"))
    }
}

fn eval_expr(expr: &Expr, scope: &Scope, at: &str) -> Result<Value, Failure> {
    match expr {
        Expr::Standalone(p) => p.eval(scope).map_err(|e| failure(at, p, e)),
        Expr::Interpolated(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Expr(p) => match p.eval(scope).map_err(|e| failure(at, p, e))? {
                        Value::String(s) => out.push_str(&s),
                        other => {
                            return Err(Failure::Error(format!(
                                "field {at}: expression {:?} must return a string inside a string template, got {}",
                                p.source(),
                                json_type(&other)
                            )));
                        }
                    },
                }
            }
            Ok(Value::String(out))
        }
    }
}

fn set_at(object: &mut Value, path: &[Step], value: Value) {
    let mut node = object;
    for step in path {
        node = match (step, node) {
            (Step::Key(k), Value::Object(m)) => m.entry(k.clone()).or_insert(Value::Null),
            (Step::Index(i), Value::Array(a)) if *i < a.len() => &mut a[*i],
            _ => return,
        };
    }
    *node = value;
}

/// Removes the field at `path` (an `omit()`).
fn remove_at(object: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for step in parents {
        node = match (step, node) {
            (Step::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return,
            },
            (Step::Index(i), Value::Array(a)) if *i < a.len() => &mut a[*i],
            _ => return,
        };
    }
    match (last, node) {
        (Step::Key(k), Value::Object(m)) => {
            m.remove(k);
        }
        (Step::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

fn is_omitted(v: &Value) -> bool {
    v.as_str() == Some(crate::cel::functions::OMIT_SENTINEL)
}

/// Drops map entries and list items that are `omit()` inside a value.
fn strip_omitted(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !is_omitted(x));
            m.values_mut().for_each(strip_omitted);
        }
        Value::Array(a) => {
            a.retain(|x| !is_omitted(x));
            a.iter_mut().for_each(strip_omitted);
        }
        _ => {}
    }
}

fn fill(object: &Value, fields: &[Field], scope: &Scope) -> Result<Value, Failure> {
    let mut out = object.clone();
    let mut omitted = Vec::new();
    for field in fields {
        let mut value = eval_expr(&field.expr, scope, &path_string(&field.path))?;
        if field.omits {
            if is_omitted(&value) {
                omitted.push(&field.path);
                continue;
            }
            strip_omitted(&mut value);
        }
        set_at(&mut out, &field.path, value);
    }
    // Deepest and last first, so list indexes of earlier removals stay right.
    omitted.sort();
    for path in omitted.into_iter().rev() {
        remove_at(&mut out, path);
    }
    Ok(out)
}

/// The instance as `schema` sees it: everything but `status`.
fn schema_view(instance: &Value) -> Value {
    match instance {
        // Copied without the status (the larger part of an instance), not copied and cut.
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "status")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn ready_when(node: &Node, scope: &mut Scope, object: &Arc<Value>, each: bool) -> Result<bool, Failure> {
    let var = if each { "each" } else { node.id.as_str() };
    scope.set(var, Arc::clone(object));
    let mut ready = true;
    for program in &node.ready_when {
        match program.eval_bool(scope) {
            Ok(true) => {}
            Ok(false) => ready = false,
            Err(e) if e.is_pending() => ready = false,
            Err(e) => {
                if each {
                    scope.remove("each");
                }
                return Err(Failure::Error(format!(
                    "readyWhen expression {:?}: {e}",
                    program.source()
                )));
            }
        }
    }
    if each {
        scope.remove("each");
    }
    Ok(ready)
}

/// The cartesian product of the dimensions' values, first dimension outermost.
fn product(dims: &[(String, Vec<Value>)]) -> Vec<Vec<(String, Value)>> {
    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (name, values) in dims {
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut c = combo.clone();
                    c.push((name.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
}

/// Resolves `instance` against `graph`, given its live children and external objects.
pub fn resolve(
    graph: &Graph,
    instance: &Value,
    observed: &[ObservedChild],
    cluster: &dyn Cluster,
) -> Resolution {
    let mut scope = Scope::reading(graph.reads.clone());
    scope.set("schema", schema_view(instance));
    let instance_ns = instance
        .at("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let mut res = Resolution::default();
    let mut states: BTreeMap<String, NodeState> = BTreeMap::new();

    for node in &graph.nodes {
        let state = resolve_node(
            graph,
            node,
            &mut scope,
            &states,
            observed,
            cluster,
            instance_ns,
            &mut res,
        );
        match &state {
            NodeState::Pending(reason) if !node.is_external() => {
                res.pending.push((node.id.clone(), reason.clone()))
            }
            NodeState::Skipped if !node.is_external() => res.skipped.push(node.id.clone()),
            _ => {}
        }
        states.insert(node.id.clone(), state.clone());
        res.states.push((node.id.clone(), state));
    }

    // Status: soft resolution, a field whose inputs are missing is left out.
    for field in &graph.status {
        let at = format!("status.{}", field.path.join("."));
        match eval_expr(&field.expr, &scope, &at) {
            Ok(value) => {
                let mut node = &mut res.status;
                for (i, key) in field.path.iter().enumerate() {
                    if i + 1 == field.path.len() {
                        node.insert(key.clone(), value.clone());
                    } else {
                        let entry = node
                            .entry(key.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if !entry.is_object() {
                            *entry = Value::Object(Map::new());
                        }
                        node = entry.as_object_mut().expect("just made an object");
                    }
                }
            }
            Err(Failure::Pending(_)) => {}
            Err(Failure::Error(m)) => res.status_errors.push(m),
        }
    }
    if !graph.conditions.is_empty() {
        res.bindings = scope.bindings();
    }
    res
}

#[allow(clippy::too_many_arguments, reason = "the walk's state, threaded explicitly")]
fn resolve_node(
    graph: &Graph,
    node: &Node,
    scope: &mut Scope,
    states: &BTreeMap<String, NodeState>,
    observed: &[ObservedChild],
    cluster: &dyn Cluster,
    instance_ns: Option<&str>,
    res: &mut Resolution,
) -> NodeState {
    // A skipped dependency skips its dependents.
    if node
        .dependencies
        .iter()
        .any(|d| states.get(d) == Some(&NodeState::Skipped))
    {
        return NodeState::Skipped;
    }
    let waiting = |deps: &mut dyn Iterator<Item = &String>| {
        for d in deps {
            if !states.get(d).is_some_and(NodeState::is_ready) {
                return Some(NodeState::Pending(format!("waiting for {d} to be ready")));
            }
        }
        None
    };
    // includeWhen runs as soon as the resources it reads are ready: a resource switched off is
    // skipped (and pruned) even while its template's own inputs are pending.
    for program in &node.include_when {
        let mut reads = program
            .references()
            .variables
            .keys()
            .filter(|v| node.dependencies.contains(*v));
        if let Some(pending) = waiting(&mut reads) {
            return pending;
        }
        match program.eval_bool(scope) {
            Ok(true) => {}
            Ok(false) => return NodeState::Skipped,
            Err(e) if e.is_pending() && reads_only_the_instance(program) => {
                return NodeState::Error(format!(
                    "includeWhen expression {:?} is unresolved: {e}: {UNSET_HINT}",
                    program.source()
                ));
            }
            Err(e) if e.is_pending() => {
                return NodeState::Pending(format!(
                    "includeWhen {:?} waiting for data: {e}",
                    program.source()
                ));
            }
            Err(e) => return NodeState::Error(format!("includeWhen expression {:?}: {e}", program.source())),
        }
    }
    if let Some(pending) = waiting(&mut node.dependencies.iter()) {
        return pending;
    }
    match node.kind {
        NodeKind::External { selector } => resolve_external(node, selector, scope, cluster, instance_ns, res),
        NodeKind::Template if node.is_collection() => resolve_collection(graph, node, scope, observed, res),
        NodeKind::Template => {
            let object = match fill(&node.object, &node.fields, scope) {
                Ok(o) => o,
                Err(Failure::Pending(m)) => return NodeState::Pending(m),
                Err(Failure::Error(m)) => return NodeState::Error(m),
            };
            let Value::Object(map) = object else {
                return NodeState::Error("template must be an object".to_string());
            };
            res.rendered.push(DesiredChild {
                key: ChildKey::new(&node.id),
                object: map,
                ready: Readiness::Unknown,
            });
            match observed
                .iter()
                .find(|o| o.key.id == node.id && o.key.index.is_none())
            {
                None => NodeState::NotReady(format!("waiting for {} to be created", node.id)),
                Some(live) => match ready_when(node, scope, &live.object, false) {
                    Ok(true) => NodeState::Ready,
                    Ok(false) => NodeState::NotReady(format!("waiting for {} to satisfy readyWhen", node.id)),
                    Err(Failure::Error(m) | Failure::Pending(m)) => NodeState::Error(m),
                },
            }
        }
    }
}

fn resolve_collection(
    graph: &Graph,
    node: &Node,
    scope: &mut Scope,
    observed: &[ObservedChild],
    res: &mut Resolution,
) -> NodeState {
    let mut dims = Vec::new();
    for (name, program) in &node.for_each {
        match program.eval(scope) {
            Ok(Value::Array(items)) => dims.push((name.clone(), items)),
            Ok(other) => {
                return NodeState::Error(format!(
                    "forEach dimension {name:?} must evaluate to a list, got {}",
                    json_type(&other)
                ));
            }
            Err(e) if e.is_pending() && reads_only_the_instance(program) => {
                return NodeState::Error(format!(
                    "forEach dimension {name:?} is unresolved: {e}: {UNSET_HINT}"
                ));
            }
            Err(e) if e.is_pending() => {
                return NodeState::Pending(format!("forEach dimension {name:?} waiting for data: {e}"));
            }
            Err(e) => return NodeState::Error(format!("forEach dimension {name:?}: {e}")),
        }
    }
    let size: usize = dims.iter().map(|(_, v)| v.len()).product();
    if size > graph.limits.max_collection_size {
        return NodeState::Error(format!(
            "collection of {size} items exceeds the maximum collection size of {}",
            graph.limits.max_collection_size
        ));
    }
    let mut rendered = Vec::with_capacity(size);
    for (index, combo) in product(&dims).into_iter().enumerate() {
        for (name, value) in &combo {
            scope.set(name, value.clone());
        }
        let result = fill(&node.object, &node.fields, scope);
        for (name, _) in &combo {
            scope.remove(name);
        }
        match result {
            Ok(Value::Object(map)) => rendered.push(DesiredChild {
                key: ChildKey::item(&node.id, u32::try_from(index).unwrap_or(u32::MAX)),
                object: map,
                ready: Readiness::Unknown,
            }),
            Ok(_) => return NodeState::Error("template must be an object".to_string()),
            Err(Failure::Pending(m)) => return NodeState::Pending(m),
            Err(Failure::Error(m)) => return NodeState::Error(m),
        }
    }
    let wanted = rendered.len();
    res.rendered.extend(rendered);
    let mut live: Vec<&ObservedChild> = observed
        .iter()
        .filter(|o| o.key.id == node.id && o.key.index.is_some())
        .collect();
    live.sort_by_key(|o| o.key.index);
    let items: Vec<Value> = live.iter().map(|o| Value::clone(&o.object)).collect();
    scope.set(&node.id, Value::Array(items));
    if live.len() < wanted {
        return NodeState::NotReady(format!(
            "waiting for {} of {} items of {} to be created",
            wanted - live.len(),
            wanted,
            node.id
        ));
    }
    for item in &live {
        match ready_when(node, scope, &item.object, true) {
            Ok(true) => {}
            Ok(false) => {
                return NodeState::NotReady(format!(
                    "waiting for every item of {} to satisfy readyWhen",
                    node.id
                ));
            }
            Err(Failure::Error(m) | Failure::Pending(m)) => return NodeState::Error(m),
        }
    }
    NodeState::Ready
}

fn resolve_external(
    node: &Node,
    selector: bool,
    scope: &mut Scope,
    cluster: &dyn Cluster,
    instance_ns: Option<&str>,
    res: &mut Resolution,
) -> NodeState {
    let reference = match fill(&node.object, &node.fields, scope) {
        Ok(o) => o,
        Err(Failure::Pending(m)) => return NodeState::Pending(m),
        Err(Failure::Error(m)) => return NodeState::Error(m),
    };
    let s = |p: &str| {
        reference
            .at(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind) = (s("/apiVersion"), s("/kind"));
    let explicit_ns = reference
        .at("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    if selector {
        // An empty namespace means every namespace.
        let sel = reference.at("/metadata/selector").cloned().unwrap_or(Value::Null);
        let items = cluster.list(&api_version, &kind, explicit_ns, &sel);
        res.externals.push(ExternalTarget {
            id: node.id.clone(),
            api_version,
            kind,
            namespace: explicit_ns.map(str::to_string),
            name: None,
            selector: Some(sel),
        });
        scope.set(&node.id, Value::Array(items));
        return NodeState::Ready;
    }
    let namespace = explicit_ns.or(instance_ns);
    let name = s("/metadata/name");
    res.externals.push(ExternalTarget {
        id: node.id.clone(),
        api_version: api_version.clone(),
        kind: kind.clone(),
        namespace: namespace.map(str::to_string),
        name: Some(name.clone()),
        selector: None,
    });
    match cluster.get(&api_version, &kind, namespace, &name) {
        None => NodeState::Pending(format!(
            "waiting for external reference {kind} {}{name} to exist",
            namespace.map(|n| format!("{n}/")).unwrap_or_default()
        )),
        Some(object) => match ready_when(node, scope, &Arc::new(object), false) {
            Ok(true) => NodeState::Ready,
            Ok(false) => NodeState::NotReady(format!(
                "waiting for external reference {} to satisfy readyWhen",
                node.id
            )),
            Err(Failure::Error(m) | Failure::Pending(m)) => NodeState::Error(m),
        },
    }
}
