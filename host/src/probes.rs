//! The controller's HTTP endpoints: `/healthz` (the process is up), `/readyz` (caches synced
//! and every graph's plugin loaded, or standing by for the leader Lease) and `/metrics`
//! (OpenMetrics text), which with secure metrics is served over HTTPS only to callers the API
//! server authenticates and authorizes.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the endpoints read from a running controller.
pub(crate) trait Health: Send + Sync {
    /// Caches synced and every graph reconciled once.
    fn ready(&self) -> bool;
    /// Keys waiting in the graph and instance queues, and bytes of compiled plugins cached.
    fn load(&self) -> (usize, usize, usize);
    /// Sets the gauges that are read from the controller's state at scrape time.
    fn sample(&self);
}

/// What the endpoints report, shared with the controller.
#[derive(Default)]
pub(crate) struct Probes {
    /// The running controller, while this replica leads (or runs without election).
    pub(crate) current: Mutex<Option<Arc<dyn Health>>>,
    /// Leader election is on and this replica does not hold the Lease.
    pub(crate) standby: std::sync::atomic::AtomicBool,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("standby", &self.standby)
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Probes over `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            current: Mutex::new(None),
            standby: Default::default(),
            metrics,
        }
    }

    /// Whether the controller is ready, and why not.
    pub(crate) fn readiness(&self) -> Result<&'static str, &'static str> {
        if self.standby.load(std::sync::atomic::Ordering::Acquire) {
            return Ok("standby: waiting for the leader lease");
        }
        match self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            None => Err("not started"),
            Some(ctx) if ctx.ready() => Ok("ok"),
            Some(_) => Err("caches syncing or graphs loading"),
        }
    }

    fn metrics_text(&self) -> String {
        let leader = !self.standby.load(std::sync::atomic::Ordering::Acquire);
        match self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(health) => {
                let (rgds, instances, bytes) = health.load();
                self.metrics.set_gauges(rgds, instances, bytes, leader);
                health.sample();
            }
            None => self.metrics.set_gauges(0, 0, 0, false),
        }
        self.metrics.encode()
    }
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serves {
    /// Health and metrics, plain HTTP.
    Everything,
    /// Health only (metrics are served securely elsewhere).
    Health,
    /// Metrics only, behind TLS and authentication.
    SecureMetrics,
}

fn handle(probes: &Probes, req: &Request<Incoming>, serves: Serves) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let allowed = match serves {
        Serves::Everything => true,
        Serves::Health => path != "/metrics",
        Serves::SecureMetrics => path == "/metrics",
    };
    if !allowed {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        );
    }
    match path {
        "/healthz" | "/livez" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/readyz" => match probes.readiness() {
            Ok(why) => reply(StatusCode::OK, "text/plain; charset=utf-8", format!("{why}\n")),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            probes.metrics_text(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
    }
}

/// Binds `addr`.
///
/// # Errors
/// The address cannot be bound.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the plain endpoints (`serves`: everything, or health only) on `listener` until the
/// task is dropped.
pub(crate) async fn serve(listener: TcpListener, probes: Arc<Probes>, serves: Serves) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let r = handle(&probes, &req, serves);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Why secure metrics could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A file could not be read or parsed.
    #[error("secure metrics: {path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The certificate and key do not make a TLS configuration.
    #[error("secure metrics: {0}")]
    Config(String),
}

/// A TLS acceptor from PEM files.
///
/// # Errors
/// [`TlsError`] naming the file.
pub(crate) fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let file_err = |path: &std::path::Path, e: &dyn std::fmt::Display| TlsError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, &e))?;
    if certs.is_empty() {
        return Err(file_err(cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, &e))?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Checks bearer tokens with the API server: TokenReview, then SubjectAccessReview for `get` on
/// the request's path. Answers are remembered for a minute per token.
pub(crate) struct Authenticator {
    client: kube::Client,
    seen: Mutex<std::collections::HashMap<(u64, String), (std::time::Instant, Decision)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// What the API server said of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No token, or one it does not know: 401.
    Unauthenticated,
    /// Known, but not allowed `get` on the path: 403.
    Forbidden,
    /// Allowed.
    Allowed,
}

const DECISION_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Authenticator {
    /// Asks the API server through `client`.
    pub(crate) fn new(client: kube::Client) -> Self {
        Self {
            client,
            seen: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether the caller presenting `authorization` may `get` `path`.
    pub(crate) async fn check(&self, authorization: Option<&str>, path: &str) -> Decision {
        use std::hash::{Hash, Hasher};
        let Some(token) = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Decision::Unauthenticated;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut h);
        let key = (h.finish(), path.to_string());
        if let Some((at, d)) = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && at.elapsed() < DECISION_TTL
        {
            return *d;
        }
        let decision = self.ask(token, path).await;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, (at, _)| at.elapsed() < DECISION_TTL);
        seen.insert(key, (std::time::Instant::now(), decision));
        decision
    }

    async fn ask(&self, token: &str, path: &str) -> Decision {
        use k8s_openapi::api::{
            authentication::v1::{TokenReview, TokenReviewSpec},
            authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
        };
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = kube::Api::<TokenReview>::all(self.client.clone())
            .create(&kube::api::PostParams::default(), &review)
            .await;
        let Some(status) = reviewed.ok().and_then(|r| r.status) else {
            return Decision::Unauthenticated;
        };
        let (Some(true), Some(user)) = (status.authenticated, status.user) else {
            return Decision::Unauthenticated;
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some("get".to_string()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match kube::Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&kube::api::PostParams::default(), &access)
            .await
        {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Decision::Allowed,
            _ => Decision::Forbidden,
        }
    }
}

/// Serves `/metrics` over TLS on `listener` to callers `auth` allows, until the task is
/// dropped.
pub(crate) async fn serve_secure(
    listener: TcpListener,
    probes: Arc<Probes>,
    tls: tokio_rustls::TlsAcceptor,
    auth: Arc<Authenticator>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (probes, tls, auth) = (probes.clone(), tls.clone(), auth.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let (probes, auth) = (probes.clone(), auth.clone());
                async move {
                    let header = req
                        .headers()
                        .get(hyper::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    let r = match auth.check(header, req.uri().path()).await {
                        Decision::Allowed => handle(&probes, &req, Serves::SecureMetrics),
                        Decision::Unauthenticated => reply(
                            StatusCode::UNAUTHORIZED,
                            "text/plain; charset=utf-8",
                            "Unauthorized: a bearer token the API server knows is required\n".into(),
                        ),
                        Decision::Forbidden => reply(
                            StatusCode::FORBIDDEN,
                            "text/plain; charset=utf-8",
                            format!("Forbidden: not allowed to get {}\n", req.uri().path()),
                        ),
                    };
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
