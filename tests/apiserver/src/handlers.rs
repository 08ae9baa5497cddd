//! Resource endpoints: get, list, create, update, patch (four flavours), delete and
//! deletecollection, the `status`, `scale` and namespace `finalize` subresources, and list
//! filtering by label and field selectors, in JSON, Table or partial-metadata form.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use chrono::Utc;
use hyper::{Method, Response, header::HeaderValue};
use kroxide_schema::selector::Selector;
use serde_json::{Value, json};

use crate::{
    decode,
    error::ApiError,
    jsonpath::JsonPath,
    protobuf,
    registry::ResourceType,
    request::{Representation, ResourcePath},
    server::{Body, Info, Shared, json_response},
    state::{DeleteOptions, Deleted, FieldValidation, Op, State, WriteOptions},
    table::{Include, Printer, partial},
    watch,
};

/// One request's inputs.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Method.
    pub method: &'a Method,
    /// Query parameters.
    pub q: &'a HashMap<String, String>,
    /// `Accept`.
    pub accept: &'a str,
    /// `Content-Type`.
    pub content_type: &'a str,
    /// `User-Agent`.
    pub user_agent: &'a str,
    /// The body.
    pub body: Bytes,
}

/// A field selector: `metadata.name=x,status.phase!=Running`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    /// Parses a field selector; metadata fields work on every type, other paths on built-ins.
    ///
    /// # Errors
    /// A malformed requirement, or a field a custom resource cannot be selected by.
    pub fn parse(s: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        let extra = selectable_fields(rt);
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector: {part:?}")));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") && !extra.contains(&field) {
                // Kinds with their own selectable fields answer in the older words.
                return Err(ApiError::bad_request(if extra.is_empty() && !rt.is_custom() {
                    format!(
                        "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )
                } else {
                    format!("field label not supported: {field}")
                }));
            }
            out.push((
                field.split('.').map(String::from).collect(),
                eq,
                value.trim().to_string(),
            ));
        }
        Ok(Self(out))
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(object);
            for p in path {
                cur = cur.and_then(|c| c.get(p));
            }
            let have = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

/// Refuses label selector keys and values that are not valid labels.
fn label_values(selector: &Selector) -> Result<(), ApiError> {
    use kroxide_schema::selector::Requirement as R;
    for r in &selector.0 {
        let (key, values): (&str, Vec<String>) = match r {
            R::Equals(k, v) | R::NotEquals(k, v) => (k, vec![v.clone()]),
            R::In(k, vs) | R::NotIn(k, vs) => (k, vs.clone()),
            R::Exists(k) | R::DoesNotExist(k) => (k, Vec::new()),
        };
        if let Some(p) = crate::admission::selector_problem(key, &values) {
            return Err(ApiError::bad_request(format!("unable to parse requirement: {p}")));
        }
    }
    Ok(())
}

/// Fields beyond `metadata.name` and `metadata.namespace` a kind can be selected by, as the
/// real server's field label conversions list them.
fn selectable_fields(rt: &ResourceType) -> &'static [&'static str] {
    if rt.is_custom() {
        return &[];
    }
    match rt.kind.as_str() {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
        ],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "Node" => &["spec.unschedulable"],
        "ReplicaSet" => &["status.replicas"],
        "Job" => &["status.successful"],
        "Service" => &["spec.clusterIP", "spec.type"],
        _ => &[],
    }
}

/// Label and field selectors of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Namespace (`None`: all).
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: Selector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// From the query.
    ///
    /// # Errors
    /// A malformed selector (400).
    pub fn from_query(
        q: &HashMap<String, String>,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {}", e.0)))?;
        label_values(&labels)?;
        let watching = matches!(q.get("watch").map(String::as_str), Some("1" | "true"));
        if !watching
            && q.contains_key("resourceVersionMatch")
            && q.get("resourceVersion").is_none_or(String::is_empty)
        {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![crate::error::Cause {
                    reason: "FieldValueForbidden".into(),
                    message:
                        "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
                            .into(),
                    field: "resourceVersionMatch".into(),
                }],
            ));
        }
        let mut fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""), rt)?;
        if let Some(n) = name {
            fields
                .0
                .push((vec!["metadata".into(), "name".into()], true, n.to_string()));
        }
        Ok(Self {
            namespace: namespace.map(String::from),
            labels,
            fields,
        })
    }

    /// Whether an object passes.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }
}

fn decode_body(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "application/vnd.kubernetes.protobuf" => protobuf::decode(&ctx.body).map_err(|e| match e {
            protobuf::Error::Unsupported(_) => ApiError::unsupported_media_type(e.to_string()),
            protobuf::Error::Malformed(_) => ApiError::bad_request(e.to_string()),
        }),
        "application/yaml" | "application/apply-patch+yaml" => {
            serde_json::from_slice(&ctx.body).or_else(|_| {
                let text = std::str::from_utf8(&ctx.body)
                    .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
                serde_saphyr::from_str::<Value>(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
            })
        }
        ""
        | "application/json"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json"
        | "*/*" => serde_json::from_slice(&ctx.body).map_err(|e| {
            // Go's wording for the one error every client provokes: a body cut short.
            let why = if e.is_eof() {
                "unexpected end of JSON input".to_string()
            } else {
                e.to_string()
            };
            ApiError::bad_request(format!(
                "couldn't get version/kind; json parse error: {why} ({})",
                String::from_utf8_lossy(&ctx.body)
            ))
        }),
        _ => Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )),
    }
}

/// A DeleteOptions body as JSON bytes (protobuf bodies are decoded).
fn delete_body(ctx: &Ctx<'_>) -> Result<Bytes, ApiError> {
    if ctx
        .content_type
        .starts_with("application/vnd.kubernetes.protobuf")
        && !ctx.body.is_empty()
    {
        let v =
            protobuf::decode_delete_options(&ctx.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()));
    }
    Ok(ctx.body.clone())
}

fn dry_run(q: &HashMap<String, String>, options: &str) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::invalid_option(
            options,
            "dryRun",
            "FieldValueNotSupported",
            format!("Unsupported value: [{other:?}]: supported values: \"All\""),
        )),
    }
}

fn object_response(code: u16, object: &Value, warnings: &[String]) -> Response<Body> {
    let mut r = json_response(code, object);
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

fn list_kind_object(rt: &ResourceType, rv: u64, items: Vec<Value>) -> Value {
    // Lists of custom resources are unstructured: their metadata always says `continue`.
    let metadata = if rt.is_custom() {
        json!({"continue": "", "resourceVersion": rv.to_string()})
    } else {
        json!({"resourceVersion": rv.to_string()})
    };
    json!({
        "kind": rt.list_kind,
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// One page of a list (`limit`, `continue`).
struct Page<'a> {
    /// The resourceVersion the list is at: the first page's, for every page of one list.
    rv: u64,
    objects: Vec<&'a Arc<Value>>,
    /// The token of the next page, when more objects follow.
    next: Option<String>,
    remaining: usize,
}

/// Sets `metadata.continue` and `remainingItemCount` of a list page that has more after it.
fn continued(list: &mut Value, next: Option<String>, remaining: usize) {
    if let Some(token) = next {
        list["metadata"]["continue"] = json!(token);
        list["metadata"]["remainingItemCount"] = json!(remaining);
    }
}

fn list_position(o: &Value) -> (String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// Cuts `objects` (sorted by namespace and name) at the `continue` token and `limit`. Tokens
/// carry the list's resourceVersion and the last position served, as kube-apiserver's do; pages
/// after the first show the objects as they are now (this server keeps no snapshots), and a
/// token older than the event history is refused with 410, as after an etcd compaction.
fn page<'a>(
    objects: Vec<&'a Arc<Value>>,
    q: &HashMap<String, String>,
    current: u64,
    compacted: u64,
) -> Result<Page<'a>, ApiError> {
    use base64::Engine as _;
    // Go's RawURLEncoding accepts trailing bits; only then does the JSON inside fail.
    let b64 = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let invalid = |why: &str| {
        ApiError::bad_request(format!(
            "invalid continue token: continue key is not valid: {why}"
        ))
    };
    // Go's JSON decoder names the first byte it cannot start a value with.
    let not_json = |raw: &[u8]| {
        let b = raw
            .iter()
            .copied()
            .find(|b| !b.is_ascii_whitespace())
            .unwrap_or(b' ');
        let shown = if b.is_ascii_graphic() {
            format!("'{}'", b as char)
        } else {
            format!("'\\u{b:04x}'")
        };
        invalid(&format!(
            "invalid character {shown} looking for beginning of value"
        ))
    };
    let (rv, start) = match q.get("continue").filter(|c| !c.is_empty()) {
        None => (current, None),
        Some(token) => {
            let raw = b64
                .decode(token.trim_end_matches('='))
                .map_err(|_| invalid("not base64"))?;
            let t: Value = serde_json::from_slice(&raw).map_err(|_| not_json(&raw))?;
            let rv = t["rv"].as_u64().ok_or_else(|| invalid("no resourceVersion"))?;
            if rv < compacted {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            let start = (
                t["start"][0].as_str().unwrap_or_default().to_string(),
                t["start"][1]
                    .as_str()
                    .ok_or_else(|| invalid("no start"))?
                    .to_string(),
            );
            (rv, Some(start))
        }
    };
    let mut objects: Vec<&Arc<Value>> = match &start {
        Some(after) => objects
            .into_iter()
            .filter(|o| list_position(o) > *after)
            .collect(),
        None => objects,
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut next = None;
    let mut remaining = 0;
    if let Some(limit) = limit
        && objects.len() > limit
    {
        remaining = objects.len() - limit;
        objects.truncate(limit);
        let (ns, name) = objects.last().map(|o| list_position(o)).unwrap_or_default();
        let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": [ns, name]});
        next = Some(b64.encode(token.to_string()));
    }
    Ok(Page {
        rv,
        objects,
        next,
        remaining,
    })
}

/// How an object is shown: custom resources get read-time defaults and the requested version;
/// built-in list items go without kind and apiVersion, as typed lists do.
fn shown(state: &State, rt: &ResourceType, object: &Arc<Value>) -> Arc<Value> {
    if State::needs_presenting(rt) {
        Arc::new(state.present(rt, object))
    } else {
        object.clone()
    }
}

/// Serves a resource endpoint.
///
/// # Errors
/// Every API error of the operation.
pub async fn resource(
    shared: &Arc<Shared>,
    rp: &ResourcePath,
    ctx: &Ctx<'_>,
    info: &Info,
    repr: Representation,
) -> Result<Response<Body>, ApiError> {
    let found = {
        let state = shared.lock();
        let found = state.registry.get(&rp.group, &rp.version, &rp.resource);
        // Built-in groups answer a Status; paths under a custom group, or under no served
        // group-version, fall through to the real server's mux and its plain 404.
        let builtin_group = kroxide_schema::kinds::BUILTIN_KINDS
            .iter()
            .any(|k| k.group == rp.group && k.version == rp.version);
        (found, builtin_group)
    };
    let rt = match found {
        (Some(rt), _) => rt,
        (None, true) => return Err(ApiError::no_route()),
        (None, false) => return Err(ApiError::page_not_found()),
    };
    if !rt.namespaced && rp.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if rt.namespaced && rp.namespace.is_none() && (rp.name.is_some() || *ctx.method != Method::GET) {
        return Err(ApiError::no_route());
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    let sub = rp.subresource.as_deref();
    match sub {
        None | Some("status") if sub.is_none() || rt.status => {}
        Some("scale") if rt.scale.is_some() => {}
        Some("finalize") if rt.kind == "Namespace" && !rt.is_custom() => {}
        _ => return Err(ApiError::no_route()),
    }
    let now = Utc::now();
    match info.verb.as_str() {
        "watch" => {
            let filter = Filter::from_query(ctx.q, &rt, rp.namespace.as_deref(), rp.name.as_deref())?;
            Ok(watch::serve(shared.clone(), rt, filter, ctx.q, repr))
        }
        "list" => {
            let filter = Filter::from_query(ctx.q, &rt, rp.namespace.as_deref(), None)?;
            let state = shared.lock();
            let all: Vec<&Arc<Value>> = state
                .store
                .list(&rt.storage_key(), filter.namespace.as_deref())
                .filter(|o| filter.matches(o))
                .collect();
            let Page {
                rv,
                objects,
                next,
                remaining,
            } = page(all, ctx.q, state.store.rv(), state.store.compacted())?;
            Ok(match repr {
                Representation::Table => {
                    let printer = Printer::new(
                        &rt,
                        Include::from_param(ctx.q.get("includeObject").map(String::as_str)),
                    );
                    let shown_objects: Vec<Arc<Value>> =
                        objects.iter().map(|o| shown(&state, &rt, o)).collect();
                    let mut table = printer.table(
                        shown_objects.iter().map(|o| &**o),
                        Some(&rv.to_string()),
                        true,
                        now,
                    );
                    continued(&mut table, next, remaining);
                    json_response(200, &table)
                }
                Representation::Metadata => {
                    let items: Vec<Value> = objects.iter().map(|o| partial(o)).collect();
                    let mut list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                        "metadata": {"resourceVersion": rv.to_string()}, "items": items});
                    continued(&mut list, next, remaining);
                    json_response(200, &list)
                }
                _ => {
                    let items: Vec<Value> = objects
                        .iter()
                        .map(|o| {
                            let mut v = Arc::unwrap_or_clone(shown(&state, &rt, o));
                            if !rt.is_custom()
                                && let Some(m) = v.as_object_mut()
                            {
                                m.remove("apiVersion");
                                m.remove("kind");
                            }
                            v
                        })
                        .collect();
                    let mut list = list_kind_object(&rt, rv, items);
                    continued(&mut list, next, remaining);
                    json_response(200, &list)
                }
            })
        }
        "get" => {
            let name = rp.name.clone().unwrap_or_default();
            let state = shared.lock();
            let obj = state
                .store
                .get(&rt.storage_key(), if rt.namespaced { &ns } else { "" }, &name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &name))?;
            if sub == Some("scale") {
                return Ok(json_response(200, &scale_of(&rt, &obj)));
            }
            let obj = shown(&state, &rt, &obj);
            Ok(match repr {
                Representation::Table => {
                    let printer = Printer::new(
                        &rt,
                        Include::from_param(ctx.q.get("includeObject").map(String::as_str)),
                    );
                    json_response(200, &printer.table([&*obj], None, true, now))
                }
                Representation::Metadata => json_response(200, &partial(&obj)),
                _ => json_response(200, &obj),
            })
        }
        "create" | "update" | "patch" => {
            let options = match info.verb.as_str() {
                "create" => "CreateOptions",
                "update" => "UpdateOptions",
                _ => "PatchOptions",
            };
            let dry = dry_run(ctx.q, options)?;
            let validation =
                FieldValidation::from_param(ctx.q.get("fieldValidation").map(String::as_str), options)?;
            let body = decode_body(ctx).map_err(|mut e| {
                if e.code == 415 && info.verb == "patch" {
                    return ApiError::unsupported_patch_type();
                }
                if e.code == 400 && info.verb != "patch" {
                    e.message = format!(
                        "the object provided is unrecognized (must be of type {}): {}",
                        rt.kind, e.message
                    );
                }
                e
            })?;
            // Go's strict decoder names fields given twice (serde keeps the last one).
            let duplicates: Vec<String> = if matches!(info.verb.as_str(), "create" | "update")
                && !rt.is_custom()
                && validation != FieldValidation::Ignore
                && ctx.content_type.starts_with("application/json")
            {
                decode::duplicate_fields(&ctx.body)
                    .into_iter()
                    .map(|f| format!("duplicate field \"{f}\""))
                    .collect()
            } else {
                Vec::new()
            };
            if validation == FieldValidation::Strict && !duplicates.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    rt.kind,
                    rt.version,
                    rt.kind,
                    duplicates.join(", ")
                )));
            }
            let manager = info.field_manager.clone();
            if manager.len() > 128 {
                return Err(ApiError::invalid_option(
                    options,
                    "fieldManager",
                    "FieldValueTooLong",
                    "Too long: may not be more than 128 bytes".into(),
                ));
            }
            if rt.group == "authorization.k8s.io" && !rt.is_custom() && info.verb == "create" {
                return crate::access::answer(&rt.kind, body).map(|v| json_response(201, &v));
            }
            let op = match info.verb.as_str() {
                "create" if sub.is_some() || rp.name.is_some() => {
                    return Err(ApiError::method_not_supported());
                }
                "create" => Op::Create(body),
                "update" => Op::Update(body),
                _ => match info.patch_type.as_str() {
                    "apply" => {
                        if ctx.q.get("fieldManager").is_none_or(String::is_empty) {
                            return Err(ApiError::invalid_option(
                                "PatchOptions",
                                "fieldManager",
                                "FieldValueRequired",
                                "Required value: is required for apply patch".into(),
                            ));
                        }
                        let force = match ctx.q.get("force").map(String::as_str) {
                            None | Some("false") | Some("") => false,
                            Some("true") => true,
                            Some(other) => {
                                return Err(ApiError::bad_request(format!("invalid force value {other:?}")));
                            }
                        };
                        Op::Apply { body, force }
                    }
                    "merge" => Op::Merge(body),
                    "json" => Op::Json(body),
                    "strategic" => Op::Strategic(body),
                    _ => {
                        return Err(ApiError::unsupported_media_type(format!(
                            "the body of the request was in an unknown format ({}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                            ctx.content_type
                        )));
                    }
                },
            };
            let opts = WriteOptions {
                manager,
                subresource: sub.filter(|s| *s != "finalize").map(String::from),
                dry_run: dry,
                validation,
                trusted: false,
            };
            let name = rp.name.as_deref();
            let mut state = shared.lock();
            let written = match sub {
                Some("scale") => write_scale(&mut state, &rt, &ns, name.unwrap_or_default(), op, &opts, now)?,
                Some("finalize") => {
                    let Op::Update(body) = op else {
                        return Err(ApiError::method_not_allowed("finalize supports PUT only"));
                    };
                    let name = name.unwrap_or_default();
                    let live = state
                        .store
                        .get("/namespaces", "", name)
                        .cloned()
                        .ok_or_else(|| ApiError::not_found("", "namespaces", name))?;
                    let mut next = (*live).clone();
                    next["spec"]["finalizers"] =
                        body.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                    let w = state.write(&rt, "", Some(name), Op::Update(next), &opts, now)?;
                    drop(state);
                    shared.kick.notify_one();
                    return Ok(object_response(200, &w.object, &w.warnings));
                }
                _ => state.write(&rt, &ns, name, op, &opts, now)?,
            };
            let mut written = written;
            if !duplicates.is_empty() {
                written.warnings.splice(0..0, duplicates);
            }
            let code = if written.created { 201 } else { 200 };
            let obj = if sub == Some("scale") {
                written.object.clone()
            } else {
                shown(&state, &rt, &written.object)
            };
            drop(state);
            // Garbage collection cares about deletions and owner references only; other writes
            // wait for the periodic sweep.
            let meta = &written.object["metadata"];
            if written.changed
                && (meta.get("deletionTimestamp").is_some() || meta.get("ownerReferences").is_some())
            {
                shared.kick.notify_one();
            }
            Ok(object_response(code, &obj, &written.warnings))
        }
        "delete" => {
            let body = delete_body(ctx)?;
            let options = DeleteOptions::parse(
                &body,
                ctx.q.get("propagationPolicy").map(String::as_str),
                dry_run(ctx.q, "DeleteOptions")?,
            )?;
            let name = rp.name.clone().unwrap_or_default();
            let result = shared.lock().delete(&rt, &ns, &name, &options, now)?;
            shared.kick.notify_one();
            Ok(match result {
                Deleted::Gone(obj) => {
                    let mut details = json!({"name": name, "kind": rt.plural,
                        "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)});
                    if !rt.group.is_empty() {
                        details["group"] = json!(rt.group);
                    }
                    json_response(
                        200,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": details}),
                    )
                }
                Deleted::Pending(obj) => json_response(200, &obj),
            })
        }
        "deletecollection" => {
            let body = delete_body(ctx)?;
            let options = DeleteOptions::parse(
                &body,
                ctx.q.get("propagationPolicy").map(String::as_str),
                dry_run(ctx.q, "DeleteOptions")?,
            )?;
            let filter = Filter::from_query(ctx.q, &rt, rp.namespace.as_deref(), None)?;
            let mut state = shared.lock();
            let names: Vec<(String, String)> = state
                .store
                .list(&rt.storage_key(), filter.namespace.as_deref())
                .filter(|o| filter.matches(o))
                .map(|o| {
                    (
                        o.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect();
            let mut items = Vec::new();
            for (n, name) in names {
                match state.delete(&rt, &n, &name, &options, now) {
                    Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push((*o).clone()),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let rv = state.store.rv();
            drop(state);
            shared.kick.notify_one();
            Ok(json_response(200, &list_kind_object(&rt, rv, items)))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{} is not supported here",
            ctx.method
        ))),
    }
}

fn selector_string(selector: &Value) -> String {
    if let Some(s) = selector.as_str() {
        return s.to_string();
    }
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn first(path: &str, object: &Value) -> Option<Value> {
    JsonPath::parse(path)
        .ok()?
        .find(object)
        .first()
        .map(|v| (*v).clone())
}

/// The `autoscaling/v1` Scale of an object.
pub fn scale_of(rt: &ResourceType, object: &Value) -> Value {
    let paths = rt.scale.clone().unwrap_or_else(|| crate::registry::ScalePaths {
        spec_replicas: ".spec.replicas".into(),
        status_replicas: ".status.replicas".into(),
        label_selector: None,
    });
    let meta = &object["metadata"];
    let selector = if rt.is_custom() {
        paths
            .label_selector
            .as_deref()
            .and_then(|p| first(p, object))
            .and_then(|v| v.as_str().map(String::from))
    } else {
        object.pointer("/spec/selector").map(selector_string)
    };
    let mut status = json!({"replicas": first(&paths.status_replicas, object).unwrap_or(json!(0))});
    if let Some(s) = selector {
        status["selector"] = json!(s);
    }
    let mut m = json!({"name": meta["name"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"],
        "creationTimestamp": meta["creationTimestamp"]});
    if let Some(ns) = meta.get("namespace") {
        m["namespace"] = ns.clone();
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": m,
        "spec": {"replicas": first(&paths.spec_replicas, object).unwrap_or(json!(0))}, "status": status})
}

fn set_path(object: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = object;
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            if let Some(m) = cur.as_object_mut() {
                m.insert(p.to_string(), value);
            }
            return;
        }
        if !cur.get(*p).is_some_and(Value::is_object) {
            cur[*p] = json!({});
        }
        cur = &mut cur[*p];
    }
}

fn write_scale(
    state: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    op: Op,
    opts: &WriteOptions,
    now: chrono::DateTime<Utc>,
) -> Result<crate::state::Written, ApiError> {
    let live = state
        .store
        .get(&rt.storage_key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
    let mut scale = scale_of(rt, &live);
    match op {
        Op::Update(body) => scale = body,
        Op::Merge(p) => {
            crate::patch::merge(&mut scale, &p).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        Op::Json(p) => {
            crate::patch::json(&mut scale, &p).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        Op::Strategic(p) => {
            crate::patch::merge(&mut scale, &p).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        Op::Apply { body, .. } => {
            crate::patch::merge(&mut scale, &body).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        Op::Create(_) => return Err(ApiError::method_not_allowed("POST is not allowed on scale")),
    }
    if let Some(rv) = scale.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        && Some(rv) != live.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    {
        return Err(ApiError::modified(&rt.group, &rt.plural, name));
    }
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    if replicas.as_i64().is_none_or(|r| r < 0) {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![crate::error::Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        ));
    }
    let mut next = (*live).clone();
    let path = rt
        .scale
        .as_ref()
        .map(|s| s.spec_replicas.clone())
        .unwrap_or_else(|| ".spec.replicas".into());
    set_path(&mut next, &path, replicas);
    let scale_opts = WriteOptions {
        subresource: Some("scale".into()),
        ..opts.clone()
    };
    let w = state.write(rt, ns, Some(name), Op::Update(next), &scale_opts, now)?;
    Ok(crate::state::Written {
        object: Arc::new(scale_of(rt, &w.object)),
        ..w
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_match_names_and_reject_unknown_fields_on_custom_resources() {
        let registry = crate::registry::Registry::builtin();
        let custom = ResourceType {
            crd: Some("widgets.example.com".into()),
            ..(*registry.get("", "v1", "configmaps").unwrap()).clone()
        };
        let pods = registry.get("", "v1", "pods").unwrap();
        let f = FieldSelector::parse("metadata.name=w1,metadata.namespace!=kube-system", &custom).unwrap();
        assert!(f.matches(&json!({"metadata": {"name": "w1", "namespace": "default"}})));
        assert!(!f.matches(&json!({"metadata": {"name": "w2", "namespace": "default"}})));
        assert_eq!(
            FieldSelector::parse("spec.x=1", &custom).unwrap_err().message,
            "field label not supported: spec.x"
        );
        assert!(
            FieldSelector::parse("status.phase=Running", &pods)
                .unwrap()
                .matches(&json!({"status": {"phase": "Running"}}))
        );
    }

    #[test]
    fn a_deployment_scale_carries_its_selector_as_a_string() {
        let rt = crate::registry::Registry::builtin()
            .get("apps", "v1", "deployments")
            .unwrap();
        let d = json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "9"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = scale_of(&rt, &d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(s["metadata"]["namespace"], "shop");
    }
}
