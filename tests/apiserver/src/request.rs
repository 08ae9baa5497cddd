//! Request parsing: which endpoint a path names, the query parameters, and what the client
//! accepts (JSON, a Table, partial metadata, aggregated discovery).

use std::collections::HashMap;

/// A resource endpoint: `/api/v1/namespaces/ns/configmaps/name/status` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource.
    pub resource: String,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `finalize`).
    pub subresource: Option<String>,
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/readyz`, `/livez`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    Resources(String, String),
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`.
    OpenApi(String, String),
    /// `/debug/kroxide/requests`.
    DebugRequests,
    /// A resource endpoint.
    Resource(ResourcePath),
    /// Anything else.
    Unknown,
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Route {
    let rp = |resource: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        })
    };
    match rest {
        [res] => rp(res, None, None, None),
        [res, name] => rp(res, None, Some(name), None),
        // The namespace object's own subresources.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            rp("namespaces", None, Some(name), Some(sub))
        }
        ["namespaces", ns, res] => rp(res, Some(ns), None, None),
        [res, name, sub] => rp(res, None, Some(name), Some(sub)),
        ["namespaces", ns, res, name] => rp(res, Some(ns), Some(name), None),
        ["namespaces", ns, res, name, sub] => rp(res, Some(ns), Some(name), Some(sub)),
        _ => Route::Unknown,
    }
}

/// Parses a request path.
pub fn route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", version] => Route::Resources(String::new(), version.to_string()),
        ["apis", group, version] => Route::Resources(group.to_string(), version.to_string()),
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", "api", version] => Route::OpenApi(String::new(), version.to_string()),
        ["openapi", "v3", "apis", group, version] => Route::OpenApi(group.to_string(), version.to_string()),
        ["debug", "kroxide", "requests"] => Route::DebugRequests,
        ["api", version, rest @ ..] => resource_path("", version, rest),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        _ => Route::Unknown,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes and `+` (as a space) in a query component.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters (the last value wins for repeated keys).
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The representation a client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// The object(s) as JSON.
    Json,
    /// A `meta.k8s.io` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
    /// `apidiscovery.k8s.io/v2` aggregated discovery.
    Aggregated(&'static str),
}

/// Picks the first representation in `Accept` this server produces.
pub fn representation(accept: &str) -> Representation {
    for part in accept.split(',') {
        let part = part.trim();
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") {
            return Representation::Table;
        }
        if has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList") {
            return Representation::Metadata;
        }
        if has("as=APIGroupDiscoveryList") && has("g=apidiscovery.k8s.io") {
            if has("v=v2") {
                return Representation::Aggregated("v2");
            }
            if has("v=v2beta1") {
                return Representation::Aggregated("v2beta1");
            }
            continue;
        }
        if params[0].starts_with("application/json") || params[0] == "*/*" || params[0].is_empty() {
            return Representation::Json;
        }
    }
    Representation::Json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(r: Route) -> ResourcePath {
        match r {
            Route::Resource(rp) => rp,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_name_namespaces_objects_and_subresources() {
        let p = res(route("/apis/apps/v1/namespaces/shop/deployments/web/scale"));
        assert_eq!(
            (p.group.as_str(), p.namespace.as_deref(), p.name.as_deref()),
            ("apps", Some("shop"), Some("web"))
        );
        assert_eq!(p.subresource.as_deref(), Some("scale"));
        let ns = res(route("/api/v1/namespaces/shop"));
        assert_eq!(
            (ns.resource.as_str(), ns.name.as_deref(), ns.namespace),
            ("namespaces", Some("shop"), None)
        );
        let list = res(route("/api/v1/namespaces/shop/configmaps"));
        assert_eq!(
            (list.resource.as_str(), list.namespace.as_deref(), list.name),
            ("configmaps", Some("shop"), None)
        );
        let fin = res(route("/api/v1/namespaces/shop/finalize"));
        assert_eq!(fin.subresource.as_deref(), Some("finalize"));
        assert_eq!(
            route("/apis/apps/v1"),
            Route::Resources("apps".into(), "v1".into())
        );
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Route::OpenApi("apps".into(), "v1".into())
        );
    }

    #[test]
    fn queries_are_percent_decoded() {
        let q = query(Some(
            "fieldSelector=metadata.name%3Dw1&labelSelector=a+in+(x,y)&watch=true&x=%",
        ));
        assert_eq!(q["fieldSelector"], "metadata.name=w1");
        assert_eq!(q["labelSelector"], "a in (x,y)");
        assert_eq!(q["x"], "%");
    }

    #[test]
    fn kubectl_accept_headers_pick_tables_and_aggregated_discovery() {
        assert_eq!(
            representation(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Representation::Table
        );
        assert_eq!(
            representation(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            ),
            Representation::Aggregated("v2")
        );
        assert_eq!(representation("application/json, */*"), Representation::Json);
        assert_eq!(
            representation("application/vnd.kubernetes.protobuf, application/json"),
            Representation::Json
        );
    }
}
