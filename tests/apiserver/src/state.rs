//! The server's state and every write to it: create, update, patch, server-side apply and
//! delete, with the real server's order of work (preconditions, status subresource split,
//! system metadata, defaulting, pruning, validation, generation, field ownership), no-op
//! detection (a write that changes nothing changes nothing), and finalizers.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use kroxide_schema::{
    defaults::{self, Allocator},
    structural,
};
use serde_json::{Map, Value, json};

use crate::{
    admission, crd, decode,
    error::{ApiError, Cause},
    events,
    fields::Scope,
    managed::{self, Writer},
    patch::{self, PatchError},
    registry::{Registry, ResourceType},
    rules::CelRules,
    shape::Shape,
    store::Store,
};

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields fail the request with 400.
    Strict,
    /// Unknown fields are dropped with a warning (the default).
    Warn,
    /// Unknown fields are dropped silently.
    Ignore,
}

impl FieldValidation {
    /// From the query parameter.
    ///
    /// # Errors
    /// An unknown value.
    /// `options` names the options kind of the verb (`CreateOptions`, `UpdateOptions`,
    /// `PatchOptions`) the real server names in the error.
    pub fn from_param(p: Option<&str>, options: &str) -> Result<Self, ApiError> {
        match p {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::invalid(
                "meta.k8s.io",
                options,
                "",
                vec![Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!(
                        "Unsupported value: {other:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                    ),
                    field: "fieldValidation".into(),
                }],
            )),
        }
    }
}

/// A write.
#[derive(Debug, Clone)]
pub enum Op {
    /// POST.
    Create(Value),
    /// PUT.
    Update(Value),
    /// `application/merge-patch+json`.
    Merge(Value),
    /// `application/json-patch+json`.
    Json(Value),
    /// `application/strategic-merge-patch+json`.
    Strategic(Value),
    /// `application/apply-patch+yaml`.
    Apply {
        /// The applied configuration.
        body: Value,
        /// `force=true`.
        force: bool,
    },
}

/// Who writes and how.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Field manager.
    pub manager: String,
    /// `status` or `scale` for subresource writes.
    pub subresource: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub validation: FieldValidation,
    /// The body was built by the server's own controllers from stored objects and fields of
    /// the right types, so it is not decoded again (defaulting, validation and field
    /// ownership still run). Never set for a client's request.
    pub trusted: bool,
}

impl WriteOptions {
    /// A write by a server-internal controller (a trusted body).
    pub fn system(manager: &str, subresource: Option<&str>) -> Self {
        Self {
            manager: manager.to_string(),
            subresource: subresource.map(String::from),
            dry_run: false,
            validation: FieldValidation::Ignore,
            trusted: true,
        }
    }
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub object: Arc<Value>,
    /// Whether it was created (201).
    pub created: bool,
    /// `Warning` headers to send.
    pub warnings: Vec<String>,
    /// Whether anything changed.
    pub changed: bool,
}

/// `DeleteOptions`.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (empty is fine) plus query parameters.
    ///
    /// # Errors
    /// A body that is not JSON, or an unknown propagation policy.
    pub fn parse(body: &[u8], propagation_param: Option<&str>, dry_run: bool) -> Result<Self, ApiError> {
        let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let mut propagation = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| propagation_param.map(String::from));
        if propagation.is_none()
            && let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool)
        {
            propagation = Some(if orphan { "Orphan" } else { "Background" }.into());
        }
        if let Some(p) = &propagation
            && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
        {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!(
                        "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    ),
                    field: "propagationPolicy".into(),
                }],
            ));
        }
        let dry = dry_run
            || v.get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "All"));
        Ok(Self {
            propagation,
            uid: v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from),
            resource_version: v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from),
            dry_run: dry,
        })
    }
}

/// The outcome of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Removed now; the last state.
    Gone(Arc<Value>),
    /// Marked for deletion, waiting for finalizers.
    Pending(Arc<Value>),
}

/// RFC 3339 with seconds, as Kubernetes writes timestamps.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Everything the server holds.
#[derive(Debug)]
pub struct State {
    /// Served types.
    pub registry: Registry,
    /// Objects and history.
    pub store: Store,
    /// Cluster IPs and node ports.
    pub alloc: Allocator,
    /// Establish new CRDs in the same write that accepts their names (no delay configured).
    pub establish_at_once: bool,
    rules: CelRules,
    seed: u64,
    /// The clusterroles' last change the aggregation controller has acted on.
    pub(crate) aggregated_at: u64,
}

const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";

/// Whether finalizers still hold an object being deleted (a Namespace is also held by its
/// `spec.finalizers`).
fn held(v: &Value) -> bool {
    !finalizers(v).is_empty()
        || (v.get("kind") == Some(&json!("Namespace"))
            && v.pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty()))
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The merge semantics of a type.
pub fn shape_of(rt: &ResourceType) -> Shape<'_> {
    if rt.is_custom() {
        Shape::Schema(rt.schema.as_deref())
    } else {
        Shape::Builtin(&rt.kind)
    }
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// An object as the real server prints an unstructured one: keys sorted, but `metadata` in
/// the field order of Go's ObjectMeta, without managedFields.
fn go_order(object: &Value) -> String {
    const META: &[&str] = &[
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
    ];
    let Some(m) = object.as_object() else {
        return object.to_string();
    };
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| {
            let value = match (k.as_str(), v.as_object()) {
                ("metadata", Some(meta)) => {
                    let fields: Vec<String> = META
                        .iter()
                        .filter_map(|f| {
                            meta.get(*f)
                                .map(|x| format!("{}:{x}", Value::String((*f).into())))
                        })
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }
                _ => v.to_string(),
            };
            format!("{}:{value}", Value::String(k.clone()))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Everything but `metadata` (and `status`, when it is a subresource).
fn spec_part(v: &Value, status_apart: bool) -> Map<String, Value> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !(matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
                        || status_apart && *k == "status")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

impl State {
    /// An empty cluster with the built-in kinds and namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`.
    pub fn new(history: usize) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            | 1;
        let mut s = Self {
            registry: Registry::builtin(),
            store: Store::new(history),
            alloc: Allocator::default(),
            establish_at_once: true,
            rules: CelRules::default(),
            seed,
            aggregated_at: 0,
        };
        let ns = s.registry.get("", "v1", "namespaces").expect("built in");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            s.write(
                &ns,
                "",
                Some(name),
                Op::Create(body),
                &WriteOptions::system("kube-apiserver", None),
                Utc::now(),
            )
            .expect("built-in namespaces are valid");
        }
        let svc = s.registry.get("", "v1", "services").expect("built in");
        let kubernetes = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}});
        s.write(
            &svc,
            "default",
            Some("kubernetes"),
            Op::Create(kubernetes),
            &WriteOptions::system("kube-apiserver", None),
            Utc::now(),
        )
        .expect("the kubernetes service is valid");
        s
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.seed;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A new random UID.
    pub fn uid(&mut self) -> String {
        let (a, b) = (self.random(), self.random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn generated_name(&mut self, prefix: &str) -> String {
        let mut s = prefix.to_string();
        for _ in 0..5 {
            let i = (self.random() % NAME_CHARS.len() as u64) as usize;
            s.push(NAME_CHARS[i] as char);
        }
        s
    }

    /// Whether a namespace exists.
    pub fn namespace(&self, name: &str) -> Option<&Arc<Value>> {
        self.store.get("/namespaces", "", name)
    }

    /// Applies read-time defaults of a custom resource and sets the apiVersion of the version
    /// asked for.
    pub fn present(&self, rt: &ResourceType, object: &Value) -> Value {
        if events::is_events_group(rt) {
            return events::to_events_group(object);
        }
        let mut out = object.clone();
        if let Some(schema) = &rt.schema {
            structural::default(&mut out, schema);
        }
        if rt.is_custom()
            && let Some(m) = out.as_object_mut()
        {
            m.insert("apiVersion".into(), json!(rt.api_version()));
        }
        out
    }

    /// Whether an object needs [`State::present`] before it is served.
    pub fn needs_presenting(rt: &ResourceType) -> bool {
        rt.is_custom() || events::is_events_group(rt)
    }

    fn check_identity(
        rt: &ResourceType,
        body: &Value,
        ns: &str,
        url_name: Option<&str>,
        apply: bool,
    ) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let api_version = body.get("apiVersion").and_then(Value::as_str);
        let kind = body.get("kind").and_then(Value::as_str);
        if apply && (api_version.is_none() || kind.is_none()) {
            // Go prints the group-version-kind it could not type: `/v1, Kind=`.
            let av = api_version.unwrap_or_default();
            let gv = if av.contains('/') {
                av.to_string()
            } else {
                format!("/{av}")
            };
            return Err(ApiError::bad_request(format!(
                "invalid object type: {gv}, Kind={}",
                kind.unwrap_or_default()
            )));
        }
        if !rt.is_custom()
            && let Some(av) = api_version
            && let Some(k) = kind
            && (av != rt.api_version() || k != rt.kind)
        {
            // The real server decodes the body into the kind it names, then converts.
            let known = av.rsplit_once('/').map_or(("", av), |(g, v)| (g, v));
            let registered = kroxide_schema::kinds::builtin_by_group_kind(known.0, k)
                .is_some_and(|b| b.version == known.1);
            let why = if registered {
                let package = |g: &str| {
                    if g.is_empty() {
                        "core".to_string()
                    } else {
                        g.split('.').next().unwrap_or(g).to_string()
                    }
                };
                format!(
                    "converting ({}.{k}) to ({}.{}): unknown conversion",
                    known.1,
                    package(&rt.group),
                    rt.kind
                )
            } else {
                format!(
                    "no kind \"{k}\" is registered for version \"{av}\" in scheme \"pkg/runtime/scheme.go:111\""
                )
            };
            return Err(ApiError::bad_request(format!(
                "{k} in version \"{}\" cannot be handled as a {}: {why}",
                known.1, rt.kind
            )));
        }
        if let Some(av) = api_version {
            // The storage version of a custom resource is accepted at every served version.
            if av != rt.api_version() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    rt.api_version()
                )));
            }
        }
        if let Some(k) = kind
            && k != rt.kind
        {
            // A custom resource of another kind is refused as invalid, naming that kind.
            return Err(ApiError::invalid(
                &rt.group,
                k,
                meta_str(body, "name").unwrap_or_default(),
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {k:?}: must be {}", rt.kind),
                    field: "kind".into(),
                }],
            ));
        }
        if rt.namespaced
            && let Some(bns) = meta_str(body, "namespace")
            && !bns.is_empty()
            && bns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let (Some(url), Some(n)) = (url_name, meta_str(body, "name"))
            && url != n
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({url})"
            )));
        }
        Ok(())
    }

    /// Performs a write to `rt` in namespace `ns` (`""` for cluster-scoped types).
    ///
    /// # Errors
    /// Every error the real server returns for the same request: 404, 409 (exists, stale
    /// resourceVersion, apply conflicts), 422 (invalid, with causes), 400, 403 (terminating
    /// namespace), 415 (strategic merge on a custom resource).
    pub fn write(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: Option<&str>,
        op: Op,
        opts: &WriteOptions,
        now: DateTime<Utc>,
    ) -> Result<Written, ApiError> {
        if events::is_events_group(rt) {
            return self.write_event(ns, name, op, opts, now);
        }
        let ns = if rt.namespaced { ns } else { "" };
        let key = rt.storage_key();
        let sub = opts.subresource.as_deref().unwrap_or("");
        let scope = if sub == "status" {
            Scope::Status
        } else {
            Scope::Main {
                status_apart: rt.status,
            }
        };
        let now_s = timestamp(now);
        let not_found = |name: &str| ApiError::not_found(&rt.group, &rt.plural, name);
        let root = (!rt.is_custom() && !opts.trusted)
            .then(|| decode::SNAPSHOT.root(&rt.group, &rt.version, &rt.kind))
            .flatten();
        let strict = opts.validation == FieldValidation::Strict;
        let mut decode_warnings = Vec::new();
        let keep_warnings = opts.validation == FieldValidation::Warn;
        let op = match (op, root) {
            (Op::Create(mut body), Some(root)) => {
                decode_warnings = Self::decode_body(rt, &mut body, root, strict)?;
                decode_warnings.retain(|_| keep_warnings);
                Op::Create(body)
            }
            (Op::Update(mut body), Some(root)) => {
                decode_warnings = Self::decode_body(rt, &mut body, root, strict)?;
                decode_warnings.retain(|_| keep_warnings);
                Op::Update(body)
            }
            (Op::Apply { mut body, force }, Some(root)) => {
                match decode::decode(&mut body, root, true) {
                    Err(decode::DecodeError::Unknown(fields)) => {
                        let shown: Vec<String> = fields
                            .iter()
                            .map(|f| {
                                let path = f.trim_start_matches("unknown field \"").trim_end_matches('"');
                                format!(".{path}: field not declared in schema")
                            })
                            .collect();
                        return Err(ApiError::untyped_apply(format!(
                            "failed to create typed patch object ({}/{}; {}, Kind={}): {}",
                            if rt.namespaced {
                                meta_str(&body, "namespace").unwrap_or_default()
                            } else {
                                ""
                            },
                            name.or_else(|| meta_str(&body, "name")).unwrap_or_default(),
                            if rt.group.is_empty() {
                                format!("/{}", rt.version)
                            } else {
                                rt.api_version()
                            },
                            rt.kind,
                            shown.join("\n")
                        )));
                    }
                    Err(decode::DecodeError::WrongType(m)) => return Err(Self::undecodable(rt, &m)),
                    Ok(_) => {}
                }
                Op::Apply { body, force }
            }
            (op, _) => op,
        };

        // The object as the client wants it.
        let (name, candidate, live, creating, apply) = match op {
            Op::Create(body) => {
                Self::check_identity(rt, &body, ns, None, false)?;
                let name = match meta_str(&body, "name").filter(|n| !n.is_empty()) {
                    Some(n) => n.to_string(),
                    None => match meta_str(&body, "generateName").filter(|n| !n.is_empty()) {
                        Some(prefix) => {
                            let prefix = prefix.to_string();
                            self.generated_name(&prefix)
                        }
                        None => {
                            return Err(ApiError::invalid(
                                &rt.group,
                                &rt.kind,
                                "",
                                vec![Cause {
                                    reason: "FieldValueRequired".into(),
                                    message: "Required value: name or generateName is required".into(),
                                    field: "metadata.name".into(),
                                }],
                            ));
                        }
                    },
                };
                if self.store.get(&key, ns, &name).is_some() {
                    return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
                }
                (name, body, None, true, None)
            }
            Op::Update(body) => {
                let name = name
                    .map(String::from)
                    .or_else(|| meta_str(&body, "name").map(String::from))
                    .unwrap_or_default();
                Self::check_identity(rt, &body, ns, Some(&name), false)?;
                let live = self
                    .store
                    .get(&key, ns, &name)
                    .cloned()
                    .ok_or_else(|| not_found(&name))?;
                if let Some(rv) = meta_str(&body, "resourceVersion").filter(|r| !r.is_empty())
                    && Some(rv) != meta_str(&live, "resourceVersion")
                {
                    return Err(ApiError::modified(&rt.group, &rt.plural, &name));
                }
                (name, body, Some(live), false, None)
            }
            Op::Merge(ref p) | Op::Json(ref p) | Op::Strategic(ref p) => {
                let name = name.unwrap_or_default().to_string();
                let live = self
                    .store
                    .get(&key, ns, &name)
                    .cloned()
                    .ok_or_else(|| not_found(&name))?;
                let mut doc = (*live).clone();
                let result = match &op {
                    Op::Merge(_) => patch::merge(&mut doc, p),
                    Op::Json(_) => patch::json(&mut doc, p),
                    _ => {
                        if rt.is_custom() {
                            return Err(ApiError::unsupported_media_type(
                                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                            ));
                        }
                        patch::strategic(&mut doc, p, &shape_of(rt))
                    }
                };
                result.map_err(|e| match e {
                    PatchError::Malformed(m) => ApiError::bad_request(m),
                    // The real server words every patch that cannot apply the same way.
                    PatchError::Failed(_) => ApiError::rejected_patch(),
                })?;
                if let Some(root) = root {
                    match decode::decode(&mut doc, root, strict) {
                        Ok(w) => decode_warnings = if keep_warnings { w } else { Vec::new() },
                        Err(decode::DecodeError::WrongType(m)) => return Err(Self::undecodable(rt, &m)),
                        Err(decode::DecodeError::Unknown(fields)) => {
                            return Err(ApiError::invalid(
                                "",
                                "",
                                "",
                                vec![Cause {
                                    reason: "FieldValueInvalid".into(),
                                    message: format!(
                                        "Invalid value: {}: strict decoding error: {}",
                                        serde_json::to_string(&go_order(&doc)).unwrap_or_default(),
                                        fields.join(", ")
                                    ),
                                    field: "patch".into(),
                                }],
                            ));
                        }
                    }
                }
                if let Some(rv) = meta_str(&doc, "resourceVersion")
                    && Some(rv) != meta_str(&live, "resourceVersion")
                {
                    return Err(ApiError::modified(&rt.group, &rt.plural, &name));
                }
                if meta_str(&doc, "name").is_some_and(|n| n != name) {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta_str(&doc, "name").unwrap_or_default()
                    )));
                }
                (name, doc, Some(live), false, None)
            }
            Op::Apply { body, force } => {
                let name = name.unwrap_or_default().to_string();
                Self::check_identity(rt, &body, ns, Some(&name), true)?;
                let live = self.store.get(&key, ns, &name).cloned();
                // A resourceVersion in an applied configuration is a precondition.
                if let Some(rv) = meta_str(&body, "resourceVersion").filter(|r| !r.is_empty())
                    && live.as_deref().and_then(|l| meta_str(l, "resourceVersion")) != Some(rv)
                {
                    return Err(ApiError::modified(&rt.group, &rt.plural, &name));
                }
                let creating = live.is_none();
                (name, Value::Null, live, creating, Some((body, force)))
            }
        };

        if creating && rt.namespaced {
            match self.namespace(ns) {
                None => return Err(ApiError::not_found("", "namespaces", ns)),
                Some(n) if is_deleting(n) => {
                    let mut e = ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        crate::error::qualified(&rt.plural, &rt.group)
                    ))
                    .naming(&rt.group, &rt.plural, &name);
                    e.details.causes.push(Cause {
                        reason: "NamespaceTerminating".into(),
                        message: format!("namespace {ns} is being terminated"),
                        field: "metadata.namespace".into(),
                    });
                    return Err(e);
                }
                _ => {}
            }
        }
        if creating && sub == "status" {
            return Err(not_found(&name));
        }

        let writer = Writer {
            manager: &opts.manager,
            api_version: &rt.api_version(),
            subresource: sub,
            scope,
            shape: shape_of(rt),
            now: &now_s,
        };
        let mut entries = live.as_deref().map(managed::read).unwrap_or_default();
        let warnings;
        let mut new = match apply {
            Some((body, force)) => {
                let mut applied = body;
                if let Some(m) = applied.as_object_mut() {
                    match scope {
                        Scope::Status => m.retain(|k, _| {
                            matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                        }),
                        Scope::Main { status_apart: true } => {
                            m.remove("status");
                        }
                        Scope::Main { .. } => {}
                    }
                    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("managedFields");
                        meta.remove("resourceVersion");
                    }
                }
                let base = live.as_deref().cloned().unwrap_or_else(|| json!({}));
                let mut failure = None;
                let mut prepared_warnings = Vec::new();
                let result = managed::apply(&mut entries, &base, &applied, force, &writer, |obj| {
                    let taken = std::mem::take(obj);
                    match self.prepare(rt, live.as_deref(), taken, scope, ns, &name, opts.validation, now) {
                        Ok((o, w)) => {
                            *obj = o;
                            prepared_warnings = w;
                        }
                        Err(e) => failure = Some(e),
                    }
                });
                if let Some(e) = failure {
                    return Err(e);
                }
                warnings = [std::mem::take(&mut decode_warnings), prepared_warnings].concat();
                result.map_err(|c| ApiError::apply_conflicts(c.0))?
            }
            None => {
                let (prepared, w) = self.prepare(
                    rt,
                    live.as_deref(),
                    candidate,
                    scope,
                    ns,
                    &name,
                    opts.validation,
                    now,
                )?;
                warnings = [std::mem::take(&mut decode_warnings), w].concat();
                managed::track_update(&mut entries, live.as_deref(), &prepared, &writer);
                prepared
            }
        };
        managed::write(&mut new, &entries);

        if let Some(live) = &live {
            // A write that changes nothing is not stored: same resourceVersion, no event.
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut)
                && let Some(rv) = meta_str(live, "resourceVersion")
            {
                m.insert("resourceVersion".into(), json!(rv));
            }
            if new == **live {
                return Ok(Written {
                    object: live.clone(),
                    created: false,
                    warnings,
                    changed: false,
                });
            }
        }
        if opts.dry_run {
            return Ok(Written {
                object: Arc::new(new),
                created: creating,
                warnings,
                changed: true,
            });
        }
        if is_deleting(&new) && !held(&new) {
            let gone = match self.store.get(&key, ns, &name) {
                Some(_) => self.store.remove_written(&key, ns, &name, new).expect("present"),
                None => Arc::new(new),
            };
            self.after_change(rt, &name, now);
            return Ok(Written {
                object: gone,
                created: false,
                warnings,
                changed: true,
            });
        }
        let stored = self.store.put(&key, ns, &name, new);
        self.after_change(rt, &name, now);
        if creating && rt.kind == "Namespace" && !rt.is_custom() {
            self.populate_namespace(&name, now);
        }
        Ok(Written {
            object: stored,
            created: creating,
            warnings,
            changed: true,
        })
    }

    /// A write through `events.k8s.io/v1`: the body (or, for a patch, the patched object in
    /// that form) is converted to the core Event it is stored as. The written object stays in
    /// core form; serving it through the group presents it back.
    fn write_event(
        &mut self,
        ns: &str,
        name: Option<&str>,
        op: Op,
        opts: &WriteOptions,
        now: DateTime<Utc>,
    ) -> Result<Written, ApiError> {
        let core = self
            .registry
            .get("", "v1", "events")
            .ok_or_else(|| ApiError::internal("core Events are not served"))?;
        let op = match op {
            Op::Create(body) => {
                if body.get("eventTime").is_none_or(Value::is_null) {
                    return Err(ApiError::invalid(
                        "",
                        "Event",
                        meta_str(&body, "name").unwrap_or_default(),
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value".into(),
                            field: "eventTime".into(),
                        }],
                    ));
                }
                Op::Create(events::to_core(&body))
            }
            Op::Update(body) => Op::Update(events::to_core(&body)),
            Op::Apply { body, force } => Op::Apply {
                body: events::to_core(&body),
                force,
            },
            Op::Merge(ref p) | Op::Json(ref p) | Op::Strategic(ref p) => {
                let name = name.unwrap_or_default();
                let live = self
                    .store
                    .get("/events", ns, name)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found("events.k8s.io", "events", name))?;
                let mut doc = events::to_events_group(&live);
                let result = match &op {
                    Op::Merge(_) => patch::merge(&mut doc, p),
                    Op::Json(_) => patch::json(&mut doc, p),
                    _ => patch::strategic(&mut doc, p, &shape_of(&core)),
                };
                result.map_err(|e| match e {
                    PatchError::Malformed(m) | PatchError::Failed(m) => ApiError::bad_request(m),
                })?;
                Op::Update(events::to_core(&doc))
            }
        };
        self.write(&core, ns, name, op, opts, now)
    }

    /// Decodes the body of a create or update of a built-in kind.
    fn decode_body(
        rt: &ResourceType,
        body: &mut Value,
        root: &str,
        strict: bool,
    ) -> Result<Vec<String>, ApiError> {
        match decode::decode(body, root, strict) {
            Ok(w) => Ok(w),
            Err(decode::DecodeError::WrongType(m)) => Err(Self::undecodable(rt, &m)),
            Err(decode::DecodeError::Unknown(fields)) => Err(Self::undecodable(
                rt,
                &format!("strict decoding error: {}", fields.join(", ")),
            )),
        }
    }

    /// 400 `Deployment in version "v1" cannot be handled as a Deployment: …`.
    fn undecodable(rt: &ResourceType, why: &str) -> ApiError {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {why}",
            rt.kind, rt.version, rt.kind
        ))
    }

    /// Turns the client's object into what would be stored: status split, system metadata,
    /// defaults, pruning and validation, generation.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        rt: &ResourceType,
        live: Option<&Value>,
        mut new: Value,
        scope: Scope,
        ns: &str,
        name: &str,
        validation: FieldValidation,
        now: DateTime<Utc>,
    ) -> Result<(Value, Vec<String>), ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        // Status subresource: each endpoint changes only its part.
        match (scope, live) {
            (Scope::Status, Some(live)) => {
                let status = new.get("status").cloned();
                new = live.clone();
                let m = new.as_object_mut().expect("stored objects are objects");
                match status {
                    Some(s) => m.insert("status".into(), s),
                    None => m.remove("status"),
                };
            }
            (Scope::Main { status_apart: true }, _) => {
                let m = new.as_object_mut().expect("checked");
                match live.and_then(|l| l.get("status")) {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            _ => {}
        }
        let m = new.as_object_mut().expect("checked");
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
        if !m.get("metadata").is_some_and(Value::is_object) {
            m.insert("metadata".into(), json!({}));
        }
        let meta = m
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("made an object");
        meta.remove("selfLink");
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        let tracks_generation = rt.generation;
        match live {
            Some(live) => {
                let lm = live.get("metadata").and_then(Value::as_object);
                for field in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "generateName",
                ] {
                    match lm.and_then(|l| l.get(field)) {
                        Some(v) => meta.insert(field.into(), v.clone()),
                        None => meta.remove(field),
                    };
                }
            }
            None => {
                let uid = self.uid();
                let meta = new
                    .get_mut("metadata")
                    .and_then(Value::as_object_mut)
                    .expect("made an object");
                meta.insert("uid".into(), json!(uid));
                meta.insert("creationTimestamp".into(), json!(timestamp(now)));
                meta.remove("deletionTimestamp");
                meta.remove("deletionGracePeriodSeconds");
                if tracks_generation {
                    meta.insert("generation".into(), json!(1));
                } else {
                    meta.remove("generation");
                }
            }
        }
        // Empty label and annotation maps are dropped, as the Go types omit them.
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                let empty = match meta.get(f) {
                    Some(Value::Object(o)) => o.is_empty(),
                    Some(Value::Array(a)) => a.is_empty(),
                    Some(Value::Null) => true,
                    _ => false,
                };
                if empty {
                    meta.remove(f);
                }
            }
        }
        if let Some(live) = live
            && is_deleting(live)
        {
            let old = finalizers(live);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !old.contains(f))
                .collect();
            if !added.is_empty() {
                // Go's %#v of a string slice; the real server reports the cause twice (once
                // from metadata validation, once from the deletion check) and its message once.
                let shown: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
                let cause = Cause {
                    reason: "FieldValueForbidden".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        shown.join(", ")
                    ),
                    field: "metadata.finalizers".into(),
                };
                let mut e = ApiError::invalid(&rt.group, &rt.kind, name, vec![cause.clone()]);
                e.details.causes.push(cause);
                return Err(e);
            }
        }

        let mut warnings = Vec::new();
        let mut causes = Vec::new();
        if live.is_none() {
            if let Some(prefix) = meta_str(&new, "generateName").filter(|p| !p.is_empty())
                && let Some(c) = admission::generate_name(&rt.kind, prefix)
            {
                causes.push(c);
            }
            if let Some(c) = admission::name(&rt.kind, name) {
                causes.push(c);
            }
            warnings.extend(admission::name_warning(&rt.kind, name));
        }
        if let Some(schema) = rt.schema.clone() {
            let pruned = structural::prune(&mut new, &schema);
            if !pruned.is_empty() {
                let shown: Vec<String> = pruned.iter().map(|p| format!("unknown field \"{p}\"")).collect();
                match validation {
                    FieldValidation::Strict => {
                        return Err(Self::undecodable(
                            rt,
                            &format!("strict decoding error: {}", shown.join(", ")),
                        ));
                    }
                    FieldValidation::Warn => warnings.extend(shown),
                    FieldValidation::Ignore => {}
                }
            }
            structural::default(&mut new, &schema);
            admission::metadata(&new, &mut causes);
            let old = live;
            causes.extend(
                structural::validate(&new, old, &schema, &self.rules)
                    .into_iter()
                    .map(|c| Cause {
                        reason: c.reason.to_string(),
                        message: c.message,
                        field: c.field,
                    }),
            );
        } else {
            defaults::apply(&rt.kind, &mut new, &mut self.alloc);
            if let Some(root) = decode::SNAPSHOT.root(&rt.group, &rt.version, &rt.kind) {
                decode::fill(&mut new, root);
            }
            if rt.kind == "Event" && rt.group.is_empty() {
                events::fill_core(&mut new);
            }
            match live {
                None => {
                    defaults::created(&rt.kind, &mut new);
                    if rt.kind == "Pod" {
                        let volume = self.generated_name("kube-api-access-");
                        defaults::pod_admitted(&mut new, &volume);
                    }
                }
                Some(old) => defaults::template_changed(&rt.kind, old, &mut new),
            }
            if rt.kind == "Job" && live.is_none() {
                defaults::job_identity(&mut new);
            }
            if rt.kind == "CustomResourceDefinition" {
                crd::default(&mut new);
                if live.is_none() {
                    crd::initial_status(&mut new);
                }
                causes.extend(crd::validate(&new, live));
            }
            causes.extend(admission::builtin(&rt.kind, &new, live));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, name, causes));
        }
        if tracks_generation
            && let Some(live) = live
            && spec_part(live, rt.status) != spec_part(&new, rt.status)
        {
            let g = live
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            new["metadata"]["generation"] = json!(g);
        }
        Ok((new, warnings))
    }

    /// Deletes an object: at once when it has no finalizers (and the policy adds none), else
    /// marks it with `deletionTimestamp` and leaves it to its finalizers.
    ///
    /// # Errors
    /// 404, or 409 when a precondition fails.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        options: &DeleteOptions,
        now: DateTime<Utc>,
    ) -> Result<Deleted, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        let key = rt.storage_key();
        let live = self
            .store
            .get(&key, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if let Some(uid) = &options.uid
            && Some(uid.as_str()) != meta_str(&live, "uid")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.kind,
                name,
                &format!(
                    "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    meta_str(&live, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &options.resource_version
            && Some(rv.as_str()) != meta_str(&live, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.kind,
                name,
                &format!(
                    "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    meta_str(&live, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        let mut fins = finalizers(&live);
        let deleting = is_deleting(&live);
        if !deleting {
            match options.propagation.as_deref() {
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into())
                }
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
                _ => {}
            }
            // A CRD gets its cleanup finalizer when it is deleted, so that its custom
            // resources go first.
            if rt.kind == "CustomResourceDefinition"
                && !rt.is_custom()
                && !fins.iter().any(|f| f == crd::CLEANUP_FINALIZER)
            {
                fins.push(crd::CLEANUP_FINALIZER.into());
            }
        }
        let namespace_pending = rt.kind == "Namespace" && !rt.is_custom();
        if namespace_pending && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ))
            .naming("", "namespaces", name));
        }
        if fins.is_empty() && !namespace_pending {
            if options.dry_run {
                return Ok(Deleted::Gone(live));
            }
            let gone = self.store.remove(&key, ns, name).expect("present");
            self.after_change(rt, name, now);
            return Ok(Deleted::Gone(gone));
        }
        if deleting {
            return Ok(Deleted::Pending(live));
        }
        let mut marked = (*live).clone();
        let meta = marked["metadata"]
            .as_object_mut()
            .expect("stored objects have metadata");
        meta.insert("deletionTimestamp".into(), json!(timestamp(now)));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if !fins.is_empty() {
            meta.insert("finalizers".into(), json!(fins));
        }
        if let Some(g) = meta.get("generation").and_then(Value::as_i64)
            && g > 0
        {
            meta.insert("generation".into(), json!(g + 1));
        }
        if namespace_pending && let Some(status) = marked.get_mut("status").and_then(Value::as_object_mut) {
            status.insert("phase".into(), json!("Terminating"));
        }
        meta_remove_rv(&mut marked);
        if options.dry_run {
            return Ok(Deleted::Pending(Arc::new(marked)));
        }
        let stored = self.store.put(&key, ns, name, marked);
        self.after_change(rt, name, now);
        Ok(Deleted::Pending(stored))
    }

    /// Creates what the real control plane's controllers put in a new namespace.
    fn populate_namespace(&mut self, ns: &str, now: DateTime<Utc>) {
        for (key, object) in defaults::namespace_contents() {
            let Some(rt) = self.registry.versions_of(key).into_iter().next() else {
                continue;
            };
            let opts = WriteOptions::system("kube-controller-manager", None);
            // Cannot fail: the namespace was just created and these names are valid.
            let _ = self.write(&rt, ns, None, Op::Create(object), &opts, now);
        }
    }

    fn after_change(&mut self, rt: &ResourceType, name: &str, now: DateTime<Utc>) {
        if rt.kind == "CustomResourceDefinition" && !rt.is_custom() {
            self.sync_crd(name, false, now);
        }
    }

    /// Marks a CRD Established (after the configured delay) and makes it discoverable.
    pub fn establish_crd(&mut self, name: &str) {
        self.sync_crd(name, true, Utc::now());
    }

    /// Brings a CRD's status and served types in line with its spec: names accepted (or a
    /// conflict), Established, Terminating while its objects are deleted. A CRD that is gone
    /// takes its types and any objects left with it.
    fn sync_crd(&mut self, name: &str, establish: bool, now: DateTime<Utc>) {
        let Some(obj) = self.store.get(CRD_KEY, "", name).cloned() else {
            let keys: Vec<String> = self
                .registry
                .all()
                .iter()
                .filter(|t| t.crd.as_deref() == Some(name))
                .map(|t| t.storage_key())
                .collect();
            self.registry.remove_crd(name);
            for key in keys.into_iter().take(1) {
                let left: Vec<(String, String)> = self
                    .store
                    .list(&key, None)
                    .map(|o| {
                        (
                            meta_str(o, "namespace").unwrap_or_default().to_string(),
                            meta_str(o, "name").unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                for (ns, n) in left {
                    self.store.remove(&key, &ns, &n);
                }
            }
            return;
        };
        let group = obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let others: Vec<Arc<ResourceType>> = self
            .registry
            .all()
            .iter()
            .filter(|t| t.crd.as_deref() != Some(name) && t.group == group)
            .cloned()
            .collect();
        let conflict = crd::name_conflict(&obj, &others);
        // Only a shortName conflict leaves the CRD served (without those short names).
        let blocking = conflict.as_ref().filter(|c| c.0 != "ShortNamesConflict");
        let established =
            blocking.is_none() && (crd::is_established(&obj) || self.establish_at_once || establish);
        let status = crd::status(
            &obj,
            conflict.as_ref(),
            established,
            is_deleting(&obj),
            &timestamp(now),
        );
        if blocking.is_none() {
            let mut types = crd::types(&obj, established);
            if conflict.is_some() {
                types.iter_mut().for_each(|t| t.short_names.clear());
            }
            self.registry.set_crd_types(name, types);
        }
        if obj.get("status") != Some(&status)
            && let Some(rt) = self
                .registry
                .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        {
            let opts = WriteOptions::system("kube-apiserver", Some("status"));
            // Cannot fail: only status changes, and the CRD exists.
            let _ = self.write(
                &rt,
                "",
                Some(name),
                Op::Merge(json!({"status": status})),
                &opts,
                now,
            );
        }
    }

    /// Looks a type up, for internal controllers.
    pub fn rt(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.registry.get(group, version, plural)
    }
}

fn meta_remove_rv(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (State, Arc<ResourceType>) {
        let s = State::new(1000);
        let rt = s.rt("", "v1", "configmaps").unwrap();
        (s, rt)
    }

    fn opts(manager: &str) -> WriteOptions {
        WriteOptions {
            manager: manager.into(),
            subresource: None,
            dry_run: false,
            validation: FieldValidation::Strict,
            trusted: false,
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    #[test]
    fn create_sets_system_fields_and_a_second_create_conflicts() {
        let (mut s, rt) = state();
        let w = s
            .write(
                &rt,
                "default",
                None,
                Op::Create(cm(json!({"a": "1"}))),
                &opts("test"),
                Utc::now(),
            )
            .unwrap();
        assert!(w.created);
        let m = &w.object["metadata"];
        assert_eq!(m["namespace"], "default");
        assert!(m["uid"].as_str().unwrap().len() == 36 && m["creationTimestamp"].is_string());
        assert_eq!(m["managedFields"][0]["manager"], "test");
        let e = s
            .write(
                &rt,
                "default",
                None,
                Op::Create(cm(json!({}))),
                &opts("test"),
                Utc::now(),
            )
            .unwrap_err();
        assert_eq!(e.reason, "AlreadyExists");
    }

    #[test]
    fn a_no_op_apply_keeps_the_resource_version() {
        let (mut s, rt) = state();
        let apply = || Op::Apply {
            body: cm(json!({"a": "1"})),
            force: false,
        };
        let first = s
            .write(&rt, "default", Some("c"), apply(), &opts("mgr"), Utc::now())
            .unwrap();
        let rv = s.store.rv();
        let again = s
            .write(&rt, "default", Some("c"), apply(), &opts("mgr"), Utc::now())
            .unwrap();
        assert!(!again.changed);
        assert_eq!(s.store.rv(), rv);
        assert_eq!(first.object, again.object);
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict() {
        let (mut s, rt) = state();
        s.write(
            &rt,
            "default",
            None,
            Op::Create(cm(json!({}))),
            &opts("t"),
            Utc::now(),
        )
        .unwrap();
        let mut stale = cm(json!({"b": "2"}));
        stale["metadata"]["resourceVersion"] = json!("1");
        let e = s
            .write(
                &rt,
                "default",
                Some("c"),
                Op::Update(stale),
                &opts("t"),
                Utc::now(),
            )
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let (mut s, rt) = state();
        let mut body = cm(json!({}));
        body["metadata"]["finalizers"] = json!(["example.com/hold"]);
        s.write(&rt, "default", None, Op::Create(body), &opts("t"), Utc::now())
            .unwrap();
        let d = s
            .delete(&rt, "default", "c", &DeleteOptions::default(), Utc::now())
            .unwrap();
        let Deleted::Pending(obj) = d else {
            panic!("deleted despite a finalizer")
        };
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
        let add = json!({"metadata": {"finalizers": ["example.com/hold", "new"]}});
        let e = s
            .write(&rt, "default", Some("c"), Op::Merge(add), &opts("t"), Utc::now())
            .unwrap_err();
        assert_eq!(e.details.causes[0].field, "metadata.finalizers");
        let clear = json!({"metadata": {"finalizers": null}});
        s.write(
            &rt,
            "default",
            Some("c"),
            Op::Merge(clear),
            &opts("t"),
            Utc::now(),
        )
        .unwrap();
        assert!(s.store.get("/configmaps", "default", "c").is_none());
    }

    #[test]
    fn writes_into_a_missing_namespace_are_not_found() {
        let (mut s, rt) = state();
        let e = s
            .write(
                &rt,
                "nowhere",
                None,
                Op::Create(cm(json!({}))),
                &opts("t"),
                Utc::now(),
            )
            .unwrap_err();
        assert_eq!(e.message, "namespaces \"nowhere\" not found");
    }
}
