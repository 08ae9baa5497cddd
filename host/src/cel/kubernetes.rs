//! The Kubernetes CEL libraries kro enables: quantity, URL, semver, IP and CIDR values (opaque
//! to CEL, with their member functions) and their JSON form.

use std::{collections::HashMap, net::IpAddr, str::FromStr, sync::Arc};

use cel::{
    Env, ExecutionError, Value,
    common::{
        types::{DYN_TYPE, STRING_TYPE},
        value::CowVal,
    },
    objects::{Key, Map, Opaque},
};
use kroxide_schema::quantity::Quantity;

use super::native::{Out, err, ret, string, vals, value_fn};

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
pub(crate) fn opaque_to_json(o: &dyn Opaque) -> Option<serde_json::Value> {
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
pub(crate) const OPAQUE_MEMBERS: &[(&str, usize)] = &[
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

/// Registers the Kubernetes libraries' functions on `env`.
///
/// # Errors
/// A declaration the `cel` crate refuses (a duplicate overload).
pub(crate) fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
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
    Ok(())
}
