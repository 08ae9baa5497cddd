//! kro's CEL libraries on top of the `cel` crate's standard library and its strings, lists and
//! encoders extensions: `random`, `hash`, `json`, map `merge`, kro's list mutators, and the
//! Kubernetes list helpers and regex; the other Kubernetes libraries are in [`super::kubernetes`].
//!
//! Functions that build strings or lists refuse results over [`super::native::MAX_STRING`]
//! bytes or [`super::native::MAX_LIST`] items, so an expression cannot exhaust the controller through them.

use std::{cmp::Ordering, collections::HashMap, sync::Arc};

use super::native::{MAX_STRING, capped_list, capped_string, err, string, value_fn};
use cel::{
    Env, ExecutionError, Value,
    common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, MAP_TYPE, STRING_TYPE},
    objects::{Key, Map},
};
use sha2::{Digest as _, Sha256};

const ALPHANUMERIC: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

// === random ===

/// kro's `random.seededString`: characters from `[0-9a-z]` picked by successive 4-byte words
/// of sha256(seed). kro's algorithm reuses the digest's eight words cyclically (its rehash
/// branch can never run), so this does too: output is identical to kro's for the same
/// arguments, and repeats every eight characters.
pub(crate) fn seeded_string(length: i64, seed: &str) -> Result<String, String> {
    if length <= 0 {
        return Err("random.seededString length must be positive".to_string());
    }
    if length as usize > MAX_STRING {
        return Err(format!("random.seededString length must be at most {MAX_STRING}"));
    }
    let hash = Sha256::digest(seed.as_bytes());
    Ok((0..length as usize)
        .map(|i| {
            let start = (i * 4) % hash.len();
            let word = u32::from_be_bytes(hash[start..start + 4].try_into().expect("4 bytes"));
            ALPHANUMERIC[(word % ALPHANUMERIC.len() as u32) as usize] as char
        })
        .collect())
}

/// kro's `random.seededInt`: min + (first 8 bytes of sha256(seed), big-endian) mod (max - min).
pub(crate) fn seeded_int(min: i64, max: i64, seed: &str) -> Result<i64, String> {
    if min >= max {
        return Err("random.seededInt min must be less than max".to_string());
    }
    let hash = Sha256::digest(seed.as_bytes());
    let v = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
    let range = (max as i128 - min as i128) as u128;
    Ok((min as i128 + (u128::from(v) % range) as i128) as i64)
}

value_fn!(random_seeded_string, |a| match (&a[0], &a[1]) {
    (Value::Int(n), Value::String(seed)) => seeded_string(*n, seed)
        .map(string)
        .map_err(|e| err("random.seededString", e)),
    _ => Err(err("random.seededString", "expects (int, string)")),
});

value_fn!(random_seeded_int, |a| match (&a[0], &a[1], &a[2]) {
    (Value::Int(min), Value::Int(max), Value::String(seed)) => {
        seeded_int(*min, *max, seed)
            .map(Value::Int)
            .map_err(|e| err("random.seededInt", e))
    }
    _ => Err(err("random.seededInt", "expects (int, int, string)")),
});

// === hash ===

/// FNV-1a (64-bit) of `data`, big-endian: kro's `hash.fnv64a`, and its GraphRevision hash.
pub(crate) fn fnv64a(data: &[u8]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.to_be_bytes()
}

value_fn!(hash_fnv64a, |a| match &a[0] {
    Value::String(s) => Ok(Value::Bytes(Arc::new(fnv64a(s.as_bytes()).to_vec()))),
    _ => Err(err("hash.fnv64a", "hash.fnv64a argument must be a string")),
});

value_fn!(hash_sha256, |a| match &a[0] {
    Value::String(s) => Ok(Value::Bytes(Arc::new(Sha256::digest(s.as_bytes()).to_vec()))),
    _ => Err(err("hash.sha256", "hash.sha256 argument must be a string")),
});

value_fn!(hash_md5, |a| match &a[0] {
    Value::String(s) => Ok(Value::Bytes(Arc::new(md5::Md5::digest(s.as_bytes()).to_vec()))),
    _ => Err(err("hash.md5", "hash.md5 argument must be a string")),
});

// === json ===

value_fn!(json_marshal, |a| {
    let json = super::convert::to_json(&a[0]).map_err(|e| err("json.marshal", e))?;
    capped_string("json.marshal", json.to_string())
});

value_fn!(json_unmarshal, |a| match &a[0] {
    Value::String(s) => serde_json::from_str::<serde_json::Value>(s)
        .map(|v| super::convert::to_cel(&v))
        .map_err(|e| err("json.unmarshal", format!("invalid JSON: {e}"))),
    _ => Err(err("json.unmarshal", "expects a string")),
});

// === maps ===

value_fn!(map_merge, |a| match (&a[0], &a[1]) {
    (Value::Map(left), Value::Map(right)) => {
        // Keys of the argument overwrite those of the receiver, as kro's code does.
        let mut merged: HashMap<Key, Value> = (*left.map).clone();
        for (k, v) in right.map.iter() {
            merged.insert(k.clone(), v.clone());
        }
        Ok(Value::Map(Map {
            map: Arc::new(merged),
        }))
    }
    _ => Err(err("merge", "expects two maps")),
});

/// `a.deepMerge(b)`: `a` with `b` laid over it; where both hold a map under a key, those maps
/// are merged the same way, anything else (lists included) is taken from `b`.
fn deep_merge(left: &Map, right: &Map) -> Map {
    let mut merged: HashMap<Key, Value> = (*left.map).clone();
    for (k, v) in right.map.iter() {
        let next = match (merged.get(k), v) {
            (Some(Value::Map(l)), Value::Map(r)) => Value::Map(deep_merge(l, r)),
            _ => v.clone(),
        };
        merged.insert(k.clone(), next);
    }
    Map {
        map: Arc::new(merged),
    }
}

value_fn!(map_deep_merge, |a| match (&a[0], &a[1]) {
    (Value::Map(left), Value::Map(right)) => Ok(Value::Map(deep_merge(left, right))),
    _ => Err(err("deepMerge", "expects two maps")),
});

// === runtime (kro's custom status conditions) ===

/// The keys of a condition, in the order kro lists them.
const CONDITION_KEYS: [&str; 4] = ["type", "status", "reason", "message"];

fn condition_map(fields: [String; 4]) -> Value {
    let map: HashMap<Key, Value> = CONDITION_KEYS
        .iter()
        .zip(fields)
        .map(|(k, v)| (Key::String(Arc::new((*k).to_string())), string(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// `runtime.newCondition({type, status, reason, message})`: a condition, every value a string,
/// `type` not empty and `status` one of True, False, Unknown; `reason` and `message` default to
/// empty.
fn new_condition(a: &[Value]) -> Result<Value, ExecutionError> {
    let f = "runtime.newCondition";
    let Value::Map(m) = &a[0] else {
        return Err(err(f, "argument must be a map"));
    };
    let mut fields: [String; 4] = Default::default();
    for (k, v) in m.map.iter() {
        let Key::String(key) = k else {
            return Err(err(f, "keys must be strings"));
        };
        let Some(i) = CONDITION_KEYS.iter().position(|c| *c == key.as_str()) else {
            return Err(err(
                f,
                format!("unknown key {key:?} (allowed: type, status, reason, message)"),
            ));
        };
        let Value::String(s) = v else {
            return Err(err(f, format!("{key} must be a string, got {}", v.type_of())));
        };
        fields[i] = s.to_string();
    }
    if fields[0].is_empty() {
        return Err(err(f, "type must not be empty"));
    }
    if !["True", "False", "Unknown"].contains(&fields[1].as_str()) {
        return Err(err(
            f,
            format!("status must be one of True, False, Unknown (got {:?})", fields[1]),
        ));
    }
    Ok(condition_map(fields))
}

value_fn!(runtime_new_condition, |a| new_condition(&a));

/// `runtime.condition(obj, type)`: the condition of `type` in `obj.status.conditions`, or one
/// with every field empty.
fn condition(a: &[Value]) -> Result<Value, ExecutionError> {
    let f = "runtime.condition";
    let Value::String(wanted) = &a[1] else {
        return Err(err(f, "type must be a string"));
    };
    let Value::Map(obj) = &a[0] else {
        return Err(err(f, "obj must be an object"));
    };
    let get = |m: &Map, k: &str| m.map.get(&Key::String(Arc::new(k.to_string()))).cloned();
    let conditions = match get(obj, "status") {
        None => None,
        Some(Value::Map(status)) => match get(&status, "conditions") {
            None => None,
            Some(Value::List(l)) => Some(l),
            Some(_) => return Err(err(f, "obj.status.conditions must be a list")),
        },
        Some(_) => return Err(err(f, "obj.status must be an object")),
    };
    let text = |m: &Map, k: &str| match get(m, k) {
        Some(Value::String(s)) => s.to_string(),
        _ => String::new(),
    };
    for c in conditions.iter().flat_map(|l| l.iter()) {
        if let Value::Map(m) = c
            && text(m, "type") == wanted.as_str()
        {
            return Ok(condition_map(CONDITION_KEYS.map(|k| text(m, k))));
        }
    }
    Ok(condition_map(Default::default()))
}

value_fn!(runtime_condition, |a| condition(&a));

// === lists (kro and Kubernetes) ===

fn list<'a>(function: &str, v: &'a Value) -> Result<&'a Arc<Vec<Value>>, ExecutionError> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(err(
            function,
            format!("expects a list, got {:?}", other.type_of()),
        )),
    }
}

fn index(function: &str, v: &Value, len: usize, allow_end: bool) -> Result<usize, ExecutionError> {
    let Value::Int(i) = v else {
        return Err(err(function, "index must be an int"));
    };
    let max = if allow_end { len } else { len.saturating_sub(1) };
    if *i < 0 || *i as usize > max || (!allow_end && len == 0) {
        return Err(err(
            function,
            format!("index {i} out of bounds for a list of {len}"),
        ));
    }
    Ok(*i as usize)
}

value_fn!(lists_set_at_index, |a| {
    let l = list("lists.setAtIndex", &a[0])?;
    let i = index("lists.setAtIndex", &a[1], l.len(), false)?;
    let mut items = (**l).clone();
    items[i] = a[2].clone();
    Ok(Value::List(Arc::new(items)))
});

value_fn!(lists_insert_at_index, |a| {
    let l = list("lists.insertAtIndex", &a[0])?;
    let i = index("lists.insertAtIndex", &a[1], l.len(), true)?;
    let mut items = (**l).clone();
    items.insert(i, a[2].clone());
    capped_list("lists.insertAtIndex", items)
});

value_fn!(lists_remove_at_index, |a| {
    let l = list("lists.removeAtIndex", &a[0])?;
    let i = index("lists.removeAtIndex", &a[1], l.len(), false)?;
    let mut items = (**l).clone();
    items.remove(i);
    Ok(Value::List(Arc::new(items)))
});

fn compare(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::UInt(x), Value::UInt(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x
            .partial_cmp(y)
            .ok_or_else(|| err(function, "cannot compare NaN")),
        (Value::Int(x), Value::Float(y)) => (*x as f64)
            .partial_cmp(y)
            .ok_or_else(|| err(function, "cannot compare NaN")),
        (Value::Float(x), Value::Int(y)) => x
            .partial_cmp(&(*y as f64))
            .ok_or_else(|| err(function, "cannot compare NaN")),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) => Ok(x.cmp(y)),
        (Value::Timestamp(x), Value::Timestamp(y)) => Ok(x.cmp(y)),
        _ => Err(err(function, "elements are not comparable")),
    }
}

value_fn!(list_sum, |a| {
    let l = list("sum", &a[0])?;
    let mut int: i64 = 0;
    let mut float: Option<f64> = None;
    for v in l.iter() {
        match v {
            Value::Int(i) => {
                int = int
                    .checked_add(*i)
                    .ok_or_else(|| err("sum", "integer overflow"))?
            }
            Value::UInt(u) => {
                int = int
                    .checked_add(*u as i64)
                    .ok_or_else(|| err("sum", "integer overflow"))?
            }
            Value::Float(f) => *float.get_or_insert(0.0) += f,
            _ => return Err(err("sum", "elements must be numbers")),
        }
    }
    Ok(match float {
        Some(f) => Value::Float(f + int as f64),
        None => Value::Int(int),
    })
});

fn extreme(function: &str, a: &[Value], want: Ordering) -> Result<Value, ExecutionError> {
    let l = list(function, &a[0])?;
    let mut best: Option<&Value> = None;
    for v in l.iter() {
        best = match best {
            None => Some(v),
            Some(b) if compare(function, v, b)? == want => Some(v),
            keep => keep,
        };
    }
    best.cloned().ok_or_else(|| err(function, "list is empty"))
}

value_fn!(list_min, |a| extreme("min", &a, Ordering::Less));
value_fn!(list_max, |a| extreme("max", &a, Ordering::Greater));

value_fn!(list_is_sorted, |a| {
    let l = list("isSorted", &a[0])?;
    let mut sorted = true;
    for pair in l.windows(2) {
        sorted &= compare("isSorted", &pair[0], &pair[1])? != Ordering::Greater;
    }
    Ok(Value::Bool(sorted))
});

value_fn!(list_index_of, |a| {
    let l = list("indexOf", &a[0])?;
    Ok(Value::Int(
        l.iter().position(|v| *v == a[1]).map_or(-1, |i| i as i64),
    ))
});

value_fn!(list_last_index_of, |a| {
    let l = list("lastIndexOf", &a[0])?;
    Ok(Value::Int(
        l.iter().rposition(|v| *v == a[1]).map_or(-1, |i| i as i64),
    ))
});

// === regex ===

fn regex(function: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| err(function, format!("invalid regular expression: {e}")))
}

value_fn!(string_find, |a| match (&a[0], &a[1]) {
    (Value::String(s), Value::String(p)) => {
        Ok(string(
            regex("find", p)?
                .find(s)
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        ))
    }
    _ => Err(err("find", "expects (string, string)")),
});

fn find_all(a: &[Value], limit: Option<i64>) -> Result<Value, ExecutionError> {
    match (&a[0], &a[1]) {
        (Value::String(s), Value::String(p)) => {
            let re = regex("findAll", p)?;
            let n = match limit {
                Some(n) if n < 0 => usize::MAX,
                Some(n) => n as usize,
                None => usize::MAX,
            };
            let found: Vec<Value> = re.find_iter(s).take(n).map(|m| string(m.as_str())).collect();
            capped_list("findAll", found)
        }
        _ => Err(err("findAll", "expects (string, string)")),
    }
}

value_fn!(string_find_all, |a| find_all(&a, None));
value_fn!(string_find_all_n, |a| match &a[2] {
    Value::Int(n) => find_all(&a, Some(*n)),
    _ => Err(err("findAll", "limit must be an int")),
});

/// The helper every comprehension iterates through (see `inspect::rewrite`): maps yield their
/// keys sorted, so `m.map(k, ...)` is deterministic; everything else passes through.
pub(crate) const ITER_HELPER: &str = "@kroxide.iter";

value_fn!(iter_helper, |a| Ok(match &a[0] {
    Value::Map(m) => {
        let mut keys: Vec<Value> = m.map.keys().map(Value::from).collect();
        keys.sort_by(|x, y| compare("iter", x, y).unwrap_or(Ordering::Equal));
        Value::List(Arc::new(keys))
    }
    other => other.clone(),
}));

/// `omit()`: the field holding it is left out of the rendered object (kro's `CELOmitFunction`).
pub(crate) const OMIT: &str = "omit";
/// What `omit()` evaluates to: a text no template holds, recognised when the object is filled.
pub(crate) const OMIT_SENTINEL: &str = "\u{0}kroxide:omit\u{0}";

value_fn!(omit_fn, |_a| Ok(string(OMIT_SENTINEL)));

/// Registers kroxide's functions on `env`.
///
/// # Errors
/// A declaration conflict (a bug, caught by tests).
pub(crate) fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(
        "runtime.newCondition",
        "runtime_newCondition_map",
        vec![MAP_TYPE],
        runtime_new_condition,
    )?;
    env.add_overload(
        "runtime.condition",
        "runtime_condition_dyn_string",
        vec![DYN_TYPE, STRING_TYPE],
        runtime_condition,
    )?;
    env.add_overload(
        "random.seededString",
        "random_seededString_int_string",
        vec![INT_TYPE, STRING_TYPE],
        random_seeded_string,
    )?;
    env.add_overload(
        "random.seededInt",
        "random_seededInt_int_int_string",
        vec![INT_TYPE, INT_TYPE, STRING_TYPE],
        random_seeded_int,
    )?;
    env.add_overload(
        "hash.fnv64a",
        "hash_fnv64a_string",
        vec![STRING_TYPE],
        hash_fnv64a,
    )?;
    env.add_overload(
        "hash.sha256",
        "hash_sha256_string",
        vec![STRING_TYPE],
        hash_sha256,
    )?;
    env.add_overload("hash.md5", "hash_md5_string", vec![STRING_TYPE], hash_md5)?;
    env.add_overload("json.marshal", "json_marshal_dyn", vec![DYN_TYPE], json_marshal)?;
    env.add_overload(
        "json.unmarshal",
        "json_unmarshal_string",
        vec![STRING_TYPE],
        json_unmarshal,
    )?;
    env.add_member_overload("merge", "map_merge_map", MAP_TYPE, vec![MAP_TYPE], map_merge)?;
    env.add_member_overload(
        "deepMerge",
        "map_deepMerge_map",
        MAP_TYPE,
        vec![MAP_TYPE],
        map_deep_merge,
    )?;
    env.add_overload(
        "lists.setAtIndex",
        "lists_setAtIndex",
        vec![LIST_TYPE, INT_TYPE, DYN_TYPE],
        lists_set_at_index,
    )?;
    env.add_overload(
        "lists.insertAtIndex",
        "lists_insertAtIndex",
        vec![LIST_TYPE, INT_TYPE, DYN_TYPE],
        lists_insert_at_index,
    )?;
    env.add_overload(
        "lists.removeAtIndex",
        "lists_removeAtIndex",
        vec![LIST_TYPE, INT_TYPE],
        lists_remove_at_index,
    )?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], list_sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], list_min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], list_max)?;
    env.add_member_overload("isSorted", "list_isSorted", LIST_TYPE, vec![], list_is_sorted)?;
    env.add_member_overload(
        "indexOf",
        "list_indexOf_dyn",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_lastIndexOf_dyn",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_last_index_of,
    )?;
    env.add_member_overload(
        "find",
        "string_find_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        string_find,
    )?;
    env.add_member_overload(
        "findAll",
        "string_findAll_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        string_find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_findAll_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        string_find_all_n,
    )?;
    env.add_overload(OMIT, "omit", vec![], omit_fn)?;
    super::kubernetes::register(env)?;
    env.add_overload(ITER_HELPER, "kroxide_iter_dyn", vec![DYN_TYPE], iter_helper)?;
    Ok(())
}
