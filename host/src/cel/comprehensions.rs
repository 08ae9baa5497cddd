//! CEL's two-variable comprehensions, as cel-go's `TwoVarComprehensions` library that kro
//! enables: `all(i, v, p)`, `exists(i, v, p)`, `existsOne(i, v, p)`, `transformList(i, v, [f,] e)`,
//! `transformMap(k, v, [f,] e)` and `transformMapEntry(k, v, [f,] e)`, on lists (index and
//! element) and maps (key and value, keys in sorted order).
//!
//! The `cel` crate evaluates one-variable comprehensions only, so each macro expands into one:
//! it iterates `@kroxide.pairs(target)` (a list of `[index or key, value]` pairs) and binds the
//! two variables to each pair's halves before the predicate or transform runs.

use std::sync::Arc;

use cel::{
    ExecutionError, Value,
    common::ast::{CallExpr, ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue, operators},
    objects::{Key, Map},
    parser::{Macro, MacroExprHelper, ParseError},
};

/// The pairs a two-variable comprehension iterates: `[[index, element]]` of a list,
/// `[[key, value]]` of a map in key order.
pub(crate) const PAIRS: &str = "@kroxide.pairs";
/// `transformMap`'s step: the map with one more entry.
pub(crate) const PUT: &str = "@kroxide.put";
/// `transformMapEntry`'s step: the map with the entries of another, none of them already there.
pub(crate) const PUT_ALL: &str = "@kroxide.putAll";

/// The internal functions the expansions call.
pub(crate) const HELPERS: [&str; 3] = [PAIRS, PUT, PUT_ALL];

const PAIR: &str = "@pair";
const RESULT: &str = "@result";

/// What a comprehension computes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    All,
    Exists,
    ExistsOne,
    TransformList,
    TransformMap,
    TransformMapEntry,
}

/// The macros, for each name and argument count.
pub(crate) fn macros() -> Vec<Macro> {
    let mut out = Vec::new();
    for (name, kind, arities) in [
        ("all", Kind::All, &[3][..]),
        ("exists", Kind::Exists, &[3]),
        ("existsOne", Kind::ExistsOne, &[3]),
        ("exists_one", Kind::ExistsOne, &[3]),
        ("transformList", Kind::TransformList, &[3, 4]),
        ("transformMap", Kind::TransformMap, &[3, 4]),
        ("transformMapEntry", Kind::TransformMapEntry, &[3, 4]),
    ] {
        for &arity in arities {
            out.push(Macro::receiver(name, arity, move |helper, target, args| {
                expand(helper, target, args, kind, name).map(Some)
            }));
        }
    }
    out
}

fn ident(helper: &mut MacroExprHelper<'_>, name: &str) -> IdedExpr {
    helper.next_expr(Expr::Ident(name.to_string()))
}

fn call(helper: &mut MacroExprHelper<'_>, function: &str, args: Vec<IdedExpr>) -> IdedExpr {
    helper.next_expr(Expr::Call(CallExpr {
        func_name: function.to_string(),
        target: None,
        args,
    }))
}

fn int(helper: &mut MacroExprHelper<'_>, i: i64) -> IdedExpr {
    helper.next_expr(Expr::Literal(LiteralValue::Int(i.into())))
}

fn boolean(helper: &mut MacroExprHelper<'_>, b: bool) -> IdedExpr {
    helper.next_expr(Expr::Literal(LiteralValue::Boolean(b.into())))
}

/// `expr` with `name` bound to `init` (the expansion of `cel.bind`).
fn bind(helper: &mut MacroExprHelper<'_>, name: &str, init: IdedExpr, expr: IdedExpr) -> IdedExpr {
    let range = helper.next_expr(Expr::List(ListExpr::new(Vec::new())));
    let cond = boolean(helper, false);
    let step = ident(helper, name);
    helper.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range: range,
        iter_var: "#unused".to_string(),
        iter_var2: None,
        accu_var: name.to_string(),
        accu_init: init,
        loop_cond: cond,
        loop_step: step,
        result: expr,
    })))
}

/// `expr` with the two variables bound to the current pair's halves.
fn with_pair(helper: &mut MacroExprHelper<'_>, first: &str, second: &str, expr: IdedExpr) -> IdedExpr {
    let half = |helper: &mut MacroExprHelper<'_>, i: i64| {
        let pair = ident(helper, PAIR);
        let index = int(helper, i);
        call(helper, operators::INDEX, vec![pair, index])
    };
    let value = half(helper, 1);
    let inner = bind(helper, second, value, expr);
    let key = half(helper, 0);
    bind(helper, first, key, inner)
}

fn variable(helper: &MacroExprHelper<'_>, e: &IdedExpr, name: &str) -> Result<String, ParseError> {
    match &e.expr {
        Expr::Ident(n) => Ok(n.clone()),
        _ => Err(helper.new_error(
            e.id,
            format!("{name}() variable names must be simple identifiers"),
        )),
    }
}

fn expand(
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
    kind: Kind,
    name: &str,
) -> Result<IdedExpr, ParseError> {
    let target = target.take().expect("a receiver macro has a target");
    let first = variable(helper, &args[0], name)?;
    let second = variable(helper, &args[1], name)?;
    if first == second {
        return Err(helper.new_error(args[1].id, format!("{name}() needs two different variable names")));
    }
    let mut rest: Vec<IdedExpr> = args.drain(2..).collect();
    let body = rest.pop().expect("a predicate or transform");
    let filter = rest.pop();
    let body = with_pair(helper, &first, &second, body);
    let filter = filter.map(|f| with_pair(helper, &first, &second, f));
    let acc = |helper: &mut MacroExprHelper<'_>| ident(helper, RESULT);
    let (init, cond, step, result) = match kind {
        Kind::All | Kind::Exists => {
            let all = matches!(kind, Kind::All);
            let init = boolean(helper, all);
            let a = acc(helper);
            let tested = if all {
                a
            } else {
                call(helper, operators::LOGICAL_NOT, vec![a])
            };
            let cond = call(helper, operators::NOT_STRICTLY_FALSE, vec![tested]);
            let a = acc(helper);
            let op = if all {
                operators::LOGICAL_AND
            } else {
                operators::LOGICAL_OR
            };
            let step = call(helper, op, vec![a, body]);
            (init, cond, step, acc(helper))
        }
        Kind::ExistsOne => {
            let init = int(helper, 0);
            let cond = boolean(helper, true);
            let (a, one) = (acc(helper), int(helper, 1));
            let plus = call(helper, operators::ADD, vec![a, one]);
            let a = acc(helper);
            let step = call(helper, operators::CONDITIONAL, vec![body, plus, a]);
            let (a, one) = (acc(helper), int(helper, 1));
            let result = call(helper, operators::EQUALS, vec![a, one]);
            (init, cond, step, result)
        }
        Kind::TransformList | Kind::TransformMap | Kind::TransformMapEntry => {
            let init = match kind {
                Kind::TransformList => helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
                _ => helper.next_expr(Expr::Map(cel::common::ast::MapExpr { entries: Vec::new() })),
            };
            let cond = boolean(helper, true);
            let a = acc(helper);
            let grown = match kind {
                Kind::TransformList => {
                    let one = helper.next_expr(Expr::List(ListExpr::new(vec![body])));
                    call(helper, operators::ADD, vec![a, one])
                }
                Kind::TransformMap => {
                    let pair = ident(helper, PAIR);
                    let zero = int(helper, 0);
                    let key = call(helper, operators::INDEX, vec![pair, zero]);
                    call(helper, PUT, vec![a, key, body])
                }
                _ => call(helper, PUT_ALL, vec![a, body]),
            };
            let step = match filter {
                Some(f) => {
                    let a = acc(helper);
                    call(helper, operators::CONDITIONAL, vec![f, grown, a])
                }
                None => grown,
            };
            (init, cond, step, acc(helper))
        }
    };
    let range = call(helper, PAIRS, vec![target]);
    Ok(helper.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range: range,
        iter_var: PAIR.to_string(),
        iter_var2: None,
        accu_var: RESULT.to_string(),
        accu_init: init,
        loop_cond: cond,
        loop_step: step,
        result,
    }))))
}

fn err(function: &str, message: impl Into<String>) -> ExecutionError {
    ExecutionError::function_error(function, message.into())
}

fn value_key(function: &str, v: &Value) -> Result<Key, ExecutionError> {
    Ok(match v {
        Value::String(s) => Key::String(s.clone()),
        Value::Int(i) => Key::Int(*i),
        Value::UInt(u) => Key::Uint(*u),
        Value::Bool(b) => Key::Bool(*b),
        other => {
            return Err(err(
                function,
                format!("a map key must be a string, int, uint or bool, not {other:?}"),
            ));
        }
    })
}

/// `@kroxide.pairs(list or map)`.
pub(crate) fn pairs(target: &Value) -> Result<Value, ExecutionError> {
    let pair = |a: Value, b: Value| Value::List(Arc::new(vec![a, b]));
    match target {
        Value::List(items) => Ok(Value::List(Arc::new(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| pair(Value::Int(i as i64), v.clone()))
                .collect(),
        ))),
        Value::Map(m) => {
            let mut entries: Vec<(&Key, &Value)> = m.map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Ok(Value::List(Arc::new(
                entries
                    .into_iter()
                    .map(|(k, v)| pair(Value::from(k), v.clone()))
                    .collect(),
            )))
        }
        other => Err(err(
            "comprehension",
            format!("a two-variable comprehension needs a list or a map, not {other:?}"),
        )),
    }
}

/// `@kroxide.put(map, key, value)`.
pub(crate) fn put(map: &Value, key: &Value, value: &Value) -> Result<Value, ExecutionError> {
    let Value::Map(m) = map else {
        return Err(err("transformMap", "accumulates a map"));
    };
    let mut next = (*m.map).clone();
    next.insert(value_key("transformMap", key)?, value.clone());
    Ok(Value::Map(Map { map: Arc::new(next) }))
}

/// `@kroxide.putAll(map, entries)`: refuses a key produced twice, as cel-go does.
pub(crate) fn put_all(map: &Value, entries: &Value) -> Result<Value, ExecutionError> {
    let (Value::Map(m), Value::Map(add)) = (map, entries) else {
        return Err(err("transformMapEntry", "the transform must return a map"));
    };
    let mut next = (*m.map).clone();
    for (k, v) in add.map.iter() {
        if next.insert(k.clone(), v.clone()).is_some() {
            return Err(err(
                "transformMapEntry",
                format!("insert failed: key {:?} already exists", Value::from(k)),
            ));
        }
    }
    Ok(Value::Map(Map { map: Arc::new(next) }))
}

super::native::value_fn!(pairs_fn, |a| pairs(&a[0]));
super::native::value_fn!(put_fn, |a| put(&a[0], &a[1], &a[2]));
super::native::value_fn!(put_all_fn, |a| put_all(&a[0], &a[1]));

/// Registers the macros and their helper functions on `env`.
///
/// # Errors
/// A declaration the `cel` crate refuses (a duplicate).
pub(crate) fn register(env: &mut cel::Env) -> Result<(), cel::DeclarationError> {
    use cel::common::types::DYN_TYPE;
    for m in macros() {
        env.add_macro(m)?;
    }
    env.add_overload(PAIRS, "kroxide_pairs_dyn", vec![DYN_TYPE], pairs_fn)?;
    env.add_overload(PUT, "kroxide_put_dyn", vec![DYN_TYPE, DYN_TYPE, DYN_TYPE], put_fn)?;
    env.add_overload(
        PUT_ALL,
        "kroxide_putAll_dyn",
        vec![DYN_TYPE, DYN_TYPE],
        put_all_fn,
    )?;
    Ok(())
}
