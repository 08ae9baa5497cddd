//! JSON to CEL values and back. JSON integers become CEL `int` (as Kubernetes' CEL does),
//! other numbers `double`; bytes go back to JSON as base64, timestamps as RFC 3339.

use std::{collections::HashMap, sync::Arc};

use base64::Engine as _;
use cel::{
    Value,
    common::{
        types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt},
        value::Val,
    },
    objects::{Key, Map},
};
use serde_json::Value as Json;

/// Converts JSON to a CEL value.
pub(crate) fn to_cel(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_u64() {
                Some(u) => Value::UInt(u),
                None => Value::Float(n.as_f64().unwrap_or_default()),
            },
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(map) => {
            let entries: HashMap<Key, Value> = map
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Value::Map(Map {
                map: Arc::new(entries),
            })
        }
    }
}

/// Converts JSON straight to the interpreter's value objects, skipping the intermediate
/// [`Value`] (one allocation per node instead of two). Same mapping as [`to_cel`].
pub(crate) fn to_val(json: &Json) -> Box<dyn Val> {
    match json {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Box::new(CelInt::from(i)),
            None => match n.as_u64() {
                Some(u) => Box::new(CelUInt::from(u)),
                None => Box::new(CelDouble::from(n.as_f64().unwrap_or_default())),
            },
        },
        Json::String(s) => Box::new(CelString::from(s.clone())),
        Json::Array(items) => Box::new(CelList::from(items.iter().map(to_val).collect::<Vec<_>>())),
        Json::Object(map) => {
            let entries: HashMap<CelMapKey, Box<dyn Val>> = map
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), to_val(v)))
                .collect();
            Box::new(CelMap::from(entries))
        }
    }
}

/// Converts a CEL value to JSON. Maps come out with sorted keys (JSON objects are ordered
/// maps here), so output is deterministic.
///
/// # Errors
/// A value JSON cannot hold (a non-finite double, a function, a type), named.
pub(crate) fn to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("double {f} has no JSON representation"))?,
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b.as_slice())),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, to_json(v)?);
            }
            Json::Object(out)
        }
        Value::Timestamp(t) => Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Duration(d) => Json::String(format_duration(d)),
        Value::Opaque(o) => match o.downcast_ref::<cel::objects::OptionalValue>() {
            Some(optional) => match optional.value() {
                Some(v) => to_json(v)?,
                None => Json::Null,
            },
            None => super::kubernetes::opaque_to_json(o.as_ref())
                .ok_or_else(|| format!("a {} value has no JSON representation", o.runtime_type_name()))?,
        },
        Value::Function(name, _) => return Err(format!("function {name} has no JSON representation")),
        Value::Struct(_) => return Err("a struct value has no JSON representation".to_string()),
    })
}

/// Go's `time.Duration.String()` form: `1h2m3.5s`, `500ms`, `0s`.
pub(crate) fn format_duration(d: &chrono::Duration) -> String {
    let nanos = d.num_nanoseconds().unwrap_or(i64::MAX);
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (value, unit) = if n < 1_000 {
            (n as f64, "ns")
        } else if n < 1_000_000 {
            (n as f64 / 1e3, "µs")
        } else {
            (n as f64 / 1e6, "ms")
        };
        return format!("{sign}{value}{unit}");
    }
    let hours = n / 3_600_000_000_000;
    let minutes = (n / 60_000_000_000) % 60;
    let seconds = (n % 60_000_000_000) as f64 / 1e9;
    let mut out = sign.to_string();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_integers_become_cel_ints() {
        assert_eq!(to_cel(&json!(3)), Value::Int(3));
        assert_eq!(to_cel(&json!(1.5)), Value::Float(1.5));
    }

    #[test]
    fn values_round_trip() {
        let v = json!({ "a": [1, "x", true, null, { "b": 2.5 }], "c": {} });
        assert_eq!(to_json(&to_cel(&v)).unwrap(), v);
    }

    #[test]
    fn bytes_become_base64() {
        assert_eq!(
            to_json(&Value::Bytes(Arc::new(b"hi".to_vec()))).unwrap(),
            json!("aGk=")
        );
    }
}
