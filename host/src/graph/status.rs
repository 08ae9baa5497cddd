//! The graph's status fields: each `${...}` under `spec.schema.status` compiled, checked against
//! what it may read, and given the CRD type its shape implies.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::{
    cel::{self},
    rgd::ResourceGraphDefinition,
};

use super::{
    conditions::build_conditions,
    expressions::{Allowed, check_references, compile_expr},
    model::{Error, Expr, StatusField},
    simpleschema,
};

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

pub(super) fn build_status(
    rgd: &ResourceGraphDefinition,
    ids: &BTreeSet<String>,
    spec_schema: &Value,
    transformer: &simpleschema::Transformer,
    omit_gate: bool,
) -> Result<(Vec<StatusField>, Value, Vec<cel::Program>), Error> {
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
            bool,
        ),
    ) -> Result<(), Error> {
        let Value::Object(map) = value else { return Ok(()) };
        for (key, v) in map {
            path.push(key.clone());
            let dotted = path.join(".");
            if key == "state" && path.len() == 1 {
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
                    let expr = compile_expr(s, cel::Omit::refused(ctx.6))
                        .map_err(|m| Error::Status(format!("field {dotted}: {m}")))?;
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
    let mut conditions = Vec::new();
    if let Some(status) = &rgd.spec.schema.status {
        // `conditions`: the author's own conditions, which then own `status.conditions`.
        let mut status = status.clone();
        if let Some(entries) = status.as_object_mut().and_then(|m| m.remove("conditions")) {
            conditions = build_conditions(&entries, omit_gate)?;
            for (i, program) in conditions.iter().enumerate() {
                check_references(program, &allowed, spec_schema)
                    .map_err(|m| Error::Status(format!("status.conditions[{i}]: {m}")))?;
            }
        }
        let status = &status;
        let mut ctx = (
            Vec::new(),
            Vec::new(),
            has_plugin,
            &allowed,
            spec_schema,
            transformer,
            omit_gate,
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
    Ok((fields, schema, conditions))
}
