//! Building a graph from an RGD: everything that can be known without a cluster is checked here,
//! with kro's wording (ids and reserved words, templates, reserved labels, every expression's
//! syntax, functions, variables and `schema.*` paths, `forEach` identity, dependencies and
//! cycles, status fields).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::{metadata, rgd::ResourceGraphDefinition};

use super::expressions::{Allowed, check_references, collect_fields, compile_condition, compile_expr};
use super::model::{Error, Field, Graph, Limits, Node, NodeKind, path_string};
use super::reserved::reserved_group;
use super::reserved::{RESERVED_IDS, is_valid_id, kind_ok, reserved_keys, version_ok};
use super::status::build_status;
use super::{catalog::Catalog, crd, dag, simpleschema, typecheck};

/// Builds and type-checks `rgd`, reading the schemas of the kinds it names from `catalog`.
///
/// # Errors
/// The first thing kro's admission refuses, in kro's words.
pub fn build(rgd: &ResourceGraphDefinition, limits: Limits, catalog: &Catalog) -> Result<Graph, Error> {
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
        let cluster = rgd.spec.schema.scope() == crate::rgd::Scope::Cluster;
        let node = build_node(r, &ids, &spec_schema, limits, cluster).map_err(|message| Error::Resource {
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
    let (status, mut status_schema, conditions) =
        build_status(rgd, &ids, &spec_schema, &transformer, limits.omit)?;
    let checked = typecheck::check(&nodes, &status, &conditions, &spec_schema, catalog)?;
    for (path, schema) in checked.status {
        set_status_type(&mut status_schema, &path, schema);
    }
    let names = crd::KindNames::of(rgd);
    let crd = crd::instance_crd(rgd, &names, spec_schema.clone(), status_schema);
    let reads = std::sync::Arc::new(Graph::resolve_reads(&nodes, &status));
    Ok(Graph {
        name: rgd.name().to_string(),
        names,
        crd,
        spec_schema,
        nodes,
        status,
        conditions,
        plugin: rgd.spec.plugin.clone(),
        propagate_labels: metadata::Propagation::parse(
            rgd.metadata
                .annotations
                .get(metadata::PROPAGATE_LABELS)
                .map(String::as_str),
        )
        .map_err(Error::Validation)?,
        limits,
        reads,
    })
}

fn build_node(
    r: &crate::rgd::Resource,
    ids: &BTreeSet<String>,
    spec_schema: &Value,
    limits: Limits,
    scope_is_cluster: bool,
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
        let program = compile_condition(expr, &format!("forEach dimension {name:?}"), limits.omit)?;
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
        let expr = compile_expr(&text, crate::cel::Omit::in_template(limits.omit))
            .map_err(|m| format!("field {at}: {m}"))?;
        let omits = expr.programs().iter().any(|p| {
            p.references()
                .functions
                .iter()
                .any(|f| f == crate::cel::functions::OMIT)
        });
        if omits {
            if at == "metadata.name" || (at == "metadata.namespace" && scope_is_cluster) {
                return Err(format!(
                    "field {at}: omit() cannot remove {at}: every object needs it"
                ));
            }
            if matches!(expr, super::model::Expr::Interpolated(_)) {
                return Err(format!(
                    "field {at}: omit() must be the whole value of a field (${{...}} alone), not part of a string"
                ));
            }
        }
        for program in expr.programs() {
            dependencies.extend(
                check_references(program, &allowed_fields, spec_schema)
                    .map_err(|m| format!("field {at}: {m}"))?,
            );
            if at == "metadata.name" || at == "metadata.namespace" {
                identity_refs.extend(program.references().variables.keys().cloned());
            }
        }
        fields.push(Field { path, expr, omits });
    }
    if let Some(missing) = iterators.iter().find(|i| !identity_refs.contains(*i)) {
        return Err(format!(
            "all forEach dimensions must be used to produce a unique resource identity: iterator {missing:?} appears in neither metadata.name nor metadata.namespace"
        ));
    }

    // includeWhen: schema and upstream resources.
    let mut include_when = Vec::new();
    for expr in &r.include_when {
        let program = compile_condition(expr, "includeWhen", limits.omit)?;
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
        let program = compile_condition(expr, "readyWhen", limits.omit)?;
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

/// Puts the inferred schema of the status field at `path` into the status schema.
fn set_status_type(status_schema: &mut Value, path: &[String], schema: Value) {
    let mut at = status_schema;
    for key in path {
        at = &mut at["properties"][key.as_str()];
    }
    *at = schema;
}
