//! Compiling a graph's expressions (`${...}` in templates and status, `includeWhen`,
//! `readyWhen`) and checking what they read: known resources, `schema.*` paths the schema has.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::cel::{self, Program, template::Template};

use super::{
    model::{Expr, Part, Step, path_string},
    reserved::INSTANCE_METADATA,
};

/// Collects every string holding `${` in a template, with its path.
pub(super) fn collect_fields(
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

pub(super) fn compile_expr(text: &str, omit: cel::Omit) -> Result<Expr, String> {
    let template = Template::parse(text).map_err(|e| e.to_string())?;
    let compile = |src: &str| {
        let program = cel::engine()
            .compile_with(src, omit)
            .map_err(|e| format!("expression {src:?}: {e}"))?;
        outside_conditions(&program)?;
        Ok::<_, String>(program)
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
pub(super) fn compile_condition(text: &str, what: &str, omit_gate: bool) -> Result<Program, String> {
    let template = Template::parse(text).map_err(|e| format!("{what}: {e}"))?;
    let Some(src) = template.standalone() else {
        return Err(format!(
            "{what} {text:?} must be a single standalone expression ${{...}}"
        ));
    };
    let program = cel::engine()
        .compile_with(src, cel::Omit::refused(omit_gate))
        .map_err(|e| format!("{what} expression {src:?}: {e}"))?;
    outside_conditions(&program)?;
    Ok(program)
}

/// `runtime.newCondition` and `runtime.condition` belong to `status.conditions`, as in kro.
fn outside_conditions(program: &Program) -> Result<(), String> {
    match program
        .references()
        .functions
        .iter()
        .find(|f| f.starts_with("runtime."))
    {
        Some(f) => Err(format!(
            "expression {:?}: {f} is only allowed in spec.schema.status.conditions",
            program.source()
        )),
        None => Ok(()),
    }
}

/// What an expression may refer to.
pub(super) struct Allowed<'a> {
    pub(super) schema: bool,
    pub(super) resources: &'a BTreeSet<String>,
    pub(super) extra: &'a [&'a str],
    pub(super) myself: Option<&'a str>,
}

/// Checks the variables and `schema.*` paths of `program`; returns the resource ids it uses.
pub(super) fn check_references(
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
pub(super) fn check_schema_path(path: &[String], spec_schema: &Value) -> Result<(), String> {
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
