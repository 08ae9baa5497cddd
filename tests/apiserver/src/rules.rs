//! `x-kubernetes-validations` rules of custom resources, evaluated with CEL (`self`, and
//! `oldSelf` on updates). Compiled once per rule text. A rule that does not compile here is
//! skipped rather than guessed at.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use cel::{Context, Env, Program, Value as Cel, objects::Key};
use kroxide_schema::structural::RuleEvaluator;
use serde_json::Value;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Extensions only add functions; a failure to add one leaves rules using it uncompiled.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    Arc::new(env)
});

/// Evaluates rules with the `cel` crate, caching compiled programs.
#[derive(Debug, Default)]
pub struct CelRules {
    cache: Mutex<HashMap<String, Option<Arc<Program>>>>,
}

fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => n
                .as_u64()
                .map(Cel::UInt)
                .unwrap_or_else(|| Cel::Float(n.as_f64().unwrap_or_default())),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => Cel::Map(cel::objects::Map {
            map: Arc::new(
                map.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

impl CelRules {
    fn program(&self, rule: &str) -> Option<Arc<Program>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(rule.to_string())
            .or_insert_with(|| ENV.compile(rule).ok().map(Arc::new))
            .clone()
    }
}

impl RuleEvaluator for CelRules {
    fn evaluate(&self, rule: &str, this: &Value, old: Option<&Value>) -> Result<Option<bool>, String> {
        let Some(program) = self.program(rule) else {
            return Ok(None);
        };
        let mut ctx = Context::with_env(ENV.clone());
        ctx.add_variable_from_value("self", to_cel(this));
        if let Some(old) = old {
            ctx.add_variable_from_value("oldSelf", to_cel(old));
        }
        match program.execute(&ctx) {
            Ok(Cel::Bool(b)) => Ok(Some(b)),
            Ok(other) => Err(format!("rule returned {other:?}, not a bool")),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_see_self_and_old_self() {
        let r = CelRules::default();
        assert_eq!(
            r.evaluate("self.min <= self.max", &json!({"min": 1, "max": 3}), None),
            Ok(Some(true))
        );
        assert_eq!(r.evaluate("self.size() > 2", &json!("ab"), None), Ok(Some(false)));
        assert_eq!(
            r.evaluate("self == oldSelf", &json!(1), Some(&json!(2))),
            Ok(Some(false))
        );
        assert_eq!(r.evaluate("this is not cel (", &json!(1), None), Ok(None));
    }
}
