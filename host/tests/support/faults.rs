//! A fault-injecting proxy between the controller and an API server (embedded or real), driven
//! by a seed: errors with Retry-After, latency, cut watches, `410 Gone` on watch resumes, lost
//! responses of executed writes, and full outages.
//!
//! The proxy listens on 127.0.0.1 over plain HTTP and forwards through a [`kube::Client`] (so it
//! handles the upstream's TLS and credentials). The seed fixes every draw; which request gets
//! which draw still depends on the order requests arrive in.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Frame, service::service_fn};
use hyper_util::rt::TokioIo;
use kube::Client;
use tokio::{net::TcpListener, sync::watch};

/// A small seeded generator (splitmix64): reproducible draws without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration in `lo..hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.below(span + 1))
    }
}

/// How often each fault strikes while the proxy is faulty.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Share of non-watch requests answered 500, 503 (Retry-After) or 429 (Retry-After) without
    /// reaching the server.
    pub error_rate: f64,
    /// Share of writes executed by the server whose response is replaced by a 500.
    pub lost_response_rate: f64,
    /// Share of requests delayed, and the longest delay.
    pub latency_rate: f64,
    pub latency_max: Duration,
    /// Watches are cut after a time in this range (half of them abruptly, half with a clean end).
    pub watch_life: (Duration, Duration),
    /// Share of watch resumes (a watch from a resourceVersion) answered `410 Gone`.
    pub gone_rate: f64,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            error_rate: 0.08,
            lost_response_rate: 0.03,
            latency_rate: 0.2,
            latency_max: Duration::from_millis(150),
            watch_life: (Duration::from_millis(500), Duration::from_secs(5)),
            gone_rate: 0.4,
        }
    }
}

/// Faults injected so far, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
    forwarded: AtomicU64,
}

impl Counts {
    fn add(&self, kind: &'static str) {
        *self.by_kind.lock().unwrap().entry(kind).or_default() += 1;
    }

    /// Faults by kind.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.by_kind.lock().unwrap().clone()
    }

    /// Requests that reached the server.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

struct State {
    upstream: Client,
    plan: Plan,
    rng: Mutex<Rng>,
    faulty: AtomicBool,
    /// True during an outage; watches end when it turns true.
    outage: watch::Sender<bool>,
    counts: Counts,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

fn status_body(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
    .to_string()
}

impl FaultProxy {
    /// Starts a proxy to `upstream`, faulty from the start, with `plan` and `seed`.
    pub async fn start(upstream: Client, plan: Plan, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            plan,
            rng: Mutex::new(Rng::new(seed)),
            faulty: AtomicBool::new(true),
            outage: watch::channel(false).0,
            counts: Counts::default(),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// Writes a kubeconfig that reaches the upstream through this proxy.
    pub fn write_kubeconfig(&self, path: &Path) {
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: faults\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: faults\n  context:\n    cluster: faults\n    user: faults\n\
             current-context: faults\nusers:\n- name: faults\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(path, config).unwrap();
    }

    /// Turns faults on or off (an outage in progress ends when they go off).
    pub fn set_faulty(&self, on: bool) {
        self.state.faulty.store(on, Ordering::SeqCst);
        if !on {
            self.set_outage(false);
        }
    }

    /// Starts or ends an outage: while it lasts every connection is dropped unanswered and
    /// every open watch is cut.
    pub fn set_outage(&self, on: bool) {
        if on {
            self.state.counts.add("outage");
        }
        self.state.outage.send_replace(on);
    }

    /// What was injected.
    pub fn counts(&self) -> &Counts {
        &self.state.counts
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn draw<T>(state: &State, f: impl FnOnce(&mut Rng) -> T) -> T {
    f(&mut state.rng.lock().unwrap())
}

async fn handle(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "outage");
    if *state.outage.borrow() {
        return Err(refused());
    }
    let faulty = state.faulty.load(Ordering::SeqCst);
    let plan = &state.plan;
    let query = req.uri().query().unwrap_or_default().to_string();
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let is_watch = matches!(param("watch").as_deref(), Some("true" | "1"));
    let is_write = req.method() != hyper::Method::GET;
    if faulty && draw(&state, |r| r.chance(plan.latency_rate)) {
        state.counts.add("latency");
        tokio::time::sleep(draw(&state, |r| r.between(Duration::ZERO, plan.latency_max))).await;
    }
    if faulty && !is_watch && draw(&state, |r| r.chance(plan.error_rate)) {
        let (code, reason, kind) = match draw(&state, |r| r.below(3)) {
            0 => (500, "InternalError", "error 500"),
            1 => (503, "ServiceUnavailable", "error 503"),
            _ => (429, "TooManyRequests", "error 429"),
        };
        state.counts.add(kind);
        let mut resp = Response::new(full(status_body(code, reason, "injected by the fault proxy")));
        *resp.status_mut() = StatusCode::from_u16(code).unwrap();
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if code != 500 {
            resp.headers_mut().insert("retry-after", "1".parse().unwrap());
        }
        return Ok(resp);
    }
    let resumes = param("resourceVersion").is_some_and(|rv| !rv.is_empty() && rv != "0");
    if faulty && is_watch && resumes && draw(&state, |r| r.chance(plan.gone_rate)) {
        state.counts.add("410 on watch resume");
        let event = serde_json::json!({"type": "ERROR", "object": serde_json::from_str::<serde_json::Value>(
            &status_body(410, "Expired", "too old resource version (injected)")).unwrap()});
        let mut resp = Response::new(full(format!("{event}\n")));
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return Ok(resp);
    }

    // Forward.
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    let mut upstream = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream.body(kube::client::Body::from(body.to_vec())).unwrap();
    state.counts.forwarded.fetch_add(1, Ordering::Relaxed);
    let resp = match state.upstream.send(upstream).await {
        Ok(r) => r,
        Err(e) => {
            let mut resp = Response::new(full(status_body(502, "BadGateway", &e.to_string())));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(resp);
        }
    };
    let (parts, body) = resp.into_parts();
    if !is_watch {
        let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
        if faulty && is_write && draw(&state, |r| r.chance(plan.lost_response_rate)) {
            state.counts.add("lost response of an executed write");
            let mut resp = Response::new(full(status_body(
                500,
                "InternalError",
                "response lost (injected)",
            )));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(resp);
        }
        return Ok(Response::from_parts(parts, full(bytes)));
    }

    // A watch: stream until its drawn life ends or an outage starts.
    let life = faulty.then(|| draw(&state, |r| r.between(plan.watch_life.0, plan.watch_life.1)));
    let abrupt = draw(&state, |r| r.chance(0.5));
    let mut outage = state.outage.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    let counts_state = state.clone();
    tokio::spawn(async move {
        let mut body = body;
        let cut = async {
            match life {
                Some(life) => tokio::time::sleep(life).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cut);
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => if tx.send(Ok(frame)).await.is_err() { return },
                    _ => return,
                },
                () = &mut cut => {
                    counts_state.counts.add(if abrupt { "watch cut abruptly" } else { "watch ended early" });
                    if abrupt {
                        let _ = tx.send(Err(std::io::Error::other("watch cut"))).await;
                    }
                    return;
                }
                true = async { outage.wait_for(|on| *on).await.is_ok() } => {
                    let _ = tx.send(Err(std::io::Error::other("outage"))).await;
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    Ok(Response::from_parts(parts, StreamBody::new(stream).boxed()))
}
