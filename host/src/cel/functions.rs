//! kro's CEL libraries on top of the `cel` crate's standard library and its strings, lists and
//! encoders extensions: `random`, `hash`, `json`, map `merge`, kro's list mutators, and the
//! Kubernetes libraries (list helpers, regex, quantity, URL, semver, IP and CIDR).
//!
//! Functions that build strings or lists refuse results over [`MAX_STRING`] bytes or
//! [`MAX_LIST`] items, so an expression cannot exhaust the controller through them.

use std::{cmp::Ordering, collections::HashMap, net::IpAddr, str::FromStr, sync::Arc};

use cel::{
    Env, ExecutionError, Value,
    common::{
        types::{DYN_TYPE, INT_TYPE, LIST_TYPE, MAP_TYPE, STRING_TYPE},
        value::{CowVal, Val},
    },
    objects::{Key, Map, Opaque},
};
use kroxide_schema::quantity::Quantity;
use sha2::{Digest as _, Sha256};

/// Longest string a kroxide function returns, in bytes.
pub const MAX_STRING: usize = 1 << 20;
/// Longest list a kroxide function returns.
pub const MAX_LIST: usize = 100_000;

const ALPHANUMERIC: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

type Out<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

fn vals(args: Vec<CowVal<'_, '_>>) -> Result<Vec<Value>, ExecutionError> {
    args.iter().map(|a| Value::try_from(a.as_ref())).collect()
}

fn ret<'b, 'v>(value: Value) -> Out<'b, 'v> {
    Ok(CowVal::Owned(Box::<dyn Val>::try_from(value)?))
}

fn err(function: &str, message: impl std::fmt::Display) -> ExecutionError {
    ExecutionError::function_error(function, message.to_string())
}

fn string(s: impl Into<String>) -> Value {
    Value::String(Arc::new(s.into()))
}

fn capped_string(function: &str, s: String) -> Result<Value, ExecutionError> {
    if s.len() > MAX_STRING {
        return Err(err(
            function,
            format!("result is {} bytes, over the limit of {MAX_STRING}", s.len()),
        ));
    }
    Ok(string(s))
}

fn capped_list(function: &str, items: Vec<Value>) -> Result<Value, ExecutionError> {
    if items.len() > MAX_LIST {
        return Err(err(
            function,
            format!("result has {} items, over the limit of {MAX_LIST}", items.len()),
        ));
    }
    Ok(Value::List(Arc::new(items)))
}

/// Defines an overload body over plain `Value`s.
macro_rules! value_fn {
    ($name:ident, |$args:ident| $body:expr) => {
        fn $name<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
            let $args = vals(args)?;
            let result: Result<Value, ExecutionError> = $body;
            ret(result?)
        }
    };
}

// === random ===

/// kro's `random.seededString`: characters from `[0-9a-z]` picked by successive 4-byte words
/// of sha256(seed). kro's algorithm reuses the digest's eight words cyclically (its rehash
/// branch can never run), so this does too: output is identical to kro's for the same
/// arguments, and repeats every eight characters.
pub fn seeded_string(length: i64, seed: &str) -> Result<String, String> {
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
pub fn seeded_int(min: i64, max: i64, seed: &str) -> Result<i64, String> {
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

fn fnv64a(data: &[u8]) -> [u8; 8] {
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

// === opaque types: quantity, URL, semver, IP, CIDR ===

#[derive(Debug, Clone, PartialEq, Eq)]
struct QuantityVal(Quantity);

impl Opaque for QuantityVal {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlVal {
    scheme: String,
    host: String,
    port: String,
    path: String,
    query: String,
}

impl Opaque for UrlVal {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SemverVal(semver::Version);

impl Opaque for SemverVal {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Semver"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct IpVal(IpAddr);

impl Opaque for IpVal {
    fn runtime_type_name(&self) -> &str {
        "net.IP"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CidrVal {
    addr: IpAddr,
    prefix: u8,
}

impl Opaque for CidrVal {
    fn runtime_type_name(&self) -> &str {
        "net.CIDR"
    }
}

/// The JSON form of kroxide's opaque values: their canonical strings.
pub fn opaque_to_json(o: &dyn Opaque) -> Option<serde_json::Value> {
    let text = if let Some(q) = o.downcast_ref::<QuantityVal>() {
        q.0.canonical()
    } else if let Some(u) = o.downcast_ref::<UrlVal>() {
        u.to_string()
    } else if let Some(s) = o.downcast_ref::<SemverVal>() {
        s.0.to_string()
    } else if let Some(ip) = o.downcast_ref::<IpVal>() {
        ip.0.to_string()
    } else if let Some(c) = o.downcast_ref::<CidrVal>() {
        format!("{}/{}", c.addr, c.prefix)
    } else {
        return None;
    };
    Some(serde_json::Value::String(text))
}

fn as_opaque<T: 'static>(v: &Value) -> Option<&T> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<T>(),
        _ => None,
    }
}

fn quantity_of(function: &str, v: &Value) -> Result<Quantity, ExecutionError> {
    match v {
        Value::Opaque(_) => as_opaque::<QuantityVal>(v)
            .map(|q| q.0)
            .ok_or_else(|| err(function, "expects a quantity")),
        Value::Int(i) => Ok(Quantity::from_int(*i)),
        _ => Err(err(function, "expects a quantity or an int")),
    }
}

value_fn!(quantity_new, |a| match &a[0] {
    Value::String(s) => Quantity::from_str(s)
        .map(|q| Value::Opaque(Arc::new(QuantityVal(q))))
        .map_err(|e| err("quantity", e)),
    _ => Err(err("quantity", "expects a string")),
});

value_fn!(is_quantity, |a| match &a[0] {
    Value::String(s) => Ok(Value::Bool(Quantity::from_str(s).is_ok())),
    _ => Err(err("isQuantity", "expects a string")),
});

impl std::fmt::Display for UrlVal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

fn parse_url(s: &str) -> Option<UrlVal> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let (authority, rest) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let port = authority[end + 1..].strip_prefix(':').unwrap_or_default();
        (&authority[..=end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p),
            _ => (authority, ""),
        }
    };
    Some(UrlVal {
        scheme: scheme.to_string(),
        host: host.to_string(),
        port: port.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    })
}

value_fn!(url_new, |a| match &a[0] {
    Value::String(s) => parse_url(s)
        .map(|u| Value::Opaque(Arc::new(u)))
        .ok_or_else(|| err(
            "url",
            format!("URL parse error during conversion from string: {s}")
        )),
    _ => Err(err("url", "expects a string")),
});

value_fn!(is_url, |a| match &a[0] {
    Value::String(s) => Ok(Value::Bool(parse_url(s).is_some())),
    _ => Err(err("isURL", "expects a string")),
});

fn semver_parse(s: &str) -> Option<semver::Version> {
    semver::Version::parse(s.strip_prefix('v').unwrap_or(s)).ok()
}

value_fn!(semver_new, |a| match &a[0] {
    Value::String(s) => semver_parse(s)
        .map(|v| Value::Opaque(Arc::new(SemverVal(v))))
        .ok_or_else(|| err("semver", format!("error converting string to semver: {s}"))),
    _ => Err(err("semver", "expects a string")),
});

value_fn!(is_semver, |a| match &a[0] {
    Value::String(s) => Ok(Value::Bool(semver_parse(s).is_some())),
    _ => Err(err("isSemver", "expects a string")),
});

value_fn!(ip_new, |a| match &a[0] {
    Value::String(s) => IpAddr::from_str(s)
        .map(|ip| Value::Opaque(Arc::new(IpVal(ip))))
        .map_err(|_| err(
            "ip",
            format!("IP Address '{s}' parse error during conversion from string")
        )),
    _ => Err(err("ip", "expects a string")),
});

value_fn!(is_ip, |a| match &a[0] {
    Value::String(s) => Ok(Value::Bool(IpAddr::from_str(s).is_ok())),
    _ => Err(err("isIP", "expects a string")),
});

fn parse_cidr(s: &str) -> Option<CidrVal> {
    let (addr, prefix) = s.split_once('/')?;
    let addr = IpAddr::from_str(addr).ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(CidrVal { addr, prefix })
}

value_fn!(cidr_new, |a| match &a[0] {
    Value::String(s) => parse_cidr(s)
        .map(|c| Value::Opaque(Arc::new(c)))
        .ok_or_else(|| err(
            "cidr",
            format!("network address parse error during conversion from string: {s}")
        )),
    _ => Err(err("cidr", "expects a string")),
});

fn ip_bits(ip: IpAddr) -> (u128, u32) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn cidr_contains(c: &CidrVal, ip: IpAddr) -> bool {
    let (net, width) = ip_bits(c.addr);
    let (addr, w2) = ip_bits(ip);
    if width != w2 {
        return false;
    }
    let shift = width - u32::from(c.prefix);
    shift >= width || (net >> shift) == (addr >> shift)
}

/// Member functions shared by several opaque types, dispatched on the receiver.
fn member(name: &str, a: &[Value]) -> Result<Value, ExecutionError> {
    let recv = &a[0];
    if let Some(QuantityVal(q)) = as_opaque::<QuantityVal>(recv) {
        let other = || quantity_of(name, &a[1]);
        return Ok(match name {
            "isLessThan" => Value::Bool(*q < other()?),
            "isGreaterThan" => Value::Bool(*q > other()?),
            "compareTo" => Value::Int(q.cmp(&other()?) as i64),
            "add" => Value::Opaque(Arc::new(QuantityVal(q.add(&other()?).map_err(|e| err(name, e))?))),
            "sub" => Value::Opaque(Arc::new(QuantityVal(q.sub(&other()?).map_err(|e| err(name, e))?))),
            "asInteger" => Value::Int(q.as_i64().ok_or_else(|| {
                err(
                    name,
                    "cannot convert value to integer: it is not a whole number or does not fit in int64",
                )
            })?),
            "asApproximateFloat" => Value::Float(q.as_f64()),
            "sign" => Value::Int(q.sign()),
            "isInteger" => Value::Bool(q.as_i64().is_some()),
            _ => return Err(err(name, "no such function on a quantity")),
        });
    }
    if let Some(SemverVal(v)) = as_opaque::<SemverVal>(recv) {
        let other = || match a.get(1).and_then(|o| as_opaque::<SemverVal>(o)) {
            Some(SemverVal(o)) => Ok(o.clone()),
            None => Err(err(name, "expects a semver")),
        };
        return Ok(match name {
            "major" => Value::Int(v.major as i64),
            "minor" => Value::Int(v.minor as i64),
            "patch" => Value::Int(v.patch as i64),
            "isLessThan" => Value::Bool(*v < other()?),
            "isGreaterThan" => Value::Bool(*v > other()?),
            "compareTo" => Value::Int(v.cmp(&other()?) as i64),
            _ => return Err(err(name, "no such function on a semver")),
        });
    }
    if let Some(u) = as_opaque::<UrlVal>(recv) {
        let hostname = u.host.trim_start_matches('[').trim_end_matches(']').to_string();
        return Ok(string(match name {
            "getScheme" => u.scheme.clone(),
            "getHost" => {
                if u.port.is_empty() {
                    u.host.clone()
                } else {
                    format!("{}:{}", u.host, u.port)
                }
            }
            "getHostname" => hostname,
            "getPort" => u.port.clone(),
            "getEscapedPath" => u.path.clone(),
            "getQuery" => return Ok(query_map(&u.query)),
            _ => return Err(err(name, "no such function on a URL")),
        }));
    }
    if let Some(IpVal(ip)) = as_opaque::<IpVal>(recv) {
        return Ok(match name {
            "family" => Value::Int(if ip.is_ipv4() { 4 } else { 6 }),
            "isUnspecified" => Value::Bool(ip.is_unspecified()),
            "isLoopback" => Value::Bool(ip.is_loopback()),
            "isLinkLocalMulticast" => Value::Bool(match ip {
                IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
                IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
            }),
            "isLinkLocalUnicast" => Value::Bool(match ip {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
            }),
            "isGlobalUnicast" => Value::Bool(
                !(ip.is_unspecified()
                    || ip.is_loopback()
                    || ip.is_multicast()
                    || matches!(ip, IpAddr::V4(v4) if v4.is_link_local() || v4.is_broadcast())
                    || matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)),
            ),
            _ => return Err(err(name, "no such function on an IP")),
        });
    }
    if let Some(c) = as_opaque::<CidrVal>(recv) {
        return Ok(match name {
            "containsIP" => {
                let ip = match &a[1] {
                    Value::String(s) => IpAddr::from_str(s).map_err(|_| err(name, "invalid IP"))?,
                    other => as_opaque::<IpVal>(other)
                        .map(|i| i.0)
                        .ok_or_else(|| err(name, "expects an IP"))?,
                };
                Value::Bool(cidr_contains(c, ip))
            }
            "containsCIDR" => {
                let other = match &a[1] {
                    Value::String(s) => parse_cidr(s).ok_or_else(|| err(name, "invalid CIDR"))?,
                    other => as_opaque::<CidrVal>(other)
                        .cloned()
                        .ok_or_else(|| err(name, "expects a CIDR"))?,
                };
                Value::Bool(other.prefix >= c.prefix && cidr_contains(c, other.addr))
            }
            "ip" => Value::Opaque(Arc::new(IpVal(c.addr))),
            "prefixLength" => Value::Int(i64::from(c.prefix)),
            "masked" => {
                let (bits, width) = ip_bits(c.addr);
                let mask = if c.prefix == 0 {
                    0
                } else {
                    u128::MAX << (width - u32::from(c.prefix))
                };
                let masked = bits & mask;
                let addr = if width == 32 {
                    IpAddr::V4(std::net::Ipv4Addr::from(masked as u32))
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::from(masked))
                };
                Value::Opaque(Arc::new(CidrVal {
                    addr,
                    prefix: c.prefix,
                }))
            }
            _ => return Err(err(name, "no such function on a CIDR")),
        });
    }
    Err(err(name, "no such overload for this receiver"))
}

fn query_map(query: &str) -> Value {
    let mut map: HashMap<Key, Vec<Value>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(Key::String(Arc::new(k.to_string())))
            .or_default()
            .push(string(v));
    }
    let map = map
        .into_iter()
        .map(|(k, v)| (k, Value::List(Arc::new(v))))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// Member functions whose receiver is one of kroxide's opaque values.
pub const OPAQUE_MEMBERS: &[(&str, usize)] = &[
    ("isLessThan", 1),
    ("isGreaterThan", 1),
    ("compareTo", 1),
    ("add", 1),
    ("sub", 1),
    ("asInteger", 0),
    ("asApproximateFloat", 0),
    ("sign", 0),
    ("isInteger", 0),
    ("major", 0),
    ("minor", 0),
    ("patch", 0),
    ("getScheme", 0),
    ("getHost", 0),
    ("getHostname", 0),
    ("getPort", 0),
    ("getEscapedPath", 0),
    ("getQuery", 0),
    ("family", 0),
    ("isUnspecified", 0),
    ("isLoopback", 0),
    ("isLinkLocalMulticast", 0),
    ("isLinkLocalUnicast", 0),
    ("isGlobalUnicast", 0),
    ("containsIP", 1),
    ("containsCIDR", 1),
    ("ip", 0),
    ("prefixLength", 0),
    ("masked", 0),
];

/// One raw overload per member name; the name is recovered from the registration table.
macro_rules! members {
    ($($name:literal),* $(,)?) => {
        fn opaque_member_fn(name: &str) -> Option<cel::common::functions::Function> {
            match name {
                $(
                    $name => {
                        fn f<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
                            ret(member($name, &vals(args)?)?)
                        }
                        Some(f)
                    }
                )*
                _ => None,
            }
        }
    };
}

members!(
    "isLessThan",
    "isGreaterThan",
    "compareTo",
    "add",
    "sub",
    "asInteger",
    "asApproximateFloat",
    "sign",
    "isInteger",
    "major",
    "minor",
    "patch",
    "getScheme",
    "getHost",
    "getHostname",
    "getPort",
    "getEscapedPath",
    "getQuery",
    "family",
    "isUnspecified",
    "isLoopback",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isGlobalUnicast",
    "containsIP",
    "containsCIDR",
    "ip",
    "prefixLength",
    "masked",
);

/// The helper every comprehension iterates through (see `inspect::rewrite`): maps yield their
/// keys sorted, so `m.map(k, ...)` is deterministic; everything else passes through.
pub const ITER_HELPER: &str = "@kroxide.iter";

value_fn!(iter_helper, |a| Ok(match &a[0] {
    Value::Map(m) => {
        let mut keys: Vec<Value> = m
            .map
            .keys()
            .map(|k| match k {
                Key::String(s) => Value::String(s.clone()),
                Key::Int(i) => Value::Int(*i),
                Key::Uint(u) => Value::UInt(*u),
                Key::Bool(b) => Value::Bool(*b),
            })
            .collect();
        keys.sort_by(|x, y| compare("iter", x, y).unwrap_or(Ordering::Equal));
        Value::List(Arc::new(keys))
    }
    other => other.clone(),
}));

/// Go's `time.Duration.String()` form: `1h2m3.5s`, `500ms`, `0s`.
pub fn format_duration(d: &chrono::Duration) -> String {
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

/// Registers kroxide's functions on `env`.
///
/// # Errors
/// A declaration conflict (a bug, caught by tests).
pub fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
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
    env.add_overload("quantity", "quantity_string", vec![STRING_TYPE], quantity_new)?;
    env.add_overload("isQuantity", "isQuantity_string", vec![STRING_TYPE], is_quantity)?;
    env.add_overload("url", "url_string", vec![STRING_TYPE], url_new)?;
    env.add_overload("isURL", "isURL_string", vec![STRING_TYPE], is_url)?;
    env.add_overload("semver", "semver_string", vec![STRING_TYPE], semver_new)?;
    env.add_overload("isSemver", "isSemver_string", vec![STRING_TYPE], is_semver)?;
    env.add_overload("ip", "ip_string", vec![STRING_TYPE], ip_new)?;
    env.add_overload("isIP", "isIP_string", vec![STRING_TYPE], is_ip)?;
    env.add_overload("cidr", "cidr_string", vec![STRING_TYPE], cidr_new)?;
    for (name, arity) in OPAQUE_MEMBERS {
        let f = opaque_member_fn(name).expect("every listed member has a body");
        env.add_member_overload(
            name,
            &format!("opaque_{name}_{arity}"),
            DYN_TYPE,
            (0..*arity).map(|_| DYN_TYPE).collect(),
            f,
        )?;
    }
    env.add_overload(ITER_HELPER, "kroxide_iter_dyn", vec![DYN_TYPE], iter_helper)?;
    Ok(())
}
