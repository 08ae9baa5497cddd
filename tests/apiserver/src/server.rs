//! The HTTP front: accepts connections on 127.0.0.1, routes each request (discovery, OpenAPI,
//! version, resources), applies programmed faults, records it, and encodes replies and errors
//! as the real server does.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};

use crate::{
    Config, discovery,
    error::ApiError,
    handlers, observe, openapi,
    request::{self, Representation, Route},
    state::State,
};

/// A reply body: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// Knobs tests may turn while the server runs.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Workloads get simulated status.
    pub simulate_workloads: bool,
    /// How long simulated workloads take to become ready.
    pub workload_delay: Duration,
    /// How long a new CRD takes to become Established.
    pub establish_delay: Duration,
}

/// State shared by connections, watches and background controllers.
#[derive(Debug)]
pub struct Shared {
    /// Objects, types and history.
    pub state: Mutex<State>,
    /// Request records.
    pub counters: observe::Counters,
    /// Programmed faults.
    pub faults: observe::Faults,
    /// Runtime knobs.
    pub knobs: Mutex<Knobs>,
    /// Bumped to end every open watch (a fault, or shutdown).
    pub watch_epoch: tokio::sync::watch::Sender<u64>,
    /// Set on shutdown.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Wakes the background controllers after a change they may care about.
    pub kick: Notify,
    /// `host:port` served.
    pub address: String,
    /// Bookmark interval for watches.
    pub bookmark_interval: Duration,
    /// Watch timeout when the client sets none.
    pub watch_timeout: Duration,
}

impl Shared {
    /// Locks the state (a panic while holding it does not poison the server).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current knobs.
    pub fn knobs(&self) -> Knobs {
        self.knobs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A JSON reply.
pub fn json_response(code: u16, body: &Value) -> Response<Body> {
    bytes_response(
        code,
        "application/json",
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    )
}

/// A reply with a content type.
pub fn bytes_response(code: u16, content_type: &str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache, private"));
    r
}

/// An error reply.
pub fn error_response(e: &ApiError) -> Response<Body> {
    if e.details.plain {
        return bytes_response(
            e.code,
            "text/plain; charset=utf-8",
            Bytes::from(format!("{}\n", e.message)),
        );
    }
    let mut r = json_response(e.code, &e.to_status());
    if let Some(s) = e.details.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// What a request was, for the record.
#[derive(Debug, Default, Clone)]
pub struct Info {
    /// The record being built.
    pub verb: String,
    /// API group.
    pub group: String,
    /// Resource.
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Field manager.
    pub field_manager: String,
    /// Patch type.
    pub patch_type: String,
}

/// The verb of a resource request.
pub fn verb(
    method: &Method,
    rp: &request::ResourcePath,
    q: &std::collections::HashMap<String, String>,
) -> &'static str {
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), rp.name.is_some()) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// The field manager of a write: `?fieldManager=`, else the user agent up to its first `/`.
pub fn field_manager(q: &std::collections::HashMap<String, String>, user_agent: &str) -> String {
    match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => m.clone(),
        // The real server names a writer without a user agent `unknown`.
        None => match user_agent.split('/').next().unwrap_or_default() {
            "" => "unknown".to_string(),
            m => m.to_string(),
        },
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = request::query(req.uri().query());
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header("accept");
    let user_agent = header("user-agent");
    let content_type = header("content-type");
    let route = request::route(&path);
    let mut info = Info::default();
    if let Route::Resource(rp) = &route {
        info.verb = verb(&method, rp, &q).to_string();
        info.group = rp.group.clone();
        info.resource = rp.resource.clone();
        info.subresource = rp.subresource.clone().unwrap_or_default();
        info.namespace = rp.namespace.clone().unwrap_or_default();
        info.name = rp.name.clone().unwrap_or_default();
        if !matches!(info.verb.as_str(), "get" | "list" | "watch") {
            info.field_manager = field_manager(&q, &user_agent);
        }
        if method == Method::PATCH {
            info.patch_type = match content_type.split(';').next().unwrap_or("").trim() {
                "application/apply-patch+yaml" => "apply",
                "application/merge-patch+json" => "merge",
                "application/json-patch+json" => "json",
                "application/strategic-merge-patch+json" => "strategic",
                _ => "unknown",
            }
            .to_string();
        }
    } else {
        info.verb = match route {
            Route::Version => "version",
            Route::OpenApiIndex | Route::OpenApi(..) => "openapi",
            Route::Health => "health",
            _ => "discovery",
        }
        .to_string();
    }

    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let fault = shared.faults.check(&info.verb, &info.resource);
    if let Some(d) = fault.as_ref().and_then(|f| f.delay) {
        tokio::time::sleep(d).await;
    }
    let response = match fault.filter(|f| f.code != 0) {
        Some(f) => error_response(&ApiError::injected(f.code, f.retry_after)),
        None => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error_response(&ApiError::bad_request(format!("reading the request body: {e}")));
                }
            };
            let ctx = handlers::Ctx {
                method: &method,
                q: &q,
                accept: &accept,
                content_type: &content_type,
                user_agent: &user_agent,
                body,
            };
            match dispatch(&shared, &route, &path, &ctx, &info).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
    };
    shared.counters.record(observe::Request {
        verb: info.verb,
        group: info.group,
        resource: info.resource,
        subresource: info.subresource,
        namespace: info.namespace,
        name: info.name,
        field_manager: info.field_manager,
        patch_type: info.patch_type,
        user_agent,
        code: response.status().as_u16(),
    });
    response
}

async fn dispatch(
    shared: &Arc<Shared>,
    route: &Route,
    path: &str,
    ctx: &handlers::Ctx<'_>,
    info: &Info,
) -> Result<Response<Body>, ApiError> {
    if !matches!(route, Route::Resource(_)) && ctx.method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on {path}"
        )));
    }
    let repr = request::representation(ctx.accept);
    Ok(match route {
        Route::Version => json_response(
            200,
            &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "kroxide-apiserver",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0",
                "compiler": "gc", "platform": "linux/amd64"}),
        ),
        Route::Health => bytes_response(200, "text/plain; charset=utf-8", Bytes::from_static(b"ok")),
        Route::CoreVersions | Route::Groups => {
            let core = *route == Route::CoreVersions;
            let state = shared.lock();
            match repr {
                Representation::Aggregated(v) => bytes_response(
                    200,
                    &discovery::aggregated_content_type(v),
                    Bytes::from(
                        serde_json::to_vec(&discovery::aggregated(&state.registry, core, v))
                            .unwrap_or_default(),
                    ),
                ),
                _ if core => json_response(200, &discovery::core_versions(&shared.address)),
                _ => json_response(200, &discovery::group_list(&state.registry)),
            }
        }
        Route::Group(g) => {
            let doc = discovery::group(&shared.lock().registry, g).ok_or_else(ApiError::page_not_found)?;
            json_response(200, &doc)
        }
        Route::Resources(g, v) => {
            let doc = discovery::resource_list(&shared.lock().registry, g, v)
                .ok_or_else(ApiError::page_not_found)?;
            json_response(200, &doc)
        }
        Route::OpenApiIndex => json_response(200, &openapi::index(&shared.lock().registry)),
        Route::OpenApi(g, v) => {
            let doc = openapi::document(&shared.lock().registry, g, v).ok_or_else(ApiError::no_route)?;
            json_response(200, &doc)
        }
        Route::DebugRequests => {
            let records: Vec<Value> = shared
                .counters
                .snapshot()
                .iter()
                .map(observe::Request::to_json)
                .collect();
            json_response(200, &json!({"requests": records}))
        }
        Route::Resource(rp) => handlers::resource(shared, rp, ctx, info, repr).await?,
        Route::Unknown => return Err(ApiError::no_route()),
    })
}

/// Accepts connections until `stopping` is set.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    let mut stopping = shared.stopping.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopping.changed() => break,
        }
    }
    connections.abort_all();
}

/// The listen address, validated to be loopback unless `allow_remote`.
///
/// # Errors
/// A non-loopback address.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<SocketAddr, String> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(addr)
    } else {
        Err(format!(
            "refusing to listen on {addr}: the test API server has no authentication; use 127.0.0.1"
        ))
    }
}

/// Builds the shared state for `config`.
pub fn shared(config: &Config, address: String) -> Arc<Shared> {
    Arc::new(Shared {
        state: Mutex::new(State::new(config.history)),
        counters: observe::Counters::default(),
        faults: observe::Faults::default(),
        knobs: Mutex::new(Knobs {
            simulate_workloads: config.simulate_workloads,
            workload_delay: config.workload_delay,
            establish_delay: config.establish_delay,
        }),
        watch_epoch: tokio::sync::watch::channel(0).0,
        stopping: tokio::sync::watch::channel(false).0,
        kick: Notify::new(),
        address,
        bookmark_interval: config.bookmark_interval,
        watch_timeout: config.watch_timeout,
    })
}
