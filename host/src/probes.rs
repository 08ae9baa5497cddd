//! The controller's HTTP endpoints: `/healthz` (the process is up), `/readyz` (caches synced
//! and every graph's plugin loaded, or standing by for the leader Lease) and `/metrics`
//! (OpenMetrics text).

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

use crate::{controller::Context, metrics::Metrics};

/// What the endpoints report, shared with the controller.
#[derive(Debug, Default)]
pub struct Probes {
    /// The running controller, while this replica leads (or runs without election).
    pub current: Mutex<Option<Arc<Context>>>,
    /// Leader election is on and this replica does not hold the Lease.
    pub standby: std::sync::atomic::AtomicBool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl Probes {
    /// Probes over `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            current: Mutex::new(None),
            standby: Default::default(),
            metrics,
        }
    }

    /// Whether the controller is ready, and why not.
    pub fn readiness(&self) -> Result<&'static str, &'static str> {
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
            Some(ctx) => {
                let (_, bytes) = ctx.runtime.cache_usage();
                self.metrics
                    .set_gauges(ctx.rgd_queue.len(), ctx.instance_queue.len(), bytes, leader);
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

fn handle(probes: &Probes, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
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
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, probes: Arc<Probes>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let r = handle(&probes, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
