//! What an expression refers to (variables with the field paths read from them, functions
//! called), the rewrite that makes map iteration deterministic, and the cost estimate that
//! bounds every evaluation before it starts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value as Json;

use super::functions::ITER_HELPER;

/// A field path read from a variable: `schema.spec.ports[0]` is (`schema`, [`spec`, `ports`]).
pub(crate) type Path = Vec<String>;

/// What an expression refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct References {
    /// Free variables and the field paths read from each (an empty path: the whole value).
    pub(crate) variables: BTreeMap<String, BTreeSet<Path>>,
    /// Functions called, namespaced ones with their namespace (`random.seededString`).
    pub(crate) functions: BTreeSet<String>,
}

fn is_operator(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('@') || name.starts_with("!_") || name.starts_with("-_")
}

fn literal_string(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// The variable and path of a pure selection chain (`a.b.c`, `a.?b`, `a['b']`).
fn selection(e: &IdedExpr) -> Option<(String, Path)> {
    match &e.expr {
        Expr::Ident(name) => Some((name.clone(), Vec::new())),
        Expr::Select(s) => {
            let (root, mut path) = selection(&s.operand)?;
            path.push(s.field.clone());
            Some((root, path))
        }
        Expr::Call(CallExpr {
            func_name,
            target: None,
            args,
        }) if (func_name == "_?._" || func_name == "_[_]") && args.len() == 2 => {
            let field = literal_string(&args[1])?;
            let (root, mut path) = selection(&args[0])?;
            path.push(field.to_string());
            Some((root, path))
        }
        _ => None,
    }
}

/// Collects the references of `expr`. `namespaces` are the function namespaces (`base64`,
/// `random`, ...): `base64.encode(x)` is a call of `base64.encode`, not a read of a variable
/// `base64`, unless a variable of that name is bound.
pub(crate) fn references(expr: &IdedExpr, namespaces: &BTreeSet<&str>) -> References {
    let mut refs = References::default();
    let mut bound: Vec<String> = Vec::new();
    walk(expr, namespaces, &mut bound, &mut refs);
    refs
}

fn walk(e: &IdedExpr, namespaces: &BTreeSet<&str>, bound: &mut Vec<String>, refs: &mut References) {
    if let Some((root, path)) = selection(e)
        && !bound.contains(&root)
        && !path.is_empty()
    {
        refs.variables.entry(root).or_default().insert(path);
        return;
    }
    match &e.expr {
        Expr::Ident(name) => {
            if !bound.contains(name) {
                refs.variables.entry(name.clone()).or_default().insert(Vec::new());
            }
        }
        Expr::Select(s) => walk(&s.operand, namespaces, bound, refs),
        Expr::Call(call) => {
            let qualified = match call.target.as_deref() {
                Some(IdedExpr {
                    expr: Expr::Ident(ns),
                    ..
                }) if namespaces.contains(ns.as_str()) && !bound.contains(ns) => {
                    Some(format!("{ns}.{}", call.func_name))
                }
                _ => None,
            };
            match qualified {
                Some(name) => {
                    refs.functions.insert(name);
                }
                None => {
                    if !is_operator(&call.func_name) {
                        refs.functions.insert(call.func_name.clone());
                    }
                    if let Some(t) = &call.target {
                        walk(t, namespaces, bound, refs);
                    }
                }
            }
            for a in &call.args {
                walk(a, namespaces, bound, refs);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, namespaces, bound, refs)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, namespaces, bound, refs);
                    walk(&me.value, namespaces, bound, refs);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    walk(&f.value, namespaces, bound, refs);
                }
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, namespaces, bound, refs);
            walk(&c.accu_init, namespaces, bound, refs);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, namespaces, bound, refs);
            walk(&c.loop_step, namespaces, bound, refs);
            walk(&c.result, namespaces, bound, refs);
            bound.truncate(depth);
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Makes every comprehension iterate through the iteration helper, which yields a map's keys
/// in sorted order (the `cel` crate's maps are hash maps). Bindings (`cel.bind`, `sortBy`),
/// which iterate an empty list literal, are left alone.
pub(crate) fn rewrite(e: &mut IdedExpr, next_id: &mut u64) {
    match &mut e.expr {
        Expr::Comprehension(c) => {
            let is_binding = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty());
            if !is_binding {
                let range = std::mem::take(&mut c.iter_range);
                *next_id += 1;
                c.iter_range = IdedExpr {
                    id: *next_id,
                    expr: Expr::Call(CallExpr {
                        func_name: ITER_HELPER.to_string(),
                        target: None,
                        args: vec![range],
                    }),
                };
            }
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                rewrite(part, next_id);
            }
        }
        Expr::Call(call) => {
            if let Some(t) = &mut call.target {
                rewrite(t, next_id);
            }
            call.args.iter_mut().for_each(|a| rewrite(a, next_id));
        }
        Expr::Select(s) => rewrite(&mut s.operand, next_id),
        Expr::List(l) => l.elements.iter_mut().for_each(|x| rewrite(x, next_id)),
        Expr::Map(m) => {
            for entry in &mut m.entries {
                if let EntryExpr::MapEntry(me) = &mut entry.expr {
                    rewrite(&mut me.key, next_id);
                    rewrite(&mut me.value, next_id);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &mut s.entries {
                if let EntryExpr::StructField(f) = &mut entry.expr {
                    rewrite(&mut f.value, next_id);
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The depth of an expression tree, computed without recursion (the tree may be deep: that
/// is what this measures).
pub(crate) fn depth<'a>(e: &'a IdedExpr) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&'a IdedExpr, usize)> = vec![(e, 1)];
    while let Some((node, d)) = stack.pop() {
        max = max.max(d);
        let mut push = |x: &'a IdedExpr| stack.push((x, d + 1));
        match &node.expr {
            Expr::Comprehension(c) => {
                for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    push(part);
                }
            }
            Expr::Call(call) => {
                if let Some(t) = &call.target {
                    push(t);
                }
                call.args.iter().for_each(&mut push);
            }
            Expr::Select(s) => push(&s.operand),
            Expr::List(l) => l.elements.iter().for_each(&mut push),
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        push(&me.key);
                        push(&me.value);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        push(&f.value);
                    }
                }
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    max
}

/// The largest id in an expression (new nodes get ids above it).
pub(crate) fn max_id(e: &IdedExpr) -> u64 {
    let mut max = e.id;
    let mut visit = |x: &IdedExpr| max = max.max(max_id(x));
    match &e.expr {
        Expr::Comprehension(c) => {
            for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                visit(part);
            }
        }
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                visit(t);
            }
            call.args.iter().for_each(visit);
        }
        Expr::Select(s) => visit(&s.operand),
        Expr::List(l) => l.elements.iter().for_each(visit),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    visit(&me.key);
                    visit(&me.value);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    visit(&f.value);
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    max
}

/// The size of a JSON value for the cost model: elements of a list or map, bytes of a string.
pub(crate) fn json_size(v: &Json) -> u64 {
    match v {
        Json::Array(a) => a.len() as u64,
        Json::Object(o) => o.len() as u64,
        Json::String(s) => s.len() as u64,
        _ => 1,
    }
}

/// The largest size of anything inside a JSON value.
pub(crate) fn max_size(v: &Json) -> u64 {
    match v {
        Json::Array(a) => a.iter().map(max_size).max().unwrap_or(0).max(a.len() as u64),
        Json::Object(o) => o.values().map(max_size).max().unwrap_or(0).max(o.len() as u64),
        other => json_size(other),
    }
}

/// Inputs of the cost model: the variables' values.
#[derive(Debug)]
pub(crate) struct CostInputs<'a> {
    /// The variables an expression may read.
    pub(crate) variables: &'a HashMap<String, std::sync::Arc<Json>>,
    /// The largest size of anything in the variables, for sizes the model cannot resolve.
    pub(crate) largest: u64,
}

fn resolve<'a>(inputs: &'a CostInputs<'_>, root: &str, path: &[String]) -> Option<&'a Json> {
    let mut v: &Json = inputs.variables.get(root)?;
    for seg in path {
        v = match v {
            Json::Object(o) => o.get(seg)?,
            Json::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Estimates the work of evaluating `e` from the actual sizes of its inputs: every
/// comprehension multiplies the cost of its body by the size of what it iterates, string and
/// list building costs the size of what it builds. Deterministic and cheap (one walk of the
/// expression), so an expression whose estimate exceeds the budget is refused before it runs.
pub(crate) fn estimate_cost(e: &IdedExpr, inputs: &CostInputs<'_>) -> u64 {
    let mut scope: Vec<(String, u64)> = Vec::new();
    cost(e, inputs, &mut scope)
}

fn int_literal(e: &IdedExpr, inputs: &CostInputs<'_>) -> Option<u64> {
    match &e.expr {
        Expr::Literal(LiteralValue::Int(i)) => Some((*i.inner()).max(0) as u64),
        _ => {
            let (root, path) = selection(e)?;
            resolve(inputs, &root, &path)?.as_i64().map(|i| i.max(0) as u64)
        }
    }
}

fn size(e: &IdedExpr, inputs: &CostInputs<'_>, scope: &mut Vec<(String, u64)>) -> u64 {
    if let Some((root, path)) = selection(e) {
        if let Some((_, s)) = scope.iter().rev().find(|(n, _)| *n == root) {
            return if path.is_empty() {
                *s
            } else {
                inputs.largest.max(1)
            };
        }
        return resolve(inputs, &root, &path).map_or(inputs.largest.max(1), json_size);
    }
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => s.inner().len() as u64,
        Expr::Literal(LiteralValue::Bytes(b)) => b.inner().len() as u64,
        Expr::Literal(_) => 1,
        Expr::List(l) => l.elements.len() as u64,
        Expr::Map(m) => m.entries.len() as u64,
        Expr::Call(call) => {
            let arg_sizes = |scope: &mut Vec<(String, u64)>| -> u64 {
                let mut total = call.target.as_ref().map_or(0, |t| size(t, inputs, scope));
                for a in &call.args {
                    total = total.saturating_add(size(a, inputs, scope));
                }
                total
            };
            match call.func_name.as_str() {
                "range" if call.target.is_some() => call
                    .args
                    .first()
                    .and_then(|a| int_literal(a, inputs))
                    .unwrap_or(inputs.largest.max(1)),
                "seededString" => call
                    .args
                    .first()
                    .and_then(|a| int_literal(a, inputs))
                    .unwrap_or(1),
                "replace" => {
                    let base = call.target.as_ref().map_or(1, |t| size(t, inputs, scope));
                    let new = call.args.get(1).map_or(1, |a| size(a, inputs, scope));
                    base.saturating_mul(new.max(1))
                }
                ITER_HELPER => call.args.first().map_or(1, |a| size(a, inputs, scope)),
                _ => arg_sizes(scope).max(1),
            }
        }
        Expr::Comprehension(c) => {
            let n = size(&c.iter_range, inputs, scope);
            let init = size(&c.accu_init, inputs, scope);
            let is_binding = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty());
            let accu = if is_binding { init } else { init.saturating_add(n) };
            scope.push((c.iter_var.clone(), inputs.largest.max(1)));
            scope.push((c.accu_var.clone(), accu));
            let out = size(&c.result, inputs, scope);
            scope.truncate(scope.len() - 2);
            out
        }
        _ => inputs.largest.max(1),
    }
}

fn cost(e: &IdedExpr, inputs: &CostInputs<'_>, scope: &mut Vec<(String, u64)>) -> u64 {
    match &e.expr {
        Expr::Literal(_) | Expr::Ident(_) | Expr::Unspecified => 1,
        Expr::Select(s) => 1 + cost(&s.operand, inputs, scope),
        Expr::List(l) => l
            .elements
            .iter()
            .map(|x| cost(x, inputs, scope))
            .fold(1, u64::saturating_add),
        Expr::Map(m) => m
            .entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => {
                    cost(&me.key, inputs, scope).saturating_add(cost(&me.value, inputs, scope))
                }
                EntryExpr::StructField(f) => cost(&f.value, inputs, scope),
            })
            .fold(1, u64::saturating_add),
        Expr::Struct(s) => s.entries.len() as u64 + 1,
        Expr::Call(call) => {
            let mut total: u64 = 1;
            if let Some(t) = &call.target {
                total = total.saturating_add(cost(t, inputs, scope));
            }
            for a in &call.args {
                total = total.saturating_add(cost(a, inputs, scope));
            }
            // Building strings and lists is linear in what is built.
            total.saturating_add(size(e, inputs, scope))
        }
        Expr::Comprehension(c) => {
            let n = size(&c.iter_range, inputs, scope);
            let base = cost(&c.iter_range, inputs, scope).saturating_add(cost(&c.accu_init, inputs, scope));
            let init = size(&c.accu_init, inputs, scope);
            let is_binding = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty());
            let accu = if is_binding { init } else { init.saturating_add(n) };
            scope.push((c.iter_var.clone(), inputs.largest.max(1)));
            scope.push((c.accu_var.clone(), accu));
            let body = cost(&c.loop_cond, inputs, scope).saturating_add(cost(&c.loop_step, inputs, scope));
            let result = cost(&c.result, inputs, scope);
            scope.truncate(scope.len() - 2);
            base.saturating_add(n.saturating_mul(body)).saturating_add(result)
        }
    }
}
