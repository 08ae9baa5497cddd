//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) for
//! the kinds clients send that way: `kubectl create configmap|secret|namespace|serviceaccount`
//! and Helm's release Secrets. The envelope is the magic `k8s\0` followed by a
//! `runtime.Unknown` whose `raw` field holds the object.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// A body that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not the protobuf envelope, or truncated.
    #[error("invalid protobuf body: {0}")]
    Malformed(&'static str),
    /// A kind this server does not decode from protobuf.
    #[error("protobuf bodies are not supported for {0}; send JSON")]
    Unsupported(String),
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Error> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(Error::Malformed("truncated varint"))?;
            self.buf = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(Error::Malformed("varint too long"))
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, Error> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.buf = self.buf.get(8..).ok_or(Error::Malformed("truncated fixed64"))?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Error::Malformed("length"))?;
                if len > self.buf.len() {
                    return Err(Error::Malformed("truncated field"));
                }
                let (bytes, rest) = self.buf.split_at(len);
                self.buf = rest;
                Field::Bytes(bytes)
            }
            5 => {
                self.buf = self.buf.get(4..).ok_or(Error::Malformed("truncated fixed32"))?;
                Field::Fixed
            }
            _ => return Err(Error::Malformed("unknown wire type")),
        };
        Ok(Some((tag >> 3, field)))
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, Error> {
    let mut r = Reader { buf };
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn string(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

fn base64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// A map entry message: 1 = key, 2 = value.
fn map_entry(b: &[u8], value: fn(&[u8]) -> Value) -> Result<(String, Value), Error> {
    let mut key = String::new();
    let mut val = value(&[]);
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
            (2, Field::Bytes(v)) => val = value(v),
            _ => {}
        }
    }
    Ok((key, val))
}

fn insert_map(obj: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    let m = obj.entry(key).or_insert_with(|| json!({}));
    if let Some(m) = m.as_object_mut() {
        m.insert(entry.0, entry.1);
    }
}

fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    let l = obj.entry(key).or_insert_with(|| json!([]));
    if let Some(l) = l.as_array_mut() {
        l.push(v);
    }
}

fn owner_reference(b: &[u8]) -> Result<Value, Error> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                o.insert("kind".into(), string(v));
            }
            (3, Field::Bytes(v)) => {
                o.insert("name".into(), string(v));
            }
            (4, Field::Bytes(v)) => {
                o.insert("uid".into(), string(v));
            }
            (5, Field::Bytes(v)) => {
                o.insert("apiVersion".into(), string(v));
            }
            (6, Field::Varint(v)) => {
                o.insert("controller".into(), json!(v != 0));
            }
            (7, Field::Varint(v)) => {
                o.insert("blockOwnerDeletion".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

fn object_meta(b: &[u8]) -> Result<Value, Error> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                m.insert("name".into(), string(v));
            }
            (2, Field::Bytes(v)) => {
                m.insert("generateName".into(), string(v));
            }
            (3, Field::Bytes(v)) => {
                m.insert("namespace".into(), string(v));
            }
            (5, Field::Bytes(v)) => {
                m.insert("uid".into(), string(v));
            }
            (6, Field::Bytes(v)) => {
                m.insert("resourceVersion".into(), string(v));
            }
            (11, Field::Bytes(v)) => insert_map(&mut m, "labels", map_entry(v, string)?),
            (12, Field::Bytes(v)) => insert_map(&mut m, "annotations", map_entry(v, string)?),
            (13, Field::Bytes(v)) => push(&mut m, "ownerReferences", owner_reference(v)?),
            (14, Field::Bytes(v)) => push(&mut m, "finalizers", string(v)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn object(kind: &str, b: &[u8]) -> Result<Value, Error> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(v) = f else {
            if let (Field::Varint(x), "ConfigMap", 4) | (Field::Varint(x), "Secret", 5) = (&f, kind, n) {
                o.insert("immutable".into(), json!(*x != 0));
            }
            if let (Field::Varint(x), "ServiceAccount", 4) = (&f, kind, n) {
                o.insert("automountServiceAccountToken".into(), json!(*x != 0));
            }
            continue;
        };
        match (kind, n) {
            (_, 1) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            ("ConfigMap", 2) => insert_map(&mut o, "data", map_entry(v, string)?),
            ("ConfigMap", 3) => insert_map(&mut o, "binaryData", map_entry(v, base64)?),
            ("Secret", 2) => insert_map(&mut o, "data", map_entry(v, base64)?),
            ("Secret", 3) => {
                o.insert("type".into(), string(v));
            }
            ("Secret", 4) => insert_map(&mut o, "stringData", map_entry(v, string)?),
            ("Namespace", 2) => {
                let mut spec = Map::new();
                for (sn, sf) in fields(v)? {
                    if let (1, Field::Bytes(fin)) = (sn, sf) {
                        push(&mut spec, "finalizers", string(fin));
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            ("ServiceAccount", 3) => {
                let mut r = Map::new();
                for (sn, sf) in fields(v)? {
                    if let (1, Field::Bytes(name)) = (sn, sf) {
                        r.insert("name".into(), string(name));
                    }
                }
                push(&mut o, "imagePullSecrets", Value::Object(r));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

fn strings_by_number(b: &[u8], names: &[(u64, &str)]) -> Result<Value, Error> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        if let (Some((_, name)), Field::Bytes(v)) = (names.iter().find(|(k, _)| *k == n), f) {
            o.insert((*name).into(), string(v));
        }
    }
    Ok(Value::Object(o))
}

fn repeated_strings(b: &[u8], names: &[(u64, &str)]) -> Result<Value, Error> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        if let (Some((_, name)), Field::Bytes(v)) = (names.iter().find(|(k, _)| *k == n), f) {
            push(&mut o, name, string(v));
        }
    }
    Ok(Value::Object(o))
}

fn label_selector(b: &[u8]) -> Result<Value, Error> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        if let (1, Field::Bytes(v)) = (n, f) {
            insert_map(&mut o, "matchLabels", map_entry(v, string)?);
        }
    }
    Ok(Value::Object(o))
}

/// `rbac.authorization.k8s.io/v1` roles and bindings, as `kubectl create role|clusterrole|
/// rolebinding|clusterrolebinding` sends them.
fn rbac(kind: &str, b: &[u8]) -> Result<Value, Error> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(v) = f else { continue };
        match (kind, n) {
            (_, 1) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            ("Role" | "ClusterRole", 2) => {
                let rule = repeated_strings(
                    v,
                    &[
                        (1, "verbs"),
                        (2, "apiGroups"),
                        (3, "resources"),
                        (4, "resourceNames"),
                        (5, "nonResourceURLs"),
                    ],
                )?;
                push(&mut o, "rules", rule);
            }
            ("ClusterRole", 3) => {
                let mut agg = Map::new();
                for (an, af) in fields(v)? {
                    if let (1, Field::Bytes(sel)) = (an, af) {
                        push(&mut agg, "clusterRoleSelectors", label_selector(sel)?);
                    }
                }
                o.insert("aggregationRule".into(), Value::Object(agg));
            }
            ("RoleBinding" | "ClusterRoleBinding", 2) => {
                let subject =
                    strings_by_number(v, &[(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")])?;
                push(&mut o, "subjects", subject);
            }
            ("RoleBinding" | "ClusterRoleBinding", 3) => {
                let role = strings_by_number(v, &[(1, "apiGroup"), (2, "kind"), (3, "name")])?;
                o.insert("roleRef".into(), role);
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// `authorization.k8s.io/v1` reviews, as `kubectl auth can-i` sends them.
fn review(kind: &str, b: &[u8]) -> Result<Value, Error> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(v) = f else { continue };
        match n {
            1 => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            2 => {
                let mut spec = Map::new();
                for (sn, sf) in fields(v)? {
                    let Field::Bytes(sv) = sf else { continue };
                    match (kind, sn) {
                        ("SelfSubjectAccessReview", 1) => {
                            let attrs = strings_by_number(
                                sv,
                                &[
                                    (1, "namespace"),
                                    (2, "verb"),
                                    (3, "group"),
                                    (4, "version"),
                                    (5, "resource"),
                                    (6, "subresource"),
                                    (7, "name"),
                                ],
                            )?;
                            spec.insert("resourceAttributes".into(), attrs);
                        }
                        ("SelfSubjectAccessReview", 2) => {
                            let attrs = strings_by_number(sv, &[(1, "path"), (2, "verb")])?;
                            spec.insert("nonResourceAttributes".into(), attrs);
                        }
                        ("SelfSubjectRulesReview", 1) => {
                            spec.insert("namespace".into(), string(sv));
                        }
                        _ => {}
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

fn envelope(body: &[u8]) -> Result<(String, String, &[u8]), Error> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or(Error::Malformed("missing k8s\\0 magic prefix"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => api_version = String::from_utf8_lossy(v).into_owned(),
                        (2, Field::Bytes(v)) => kind = String::from_utf8_lossy(v).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    Ok((api_version, kind, raw))
}

/// Decodes a protobuf `DeleteOptions` body (as Helm sends) into its JSON form.
///
/// # Errors
/// [`Error::Malformed`] for a bad envelope.
pub fn decode_delete_options(body: &[u8]) -> Result<Value, Error> {
    let (_, _, raw) = envelope(body)?;
    let mut o = Map::new();
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Varint(v)) => {
                o.insert("gracePeriodSeconds".into(), json!(v as i64));
            }
            (2, Field::Bytes(p)) => {
                let mut pre = Map::new();
                for (pn, pf) in fields(p)? {
                    match (pn, pf) {
                        (1, Field::Bytes(v)) => {
                            pre.insert("uid".into(), string(v));
                        }
                        (2, Field::Bytes(v)) => {
                            pre.insert("resourceVersion".into(), string(v));
                        }
                        _ => {}
                    }
                }
                o.insert("preconditions".into(), Value::Object(pre));
            }
            (3, Field::Varint(v)) => {
                o.insert("orphanDependents".into(), json!(v != 0));
            }
            (4, Field::Bytes(v)) => {
                o.insert("propagationPolicy".into(), string(v));
            }
            (5, Field::Bytes(v)) => push(&mut o, "dryRun", string(v)),
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// Decodes an enveloped protobuf body into the JSON object it encodes.
///
/// # Errors
/// [`Error::Malformed`] for a bad envelope; [`Error::Unsupported`] for kinds other than
/// ConfigMap, Secret, Namespace, ServiceAccount, RBAC roles and bindings and the self access
/// reviews.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let (api_version, kind, raw) = envelope(body)?;
    if api_version == "authorization.k8s.io/v1"
        && matches!(
            kind.as_str(),
            "SelfSubjectAccessReview" | "SelfSubjectRulesReview"
        )
    {
        let mut obj = review(&kind, raw)?;
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        return Ok(obj);
    }
    if api_version == "rbac.authorization.k8s.io/v1"
        && matches!(
            kind.as_str(),
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        )
    {
        let mut obj = rbac(&kind, raw)?;
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        return Ok(obj);
    }
    if api_version != "v1"
        || !matches!(
            kind.as_str(),
            "ConfigMap" | "Secret" | "Namespace" | "ServiceAccount"
        )
    {
        return Err(Error::Unsupported(format!("{api_version}/{kind}")));
    }
    let mut obj = object(&kind, raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_configmap_with_binary_data_decodes() {
        let meta = [field(1, b"cm1"), field(3, b"default")].concat();
        let entry = [field(1, b"bin"), field(2, &[0, 159, 146, 150])].concat();
        let text = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &text), field(3, &entry)].concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "cm1");
        assert_eq!(v["data"]["k"], "v");
        assert_eq!(v["binaryData"]["bin"], "AJ+Slg==");
        assert_eq!(v["kind"], "ConfigMap");
    }

    #[test]
    fn an_access_review_from_kubectl_decodes() {
        let attrs = [
            field(1, b"apps-ns"),
            field(2, b"create"),
            field(3, b"apps"),
            field(5, b"deployments"),
        ]
        .concat();
        let raw = [field(2, &field(1, &attrs))].concat();
        let type_meta = [
            field(1, b"authorization.k8s.io/v1"),
            field(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["spec"]["resourceAttributes"]["resource"], "deployments");
        assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "apps-ns");
    }

    #[test]
    fn a_cluster_role_from_kubectl_create_decodes() {
        let rule = [field(1, b"get"), field(2, b""), field(3, b"configmaps")].concat();
        let raw = [field(1, &field(1, b"kro:controller:demo")), field(2, &rule)].concat();
        let type_meta = [
            field(1, b"rbac.authorization.k8s.io/v1"),
            field(2, b"ClusterRole"),
        ]
        .concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "kro:controller:demo");
        assert_eq!(
            v["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}])
        );
    }

    #[test]
    fn other_kinds_and_bad_envelopes_are_refused() {
        let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta)].concat();
        assert!(matches!(decode(&body), Err(Error::Unsupported(_))));
        assert!(matches!(decode(b"{}"), Err(Error::Malformed(_))));
        assert!(matches!(decode(b"k8s\0\x0a\x05ab"), Err(Error::Malformed(_))));
    }
}
